"""Metrics: the spec a task carries (`spec`), the registry of metric kinds (`registry`),
and one module per family of kinds (`text`, `likelihood`, `judge`). Adding a kind is adding
a module here that calls `register_metric`; see the README's CONTRIBUTING section."""

from evalkit.scoring.metrics.registry import (
    Compute,
    ComputeSet,
    MetricDef,
    Scored,
    golden_metric,
    metric_def,
    metric_kinds,
    register_metric,
    unit_of,
)
from evalkit.scoring.metrics.spec import UNITS, Direction, MetricSpec, Needs

__all__ = [
    "UNITS",
    "Compute",
    "ComputeSet",
    "Direction",
    "MetricDef",
    "MetricSpec",
    "Needs",
    "Scored",
    "golden_metric",
    "metric_def",
    "metric_kinds",
    "register_metric",
    "unit_of",
]
