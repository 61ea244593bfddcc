"""Judge figures into the results document (results.json): a top-level `judges` list and,
per sample, `judgments`: {variant: [one entry per judge]} (a list, so a task can have
several judges)."""

from __future__ import annotations

import math
from typing import Any

from evalkit.scoring.judges.run import JudgeOutcome


def _clean(value: Any) -> Any:
    """NaN is not JSON: an undefined figure (kappa of one label) is written as null."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def attach_judgments(results: dict[str, Any], outcome: JudgeOutcome) -> None:
    """Add the judges' summaries and each sample's judgments to ``results`` (in place)."""
    if not outcome.judges:
        return
    results["judges"] = [_clean(j) for j in outcome.judges]
    for sample in results.get("samples", []):
        per_variant = {
            v: _clean(entries)
            for (task, ex_id, v), entries in outcome.judgments.items()
            if task == sample["task"] and ex_id == sample["id"]
        }
        if per_variant:
            sample["judgments"] = per_variant
