"""`proof: equivalence` gates on simulated scores (no model): a probe too small to tell
fails with the items it would need, one large enough passes, and the items-needed figure
is the size at which the same flip rates do prove the margin."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest

from evalkit.decide.gates import apply_gates
from evalkit.decide.proof import is_proven, items_needed, prove
from evalkit.decide.stats import compare_paired
from evalkit.decide.verdicts import Comparison, verdict_for
from evalkit.errors import SuiteError
from evalkit.plan.build import gate_spec
from evalkit.plan.types import Example, Plan, TaskPlan
from evalkit.scoring.metrics import MetricSpec
from evalkit.scoring.score import MetricScores
from evalkit.suite.config import GateConfig
from evalkit.suite.loader import load_suite
from tests.conftest import write_jsonl

ACC = MetricSpec("accuracy", "accuracy", "choice", "higher", 0.05, binary=True)
PPL = MetricSpec(
    "perplexity", "perplexity", "rolling", "lower", 0.10, transform="exp", delta_kind="ratio"
)
LENGTH = MetricSpec("length_words", "length_words", "generate", "none", 0.5)


def flips(n: int, lost: int, gained: int, seed: int = 0) -> tuple[list[float], list[float]]:
    """Base and variant 0/1 scores on n items: `lost` right -> wrong, `gained` the other
    way, the rest agree (half right), in a shuffled order."""
    base = [1.0] * lost + [0.0] * gained
    var = [0.0] * lost + [1.0] * gained
    same = n - lost - gained
    base += [float(i % 2) for i in range(same)]
    var += [float(i % 2) for i in range(same)]
    order = np.random.default_rng(seed).permutation(n)
    return [base[i] for i in order], [var[i] for i in order]


def comparison(spec: MetricSpec, base: list[float], var: list[float], **kw: object) -> Comparison:
    bw = kw.pop("base_weights", [1.0] * len(base))
    vw = kw.pop("variant_weights", [1.0] * len(var))
    stats = compare_paired(
        base,
        bw,
        var,
        vw,
        transform=spec.transform,
        delta_kind=spec.delta_kind,
        binary=spec.binary,
        n_resamples=2000,
        seed=0,
    )
    task = str(kw.pop("task", "knowledge-mc"))
    return Comparison(task, "probe", "a1", spec, stats, stats.p_value, verdict_for(stats, spec))


def test_a_probe_too_small_to_tell_fails_with_the_items_it_needs() -> None:
    c = comparison(ACC, *flips(60, 6, 5))  # -1 item of 60: inconclusive
    assert c.verdict == "inconclusive" and c.stats.mde > ACC.margin
    passed, detail = prove([c])
    assert not passed
    needed = math.ceil(60 * (c.stats.mde / 0.05) ** 2)
    assert needed == items_needed(60, c.stats.mde, 0.05)
    assert 400 < needed < 1200  # mde ~0.16 at n=60 against a 0.05 margin
    assert f"about {needed} items needed to reach the margin" in detail
    assert f"mde {c.stats.mde:.3g} at n=60" in detail
    assert detail.startswith("not proven: knowledge-mc/accuracy inconclusive: -0.017 [")


def test_the_items_needed_are_enough_at_the_same_flip_rates() -> None:
    small = comparison(ACC, *flips(60, 6, 6))
    needed = items_needed(60, small.stats.mde, ACC.margin)
    assert needed is not None
    # the same 10% flips each way, at the size the small probe asked for
    k = round(0.1 * needed)
    large = comparison(ACC, *flips(needed, k, k))
    assert is_proven(large) and large.verdict == "equivalent"
    assert large.stats.mde == pytest.approx(ACC.margin, rel=0.05)
    # and a third of that is not enough
    third = needed // 3
    assert not is_proven(comparison(ACC, *flips(third, third // 10, third // 10)))


def test_a_probe_large_enough_passes() -> None:
    c = comparison(ACC, *flips(2000, 40, 38))
    assert c.verdict == "equivalent"
    passed, detail = prove([c])
    assert passed and detail.startswith("proven within margin: -0.001 [")


def test_every_probe_must_be_proven() -> None:
    big = comparison(ACC, *flips(2000, 40, 38))
    small = comparison(ACC, *flips(60, 6, 5), task="knowledge-open")
    passed, detail = prove([big, small])
    assert not passed
    assert "knowledge-open/accuracy inconclusive" in detail and "knowledge-mc" not in detail
    assert prove([big, big])[0]
    assert prove([]) == (False, "no probe comparisons in this run: nothing to prove")


def test_an_improvement_passes_and_a_regression_fails() -> None:
    improved = comparison(ACC, *flips(400, 2, 80))
    assert improved.verdict == "improved" and prove([improved])[0]
    regressed = comparison(ACC, *flips(400, 80, 2))
    passed, detail = prove([regressed])
    assert regressed.verdict == "regressed" and not passed
    assert "regressed: -0.195" in detail and "items needed" not in detail


def test_perplexity_and_directionless_metrics() -> None:
    rng = np.random.default_rng(1)
    tokens = rng.integers(200, 400, size=30).astype(float)
    nll = tokens * rng.normal(3.0, 0.3, size=30)
    # the variant's perplexity 30% lower: better, so proven not worse
    better = comparison(
        PPL,
        list(nll),
        list(nll - tokens * 0.36 + rng.normal(0, 5, size=30)),
        base_weights=list(tokens),
        variant_weights=list(tokens),
        task="prose",
    )
    assert better.stats.delta < -0.25 and prove([better])[0]
    # the same change on a metric with no better direction is a drift: not proven
    length = comparison(LENGTH, [10.0] * 30, [20.0 + (i % 3) for i in range(30)], task="open")
    passed, detail = prove([length])
    assert not passed and "open/length_words regressed" in detail


def test_a_margin_of_zero_or_a_single_item_cannot_be_proven() -> None:
    zero = MetricSpec("exact_match", "exact_match", "generate", "higher", 0.0, binary=True)
    c = comparison(zero, *flips(100, 3, 3))
    assert "a margin of 0 cannot be proven" in prove([c], what="metric")[1]
    one = comparison(ACC, [1.0], [1.0])
    assert "too few to estimate the variance" in prove([one])[1]


def _plan() -> Plan:
    examples = [Example(f"e{i}") for i in range(60)]
    golden = MetricSpec("exact_match", "exact_match", "generate", "higher", 0.05, binary=True)
    return Plan(
        ["base", "a1"],
        [
            TaskPlan("qa", "golden", "", examples, [golden]),
            TaskPlan("knowledge-mc", "probe", "", examples, [ACC]),
        ],
    )


def test_apply_gates_with_proof() -> None:
    plan = _plan()
    base, var = flips(60, 6, 5)
    c_probe = comparison(ACC, base, var)
    golden = plan.tasks[0].metrics[0]
    c_gold = comparison(golden, *flips(60, 5, 6), task="qa")
    c_gold = Comparison("qa", "golden", "a1", golden, c_gold.stats, 1.0, c_gold.verdict)
    scores = {
        (t, m, v): MetricScores([0.0] * 60, [1.0] * 60)
        for t, m in (("qa", "exact_match"), ("knowledge-mc", "accuracy"))
        for v in ("base", "a1")
    }
    gates = [
        GateConfig(variant="a1", require="no_forgetting"),
        GateConfig(variant="a1", require="no_forgetting", proof="equivalence"),
        GateConfig(variant="a1", task="qa", metric="exact_match", require="not_regressed"),
        GateConfig(
            variant="a1",
            task="qa",
            metric="exact_match",
            require="not_regressed",
            proof="equivalence",
        ),
    ]
    plan = dataclasses.replace(plan, gates=tuple(gate_spec(g) for g in gates))
    out = apply_gates(plan, scores, [c_gold, c_probe], {"a1": []})
    assert [g.passed for g in out] == [True, False, True, False]
    assert [g.name for g in out] == [
        "a1: no forgetting",
        "a1: no forgetting, proven",
        "a1: qa/exact_match not regressed",
        "a1: qa/exact_match not regressed, proven",
    ]
    assert "items needed to reach the margin" in out[1].detail
    assert out[3].detail.startswith("not proven: qa/exact_match inconclusive")


def test_proof_only_on_gates_it_applies_to(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="applies to no_forgetting and not_regressed"):
        GateConfig(variant="a1", task="qa", metric="m", require="improved", proof="equivalence")
    write_jsonl(tmp_path / "d.jsonl", [{"id": "a", "q": "?", "a": "!"}])
    suite = tmp_path / "s.yaml"
    suite.write_text(
        "name: s\nbase: {model: builtin:smollm2-135m-instruct}\n"
        "tasks:\n  - {name: qa, data: {path: d.jsonl}, id: id, prompt: '{{ q }}',\n"
        "     reference: '{{ a }}', metrics: [{type: exact_match}]}\n"
        "gates:\n  - variant: base\n    require: no_forgetting\n    proof: equivalent\n"
    )
    with pytest.raises(SuiteError) as err:
        load_suite(suite)
    assert f"{suite}:" in str(err.value) and "proof" in str(err.value)
