"""The values a Plan is made of: tasks, their examples and metrics, and every setting the
later stages read. A Plan is the complete, frozen input of everything after it: no stage
after `build_plan` reads the suite."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from evalkit.scoring.metrics import MetricSpec, Needs


@dataclass(frozen=True)
class Example:
    """One evaluation item. Which fields are set depends on what the task's metrics need:
    `prompt` for generation and log-likelihood, `choices` for multiple choice, `text` for
    rolling perplexity. `row`: a golden example's dataset row (column, value) in column
    order, so judge templates can use any column without reading the data again."""

    id: str
    prompt: str = ""
    reference: str | None = None
    choices: tuple[str, ...] = ()
    answer: int | None = None
    accepted: tuple[str, ...] = ()
    text: str | None = None
    group: str | None = None
    row: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True)
class JudgeRef:
    """A judge a task names, checked against its columns when the plan is built: its
    metric (`judge:<name>`), the spec file, optional human labels, and the variants it
    judges (None: all)."""

    metric: str
    spec_path: Path
    labels: Path | None = None
    variants: tuple[str, ...] | None = None


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
    judges: tuple[JudgeRef, ...] = ()

    @property
    def needs(self) -> set[Needs]:
        return {m.needs for m in self.metrics}

    def metric(self, name: str) -> MetricSpec | None:
        return next((m for m in self.metrics if m.name == name), None)

    def judge(self, metric: str) -> JudgeRef | None:
        return next((j for j in self.judges if j.metric == metric), None)


@dataclass(frozen=True)
class StatsSettings:
    """How comparisons are computed: resolved once from the suite's `settings:` and the
    command line (`--seed`), then read by every stage that computes or prints an interval."""

    seed: int = 0
    confidence: float = 0.95
    resamples: int = 2000
    alpha: float = 0.05

    @property
    def ci_label(self) -> str:
        return ci_label(self.confidence)


def ci_label(confidence: float) -> str:
    """How an interval of this level is named in tables: 0.9 -> "90% CI"."""
    return f"{round(confidence * 100, 6):g}% CI"


GateRequire = Literal[
    "improved", "not_regressed", "no_forgetting", "at_least", "at_most", "max_judge_error_rate"
]


@dataclass(frozen=True)
class GateSpec:
    """A release condition, its references checked against the plan's tasks and metrics."""

    label: str
    variant: str
    require: GateRequire
    task: str | None = None
    metric: str | None = None
    value: float | None = None
    severity: Literal["error", "warning"] = "error"
    # "equivalence": pass only when proven within the margin (evalkit/decide/proof.py)
    proof: Literal["none", "equivalence"] = "none"


@dataclass(frozen=True)
class IntegritySettings:
    """What the integrity checks compare against: the suite's base model and its precision
    (merge tolerances depend on it), and the suite's `settings.integrity`."""

    base_model: str = ""
    dtype: str = "float32"
    load_in_4bit: bool = False
    adapter_min_effect: float = 1e-3
    merge_kl_tolerance: float | None = None
    merge_min_agreement: float | None = None
    on_failure: Literal["error", "warning"] = "error"


@dataclass(frozen=True)
class JudgeProvider:
    """Where judge calls go (the suite's `judge.provider`). Credentials are not part of the
    plan: they are read from the environment when the endpoint is resolved."""

    hf: str | None = None
    serve: str | None = None
    base_url: str | None = None
    model: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    base_url_env: str = "OPENAI_BASE_URL"
    concurrency: int = 4
    timeout_s: float = 60.0
    max_retries: int = 3
    max_tokens: int = 64
    temperature: float = 0.0
    structured: bool = True
    logprobs: bool = True
    n_ctx: int = 2048
    threads: int = 1
    batch_size: int = 16
    dtype: str = "float32"


@dataclass(frozen=True)
class JudgeSettings:
    provider: JudgeProvider = field(default_factory=JudgeProvider)
    # below this kappa on its labels a judge's gates are inconclusive
    min_kappa: float | None = None


@dataclass(frozen=True)
class Plan:
    """What a run will do: variants × tasks × metrics, and how its results are judged."""

    variants: list[str]
    tasks: list[TaskPlan] = field(default_factory=list)
    limit: int | None = None
    seed: int = 0
    stats: StatsSettings = field(default_factory=StatsSettings)
    gates: tuple[GateSpec, ...] = ()
    integrity: IntegritySettings = field(default_factory=IntegritySettings)
    judge: JudgeSettings | None = None
    # the suite's folder: relative model, adapter and judge paths resolve against it
    root: Path | None = None

    def task(self, name: str) -> TaskPlan | None:
        return next((t for t in self.tasks if t.name == name), None)
