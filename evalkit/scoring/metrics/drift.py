"""Metrics that tell format drift from knowledge loss: how far the variant's predictions
moved from the base's, whichever answer is right.

- `top1_agreement` (prose): the share of positions on the prose documents where the
  variant's most likely next token is the base's, counted in the KL's forward passes.
  llama.cpp's `perplexity --kl-divergence` reports the same figure for quantized models;
  on Llama-3-8B: bf16 vs fp16 99.7%, q8_0 97.7%, q4_K_M 91.9% (mean KL 0.031). An adapter
  that moves general prose more than 4-bit quantization does deserves a look.
- `open_shift` (open answers): the share of the variant's generated answer tokens that
  fall outside the base's top-k at the same prefix (the base teacher-forced over the
  variant's answer). Alignment that changes only style shifts a few percent of tokens
  (URIAL's token-distribution-shift analysis: about 5-8%); an adapter answering in its
  trained format shifts many more.
"""

from __future__ import annotations

import math

from evalkit.engines.base import OPEN_SHIFT_TOP_K
from evalkit.engines.records import Record
from evalkit.plan.types import Example
from evalkit.scoring.metrics.registry import MetricDef, Scored, register_metric
from evalkit.scoring.metrics.spec import MetricSpec

# llama.cpp's measured top-1 agreement with fp16 on Llama-3-8B, shown beside prose-top1
QUANTIZATION_ANCHORS: tuple[tuple[str, float], ...] = (
    ("bf16", 0.997),
    ("q8_0", 0.977),
    ("q4_K_M", 0.919),
)
# The top-1 agreement lost grows with the square root of the KL, about the same on two
# very different models: Llama-3-8B q4_K_M loses 8.1 points at a KL of 0.031 nats per
# token (0.46 sqrt(KL)), the demo's legal-r16 on SmolLM2-135M 17.9 points at 0.180 (0.42).
TOP1_PER_SQRT_KL = 0.44


def top1_margin_for_kl(kl_margin: float) -> float:
    """The top-1 agreement margin that matches a KL(base‖variant) margin (nats per
    token), so the prose KL probe's one margin governs both: 0.15 -> 0.17, 0.25 -> 0.22."""
    return round(TOP1_PER_SQRT_KL * math.sqrt(max(kl_margin, 0.0)), 3)


NO_SHIFT = "no open-shift computed (the engine cannot score the base's top-k)"


def _top1(spec: MetricSpec, ex: Example, rec: Record) -> Scored:
    if not rec.n_tokens or not rec.kl_tokens:
        return math.nan, 0.0, "empty text"
    if rec.top1 is None:
        return math.nan, 0.0, "no top-1 agreement computed"
    # weighted by the positions counted: the task value is agreeing positions / positions
    return float(rec.top1), float(rec.kl_tokens), None


def _open_shift(spec: MetricSpec, ex: Example, rec: Record) -> Scored:
    if rec.output is None:
        return math.nan, 1.0, "no output"
    if rec.shift_tokens is None or rec.shift_outside is None:
        return math.nan, 0.0, NO_SHIFT
    if not rec.shift_tokens:  # no token to shift, and the statistics need a weight
        return math.nan, 0.0, "empty answer"
    return float(rec.shift_outside), float(rec.shift_tokens), None


# The default margin matches the prose KL probe's default (0.15 nats per token): 17 points.
register_metric(
    MetricDef(
        "top1_agreement",
        "rolling_kl",
        "higher",
        "fraction",
        "top-1 agreement with base (llama.cpp, Llama-3-8B: q8_0 97.7%, q4_K_M 91.9%)",
        compute=_top1,
        default_margin=top1_margin_for_kl(0.15),
    )
)
# Margin 0.10: a style-only change moves about 5-8% of tokens outside the base's top-3
# (URIAL), so a shift within 10 points is style. The base's own greedy answers are inside
# its top-3 by construction (the default model: 0 of 1070 tokens on 60 questions); the
# demo's legal-r16 shifts 5.1% (50 of 986).
register_metric(
    MetricDef(
        "open_shift",
        "open_shift",
        "lower",
        "fraction",
        f"answer tokens outside the base's top-{OPEN_SHIFT_TOP_K}",
        compute=_open_shift,
        default_margin=0.10,
    )
)
