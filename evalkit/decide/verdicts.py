"""Scores -> comparisons with the base, forgetting flags, gates, and the exit code.

Each non-base variant is paired with the base example by example. Accuracy-type metrics
use McNemar's exact test; the rest a paired bootstrap over examples. p-values are
Holm-corrected within each family (a variant's golden metrics; a variant's probe metrics),
so a dozen probes do not raise a false forgetting flag by chance.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from evalkit.decide.stats import PairedComparison, compare_paired, holm, verdict
from evalkit.errors import EXIT_GATE_FAILED, EXIT_INFRA, EXIT_OK
from evalkit.plan.types import Plan
from evalkit.scoring.metrics import MetricSpec
from evalkit.scoring.score import Scores
from evalkit.suite.config import GateConfig, Settings

ALPHA = 0.05


@dataclass(frozen=True)
class Comparison:
    task: str
    task_kind: str
    variant: str
    metric: MetricSpec
    stats: PairedComparison
    p_adjusted: float
    verdict: str
    # what the variant is compared with: "base", or "<baseline run>:<variant>"
    baseline: str = "base"


@dataclass(frozen=True)
class GateResult:
    name: str
    passed: bool
    severity: str
    detail: str
    # a gate on a judge that failed its calibration: neither pass nor fail (shown as a
    # warning, never fails the run)
    inconclusive: bool = False


@dataclass
class Decision:
    comparisons: list[Comparison] = field(default_factory=list)
    forgetting: dict[str, list[Comparison]] = field(default_factory=dict)
    gates: list[GateResult] = field(default_factory=list)


def verdict_for(stats: PairedComparison, spec: MetricSpec, alpha: float = ALPHA) -> str:
    if spec.direction != "none":
        return verdict(
            stats, margin=spec.margin, higher_is_better=spec.direction == "higher", alpha=alpha
        )
    # No better direction (answer length): a significant move beyond the margin either
    # way is a drift, reported as a regression.
    v = verdict(stats, margin=spec.margin, higher_is_better=True, alpha=alpha)
    return "regressed" if v == "improved" else v


def compare(plan: Plan, scores: Scores, settings: Settings) -> list[Comparison]:
    raw: list[RawComparison] = []
    for task in plan.tasks:
        for spec in task.metrics:
            base = scores[(task.name, spec.name, "base")]
            for variant in plan.variants[1:]:
                other = scores[(task.name, spec.name, variant)]
                stats = compare_metric(
                    spec, settings, base.values, base.weights, other.values, other.weights
                )
                raw.append((task.name, task.kind, variant, spec, stats, "base"))
    out = holm_by_family(raw)
    order = {(t.name, m.name): i for i, t in enumerate(plan.tasks) for m in t.metrics}
    out.sort(key=lambda c: (order[(c.task, c.metric.name)], plan.variants.index(c.variant)))
    return out


def compare_metric(
    spec: MetricSpec, settings: Settings, bv: Any, bw: Any, vv: Any, vw: Any
) -> PairedComparison:
    """One metric, base values against variant values, with the suite's statistics."""
    return compare_paired(
        bv,
        bw,
        vv,
        vw,
        transform=spec.transform,
        delta_kind=spec.delta_kind,
        binary=spec.binary,
        confidence=settings.confidence,
        n_resamples=settings.bootstrap_resamples,
        seed=settings.seed,
    )


# (task, task kind, variant, metric, paired result, what it is compared with)
RawComparison = tuple[str, str, str, MetricSpec, PairedComparison, str]


def holm_by_family(raw: list[RawComparison], alpha: float = ALPHA) -> list[Comparison]:
    """Holm-adjust p-values within each (variant, task kind) family, then classify."""
    out: list[Comparison] = []
    for variant, kind in sorted({(r[2], r[1]) for r in raw}):
        members = [r for r in raw if r[2] == variant and r[1] == kind]
        adjusted = holm([r[4].p_value for r in members])
        for (task, tkind, var, spec, stats, baseline), p_adj in zip(members, adjusted, strict=True):
            corrected = dataclasses.replace(
                stats, p_value=p_adj if not math.isnan(p_adj) else stats.p_value
            )
            out.append(
                Comparison(
                    task,
                    tkind,
                    var,
                    spec,
                    stats,
                    p_adj,
                    verdict_for(corrected, spec, alpha),
                    baseline=baseline,
                )
            )
    return out


