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
    """Sum of log-probabilities of a continuation's tokens, and how many there were."""

    logprob: float
    n_tokens: int


@dataclass(frozen=True)
class RollingScore:
    """A whole text scored by the active variant: its NLL (nats, positive), its token
    count, and the KL(base || variant) summed over its first `kl_tokens` tokens (nats; 0 for
    the base)."""

    nll: float
    n_tokens: int
    kl: float
    kl_tokens: int  # the tokens the KL is summed over (a text's first ones; see hf_scoring)


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

    def probe_logits(self, texts: list[str]) -> list[np.ndarray]:
        """Next-token logits (tokens × vocab, float32) over each text, for integrity checks
        between variants."""
        ...


def batches(items: list[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
