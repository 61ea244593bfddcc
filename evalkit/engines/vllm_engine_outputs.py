"""What the `vllm` engine sends to vLLM and how it reads vLLM's answers back: pure functions
over plain values (no vLLM import), so the mapping is unit-tested on a machine without a GPU
with objects shaped like vLLM's.

vLLM's `RequestOutput.prompt_logprobs` (vllm/outputs.py, vllm/logprobs.py) is a sequence
with one entry per prompt token: `None` for the first token (nothing predicts it), then for
token j a `dict[token_id, Logprob]` holding the top-k tokens of the distribution that
predicts position j (`Logprob.rank` 1..k) plus token j itself when it is outside them (rank
k+1 in older releases, its true vocabulary rank in newer ones). `Logprob.logprob` is
log p(token | tokens before it), computed from the raw logits (V1 applies no temperature or
penalty to prompt logprobs). Entry j is therefore aligned the OpenAI way: `aligned`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evalkit.engines.base import LogLikelihood, Progress, TopKShift
from evalkit.engines.openai_client import EngineServerError

# ranks vLLM accepts for max_lora_rank (vllm/config: LoRAConfig); 8 is the smallest in
# every release since 0.6
LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)
# LoRA targets whose prompt-logprob path vLLM has mishandled (vLLM #51594: an lm_head delta
# dropped from prompt_logprobs; embeddings go through the same extra-vocab path)
RISKY_TARGETS = ("lm_head", "embed_tokens", "wte", "embed_out")


@dataclass(frozen=True)
class PromptScores:
    """One prompt's logprobs as vLLM gave them: for each position j >= 1, log p(token j |
    tokens before it) and the most likely token id there; position 0 has neither."""

    tokens: list[int]
    logprobs: list[float | None]
    top: list[tuple[int, ...]]  # the top-k ids at each position, most likely first

    def top1(self, j: int) -> int | None:
        """The most likely token id at the position that predicts token j."""
        return self.top[j][0] if 0 < j < len(self.top) and self.top[j] else None


def _field(obj: Any, name: str) -> Any:
    return obj[name] if isinstance(obj, Mapping) else getattr(obj, name)


def prompt_scores(output: Any, seq: Sequence[int], k: int) -> PromptScores:
    """Read one `RequestOutput` for the token sequence `seq` it was asked for, with
    `prompt_logprobs=k`. Refuses (exit 3) an answer for other tokens or without prompt
    logprobs: a log-likelihood is never summed over tokens it was not asked about."""
    got = list(_field(output, "prompt_token_ids") or [])
    if got != list(seq):
        where = next((i for i, (a, b) in enumerate(zip(got, seq, strict=False)) if a != b), None)
        raise EngineServerError(
            f"vLLM scored other tokens than it was sent ({len(got)} tokens for {len(seq)}"
            + (f", first difference at position {where}" if where is not None else "")
            + ")",
            hint="Report it with the vLLM version; evalkit sends token ids and reads them back.",
        )
    plp = _field(output, "prompt_logprobs")
    if plp is None or len(plp) != len(seq):
        raise EngineServerError(
            "vLLM returned no prompt logprobs for a scoring request"
            if plp is None
            else f"vLLM returned {len(plp)} prompt logprobs for {len(seq)} prompt tokens",
            hint="This vLLM release may not support prompt_logprobs with LoRA (vLLM #29955); "
            "leave log-likelihood and perplexity metrics out, or use engine kind hf.",
        )
    logprobs: list[float | None] = [None]
    top: list[tuple[int, ...]] = [()]
    for j in range(1, len(seq)):
        entry = plp[j]
        if not entry or seq[j] not in entry:
            raise EngineServerError(
                f"vLLM's prompt logprobs have no entry for prompt token {j} (id {seq[j]})"
            )
        logprobs.append(float(_field(entry[seq[j]], "logprob")))
        top.append(_top_k(entry, k))
    return PromptScores(list(seq), logprobs, top)


def _top_k(entry: Mapping[int, Any], k: int) -> tuple[int, ...]:
    """The k most likely ids of one position's entry. The prompt token, when it is not
    among them, is the entry's extra (k+1-th) key: ordered by logprob it comes last, and
    on an exact tie its rank (k+1, or its true rank) puts it after the top-k."""

    def order(t: int) -> tuple[float, int]:
        rank = _field(entry[t], "rank")
        return (-float(_field(entry[t], "logprob")), rank if rank is not None else 1 << 30)

    return tuple(int(t) for t in sorted(entry, key=order)[: max(k, 1)])


def span_sum(scores: PromptScores, start: int) -> float:
    """Sum of log p(token j | before) for j >= start (start >= 1)."""
    if start < 1:
        raise ValueError("position 0 has no logprob")
    total = 0.0
    for j in range(start, len(scores.tokens)):
        value = scores.logprobs[j]
        assert value is not None  # prompt_scores fills every position >= 1
        total += value
    return total


def loglikelihoods(scores: list[PromptScores], starts: list[int]) -> list[LogLikelihood]:
    """log p(continuation | context) per request: each sequence is context + continuation,
    the continuation starting at `starts[i]`."""
    return [
        LogLikelihood(span_sum(s, st), len(s.tokens) - st)
        for s, st in zip(scores, starts, strict=True)
    ]


def rolling_windows(
    texts_ids: list[list[int]], sep: int, window: int
) -> tuple[list[list[int]], list[int]]:
    """Each text's tokens in disjoint windows as the hf engine makes them: every token is
    predicted once, the first from the separator, each later window opened by the last
    token of the one before. Returns the sequences and the text each belongs to."""
    if window < 2:
        raise ValueError("a rolling window needs at least 2 tokens")
    seqs: list[list[int]] = []
    owner: list[int] = []
    for t, ids in enumerate(texts_ids):
        prev = sep
        for start in range(0, len(ids), window - 1):
            chunk = ids[start : start + window - 1]
            seqs.append([prev, *chunk])
            owner.append(t)
            prev = chunk[-1]
    return seqs, owner


def rolling_nlls(
    scores: list[PromptScores], owner: list[int], counts: list[int]
) -> list[LogLikelihood]:
    """Per text: the NLL (nats, positive) summed over its windows, and its token count."""
    nll = [0.0] * len(counts)
    for s, t in zip(scores, owner, strict=True):
        nll[t] -= span_sum(s, 1)
    return [LogLikelihood(nll[t], counts[t]) for t in range(len(counts))]


def topk_shifts(scores: list[PromptScores], starts: list[int], k: int) -> list[TopKShift]:
    """Open-shift from the base's prompt logprobs (asked with prompt_logprobs >= k): the
    continuation tokens outside the base's top-k at their prefix."""
    out = []
    for s, st in zip(scores, starts, strict=True):
        outside = 0
        for j in range(st, len(s.tokens)):
            if len(s.top[j]) < k:
                raise ValueError(f"position {j} holds {len(s.top[j])} top ids, fewer than {k}")
            outside += s.tokens[j] not in s.top[j][:k]
        out.append(TopKShift(outside, len(s.tokens) - st))
    return out


