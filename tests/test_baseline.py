"""Baselines: runs paired by example id with the same statistics as against the base,
refused when their data or settings differ; `evalkit run --baseline` and
`evalkit compare` on tiny random models."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from evalkit.cli import app
from evalkit.decide.baseline import (
    check_comparable,
    compare_runs,
    load_run,
    run_fingerprints,
    write_scores,
)
from evalkit.errors import EXIT_BAD_INPUT, InputError
from evalkit.pipeline import run_suite
from evalkit.plan.types import Example, Plan, StatsSettings, TaskPlan
from evalkit.scoring.metrics import MetricSpec
from evalkit.scoring.score import MetricScores
from tests.conftest import write_jsonl

ACC = MetricSpec("acc", "exact_match", "generate", "higher", 0.05, binary=True)
SCORE = MetricSpec("score", "length_words", "generate", "higher", 0.02)


def fake_run(tmp: Path, name: str, acc: list[float], score: list[float], ids: list[str]) -> Path:
    """A run directory holding only scores.json, from given per-example values."""
    task = TaskPlan("t", "golden", "", [Example(id=i, prompt=i) for i in ids], [ACC, SCORE])
    plan = Plan(["base", "a1"], [task])
    ones = [1.0] * len(ids)
    scores = {("t", "acc", v): MetricScores(list(acc), ones) for v in plan.variants} | {
        ("t", "score", v): MetricScores(list(score), ones) for v in plan.variants
    }
    out = tmp / name
    out.mkdir()
    write_scores(out, plan, scores, run_fingerprints(plan, "sha", {"base": "b", "a1": "x"}))
    return out


def test_pairs_by_id_and_detects_a_regression(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n = 300
    ids = [f"e{i}" for i in range(n)]
    acc = (rng.random(n) < 0.7).astype(float)
    score = rng.normal(0.5, 0.2, n)
    a = fake_run(tmp_path, "a", list(acc), list(score), ids)
    # B: the same examples in another order; a third of the right answers now wrong and
    # the score lower by 0.1 on every example
    worse = acc.copy()
    worse[np.flatnonzero(acc == 1)[::3]] = 0.0
    order = rng.permutation(n)
    b = fake_run(
        tmp_path,
        "b",
        list(worse[order]),
        list((score - 0.1)[order]),
        [ids[i] for i in order],
    )
    got = compare_runs(load_run(a), load_run(b).doc, [("a1", "a1")], StatsSettings(), "rel")
    by_metric = {c.metric.name: c for c in got}
    assert by_metric["acc"].verdict == "regressed"
    assert by_metric["acc"].stats.test == "mcnemar-exact"
    assert by_metric["acc"].stats.delta == pytest.approx(-(acc == 1)[::1].sum() / 3 / n, abs=0.01)
    assert by_metric["score"].stats.delta == pytest.approx(-0.1, abs=1e-9)  # paired: exact
    assert by_metric["score"].verdict == "regressed"
    assert all(c.baseline == "rel:a1" and c.stats.n == n for c in got)
    # the same run against itself: no change, equivalent within the margins
    same = compare_runs(load_run(a), load_run(a).doc, [("a1", "a1")], StatsSettings(), "rel")
    assert {c.verdict for c in same} == {"equivalent"}


def test_only_shared_ids_are_paired(tmp_path: Path) -> None:
    a = fake_run(tmp_path, "a", [1, 0, 1, 1], [0.1, 0.2, 0.3, 0.4], ["x", "y", "z", "w"])
    b = fake_run(tmp_path, "b", [1, 1, 0], [0.2, 0.3, math.nan], ["w", "z", "new"])
    got = compare_runs(load_run(a), load_run(b).doc, [("a1", "a1")], StatsSettings(), "r")
    assert {c.metric.name: c.stats.n for c in got} == {"acc": 2, "score": 2}


def test_differing_data_is_refused_unless_forced() -> None:
    a = {"limit": None, "suite_sha256": "s1", "tasks": {"t": {"data": "d1", "settings": "s"}}}
    b = {"limit": None, "suite_sha256": "s2", "tasks": {"t": {"data": "d2", "settings": "s"}}}
    with pytest.raises(InputError) as err:
        check_comparable(a, b, force=False)
    assert err.value.exit_code == EXIT_BAD_INPUT
    assert "task 't': data differ" in str(err.value) and "--force" in str(err.value)
    notes = check_comparable(a, b, force=True)
    assert "forced: task 't': data differ" in notes
    assert any("suite files differ" in n for n in notes)
    assert check_comparable(a, {**a, "suite_sha256": "s2"}, force=False) == [
        "the suite files differ (tasks with equal data and settings are compared)"
    ]
    with pytest.raises(InputError, match="--limit differs"):
        check_comparable(a, {**a, "limit": 3}, force=False)


# --- end to end on a tiny model ---------------------------------------------------------


@pytest.fixture(scope="module")
def suite_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.test_integrity import make_adapter

    d = tmp_path_factory.mktemp("baseline")
    write_jsonl(
        d / "qa.jsonl",
        [{"id": f"q{i}", "q": f"What is {i} plus {i}?", "a": str(2 * i)} for i in range(8)],
    )
    make_adapter(tiny_model_dir, d / "v1", seed=2)
    make_adapter(tiny_model_dir, d / "v2", seed=3)
    return d


def write_suite(d: Path, model: Path, adapter: str, name: str, tokens: int = 6) -> Path:
    path = d / f"{name}.yaml"
    path.write_text(
        f"""
