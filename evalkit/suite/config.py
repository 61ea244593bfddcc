"""The suite file as typed, validated config.

Every model forbids unknown keys, so a typo is an error that names the key, its line and
the key that was probably meant, instead of a setting silently ignored. Checks that need
more than one field (an adapter named by a gate exists, a data file exists) live in
`evalkit.suite.loader`, which loads this config.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    field_validator,
    model_validator,
)

from evalkit.suite.engine_config import EngineConfig, ParityConfig, VllmConfig  # noqa: F401

# the probe kinds; their models are imported by name so typo hints know their keys
from evalkit.suite.probes_config import (  # noqa: F401
    ChoiceMargins,
    KindProbe,
    MultipleChoiceProbe,
    OpenAnswerMargins,
    OpenAnswerProbe,
    OpenEndedMargins,
    OpenEndedProbe,
    ProbeDataConfig,
    ProbeGenerationConfig,
    ProseMargins,
    ProseProbe,
    extra_probes_type,
)
from evalkit.suite.strict import StrictModel
from evalkit.suite.train_settings import SETTINGS, ComputeDtype, SaveDtype, Schedule

NAME_RE = r"^[A-Za-z0-9_.-]+$"


class BaseModelConfig(StrictModel):
    """The base model every variant is built on."""

    model: str = Field(description="builtin:NAME, a model directory, a .gguf file or org/name")
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    load_in_4bit: StrictBool = False
    device: Literal["auto", "cpu", "cuda"] = "auto"


class TrainDataConfig(StrictModel):
    """Training pairs: `prompt`/`completion` columns, Jinja templates over the columns
    (as task prompts are), or a chat column of {role, content} messages."""

    path: str
    prompt: str | None = Field(default=None, description="a Jinja template over the columns")
    completion: str | None = Field(default=None, description="a Jinja template")
    prompt_column: str = "prompt"
    completion_column: str = "completion"
    messages: str | None = Field(default=None, description="a chat column instead")
    system: str | None = None


PosInt = Annotated[StrictInt, Field(gt=0)]
PosFloat = Annotated[StrictFloat, Field(gt=0)]


def _setting(name: str) -> Any:
    """A `train:` field with the default, bounds and description of `LoraSettings`'s."""
    s = SETTINGS[name]
    default: dict[str, Any] = (
        {"default_factory": lambda: list(s.default)} if isinstance(s.default, tuple)
        else {"default": s.default}
    )  # fmt: skip
    return Field(**default, description=s.help, gt=s.above, ge=s.minimum, lt=s.below)


class TrainConfig(StrictModel):
    """An adapter evalkit trains (or reuses from its cache) on the suite's base: `data`
    plus the fields of `LoraSettings` (evalkit.suite.train_settings), with its defaults."""

    data: TrainDataConfig | Annotated[list[TrainDataConfig], Field(min_length=1)]
    rank: StrictInt = _setting("rank")
    alpha: StrictInt | None = _setting("alpha")
    dropout: StrictFloat = _setting("dropout")
    target_modules: Literal["all-linear"] | Annotated[list[str], Field(min_length=1)] = _setting(
        "target_modules"
    )
    learning_rate: StrictFloat = _setting("learning_rate")
    lr_schedule: Schedule = _setting("lr_schedule")
    epochs: StrictInt = _setting("epochs")
    max_steps: StrictInt | None = _setting("max_steps")
    batch_size: StrictInt = _setting("batch_size")
    grad_accum: StrictInt = _setting("grad_accum")
    max_seq_len: StrictInt = _setting("max_seq_len")
    seed: StrictInt = _setting("seed")
    warmup_ratio: StrictFloat = _setting("warmup_ratio")
    weight_decay: StrictFloat = _setting("weight_decay")
    val_fraction: StrictFloat = _setting("val_fraction")
    save_dtype: SaveDtype = _setting("save_dtype")
    qlora: StrictBool = _setting("qlora")
    compute_dtype: ComputeDtype = _setting("compute_dtype")


