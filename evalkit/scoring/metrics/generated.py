"""Metrics of generated answers: text checks a suite declares on golden tasks, and the
measures of the open-ended probe."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from evalkit.engines.records import Record
from evalkit.plan.types import Example
from evalkit.scoring import text as tm
from evalkit.scoring.metrics.registry import Compute, MetricDef, Scored, register_metric
from evalkit.scoring.metrics.spec import MetricSpec

TOO_SHORT = "answer too short to measure"


def on_output(
    fn: Callable[[MetricSpec, str, Example], float], nan_reason: str = TOO_SHORT
) -> Compute:
    """A per-record compute function from fn(spec, output, example) -> value: no output is
    unscored ("no output"), a NaN value is unscored with `nan_reason`."""

    def compute(spec: MetricSpec, ex: Example, rec: Record) -> Scored:
        if rec.output is None:
            return math.nan, 1.0, "no output"
        value = fn(spec, rec.output, ex)
        return value, 1.0, nan_reason if math.isnan(value) else None

    return compute


def _golden(
    kind: str,
    label: str,
    fn: Callable[[MetricSpec, str, Example], float],
    needs_reference: bool = False,
) -> None:
    register_metric(
        MetricDef(
            kind,
            "generate",
            "higher",
            "fraction",
            label,
            compute=on_output(fn, "reference has no such field")
            if kind == "json_field_match"
            else on_output(fn),
            binary=True,
            golden=True,
            needs_reference=needs_reference,
        )
    )


_golden(
    "exact_match",
    "exact match",
    lambda s, out, ex: tm.exact_match(out, ex.reference or ""),
    needs_reference=True,
)
_golden("contains", "contains", lambda s, out, ex: tm.contains(out, s.params.get("value") or ""))
_golden("regex", "regex match", lambda s, out, ex: tm.regex_match(out, s.params.get("value") or ""))
_golden("json_valid", "valid JSON", lambda s, out, ex: tm.json_valid(out))
_golden(
    "json_field_match",
    "JSON field match",
    lambda s, out, ex: tm.json_field_match(out, ex.reference or "", s.params["field"]),
    needs_reference=True,
)

register_metric(
    MetricDef(
        "accepted_match",
        "generate",
        "higher",
        "fraction",
        "accuracy (open answer)",
        compute=on_output(lambda s, out, ex: tm.accepted_match(out, list(ex.accepted))),
        binary=True,
    )
)
register_metric(
    MetricDef(
        "distinct_2",
        "generate",
        "higher",
        "fraction",
        "distinct bigrams",
        compute=on_output(lambda s, out, ex: tm.distinct_n(out, 2)),
    )
)
register_metric(
    MetricDef(
        "repeated_3gram_rate",
        "generate",
        "lower",
        "fraction",
        "repeated trigrams",
        compute=on_output(lambda s, out, ex: tm.repeated_ngram_rate(out, 3)),
    )
)
# Length has no better direction; a large drift either way is a change in behaviour.
register_metric(
    MetricDef(
        "length_words",
        "generate",
        "none",
        "words",
        "answer length (words)",
        compute=on_output(lambda s, out, ex: float(len(tm.words(out)))),
        default_margin=0.5,
        delta_kind="ratio",
    )
)


def _cross_overlap(
    spec: MetricSpec, examples: Sequence[Example], records: Sequence[Record]
) -> list[Scored]:
    # needs every answer of the variant at once (overlap with the other answers)
    values = tm.cross_answer_overlap([r.output for r in records], 3)
    return [(v, 1.0, TOO_SHORT if math.isnan(v) else None) for v in values]


register_metric(
    MetricDef(
        "cross_answer_overlap",
        "generate",
        "lower",
        "fraction",
        "trigrams shared with other answers",
        compute_set=_cross_overlap,
    )
)
