"""Baselines: a run compared with an earlier run (a release candidate against the last
release), example by example, with the same paired statistics as a variant against its
base.

Each run writes `scores.json` beside `results.json`: per task its examples' ids, per
metric its definition and every variant's per-example (value, weight), and the run's
fingerprints (suite, per-task data and settings, base model, each variant's weights).
Two runs are paired by example id. Runs whose task data or task settings differ are
refused (a different question set or generation length would make any delta meaningless)
unless forced; a different base model or suite file is reported, not refused, because a
new release may well change either.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evalkit.decide.verdicts import Comparison, RawComparison, compare_metric, holm_by_family
from evalkit.errors import InputError
from evalkit.plan.types import Plan, StatsSettings, TaskPlan
from evalkit.scoring.metrics import MetricSpec
from evalkit.scoring.score import Scores

SCORES_JSON = "scores.json"
SCORES_VERSION = 1


def _sha(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def task_fingerprints(task: TaskPlan) -> dict[str, str]:
    """`data`: the examples as the model sees them; `settings`: how they are asked and
    scored (generation length, stop strings, system prompt, metric definitions)."""
    data = [
        [ex.id, ex.prompt, ex.reference, list(ex.choices), ex.answer, list(ex.accepted), ex.text]
        for ex in task.examples
    ]
    settings = {
        "system": task.system,
        "max_new_tokens": task.max_new_tokens,
        "stop": list(task.stop),
        "metrics": [[m.name, m.kind, m.needs, m.transform, m.params] for m in task.metrics],
    }
    return {"data": _sha(data), "settings": _sha(settings)}


def run_fingerprints(
    plan: Plan, suite_sha256: str, variant_fingerprints: dict[str, str]
) -> dict[str, Any]:
    return {
        "suite_sha256": suite_sha256,
        "limit": plan.limit,
        "tasks": {t.name: task_fingerprints(t) for t in plan.tasks},
        "variants": dict(variant_fingerprints),
    }


def _spec_dict(m: MetricSpec) -> dict[str, Any]:
    return dataclasses.asdict(m)


def _num(x: float) -> float | None:
    return None if math.isnan(x) else x


def scores_doc(plan: Plan, scores: Scores) -> dict[str, Any]:
    """Per task: its kind, example ids, and per metric its spec and every variant's
    per-example values (None: unscored) and weights."""
    tasks: dict[str, Any] = {}
    for t in plan.tasks:
        metrics: dict[str, Any] = {}
        for m in t.metrics:
            per_variant = {}
            for v in plan.variants:
                ms = scores.get((t.name, m.name, v))
                if ms is not None:
                    per_variant[v] = {
                        "values": [_num(x) for x in ms.values],
                        "weights": list(ms.weights),
                    }
            metrics[m.name] = {"spec": _spec_dict(m), "variants": per_variant}
        tasks[t.name] = {"kind": t.kind, "ids": [ex.id for ex in t.examples], "metrics": metrics}
    return {"tasks": tasks}


def write_scores(out_dir: Path, plan: Plan, scores: Scores, fingerprints: dict[str, Any]) -> Path:
    doc = {"version": SCORES_VERSION, "fingerprints": fingerprints, **scores_doc(plan, scores)}
    path = out_dir / SCORES_JSON
    tmp = path.with_suffix(".partial")
    tmp.write_text(json.dumps(doc, allow_nan=False), encoding="utf-8")
    tmp.replace(path)
    return path


@dataclass(frozen=True)
class RunScores:
    run_dir: Path
    doc: dict[str, Any]

    @property
    def fingerprints(self) -> dict[str, Any]:
        return dict(self.doc.get("fingerprints") or {})

    @property
    def variants(self) -> list[str]:
        return list(self.fingerprints.get("variants") or {})


def load_run(run_dir: Path) -> RunScores:
    path = Path(run_dir) / SCORES_JSON
    if not path.exists():
        raise InputError(
            f"{run_dir}: no {SCORES_JSON}; is this an evalkit run directory?",
            hint="Runs write scores.json since evalkit records per-example scores for "
            "baselines; rerun the baseline suite to create one.",
        )
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot be read as JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("version") != SCORES_VERSION:
        raise InputError(f"{path}: not a scores.json of version {SCORES_VERSION}")
    return RunScores(Path(run_dir), doc)


def check_comparable(base: dict[str, Any], cand: dict[str, Any], *, force: bool) -> list[str]:
    """Reasons the two runs' fingerprints differ. Task data or settings that differ, or a
    different --limit, are refused (InputError) unless forced; the rest are notes."""
    refused, notes = [], []
    if base.get("limit") != cand.get("limit"):
        refused.append(f"--limit differs ({base.get('limit')} vs {cand.get('limit')})")
    bt, ct = base.get("tasks") or {}, cand.get("tasks") or {}
    for task in sorted(set(bt) & set(ct)):
        for what in ("data", "settings"):
            if bt[task].get(what) != ct[task].get(what):
                refused.append(f"task '{task}': {what} differ")
    if not set(bt) & set(ct):
        refused.append("the runs share no task")
    if base.get("suite_sha256") != cand.get("suite_sha256"):
        notes.append("the suite files differ (tasks with equal data and settings are compared)")
    bv, cv = base.get("variants") or {}, cand.get("variants") or {}
    if bv.get("base") != cv.get("base"):
        notes.append("the base models differ")
    if refused and not force:
        raise InputError(
            "the runs cannot be compared: " + "; ".join(refused),
            hint="Their examples would not ask the same questions the same way, so a "
            "delta would not mean what it says. Rerun with the same suite data and "
            "settings, or pass --force to compare the tasks anyway.",
        )
    return notes + [f"forced: {r}" for r in refused]


def _column(vals: list[float | None], shared: list[tuple[int, int]], side: int) -> list[float]:
    """One run's column over the shared examples; None (unscored) becomes NaN."""
    out = []
    for pair in shared:
        x = vals[pair[side]]
        out.append(math.nan if x is None else float(x))
    return out