class SweepConfig(StrictModel):
    """Values to train one adapter per combination of; each becomes an adapter named
    `<name>-r8`, `<name>-r8-lr0.001`, ..."""

    rank: Annotated[list[PosInt], Field(min_length=1)] | None = None
    learning_rate: Annotated[list[PosFloat], Field(min_length=1)] | None = None
    epochs: Annotated[list[PosInt], Field(min_length=1)] | None = None

    @model_validator(mode="after")
    def _not_empty(self) -> SweepConfig:
        if not (self.rank or self.learning_rate or self.epochs):
            raise ValueError("a sweep needs at least one of rank, learning_rate, epochs")
        return self


class AdapterConfig(StrictModel):
    """A LoRA adapter: a peft directory (`path:`), or one to train (`train:`), optionally
    swept over rank / learning rate / epochs (`sweep:`)."""

    path: str | None = None
    train: TrainConfig | None = None
    sweep: SweepConfig | None = None
    # Set by sweep expansion (the suite loader), not written by hand: the sweep this
    # adapter is a point of.
    sweep_of: str | None = None
    sweep_settings: dict[str, float] | None = None

    @model_validator(mode="after")
    def _path_or_train(self) -> AdapterConfig:
        if (self.path is None) == (self.train is None):
            raise ValueError("an adapter needs either `path:` or a `train:` block (not both)")
        if self.sweep is not None and self.train is None:
            raise ValueError("`sweep:` needs a `train:` block to vary")
        return self


class DataConfig(StrictModel):
    path: str = Field(description="a .jsonl/.csv/.parquet file or a saved dataset directory")
    split: str | None = None


class GenerationConfig(StrictModel):
    max_new_tokens: Annotated[StrictInt, Field(gt=0, le=4096)] = 128
    stop: list[str] = Field(default_factory=list)


class MetricConfig(StrictModel):
    # Any golden kind of the metric registry (evalkit.scoring.metrics): the plan checks the
    # name against it, so a new metric is one module, not also an entry here.
    type: Annotated[str, Field(pattern=NAME_RE)] = Field(
        description="a metric kind: exact_match, contains, regex, json_valid, "
        "json_field_match, reference_perplexity, or one registered by a metric module"
    )
    name: Annotated[str | None, Field(pattern=NAME_RE)] = None
    value: str | None = Field(default=None, description="the text (contains) or pattern (regex)")
    field: str | None = Field(default=None, description="the JSON field (json_field_match)")
    margin: Annotated[StrictFloat, Field(ge=0)] = 0.0

    @model_validator(mode="after")
    def _needs(self) -> MetricConfig:
        if self.type in ("contains", "regex") and not self.value:
            raise ValueError(f"metric type '{self.type}' needs `value:`")
        if self.type == "json_field_match" and not self.field:
            raise ValueError("metric type 'json_field_match' needs `field:`")
        if self.type == "regex" and self.value:
            try:
                re.compile(self.value)
            except re.error as exc:
                raise ValueError(f"`value:` is not a valid regular expression: {exc}") from None
        return self

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        return f"{self.type}_{self.field}" if self.type == "json_field_match" else self.type


class TaskJudgeConfig(StrictModel):
    """An LLM judge on a task's outputs; its scores become the metric `judge:<name>`."""

    spec: str = Field(description="a judge spec YAML, e.g. ../judges/general.yaml")
    name: Annotated[str | None, Field(pattern=NAME_RE)] = None
    margin: Annotated[StrictFloat, Field(ge=0)] = 0.0
    labels: str | None = Field(default=None, description="human labels (JSONL) to calibrate on")
    variants: list[str] | None = Field(
        default=None, description="judge only these variants (default: all); others unscored"
    )


