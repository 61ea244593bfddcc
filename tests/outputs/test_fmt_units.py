"""Units in the outputs come from the metric's declaration in results.json, not from its
values; only results.json files written before units were recorded are guessed."""

from __future__ import annotations

from typing import Any

from evalkit.outputs import _fmt as f


def _results(unit: str | None, values: list[float]) -> dict[str, Any]:
    metric: dict[str, Any] = {"name": "m", "label": "m", "delta_kind": "difference"}
    if unit is not None:
        metric["unit"] = unit
    return {
        "tasks": [{"name": "t", "metrics": [metric]}],
        "metrics": [{"task": "t", "metric": "m", "value": v} for v in values],
    }


def test_declared_units_win_over_the_values() -> None:
    assert f.metric_meta(_results("nats_per_token", [0.0, 0.18]))[("t", "m")]["unit"] == "number"
    assert f.metric_meta(_results("fraction", [0.2, 0.9]))[("t", "m")]["unit"] == "fraction"
    for unit in ("perplexity", "bits_per_byte", "words", "score", "number"):
        assert f.metric_meta(_results(unit, [0.5]))[("t", "m")]["unit"] == "number"


def test_a_kl_in_0_1_prints_as_a_number() -> None:
    _, unit = f.meta_for(f.metric_meta(_results("nats_per_token", [0.0, 0.18])), "t", "m")
    assert f.fmt_value(0.18, unit) == "0.180"
    assert f.fmt_delta(0.18, "difference", unit) == "+0.180"
    assert f.fmt_margin(0.15, "difference", unit) == "±0.150"


def test_old_results_without_units_are_still_guessed() -> None:
    assert f.metric_meta(_results(None, [0.0, 0.18]))[("t", "m")]["unit"] == "fraction"
    assert f.metric_meta(_results(None, [0.5, 1.8]))[("t", "m")]["unit"] == "number"
    assert f.fmt_value(0.18, "fraction") == "18.0%"
