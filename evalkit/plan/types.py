"""The values a Plan is made of: tasks, their examples and metrics."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from evalkit.scoring.metrics import MetricSpec, Needs


@dataclass(frozen=True)
class Example:
    """One evaluation item. Which fields are set depends on what the task's metrics need:
    `prompt` for generation and log-likelihood, `choices` for multiple choice, `text` for
    rolling perplexity."""

    id: str
    prompt: str = ""
    reference: str | None = None
    choices: tuple[str, ...] = ()
    answer: int | None = None
    accepted: tuple[str, ...] = ()
    text: str | None = None
    group: str | None = None


@dataclass(frozen=True)
class TaskPlan:
    name: str
    kind: Literal["golden", "probe"]
    description: str
    examples: list[Example]
    metrics: list[MetricSpec]
    system: str | None = None
    max_new_tokens: int = 128
    stop: tuple[str, ...] = ()

    @property
    def needs(self) -> set[Needs]:
        return {m.needs for m in self.metrics}

    def metric(self, name: str) -> MetricSpec | None:
        return next((m for m in self.metrics if m.name == name), None)


@dataclass(frozen=True)
class StatsSettings:
    """How comparisons are computed: resolved once from the suite's `settings:` and the
    command line (`--seed`), then read by every stage that computes or prints an interval."""

    seed: int = 0
    confidence: float = 0.95
    resamples: int = 2000
    alpha: float = 0.05


@dataclass(frozen=True)
class Plan:
    """What a run will do: variants × tasks × metrics."""

    variants: list[str]
    tasks: list[TaskPlan] = field(default_factory=list)
    limit: int | None = None
    seed: int = 0
    stats: StatsSettings = field(default_factory=StatsSettings)

    def task(self, name: str) -> TaskPlan | None:
        return next((t for t in self.tasks if t.name == name), None)
