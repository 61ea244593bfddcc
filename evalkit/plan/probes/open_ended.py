"""`kind: open_ended`: open requests whose answers are measured, not marked: distinct
bigrams, repeated trigrams, length in words, and the share of trigrams an answer shares
with the answers to the other prompts (one template for every request)."""

from __future__ import annotations

from evalkit.plan.probes.kinds import (
    KindMetric,
    ProbeKind,
    ProbeSource,
    example_ids,
    groups,
    read_rows,
    register_kind,
    render,
)
from evalkit.plan.types import Example
from evalkit.suite.probes_config import OpenEndedProbe
from evalkit.suite.yaml_lines import Loc


def _examples(cfg: OpenEndedProbe, source: ProbeSource, loc: Loc) -> list[Example]:
    path, rows = read_rows(cfg, source, loc)
    ids = example_ids(cfg, source, loc, path, rows)
    subjects = groups(cfg, source, loc, path, rows)
    prompts = render(cfg, source, loc, "prompt", path, rows)
    return [Example(id=ids[i], prompt=prompts[i], group=subjects[i]) for i in range(len(rows))]


OPEN_ENDED = register_kind(
    ProbeKind(
        "open_ended",
        (
            KindMetric("distinct_2", "distinct_2", 0.05),
            KindMetric("repeated_3gram_rate", "repeated_3gram_rate", 0.05),
            # a ratio of lengths, not a share: its own margin
            KindMetric("length_words", "length_words", 0.5),
            KindMetric("cross_answer_overlap", "cross_answer_overlap", 0.10),
        ),
        _examples,
    )
)
