"""The judge stage: records -> judgments and `judge:<name>` metric values.

Rubric and reference judges grade each variant's answer on the spec's scale. Pairwise
judges compare each variant's answer with the base's, in both orders (variant as A, then
as B), and give the variant a per-example win value: 1 it wins both, 0 it loses both,
0.5 a tie or a verdict that flips with the order. The base's own value is 0.5 by
construction, so the usual paired comparison with the base tests the win rate against
0.5. An example with no answer, or an unreadable verdict, is unscored (NaN), never 0.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evalkit.engines.records import Record
from evalkit.plan.types import JudgeRef, JudgeSettings, Plan, TaskPlan
from evalkit.profile import timer
from evalkit.scoring.judges.calibrate import calibrate, limit_labels, read_labels
from evalkit.scoring.judges.core import Item, Judged, JudgeRunner, resolve_endpoint
from evalkit.scoring.judges.spec import JudgeSpec, load_judge_spec
from evalkit.scoring.score import MetricScores, Scores


@dataclass
class JudgeOutcome:
    scores: Scores = field(default_factory=dict)
    # (task, example id, variant) -> one entry per judge
    judgments: dict[tuple[str, str, str], list[dict[str, Any]]] = field(default_factory=dict)
    judges: list[dict[str, Any]] = field(default_factory=list)
    # (task, metric) -> why its gates are inconclusive
    unreliable: dict[tuple[str, str], str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # for the run's warnings


def judge_metrics(task: TaskPlan) -> list[Any]:
    return [m for m in task.metrics if m.kind == "judge"]


def run_judges(
    plan: Plan, records: list[Record], *, use_cache: bool, progress: Any
) -> JudgeOutcome:
    """Judge every task's judge metrics: the plan says which judges, where calls go, and
    each example's row; `records`: the engine's outputs."""
    from evalkit.paths import cache_dir
    from evalkit.scoring.judges.cache import JudgeCache

    outcome = JudgeOutcome()
    work = [(t, m, ref) for t in plan.tasks for m in judge_metrics(t) if (ref := t.judge(m.name))]
    if not work:
        return outcome
    jcfg = plan.judge or JudgeSettings()
    endpoint = resolve_endpoint(jcfg.provider, plan.root or Path.cwd())
    cache = JudgeCache(cache_dir() / "results.sqlite") if use_cache else None
    by_key = {(r.task, r.example_id, r.variant): r for r in records}
    try:
        with JudgeRunner(endpoint, cache) as runner:
            for task, metric, ref in work:
                spec = load_judge_spec(ref.spec_path)
                _judge_task(plan, task, metric, ref, spec, runner, by_key, outcome, progress)
                summary = outcome.judges[-1]
                if ref.labels:
                    rows = read_labels(ref.labels, spec)
                    # a smoke run: N labels as N examples (kept evenly over the values)
                    picked = rows if plan.limit is None else limit_labels(rows, plan.limit)
                    if len(picked) < len(rows):
                        outcome.notes.append(
                            f"judge {spec.name} on {task.name}: smoke run (--limit "
                            f"{plan.limit}), calibrated on {len(picked)} of its {len(rows)} "
                            "labels; its kappa is not evidence"
                        )
                    before = runner.retries()
                    with timer("judge calibration", labels=len(picked)):
                        rel = calibrate(spec, picked, runner)
                    rel["retries_by_reason"] = _delta(before, runner.retries())
                    min_kappa = jcfg.min_kappa
                    rel["min_kappa"] = min_kappa
                    rel["reliable"] = bool(
                        min_kappa is None
                        or (not math.isnan(rel["kappa"]) and rel["kappa"] >= min_kappa)
                    )
                    summary["reliability"] = rel
                    if not rel["reliable"]:
                        outcome.unreliable[(task.name, metric.name)] = (
                            f"judge unreliable: kappa {rel['kappa']:.2f} < min_kappa "
                            f"{min_kappa:g} on {rel['n']} labels"
                        )
    finally:
        if cache:
            cache.close()
    return outcome


def _judge_task(
    plan: Plan,
    task: TaskPlan,
    metric: Any,
    ref: JudgeRef,
    spec: JudgeSpec,
    runner: JudgeRunner,
    by_key: dict[tuple[str, str, str], Record],
    outcome: JudgeOutcome,
    progress: Any,
) -> None:
    pairwise = spec.kind == "pairwise"
    only = ref.variants  # judge.variants: a subset, to bound the cost
    # the base is always judged: every comparison is made against it
    judged_variants = [v for v in plan.variants if only is None or v in only or v == "base"]
    jobs: list[tuple[str, str, int]] = []  # (example id, variant, order)
    items: list[Item] = []
    for ex in task.examples:
        row = tuple(sorted(ex.row))
        base_out = by_key[(task.name, ex.id, "base")].output
        for v in judged_variants:
            out = by_key[(task.name, ex.id, v)].output
            if out is None or (pairwise and (v == "base" or base_out is None)):
                continue
            pairs = [(out, base_out), (base_out, out)] if pairwise else [(out,)]
            for order, answers in enumerate(pairs):
                jobs.append((ex.id, v, order))
                items.append(Item(ex.prompt, tuple(a or "" for a in answers), ex.reference, row))
    t0 = time.perf_counter()
    retries_before = runner.retries()
    with progress(f"judge {spec.name} · {task.name}", len(items)) as advance:
        judged = runner.judge(spec, items, advance)
    duration = time.perf_counter() - t0
    got: dict[tuple[str, str, int], Judged] = {job: j for job, j in zip(jobs, judged, strict=True)}
    errors: Counter[str] = Counter()
    for v in plan.variants:
        ms = MetricScores([], [])
        for ex in task.examples:
            ms.weights.append(1.0)
            if v not in judged_variants:
                # no judgment entry: the report would count one with an error as a failure
                ms.values.append(math.nan)
                ms.reasons[ex.id] = "not judged (not in the judge's variants)"
                continue
            out = by_key[(task.name, ex.id, v)].output
            value, entry = _example(spec, ex.id, v, got, out)
            ms.values.append(value)
            if math.isnan(value):
                ms.reasons[ex.id] = entry["error"] or "unscored"
            outcome.judgments.setdefault((task.name, ex.id, v), []).append(entry)
        outcome.scores[(task.name, metric.name, v)] = ms
    for j in judged:
        if j.score is None:
            errors[_reason_kind(j.error or "unscored")] += 1
    n_calls = len(judged)
    outcome.judges.append(
        {
            "name": spec.name,
            "task": task.name,
            "metric": metric.name,
            "kind": spec.kind,
            "model": runner.endpoint.model,
            "endpoint": runner.endpoint.host,
            "template_sha256": spec.template_sha256,
            "scale": list(spec.scale),
            "n_calls": n_calls,
            "n_cached": sum(j.cached for j in judged),
            "n_unscored": sum(errors.values()),
            "duration_s": round(duration, 1),
            "variants": judged_variants,
            "error_rate": (sum(errors.values()) / n_calls) if n_calls else 0.0,
            "errors_by_reason": dict(errors),
            "retries_by_reason": _delta(retries_before, runner.retries()),
            "swap_consistency": _swap_consistency(got) if pairwise else None,
            "reliability": None,
        }
    )


def _delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in sorted(after.items()) if v - before.get(k, 0)}


def _reason_kind(error: str) -> str:
    """Group errors for counting: 'score 7 outside the scale [1, 5]' -> 'score outside
    the scale'; 'http 500 ...; gave up after 4 attempts' -> 'server error (500)'."""
    if "outside the scale" in error:
        return "score outside the scale"
    if "gave up" in error:
        return error.split(";")[0]
    if error.startswith("invalid response"):
        return "invalid response"
    if error.startswith("score is not a number"):
        return "score is not a number"
    return error


