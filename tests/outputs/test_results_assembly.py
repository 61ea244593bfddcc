"""results.json assembled from a scripted run (no model): it meets the schema, records each
metric's unit from the registry, and the outputs print every unit as declared."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from evalkit.decide.gates import Decision, apply_gates, exit_code
from evalkit.decide.integrity import IntegrityResult
from evalkit.decide.verdicts import compare, forgetting
from evalkit.outputs import render_summary
from evalkit.outputs.results import build_results
from evalkit.plan.build import gate_spec
from evalkit.suite.config import GateConfig
from tests.scripted_run import REPO_ROOT, run

SCHEMA = REPO_ROOT / "evalkit" / "outputs" / "results.schema.json"


def scripted_results() -> dict[str, Any]:
    plan, engine, records, scores = run()
    comps = compare(plan, scores)
    flags = forgetting(plan, comps)
    specs = [
        GateConfig(variant="good", require="improved", task="qa", metric="exact_match"),
        GateConfig(variant="bad", require="no_forgetting", severity="warning"),
    ]
    plan = dataclasses.replace(plan, gates=tuple(gate_spec(g) for g in specs))
    gates = apply_gates(
        plan,
        scores,
        comps,
        flags,
    )
    fps = {v: engine.fingerprint(v) for v in plan.variants}
    return build_results(
        plan=plan,
        suite_meta={"name": "scripted", "path": "scripted.yaml", "sha256": "0" * 64, "text": ""},
        run_meta={
            "started_at": "2026-01-01T00:00:00+00:00",
            "finished_at": "2026-01-01T00:00:01+00:00",
            "duration_s": 1.0,
            "seed": plan.seed,
            "limit": None,
            "smoke": False,
            "output_dir": "out",
            "device": engine.device.type,
            "versions": {"python": "3"},
            "cache": None,
        },
        base_meta={"model": "scripted", "fingerprint": fps["base"]},
        adapters={v: f"adapters/{v}" for v in plan.variants if v != "base"},
        fingerprints=fps,
        records=records,
        scores=scores,
        decision=Decision(comps, flags, gates),
        integrity=[IntegrityResult("adapter_applied", "good", True, 1.0, 1e-3, "ok")],
        exit_code=exit_code(gates, False),
        warnings=[],
    )


@pytest.fixture(scope="module")
def results() -> dict[str, Any]:
    return json.loads(json.dumps(scripted_results()))


def test_meets_the_schema(results: dict[str, Any]) -> None:
    jsonschema.validate(results, json.loads(SCHEMA.read_text(encoding="utf-8")))


def test_metrics_record_their_units(results: dict[str, Any]) -> None:
    units = {(t["name"], m["name"]): m["unit"] for t in results["tasks"] for m in t["metrics"]}
    assert units == {
        ("qa", "exact_match"): "fraction",
        ("mc", "accuracy"): "fraction",
        ("prose", "perplexity"): "perplexity",
        ("prose", "kl_from_base"): "nats_per_token",
    }


def test_figures_and_gates(results: dict[str, Any]) -> None:
    value = {(m["task"], m["metric"], m["variant"]): m["value"] for m in results["metrics"]}
    assert value[("qa", "exact_match", "good")] == pytest.approx(0.9)
    assert value[("prose", "kl_from_base", "bad")] == pytest.approx(0.9)
    assert [(g["passed"], g["severity"]) for g in results["gates"]] == [
        (True, "error"),
        (False, "warning"),
    ]
    assert results["exit_code"] == 0
    assert results["forgetting"]["bad"]["flagged"] is True
    samples = {(s["task"], s["id"]): s for s in results["samples"]}
    assert samples[("qa", "qa12")]["outputs"]["mixed"] == "yes"


def test_a_kl_below_one_prints_as_a_number_not_a_percentage(results: dict[str, Any]) -> None:
    # Every KL value lies in [0, 1]; guessing from the values called it a fraction.
    summary = render_summary(results)
    kl_lines = [ln for ln in summary.splitlines() if "kl_from_base" in ln or "KL(" in ln]
    assert kl_lines, summary
    assert any("+0.900" in ln or "+0.90" in ln for ln in kl_lines), kl_lines
    assert not any("90.0" in ln for ln in kl_lines), kl_lines


def test_writes_every_output(tmp_path: Path, results: dict[str, Any]) -> None:
    from evalkit.outputs import write_outputs

    written = write_outputs(results, tmp_path)
    assert sorted(p.name for p in written.values()) == [
        "junit.xml",
        "report.html",
        "results.json",
        "summary.md",
    ]
