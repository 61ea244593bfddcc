"""One run, stage by stage: suite -> plan -> engine -> records -> scores -> comparison ->
gates -> outputs. Each stage takes the previous stage's values and returns its own."""

from __future__ import annotations

import json
import logging
import platform
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from evalkit.decide.baseline import prepare_baseline, run_fingerprints, write_scores
from evalkit.decide.diagnosis import diagnose
from evalkit.decide.gates import Decision, apply_gates, exit_code
from evalkit.decide.integrity import run_checks
from evalkit.decide.verdicts import compare, forgetting
from evalkit.engines.base import Progress
from evalkit.engines.cache import CachedEngine, ResultCache
from evalkit.engines.evaluate import ProgressFactory, evaluate
from evalkit.outputs.frames import write_records_parquet
from evalkit.outputs.results import build_results
from evalkit.paths import cache_dir, check_output_dir
from evalkit.plan.build import build_plan
from evalkit.plan.types import Plan
from evalkit.profile import profiled, run_profile, timer
from evalkit.scoring.score import approximated, score, unscored_by_engine
from evalkit.suite.loader import Suite, load_suite
from evalkit.training.declared import resolve_adapters

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunOutcome:
    exit_code: int
    output_dir: Path
    results: dict[str, Any]


@contextmanager
def _no_progress(description: str, total: int) -> Iterator[Progress]:
    yield lambda n: None


def validate(
    suite_path: Path | str, *, limit: int | None = None, offline: bool = False
) -> tuple[Suite, Plan]:
    """Everything short of loading a model: the suite, its data, its references, and
    (unless `offline`) the judge endpoint's credentials."""
    suite = load_suite(suite_path)
    plan = build_plan(suite, limit=limit)
    preflight(suite, plan, offline=offline)
    return suite, plan


def preflight(suite: Suite, plan: Plan, *, offline: bool = False) -> None:
    """Checks made before any model loads, so a missing key fails in a second, not after
    generation: of the environment (a judge's API key, its server file), and of the suite's
    parts that only meet here (`engine.reference` against the engine kind and the tasks)."""
    from evalkit.engine_stage import check_reference
    from evalkit.errors import InputError
    from evalkit.scoring.judges.core import check_endpoint

    check_reference(suite, plan)  # engine.reference against the engine kind and the tasks

    try:
        check_endpoint(plan, offline=offline)
    except InputError as exc:
        provider = plan.judge.provider if plan.judge is not None else None
        key = next((k for k in ("hf", "serve") if provider and getattr(provider, k)), None)
        loc = ("judge", "provider", key) if key else ("judge", "provider")
        raise suite.error(loc, exc.message, exc.hint) from None
    if suite.config.engine.kind == "vllm":  # vLLM importable, merged models exported
        from evalkit.engines.vllm_engine_setup import vllm_preflight

        problem = vllm_preflight(suite.config, plan, suite.root, offline=offline)
        if problem:
            raise suite.error(*problem)


def default_output_dir(suite: Suite, started: datetime) -> Path:
    return Path("reports") / f"{suite.config.name}-{started.strftime('%Y%m%d-%H%M%S')}"


