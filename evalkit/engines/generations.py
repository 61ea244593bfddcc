"""All of a variant's generations in one request: the generation tasks' prompts pooled, and
each reference log-likelihood asked with its prompt.

Why pool: a decode step with few rows is bound by reading the weights, so three tasks of
10 prompts each cost nearly three times one batch of 30 (a smoke run's legal-summary,
knowledge-open and open-ended). An engine that takes a whole list of `Generation`s at once
has a `generate_pooled` method (the hf engine; the result cache in front of one). Any
other is asked task by task, as before: each task's prompts through its `generate`, then
the task's references through its `loglikelihood`. So a served engine that dies mid-run
has each finished task in the result cache.
"""

from __future__ import annotations

from typing import Any

from evalkit.engines.base import Generated, Generation, LogLikelihood, Progress


def pools(engine: Any) -> bool:
    """Whether `engine` takes all of a variant's generations in one `generate_pooled`."""
    return callable(getattr(engine, "generate_pooled", None)) and bool(
        getattr(engine, "pools_generations", True)
    )


def run_generations(
    engine: Any, by_task: list[list[Generation]], progress: Progress | None = None
) -> list[list[Generated]]:
    """Each task's texts (and reference log-likelihoods), in the order given."""
    if not any(by_task):
        return [[] for _ in by_task]
    if not pools(engine):
        return [generate_in_groups(engine, reqs, progress) for reqs in by_task]
    pooled = list(engine.generate_pooled([g for reqs in by_task for g in reqs], progress=progress))
    outputs = iter(pooled)
    return [[next(outputs) for _ in reqs] for reqs in by_task]


def generate_in_groups(
    engine: Any, requests: list[Generation], progress: Progress | None = None
) -> list[Generated]:
    """Through the plain protocol: per (max_new_tokens, stop), one `generate` call, then
    one `loglikelihood` call for its references."""
    groups: dict[tuple[int, tuple[str, ...]], list[int]] = {}
    for i, r in enumerate(requests):
        groups.setdefault((r.max_new_tokens, r.stop), []).append(i)
    out: dict[int, Generated] = {}
    for (max_new, stop), idx in groups.items():
        texts = engine.generate(
            [requests[i].prompt for i in idx], max_new_tokens=max_new, stop=stop, progress=progress
        )
        scored = [i for i in idx if requests[i].reference is not None]
        refs: dict[int, LogLikelihood] = {}
        if scored:
            pairs = [(requests[i].prompt, requests[i].reference or "") for i in scored]
            refs = dict(zip(scored, engine.loglikelihood(pairs), strict=True))
        for i, text in zip(idx, texts, strict=True):
            out[i] = Generated(text, refs.get(i))
    return [out[i] for i in range(len(requests))]
