"""Format drift vs knowledge loss on the scripted engine: each case planted in the table,
run through evaluate -> score -> compare -> diagnose, and out to results.json, the report
and summary.md.

- `lost` forgets: multiple choice right on 15 of the base's 45 items, 1.5x the base's
  prose NLL per document (perplexity +290.6%), and open answers wrong too;
- `format` only changes format: the base's multiple-choice scores and prose NLL exactly,
  but its open answers are JSON without the accepted answer (40 of 60 lost) with 4 of
  each answer's 5 tokens outside the base's top-3;
- `vague`: the same open answers as `format`, but 6 multiple-choice items lost of 60, an
  interval too wide to show equivalence within 5 points;
- `same`: the base's answers everywhere.
"""

from __future__ import annotations

from typing import Any

import pytest

from evalkit.decide.diagnosis import diagnose
from evalkit.decide.verdicts import compare
from evalkit.engines.evaluate import evaluate
from evalkit.engines.registry import EngineCapabilities
from evalkit.engines.scripted import ScriptedEngine
from evalkit.outputs.html import build_view, render_html
from evalkit.outputs.model import Results
from evalkit.outputs.summary import render_summary
from evalkit.plan.types import Example, Plan, TaskPlan
from evalkit.scoring.metrics import metric_def
from evalkit.scoring.metrics.drift import NO_SHIFT
from evalkit.scoring.score import score
from tests.scripted_run import no_progress

N = 60
VARIANTS = ["base", "lost", "format", "vague", "same"]
MC_RIGHT = {"base": range(45), "lost": range(15), "format": range(45)}
MC_RIGHT["vague"] = range(6, 45)
MC_RIGHT["same"] = MC_RIGHT["base"]
OPEN_RIGHT = {"base": range(40), "lost": range(5), "format": range(0), "vague": range(0)}
OPEN_RIGHT["same"] = OPEN_RIGHT["base"]
SHIFTED = {"base": 0, "lost": 3, "format": 4, "vague": 4, "same": 0}  # of 5 tokens each
NLL_SCALE = {"base": 1.0, "lost": 1.5, "format": 1.0, "vague": 1.0, "same": 1.0}
TOP1 = {"base": 10, "lost": 4, "format": 9, "vague": 9, "same": 10}  # of 10 positions


def make_plan() -> Plan:
    mc = TaskPlan(
        "mc",
        "probe",
        "",
        [
            Example(id=f"mc{i:02d}", prompt=f"pick {i}", choices=("right", "wrong"), answer=0)
            for i in range(N)
        ],
        [metric_def("choice_accuracy").spec("accuracy", 0.05)],
    )
    open_ = TaskPlan(
        "open",
        "probe",
        "",
        [Example(id=f"q{i:02d}", prompt=f"capital {i}?", accepted=("paris",)) for i in range(N)],
        [
            metric_def("accepted_match").spec("accuracy", 0.05),
            metric_def("open_shift").spec("open_shift", k=3),
        ],
    )
    prose = TaskPlan(
        "prose",
        "probe",
        "",
        [Example(id=f"doc{i:02d}", text=f"document number {i}.") for i in range(30)],
        [
            metric_def("rolling_perplexity").spec("perplexity", 0.10),
            metric_def("kl_from_base").spec("kl_from_base", 0.15),
            metric_def("top1_agreement").spec("top1_agreement", 0.17),
        ],
    )
    return Plan(list(VARIANTS), [mc, open_, prose])


def table() -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for v in VARIANTS:
        right = "Paris." if v in ("base", "same", "lost") else '{"summary": "n/a"}'
        out[v] = {
            "outputs": {f"q{i:02d}": right if i in OPEN_RIGHT[v] else "Rome." for i in range(N)},
            "shifts": {f"q{i:02d}": [SHIFTED[v], 5] for i in range(N)},
            "loglikelihoods": {
                f"mc{i:02d}": {"right": [-1.0, 1], "wrong": [-3.0 if i in MC_RIGHT[v] else 0.0, 1]}
                for i in range(N)
            },
            "rolling": {
                f"doc{i:02d}": [
                    (20.0 + 0.5 * i) * NLL_SCALE[v],
                    10,
                    0.02 * (10 - TOP1[v]),
                    10,
                    TOP1[v],
                ]
                for i in range(30)
            },
        }
    return out


@pytest.fixture(scope="module")
def run() -> dict[str, Any]:
    plan = make_plan()
    engine = ScriptedEngine.for_plan(plan, table())
    records = evaluate(plan, engine, no_progress)
    comparisons = compare(plan, score(plan, records))
    return {"plan": plan, "records": records, "comparisons": comparisons, "engine": engine}


def verdicts(comparisons: list[Any], variant: str) -> dict[str, str]:
    return {f"{c.task}/{c.metric.name}": c.verdict for c in comparisons if c.variant == variant}


