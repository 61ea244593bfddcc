"""Training state to files that load without running code: tensors in safetensors, the rest
in JSON.

A checkpoint holds LoRA tensors, the optimizer's state, the scheduler's position and RNG
states. `torch.save` would pickle them, and unpickling a file runs whatever code it names:
a checkpoint planted in a restored CI cache would run on resume. Here every tensor in the
state tree goes to one safetensors file (a header and raw bytes) and is replaced in the
tree by a reference; what remains must be plain JSON values, or encoding fails.

The JSON side records the SHA-256 of the tensor file, so a tensor file swapped or
truncated after it was written is refused rather than loaded.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

# Markers for values JSON has no type for. A dict key that starts with "__evalkit_" is
# reserved; a state tree that uses one is refused on encoding.
_TENSOR = "__evalkit_tensor__"
_TUPLE = "__evalkit_tuple__"
_ITEMS = "__evalkit_items__"  # a dict whose keys are not all strings (the optimizer's)
_FLOAT = "__evalkit_float__"  # nan and +/-inf, which strict JSON cannot hold

FORMAT = "evalkit-state/1"


class StateFormatError(ValueError):
    """A state file that is not what this module writes (or that was changed since)."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _encode(value: Any, tensors: dict[str, Any]) -> Any:
    import torch

    if isinstance(value, torch.Tensor):
        name = f"t{len(tensors):06d}"
        # safetensors wants contiguous, unshared storage; RNG states are uint8 tensors
        tensors[name] = value.detach().to("cpu").clone().contiguous()
        return {_TENSOR: name}
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            return {_FLOAT: repr(value)}
        return value
    if isinstance(value, tuple):
        return {_TUPLE: [_encode(v, tensors) for v in value]}
    if isinstance(value, list):
        return [_encode(v, tensors) for v in value]
    if isinstance(value, dict):
        if all(isinstance(k, str) for k in value):
            if any(k.startswith("__evalkit_") for k in value):
                raise TypeError("state keys starting with '__evalkit_' are reserved")
            return {k: _encode(v, tensors) for k, v in value.items()}
        for k in value:
            if not isinstance(k, (str, int)) or isinstance(k, bool):
                raise TypeError(f"state dict key {k!r} is neither a string nor an integer")
        return {_ITEMS: [[k, _encode(v, tensors)] for k, v in value.items()]}
    raise TypeError(f"{type(value).__name__} cannot be stored in a checkpoint")


def _decode(value: Any, tensors: dict[str, Any]) -> Any:
    if isinstance(value, list):
        return [_decode(v, tensors) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        ((key, inner),) = value.items()
        if key == _TENSOR:
            if inner not in tensors:
                raise StateFormatError(f"tensor {inner!r} is missing from the tensor file")
            return tensors[inner]
        if key == _TUPLE:
            return tuple(_decode(v, tensors) for v in inner)
        if key == _ITEMS:
            return {k: _decode(v, tensors) for k, v in inner}
        if key == _FLOAT:
            if inner not in ("nan", "inf", "-inf"):
                raise StateFormatError(f"bad float marker {inner!r}")
            return float(inner)
    return {k: _decode(v, tensors) for k, v in value.items()}


def save_state(state: dict[str, Any], directory: Path, stem: str = "state") -> None:
    """Write `state` as `<stem>.safetensors` (every tensor) and `<stem>.json` (the rest).
    The JSON file is written last: its presence marks the pair as complete."""
    from safetensors.torch import save_file

    tensors: dict[str, Any] = {}
    tree = _encode(state, tensors)
    tensor_path = directory / f"{stem}.safetensors"
    save_file(tensors, str(tensor_path), metadata={"format": FORMAT})
    doc = {"format": FORMAT, "tensors_sha256": _sha256(tensor_path), "state": tree}
    (directory / f"{stem}.json").write_text(
        json.dumps(doc, allow_nan=False, separators=(",", ":")), encoding="utf-8"
    )


def load_state(directory: Path, stem: str = "state") -> dict[str, Any]:
    """Read what `save_state` wrote. Raises StateFormatError for anything else: a missing
    or changed tensor file, JSON of another format."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    json_path = directory / f"{stem}.json"
    tensor_path = directory / f"{stem}.safetensors"
    try:
        doc = json.loads(json_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StateFormatError(f"{json_path} cannot be read: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise StateFormatError(f"{json_path} is not an {FORMAT} file")
    if not tensor_path.is_file() or _sha256(tensor_path) != doc.get("tensors_sha256"):
        raise StateFormatError(f"{tensor_path} is missing or does not match {json_path.name}")
    try:
        tensors = load_file(str(tensor_path))
    except (SafetensorError, OSError) as exc:
        raise StateFormatError(f"{tensor_path} cannot be read: {exc}") from None
    state = _decode(doc.get("state"), tensors)
    if not isinstance(state, dict):
        raise StateFormatError(f"{json_path} holds no state mapping")
    return state
