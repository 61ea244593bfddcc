"""Tests for evalkit.decide.stats: exact figures, verdict rules and simulated error rates."""

from __future__ import annotations

import dataclasses
import math
import subprocess
import sys

import numpy as np
import pytest
from scipy.stats import norm

import evalkit.decide.stats as stats
from evalkit.decide.stats import PairedComparison, compare_paired, holm, mcnemar_exact, verdict

N_SIM = 250  # simulated data sets per scenario
N = 200  # examples per data set
B_SIM = 500  # bootstrap resamples in simulations


# --- mcnemar_exact -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("b", "c", "expected"),
    [
        (0, 6, 2 / 64),  # 0.03125
        (6, 0, 2 / 64),
        (5, 5, 1.0),
        (0, 0, 1.0),
        (1, 9, 2 * (1 + 10) / 1024),  # 0.021484375
        (2, 10, 2 * (1 + 12 + 66) / 4096),  # 0.03857421875
        (0, 1, 1.0),
    ],
)
def test_mcnemar_exact_hand_values(b: int, c: int, expected: float) -> None:
    assert mcnemar_exact(b, c) == pytest.approx(expected, rel=1e-12)


def test_mcnemar_exact_rejects_negative_counts() -> None:
    with pytest.raises(ValueError):
        mcnemar_exact(-1, 3)


# --- holm ----------------------------------------------------------------------------


def test_holm_hand_worked() -> None:
    # sorted: 0.005*4=0.02, 0.01*3=0.03, 0.03*2=0.06, 0.04*1=0.04 -> running max 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])


def test_holm_caps_at_one_and_edge_cases() -> None:
    assert holm([0.5, 0.6]) == [1.0, 1.0]
    assert holm([]) == []
    assert holm([0.02]) == [0.02]
    # NaN counts in the family size (as p = 1) and stays NaN
    out = holm([0.01, math.nan])
    assert out[0] == pytest.approx(0.02)
    assert math.isnan(out[1])
    with pytest.raises(ValueError):
        holm([1.5])


# --- compare_paired: exact figures ----------------------------------------------------


def _binary_with_counts(n11: int, n10: int, n01: int, n00: int) -> tuple[np.ndarray, ...]:
    """Base/variant 0/1 arrays: n10 = base right & variant wrong, n01 the reverse."""
    base = np.array([1] * n11 + [1] * n10 + [0] * n01 + [0] * n00, dtype=float)
    var = np.array([1] * n11 + [0] * n10 + [1] * n01 + [0] * n00, dtype=float)
    return base, var


def test_binary_uses_mcnemar_and_difference_in_proportions() -> None:
    base, var = _binary_with_counts(n11=100, n10=2, n01=10, n00=88)
    ones = np.ones(base.size)
    cmp = compare_paired(base, ones, var, ones, binary=True, n_resamples=4000)
    assert cmp.test == "mcnemar-exact"
    assert cmp.n == 200
    assert cmp.base == pytest.approx(102 / 200)
    assert cmp.variant == pytest.approx(110 / 200)
    assert cmp.delta == pytest.approx(8 / 200)
    assert cmp.p_value == pytest.approx(0.03857421875)
    assert cmp.ci_low < cmp.delta < cmp.ci_high
    # paired SE of a difference in proportions: sqrt(((b + c)/n - d^2) / n)
    se = math.sqrt((12 / 200 - (8 / 200) ** 2) / 200)
    assert cmp.mde == pytest.approx(2.8 * se, rel=0.1)
    assert cmp.ci_low == pytest.approx(cmp.delta - 1.96 * se, abs=0.01)
    assert cmp.ci_high == pytest.approx(cmp.delta + 1.96 * se, abs=0.01)
    assert verdict(cmp, margin=0.0, higher_is_better=True) == "improved"
    assert verdict(cmp, margin=0.05, higher_is_better=True) == "inconclusive"


def test_binary_all_pairs_agree_keeps_an_interval() -> None:
    # No item flips among 100: the Agresti-Min interval is +/- z * sqrt(1) / 102, not [0, 0].
    base, var = _binary_with_counts(n11=60, n10=0, n01=0, n00=40)
    ones = np.ones(base.size)
    cmp = compare_paired(base, ones, var, ones, binary=True)
    half = norm.isf(0.025) / 102
    assert (cmp.delta, cmp.p_value) == (0, 1.0)
    assert cmp.ci_low == pytest.approx(-half) and cmp.ci_high == pytest.approx(half)
    assert cmp.mde == pytest.approx(stats.MDE_FACTOR / 102)
    assert verdict(cmp, margin=0.05, higher_is_better=True) == "equivalent"
    assert verdict(cmp, margin=0.0, higher_is_better=True) == "inconclusive"