def forgetting(plan: Plan, comparisons: list[Comparison]) -> dict[str, list[Comparison]]:
    """Variant -> the general-probe comparisons that regressed (empty: not flagged)."""
    return {
        v: [
            c
            for c in comparisons
            if c.variant == v
            and c.task_kind == "probe"
            and c.verdict == "regressed"
            and c.baseline == "base"
        ]
        for v in plan.variants[1:]
    }


def apply_gates(
    plan: Plan,
    gates: list[GateConfig],
    scores: Scores,
    comparisons: list[Comparison],
    flags: dict[str, list[Comparison]],
    unreliable: dict[tuple[str, str], str] | None = None,
) -> list[GateResult]:
    """`unreliable`: (task, judge metric) -> why that judge is not trusted; its gates
    become "inconclusive: judge unreliable" (its error-rate gate still applies)."""
    results = []
    for gate in gates:
        if gate.variant not in plan.variants:
            # `--variants` left it out: nothing to judge, and no reason to fail the run.
            detail = "not evaluated: variant not in this run"
            results.append(GateResult(gate.label, False, "warning", detail, True))
            continue
        why = (unreliable or {}).get((gate.task or "", gate.metric or ""))
        if why and gate.require != "max_judge_error_rate":
            results.append(GateResult(gate.label, False, "warning", f"inconclusive: {why}", True))
            continue
        if gate.require == "max_judge_error_rate":
            ms = scores[(gate.task or "", gate.metric or "", gate.variant)]
            n = len(ms.values)
            rate = (n - ms.n_scored) / n if n else 0.0
            threshold = gate.value if gate.value is not None else 0.0
            passed = rate <= threshold
            detail = (
                f"{gate.task}/{gate.metric}: {n - ms.n_scored} of {n} unscored "
                f"({rate:.1%}; max {threshold:.1%})"
            )
        elif gate.require == "no_forgetting":
            probes = flags.get(gate.variant, [])
            passed = not probes
            detail = (
                "no general probe regressed"
                if passed
                else "regressed: "
                + ", ".join(f"{c.task}/{c.metric.name} ({_fmt_delta(c)})" for c in probes)
            )
        elif gate.require in ("at_least", "at_most"):
            task = plan.task(gate.task or "")
            spec = task.metric(gate.metric or "") if task else None
            assert spec is not None, "gate references are checked when the plan is built"
            value = scores[(gate.task or "", spec.name, gate.variant)].aggregate(spec)
            threshold = gate.value if gate.value is not None else math.nan
            passed = (value >= threshold) if gate.require == "at_least" else (value <= threshold)
            detail = f"{gate.task}/{spec.name} = {value:.4g} (threshold {threshold:g})"
        else:
            comp = next(
                c
                for c in comparisons
                if c.variant == gate.variant
                and c.baseline == "base"
                and c.task == gate.task
                and c.metric.name == gate.metric
            )
            passed = (
                comp.verdict == "improved"
                if gate.require == "improved"
                else comp.verdict != "regressed"
            )
            detail = (
                f"{comp.verdict}: {_fmt_delta(comp)}, margin {comp.metric.margin:g}, "
                f"n={comp.stats.n}"
            )
        results.append(GateResult(gate.label, bool(passed), gate.severity, detail))
    return results


def _fmt_delta(c: Comparison) -> str:
    s = c.stats
    if c.metric.delta_kind == "ratio":
        return f"{s.delta:+.1%} [{s.ci_low:+.1%}, {s.ci_high:+.1%}]"
    return f"{s.delta:+.3f} [{s.ci_low:+.3f}, {s.ci_high:+.3f}]"


def exit_code(gates: list[GateResult], integrity_failed: bool) -> int:
    if integrity_failed:
        return EXIT_INFRA
    if any(not g.passed and g.severity == "error" for g in gates):
        return EXIT_GATE_FAILED
    return EXIT_OK
