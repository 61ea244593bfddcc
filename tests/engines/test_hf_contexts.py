"""One forward pass per batch of contexts, each row a context and all its continuations
(evalkit/engines/hf_contexts.py), checked against a plain forward of each context followed
by one continuation, on a tiny random Llama."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from evalkit.engines.hf_contexts import score_contexts


@pytest.fixture(scope="module")
def model(tiny_model_dir: Path) -> Any:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()


def _plain(model: Any, ctx: list[int], cont: list[int]) -> float:
    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([ctx + cont])).logits[0]
    logp = torch.log_softmax(logits.float(), -1)
    return float(sum(logp[len(ctx) - 1 + i, t] for i, t in enumerate(cont)))


SYSTEM = list(range(100, 130))  # a shared start long enough to run once


def test_every_continuation_scores_as_if_it_followed_its_context_alone(model: Any) -> None:
    """Contexts of different lengths (so rows are padded), continuations of 1 to 7 tokens
    and an empty one, several per context: each is a plain forward's value."""
    items = [
        (SYSTEM + [5, 6, 7], [[11], [12, 13, 14], [15, 16, 17, 18, 19, 20, 21]]),
        (SYSTEM + [8], [[22, 23], []]),
        (SYSTEM + [9, 10, 31, 32, 33, 34], [[24, 25, 26, 27]]),
    ]
    got = score_contexts(model, 0, items)
    for (ctx, conts), values in zip(items, got, strict=True):
        assert len(values) == len(conts)
        for cont, value in zip(conts, values, strict=True):
            assert value == pytest.approx(_plain(model, ctx, cont), abs=1e-4)
    assert got[1][1] == 0.0


def test_a_single_context_without_a_shared_start(model: Any) -> None:
    ctx = [3, 4, 5, 6]
    conts = [[7, 8], [9]]
    got = score_contexts(model, 0, [(ctx, conts)])[0]
    assert got == pytest.approx([_plain(model, ctx, c) for c in conts], abs=1e-4)


def test_the_lm_head_runs_on_the_read_positions_only(model: Any) -> None:
    """Only the positions predicting a continuation token reach the lm head: here 1 + 3
    for the first context and 2 for the second, not the 2 × row width of the batch."""
    seen: list[tuple[int, ...]] = []
    handle = model.get_output_embeddings().register_forward_hook(
        lambda m, args, out: seen.append(tuple(out.shape))
    )
    try:
        score_contexts(
            model, 0, [(SYSTEM + [5, 6, 7], [[11], [12, 13, 14]]), (SYSTEM + [8], [[22, 23]])]
        )
    finally:
        handle.remove()
    vocab = model.config.vocab_size
    # the shared start's own forward keeps one position; the batch's keeps the six read
    assert seen[-1] == (1, 6, vocab)


def test_logits_at_reads_the_full_logits_when_the_head_is_not_reached(
    model: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A model whose logits do not come from its output embeddings' module: the same
    positions are read from the full logits."""
    from evalkit.engines.hf_contexts import logits_at

    ids = torch.tensor([[3, 4, 5, 6], [7, 8, 9, 10]])
    rows, positions = torch.tensor([0, 1, 1]), torch.tensor([3, 0, 2])
    with torch.inference_mode():
        full = model(input_ids=ids).logits
        gathered = logits_at(model, rows, positions, input_ids=ids)
        monkeypatch.setattr(model, "get_output_embeddings", lambda: None)
        fallback = logits_at(model, rows, positions, input_ids=ids)
    want = full[rows, positions]
    assert gathered.shape == want.shape == fallback.shape
    assert torch.allclose(gathered, want, atol=1e-5) and torch.equal(fallback, want)
