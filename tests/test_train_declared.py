"""Adapters declared with `train:` in a suite (and swept over rank): trained on the first
run, reused from the adapter cache on the second, recorded in results.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evalkit.errors import SuiteError
from evalkit.pipeline import run_suite
from evalkit.suite.loader import load_suite
from tests.conftest import write_jsonl, write_minimal_safetensors

pytestmark = pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing:FutureWarning")

SUITE = """
name: declared
base:
  model: {model}
adapters:
  fmt:
    train:
      data:
        path: train.jsonl
        prompt: "Answer in the house format: {{{{ q }}}}"
        completion: "{{{{ a }}}}"
      target_modules: [q_proj, v_proj]
      learning_rate: 0.01
      max_steps: 3
      batch_size: 4
      dropout: 0.0
    sweep:
      rank: [2, 4]
tasks:
  - name: qa
    data:
      path: qa.jsonl
    id: id
    prompt: "Answer in the house format: {{{{ q }}}}"
    reference: "{{{{ a }}}}"
    generation:
      max_new_tokens: 4
    metrics:
      - type: reference_perplexity
probes:
  builtin: [prose-perplexity]
settings:
  bootstrap_resamples: 200
  integrity:
    on_failure: warning
"""


@pytest.fixture()
def suite_path(tiny_model_dir: Path, tmp_path: Path) -> Path:
    rows = [{"id": f"q{i}", "q": f"What is {i} plus {i}?", "a": f'{{"sum": {2 * i}}}'}
            for i in range(8)]  # fmt: skip
    write_jsonl(tmp_path / "train.jsonl", rows)
    write_jsonl(tmp_path / "qa.jsonl", rows[:4])
    path = tmp_path / "suite.yaml"
    path.write_text(SUITE.format(model=tiny_model_dir))
    return path


def test_declared_adapters_train_once_then_reuse(
    suite_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EVALKIT_CACHE_DIR", str(tmp_path / "cache"))
    first = run_suite(suite_path, output_dir=tmp_path / "r1", limit=3)
    names = [v["name"] for v in first.results["variants"]]
    assert names == ["base", "fmt-r2", "merged:fmt-r2", "fmt-r4", "merged:fmt-r4"]
    training = {v["name"]: v.get("training") for v in first.results["variants"]}
    assert training["base"] is None
    assert {training[n]["status"] for n in names[1:]} == {"trained"}
    assert (
        training["fmt-r2"]["settings"]["rank"] == 2 and training["fmt-r4"]["settings"]["rank"] == 4
    )
    assert training["fmt-r2"]["settings"]["alpha"] == 4  # default alpha: 2 x rank
    assert training["fmt-r2"]["key"] != training["fmt-r4"]["key"]
    cached = sorted(p.name for p in (tmp_path / "cache" / "adapters").iterdir())
    assert cached == sorted({training["fmt-r2"]["key"], training["fmt-r4"]["key"]})
    assert first.results["sweep"] == {
        "name": "fmt", "parameters": ["rank"],
        "points": [{"adapter": "fmt-r2", "settings": {"rank": 2}},
                   {"adapter": "fmt-r4", "settings": {"rank": 4}}],
    }  # fmt: skip
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads(Path("evalkit/outputs/results.schema.json").read_text())
    jsonschema.validate(first.results, schema)
    adapter_file = Path(training["fmt-r2"]["path"]) / "adapter_model.safetensors"
    mtime = adapter_file.stat().st_mtime_ns

    second = run_suite(suite_path, output_dir=tmp_path / "r2", limit=3)
    again = {v["name"]: v.get("training") for v in second.results["variants"]}
    assert {again[n]["status"] for n in names[1:]} == {"reused"}
    assert again["fmt-r2"]["key"] == training["fmt-r2"]["key"]
    assert adapter_file.stat().st_mtime_ns == mtime, "a reused adapter is not rewritten"
    assert second.results["run"]["cache"]["computed"] == 0  # same weights, same results


def test_declared_adapter_errors_name_file_and_line(suite_path: Path) -> None:
    text = suite_path.read_text()
    bad = text.replace("rank: [2, 4]", "rank: [2, 0]")
    suite_path.write_text(bad)
    with pytest.raises(SuiteError, match=r"suite.yaml:\d+: adapters.fmt.sweep.rank\[1\]"):
        load_suite(suite_path)
    suite_path.write_text(text.replace("learning_rate: 0.01", "learning_rate: fast"))
    with pytest.raises(SuiteError, match="learning_rate: Input should be a valid number"):
        load_suite(suite_path)
    suite_path.write_text(text.replace("    train:\n", "    path: somewhere\n    train:\n", 1))
    with pytest.raises(SuiteError, match="either `path:` or a `train:` block"):
        load_suite(suite_path)


def test_qlora_drift_of_a_path_adapter_is_reported(suite_path: Path, tmp_path: Path) -> None:
    """An adapter trained with `evalkit train --qlora` and evaluated on the full-precision
    base: its recorded quantization drift becomes a run warning, not a hidden offset."""
    from evalkit.training.declared import resolve_adapters

    adapter = tmp_path / "qa-adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    write_minimal_safetensors(adapter / "adapter_model.safetensors")  # validate reads it
    card = {"qlora": True, "quantization_drift": {"max_abs_logit_diff": 0.42, "probes": 4}}
    (adapter / "training_card.json").write_text(json.dumps(card))
    text = suite_path.read_text()
    start, end = text.index("adapters:"), text.index("tasks:")
    suite_path.write_text(text[:start] + f"adapters:\n  q:\n    path: {adapter}\n" + text[end:])
    declared = resolve_adapters(load_suite(suite_path), {"q"})
    assert declared.paths == {"q": adapter} and declared.training == {}
    assert len(declared.warnings) == 1 and "0.42 (quantization drift)" in declared.warnings[0]
    results: dict = {"variants": [{"name": "q", "adapter": "q"}], "warnings": []}
    declared.annotate(results)
    assert "sweep" not in results and results["warnings"] == declared.warnings
