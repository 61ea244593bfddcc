"""Each row of the README's exit-code table, pinned through the real command line with a
tiny random model: 0 every gate passed, 1 a gate failed, 2 bad input (before any model
loads), 3 infrastructure (a model that cannot load, a judge that cannot be reached: see
tests/test_hardening_judge.py). Also: user regexes run in linear time."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from evalkit.cli import app
from evalkit.scoring.text import regex_match
from tests.conftest import write_jsonl


def _suite(d: Path, model: Path, threshold: float) -> Path:
    text = f"""
name: exit-codes
base: {{model: {model}}}
variants: [base]
tasks:
  - name: qa
    data: {{path: qa.jsonl}}
    id: id
    prompt: "{{{{ q }}}}"
    generation: {{max_new_tokens: 2}}
    metrics: [{{type: regex, value: "(a+)+$"}}]
probes: {{builtin: false}}
gates:
  - {{variant: base, task: qa, metric: regex, require: at_most, value: {threshold}}}
settings: {{bootstrap_resamples: 200}}
"""
    (d / "suite.yaml").write_text(text)
    write_jsonl(d / "qa.jsonl", [{"id": f"q{i}", "q": f"Say {i}."} for i in range(3)])
    return d / "suite.yaml"


@pytest.fixture()
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("EVALKIT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _run(suite: Path, out: str = "out") -> tuple[int, str]:
    result = CliRunner().invoke(app, ["run", str(suite), "-q", "-o", out])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, result.output


def test_exit_0_and_1_are_the_gates(work: Path, tiny_model_dir: Path) -> None:
    # a random model's 2-token answers do not end in "a"s: regex = 0 on every example
    assert _run(_suite(work, tiny_model_dir, 0.5))[0] == 0
    code, output = _run(_suite(work, tiny_model_dir, -1.0), "out2")
    assert code == 1 and "FAIL" in output


def test_exit_2_is_bad_input_before_any_model_load(work: Path, tiny_model_dir: Path) -> None:
    suite = _suite(work, tiny_model_dir, 0.5)
    suite.write_text(suite.read_text().replace("max_new_tokens: 2", "max_new_tokens: true"))
    t0 = time.monotonic()
    code, output = _run(suite)
    assert code == 2 and "max_new_tokens" in output and time.monotonic() - t0 < 5


def test_exit_3_is_a_model_that_cannot_load(work: Path, tiny_model_dir: Path) -> None:
    broken = work / "no-tokenizer"
    broken.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(tiny_model_dir / name, broken / name)
    code, output = _run(_suite(work, broken, 0.5))
    assert code == 3 and "could not load model" in output


def test_a_backtracking_regex_is_linear_on_a_long_output() -> None:
    t0 = time.monotonic()
    # Python's re takes exponential time here; RE2 is linear in the text
    assert regex_match("a" * 200_000 + "!", r"(a+)+$") == 0.0
    assert regex_match("x" * 50_000, r"(x|xx)+y") == 0.0
    assert time.monotonic() - t0 < 1.0
