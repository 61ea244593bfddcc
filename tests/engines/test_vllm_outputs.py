"""The vllm engine's reading of vLLM's answers (evalkit/engines/vllm_engine_outputs.py).

vLLM cannot run on this machine (no CUDA GPU; it is not installed), so these tests feed
objects shaped like vLLM's own: `Logprob`, `CompletionOutput` and `RequestOutput` below
copy the field names of vllm/logprobs.py and vllm/outputs.py, and `vllm_prompt_logprobs`
builds `prompt_logprobs` the way vLLM's V1 LogprobsProcessor does (None for the first
prompt token; then per token a dict of the top-k ids with ranks 1..k, plus the prompt
token itself, with rank k+1, when it is outside them). The functions under test are the
engine's real code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from evalkit.engines.base import LogLikelihood, TopKShift
from evalkit.engines.hf_scoring import ROLLING_WINDOW, ScoringMixin
from evalkit.engines.openai_client import EngineServerError
from evalkit.engines.vllm_engine_outputs import (
    completion_tokens,
    loglikelihoods,
    lora_for,
    lora_rank,
    lora_specs,
    model_for,
    prompt_scores,
    risky_targets,
    rolling_nlls,
    rolling_windows,
    topk_shifts,
)


@dataclass
class Logprob:  # vllm/logprobs.py
    logprob: float
    rank: int | None = None
    decoded_token: str | None = None


@dataclass
class CompletionOutput:  # vllm/outputs.py
    index: int
    text: str
    token_ids: list[int]
    cumulative_logprob: float | None
    logprobs: Any
    finish_reason: str | None = None
    stop_reason: int | str | None = None
    lora_request: Any = None


@dataclass
class RequestOutput:  # vllm/outputs.py (its constructor's fields)
    request_id: str
    prompt: str | None
    prompt_token_ids: list[int] | None
    prompt_logprobs: list[dict[int, Logprob] | None] | None
    outputs: list[CompletionOutput] = field(default_factory=list)
    finished: bool = True
    lora_request: Any = None


def vllm_prompt_logprobs(logp: np.ndarray, seq: list[int], k: int) -> list[Any]:
    """`prompt_logprobs` as vLLM builds it from `logp` (positions × vocab log-softmax,
    row i predicting token i+1): the top-k by rank, the prompt token injected after them."""
    out: list[Any] = [None]
    for j in range(1, len(seq)):
        row = logp[j - 1]
        top = np.argsort(-row, kind="stable")[:k]
        entry = {int(t): Logprob(float(row[t]), rank=r + 1) for r, t in enumerate(top)}
        if seq[j] not in entry:
            entry[seq[j]] = Logprob(float(row[seq[j]]), rank=k + 1)
        out.append(entry)
    return out


class Bigram:
    """A fixed random bigram model: log p(next | previous), so any windowing that keeps
    each token's previous token gives exactly the unwindowed figures."""

    def __init__(self, vocab: int = 40, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        logits = rng.normal(size=(vocab, vocab)) * 2
        self.logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))

    def answer(self, seq: list[int], k: int) -> RequestOutput:
        rows = self.logp[np.array(seq[:-1], dtype=int)] if len(seq) > 1 else np.zeros((0, 1))
        return RequestOutput("0", None, list(seq), vllm_prompt_logprobs(rows, seq, k), [])

    def direct(self, seq: list[int], start: int) -> float:
        return float(sum(self.logp[seq[j - 1], seq[j]] for j in range(start, len(seq))))


def test_prompt_logprobs_are_read_for_the_prompt_token_even_outside_the_top_k() -> None:
    seq = [3, 1, 2]
    plp = [
        None,
        {0: Logprob(-0.1, 1), 1: Logprob(-2.5, 2)},  # token 1 inside the top-2
        {0: Logprob(-0.2, 1), 4: Logprob(-1.9, 2), 2: Logprob(-7.0, 3)},  # 2 injected
    ]
    s = prompt_scores(RequestOutput("0", None, seq, plp), seq, k=2)
    assert s.logprobs == [None, -2.5, -7.0]
    assert s.top == [(), (0, 1), (0, 4)]  # the injected prompt token is no top-k id
    assert s.top1(1) == 0 and s.top1(2) == 0 and s.top1(0) is None


def test_top_k_order_does_not_trust_the_dict_order() -> None:
    seq = [0, 5]
    plp = [None, {5: Logprob(-3.0, 3), 7: Logprob(-0.5, 2), 9: Logprob(-0.4, 1)}]
    s = prompt_scores(RequestOutput("0", None, seq, plp), seq, k=2)
    assert s.top[1] == (9, 7) and s.logprobs[1] == -3.0


def test_an_answer_for_other_tokens_is_refused() -> None:
    plp = [None, {1: Logprob(-1.0, 1)}]
    with pytest.raises(EngineServerError, match="other tokens than it was sent"):
        prompt_scores(RequestOutput("0", None, [0, 1], plp), [0, 2], k=1)
    with pytest.raises(EngineServerError, match="no prompt logprobs.*"):
        prompt_scores(RequestOutput("0", None, [0, 1], None), [0, 1], k=1)
    with pytest.raises(EngineServerError, match="1 prompt logprobs for 2"):
        prompt_scores(RequestOutput("0", None, [0, 1], [None]), [0, 1], k=1)
    with pytest.raises(EngineServerError, match="no entry for prompt token 1"):
        prompt_scores(RequestOutput("0", None, [0, 1], [None, {4: Logprob(-1.0, 1)}]), [0, 1], 1)


