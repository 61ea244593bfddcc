"""What a smoke run (`--limit N`) cuts besides the examples: documents scored whole.

`--limit N` keeps N examples of every task, which makes a knowledge question set of 240
about 4% of itself but leaves ten whole prose documents: on the demo's smoke run the prose
probe was 40% of the engine's forward tokens. So a smoke run also scores each document of
a rolling task (perplexity, bits per byte, KL) on its first SMOKE_DOCUMENT_CHARS
characters, cut at a word boundary; the run's warnings say so. The KL is taken on a
document's first 256 tokens anyway (about 1,100 characters of English prose), so its
positions barely change. A full run scores every document whole.
"""

from __future__ import annotations

import dataclasses

from evalkit.plan.types import TaskPlan

SMOKE_DOCUMENT_CHARS = 1000


def cut_document(text: str, limit: int = SMOKE_DOCUMENT_CHARS) -> str:
    """`text` up to `limit` characters, ending at the last whitespace before the cut (a
    document without one is cut at the limit)."""
    if len(text) <= limit:
        return text
    head = text[:limit]
    space = max(head.rfind(" "), head.rfind("\n"))
    return (head[:space] if space > limit // 2 else head).rstrip()


def smoke_tasks(tasks: list[TaskPlan]) -> tuple[list[TaskPlan], list[str]]:
    """The tasks of a smoke run with their documents cut, and a note per task cut."""
    out, notes = [], []
    for task in tasks:
        if not task.needs & {"rolling", "rolling_kl"}:
            out.append(task)
            continue
        examples = [
            dataclasses.replace(ex, text=cut_document(ex.text)) if ex.text else ex
            for ex in task.examples
        ]
        if any(a.text != b.text for a, b in zip(examples, task.examples, strict=True)):
            notes.append(
                f"smoke run: {task.name} scores each document's first "
                f"{SMOKE_DOCUMENT_CHARS:,} characters"
            )
        out.append(dataclasses.replace(task, examples=examples))
    return out, notes
