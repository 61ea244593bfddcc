"""The Engine protocol: one base model in memory, variants switched on it, and a batch-first
request interface (generate, log-likelihood, rolling NLL) so a backend can sort and batch.

Variants are named `base`, `NAME` (the adapter NAME applied) and `merged:NAME` (the adapter
merged into the weights).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import numpy as np

Progress = Callable[[int], None]


@dataclass(frozen=True)
class ChatPrompt:
    """A user turn (and optional system turn); the backend applies the chat template."""

    user: str
    system: str | None = None


@dataclass(frozen=True)
class LogLikelihood:
    """Sum of log-probabilities of a continuation's tokens, and how many there were.
    `reason`: why the engine could not compute it (logprob is then NaN, never a guess);
    the metrics built on it are unscored with that reason."""

    logprob: float
    n_tokens: int
    reason: str | None = None


@dataclass(frozen=True)
class RollingScore:
    """A whole text scored by the active variant: its NLL (nats, positive), its token
    count, and the KL(base || variant) summed over its first `kl_tokens` tokens (nats; 0 for
    the base); `top1`: of those positions, how many the variant's most likely next token is
    the base's (all of them for the base; None when the engine did not count)."""

    nll: float
    n_tokens: int
    kl: float
    kl_tokens: int  # the tokens the KL is summed over (a text's first ones; see hf_scoring)
    top1: int | None = None
    reason: str | None = None  # why the NLL could not be computed (nll is then NaN)
    kl_reason: str | None = None  # why the KL and top-1 could not be (kl is then NaN)


@dataclass(frozen=True)
class Generation:
    """One greedy generation: `prompt` up to `max_new_tokens` or a stop string. With
    `reference`, also log p(reference | prompt), which an engine may read in the same pass
    as the prompt (the hf engine does: the prompt then runs once for both)."""

    prompt: ChatPrompt
    max_new_tokens: int
    stop: tuple[str, ...] = ()
    reference: str | None = None


@dataclass(frozen=True)
class Generated:
    """A Generation's text and, when it had a reference, the reference's log-likelihood."""

    text: str
    reference: LogLikelihood | None = None


# open-shift counts a token as shifted when it is outside the base's top OPEN_SHIFT_TOP_K
OPEN_SHIFT_TOP_K = 3


@dataclass(frozen=True)
class TopKShift:
    """A continuation read by the base: how many of its `n_tokens` tokens fall outside the
    base's top-k next tokens at their prefix."""

    outside: int
    n_tokens: int


class Engine(Protocol):
    name: str

    def fingerprint(self, variant: str) -> str:
        """A stable identity of the weights a variant computes with (for caches and runs)."""
        ...

    def variant(self, name: str) -> AbstractContextManager[None]:
        """Make `name` the active variant for the requests made inside the block."""
        ...

    def generate(
        self,
        prompts: list[ChatPrompt],
        *,
        max_new_tokens: int,
        stop: tuple[str, ...] = (),
        progress: Progress | None = None,
    ) -> list[str]:
        """Greedy completions, in the order of `prompts`."""
        ...

    def loglikelihood(
        self, requests: list[tuple[ChatPrompt, str]], *, progress: Progress | None = None
    ) -> list[LogLikelihood]:
        """log p(continuation | prompt) for each (prompt, continuation)."""
        ...

    def rolling_nll(
        self, texts: list[str], *, progress: Progress | None = None
    ) -> list[LogLikelihood]:
        """Negative log-likelihood of whole texts (logprob holds the NLL, positive)."""
        ...

    def rolling_kl(
        self, texts: list[str], *, progress: Progress | None = None
    ) -> list[RollingScore]:
        """rolling_nll of whole texts plus, on the same windows, the per-token
        KL(base || active variant) summed per text. Computed inside the engine (the base by
        disabling or unmerging the adapter) so no logits are shipped around."""
        ...

    def base_topk_shift(
        self,
        requests: list[tuple[ChatPrompt, str]],
        *,
        k: int,
        progress: Progress | None = None,
    ) -> list[TopKShift]:
        """For each (prompt, continuation) the active variant produced: the base, teacher-
        forced over the chat-formatted prompt and the continuation, counts the continuation
        tokens outside its top-k at their prefix (open-shift). Engines that cannot compute
        it declare `open_shift=False` in their capabilities."""
        ...

    def probe_logits(self, texts: list[str]) -> list[np.ndarray]:
        """Next-token logits (tokens × vocab, float32) over each text, for integrity checks
        between variants."""
        ...


def batches(items: list[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
