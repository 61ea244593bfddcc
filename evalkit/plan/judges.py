"""The judges a task names, checked when the plan is built (spec files, labels, variants,
template variables against the dataset's columns), as metric specs and judge references.
The endpoint itself (a server file, an API key) is checked later, by the judge stage's
preflight, so `evalkit validate --offline` needs no credentials."""

from __future__ import annotations

from evalkit.errors import SuiteError
from evalkit.plan.types import JudgeRef
from evalkit.scoring.metrics import MetricSpec
from evalkit.suite.config import TaskConfig
from evalkit.suite.loader import Suite
from evalkit.suite.yaml_lines import Loc


def judge_metric_specs(
    suite: Suite, task: TaskConfig, loc: Loc, columns: set[str]
) -> tuple[list[MetricSpec], list[JudgeRef]]:
    """Load every judge spec the task names, check its template's variables against what
    the judge and the dataset supply, and return one `judge:<name>` metric per judge with
    its reference."""
    from evalkit.scoring.judges.spec import check_template_vars, load_judge_spec

    out: list[MetricSpec] = []
    refs: list[JudgeRef] = []
    for i, entry in enumerate(task.judges):
        where = loc + ("judges", i)
        path = suite.resolve(entry.spec)
        if not path.is_file():
            raise suite.error(
                where + ("spec",),
                f"judge spec {path} not found",
                hint="`spec:` is a path relative to the suite, e.g. ../judges/general.yaml.",
            )
        spec = load_judge_spec(path)
        check_template_vars(spec, columns, task.reference is not None)
        labels = suite.resolve(entry.labels) if entry.labels else None
        if labels is not None and not labels.exists():
            raise suite.error(where + ("labels",), f"labels file {labels} not found")
        if labels is not None:  # parsed now, not after generation
            from evalkit.errors import DataError
            from evalkit.scoring.judges.calibrate import read_labels

            try:
                read_labels(labels, spec)
            except DataError as exc:
                raise suite.error(where + ("labels",), exc.message, exc.hint) from None
        known = suite.config.all_variants()
        for v in entry.variants or []:
            if v not in known:
                raise suite.error(
                    where + ("variants",),
                    f"judge variants names '{v}', not a variant of this suite",
                    hint=f"Variants: {', '.join(known)}.",
                )
        name = f"judge:{entry.name or spec.name}"
        if name in [m.name for m in out]:
            raise suite.error(where, f"two judges are both named {name}; give one a `name:`")
        lo, hi = spec.scale
        label = (
            f"judge {spec.name}: win rate vs base"
            if spec.kind == "pairwise"
            else f"judge {spec.name} ({lo}-{hi})"
        )
        out.append(
            MetricSpec(
                name,
                "judge",
                "generate",
                "higher",
                entry.margin,
                label=label,
                params={
                    "spec_path": str(path),
                    "labels": str(labels) if labels else None,
                    "judge_kind": spec.kind,
                    "variants": list(entry.variants) if entry.variants else None,
                },
            )
        )
        refs.append(
            JudgeRef(
                name,
                path,
                labels,
                tuple(entry.variants) if entry.variants else None,
            )
        )
    if out and suite.config.judge is None:
        # Without a provider section the default endpoint needs a model name and a key;
        # say so now rather than after generation.
        raise SuiteError(
            "the task has judges but the suite has no `judge:` section",
            file=suite.path,
            line=None,
            hint="Add judge: {provider: {serve: builtin:smollm2-135m-instruct}} for the "
            "local judge, or provider: {base_url: ..., model: ...}.",
        )
    if out:
        _check_provider(suite)
    return out, refs


def _check_provider(suite: Suite) -> None:
    provider = suite.config.judge.provider if suite.config.judge else None
    if provider is not None and not (provider.hf or provider.serve or provider.model):
        raise suite.error(
            ("judge", "provider"),
            "the judge provider needs `model:` (the model name at the endpoint)",
            hint="Or use serve: builtin:smollm2-135m-instruct for the local judge.",
        )
