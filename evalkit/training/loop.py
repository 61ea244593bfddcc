"""The LoRA training loop: completion-only loss, validation, checkpoints and resume.

torch, transformers and peft are imported inside the functions, so importing this module
stays light.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import shutil
import time
import warnings
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from evalkit.training.data import (
    IGNORE_INDEX,
    Example,
    check_examples,
    data_sha256,
    encode_example,
    split_validation,
)
from evalkit.training.settings import (
    TRAINING_CODE_VERSION,
    LoraSettings,
    TrainingDiverged,
    TrainingError,
    TrainResult,
)
from evalkit.training.steps import batches, completion_loss, lr_lambda, validation_loss
from evalkit.training.store import (
    checkpoint_root,
    latest_checkpoint,
    load_checkpoint,
    save_adapter,
    save_checkpoint,
)

log = logging.getLogger(__name__)


def training_key(base_fingerprint: str, data_hash: str, settings: LoraSettings) -> str:
    """What identifies a trained adapter: base weights, data, settings and code version."""
    blob = json.dumps(
        [base_fingerprint, data_hash, settings.to_dict(), TRAINING_CODE_VERSION], sort_keys=True
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def check_target_modules(model: Any, settings: LoraSettings) -> None:
    if isinstance(settings.target_modules, str):
        return
    import torch

    names = [n for n, _ in model.named_modules()]
    missing = [
        t for t in settings.target_modules if not any(n == t or n.endswith("." + t) for n in names)
    ]
    if missing:
        linear = sorted(
            {
                n.rsplit(".", 1)[-1]
                for n, m in model.named_modules()
                if isinstance(m, torch.nn.Linear) and n != "lm_head"
            }
        )
        raise TrainingError(
            f"target module(s) {', '.join(repr(m) for m in missing)} not found in the model",
            hint=f"Its linear layers are: {', '.join(linear)} (or use 'all-linear').",
        )


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


def _lora_state(peft_model: Any, get_state: Callable[[Any], dict[str, Any]]) -> dict[str, Any]:
    with warnings.catch_warnings():
        # a base recorded by its suite name (builtin:...) is no directory peft could read
        # a config from; it only checks for resized embeddings, which LoRA never has
        warnings.filterwarnings("ignore", message="Could not find a config file")
        return get_state(peft_model)


def _diverged(
    loss: float, epoch: int, step: int, out_dir: Path, s: LoraSettings
) -> TrainingDiverged:
    last = latest_checkpoint(out_dir)
    return TrainingDiverged(
        f"training diverged: loss is {loss} at epoch {epoch + 1}, step {step + 1}; "
        f"nothing was saved to {out_dir}",
        hint=(f"The last good checkpoint is kept: {last}. " if last else "")
        + f"Lower the learning rate (now {s.learning_rate}) or check the data.",
    )


def train_lora(
    model: Any,
    tokenizer: Any,
    examples: list[Example],
    settings: LoraSettings,
    out_dir: Path,
    *,
    progress: bool = True,
    meta: dict[str, Any] | None = None,
    keep_adapter: bool = False,
    resume: bool = False,
    checkpoint_every: int | None = None,
    base_fingerprint: str | None = None,
    on_step: Callable[[int, float], None] | None = None,
) -> TrainResult:
    """Train a LoRA adapter on (prompt, completion) pairs and save it to `out_dir`.

    `out_dir` receives `adapter_config.json`, `adapter_model.safetensors` and
    `training_card.json`, written to a temporary sibling and renamed into place.
    Checkpoints go to `<out_dir>.checkpoints/` every `checkpoint_every` steps (default:
    each epoch end) and are removed once the adapter is saved; with `resume=True` the run
    continues from the newest one (same settings and data required) and ends with the
    same weights as an uninterrupted run.

    The caller's `model` is modified in place while training (LoRA layers injected) and
    restored afterwards (LoRA unloaded, `requires_grad` and train/eval mode put back).
    With `keep_adapter=True`, `TrainResult.model` is the trained PeftModel instead.

    AdamW on the LoRA parameters, warm-up then a linear/cosine/constant schedule,
    gradients clipped to norm 1, example order shuffled each epoch with a generator seeded
    by `settings.seed`: a run on CPU is reproducible. Raises TrainingError (bad input) and
    TrainingDiverged (a NaN/inf loss; checkpoints are kept).
    """
    import torch
    from peft import (
        LoraConfig,
        get_peft_model,
        get_peft_model_state_dict,
        set_peft_model_state_dict,
    )

    out_dir = Path(out_dir)
    s = settings
    problems = s.problems()
    if problems:
        raise TrainingError(problems[0])
    check_examples(examples)
    check_target_modules(model, s)
    data_hash = data_sha256(examples)
    base_fp = base_fingerprint or str(getattr(model, "name_or_path", "") or "unknown")
    key = training_key(base_fp, data_hash, s)
    train_ex, val_ex = split_validation(examples, s.val_fraction, s.seed)
    encoded = [encode_example(tokenizer, p, c, s.max_seq_len) for p, c in train_ex]
    kept = [e for e in encoded if any(y != IGNORE_INDEX for y in e[1][1:])]
    if not kept:
        raise TrainingError(
            f"every example's prompt fills max_seq_len={s.max_seq_len} tokens",
            hint="Raise max_seq_len or shorten the prompts.",
        )
    if len(kept) < len(encoded):
        log.warning("%d examples dropped: prompt alone fills max_seq_len", len(encoded) - len(kept))
    val = [
        e
        for e in (encode_example(tokenizer, p, c, s.max_seq_len) for p, c in val_ex)
        if any(y != IGNORE_INDEX for y in e[1][1:])
    ]
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    ckpt = latest_checkpoint(out_dir) if resume else None
    state: dict[str, Any] = load_checkpoint(ckpt) if ckpt else {}
    if state and state.get("key") != key:
        raise TrainingError(
            f"the checkpoint {ckpt} was made with other settings, data or base model",
            hint="Run without --resume to start afresh (its checkpoints are then replaced).",
        )
    if not resume:
        shutil.rmtree(checkpoint_root(out_dir), ignore_errors=True)

    was_training = model.training
    grad_flags = {n: p.requires_grad for n, p in model.named_parameters()}
    device = next(model.parameters()).device
    torch.manual_seed(s.seed)  # LoRA A initialisation and dropout masks
    order_rng = torch.Generator().manual_seed(s.seed)
    target = s.target_modules if isinstance(s.target_modules, str) else list(s.target_modules)
    assert s.alpha is not None  # derived from a valid rank on construction
    config = LoraConfig(
        task_type="CAUSAL_LM",
        r=s.rank,
        lora_alpha=s.alpha,
        lora_dropout=s.dropout,
        target_modules=target,
        bias="none",
    )
    with warnings.catch_warnings():  # peft calls a transformers API deprecated in v5
        warnings.filterwarnings(
            "ignore", message=".*is_gradient_checkpointing", category=FutureWarning
        )
        peft_model = get_peft_model(model, config)
    params = [p for p in peft_model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=s.learning_rate, weight_decay=s.weight_decay)
    groups_per_epoch = math.ceil(math.ceil(len(kept) / s.batch_size) / s.grad_accum)
    total = s.max_steps or s.epochs * groups_per_epoch
    n_epochs = math.ceil(total / groups_per_epoch)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(s, total))
    every = checkpoint_every or groups_per_epoch

    losses: list[float] = list(state.get("losses", []))
    epoch_losses: list[float] = list(state.get("epoch_losses", []))
    val_losses: list[float] = list(state.get("val_losses", []))
    tokens = int(state.get("tokens", 0))
    step = int(state.get("step", 0))
    if state:
        set_peft_model_state_dict(peft_model, state["adapter"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        # Mid-epoch: regenerate this epoch's batches from its starting state and skip the
        # steps done; at an epoch's end: continue from the state after its batches.
        order_rng.set_state(state["rng_now"] if state["epoch_done"] else state["epoch_rng"])
        torch.set_rng_state(state["torch_rng"])
        log.info("resuming %s from step %d (%s)", out_dir.name, step, ckpt)
    start_epoch = int(state["epoch"]) + int(state["epoch_done"]) if state else 0
    elapsed0 = float(state.get("seconds", 0.0))
    started = time.perf_counter()
    started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    done = False
    peft_model.train()
    try:
        import rich.progress as rp

        bar = rp.Progress(
            rp.TextColumn("[bold]train[/] {task.description}"),
            rp.BarColumn(),
            rp.MofNCompleteColumn(),
            rp.TextColumn("loss {task.fields[loss]}"),
            rp.TimeElapsedColumn(),
            rp.TimeRemainingColumn(),
            disable=not progress,
        )
        with bar:
            task = bar.add_task(out_dir.name, total=total, completed=step, loss="-")
            for epoch in range(start_epoch, n_epochs):
                epoch_rng = order_rng.get_state()
                epoch_batches = batches(kept, s.batch_size, pad_id, order_rng)
                groups = [
                    epoch_batches[g : g + s.grad_accum]
                    for g in range(0, len(epoch_batches), s.grad_accum)
                ]
                for gi in range(step - epoch * groups_per_epoch, len(groups)):
                    if step >= total:
                        break
                    step_loss = 0.0
                    for ids, mask, labels in groups[gi]:
                        ids, mask, labels = ids.to(device), mask.to(device), labels.to(device)
                        loss = completion_loss(peft_model, ids, mask, labels)
                        if not torch.isfinite(loss):
                            raise _diverged(loss.item(), epoch, step, out_dir, s)
                        (loss / len(groups[gi])).backward()
                        step_loss += loss.item() / len(groups[gi])
                        tokens += int(mask.sum())
                    torch.nn.utils.clip_grad_norm_(params, 1.0)
                    optimizer.step()
                    scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
                    losses.append(step_loss)
                    step += 1
                    bar.update(
                        task,
                        advance=1,
                        loss=f"{step_loss:.4f}",
                        description=f"{out_dir.name} epoch {epoch + 1}/{n_epochs}",
                    )
                    epoch_done = gi == len(groups) - 1 or step >= total
                    if epoch_done:
                        epoch_losses.append(
                            sum(losses[epoch * groups_per_epoch :])
                            / max(1, len(losses) - epoch * groups_per_epoch)
                        )
                        if val:
                            val_losses.append(
                                validation_loss(peft_model, val, s.batch_size, pad_id, device)
                            )
                        line = f"{out_dir.name}: epoch {epoch + 1}/{n_epochs}"
                        line += f" loss {epoch_losses[-1]:.4f}"
                        line += f", validation loss {val_losses[-1]:.4f}" if val else ""
                        log.info(line)
                        if progress:
                            bar.console.print(line, highlight=False)
                    if step % every == 0 and step < total:
                        save_checkpoint(
                            out_dir,
                            step,
                            _lora_state(peft_model, get_peft_model_state_dict),
                            {
                                "key": key,
                                "step": step,
                                "epoch": epoch,
                                "epoch_done": epoch_done,
                                "epoch_rng": epoch_rng,
                                "rng_now": order_rng.get_state(),
                                "torch_rng": torch.get_rng_state(),
                                "optimizer": optimizer.state_dict(),
                                "scheduler": scheduler.state_dict(),
                                "losses": losses,
                                "epoch_losses": epoch_losses,
                                "val_losses": val_losses,
                                "tokens": tokens,
                                "seconds": elapsed0 + time.perf_counter() - started,
                            },
                        )
                    if on_step is not None:
                        on_step(step, step_loss)
                if step >= total:
                    break
        seconds = elapsed0 + time.perf_counter() - started
        peft_model.eval()
        card = {
            "key": key,
            "settings": s.to_dict(),
            "examples": len(examples),
            "examples_trained": len(kept),
            "examples_validation": len(val),
            "data_sha256": data_hash,
            "base_model": getattr(model, "name_or_path", None) or None,
            "base_fingerprint": base_fp,
            "qlora": s.qlora,
            "epoch_losses": epoch_losses,
            "val_losses": val_losses,
            "final_loss": losses[-1],
            "steps": len(losses),
            "tokens": tokens,
            "seconds": round(seconds, 2),
            "tokens_per_second": round(tokens / seconds, 1) if seconds else None,
            "started_at": started_at,
            "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "resumed_from_step": int(state["step"]) if state else None,
            "training_code_version": TRAINING_CODE_VERSION,
            "versions": _versions(),
            "meta": meta or {},
        }
        save_adapter(peft_model, out_dir, s.save_dtype, card)
        shutil.rmtree(checkpoint_root(out_dir), ignore_errors=True)
        done = True
    finally:
        if not (keep_adapter and done):
            peft_model.unload()
            for n, p in model.named_parameters():
                p.requires_grad_(grad_flags.get(n, p.requires_grad))
            model.train(was_training)

    return TrainResult(
        out_dir,
        losses,
        epoch_losses,
        tokens,
        seconds,
        val_losses=val_losses,
        resumed_from=int(state["step"]) if state else None,
        model=peft_model if keep_adapter else None,
    )