class TaskConfig(StrictModel):
    name: Annotated[str, Field(pattern=NAME_RE)]
    description: str | None = None
    data: DataConfig
    prompt: str = Field(description="a Jinja template over the dataset's columns")
    reference: str | None = Field(default=None, description="a Jinja template, e.g. {{ answer }}")
    id: str | None = Field(default=None, description="the column holding example ids")
    system: str | None = None
    generation: GenerationConfig = Field(default_factory=GenerationConfig)
    metrics: Annotated[list[MetricConfig], Field(min_length=1)]
    judges: list[TaskJudgeConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_metric_names(self) -> TaskConfig:
        labels = [m.label for m in self.metrics]
        dupes = sorted({x for x in labels if labels.count(x) > 1})
        if dupes:
            raise ValueError(f"two metrics are both named {dupes[0]}; give one a `name:`")
        return self


BuiltinProbe = Literal[
    "knowledge-mc",
    "knowledge-open",
    "prose-perplexity",
    "prose-bpb",
    "prose-kl",
    "open-ended",
    "open-overlap",
]


if TYPE_CHECKING:
    ExtraProbes = list[TaskConfig | KindProbe]
else:  # the same, discriminated by `kind:` (evalkit/suite/probes_config.py)
    ExtraProbes = extra_probes_type(TaskConfig)


class ProbesConfig(StrictModel):
    builtin: StrictBool | list[BuiltinProbe] = True
    margins: dict[str, Annotated[StrictFloat, Field(ge=0)]] = Field(
        default_factory=dict, description="per-probe margin overrides, by probe name"
    )
    # a probe kind (`kind:`, evalkit/suite/probes_config.py) or a task-shaped probe
    extra: ExtraProbes = Field(default_factory=list)


GateRequire = Literal[
    "improved", "not_regressed", "no_forgetting", "at_least", "at_most", "max_judge_error_rate"
]


class GateConfig(StrictModel):
    name: str | None = None
    variant: str
    require: GateRequire
    task: str | None = None
    metric: str | None = None
    value: StrictFloat | None = Field(
        default=None, description="the threshold for at_least/at_most"
    )
    severity: Literal["error", "warning"] = "error"
    proof: Literal["none", "equivalence"] = Field(
        default="none",
        description="equivalence: pass only when every probe (or the metric) is proven "
        "within its margin; an inconclusive one fails (see evalkit/decide/proof.py)",
    )

    @model_validator(mode="after")
    def _fields_for_require(self) -> GateConfig:
        if self.proof != "none" and self.require not in ("no_forgetting", "not_regressed"):
            raise ValueError("`proof:` applies to no_forgetting and not_regressed gates")
        if self.require == "no_forgetting":
            if self.task or self.metric:
                raise ValueError("a no_forgetting gate takes no `task:` or `metric:`")
        elif not (self.task and self.metric):
            raise ValueError(f"a gate with require: {self.require} needs `task:` and `metric:`")
        if self.require in ("at_least", "at_most", "max_judge_error_rate") and self.value is None:
            raise ValueError(f"require: {self.require} needs a `value:` threshold")
        return self

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        proven = ", proven" if self.proof == "equivalence" else ""
        if self.require == "no_forgetting":
            return f"{self.variant}: no forgetting{proven}"
        what = f"{self.task}/{self.metric}"
        if self.require == "max_judge_error_rate":
            return f"{self.variant}: {what} judge error rate <= {self.value}"
        if self.require in ("at_least", "at_most"):
            op = ">=" if self.require == "at_least" else "<="
            return f"{self.variant}: {what} {op} {self.value}"
        return f"{self.variant}: {what} {self.require.replace('_', ' ')}{proven}"


class IntegrityConfig(StrictModel):
    adapter_min_effect: Annotated[StrictFloat, Field(gt=0)] = Field(
        default=1e-3, description="max |Δlogit| below which an adapter counts as not applied"
    )
    merge_kl_tolerance: Annotated[float | None, Field(gt=0)] = Field(
        default=None,
        description="max KL (nats/token) between merged and adapter; default by precision "
        "(fp32 1e-3, half 2e-2, 4-bit 1e-1)",
    )
    merge_min_agreement: Annotated[float | None, Field(gt=0, le=1)] = Field(
        default=None,
        description="min top-1 agreement of merged and adapter; default by precision "
        "(fp32 0.99, half 0.95, 4-bit 0.90)",
    )
    on_failure: Literal["error", "warning"] = "error"


class Settings(StrictModel):
    batch_size: Annotated[StrictInt, Field(gt=0, le=1024)] = 16
    seed: StrictInt = 0
    confidence: Annotated[StrictFloat, Field(gt=0.5, lt=1)] = 0.95
    bootstrap_resamples: Annotated[StrictInt, Field(ge=100, le=100_000)] = 2000
    integrity: IntegrityConfig = Field(default_factory=IntegrityConfig)
    workers: Annotated[int, Field(ge=1, le=64)] = Field(
        default=1, description="worker processes for the engine stage, one device each"
    )


class JudgeProviderConfig(StrictModel):
    """Where judge calls go: a model in evalkit's own process (`hf:`), a local llama.cpp
    server evalkit starts (`serve:`), or any OpenAI-compatible endpoint (`base_url:`, else
    $OPENAI_BASE_URL or the api default)."""

    hf: str | None = Field(
        default=None,
        description="builtin:NAME, a model directory or a .gguf path, run in-process",
    )
    serve: str | None = Field(default=None, description="builtin:NAME or a .gguf path")
    base_url: str | None = None
    model: str | None = Field(default=None, description="the judge model name at the endpoint")
    api_key_env: str = "OPENAI_API_KEY"
    base_url_env: str = "OPENAI_BASE_URL"
    concurrency: Annotated[StrictInt, Field(ge=1, le=256)] = 4
    timeout_s: Annotated[StrictFloat, Field(gt=0)] = 60.0
    max_retries: Annotated[StrictInt, Field(ge=0, le=10)] = 3
    max_tokens: Annotated[StrictInt, Field(gt=0, le=4096)] = 64
    temperature: Annotated[StrictFloat, Field(ge=0, le=2)] = 0.0
    structured: StrictBool = Field(default=True, description="ask for JSON-schema output")
    logprobs: StrictBool = Field(default=True, description="ask for top_logprobs (weighted score)")
    n_ctx: Annotated[StrictInt, Field(ge=256, le=32768)] = 2048
    threads: Annotated[StrictInt, Field(ge=1, le=64)] = 1
    batch_size: Annotated[StrictInt, Field(ge=1, le=1024)] = Field(
        default=16, description="hf: requests judged in one batch"
    )
    dtype: Literal["float32", "bfloat16", "auto"] = Field(
        default="float32",
        description="hf: the judge model's dtype; auto: bfloat16 on a CUDA GPU or where the "
        "CPU computes it natively (AMX or AVX512-BF16), else float32",
    )

    @model_validator(mode="after")
    def _one_endpoint(self) -> JudgeProviderConfig:
        given = [k for k in ("hf", "serve", "base_url") if getattr(self, k)]
        if len(given) > 1:
            raise ValueError(
                "give one of `hf:` (in-process), `serve:` (a local server) or `base_url:`, "
                f"not {' and '.join(given)}"
            )
        if self.hf and self.temperature > 0:
            raise ValueError("the hf judge decodes greedily: leave temperature at 0")
        return self


class JudgesConfig(StrictModel):
    provider: JudgeProviderConfig = Field(default_factory=JudgeProviderConfig)
    min_kappa: Annotated[float | None, Field(ge=-1, le=1)] = Field(
        default=None, description="below this kappa on its labels a judge's gates are inconclusive"
    )


class SuiteConfig(StrictModel):
    """A suite file: what to evaluate, on what, and what must hold for a release."""

    name: Annotated[str, Field(pattern=NAME_RE)]
    description: str | None = None
    base: BaseModelConfig
    adapters: dict[str, AdapterConfig] = Field(default_factory=dict)
    variants: list[str] | None = Field(
        default=None, description="base, NAME, merged:NAME; default: all of them"
    )
    tasks: list[TaskConfig] = Field(default_factory=list)
    probes: ProbesConfig = Field(default_factory=ProbesConfig)
    gates: list[GateConfig] = Field(default_factory=list)
    judge: JudgesConfig | None = None
    engine: EngineConfig = Field(default_factory=EngineConfig)
    settings: Settings = Field(default_factory=Settings)

    @field_validator("adapters")
    @classmethod
    def _adapter_names(cls, value: dict[str, AdapterConfig]) -> dict[str, AdapterConfig]:
        for name in value:
            if name == "base" or not re.match(NAME_RE, name):
                raise ValueError(
                    f"adapter name '{name}' must use letters, digits, '-', '_', '.' "
                    "and must not be 'base'"
                )
        return value

    def all_variants(self) -> list[str]:
        """The variants to evaluate: as declared, or base + each adapter + each merge."""
        if self.variants is not None:
            return list(self.variants)
        out = ["base"]
        for name in self.adapters:
            out += [name, f"merged:{name}"]
        return out
