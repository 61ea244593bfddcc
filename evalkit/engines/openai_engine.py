"""The `openai` engine: any OpenAI-compatible server (vLLM, SGLang, llama.cpp, TGI) through
`/v1/completions`, each variant a served model name (`engine.models`).

- Generation is greedy (temperature 0) on the base's chat template applied here, with the
  base's tokenizer (`base:`), so served and local runs see the same prompt text.
- Log-likelihoods come from prompt logprobs (`echo: true`, `logprobs: k`). The server's
  tokens are mapped back to the base tokenizer's; where they do not line up the request
  is refused (exit 3), never scored on other tokens.
- Prompt logprobs are read `aligned` (OpenAI's meaning: entry j is log p(token j | tokens
  before it)) or `shifted` (llama-cpp-python 0.3.36 gives, at entry j, the distribution
  *after* token j). Shifted servers are realigned from the previous entry's top-k; a token
  outside it is refused. `auto` leaves the choice to the parity check, which measures both
  readings against transformers (evalkit.decide.parity).
- KL against the base and full logits are not available from a server: the engine
  declares so, and a plan that needs them is refused before the run.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from evalkit.engines.base import ChatPrompt, LogLikelihood, Progress, RollingScore, TopKShift
from evalkit.engines.chat import end_of_turn, render_chat
from evalkit.engines.openai_client import Completion, CompletionClient, EngineServerError
from evalkit.engines.registry import EngineCapabilities
from evalkit.errors import InputError
from evalkit.paths import digest_files

log = logging.getLogger(__name__)

ROLLING_WINDOW = 1024
# A server returns top-k logprobs, not distributions: no KL against the base, no full
# logits, no open-shift (the base's top-k over another variant's answers is not asked for).
SERVED_CAPABILITIES = EngineCapabilities(kl=False, probe_logits=False, open_shift=False)
ALIGNMENTS = ("auto", "aligned", "shifted")


class OpenAIEngine:
    """An Engine over a served endpoint; see the module docstring."""

    def __init__(self, request: Any) -> None:
        from transformers import AutoTokenizer

        from evalkit.engines.resolve import resolve_model
        from evalkit.scoring.judges.openai_provider import ProviderSettings

        opts: dict[str, Any] = dict(request.options)
        self.name = request.base
        self.options = opts
        self.models: dict[str, str] = dict(opts.get("models") or {})
        missing = [v for v in ("base", *request.adapters) if v not in self.models]
        if missing:
            raise InputError(
                f"engine.models has no served model name for {', '.join(missing)}",
                hint="Add `engine: {models: {" + ", ".join(f"{m}: NAME" for m in missing) + "}}`.",
            )
        key_env = opts.get("api_key_env") or "OPENAI_API_KEY"
        settings = ProviderSettings(
            base_url=str(opts.get("base_url")),
            model=self.models["base"],
            api_key=os.environ.get(key_env, "none"),  # never written to any output
            concurrency=int(opts.get("concurrency", 4)),
            timeout_s=float(opts.get("timeout_s", 120.0)),
            max_retries=int(opts.get("max_retries", 3)),
        )
        self.client = CompletionClient(settings)
        self.top_k = int(opts.get("top_logprobs", 20))
        self.extra_body: dict[str, Any] = dict(opts.get("extra_body") or {})
        self.alignment: str = str(opts.get("prompt_logprobs", "auto"))
        self.tokenizer = AutoTokenizer.from_pretrained(
            resolve_model(request.base, relative_to=request.relative_to).source
        )
        self._adapter_fp = {
            n: digest_files([p / "adapter_config.json", p / "adapter_model.safetensors"])
            for n, p in request.adapters.items()
        }
        self._active = "base"
        self._ambiguous_pieces: set[str] | None = None
        # read by capabilities_of(): metrics needing these are unscored, saying why
        self.capabilities = SERVED_CAPABILITIES
        self.device = _Device()

    # -- identity ---------------------------------------------------------------------

    def fingerprint(self, variant: str) -> str:
        # The served name and what the suite declares it to be: the host is left out so a
        # restarted server (another port) reuses the finished work in the result cache.
        served = self._served(variant)
        declared = self._adapter_fp.get(variant.removeprefix("merged:"), "")
        return f"openai:{self.name}:{served}:{declared}:{self.alignment}"

    def describe(self) -> dict[str, Any]:
        """The engine's settings for results.json (no key, no credentials in the URL)."""
        from evalkit.engines.server_info import server_identity

        return {
            "kind": "openai",
            "endpoint": self.client.settings.endpoint,
            "models": dict(self.models),
            "concurrency": self.client.settings.concurrency,
            "top_logprobs": self.top_k,
            "prompt_logprobs": self.alignment,
            "extra_body": dict(self.extra_body),
            **server_identity(self.client.settings),  # base_url, the server's version
        }

    def _served(self, variant: str) -> str:
        if variant not in self.models:
            raise InputError(
                f"engine.models has no served model name for variant '{variant}'",
                hint=f"Add `{variant}: NAME` under engine.models, or leave the variant out.",
            )
        return self.models[variant]

    @contextmanager
    def variant(self, name: str) -> Iterator[None]:
        self._served(name)
        self._active = name
        try:
            yield
        finally:
            self._active = "base"

    def close(self) -> None:
        self.client.close()

    # -- requests -------------------------------------------------------------------

    def _body(self, **kw: Any) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self._served(self._active), "temperature": 0.0, **kw}
        if self.extra_body:
            body["extra_body"] = self.extra_body
        return body

    def generate(
        self,
        prompts: list[ChatPrompt],
        *,
        max_new_tokens: int,
        stop: tuple[str, ...] = (),
        progress: Progress | None = None,
    ) -> list[str]:
        from evalkit.engines.hf import _cut_at_stops

        stops = [s for s in (*stop, end_of_turn(self.tokenizer)) if s]
        bodies = [
            self._body(
                prompt=render_chat(self.tokenizer, p.user, system=p.system),
                max_tokens=max_new_tokens,
                stop=stops[:4],  # the OpenAI API takes at most four; the rest are cut here
            )
            for p in prompts
        ]
        out = self.client.complete_all(bodies, progress)
        return [_cut_at_stops(c.text, stops, self.tokenizer) for c in out]

    def _encode_chat(self, prompt: ChatPrompt) -> list[int]:
        text = render_chat(self.tokenizer, prompt.user, system=prompt.system)
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def loglikelihood(
        self, requests: list[tuple[ChatPrompt, str]], *, progress: Progress | None = None
    ) -> list[LogLikelihood]:
        seqs, starts = [], []
        for prompt, cont in requests:
            ctx = self._encode_chat(prompt)
            c = list(self.tokenizer(cont, add_special_tokens=False)["input_ids"])
            seqs.append(ctx + c)
            starts.append(len(ctx))
        per_token = self.token_logprobs(seqs, starts, progress=progress)
        return [
            LogLikelihood(sum(lp), len(s) - st)
            for lp, s, st in zip(per_token, seqs, starts, strict=True)
        ]

    def rolling_nll(
        self, texts: list[str], *, progress: Progress | None = None
    ) -> list[LogLikelihood]:
        # As the hf engine: every token predicted once, the first from a separator token,
        # windows of ROLLING_WINDOW tokens each opened by the last token of the one before.
        sep = int(self.tokenizer.eos_token_id)
        seqs: list[list[int]] = []
        owner: list[int] = []
        counts = []
        for t, text in enumerate(texts):
            ids = list(self.tokenizer(text, add_special_tokens=False)["input_ids"])
            counts.append(len(ids))
            prev = sep
            for start in range(0, len(ids), ROLLING_WINDOW - 1):
                chunk = ids[start : start + ROLLING_WINDOW - 1]
                seqs.append([prev, *chunk])
                owner.append(t)
                prev = chunk[-1]
        per_token = self.token_logprobs(seqs, [1] * len(seqs))
        nll = [0.0] * len(texts)
        for t, lp in zip(owner, per_token, strict=True):
            nll[t] -= sum(lp)
        if progress:
            progress(len(texts))
        return [LogLikelihood(nll[t], counts[t]) for t in range(len(texts))]

    def rolling_kl(
        self, texts: list[str], *, progress: Progress | None = None
    ) -> list[RollingScore]:
        raise InputError(
            "the openai engine cannot compute KL(base || variant): a server returns top-k "
            "logprobs, not the distributions the KL needs",
            hint="Leave the KL probe out (probes.builtin without prose-kl), or use engine kind hf.",
        )

    def base_topk_shift(
        self,
        requests: list[tuple[ChatPrompt, str]],
        *,
        k: int,
        progress: Progress | None = None,
    ) -> list[TopKShift]:
        raise InputError("the openai engine does not compute open-shift (declared off)")

    def probe_logits(self, texts: list[str]) -> list[Any]:
        raise InputError(
            "the openai engine has no full logits; integrity checks use the local reference"
        )

    # -- prompt logprobs ------------------------------------------------------------

    def echo(self, seqs: list[list[int]], progress: Progress | None = None) -> list[Completion]:
        """The server's prompt logprobs for token sequences, sent as their text; each
        answer's tokens checked against ours."""
        bodies = [
            self._body(
                prompt=self.tokenizer.decode(s, clean_up_tokenization_spaces=False),
                max_tokens=1,  # llama-cpp-python's server crashes on max_tokens 0
                echo=True,
                logprobs=self.top_k,
            )
            for s in seqs
        ]
        out = self.client.complete_all(bodies, progress)
        return [self._line_up(s, c) for s, c in zip(seqs, out, strict=True)]

    def _piece(self, token: int) -> str:
        return str(self.tokenizer.decode([token], clean_up_tokenization_spaces=False))

    def _ambiguous(self) -> set[str]:
        """Pieces that more than one token decodes to once broken UTF-8 is dropped (as
        llama-cpp-python's server does): a top-k keyed by text cannot tell them apart."""
        if self._ambiguous_pieces is None:
            seen: dict[str, int] = {}
            for i in range(len(self.tokenizer)):
                key = self._piece(i).replace("\ufffd", "")
                seen[key] = seen.get(key, 0) + 1
            self._ambiguous_pieces = {k for k, n in seen.items() if n > 1} | {""}
        return self._ambiguous_pieces

    def _line_up(self, seq: list[int], c: Completion) -> Completion:
        """The answer with entry j for our token j, or a refusal where the server's tokens
        are not ours."""
        if c.tokens is None or c.token_logprobs is None or c.top_logprobs is None:
            raise EngineServerError(
                f"the engine server at {self.client.settings.endpoint} returned no prompt "
                "logprobs (echo + logprobs)",
                hint="Serve with prompt logprobs enabled (llama.cpp: --logits_all true), or "
                "leave log-likelihood and perplexity metrics out of the suite.",
            )
        ours = [self._piece(t) for t in seq]
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

    def token_logprobs(
        self, seqs: list[list[int]], starts: list[int], progress: Progress | None = None
    ) -> list[list[float]]:
        """log p(seq[j] | seq[:j]) for j >= starts[i] (starts >= 1), read as
        `self.alignment` says."""
        if self.alignment not in ("aligned", "shifted"):
            raise EngineServerError(
                "the openai engine does not know how this server aligns prompt logprobs",
                hint="The parity check decides it; set engine.prompt_logprobs: aligned or "
                "shifted to skip that.",
            )
        out = self.echo(seqs, progress)
        first = self._first_after(seqs, starts) if self.alignment == "shifted" else {}
        return [
            [self.read(c, s, j, self.alignment, first) for j in range(st, len(s))]
            for c, s, st in zip(out, seqs, starts, strict=True)
        ]

    def _first_after(self, seqs: list[list[int]], starts: list[int]) -> dict[int, dict[str, float]]:
        """A shifted server nulls the distribution after the first token; a one-token
        completion after it gives that distribution's top-k (completion logprobs are
        aligned there)."""
        need = sorted({s[0] for s, st in zip(seqs, starts, strict=True) if st <= 1})
        if not need:
            return {}
        bodies = [
            self._body(prompt=self._piece(t), max_tokens=1, logprobs=self.top_k, echo=False)
            for t in need
        ]
        got = self.client.complete_all(bodies)
        return {
            t: dict((c.top_logprobs or [None])[0] or {}) for t, c in zip(need, got, strict=True)
        }

    def read(
        self,
        c: Completion,
        seq: list[int],
        j: int,
        alignment: str,
        first: dict[int, dict[str, float]] | None = None,
    ) -> float:
        """Token j's log-probability from one echoed answer, under an alignment."""
        assert c.token_logprobs is not None and c.top_logprobs is not None
        if alignment == "aligned" or c.dropped_first:
            # a dropped first token moves a shifted server's entries back into line
            value = c.token_logprobs[j]
            if value is None:
                raise EngineServerError(f"the server gave no logprob for prompt token {j}")
            return float(value)
        top = c.top_logprobs[j - 1] if j >= 2 else (first or {}).get(seq[0])
        piece = self._piece(seq[j])
        if not top or piece not in top or piece.replace("\ufffd", "") in self._ambiguous():
            raise EngineServerError(
                f"token {piece!r} (position {j}) is outside the top-{self.top_k} logprobs "
                "this server gives for its position, and its prompt logprobs are shifted by "
                "one, so its own value cannot be used",
                hint="Raise engine.top_logprobs, or serve with an engine whose prompt "
                "logprobs are aligned (vLLM, SGLang).",
            )
        return float(top[piece])

    def top1(self, c: Completion, j: int, alignment: str) -> str | None:
        """The server's most likely piece at the position that predicts token j."""
        assert c.top_logprobs is not None
        idx = j if alignment == "aligned" or c.dropped_first else j - 1
        if idx < 1 or idx >= len(c.top_logprobs):
            return None
        top = c.top_logprobs[idx]
        return max(top, key=lambda k: top[k]) if top else None


class _Device:
    """What `results.json` calls the device: the model runs on the server."""

    type = "server"


def _factory(request: Any) -> OpenAIEngine:
    if not request.options.get("base_url"):
        raise InputError(
            "engine kind openai needs engine.base_url",
            hint="e.g. base_url: http://127.0.0.1:8000/v1",
        )
    return OpenAIEngine(request)


def _register() -> None:
    from evalkit.engines.registry import register_engine

    register_engine(
        "openai",
        _factory,
        SERVED_CAPABILITIES,
        "any OpenAI-compatible server through /v1/completions",
    )


_register()
