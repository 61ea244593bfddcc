"""The in-process judge (`judge.provider.hf:`): the judge model runs in evalkit's own
process through transformers, in batches, with the verdict read from its distribution.

A served judge with structured output is asked for `{"score": <enum>, "reason": ...}` and
its grammar lets the model write only allowed tokens. Here the same reply is written the
same way, without a server: the prompt ends with the opening of the verdict (`{"score": `
or `{"winner": "`), one forward reads the next-token distribution, the verdict is the
allowed value the model finds most likely (greedy, as a grammar-constrained sampler picks
it), and the model then writes the reason after `, "reason": "` until its closing quote
or `max_tokens`. The allowed values' probabilities are the top logprobs a served judge
would return, so the probability-weighted score costs nothing extra.

Why: on 2 CPU cores a llama.cpp judge call of the demo took 1.6 s (prompt evaluation of
the Q4_1 model at about 310 tokens/s, one request at a time); here the prompts of a
batch share one forward. Greedy only (temperature 0); the judge model loads from a local
directory, a .gguf file or `builtin:NAME`, like a base model, and never from a hub.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evalkit.errors import InputError
from evalkit.scoring.judges.openai_provider import CallStats, Reply

log = logging.getLogger(__name__)

REASON_OPENER = ', "reason": "'


@dataclass(frozen=True)
class HFJudgeSettings:
    source: str  # a local model directory (resolved by engines.resolve)
    max_tokens: int = 64
    structured: bool = True
    logprobs: bool = True
    batch_size: int = 16
    dtype: str = "float32"


@dataclass(frozen=True)
class VerdictTokens:
    """How a schema's verdict is written: the text that opens it, each allowed value and
    its token, and the text that closes a string value."""

    key: str
    opening: str
    values: tuple[Any, ...]
    tokens: tuple[int, ...]
    closing: str


def verdict_tokens(tokenizer: Any, schema: dict[str, Any]) -> VerdictTokens:
    """The verdict property (the schema's first) as tokens. Raises InputError unless each
    allowed value is one token of its own (a scale past 9 on a model that writes digits
    one by one is not), since the verdict is chosen in one step."""
    key, prop = next(iter(schema["properties"].items()))
    values = tuple(prop.get("enum") or ())
    is_string = bool(values) and all(isinstance(v, str) for v in values)
    texts = [v if is_string else json.dumps(v) for v in values]
    tokens = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    if not values or any(len(t) != 1 for t in tokens) or len({t[0] for t in tokens}) < len(tokens):
        raise InputError(
            f"the hf judge writes its verdict '{key}' as one token, and the allowed values "
            f"({', '.join(texts) or 'none'}) are not one token each with this model's tokenizer",
            hint="Use a scale of at most 9 points, or a served judge (serve: or base_url:).",
        )
    opening = f'{{"{key}": ' + ('"' if is_string else "")
    return VerdictTokens(
        key, opening, values, tuple(t[0] for t in tokens), '"' if is_string else ""
    )


def resolve_dtype(dtype: str) -> str:
    """`auto`: bfloat16 where it is fast, float32 elsewhere. On a CPU with AMX or
    AVX512-BF16 a bfloat16 forward of the default model ran 3.8 times faster than float32
    (8 prompts of 256 tokens, 2 threads); without them it is emulated and slower. The
    judge's numbers stay close to a served judge's: llama.cpp computes its dot products
    on 8-bit activations."""
    if dtype != "auto":
        return dtype
    import torch

    if torch.cuda.is_available():
        return "bfloat16"
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:  # not Linux: no cheap way to tell, so the safe choice
        return "float32"
    return "bfloat16" if {"amx_bf16", "avx512_bf16"} & set(flags) else "float32"


class HFJudgeClient:
    """Answers judge requests like `JudgeClient.run_all`, from a model in this process."""

    def __init__(self, settings: HFJudgeSettings) -> None:
        import torch

        from evalkit.engines.hf_load import load_for_inference

        self.settings = settings
        self.stats = CallStats(structured_supported=settings.structured)
        t0 = time.perf_counter()
        # on the GPU where there is one (`auto` chose bfloat16 for it)
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.tokenizer, self.model = load_for_inference(
            settings.source,
            dtype=settings.dtype,
            device=self.device,
            what=f"the judge model {settings.source}",
            hint="Point judge.provider.hf at a model directory with its tokenizer, a "
            ".gguf file or builtin:smollm2-135m-instruct.",
        )
        log.info("in-process judge %s loaded in %.1fs", settings.source, time.perf_counter() - t0)

    def close(self) -> None:
        self.model = None

    def run_all(
        self,
        requests: list[tuple[list[dict[str, str]], dict[str, Any] | None]],
        on_done: Any = None,
    ) -> list[Reply]:
        """One reply per request, in order. Requests with the same schema run together."""
        replies: list[Reply | None] = [None] * len(requests)
        groups: dict[str, list[int]] = {}
        for i, (_, schema) in enumerate(requests):
            groups.setdefault(json.dumps(schema, sort_keys=True), []).append(i)
        for idx in groups.values():
            schema = requests[idx[0]][1]
            messages = [requests[i][0] for i in idx]
            got = self._run(messages, schema if self.settings.structured else None)
            for i, reply in zip(idx, got, strict=True):
                replies[i] = reply
            if on_done:
                on_done(len(idx))
        self.stats.calls += len(requests)
        self.stats.attempts += len(requests)
        return [r for r in replies if r is not None]

    def _prompt(self, messages: list[dict[str, str]]) -> str:
        return str(
            self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        )

    def _encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _run(
        self, messages: list[list[dict[str, str]]], schema: dict[str, Any] | None
    ) -> list[Reply]:
        from evalkit.engines.hf_generate import generate_greedy

        s = self.settings
        if schema is None:  # structured: false: the reply as the model writes it
            toks = generate_greedy(
                self.model,
                self.tokenizer,
                [self._encode(self._prompt(m)) for m in messages],
                max_new_tokens=s.max_tokens,
                batch_size=s.batch_size,
                device=self.device,
            )
            return [self._free_reply(t) for t in toks]

        verdict = verdict_tokens(self.tokenizer, schema)
        closing = self._encode(verdict.closing) if verdict.closing else []
        opener = self._encode(REASON_OPENER)
        # what a served judge counts against max_tokens: the whole reply, opening included
        room = s.max_tokens - len(self._encode(verdict.opening)) - 1 - len(closing) - len(opener)
        fed_after = closing + (opener if room > 0 else [])
        chosen: dict[int, tuple[int, list[tuple[str, float]]]] = {}

        def steer(logits: Any, rows: list[int]) -> Any:
            import torch

            allowed = torch.tensor(verdict.tokens, device=logits.device)
            logprobs = torch.log_softmax(logits.float(), dim=-1)[:, allowed].cpu()
            fed = []
            for row, i in enumerate(rows):
                order = logprobs[row].argsort(descending=True).tolist()
                top = [(str(verdict.values[j]), float(logprobs[row, j])) for j in order]
                chosen[i] = (order[0], top)
                fed.append([verdict.tokens[order[0]], *fed_after])
            return torch.tensor(fed)

        toks = generate_greedy(
            self.model,
            self.tokenizer,
            [self._encode(self._prompt(m) + verdict.opening) for m in messages],
            max_new_tokens=max(room, 0),
            batch_size=s.batch_size,
            device=self.device,
            stops=['"'],
            steer=steer,
            steer_len=1 + len(fed_after),
        )
        return [self._reply(verdict, chosen[i], toks[i], room) for i in range(len(messages))]

    def _reply(
        self,
        verdict: VerdictTokens,
        choice: tuple[int, list[tuple[str, float]]],
        reason_tokens: list[int],
        room: int,
    ) -> Reply:
        j, top = choice
        value = json.dumps(verdict.values[j])
        if room <= 0:  # no room for a reason: the verdict alone, closed
            return self._with_top(Reply(f'{{"{verdict.key}": {value}}}', "stop"), top)
        reason = self.tokenizer.decode(reason_tokens, skip_special_tokens=True)
        ended = '"' in reason or (bool(reason_tokens) and reason_tokens[-1] in self._eos())
        reason = reason.split('"', 1)[0]
        text = f'{{"{verdict.key}": {value}{REASON_OPENER}{reason}' + ('"}' if ended else "")
        return self._with_top(Reply(text, "stop" if ended else "length"), top)

    def _with_top(self, reply: Reply, top: list[tuple[str, float]]) -> Reply:
        reply.attempts = 1
        if self.settings.logprobs:
            reply.top_logprobs = [top]
        return reply

    def _free_reply(self, tokens: list[int]) -> Reply:
        ended = bool(tokens) and tokens[-1] in self._eos()
        text = self.tokenizer.decode(tokens, skip_special_tokens=True)
        return Reply(text.strip(), "stop" if ended else "length", attempts=1)

    def _eos(self) -> set[int]:
        from evalkit.engines.hf_generate import eos_ids

        return eos_ids(self.model)
