"""The result cache beside the engine, on the scripted engine: a second run is answered
from the cache without one engine call, a changed variant is recomputed, and values come
back exactly (JSON in SQLite, never pickle)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from evalkit.engines.cache import CachedEngine, ResultCache
from evalkit.engines.evaluate import evaluate
from evalkit.engines.scripted import ScriptedEngine
from tests.scripted_run import make_plan, no_progress, table


def _run(
    path: Path, tab: dict, variants: list[str] | None = None
) -> tuple[CachedEngine, ScriptedEngine, list]:
    plan = make_plan(variants)
    inner = ScriptedEngine.for_plan(plan, tab)
    cached = CachedEngine(inner, ResultCache(path))
    return cached, inner, evaluate(plan, cached, no_progress)


def test_second_run_is_answered_by_the_cache(tmp_path: Path) -> None:
    db = tmp_path / "results.sqlite"
    first, inner1, recs1 = _run(db, table())
    # choice items are 2 log-likelihood requests each
    per_variant = 40 + 2 * 40 + 30
    # `same` has the base's table, so the same fingerprint: the base's results answer it
    assert (first.hits, first.misses) == (per_variant, 4 * per_variant)
    assert {v for v, _, _ in inner1.calls} == {"base", "good", "bad", "mixed"}
    second, inner2, recs2 = _run(db, table())
    assert (second.hits, second.misses) == (5 * per_variant, 0)
    assert inner2.calls == []  # not one request reached the engine
    assert recs2 == recs1  # outputs, log-likelihoods, NLL and KL round-trip exactly


def test_a_changed_variant_is_recomputed_alone(tmp_path: Path) -> None:
    db = tmp_path / "results.sqlite"
    _run(db, table())
    tab = table()
    tab["bad"]["outputs"] = {k: "yes" for k in tab["bad"]["outputs"]}
    again, inner, recs = _run(db, tab)
    per_variant = 40 + 2 * 40 + 30
    assert again.misses == per_variant  # only `bad` has a new fingerprint
    assert {v for v, _, _ in inner.calls} == {"bad"}
    assert all(r.output == "yes" for r in recs if r.variant == "bad" and r.task == "qa")


def test_separate_cache_files_share_nothing(tmp_path: Path) -> None:
    _run(tmp_path / "a.sqlite", table(), ["base", "good"])
    other, _, _ = _run(tmp_path / "b.sqlite", table(), ["base", "good"])
    assert (other.hits, other.misses) == (0, 2 * (40 + 2 * 40 + 30))


def _clauses() -> dict:
    return {
        "base": {
            "outputs": {"clause one": "summary one", "clause two": "summary two"},
            "loglikelihoods": {
                "clause one": {"ref one": (-2.5, 3), "ref one, longer": (-4.0, 5)},
                "clause two": {"ref two": (-1.25, 2)},
            },
        }
    }


class _PoolingScripted(ScriptedEngine):
    """The scripted engine with a pooled path (as the hf engine has), recording each
    pooled call with how many of its requests carry a reference."""

    def generate_pooled(
        self, requests: list, *, progress: object = None, on_batch: Any = None
    ) -> list:
        from evalkit.engines.generations import generate_in_groups

        refs = sum(r.reference is not None for r in requests)
        self.calls.append((self.active, f"pooled ({refs} with references)", len(requests)))
        calls = len(self.calls)
        out = generate_in_groups(ScriptedEngine(self.table), requests)
        del self.calls[calls:]
        if on_batch:
            on_batch(list(range(len(out))), out)
        return out


def test_pooled_generations_share_the_keys_of_generate_and_loglikelihood(tmp_path: Path) -> None:
    """A pooled request stores each text under `generate`'s key and each reference score
    under `loglikelihood`'s, so either call reuses it; a request half in the cache asks
    the engine only for the missing half."""
    from evalkit.engines.base import ChatPrompt, Generated, Generation, LogLikelihood

    q1, q2 = ChatPrompt("clause one"), ChatPrompt("clause two")
    inner = _PoolingScripted(_clauses())
    cached = CachedEngine(inner, ResultCache(tmp_path / "results.sqlite"))
    assert cached.pools_generations
    with cached.variant("base"):
        first = cached.generate_pooled(
            [Generation(q1, 8, (), "ref one"), Generation(q2, 8, ("\n",), "ref two")]
        )
        assert first == [
            Generated("summary one", LogLikelihood(-2.5, 3)),
            Generated("summary two", LogLikelihood(-1.25, 2)),
        ]
        assert inner.calls == [("base", "pooled (2 with references)", 2)]
        assert (cached.hits, cached.misses) == (0, 4)
        inner.calls.clear()
        # the plain calls find what the pooled one stored
        assert cached.generate([q1], max_new_tokens=8) == ["summary one"]
        assert cached.loglikelihood([(q2, "ref two")]) == [LogLikelihood(-1.25, 2)]
        assert inner.calls == []
        # the text is cached, a new reference is not: only the score is computed
        again = cached.generate_pooled([Generation(q1, 8, (), "ref one, longer")])
        assert again == [Generated("summary one", LogLikelihood(-4.0, 5))]
        assert inner.calls == [("base", "loglikelihood", 1)]
        inner.calls.clear()
        # the score is cached, the text under a new limit is not: only the text
        more = cached.generate_pooled([Generation(q1, 16, (), "ref one")])
        assert more == [Generated("summary one", LogLikelihood(-2.5, 3))]
        assert inner.calls == [("base", "pooled (0 with references)", 1)]
        assert (cached.hits, cached.misses) == (1 + 1 + 1 + 1, 4 + 1 + 1)


def test_an_engine_that_does_not_pool_keeps_each_finished_setting(tmp_path: Path) -> None:
    """In front of an engine without a pooled path (a served one), the requests go setting
    by setting through the cache, each generation followed by its references, so what
    finished before the engine failed is kept and a rerun computes only the rest."""
    from evalkit.engines.base import ChatPrompt, Generation
    from evalkit.engines.generations import run_generations

    class DiesOnClauseTwo(ScriptedEngine):  # a server that stops answering mid-run
        def generate(self, prompts: list, **kw: object) -> list:
            if any(p.user == "clause two" for p in prompts):
                raise ConnectionError("the server did not answer")
            return super().generate(prompts, **kw)  # type: ignore[arg-type]

    inner = DiesOnClauseTwo(_clauses())
    db = tmp_path / "results.sqlite"
    cached = CachedEngine(inner, ResultCache(db))
    assert not cached.pools_generations
    asked = [
        [Generation(ChatPrompt("clause one"), 8, (), "ref one")],
        [Generation(ChatPrompt("clause two"), 8, ("\n",), "ref two")],
    ]
    with cached.variant("base"), pytest.raises(ConnectionError):
        run_generations(cached, asked)
    assert inner.calls == [("base", "generate", 1), ("base", "loglikelihood", 1)]
    rerun_inner = ScriptedEngine(_clauses())
    rerun = CachedEngine(rerun_inner, ResultCache(db))
    with rerun.variant("base"):
        run_generations(rerun, asked)
    assert (rerun.hits, rerun.misses) == (2, 2)
    assert rerun_inner.calls == [("base", "generate", 1), ("base", "loglikelihood", 1)]
