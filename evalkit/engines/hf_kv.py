"""Keys and values for the hf engine's forward passes: a KV cache written in place, and a
batch's common prompt start run once.

- `preallocated_cache`: transformers' DynamicCache grows by concatenation, which copies
  every layer's whole cache on every step (29% of a decode step's CPU time at batch 16 on
  the default model, by torch's profiler); this one is allocated once per batch for the
  prompt and every new token.
- `shared_start` / `run_shared_start`: the chat template's system turn, a task's
  instruction or a judge's rubric, common to a batch's prompts, runs for one row and every
  row continues from its keys and values (generation, log-likelihoods, open-shift).
- `budget_batches`: rows in batches whose padded positions stay within a token budget,
  since a pass that reads logits holds them for every read position at once (scoring,
  references read with their prompts, drafts).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

# A shorter common start is not worth a forward of its own.
MIN_SHARED_PREFIX = 8
# The padded positions of one pass that reads logits: about 1.6 GB of fp32 logits for a 49k
# vocabulary at most.
TOKEN_BUDGET = 8192


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

        def crop(self, tokens_to_remove: int) -> None:
            # transformers' meaning (5.x): a negative count of positions to drop at the
            # end; the buffers stay, and the next update writes over them
            if self.is_initialized and tokens_to_remove < 0:
                self.length = max(self.length + tokens_to_remove, 0)
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


def budget_batches(
    order: Sequence[int],
    lengths: Sequence[int],
    budget: int,
    max_rows: int | None = None,
    alone: int | None = None,
) -> Iterator[list[int]]:
    """The indices of `order`, in order, in batches of at most `max_rows` rows whose
    longest length times their rows stays within `budget` (a row over it is a batch of
    its own). A row of at least `alone` is a batch of its own."""
    batch: list[int] = []
    width = 0
    for i in order:
        if alone is not None and lengths[i] >= alone:
            yield [i]
            continue
        grown = max(width, lengths[i])
        full = max_rows is not None and len(batch) >= max_rows
        if batch and (full or grown * (len(batch) + 1) > budget):
            yield batch
            batch, grown = [], lengths[i]
        batch.append(i)
        width = grown
    if batch:
        yield batch
