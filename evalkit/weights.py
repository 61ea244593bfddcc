"""Checks of model and adapter files that need no model load: safetensors only (a pickle
file can run code when loaded, so `.bin`, `.pt`, `.pth`, `.ckpt` and `.pkl` weights are
refused, never opened), configs of the right types, and safetensors files whose header
is readable and whose tensors all lie inside the file (a truncated download fails here,
not after the base model loaded and generated)."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

from evalkit.errors import InputError

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
MAX_HEADER = 100 << 20  # the safetensors format's own limit
_NO_PICKLE = (
    "evalkit loads safetensors only: pickle files can run code when loaded. Convert "
    "with safetensors.torch.save_file in a trusted environment, or save_pretrained(..., "
    "safe_serialization=True)."
)


def check_safetensors(path: Path) -> int:
    """The number of tensors in a safetensors file; InputError if its header cannot be
    read or a tensor's bytes run past the end of the file (truncated)."""
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise InputError(f"{path}: not a safetensors file (shorter than its header)")
            (n,) = struct.unpack("<Q", head)
            if n > MAX_HEADER or 8 + n > size:
                raise InputError(f"{path}: safetensors header is cut or damaged (truncated?)")
            header = json.loads(f.read(n))
    except OSError as exc:
        raise InputError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    except (ValueError, UnicodeDecodeError):
        raise InputError(f"{path}: safetensors header is not JSON (damaged file)") from None
    if not isinstance(header, dict):
        raise InputError(f"{path}: safetensors header is not a mapping (damaged file)")
    data = size - 8 - n
    count = 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        offsets = info.get("data_offsets") if isinstance(info, dict) else None
        if (
            not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(isinstance(o, int) for o in offsets)
        ):
            raise InputError(f"{path}: tensor '{name}' has no valid data_offsets (damaged)")
        if offsets[1] > data or offsets[0] > offsets[1]:
            raise InputError(
                f"{path}: tensor '{name}' ends at byte {offsets[1]:,} of {data:,}: the file "
                "is truncated",
                hint="Copy or download it again.",
            )
        count += 1
    return count


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path} not found") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: not a readable JSON file ({exc})") from None


def check_adapter_dir(path: Path) -> None:
    """A peft LoRA adapter directory evalkit will load: adapter_config.json of the right
    types and a complete adapter_model.safetensors. Raises InputError (exit 2)."""
    cfg = _read_json(path / "adapter_config.json")
    if not isinstance(cfg, dict):
        raise InputError(f"{path / 'adapter_config.json'}: expected a JSON object")
    expect = {"r": (int,), "lora_alpha": (int, float), "lora_dropout": (int, float)}
    for key, types in expect.items():
        value = cfg.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, types)):
            raise InputError(
                f"{path / 'adapter_config.json'}: '{key}' is {value!r}; expected a number"
            )
    if isinstance(cfg.get("r"), int) and cfg["r"] <= 0:
        raise InputError(f"{path / 'adapter_config.json'}: 'r' must be positive")
    targets = cfg.get("target_modules")
    if targets is not None and not (
        isinstance(targets, str)
        or (isinstance(targets, list) and all(isinstance(t, str) for t in targets))
    ):
        raise InputError(
            f"{path / 'adapter_config.json'}: 'target_modules' must be a name or a list of names"
        )
    weights = path / "adapter_model.safetensors"
    if not weights.is_file():
        pickled = [p.name for p in path.glob("adapter_model.*") if p.suffix in PICKLE_SUFFIXES]
        if pickled:
            raise InputError(f"{path}: adapter weights are {pickled[0]} (pickle)", hint=_NO_PICKLE)
        raise InputError(f"{path}: no adapter_model.safetensors")
    check_safetensors(weights)


def check_model_dir(path: Path) -> None:
    """A local Hugging Face model directory evalkit will load: weights in safetensors
    (complete), and a config that needs no custom code (trust_remote_code stays off)."""
    cfg = _read_json(path / "config.json")
    if isinstance(cfg, dict) and cfg.get("auto_map"):
        raise InputError(
            f"{path / 'config.json'}: this model needs its own Python code (auto_map); "
            "evalkit never enables trust_remote_code",
            hint="Use a model whose architecture transformers ships.",
        )
    tensors = sorted(path.glob("*.safetensors"))
    if not tensors:
        pickled = sorted(p.name for p in path.iterdir() if p.suffix in PICKLE_SUFFIXES)
        if pickled:
            raise InputError(f"{path}: weights are {pickled[0]} (pickle)", hint=_NO_PICKLE)
        raise InputError(f"{path}: no *.safetensors weights")
    for t in tensors:
        check_safetensors(t)


def check_local_model(spec: str, root: Path) -> None:
    """At validate: a `base.model` that is a local directory is checked now (a built-in
    or .gguf model is converted by evalkit itself; a hub id cannot be checked offline)."""
    if spec.startswith("builtin:") or spec.endswith(".gguf"):
        return
    path = Path(spec).expanduser()
    if not path.is_absolute() and (root / path).exists():
        path = root / path
    if path.is_dir() and (path / "config.json").exists():
        check_model_dir(path)
