"""Assemble the results document (results.json) from the stages' values.

Its shape is the typed model in evalkit/outputs/model/ (validated when written); the JSON
Schema generated from it is committed at evalkit/outputs/results.schema.json; the report, JUnit and
summary are rendered from this document alone, so `evalkit report RUN_DIR` can re-render
them without recomputing anything.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from collections.abc import Mapping
from typing import Any

from evalkit.decide.diagnosis import Diagnosis, as_jsonable
from evalkit.decide.gates import Decision
from evalkit.decide.integrity import IntegrityResult
from evalkit.decide.served import SkippedCheck
from evalkit.decide.verdicts import Comparison
from evalkit.engines.records import Record
from evalkit.outputs.model import SCHEMA_VERSION
from evalkit.plan.types import Plan, TaskPlan
from evalkit.scoring.metrics import MetricSpec, unit_of
from evalkit.scoring.score import Scores


def _variant_entry(
    name: str,
    adapters: dict[str, str],
    fingerprints: dict[str, str],
    diagnosis: dict[str, Any] | None = None,
) -> dict:
    if name == "base":
        return {
            "name": name,
            "kind": "base",
            "adapter": None,
            "fingerprint": fingerprints.get(name),
        }
    adapter = name.removeprefix("merged:")
    return {
        "name": name,
        "kind": "merged" if name.startswith("merged:") else "adapter",
        "adapter": adapter,
        "path": adapters.get(adapter),
        "fingerprint": fingerprints.get(name),
        **({"diagnosis": diagnosis} if diagnosis is not None else {}),
    }


def _metric_entry(m: MetricSpec) -> dict:
    return {
        "name": m.name,
        "label": m.label,
        "higher_is_better": m.higher_is_better,
        "margin": m.margin,
        "delta_kind": m.delta_kind,
        "unit": unit_of(m),
    }


def _example_value(spec: MetricSpec, value: float, weight: float) -> float | None:
    if math.isnan(value) or not weight:
        return None
    mean = value / weight
    return math.exp(mean) if spec.transform == "exp" else mean


def _samples(
    task: TaskPlan, plan: Plan, records: dict[tuple[str, str, str], Record], scores: Scores
) -> list[dict]:
    if "rolling" in task.needs:
        return []  # whole documents: the per-document figures live in the scores
    out = []
    for i, ex in enumerate(task.examples):
        outputs: dict[str, str | None] = {}
        per_variant: dict[str, dict[str, float | None]] = {}
        for v in plan.variants:
            rec = records[(task.name, ex.id, v)]
            if rec.output is not None:
                outputs[v] = rec.output
            elif rec.choice_logprobs:
                best = max(range(len(rec.choice_logprobs)), key=rec.choice_logprobs.__getitem__)
                outputs[v] = ex.choices[best]
            per_variant[v] = {
                m.name: _example_value(
                    m,
                    scores[(task.name, m.name, v)].values[i],
                    scores[(task.name, m.name, v)].weights[i],
                )
                for m in task.metrics
            }
        out.append(
            {
                "task": task.name,
                "id": ex.id,
                "prompt": ex.prompt,
                "reference": ex.reference,
                "outputs": outputs,
                "scores": per_variant,
            }
        )
    return out


def comparison_rows(comparisons: list[Comparison]) -> list[dict[str, Any]]:
    """The comparisons in results.json's format."""
    return [
        {
            "task": c.task,
            "variant": c.variant,
            "baseline": c.baseline,
            "metric": c.metric.name,
            "base_value": c.stats.base,
            "value": c.stats.variant,
            "delta": c.stats.delta,
            "ci_low": c.stats.ci_low,
            "ci_high": c.stats.ci_high,
            "p_value": c.stats.p_value,
            "p_adjusted": c.p_adjusted,
            "test": c.stats.test,
            "verdict": c.verdict,
            "margin": c.metric.margin,
            "delta_kind": c.metric.delta_kind,
            "n": c.stats.n,
            "mde": c.stats.mde,
        }
        for c in comparisons
    ]


def build_results(
    *,
    plan: Plan,
    suite_meta: dict,
    run_meta: dict,
    base_meta: dict,
    adapters: dict[str, str],
    fingerprints: dict[str, str],
    records: list[Record],
    scores: Scores,
    decision: Decision,
    integrity: list[IntegrityResult],
    exit_code: int,
    warnings: list[str],
    diagnoses: Mapping[str, Diagnosis] | None = None,
    skipped: list[SkippedCheck] | None = None,
) -> dict[str, Any]:
    """`diagnoses`: format drift vs knowledge loss per variant (evalkit.decide.diagnosis),
    written as each variant's optional `diagnosis`. `skipped`: integrity checks the run
    did not make (engine.reference: skip), written after the others with `skipped: true`,
    `passed: false` and the reason as their detail."""
    from evalkit import __version__

    by_key = {(r.task, r.example_id, r.variant): r for r in records}
    diagnosed = as_jsonable(dict(diagnoses or {}))
    metrics_rows = []
    for task in plan.tasks:
        for m in task.metrics:
            for v in plan.variants:
                ms = scores[(task.name, m.name, v)]
                row = {
                    "task": task.name,
                    "variant": v,
                    "metric": m.name,
                    "value": ms.aggregate(m),
                    "n": ms.n_scored,
                    "n_unscored": len(ms.values) - ms.n_scored,
                }
                if ms.reasons:  # why, as reason -> examples
                    row["unscored_reasons"] = dict(Counter(ms.reasons.values()))
                metrics_rows.append(row)
    comparisons = comparison_rows(decision.comparisons)
    forgetting = {
        v: {
            "flagged": bool(probes),
            "probes": [
                {
                    "task": c.task,
                    "metric": c.metric.name,
                    "delta": c.stats.delta,
                    "ci_low": c.stats.ci_low,
                    "ci_high": c.stats.ci_high,
                    "margin": c.metric.margin,
                }
                for c in probes
            ],
        }
        for v, probes in decision.forgetting.items()
    }
    return {
        "schema_version": SCHEMA_VERSION,
        "evalkit_version": __version__,
        "suite": suite_meta,
        "run": run_meta,
        "base": base_meta,
        # the settings the comparisons were computed with, so that a reader prints the
        # interval level that was used and `compare` can redo them alike
        "stats": dataclasses.asdict(plan.stats),
        "variants": [
            _variant_entry(v, adapters, fingerprints, diagnosed.get(v)) for v in plan.variants
        ],
        "tasks": [
            {
                "name": t.name,
                "kind": t.kind,
                "description": t.description,
                "n": len(t.examples),
                "metrics": [_metric_entry(m) for m in t.metrics],
            }
            for t in plan.tasks
        ],
        "metrics": metrics_rows,
        "comparisons": comparisons,
        "forgetting": forgetting,
        "integrity": [
            {
                "check": r.check,
                "variant": r.variant,
                "passed": r.passed,
                "value": r.value,
                "tolerance": r.tolerance,
                "detail": r.detail,
            }
            for r in integrity
        ]
        + [
            {
                "check": k.check,
                "variant": k.variant,
                "passed": False,
                "skipped": True,
                "value": None,
                "tolerance": None,
                "detail": f"skipped: {k.reason}",
            }
            for k in skipped or []
        ],
        "gates": [
            {
                "name": g.name,
                "passed": g.passed,
                "severity": g.severity,
                "detail": g.detail,
                "inconclusive": g.inconclusive,
            }
            for g in decision.gates
        ],
        "samples": [s for t in plan.tasks for s in _samples(t, plan, by_key, scores)],
        "warnings": warnings,
        "exit_code": exit_code,
    }
