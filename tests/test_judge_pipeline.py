"""The judge stage inside a whole run (tiny random model; the judge is the loopback test
server): judge metrics flow into scores, comparisons and gates; every judgment is kept in
results.json with its prompt and raw reply; failed calls are counted, not scored; a judge
that fails its calibration makes its gates inconclusive; cached judgments are reused."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from evalkit.errors import SuiteError
from evalkit.pipeline import run_suite, validate
from tests.conftest import write_jsonl
from tests.judge_server import JudgeServer, ServerState, delimiter_respecting_judge

REPO = Path(__file__).resolve().parents[1]
GOOD = '{"type": "payment", "obligor": "Tenant", "summary": "The Tenant pays."}'


def _responder(body: dict[str, Any]) -> str:
    user = body["messages"][-1]["content"]
    if "ANSWER_A" in user:
        return '{"winner": "A", "reason": "always A"}'  # a position-biased judge
    return delimiter_respecting_judge(body)


def _plan(n: int, body: dict[str, Any]) -> str:
    # every request about example q3 gets a garbage body
    return "garbage" if "What is 3 plus 3?" in body["messages"][-1]["content"] else "ok"


def _suite(d: Path, model: Path, url: str, min_kappa: float) -> Path:
    judges = REPO / "judges"
    text = f"""
name: tiny-judged
base:
  model: {model}
adapters:
  a1: {{path: a1}}
variants: [base, a1]
tasks:
  - name: qa
    data: {{path: qa.jsonl}}
    id: id
    prompt: "{{{{ q }}}}"
    reference: "{{{{ a }}}}"
    generation: {{max_new_tokens: 4}}
    metrics:
      - type: exact_match
    judges:
      - {{spec: {judges / "general.yaml"}, labels: labels.jsonl, margin: 0.5}}
      - {{spec: {judges / "pairwise.yaml"}}}
probes: {{builtin: false}}
judge:
  provider: {{base_url: "{url}", model: fake, max_retries: 0, timeout_s: 5}}
  min_kappa: {min_kappa}
gates:
  - {{variant: a1, task: qa, metric: "judge:general", require: not_regressed}}
  - {{variant: a1, task: qa, metric: "judge:general", require: max_judge_error_rate,
      value: 0.2}}
  - {{variant: a1, task: qa, metric: "judge:pairwise", require: not_regressed}}
