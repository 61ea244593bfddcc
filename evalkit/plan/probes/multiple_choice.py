"""`kind: multiple_choice`: a question, a list of options and the right one (its index or
its text). Each option's text is scored by log-likelihood as the answer to the
chat-formatted question (the engine shares the question's KV cache across the options);
`acc` takes the most likely option, `acc_norm` the most likely per UTF-8 byte of the
option's text (lm-evaluation-harness's acc_norm divides by characters: the two agree on
ASCII options)."""

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
from evalkit.suite.probes_config import MultipleChoiceProbe
from evalkit.suite.yaml_lines import Loc


def _examples(cfg: MultipleChoiceProbe, source: ProbeSource, loc: Loc) -> list[Example]:
    path, rows = read_rows(cfg, source, loc)
    require_column(source, loc, "choices", cfg.choices, path, rows)
    require_column(source, loc, "answer", cfg.answer, path, rows)
    ids = example_ids(cfg, source, loc, path, rows)
    subjects = groups(cfg, source, loc, path, rows)
    prompts = render(cfg, source, loc, "prompt", path, rows)
    examples = []
    for i in range(len(rows)):
        options = _options(cfg, source, loc, path, rows, i)
        answer = _answer(cfg, source, loc, path, rows, i, options)
        examples.append(
            Example(
                id=ids[i],
                prompt=prompts[i],
                reference=options[answer],
                choices=options,
                answer=answer,
                group=subjects[i],
            )
        )
    return examples


def _options(
    cfg: MultipleChoiceProbe, source: ProbeSource, loc: Loc, path: Path, rows: Sequence[Row], i: int
) -> tuple[str, ...]:
    cell = rows[i][cfg.choices]
    at = f"{path}: {where(rows, i)}"
    if not isinstance(cell, list | tuple):
        raise source.error(
            loc + ("choices",),
            f"{at}: choices column '{cfg.choices}' holds {describe(cell)}, not a list of options",
            hint='Write the options as a JSON list, e.g. "choices": ["Paris", "Rome"].',
        )
    if len(cell) < 2:
        raise source.error(
            loc + ("choices",), f"{at}: {len(cell)} option(s); a question needs at least two"
        )
    options = []
    for j, value in enumerate(cell):
        text = as_text(value)
        if text is None or not text.strip():
            raise source.error(
                loc + ("choices",),
                f"{at}: option {j} holds {describe(value)}; each option is non-empty text",
            )
        options.append(text)
    return tuple(options)


def _answer(
    cfg: MultipleChoiceProbe,
    source: ProbeSource,
    loc: Loc,
    path: Path,
    rows: Sequence[Row],
    i: int,
    options: tuple[str, ...],
) -> int:
    value = rows[i][cfg.answer]
    at = f"{path}: {where(rows, i)}"
    if isinstance(value, int) and not isinstance(value, bool):
        if not 0 <= value < len(options):
            raise source.error(
                loc + ("answer",),
                f"{at}: answer index {value} is out of range for {len(options)} options "
                f"(0 to {len(options) - 1})",
                hint="An answer is the option's index from 0, or the option's text.",
            )
        return value
    if isinstance(value, str):
        if value in options:
            return options.index(value)
        raise source.error(
            loc + ("answer",),
            f"{at}: answer {value!r} is not one of the options {list(options)!r}",
            hint="An answer is the option's index from 0, or exactly the option's text.",
        )
    raise source.error(
        loc + ("answer",),
        f"{at}: answer column '{cfg.answer}' holds {describe(value)}; it needs the right "
        "option's index (from 0) or its text",
    )


MULTIPLE_CHOICE = register_kind(
    ProbeKind(
        "multiple_choice",
        (
            KindMetric("acc", "choice_accuracy", 0.05),
            KindMetric("acc_norm", "choice_accuracy_norm", 0.05),
        ),
        _examples,
    )
)
