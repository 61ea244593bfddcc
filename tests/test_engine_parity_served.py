"""engine.reference, the lm_head warning, the server's identity and the parity figures,
end to end against a real llama.cpp server on loopback (llama-cpp-python's, serving the
default model's GGUF; see tests/served_llama.py).

The adapter here is a real peft LoRA on `lm_head` only, written in the test (random A and
B, scaled so it moves the base's logprobs by about 0.4-1 nats per token and still answers
"The capital of France is Paris"). llama-cpp-python cannot serve a LoRA here (no
convert_lora_to_gguf.py on these machines), so the server serves the base under the
adapter's name: exactly an engine that drops an lm_head adapter (vLLM #51594).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import write_jsonl

pytest.importorskip("llama_cpp", reason="needs llama-cpp-python[server] (the local-judge extra)")

from tests.served_llama import llama_models  # noqa: E402

BASE = "builtin:smollm2-135m-instruct"
HIDDEN, VOCAB, RANK = 576, 49152, 4  # the default model's


@pytest.fixture(scope="module")
def server() -> object:
    with llama_models(["smollm2", "head-lora"]) as served:
        yield served.url


def write_lm_head_lora(path: Path, scale: float = 0.07) -> Path:
    """A peft LoRA adapter on the base's lm_head alone, as peft saves one."""
    import torch
    from safetensors.torch import save_file

    path.mkdir(parents=True)
    g = torch.Generator().manual_seed(0)
    tensors = {
        "base_model.model.lm_head.lora_A.weight": torch.randn(RANK, HIDDEN, generator=g) * scale,
        "base_model.model.lm_head.lora_B.weight": torch.randn(VOCAB, RANK, generator=g) * scale,
    }
    save_file(
        {k: v.contiguous() for k, v in tensors.items()}, str(path / "adapter_model.safetensors")
    )
    config = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": RANK, "lora_alpha": 2 * RANK,
              "lora_dropout": 0.0, "bias": "none", "target_modules": ["lm_head"],
              "base_model_name_or_path": BASE, "inference_mode": True}  # fmt: skip
    (path / "adapter_config.json").write_text(json.dumps(config), encoding="utf-8")
    return path


def _suite(d: Path, url: str, reference: str) -> Path:
    write_lm_head_lora(d / "adapters" / "head-lora")
    write_jsonl(
        d / "qa.jsonl",
        [
            {"id": "q1", "q": "What is the capital of France?", "a": "Paris"},
            {"id": "q2", "q": "What is two plus two?", "a": "4"},
        ],
    )
    path = d / "served.yaml"
    path.write_text(
        f"""name: served
base:
  model: {BASE}
adapters:
  head-lora:
    path: adapters/head-lora
variants: [base, head-lora]
engine:
  kind: openai
  base_url: {url}
  models: {{base: smollm2, head-lora: head-lora}}
  top_logprobs: 200
  prompt_logprobs: shifted
  max_retries: 1
  extra_body: {{repeat_penalty: 1.0}}
  parity: {{texts: 12}}
{reference}tasks:
  - name: qa
    data: {{path: qa.jsonl}}
    id: id
    prompt: "{{{{ q }}}}"
    reference: "{{{{ a }}}}"
    generation: {{max_new_tokens: 8}}
    metrics:
      - type: contains
        value: "a"
      - type: reference_perplexity
probes:
  builtin: false
settings:
  bootstrap_resamples: 200
""",
        encoding="utf-8",
    )
    return path


def test_cli_run_with_reference_skip_passes_and_says_it_checked_nothing(
    server: str, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "evalkit",
            "run",
            "-q",
            str(_suite(tmp_path, server, "  reference: skip\n")),
            "-o",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    # the server drops the adapter, and without a reference nothing notices: exit 0
    assert proc.returncode == 0, proc.stdout + proc.stderr
    err = proc.stderr
    assert "engine.reference is skip: the served engine is NOT checked" in err
    assert "adapter 'head-lora' trains lm_head (target_modules)" in err and "#51594" in err
    assert "Traceback" not in err
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    eng = results["engine"]
    assert eng["reference"]["skip"] is True and eng["parity"] is None
    assert eng["base_url"] == server and eng["models"] == {
        "base": "smollm2",
        "head-lora": "head-lora",
    }
    # llama-cpp-python's server has no version endpoint; its OpenAPI document has one
    assert eng["server"]["version"] == __import__("llama_cpp").__version__
    assert eng["server"]["source"] == "GET /openapi.json"
    skipped = {(c["check"], c["variant"]) for c in results["integrity"] if c.get("skipped")}
    assert skipped == {("engine_parity", "base"), ("engine_parity", "head-lora"),
                       ("adapter_applied", "head-lora")}  # fmt: skip
    # the checks that read the adapter's files still ran
    assert [c["check"] for c in results["integrity"] if not c.get("skipped")] == ["base_matches"]
    assert any("engine.reference is skip" in w for w in results["warnings"])
    page = (out / "report.html").read_text(encoding="utf-8")
    assert (
        'id="engine-unchecked"' in page and "Served figures not checked against a reference" in page
    )


def test_parity_catches_the_dropped_lm_head_adapter_and_records_its_figures(
    server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from evalkit.pipeline import run_suite

    out = run_suite(_suite(tmp_path, server, ""), output_dir=tmp_path / "out")
    assert out.exit_code == 3
    warnings = out.results["warnings"]
    assert any(w.startswith("adapter 'head-lora' trains lm_head") for w in warnings)
    assert any(w.startswith("engine_parity failed for head-lora") for w in warnings)
    results = json.loads((tmp_path / "out" / "results.json").read_text(encoding="utf-8"))
    eng = results["engine"]
    assert eng["reference"] == {"skip": False, "device": "cpu", "dtype": "float32"}
    parity = eng["parity"]
    base, head = parity["variants"]["base"], parity["variants"]["head-lora"]
    assert base["passed"] is True and head["passed"] is False and parity["passed"] is False
    # measured: base ~0.07 nats per token (the server's 4-bit kernels); the dropped adapter
    # is off by what the adapter moves (~0.5)
    assert base["mean_abs"] < 0.1 < 0.3 < head["mean_abs"], (base, head)
    assert base["tokens"] == head["tokens"] > 50
    assert parity["tolerances"] == {
        "texts": 12,
        "max_mean_abs": 0.1,
        "max_abs": 2.0,
        "min_top1": 0.9,
    }
    # the hf reference computes the adapter: it is applied there
    applied = [c for c in results["integrity"] if c["check"] == "adapter_applied"]
    assert applied and applied[0]["passed"]
    page = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    assert "Engine parity against transformers + peft" in page
    assert 'id="engine-unchecked"' not in page
    print(f"parity figures: base {base}, head-lora {head}")
