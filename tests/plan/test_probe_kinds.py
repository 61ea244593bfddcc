"""Probe kinds a suite declares under `probes.extra`: the examples each kind builds from
the user's files, and how they score, on the scripted engine (no model; its table gives
each option's log-likelihood and each answer)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from evalkit.engines.evaluate import evaluate
from evalkit.engines.scripted import ScriptedEngine
from evalkit.plan.build import build_plan
from evalkit.plan.types import Plan
from evalkit.scoring.score import Scores, score
from evalkit.suite.loader import load_suite
from tests.conftest import write_jsonl
from tests.scripted_run import no_progress

HEAD = """\
name: kinds
base: {model: builtin:smollm2-135m-instruct}
probes:
  builtin: false
  extra:
"""

MC_ROWS = [
    # the right option is long: a short wrong one has the higher total log-likelihood,
    # the right one the higher per byte, so acc and acc_norm disagree on this row
    {
        "id": "tides",
        "question": "What mainly causes ocean tides?",
        "choices": ["wind", "the gravitational pull of the Moon"],
        "answer": 1,
        "topic": "science",
    },
    # the answer given as the option's text
    {
        "id": "bread",
        "question": "Which gas makes bread dough rise?",
        "choices": ["oxygen", "carbon dioxide", "helium"],
        "answer": "carbon dioxide",
        "topic": "kitchen",
    },
]
# option text -> (log-likelihood, tokens) after each question, for every variant
MC_LL = {
    "tides": {"wind": [-3.0, 1], "the gravitational pull of the Moon": [-6.0, 6]},
    "bread": {"oxygen": [-4.0, 1], "carbon dioxide": [-3.0, 2], "helium": [-9.0, 2]},
}


def plan_for(tmp_path: Path, entries: str) -> Plan:
    path = tmp_path / "suite.yaml"
    path.write_text(HEAD + entries, encoding="utf-8")
    return build_plan(load_suite(path))


def run(plan: Plan, table: dict[str, Any]) -> Scores:
    engine = ScriptedEngine.for_plan(plan, table)
    return score(plan, evaluate(plan, engine, no_progress))


def test_multiple_choice_acc_and_acc_norm(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "mc.jsonl", MC_ROWS)
    plan = plan_for(
        tmp_path,
        """\
    - name: house-mc
      kind: multiple_choice
      data: {path: mc.jsonl}
      id: id
      group: topic
      prompt: "{{ question }}"
      choices: choices
      answer: answer
      margin: 0.04
      margins: {acc_norm: 0.08}
""",
    )
    (task,) = plan.tasks
    assert (task.name, task.kind) == ("house-mc", "probe")
    assert [(m.name, m.kind, m.margin, m.unit) for m in task.metrics] == [
        ("acc", "choice_accuracy", 0.04, "fraction"),
        ("acc_norm", "choice_accuracy_norm", 0.08, "fraction"),
    ]
    tides, bread = task.examples
    assert tides.prompt == "What mainly causes ocean tides?" and tides.answer == 1
    assert bread.answer == 1 and bread.reference == "carbon dioxide"
    assert bread.choices == ("oxygen", "carbon dioxide", "helium")
    assert (tides.group, bread.group) == ("science", "kitchen")
    scores = run(plan, {"base": {"loglikelihoods": MC_LL}})
    acc = scores[("house-mc", "acc", "base")]
    norm = scores[("house-mc", "acc_norm", "base")]
    # tides: raw picks "wind" (-3 > -6); per byte the right one (-6/34 > -3/4)
    assert acc.values == [0.0, 1.0]
    assert norm.values == [1.0, 1.0]
    assert acc.aggregate(task.metrics[0]) == 0.5 and norm.aggregate(task.metrics[1]) == 1.0


def test_acc_norm_divides_by_utf8_bytes_not_characters(tmp_path: Path) -> None:
    # "crème brûlée" is 12 characters but 15 UTF-8 bytes; "pudding" is 7 of both.
    # Per character: -13.0/12 = -1.083 < -7.5/7 = -1.071; per byte: -13/15 = -0.867 wins.
    write_jsonl(
        tmp_path / "mc.jsonl",
        [
            {
                "question": "Which dessert has a burnt sugar top?",
                "choices": ["pudding", "crème brûlée"],
                "answer": 1,
            }
        ],
    )
    plan = plan_for(
        tmp_path,
        """\
    - name: desserts
      kind: multiple_choice
      data: {path: mc.jsonl}
      prompt: "{{ question }}"