@profiled
def run_suite(
    suite_path: Path | str,
    *,
    output_dir: Path | None = None,
    limit: int | None = None,
    variants: list[str] | None = None,
    seed: int | None = None,
    use_cache: bool = True,
    progress: ProgressFactory = _no_progress,
    baseline: Path | None = None,
    force_baseline: bool = False,
    workers: int | None = None,
) -> RunOutcome:
    """Run a suite end to end and write its outputs. Raises EvalkitError subclasses for bad
    input (before any model loads) and for infrastructure failures. `workers` (default:
    the suite's settings.workers) > 1 splits the engine stage across that many processes
    (evalkit.engines.workers)."""
    from evalkit.engines.registry import EngineRequest
    from evalkit.outputs import write_outputs

    started = datetime.now(timezone.utc)
    t0 = time.perf_counter()
    with timer("plan"):
        suite = load_suite(suite_path)
        plan = build_plan(suite, limit=limit, variants=variants, seed=seed)
        preflight(suite, plan)
    cfg = suite.config
    # a baseline whose data or settings differ is refused before any model loads
    base_run = (
        prepare_baseline(baseline, plan, suite.sha256, force=force_baseline) if baseline else None
    )
    out_dir = output_dir or default_output_dir(suite, started)
    check_output_dir(out_dir)  # a file or a read-only folder fails now, not after generation
    n_workers = cfg.settings.workers if workers is None else workers
    split = None
    if n_workers > 1 and cfg.engine.kind != "hf":
        raise suite.error(
            ("settings", "workers"),
            f"workers: {n_workers} splits the work of the hf engine across processes; "
            f"the {cfg.engine.kind} engine's server does its own",
            hint="Leave settings.workers at 1 and serve with data parallelism "
            "(vllm serve ... --data-parallel-size N).",
        )

    needed = {v.removeprefix("merged:") for v in plan.variants if v != "base"}
    # `train:` adapters are trained now or reused from the adapter cache (it says which)
    with timer("adapters"):
        declared = resolve_adapters(suite, needed, progress=progress)
    adapter_paths = declared.paths
    kind = cfg.engine.kind
    request = EngineRequest(
        cfg.base.model,
        adapter_paths,
        dtype=cfg.base.dtype,
        device=cfg.base.device,
        load_in_4bit=cfg.base.load_in_4bit,
        batch_size=cfg.settings.batch_size,
        relative_to=suite.root,
        options=cfg.engine.model_dump(),
    )
    engine_meta = None
    skipped: list[Any] = []  # checks not made (engine.reference: skip), with the reason
    pre_run: list[str] = []  # warned before the run: in the report too
    if n_workers > 1:  # the workers evaluate; `engine` answers what later stages ask of it
        from evalkit.decide.integrity import PROBE_TEXTS
        from evalkit.engines.workers import run_workers

        split = run_workers(
            plan,
            kind,
            request,
            n_workers,
            cache_path=cache_dir() / "results.sqlite" if use_cache else None,
            probe_texts=PROBE_TEXTS,
            progress=progress,
        )
        engine: Any = split.engine
        with timer("integrity"):
            integrity = run_checks(engine, plan, adapter_paths)
    else:  # the engine, its reference and the checks (evalkit/engine_stage.py)
        from evalkit.engine_stage import engine_stage

        loaded = engine_stage(suite, plan, request, adapter_paths, progress)
        engine, integrity = loaded.engine, loaded.integrity
        engine_meta, skipped, pre_run = loaded.meta, loaded.skipped, loaded.warnings
    for r in integrity:
        if not r.passed:
            log.error("integrity check %s failed for %s: %s", r.check, r.variant, r.detail)

    cache_stats = None
    if split is not None:
        records, cache_stats = split.records, split.cache_stats
    elif use_cache:
        cached = CachedEngine(engine, ResultCache(cache_dir() / "results.sqlite"))
        records = evaluate(plan, cached, progress)
        cache_stats = {"reused": cached.hits, "computed": cached.misses}
    else:
        records = evaluate(plan, engine, progress)
    # The judge stage: judge metrics are scored here, the others by `score`.
    from evalkit.scoring.judges.results import attach_judgments
    from evalkit.scoring.judges.run import judge_warnings, run_judges, without_judges

    with timer("judge") as stage:
        judged = run_judges(plan, records, use_cache=use_cache, progress=progress)
        stage["judge_calls"] = sum(j["n_calls"] for j in judged.judges)
    with timer("score"):
        scores = score(without_judges(plan), records)
    scores.update(judged.scores)
    with timer("decide"):
        comparisons = compare(plan, scores)
        diagnoses = diagnose(plan, comparisons)  # format drift vs knowledge loss
        flags = forgetting(plan, comparisons)
        gates = apply_gates(plan, scores, comparisons, flags, judged.unreliable)
    fps = run_fingerprints(plan, suite.sha256, {v: engine.fingerprint(v) for v in plan.variants})
    baseline_meta = None
    if base_run is not None:  # after the gates: they judge a variant against its base
        against, baseline_meta = base_run.compare(plan, scores, fps)
        comparisons = comparisons + against
    integrity_failed = plan.integrity.on_failure == "error" and not all(r.passed for r in integrity)
    code = exit_code(gates, integrity_failed)

    warnings = (
        [f"smoke run: --limit {limit} examples per task; figures are not release evidence"]
        if limit is not None
        else []
    )
    warnings += pre_run
    warnings += [f"{r.check} failed for {r.variant}: {r.detail}" for r in integrity if not r.passed]
    warnings += judge_warnings(judged)
    # what the engine could not compute (unscored, with the reason) or only approximated
    engine_notes = unscored_by_engine(plan, records) + approximated(
        plan, (engine_meta or {}).get("approximations") or {}
    )
    for note in engine_notes:
        log.warning("%s", note)
    warnings += engine_notes
    results = build_results(
        plan=plan,
        suite_meta={
            "name": cfg.name,
            "path": str(suite.path),
            "sha256": suite.sha256,
            "text": suite.text,
        },
        run_meta={
            **_run_meta(started, t0, plan, limit, out_dir, engine.device.type),
            "cache": cache_stats,
        },
        base_meta={"model": cfg.base.model, "fingerprint": engine.fingerprint("base")},
        adapters={n: str(p) for n, p in adapter_paths.items()},
        fingerprints={v: engine.fingerprint(v) for v in plan.variants},
        records=records,
        scores=scores,
        decision=Decision(comparisons, flags, gates),
        integrity=integrity,
        skipped=skipped,
        exit_code=code,
        warnings=warnings,
        diagnoses=diagnoses,
    )
    if engine_meta is not None:
        results["engine"] = engine_meta
    attach_judgments(results, judged)
    declared.annotate(results)  # per-variant `training`, the `sweep`, QLoRA drift warnings
    results["fingerprints"] = fps
    results["profile"] = run_profile()  # up to here: writing the outputs is not in it
    if baseline_meta is not None:
        results["baseline"] = baseline_meta
    with timer("outputs"):
        out_dir.mkdir(parents=True, exist_ok=True)
        write_scores(out_dir, plan, scores, fps)
        _write_records(out_dir / "records.jsonl", records)
        write_records_parquet(out_dir / "records.parquet", records)
        write_outputs(results, out_dir)
    return RunOutcome(code, out_dir, results)


def _run_meta(
    started: datetime, t0: float, plan: Plan, limit: int | None, out_dir: Path, device: str
) -> dict[str, Any]:
    import peft
    import torch
    import transformers

    return {
        "started_at": started.isoformat(timespec="seconds"),
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "duration_s": round(time.perf_counter() - t0, 1),
        "seed": plan.seed,
        "limit": limit,
        "smoke": limit is not None,
        "output_dir": str(out_dir),
        "device": device,
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "peft": peft.__version__,
        },
    }


def _write_records(path: Path, records: list[Any]) -> None:
    tmp = path.with_suffix(".partial")
    with tmp.open("w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(asdict(r), ensure_ascii=False) + "\n")
    tmp.replace(path)
