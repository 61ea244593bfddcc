"""The built-in probes are declared probe files built by the probe kinds; their tasks are
the ones earlier runs (and their cached results) know, to the character."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import yaml

from evalkit.plan import probes
from evalkit.plan.build import build_plan
from evalkit.plan.types import TaskPlan
from evalkit.suite.loader import load_suite

EXAMPLE_FIELDS = ("id", "prompt", "reference", "choices", "answer", "accepted", "text", "group")


def digest(tasks: list[TaskPlan]) -> str:
    """Every field of the tasks that a run reads, as one hash (named fields, so a field
    added to Example later does not change it)."""
    canon = [
        {
            "task": [t.name, t.kind, t.description, t.system, t.max_new_tokens, list(t.stop)],
            "metrics": [dataclasses.asdict(m) for m in t.metrics],
            "examples": [[getattr(e, f) for f in EXAMPLE_FIELDS] for e in t.examples],
        }
        for t in tasks
    ]
    return hashlib.sha256(json.dumps(canon, sort_keys=True).encode()).hexdigest()


# Metrics added to the built-in probes since the digests were taken: format drift vs
# knowledge loss (evalkit.decide.diagnosis). The digests hold everything else.
ADDED = ("open_shift", "top1_agreement")


def without_added(tasks: list[TaskPlan]) -> list[TaskPlan]:
    return [
        dataclasses.replace(t, metrics=[m for m in t.metrics if m.kind not in ADDED]) for t in tasks
    ]


def added(tasks: list[TaskPlan]) -> list[tuple[str, str, float]]:
    return [(t.name, m.name, m.margin) for t in tasks for m in t.metrics if m.kind in ADDED]


def test_builtin_probe_tasks_are_unchanged() -> None:
    # Taken from the hand-written built-in probes (evalkit/plan/probes/general.py before
    # they were declared files), with the same digest function.
    every = probes.builtin_probes(list(probes.BUILTIN_PROBES), {})
    assert digest(without_added(every)) == (
        "949d98132ed5e71df58e5402438c87fa2aee444aee634325e9b5a4aca69b54cd"
    )
    assert added(every) == [
        ("knowledge-open", "open_shift", 0.10),
        ("prose-perplexity", "top1_agreement", 0.17),
    ]
    chosen = probes.builtin_probes(
        ["knowledge-open", "prose-kl", "open-overlap"], {"prose-kl": 0.3, "open-overlap": 0.2}
    )
    assert digest(without_added(chosen)) == (
        "18a6ee20a747c893e3aeda331f9d89fdb516b19c3a556c580d177d089f7e0ca6"
    )
    # top-1 agreement takes the KL probe's margin in its own terms: 0.44 sqrt(0.3)
    assert added(chosen)[1] == ("prose-perplexity", "top1_agreement", 0.241)
    # and in words, so a failure says where
    assert [(t.name, len(t.examples), t.max_new_tokens) for t in every] == [
        ("knowledge-mc", 240, 128),
        ("knowledge-open", 240, 32),
        ("prose-perplexity", 24, 128),
        ("open-ended", 40, 96),
    ]
    mc = every[0].examples[0]
    assert (mc.id, mc.prompt, mc.choices, mc.answer, mc.reference, mc.group) == (
        "geo-001",
        "What is the capital of France? Answer in a few words.",
        ("Berlin", "Paris", "Madrid", "Rome"),
        1,
        "Paris",
        "geography",
    )


def test_each_builtin_file_is_a_suite_entry(tmp_path: Path) -> None:
    """A built-in probe file pasted under a suite's `probes.extra` (its data path made
    absolute) gives the built-in group's examples: one implementation of each kind."""
    data_dir = probes.probe_data_dir()
    files = sorted(data_dir.glob("*.yaml"))
    assert [f.stem for f in files] == [
        "knowledge-mc",
        "knowledge-open",
        "open-ended",
        "prose-perplexity",
    ]
    entries = []
    for f in files:
        entry = yaml.safe_load(f.read_text())
        entry["data"]["path"] = str(data_dir / entry["data"]["path"])
        entries.append(entry)
    suite = {
        "name": "copied",
        "base": {"model": "builtin:smollm2-135m-instruct"},
        "probes": {"builtin": False, "extra": entries},
    }
    (tmp_path / "suite.yaml").write_text(yaml.safe_dump(suite))
    plan = build_plan(load_suite(tmp_path / "suite.yaml"))
    builtin = {t.name: t for t in probes.builtin_probes(list(probes.BUILTIN_PROBES), {})}
    for task in plan.tasks:
        assert task.examples == builtin[task.name].examples
        assert task.max_new_tokens == builtin[task.name].max_new_tokens
    # a user's multiple-choice entry measures acc and acc_norm; the built-in probe keeps
    # its one metric, named as before
    mc = next(t for t in plan.tasks if t.name == "knowledge-mc")
    assert [m.name for m in mc.metrics] == ["acc", "acc_norm"]
    assert [m.name for m in builtin["knowledge-mc"].metrics] == ["accuracy"]