def completion_tokens(output: Any) -> list[int]:
    """The generated token ids of a `RequestOutput` (its one `CompletionOutput`). The hf
    engine's decoding and stop-string cut are applied to them afterwards, so both engines
    turn the same tokens into the same text."""
    outs = _field(output, "outputs")
    if not outs:
        raise EngineServerError("vLLM returned a request with no completion")
    return [int(t) for t in _field(outs[0], "token_ids")]


@dataclass(frozen=True)
class LoraSpec:
    """What becomes `vllm.lora.request.LoRARequest(name, int_id, path)`: vLLM keys its
    adapter slots by the integer id (>= 1), so each adapter gets its own, stable for a run."""

    name: str
    int_id: int
    path: str


def lora_specs(adapters: Mapping[str, Path]) -> dict[str, LoraSpec]:
    """One LoRA request per adapter, ids 1..N in the suite's order."""
    return {n: LoraSpec(n, i, str(p)) for i, (n, p) in enumerate(adapters.items(), start=1)}


def lora_for(variant: str, specs: Mapping[str, LoraSpec]) -> LoraSpec | None:
    """The LoRA request a variant's rows carry: none for the base and for a merged variant
    (its weights are the merged model's), the adapter's own for `NAME`."""
    if variant == "base" or variant.startswith("merged:"):
        return None
    if variant not in specs:
        raise KeyError(variant)
    return specs[variant]


def model_for(variant: str, base_dir: str, merged: Mapping[str, str]) -> str:
    """The model directory the LLM must hold for a variant: the base, or for `merged:NAME`
    the exported merged directory."""
    if not variant.startswith("merged:"):
        return base_dir
    return merged[variant.removeprefix("merged:")]


def adapter_config(path: Path) -> dict[str, Any]:
    try:
        data = json.loads((path / "adapter_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def lora_rank(configs: list[dict[str, Any]]) -> int:
    """max_lora_rank for these adapters: their largest `r`, rounded up to a rank vLLM
    accepts."""
    r = max([int(c.get("r") or 8) for c in configs] or [8])
    for allowed in LORA_RANKS:
        if r <= allowed:
            return allowed
    raise ValueError(f"LoRA rank {r} is above the largest vLLM accepts ({LORA_RANKS[-1]})")


def risky_targets(config: dict[str, Any]) -> list[str]:
    """The adapter's targets on lm_head or the embeddings (by module name), which vLLM has
    scored wrong in prompt logprobs; the parity check measures whether this release does."""
    targets = config.get("target_modules") or []
    if isinstance(targets, str):  # peft allows a regex string
        targets = [targets]
    saved = config.get("modules_to_save") or []
    names = [str(t) for t in [*targets, *saved]]
    return sorted({n for n in names for r in RISKY_TARGETS if r in n})


class ParityReads:
    """What the parity check reads of an engine (decide/parity.py): prompt logprobs of
    token sequences under the active variant, and each token's value and top-1 piece.
    Needs `tokenizer`, `k` and `_scores(seqs, k)`."""

    tokenizer: Any
    k: int

    def _scores(self, seqs: list[list[int]], k: int, *, base: bool = False) -> list[PromptScores]:
        raise NotImplementedError

    def echo(self, seqs: list[list[int]], progress: Progress | None = None) -> list[PromptScores]:
        """Prompt logprobs of token sequences under the active variant."""
        out = self._scores(seqs, self.k)
        if progress:
            progress(len(seqs))
        return out

    def read(
        self,
        c: PromptScores,
        seq: list[int],
        j: int,
        alignment: str,
        first: dict[int, dict[str, float]] | None = None,
    ) -> float:
        """Token j's log-probability (vLLM's are always aligned)."""
        value = c.logprobs[j] if 0 < j < len(c.logprobs) else None
        if value is None:
            raise EngineServerError(f"vLLM gave no logprob for prompt token {j}")
        return value

    def top1(self, c: PromptScores, j: int, alignment: str) -> str | None:
        """The most likely piece at the position that predicts token j."""
        top = c.top1(j)
        return None if top is None else self._piece(top)

    def _piece(self, token: int) -> str:
        return str(self.tokenizer.decode([token], clean_up_tokenization_spaces=False))

    def _first_after(self, seqs: list[list[int]], starts: list[int]) -> dict[int, dict[str, float]]:
        return {}  # only a shifted server needs it