""",
    )
    (ex,) = plan.tasks[0].examples
    assert ex.id == "desserts-00000"
    lls = {ex.id: {"pudding": [-7.5, 2], "crème brûlée": [-13.0, 5]}}
    scores = run(plan, {"base": {"loglikelihoods": lls}})
    assert scores[("desserts", "acc", "base")].values == [0.0]
    assert scores[("desserts", "acc_norm", "base")].values == [1.0]


def test_open_answer_accepted_as_list_or_one_string(tmp_path: Path) -> None:
    write_jsonl(
        tmp_path / "facts.jsonl",
        [
            {"id": "f1", "q": "Which planet is called the red planet?", "ok": ["Mars"]},
            {"id": "f2", "q": "What do bees make from nectar?", "ok": "honey"},
            {"id": "f3", "q": "How many legs does a spider have?", "ok": ["eight", "8"]},
            {"id": "f4", "q": "What is frozen water called?", "ok": "ice"},
        ],
    )
    plan = plan_for(
        tmp_path,
        """\
    - name: house-facts
      kind: open_answer
      data: {path: facts.jsonl}
      id: id
      prompt: "{{ q }} Answer briefly."
      accepted: ok
      generation: {max_new_tokens: 12}
""",
    )
    (task,) = plan.tasks
    assert task.max_new_tokens == 12
    assert [(m.name, m.margin) for m in task.metrics] == [("acc", 0.05), ("open_shift", 0.10)]
    assert [ex.accepted for ex in task.examples] == [
        ("Mars",),
        ("honey",),
        ("eight", "8"),
        ("ice",),
    ]
    assert task.examples[0].prompt == "Which planet is called the red planet? Answer briefly."
    outputs = {
        "f1": "It is MARS.",  # case and punctuation normalised
        "f2": "Bees make honeycomb wax.",  # not the whole word "honey"
        "f3": "A spider has 8 legs.",
        "f4": "Frozen water is called ice",
    }
    scores = run(plan, {"base": {"outputs": outputs}})
    assert scores[("house-facts", "acc", "base")].values == [1.0, 0.0, 1.0, 1.0]


def test_prose_from_a_folder_of_txt_files(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "b-harbour.txt").write_text("The harbour wakes early.\r\nBoats leave at dawn.\n")
    (docs / "a-garden.txt").write_text("  A small garden needs patient hands.  \n")
    (docs / "notes.md").write_text("not a document")
    plan = plan_for(
        tmp_path,
        """\
    - name: house-docs
      kind: prose
      data: {path: docs/}
      margins: {perplexity: 0.15, kl_from_base: 0.25}
""",
    )
    (task,) = plan.tasks
    assert [(ex.id, ex.text) for ex in task.examples] == [
        ("a-garden", "A small garden needs patient hands."),
        ("b-harbour", "The harbour wakes early.\nBoats leave at dawn."),
    ]
    assert [(m.name, m.margin) for m in task.metrics] == [
        ("perplexity", 0.15),
        ("bits_per_byte", 0.03),  # not written: the kind's default
        ("kl_from_base", 0.25),
        ("top1_agreement", 0.17),  # not written: the kind's default
    ]
    rolling = {"a-garden": [14.0, 7, 0.0, 7], "b-harbour": [30.0, 10, 0.0, 10]}
    moved = {"a-garden": [21.0, 7, 1.4, 7], "b-harbour": [30.0, 10, 0.5, 10]}
    plan = Plan(["base", "v"], plan.tasks)
    scores = run(plan, {"base": {"rolling": rolling}, "v": {"rolling": moved}})
    ppl = scores[("house-docs", "perplexity", "base")]
    assert ppl.aggregate(task.metrics[0]) == pytest.approx(math.exp(44.0 / 17))
    # documents are the units: one value per document, weighted by its tokens or bytes
    assert scores[("house-docs", "kl_from_base", "v")].values == [1.4, 0.5]
    bpb = scores[("house-docs", "bits_per_byte", "base")]
    assert bpb.weights == [35.0, 45.0]
    assert bpb.aggregate(task.metrics[1]) == pytest.approx(44.0 / math.log(2) / 80)


def test_prose_from_a_text_column_and_open_ended(tmp_path: Path) -> None:
    write_jsonl(
        tmp_path / "docs.jsonl",
        [
            {"doc": "Support tickets arrive in waves after each release.", "team": "support"},
            {"doc": "The billing page explains every line of an invoice.", "team": "billing"},
        ],
    )
    write_jsonl(
        tmp_path / "asks.jsonl",
        [{"ask": "Describe a quiet library."}, {"ask": "Explain how a kettle works."}],
    )
    plan = plan_for(
        tmp_path,
        """\
    - name: house-docs
      kind: prose
      data: {path: docs.jsonl}
      text: doc
      group: team
    - name: house-open
      kind: open_ended
      data: {path: asks.jsonl}
      prompt: "{{ ask }}"
      margin: 0.2