def compare_runs(
    baseline: RunScores,
    candidate: dict[str, Any],
    pairs: list[tuple[str, str]],
    stats: StatsSettings,
    label: str,
) -> list[Comparison]:
    """Comparisons of `candidate` (a scores.json document) against `baseline`: for each
    (baseline variant, candidate variant) pair, each shared task and metric, examples
    paired by id. Holm-corrected within (candidate variant, task kind), as against base;
    `stats`: the seed, interval level and resamples to compute with."""
    raw: list[RawComparison] = []
    btasks, ctasks = baseline.doc["tasks"], candidate["tasks"]
    for task in [t for t in ctasks if t in btasks]:
        bt, ct = btasks[task], ctasks[task]
        bidx = {i: k for k, i in enumerate(bt["ids"])}
        shared = [(bidx[i], k) for k, i in enumerate(ct["ids"]) if i in bidx]
        for name, cm in ct["metrics"].items():
            if name not in bt["metrics"]:
                continue
            spec = MetricSpec(**{**cm["spec"], "params": cm["spec"].get("params") or {}})
            for bvar, cvar in pairs:
                b = bt["metrics"][name]["variants"].get(bvar)
                c = cm["variants"].get(cvar)
                if b is None or c is None:
                    continue

                paired = compare_metric(
                    spec,
                    stats,
                    _column(b["values"], shared, 0),
                    _column(b["weights"], shared, 0),
                    _column(c["values"], shared, 1),
                    _column(c["weights"], shared, 1),
                )
                raw.append((task, ct["kind"], cvar, spec, paired, f"{label}:{bvar}"))
    return holm_by_family(raw, stats.alpha)


def default_pairs(baseline: RunScores, candidate_variants: list[str]) -> list[tuple[str, str]]:
    """Same-named variants of both runs, the base included (a base that moved between
    runs is worth seeing next to the adapters)."""
    return [(v, v) for v in candidate_variants if v in baseline.variants]


@dataclass(frozen=True)
class BaselineStage:
    """A baseline run checked against this run's plan, before any model loads."""

    run: RunScores
    label: str
    notes: list[str]

    def compare(
        self, plan: Plan, scores: Scores, fingerprints: dict[str, Any]
    ) -> tuple[list[Comparison], dict[str, Any]]:
        doc = scores_doc(plan, scores)
        pairs = default_pairs(self.run, plan.variants)
        notes = list(self.notes)
        if (self.run.fingerprints.get("variants") or {}).get("base") != fingerprints[
            "variants"
        ].get("base"):
            notes.append("the base models differ")
        comparisons = compare_runs(self.run, doc, pairs, plan.stats, self.label)
        meta = {
            "run_dir": str(self.run.run_dir),
            "label": self.label,
            "suite_sha256": self.run.fingerprints.get("suite_sha256"),
            "pairs": [list(p) for p in pairs],
            "notes": notes,
        }
        return comparisons, meta


def prepare_baseline(
    run_dir: Path, plan: Plan, suite_sha256: str, *, force: bool = False
) -> BaselineStage:
    """Load a baseline run and refuse it now (exit 2) if its data or settings differ."""
    run = load_run(run_dir)
    mine = run_fingerprints(plan, suite_sha256, {})
    theirs = {**run.fingerprints, "variants": {}}
    notes = check_comparable(theirs, mine, force=force)
    return BaselineStage(run, "baseline", notes)
