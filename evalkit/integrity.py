"""Integrity checks: is each variant what it claims to be?

- adapter_applied: an adapter whose outputs equal the base's was never applied (or is all
  zeros); its scores would silently equal the base's.
- merge_agrees: a merged variant must compute what its adapter computes, up to float
  error (about 1e-4 in fp32 for the default model; more in half precision or 4-bit).
"""

from __future__ import annotations

from dataclasses import dataclass

from evalkit.config import IntegrityConfig
from evalkit.models.engine import Engine

PROBE_TEXTS = (
    "The river rose after three days of rain, and the village moved its boats uphill.",
    "Question: What is seven times eight? Answer: fifty-six.",
    '{"type": "payment", "obligor": "Customer", "summary": "Invoices are due in 30 days."}',
)


@dataclass(frozen=True)
class IntegrityResult:
    check: str
    variant: str
    passed: bool
    value: float
    tolerance: float
    detail: str


def check_variants(
    engine: Engine, variants: list[str], settings: IntegrityConfig
) -> list[IntegrityResult]:
    import numpy as np

    logits = {}
    for v in variants:
        with engine.variant(v):
            logits[v] = engine.probe_logits(list(PROBE_TEXTS))

    def max_diff(a: str, b: str) -> tuple[float, float]:
        diffs = [float(np.abs(x - y).max()) for x, y in zip(logits[a], logits[b], strict=True)]
        agree = [
            float((x.argmax(-1) == y.argmax(-1)).mean())
            for x, y in zip(logits[a], logits[b], strict=True)
        ]
        return max(diffs), float(np.mean(agree))

    results = []
    for v in variants:
        if v == "base":
            continue
        if v.startswith("merged:"):
            adapter = v.removeprefix("merged:")
            if adapter not in logits:
                with engine.variant(adapter):
                    logits[adapter] = engine.probe_logits(list(PROBE_TEXTS))
            diff, agree = max_diff(v, adapter)
            results.append(
                IntegrityResult(
                    "merge_agrees",
                    v,
                    diff <= settings.merge_tolerance,
                    diff,
                    settings.merge_tolerance,
                    f"max |Δlogit| vs {adapter} {diff:.2e}, top-1 agreement {agree:.1%}",
                )
            )
        else:
            diff, agree = max_diff(v, "base")
            results.append(
                IntegrityResult(
                    "adapter_applied",
                    v,
                    diff > settings.adapter_min_effect,
                    diff,
                    settings.adapter_min_effect,
                    f"max |Δlogit| vs base {diff:.3g}, top-1 agreement {agree:.1%}"
                    + (
                        ""
                        if diff > settings.adapter_min_effect
                        else ": the adapter changes nothing (all-zero weights, or not applied)"
                    ),
                )
            )
    return results