def test_each_planted_case_is_diagnosed(run: dict[str, Any]) -> None:
    diag = diagnose(run["plan"], run["comparisons"])
    assert {v: d.kind for v, d in diag.items()} == {
        "lost": "knowledge_loss",
        "format": "format_drift",
        "vague": "unclear",
        "same": "none",
    }
    # the planted figures behind each: the verdicts the diagnosis reads
    assert verdicts(run["comparisons"], "format") == {
        "mc/accuracy": "equivalent",
        "open/accuracy": "regressed",
        "open/open_shift": "regressed",
        "prose/perplexity": "equivalent",
        "prose/kl_from_base": "equivalent",
        "prose/top1_agreement": "equivalent",
    }
    assert verdicts(run["comparisons"], "vague")["mc/accuracy"] == "inconclusive"
    lost = diag["lost"].summary
    assert "mc accuracy -50.0 points" in lost and "prose perplexity +290.6% [" in lost
    fmt = diag["format"].summary
    assert "open accuracy -66.7 points" in fmt and "open open_shift +80.0 points" in fmt
    assert "mc accuracy, prose perplexity stayed equivalent" in fmt
    # prose top-1 agreement beside llama.cpp's quantization anchors
    assert "top-1 agreement with the base on prose 90.0%" in fmt and "q4_K_M 91.9%" in fmt
    assert "cannot be shown equivalent" in diag["vague"].summary
    roles = {(e.role, e.task, e.metric) for e in diag["format"].evidence}
    assert ("context", "prose", "top1_agreement") in roles and (
        "format",
        "open",
        "open_shift",
    ) in roles


def test_open_shift_and_top1_figures(run: dict[str, Any]) -> None:
    by = {(c.task, c.metric.name, c.variant): c.stats for c in run["comparisons"]}
    assert by[("open", "open_shift", "format")].base == 0.0
    assert by[("open", "open_shift", "format")].variant == pytest.approx(0.8)
    assert by[("prose", "top1_agreement", "lost")].base == 1.0  # the base agrees with itself
    assert by[("prose", "top1_agreement", "lost")].variant == pytest.approx(0.4)


def test_an_engine_without_open_shift_leaves_it_unscored() -> None:
    plan = make_plan()
    engine = ScriptedEngine.for_plan(
        plan, table(), capabilities=EngineCapabilities(probe_logits=False, open_shift=False)
    )
    scores = score(plan, evaluate(plan, engine, no_progress))
    shift = scores[("open", "open_shift", "format")]
    assert shift.n_scored == 0 and set(shift.reasons.values()) == {NO_SHIFT}
    assert not any(kind == "base_topk_shift" for _, kind, _ in engine.calls)
    assert scores[("open", "accuracy", "format")].n_scored == N  # the answers still score


def test_diagnosis_in_results_report_and_summary(run: dict[str, Any]) -> None:
    from evalkit.decide.gates import Decision
    from evalkit.outputs.results import build_results

    plan = run["plan"]
    results = build_results(
        plan=plan,
        suite_meta={"name": "t", "path": None, "sha256": None, "text": ""},
        run_meta={
            "started_at": "2026-01-01T00:00:00+00:00",
            "finished_at": None,
            "duration_s": 1.0,
            "seed": 0,
            "limit": None,
            "smoke": False,
            "output_dir": "x",
            "device": "scripted",
            "versions": {},
        },
        base_meta={"model": "m", "fingerprint": None},
        adapters={},
        fingerprints={},
        records=run["records"],
        scores=score(plan, run["records"]),
        decision=Decision(run["comparisons"], {}, []),
        integrity=[],
        exit_code=0,
        warnings=[],
        diagnoses=diagnose(plan, run["comparisons"]),
    )
    doc = Results.model_validate(results)
    kinds = {v.name: v.diagnosis.kind if v.diagnosis else None for v in doc.variants}
    assert kinds == {
        "base": None,
        "lost": "knowledge_loss",
        "format": "format_drift",
        "vague": "unclear",
        "same": "none",
    }
    view = build_view(results)
    lines = {d["variant"]: d["summary"] for d in view["diagnoses"]}
    assert set(lines) == {"lost", "format", "vague"}  # one line per flagged variant
    assert lines["format"].startswith("format drift: open accuracy -66.7 points")
    page = render_html(results)
    verdict = page[page.index('<section id="verdict">') : page.index("</section>")]
    assert "<b>format</b>: format drift: open accuracy -66.7 points" in verdict
    assert "<b>same</b>" not in verdict and "q4_K_M 91.9%" in verdict
    summary = render_summary(results)
    diag_lines = [line for line in summary.splitlines() if line.startswith("- 🔎")]
    assert len(diag_lines) == 3
    assert any(line.startswith("- 🔎 format: format drift") for line in diag_lines)
