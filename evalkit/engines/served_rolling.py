"""Whole texts on a served engine: rolling perplexity and the KL probe, both read from
echoed prompt logprobs (a mixin of the openai engine, which sends the requests).

- Windows as the hf engine's: every token predicted once, the first from a separator
  token, windows of ROLLING_WINDOW tokens each opened by the last token of the one before.
- A text whose tokens cannot all be read (a shifted server's top-k does not hold them) is
  unscored with the reason; so is every text when the server gives no prompt logprobs.
- The KL probe: on each text's first KL_TOKENS positions (as the hf engine), the base's
  and the active variant's top-k at the same positions give a lower bound on
  KL(base ‖ variant) and the top-1 agreement (evalkit.engines.served_kl). The base's
  top-k is taken from the base's own pass, or asked for once, and kept for every variant.
"""

from __future__ import annotations

import logging
import math
import sys
from array import array
from collections.abc import Callable
from typing import Any

from evalkit.engines.base import LogLikelihood, Progress, RollingScore
from evalkit.engines.hf_scoring import KL_TOKENS, ROLLING_WINDOW
from evalkit.engines.openai_client import Completion, EngineServerError, NoPromptLogprobs
from evalkit.engines.prompt_logprobs import PromptReader, TopK, Unreadable
from evalkit.engines.served_kl import kl_lower_bound, top1_agrees

log = logging.getLogger(__name__)

# a top-k kept for later variants: its pieces (interned) and their logprobs
Packed = tuple[tuple[str, ...], array]


def unreadable_reason(top_k: int, alignment: str) -> str:
    """Why a text's log-likelihood could not be read from this server's answers."""
    if alignment == "shifted":
        return (
            f"tokens outside the server's top-{top_k} prompt logprobs, which it shifts by "
            "one position, so their log-likelihood cannot be read (raise "
            "engine.top_logprobs, or serve with aligned prompt logprobs: vLLM, SGLang)"
        )
    return "the server gave no logprob for some of the text's tokens"


NO_TOPK = "the server gave no top-k logprobs at some of the KL's positions"


