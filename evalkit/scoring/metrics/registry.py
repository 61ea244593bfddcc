"""Metric kinds: `kind` -> its definition (what it needs, direction, unit, aggregation,
default margin) and how it is computed from one record.

A metric kind is one module in this package that calls `register_metric` at import time;
every module here except `spec` and `registry` is imported on the first lookup, so adding
a metric is adding a module (and its test). The registry takes examples and records as
`Any`: the plan's types import this package, so naming them here would be a cycle.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from evalkit.scoring.metrics.spec import UNITS, Direction, MetricSpec, Needs

# (value, weight, reason-if-unscored) of one metric on one example
Scored = tuple[float, float, str | None]
# (spec, example, record) -> Scored; example is a plan Example, record an engine Record
Compute = Callable[[MetricSpec, Any, Any], Scored]
# (spec, examples, records) -> one Scored per example, for metrics that need every answer
ComputeSet = Callable[[MetricSpec, Sequence[Any], Sequence[Any]], list[Scored]]


@dataclass(frozen=True)
class MetricDef:
    """A metric kind. `golden`: a suite may declare it on a golden task (the plan checks a
    task's `type:` against these); `needs_reference`: it reads the task's
    `reference:`. `unit` may depend on the spec's params (a judge's kind)."""

    kind: str
    needs: Needs
    direction: Direction
    unit: str | Callable[[dict[str, Any]], str]
    label: str
    compute: Compute | None = None
    compute_set: ComputeSet | None = None
    default_margin: float = 0.0
    transform: Literal["identity", "exp"] = "identity"
    delta_kind: Literal["difference", "ratio"] = "difference"
    binary: bool = False
    golden: bool = False
    needs_reference: bool = False

    def unit_for(self, params: dict[str, Any]) -> str:
        return self.unit(params) if callable(self.unit) else self.unit

    def spec(
        self,
        name: str | None = None,
        margin: float | None = None,
        *,
        label: str | None = None,
        **params: Any,
    ) -> MetricSpec:
        """A MetricSpec of this kind; the name defaults to the kind, the margin to the
        kind's default."""
        return MetricSpec(
            name or self.kind,
            self.kind,
            self.needs,
            self.direction,
            self.default_margin if margin is None else margin,
            transform=self.transform,
            delta_kind=self.delta_kind,
            binary=self.binary,
            label=self.label if label is None else label,
            params=params,
            unit=self.unit_for(params),
        )


_METRICS: dict[str, MetricDef] = {}
_SKIP = {"spec", "registry"}
_loaded = False


def register_metric(definition: MetricDef) -> MetricDef:
    """Add a metric kind (at import time of its module). Refuses a unit outside UNITS and a
    kind with neither compute function, unless it is scored elsewhere (judges)."""
    if not callable(definition.unit) and definition.unit not in UNITS:
        raise ValueError(f"metric {definition.kind}: unit {definition.unit!r} is not in UNITS")
    if definition.kind in _METRICS and _METRICS[definition.kind] != definition:
        raise ValueError(f"metric kind {definition.kind} is registered twice")
    _METRICS[definition.kind] = definition
    return definition


def _load() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    here = Path(__file__).parent
    for mod in pkgutil.iter_modules([str(here)]):
        if mod.name not in _SKIP and not mod.name.startswith("_"):
            importlib.import_module(f"{__package__}.{mod.name}")


def metric_def(kind: str) -> MetricDef:
    """The definition of a metric kind. Raises ValueError for an unknown kind."""
    _load()
    if kind not in _METRICS:
        raise ValueError(f"unknown metric type {kind}")
    return _METRICS[kind]


def metric_kinds(*, golden: bool | None = None) -> list[str]:
    """Every registered kind (golden=True: those a suite may declare on a golden task)."""
    _load()
    return sorted(k for k, d in _METRICS.items() if golden is None or d.golden == golden)


def unit_of(spec: MetricSpec) -> str:
    """The spec's unit: its own, else what its kind declares, else "score"."""
    if spec.unit:
        return spec.unit
    try:
        return metric_def(spec.kind).unit_for(spec.params)
    except ValueError:
        return "score"


def golden_metric(kind: str, name: str, margin: float, **params: Any) -> MetricSpec:
    """The spec of a metric a suite declares on a golden task."""
    definition = metric_def(kind)
    if not definition.golden:
        raise ValueError(f"unknown metric type {kind}")
    # a text check names the JSON field it reads (as the suite's `field:` says)
    with_field = definition.needs == "generate" and params.get("field")
    label = definition.label + (f" ({params['field']})" if with_field else "")
    return definition.spec(name, margin, label=label, **params)
