"""The parent's view of a run's worker processes (evalkit.engines.workers): one engine
that answers what the stages after the engine ask of it (fingerprints, device,
capabilities, tokenizer, the probe logits of the integrity checks) from the workers'
reports, and whose requests are answered by the result cache the workers filled."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from evalkit.engines.base import ChatPrompt, LogLikelihood, Progress, RollingScore, TopKShift
from evalkit.engines.registry import EngineCapabilities
from evalkit.errors import EvalkitError

if TYPE_CHECKING:
    import numpy as np


class WorkerError(EvalkitError):
    """A worker process failed (exit code 3). What the workers finished stays in the result
    cache."""


class ReplayEngine:
    """The workers' engines as the parent sees them: their fingerprints, device,
    capabilities, tokenizer and probe logits, from their reports. Requests are answered by
    the result cache the workers filled (wrapped in a CachedEngine); one that reaches this
    engine is a result no worker computed, an error."""

    def __init__(
        self,
        name: str,
        device: str,
        fingerprints: dict[str, str],
        capabilities: EngineCapabilities,
        tokenizer_source: str | None,
        probe_texts: list[str],
        logits: dict[str, list[np.ndarray]],
    ) -> None:
        self.name = name
        self.device = _Device(device)
        self.capabilities = capabilities
        self._fps = fingerprints
        self._tokenizer_source = tokenizer_source
        self._texts = probe_texts
        self._logits = logits
        self._active = "base"

    @classmethod
    def from_reports(
        cls, reports: list[dict[str, Any]], probe_texts: list[str], workdir: Path
    ) -> ReplayEngine:
        import numpy as np

        fps: dict[str, str] = {}
        logits: dict[str, list[np.ndarray]] = {}
        for r in reports:
            for v, fp in r["fingerprints"].items():
                if fps.setdefault(v, fp) != fp:  # every worker loads the same base
                    raise WorkerError(f"the workers computed {v} with different weights")
            for v, files in r["probes"].items():
                logits[v] = [np.load(workdir / f, allow_pickle=False) for f in files]
        first = reports[0]
        return cls(
            first["name"],
            first["device"],
            fps,
            EngineCapabilities(**first["capabilities"]),
            first.get("tokenizer"),
            probe_texts,
            logits,
        )

    @functools.cached_property
    def tokenizer(self) -> Any:
        """The base's tokenizer (the integrity checks compare adapters' tokenizers to it)."""
        if self._tokenizer_source is None:
            return None
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(self._tokenizer_source)

    def fingerprint(self, variant: str) -> str:
        return self._fps[variant]

    @contextmanager
    def variant(self, name: str) -> Iterator[None]:
        self._active = name
        try:
            yield
        finally:
            self._active = "base"

    def probe_logits(self, texts: list[str]) -> list[np.ndarray]:
        if list(texts) != self._texts or self._active not in self._logits:
            raise WorkerError(f"no worker saved these probe logits for {self._active}")
        return self._logits[self._active]

    def _missing(self, *args: Any, **kwargs: Any) -> Any:
        raise WorkerError(
            f"results for {self._active} are missing from the result cache the workers "
            "filled (was it cleared during the run?)"
        )

    def generate(
        self,
        prompts: list[ChatPrompt],
        *,
        max_new_tokens: int,
        stop: tuple[str, ...] = (),
        progress: Progress | None = None,
    ) -> list[str]:
        return cast(list[str], self._missing())

    def loglikelihood(
        self, requests: list[tuple[ChatPrompt, str]], *, progress: Progress | None = None
    ) -> list[LogLikelihood]:
        return cast(list[LogLikelihood], self._missing())

    def rolling_nll(
        self, texts: list[str], *, progress: Progress | None = None
    ) -> list[LogLikelihood]:
        return cast(list[LogLikelihood], self._missing())

    def rolling_kl(
        self, texts: list[str], *, progress: Progress | None = None
    ) -> list[RollingScore]:
        return cast(list[RollingScore], self._missing())

    def base_topk_shift(
        self,
        requests: list[tuple[ChatPrompt, str]],
        *,
        k: int,
        progress: Progress | None = None,
    ) -> list[TopKShift]:
        return cast(list[TopKShift], self._missing())


@dataclass(frozen=True)
class _Device:
    type: str