def _example(
    spec: JudgeSpec,
    ex_id: str,
    variant: str,
    got: dict[tuple[str, str, int], Judged],
    out: str | None,
) -> tuple[float, dict[str, Any]]:
    entry: dict[str, Any] = {"judge": spec.name, "score": None, "reason": None, "error": None}
    if out is None:
        return math.nan, {**entry, "error": "no answer to judge", "prompt": "", "raw": ""}
    if spec.kind != "pairwise":
        j = got[(ex_id, variant, 0)]
        value = j.score if j.score is not None else math.nan
        return value, {
            **entry,
            "score": j.score,
            "reason": j.reason,
            "error": j.error,
            "prompt": j.prompt,
            "raw": j.raw,
            "weighted_score": j.weighted,
        }
    if variant == "base":
        return 0.5, {
            **entry,
            "score": 0.5,
            "reason": "the base is the other side of every pairwise comparison",
            "prompt": "",
            "raw": "",
        }
    first, second = got.get((ex_id, variant, 0)), got.get((ex_id, variant, 1))
    if first is None or second is None:
        return math.nan, {**entry, "error": "the base has no answer", "prompt": "", "raw": ""}
    both = f"{first.prompt}\n\n=== swapped ===\n\n{second.prompt}"
    raw = f"{first.raw}\n\n=== swapped ===\n\n{second.raw}"
    if first.score is None or second.score is None:
        err = first.error if first.score is None else second.error
        return math.nan, {
            **entry,
            "error": f"one order unscored: {err}",
            "prompt": both,
            "raw": raw,
        }
    # first: the variant is A (1 = variant wins); second: the variant is B (0 = variant wins)
    value = (first.score + (1.0 - second.score)) / 2
    reason = f"variant as A: {first.reason or ''} | variant as B: {second.reason or ''}"
    return value, {**entry, "score": value, "reason": reason, "prompt": both, "raw": raw}


def _swap_consistency(got: dict[tuple[str, str, int], Judged]) -> float | None:
    """The share of pairs, judged both ways, whose winner survives the swap."""
    same = total = 0
    for (ex_id, v, order), j in got.items():
        if order != 0:
            continue
        other = got.get((ex_id, v, 1))
        if j.score is None or other is None or other.score is None:
            continue
        total += 1
        same += j.score == 1.0 - other.score
    return same / total if total else None


def without_judges(plan: Plan) -> Plan:
    """The plan as the non-judge scorers see it (judge metrics are scored by this stage)."""
    import dataclasses

    tasks = [
        dataclasses.replace(t, metrics=[m for m in t.metrics if m.kind != "judge"])
        for t in plan.tasks
    ]
    return dataclasses.replace(plan, tasks=tasks)


def judge_warnings(outcome: JudgeOutcome) -> list[str]:
    out = list(outcome.notes)
    for j in outcome.judges:
        if j["n_unscored"]:
            reasons = ", ".join(f"{k}: {v}" for k, v in sorted(j["errors_by_reason"].items()))
            out.append(
                f"judge {j['name']} on {j['task']}: {j['n_unscored']} of {j['n_calls']} "
                f"calls unscored ({reasons})"
            )
    out += [f"{task}/{metric}: {why}" for (task, metric), why in outcome.unreliable.items()]
    return out
