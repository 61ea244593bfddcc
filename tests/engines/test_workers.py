"""Worker processes on the scripted engine (real processes, real SQLite, no model): the
split of the variants, records identical to one process's, the base computed once, and a
failing worker reported with its reason while what the others finished stays cached."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from evalkit.decide.integrity import PROBE_TEXTS, run_checks
from evalkit.engines.cache import CachedEngine, ResultCache
from evalkit.engines.evaluate import evaluate
from evalkit.engines.registry import EngineRequest
from evalkit.engines.scripted import ScriptedEngine
from evalkit.engines.workers import Share, WorkerError, run_workers, split_work
from evalkit.errors import EXIT_BAD_INPUT, EXIT_INFRA, InputError
from tests.scripted_run import make_plan, no_progress, table

# `same` computes what the base computes (one fingerprint): left out, so every variant's
# requests are its own and the counts of one and two workers can be compared
VARIANTS = ["base", "good", "bad", "mixed"]


def test_split_keeps_an_adapter_with_its_merged_variant_and_evens_the_load() -> None:
    variants = ["base", "a", "merged:a", "b", "merged:c"]
    assert split_work(variants, 2) == [
        Share(("base", "b", "merged:c"), ("b", "c"), ("base", "b", "merged:c", "c")),
        Share(("a", "merged:a"), ("a",), ("a", "merged:a")),
    ]
    # more workers than shares of work: one per adapter, one for the base
    assert [s.variants for s in split_work(["base", "a"], 4)] == [("base",), ("a",)]
    assert [s.variants for s in split_work(variants, 1)] == [tuple(variants)]


def _scripted(plan: Any, tab: dict[str, Any]) -> EngineRequest:
    resolved = ScriptedEngine.for_plan(plan, tab).table  # keyed by prompts and texts
    return EngineRequest("scripted", {}, device="cpu", options={"table": resolved})


def _run(plan: Any, request: EngineRequest, cache: Path | None, n: int = 2) -> Any:
    return run_workers(
        plan,
        "scripted",
        request,
        n,
        cache_path=cache,
        probe_texts=PROBE_TEXTS,
        progress=no_progress,
    )


def test_two_workers_give_one_process_records_and_compute_the_base_once(tmp_path: Path) -> None:
    plan = make_plan(VARIANTS)
    one = CachedEngine(ScriptedEngine.for_plan(plan, table()), ResultCache(tmp_path / "a.db"))
    expected = evaluate(plan, one, no_progress)
    split = _run(plan, _scripted(plan, table()), tmp_path / "b.db")
    assert [s.variants for s in split.shares] == [("base", "bad"), ("good", "mixed")]
    assert split.records == expected
    assert split.cache_stats == {"reused": one.hits, "computed": one.misses}
    per_variant = 40 + 2 * 40 + 30
    # the base is evaluated by the first worker alone
    assert split.counts[0]["base"] == [0, per_variant]
    assert "base" not in split.counts[1]
    # a second run is answered by the cache
    again = _run(plan, _scripted(plan, table()), tmp_path / "b.db")
    assert again.cache_stats == {"reused": 4 * per_variant, "computed": 0}
    assert again.records == expected


def test_without_the_cache_nothing_is_reused_or_kept(tmp_path: Path) -> None:
    plan = make_plan(VARIANTS)
    split = _run(plan, _scripted(plan, table()), None)
    assert split.cache_stats is None
    assert sum(c[1] for counts in split.counts for c in counts.values()) == 4 * 150


def test_a_failing_worker_is_reported_and_finished_work_stays_cached(tmp_path: Path) -> None:
    plan = make_plan(VARIANTS)
    tab = table()
    del tab["mixed"]["outputs"]["qa03"]  # the second worker fails on its last variant
    db = tmp_path / "c.db"
    with pytest.raises(WorkerError) as err:
        _run(plan, _scripted(plan, tab), db)
    assert err.value.exit_code == EXIT_INFRA
    assert "worker 1 (good, mixed): KeyError" in err.value.message
    assert "has no output for 'question 3?'" in err.value.message
    assert "a rerun computes only the rest" in (err.value.hint or "")
    # what finished is kept: `good` was evaluated before `mixed` failed
    good = make_plan(["good"])
    rerun = CachedEngine(ScriptedEngine.for_plan(good, table()), ResultCache(db))
    evaluate(good, rerun, no_progress)
    assert (rerun.hits, rerun.misses) == (150, 0)


def test_bad_input_found_by_a_worker_exits_2(tmp_path: Path) -> None:
    plan = make_plan(VARIANTS)
    request = EngineRequest("scripted", {}, device="cpu", options={})  # no table
    with pytest.raises(InputError) as err:
        _run(plan, request, tmp_path / "d.db")
    assert err.value.exit_code == EXIT_BAD_INPUT
    assert "needs `table:` or `path:`" in err.value.message


def test_integrity_checks_on_the_workers_probe_logits_match_one_process(tmp_path: Path) -> None:
    plan = make_plan(["base", "good", "merged:good", "bad"])
    tab = table(["base", "good", "bad"])
    for i, v in enumerate(("base", "good", "bad")):
        tab[v]["logits"] = [[0.0, 1.0 + i, 2.0], [2.0 * i, 0.0, 1.0]]
    direct = run_checks(ScriptedEngine.for_plan(plan, tab), plan, {})
    split = _run(plan, _scripted(plan, tab), tmp_path / "e.db")
    assert [s.variants for s in split.shares] == [("base", "bad"), ("good", "merged:good")]
    replayed = run_checks(split.engine, plan, {})
    assert replayed == direct
    assert [(r.check, r.variant, r.passed) for r in replayed] == [
        ("adapter_applied", "good", True),
        ("merge_agrees", "merged:good", True),
        ("adapter_applied", "bad", True),
    ]
