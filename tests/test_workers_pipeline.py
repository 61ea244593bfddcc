"""`--workers 2` on a tiny random model: the same results.json figures as one worker
(metrics, comparisons, gates, samples, integrity checks, records), the base computed once,
and the CLI flag."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from evalkit.cli import app
from evalkit.pipeline import run_suite
from tests.conftest import write_jsonl

# No merged variants: merging in place and back leaves float rounding in the base weights
# (see the README), so a one-worker run's figures after a merged variant depend on the order
VARIANTS = ["base", "a1", "a2"]


def make_adapter(base_dir: Path, out: Path, seed: int) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(base_dir),
        LoraConfig(
            r=4, lora_alpha=16, init_lora_weights=False, target_modules=["q_proj", "v_proj"]
        ),
    )
    model.save_pretrained(out)
    return out


SUITE = """
name: tiny-workers
base:
  model: {model}
adapters:
  a1:
    path: a1
  a2:
    path: a2
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
      - type: reference_perplexity
        margin: 0.1
probes:
  builtin: [knowledge-mc, prose-perplexity]
gates:
  - variant: a1
    require: no_forgetting
    severity: warning
settings:
  bootstrap_resamples: 200
"""


@pytest.fixture(scope="module")
def suite(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("workers-suite")
    write_jsonl(
        d / "qa.jsonl",
        [{"id": f"q{i}", "q": f"What is {i} plus {i}?", "a": str(2 * i)} for i in range(6)],
    )
    make_adapter(tiny_model_dir, d / "a1", seed=2)
    make_adapter(tiny_model_dir, d / "a2", seed=3)
    path = d / "suite.yaml"
    path.write_text(SUITE.format(model=tiny_model_dir))
    return path


def _figures(out: Path) -> dict[str, Any]:
    """results.json without what differs from run to run (times, the output folder)."""
    results = json.loads((out / "results.json").read_text())
    run = results.pop("run")
    results.pop("profile", None)  # where the time went
    return {
        **results,
        "cache": run["cache"],
        "records": (out / "records.jsonl").read_text(),
    }


def test_two_workers_give_the_one_worker_results(
    suite: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EVALKIT_CACHE_DIR", str(tmp_path / "cache1"))
    one = run_suite(suite, output_dir=tmp_path / "one", limit=3, variants=VARIANTS)
    assert one.exit_code == 0
    monkeypatch.setenv("EVALKIT_CACHE_DIR", str(tmp_path / "cache2"))
    args = ["run", str(suite), "-o", str(tmp_path / "two"), "--limit", "3", "-q"]
    res = CliRunner().invoke(app, [*args, "--variants", ",".join(VARIANTS), "--workers", "2"])
    assert res.exit_code == 0, res.output
    a, b = _figures(one.output_dir), _figures(tmp_path / "two")
    assert a["integrity"] and a["samples"] and a["gates"]  # something to compare
    for key in a:
        assert b[key] == a[key], key
    # both caches started empty: each variant's requests were computed once, the base's too
    assert a["cache"]["reused"] == 0 and a["cache"]["computed"] > 0
    assert b["cache"] == a["cache"]
