"""Adapters a suite declares with `train:` instead of `path:`.

Before the engine is built, each one needed by the run is looked up in the adapter cache,
`cache_dir()/adapters/<key>/`, where the key is a sha256 over the base fingerprint, the
training data, the settings and the training-code version. A hit is reused; a miss is
trained into that directory (atomically: a run interrupted mid-training leaves only
checkpoints, which the next run resumes from, never a half adapter that looks finished).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from evalkit.paths import cache_dir
from evalkit.training.data import DataSpec
from evalkit.training.settings import LoraSettings

log = logging.getLogger(__name__)
CARD_SETTINGS = (
    "rank",
    "alpha",
    "dropout",
    "target_modules",
    "learning_rate",
    "lr_schedule",
    "epochs",
    "max_steps",
    "batch_size",
    "grad_accum",
    "max_seq_len",
    "seed",
)


def lora_settings(train: Any) -> LoraSettings:
    """A suite's `train:` block as LoraSettings: the same fields, so the same key as
    `evalkit train` and the library for the same values (alpha None becomes 2 x rank)."""
    return LoraSettings(**{f.name: getattr(train, f.name) for f in fields(LoraSettings)})


def data_specs(suite: Any, train: Any) -> list[DataSpec]:
    items = train.data if isinstance(train.data, list) else [train.data]
    return [
        DataSpec(
            suite.resolve(d.path),
            d.prompt_column,
            d.completion_column,
            d.prompt,
            d.completion,
            d.messages,
            d.system,
        )
        for d in items
    ]


@dataclass
class DeclaredAdapters:
    """Adapter name -> directory for the engine, and what the results record about them."""

    paths: dict[str, Path]
    training: dict[str, dict[str, Any]] = field(default_factory=dict)
    sweep: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)

    def annotate(self, results: dict[str, Any]) -> None:
        """Add `training` to each trained variant, `sweep` and QLoRA drift warnings."""
        for v in results["variants"]:
            if v.get("adapter") in self.training:
                v["training"] = self.training[v["adapter"]]
        if self.sweep is not None:
            results["sweep"] = self.sweep
        results["warnings"] += self.warnings


ProgressFactory = Callable[[str, int], Any]


def resolve_adapters(
    suite: Any, needed: set[str], *, progress: ProgressFactory | None = None
) -> DeclaredAdapters:
    """Paths for every needed adapter: `path:` ones as given, `train:` ones from the
    cache or trained now. Says which, through `progress` and the log."""
    from evalkit.training.sweep import sweep_summary

    cfg = suite.config
    out = DeclaredAdapters(paths={})
    for name, adapter in cfg.adapters.items():
        if name not in needed:
            continue
        if adapter.path is not None:
            out.paths[name] = suite.resolve(adapter.path)
            # an adapter trained by `evalkit train --qlora` carries its drift in its card
            card = _card_of(out.paths[name])
            drift = (card.get("quantization_drift") or {}).get("max_abs_logit_diff")
        else:
            out.paths[name], out.training[name] = _train_or_reuse(
                suite, name, adapter.train, progress
            )
            drift = out.training[name].get("quantization_drift")
        if drift is not None and not cfg.base.load_in_4bit:
            out.warnings.append(
                f"{name} was trained with QLoRA on a 4-bit base and is evaluated on the "
                f"{cfg.base.dtype} base: its logits differ from the trained ones by up to "
                f"{drift:.3g} (quantization drift), in the adapter and merged variants alike"
            )
    out.sweep = sweep_summary(cfg.adapters, needed)
    return out


def _card_of(path: Path) -> dict[str, Any]:
    from evalkit.training.merge import read_card

    try:
        return read_card(path)
    except (OSError, ValueError):
        return {}


def _train_or_reuse(
    suite: Any, name: str, train: Any, progress: ProgressFactory | None
) -> tuple[Path, dict[str, Any]]:
    from contextlib import nullcontext

    from evalkit.engines.resolve import resolve_model
    from evalkit.training.base import base_fingerprint
    from evalkit.training.data import data_sha256
    from evalkit.training.loop import training_key
    from evalkit.training.merge import read_card
    from evalkit.training.run import read_data, train_adapter

    cfg = suite.config
    settings = lora_settings(train)
    specs = data_specs(suite, train)
    examples = read_data(specs)
    resolved = resolve_model(cfg.base.model, relative_to=suite.root)
    key = training_key(
        base_fingerprint(resolved.source, resolved.is_local), data_sha256(examples), settings
    )
    target = cache_dir() / "adapters" / key
    reused = (target / "training_card.json").exists() and (target / "adapter_config.json").exists()
    if reused:
        log.warning("adapter %s: reusing the trained adapter in %s", name, target)
        if progress is not None:
            with progress(f"adapter {name}: reused (cached)", 1) as advance:
                advance(1)
    else:
        log.warning("adapter %s: not in the cache, training it into %s", name, target)
        n_train = len(examples) - (
            round(settings.val_fraction * len(examples)) if settings.val_fraction else 0
        )
        per_epoch = math.ceil(
            math.ceil(max(1, n_train) / settings.batch_size) / settings.grad_accum
        )
        total = settings.max_steps or settings.epochs * per_epoch
        ctx = progress(f"adapter {name}: training", total) if progress else nullcontext(None)
        with ctx as advance:
            on_step = (lambda step, loss: advance(1)) if advance else None
            train_adapter(
                cfg.base.model,
                specs,
                settings,
                target,
                resume=True,
                progress=False,
                relative_to=suite.root,
                meta={"suite": str(suite.path), "adapter": name},
                on_step=on_step,
            )
    card = read_card(target)
    info: dict[str, Any] = {
        "status": "reused" if reused else "trained",
        "key": key,
        "path": str(target),
        "qlora": bool(card.get("qlora")),
        "settings": {k: card["settings"].get(k) for k in CARD_SETTINGS},
        "final_loss": card.get("final_loss"),
        "epoch_losses": card.get("epoch_losses", []),
        "val_losses": card.get("val_losses", []),
        "seconds": card.get("seconds"),
        "quantization_drift": (card.get("quantization_drift") or {}).get("max_abs_logit_diff"),
    }
    return target, info