def test_binary_input_is_validated() -> None:
    ones = np.ones(3)
    with pytest.raises(ValueError):
        compare_paired([0, 0.5, 1], ones, [0, 1, 1], ones, binary=True)
    with pytest.raises(ValueError):
        compare_paired([0, 1, 1], [1, 2, 1], [0, 1, 1], ones, binary=True)
    with pytest.raises(ValueError):
        compare_paired([0, 1], [1, 1], [0, 1, 1], ones)


def test_deterministic_for_a_seed_and_seed_matters() -> None:
    rng = np.random.default_rng(3)
    b = rng.normal(size=300)
    v = b + rng.normal(0.05, 1.0, 300)
    w = np.ones(300)
    first = compare_paired(b, w, v, w, seed=7)
    assert compare_paired(b, w, v, w, seed=7) == first
    assert compare_paired(b, w, v, w, seed=8).ci_low != first.ci_low
    assert first.test == "paired-bootstrap"
    assert first.delta == pytest.approx(np.mean(v) - np.mean(b))


def test_bootstrap_p_value_matches_known_resampling_distribution() -> None:
    # differences +1, +1, -1: a resample's mean is <= 0 iff it draws at most one +1,
    # probability (1/3)^3 + 3 (2/3)(1/3)^2 = 7/27, and it is never exactly 0, so the
    # one-tail fraction is 7/27; the expanded percentile p (see evalkit.decide.stats) is then
    # 2 * T_2.sf(Phi^-1(1 - 7/27) / sqrt(3/2)) = 0.6507 (the plain percentile p: 14/27).
    from scipy.stats import t as student_t

    zeros = np.zeros(3)
    cmp = compare_paired(zeros, np.ones(3), [1.0, 1.0, -1.0], np.ones(3), n_resamples=20000)
    assert cmp.delta == pytest.approx(1 / 3)
    expected = 2 * student_t.sf(norm.isf(7 / 27) / math.sqrt(3 / 2), 2)
    assert expected == pytest.approx(0.6507, abs=1e-3)
    assert cmp.p_value == pytest.approx(expected, abs=0.02)
    assert (cmp.ci_low, cmp.ci_high) == (-1.0, 1.0)  # P(all -1) = P(all +1) > 2.5%


