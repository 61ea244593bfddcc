"""Records -> Scores: per metric and variant, one (value, weight) per example, aligned with
the task's example order so variants can be paired; NaN marks an unscored example and the
reason is kept."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from evalkit.engines.records import Record
from evalkit.plan.types import Example, Plan, TaskPlan
from evalkit.scoring import text as tm
from evalkit.scoring.metrics import MetricSpec


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
    """(value, weight, reason-if-unscored) of one metric on one record."""
    nan = math.nan
    if spec.needs == "generate":
        out = rec.output
        if out is None:
            return nan, 1.0, "no output"
        ref = ex.reference or ""
        value = {
            "exact_match": lambda: tm.exact_match(out, ref),
            "contains": lambda: tm.contains(out, spec.params.get("value") or ""),
            "regex": lambda: tm.regex_match(out, spec.params.get("value") or ""),
            "json_valid": lambda: tm.json_valid(out),
            "json_field_match": lambda: tm.json_field_match(out, ref, spec.params["field"]),
            "accepted_match": lambda: tm.accepted_match(out, list(ex.accepted)),
            "distinct_2": lambda: tm.distinct_n(out, 2),
            "repeated_3gram_rate": lambda: tm.repeated_ngram_rate(out, 3),
            "length_words": lambda: float(len(tm.words(out))),
        }[spec.kind]()
        reason = None
        if math.isnan(value):
            reason = (
                "reference has no such field"
                if spec.kind == "json_field_match"
                else "answer too short to measure"
            )
        return value, 1.0, reason
    if spec.needs == "loglikelihood":
        if not rec.ref_tokens:
            return nan, 0.0, "empty reference"
        return -(rec.ref_logprob or 0.0), float(rec.ref_tokens), None
    if spec.needs == "rolling":
        if not rec.n_tokens:
            return nan, 0.0, "empty text"
        if spec.kind == "bits_per_byte":
            # nats -> bits over UTF-8 bytes: comparable across tokenizers
            n_bytes = len((ex.text or "").encode("utf-8"))
            return (rec.nll or 0.0) / math.log(2), float(n_bytes), None
        return rec.nll or 0.0, float(rec.n_tokens), None
    if spec.needs == "rolling_kl":
        if not rec.kl_tokens or rec.kl is None:
            return nan, 0.0, "empty text" if not rec.n_tokens else "no KL computed"
        return rec.kl, float(rec.kl_tokens), None
    if spec.needs == "choice":
        if not rec.choice_logprobs or ex.answer is None:
            return nan, 1.0, "no options scored"
        best = max(range(len(rec.choice_logprobs)), key=rec.choice_logprobs.__getitem__)
        return float(best == ex.answer), 1.0, None
    raise ValueError(f"unknown metric input {spec.needs}")


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
    if spec.kind == "cross_answer_overlap":
        # needs every answer of the variant at once (overlap with the other answers)
        outputs = [by_key[(task.name, ex.id, variant)].output for ex in task.examples]
        for ex, value in zip(task.examples, tm.cross_answer_overlap(outputs, 3), strict=True):
            ms.values.append(value)
            ms.weights.append(1.0)
            if math.isnan(value):
                ms.reasons[ex.id] = "answer too short to measure"
        return ms
    for ex in task.examples:
        value, weight, reason = score_one(spec, ex, by_key[(task.name, ex.id, variant)])
        ms.values.append(value)
        ms.weights.append(weight)
        if reason:
            ms.reasons[ex.id] = reason
    return ms
