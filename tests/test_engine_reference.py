"""`engine.reference`: where a served engine's local transformers + peft reference runs, or
`skip`. Refused where it cannot mean anything (exit 2, with its line and a hint, before any
model loads); the reference built where it says. No server is needed for these."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from evalkit.engine_stage import base_fingerprint, reference_request
from evalkit.engines.registry import EngineRequest
from evalkit.suite.engine_config import ReferenceConfig
from tests.conftest import write_jsonl

BASE = "builtin:smollm2-135m-instruct"
QA = """tasks:
  - name: qa
    data: {path: qa.jsonl}
    id: id
    prompt: "{{ q }}"
    reference: "{{ a }}"
    generation: {max_new_tokens: 4}
    metrics:
      - type: contains
        value: "a"
"""
PERPLEXITY = """      - type: reference_perplexity
"""


def _suite(tmp: Path, engine: str, *, perplexity: bool = False) -> Path:
    write_jsonl(tmp / "qa.jsonl", [{"id": "q1", "q": "Capital of France?", "a": "Paris"}])
    path = tmp / "s.yaml"
    path.write_text(
        f"name: s\nbase: {{model: {BASE}}}\n{engine}probes: {{builtin: false}}\n"
        + QA
        + (PERPLEXITY if perplexity else ""),
        encoding="utf-8",
    )
    return path


def _evalkit(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "evalkit", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_skip_on_the_hf_engine_is_refused_at_validate(tmp_path: Path) -> None:
    path = _suite(tmp_path, "engine:\n  kind: hf\n  reference: skip\n")
    proc = _evalkit("validate", "--offline", str(path))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"{path}:5: engine.reference applies to served engines" in proc.stderr
    assert "Remove engine.reference" in proc.stderr  # the hint
    assert "Traceback" not in proc.stderr


def test_skip_with_auto_alignment_and_log_likelihoods_is_refused(tmp_path: Path) -> None:
    served = "engine:\n  kind: openai\n  base_url: http://127.0.0.1:9/v1\n  models: {base: b}\n"
    path = _suite(tmp_path, served + "  reference: skip\n", perplexity=True)
    proc = _evalkit("validate", "--offline", str(path))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"{path}:7: with reference: skip nothing settles" in proc.stderr
    assert "task(s) qa need log-likelihoods" in proc.stderr
    assert "engine.prompt_logprobs: aligned" in proc.stderr
    # generation only: nothing needs the alignment, and the suite is valid
    ok = _suite(tmp_path, served + "  reference: skip\n")
    assert _evalkit("validate", "--offline", str(ok)).returncode == 0
    # named explicitly: valid with log-likelihoods too
    named = _suite(
        tmp_path, served + "  reference: skip\n  prompt_logprobs: shifted\n", perplexity=True
    )
    assert _evalkit("validate", "--offline", str(named)).returncode == 0


@pytest.mark.skipif(
    __import__("torch").cuda.is_available(), reason="needs a machine without a CUDA device"
)
def test_cuda_reference_without_cuda_is_exit_2_before_any_load(tmp_path: Path) -> None:
    served = "engine:\n  kind: openai\n  base_url: http://127.0.0.1:9/v1\n  models: {base: b}\n"
    path = _suite(tmp_path, served + "  reference: {device: cuda}\n")
    proc = _evalkit("run", "-q", str(path), "-o", str(tmp_path / "out"))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"{path}:7: engine.reference.device is cuda, and no CUDA device" in proc.stderr
    assert "engine.reference.device: cpu" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()


def test_reference_request_takes_the_base_settings_unless_told() -> None:
    base = EngineRequest(BASE, {}, dtype="bfloat16", device="auto", batch_size=8)
    assert reference_request(base, ReferenceConfig()) == base
    moved = reference_request(base, ReferenceConfig(device="cuda", dtype="float32"))
    assert (moved.device, moved.dtype, moved.batch_size) == ("cuda", "float32", 8)
    assert ReferenceConfig.model_validate("skip").skip


def test_base_fingerprint_is_the_hf_engines(tiny_model_dir: Path) -> None:
    """With no reference, base_matches compares training cards with this fingerprint: it
    must be the one an hf engine on the same base gives."""
    from evalkit.engines.registry import create_engine

    request = EngineRequest(str(tiny_model_dir), {})
    assert base_fingerprint(request) == create_engine("hf", request).fingerprint("base")