""",
    )
    docs, asks = plan.tasks
    assert [ex.group for ex in docs.examples] == ["support", "billing"]
    assert docs.examples[0].text == "Support tickets arrive in waves after each release."
    assert docs.needs == {"rolling", "rolling_kl"}
    assert asks.max_new_tokens == 96 and asks.needs == {"generate"}
    assert [(m.name, m.margin) for m in asks.metrics] == [
        ("distinct_2", 0.2),
        ("repeated_3gram_rate", 0.2),
        ("length_words", 0.5),  # a ratio keeps its own margin
        ("cross_answer_overlap", 0.2),
    ]
    outputs = {
        "house-open-00000": "The kettle heats water and the library is quiet",
        "house-open-00001": "A kettle heats water and a kettle heats water",
    }
    rolling = {ex.id: [10.0, 5, 0.0, 5] for ex in docs.examples}
    scores = run(plan, {"base": {"outputs": outputs, "rolling": rolling}})

    def values(metric: str) -> list[float]:
        return scores[("house-open", metric, "base")].values

    assert values("distinct_2") == [1.0, 5 / 8]
    assert values("repeated_3gram_rate") == [0.0, 2 / 7]
    assert values("length_words") == [9.0, 9.0]
    # "kettle heats water" and "heats water and" are in both answers
    assert values("cross_answer_overlap") == [2 / 7, 2 / 5]


def test_limit_cuts_examples_after_every_row_is_checked(tmp_path: Path) -> None:
    rows = [dict(MC_ROWS[0], id=f"q{i}") for i in range(5)]
    rows[4]["answer"] = 7  # past the limit, still an error
    write_jsonl(tmp_path / "mc.jsonl", rows)
    path = tmp_path / "suite.yaml"
    path.write_text(
        HEAD
        + """\
    - name: house-mc
      kind: multiple_choice
      data: {path: mc.jsonl}
      id: id
      prompt: "{{ question }}"
""",
        encoding="utf-8",
    )
    from evalkit.errors import SuiteError

    with pytest.raises(SuiteError, match=r"mc.jsonl: (line|row) 5: answer index 7 is out of range"):
        build_plan(load_suite(path), limit=2)
    rows[4]["answer"] = 1
    write_jsonl(tmp_path / "mc.jsonl", rows)
    plan = build_plan(load_suite(path), limit=2)
    assert [ex.id for ex in plan.tasks[0].examples] == ["q0", "q1"]


def test_a_task_shaped_extra_probe_still_works(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "qa.jsonl", [{"q": "Say yes.", "a": "yes"}])
    plan = plan_for(
        tmp_path,
        """\
    - name: say-yes
      data: {path: qa.jsonl}
      prompt: "{{ q }}"
      reference: "{{ a }}"
      metrics: [{type: exact_match, margin: 0.1}]
""",
    )
    (task,) = plan.tasks
    assert task.kind == "probe" and [m.name for m in task.metrics] == ["exact_match"]
    assert task.examples[0].reference == "yes"
