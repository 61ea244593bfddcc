"""A generation checked instead of decoded: a draft (the tokens another variant generated
for the same prompt) read after the prompt in one forward pass, and kept as the row's
greedy generation when the model finds each of its tokens its own most likely next token.

Why: a merged variant is its adapter with the product folded into the weights, so its
greedy text is its adapter's almost always (all 352 generations of each merged variant in
the demo). Decoding costs a forward step per token, each for a whole batch; reading a known
continuation is one prefill-like pass, the rate of scoring rather than of decoding.

Where drafts are mostly wrong (a merge into 4-bit weights may round otherwise than the
adapter's forward), checking them is a pass that saves little: once fewer than half the
rows checked so far are kept, the rest decode without a check.

The check is exact in what it keeps: a row is the draft only when greedy decoding would
have written it, token for token (the argmax at every position, the same end-of-sequence,
stop string or limit at the same step). A row that fails anywhere is decoded as before. The
one difference is the arithmetic around each argmax: a prefill's sums and a decode step's
differ in the last bits, as batch composition already makes them differ, so a near tie may
go the other way in either.

A reference rides along: the row's prompt is followed by its draft and its reference, each
seeing the prompt and only its own earlier tokens (hf_contexts' tree mask), so the
reference's log-likelihood comes from the same pass.
"""

from __future__ import annotations

import hashlib
from array import array
from collections.abc import Callable, Iterator
from typing import Any

from evalkit.engines.hf_contexts import Reads, read_continuations, summed_logprobs
from evalkit.engines.hf_generate import GenRow, RowResult, eos_ids, is_finished
from evalkit.profile import count

# Yields batches (lists of indices) of the given lengths within the engine's token budget.
Batches = Callable[[list[int], list[int]], Iterator[list[int]]]


def verify_drafts(
    model: Any,
    tokenizer: Any,
    rows: list[GenRow],
    drafts: list[list[int]],
    batches: Batches,
    on_batch: Callable[[list[int], list[RowResult]], None] | None = None,
) -> list[RowResult | None]:
    """Each row's result when its draft is what greedy decoding would write (None when
    not): the draft's tokens, and the reference's summed log-probability read in the same
    pass. `on_batch` gets each checked batch's kept rows (indices and results), so a
    caller can keep them before the next batch runs."""
    ends = eos_ids(model)
    out: list[RowResult | None] = [None] * len(rows)
    todo = [i for i, d in enumerate(drafts) if _ends_as_written(rows[i], d, ends, tokenizer)]
    # a row holds its prompt, then the draft and the reference but their last tokens
    lengths = [
        len(r.prompt) + len(d) - 1 + max(len(r.reference or []) - 1, 0)
        for r, d in zip(rows, drafts, strict=True)
    ]
    # each task's rows (one limit, one set of stops, a reference or none) by themselves,
    # as generation prefills them: a batch pads every row to its longest, and a clause
    # with its draft and reference is five times a knowledge question with its answer
    groups: dict[tuple[int, tuple[str, ...], bool], list[int]] = {}
    for i in sorted(todo, key=lambda i: lengths[i]):
        groups.setdefault((rows[i].max_new_tokens, rows[i].stops, _has_ref(rows[i])), []).append(i)
    tried = kept = 0
    for batch in (b for g in groups.values() for b in batches(g, lengths)):
        items = [
            (rows[i].prompt, [drafts[i]] + ([rows[i].reference or []] if _has_ref(rows[i]) else []))
            for i in batch
        ]
        got = read_continuations(model, tokenizer.pad_token_id, items)
        greedy, refs = _split(got, [_has_ref(rows[i]) for i in batch])
        here: list[tuple[int, RowResult]] = []
        for j, i in enumerate(batch):
            if greedy[j]:
                out[i] = result = RowResult(list(drafts[i]), refs[j])
                here.append((i, result))
                count("verified_tokens", len(drafts[i]))
        if on_batch and here:
            on_batch([i for i, _ in here], [r for _, r in here])
        tried += len(batch)
        kept += sum(greedy)
        if 2 * kept < tried:  # drafts this far off cost a pass and save little: decode
            break
    return out


def _has_ref(row: GenRow) -> bool:
    return row.reference is not None


def _ends_as_written(row: GenRow, draft: list[int], ends: set[int], tokenizer: Any) -> bool:
    """Whether decoding that wrote `draft` would stop exactly after its last token: not
    before (by the limit, an end-of-sequence token or a stop string) and not later."""
    if not draft or len(draft) > row.max_new_tokens:
        return False
    stops = [s for s in row.stops if s]
    for j, tok in enumerate(draft):
        limit = j + 1 >= row.max_new_tokens
        if (limit or is_finished(draft[: j + 1], tok, ends, stops, tokenizer)) != (
            j == len(draft) - 1
        ):
            return False
    return True


def _split(got: Reads, has_ref: list[bool]) -> tuple[list[bool], list[float | None]]:
    """From one batch's reads (each row's draft, then its reference where it has one):
    whether every draft token is the argmax where it is predicted, and each reference's
    summed log-probability."""
    import torch

    device = got.logits.device
    hits = (got.logits.argmax(-1) == got.targets).cpu()
    firsts, k = [], 0  # each row's draft, in the reads' numbering of continuations
    for ref in has_ref:
        firsts.append(k)
        k += 2 if ref else 1
    misses = torch.zeros(k, dtype=torch.long).index_add_(0, got.owners, (~hits).long())
    greedy = [int(misses[d]) == 0 for d in firsts]
    scores: list[float | None] = [None] * len(has_ref)
    refs = [d + 1 for d, ref in zip(firsts, has_ref, strict=True) if ref]
    if refs:
        number = torch.full((k,), -1, dtype=torch.long)
        number[refs] = torch.arange(len(refs))
        of = number[got.owners]  # each read's reference (numbered 0..), or -1
        keep = of >= 0
        sums = summed_logprobs(
            Reads(
                got.logits[keep.to(device)],
                got.targets[keep.to(device)],
                of[keep],
                [got.lengths[c] for c in refs],
            )
        )
        rows = [j for j, ref in enumerate(has_ref) if ref]
        for j, value in zip(rows, sums, strict=True):
            scores[j] = value
    return greedy, scores


class Drafts:
    """The tokens each adapter's variants generated, by adapter, prompt, limit and stop
    strings: an adapter's rows are its merged variant's drafts, and the other way round."""

    def __init__(self) -> None:
        self._memo: dict[bytes, list[int]] = {}

    @staticmethod
    def _key(adapter: str, row: GenRow) -> bytes:
        head = repr((adapter, row.max_new_tokens, row.stops)).encode()
        return hashlib.sha256(head + array("q", row.prompt).tobytes()).digest()

    def of(self, adapter: str, rows: list[GenRow]) -> dict[int, list[int]]:
        """The draft of each row that has one, by the row's index."""
        found = ((i, self._memo.get(self._key(adapter, r))) for i, r in enumerate(rows))
        return {i: d for i, d in found if d is not None}

    def keep(self, adapter: str, rows: list[GenRow], tokens: list[list[int]]) -> None:
        for row, toks in zip(rows, tokens, strict=True):
            if row.max_new_tokens > 0:
                self._memo[self._key(adapter, row)] = list(toks)
