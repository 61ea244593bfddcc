"""The statistics settings a run uses: resolved once into `Plan.stats` from the suite's
`settings:` and `--seed`, read by the comparisons, recorded in results.json, printed as
set ("90% CI"), and reused by `evalkit compare`. No model is loaded here."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from evalkit.cli import app
from evalkit.decide.baseline import compare_runs, load_run
from evalkit.decide.verdicts import compare
from evalkit.outputs.summary import render_summary
from evalkit.plan.build import build_plan
from evalkit.plan.types import StatsSettings, ci_label
from evalkit.scoring.score import MetricScores
from evalkit.suite.loader import load_suite
from tests.conftest import write_jsonl, write_minimal_safetensors
from tests.fixtures.report_data import make_run
from tests.test_baseline import fake_run


def _suite(d: Path, settings: str) -> Path:
    write_jsonl(d / "qa.jsonl", [{"id": f"q{i}", "q": f"Q{i}", "a": f"A{i}"} for i in range(60)])
    (d / "a1").mkdir()
    (d / "a1" / "adapter_config.json").write_text("{}")
    write_minimal_safetensors(d / "a1" / "adapter_model.safetensors")  # validate reads it
    path = d / "suite.yaml"
    path.write_text(
        f"""
name: stats
base: {{model: builtin:smollm2-135m-instruct}}
adapters: {{a1: {{path: a1}}}}
variants: [base, a1]
tasks:
  - name: qa
    data: {{path: qa.jsonl}}
    id: id
    prompt: "{{{{ q }}}}"
    reference: "{{{{ a }}}}"
    metrics: [{{type: reference_perplexity}}]
probes: {{builtin: false}}
settings: {settings}
"""
    )
    return path


def _scores(n: int) -> dict[tuple[str, str, str], MetricScores]:
    # per-example mean NLLs: the bootstrap (not McNemar) compares them
    rng = np.random.default_rng(1)
    base = rng.normal(2.0, 0.3, n)
    ones = [1.0] * n
    return {
        ("qa", "reference_perplexity", "base"): MetricScores(list(base), ones),
        ("qa", "reference_perplexity", "a1"): MetricScores(
            list(base + rng.normal(-0.05, 0.2, n)), ones
        ),
    }


def test_seed_flag_changes_the_bootstrap(tmp_path: Path) -> None:
    suite = load_suite(_suite(tmp_path, "{seed: 3, confidence: 0.9, bootstrap_resamples: 500}"))
    from_suite = build_plan(suite)
    assert from_suite.stats == StatsSettings(seed=3, confidence=0.9, resamples=500)
    flagged = build_plan(suite, seed=11)
    assert flagged.stats.seed == 11 and flagged.seed == 11
    scores = _scores(60)
    (a,) = compare(from_suite, scores)
    (b,) = compare(flagged, scores)
    (again,) = compare(build_plan(suite, seed=3), scores)
    assert a.stats.test == "paired-bootstrap"
    # --seed reaches the bootstrap: another interval; the same seed: the same interval
    assert (a.stats.ci_low, a.stats.ci_high) != (b.stats.ci_low, b.stats.ci_high)
    assert (a.stats.ci_low, a.stats.ci_high) == (again.stats.ci_low, again.stats.ci_high)
    assert a.stats.delta == b.stats.delta


def test_confidence_sets_the_interval_width(tmp_path: Path) -> None:
    suite = load_suite(_suite(tmp_path, "{confidence: 0.8}"))
    (tmp_path / "w").mkdir()
    wide = load_suite(_suite(tmp_path / "w", "{confidence: 0.99}"))
    (narrow,) = compare(build_plan(suite), _scores(60))
    (broad,) = compare(build_plan(wide), _scores(60))
    assert narrow.stats.ci_high - narrow.stats.ci_low < broad.stats.ci_high - broad.stats.ci_low


def test_ci_label() -> None:
    assert ci_label(0.9) == "90% CI"
    assert ci_label(0.95) == "95% CI"
    assert ci_label(0.975) == "97.5% CI"


def test_summary_prints_the_recorded_level() -> None:
    results = make_run(12, judged=False, sweep=False)
    assert "Δ [95% CI]" in render_summary(results)  # no `stats`: the default level
    results["stats"] = {"seed": 0, "confidence": 0.9, "resamples": 2000, "alpha": 0.05}
    text = render_summary(results)
    assert "Δ [90% CI]" in text and "95% CI" not in text


def test_compare_uses_the_recorded_settings(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n = 200
    ids = [f"e{i}" for i in range(n)]
    acc = list((rng.random(n) < 0.7).astype(float))
    score = rng.normal(0.5, 0.2, n)
    a = fake_run(tmp_path, "a", acc, list(score), ids)
    b = fake_run(tmp_path, "b", acc, list(score + rng.normal(0.01, 0.1, n)), ids)
    recorded = StatsSettings(seed=7, confidence=0.9, resamples=500)
    stats = {"seed": 7, "confidence": 0.9, "resamples": 500, "alpha": 0.05}
    for run in (a, b):
        (run / "results.json").write_text(json.dumps({"stats": stats}))
    out = CliRunner().invoke(
        app, ["compare", str(a), str(b), "-o", str(tmp_path / "c.json")], env={"COLUMNS": "200"}
    )
    assert out.exit_code in (0, 1), out.output
    assert "delta [90% CI]" in out.output
    doc = json.loads((tmp_path / "c.json").read_text())
    assert doc["stats"] == stats
    got = {(c["metric"], c["variant"]): (c["ci_low"], c["ci_high"]) for c in doc["comparisons"]}
    want = compare_runs(load_run(a), load_run(b).doc, [("a1", "a1")], recorded, a.name)
    default = compare_runs(load_run(a), load_run(b).doc, [("a1", "a1")], StatsSettings(), a.name)
    w = {c.metric.name: (c.stats.ci_low, c.stats.ci_high) for c in want}
    d = {c.metric.name: (c.stats.ci_low, c.stats.ci_high) for c in default}
    assert got[("score", "a1")] == pytest.approx(w["score"])
    assert w["score"] != pytest.approx(d["score"])  # the defaults would give another interval


def test_compare_notes_differing_settings_and_reads_old_runs(tmp_path: Path) -> None:
    ids = [f"e{i}" for i in range(20)]
    a = fake_run(tmp_path, "a", [1.0] * 20, [0.5] * 20, ids)
    b = fake_run(tmp_path, "b", [1.0] * 20, [0.5] * 20, ids)
    # a: a run from before settings were recorded (no results.json `stats`): the defaults
    (b / "results.json").write_text(
        json.dumps({"stats": {"seed": 1, "confidence": 0.8, "resamples": 300, "alpha": 0.05}})
    )
    out = CliRunner().invoke(app, ["compare", str(a), str(b)], env={"COLUMNS": "200"})
    assert out.exit_code == 0, out.output
    assert "80% CI" in out.output
    assert "different statistics settings" in out.output
    (b / "results.json").write_text(json.dumps({"stats": {"seed": "x", "confidence": []}}))
    bad = CliRunner().invoke(app, ["compare", str(a), str(b)])
    assert bad.exit_code == 2
