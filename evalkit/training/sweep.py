"""Sweep expansion: an adapter with `sweep:` becomes one ordinary adapter per point.

`legal: {train: {...}, sweep: {rank: [8, 16]}}` becomes `legal-r8` and `legal-r16`, each
with its own `train:` block, so plans, variants, gates and comparisons treat them like any
other adapter. The suite loader runs it, so it must stay free of heavy imports.
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


def sweep_summary(adapters: dict[str, Any], evaluated: set[str]) -> dict[str, Any] | None:
    """The `sweep` entry of results.json (first sweep in the suite), or None."""
    points: dict[str, list[dict[str, Any]]] = {}
    for name, adapter in adapters.items():
        if adapter.sweep_of and name in evaluated:
            points.setdefault(adapter.sweep_of, []).append(
                {"adapter": name, "settings": dict(adapter.sweep_settings or {})}
            )
    if not points:
        return None
    sweep_name, rows = next(iter(points.items()))
    params = [k for k in SWEEPABLE if any(k in r["settings"] for r in rows)]
    return {"name": sweep_name, "parameters": params, "points": rows}
