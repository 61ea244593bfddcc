"""Per-example samples with their judgments, and the judges' summaries."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from evalkit.outputs.model._base import Number, Part


class Reliability(Part):
    """The judge's agreement with human labels (`judge.labels`)."""

    kappa: Number | None
    weighted: bool
    agreement: Number | None
    n: int
    n_labels: int | None = None
    n_unscored: int | None = None
    errors: list[str] = Field(default_factory=list)
    retries_by_reason: dict[str, int] | None = Field(
        None, description="calibration calls retried, by reason"
    )
    confusion: dict[str, dict[str, int]] = Field(
        default_factory=dict,
        description="human label -> judge score -> count (plus 'unscored')",
    )
    swap_consistency: Number | None
    length_correlation: Number | None
    min_kappa: Number | None
    reliable: bool


class Judge(Part):
    """One (judge, task) of the run's LLM judges."""

    name: str
    task: str | None = None
    metric: str | None = Field(None, description="the metric its scores appear under, judge:<name>")
    kind: Literal["rubric", "reference", "pairwise"]
    model: str
    endpoint: str = Field(description="host[:port] only, never credentials")
    template_sha256: str
    scale: list[Number] = Field(
        min_length=2,
        max_length=2,
        description="[min, max]; pairwise: [0, 1], the variant's win value",
    )
    n_calls: int = Field(ge=0)
    n_cached: int | None = Field(None, ge=0)
    duration_s: Number | None = Field(
        None, description="wall time of this judge's calls (cached ones cost none)"
    )
    variants: list[str] | None = Field(
        None, description="the variants judged; the others' judgments say 'not judged'"
    )
    n_unscored: int = Field(ge=0)
    error_rate: Number = Field(ge=0, le=1)
    errors_by_reason: dict[str, int]
    retries_by_reason: dict[str, int] | None = Field(
        None, description="retried calls by reason (429, http 5xx, timeout, connection)"
    )
    swap_consistency: Number | None = Field(
        None,
        description="pairwise: share of the run's pairs whose winner survives swapping A and B",
    )
    reliability: Reliability | None


class Judgment(Part):
    judge: str
    score: Number | None = Field(
        description="null when unscored (see error); pairwise: the variant's win value, "
        "0.5 for the base"
    )
    reason: str | None = Field(description="the judge's rationale")
    error: str | None = Field(description="why unscored")
    prompt: str = Field(description="the rendered prompt (pairwise: both orders)")
    raw: str = Field(description="the judge's raw reply (pairwise: both orders)")
    weighted_score: Number | None = Field(
        None,
        description="probability-weighted score over the scale, where top_logprobs were available",
    )


class Sample(Part):
    task: str
    id: str
    prompt: str
    reference: str | None
    outputs: dict[str, str | None]
    scores: dict[str, dict[str, Number | None]]
    judgments: dict[str, list[Judgment]] | None = Field(
        None,
        description="variant -> a list with one judgment per judge of the task (a list, so "
        "a task can have several judges)",
    )
