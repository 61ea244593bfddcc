"""Continuations read after their context, in one forward pass per batch: their
log-likelihoods (multiple choice, reference answers) and the base's top-k over them
(open-shift).

Each context (a question, a prompt) is one row: its tokens, then every continuation's
tokens but the last, one block after another. A 4D attention mask lets each continuation
attend to the context and to its own earlier tokens, never to another continuation, and
each block's positions continue from the context's end. So every continuation is scored
as if it followed its context alone: the same keys, the same positions, the same maths,
with float sums taken in another order.

What this saves, against running the contexts first and then every continuation on a copy
of its context's KV cache (knowledge-mc, 240 questions of four options, batch 64):
- no second pass padded to the batch's longest continuation: that pass ran 6,080
  positions for 1,099 real ones;
- no copy of a context's keys and values per continuation;
- the lm head runs only on the positions whose next-token distributions are read (a
  pre-hook on it gathers them), not on the padding or the rest of the context.

The batch's common start (the chat template's system turn) still runs once, for one row
(`run_shared_start`), and every row continues from its keys and values.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from evalkit.engines.hf_kv import run_shared_start, shared_start
from evalkit.profile import count

# (context, its continuations)
Item = tuple[list[int], list[list[int]]]


@dataclass(frozen=True)
class Reads:
    """The model's next-token logits wherever a continuation token is predicted, in the
    order of the items and their continuations, token by token."""

    logits: Any  # reads × vocab
    targets: Any  # (reads,) the token each read predicts
    owners: Any  # (reads,) the continuation it belongs to, numbered over the whole batch
    lengths: list[int]  # the tokens of each continuation, in that numbering


def read_continuations(model: Any, pad_id: int, items: list[Item]) -> Reads:
    """One forward pass over a batch of contexts, each a row with its continuations after
    it, returning the logits that predict every continuation token."""
    import torch

    ctxs = [ctx for ctx, _ in items]
    # never a context's last token: its logits predict each continuation's first token
    shared = shared_start(ctxs)
    rows: list[list[int]] = []
    blocks: list[list[int]] = []  # per row position: 0 context, m continuation m, -1 pad
    places: list[list[int]] = []
    reads: list[tuple[int, int, int]] = []  # (row, position, target token), in order
    owners: list[int] = []
    lengths: list[int] = []
    for g, (ctx, conts) in enumerate(items):
        rest = ctx[shared:]
        row, block = list(rest), [0] * len(rest)
        place = [shared + j for j in range(len(rest))]
        for m, cont in enumerate(conts, start=1):
            start = len(row)
            for t, tok in enumerate(cont):
                # the first token is predicted at the context's last position, the later
                # ones at the continuation's own previous token
                reads.append((g, len(rest) - 1 if t == 0 else start + t - 1, tok))
                owners.append(len(lengths))
            lengths.append(len(cont))
            fed = cont[:-1]
            row += fed
            block += [m] * len(fed)
            place += [shared + len(rest) + t for t in range(len(fed))]
        rows.append(row)
        blocks.append(block)
        places.append(place)
    width = max(len(r) for r in rows)
    n = len(rows)
    ids = torch.full((n, width), pad_id, dtype=torch.long)
    block_ids = torch.full((n, width), -1, dtype=torch.long)
    positions = torch.zeros((n, width), dtype=torch.long)
    for g, (row, block, place) in enumerate(zip(rows, blocks, places, strict=True)):
        ids[g, : len(row)] = torch.tensor(row)
        block_ids[g, : len(row)] = torch.tensor(block)
        positions[g, : len(row)] = torch.tensor(place)
    count("forward_tokens", shared + sum(len(r) for r in rows))
    device = model.device
    mask = _tree_mask(block_ids, shared, model.get_input_embeddings().weight.dtype)
    with torch.inference_mode():
        start = run_shared_start(model, ctxs[0][:shared], n)
        logits = logits_at(
            model,
            torch.tensor([g for g, _, _ in reads], dtype=torch.long),
            torch.tensor([p for _, p, _ in reads], dtype=torch.long),
            input_ids=ids.to(device),
            attention_mask=mask.to(device),
            position_ids=positions.to(device),
            cache=start,
            use_cache=start is not None,
        )
    targets = torch.tensor([t for _, _, t in reads], dtype=torch.long, device=logits.device)
    return Reads(logits, targets, torch.tensor(owners, dtype=torch.long), lengths)


def score_contexts(model: Any, pad_id: int, items: list[Item]) -> list[list[float]]:
    """The summed log-probability of each continuation given its context, for one batch
    of contexts (each with its continuations, in the order given)."""
    totals = summed_logprobs(read_continuations(model, pad_id, items))
    out: list[list[float]] = []
    k = 0
    for _, conts in items:
        out.append(totals[k : k + len(conts)])
        k += len(conts)
    return out


def summed_logprobs(got: Reads) -> list[float]:
    """Each continuation's summed log-probability of its tokens (an empty one: 0)."""
    import torch

    logp = torch.log_softmax(got.logits.float(), dim=-1)
    values = logp[torch.arange(len(got.targets)), got.targets].cpu().double()
    totals = torch.zeros(len(got.lengths), dtype=torch.float64)
    totals.index_add_(0, got.owners, values)
    return [float(v) for v in totals]


def _tree_mask(block_ids: Any, shared: int, dtype: Any) -> Any:
    """The additive 4D mask (rows × 1 × width × shared + width): every position sees the
    shared start; a position sees an earlier one of its row when that one is real and is
    context or of its own block. Padding queries see the context only (their outputs are
    never read, and a row with no key at all would divide by zero)."""
    import torch

    n, width = block_ids.shape
    keys = block_ids[:, None, :]
    queries = block_ids[:, :, None]
    causal = torch.ones((width, width), dtype=torch.bool).tril()
    seen = causal & (keys >= 0) & ((keys == 0) | (keys == queries))
    full = torch.cat([torch.ones((n, width, shared), dtype=torch.bool), seen], dim=-1)
    mask = torch.zeros(full.shape, dtype=dtype)
    mask.masked_fill_(~full, torch.finfo(dtype).min)
    return mask[:, None]


def logits_at(model: Any, rows: Any, positions: Any, **inputs: Any) -> Any:
    """The logits at the given (row, position) pairs of a forward over `inputs`, one per
    pair (pairs × vocab), with the lm head run on those positions only."""
    rows, positions = rows.to(model.device), positions.to(model.device)
    with _lm_head_on(model, rows, positions) as gathered:
        logits = model(**inputs).logits
    # a model whose logits do not come from its output embeddings' module ran the lm
    # head on every position: read the same positions from the full logits
    return logits[0] if gathered() else logits[rows, positions]


@contextmanager
def _lm_head_on(model: Any, rows: Any, positions: Any) -> Iterator[Any]:
    """While open, the model's lm head (its output embeddings' module) runs on the given
    (row, position) hidden states only, as one sequence (1 × len(rows) × vocab logits).
    Yields a function telling whether the head was reached that way."""
    head = model.get_output_embeddings()
    reached = False

    def gather(module: Any, args: tuple[Any, ...]) -> tuple[Any, ...]:
        nonlocal reached
        hidden = args[0]
        if hidden.dim() != 3:
            return args
        reached = True
        return (hidden[rows, positions][None], *args[1:])

    handle = head.register_forward_pre_hook(gather) if head is not None else None
    try:
        yield lambda: reached
    finally:
        if handle is not None:
            handle.remove()
