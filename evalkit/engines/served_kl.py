"""KL(base ‖ variant) and top-1 agreement from a server's top-k logprobs.

A server returns, at each position, the k most likely next tokens with their logprobs,
not the distribution. From the base's top-k and the variant's top-k at the same position
this module computes a **lower bound** on the KL; the probe's per-token KL is the mean of
these bounds, so a served `kl_from_base` is never above the exact KL of the distributions
the server computes (up to its rounding) and is marked approximated in the outputs.
(Against another engine's exact figure the server's own numerics, e.g. 4-bit kernels, add
their own difference on top.)

Notation at one position: p is the base's next-token distribution, q the variant's.
What is known:

- B, the base's listed pieces, with p_t exact; V, the variant's, with q_t exact.
- τ, the variant's k-th largest listed probability: a token the variant did not list has
  q_t ≤ τ (the listing is its top-k; a server may list the prompt's own token besides).

Partition the vocabulary into cells: each t in C = B ∩ V alone, each t in D = B \\ V
alone, and the rest R (every other token, the variant's listed tokens outside B among
them). Merging tokens into a cell never raises a KL (the log-sum inequality:
Σ_{t∈R} p_t log(p_t/q_t) ≥ P_R log(P_R/Q_R)), so

    KL(p ‖ q) ≥ Σ_{t∈C} p_t log(p_t/q_t) + Σ_{t∈D} p_t log(p_t/q_t) + P_R log(P_R/Q_R)

with P_R = 1 − Σ_{t∈B} p_t known (the base's tail mass) and the variant's q_t (t ∈ D) and
Q_R unknown, but constrained: 0 < q_t ≤ τ, Q_R ≥ Σ_{t∈V\\B} q_t (=: y_min), and
Σ_{t∈D} q_t + Q_R = 1 − Σ_{t∈C} q_t (=: S). The true values are one feasible point, so
the **minimum of the right-hand side over all feasible (q_D, Q_R)** is a lower bound on
the KL. It is convex and separable; the KKT conditions give q_t = min(p_t ν, τ) and
Q_R = max(P_R ν, y_min) for the one ν with Σ q_t + Q_R = S, found exactly by walking the
breakpoints (`_allocate`). (It leaves some knowledge unused, so it is not the tightest
bound possible: the base's unlisted tokens are each at most its k-th probability too.)

Compared with the plainer Σ_{t∈B} p_t (log p_t − log q̂_t), q̂_t = τ outside V, plus a
tail term: each D term there takes q_t = τ while the tail takes the same mass as free,
which counts it twice; the minimisation above spends the variant's mass once, so it is
never lower (with the same floor on the free mass, below). E.g. p = (.6, .3, .1),
q = (.1, .2, .7), k = 1: exact KL 1.002, this bound 0.192, the plain form (tail
P_T log(P_T / (1 − Σ_{B∩V} q_t))) below 0; at k = 2 this bound is 1.002, exact.

What that means in use:

- Where both top-k lists hold nearly all the mass (P_R and the variant's unlisted mass
  small), the bound is close to the KL; a token the base finds likely and the variant
  dropped out of its top-k counts with q_t ≤ τ, so a moved distribution shows.
- The tail is where it is loose: mass the base puts outside its own top-k is compared
  only in aggregate (P_R against Q_R). Measured on the default model with the legal-r16
  adapter, whose exact KL is 0.18-0.19 nats per token on prose: on transformers' own full
  distributions cut to their top-k, the bound is 68.7% of the exact KL at k = 20 and
  89.0% at k = 200 (tests/engines/test_served_kl.py); served by llama.cpp as a LoRA on the
  Q4_1 base, 67.3% and 88.8% of transformers' exact KL on the same texts
  (tests/engines/test_served_modes.py; 73% at k = 20 and 89% at k = 100 on 2048 positions
  of eight documents). So the gap is the top-k, not the server: raise `top_logprobs`.
- Rounding: a server's listed probabilities may sum past 1 by ~1e-6; a negative tail
  mass counts as 0, and the variant's free mass (S − y_min) never goes below `MASS_EPS`,
  so rounding cannot make the bound blow up (raising the free mass only lowers the
  bound). Per position the bound is clamped at 0, as the hf engine clamps its exact
  per-position KL.
- Pieces the tokenizer cannot tell apart (`ambiguous`) are left out of C and D and
  counted in R on both sides (a listed ambiguous variant piece adds to y_min).

Top-1 agreement needs no approximation: each side's most likely piece is the first of
its listing (ties broken by the first listed, as argmax takes the first maximum).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

MASS_EPS = 1e-6


def kl_lower_bound(
    base: Mapping[str, float],
    variant: Mapping[str, float],
    k: int,
    ambiguous: Callable[[str], bool] = lambda _: False,
) -> float:
    """The lower bound on KL(base ‖ variant) (nats) at one position, from each side's
    listed logprobs (piece -> logprob; `k`: how many the server was asked for)."""
    if not base or not variant:
        raise ValueError("a top-k listing is empty")
    values = sorted(variant.values(), reverse=True)
    cap = math.exp(values[min(k, len(values)) - 1])  # every unlisted q_t is at most this
    p = {t: lp for t, lp in base.items() if not ambiguous(t)}  # ambiguous: into R
    kl_c = 0.0
    listed_p = 0.0
    in_c_q = 0.0
    d: list[float] = []
    for t, lp in p.items():
        pt = math.exp(lp)
        listed_p += pt
        lq = variant.get(t)
        if lq is None:
            d.append(pt)
        else:
            kl_c += pt * (lp - lq)
            in_c_q += math.exp(lq)
    y_min = sum(math.exp(lq) for t, lq in variant.items() if t not in p or ambiguous(t))
    p_rest = max(1.0 - listed_p, 0.0)
    s = max(1.0 - in_c_q, MASS_EPS)
    y_min = min(y_min, s - MASS_EPS) if d else min(y_min, s)
    xs, y = _allocate(d, cap, p_rest, max(y_min, 0.0), s)
    rest = sum(pt * math.log(pt / x) for pt, x in zip(d, xs, strict=True))
    if p_rest > 0.0:
        rest += p_rest * math.log(p_rest / y)
    return max(kl_c + rest, 0.0)


def _allocate(
    ps: list[float], cap: float, p_rest: float, y_min: float, s: float
) -> tuple[list[float], float]:
    """The minimiser of Σ p_t log(p_t/x_t) + p_rest log(p_rest/y) subject to
    0 < x_t ≤ cap, y ≥ y_min, Σ x_t + y = s: x_t = min(p_t ν, cap) and y = max(p_rest ν,
    y_min) (y = what is left when p_rest is 0: its term vanishes) for the ν where the sum
    reaches s. The sum is piecewise linear and nondecreasing in ν, with breakpoints where
    an x_t reaches the cap (cap / p_t) and where y leaves its floor (y_min / p_rest)."""
    if not ps:
        return [], s
    y_moves = p_rest > 0.0
    events = sorted([(cap / pt, pt) for pt in ps])
    if y_moves and y_min > 0.0:
        events.append((y_min / p_rest, -1.0))  # marker: y leaves its floor
        events.sort()
    y_free = y_moves and y_min <= 0.0  # y grows with ν from the start
    slope = sum(ps) + (p_rest if y_free else 0.0)
    const = 0.0 if y_free else y_min
    nu = math.inf
    for at, w in events:
        if slope * at + const >= s:
            nu = (s - const) / slope
            break
        if w < 0.0:
            slope += p_rest
            const -= y_min
        else:
            slope -= w
            const += cap
    else:
        if slope > 0.0:
            nu = (s - const) / slope
    xs = [min(pt * nu, cap) for pt in ps]
    y = max(p_rest * nu, y_min) if y_moves else s - sum(xs)
    return xs, y


def top1_agrees(base: Mapping[str, float], variant: Mapping[str, float]) -> bool:
    """Whether both sides' most likely piece is the same."""
    return max(base, key=lambda t: base[t]) == max(variant, key=lambda t: variant[t])
