"""Scoring requests of the HF engine: log-likelihoods with a shared context, rolling NLL
over documents, and the per-token KL divergence of a variant from the base on the same
windows. A mixin so `hf.py` keeps loading and variant switching, and this file the maths.

KL direction: KL(base || variant) = sum_v p_base(v) (log p_base(v) - log p_variant(v)),
an expectation under the base's next-token distribution. Forgetting is the variant losing
what the base knew, so the tokens that count are those the base finds likely; this
direction is large exactly when the variant puts little mass where the base put a lot.
(KL(variant || base) would instead weigh the tokens the variant now prefers, e.g. its
trained format, which is the adapter's intended change rather than what it forgot.)
"""

from __future__ import annotations

import hashlib
from array import array
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import Any

from evalkit.engines.base import ChatPrompt, LogLikelihood, Progress, RollingScore, TopKShift
from evalkit.engines.hf_contexts import read_continuations
from evalkit.engines.hf_kv import TOKEN_BUDGET, budget_batches
from evalkit.profile import count

ROLLING_WINDOW = 1024
# The KL is taken on each text's first KL_TOKENS tokens: the base's second forward pass
# then costs a fraction of the NLL pass (the prose probe: 24 × 256 of its 19.8k tokens),
# and a per-document mean over 256 tokens is already stable (the demo's legal-r16: 0.14 to
# 0.18 nats/token over documents); the bootstrap over documents carries the rest.
KL_TOKENS = 256
# A sequence this long runs in a forward of its own: unpadded, its attention takes the
# causal fast path, and the matrices are large enough alone. On 2 CPU threads, 8 prose
# documents of ~810 tokens scored in 7.4 s one by one against 8.8 to 10.2 s batched; at
# ~250 tokens the two were even, at ~110 batching won (3.1 s against 3.4 s).
ALONE_TOKENS = 512
# The base's log-probabilities at the KL positions, kept from its own prose pass so a
# variant's KL needs no second base pass: 24 documents × 256 positions of a 49k
# vocabulary are 1.2 GB of fp32. Past this many bytes the rest is recomputed as before.
KL_STORE_BYTES = 2 * 1024**3

# (key, start, tokens): read logits at positions start-1 .. start+len(tokens)-2
Read = tuple[int, int, list[int]]


def _shift_key(k: int, n_ctx: int, seq: list[int]) -> bytes:
    """A short exact key of one open-shift request (its digest, not the ids themselves)."""
    return hashlib.sha256(array("q", [k, n_ctx, *seq]).tobytes()).digest()


def _answer_key(ctx: list[int], answer: list[int]) -> bytes:
    """A short exact key of a prompt and an answer's tokens."""
    return hashlib.sha256(array("q", [len(ctx), *ctx, *answer]).tobytes()).digest()


def _window_key(seq: list[int]) -> bytes:
    """The KL positions of a window: its first KL_TOKENS + 1 input ids (causal, so the
    base's distributions there depend on nothing after them)."""
    return hashlib.sha256(array("q", seq[: KL_TOKENS + 1]).tobytes()).digest()


class BaseDistributions:
    """The base's log-probabilities at windows' KL positions, by window, kept while the
    base runs the prose so each variant's KL reads them instead of running the base
    again; holds at most KL_STORE_BYTES (what does not fit is recomputed)."""

    def __init__(self, limit: int = KL_STORE_BYTES) -> None:
        self._kept: dict[bytes, Any] = {}
        self._bytes = 0
        self._limit = limit

    def get(self, key: bytes) -> Any:
        return self._kept.get(key)

    def __contains__(self, key: bytes) -> bool:
        return key in self._kept

    def keep(self, key: bytes, base_logp: Any) -> None:
        size = base_logp.numel() * base_logp.element_size()
        if key not in self._kept and self._bytes + size <= self._limit:
            self._kept[key] = base_logp.detach().to("cpu", copy=True)
            self._bytes += size


