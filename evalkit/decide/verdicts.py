"""Scores -> comparisons with the base, forgetting flags, gates, and the exit code.

Each non-base variant is paired with the base example by example. Accuracy-type metrics
use McNemar's exact test; the rest a paired bootstrap over examples. p-values are
Holm-corrected within each family (a variant's golden metrics; a variant's probe metrics),
so a dozen probes do not raise a false forgetting flag by chance.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from evalkit.decide.stats import PairedComparison, compare_paired, holm, verdict
from evalkit.plan.types import Plan, StatsSettings
from evalkit.scoring.metrics import MetricSpec
from evalkit.scoring.score import Scores

ALPHA = StatsSettings.alpha


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


def verdict_for(stats: PairedComparison, spec: MetricSpec, alpha: float = ALPHA) -> str:
    if spec.direction != "none":
        return verdict(
            stats, margin=spec.margin, higher_is_better=spec.direction == "higher", alpha=alpha
        )
    # No better direction (answer length): a significant move beyond the margin either
    # way is a drift, reported as a regression.
    v = verdict(stats, margin=spec.margin, higher_is_better=True, alpha=alpha)
    return "regressed" if v == "improved" else v


def compare(plan: Plan, scores: Scores) -> list[Comparison]:
    """Every non-base variant against the base, with the plan's statistics settings."""
    raw: list[RawComparison] = []
    for task in plan.tasks:
        for spec in task.metrics:
            base = scores[(task.name, spec.name, "base")]
            for variant in plan.variants[1:]:
                other = scores[(task.name, spec.name, variant)]
                stats = compare_metric(
                    spec, plan.stats, base.values, base.weights, other.values, other.weights
                )
                raw.append((task.name, task.kind, variant, spec, stats, "base"))
    out = holm_by_family(raw, plan.stats.alpha)
    order = {(t.name, m.name): i for i, t in enumerate(plan.tasks) for m in t.metrics}
    out.sort(key=lambda c: (order[(c.task, c.metric.name)], plan.variants.index(c.variant)))
    return out


def compare_metric(
    spec: MetricSpec, stats: StatsSettings, bv: Any, bw: Any, vv: Any, vw: Any
) -> PairedComparison:
    """One metric, base values against variant values, with the run's statistics."""
    return compare_paired(
        bv,
        bw,
        vv,
        vw,
        transform=spec.transform,
        delta_kind=spec.delta_kind,
        binary=spec.binary,
        confidence=stats.confidence,
        n_resamples=stats.resamples,
        seed=stats.seed,
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
