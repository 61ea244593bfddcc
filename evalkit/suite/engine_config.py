"""The suite's `engine:` block: where the variants run (in this process, on a served
endpoint, in vLLM) and how a served engine is checked against transformers + peft."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, StrictBool, model_validator

from evalkit.suite.strict import StrictModel


class ParityConfig(StrictModel):
    """How close a served engine's per-token logprobs must be to transformers + peft (fp32,
    computed here) on probe text, per variant. Defaults fit a server on 4-bit weights; an
    engine that drops an adapter misses them by an order of magnitude."""

    texts: Annotated[int, Field(ge=4, le=64)] = 32
    max_mean_abs: Annotated[float, Field(gt=0)] = 0.1
    max_abs: Annotated[float, Field(gt=0)] = 2.0
    min_top1: Annotated[float, Field(ge=0, le=1)] = 0.9


class ReferenceConfig(StrictModel):
    """Where the local transformers + peft reference of a served engine runs. Unset fields
    take the base's (`base.device`, `base.dtype`: an fp32 reference by default); `device:
    cuda` puts a base too large for the client's CPU on its GPU. `reference: skip` (read
    as `skip: true`) builds none: engine_parity is not checked, and the run says so."""

    skip: StrictBool = False
    device: Literal["auto", "cpu", "cuda"] | None = None
    dtype: Literal["float32", "bfloat16", "float16"] | None = None

    @model_validator(mode="before")
    @classmethod
    def _skip_or_mapping(cls, value: Any) -> Any:
        if value == "skip":
            return {"skip": True}
        if not isinstance(value, dict):
            raise ValueError(
                f"got {value!r}; expected `skip` or a mapping such as {{device: cuda}} "
                "(device: auto|cpu|cuda, dtype: float32|bfloat16|float16)"
            )
        return value

    @model_validator(mode="after")
    def _nothing_beside_skip(self) -> ReferenceConfig:
        if self.skip and (self.device or self.dtype):
            raise ValueError("`skip` builds no reference: leave out device and dtype")
        return self


class EngineConfig(StrictModel):
    """Where the variants run: in this process (`hf`) or on a served endpoint (`openai`)."""

    kind: Literal["hf", "openai"] = "hf"
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    models: dict[str, str] = Field(
        default_factory=dict, description="variant -> the served model name"
    )
    concurrency: Annotated[int, Field(ge=1, le=256)] = 4
    timeout_s: Annotated[float, Field(gt=0)] = 120.0
    max_retries: Annotated[int, Field(ge=0, le=10)] = 3
    top_logprobs: Annotated[int, Field(ge=1, le=100_000)] = 20
    prompt_logprobs: Literal["auto", "aligned", "shifted"] = "auto"
    extra_body: dict[str, float | int | str | bool] = Field(
        default_factory=dict, description="extra request fields, e.g. {repeat_penalty: 1.0}"
    )
    parity: ParityConfig = Field(default_factory=ParityConfig)
    reference: ReferenceConfig = Field(default_factory=ReferenceConfig)
