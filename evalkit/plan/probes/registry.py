"""Probe registry: a probe is a name a suite lists under `probes: builtin:`, its default
margin, and the metrics it adds; probes that read the same data belong to one group, and
each chosen group becomes one probe task (so, for example, perplexity, bits per byte and KL
come from the same forward passes over the prose documents).

Grouping is declared (`ProbeDef.group`), not read from the probe's name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from evalkit.plan.types import Example, TaskPlan
from evalkit.scoring.metrics import MetricSpec, Needs


@dataclass(frozen=True)
class ProbeGroup:
    """The data a group of probes shares: one task named `task`."""

    task: str
    description: str
    examples: Callable[[], list[Example]]  # read on use, so listing probes reads no data
    max_new_tokens: int = 128
    system: str | None = None
    stop: tuple[str, ...] = ()


@dataclass(frozen=True)
class ProbeDef:
    """One probe: `metrics(margin)` are the metrics it adds to its group's task."""

    name: str
    group: str
    default_margin: float
    metrics: Callable[[float], list[MetricSpec]]
    description: str = ""

    def needs(self) -> set[Needs]:
        """The request kinds the probe needs from the engine (its kind)."""
        return {m.needs for m in self.metrics(self.default_margin)}


def probe_data_dir() -> Path:
    """Where the built-in probes' data lives (evalkit/plan/probe_data/)."""
    return Path(str(resources.files("evalkit.plan") / "probe_data"))


_GROUPS: dict[str, ProbeGroup] = {}
_PROBES: dict[str, ProbeDef] = {}


def register_probe_group(group: ProbeGroup) -> ProbeGroup:
    if group.task in _GROUPS and _GROUPS[group.task] != group:
        raise ValueError(f"probe group {group.task} is registered twice")
    _GROUPS[group.task] = group
    return group


def register_probe(probe: ProbeDef) -> ProbeDef:
    """Add a probe (at import time of its module); its group must be registered first."""
    if probe.group not in _GROUPS:
        raise ValueError(f"probe {probe.name}: no probe group '{probe.group}'")
    if probe.name in _PROBES and _PROBES[probe.name] != probe:
        raise ValueError(f"probe {probe.name} is registered twice")
    _PROBES[probe.name] = probe
    return probe


def probe_names() -> list[str]:
    """Registered probes, in registration order (groups first, then probes within)."""
    return [p.name for g in _GROUPS for p in _PROBES.values() if p.group == g]


def probe_def(name: str) -> ProbeDef:
    return _PROBES[name]


def build_probes(which: list[str], margins: dict[str, float]) -> list[TaskPlan]:
    """The probe tasks for the chosen probe names, one per group with a chosen probe, in
    registration order; a probe's margin is `margins[name]`, else its default."""
    chosen = set(which)
    unknown = chosen - set(_PROBES)
    if unknown:
        raise ValueError(f"unknown probe {sorted(unknown)[0]}")
    tasks = []
    for group in _GROUPS.values():
        probes = [p for p in _PROBES.values() if p.group == group.task and p.name in chosen]
        if not probes:
            continue
        metrics = [m for p in probes for m in p.metrics(margins.get(p.name, p.default_margin))]
        tasks.append(
            TaskPlan(
                group.task,
                "probe",
                group.description,
                group.examples(),
                metrics,
                system=group.system,
                max_new_tokens=group.max_new_tokens,
                stop=group.stop,
            )
        )
    return tasks
