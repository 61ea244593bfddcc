"""What a metric of a task is: its name, what it needs from the engine, how its number is
read (direction, unit, aggregation, how deltas are taken).

Every metric yields, per example, a value and a weight; the task score is
transform(sum(values) / sum(weights)). Accuracy: values 0/1, weight 1. Perplexity: value
the summed NLL of the example's tokens, weight its token count, transform exp. A value
that cannot be computed is NaN with a reason ("unscored"), never a silent 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

# rolling_kl: a rolling NLL plus the KL of the base from the variant on the same windows;
# open_shift: a generated answer, then the base teacher-forced over it (implies generate)
Needs = Literal["generate", "loglikelihood", "choice", "rolling", "rolling_kl", "open_shift"]
Direction = Literal["higher", "lower", "none"]

# The unit a metric's task-level value is in. Outputs show "fraction" as a percentage
# (its differences as percentage points) and every other unit as a plain number, so a KL of
# 0.18 nats per token never prints as "18.0%". Add a unit here when a metric needs one.
UNITS: dict[str, str] = {
    "fraction": "a share in [0, 1] (accuracy, win rate, share of n-grams)",
    "perplexity": "exp(mean NLL per token)",
    "bits_per_byte": "bits per UTF-8 byte",
    "nats_per_token": "nats per token (KL)",
    "words": "a count of words",
    "score": "a point on a judge's scale, or another plain score",
}


@dataclass(frozen=True)
class MetricSpec:
    """One metric of one task. `unit` is one of UNITS; empty means "the unit the metric
    kind declares" (see `evalkit.scoring.metrics.unit_of`)."""

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
    unit: str = ""

    @property
    def higher_is_better(self) -> bool | None:
        return {"higher": True, "lower": False, "none": None}[self.direction]
