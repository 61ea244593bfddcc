"""The settings, result and errors of one LoRA training run (no heavy imports).

`LoraSettings` is defined with the suite's `train:` block (`evalkit.suite.train_settings`),
so the library, the suite and `evalkit train` share one set of fields and defaults.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evalkit.errors import EvalkitError, InputError
from evalkit.suite.train_settings import COMPUTE_DTYPES, SAVE_DTYPES, SCHEDULES, LoraSettings

# Part of every declared adapter's cache key: bump it when a change to the training code
# changes what the same settings produce, so cached adapters are retrained.
TRAINING_CODE_VERSION = "2"
__all__ = [
    "COMPUTE_DTYPES", "SAVE_DTYPES", "SCHEDULES", "TRAINING_CODE_VERSION", "LoraSettings",
    "TrainResult", "TrainingDiverged", "TrainingError",
]  # fmt: skip


class TrainingError(InputError, ValueError):
    """Bad training input: data, settings, an output directory. Exit code 2. Also a
    ValueError, so library callers can catch it as one."""


class TrainingDiverged(EvalkitError, FloatingPointError):
    """The loss became NaN or infinite. The last good checkpoint is kept. Exit code 3."""


@dataclass
class TrainResult:
    """What a run produced. `model` is the trained PeftModel only with `keep_adapter=True`."""

    out_dir: Path
    losses: list[float]  # one per optimizer step
    epoch_losses: list[float]  # mean step loss of each epoch
    tokens: int  # input tokens processed (padding excluded), all epochs
    seconds: float
    val_losses: list[float] = field(default_factory=list)  # one per epoch, if validating
    resumed_from: int | None = None  # the checkpoint step a resumed run started from
    model: Any = field(default=None, repr=False)

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0
