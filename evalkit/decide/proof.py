"""Gates that prove: `proof: equivalence` on a `no_forgetting` or `not_regressed` gate.

A plain `no_forgetting` gate passes unless a probe *regressed*, so a probe too small to
tell (an "inconclusive" whose interval reaches past its margin) passes it. With
`proof: equivalence` every comparison the gate covers must be *proven* within its margin:

* a metric with a better direction: the interval's worse end lies within the margin
  (non-inferiority; an improvement passes, as a release gate on forgetting wants);
* a metric with no better direction (answer length): both ends lie within the margin.

Requiring every probe to pass is an intersection-union test, so the probes need no
multiplicity correction: each is read at the run's confidence level.

A comparison that is not proven fails the gate with its mde and the number of items it
would need: ``n × (mde / margin)²``, from the observed variance (mde scales as 1/√n), the
size at which the comparison would have 80% power to prove the margin if the true change
were zero.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from evalkit.decide.verdicts import Comparison


def probe_comparisons(comparisons: Sequence[Comparison], variant: str) -> list[Comparison]:
    """The variant's general-probe comparisons with its base (what no_forgetting covers)."""
    return [
        c
        for c in comparisons
        if c.variant == variant and c.task_kind == "probe" and c.baseline == "base"
    ]


def items_needed(n: int, mde: float, margin: float) -> int | None:
    """Items for the comparison's mde to reach ``margin``: ``ceil(n × (mde / margin)²)``;
    None when it cannot be estimated (no variance known, or a margin of 0)."""
    if n < 2 or margin <= 0.0 or not math.isfinite(mde):
        return None
    return math.ceil(n * (mde / margin) ** 2 - 1e-9)


def is_proven(c: Comparison) -> bool:
    """Whether the comparison's interval lies within its margin on the side that harms
    (both sides for a metric with no better direction)."""
    s, margin = c.stats, c.metric.margin
    if s.n < 2 or any(math.isnan(x) for x in (s.ci_low, s.ci_high)):
        return False
    if c.metric.direction == "higher":
        return s.ci_low >= -margin
    if c.metric.direction == "lower":
        return s.ci_high <= margin
    return -margin <= s.ci_low and s.ci_high <= margin


def _interval(c: Comparison) -> str:
    s = c.stats
    if c.metric.delta_kind == "ratio":
        return f"{s.delta:+.1%} [{s.ci_low:+.1%}, {s.ci_high:+.1%}]"
    return f"{s.delta:+.3f} [{s.ci_low:+.3f}, {s.ci_high:+.3f}]"


def _margin(c: Comparison, x: float) -> str:
    return f"{x:.1%}" if c.metric.delta_kind == "ratio" else f"{x:.3g}"


def why_not_proven(c: Comparison) -> str:
    """One line: the comparison, and what it would take to prove it."""
    s, margin = c.stats, c.metric.margin
    head = f"{c.task}/{c.metric.name} {c.verdict}: {_interval(c)}, margin {_margin(c, margin)}"
    if s.n < 2:
        return f"{head}; {s.n} scored item(s): too few to estimate the variance"
    if c.verdict == "regressed":
        return f"{head}, n={s.n}"
    if margin <= 0.0:
        return f"{head}; a margin of 0 cannot be proven: set the metric's margin"
    needed = items_needed(s.n, s.mde, margin)
    if needed is None:
        return f"{head}, n={s.n}; the variance could not be estimated"
    mde = f"mde {_margin(c, s.mde)} at n={s.n}"
    if needed <= s.n:
        # big enough to prove a zero change; the observed change itself is near the margin
        return f"{head}, {mde}: large enough, but the observed change is too close to the margin"
    return f"{head}, {mde}: about {needed} items needed to reach the margin"


def prove(comparisons: Sequence[Comparison], *, what: str = "probe") -> tuple[bool, str]:
    """(passed, detail) of a `proof: equivalence` gate over ``comparisons``: passed only
    when every one is proven within its margin. No comparison at all proves nothing."""
    if not comparisons:
        return False, f"no {what} comparisons in this run: nothing to prove"
    failing = [c for c in comparisons if not is_proven(c)]
    if failing:
        return False, "not proven: " + "; ".join(why_not_proven(c) for c in failing)
    if len(comparisons) == 1:
        c = comparisons[0]
        return True, (
            f"proven within margin: {_interval(c)}, margin {_margin(c, c.metric.margin)}, "
            f"n={c.stats.n}"
        )
    return True, f"proven within margin: {len(comparisons)} {what}s, " + ", ".join(
        f"{c.task}/{c.metric.name} {_interval(c)}" for c in comparisons
    )
