"""Reading a server's echoed prompt logprobs against the base tokenizer's tokens.

A server answers `echo: true, logprobs: k` with its own tokens as text, a logprob per
token and the top-k alternatives per position, keyed by text. `PromptReader` maps that
answer onto our token ids (`line_up`) and reads, for our token j:

- `value`: log p(token j | tokens before it);
- `dist`: the top-k of the distribution that predicts token j (piece -> logprob);
- `top1`: that distribution's most likely piece.

Two readings exist (`alignment`). `aligned` is OpenAI's meaning: entry j is about token j
given the tokens before it (vLLM, SGLang). `shifted` is llama-cpp-python 0.3.36's: entry j
holds the distribution *after* token j, so token j's own value comes from entry j-1's
top-k (a token outside it cannot be read), and the distribution after the first token
from a one-token completion after it (`first`). Where the server left our first token
out of its echo (a BOS it adds itself), the lists are padded back and the entries fall
into line again (`Completion.dropped_first`).

A top-k keyed by text cannot tell apart tokens that decode to the same piece once broken
UTF-8 is dropped (as llama-cpp-python does); those pieces are `ambiguous` and never read.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from typing import Any

from evalkit.engines.openai_client import Completion, EngineServerError

# piece -> logprob: the top-k of one next-token distribution as a server gives it
TopK = dict[str, float]


class Unreadable(EngineServerError):
    """A token whose log-probability this answer does not hold (outside a shifted
    server's top-k, or an ambiguous piece)."""


class PromptReader:
    """Maps echoed answers onto the base tokenizer's tokens and reads them; `top_k` is
    what the server was asked for (for the messages)."""

    def __init__(self, tokenizer: Any, top_k: int, endpoint: str) -> None:
        self.tokenizer = tokenizer
        self.top_k = top_k
        self.endpoint = endpoint
        self._ambiguous_pieces: set[str] | None = None
        self._pieces: dict[int, str] = {}

    def piece(self, token: int) -> str:
        """The text of one token, as a server keys its top-k (interned: a KL over many
        positions keeps one copy of each piece)."""
        got = self._pieces.get(token)
        if got is None:
            text = str(self.tokenizer.decode([token], clean_up_tokenization_spaces=False))
            got = self._pieces[token] = sys.intern(text)
        return got

    def ambiguous(self) -> set[str]:
        """Pieces that more than one token decodes to once broken UTF-8 is dropped (as
        llama-cpp-python's server does): a top-k keyed by text cannot tell them apart."""
        if self._ambiguous_pieces is None:
            seen: dict[str, int] = {}
            for i in range(len(self.tokenizer)):
                key = self.piece(i).replace("\ufffd", "")
                seen[key] = seen.get(key, 0) + 1
            self._ambiguous_pieces = {k for k, n in seen.items() if n > 1} | {""}
        return self._ambiguous_pieces

    def is_ambiguous(self, piece: str) -> bool:
        return piece.replace("\ufffd", "") in self.ambiguous()

    def line_up(self, seq: list[int], c: Completion) -> Completion:
        """The answer with entry j for our token j, or a refusal (EngineServerError) where
        the server's tokens are not ours. The caller has checked the answer holds
        prompt logprobs."""
        assert c.tokens is not None and c.token_logprobs is not None
        assert c.top_logprobs is not None
        ours = [self.piece(t) for t in seq]
        special = set(self.tokenizer.all_special_ids)
        theirs = c.tokens
        where: list[int | None] = []  # our position -> the server's entry
        i = 0
        for j, t in enumerate(seq):
            if i < len(theirs) and (theirs[i] == ours[j] or (t in special and theirs[i] == "")):
                where.append(i)
                i += 1
            elif t in special:
                where.append(None)  # llama-cpp-python leaves BOS tokens out of its echo
            else:
                raise EngineServerError(
                    "the server's tokens do not line up with the base tokenizer's at "
                    f"position {j} (ours {ours[j : j + 3]!r}, the server's "
                    f"{theirs[i : i + 3]!r}): its log-likelihoods would score other tokens",
                    hint="Serve the same base model (and tokenizer) as the suite's `base:`.",
                )
        if where == list(range(len(seq))):
            return c

        def pick(xs: list[Any]) -> list[Any]:
            return [None if w is None else xs[w] for w in where]

        return replace(
            c,
            tokens=[ours[j] if w is None else theirs[w] for j, w in enumerate(where)],
            token_logprobs=pick(c.token_logprobs),
            top_logprobs=pick(c.top_logprobs),
            dropped_first=where[0] is None,
        )

    def value(
        self,
        c: Completion,
        seq: list[int],
        j: int,
        alignment: str,
        first: dict[int, TopK] | None = None,
    ) -> float:
        """Token j's log-probability from one lined-up answer, under an alignment; raises
        Unreadable where the answer does not hold it."""
        assert c.token_logprobs is not None and c.top_logprobs is not None
        if alignment == "aligned" or c.dropped_first:
            # a dropped first token moves a shifted server's entries back into line
            value = c.token_logprobs[j]
            if value is None:
                raise Unreadable(f"the server gave no logprob for prompt token {j}")
            return float(value)
        top = self.dist(c, seq, j, alignment, first)
        piece = self.piece(seq[j])
        if not top or piece not in top or self.is_ambiguous(piece):
            raise Unreadable(
                f"token {piece!r} (position {j}) is outside the top-{self.top_k} logprobs "
                "this server gives for its position, and its prompt logprobs are shifted by "
                "one, so its own value cannot be used",
                hint="Raise engine.top_logprobs, or serve with an engine whose prompt "
                "logprobs are aligned (vLLM, SGLang).",
            )
        return float(top[piece])

    def dist(
        self,
        c: Completion,
        seq: list[int],
        j: int,
        alignment: str,
        first: dict[int, TopK] | None = None,
    ) -> TopK | None:
        """The top-k of the distribution that predicts token j (j >= 1), or None where the
        answer has none."""
        assert c.top_logprobs is not None
        if alignment == "aligned" or c.dropped_first:
            idx = j
        elif j >= 2:
            idx = j - 1
        else:  # a shifted server nulls the distribution after the first token
            return (first or {}).get(seq[0])
        return c.top_logprobs[idx] if 0 <= idx < len(c.top_logprobs) else None

    def top1(self, c: Completion, j: int, alignment: str) -> str | None:
        """The server's most likely piece at the position that predicts token j."""
        assert c.top_logprobs is not None
        idx = j if alignment == "aligned" or c.dropped_first else j - 1
        if idx < 1 or idx >= len(c.top_logprobs):
            return None
        top = c.top_logprobs[idx]
        return max(top, key=lambda k: top[k]) if top else None
