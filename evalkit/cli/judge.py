"""`evalkit judge preview` and `evalkit judge calibrate`."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any

import typer

judge_app = typer.Typer(
    no_args_is_help=True, help="Preview judge prompts; calibrate a judge against human labels."
)


@judge_app.command()
def preview(
    suite: Annotated[Path, typer.Argument(help="the suite YAML file")],
    task: Annotated[str, typer.Option("--task", help="the task whose judges to preview")],
    n: Annotated[int, typer.Option("-n", min=1, help="examples to render")] = 3,
) -> None:
    """Print rendered judge prompts without calling anything. Before a run there are no
    answers yet, so each prompt shows the task's reference (or a placeholder) as the answer."""
    from evalkit.cli.common import _errors
    from evalkit.pipeline import validate
    from evalkit.scoring.judges.render import render_prompt
    from evalkit.scoring.judges.run import judge_metrics
    from evalkit.scoring.judges.spec import load_judge_spec

    with _errors():
        _, plan = validate(suite, limit=n, offline=True)
        tp = plan.task(task)
        if tp is None:
            from evalkit.errors import InputError

            raise InputError(
                f"no task '{task}' in {suite}",
                hint=f"Tasks: {', '.join(t.name for t in plan.tasks)}.",
            )
        metrics = judge_metrics(tp)
        if not metrics:
            typer.echo(f"task '{task}' has no judges")
            raise typer.Exit(0)
        for m in metrics:
            spec = load_judge_spec(Path(m.params["spec_path"]))
            for ex in tp.examples[:n]:
                stand_in = ex.reference or "(the variant's answer goes here)"
                answers = [stand_in] if spec.kind != "pairwise" else [stand_in, "(base answer)"]
                prompt = render_prompt(
                    spec,
                    question=ex.prompt,
                    answers=answers,
                    reference=ex.reference,
                    row=dict(ex.row),
                )
                typer.echo(f"===== {m.name} · {task} · {ex.id} (answer shown: the reference)")
                typer.echo(prompt.text())
                typer.echo("")


def _fmt(x: Any) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{x:.3f}" if isinstance(x, float) else str(x)


@judge_app.command()
def calibrate(
    judge: Annotated[Path, typer.Argument(help="a judge spec, e.g. judges/legal-format.yaml")],
    labels: Annotated[Path, typer.Option("--labels", help="human labels (JSONL)")],
    suite: Annotated[
        Path | None, typer.Option("--suite", help="take the judge provider from this suite")
    ] = None,
    serve: Annotated[
        str | None, typer.Option(help="builtin:NAME or a .gguf: start a local judge")
    ] = None,
    hf: Annotated[
        str | None,
        typer.Option(help="builtin:NAME, a model directory or a .gguf: judge in-process"),
    ] = None,
    base_url: Annotated[str | None, typer.Option(help="an OpenAI-compatible endpoint")] = None,
    model: Annotated[str | None, typer.Option(help="the model name at the endpoint")] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="ask the judge again")] = False,
    output: Annotated[
        Path | None, typer.Option("--json", help="also write the figures as JSON here")
    ] = None,
) -> None:
    """Compare a judge with human labels: agreement, Cohen's kappa, confusion table,
    score-length correlation, and (pairwise) how often the verdict survives a swap."""
    from evalkit.cli.common import _errors
    from evalkit.paths import cache_dir
    from evalkit.scoring.judges.cache import JudgeCache
    from evalkit.scoring.judges.calibrate import calibrate as run_calibration
    from evalkit.scoring.judges.calibrate import read_labels
    from evalkit.scoring.judges.core import JudgeRunner, resolve_endpoint
    from evalkit.scoring.judges.spec import load_judge_spec
    from evalkit.suite.config import JudgeProviderConfig

    with _errors():
        spec = load_judge_spec(judge)
        items = read_labels(labels, spec)
        root = Path.cwd()
        if suite is not None:
            from evalkit.suite.loader import load_suite

            loaded = load_suite(suite)
            provider = (
                loaded.config.judge.provider if loaded.config.judge else JudgeProviderConfig()
            )
            root = loaded.root
        elif base_url:
            provider = JudgeProviderConfig(base_url=base_url, model=model)
        elif hf:
            provider = JudgeProviderConfig(hf=hf)
        else:
            provider = JudgeProviderConfig(
                serve=serve or "builtin:smollm2-135m-instruct", model=model
            )
        endpoint = resolve_endpoint(provider, root)
        cache = None if no_cache else JudgeCache(cache_dir() / "results.sqlite")
        with JudgeRunner(endpoint, cache) as runner:
            rel = run_calibration(spec, items, runner)
    kind = "quadratic-weighted" if rel["weighted"] else "unweighted"
    typer.echo(f"judge {spec.name} ({spec.kind}) · {endpoint.model} @ {endpoint.host}")
    typer.echo(
        f"labels {rel['n_labels']}, scored {rel['n']}, unscored {rel['n_unscored']}"
        + (f" ({'; '.join(rel['errors'])})" if rel["errors"] else "")
    )
    typer.echo(f"agreement {_fmt(rel['agreement'])}   kappa ({kind}) {_fmt(rel['kappa'])}")
    if rel["length_correlation"] is not None or spec.kind != "pairwise":
        typer.echo(f"correlation of score with answer length {_fmt(rel['length_correlation'])}")
    if spec.kind == "pairwise":
        typer.echo(f"verdict survives the swap {_fmt(rel['swap_consistency'])}")
    cols = list(next(iter(rel["confusion"].values())))
    typer.echo("confusion (rows: human, columns: judge)")
    typer.echo("human " + " ".join(f"{c:>8}" for c in cols))
    for h, row in rel["confusion"].items():
        typer.echo(f"{h:>5} " + " ".join(f"{row[c]:>8}" for c in cols))
    if output is not None:
        clean = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in rel.items()}
        output.write_text(json.dumps(clean, indent=2) + "\n", encoding="utf-8")


def register(app: typer.Typer) -> None:
    app.add_typer(judge_app, name="judge")