settings: {{bootstrap_resamples: 200}}
"""
    path = d / "suite.yaml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture()
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_model_dir: Path) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(2)
    lora = LoraConfig(r=4, lora_alpha=16, init_lora_weights=False, target_modules=["q_proj"])
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir), lora)
    model.save_pretrained(tmp_path / "a1")
    monkeypatch.setenv("EVALKIT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    write_jsonl(
        tmp_path / "qa.jsonl",
        [{"id": f"q{i}", "q": f"What is {i} plus {i}?", "a": str(2 * i)} for i in range(6)],
    )
    # Labels the fake judge disagrees with on purpose (it gives house JSON 5, the rest 2).
    rows = [{"question": "Summarize.", "answer": GOOD, "label": 1} for _ in range(4)]
    rows += [{"question": "Summarize.", "answer": "no idea", "label": 5} for _ in range(4)]
    write_jsonl(tmp_path / "labels.jsonl", rows)
    return tmp_path


def test_judged_run(workdir: Path, tiny_model_dir: Path) -> None:
    state = ServerState(plan=_plan, responder=_responder)
    with JudgeServer(state) as srv:
        suite = _suite(workdir, tiny_model_dir, srv.base_url, min_kappa=0.4)
        out = run_suite(suite, output_dir=workdir / "out")
        n_first = len(state.requests)
        again = run_suite(suite, output_dir=workdir / "out2")
    res = json.loads((workdir / "out" / "results.json").read_text())
    schema = json.loads((REPO / "evalkit/outputs/results.schema.json").read_text())
    jsonschema.validate(res, schema)
    judge, pairwise = res["judges"]
    assert judge["name"] == "general" and judge["kind"] == "rubric"
    assert judge["endpoint"].startswith("127.0.0.1:") and judge["model"] == "fake"
    # 6 examples x 2 variants, example q3 gets a garbage reply: counted, unscored, not 0
    assert judge["n_calls"] == 12 and judge["n_unscored"] == 2
    assert judge["errors_by_reason"] == {"invalid response": 2}
    rel = judge["reliability"]
    assert rel["n"] == 8 and rel["kappa"] < 0.4 and rel["reliable"] is False
    row = next(m for m in res["metrics"] if m["metric"] == "judge:general" and m["variant"] == "a1")
    assert row["n"] == 5 and row["n_unscored"] == 1 and row["value"] == pytest.approx(2.0)
    assert any(c["metric"] == "judge:general" for c in res["comparisons"])
    q3 = next(s for s in res["samples"] if s["id"] == "q3")
    (j,) = [x for x in q3["judgments"]["a1"] if x["judge"] == "general"]
    assert j["score"] is None and j["error"].startswith("invalid response")
    assert q3["scores"]["a1"]["judge:general"] is None
    q1 = next(s for s in res["samples"] if s["id"] == "q1")
    j1 = next(x for x in q1["judgments"]["a1"] if x["judge"] == "general")
    assert j1["score"] == 2.0 and "<<ANSWER " in j1["prompt"] and j1["raw"].startswith("{")
    # pairwise: an always-"A" judge flips with the swap, so every verdict is a tie
    assert pairwise["kind"] == "pairwise" and pairwise["n_calls"] == 12
    assert pairwise["swap_consistency"] == 0.0
    pw = next(x for x in q1["judgments"]["a1"] if x["judge"] == "pairwise")
    assert pw["score"] == 0.5 and "=== swapped ===" in pw["raw"]
    gates = {g["name"]: g for g in res["gates"]}
    judged_gate = gates["a1: qa/judge:general not regressed"]
    assert judged_gate["inconclusive"] is True and "judge unreliable" in judged_gate["detail"]
    rate = gates["a1: qa/judge:general judge error rate <= 0.2"]
    assert rate["passed"] is True and rate["inconclusive"] is False  # written for every gate
    assert gates["a1: qa/judge:pairwise not regressed"]["passed"] is True
    assert out.exit_code == 0
    # the rerun reuses every cached reply; only the two garbage ones are asked again
    # (general: q3 for base and a1; pairwise: q3's two orders)
    assert len(state.requests) - n_first == 4
    assert again.results["judges"][0]["n_cached"] == 10


def test_validate_catches_a_bad_judge_template(workdir: Path, tiny_model_dir: Path) -> None:
    jdir = workdir / "judges"
    jdir.mkdir()
    (jdir / "bad.j2").write_text("Grade {{ answer }} for {{ qq }}\n", encoding="utf-8")
    (jdir / "bad.yaml").write_text("name: bad\nkind: rubric\ntemplate: bad.j2\n")
    suite = _suite(workdir, tiny_model_dir, "http://127.0.0.1:9/v1", 0.4)
    text = suite.read_text().replace(str(REPO / "judges" / "general.yaml"), "judges/bad.yaml")
    suite.write_text(text)
    with pytest.raises(SuiteError) as err:
        validate(suite)
    assert re.search(r"bad\.j2:1: template uses unknown variable 'qq'", str(err.value))
    assert "Variables:" in str(err.value) and "q" in str(err.value)


def test_a_remote_judge_without_a_key_fails_at_validate(
    workdir: Path, tiny_model_dir: Path
) -> None:
    suite = _suite(workdir, tiny_model_dir, "https://judge.example.com/v1", 0.4)
    with pytest.raises(SuiteError) as err:
        validate(suite)
    assert "needs an API key in $OPENAI_API_KEY" in str(err.value)
    assert "suite.yaml:" in str(err.value)


def test_validate_offline_needs_no_key(workdir: Path, tiny_model_dir: Path) -> None:
    from typer.testing import CliRunner

    from evalkit.cli import app

    suite = _suite(workdir, tiny_model_dir, "https://judge.example.com/v1", 0.4)
    _, plan = validate(suite, offline=True)  # no $OPENAI_API_KEY (the fixture removes it)
    (qa,) = [t for t in plan.tasks if t.name == "qa"]
    assert [j.metric for j in qa.judges] == ["judge:general", "judge:pairwise"]
    assert qa.judges[0].labels == workdir / "labels.jsonl"
    assert dict(qa.examples[0].row) == {"id": "q0", "q": "What is 0 plus 0?", "a": "0"}
    runner = CliRunner()
    ok = runner.invoke(app, ["validate", "--offline", str(suite)])
    assert ok.exit_code == 0 and ": ok" in ok.output, ok.output
    online = runner.invoke(app, ["validate", str(suite)])
    assert online.exit_code == 2 and "needs an API key" in online.output


def test_a_missing_key_fails_the_run_before_any_model_loads(
    workdir: Path, tiny_model_dir: Path
) -> None:
    suite = _suite(workdir, tiny_model_dir, "https://judge.example.com/v1", 0.4)
    with pytest.raises(SuiteError, match="needs an API key"):
        run_suite(suite, output_dir=workdir / "out")
    assert not (workdir / "out").exists()


def test_a_smoke_run_calibrates_on_n_of_the_labels(workdir: Path, tiny_model_dir: Path) -> None:
    state = ServerState(plan=_plan, responder=_responder)
    with JudgeServer(state) as srv:
        suite = _suite(workdir, tiny_model_dir, srv.base_url, min_kappa=0.4)
        out = run_suite(suite, output_dir=workdir / "smoke", limit=2)
    res = out.results
    judge = res["judges"][0]
    assert judge["reliability"]["n_labels"] == 2  # --limit 2: 2 of the 8 labels
    assert judge["n_calls"] == 4  # 2 examples x 2 variants
    # 4 judged answers + 2 x 2 pairwise orders + 2 calibration labels, nothing more
    assert len(state.requests) == 4 + 4 + 2
    assert any("calibrated on 2 of its 8 labels" in w for w in res["warnings"])
    stages = {r["stage"]: r for r in res["profile"]}
    assert stages["judge calibration"]["labels"] == 2
    assert stages["judge calibration"]["parent"] == "judge"
    assert stages["judge"]["judge_calls"] == 8
