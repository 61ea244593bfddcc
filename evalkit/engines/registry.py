"""Engine kinds: `kind` -> factory, with the capabilities each backend declares.

A backend is one module that calls `register_engine` at import time and is listed in
`BUILTIN_ENGINE_MODULES` (imported lazily, so `import evalkit` stays free of torch).
Stages that depend on what a backend can compute (integrity checks that need logits, KL
probes) read its `EngineCapabilities` instead of checking its class.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evalkit.engines.base import Engine
from evalkit.errors import InputError


@dataclass(frozen=True)
class EngineCapabilities:
    """What a backend can compute. A metric that needs what is missing is unscored with
    the reason; an integrity check that needs it is skipped and says so."""

    generate: bool = True
    loglikelihood: bool = True
    rolling: bool = True
    kl: bool = True  # KL(base || variant) on the same windows
    probe_logits: bool = True  # full next-token logits (integrity checks)
    merged: bool = True  # `merged:NAME` variants
    open_shift: bool = True  # base_topk_shift: the base's top-k over the variant's answers


@dataclass(frozen=True)
class EngineRequest:
    """Everything a factory needs to build an engine for one run."""

    base: str  # the base model spec (builtin:NAME, a directory, a .gguf file)
    adapters: dict[str, Path]
    dtype: str = "float32"
    device: str = "auto"
    load_in_4bit: bool = False
    batch_size: int = 16
    relative_to: Path | None = None
    options: dict[str, Any] = field(default_factory=dict)  # the suite's `engine:` block


EngineFactory = Callable[[EngineRequest], Engine]


@dataclass(frozen=True)
class EngineKind:
    name: str
    factory: EngineFactory
    capabilities: EngineCapabilities
    description: str = ""


_ENGINES: dict[str, EngineKind] = {}
# Modules that register the built-in kinds, imported on first lookup.
BUILTIN_ENGINE_MODULES: dict[str, str] = {
    "hf": "evalkit.engines.hf",
    "openai": "evalkit.engines.openai_engine",
    "vllm": "evalkit.engines.vllm_engine",
    "scripted": "evalkit.engines.scripted",
}


def capabilities_of(engine: object) -> EngineCapabilities:
    """What an engine instance can compute: its own `capabilities` attribute (a backend
    whose capabilities depend on how it was built sets one), else everything."""
    caps = getattr(engine, "capabilities", None)
    return caps if isinstance(caps, EngineCapabilities) else EngineCapabilities()


def register_engine(
    name: str,
    factory: EngineFactory,
    capabilities: EngineCapabilities | None = None,
    description: str = "",
) -> None:
    """Add an engine kind (at import time of its module, listed in BUILTIN_ENGINE_MODULES)."""
    _ENGINES[name] = EngineKind(name, factory, capabilities or EngineCapabilities(), description)


def engine_kind(name: str) -> EngineKind:
    """The registered kind `name`, importing its module on first use."""
    if name not in _ENGINES and name in BUILTIN_ENGINE_MODULES:
        importlib.import_module(BUILTIN_ENGINE_MODULES[name])
    if name not in _ENGINES:
        known = sorted(set(_ENGINES) | set(BUILTIN_ENGINE_MODULES))
        raise InputError(f"unknown engine kind '{name}'", hint=f"Engine kinds: {', '.join(known)}.")
    return _ENGINES[name]


def create_engine(name: str, request: EngineRequest) -> Engine:
    """Build an engine of kind `name` for one run."""
    return engine_kind(name).factory(request)
