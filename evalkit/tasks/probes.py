"""The built-in general probes: what a model should not forget while learning a format.

- knowledge-mc: knowledge questions as multiple choice, scored by the log-likelihood of
  each option's text as the answer.
- knowledge-open: the same questions asked openly and answered by generation, correct when
  an accepted answer appears. Format adapters fail here first: they answer in their
  trained format, which multiple choice by log-likelihood does not see.
- prose-perplexity: perplexity on general English prose, one document per unit.
- open-ended: open requests whose answers are measured for repetition, diversity, length.

The data lives in `evalkit/tasks/probe_data/` (see its README for how it was made).
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from evalkit.metrics import MetricSpec
from evalkit.plan_types import Example, TaskPlan

BUILTIN_PROBES = ("knowledge-mc", "knowledge-open", "prose-perplexity", "open-ended")
DEFAULT_MARGINS = {
    "knowledge-mc": 0.05,
    "knowledge-open": 0.05,
    "prose-perplexity": 0.10,
    "open-ended": 0.05,
}


def probe_data_dir() -> Path:
    return Path(str(resources.files("evalkit.tasks") / "probe_data"))


def _read_jsonl(name: str) -> list[dict]:
    path = probe_data_dir() / name
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def knowledge_mc(margin: float) -> TaskPlan:
    # The options' texts are scored as answers to the question, not option letters: the
    # default model picks letters at chance level (21% of 240 items, "A" 150 times),
    # while the log-likelihood of the answer texts ranks the right one first about half
    # the time.
    examples = [
        Example(
            id=item["id"],
            prompt=f"{item['question']} Answer in a few words.",
            reference=item["choices"][item["answer"]],
            choices=tuple(item["choices"]),
            answer=item["answer"],
            group=item["subject"],
        )
        for item in _read_jsonl("knowledge.jsonl")
    ]
    metric = MetricSpec(
        "accuracy",
        "choice_accuracy",
        "choice",
        "higher",
        margin,
        binary=True,
        label="accuracy (multiple choice)",
    )
    return TaskPlan(
        "knowledge-mc",
        "probe",
        "General knowledge as multiple choice: the option whose text is most likely as the answer",
        examples,
        [metric],
    )


def knowledge_open(margin: float) -> TaskPlan:
    examples = [
        Example(
            id=item["id"],
            prompt=f"{item['question']} Answer in a few words.",
            reference=item["accepted"][0],
            accepted=tuple(item["accepted"]),
            group=item["subject"],
        )
        for item in _read_jsonl("knowledge.jsonl")
    ]
    metric = MetricSpec(
        "accuracy",
        "accepted_match",
        "generate",
        "higher",
        margin,
        binary=True,
        label="accuracy (open answer)",
    )
    return TaskPlan(
        "knowledge-open",
        "probe",
        "The same questions asked openly; correct when an accepted answer appears in the reply",
        examples,
        [metric],
        max_new_tokens=32,
    )


def prose_perplexity(margin: float) -> TaskPlan:
    docs = sorted((probe_data_dir() / "prose").glob("*.txt"))
    examples = [Example(id=p.stem, text=p.read_text(encoding="utf-8").strip()) for p in docs]
    metric = MetricSpec(
        "perplexity",
        "rolling_perplexity",
        "rolling",
        "lower",
        margin,
        transform="exp",
        delta_kind="ratio",
        label="perplexity",
    )
    return TaskPlan(
        "prose-perplexity",
        "probe",
        "Perplexity on general English prose written for evalkit (bootstrap over documents)",
        examples,
        [metric],
    )


def open_ended(margin: float) -> TaskPlan:
    examples = [
        Example(id=item["id"], prompt=item["prompt"]) for item in _read_jsonl("open_prompts.jsonl")
    ]
    metrics = [
        MetricSpec(
            "distinct_2", "distinct_2", "generate", "higher", margin, label="distinct bigrams"
        ),
        MetricSpec(
            "repeated_3gram_rate",
            "repeated_3gram_rate",
            "generate",
            "lower",
            margin,
            label="repeated trigrams",
        ),
        # Length has no better direction; a large drift either way is a change in behaviour.
        MetricSpec(
            "length_words",
            "length_words",
            "generate",
            "none",
            0.5,
            delta_kind="ratio",
            label="answer length (words)",
        ),
    ]
    return TaskPlan(
        "open-ended",
        "probe",
        "Open requests; answers measured for diversity, repetition and length",
        examples,
        metrics,
        max_new_tokens=96,
    )


def builtin_probes(which: list[str], margins: dict[str, float]) -> list[TaskPlan]:
    makers = {
        "knowledge-mc": knowledge_mc,
        "knowledge-open": knowledge_open,
        "prose-perplexity": prose_perplexity,
        "open-ended": open_ended,
    }
    return [makers[name](margins.get(name, DEFAULT_MARGINS[name])) for name in which]
