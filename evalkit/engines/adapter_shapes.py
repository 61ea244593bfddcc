"""An adapter's LoRA shapes checked against the base's layers when the engine loads it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from evalkit.errors import InputError


def check_lora_shapes(model: Any, adapter_dir: Path, name: str) -> None:
    """Refuse an adapter whose LoRA matrices do not fit the base's layers, before peft
    loads it (peft's own error is a long shape dump). Exit code 2: the suite pairs an
    adapter with a base it was not trained for, which no retry fixes."""
    weights = adapter_dir / "adapter_model.safetensors"
    if not weights.exists():
        return
    from safetensors import safe_open

    modules = dict(model.named_modules())
    problems = []
    with safe_open(str(weights), framework="pt") as f:
        for key in f.keys():  # noqa: SIM118 (safe_open is not iterable)
            m = re.match(r"(?:base_model\.model\.)?(.+)\.lora_([AB])(?:\.[^.]+)?\.weight$", key)
            if not m:
                continue
            target, which = m.group(1), m.group(2)
            module = modules.get(target)
            shape = tuple(f.get_slice(key).get_shape())
            if module is None:
                problems.append(f"{target}: the base has no such layer")
                continue
            in_f = getattr(module, "in_features", None)
            out_f = getattr(module, "out_features", None)
            if in_f is None or out_f is None:
                continue  # not a linear layer (embeddings): peft checks those itself
            if (which == "A" and shape[-1] != in_f) or (which == "B" and shape[0] != out_f):
                problems.append(
                    f"{target}: lora_{which} {list(shape)} does not fit a {in_f}->{out_f} layer"
                )
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise InputError(
            f"adapter '{name}' ({adapter_dir}) does not fit the suite's base: "
            + "; ".join(problems[:3])
            + more,
            hint="It was trained for another base model. Point the suite's `base.model` at "
            "the base it was trained on (see its adapter_config.json "
            "base_model_name_or_path), or use an adapter trained for this base.",
        )
