"""The engine that produced the records, for runs whose engine is not `hf`: what it is
(kind, endpoint, served model names, the server's version), its settings, where its
local reference ran, and the engine_parity figures against that reference."""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict, Field

from evalkit.outputs.model._base import Number, Part


class ServerInfo(Part):
    """The server's own name and version, and the request that gave them (GET /version
    on vLLM, GET /props on llama.cpp's server, GET /openapi.json on llama-cpp-python's).
    version null with a `note` when the server reports none."""

    name: str | None = None
    version: str | None = None
    source: str | None = None
    note: str | None = None


class ReferenceInfo(Part):
    """The local transformers + peft reference engine_parity compared with: its device
    and dtype, or `skip: true` with the reason (no reference, nothing compared)."""

    skip: bool
    device: str | None = None
    dtype: str | None = None
    reason: str | None = None


class ParityTolerances(Part):
    """The suite's `engine.parity` settings."""

    texts: int = Field(ge=1)
    max_mean_abs: Number = Field(gt=0)
    max_abs: Number = Field(gt=0)
    min_top1: Number = Field(ge=0, le=1)


class ParityFigures(Part):
    """One variant's per-token log-probabilities from the engine against the reference."""

    variant: str
    tokens: int = Field(ge=0, description="tokens compared")
    mean_abs: Number | None = Field(ge=0, description="mean |Δlogprob| in nats")
    max_abs: Number | None = Field(ge=0, description="max |Δlogprob| in nats")
    top1: Number | None = Field(ge=0, le=1, description="top-1 agreement")
    unreadable: int = Field(0, ge=0, description="tokens outside a shifted server's top-k")
    readings: dict[str, Number | None] = Field(
        default_factory=dict,
        description="base only, prompt_logprobs auto: mean |Δ| of each alignment tried",
    )
    passed: bool | None = Field(
        None, description="within the tolerances (absent in files from before 1.1)"
    )


class Parity(Part):
    tolerances: ParityTolerances
    variants: dict[str, ParityFigures] = Field(
        description="variant -> figures; a variant after a base that failed is not checked"
    )
    passed: bool


class EngineInfo(Part):
    """results.json's `engine`: written by runs whose engine is not `hf`. Keys an engine
    kind adds of its own (vLLM's tensor_parallel_size, ...) are kept as written."""

    model_config = ConfigDict(extra="allow")

    kind: str
    endpoint: str | None = Field(None, description="host:port only")
    base_url: str | None = Field(None, description="without credentials, query or fragment")
    models: dict[str, str] = Field(
        default_factory=dict, description="variant -> the served model name"
    )
    server: ServerInfo | None = None
    concurrency: int | None = Field(None, ge=1)
    top_logprobs: int | None = Field(None, ge=1)
    prompt_logprobs: str | None = Field(
        None, description="how prompt logprobs were read: aligned or shifted"
    )
    extra_body: dict[str, Any] = Field(default_factory=dict)
    reference: ReferenceInfo | None = None
    parity: Parity | None = Field(None, description="null when engine.reference is skip")
