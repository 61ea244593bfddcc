"""What a run writes: checkpoints to resume from, and the finished adapter directory.

Checkpoints live beside the output, in `<out_dir>.checkpoints/step-NNNNNN/` (LoRA tensors,
optimizer, scheduler, RNG states and the loop's position); each is written to a temporary
directory and renamed, so the newest complete one is always safe to resume from. They are
safetensors plus JSON (`state_codec`), never pickle: the adapter cache may be restored from
storage that other jobs can write to, and loading a checkpoint must not run code. The
finished adapter is written the same way: an `out_dir` never holds a half adapter.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path
from typing import Any

from evalkit.training.settings import TrainingError
from evalkit.training.state_codec import StateFormatError, load_state, save_state

CARD = "training_card.json"
STATE = "state"  # state.safetensors + state.json; state.json is written last
# What earlier versions wrote: a pickle, which is never loaded.
LEGACY_STATE = "state.pt"


def checkpoint_root(out_dir: Path) -> Path:
    return out_dir.with_name(out_dir.name + ".checkpoints")


def latest_checkpoint(out_dir: Path) -> Path | None:
    """The newest complete checkpoint. One in the old pickle format is refused, with the
    command that discards it: it is never unpickled."""
    root = checkpoint_root(out_dir)
    legacy = sorted(p for p in root.glob("step-*") if (p / LEGACY_STATE).exists())
    if legacy:
        raise TrainingError(
            f"{legacy[-1]} is a checkpoint in the old pickle format, which evalkit no longer "
            "loads (unpickling a file can run code)",
            hint=f"Discard it and train from the start: rm -rf '{root}'",
        )
    done = sorted(p for p in root.glob("step-*") if (p / f"{STATE}.json").exists())
    return done[-1] if done else None


def save_checkpoint(out_dir: Path, step: int, adapter: dict[str, Any], state: dict[str, Any],
                    keep: int = 1) -> Path:  # fmt: skip
    """Write a checkpoint atomically, then drop all but the newest `keep` ones."""
    root = checkpoint_root(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{step:06d}"
    tmp = root / f".tmp-{step:06d}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_state({"adapter": adapter, **state}, tmp, STATE)
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    # Step numbers only grow within a run, so the newest checkpoints sort last.
    for old in sorted(root.glob("step-*"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_checkpoint(path: Path) -> dict[str, Any]:
    try:
        return load_state(path, STATE)
    except StateFormatError as exc:
        raise TrainingError(
            f"the checkpoint {path} cannot be used: {exc}",
            hint=f"Discard it and train from the start: rm -rf '{path.parent}'",
        ) from None


def check_output_dir(out_dir: Path, key: str, *, overwrite: bool) -> bool:
    """Refuse to replace what `out_dir` holds unless it is this very adapter (same key) or
    `overwrite` is set. Returns True when `out_dir` already holds this adapter."""
    if not out_dir.exists():
        return False
    if not out_dir.is_dir():
        raise TrainingError(
            f"{out_dir} exists and is not a directory", hint="Choose another --out."
        )
    card = out_dir / CARD
    if card.exists():
        try:
            same = json.loads(card.read_text(encoding="utf-8")).get("key") == key
        except (OSError, json.JSONDecodeError):
            same = False
        if same:
            return True
    if overwrite or not any(out_dir.iterdir()):
        return False
    what = "a different adapter" if (out_dir / "adapter_config.json").exists() else "other files"
    raise TrainingError(
        f"{out_dir} already holds {what}; nothing was overwritten",
        hint="Choose another output directory, or pass --overwrite to replace it.",
    )


def save_adapter(peft_model: Any, out_dir: Path, save_dtype: str, card: dict[str, Any]) -> None:
    """Adapter files (LoRA tensors cast to `save_dtype`) and training card, written to a
    temporary sibling directory and renamed into place; an earlier `out_dir` is replaced
    only once the new one is complete."""
    import torch
    from safetensors.torch import load_file, save_file

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.with_name(f".{out_dir.name}.tmp-{os.getpid()}")
    old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        with warnings.catch_warnings():
            # the base is recorded by its suite name (builtin:...), which is no directory
            # peft could look a config up in; embeddings are not saved either way
            warnings.filterwarnings("ignore", message="Could not find a config file")
            peft_model.save_pretrained(str(tmp), save_embedding_layers=False)
        (tmp / "README.md").unlink(missing_ok=True)  # peft's empty model-card template
        if save_dtype != "float32":
            weights = tmp / "adapter_model.safetensors"
            dtype = getattr(torch, save_dtype)
            tensors = {k: v.to(dtype).contiguous() for k, v in load_file(str(weights)).items()}
            save_file(tensors, str(weights), metadata={"format": "pt"})
        (tmp / CARD).write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
        if out_dir.exists():
            out_dir.rename(old)
        tmp.rename(out_dir)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
