"""Judge metrics: scored by the judge stage (evalkit.scoring.judges), not per record here;
registered so their unit and direction come from the same place as every other metric's."""

from __future__ import annotations

from typing import Any

from evalkit.scoring.metrics.registry import MetricDef, register_metric


def _judge_unit(params: dict[str, Any]) -> str:
    # the judge's kind says: a win rate against the base (pairwise), a point on a scale
    from evalkit.scoring.judges.kinds import judge_kind

    try:
        return judge_kind(str(params.get("judge_kind") or "rubric")).unit
    except ValueError:
        return "score"


register_metric(MetricDef("judge", "generate", "higher", _judge_unit, "judge"))
