"""The built-in general probes.

- knowledge-mc: knowledge questions as multiple choice, scored by the log-likelihood of
  each option's text as the answer.
- knowledge-open: the same questions asked openly and answered by generation, correct when
  an accepted answer appears. Format adapters fail here first: they answer in their
  trained format, which multiple choice by log-likelihood does not see.
- prose-perplexity / prose-bpb / prose-kl: perplexity, bits per byte and KL(base || variant)
  per token on general English prose, one document per unit, from the same forward passes.
- open-ended: open requests whose answers are measured for repetition, diversity, length;
  open-overlap: how much each answer shares with the answers to the other prompts.

Margins are the change a reviewer would accept, in the probe metric's own unit: points of
accuracy, a perplexity ratio, bits per byte, nats per token, a share of n-grams.
"""

from __future__ import annotations

import json

from evalkit.plan.probes.registry import (
    ProbeDef,
    ProbeGroup,
    probe_data_dir,
    register_probe,
    register_probe_group,
)
from evalkit.plan.types import Example
from evalkit.scoring.metrics import metric_def


def _read_jsonl(name: str) -> list[dict]:
    path = probe_data_dir() / name
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def _knowledge_mc() -> list[Example]:
    # The options' texts are scored as answers to the question, not option letters: the
    # default model picks letters at chance level (21% of 240 items, "A" 150 times),
    # while the log-likelihood of the answer texts ranks the right one first about half
    # the time.
    return [
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


def _knowledge_open() -> list[Example]:
    return [
        Example(
            id=item["id"],
            prompt=f"{item['question']} Answer in a few words.",
            reference=item["accepted"][0],
            accepted=tuple(item["accepted"]),
            group=item["subject"],
        )
        for item in _read_jsonl("knowledge.jsonl")
    ]


def _prose() -> list[Example]:
    docs = sorted((probe_data_dir() / "prose").glob("*.txt"))
    return [Example(id=p.stem, text=p.read_text(encoding="utf-8").strip()) for p in docs]


def _open_prompts() -> list[Example]:
    return [
        Example(id=item["id"], prompt=item["prompt"]) for item in _read_jsonl("open_prompts.jsonl")
    ]


register_probe_group(
    ProbeGroup(
        "knowledge-mc",
        "General knowledge as multiple choice: the option whose text is most likely as the answer",
        _knowledge_mc,
    )
)
register_probe_group(
    ProbeGroup(
        "knowledge-open",
        "The same questions asked openly; correct when an accepted answer appears in the reply",
        _knowledge_open,
        max_new_tokens=32,
    )
)
# One task over the prose documents for every prose probe chosen, so the rolling NLL,
# bits per byte and KL all come from the same forward passes.
register_probe_group(
    ProbeGroup(
        "prose-perplexity",
        "General English prose written for evalkit: perplexity, bits per byte and KL from "
        "the base (bootstrap over documents)",
        _prose,
    )
)
register_probe_group(
    ProbeGroup(
        "open-ended",
        "Open requests; answers measured for diversity, repetition and length",
        _open_prompts,
        max_new_tokens=96,
    )
)

register_probe(
    ProbeDef(
        "knowledge-mc",
        "knowledge-mc",
        0.05,
        lambda m: [metric_def("choice_accuracy").spec("accuracy", m)],
    )
)
register_probe(
    ProbeDef(
        "knowledge-open",
        "knowledge-open",
        0.05,
        lambda m: [metric_def("accepted_match").spec("accuracy", m)],
    )
)
register_probe(
    ProbeDef(
        "prose-perplexity",
        "prose-perplexity",
        0.10,
        lambda m: [metric_def("rolling_perplexity").spec("perplexity", m)],
    )
)
# 0.03 bits per byte is about a 10% perplexity change on the built-in prose
# (ln(1.1) nats/token × 0.211 tokens/byte / ln 2 = 0.029 with the default model).
register_probe(
    ProbeDef(
        "prose-bpb",
        "prose-perplexity",
        0.03,
        lambda m: [metric_def("bits_per_byte").spec("bits_per_byte", m)],
    )
)
# nats per token; the demo's sensible adapter (legal-r16, perplexity +11%) moves it by
# 0.18, the over-trained one by 2.9: 0.15 matches the 10% perplexity default.
register_probe(
    ProbeDef(
        "prose-kl",
        "prose-perplexity",
        0.15,
        lambda m: [metric_def("kl_from_base").spec("kl_from_base", m)],
    )
)
register_probe(
    ProbeDef(
        "open-ended",
        "open-ended",
        0.05,
        lambda m: [
            metric_def("distinct_2").spec("distinct_2", m),
            metric_def("repeated_3gram_rate").spec("repeated_3gram_rate", m),
            # length keeps its own margin (a ratio): the probe's margin is a share of n-grams
            metric_def("length_words").spec("length_words"),
        ],
    )
)
# Collapse across answers: one template for every request shows as answers that share
# their trigrams with the answers to other prompts.
register_probe(
    ProbeDef(
        "open-overlap",
        "open-ended",
        0.10,
        lambda m: [metric_def("cross_answer_overlap").spec("cross_answer_overlap", m)],
    )
)
