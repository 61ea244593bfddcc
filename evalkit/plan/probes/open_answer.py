"""`kind: open_answer`: a question answered by generation, right when one of the row's
accepted answers appears in the reply as whole words after normalisation (case, accents,
punctuation), as the built-in knowledge-open scores it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from evalkit.plan.probes.kinds import (
    KindMetric,
    ProbeKind,
    ProbeSource,
    Row,
    as_text,
    describe,
    example_ids,
    groups,
    read_rows,
    register_kind,
    render,
    require_column,
    where,
)
from evalkit.plan.types import Example
from evalkit.suite.probes_config import OpenAnswerProbe
from evalkit.suite.yaml_lines import Loc


def _accepted(
    cfg: OpenAnswerProbe, source: ProbeSource, loc: Loc, path: Path, rows: Sequence[Row], i: int
) -> tuple[str, ...]:
    cell = rows[i][cfg.accepted]
    values = cell if isinstance(cell, list | tuple) else [cell]
    texts = [as_text(v) for v in values]
    if not values or any(t is None or not t.strip() for t in texts):
        raise source.error(
            loc + ("accepted",),
            f"{path}: {where(rows, i)}: accepted column '{cfg.accepted}' holds "
            f"{describe(cell)}; it needs one accepted answer (text) or a non-empty list of them",
        )
    return tuple(t for t in texts if t is not None)


def _examples(cfg: OpenAnswerProbe, source: ProbeSource, loc: Loc) -> list[Example]:
    path, rows = read_rows(cfg, source, loc)
    require_column(source, loc, "accepted", cfg.accepted, path, rows)
    ids = example_ids(cfg, source, loc, path, rows)
    subjects = groups(cfg, source, loc, path, rows)
    prompts = render(cfg, source, loc, "prompt", path, rows)
    out = []
    for i in range(len(rows)):
        accepted = _accepted(cfg, source, loc, path, rows, i)
        out.append(
            Example(
                id=ids[i],
                prompt=prompts[i],
                reference=accepted[0],
                accepted=accepted,
                group=subjects[i],
            )
        )
    return out


OPEN_ANSWER = register_kind(
    ProbeKind(
        "open_answer",
        (
            KindMetric("acc", "accepted_match", 0.05),
            # answer tokens outside the base's top-3 (format drift; evalkit.decide.diagnosis)
            KindMetric("open_shift", "open_shift", 0.10),
        ),
        _examples,
    )
)
