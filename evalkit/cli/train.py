"""`evalkit train` and `evalkit merge`, registered on the main app by `evalkit.cli`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from evalkit.errors import InputError

DEFAULT_BASE = "builtin:smollm2-135m-instruct"


def train(
    data: Annotated[Path, typer.Option("--data", help=".jsonl/.csv/.parquet or a saved dataset")],
    out: Annotated[Path, typer.Option("--out", "-o", help="the adapter directory to write")],
    base: Annotated[
        str, typer.Option(help="builtin:NAME, a model directory, .gguf, org/name")
    ] = DEFAULT_BASE,
    prompt_column: Annotated[str, typer.Option(help="column holding the prompt")] = "prompt",
    completion_column: Annotated[
        str, typer.Option(help="column holding the completion")
    ] = "completion",
    messages_column: Annotated[
        str | None, typer.Option(help="a chat column instead (list of {role, content})")
    ] = None,
    prompt_template: Annotated[
        str | None, typer.Option(help="Jinja over the columns, e.g. 'Summarize: {{ clause }}'")
    ] = None,
    completion_template: Annotated[str | None, typer.Option(help="Jinja over the columns")] = None,
    system: Annotated[str | None, typer.Option(help="a system message for every prompt")] = None,
    rank: Annotated[int, typer.Option(help="LoRA rank")] = 16,
    alpha: Annotated[int | None, typer.Option(help="LoRA alpha (default: 2 x rank)")] = None,
    dropout: Annotated[float, typer.Option(help="LoRA dropout")] = 0.05,
    target_modules: Annotated[
        str, typer.Option(help="comma-separated module names, or all-linear")
    ] = "q_proj,k_proj,v_proj,o_proj",
    lr: Annotated[float, typer.Option("--lr", help="learning rate")] = 1e-3,
    schedule: Annotated[
        str, typer.Option(help="linear, cosine or constant (after warm-up)")
    ] = "linear",
    warmup_ratio: Annotated[float, typer.Option(help="share of steps spent warming up")] = 0.05,
    epochs: Annotated[int, typer.Option(help="passes over the data")] = 3,
    max_steps: Annotated[
        int | None, typer.Option(help="optimizer steps; overrides --epochs")
    ] = None,
    batch_size: Annotated[int, typer.Option(help="examples per forward pass")] = 8,
    grad_accum: Annotated[int, typer.Option(help="batches per optimizer step")] = 1,
    max_seq_len: Annotated[int, typer.Option(help="tokens per example (cut on the right)")] = 512,
    seed: Annotated[int, typer.Option(help="seed for init, dropout and data order")] = 0,
    val_fraction: Annotated[
        float, typer.Option(help="share held out for a validation loss per epoch")
    ] = 0.0,
    save_dtype: Annotated[
        str, typer.Option(help="float32, float16 or bfloat16 adapter files")
    ] = "float32",
    qlora: Annotated[
        bool, typer.Option("--qlora", help="base in 4-bit NF4 (bitsandbytes)")
    ] = False,
    compute_dtype: Annotated[str, typer.Option(help="QLoRA compute dtype")] = "float32",
    save_every: Annotated[
        int | None, typer.Option(help="checkpoint every N steps (default: each epoch)")
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="continue from the last checkpoint")
    ] = False,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="replace a different adapter in --out")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar")] = False,
) -> None:
    """Train a LoRA (or QLoRA) adapter; the output loads with plain peft."""
    from evalkit.cli.common import _console, _errors
    from evalkit.training.settings import LoraSettings

    targets: tuple[str, ...] | str = (
        "all-linear" if target_modules.strip() == "all-linear"
        else tuple(t.strip() for t in target_modules.split(",") if t.strip())
    )  # fmt: skip
    settings = LoraSettings(
        rank=rank, alpha=alpha if alpha is not None else 2 * rank, dropout=dropout,
        target_modules=targets, learning_rate=lr, lr_schedule=schedule, epochs=epochs,
        max_steps=max_steps, batch_size=batch_size, grad_accum=grad_accum,
        max_seq_len=max_seq_len, seed=seed, warmup_ratio=warmup_ratio,
        val_fraction=val_fraction, save_dtype=save_dtype, qlora=qlora,
        compute_dtype=compute_dtype,
    )  # fmt: skip
    from evalkit.training.data import DataSpec
    from evalkit.training.run import train_adapter

    spec = DataSpec(data, prompt_column, completion_column, prompt_template,
                    completion_template, messages_column, system)  # fmt: skip
    console = _console()
    with _errors():
        outcome = train_adapter(base, spec, settings, out, resume=resume, overwrite=overwrite,
                                checkpoint_every=save_every, progress=not quiet)  # fmt: skip
    card = outcome.card
    if outcome.reused:
        console.print(f"{out} already holds this adapter (key {card['key'][:12]}); nothing to do")
        return
    val = card.get("val_losses") or []
    console.print(
        f"trained {out}: {card['steps']} steps, loss {card['epoch_losses'][0]:.4f} -> "
        f"{card['epoch_losses'][-1]:.4f}"
        + (f", validation {val[-1]:.4f}" if val else "")
        + f", {card['tokens_per_second']} tokens/s, {card['seconds']:.0f} s",
        highlight=False,
    )
    drift = card.get("quantization_drift")
    if drift:
        console.print(
            f"QLoRA: on the full-precision base this adapter's logits move by up to "
            f"{drift['max_abs_logit_diff']:.3g} (quantization drift)", highlight=False,
        )  # fmt: skip


def merge(
    adapter: Annotated[Path, typer.Argument(help="a peft adapter directory")],
    out: Annotated[Path, typer.Option("--out", "-o", help="the merged model directory")],
    base: Annotated[str | None, typer.Option(help="default: the base the adapter records")] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="replace a non-empty --out")
    ] = False,
) -> None:
    """Merge an adapter into its base and save a deployable model; check the merge."""
    from evalkit.cli.common import _console, _errors
    from evalkit.training.merge import merge_adapter

    with _errors():
        if not adapter.is_dir():
            raise InputError(f"adapter directory not found: {adapter}")
        report = merge_adapter(adapter, out, base=base, overwrite=overwrite)
    console = _console()
    console.print(
        f"merged {adapter} into {report.base}: {out}\n"
        f"largest disagreement with the unmerged adapter on {report.probes} probe texts: "
        f"max |Δlogit| = {report.max_abs_logit_diff:.3g}",
        highlight=False,
    )
    if report.qlora:
        console.print(
            f"QLoRA adapter: trained on a 4-bit base; against that, the full-precision merge "
            f"differs by up to {report.quantization_drift:.3g} (quantization drift)",
            highlight=False,
        )


def register(app: typer.Typer) -> None:
    app.command()(train)
    app.command()(merge)
