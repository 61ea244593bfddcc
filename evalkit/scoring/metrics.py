"""Metrics: what a number means (direction, aggregation, how deltas are taken) and how it
is computed from one record.

Every metric yields, per example, a value and a weight; the task score is
transform(sum(values) / sum(weights)). Accuracy: values 0/1, weight 1. Perplexity: value
the summed NLL of the example's tokens, weight its token count, transform exp. A value
that cannot be computed is NaN with a reason ("unscored"), never a silent 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

# rolling_kl: a rolling NLL plus the KL of the base from the variant on the same windows
Needs = Literal["generate", "loglikelihood", "choice", "rolling", "rolling_kl"]
Direction = Literal["higher", "lower", "none"]


@dataclass(frozen=True)
class MetricSpec:
    """One metric of one task."""

    name: str
    kind: str
    needs: Needs
    direction: Direction
    margin: float
    transform: Literal["identity", "exp"] = "identity"
    delta_kind: Literal["difference", "ratio"] = "difference"
    binary: bool = False
    label: str = ""
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def higher_is_better(self) -> bool | None:
        return {"higher": True, "lower": False, "none": None}[self.direction]


def golden_metric(kind: str, name: str, margin: float, **params: Any) -> MetricSpec:
    """The spec of a metric a suite declares on a golden task."""
    if kind == "reference_perplexity":
        return MetricSpec(
            name,
            kind,
            "loglikelihood",
            "lower",
            margin,
            transform="exp",
            delta_kind="ratio",
            label="reference perplexity",
            params=params,
        )
    labels = {
        "exact_match": "exact match",
        "contains": "contains",
        "regex": "regex match",
        "json_valid": "valid JSON",
        "json_field_match": "JSON field match",
    }
    if kind not in labels:
        raise ValueError(f"unknown metric type {kind}")
    label = labels[kind] + (f" ({params['field']})" if params.get("field") else "")
    return MetricSpec(
        name, kind, "generate", "higher", margin, binary=True, label=label, params=params
    )
