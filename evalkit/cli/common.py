"""What every `evalkit` command shares: the console, progress bars and mapping EvalkitError
to its exit code without a traceback."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import typer

from evalkit.errors import EvalkitError


def _console() -> Any:
    from rich.console import Console

    return Console(stderr=True)


def _fail(exc: EvalkitError) -> None:
    console = _console()
    console.print(
        f"[bold red]error:[/] {exc.message}", highlight=False, markup=True, soft_wrap=True
    )
    if exc.hint:
        console.print(exc.hint, highlight=False, soft_wrap=True)
    raise typer.Exit(exc.exit_code)


@contextmanager
def _errors() -> Iterator[None]:
    try:
        yield
    except EvalkitError as exc:
        _fail(exc)


def _rich_progress(console: Any) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(
        TextColumn("{task.description:<40}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )

    @contextmanager
    def factory(description: str, total: int) -> Iterator[Any]:
        task_id = bar.add_task(description, total=total)
        yield lambda n: bar.advance(task_id, n)
        bar.update(task_id, completed=total)

    return bar, factory
