"""The metric registry: every kind declares its unit, the suite schema's metric types are
exactly the golden kinds, and a metric kind added in one module is scored like the
built-in ones."""

from __future__ import annotations

import math

import pytest

from evalkit.engines.records import Record
from evalkit.plan.types import Example, Plan, TaskPlan
from evalkit.scoring.metrics import (
    UNITS,
    MetricDef,
    golden_metric,
    metric_def,
    metric_kinds,
    register_metric,
    unit_of,
)
from evalkit.scoring.metrics import registry as reg
from evalkit.scoring.score import score, score_one


def test_every_kind_declares_a_known_unit() -> None:
    for kind in metric_kinds():
        d = metric_def(kind)
        assert d.unit_for({}) in UNITS, kind
        assert d.compute is not None or d.compute_set is not None or kind == "judge", kind


def test_golden_kinds_include_the_documented_metric_types() -> None:
    documented = {"exact_match", "contains", "regex", "json_valid", "json_field_match",
                  "reference_perplexity"}  # fmt: skip
    assert documented <= set(metric_kinds(golden=True))


def test_units_of_the_built_in_metrics() -> None:
    expected = {
        "accepted_match": "fraction",
        "bits_per_byte": "bits_per_byte",
        "choice_accuracy": "fraction",
        "contains": "fraction",
        "cross_answer_overlap": "fraction",
        "distinct_2": "fraction",
        "exact_match": "fraction",
        "judge": "score",
        "json_field_match": "fraction",
        "json_valid": "fraction",
        "kl_from_base": "nats_per_token",
        "length_words": "words",
        "reference_perplexity": "perplexity",
        "regex": "fraction",
        "repeated_3gram_rate": "fraction",
        "rolling_perplexity": "perplexity",
    }
    # kinds added later come on top of these
    assert {k: metric_def(k).unit_for({}) for k in expected} == expected
    assert metric_def("judge").unit_for({"judge_kind": "pairwise"}) == "fraction"


def test_golden_metric_keeps_its_shape() -> None:
    m = golden_metric("json_field_match", "type_ok", 0.05, value=None, field="type")
    assert (m.needs, m.direction, m.binary, m.label, m.unit) == (
        "generate",
        "higher",
        True,
        "JSON field match (type)",
        "fraction",
    )
    ppl = golden_metric("reference_perplexity", "ppl", 0.1, value=None, field=None)
    assert (ppl.transform, ppl.delta_kind, ppl.label) == ("exp", "ratio", "reference perplexity")
    with pytest.raises(ValueError, match="unknown metric type length_words"):
        golden_metric("length_words", "n", 0.1)  # a probe metric, not declarable on tasks


def test_unit_of_falls_back_to_the_kind() -> None:
    from evalkit.scoring.metrics import MetricSpec

    judge = MetricSpec(
        "judge:q", "judge", "generate", "higher", 0.1, params={"judge_kind": "pairwise"}
    )
    assert unit_of(judge) == "fraction"
    assert unit_of(MetricSpec("x", "no-such-kind", "generate", "higher", 0.1)) == "score"


def test_a_new_kind_is_one_registration(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reg, "_METRICS", dict(reg._METRICS))  # leave the registry as it was

    def shouts(spec, ex: Example, rec: Record):  # type: ignore[no-untyped-def]
        if rec.output is None:
            return math.nan, 1.0, "no output"
        return float(rec.output.isupper()), 1.0, None

    register_metric(
        MetricDef("shouts", "generate", "lower", "fraction", "shouting", compute=shouts)
    )
    spec = metric_def("shouts").spec(margin=0.1)
    task = TaskPlan("t", "golden", "", [Example("a", "p"), Example("b", "p")], [spec])
    recs = [Record("t", "a", "base", output="HEY"), Record("t", "b", "base", output="hey")]
    ms = score(Plan(["base"], [task]), recs)[("t", "shouts", "base")]
    assert (ms.values, ms.aggregate(spec), spec.unit) == ([1.0, 0.0], 0.5, "fraction")
    with pytest.raises(ValueError, match="unit 'decibels' is not in UNITS"):
        register_metric(MetricDef("loud", "generate", "lower", "decibels", "loud", compute=shouts))


def test_score_one_matches_the_records() -> None:
    ex = Example("d", text="héllo")  # 6 UTF-8 bytes
    rec = Record("p", "d", "a", nll=math.log(2) * 3, n_tokens=2, kl=0.5, kl_tokens=2)
    assert score_one(metric_def("bits_per_byte").spec(), ex, rec) == (
        pytest.approx(3.0),
        6.0,
        None,
    )
    assert score_one(metric_def("kl_from_base").spec(), ex, rec) == (0.5, 2.0, None)
    assert (
        score_one(
            metric_def("exact_match").spec(), Example("q", "p", "yes"), Record("t", "q", "a")
        )[2]
        == "no output"
    )
    with pytest.raises(ValueError, match="not scored per record"):
        score_one(metric_def("judge").spec(), ex, rec)
