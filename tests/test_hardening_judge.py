"""The judge boundary, in whole runs (tiny random model, the loopback test server):
a server that echoes the API key in 401 bodies, 500 bodies and a reply leaves the key
nowhere (outputs, cache, logs, stderr); a judge that fails on every call ends with exit 3
and the reason, not 0; retries are counted by reason in results.json."""

from __future__ import annotations

import json
import logging
import re
import secrets
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from evalkit.cli import app
from evalkit.pipeline import run_suite
from evalkit.redact import redact, register_secret
from evalkit.scoring.judges.local_server import free_port
from tests.conftest import write_jsonl
from tests.judge_server import JudgeServer, ServerState

REPO = Path(__file__).resolve().parents[1]


def _suite(d: Path, model: Path, url: str, retries: int = 1) -> Path:
    text = f"""
name: tiny-secret
base:
  model: {model}
variants: [base]
tasks:
  - name: qa
    data: {{path: qa.jsonl}}
    id: id
    prompt: "{{{{ q }}}}"
    generation: {{max_new_tokens: 2}}
    metrics:
      - type: contains
        value: "4"
    judges:
      - {{spec: {REPO / "judges" / "general.yaml"}}}
probes: {{builtin: false}}
judge:
  provider: {{base_url: "{url}", model: fake, max_retries: {retries}, timeout_s: 5}}
gates:
  - {{variant: base, task: qa, metric: "judge:general", require: max_judge_error_rate,
      value: 1.0}}
settings: {{bootstrap_resamples: 200}}
"""
    (d / "suite.yaml").write_text(text, encoding="utf-8")
    write_jsonl(d / "qa.jsonl", [{"id": f"q{i}", "q": f"What is {i} plus {i}?"} for i in range(4)])
    return d / "suite.yaml"


@pytest.fixture()
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("EVALKIT_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path


def _all_bytes(root: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file())


def test_an_echoed_key_is_nowhere(
    workdir: Path,
    tiny_model_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    key = "sk-evalkit-" + secrets.token_hex(16)
    monkeypatch.setenv("OPENAI_API_KEY", key)

    def plan(n: int, body: dict[str, Any]) -> str:
        user = body["messages"][-1]["content"]
        case = re.search(r"What is (\d) plus", user)
        return {"0": "401-echo", "1": "500-echo", "2": "reply-echo"}.get(
            case.group(1) if case else "", "ok"
        )

    state = ServerState(plan=plan)
    caplog.set_level(logging.DEBUG)
    with JudgeServer(state) as srv:
        out = run_suite(_suite(workdir, tiny_model_dir, srv.base_url), output_dir=workdir / "out")
    assert len(state.requests) >= 5  # the echoing cases were asked, the 500 one retried
    res = json.loads((workdir / "out" / "results.json").read_text())
    judge = res["judges"][0]
    # the failures are counted with their reasons, and the 500 was retried once
    assert judge["errors_by_reason"].keys() >= {"server error (500)"}
    assert any(k.startswith("http 401") for k in judge["errors_by_reason"])
    assert judge["retries_by_reason"] == {"http 500": 1}
    # the redaction really happened (the echo reached evalkit), and the key is nowhere
    text = (workdir / "out" / "results.json").read_text()
    assert "[redacted]" in text
    stream = capfd.readouterr()
    for blob in (
        _all_bytes(workdir / "out"),
        _all_bytes(workdir / "cache"),
        (stream.out + stream.err).encode(),
        caplog.text.encode(),
    ):
        assert key.encode() not in blob
    assert out.exit_code == 0


def test_a_judge_that_is_never_reachable_is_exit_3(workdir: Path, tiny_model_dir: Path) -> None:
    closed = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens: connection refused
    suite = _suite(workdir, tiny_model_dir, closed, retries=0)
    result = CliRunner().invoke(app, ["run", str(suite), "-o", str(workdir / "out"), "-q"])
    assert result.exit_code == 3, result.output
    assert "failed on all 4 calls" in result.output and "connection failed" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert not (workdir / "out").exists()  # nothing half-written


def test_an_auth_error_on_every_call_is_exit_3(
    workdir: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = "sk-evalkit-" + secrets.token_hex(16)
    monkeypatch.setenv("OPENAI_API_KEY", key)
    with JudgeServer(ServerState(plan=lambda n, body: "401-echo")) as srv:
        suite = _suite(workdir, tiny_model_dir, srv.base_url)
        result = CliRunner().invoke(app, ["run", str(suite), "-o", str(workdir / "out"), "-q"])
    assert result.exit_code == 3 and "http 401" in result.output
    assert key not in result.output


def test_redact_masks_registered_keys_url_credentials_and_bearer_tokens() -> None:
    register_secret("s3cr3t-value-123")
    text = (
        "401 for s3cr3t-value-123 at https://bob:hunter22@api.example.com/v1?api_key=abc123 "
        "Authorization: Bearer abcdefghijkl and sk-" + "x" * 30
    )
    out = redact(text)
    for leaked in ("s3cr3t-value-123", "hunter22", "abc123", "abcdefghijkl", "sk-xxxx"):
        assert leaked not in out
    assert out.count("[redacted]") == 5 and "api.example.com" in out
