"""All of a variant's generations in one request: the generation tasks' prompts pooled, and
each reference log-likelihood asked with its prompt.

Why pool: a decode step with few rows is bound by reading the weights, so three tasks of
10 prompts each cost nearly three times one batch of 30 (a smoke run's legal-summary,
knowledge-open and open-ended). An engine that takes a whole list of `Generation`s at once
has a `generate_pooled` method (the hf engine, the result cache); any other is asked task
setting by task setting through its `generate`, and the references through its
`loglikelihood`, exactly as before.
"""

from __future__ import annotations

from typing import Any

from evalkit.engines.base import Generated, Generation, LogLikelihood, Progress


def run_generations(
    engine: Any, requests: list[Generation], progress: Progress | None = None
) -> list[Generated]:
    """Each request's text (and reference log-likelihood), in the order given."""
    if not requests:
        return []
    pooled = getattr(engine, "generate_pooled", None)
    if pooled is not None:
        return list(pooled(requests, progress=progress))
    return generate_in_groups(engine, requests, progress)


def generate_in_groups(
    engine: Any, requests: list[Generation], progress: Progress | None = None
) -> list[Generated]:
    """Through the plain protocol: one `generate` call per (max_new_tokens, stop), then one
    `loglikelihood` call for every reference."""
    groups: dict[tuple[int, tuple[str, ...]], list[int]] = {}
    for i, r in enumerate(requests):
        groups.setdefault((r.max_new_tokens, r.stop), []).append(i)
    texts: list[str] = [""] * len(requests)
    for (max_new, stop), idx in groups.items():
        outs = engine.generate(
            [requests[i].prompt for i in idx], max_new_tokens=max_new, stop=stop, progress=progress
        )
        for i, text in zip(idx, outs, strict=True):
            texts[i] = text
    scored = [i for i, r in enumerate(requests) if r.reference is not None]
    refs: dict[int, LogLikelihood] = {}
    if scored:
        lls = engine.loglikelihood(
            [(requests[i].prompt, requests[i].reference or "") for i in scored]
        )
        refs = dict(zip(scored, lls, strict=True))
    return [Generated(texts[i], refs.get(i)) for i in range(len(requests))]
