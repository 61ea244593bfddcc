"""Judge metrics: scored by the judge stage (evalkit.scoring.judges), not per record here;
registered so their unit and direction come from the same place as every other metric's."""

from __future__ import annotations

from typing import Any

from evalkit.scoring.metrics.registry import MetricDef, register_metric


def _judge_unit(params: dict[str, Any]) -> str:
    # a pairwise judge yields a win rate against the base; the others a point on the scale
    return "fraction" if params.get("judge_kind") == "pairwise" else "score"


register_metric(MetricDef("judge", "generate", "higher", _judge_unit, "judge"))
