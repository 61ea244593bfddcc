"""Adapters that train the head or the embeddings are named before a run on engines known
to score them wrong; adapter configs are written here as peft writes them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from evalkit.decide.adapter_risks import adapter_risk_warnings, risky_modules


def _adapter(root: Path, name: str, **config: Any) -> Path:
    d = root / name
    d.mkdir()
    base = {"peft_type": "LORA", "r": 8, "lora_alpha": 16, "target_modules": ["q_proj"]}
    (d / "adapter_config.json").write_text(json.dumps({**base, **config}), encoding="utf-8")
    return d


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"target_modules": ["q_proj", "v_proj", "lm_head"]}, [("lm_head", "target_modules")]),
        ({"target_modules": ["model.embed_tokens", "k_proj"]},
         [("model.embed_tokens", "target_modules")]),
        ({"target_modules": ["c_attn"], "modules_to_save": ["wte", "score"]},
         [("wte", "modules_to_save")]),
        ({"target_modules": r".*\.(q_proj|v_proj)|lm_head"}, [("lm_head", "target_modules")]),
        ({"trainable_token_indices": [49152, 49153]},
         [("embed_tokens", "trainable_token_indices")]),
        ({"trainable_token_indices": {"embed_tokens": [7]}},
         [("embed_tokens", "trainable_token_indices")]),
        # not the head: a name that only contains it, all-linear (peft leaves the head
        # out), a regex over attention layers, nothing saved
        ({"target_modules": ["lm_head_proj", "q_proj"]}, []),
        ({"target_modules": "all-linear"}, []),
        ({"target_modules": r".*\.(q_proj|v_proj)$", "modules_to_save": None}, []),
    ],
)  # fmt: skip
def test_risky_modules_read_from_the_adapter_config(
    tmp_path: Path, config: dict[str, Any], expected: list[tuple[str, str]]
) -> None:
    path = _adapter(tmp_path, "a", **config)
    assert [(r.module, r.via) for r in risky_modules("a", path)] == expected


def test_warning_names_the_adapter_and_module_on_served_kinds_only(tmp_path: Path) -> None:
    adapters = {
        "head": _adapter(tmp_path, "head", target_modules=["q_proj", "lm_head"]),
        "emb": _adapter(tmp_path, "emb", modules_to_save=["embed_tokens"]),
        "plain": _adapter(tmp_path, "plain"),
    }
    for kind in ("openai", "vllm"):
        warnings = adapter_risk_warnings(kind, adapters)
        assert len(warnings) == 2, warnings
        head, emb = warnings
        assert "adapter 'head'" in head and "lm_head (target_modules)" in head
        assert "adapter 'emb'" in emb and "embed_tokens (modules_to_save)" in emb
        assert all("#51594" in w and "engine_parity" in w for w in warnings)
    # the hf engine computes the head and the embeddings with peft itself
    assert adapter_risk_warnings("hf", adapters) == []


def test_an_unreadable_config_warns_nothing(tmp_path: Path) -> None:
    d = tmp_path / "broken"
    d.mkdir()
    (d / "adapter_config.json").write_text("{not json", encoding="utf-8")
    assert risky_modules("broken", d) == []
    assert risky_modules("missing", tmp_path / "nowhere") == []