name: tiny
base: {{model: {model}}}
adapters: {{a1: {{path: {adapter}}}}}
variants: [base, a1]
tasks:
  - name: qa
    data: {{path: qa.jsonl}}
    id: id
    prompt: "{{{{ q }}}}"
    reference: "{{{{ a }}}}"
    generation: {{max_new_tokens: {tokens}}}
    metrics: [{{type: exact_match}}]
probes:
  builtin: [prose-perplexity, prose-bpb, prose-kl, open-overlap]
settings: {{bootstrap_resamples: 200, confidence: 0.9}}
"""
    )
    return path


def test_run_with_baseline_and_compare(
    suite_dir: Path, tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EVALKIT_CACHE_DIR", str(tmp_path / "cache"))
    first = run_suite(
        write_suite(suite_dir, tiny_model_dir, "v1", "r1"), output_dir=tmp_path / "a", limit=4
    )
    results_a = first.results
    kl = {
        r["variant"]: r["value"]
        for r in results_a["metrics"]
        if r["task"] == "prose-perplexity" and r["metric"] == "kl_from_base"
    }
    assert kl["base"] == 0.0 and kl["a1"] > 0.0  # the adapter moved the distribution
    assert "fingerprints" in results_a and "baseline" not in results_a
    # the statistics settings are recorded and the interval is printed at their level
    assert results_a["stats"] == {"seed": 0, "confidence": 0.9, "resamples": 200, "alpha": 0.05}
    assert "Δ [90% CI]" in (tmp_path / "a" / "summary.md").read_text(encoding="utf-8")
    html = (tmp_path / "a" / "report.html").read_text(encoding="utf-8")
    assert "90% interval" in html and "95% CI" not in html and "95% interval" not in html

    second = run_suite(
        write_suite(suite_dir, tiny_model_dir, "v2", "r2"),
        output_dir=tmp_path / "b",
        limit=4,
        baseline=tmp_path / "a",
        seed=5,
    )
    res = second.results
    assert res["stats"]["seed"] == 5 and res["run"]["seed"] == 5  # --seed overrides settings
    assert res["baseline"]["run_dir"] == str(tmp_path / "a")
    assert res["baseline"]["pairs"] == [["base", "base"], ["a1", "a1"]]
    against = [c for c in res["comparisons"] if c["baseline"] != "base"]
    assert {c["baseline"] for c in against} == {"baseline:base", "baseline:a1"}
    # the base is the same model in both runs: every base metric equal to the baseline's
    base_vs = [c for c in against if c["variant"] == "base"]
    # (a random model's open answers have no words: overlap is unscored, n = 0)
    scored = [c for c in base_vs if c["n"] > 0]
    assert len(scored) >= 4 and all(c["delta"] == 0.0 for c in scored)
    schema = json.loads(Path("evalkit/outputs/results.schema.json").read_text())
    pytest.importorskip("jsonschema").validate(res, schema)

    runner = CliRunner()
    out = runner.invoke(
        app,
        ["compare", str(tmp_path / "a"), str(tmp_path / "b"), "-o", str(tmp_path / "c.json")],
        env={"COLUMNS": "200"},
    )
    assert out.exit_code in (0, 1), out.output
    assert "delta [90% CI]" in out.output
    doc = json.loads((tmp_path / "c.json").read_text())
    assert doc["stats"] == res["stats"]  # the candidate's recorded settings
    assert {c["variant"] for c in doc["comparisons"]} == {"base", "a1"}
    assert out.exit_code == (
        1 if any(c["verdict"] == "regressed" for c in doc["comparisons"]) else 0
    )

    # other generation settings: refused with exit 2, before any model loads
    with pytest.raises(InputError, match="task 'qa': settings differ"):
        run_suite(
            write_suite(suite_dir, tiny_model_dir, "v2", "r3", tokens=9),
            output_dir=tmp_path / "c",
            limit=4,
            baseline=tmp_path / "a",
        )
    assert not (tmp_path / "c").exists()
    bad = runner.invoke(app, ["compare", str(tmp_path / "a"), str(tmp_path / "nowhere")])
    assert bad.exit_code == EXIT_BAD_INPUT and "no scores.json" in bad.output
