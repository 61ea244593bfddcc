"""The settings, result and errors of one LoRA training run (no heavy imports)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from evalkit.errors import EvalkitError, InputError

# Part of every declared adapter's cache key: bump it when a change to the training code
# changes what the same settings produce, so cached adapters are retrained.
TRAINING_CODE_VERSION = "2"
SCHEDULES = ("linear", "cosine", "constant")
SAVE_DTYPES = ("float32", "float16", "bfloat16")
COMPUTE_DTYPES = ("float32", "bfloat16", "float16")


class TrainingError(InputError, ValueError):
    """Bad training input: data, settings, an output directory. Exit code 2. Also a
    ValueError, so library callers can catch it as one."""


class TrainingDiverged(EvalkitError, FloatingPointError):
    """The loss became NaN or infinite. The last good checkpoint is kept. Exit code 3."""


@dataclass(frozen=True)
class LoraSettings:
    """Hyper-parameters of one LoRA run; recorded verbatim in `training_card.json`.

    `max_steps`, when set, replaces `epochs` as the length of the run (optimizer steps).
    `val_fraction` of the examples (chosen with `seed`) are held out for a validation loss
    after every epoch. `qlora` records that the base was loaded in 4-bit NF4 (the loader
    does that, see `evalkit.training.base.load_base`); `compute_dtype` is its compute type.
    """

    rank: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: tuple[str, ...] | str = ("q_proj", "v_proj")  # or "all-linear"
    learning_rate: float = 2e-4
    lr_schedule: str = "linear"
    epochs: int = 3
    max_steps: int | None = None
    batch_size: int = 8
    grad_accum: int = 1
    max_seq_len: int = 512
    seed: int = 0
    warmup_ratio: float = 0.05
    weight_decay: float = 0.0
    val_fraction: float = 0.0
    save_dtype: str = "float32"  # "float16" halves adapter files on disk
    qlora: bool = False
    compute_dtype: str = "float32"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if isinstance(self.target_modules, tuple):
            d["target_modules"] = list(self.target_modules)
        return d

    def replace(self, **changes: Any) -> LoraSettings:
        return LoraSettings(**{**self.__dict__, **changes})

    def problems(self) -> list[str]:
        """Each setting that cannot work, as a sentence naming it."""
        counts = ("rank", "alpha", "epochs", "batch_size", "grad_accum", "max_seq_len")
        out = [f"`{k}` must be >= 1, got {getattr(self, k)}" for k in counts
               if getattr(self, k) < 1]  # fmt: skip
        if self.max_steps is not None and self.max_steps < 1:
            out.append(f"`max_steps` must be >= 1, got {self.max_steps}")
        if not 0.0 <= self.dropout < 1.0:
            out.append(f"`dropout` must be in [0, 1), got {self.dropout}")
        if not 0.0 <= self.val_fraction < 1.0:
            out.append(f"`val_fraction` must be in [0, 1), got {self.val_fraction}")
        if not (isinstance(self.learning_rate, (int, float)) and self.learning_rate > 0):
            out.append(f"`learning_rate` must be a number > 0, got {self.learning_rate!r}")
        if self.lr_schedule not in SCHEDULES:
            out.append(f"`lr_schedule` must be one of {', '.join(SCHEDULES)}")
        if self.save_dtype not in SAVE_DTYPES:
            out.append(f"`save_dtype` must be one of {', '.join(SAVE_DTYPES)}")
        if self.compute_dtype not in COMPUTE_DTYPES:
            out.append(f"`compute_dtype` must be one of {', '.join(COMPUTE_DTYPES)}")
        if not self.target_modules:
            out.append("`target_modules` is empty")
        elif isinstance(self.target_modules, str) and self.target_modules != "all-linear":
            out.append(
                f"`target_modules` must be module names or 'all-linear', "
                f"not {self.target_modules!r}"
            )
        return out


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
