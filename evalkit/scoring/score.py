"""Records -> Scores: per metric and variant, one (value, weight) per example, aligned with
the task's example order so variants can be paired; NaN marks an unscored example and the
reason is kept."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from evalkit.engines.records import Record
from evalkit.plan.types import Example, Plan, TaskPlan
from evalkit.scoring.metrics import MetricSpec, metric_def


@dataclass
class MetricScores:
    """One metric of one task for one variant, example by example."""

    values: list[float]
    weights: list[float]
    reasons: dict[str, str] = field(default_factory=dict)  # example id -> why unscored

    def aggregate(self, spec: MetricSpec) -> float:
        pairs = [
            (v, w) for v, w in zip(self.values, self.weights, strict=True) if not math.isnan(v)
        ]
        total = sum(w for _, w in pairs)
        if not total:
            return math.nan
        mean = sum(v for v, _ in pairs) / total
        return math.exp(mean) if spec.transform == "exp" else mean

    @property
    def n_scored(self) -> int:
        return sum(not math.isnan(v) for v in self.values)


# (task, metric, variant) -> scores
Scores = dict[tuple[str, str, str], MetricScores]


def score_one(spec: MetricSpec, ex: Example, rec: Record) -> tuple[float, float, str | None]:
    """(value, weight, reason-if-unscored) of one metric on one record, by its kind's
    compute function in the metric registry."""
    definition = metric_def(spec.kind)
    if definition.compute is None:
        raise ValueError(f"metric {spec.kind} is not scored per record")
    why = rec.unscored_reason(spec.needs)  # the engine could not compute what it reads
    if why:
        return math.nan, 0.0, why
    return definition.compute(spec, ex, rec)


def score(plan: Plan, records: list[Record]) -> Scores:
    by_key = {(r.task, r.example_id, r.variant): r for r in records}
    scores: Scores = {}
    for task in plan.tasks:
        for variant in plan.variants:
            for spec in task.metrics:
                scores[(task.name, spec.name, variant)] = _score_metric(task, spec, variant, by_key)
    return scores


def _score_metric(
    task: TaskPlan, spec: MetricSpec, variant: str, by_key: dict[tuple[str, str, str], Record]
) -> MetricScores:
    ms = MetricScores([], [])
    recs = [by_key[(task.name, ex.id, variant)] for ex in task.examples]
    compute_set = metric_def(spec.kind).compute_set
    if compute_set is not None:  # a metric over every answer of the variant at once
        scored = [
            (math.nan, 0.0, why) if (why := rec.unscored_reason(spec.needs)) else one
            for one, rec in zip(compute_set(spec, task.examples, recs), recs, strict=True)
        ]
    else:
        scored = [score_one(spec, ex, rec) for ex, rec in zip(task.examples, recs, strict=True)]
    for ex, (value, weight, reason) in zip(task.examples, scored, strict=True):
        ms.values.append(value)
        ms.weights.append(weight)
        if reason:
            ms.reasons[ex.id] = reason
    return ms


def unscored_by_engine(plan: Plan, records: list[Record]) -> list[str]:
    """One line per (task, metric, variant) with examples the engine could not compute,
    saying how many and why: the run's warnings, so it says which metrics it could not
    compute."""
    by_key = {(r.task, r.example_id, r.variant): r for r in records}
    lines = []
    for task in plan.tasks:
        for spec in task.metrics:
            for variant in plan.variants:
                why: dict[str, int] = {}
                for ex in task.examples:
                    rec = by_key.get((task.name, ex.id, variant))
                    reason = rec.unscored_reason(spec.needs) if rec else None
                    if reason:
                        why[reason] = why.get(reason, 0) + 1
                for reason, n in why.items():
                    lines.append(
                        f"{task.name}/{spec.name} for {variant}: {n} of {len(task.examples)} "
                        f"unscored: {reason}"
                    )
    return lines


def approximated(plan: Plan, notes: dict[str, str]) -> list[str]:
    """One line per task whose metrics the engine only approximates (`notes`: request
    kind -> how, from the engine's description), naming the metrics."""
    lines = []
    for task in plan.tasks:
        for need, how in notes.items():
            names = [m.name for m in task.metrics if m.needs == need]
            if names:
                lines.append(f"{task.name}/{', '.join(names)}: approximated: {how}")
    return lines
