"""The built-in general probes: what a model should not forget while learning a format.

- knowledge-mc: knowledge questions as multiple choice, scored by the log-likelihood of
  each option's text as the answer.
- knowledge-open: the same questions asked openly and answered by generation, correct when
  an accepted answer appears. Format adapters fail here first: they answer in their
  trained format, which multiple choice by log-likelihood does not see.
- prose-perplexity / prose-bpb / prose-kl: perplexity, bits per byte and KL(base || variant)
  per token on general English prose, one document per unit, from the same forward passes.
- open-ended: open requests whose answers are measured for repetition, diversity, length;
  open-overlap: how much each answer shares with the answers to the other prompts.

The data lives in `evalkit/plan/probe_data/` (see its README for how it was made).
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import get_args

from evalkit.plan.types import Example, TaskPlan
from evalkit.scoring.metrics import MetricSpec
from evalkit.suite.config import BuiltinProbe

# The names a suite may list under `probes: builtin:` (one list, in the suite schema).
BUILTIN_PROBES: tuple[str, ...] = get_args(BuiltinProbe)
# The change a reviewer would accept, per probe, in the probe metric's own unit: points of
# accuracy, a perplexity ratio, bits per byte, nats per token, a share of n-grams.
DEFAULT_MARGINS = {
    "knowledge-mc": 0.05,
    "knowledge-open": 0.05,
    "prose-perplexity": 0.10,
    # 0.03 bits per byte is about a 10% perplexity change on the built-in prose
    # (ln(1.1) nats/token × 0.211 tokens/byte / ln 2 = 0.029 with the default model).
    "prose-bpb": 0.03,
    # nats per token; the demo's sensible adapter (legal-r16, perplexity +11%) moves it by
    # 0.18, the over-trained one by 2.9: 0.15 matches the 10% perplexity default.
    "prose-kl": 0.15,
    "open-ended": 0.05,
    "open-overlap": 0.10,
}


def probe_data_dir() -> Path:
    return Path(str(resources.files("evalkit.plan") / "probe_data"))


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


def _prose_metrics(margins: dict[str, float]) -> list[MetricSpec]:
    metrics = []
    if "prose-perplexity" in margins:
        metrics.append(
            MetricSpec(
                "perplexity",
                "rolling_perplexity",
                "rolling",
                "lower",
                margins["prose-perplexity"],
                transform="exp",
                delta_kind="ratio",
                label="perplexity",
            )
        )
    if "prose-bpb" in margins:
        # Bits per UTF-8 byte: the same NLL, but per byte and in bits, so it compares
        # across tokenizers; the margin is an absolute change in bits per byte.
        metrics.append(
            MetricSpec(
                "bits_per_byte",
                "bits_per_byte",
                "rolling",
                "lower",
                margins["prose-bpb"],
                label="bits per byte",
            )
        )
    if "prose-kl" in margins:
        # KL(base || variant) per token: how far the next-token distribution moved on
        # general prose, whichever token is right. The base's own value is 0, so the delta
        # is the KL itself; the margin is in nats per token.
        metrics.append(
            MetricSpec(
                "kl_from_base",
                "kl_from_base",
                "rolling_kl",
                "lower",
                margins["prose-kl"],
                label="KL(base‖variant) per token",
            )
        )
    return metrics


def prose(margins: dict[str, float]) -> TaskPlan:
    """One task over the prose documents for every prose probe chosen, so the rolling NLL,
    bits per byte and KL all come from the same forward passes."""
    docs = sorted((probe_data_dir() / "prose").glob("*.txt"))
    examples = [Example(id=p.stem, text=p.read_text(encoding="utf-8").strip()) for p in docs]
    return TaskPlan(
        "prose-perplexity",
        "probe",
        "General English prose written for evalkit: perplexity, bits per byte and KL from "
        "the base (bootstrap over documents)",
        examples,
        _prose_metrics(margins),
    )


def open_ended(margins: dict[str, float]) -> TaskPlan:
    examples = [
        Example(id=item["id"], prompt=item["prompt"]) for item in _read_jsonl("open_prompts.jsonl")
    ]
    margin = margins.get("open-ended", 0.0)
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
    if "open-ended" not in margins:
        metrics = []
    if "open-overlap" in margins:
        # Collapse across answers: one template for every request shows as answers that
        # share their trigrams with the answers to other prompts.
        metrics.append(
            MetricSpec(
                "cross_answer_overlap",
                "cross_answer_overlap",
                "generate",
                "lower",
                margins["open-overlap"],
                label="trigrams shared with other answers",
            )
        )
    return TaskPlan(
        "open-ended",
        "probe",
        "Open requests; answers measured for diversity, repetition and length",
        examples,
        metrics,
        max_new_tokens=96,
    )


def builtin_probes(which: list[str], margins: dict[str, float]) -> list[TaskPlan]:
    """The probe tasks for the chosen probe names. Probes that read the same data share a
    task (prose-*: one prose task; open-*: one open-prompt task), in BUILTIN_PROBES order."""
    chosen = {name: margins.get(name, DEFAULT_MARGINS[name]) for name in which}
    tasks = []
    if "knowledge-mc" in chosen:
        tasks.append(knowledge_mc(chosen["knowledge-mc"]))
    if "knowledge-open" in chosen:
        tasks.append(knowledge_open(chosen["knowledge-open"]))
    prose_margins = {k: v for k, v in chosen.items() if k.startswith("prose-")}
    if prose_margins:
        tasks.append(prose(prose_margins))
    open_margins = {k: v for k, v in chosen.items() if k.startswith("open-")}
    if open_margins:
        tasks.append(open_ended(open_margins))
    return tasks
