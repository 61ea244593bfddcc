"""`evalkit train` and `evalkit merge`, registered on the main app by `evalkit.cli`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from evalkit.errors import InputError
from evalkit.suite.train_settings import SETTINGS as S

if TYPE_CHECKING:
    from evalkit.training.settings import LoraSettings

DEFAULT_BASE = "builtin:smollm2-135m-instruct"
# The flags named otherwise than the settings they set (`evalkit train` named them first).
FLAG_SETTINGS = {"lr": "learning_rate", "schedule": "lr_schedule"}


def _help(name: str) -> str:
    """A flag's help is its setting's description (evalkit.suite.train_settings)."""
    return S[name].help


def settings_from_flags(flags: dict[str, Any]) -> LoraSettings:
    """The LoraSettings that `evalkit train`'s flags (parameter name -> value) ask for."""
    from evalkit.training.settings import LoraSettings

    values = {FLAG_SETTINGS.get(k, k): v for k, v in flags.items()}
    targets = values["target_modules"].strip()
    values["target_modules"] = (
        targets if targets == "all-linear"
        else tuple(t.strip() for t in targets.split(",") if t.strip())
    )  # fmt: skip
    return LoraSettings(**{name: values[name] for name in S})


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
    rank: Annotated[int, typer.Option(help=_help("rank"))] = S["rank"].default,
    alpha: Annotated[int | None, typer.Option(help=_help("alpha"))] = S["alpha"].default,
    dropout: Annotated[float, typer.Option(help=_help("dropout"))] = S["dropout"].default,
    target_modules: Annotated[
        str, typer.Option(help="comma-separated module names, or all-linear")
    ] = ",".join(S["target_modules"].default),
    lr: Annotated[float, typer.Option("--lr", help=_help("learning_rate"))] = S[
        "learning_rate"
    ].default,
    schedule: Annotated[str, typer.Option(help=_help("lr_schedule"))] = S["lr_schedule"].default,
    warmup_ratio: Annotated[float, typer.Option(help=_help("warmup_ratio"))] = S[
        "warmup_ratio"
    ].default,
    weight_decay: Annotated[float, typer.Option(help=_help("weight_decay"))] = S[
        "weight_decay"
    ].default,
    epochs: Annotated[int, typer.Option(help=_help("epochs"))] = S["epochs"].default,
    max_steps: Annotated[int | None, typer.Option(help=_help("max_steps"))] = S[
        "max_steps"
    ].default,
    batch_size: Annotated[int, typer.Option(help=_help("batch_size"))] = S["batch_size"].default,
    grad_accum: Annotated[int, typer.Option(help=_help("grad_accum"))] = S["grad_accum"].default,
    max_seq_len: Annotated[int, typer.Option(help=_help("max_seq_len"))] = S["max_seq_len"].default,
    seed: Annotated[int, typer.Option(help=_help("seed"))] = S["seed"].default,
    val_fraction: Annotated[float, typer.Option(help=_help("val_fraction"))] = S[
        "val_fraction"
    ].default,
    save_dtype: Annotated[str, typer.Option(help=_help("save_dtype"))] = S["save_dtype"].default,
    qlora: Annotated[bool, typer.Option("--qlora", help=_help("qlora"))] = S["qlora"].default,
    compute_dtype: Annotated[str, typer.Option(help=_help("compute_dtype"))] = S[
        "compute_dtype"
    ].default,
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
    settings = settings_from_flags(locals())  # first: locals() are the flags, nothing else
    from evalkit.cli.common import _console, _errors
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
