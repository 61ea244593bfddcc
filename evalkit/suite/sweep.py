"""Sweep expansion: an adapter with `sweep:` becomes one ordinary adapter per point.

`legal: {train: {...}, sweep: {rank: [8, 16]}}` becomes `legal-r8` and `legal-r16`, each
with its own `train:` block, so plans, variants, gates and comparisons treat them like any
other adapter. The suite loader runs it, right after validation, so everything after the
loader sees plain adapters.
"""

from __future__ import annotations

import itertools
from typing import Any

SWEEPABLE = {"rank": "r", "learning_rate": "lr", "epochs": "e"}


def point_name(base: str, point: dict[str, Any]) -> str:
    parts = [f"{SWEEPABLE[k]}{v:g}" if isinstance(v, float) else f"{SWEEPABLE[k]}{v}"
             for k, v in point.items()]  # fmt: skip
    return "-".join([base, *parts])


def expand_sweeps(adapters: dict[str, Any]) -> dict[str, Any]:
    """Adapters with every `sweep:` replaced by its points. Raises ValueError on a point
    whose name another adapter has."""
    out: dict[str, Any] = {}
    for name, adapter in adapters.items():
        if adapter.sweep is None:
            out[name] = adapter
            continue
        grid = {k: getattr(adapter.sweep, k) for k in SWEEPABLE if getattr(adapter.sweep, k)}
        for values in itertools.product(*grid.values()):
            point = dict(zip(grid, values, strict=True))
            train = adapter.train.model_copy(update=point)
            new = point_name(name, point)
            if new in adapters or new in out:
                raise ValueError(f"sweep point '{new}' of '{name}' clashes with another adapter")
            out[new] = adapter.model_copy(
                update={"train": train, "sweep": None, "sweep_of": name, "sweep_settings": point}
            )
    return out
