"""Greedy generation that stops when it is done.

`transformers`' `generate` keeps every row of a batch in the forward until the last row
finishes: a row that met its end-of-turn after 12 tokens is padded along for the other
rows' 80. Here a finished row (an end-of-sequence token, a stop string in its text, or
`max_new_tokens`) leaves the batch at once: its row is dropped from the input, the
attention mask and the KV cache, so each step costs only the rows still writing. Prompts
are sorted by length so a batch shares little padding, the prompt runs once (the lm head
on its last position only, as `generate` does) and every later step feeds one token per
row on top of the cache.

Greedy and with the same masks and positions as `generate`, so the text is the same; the
cut at the first stop string happens afterwards in the engine, exactly as before (a row
stops at the step its text first contains a stop string, and nothing after that point
survives the cut).

The KV cache is allocated once per batch for the prompt and every new token
(`preallocated_cache`): transformers' DynamicCache grows by concatenation, which copies
every layer's whole cache on every step (29% of a decode step's CPU time at batch 16 on
the default model, by torch's profiler).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from evalkit.profile import count

Progress = Callable[[int], None]
# Called once per batch after the prompt's forward, with its last-position logits (rows ×
# vocab) and the prompt index of each row; returns the tokens (rows × k, k the same for
# every call) each row is given before it decodes on its own. The judge uses it to pick a
# verdict among allowed tokens and to write the JSON around it.
Steer = Callable[[Any, list[int]], Any]
# A shorter common start is not worth a forward of its own.
MIN_SHARED_PREFIX = 8


def eos_ids(model: Any) -> set[int]:
    """The token ids that end a sequence for `generate` (its generation config's)."""
    eos = getattr(model.generation_config, "eos_token_id", None)
    if eos is None:
        return set()
    return {int(e) for e in (eos if isinstance(eos, (list, tuple)) else [eos])}


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
    """The generated token ids of each prompt (in the order given; the end-of-sequence
    token, when one ended the row, included). With `steer`, the `steer_len` tokens it
    gives each row come first and are not part of what is returned."""
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
    out: list[list[int]] = [[] for _ in encoded]
    ends = eos_ids(model)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        rows = _generate_batch(
            model,
            tokenizer,
            [encoded[i] for i in idx],
            max_new_tokens=max_new_tokens,
            ends=ends,
            stops=[s for s in stops if s],
            device=device,
            steer=_rows_as_prompts(steer, idx) if steer else None,
            steer_len=steer_len,
        )
        for i, toks in zip(idx, rows, strict=True):
            out[i] = toks
        if progress:
            progress(len(idx))
    return out


def _rows_as_prompts(steer: Steer, idx: list[int]) -> Steer:
    """`steer` as a batch calls it: its rows named by their index in the whole list."""
    return lambda logits, rows: steer(logits, [idx[r] for r in rows])


def _generate_batch(
    model: Any,
    tokenizer: Any,
    prompts: list[list[int]],
    *,
    max_new_tokens: int,
    ends: set[int],
    stops: list[str],
    device: Any,
    steer: Steer | None = None,
    steer_len: int = 0,
) -> list[list[int]]:
    import torch

    n = len(prompts)
    out: list[list[int]] = [[] for _ in prompts]
    if n == 0 or (max_new_tokens <= 0 and steer is None):
        return out
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    # The prompts' common start (the chat template's system turn, a task's instruction, a
    # judge's rubric) runs once, for one row, and every row continues from its keys and
    # values; at least one token of each prompt stays in the rows for the last logits.
    shared = shared_start(prompts)
    rest = [p[shared:] for p in prompts]
    width = max(len(p) for p in rest)
    ids = torch.full((n, width), pad, dtype=torch.long)
    mask = torch.zeros((n, width), dtype=torch.long)
    for row, p in enumerate(rest):  # left padding: every row continues at the right
        ids[row, width - len(p) :] = torch.tensor(p, dtype=torch.long)
        mask[row, width - len(p) :] = 1
    # positions as `generate` makes them: counted over real tokens, padding at 1
    positions = (mask.cumsum(-1) - 1 + shared).masked_fill(mask == 0, 1)
    ids, mask, positions = ids.to(device), mask.to(device), positions.to(device)
    cache = preallocated_cache(shared + width + steer_len + max(max_new_tokens, 0))
    # the lm head on the prompt's last position only, where the model allows it
    # (`generate` does the same): 49k logits for every prompt token would cost more than
    # the rest of the prefill
    supports = getattr(model, "_supports_logits_to_keep", lambda: False)
    keep_last = {"logits_to_keep": 1} if supports() else {}
    alive = list(range(n))  # the prompt index of each row still in the batch
    count("forward_tokens", shared + sum(len(p) for p in rest))
    with torch.inference_mode():
        run_shared_start(model, prompts[0][:shared], n, cache)
        if shared:
            mask = torch.cat([mask.new_ones((n, shared)), mask], dim=1)
        logits = model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=positions,
            cache=cache,
            use_cache=True,
            **keep_last,
        ).logits[:, -1]
        next_pos = positions[:, -1:] + 1
        if steer is not None:
            forced = steer(logits, list(range(n))).to(ids.device)
            if max_new_tokens <= 0:
                return out
            if forced.shape[1]:
                logits, mask, next_pos = _feed(model, forced, mask, next_pos, cache, keep_last)
        for step in range(max_new_tokens):
            tokens = logits.float().argmax(-1)
            keep = []
            for row, i in enumerate(alive):
                tok = int(tokens[row])
                out[i].append(tok)
                if not _finished(out[i], tok, ends, stops, tokenizer):
                    keep.append(row)
            count("generated_tokens", len(alive))
            if not keep or step == max_new_tokens - 1:
                break
            if len(keep) < len(alive):  # finished rows leave the batch and its cache
                sel = torch.tensor(keep, device=ids.device)
                cache.batch_select_indices(sel)
                mask, next_pos, tokens = mask[sel], next_pos[sel], tokens[sel]
                alive = [alive[r] for r in keep]
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
    return out