class ServedRolling:
    """Needs the engine's `tokenizer`, `top_k`, `reader`, `alignment`, `_active`, and its
    `echo`, `_first_after` and `_served`."""

    tokenizer: Any
    top_k: int
    reader: PromptReader
    alignment: str
    _active: str
    echo: Callable[..., list[Completion]]
    _first_after: Callable[[list[list[int]], list[int]], dict[int, TopK]]

    def __init__(self) -> None:
        self._firsts: dict[tuple[str, int], TopK] = {}
        self._base_topk: dict[str, list[Packed | None]] = {}  # text -> the base's top-k
        self._warned: set[str] = set()

    def echo_or_reason(
        self, seqs: list[list[int]], progress: Progress | None = None
    ) -> tuple[list[Completion] | None, str | None]:
        """The lined-up answers, or (None, why) when the server cannot give prompt
        logprobs."""
        try:
            return self.echo(seqs, progress), None
        except NoPromptLogprobs as exc:
            if exc.message not in self._warned:
                self._warned.add(exc.message)
                log.warning("%s: metrics read from log-likelihoods are unscored", exc.message)
            return None, exc.message

    def read_answers(
        self, answers: list[Completion], seqs: list[list[int]], starts: list[int]
    ) -> list[tuple[list[float], str | None]]:
        """Per sequence, its tokens' logprobs from `starts[i]` on, or (empty, why) where
        one of them cannot be read."""
        if self.alignment not in ("aligned", "shifted"):
            raise EngineServerError(
                "the openai engine does not know how this server aligns prompt logprobs",
                hint="The parity check decides it; set engine.prompt_logprobs: aligned or "
                "shifted to skip that.",
            )
        first = self._first_after(seqs, starts) if self.alignment == "shifted" else {}
        out: list[tuple[list[float], str | None]] = []
        for c, s, st in zip(answers, seqs, starts, strict=True):
            values: list[float] = []
            try:
                for j in range(st, len(s)):
                    values.append(self.reader.value(c, s, j, self.alignment, first))
            except Unreadable:
                out.append(([], unreadable_reason(self.top_k, self.alignment)))
                continue
            out.append((values, None))
        return out

    def _windows(
        self, texts: list[str]
    ) -> tuple[list[list[int]], list[int], list[int], dict[int, int]]:
        """The windows (sequences), the text each belongs to, each text's token count,
        and text -> its first window."""
        sep = int(self.tokenizer.eos_token_id)
        seqs: list[list[int]] = []
        owner: list[int] = []
        counts: list[int] = []
        firsts: dict[int, int] = {}
        for t, text in enumerate(texts):
            ids = list(self.tokenizer(text, add_special_tokens=False)["input_ids"])
            counts.append(len(ids))
            prev = sep
            for start in range(0, len(ids), ROLLING_WINDOW - 1):
                chunk = ids[start : start + ROLLING_WINDOW - 1]
                firsts.setdefault(t, len(seqs))
                seqs.append([prev, *chunk])
                owner.append(t)
                prev = chunk[-1]
        return seqs, owner, counts, firsts

    def _nll(
        self,
        answers: list[Completion] | None,
        why: str | None,
        seqs: list[list[int]],
        owner: list[int],
        counts: list[int],
    ) -> list[LogLikelihood]:
        n = len(counts)
        if answers is None:
            return [
                LogLikelihood(math.nan, counts[t], why) if counts[t] else LogLikelihood(0.0, 0)
                for t in range(n)
            ]
        nll = [0.0] * n
        reason: list[str | None] = [None] * n
        read = self.read_answers(answers, seqs, [1] * len(seqs))
        for t, (lp, bad) in zip(owner, read, strict=True):
            if bad:
                reason[t] = bad
            else:
                nll[t] -= sum(lp)
        return [
            LogLikelihood(math.nan, counts[t], reason[t])
            if reason[t]
            else LogLikelihood(nll[t], counts[t])
            for t in range(n)
        ]

    def rolling_nll(
        self, texts: list[str], *, progress: Progress | None = None
    ) -> list[LogLikelihood]:
        seqs, owner, counts, _ = self._windows(texts)
        answers, why = self.echo_or_reason(seqs)
        out = self._nll(answers, why, seqs, owner, counts)
        if progress:
            progress(len(texts))
        return out

    def rolling_kl(
        self, texts: list[str], *, progress: Progress | None = None
    ) -> list[RollingScore]:
        """rolling_nll and, on each text's first KL_TOKENS positions, the lower bound on
        KL(base ‖ active variant) and the top-1 agreement from both top-k listings (0
        and every position for the base itself)."""
        seqs, owner, counts, firsts = self._windows(texts)
        answers, why = self.echo_or_reason(seqs)
        nll = self._nll(answers, why, seqs, owner, counts)
        n_kl = [min(c, KL_TOKENS) for c in counts]
        kls: list[tuple[float, int | None, str | None]]
        if answers is None:
            kls = [(math.nan, None, why) if n_kl[t] else (0.0, 0, None) for t in range(len(texts))]
        else:
            mine = {t: self._dists(answers[i], seqs[i], n_kl[t]) for t, i in firsts.items()}
            if self._active == "base":
                for t, dists in mine.items():
                    self._base_topk[texts[t]] = [_pack(d) for d in dists]
                kls = [(0.0, n_kl[t], None) for t in range(len(texts))]
            else:
                base = self._base_dists(texts, n_kl)
                kls = [self._kl(base[t], mine.get(t, []), n_kl[t]) for t in range(len(texts))]
        if progress:
            progress(len(texts))
        return [
            RollingScore(
                nll[t].logprob, counts[t], kls[t][0], n_kl[t], kls[t][1], nll[t].reason, kls[t][2]
            )
            for t in range(len(texts))
        ]

    def _dists(self, c: Completion, seq: list[int], n: int) -> list[TopK | None]:
        """The top-k predicting each of seq's tokens 1..n, under the active variant."""
        if self.alignment not in ("aligned", "shifted"):
            raise EngineServerError("the prompt-logprob alignment is not settled yet")
        first = self._first_after([seq], [1]) if self.alignment == "shifted" else {}
        return [self.reader.dist(c, seq, j, self.alignment, first) for j in range(1, n + 1)]

    def _base_dists(self, texts: list[str], n_kl: list[int]) -> list[list[TopK | None] | str]:
        """The base's top-k on each text's KL positions (or why not): kept from the
        base's pass, else asked for now (only the positions the KL reads)."""
        todo = [t for t, text in enumerate(texts) if text not in self._base_topk and n_kl[t]]
        if todo:
            sep = int(self.tokenizer.eos_token_id)
            seqs = [
                [sep, *list(self.tokenizer(texts[t], add_special_tokens=False)["input_ids"])]
                for t in todo
            ]
            seqs = [s[: n_kl[t] + 1] for s, t in zip(seqs, todo, strict=True)]
            active, self._active = self._active, "base"
            try:
                answers, why = self.echo_or_reason(seqs)
                if answers is None:
                    return [
                        (why or "") if t in todo else self._unpacked(texts[t])
                        for t in range(len(texts))
                    ]
                for t, c, s in zip(todo, answers, seqs, strict=True):
                    self._base_topk[texts[t]] = [_pack(d) for d in self._dists(c, s, n_kl[t])]
            finally:
                self._active = active
        return [self._unpacked(text) if n_kl[t] else [] for t, text in enumerate(texts)]

    def _unpacked(self, text: str) -> list[TopK | None]:
        return [_unpack(p) for p in self._base_topk.get(text, [])]

    def _kl(
        self, base: list[TopK | None] | str, mine: list[TopK | None], n: int
    ) -> tuple[float, int | None, str | None]:
        """(summed KL lower bound, positions whose top-1 agree, why not) for one text."""
        if isinstance(base, str):
            return math.nan, None, base
        if not n:
            return 0.0, 0, None
        if len(base) < n or len(mine) < n:
            return math.nan, None, NO_TOPK
        total, agree = 0.0, 0
        for b, v in zip(base[:n], mine[:n], strict=True):
            if not b or not v:
                return math.nan, None, NO_TOPK
            total += kl_lower_bound(b, v, self.top_k, self.reader.is_ambiguous)
            agree += top1_agrees(b, v)
        return total, agree, None


def _pack(d: TopK | None) -> Packed | None:
    if not d:
        return None
    return tuple(sys.intern(k) for k in d), array("d", d.values())


def _unpack(p: Packed | None) -> TopK | None:
    return dict(zip(p[0], p[1], strict=True)) if p else None
