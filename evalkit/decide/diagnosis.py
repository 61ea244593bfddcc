"""Comparisons -> a per-variant diagnosis: has the variant lost knowledge, or only drifted
in format?

A format adapter that keeps multiple-choice accuracy (scored by log-likelihood, which does
not see the answer's format) and prose perplexity, but answers open questions in its
trained format, has drifted in *format*; one whose multiple-choice accuracy or perplexity
regressed has lost *knowledge*. The probe metrics are read by kind, so a suite's own
multiple-choice, open-answer and prose probes count as the built-in ones do:

- knowledge: `choice_accuracy` and `choice_accuracy_norm` (multiple choice),
  `rolling_perplexity` and `bits_per_byte` (prose);
- format: `accepted_match` (open answers) and `open_shift` (answer tokens outside the
  base's top-k);
- context, not deciding: `top1_agreement` and `kl_from_base` (how far general prose moved),
  stated beside the llama.cpp quantization anchors.

The rule (the verdicts are the comparison's, at the run's margins and alpha):
- `knowledge_loss`: a knowledge metric regressed;
- `format_drift`: a format metric regressed and every knowledge metric is equivalent;
- `unclear`: a format metric regressed but a knowledge metric is inconclusive (too few
  items to show it kept within its margin), so the two cannot be told apart;
- `none`: no knowledge or format metric regressed.
A variant whose run has no knowledge metric at all gets no diagnosis.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from evalkit.decide.verdicts import Comparison
from evalkit.plan.types import Plan
from evalkit.scoring.metrics import unit_of
from evalkit.scoring.metrics.drift import QUANTIZATION_ANCHORS

KNOWLEDGE_KINDS = ("choice_accuracy", "choice_accuracy_norm", "rolling_perplexity", "bits_per_byte")
FORMAT_KINDS = ("accepted_match", "open_shift")
CONTEXT_KINDS = ("top1_agreement", "kl_from_base")

Kind = Literal["knowledge_loss", "format_drift", "unclear", "none"]


@dataclass(frozen=True)
class Evidence:
    """One comparison behind a diagnosis, with its figures as text."""

    role: Literal["knowledge", "format", "context"]
    task: str
    metric: str
    verdict: str
    figure: str  # e.g. "-12.5 points [-17.1, -7.9] (margin 5.0)"


@dataclass(frozen=True)
class Diagnosis:
    variant: str
    kind: Kind
    summary: str  # one sentence with the deciding figures
    evidence: list[Evidence] = field(default_factory=list)


def diagnose(plan: Plan, comparisons: list[Comparison]) -> dict[str, Diagnosis]:
    """Variant -> its diagnosis, for every non-base variant with a knowledge probe metric,
    from its comparisons with the base (not with an earlier run)."""
    out: dict[str, Diagnosis] = {}
    for variant in plan.variants[1:]:
        mine = [
            c
            for c in comparisons
            if c.variant == variant and c.baseline == "base" and c.task_kind == "probe"
        ]
        knowledge = [c for c in mine if c.metric.kind in KNOWLEDGE_KINDS]
        if not knowledge:
            continue
        fmt = [c for c in mine if c.metric.kind in FORMAT_KINDS]
        context = [c for c in mine if c.metric.kind in CONTEXT_KINDS]
        out[variant] = _one(variant, knowledge, fmt, context)
    return out


def _one(
    variant: str, knowledge: list[Comparison], fmt: list[Comparison], context: list[Comparison]
) -> Diagnosis:
    lost = [c for c in knowledge if c.verdict == "regressed"]
    drifted = [c for c in fmt if c.verdict == "regressed"]
    unsure = [c for c in knowledge if c.verdict != "equivalent" and c.verdict != "regressed"]
    kind: Kind
    if lost:
        kind = "knowledge_loss"
        text = f"knowledge loss: {_list(lost)} regressed"
        if drifted:
            text += f"; format moved too ({_list(drifted)})"
    elif drifted and not unsure:
        kind = "format_drift"
        text = (
            f"format drift: {_list(drifted)} regressed while {_names(knowledge)} stayed equivalent"
        )
    elif drifted:
        kind = "unclear"
        text = (
            f"format or knowledge: {_list(drifted)} regressed, but {_list(unsure)} "
            "cannot be shown equivalent (too few items for its margin)"
        )
    else:
        kind = "none"
        text = "no knowledge loss or format drift: no knowledge or format probe regressed"
    top1 = [c for c in context if c.metric.kind == "top1_agreement"]
    if top1:
        text += "; " + _top1_context(top1[0])
    evidence = (
        [_evidence("knowledge", c) for c in knowledge]
        + [_evidence("format", c) for c in fmt]
        + [_evidence("context", c) for c in context]
    )
    return Diagnosis(variant, kind, text + ".", evidence)


def _evidence(role: Literal["knowledge", "format", "context"], c: Comparison) -> Evidence:
    return Evidence(role, c.task, c.metric.name, c.verdict, figure(c))


def figure(c: Comparison) -> str:
    """The comparison's delta, interval and margin in the metric's unit: points for a
    fraction, percent for a ratio, the plain number otherwise."""
    unit = unit_of(c.metric)
    if c.metric.delta_kind == "ratio":
        scale, suffix, each = 100.0, "%", "%"
    elif unit == "fraction":
        scale, suffix, each = 100.0, " points", ""
    else:
        scale, suffix, each = 1.0, "", ""
    digits = 1 if scale == 100.0 else 3

    def num(x: float, sign: bool = True) -> str:
        if math.isnan(x):
            return "n/a"
        return f"{x * scale:{'+' if sign else ''}.{digits}f}"

    s = c.stats
    return (
        f"{num(s.delta)}{suffix} [{num(s.ci_low)}{each}, {num(s.ci_high)}{each}] "
        f"(margin {num(c.metric.margin, sign=False)}{each})"
    )


def _top1_context(c: Comparison) -> str:
    anchors = ", ".join(f"{name} {value:.1%}" for name, value in QUANTIZATION_ANCHORS)
    value = "n/a" if math.isnan(c.stats.variant) else f"{c.stats.variant:.1%}"
    return (
        f"top-1 agreement with the base on prose {value} "
        f"(llama.cpp anchors on Llama-3-8B vs fp16: {anchors})"
    )


def _names(cs: list[Comparison]) -> str:
    return ", ".join(f"{c.task} {c.metric.name}" for c in cs)


def _list(cs: list[Comparison]) -> str:
    return "; ".join(f"{c.task} {c.metric.name} {figure(c)}" for c in cs)


def as_jsonable(diagnoses: dict[str, Diagnosis]) -> dict[str, dict[str, object]]:
    """The `diagnosis` entry of each variant in results.json."""
    return {
        v: {
            "kind": d.kind,
            "summary": d.summary,
            "evidence": [
                {
                    "role": e.role,
                    "task": e.task,
                    "metric": e.metric,
                    "verdict": e.verdict,
                    "figure": e.figure,
                }
                for e in d.evidence
            ],
        }
        for v, d in diagnoses.items()
    }
