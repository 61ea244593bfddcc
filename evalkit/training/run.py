"""One training job end to end: data, base, output-directory checks, training, card."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evalkit.training.data import DataSpec, Example, data_sha256, load_examples
from evalkit.training.loop import train_lora, training_key
from evalkit.training.merge import quantization_drift, read_card, record_drift
from evalkit.training.settings import LoraSettings, TrainingError, TrainResult
from evalkit.training.store import check_output_dir

log = logging.getLogger(__name__)


@dataclass
class TrainOutcome:
    out_dir: Path
    key: str
    reused: bool  # out_dir already held this very adapter: nothing was trained
    card: dict[str, Any]
    result: TrainResult | None = None


def read_data(specs: list[DataSpec]) -> list[Example]:
    examples: list[Example] = []
    for spec in specs:
        examples += load_examples(spec)
    return examples


def train_adapter(
    base: str,
    data: DataSpec | list[DataSpec],
    settings: LoraSettings,
    out_dir: Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    checkpoint_every: int | None = None,
    progress: bool = True,
    relative_to: Path | None = None,
    meta: dict[str, Any] | None = None,
    on_step: Callable[[int, float], None] | None = None,
) -> TrainOutcome:
    """Everything that can be checked without loading the model is checked first (settings,
    data, the output directory), so bad input costs a second and overwrites nothing."""
    from evalkit.engines.resolve import resolve_model
    from evalkit.training.base import base_fingerprint, load_base

    problems = settings.problems()
    if problems:
        raise TrainingError(problems[0])
    specs = data if isinstance(data, list) else [data]
    examples = read_data(specs)
    resolved = resolve_model(base, relative_to=relative_to)
    key = training_key(
        base_fingerprint(resolved.source, resolved.is_local), data_sha256(examples), settings
    )
    out_dir = Path(out_dir)
    if check_output_dir(out_dir, key, overwrite=overwrite):
        return TrainOutcome(out_dir, key, True, read_card(out_dir))
    model, tokenizer, fp = load_base(
        base, qlora=settings.qlora, compute_dtype=settings.compute_dtype, relative_to=relative_to
    )
    meta = {"data": [str(s.path) for s in specs], **(meta or {})}
    result = train_lora(
        model,
        tokenizer,
        examples,
        settings,
        out_dir,
        progress=progress,
        meta=meta,
        resume=resume,
        checkpoint_every=checkpoint_every,
        base_fingerprint=fp,
        on_step=on_step,
    )
    del model
    if settings.qlora:
        # The adapter will be evaluated and merged on the full-precision base: measure
        # now how far that moves it from what it was trained on, and keep the figure.
        record_drift(out_dir, quantization_drift(base, out_dir, settings.compute_dtype))
    return TrainOutcome(out_dir, key, False, read_card(out_dir), result)
