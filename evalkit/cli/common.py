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
    from rich.markup import escape

    console = _console()
    # escaped: a message or hint is text, and "[vllm]" in "pip install 'evalkit[vllm]'" is
    # no markup tag
    console.print(
        f"[bold red]error:[/] {escape(exc.message)}", highlight=False, markup=True, soft_wrap=True
    )
    if exc.hint:
        console.print(exc.hint, highlight=False, markup=False, soft_wrap=True)
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


def parse_variants(value: str | None) -> list[str] | None:
    """`--variants a,b` -> ["a", "b"]; absent -> None (all). An empty or blank value is an
    error: read as "all variants" it ran everything the user meant to leave out."""
    if value is None:
        return None
    chosen = [v.strip() for v in value.split(",") if v.strip()]
    if not chosen:
        console = _console()
        console.print(
            "[bold red]error:[/] --variants is empty",
            highlight=False,
            markup=True,
            soft_wrap=True,
        )
        console.print("Name variants, e.g. --variants base,legal-r16, or leave the flag out.")
        raise typer.Exit(2)
    return chosen


def handle_signals() -> None:
    """SIGTERM (a cancelled CI job) raises `Terminated` where the run is, so every
    `finally` runs: the local judge server is stopped and its files removed, the result
    cache keeps what finished, and the exit code is 143 (128 + SIGTERM)."""
    import signal

    def on_term(signum: int, frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends it at once
        raise Terminated()

    signal.signal(signal.SIGTERM, on_term)


class Terminated(BaseException):
    """SIGTERM, raised where the program was, so context managers unwind. Not an
    Exception (no `except Exception` swallows it) and not a KeyboardInterrupt (which the
    command-line library turns into exit 1)."""
