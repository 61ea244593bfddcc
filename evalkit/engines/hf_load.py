"""Loading a transformers model and its tokenizer for batched inference: the evaluated
base (engines/hf.py) and the in-process judge (scoring/judges/hf_judge.py) load the same
way, so a model that does not load is the same clear error for both."""

from __future__ import annotations

import logging
import warnings
from typing import Any

from evalkit.errors import ModelLoadError


def quiet_transformers(load_in_4bit: bool = False) -> None:
    """Per-load progress bars and deprecation notices from the libraries would drown the
    run's own progress; evalkit reports loading itself. bitsandbytes (imported by peft
    when installed) warns at import about optional 4-bit CPU kernels: news only to a run
    that loads a 4-bit model, so other runs do not see it. Set before peft is imported."""
    if not load_in_4bit:
        logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"transformers\..*")
    warnings.filterwarnings("ignore", message=".*past_key_values. is deprecated")


def load_for_inference(
    source: str,
    *,
    dtype: str,
    device: Any,
    what: str,
    hint: str | None = None,
    quantization_config: Any = None,
) -> tuple[Any, Any]:
    """(tokenizer, model) from a local model directory: the model in eval mode on
    `device` (a quantized one stays where bitsandbytes put it), the tokenizer padding on
    the left with EOS where it has no pad token. A model that does not load is a
    ModelLoadError naming `what`."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    quiet_transformers(quantization_config is not None)
    kwargs: dict[str, Any] = {"dtype": getattr(torch, dtype)}
    if quantization_config is not None:
        kwargs["quantization_config"] = quantization_config
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        model: Any = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    except (OSError, ValueError) as exc:  # ValueError: no usable tokenizer, unknown config
        raise ModelLoadError(f"could not load {what}: {exc}", hint=hint) from None
    if quantization_config is None:
        model.to(device)
    model.eval()
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer, model
