"""`evalkit compare RUN_A RUN_B`: two finished runs, paired example by example.

RUN_A is the baseline (the last release), RUN_B the candidate. Same-named variants are
compared (or the pairs given with --pair A_VARIANT=B_VARIANT), every shared task and
metric, with the statistics of a run against its base: McNemar or a paired bootstrap,
Holm within each variant's golden metrics and its probes, verdicts against the margins
the candidate's suite declares, with the statistics settings (seed, interval level,
resamples, alpha) the candidate run recorded in its results.json.

Exit codes: 0 nothing regressed, 1 a comparison regressed, 2 the runs cannot be compared
(a missing run, or data or settings that differ without --force).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Annotated, Any

import typer

from evalkit.errors import EXIT_GATE_FAILED, EXIT_OK, InputError
from evalkit.plan.types import StatsSettings


def _pairs(
    spec: list[str] | None, a_variants: list[str], b_variants: list[str]
) -> list[tuple[str, str]]:
    if not spec:
        pairs = [(v, v) for v in b_variants if v in a_variants]
    else:
        pairs = []
        for item in spec:
            a, _, b = item.partition("=")
            pairs.append((a.strip(), (b or a).strip()))
    for a, b in pairs:
        if a not in a_variants:
            raise InputError(
                f"RUN_A has no variant '{a}'", hint=f"Its variants: {', '.join(a_variants)}."
            )
        if b not in b_variants:
            raise InputError(
                f"RUN_B has no variant '{b}'", hint=f"Its variants: {', '.join(b_variants)}."
            )
    if not pairs:
        raise InputError("the runs share no variant", hint="Name the pairs with --pair A=B.")
    return pairs


def compare_command(
    run_a: Annotated[Path, typer.Argument(help="the baseline run directory (last release)")],
    run_b: Annotated[Path, typer.Argument(help="the candidate run directory")],
    pair: Annotated[
        list[str] | None,
        typer.Option("--pair", help="A_VARIANT=B_VARIANT (repeatable); default: same names"),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="compare even if task data or settings differ")
    ] = False,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="write the comparisons as JSON here")
    ] = None,
) -> None:
    """Compare two runs example by example (a candidate against the last release)."""
    from evalkit.cli.common import _console, _errors
    from evalkit.decide.baseline import check_comparable, compare_runs, load_run
    from evalkit.outputs._fmt import to_jsonable
    from evalkit.outputs.results import comparison_rows

    with _errors():
        a, b = load_run(run_a), load_run(run_b)
        notes = check_comparable(a.fingerprints, b.fingerprints, force=force)
        pairs = _pairs(pair, a.variants, b.variants)
        stats = recorded_stats(run_b)
        if recorded_stats(run_a) != stats:
            notes.append(
                "the runs recorded different statistics settings; the candidate's are used"
            )
        comparisons = compare_runs(a, b.doc, pairs, stats, label=run_a.name)
    rows = comparison_rows(comparisons)
    _print(rows, notes, run_a, run_b, stats.ci_label)
    if output is not None:
        doc = {
            "baseline": str(run_a),
            "candidate": str(run_b),
            "notes": notes,
            "stats": dataclasses.asdict(stats),
            "comparisons": rows,
        }
        output.write_text(json.dumps(to_jsonable(doc), indent=2, allow_nan=False) + "\n")
        _console().print(f"wrote {output}", highlight=False)
    regressed = any(r["verdict"] == "regressed" for r in rows)
    raise typer.Exit(EXIT_GATE_FAILED if regressed else EXIT_OK)


def _fmt(r: dict[str, Any]) -> str:
    pct = r["delta_kind"] == "ratio"
    f = (lambda x: f"{x:+.1%}") if pct else (lambda x: f"{x:+.4g}")
    return f"{f(r['delta'])} [{f(r['ci_low'])}, {f(r['ci_high'])}]"


def recorded_stats(run_dir: Path) -> StatsSettings:
    """The statistics settings a run recorded in its results.json (`stats`); the defaults
    for a run from before they were recorded."""
    path = Path(run_dir) / "results.json"
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return StatsSettings()
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot be read as JSON: {exc}") from None
    stats = doc.get("stats") if isinstance(doc, dict) else None
    if not isinstance(stats, dict):
        return StatsSettings()
    got = StatsSettings(**{k: v for k, v in stats.items() if k in _STATS_CHECKS})
    bad = [k for k, ok in _STATS_CHECKS.items() if not ok(getattr(got, k))]
    if bad:
        raise InputError(
            f"{path}: `stats.{bad[0]}` is {getattr(got, bad[0])!r}, not a valid setting",
            hint="Rerun the suite to record its statistics settings again.",
        )
    return got


def _is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_level(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and 0 < x < 1


_STATS_CHECKS = {
    "seed": _is_int,
    "confidence": _is_level,
    "resamples": lambda x: _is_int(x) and x >= 1,
    "alpha": _is_level,
}


def _print(rows: list[dict[str, Any]], notes: list[str], run_a: Path, run_b: Path, ci: str) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title=f"{run_b} against {run_a}")
    for col in ("task/metric", "variant", "A", "B", f"delta [{ci}]", "mde", "verdict"):
        table.add_column(col)
    colour = {"regressed": "red", "improved": "green", "equivalent": "cyan"}
    for r in rows:
        v = r["verdict"]
        table.add_row(
            f"{r['task']}/{r['metric']}",
            f"{r['baseline'].split(':', 1)[-1]} → {r['variant']}",
            f"{r['base_value']:.4g}",
            f"{r['value']:.4g}",
            _fmt(r),
            f"{r['mde']:.3g}",
            f"[{colour.get(v, 'yellow')}]{v}[/]",
        )
    console.print(table)
    for note in notes:
        console.print(f"note: {note}", highlight=False)
