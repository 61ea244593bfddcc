"""The suite's `engine:` block: where the variants run (in this process, on a served
endpoint, in vLLM) and how a served engine is checked against transformers + peft."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, StrictBool, StrictFloat, StrictInt, model_validator

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


class VllmConfig(StrictModel):
    """`engine.vllm:`: the in-process vLLM engine (`kind: vllm`, `pip install 'evalkit[vllm]'`,
    a CUDA GPU). One `vllm.LLM` holds the base; each adapter is a LoRARequest on it."""

    tensor_parallel_size: Annotated[StrictInt, Field(ge=1, le=64)] = 1
    gpu_memory_utilization: Annotated[StrictFloat, Field(gt=0, le=1)] = 0.9
    max_model_len: Annotated[StrictInt | None, Field(ge=16)] = None
    max_loras: Annotated[StrictInt | None, Field(ge=1, le=256)] = Field(
        default=None, description="LoRA slots on the GPU; default: one per adapter"
    )
    max_lora_rank: Annotated[StrictInt | None, Field(ge=1, le=512)] = Field(
        default=None, description="default: the largest adapter rank, rounded up"
    )
    dtype: Literal["float16", "bfloat16", "float32"] | None = Field(
        default=None, description="default: base.dtype"
    )
    prompt_logprobs: Annotated[StrictInt, Field(ge=1, le=20)] = Field(
        default=1, description="top-k asked per prompt position (1 gives the top-1)"
    )
    enforce_eager: StrictBool = False
    seed: StrictInt = 0
    merged: dict[str, str] = Field(
        default_factory=dict,
        description="adapter NAME -> its merged model directory (evalkit merge), for merged:NAME",
    )


class EngineConfig(StrictModel):
    """Where the variants run: in this process (`hf`), on a served endpoint (`openai`), or
    in vLLM in this process (`vllm`)."""

    kind: Literal["hf", "openai", "vllm"] = "hf"
    api: Literal["completions", "chat"] = Field(
        default="completions",
        description="openai: completions applies the base's chat template here; chat sends "
        "the turns to /v1/chat/completions and the server applies its own (log-likelihoods "
        "given a prompt are then unscored)",
    )
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
    vllm: VllmConfig = Field(default_factory=VllmConfig)
    reference: ReferenceConfig = Field(default_factory=ReferenceConfig)
