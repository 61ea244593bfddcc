"""The figures: tasks and their metrics, aggregates, comparisons, forgetting, integrity
checks and gates."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from evalkit.outputs.model._base import Number, Part

DeltaKind = Literal["difference", "ratio"]


class TaskMetric(Part):
    name: str = Field(min_length=1)
    label: str
    higher_is_better: bool | None = Field(
        description="null: no better direction (a drift either way is a change)"
    )
    margin: Number | None = Field(ge=0)
    delta_kind: DeltaKind
    unit: str | None = Field(
        None,
        description="The metric's unit, from the metric registry "
        "(evalkit/scoring/metrics/spec.py UNITS): fraction values show as percentages and "
        "their differences as percentage points, every other unit as a plain number. "
        "Results written before units were recorded have none: then a difference metric "
        "whose values all lie in [0, 1] is shown as a fraction.",
    )


class Task(Part):
    name: str = Field(min_length=1)
    kind: Literal["golden", "probe"]
    description: str = ""
    n: int = Field(ge=0)
    metrics: list[TaskMetric]


class MetricValue(Part):
    task: str
    variant: str
    metric: str
    value: Number | None
    n: int = Field(ge=0)
    n_unscored: int = Field(ge=0)
    unscored_reasons: dict[str, int] | None = Field(
        None,
        description="Why examples are unscored: reason -> how many (e.g. the engine "
        "could not compute a log-likelihood). Written only where some are; files from "
        "before it lack it.",
    )


class Comparison(Part):
    task: str
    variant: str
    baseline: str
    metric: str
    base_value: Number | None
    value: Number | None
    delta: Number | None = Field(
        description="difference: value - base_value; ratio: value / base_value - 1"
    )
    ci_low: Number | None
    ci_high: Number | None
    p_value: Number | None = Field(ge=0, le=1)
    p_adjusted: Number | None = Field(ge=0, le=1)
    test: Literal["mcnemar-exact", "paired-bootstrap"] | None
    verdict: Literal["improved", "regressed", "equivalent", "inconclusive"]
    margin: Number | None = Field(ge=0)
    delta_kind: DeltaKind
    n: int = Field(ge=0)
    mde: Number | None


class ForgettingProbe(Part):
    task: str
    metric: str
    delta: Number | None
    ci_low: Number | None
    ci_high: Number | None
    margin: Number | None = Field(ge=0)


class Forgetting(Part):
    flagged: bool
    probes: list[ForgettingProbe]


class Integrity(Part):
    check: Literal[
        "adapter_applied", "merge_agrees", "base_matches", "tokenizer_matches", "engine_parity"
    ]
    variant: str
    passed: bool
    value: Number | None
    tolerance: Number | None
    detail: str
    skipped: bool = Field(
        False,
        description="true when the check was not made (engine.reference: skip); passed is "
        "then false and detail says why. Absent in files from before 1.1.",
    )


class Gate(Part):
    name: str = Field(min_length=1)
    passed: bool
    severity: Literal["error", "warning"]
    detail: str
    inconclusive: bool = Field(
        False,
        description="true when the gate is on a judge that failed its calibration "
        "(min_kappa); such a gate is reported as 'inconclusive: judge unreliable', with "
        "passed false and severity warning, and never fails the run. Written for every "
        "gate; files from before that lack it read as false.",
    )
