"""Greedy generation that stops when it is done.

`transformers`' `generate` keeps every row of a batch in the forward until the last row
finishes: a row that met its end-of-turn after 12 tokens is padded along for the other
rows' 80. Here a finished row (an end-of-sequence token, a stop string in its text, or
`max_new_tokens`) stops writing, and the finished rows leave the batch (the input, the
attention mask and the KV cache) once they are a quarter of it: dropping rows copies the
whole cache, so doing it at every step a row finishes cost more than it saved (the demo's
352 generation prompts on the base in one batch: 97.9 s against 65.4 s). Prompts are
sorted by length so a batch shares little padding, the prompt runs once (the lm head on
its last position only, as `generate` does) and every later step feeds one token per row
on top of the cache.

Greedy and with the same masks and positions as `generate`, so the text is the same; the
cut at the first stop string happens afterwards in the engine, exactly as before (a row
stops at the step its text first contains a stop string, and nothing after that point
survives the cut).

The KV cache is allocated once per batch for the prompt and every new token
(`hf_kv.preallocated_cache`). Rows of different limits and stop strings (several tasks'
prompts) share a batch: each task's rows run their prompts together (no padding to another
task's prompts), and the batch then decodes as one, since a decode step with few rows
costs nearly what one with many does. A row may carry a reference whose log-likelihood is
read in its prompt's forward pass (`GenRow`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from evalkit.engines.hf_contexts import Reads, logits_at, summed_logprobs
from evalkit.engines.hf_kv import (
    TOKEN_BUDGET,
    budget_batches,
    preallocated_cache,
    run_shared_start,
    shared_start,
)
from evalkit.profile import count

Progress = Callable[[int], None]
# The padded positions of one prefill whose rows carry references: scoring's budget.
REFERENCE_BUDGET = TOKEN_BUDGET
# Called once per batch after the prompt's forward, with its last-position logits (rows ×
# vocab) and the prompt index of each row; returns the tokens (rows × k, k the same for
# every call) each row is given before it decodes on its own. The judge uses it to pick a
# verdict among allowed tokens and to write the JSON around it.
Steer = Callable[[Any, list[int]], Any]


def eos_ids(model: Any) -> set[int]:
    """The token ids that end a sequence for `generate` (its generation config's)."""
    eos = getattr(model.generation_config, "eos_token_id", None)
    if eos is None:
        return set()
    return {int(e) for e in (eos if isinstance(eos, (list, tuple)) else [eos])}


@dataclass(frozen=True)
class GenRow:
    """One prompt to generate from: its token ids, its own limit and stop strings, and
    optionally a reference whose log-likelihood after the prompt is read in the prompt's
    forward pass."""

    prompt: list[int]
    max_new_tokens: int
    stops: tuple[str, ...] = ()
    reference: list[int] | None = None


@dataclass
class RowResult:
    """The generated token ids (the end-of-sequence token, when one ended the row,
    included) and the reference's summed log-probability (None without a reference)."""

    tokens: list[int]
    reference_logprob: float | None = None


def generate_greedy(
    model: Any,
    tokenizer: Any,
    encoded: Sequence[list[int]],
    *,
    max_new_tokens: int,
    batch_size: int,
    stops: Sequence[str] = (),
    device: Any = "cpu",
    progress: Progress | None = None,
    steer: Steer | None = None,
    steer_len: int = 0,
) -> list[list[int]]:
    """The generated token ids of each prompt, all with one limit and one set of stop
    strings (see `generate_rows`)."""
    rows = [GenRow(p, max_new_tokens, tuple(stops)) for p in encoded]
    done = generate_rows(
        model,
        tokenizer,
        rows,
        batch_size=batch_size,
        device=device,
        progress=progress,
        steer=steer,
        steer_len=steer_len,
    )
    return [r.tokens for r in done]


def generate_rows(
    model: Any,
    tokenizer: Any,
    rows: Sequence[GenRow],
    *,
    batch_size: int,
    device: Any = "cpu",
    progress: Progress | None = None,
    steer: Steer | None = None,
    steer_len: int = 0,
    on_batch: Callable[[list[int], list[RowResult]], None] | None = None,
) -> list[RowResult]:
    """Each row's generation (in the order given), rows of any limits and stops sharing
    batches. With `steer`, the `steer_len` tokens it gives each row come first and are not
    part of what is returned. `on_batch` gets each finished batch's row indices and
    results (a caller keeps them before the next batch runs)."""
    order = sorted(range(len(rows)), key=lambda i: len(rows[i].prompt))
    out: list[RowResult] = [RowResult([]) for _ in rows]
    ends = eos_ids(model)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        done = _generate_batch(
            model,
            tokenizer,
            [rows[i] for i in idx],
            ends=ends,
            device=device,
            steer=_rows_as_prompts(steer, idx) if steer else None,
            steer_len=steer_len,
        )
        for i, result in zip(idx, done, strict=True):
            out[i] = result
        if on_batch:
            on_batch(idx, done)
        if progress:
            progress(len(idx))
    return out


def _rows_as_prompts(steer: Steer, idx: list[int]) -> Steer:
    """`steer` as a batch calls it: its rows named by their index in the whole list."""
    return lambda logits, rows: steer(logits, [idx[r] for r in rows])


def _generate_batch(
    model: Any,
    tokenizer: Any,
    rows: list[GenRow],
    *,
    ends: set[int],
    device: Any,
    steer: Steer | None = None,
    steer_len: int = 0,
) -> list[RowResult]:
    import torch

    results = [RowResult([]) for _ in rows]
    out = [r.tokens for r in results]
    limits = [r.max_new_tokens for r in rows]
    longest = max(limits, default=0)
    scoring = any(r.reference is not None for r in rows)
    if not rows or (longest <= 0 and steer is None and not scoring):
        return results
    stops = [[s for s in r.stops if s] for r in rows]
    # The rows of one task (one limit, one set of stops, references or none) prefill
    # together, and then every row of the batch decodes together: a decode step with few
    # rows costs nearly what one with many does, while a prompt padded to another task's
    # length and references costs its padding.
    groups: dict[tuple[int, tuple[str, ...], bool], list[int]] = {}
    for i, r in enumerate(rows):
        groups.setdefault((r.max_new_tokens, r.stops, r.reference is not None), []).append(i)
    room = steer_len + max(longest, 0)  # the cache's positions after the prompts
    keep_last = _keep_last(model)
    with torch.inference_mode():
        # prefills that are joined decode in the joined cache: theirs need no room after
        chunks = [c for g in groups.values() for c in _prefill_chunks(rows, g)]
        own = room if len(chunks) == 1 else 0
        parts = [
            _prefill(model, tokenizer, [rows[i] for i in c], [results[i] for i in c], device, own)
            for c in chunks
        ]
        state = parts[0] if len(parts) == 1 else _join(parts, room)
        cache, mask, next_pos, logits = state.cache, state.mask, state.next_pos, state.logits
        alive = [i for c in chunks for i in c]  # the row index of each batch row
        if steer is not None:
            forced = steer(logits, list(alive)).to(mask.device)
            if longest <= 0:
                return results
            if forced.shape[1]:
                logits, mask, next_pos = _feed(model, forced, mask, next_pos, cache, keep_last)
        # A finished row stays in the batch (its tokens ignored) until finished rows are
        # a quarter of it: dropping rows copies the whole KV cache (128 rows of 240
        # positions are 1.4 GB with the default model), more than a few dead rows cost.
        live = [limits[i] > 0 for i in alive]  # a row that only read its reference is done
        step = 0
        while any(live):
            tokens = logits.float().argmax(-1)
            step += 1
            wrote = 0
            for row, i in enumerate(alive):
                if not live[row]:
                    continue
                tok = int(tokens[row])
                out[i].append(tok)
                wrote += 1
                if step >= limits[i] or is_finished(out[i], tok, ends, stops[i], tokenizer):
                    live[row] = False
            count("generated_tokens", wrote)
            if not any(live):
                break
            if 4 * live.count(False) >= len(alive):  # finished rows leave the batch
                keep = [row for row, on in enumerate(live) if on]
                sel = torch.tensor(keep, device=mask.device)
                cache.batch_select_indices(sel)
                mask, next_pos, tokens = mask[sel], next_pos[sel], tokens[sel]
                alive, live = [alive[r] for r in keep], [True] * len(keep)
            mask = torch.cat([mask, mask.new_ones((len(alive), 1))], dim=1)
            count("forward_tokens", len(alive))
            logits = model(
                input_ids=tokens.unsqueeze(1),
                attention_mask=mask,
                position_ids=next_pos,
                cache=cache,
                use_cache=True,
            ).logits[:, -1]
            next_pos = next_pos + 1
    return results


def _keep_last(model: Any) -> dict[str, int]:
    """The lm head on a prompt's last position only, where the model allows it (`generate`
    does the same): 49k logits for every prompt token would cost more than the rest of the
    prefill."""
    supports = getattr(model, "_supports_logits_to_keep", lambda: False)
    return {"logits_to_keep": 1} if supports() else {}


def _prefill_chunks(rows: list[GenRow], group: list[int]) -> list[list[int]]:
    """A group's rows as they prefill: all at once, or, where they carry references, in
    chunks of at most REFERENCE_BUDGET padded positions (each read position's logits
    over the whole vocabulary are held at once)."""
    if all(rows[i].reference is None for i in group):
        return [group]
    widths = [len(r.prompt) + len(r.reference or []) for r in rows]
    return list(budget_batches(group, widths, REFERENCE_BUDGET))


@dataclass
class _Prefilled:
    """Rows after their prompts' forward pass: the cache holding the prompts, the
    attention mask over it, each row's next position and its last position's logits."""

    cache: Any
    mask: Any  # rows × cached positions
    next_pos: Any  # rows × 1
    logits: Any  # rows × vocab


def _prefill(
    model: Any,
    tokenizer: Any,
    rows: list[GenRow],
    results: list[RowResult],
    device: Any,
    room: int,
) -> _Prefilled:
    """The prompts' forward pass, left-padded, with each reference's score written into
    `results`; the cache keeps `room` positions free after the prompts."""
    import torch

    n = len(rows)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    prompts = [r.prompt for r in rows]
    # The prompts' common start (the chat template's system turn, a task's instruction, a
    # judge's rubric) runs once, for one row, and every row continues from its keys and
    # values; at least one token of each prompt stays in the rows for the last logits.
    shared = shared_start(prompts)
    rest = [p[shared:] for p in prompts]
    width = max(len(p) for p in rest)
    # A reference follows its prompt in the same row (without its last token, which
    # predicts nothing), right-padded; once read, its keys and values are cut from the
    # cache, and the row generates on from the prompt's end.
    fed = [(r.reference or [])[:-1] for r in rows]
    extra = max(len(f) for f in fed)
    ids = torch.full((n, width + extra), pad, dtype=torch.long)
    mask = torch.zeros((n, width + extra), dtype=torch.long)
    for row, (p, f) in enumerate(zip(rest, fed, strict=True)):
        # left padding: every prompt ends at the same column, where generation continues
        ids[row, width - len(p) : width + len(f)] = torch.tensor(p + f, dtype=torch.long)
        mask[row, width - len(p) : width + len(f)] = 1
    # positions as `generate` makes them: counted over real tokens, padding at 1
    positions = (mask.cumsum(-1) - 1 + shared).masked_fill(mask == 0, 1)
    ids, mask, positions = ids.to(device), mask.to(device), positions.to(device)
    cache = preallocated_cache(shared + width + max(extra, room))
    count("forward_tokens", shared + sum(len(p) for p in rest) + sum(len(f) for f in fed))
    run_shared_start(model, prompts[0][:shared], n, cache)
    if shared:
        mask = torch.cat([mask.new_ones((n, shared)), mask], dim=1)
    inputs = {
        "input_ids": ids,
        "attention_mask": mask,
        "position_ids": positions,
        "cache": cache,
        "use_cache": True,
    }
    if any(r.reference is not None for r in rows):
        logits = _prefill_with_references(model, rows, width, inputs, results)
        if extra:
            cache.crop(-extra)
            mask = mask[:, : shared + width]
    else:
        logits = model(**inputs, **_keep_last(model)).logits[:, -1]
    return _Prefilled(cache, mask, positions[:, width - 1 : width] + 1, logits)


def _join(parts: list[_Prefilled], room: int) -> _Prefilled:
    """Prefilled groups as one batch: each group's keys and values right-aligned in a
    cache as long as the longest group's (more left padding, masked, as if the prompts had
    been padded together), rows in the order of the groups."""
    import torch
    from torch.nn.functional import pad

    length = max(p.mask.shape[1] for p in parts)
    cache = preallocated_cache(length + room)
    for layer in range(len(parts[0].cache.layers)):
        keys, values = [], []
        for p in parts:
            held = p.cache.layers[layer]
            front = length - p.mask.shape[1]
            keys.append(pad(held.keys, (0, 0, front, 0)))
            values.append(pad(held.values, (0, 0, front, 0)))
        cache.update(torch.cat(keys), torch.cat(values), layer)
    mask = torch.cat([pad(p.mask, (length - p.mask.shape[1], 0)) for p in parts])
    next_pos = torch.cat([p.next_pos for p in parts])
    return _Prefilled(cache, mask, next_pos, torch.cat([p.logits for p in parts]))


def _prefill_with_references(
    model: Any, rows: list[GenRow], width: int, inputs: dict[str, Any], results: list[RowResult]
) -> Any:
    """The prompt forward of a batch whose rows carry references: each row's summed
    reference log-probability into `results`, and the logits at each prompt's last
    position (rows × vocab) returned, the lm head run on the read positions only."""
    import torch

    at_rows: list[int] = []
    at_pos: list[int] = []
    firsts: list[int] = []  # each row's read at its prompt's last position
    is_ref: list[int] = []  # the reads that predict a reference token
    targets: list[int] = []
    owners: list[int] = []
    lengths: list[int] = []
    for row, r in enumerate(rows):
        ref = r.reference or []
        firsts.append(len(at_rows))
        # the first read predicts the first generated token (and the reference's first)
        for t in range(max(len(ref), 1)):
            if ref:
                is_ref.append(len(at_rows))
            at_rows.append(row)
            at_pos.append(width - 1 + t)
        targets += ref
        owners += [row] * len(ref)
        lengths.append(len(ref))
    got = logits_at(model, torch.tensor(at_rows), torch.tensor(at_pos), **inputs)
    device = got.device
    sums = summed_logprobs(
        Reads(
            got[torch.tensor(is_ref, dtype=torch.long, device=device)],
            torch.tensor(targets, dtype=torch.long, device=device),
            torch.tensor(owners, dtype=torch.long),
            lengths,
        )
    )
    for row, r in enumerate(rows):
        if r.reference is not None:
            results[row].reference_logprob = sums[row]
    return got[torch.tensor(firsts, dtype=torch.long, device=device)]


def _feed(
    model: Any, tokens: Any, mask: Any, next_pos: Any, cache: Any, keep_last: dict[str, int]
) -> tuple[Any, Any, Any]:
    """Run given tokens (rows × k) on top of the cache: the last position's logits, and the
    mask and next positions after them."""
    import torch

    n, k = tokens.shape
    mask = torch.cat([mask, mask.new_ones((n, k))], dim=1)
    count("forward_tokens", n * k)
    logits = model(
        input_ids=tokens,
        attention_mask=mask,
        position_ids=next_pos + torch.arange(k, device=tokens.device),
        cache=cache,
        use_cache=True,
        **keep_last,
    ).logits[:, -1]
    return logits, mask, next_pos + k


def is_finished(
    toks: list[int], tok: int, ends: set[int], stops: list[str], tokenizer: Any
) -> bool:
    """Whether a row that wrote `toks` (the last of them `tok`) stops: an end-of-sequence
    token, or a stop string in its text (the limit is the caller's)."""
    if tok in ends:
        return True
    if not stops:
        return False
    # the whole completion so far: a stop string may span tokens, and a few dozen tokens
    # decode in microseconds next to a forward step
    text = tokenizer.decode(toks, skip_special_tokens=False)
    return any(s in text for s in stops)
