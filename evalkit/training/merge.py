"""Merging an adapter into its base for deployment, and measuring what merging (and, for
QLoRA adapters, quantization) changes.

The merged model is checked against the unmerged adapter on a few probe texts after it is
reloaded from disk, so the figure covers the saved files, not just the in-memory merge.
A QLoRA adapter was trained on a 4-bit base but is merged into (and usually evaluated on)
the full-precision base: the difference between the two is the quantization drift, and it
is reported beside the merge fidelity instead of being hidden inside it.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from evalkit.training.base import load_base, max_abs_diff, probe_logits
from evalkit.training.settings import TrainingError
from evalkit.training.store import CARD

PROBE_PROMPTS = [
    "What is the capital of France?",
    "Summarize this contract clause in the house format.\n\nThe Supplier shall deliver the "
    "goods within 30 days of the order.",
    "Write two sentences about the sea.",
    "List three prime numbers.",
]


@dataclass(frozen=True)
class MergeReport:
    out_dir: str
    base: str
    max_abs_logit_diff: float  # merged (reloaded from disk) vs unmerged adapter
    probes: int
    qlora: bool
    quantization_drift: float | None  # adapter on the 4-bit base vs on full precision


def read_card(adapter_dir: Path) -> dict[str, Any]:
    path = adapter_dir / CARD
    if not path.exists():
        return {}
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def adapter_base(adapter_dir: Path) -> str:
    """The base an adapter was trained on: its training card, else adapter_config.json."""
    if not (adapter_dir / "adapter_config.json").exists():
        raise TrainingError(
            f"{adapter_dir} has no adapter_config.json, so it is not a peft adapter directory"
        )
    card = read_card(adapter_dir)
    if card.get("base_model"):
        return str(card["base_model"])
    config = json.loads((adapter_dir / "adapter_config.json").read_text(encoding="utf-8"))
    base = config.get("base_model_name_or_path")
    if not base:
        raise TrainingError(f"{adapter_dir}: no base model recorded", hint="Pass --base.")
    return str(base)


def probe_texts(tokenizer: Any) -> list[str]:
    from evalkit.engines.chat import render_chat

    return [render_chat(tokenizer, p) for p in PROBE_PROMPTS]


def quantization_drift(base: str, adapter_dir: Path, compute_dtype: str = "float32") -> float:
    """max |Δlogit| between the adapter on the 4-bit NF4 base and on the full-precision one."""
    from peft import PeftModel

    figures = []
    for qlora in (True, False):
        model, tok, _ = load_base(base, qlora=qlora, compute_dtype=compute_dtype)
        peft_model = PeftModel.from_pretrained(model, str(adapter_dir)).eval()
        figures.append(probe_logits(peft_model, tok, probe_texts(tok)))
        del peft_model, model
    return max_abs_diff(figures[0], figures[1])


def record_drift(adapter_dir: Path, drift: float) -> None:
    """Add the quantization drift to the adapter's training card (atomic rewrite)."""
    card = read_card(adapter_dir)
    card["quantization_drift"] = {"max_abs_logit_diff": drift, "probes": len(PROBE_PROMPTS)}
    tmp = adapter_dir / f".{CARD}.tmp-{os.getpid()}"
    tmp.write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    tmp.replace(adapter_dir / CARD)


def merge_adapter(
    adapter_dir: Path, out_dir: Path, *, base: str | None = None, overwrite: bool = False
) -> MergeReport:
    """Merge `adapter_dir` into its full-precision base and save a deployable model
    (safetensors, tokenizer, chat template) to `out_dir`, atomically."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    adapter_dir, out_dir = Path(adapter_dir), Path(out_dir)
    base = base or adapter_base(adapter_dir)
    if out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        raise TrainingError(
            f"{out_dir} is not empty; nothing was overwritten",
            hint="Choose another --out, or pass --overwrite.",
        )
    card = read_card(adapter_dir)
    qlora = bool(card.get("qlora"))
    model, tok, _ = load_base(base, device="cpu")
    texts = probe_texts(tok)
    peft_model = PeftModel.from_pretrained(model, str(adapter_dir)).eval()
    unmerged = probe_logits(peft_model, tok, texts)
    merged = peft_model.merge_and_unload()
    merged.name_or_path = base
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.with_name(f".{out_dir.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        merged.save_pretrained(str(tmp))
        tok.save_pretrained(str(tmp))  # tokenizer_config.json carries the chat template
        del merged, peft_model, model
        reloaded = AutoModelForCausalLM.from_pretrained(str(tmp), dtype=torch.float32).eval()
        fidelity = max_abs_diff(probe_logits(reloaded, tok, texts), unmerged)
        del reloaded
        drift = None
        if qlora:
            stored = (card.get("quantization_drift") or {}).get("max_abs_logit_diff")
            compute = str((card.get("settings") or {}).get("compute_dtype", "float32"))
            drift = stored if stored is not None else quantization_drift(base, adapter_dir, compute)
        report = MergeReport(str(out_dir), base, fidelity, len(texts), qlora, drift)
        (tmp / "merge_card.json").write_text(
            json.dumps({**asdict(report), "adapter": str(adapter_dir), "training": card},
                       indent=2) + "\n", encoding="utf-8")  # fmt: skip
        if out_dir.exists():
            shutil.rmtree(out_dir)
        tmp.rename(out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return report
