"""A minimal LoRA trainer for chat-formatted (prompt, completion) pairs.

Training renders every prompt exactly as evaluation does (`evalkit.tasks.chat`): the
input is `render_chat(tok, prompt) + completion + end_of_turn(tok)`, and the loss covers
only the completion and the end-of-turn token. torch, transformers and peft are imported
inside the functions, so `import evalkit.train` stays light.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from evalkit.tasks.chat import end_of_turn, render_chat

log = logging.getLogger(__name__)

IGNORE_INDEX = -100
_SAVE_DTYPES = ("float32", "float16", "bfloat16")


@dataclass(frozen=True)
class LoraSettings:
    """Hyper-parameters of one LoRA run; recorded verbatim in `training_card.json`."""

    rank: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: tuple[str, ...] | str = ("q_proj", "v_proj")  # or "all-linear"
    learning_rate: float = 2e-4
    epochs: int = 3
    batch_size: int = 8
    grad_accum: int = 1
    max_seq_len: int = 512
    seed: int = 0
    warmup_ratio: float = 0.05
    weight_decay: float = 0.0
    save_dtype: str = "float32"  # "float16" halves adapter files on disk


@dataclass
class TrainResult:
    """What a run produced. `model` is the trained PeftModel only with `keep_adapter=True`."""

    out_dir: Path
    losses: list[float]  # one per optimizer step
    epoch_losses: list[float]  # mean step loss of each epoch
    tokens: int  # input tokens processed (padding excluded), all epochs
    seconds: float
    model: Any = field(default=None, repr=False)


def encode_example(
    tokenizer: Any, prompt: str, completion: str, max_seq_len: int
) -> tuple[list[int], list[int]]:
    """Token ids and labels of one example; prompt tokens are labelled -100.

    The prompt part and the completion part are tokenized separately (no special tokens
    added) and concatenated, so the boundary is exactly where evaluation's prompt ends.
    Too long examples are cut on the right to `max_seq_len` tokens.
    """
    prompt_ids = list(tokenizer(render_chat(tokenizer, prompt), add_special_tokens=False).input_ids)
    target = completion + end_of_turn(tokenizer)
    completion_ids = list(tokenizer(target, add_special_tokens=False).input_ids)
    ids = (prompt_ids + completion_ids)[:max_seq_len]
    labels = ([IGNORE_INDEX] * len(prompt_ids) + completion_ids)[:max_seq_len]
    return ids, labels


def data_sha256(examples: list[tuple[str, str]]) -> str:
    """A stable digest of the training pairs, recorded in the training card."""
    blob = json.dumps([list(e) for e in examples], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def _validate(model: Any, examples: list[tuple[str, str]], s: LoraSettings) -> None:
    """Raise ValueError naming the first problem with the inputs."""
    counts = ("rank", "alpha", "epochs", "batch_size", "grad_accum", "max_seq_len")
    checks = [
        (not examples, "no training examples: `examples` is empty"),
        *((getattr(s, k) < 1, f"`{k}` must be >= 1, got {getattr(s, k)}") for k in counts),
        (not 0.0 <= s.dropout < 1.0, f"`dropout` must be in [0, 1), got {s.dropout}"),
        (s.learning_rate <= 0, f"`learning_rate` must be > 0, got {s.learning_rate}"),
        (s.save_dtype not in _SAVE_DTYPES, f"`save_dtype` must be one of {_SAVE_DTYPES}"),
        (not s.target_modules, "`target_modules` is empty"),
        (isinstance(s.target_modules, str) and s.target_modules != "all-linear",
         f"`target_modules` must be module names or 'all-linear', not {s.target_modules!r}"),
    ]  # fmt: skip
    for failed, message in checks:
        if failed:
            raise ValueError(message)
    for i, ex in enumerate(examples):
        if len(ex) != 2 or not all(isinstance(x, str) for x in ex):
            raise ValueError(f"example {i} is not a (prompt, completion) pair of strings")
    if isinstance(s.target_modules, str):
        return
    names = [n for n, _ in model.named_modules()]
    missing = [t for t in s.target_modules if not any(n == t or n.endswith("." + t) for n in names)]
    if missing:
        import torch

        modules = model.named_modules()
        linear = sorted(
            {n.rsplit(".", 1)[-1] for n, m in modules if isinstance(m, torch.nn.Linear)}
        )
        raise ValueError(
            f"target module(s) {', '.join(repr(m) for m in missing)} not found in the model; "
            f"its linear layers are: {', '.join(linear)}"
        )


def _batches(
    encoded: list[tuple[list[int], list[int]]], size: int, pad_id: int, gen: Any
) -> list[tuple[Any, Any, Any]]:
    """One epoch of right-padded (input_ids, attention_mask, labels) batches.

    The order is shuffled with `gen`; within windows of 16 batches, examples are sorted
    by length so a batch holds similar lengths (less padding), then the batches are
    shuffled again.
    """
    import torch

    order = torch.randperm(len(encoded), generator=gen).tolist()
    groups: list[list[int]] = []
    for w in range(0, len(order), size * 16):
        part = sorted(order[w : w + size * 16], key=lambda i: len(encoded[i][0]))
        groups += [part[j : j + size] for j in range(0, len(part), size)]
    out = []
    for g in torch.randperm(len(groups), generator=gen).tolist():
        chunk = [encoded[i] for i in groups[g]]
        width = max(len(ids) for ids, _ in chunk)
        ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        labels = torch.full((len(chunk), width), IGNORE_INDEX, dtype=torch.long)
        for row, (x, y) in enumerate(chunk):
            ids[row, : len(x)] = torch.tensor(x)
            mask[row, : len(x)] = 1
            labels[row, : len(y)] = torch.tensor(y)
        out.append((ids, mask, labels))
    return out


def completion_loss(model: Any, ids: Any, mask: Any, labels: Any) -> Any:
    """Mean next-token cross-entropy over the labelled (completion) tokens.

    Equal to the model's own `labels=` loss, but logits are computed only from the
    position that predicts the first labelled token on: prompt positions need none, and
    the vocabulary projection is a large share of a small model's cost.
    """
    import torch.nn.functional as F

    first = int((labels != IGNORE_INDEX).any(dim=0).nonzero()[0])
    start = max(first - 1, 0)
    out = model(
        input_ids=ids, attention_mask=mask, use_cache=False, logits_to_keep=ids.shape[1] - start
    )
    logits = out.logits[:, :-1].flatten(0, 1).float()
    return F.cross_entropy(logits, labels[:, start + 1 :].flatten(), ignore_index=IGNORE_INDEX)


def _versions() -> dict[str, str]:
    import peft
    import torch
    import transformers

    import evalkit

    return {
        "evalkit": evalkit.__version__,
        "torch": torch.__version__,
        "peft": peft.__version__,
        "transformers": transformers.__version__,
    }


def _save(peft_model: Any, out_dir: Path, save_dtype: str, card: dict[str, Any]) -> None:
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
        peft_model.save_pretrained(str(tmp), save_embedding_layers=False)
        (tmp / "README.md").unlink(missing_ok=True)  # peft's empty model-card template
        if save_dtype != "float32":
            weights = tmp / "adapter_model.safetensors"
            dtype = getattr(torch, save_dtype)
            tensors = {k: v.to(dtype).contiguous() for k, v in load_file(str(weights)).items()}
            save_file(tensors, str(weights), metadata={"format": "pt"})
        card_text = json.dumps(card, indent=2) + "\n"
        (tmp / "training_card.json").write_text(card_text, encoding="utf-8")
        if out_dir.exists():
            out_dir.rename(old)
        tmp.rename(out_dir)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def train_lora(
    model: Any,
    tokenizer: Any,
    examples: list[tuple[str, str]],
    settings: LoraSettings,
    out_dir: Path,
    *,
    progress: bool = True,
    meta: dict[str, Any] | None = None,
    keep_adapter: bool = False,
) -> TrainResult:
    """Train a LoRA adapter on (prompt, completion) pairs and save it to `out_dir`.

    `out_dir` receives `adapter_config.json`, `adapter_model.safetensors` and
    `training_card.json` (settings, data digest, losses, versions and `meta`). Files are
    written to a temporary sibling directory first and renamed, so an interrupted run
    never leaves a half-written adapter.

    The caller's `model` is modified in place while training (LoRA layers injected) and
    restored afterwards: the LoRA layers are unloaded and its parameters' `requires_grad`
    and train/eval mode are put back, so it is the unchanged base again. With
    `keep_adapter=True` it is not unloaded: `TrainResult.model` is the trained PeftModel
    (wrapping the caller's model), for callers that want to use it directly.

    Optimisation: AdamW on the LoRA parameters, linear warm-up then linear decay,
    gradients clipped to norm 1, example order shuffled each epoch by a generator seeded
    with `settings.seed` (with `torch.manual_seed`, a run on CPU is reproducible).

    Raises ValueError for bad inputs and FloatingPointError on a non-finite loss.
    """
    import torch
    from peft import LoraConfig, get_peft_model

    out_dir = Path(out_dir)
    s = settings
    _validate(model, examples, s)
    encoded = [encode_example(tokenizer, p, c, s.max_seq_len) for p, c in examples]
    kept = [e for e in encoded if any(y != IGNORE_INDEX for y in e[1][1:])]
    if not kept:
        raise ValueError(f"every example's prompt fills max_seq_len={s.max_seq_len} tokens")
    if len(kept) < len(encoded):
        log.warning("%d examples dropped: prompt alone fills max_seq_len", len(encoded) - len(kept))
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    was_training = model.training
    grad_flags = {n: p.requires_grad for n, p in model.named_parameters()}
    torch.manual_seed(s.seed)  # LoRA A initialisation and dropout masks
    order_rng = torch.Generator().manual_seed(s.seed)
    target = s.target_modules if isinstance(s.target_modules, str) else list(s.target_modules)
    config = LoraConfig(task_type="CAUSAL_LM", r=s.rank, lora_alpha=s.alpha,
                        lora_dropout=s.dropout, target_modules=target, bias="none")  # fmt: skip
    with warnings.catch_warnings():  # peft calls a transformers API deprecated in v5
        warnings.filterwarnings(
            "ignore", message=".*is_gradient_checkpointing", category=FutureWarning
        )
        peft_model = get_peft_model(model, config)
    params = [p for p in peft_model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=s.learning_rate, weight_decay=s.weight_decay)
    n_batches = math.ceil(len(kept) / s.batch_size)
    steps_per_epoch = math.ceil(n_batches / s.grad_accum)
    total = s.epochs * steps_per_epoch
    warmup = min(round(s.warmup_ratio * total), total - 1)

    def lr_factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total - step) / (total - warmup))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)

    losses: list[float] = []
    epoch_losses: list[float] = []
    tokens = 0
    done = False
    start = time.perf_counter()
    peft_model.train()
    try:
        import rich.progress as rp

        bar = rp.Progress(
            rp.TextColumn("[bold]train[/] {task.description}"), rp.BarColumn(),
            rp.MofNCompleteColumn(), rp.TextColumn("loss {task.fields[loss]}"),
            rp.TimeElapsedColumn(), rp.TimeRemainingColumn(), disable=not progress,
        )  # fmt: skip
        with bar:
            task = bar.add_task(out_dir.name, total=total, loss="-")
            for epoch in range(s.epochs):
                batches = _batches(kept, s.batch_size, pad_id, order_rng)
                first = len(losses)
                for g in range(0, len(batches), s.grad_accum):
                    group = batches[g : g + s.grad_accum]
                    step_loss = 0.0
                    for ids, mask, labels in group:
                        loss = completion_loss(peft_model, ids, mask, labels)
                        if not torch.isfinite(loss):
                            raise FloatingPointError(
                                f"loss is {loss.item()} at epoch {epoch + 1}, step "
                                f"{len(losses) + 1}; lower the learning rate "
                                f"(now {s.learning_rate}) or check the data"
                            )
                        (loss / len(group)).backward()
                        step_loss += loss.item() / len(group)
                        tokens += int(mask.sum())
                    torch.nn.utils.clip_grad_norm_(params, 1.0)
                    optimizer.step()
                    scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
                    losses.append(step_loss)
                    label = f"{out_dir.name} epoch {epoch + 1}/{s.epochs}"
                    bar.update(task, advance=1, loss=f"{step_loss:.4f}", description=label)
                epoch_losses.append(sum(losses[first:]) / max(1, len(losses) - first))
                log.info("%s: epoch %d/%d mean loss %.4f", out_dir.name, epoch + 1, s.epochs,
                         epoch_losses[-1])  # fmt: skip
        seconds = time.perf_counter() - start
        peft_model.eval()

        card = {
            "settings": asdict(s),
            "examples": len(examples),
            "examples_trained": len(kept),
            "data_sha256": data_sha256(examples),
            "base_model": getattr(model, "name_or_path", None) or None,
            "epoch_losses": epoch_losses,
            "final_loss": losses[-1],
            "steps": len(losses),
            "tokens": tokens,
            "seconds": round(seconds, 2),
            "versions": _versions(),
            "meta": meta or {},
        }
        _save(peft_model, out_dir, s.save_dtype, card)
        done = True
    finally:
        if not (keep_adapter and done):
            peft_model.unload()
            for n, p in model.named_parameters():
                p.requires_grad_(grad_flags.get(n, p.requires_grad))
            model.train(was_training)

    kept_model = peft_model if keep_adapter else None
    return TrainResult(out_dir, losses, epoch_losses, tokens, seconds, model=kept_model)