def test_loglikelihood_sums_the_continuation_only() -> None:
    lm = Bigram()
    reqs = [([1, 2, 3], [4, 5]), ([7], [8]), ([9, 9], [])]
    seqs = [c + a for c, a in reqs]
    starts = [len(c) for c, _ in reqs]
    got = loglikelihoods([prompt_scores(lm.answer(s, 1), s, 1) for s in seqs], starts)
    want = [
        LogLikelihood(lm.direct(s, st), len(s) - st) for s, st in zip(seqs, starts, strict=True)
    ]
    assert [g.n_tokens for g in got] == [2, 1, 0]
    for g, w in zip(got, want, strict=True):
        assert math.isclose(g.logprob, w.logprob, rel_tol=1e-12) and g.n_tokens == w.n_tokens
    assert got[2].logprob == 0.0


class _Tok:
    """Text -> ids as whitespace-separated integers (only for comparing window layouts)."""

    eos_token_id = 0

    def __call__(self, text: str, add_special_tokens: bool = False) -> dict[str, list[int]]:
        return {"input_ids": [int(x) for x in text.split()]}


class _HfWindows(ScoringMixin):
    tokenizer = _Tok()


def test_rolling_windows_are_the_hf_engines() -> None:
    rng = np.random.default_rng(1)
    lengths = [0, 1, ROLLING_WINDOW - 1, ROLLING_WINDOW, 2 * ROLLING_WINDOW + 5]
    texts_ids = [[int(x) for x in rng.integers(1, 40, n)] for n in lengths]
    texts = [" ".join(map(str, ids)) for ids in texts_ids]
    hf_seqs, hf_reads, _, _ = _HfWindows()._rolling_windows(texts)
    seqs, owner = rolling_windows(texts_ids, 0, ROLLING_WINDOW)
    assert seqs == hf_seqs
    assert owner == [reads[0][0] for reads in hf_reads]
    assert max(len(s) for s in seqs) == ROLLING_WINDOW


def test_rolling_nll_predicts_every_token_once() -> None:
    lm = Bigram()
    rng = np.random.default_rng(2)
    texts_ids = [[int(x) for x in rng.integers(1, 40, n)] for n in (5, 30, 0, 61)]
    seqs, owner = rolling_windows(texts_ids, 0, 16)  # small windows: many boundaries
    scores = [prompt_scores(lm.answer(s, 1), s, 1) for s in seqs]
    got = rolling_nlls(scores, owner, [len(t) for t in texts_ids])
    for ids, g in zip(texts_ids, got, strict=True):
        want = -lm.direct([0, *ids], 1)  # one sequence, every token predicted once
        assert g.n_tokens == len(ids) and math.isclose(g.logprob, want, rel_tol=1e-12)
    assert got[2] == LogLikelihood(0.0, 0)


def test_topk_shift_counts_the_answer_tokens_outside_the_top_k() -> None:
    lm = Bigram(vocab=12)
    seq = [1, 2, 3, 4, 5, 6]
    s = prompt_scores(lm.answer(seq, 3), seq, 3)
    want = sum(1 for j in range(2, len(seq)) if seq[j] not in np.argsort(-lm.logp[seq[j - 1]])[:3])
    assert topk_shifts([s], [2], 3) == [TopKShift(want, 4)]
    assert topk_shifts([s], [2], 1)[0].outside >= want  # a smaller top-k leaves more out
    with pytest.raises(ValueError, match="fewer than 5"):
        topk_shifts([s], [2], 5)


def test_generated_tokens_come_from_the_one_completion() -> None:
    comp = CompletionOutput(0, "hi", [5, 6, 0], None, None, finish_reason="stop")
    assert completion_tokens(RequestOutput("0", None, [1], None, [comp])) == [5, 6, 0]
    with pytest.raises(EngineServerError, match="no completion"):
        completion_tokens(RequestOutput("0", None, [1], None, []))


def test_each_variant_gets_its_own_lora_request() -> None:
    specs = lora_specs({"legal": Path("/a/legal"), "med": Path("/a/med")})
    assert lora_for("base", specs) is None
    assert lora_for("merged:legal", specs) is None  # the merged model's own weights
    legal, med = lora_for("legal", specs), lora_for("med", specs)
    assert legal is not None and (legal.name, legal.int_id, legal.path) == ("legal", 1, "/a/legal")
    assert med is not None and (med.name, med.int_id) == ("med", 2)
    with pytest.raises(KeyError):
        lora_for("other", specs)
    assert model_for("legal", "/base", {"legal": "/m/legal"}) == "/base"
    assert model_for("merged:legal", "/base", {"legal": "/m/legal"}) == "/m/legal"


def test_lora_rank_rounds_up_to_a_rank_vllm_accepts() -> None:
    assert lora_rank([]) == 8
    assert lora_rank([{"r": 4}, {"r": 8}]) == 8
    assert lora_rank([{"r": 12}]) == 16
    assert lora_rank([{"r": 64}, {"r": 16}]) == 64
    with pytest.raises(ValueError, match="above the largest"):
        lora_rank([{"r": 1024}])


def test_adapters_on_lm_head_or_embeddings_are_flagged() -> None:
    assert risky_targets({"target_modules": ["q_proj", "v_proj"]}) == []
    assert risky_targets({"target_modules": ["q_proj", "lm_head"]}) == ["lm_head"]
    assert risky_targets({"target_modules": "q_proj", "modules_to_save": ["embed_tokens"]}) == [
        "embed_tokens"
    ]
