"""The suite file as typed, validated config.

Every model forbids unknown keys, so a typo is an error that names the key, its line and
the key that was probably meant, instead of a setting silently ignored. Checks that need
more than one field (an adapter named by a gate exists, a data file exists) live in
`evalkit.suite`, which loads this config.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

MetricType = Literal[
    "exact_match",
    "contains",
    "regex",
    "json_valid",
    "json_field_match",
    "reference_perplexity",
]
VARIANT_RE = re.compile(r"^(base|merged:[A-Za-z0-9_.-]+|[A-Za-z0-9_.-]+)$")
NAME_RE = r"^[A-Za-z0-9_.-]+$"


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BaseModelConfig(StrictModel):
    """The base model every variant is built on."""

    model: str = Field(description="builtin:NAME, a model directory, a .gguf file or org/name")
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    load_in_4bit: bool = False
    device: Literal["auto", "cpu", "cuda"] = "auto"


class AdapterConfig(StrictModel):
    """A LoRA adapter directory (adapter_config.json + adapter_model.safetensors)."""

    path: str


class DataConfig(StrictModel):
    path: str = Field(description="a .jsonl/.csv/.parquet file or a saved dataset directory")
    split: str | None = None


class GenerationConfig(StrictModel):
    max_new_tokens: Annotated[int, Field(gt=0, le=4096)] = 128
    stop: list[str] = Field(default_factory=list)


class MetricConfig(StrictModel):
    type: MetricType
    name: Annotated[str | None, Field(pattern=NAME_RE)] = None
    value: str | None = Field(default=None, description="the text (contains) or pattern (regex)")
    field: str | None = Field(default=None, description="the JSON field (json_field_match)")
    margin: Annotated[float, Field(ge=0)] = 0.0

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

    @model_validator(mode="after")
    def _unique_metric_names(self) -> TaskConfig:
        labels = [m.label for m in self.metrics]
        dupes = sorted({x for x in labels if labels.count(x) > 1})
        if dupes:
            raise ValueError(f"two metrics are both named {dupes[0]}; give one a `name:`")
        return self


BuiltinProbe = Literal["knowledge-mc", "knowledge-open", "prose-perplexity", "open-ended"]


class ProbesConfig(StrictModel):
    builtin: bool | list[BuiltinProbe] = True
    margins: dict[str, Annotated[float, Field(ge=0)]] = Field(
        default_factory=dict, description="per-probe margin overrides, by probe name"
    )
    extra: list[TaskConfig] = Field(default_factory=list)


GateRequire = Literal["improved", "not_regressed", "no_forgetting", "at_least", "at_most"]


class GateConfig(StrictModel):
    name: str | None = None
    variant: str
    require: GateRequire
    task: str | None = None
    metric: str | None = None
    value: float | None = Field(default=None, description="the threshold for at_least/at_most")
    severity: Literal["error", "warning"] = "error"

    @model_validator(mode="after")
    def _fields_for_require(self) -> GateConfig:
        if self.require == "no_forgetting":
            if self.task or self.metric:
                raise ValueError("a no_forgetting gate takes no `task:` or `metric:`")
        elif not (self.task and self.metric):
            raise ValueError(f"a gate with require: {self.require} needs `task:` and `metric:`")
        if self.require in ("at_least", "at_most") and self.value is None:
            raise ValueError(f"require: {self.require} needs a `value:` threshold")
        return self

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        if self.require == "no_forgetting":
            return f"{self.variant}: no forgetting"
        what = f"{self.task}/{self.metric}"
        if self.require in ("at_least", "at_most"):
            op = ">=" if self.require == "at_least" else "<="
            return f"{self.variant}: {what} {op} {self.value}"
        return f"{self.variant}: {what} {self.require.replace('_', ' ')}"


class IntegrityConfig(StrictModel):
    adapter_min_effect: Annotated[float, Field(gt=0)] = Field(
        default=1e-3, description="max |Δlogit| below which an adapter counts as not applied"
    )
    merge_tolerance: Annotated[float, Field(gt=0)] = Field(
        default=5e-2, description="max |Δlogit| allowed between merged and adapter"
    )
    on_failure: Literal["error", "warning"] = "error"


class Settings(StrictModel):
    batch_size: Annotated[int, Field(gt=0, le=1024)] = 16
    seed: int = 0
    confidence: Annotated[float, Field(gt=0.5, lt=1)] = 0.95
    bootstrap_resamples: Annotated[int, Field(ge=100, le=100_000)] = 2000
    integrity: IntegrityConfig = Field(default_factory=IntegrityConfig)


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