def run_shared_start(model: Any, tokens: list[int], rows: int, cache: Any = None) -> Any:
    """Run a start that `rows` sequences share once, for one row, and repeat its keys and
    values for each row (into `cache`, or a new one); the cache is returned, and `cache`
    unchanged when there is no shared start."""
    import torch

    if not tokens:
        return cache
    device = model.device
    supports = getattr(model, "_supports_logits_to_keep", lambda: False)
    out = model(
        input_ids=torch.tensor([tokens], device=device),
        position_ids=torch.arange(len(tokens), device=device)[None],
        cache=cache,
        use_cache=True,
        **({"logits_to_keep": 1} if supports() else {}),
    )
    out.past_key_values.batch_repeat_interleave(rows)
    return out.past_key_values


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


def preallocated_cache(capacity: int) -> Any:
    """A transformers Cache whose layers hold `capacity` positions from the first update:
    each step writes its keys and values in place and attention reads a view of the
    filled part, instead of concatenating a new tensor per layer per step."""
    from transformers.cache_utils import Cache, DynamicLayer

    class PreallocatedLayer(DynamicLayer):
        def lazy_initialization(self, key_states: Any, value_states: Any) -> None:
            batch, heads, _, dim = key_states.shape
            self.device = key_states.device
            self._k = key_states.new_empty((batch, heads, capacity, dim))
            self._v = value_states.new_empty((batch, heads, capacity, value_states.shape[-1]))
            self.length = 0
            self._views()
            self.is_initialized = True

        def _views(self) -> None:
            self.keys = self._k[:, :, : self.length]
            self.values = self._v[:, :, : self.length]

        def update(self, key_states: Any, value_states: Any, *args: Any, **kwargs: Any) -> Any:
            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
            end = self.length + key_states.shape[-2]
            if end > capacity:
                raise RuntimeError(f"KV cache of {capacity} positions overflowed")
            self._k[:, :, self.length : end] = key_states
            self._v[:, :, self.length : end] = value_states
            self.length = end
            self._views()
            return self.keys, self.values

        def get_seq_length(self) -> int:
            return self.length if self.is_initialized else 0

        def batch_repeat_interleave(self, repeats: int) -> None:
            # transformers' layer method, on the preallocated buffers: one row's keys and
            # values (a shared prompt start) become `repeats` rows
            if self.is_initialized:
                self._k = self._k.repeat_interleave(repeats, dim=0)
                self._v = self._v.repeat_interleave(repeats, dim=0)
                self._views()

        def batch_select_indices(self, indices: Any) -> None:
            if self.is_initialized:
                self._k, self._v = self._k[indices], self._v[indices]
                self._views()

    return Cache(layer_class_to_replicate=PreallocatedLayer)


def shared_start(prompts: Sequence[list[int]]) -> int:
    """How many tokens of the prompts' common start run once for all of them
    (`run_shared_start`): none for a single prompt or a start shorter than
    MIN_SHARED_PREFIX, and never a prompt's last token, whose logits each row needs."""
    if len(prompts) < 2:
        return 0
    n = common_prefix(prompts)
    return n if n >= MIN_SHARED_PREFIX else 0


def common_prefix(prompts: Sequence[list[int]]) -> int:
    """The length of the prompts' common start, short of the shortest prompt's last token."""
    first, limit = prompts[0], min(len(p) for p in prompts) - 1
    n = 0
    while n < limit and all(p[n] == first[n] for p in prompts):
        n += 1
    return n


def _finished(toks: list[int], tok: int, ends: set[int], stops: list[str], tokenizer: Any) -> bool:
    if tok in ends:
        return True
    if not stops:
        return False
    # the whole completion so far: a stop string may span tokens, and a few dozen tokens
    # decode in microseconds next to a forward step
    text = tokenizer.decode(toks, skip_special_tokens=False)
    return any(s in text for s in stops)
