"""The `sweep` entry of results.json: the points of a swept adapter that were evaluated
(the suite loader expands sweeps: `evalkit.suite.sweep`)."""

from __future__ import annotations

from typing import Any

from evalkit.suite.sweep import SWEEPABLE


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
