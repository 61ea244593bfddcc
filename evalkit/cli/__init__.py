"""The `evalkit` command. Thin: parse flags, call the library, map errors to exit codes.

Exit codes: 0 all gates passed, 1 a gate failed, 2 bad input, 3 infrastructure failure.
"""

from __future__ import annotations

import functools
import logging
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from evalkit.cli.common import (
    Terminated,
    _console,
    _errors,
    _rich_progress,
    handle_signals,
    parse_variants,
)
from evalkit.errors import EXIT_BAD_INPUT

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Evaluate LoRA adapters for task gain and forgetting; gate releases.",
)


@app.command()
def run(
    suite: Annotated[Path, typer.Argument(help="the suite YAML file")],
    output_dir: Annotated[
        Path | None,
        typer.Option("--output-dir", "-o", help="default: reports/<suite>-<timestamp>/"),
    ] = None,
    limit: Annotated[
        int | None,
        typer.Option(min=1, help="evaluate only the first N examples of each task (a smoke run)"),
    ] = None,
    variants: Annotated[
        str | None,
        typer.Option(help="comma-separated subset, e.g. base,legal-r16 (base is always included)"),
    ] = None,
    seed: Annotated[int | None, typer.Option(help="overrides settings.seed")] = None,
    no_cache: Annotated[
        bool,
        typer.Option("--no-cache", help="recompute everything instead of reusing cached results"),
    ] = False,
    quiet: Annotated[
        bool,
        typer.Option("--quiet", "-q", help="no progress bars; only the verdict and warnings"),
    ] = False,
    profile: Annotated[
        bool, typer.Option("--profile", help="print where the time went, stage by stage")
    ] = False,
    baseline: Annotated[
        Path | None,
        typer.Option(help="an earlier run directory: compare with it example by example"),
    ] = None,
    force_baseline: Annotated[
        bool, typer.Option("--force-baseline", help="compare even if data or settings differ")
    ] = False,
    workers: Annotated[
        int | None,
        typer.Option(
            min=1, max=64, help="worker processes, one device each (overrides settings.workers)"
        ),
    ] = None,
) -> None:
    """Evaluate base, adapters and merged variants; write the report; exit with the gates."""
    from evalkit.pipeline import run_suite

    console = _console()
    chosen = parse_variants(variants)
    run_it = functools.partial(
        run_suite,
        suite,
        output_dir=output_dir,
        limit=limit,
        variants=chosen,
        seed=seed,
        use_cache=not no_cache,
        baseline=baseline,
        force_baseline=force_baseline,
        workers=workers,
    )
    from evalkit.profile import Profile, format_table

    prof = Profile()  # also sees the outputs stage, after results.json got its copy
    with _errors(), prof.activate():
        t0 = time.perf_counter()
        if quiet:
            outcome = run_it()
        else:
            bar, factory = _rich_progress(console)
            with bar:
                outcome = run_it(progress=factory)
        wall = time.perf_counter() - t0
    _print_outcome(outcome.results, outcome.output_dir, quiet=quiet)
    if profile:
        sys.stdout.write(format_table(prof.rows(), wall) + "\n")  # wide: never wrapped
    raise typer.Exit(outcome.exit_code)


def _print_outcome(results: dict[str, Any], out_dir: Path, *, quiet: bool = False) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if quiet:  # the verdict line and the run's warnings, nothing else
        for w in results.get("warnings", []):
            console.print(f"[yellow]warning[/] {w}", highlight=False)
        console.print(_verdict_line(results, out_dir), highlight=False)
        return
    table = Table(title="gates", show_lines=False)
    for col in ("gate", "result", "detail"):
        table.add_column(col)
    for g in results["gates"]:
        mark = (
            "[green]pass[/]"
            if g["passed"]
            else ("[red]FAIL[/]" if g["severity"] == "error" else "[yellow]warn[/]")
        )
        table.add_row(g["name"], mark, g["detail"])
    console.print(table)
    for variant, f in results["forgetting"].items():
        if f["flagged"]:
            probes = ", ".join(f"{p['task']}/{p['metric']}" for p in f["probes"])
            console.print(f"[bold red]forgetting[/] {variant}: {probes}", highlight=False)
    for check in results["integrity"]:
        if check.get("skipped"):  # said once before the run, as a warning
            console.print(
                f"[yellow]integrity[/] {check['check']} {check['variant']}: {check['detail']}",
                highlight=False,
            )
        elif not check["passed"]:
            console.print(
                f"[bold red]integrity[/] {check['check']} {check['variant']}: {check['detail']}",
                highlight=False,
            )
    console.print(_verdict_line(results, out_dir), highlight=False)


def _verdict_line(results: dict[str, Any], out_dir: Path) -> str:
    verdict = {
        0: "[green]PASS[/]",
        1: "[red]FAIL[/] (a gate failed)",
        3: "[red]ERROR[/] (integrity)",
    }.get(results["exit_code"], "")
    return f"{verdict}  report: {out_dir / 'report.html'}"


@app.command()
def validate(
    suite: Annotated[Path, typer.Argument(help="the suite YAML file")],
    offline: Annotated[
        bool,
        typer.Option(
            "--offline", help="skip the checks that need the environment (judge API keys)"
        ),
    ] = False,
) -> None:
    """Check a suite, its data and its references without loading any model."""
    from evalkit.pipeline import validate as validate_suite

    with _errors():
        loaded, plan = validate_suite(suite, offline=offline)
    n = sum(len(t.examples) for t in plan.tasks)
    typer.echo(
        f"{suite}: ok — {len(plan.variants)} variants × {len(plan.tasks)} tasks "
        f"({n} examples), {len(loaded.config.gates)} gates"
    )


@app.command()
def report(
    run_dir: Annotated[Path, typer.Argument(help="a run directory holding results.json")],
) -> None:
    """Re-render report.html, junit.xml and summary.md from results.json."""
    from evalkit.outputs import load_results, write_outputs

    with _errors():
        results = load_results(run_dir)
        write_outputs(results, run_dir)
    typer.echo(f"wrote {run_dir / 'report.html'}")


# `evalkit train` and `evalkit merge` live in their own module.
from evalkit.cli.train import register as _register_train  # noqa: E402

_register_train(app)
from evalkit.cli.judge import register as _register_judge  # noqa: E402

_register_judge(app)

# `evalkit compare RUN_A RUN_B` (baselines) lives in its own module.
from evalkit.cli.compare import compare_command  # noqa: E402

app.command("compare")(compare_command)


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    handle_signals()  # SIGTERM unwinds like Ctrl-C: judge server stopped, finished work kept
    try:
        app()
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        sys.exit(130)
    except Terminated:
        sys.stderr.write("terminated\n")
        sys.exit(143)
    except SystemExit:
        raise


__all__ = ["app", "main", "EXIT_BAD_INPUT"]
