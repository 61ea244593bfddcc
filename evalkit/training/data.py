"""Training data: dataset files to (prompt, completion) pairs, and pairs to token ids.

A pair's prompt is a string (wrapped in the chat template exactly as evaluation wraps a
task prompt) or a list of chat messages (a `messages` column: every turn before the last
assistant turn is the prompt). The loss covers only the completion and end-of-turn token.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evalkit.engines.chat import end_of_turn, render_chat
from evalkit.errors import DataError
from evalkit.training.settings import TrainingError

IGNORE_INDEX = -100
Prompt = str | list[dict[str, str]]
Example = tuple[Prompt, str]


@dataclass(frozen=True)
class DataSpec:
    """Where training pairs come from and how to read them.

    By default the columns `prompt` and `completion`; `prompt_template` /
    `completion_template` are Jinja over the row's columns (as suite task prompts are);
    `messages_column` names a chat column (a list of {role, content}) instead.
    """

    path: Path
    prompt_column: str = "prompt"
    completion_column: str = "completion"
    prompt_template: str | None = None
    completion_template: str | None = None
    messages_column: str | None = None
    system: str | None = None


def render_prompt_text(tokenizer: Any, prompt: Prompt) -> str:
    if isinstance(prompt, str):
        return render_chat(tokenizer, prompt)
    if not getattr(tokenizer, "chat_template", None):
        return "\n".join(m["content"] for m in prompt) + "\n"
    return str(tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False))


def encode_example(
    tokenizer: Any, prompt: Prompt, completion: str, max_seq_len: int
) -> tuple[list[int], list[int]]:
    """Token ids and labels of one example; prompt tokens are labelled -100.

    The prompt part and the completion part are tokenized separately (no special tokens
    added) and concatenated, so the boundary is exactly where evaluation's prompt ends.
    Too long examples are cut on the right to `max_seq_len` tokens.
    """
    text = render_prompt_text(tokenizer, prompt)
    prompt_ids = list(tokenizer(text, add_special_tokens=False).input_ids)
    target = completion + end_of_turn(tokenizer)
    completion_ids = list(tokenizer(target, add_special_tokens=False).input_ids)
    ids = (prompt_ids + completion_ids)[:max_seq_len]
    labels = ([IGNORE_INDEX] * len(prompt_ids) + completion_ids)[:max_seq_len]
    return ids, labels


def data_sha256(examples: list[Example]) -> str:
    """A stable digest of the training pairs (recorded in the card, part of cache keys)."""
    blob = json.dumps([list(e) for e in examples], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def check_examples(examples: list[Any]) -> None:
    if not examples:
        raise TrainingError("no training examples: the dataset is empty")
    for i, ex in enumerate(examples):
        ok = (
            isinstance(ex, (tuple, list)) and len(ex) == 2 and isinstance(ex[1], str)
            and isinstance(ex[0], (str, list))
        )  # fmt: skip
        if not ok:
            raise TrainingError(f"example {i} is not a (prompt, completion) pair of strings")


def load_examples(spec: DataSpec) -> list[Example]:
    """Read a .jsonl/.csv/.parquet file (or saved dataset) into training pairs.

    Raises DataError (exit 2) naming the file, the row and the column for a missing or
    empty column, and for an empty dataset.
    """
    from evalkit.plan.datasets import load_rows

    rows = load_rows(spec.path)
    if not rows:
        raise DataError(f"{spec.path}: the dataset has no rows", hint="Add training examples.")
    if spec.messages_column:
        return [_from_messages(spec, i, r) for i, r in enumerate(rows, start=1)]
    env = None
    if spec.prompt_template or spec.completion_template:
        from evalkit.plan.prompts import prompt_environment

        env = prompt_environment()
    out: list[Example] = []
    for i, row in enumerate(rows, start=1):
        prompt = _field(spec, env, i, row, spec.prompt_column, spec.prompt_template)
        completion = _field(spec, env, i, row, spec.completion_column, spec.completion_template)
        if spec.system:
            out.append(([{"role": "system", "content": spec.system},
                         {"role": "user", "content": prompt}], completion))  # fmt: skip
        else:
            out.append((prompt, completion))
    return out


def _field(
    spec: DataSpec, env: Any, row_no: int, row: dict[str, Any], column: str, template: str | None
) -> str:
    where = f"{spec.path}: row {row_no}"
    if template is not None:
        from jinja2 import TemplateError

        try:
            value = str(env.from_string(template).render(**row))
        except TemplateError as exc:
            raise DataError(
                f"{where}: template {template!r} failed: {exc}",
                hint=f"The row's columns are: {', '.join(sorted(row))}.",
            ) from None
    else:
        if column not in row:
            raise DataError(
                f"{where}: no column '{column}'",
                hint=f"Its columns are: {', '.join(sorted(row))}. Map yours with "
                "--prompt-column/--completion-column (or a `messages` column).",
            )
        value = row[column]
        if not isinstance(value, str):
            raise DataError(f"{where}: column '{column}' is {type(value).__name__}, not text")
    if not value.strip():
        what = f"template {template!r}" if template is not None else f"column '{column}'"
        raise DataError(f"{where}: {what} is empty", hint="Remove the row or fill it in.")
    return value


def _from_messages(spec: DataSpec, row_no: int, row: dict[str, Any]) -> Example:
    where = f"{spec.path}: row {row_no}"
    column = spec.messages_column or "messages"
    msgs = row.get(column)
    if msgs is None:
        raise DataError(
            f"{where}: no column '{column}'", hint=f"Columns: {', '.join(sorted(row))}."
        )
    if not isinstance(msgs, list) or not all(
        isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
        for m in msgs
    ):
        raise DataError(f"{where}: '{column}' must be a list of {{role, content}} messages")
    if len(msgs) < 2 or msgs[-1]["role"] != "assistant":
        raise DataError(
            f"{where}: '{column}' must end with an assistant message after at least one other"
        )
    if not msgs[-1]["content"].strip():
        raise DataError(f"{where}: the last assistant message is empty")
    prompt = [{"role": m["role"], "content": m["content"]} for m in msgs[:-1]]
    return prompt, msgs[-1]["content"]


def split_validation(
    examples: list[Example], fraction: float, seed: int
) -> tuple[list[Example], list[Example]]:
    """(train, validation): a seeded random `fraction` held out, at least one example
    when `fraction` > 0, and at least one left for training."""
    if fraction <= 0 or len(examples) < 2:
        return list(examples), []
    import random

    n_val = min(len(examples) - 1, max(1, round(fraction * len(examples))))
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    held = set(order[:n_val])
    train = [e for i, e in enumerate(examples) if i not in held]
    return train, [examples[i] for i in sorted(held)]
