"""`engine: {kind: vllm}` through the real command line on a machine without vLLM (this
one: no GPU, vLLM not installed, so these run for real): `evalkit validate` and
`evalkit run` stop with exit 2 before any model loads, saying vLLM is missing and how to
install it. With `validate --offline` (a CPU CI job checking suite files) the rest of the
vllm checks still run: merged variants need an exported directory, and the KL probe is
refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from evalkit.cli import app
from evalkit.engines.vllm_engine_setup import vllm_installed
from tests.conftest import REPO, write_jsonl, write_minimal_safetensors

pytestmark = pytest.mark.skipif(vllm_installed(), reason="vLLM is installed here")


def _model_dir(path: Path) -> Path:
    """A directory that passes validate's file checks but is no loadable model: a run that
    tried to load it would fail with exit 3, not 2."""
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    write_minimal_safetensors(path / "model.safetensors")
    return path


def _adapter_dir(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "adapter_config.json").write_text(
        json.dumps({"r": 8, "lora_alpha": 16, "target_modules": ["q_proj", "lm_head"]})
    )
    write_minimal_safetensors(path / "adapter_model.safetensors")
    return path


def _suite(
    d: Path,
    *,
    variants: str = "[base]",
    engine: str = "{kind: vllm}",
    probes: str = "{builtin: false}",
) -> Path:  # noqa: E501
    _model_dir(d / "base")
    _adapter_dir(d / "adapters" / "a")
    write_jsonl(d / "qa.jsonl", [{"id": f"q{i}", "q": f"Say {i}."} for i in range(3)])
    text = f"""name: vllm-cli
base: {{model: base}}
adapters:
  a: {{path: adapters/a}}
variants: {variants}
tasks:
  - name: qa
    data: {{path: qa.jsonl}}
    id: id
    prompt: "{{{{ q }}}}"
    generation: {{max_new_tokens: 2}}
    metrics: [{{type: regex, value: "a"}}]
probes: {probes}
engine: {engine}
"""
    (d / "suite.yaml").write_text(text)
    return d / "suite.yaml"


def _cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, result.output


def test_validate_without_vllm_is_exit_2_with_the_install_hint(tmp_path: Path) -> None:
    suite = _suite(tmp_path)
    # a real process: its stderr is what a user sees, and it must hold no traceback
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-m", "evalkit", "validate", str(suite)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    err = " ".join((proc.stdout + proc.stderr).split())
    assert proc.returncode == 2, err
    assert "Traceback" not in err
    assert f"{suite}:" in err and "vLLM is not installed" in err and "CUDA GPU" in err
    assert "pip install 'evalkit[vllm]'" in err
    line = suite.read_text().splitlines().index("engine: {kind: vllm}") + 1
    assert f"{suite}:{line}:" in err  # the engine: line of the suite


def test_run_without_vllm_is_exit_2_before_any_model_loads(tmp_path: Path) -> None:
    suite = _suite(tmp_path)
    out = tmp_path / "out"
    t0 = time.monotonic()
    code, output = _cli("run", str(suite), "-q", "-o", str(out))
    text = " ".join(output.split())
    assert code == 2, output
    assert "vLLM is not installed" in text and "pip install 'evalkit[vllm]'" in text
    # the base is no loadable model: a load would have been exit 3 "could not load model"
    assert "could not load" not in text and not out.exists()
    assert time.monotonic() - t0 < 30


def test_offline_validate_passes_a_vllm_suite(tmp_path: Path) -> None:
    code, output = _cli("validate", str(_suite(tmp_path)), "--offline")
    assert code == 0 and "ok" in output, output


def test_merged_variant_without_an_exported_directory_is_refused(tmp_path: Path) -> None:
    suite = _suite(tmp_path, variants="[base, a, 'merged:a']")
    code, output = _cli("validate", str(suite), "--offline")
    text = " ".join(output.split())
    assert code == 2, output
    assert "merged:a on engine kind vllm needs the merged model's directory" in text
    assert "evalkit merge adapters/a --out merged/a" in text
    assert "engine: {vllm: {merged: {a: merged/a}}}" in text
    assert f"{suite}:5:" in text  # the variants: line


def test_merged_directory_is_checked_at_validate(tmp_path: Path) -> None:
    engine = "{kind: vllm, vllm: {merged: {a: merged/a}}}"
    suite = _suite(tmp_path, variants="[base, 'merged:a']", engine=engine)
    code, output = _cli("validate", str(suite), "--offline")
    assert code == 2 and "the merged model of a: not a directory" in output, output
    _model_dir(tmp_path / "merged" / "a")
    code, output = _cli("validate", str(suite), "--offline")
    assert code == 0, output


def test_merged_entry_for_an_unknown_adapter_is_refused(tmp_path: Path) -> None:
    suite = _suite(tmp_path, engine="{kind: vllm, vllm: {merged: {b: merged/b}}}")
    code, output = _cli("validate", str(suite), "--offline")
    assert code == 2 and "names 'b', which is not an adapter" in output, output


def test_the_kl_probe_is_refused_on_vllm(tmp_path: Path) -> None:
    suite = _suite(tmp_path, probes="{builtin: [prose-kl]}")
    code, output = _cli("validate", str(suite), "--offline")
    text = " ".join(output.split())
    assert code == 2, output
    assert "cannot compute the KL against the base" in text and "prose-kl" in text


def test_a_bad_vllm_setting_names_its_field(tmp_path: Path) -> None:
    suite = _suite(tmp_path, engine="{kind: vllm, vllm: {tensor_parallel_size: 0}}")
    code, output = _cli("validate", str(suite), "--offline")
    assert code == 2 and "tensor_parallel_size" in output, output


def test_a_misspelt_vllm_key_gets_the_right_spelling(tmp_path: Path) -> None:
    suite = _suite(tmp_path, engine="{kind: vllm, vllm: {tensor_paralel_size: 2}}")
    code, output = _cli("validate", str(suite), "--offline")
    assert code == 2 and "Did you mean 'tensor_parallel_size'?" in output, output
