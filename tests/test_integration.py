"""The demo suite on the real default model and the committed demo adapters (a smoke run
with --limit, so it fits in a test budget on 2 CPU cores)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.integration
LIMIT = 10


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory, default_model_dir: Path) -> dict:
    out = tmp_path_factory.mktemp("demo")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "evalkit",
            "run",
            str(REPO / "suites" / "legal.yaml"),
            "--limit",
            str(LIMIT),
            "--output-dir",
            str(out),
            "--quiet",
            "--no-cache",
        ],
        capture_output=True,
        text=True,
        timeout=1800,
        cwd=REPO,
    )
    assert proc.returncode in (0, 1), proc.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert results["exit_code"] == proc.returncode
    results["_dir"] = str(out)
    return results


def value(results: dict, task: str, variant: str, metric: str) -> float:
    return next(
        r["value"]
        for r in results["metrics"]
        if (r["task"], r["variant"], r["metric"]) == (task, variant, metric)
    )


def test_adapter_learned_the_format_and_base_did_not(demo_run: dict) -> None:
    assert value(demo_run, "legal-summary", "base", "json_valid") <= 0.2
    assert value(demo_run, "legal-summary", "legal-r16", "json_valid") >= 0.8
    assert value(demo_run, "legal-summary", "merged:legal-r16", "json_valid") >= 0.8
    # the reference is far more likely under the adapter
    assert value(demo_run, "legal-summary", "legal-r16", "reference_perplexity") < 0.5 * value(
        demo_run, "legal-summary", "base", "reference_perplexity"
    )


def test_overfit_adapter_forgets_open_answers(demo_run: dict) -> None:
    base = value(demo_run, "knowledge-open", "base", "accuracy")
    overfit = value(demo_run, "knowledge-open", "legal-overfit", "accuracy")
    assert base >= 0.3 and overfit <= base - 0.2
    assert value(demo_run, "prose-perplexity", "legal-overfit", "perplexity") > 1.2 * value(
        demo_run, "prose-perplexity", "base", "perplexity"
    )


def test_integrity_checks_pass_on_real_adapters(demo_run: dict) -> None:
    checks = {(c["check"], c["variant"]): c for c in demo_run["integrity"]}
    assert set(checks) == {
        ("adapter_applied", "legal-r16"),
        ("adapter_applied", "legal-overfit"),
        ("merge_agrees", "merged:legal-r16"),
        ("merge_agrees", "merged:legal-overfit"),
        # both demo adapters declare the default model as their base
        ("base_matches", "legal-r16"),
        ("base_matches", "legal-overfit"),
    }
    assert all(c["passed"] for c in checks.values())
    assert checks[("merge_agrees", "merged:legal-r16")]["value"] < 1e-6  # max KL, nats/token


def test_outputs_are_complete(demo_run: dict) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((REPO / "evalkit/outputs/results.schema.json").read_text())
    jsonschema.validate({k: v for k, v in demo_run.items() if k != "_dir"}, schema)
    out = Path(demo_run["_dir"])
    html = (out / "report.html").read_text()
    assert "legal-overfit" in html and "knowledge-open" in html
    assert demo_run["run"]["smoke"] is True
    samples = [s for s in demo_run["samples"] if s["task"] == "legal-summary"]
    assert len(samples) == LIMIT
    assert set(samples[0]["outputs"]) == {
        "base",
        "legal-r16",
        "merged:legal-r16",
        "legal-overfit",
        "merged:legal-overfit",
    }


def test_merged_variants_check_their_adapters_generations(demo_run: dict) -> None:
    """On the real model each merged variant writes its adapter's texts, so every one of
    its generations is its adapter's, checked in a pass instead of decoded (hf_drafts)."""
    rows = {r["stage"]: r for r in demo_run["profile"]}
    records = (Path(demo_run["_dir"]) / "records.jsonl").read_text().splitlines()
    outputs: dict[tuple[str, str], dict[str, str]] = {}
    for rec in map(json.loads, records):
        if rec["output"] is not None:
            outputs.setdefault((rec["task"], rec["example_id"]), {})[rec["variant"]] = rec["output"]
    assert len(outputs) == 3 * LIMIT  # legal-summary, knowledge-open, open-ended
    for adapter in ("legal-r16", "legal-overfit"):
        own, merged = rows[f"{adapter} · generation"], rows[f"merged:{adapter} · generation"]
        assert own["generated_tokens"] > 0 and "verified_tokens" not in own
        assert merged["verified_tokens"] == own["generated_tokens"]
        assert "generated_tokens" not in merged
        assert all(o[adapter] == o[f"merged:{adapter}"] for o in outputs.values())