def test_chunked_resampling_matches_single_block(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(4)
    b = rng.normal(size=300)
    v = b + rng.normal(0.1, 1.0, 300)
    w = np.ones(300)
    whole = compare_paired(b, w, v, w, n_resamples=777)
    monkeypatch.setattr(stats, "_CHUNK_ELEMENTS", 1000)  # 3 rows per chunk
    assert compare_paired(b, w, v, w, n_resamples=777) == whole


# --- perplexity: ratio delta, exp transform, weights ----------------------------------


def test_perplexity_uniform_increase_gives_ratio_delta() -> None:
    rng = np.random.default_rng(5)
    tokens = rng.integers(20, 400, size=150).astype(float)
    base_nll = tokens * rng.uniform(1.5, 3.0, size=150)  # per-document NLL sums
    var_nll = base_nll + tokens * math.log(1.2)  # every token 1.2x more perplexing
    cmp = compare_paired(base_nll, tokens, var_nll, tokens, transform="exp", delta_kind="ratio")
    assert cmp.base == pytest.approx(math.exp(base_nll.sum() / tokens.sum()))
    assert cmp.variant == pytest.approx(1.2 * cmp.base)
    assert cmp.delta == pytest.approx(0.2)
    assert cmp.ci_low == pytest.approx(0.2, abs=1e-9)
    assert cmp.ci_high == pytest.approx(0.2, abs=1e-9)
    assert cmp.p_value < 0.01
    assert verdict(cmp, margin=0.05, higher_is_better=False) == "regressed"
    # a tight +20% interval is inside a 25% margin: equivalent at that tolerance
    assert verdict(cmp, margin=0.25, higher_is_better=False) == "equivalent"


def test_perplexity_weights_long_document_counts_more() -> None:
    tokens = np.array([1000.0] + [10.0] * 10)
    base = tokens * 2.0
    per_token_var = np.array([1.5] + [2.5] * 10)  # long doc better, short docs worse
    var = tokens * per_token_var
    cmp = compare_paired(base, tokens, var, tokens, transform="exp", delta_kind="ratio")
    expected = math.exp((1000 * 1.5 + 100 * 2.5) / 1100) / math.exp(2.0) - 1
    assert cmp.delta == pytest.approx(expected)  # about -0.336: better
    assert cmp.delta < -0.3
    # the same documents weighted equally (mean of per-document NLL) say worse
    ones = np.ones(tokens.size)
    flat = compare_paired(
        base / tokens, ones, per_token_var, ones, transform="exp", delta_kind="ratio"
    )
    assert flat.delta == pytest.approx(math.exp((1.5 + 25.0) / 11 - 2.0) - 1)
    assert flat.delta > 0.3


def test_interval_reflects_between_document_variation() -> None:
    # 20 long documents, half 0.5 nats/token better and half worse: the resampling unit is
    # the document, so the interval must be wide even though each document has 500 tokens.
    tokens = np.full(20, 500.0)
    base = tokens * 2.0
    var = tokens * (2.0 + np.tile([0.5, -0.5], 10))
    cmp = compare_paired(base, tokens, var, tokens, transform="exp", delta_kind="ratio")
    assert cmp.delta == pytest.approx(0.0, abs=1e-12)
    assert cmp.ci_high - cmp.ci_low > 0.3
    assert verdict(cmp, margin=0.1, higher_is_better=False) == "inconclusive"


# --- NaN handling and degenerate sizes -------------------------------------------------


def test_unscored_examples_are_dropped_pairwise() -> None:
    rng = np.random.default_rng(6)
    b = rng.normal(size=100)
    v = b + 0.3
    w = np.ones(100)
    b_nan, v_nan, w_nan = b.copy(), v.copy(), w.copy()
    b_nan[[1, 5, 9]] = np.nan
    v_nan[[5, 20]] = np.nan
    w_nan[20] = np.nan  # an unscored example's weight does not matter
    keep = np.ones(100, dtype=bool)
    keep[[1, 5, 9, 20]] = False
    got = compare_paired(b_nan, w_nan, v_nan, w, seed=1)
    want = compare_paired(b[keep], w[keep], v[keep], w[keep], seed=1)
    assert got.n == 96
    assert got == want
    assert got.delta == pytest.approx(0.3)


@pytest.mark.parametrize("binary", [True, False])
def test_all_unscored_is_inconclusive(binary: bool) -> None:
    nan3 = [math.nan] * 3
    cmp = compare_paired(nan3, [1, 1, 1], [1.0, 0.0, 1.0], [1, 1, 1], binary=binary)
    assert cmp.n == 0
    assert cmp.test == ("mcnemar-exact" if binary else "paired-bootstrap")
    for x in (cmp.base, cmp.variant, cmp.delta, cmp.ci_low, cmp.ci_high, cmp.p_value, cmp.mde):
        assert math.isnan(x)
    assert verdict(cmp, margin=0.1, higher_is_better=True) == "inconclusive"


def test_single_pair_is_inconclusive() -> None:
    cmp = compare_paired([0.0], [1.0], [1.0], [1.0])
    assert cmp.n == 1 and cmp.delta == 1.0 and cmp.p_value == 1.0
    assert (cmp.ci_low, cmp.ci_high) == (-math.inf, math.inf)
    assert verdict(cmp, margin=0.5, higher_is_better=True) == "inconclusive"


# --- verdict rules -----------------------------------------------------------------------


def _cmp(delta: float, low: float, high: float, p: float) -> PairedComparison:
    return PairedComparison(500, 0.5, 0.5 + delta, delta, low, high, p, "paired-bootstrap", 0.0)


def test_verdict_rules_and_orientation() -> None:
    up = _cmp(0.2, 0.1, 0.3, 0.001)
    assert verdict(up, margin=0.05, higher_is_better=True) == "improved"
    assert verdict(up, margin=0.05, higher_is_better=False) == "regressed"
    assert verdict(up, margin=0.25, higher_is_better=True) == "inconclusive"
    down = _cmp(-0.2, -0.3, -0.1, 0.001)
    assert verdict(down, margin=0.05, higher_is_better=False) == "improved"
    assert verdict(down, margin=0.05, higher_is_better=True) == "regressed"
    # significant but small, interval inside the margin: equivalent
    small = _cmp(0.02, 0.01, 0.03, 0.001)
    assert verdict(small, margin=0.05, higher_is_better=True) == "equivalent"
    # interval excludes 0 but p is not below alpha: not a change
    assert verdict(_cmp(0.2, 0.1, 0.3, 0.2), margin=0.0, higher_is_better=True) == ("inconclusive")
    wide = _cmp(0.0, -0.2, 0.2, 0.9)
    assert verdict(wide, margin=0.1, higher_is_better=True) == "inconclusive"
    assert verdict(wide, margin=0.2, higher_is_better=True) == "equivalent"
    with pytest.raises(ValueError):
        verdict(up, margin=-0.1, higher_is_better=True)


def test_tiny_real_difference_with_large_n_is_equivalent() -> None:
    rng = np.random.default_rng(8)
    n = 5000
    b = rng.normal(0.6, 0.2, n)
    v = b + 0.005 + rng.normal(0, 0.1, n)
    w = np.ones(n)
    cmp = compare_paired(b, w, v, w, n_resamples=1000)
    assert verdict(cmp, margin=0.1, higher_is_better=True) == "equivalent"
    assert cmp.ci_high - cmp.ci_low < 0.02


# --- simulations ---------------------------------------------------------------------------


def _binary_data(rng: np.random.Generator, p0: float, p1: float, rho: float = 0.5):
    """Correlated 0/1 outcomes (Gaussian copula) with exact marginals p0 and p1."""
    z0 = rng.standard_normal(N)
    z1 = rho * z0 + math.sqrt(1 - rho**2) * rng.standard_normal(N)
    return (z0 < norm.ppf(p0)).astype(float), (z1 < norm.ppf(p1)).astype(float)


def _continuous_data(rng: np.random.Generator, effect: float):
    """Per-example scores sharing an example difficulty; variant shifted by `effect`."""
    difficulty = rng.normal(0.5, 0.15, N)
    return difficulty + rng.normal(0, 0.1, N), difficulty + effect + rng.normal(0, 0.1, N)


def _simulate(kind: str, effect: float, seed: int) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    ones = np.ones(N)
    counts = {"regressed": 0, "improved": 0, "covered": 0, "p<0.05": 0}
    for i in range(N_SIM):
        if kind == "binary":
            b, v = _binary_data(rng, 0.7, 0.7 + effect)
        else:
            b, v = _continuous_data(rng, effect)
        cmp = compare_paired(b, ones, v, ones, binary=kind == "binary", n_resamples=B_SIM, seed=i)
        result = verdict(cmp, margin=0.0, higher_is_better=True)
        counts[result] = counts.get(result, 0) + 1
        counts["covered"] += cmp.ci_low <= effect <= cmp.ci_high
        counts["p<0.05"] += cmp.p_value < 0.05
    return {k: c / N_SIM for k, c in counts.items()}


@pytest.mark.parametrize("kind", ["binary", "continuous"])
def test_simulation_no_effect_false_positives_and_coverage(kind: str) -> None:
    rates = _simulate(kind, 0.0, seed=11)
    assert rates["regressed"] <= 0.08
    assert rates["improved"] <= 0.08
    assert rates["p<0.05"] <= 0.08
    assert 0.90 <= rates["covered"] <= 0.98


@pytest.mark.parametrize(("kind", "effect"), [("binary", -0.25), ("continuous", -0.05)])
def test_simulation_large_effect_power_and_coverage(kind: str, effect: float) -> None:
    rates = _simulate(kind, effect, seed=12)
    assert rates["regressed"] >= 0.95
    assert rates["improved"] == 0.0
    assert 0.90 <= rates["covered"] <= 0.98


def test_import_does_not_pull_torch() -> None:
    code = "import sys, evalkit.decide.stats; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


# --- perplexity-type metrics, families of probes, detectable effects ------------------------


def _documents(rng: np.random.Generator, n_docs: int, ratio: float):
    """Per-document summed NLL and token counts: documents differ in length and in
    difficulty (the variance a bootstrap over documents must see); the variant's
    per-token NLL is the base's plus log(ratio), plus per-document noise."""
    tokens = rng.integers(200, 1500, n_docs).astype(float)
    difficulty = rng.normal(3.2, 0.4, n_docs)
    base = (difficulty + rng.normal(0, 0.05, n_docs)) * tokens
    var = (difficulty + math.log(ratio) + rng.normal(0, 0.05, n_docs)) * tokens
    return base, var, tokens


def _simulate_ratio(true_ratio: float, margin: float, seed: int, n_docs: int = 24) -> dict:
    rng = np.random.default_rng(seed)
    counts = {"regressed": 0, "covered": 0}
    for i in range(N_SIM):
        b, v, t = _documents(rng, n_docs, true_ratio)
        cmp = compare_paired(
            b, t, v, t, transform="exp", delta_kind="ratio", n_resamples=B_SIM, seed=i
        )
        counts["regressed"] += verdict(cmp, margin=margin, higher_is_better=False) == "regressed"
        # the true ratio of this design is exp(log(ratio)) up to the per-document noise
        counts["covered"] += cmp.ci_low <= true_ratio - 1.0 <= cmp.ci_high
    return {k: c / N_SIM for k, c in counts.items()}


def test_simulation_perplexity_over_documents() -> None:
    """24 documents, like the prose probe: with no change, a regression at most at about
    the nominal rate; a 20% rise against a 10% margin is found nearly always; intervals
    cover about as often as they claim (a bootstrap is a little anticonservative with
    24 units: the expanded percentile interval brings it from 0.89-0.91 to 0.91-0.93)."""
    null = _simulate_ratio(1.0, 0.0, seed=21)
    assert null["regressed"] <= 0.08
    assert 0.90 <= null["covered"] <= 0.99
    big = _simulate_ratio(1.2, 0.10, seed=22)
    assert big["regressed"] >= 0.95
    assert 0.90 <= big["covered"] <= 0.99


def test_holm_keeps_a_false_forgetting_flag_rare() -> None:
    """Seven probes, no true change anywhere: the chance that any one of them reads
    "regressed" stays at most about 5% with Holm; uncorrected it is about 1 - 0.975^7 = 16%."""
    rng = np.random.default_rng(31)
    ones = np.ones(N)
    flagged_holm = flagged_raw = 0
    for i in range(N_SIM):
        comps = []
        for k in range(7):
            b, v = _continuous_data(rng, 0.0)
            comps.append(compare_paired(b, ones, v, ones, n_resamples=B_SIM, seed=i * 7 + k))
        adjusted = holm([c.p_value for c in comps])
        flagged_raw += any(
            verdict(c, margin=0.0, higher_is_better=True) == "regressed" for c in comps
        )
        flagged_holm += any(
            verdict(dataclasses.replace(c, p_value=p), margin=0.0, higher_is_better=True)
            == "regressed"
            for c, p in zip(comps, adjusted, strict=True)
        )
    assert flagged_holm / N_SIM <= 0.06
    assert flagged_raw / N_SIM >= 0.10  # the correction matters


@pytest.mark.parametrize("kind", ["binary", "continuous"])
def test_mde_is_the_effect_found_with_about_80_percent_power(kind: str) -> None:
    """A comparison reports the smallest effect it could detect at its size (80% power at
    alpha 0.05); a true effect of that size is then found about 80% of the time."""
    rng = np.random.default_rng(41)
    ones = np.ones(N)
    b, v = _binary_data(rng, 0.7, 0.7) if kind == "binary" else _continuous_data(rng, 0.0)
    mde = compare_paired(b, ones, v, ones, binary=kind == "binary", n_resamples=2000).mde
    found = 0
    for i in range(N_SIM):
        if kind == "binary":
            b, v = _binary_data(rng, 0.7, 0.7 - mde)
        else:
            b, v = _continuous_data(rng, -mde)
        cmp = compare_paired(b, ones, v, ones, binary=kind == "binary", n_resamples=B_SIM, seed=i)
        found += cmp.p_value < 0.05 and cmp.delta < 0
    assert 0.65 <= found / N_SIM <= 0.95


def test_a_large_effect_on_few_units_survives_holm_over_many_probes() -> None:
    """Six documents, a KL of about 2.6 nats/token against the base's 0: zero lies far
    beyond every resample. The p-value must say how far (not just "< 1/B"), or Holm over
    nine probes would call the clearest forgetting inconclusive."""
    rng = np.random.default_rng(51)
    tokens = rng.integers(200, 260, 6).astype(float)
    kl = rng.normal(2.6, 0.3, 6) * tokens
    cmp = compare_paired(np.zeros(6), tokens, kl, tokens, n_resamples=2000)
    assert cmp.ci_low > 2.0
    assert cmp.p_value < 1e-4
    adjusted = holm([cmp.p_value] + [0.5] * 8)[0]
    assert (
        verdict(dataclasses.replace(cmp, p_value=adjusted), margin=0.25, higher_is_better=False)
        == "regressed"
    )


def test_no_flips_on_few_items_is_not_equivalence() -> None:
    # 12 items, none flips: a bootstrap interval would be [0, 0] ("equivalent"), but 12
    # items cannot rule out a flip rate of 1 in 10; with 240 items they can.
    from evalkit.decide.stats import compare_paired, verdict

    for n, expected in ((12, "inconclusive"), (240, "equivalent")):
        same = np.array([1.0, 0.0] * (n // 2))
        ones = np.ones(n)
        cmp = compare_paired(same, ones, same, ones, binary=True)
        assert cmp.delta == 0.0 and cmp.ci_low < 0.0 < cmp.ci_high
        assert verdict(cmp, margin=0.05, higher_is_better=True) == expected
        assert cmp.mde > 0.0
