"""Gates on scripted scores: every `require` kind passes and fails, each in both
severities, and the exit code follows only error-severity failures."""

from __future__ import annotations

import dataclasses
import math

import pytest

from evalkit.decide.gates import GateResult, apply_gates, exit_code
from evalkit.decide.verdicts import compare, forgetting
from evalkit.errors import EXIT_GATE_FAILED, EXIT_INFRA, EXIT_OK
from evalkit.plan.build import gate_spec
from evalkit.plan.types import Plan
from evalkit.scoring.score import MetricScores, Scores
from evalkit.suite.config import GateConfig
from tests.scripted_run import run

JUDGE = "judge:quality"


@pytest.fixture(scope="module")
def state() -> tuple[Plan, Scores, list, dict]:
    plan, _, _, scores = run()
    scores = dict(scores)
    # what a judge stage returns: `good` has 2 of 40 unscored replies, `bad` 10
    for v, n_bad in {"base": 0, "good": 2, "bad": 10, "same": 0, "mixed": 0}.items():
        scores[("qa", JUDGE, v)] = MetricScores(
            [math.nan] * n_bad + [4.0] * (40 - n_bad), [1.0] * 40
        )
    comps = compare(plan, scores)
    return plan, scores, comps, forgetting(plan, comps)


def with_gates(plan: Plan, gates: list[GateConfig]) -> Plan:
    return dataclasses.replace(plan, gates=tuple(gate_spec(g) for g in gates))


def gate(state: tuple, severity: str = "error", **kw: object) -> GateResult:
    plan, scores, comps, flags = state
    (result,) = apply_gates(
        with_gates(plan, [GateConfig(severity=severity, **kw)]), scores, comps, flags
    )
    return result


QA = {"task": "qa", "metric": "exact_match"}
CASES = [
    # (gate, passes for `good`, passes for `bad`)
    ({"require": "improved", **QA}, True, False),
    ({"require": "not_regressed", **QA}, True, False),
    ({"require": "no_forgetting"}, True, False),
    ({"require": "at_least", **QA, "value": 0.8}, True, False),  # 0.90 and 0.05
    ({"require": "at_most", "task": "prose", "metric": "perplexity", "value": 20.0}, True, False),
    ({"require": "max_judge_error_rate", "task": "qa", "metric": JUDGE, "value": 0.1}, True, False),
]


@pytest.mark.parametrize("severity", ["error", "warning"])
@pytest.mark.parametrize(("spec", "good_passes", "bad_passes"), CASES)
def test_each_require_passes_and_fails(
    state: tuple, spec: dict, good_passes: bool, bad_passes: bool, severity: str
) -> None:
    good = gate(state, severity, variant="good", **spec)
    bad = gate(state, severity, variant="bad", **spec)
    assert (good.passed, bad.passed) == (good_passes, bad_passes)
    assert good.severity == bad.severity == severity
    assert not good.inconclusive and not bad.inconclusive
    # only an error-severity failure fails the run
    assert exit_code([good, bad], False) == (EXIT_GATE_FAILED if severity == "error" else EXIT_OK)


def test_gate_details_carry_the_figures(state: tuple) -> None:
    assert gate(state, variant="good", require="at_least", value=0.8, **QA).detail == (
        "qa/exact_match = 0.9 (threshold 0.8)"
    )
    assert (
        gate(
            state, variant="bad", require="max_judge_error_rate", task="qa", metric=JUDGE, value=0.1
        ).detail
        == "qa/judge:quality: 10 of 40 unscored (25.0%; max 10.0%)"
    )
    forgot = gate(state, variant="bad", require="no_forgetting").detail
    assert forgot.startswith("regressed: mc/accuracy (-0.625 [")
    assert "prose/perplexity (+290.6% [" in forgot
    inconclusive = gate(state, variant="mixed", require="improved", **QA)
    assert not inconclusive.passed
    assert inconclusive.detail.startswith("inconclusive: +0.050 [")
    assert gate(state, variant="mixed", require="not_regressed", **QA).passed


def test_unreliable_judge_and_absent_variant_are_inconclusive_warnings(state: tuple) -> None:
    plan, scores, comps, flags = state
    gates = [
        GateConfig(variant="good", require="at_least", task="qa", metric=JUDGE, value=5.0),
        GateConfig(
            variant="good", require="max_judge_error_rate", task="qa", metric=JUDGE, value=0.0
        ),
        GateConfig(variant="absent", require="no_forgetting"),
    ]
    results = apply_gates(
        with_gates(plan, gates), scores, comps, flags, {("qa", JUDGE): "kappa 0.1"}
    )
    assert [(r.passed, r.severity, r.inconclusive) for r in results] == [
        (False, "warning", True),
        (False, "error", False),  # the error rate still applies to an unreliable judge
        (False, "warning", True),
    ]
    assert results[0].detail == "inconclusive: kappa 0.1"
    assert results[2].detail == "not evaluated: variant not in this run"
    assert exit_code(results, False) == EXIT_GATE_FAILED
    assert exit_code(results[:1] + results[2:], False) == EXIT_OK
    assert exit_code([], True) == EXIT_INFRA
