"""Adapters that served engines are known to score wrong, named before the run.

An adapter that trains the output head or the token embeddings (LoRA on `lm_head` /
`embed_tokens` / `wte`, a full copy of them in `modules_to_save`, or peft's trainable
tokens) changes every token's logprob through a layer some servers leave out of their
LoRA path: vLLM #51594 (open) scores teacher-forced `prompt_logprobs` without an lm_head
adapter (the same tokens at -6.63 instead of about -0.01 nats). The run still goes ahead;
engine_parity compares that variant with transformers + peft and fails it if the engine
dropped the layer. This module only reads adapter_config.json: no weights, no model.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The output head and the input embeddings under the names the common architectures give
# them (Llama/Mistral/Qwen: lm_head, embed_tokens; GPT-2: wte; GPT-NeoX: embed_out;
# BLOOM: word_embeddings).
HEAD_AND_EMBEDDINGS = ("lm_head", "embed_tokens", "wte", "embed_out", "word_embeddings")

# Engine kinds known to mishandle such adapters, and what is known about them.
MISHANDLING_KINDS = {
    "openai": "a served engine (vLLM, SGLang, llama.cpp) may leave an lm_head or embedding "
    "adapter out of its prompt logprobs (vLLM #51594)",
    "vllm": "vLLM's prompt_logprobs ignore an lm_head adapter (vLLM #51594)",
}


@dataclass(frozen=True)
class AdapterRisk:
    adapter: str
    module: str  # the layer's name as the adapter config gives it
    via: str  # target_modules | modules_to_save | trainable_token_indices


def _read_config(path: Path) -> dict[str, Any]:
    try:
        data = json.loads((path / "adapter_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # validate already refused an unreadable config; nothing to warn about
    return data if isinstance(data, dict) else {}


def _risky(name: str) -> str | None:
    """`name` if it is (or ends in) the head or an embedding: peft matches a target by
    its full name or its last components (`model.embed_tokens` is embed_tokens)."""
    return name if name.rsplit(".", 1)[-1] in HEAD_AND_EMBEDDINGS else None


def risky_modules(name: str, path: Path) -> list[AdapterRisk]:
    """What adapter `name` (its directory `path`) trains of the head or the embeddings."""
    cfg = _read_config(path)
    found: list[AdapterRisk] = []
    targets = cfg.get("target_modules")
    if isinstance(targets, str):
        # one string is a regular expression over module names (or "all-linear", which
        # leaves the head out): the head or an embedding named in it is the signal
        found += [
            AdapterRisk(name, m, "target_modules")
            for m in HEAD_AND_EMBEDDINGS
            if re.search(rf"(?<![A-Za-z0-9_]){m}(?![A-Za-z0-9_])", targets)
        ]
    elif isinstance(targets, list):
        found += [
            AdapterRisk(name, t, "target_modules")
            for t in targets
            if isinstance(t, str) and _risky(t)
        ]
    saved = cfg.get("modules_to_save")
    if isinstance(saved, list):
        found += [
            AdapterRisk(name, m, "modules_to_save")
            for m in saved
            if isinstance(m, str) and _risky(m)
        ]
    tokens = cfg.get("trainable_token_indices")
    if isinstance(tokens, dict):  # layer name -> token ids
        found += [AdapterRisk(name, str(m), "trainable_token_indices") for m in tokens]
    elif tokens:  # a list of ids: peft puts them on the input embeddings
        found.append(AdapterRisk(name, "embed_tokens", "trainable_token_indices"))
    return found


def adapter_risk_warnings(kind: str, adapters: dict[str, Path]) -> list[str]:
    """One warning per adapter that trains the head or an embedding, on an engine kind
    known to mishandle that; none on the others (hf computes them with peft itself)."""
    known = MISHANDLING_KINDS.get(kind)
    if known is None:
        return []
    out = []
    for name, path in adapters.items():
        risks = risky_modules(name, path)
        if not risks:
            continue
        modules = ", ".join(f"{r.module} ({r.via})" for r in risks)
        out.append(
            f"adapter '{name}' trains {modules}: {known}; engine_parity compares this "
            f"variant with transformers + peft and fails it if the engine drops the layer"
        )
    return out
