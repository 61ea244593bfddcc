"""Verdicts and forgetting flags on scores from the scripted engine (no model, no torch):
every verdict occurs, with the figures the table implies."""

from __future__ import annotations

import pytest

from evalkit.decide.verdicts import compare, forgetting
from tests.scripted_run import run


@pytest.fixture(scope="module")
def comparisons() -> dict[tuple[str, str, str], object]:
    plan, _, _, scores = run()
    return {(c.task, c.metric.name, c.variant): c for c in compare(plan, scores)}


def test_every_verdict_with_its_figures(comparisons: dict) -> None:
    good = comparisons[("qa", "exact_match", "good")]
    assert good.verdict == "improved"
    assert good.stats.delta == pytest.approx(0.65)  # 36/40 - 10/40
    assert good.stats.n == 40
    bad = comparisons[("qa", "exact_match", "bad")]
    assert bad.verdict == "regressed"
    assert bad.stats.delta == pytest.approx(-0.20)
    assert bad.stats.ci_high < 0
    same = comparisons[("qa", "exact_match", "same")]
    assert same.verdict == "equivalent"
    assert (same.stats.delta, same.p_adjusted) == (0.0, 1.0)
    # 5 items lost and 7 gained: +5 points, an interval that straddles both margins
    mixed = comparisons[("qa", "exact_match", "mixed")]
    assert mixed.verdict == "inconclusive"
    assert mixed.stats.delta == pytest.approx(0.05)
    assert mixed.stats.ci_low < -0.05 < 0.05 < mixed.stats.ci_high


def test_ratio_and_kl_deltas(comparisons: dict) -> None:
    ppl = comparisons[("prose", "perplexity", "bad")]
    # 1.5x the NLL: perplexity ratio exp(0.5 * mean NLL per token) - 1, mean 2.725 nats
    assert ppl.stats.delta == pytest.approx(2.9059, abs=1e-4)
    assert ppl.verdict == "regressed"
    kl = comparisons[("prose", "kl_from_base", "bad")]
    assert kl.stats.delta == pytest.approx(0.9)
    assert kl.verdict == "regressed"
    # a KL of 0.01 nats per token is inside the 0.15 margin
    assert comparisons[("prose", "kl_from_base", "good")].verdict == "equivalent"


def test_forgetting_flags_only_regressed_probes() -> None:
    plan, _, _, scores = run()
    flags = forgetting(plan, compare(plan, scores))
    assert {v: [(c.task, c.metric.name) for c in cs] for v, cs in flags.items()} == {
        "good": [],
        "bad": [("mc", "accuracy"), ("prose", "perplexity"), ("prose", "kl_from_base")],
        "same": [],
        "mixed": [],
    }
