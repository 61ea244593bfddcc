"""Shared fixtures: every test's own cache directory, the real default model (converted
once per session) and tiny random-config Llama models that use its real tokenizer, built
inside the tests."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def _session_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache root whose `models/` is shared by the whole session: the folder of the
    EVALKIT_CACHE_DIR the tests were started with (a model converted there before is
    reused), else a temporary one, so ~/.cache/evalkit is never touched. Nothing else of
    that cache (results, judge replies, adapters) is shared."""
    root = tmp_path_factory.mktemp("session-cache")
    outer = os.environ.get("EVALKIT_CACHE_DIR")
    models = Path(outer).expanduser() / "models" if outer else root / "shared-models"
    models.mkdir(parents=True, exist_ok=True)
    (root / "models").symlink_to(models, target_is_directory=True)
    return root


@pytest.fixture(autouse=True)
def _own_cache_dir(
    tmp_path_factory: pytest.TempPathFactory, _session_cache: Path
) -> Iterator[Path]:
    """Every test gets its own EVALKIT_CACHE_DIR, so no test reads results another test
    (or an earlier run) cached; converted models are shared through a link. The cache is
    removed after the test: a full session would otherwise keep hundreds of them (trained
    adapters, results databases) on disk until pytest prunes its old runs."""
    cache = tmp_path_factory.mktemp("cache")
    (cache / "models").symlink_to(_session_cache / "models", target_is_directory=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EVALKIT_CACHE_DIR", str(cache))
        yield cache
    shutil.rmtree(cache, ignore_errors=True)  # the link goes, the shared models stay


@pytest.fixture(scope="session")
def default_model_dir(_session_cache: Path) -> Path:
    """The built-in default model as a safetensors directory, converted (about 20 s) the
    first time a session needs it and shared by every later test."""
    from evalkit.engines.resolve import resolve_model

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EVALKIT_CACHE_DIR", str(_session_cache))
        return Path(resolve_model("builtin:smollm2-135m-instruct").source)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory, default_model_dir: Path) -> Path:
    """A 2-layer random Llama with the default model's tokenizer and chat template."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    out = tmp_path_factory.mktemp("tiny-llama")
    tok = AutoTokenizer.from_pretrained(default_model_dir)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    LlamaForCausalLM(config).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def write_minimal_safetensors(path: Path) -> Path:
    """A complete one-tensor safetensors file: enough for checks that read headers."""
    import numpy as np
    from safetensors.numpy import save_file

    save_file({"x": np.zeros(2, dtype=np.float32)}, str(path))
    return path


def copy_tree(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst
