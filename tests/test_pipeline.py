"""The whole run on a tiny random model: outputs written and valid, gates decide the exit
code, and integrity checks catch an adapter that does nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from evalkit.errors import EXIT_GATE_FAILED, EXIT_INFRA, EXIT_OK
from evalkit.pipeline import run_suite
from tests.conftest import write_jsonl


def make_adapter(base_dir: Path, out: Path, *, zero: bool = False) -> Path:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(2)
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(base_dir),
        LoraConfig(
            r=4, lora_alpha=16, init_lora_weights=False, target_modules=["q_proj", "v_proj"]
        ),
    )
    if zero:
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "lora_" in name:
                    p.zero_()
    model.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def workdir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("suite")
    write_jsonl(
        d / "qa.jsonl",
        [{"id": f"q{i}", "q": f"What is {i} plus {i}?", "a": str(2 * i)} for i in range(6)],
    )
    make_adapter(tiny_model_dir, d / "good")
    make_adapter(tiny_model_dir, d / "zero", zero=True)
    return d


def suite_text(model: Path, adapter: str, gates: str) -> str:
    return f"""
name: tiny
base:
  model: {model}
adapters:
  a1:
    path: {adapter}
tasks:
  - name: qa
    data:
      path: qa.jsonl
    id: id
    prompt: "{{{{ q }}}}"
    reference: "{{{{ a }}}}"
    generation:
      max_new_tokens: 6
    metrics:
      - type: exact_match
      - type: contains
        value: "1"
      - type: reference_perplexity
        margin: 0.1
probes:
  builtin: [knowledge-mc, knowledge-open, prose-perplexity, open-ended]
gates:
{gates}
settings:
  bootstrap_resamples: 200
"""


def run(workdir: Path, tiny_model_dir: Path, adapter: str, gates: str, name: str):
    path = workdir / f"{name}.yaml"
    path.write_text(suite_text(tiny_model_dir, adapter, gates))
    return run_suite(path, output_dir=workdir / name, limit=4)


def test_full_run_writes_valid_outputs(workdir: Path, tiny_model_dir: Path) -> None:
    gates = "  - variant: a1\n    require: no_forgetting\n    severity: warning\n"
    outcome = run(workdir, tiny_model_dir, "good", gates, "ok")
    assert outcome.exit_code == EXIT_OK
    out = outcome.output_dir
    for name in ("results.json", "report.html", "junit.xml", "summary.md", "records.jsonl"):
        assert (out / name).stat().st_size > 0
    results = json.loads((out / "results.json").read_text())
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads(Path("evalkit/outputs/results.schema.json").read_text())
    jsonschema.validate(results, schema)
    assert [v["name"] for v in results["variants"]] == ["base", "a1", "merged:a1"]
    assert results["run"]["smoke"] is True and results["run"]["limit"] == 4
    tasks = {t["name"]: t["n"] for t in results["tasks"]}
    assert tasks == {
        "qa": 4,
        "knowledge-mc": 4,
        "knowledge-open": 4,
        "prose-perplexity": 4,
        "open-ended": 4,
    }
    # every metric for every variant, and a comparison per non-base variant
    n_metrics = 3 + 1 + 2 + 1 + 3  # knowledge-open: accuracy and open_shift
    assert len(results["metrics"]) == n_metrics * 3
    assert len(results["comparisons"]) == n_metrics * 2
    ppl = {r["variant"]: r["value"] for r in results["metrics"] if r["task"] == "prose-perplexity"}
    assert all(v > 1000 for v in ppl.values())  # a random model is near-uniform over 49k
    checks = {(c["check"], c["variant"]): c["passed"] for c in results["integrity"]}
    assert checks == {
        ("base_matches", "a1"): True,
        ("adapter_applied", "a1"): True,
        ("merge_agrees", "merged:a1"): True,
    }
    # format drift vs knowledge loss: a diagnosis for each adapter variant, with figures
    diagnoses = {v["name"]: v.get("diagnosis") for v in results["variants"]}
    assert diagnoses["base"] is None
    for v in ("a1", "merged:a1"):
        assert diagnoses[v]["kind"] in ("knowledge_loss", "format_drift", "unclear", "none")
        roles = {(e["role"], e["metric"]) for e in diagnoses[v]["evidence"]}
        assert ("format", "open_shift") in roles and ("knowledge", "perplexity") in roles
    shift = [r for r in results["metrics"] if r["metric"] == "open_shift"]
    by_variant = {r["variant"]: r["value"] for r in shift}
    # the tiny base answers nothing (no token to shift: unscored); the adapter's answers move
    assert by_variant["base"] is None and 0.0 < by_variant["a1"] <= 1.0
    assert by_variant["merged:a1"] == by_variant["a1"]
    # records: one per example × variant × task
    lines = (out / "records.jsonl").read_text().splitlines()
    assert len(lines) == 5 * 4 * 3
    # where the time went: every stage, each task x variant with its work
    stages = {r["stage"]: r for r in results["profile"]}
    for name in ("plan", "load", "integrity", "evaluate", "judge", "score", "decide"):
        assert stages[name]["seconds"] >= 0
    # the variant's generations (qa with its references, knowledge-open, open-ended) run
    # as one request, before each task's other requests
    gen = stages["a1 · generation"]
    assert gen["parent"] == "evaluate" and gen["requests"] == 3 * 4
    # max_new_tokens 6, 32 and 96; rows may end early
    assert 3 * 4 <= gen["generated_tokens"] <= 4 * (6 + 32 + 96)
    assert gen["forward_tokens"] > gen["generated_tokens"]
    qa = stages["a1 · qa"]
    assert qa["parent"] == "evaluate" and qa["requests"] == 4
    assert "forward_tokens" not in qa  # its answers and reference scores came with them
    assert "generated_tokens" not in stages["base · prose-perplexity"]
    assert stages["base · prose-perplexity"]["forward_tokens"] > 100
    children = [r["seconds"] for r in results["profile"] if r.get("parent") == "evaluate"]
    assert len(children) == (5 + 1) * 3 and sum(children) <= stages["evaluate"]["seconds"]


def test_failed_gate_exits_1(workdir: Path, tiny_model_dir: Path) -> None:
    gates = "  - variant: a1\n    task: qa\n    metric: exact_match\n    require: improved\n"
    outcome = run(workdir, tiny_model_dir, "good", gates, "gate")
    assert outcome.exit_code == EXIT_GATE_FAILED
    gate = outcome.results["gates"][0]
    assert gate["passed"] is False and gate["name"] == "a1: qa/exact_match improved"
    junit = (outcome.output_dir / "junit.xml").read_text()
    assert 'failures="1"' in junit


def test_all_zero_adapter_is_caught(workdir: Path, tiny_model_dir: Path) -> None:
    gates = "  - variant: a1\n    require: no_forgetting\n"
    outcome = run(workdir, tiny_model_dir, "zero", gates, "zero")
    assert outcome.exit_code == EXIT_INFRA
    check = next(c for c in outcome.results["integrity"] if c["check"] == "adapter_applied")
    assert check["passed"] is False and "changes nothing" in check["detail"]


RESUME_GATE = "  - variant: a1\n    task: qa\n    metric: exact_match\n    require: improved\n"


def test_rerun_reuses_finished_work(
    workdir: Path, tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run interrupted after the base (here: one that only evaluated the base) leaves its
    results in the cache; the next run computes only what is missing."""
    monkeypatch.setenv("EVALKIT_CACHE_DIR", str(tmp_path / "cache"))
    path = workdir / "resume.yaml"
    path.write_text(suite_text(tiny_model_dir, "good", RESUME_GATE))
    first = run_suite(path, output_dir=tmp_path / "r1", limit=3, variants=["base"])
    # the gate names a variant this run left out: reported, not failed, not a crash
    assert first.exit_code == 0
    assert first.results["gates"][0]["detail"] == "not evaluated: variant not in this run"
    per_variant = first.results["run"]["cache"]["computed"]
    assert first.results["run"]["cache"]["reused"] == 0 and per_variant > 0
    second = run_suite(path, output_dir=tmp_path / "r2", limit=3)
    assert second.results["run"]["cache"] == {"reused": per_variant, "computed": 2 * per_variant}
    third = run_suite(path, output_dir=tmp_path / "r3", limit=3)
    assert third.results["run"]["cache"] == {"reused": 3 * per_variant, "computed": 0}
    assert third.results["metrics"] == second.results["metrics"]
