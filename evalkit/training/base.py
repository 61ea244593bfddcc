"""Loading a base model for training: full precision, or 4-bit NF4 for QLoRA."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

from evalkit.errors import ModelLoadError

log = logging.getLogger(__name__)


def base_fingerprint(source: str, is_local: bool) -> str:
    """The same fingerprint the evaluation engine gives the base (config + weights)."""
    from evalkit.engines.resolve import ResolvedModel, model_fingerprint

    return model_fingerprint(ResolvedModel(source, source, is_local))


def load_base(
    spec: str,
    *,
    qlora: bool = False,
    compute_dtype: str = "float32",
    device: str = "auto",
    relative_to: Path | None = None,
    gradient_checkpointing: bool = False,
) -> tuple[Any, Any, str]:
    """(model, tokenizer, base fingerprint) for any base the suite accepts.

    With `qlora`, the weights load in 4-bit NF4 through bitsandbytes (double quantization,
    `compute_dtype` for the matmuls) and the model is prepared for k-bit training (frozen
    weights, norms in float32, input gradients on). bitsandbytes' CPU backend makes this
    work without a GPU, slowly.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from evalkit.engines.resolve import resolve_model

    resolved = resolve_model(spec, relative_to=relative_to)
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    kwargs: dict[str, Any] = {
        "dtype": torch.float32 if not qlora else getattr(torch, compute_dtype)
    }
    if qlora:
        kwargs["quantization_config"] = bnb_config(compute_dtype)
        kwargs["device_map"] = {"": device}
    try:
        tokenizer = AutoTokenizer.from_pretrained(resolved.source)
        model: Any = AutoModelForCausalLM.from_pretrained(resolved.source, **kwargs)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"could not load base model '{spec}': {exc}") from None
    if not qlora:
        model.to(device)
    else:
        from peft import prepare_model_for_kbit_training

        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=FutureWarning)
            model = prepare_model_for_kbit_training(
                model, use_gradient_checkpointing=gradient_checkpointing
            )
    model.eval()
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    # Recorded in adapter_config.json and the card instead of a cache path of this machine.
    model.name_or_path = spec
    return model, tokenizer, base_fingerprint(resolved.source, resolved.is_local)


def bnb_config(compute_dtype: str) -> Any:
    try:
        import bitsandbytes  # noqa: F401
        import torch
        from transformers import BitsAndBytesConfig
    except ImportError:
        raise ModelLoadError("QLoRA needs bitsandbytes", hint="pip install bitsandbytes") from None
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=getattr(torch, compute_dtype),
    )


def probe_logits(model: Any, tokenizer: Any, texts: list[str]) -> list[Any]:
    """Float32 logits of each probe text (one at a time: no padding effects), on CPU."""
    import torch

    device = next(model.parameters()).device
    out = []
    with torch.no_grad():
        for text in texts:
            ids = tokenizer(text, return_tensors="pt", add_special_tokens=False).input_ids
            out.append(model(input_ids=ids.to(device)).logits.float().cpu())
    return out


def max_abs_diff(a: list[Any], b: list[Any]) -> float:
    return max(float((x - y).abs().max()) for x, y in zip(a, b, strict=True))