class ScoringMixin:
    """Needs `model`, `tokenizer`, `device`, `batch_size` and `_as_base()` (a context in
    which the model computes the base while a variant is active)."""

    model: Any
    tokenizer: Any
    device: Any
    batch_size: int
    # reuse across variants within one engine (set up by the engine's __init__)
    _kl_base: BaseDistributions  # the base's prose distributions, for every variant's KL
    _shift_memo: dict[bytes, TopKShift]  # open-shift readings by (k, prompt, answer)
    # (prompt, answer) pairs whose answer is the base's own greedy continuation, token for
    # token: the base, reading it, finds every token its most likely one (open-shift 0)
    _base_greedy: set[bytes]

    def _as_base(self) -> AbstractContextManager[None]:
        raise NotImplementedError

    def _active_is_base(self) -> bool:
        raise NotImplementedError

    def _encode_chat(self, prompt: ChatPrompt) -> list[int]:
        raise NotImplementedError

    def _remember_base_greedy(
        self, encoded: list[list[int]], generated: list[list[int]], texts: list[str]
    ) -> None:
        """Note the base's generated answers whose text, tokenized again, is a start of
        the tokens it generated (so open-shift would read exactly those positions)."""
        for ctx, toks, text in zip(encoded, generated, texts, strict=True):
            answer = list(self.tokenizer(text, add_special_tokens=False)["input_ids"])
            if answer and answer == toks[: len(answer)]:
                self._base_greedy.add(_answer_key(ctx, answer))

    def _rolling_windows(
        self, texts: list[str]
    ) -> tuple[list[list[int]], list[list[Read]], list[int], set[int]]:
        """Each text in disjoint windows of ROLLING_WINDOW tokens; every token is predicted
        once, the first from a separator token, later windows start from the last token of
        the window before."""
        prefix = self.tokenizer.eos_token_id
        seqs: list[list[int]] = []
        reads: list[list[Read]] = []
        counts = []
        firsts = set()  # the sequences that open a text
        for t, text in enumerate(texts):
            ids = list(self.tokenizer(text, add_special_tokens=False)["input_ids"])
            counts.append(len(ids))
            prev = prefix
            for start in range(0, len(ids), ROLLING_WINDOW - 1):
                if start == 0:
                    firsts.add(len(seqs))
                chunk = ids[start : start + ROLLING_WINDOW - 1]
                seqs.append([prev, *chunk])
                reads.append([(t, 1, chunk)])
                prev = chunk[-1]
        return seqs, reads, counts, firsts

    def rolling_nll(
        self, texts: list[str], *, progress: Progress | None = None
    ) -> list[LogLikelihood]:
        seqs, reads, counts, _ = self._rolling_windows(texts)
        scores, _, _ = self._score_sequences(seqs, reads, progress, n_keys=len(texts))
        return [LogLikelihood(-scores[t], counts[t]) for t in range(len(texts))]

    def rolling_kl(
        self, texts: list[str], *, progress: Progress | None = None
    ) -> list[RollingScore]:
        """Rolling NLL of the active variant and, on the same windows, the summed per-token
        KL(base || variant). The base's logits come from a second forward pass of the same
        batch inside `_as_base()`, so no logits leave the engine. The same positions give
        the top-1 agreement: how many of them the variant's most likely next token is the
        base's. For the base itself the KL is 0, every position agrees and no second pass
        runs."""
        base = self._active_is_base()
        seqs, reads, counts, firsts = self._rolling_windows(texts)
        scores, kls, agree = self._score_sequences(
            seqs,
            reads,
            progress,
            n_keys=len(texts),
            kl_on=set() if base else firsts,
            keep_base=firsts if base else set(),
        )
        kl_tokens = [min(c, KL_TOKENS) for c in counts]
        return [
            RollingScore(
                -scores[t], counts[t], kls[t], kl_tokens[t], kl_tokens[t] if base else agree[t]
            )
            for t in range(len(texts))
        ]

    def _score_sequences(
        self,
        seqs: list[list[int]],
        reads: list[list[Read]],
        progress: Progress | None,
        n_keys: int,
        kl_on: set[int] | None = None,
        keep_base: set[int] | None = None,
    ) -> tuple[list[float], list[float], list[int]]:
        """Run each sequence once (batched, right-padded) and sum, per key, the
        log-probabilities of the tokens each read names; for the sequences in `kl_on`, also
        the KL of the base's next-token distribution from the variant's over their first
        KL_TOKENS positions and the count of those positions where both predict the same
        next token. The base's distributions there come from the base's own pass (the
        sequences in `keep_base`, run while the base is active, are kept for this) or,
        for sequences the base has not run, from a second, shorter pass inside
        `_as_base()`."""
        import torch

        total = [0.0] * n_keys
        kl_total = [0.0] * n_keys
        agree = [0] * n_keys
        kept = self._kl_base
        kl_key = {i: _window_key(seqs[i]) for i in (kl_on or set()) | (keep_base or set())}
        order = sorted(range(len(seqs)), key=lambda i: -len(seqs[i]))
        pad = self.tokenizer.pad_token_id
        for idx in self._token_batches(order, [len(x) for x in seqs], alone=ALONE_TOKENS):
            width = max(len(seqs[i]) for i in idx)
            ids = torch.full((len(idx), width), pad, dtype=torch.long)
            mask = torch.zeros((len(idx), width), dtype=torch.long)
            for row, i in enumerate(idx):
                ids[row, : len(seqs[i])] = torch.tensor(seqs[i])
                mask[row, : len(seqs[i])] = 1
            inputs = {"input_ids": ids.to(self.device), "attention_mask": mask.to(self.device)}
            count("forward_tokens", sum(len(seqs[i]) for i in idx))
            with torch.inference_mode():
                logits = self.model(**inputs).logits
                base_logits = None
                if any(i in (kl_on or ()) and kl_key[i] not in kept for i in idx):
                    # causal: the first KL_TOKENS positions need no later context
                    cut = {k: v[:, : KL_TOKENS + 1] for k, v in inputs.items()}
                    with self._as_base():
                        base_logits = self.model(**cut).logits
                    count("forward_tokens", int(cut["attention_mask"].sum()))
                for row, i in enumerate(idx):
                    for key, start, tokens in reads[i]:
                        sl = slice(start - 1, start - 1 + len(tokens))
                        logp = torch.log_softmax(logits[row, sl].float(), dim=-1)
                        target = torch.tensor(tokens, device=logp.device).unsqueeze(1)
                        total[key] += float(logp.gather(1, target).sum())
                        n = min(len(tokens), KL_TOKENS)
                        if i in (keep_base or ()):
                            kept.keep(kl_key[i], logp[:n])
                        if i in (kl_on or ()):
                            if kl_key[i] in kept:
                                base_logp = kept.get(kl_key[i]).to(logp.device)
                            else:
                                assert base_logits is not None
                                span = base_logits[row, start - 1 : start - 1 + n].float()
                                base_logp = torch.log_softmax(span, dim=-1)
                            kl = (base_logp.exp() * (base_logp - logp[:n])).sum(-1)
                            kl_total[key] += float(kl.clamp(min=0.0).sum())
                            # argmax takes the first maximum on a tie, in both alike
                            same = base_logp.argmax(-1) == logp[:n].argmax(-1)
                            agree[key] += int(same.sum())
            if progress:
                progress(len(idx))
        return total, kl_total, agree

    def base_topk_shift(
        self,
        requests: list[tuple[ChatPrompt, str]],
        *,
        k: int,
        progress: Progress | None = None,
    ) -> list[TopKShift]:
        """Open-shift: the base, teacher-forced over each chat-formatted prompt and the
        variant's answer (re-tokenized), counts the answer tokens outside its top-k at
        their prefix. One forward pass per batch, inside `_as_base()`."""
        import torch

        ctxs = [self._encode_chat(p) for p, _ in requests]
        conts = [
            list(self.tokenizer(c, add_special_tokens=False)["input_ids"]) for _, c in requests
        ]
        seqs = [c + a for c, a in zip(ctxs, conts, strict=True)]
        out = [TopKShift(0, len(a)) for a in conts]
        # The base reads the answer whatever variant wrote it, so an answer seen before
        # (a merged variant mostly repeats its adapter's) is not read again.
        memo = self._shift_memo
        keys = [_shift_key(k, len(c), s) for c, s in zip(ctxs, seqs, strict=True)]
        todo = []
        for i, key in enumerate(keys):
            if key in memo:
                out[i] = memo[key]
            elif k >= 2 and _answer_key(ctxs[i], conts[i]) in self._base_greedy:
                # the base wrote this answer greedily: each token was its argmax there, so
                # it is inside the base's top k (k >= 2 leaves room for a near tie that
                # another batch's float order would break the other way)
                out[i] = TopKShift(0, len(conts[i]))
            elif conts[i]:
                todo.append(i)
        order = sorted(todo, key=lambda i: -len(seqs[i]))
        for idx in self._token_batches(order, [len(s) for s in seqs]):
            # each prompt a row with its answer after it (the batch's common start once),
            # the lm head on the answer's positions only
            with self._as_base():
                got = read_continuations(
                    self.model, self.tokenizer.pad_token_id, [(ctxs[i], [conts[i]]) for i in idx]
                )
            top = got.logits.topk(min(k, got.logits.shape[-1]), dim=-1).indices
            outside = (top != got.targets[:, None]).all(-1).long().cpu()
            per_answer = torch.zeros(len(idx), dtype=torch.long).index_add_(0, got.owners, outside)
            for j, i in enumerate(idx):
                out[i] = memo[keys[i]] = TopKShift(int(per_answer[j]), len(conts[i]))
            if progress:
                progress(len(idx))
        if progress and len(todo) < len(requests):
            progress(len(requests) - len(todo))
        return out

    def _token_batches(
        self,
        order: list[int],
        lengths: list[int],
        budget: int | None = None,
        alone: int | None = None,
    ) -> Iterator[list[int]]:
        """Batches of at most batch_size sequences and `budget` padded tokens: a full
        forward keeps logits for every position (tokens × vocab floats), so long documents
        must come in smaller batches than short prompts. A sequence of at least `alone`
        tokens is a batch of its own."""
        return budget_batches(
            order,
            lengths,
            TOKEN_BUDGET if budget is None else budget,
            max_rows=self.batch_size,
            alone=alone,
        )
