"""A user's suite with its own multiple-choice, open-answer and prose probes, from files the
test writes, runs end to end on a tiny random model: each probe is a task in results.json
with its metrics, comparisons and records, and the figures follow from the records."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from evalkit.errors import EXIT_OK
from evalkit.pipeline import run_suite
from tests.conftest import write_jsonl
from tests.test_pipeline import make_adapter

MC = [
    {
        "id": "mc-1",
        "question": "Which tool measures air pressure?",
        "options": ["a barometer", "a ruler", "a thermometer used in kitchens"],
        "right": 0,
        "area": "weather",
    },
    {
        "id": "mc-2",
        "question": "What do plants take in to make sugar?",
        "options": ["sand", "carbon dioxide"],
        "right": "carbon dioxide",
        "area": "biology",
    },
    {
        "id": "mc-3",
        "question": "Which is a prime number?",
        "options": ["9", "15", "7"],
        "right": 2,
        "area": "maths",
    },
]
FACTS = [
    {"id": "f-1", "q": "What is the largest ocean?", "ok": ["Pacific", "the Pacific Ocean"]},
    {"id": "f-2", "q": "Which animal is known for its trunk?", "ok": "elephant"},
    {"id": "f-3", "q": "What season follows winter?", "ok": ["spring"]},
]
DOCS = {
    "onboarding": "New staff meet their team on the first morning and get a laptop.",
    "refunds": "A refund is issued to the original card within five working days.",
    "outages": "During an outage the status page is updated every thirty minutes.",
}


@pytest.fixture(scope="module")
def suite_path(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("user-probes")
    write_jsonl(d / "data" / "mc.jsonl", MC)
    write_jsonl(d / "data" / "facts.jsonl", FACTS)
    (d / "docs").mkdir()
    for name, text in DOCS.items():
        (d / "docs" / f"{name}.txt").write_text(text + "\n", encoding="utf-8")
    make_adapter(tiny_model_dir, d / "adapter")
    path = d / "suite.yaml"
    path.write_text(
        f"""\
name: house
base: {{model: {tiny_model_dir}}}
adapters:
  tickets: {{path: adapter}}
variants: [base, tickets]
probes:
  builtin: false
  extra:
    - name: house-mc
      kind: multiple_choice
      data: {{path: data/mc.jsonl}}
      id: id
      group: area
      prompt: "{{{{ question }}}}"
      choices: options
      answer: right
      margin: 0.05
    - name: house-facts
      kind: open_answer
      data: {{path: data/facts.jsonl}}
      id: id
      prompt: "{{{{ q }}}}"
      accepted: ok
      generation: {{max_new_tokens: 6}}
    - name: house-docs
      kind: prose
      data: {{path: docs/}}
      margins: {{perplexity: 0.15, kl_from_base: 0.25}}
gates:
  - {{variant: tickets, require: no_forgetting, severity: warning}}
settings: {{bootstrap_resamples: 200}}
""",
        encoding="utf-8",
    )
    return path


def test_user_probes_run_end_to_end(suite_path: Path) -> None:
    outcome = run_suite(suite_path, output_dir=suite_path.parent / "out")
    assert outcome.exit_code == EXIT_OK
    results = outcome.results
    assert {t["name"]: t["n"] for t in results["tasks"]} == {
        "house-mc": 3,
        "house-facts": 3,
        "house-docs": 3,
    }
    metrics = {(m["task"], m["metric"], m["variant"]): m for m in results["metrics"]}
    names = {(t, m) for t, m, _ in metrics}
    assert names == {
        ("house-mc", "acc"),
        ("house-mc", "acc_norm"),
        ("house-facts", "acc"),
        ("house-facts", "open_shift"),
        ("house-docs", "perplexity"),
        ("house-docs", "bits_per_byte"),
        ("house-docs", "kl_from_base"),
        ("house-docs", "top1_agreement"),
    }
    comparisons = {(c["task"], c["metric"]): c for c in results["comparisons"]}
    assert set(comparisons) == names  # one comparison each against the base
    assert comparisons[("house-docs", "kl_from_base")]["margin"] == 0.25
    assert comparisons[("house-docs", "perplexity")]["margin"] == 0.15
    assert comparisons[("house-mc", "acc_norm")]["margin"] == 0.05

    records = [
        json.loads(line) for line in (outcome.output_dir / "records.jsonl").read_text().splitlines()
    ]
    assert len(records) == 3 * 3 * 2  # examples x probes x variants
    by_key = {(r["task"], r["example_id"], r["variant"]): r for r in records}
    answers = {row["id"]: row for row in MC}
    for variant in ("base", "tickets"):
        acc, acc_norm = [], []
        for ex_id, row in answers.items():
            lps = by_key[("house-mc", ex_id, variant)]["choice_logprobs"]
            assert len(lps) == len(row["options"]) and all(lp < 0 for lp in lps)
            right = row["right"] if isinstance(row["right"], int) else 1
            acc.append(float(max(range(len(lps)), key=lps.__getitem__) == right))
            per_byte = [lp / len(o.encode()) for lp, o in zip(lps, row["options"], strict=True)]
            acc_norm.append(float(max(range(len(lps)), key=per_byte.__getitem__) == right))
        assert metrics[("house-mc", "acc", variant)]["value"] == pytest.approx(sum(acc) / 3)
        assert metrics[("house-mc", "acc_norm", variant)]["value"] == pytest.approx(
            sum(acc_norm) / 3
        )
        docs = [by_key[("house-docs", name, variant)] for name in sorted(DOCS)]
        nll, tokens = sum(r["nll"] for r in docs), sum(r["n_tokens"] for r in docs)
        ppl = metrics[("house-docs", "perplexity", variant)]["value"]
        assert ppl == pytest.approx(math.exp(nll / tokens)) and ppl > 1000  # random: ~uniform
        n_bytes = sum(len(DOCS[name].encode()) for name in DOCS)
        assert metrics[("house-docs", "bits_per_byte", variant)]["value"] == pytest.approx(
            nll / math.log(2) / n_bytes
        )
        for ex_id in ("f-1", "f-2", "f-3"):
            assert isinstance(by_key[("house-facts", ex_id, variant)]["output"], str)
    assert metrics[("house-docs", "kl_from_base", "base")]["value"] == 0.0
    assert metrics[("house-docs", "kl_from_base", "tickets")]["value"] > 0.0
