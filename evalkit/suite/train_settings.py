"""The training settings of one LoRA run: the one definition of every setting's name, type,
default, bounds and meaning.

`LoraSettings` is what the library trains with (`evalkit.training.train_lora`) and what
`training_card.json` records. The suite's `train:` block (`evalkit.suite.config.TrainConfig`)
takes its defaults, bounds and descriptions from these fields, and `evalkit train` its flag
defaults and help, so the three cannot disagree. Plain data on purpose: the `evalkit`
command reads it at start, where importing pydantic would cost more than the whole CLI.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal, get_args

Schedule = Literal["linear", "cosine", "constant"]
SaveDtype = Literal["float32", "float16", "bfloat16"]
ComputeDtype = Literal["float32", "bfloat16", "float16"]
SCHEDULES: tuple[str, ...] = get_args(Schedule)
SAVE_DTYPES: tuple[str, ...] = get_args(SaveDtype)
COMPUTE_DTYPES: tuple[str, ...] = get_args(ComputeDtype)
ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")


def _meta(
    help: str,
    *,
    above: float | None = None,
    minimum: float | None = None,
    below: float | None = None,
    integer: bool = False,
    choices: tuple[str, ...] = (),
) -> dict[str, Any]:
    """A field's description and bounds: value > `above`, >= `minimum`, < `below`."""
    return {"help": help, "above": above, "minimum": minimum, "below": below,
            "integer": integer, "choices": choices}  # fmt: skip


def _count(help: str) -> dict[str, Any]:
    return _meta(help, above=0, integer=True)


def _share(help: str) -> dict[str, Any]:
    return _meta(help, minimum=0, below=1)


@dataclass(frozen=True)
class LoraSettings:
    """Hyper-parameters of one LoRA run; recorded verbatim in `training_card.json`.

    `alpha` left at None becomes 2 x `rank` on construction (so `replace(rank=...)` keeps
    the alpha already derived; pass `alpha=None` to derive it again). `target_modules` are
    module names (a list becomes a tuple) or "all-linear". `max_steps`, when set, replaces
    `epochs` as the length of the run (optimizer steps). `val_fraction` of the examples
    (chosen with `seed`) are held out for a validation loss after every epoch. `qlora`
    records that the base was loaded in 4-bit NF4 (the loader does that, see
    `evalkit.training.base.load_base`); `compute_dtype` is its compute type.
    """

    rank: int = field(default=16, metadata=_count("LoRA rank"))
    alpha: int | None = field(
        default=None, metadata=_count("LoRA alpha (default: 2 x rank)")
    )  # fmt: skip
    dropout: float = field(default=0.05, metadata=_share("LoRA dropout"))
    target_modules: tuple[str, ...] | str = field(
        default=ATTENTION, metadata=_meta("module names, or all-linear")
    )
    learning_rate: float = field(default=1e-3, metadata=_meta("learning rate", above=0))
    lr_schedule: Schedule = field(
        default="linear",
        metadata=_meta("linear, cosine or constant (after warm-up)", choices=SCHEDULES),
    )
    epochs: int = field(default=3, metadata=_count("passes over the data"))
    max_steps: int | None = field(
        default=None, metadata=_count("optimizer steps; overrides epochs")
    )  # fmt: skip
    batch_size: int = field(default=8, metadata=_count("examples per forward pass"))
    grad_accum: int = field(default=1, metadata=_count("batches per optimizer step"))
    max_seq_len: int = field(
        default=512, metadata=_count("tokens per example (cut on the right)")
    )  # fmt: skip
    seed: int = field(
        default=0, metadata=_meta("seed for init, dropout and data order", integer=True)
    )  # fmt: skip
    warmup_ratio: float = field(default=0.05, metadata=_share("share of steps spent warming up"))
    weight_decay: float = field(default=0.0, metadata=_meta("AdamW weight decay", minimum=0))
    val_fraction: float = field(
        default=0.0, metadata=_share("share held out for a validation loss per epoch")
    )
    save_dtype: SaveDtype = field(
        default="float32",  # "float16" halves adapter files on disk
        metadata=_meta("float32, float16 or bfloat16 adapter files", choices=SAVE_DTYPES),
    )
    qlora: bool = field(default=False, metadata=_meta("base in 4-bit NF4 (bitsandbytes)"))
    compute_dtype: ComputeDtype = field(
        default="float32", metadata=_meta("QLoRA compute dtype", choices=COMPUTE_DTYPES)
    )

    def __post_init__(self) -> None:
        # frozen: derived values are set once, here, so every copy and the card agree
        if isinstance(self.target_modules, list):
            object.__setattr__(self, "target_modules", tuple(self.target_modules))
        if self.alpha is None and _is_int(self.rank):
            object.__setattr__(self, "alpha", 2 * self.rank)

    def to_dict(self) -> dict[str, Any]:
        """The settings as JSON data: the training card's `settings`, the cache key's input."""
        d = asdict(self)
        if isinstance(self.target_modules, tuple):
            d["target_modules"] = list(self.target_modules)
        return d

    def replace(self, **changes: Any) -> LoraSettings:
        return LoraSettings(**{**self.__dict__, **changes})

    def problems(self) -> list[str]:
        """Each setting that cannot work, as a sentence naming it."""
        out = [p for f in fields(self) if (p := _problem(f.name, getattr(self, f.name)))]
        if not self.target_modules:
            out.append("`target_modules` is empty")
        elif isinstance(self.target_modules, str) and self.target_modules != "all-linear":
            out.append(
                f"`target_modules` must be module names or 'all-linear', "
                f"not {self.target_modules!r}"
            )
        return out


@dataclass(frozen=True)
class Setting:
    """One field of `LoraSettings`, as the suite config and the CLI read it."""

    name: str
    default: Any
    help: str
    above: float | None
    minimum: float | None
    below: float | None
    integer: bool
    choices: tuple[str, ...]


SETTINGS: dict[str, Setting] = {
    f.name: Setting(name=f.name, default=f.default, **f.metadata) for f in fields(LoraSettings)
}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _bound(s: Setting) -> str:
    if s.minimum is not None and s.below is not None:
        return f"in [{s.minimum:g}, {s.below:g})"
    if s.above is not None:
        return f">= {s.above + 1:g}" if s.integer else f"> {s.above:g}"
    return f">= {s.minimum:g}" if s.minimum is not None else ""


def _problem(name: str, value: Any) -> str | None:
    s = SETTINGS[name]
    if value is None and s.default is None:
        return None
    if s.choices:
        return None if value in s.choices else f"`{name}` must be one of {', '.join(s.choices)}"
    numeric = s.integer or s.above is not None or s.minimum is not None
    if not numeric:
        return None
    bound = _bound(s)
    if not (_is_int(value) if s.integer else isinstance(value, (int, float)) and not
            isinstance(value, bool)):  # fmt: skip
        what = "an integer" if s.integer else "a number"
        return f"`{name}` must be {what} {bound}".rstrip() + f", got {value!r}"
    ok = (
        (s.above is None or value > s.above)
        and (s.minimum is None or value >= s.minimum)
        and (s.below is None or value < s.below)
    )
    return None if ok else f"`{name}` must be {bound}, got {value}"
