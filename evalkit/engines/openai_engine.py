"""The `openai` engine: any OpenAI-compatible server (vLLM, SGLang, llama.cpp, TGI), each
variant a served model name (`engine.models`).

- Generation is greedy (temperature 0). `engine.api: completions` (the default) applies
  the base's chat template here, with the base's tokenizer (`base:`), and sends the text
  to `/v1/completions`, so served and local runs see the same prompt text.
  `engine.api: chat` sends the system and user turns to `/v1/chat/completions` and the
  server applies its own template (for servers that must).
- Log-likelihoods come from prompt logprobs (`echo: true`, `logprobs: k` on
  `/v1/completions`), mapped back to the base tokenizer's tokens (engines.prompt_logprobs);
  where the server's tokens do not line up the request is refused (exit 3), never scored
  on other tokens. Prompt logprobs are read `aligned` or `shifted` (llama-cpp-python); `auto`
  leaves the choice to the parity check (evalkit.decide.parity).
- What cannot be read is unscored with the reason, never a number: a server that cannot
  return prompt logprobs (all log-likelihood metrics), a text with a token outside a
  shifted server's top-k (that text's perplexity), and in chat mode the log-likelihood of
  a reference or an option given a chat prompt: chat completions return no prompt
  logprobs on a generic server, and the client cannot know the server's template. Texts
  scored without a template (rolling perplexity, the KL probe, the parity check) still go
  through `/v1/completions` in chat mode. (vLLM's chat completions take `prompt_logprobs:
  k` as an extra parameter and answer with `prompt_logprobs` and `prompt_token_ids` over
  the templated prompt; sent with the reference as a final assistant message,
  `add_generation_prompt: false` and `continue_final_message: true`, it would give the
  reference's log-likelihood under the server's template. Not built: llama.cpp's server,
  the one these tests can run, has no such field.)
- The KL probe (`rolling_kl`) is computed from the base's and the variant's top-k prompt
  logprobs at the same positions: a lower bound on KL(base ‖ variant), derived in
  evalkit.engines.served_kl, and marked approximated in results.json (`engine.
  approximations`) and the run's warnings. The base's top-k is taken once per text and
  reused for every variant. Full logits and open-shift are not available from a server:
  the engine declares so (those checks use the local reference, that metric is unscored).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from evalkit.engines.base import ChatPrompt, LogLikelihood, Progress, TopKShift
from evalkit.engines.chat import (
    cut_at_stops,
    encode_chat,
    generation_stops,
    render_chat,
)
from evalkit.engines.openai_client import (
    Completion,
    CompletionClient,
    NoPromptLogprobs,
)
from evalkit.engines.prompt_logprobs import PromptReader, TopK
from evalkit.engines.registry import EngineCapabilities
from evalkit.engines.served_rolling import ServedRolling
from evalkit.errors import InputError
from evalkit.paths import digest_files

log = logging.getLogger(__name__)

# A server returns top-k logprobs, not distributions: the KL is approximated from them (a
# lower bound), there are no full logits, and no open-shift (the base's top-k over another
# variant's answers is not asked for).
SERVED_CAPABILITIES = EngineCapabilities(kl=True, probe_logits=False, open_shift=False)
ALIGNMENTS = ("auto", "aligned", "shifted")
APIS = ("completions", "chat")

NO_CHAT_LOGPROBS = (
    "engine.api is chat: the server applies its own chat template and its chat "
    "completions return no prompt logprobs, so log p(continuation | prompt) cannot be "
    "read (use engine.api: completions to score it)"
)


class OpenAIEngine(ServedRolling):
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
        self.api: str = str(opts.get("api") or "completions")
        if self.api not in APIS:
            raise InputError(f"engine.api must be one of {', '.join(APIS)}, not {self.api!r}")
        self.tokenizer = AutoTokenizer.from_pretrained(
            resolve_model(request.base, relative_to=request.relative_to).source
        )
        self.reader = PromptReader(self.tokenizer, self.top_k, settings.endpoint)
        self._adapter_fp = {
            n: digest_files([p / "adapter_config.json", p / "adapter_model.safetensors"])
            for n, p in request.adapters.items()
        }
        self._active = "base"
        # served model -> why it gives no prompt logprobs, once it refused: not asked again
        self._no_logprobs: dict[str, str] = {}
        ServedRolling.__init__(self)
        # read by capabilities_of(): metrics needing these are unscored, saying why
        self.capabilities = (
            SERVED_CAPABILITIES
            if self.api == "completions"
            else EngineCapabilities(
                loglikelihood=False, kl=True, probe_logits=False, open_shift=False
            )
        )
        self.device = _Device()

    # -- identity ---------------------------------------------------------------------

    def fingerprint(self, variant: str) -> str:
        # The served name and what the suite declares it to be: the host is left out so a
        # restarted server (another port) reuses the finished work in the result cache.
        # The api changes the prompt text, top_logprobs the KL's approximation.
        served = self._served(variant)
        declared = self._adapter_fp.get(variant.removeprefix("merged:"), "")
        return f"openai:{self.name}:{served}:{declared}:{self.alignment}:{self.api}:top{self.top_k}"

    def describe(self) -> dict[str, Any]:
        """The engine's settings for results.json (no key, no credentials in the URL)."""
        from evalkit.engines.server_info import server_identity

        return {
            "kind": "openai",
            "endpoint": self.client.settings.endpoint,
            "api": self.api,
            "models": dict(self.models),
            "concurrency": self.client.settings.concurrency,
            "top_logprobs": self.top_k,
            "prompt_logprobs": self.alignment,
            "extra_body": dict(self.extra_body),
            **server_identity(self.client.settings),  # base_url, the server's version
            "approximations": self.approximations(),
        }

    def approximations(self) -> dict[str, str]:
        """Request kind (a metric's `needs`) -> how this engine approximates it."""
        return {
            "rolling_kl": (
                f"KL(base‖variant) is a lower bound from the base's and the variant's "
                f"top-{self.top_k} prompt logprobs at each position (evalkit/engines/"
                "served_kl.py); top-1 agreement compares the two top-1 pieces"
            )
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
        stops = generation_stops(self.tokenizer, stop)
        chat = self.api == "chat"
        bodies = [
            self._body(
                **(
                    {"messages": _messages(p)}
                    if chat
                    else {"prompt": render_chat(self.tokenizer, p.user, system=p.system)}
                ),
                max_tokens=max_new_tokens,
                stop=stops[:4],  # the OpenAI API takes at most four; the rest are cut here
            )
            for p in prompts
        ]
        out = self.client.complete_all(bodies, progress, chat=chat)
        return [cut_at_stops(c.text, stops, self.tokenizer) for c in out]

    def _encode_chat(self, prompt: ChatPrompt) -> list[int]:
        return encode_chat(self.tokenizer, prompt)

    def loglikelihood(
        self, requests: list[tuple[ChatPrompt, str]], *, progress: Progress | None = None
    ) -> list[LogLikelihood]:
        tok = self.tokenizer
        conts = [list(tok(c, add_special_tokens=False)["input_ids"]) for _, c in requests]
        if self.api == "chat":  # the server's template is not ours to reproduce
            if progress:
                progress(len(requests))
            return [LogLikelihood(math.nan, len(c), NO_CHAT_LOGPROBS) for c in conts]
        seqs, starts = [], []
        for (prompt, _), c in zip(requests, conts, strict=True):
            ctx = self._encode_chat(prompt)
            seqs.append(ctx + c)
            starts.append(len(ctx))
        read = self.scores(seqs, starts, progress=progress)
        return [
            LogLikelihood(math.nan, len(c), why) if why else LogLikelihood(sum(lp), len(c))
            for (lp, why), c in zip(read, conts, strict=True)
        ]

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
        answer lined up with our tokens. Raises NoPromptLogprobs where the server cannot
        give them (and remembers it: no more are asked for)."""
        model = self._served(self._active)
        if model in self._no_logprobs:
            raise NoPromptLogprobs(self._no_logprobs[model])
        bodies = [
            self._body(
                prompt=self.tokenizer.decode(s, clean_up_tokenization_spaces=False),
                max_tokens=1,  # llama-cpp-python's server crashes on max_tokens 0
                echo=True,
                logprobs=self.top_k,
            )
            for s in seqs
        ]
        try:
            out = self.client.complete_all(bodies, progress)
            for c in out:
                if c.tokens is None or c.token_logprobs is None or c.top_logprobs is None:
                    raise NoPromptLogprobs(
                        f"the engine server at {self.client.settings.endpoint} returned no "
                        "prompt logprobs (echo + logprobs)",
                        hint="Serve with prompt logprobs enabled (llama.cpp: --logits_all true).",
                    )
        except NoPromptLogprobs as exc:
            self._no_logprobs[model] = exc.message
            raise
        return [self.reader.line_up(s, c) for s, c in zip(seqs, out, strict=True)]

    def _piece(self, token: int) -> str:
        return self.reader.piece(token)

    def scores(
        self, seqs: list[list[int]], starts: list[int], progress: Progress | None = None
    ) -> list[tuple[list[float], str | None]]:
        """Per sequence: log p(seq[j] | seq[:j]) for j >= starts[i] (starts >= 1), read as
        `self.alignment` says, or (empty, reason) where they cannot be read."""
        answers, why = self.echo_or_reason(seqs, progress)
        if answers is None:
            return [([], why) for _ in seqs]
        return self.read_answers(answers, seqs, starts)

    def _first_after(self, seqs: list[list[int]], starts: list[int]) -> dict[int, TopK]:
        """A shifted server nulls the distribution after the first token; a one-token
        completion after it gives that distribution's top-k (completion logprobs are
        aligned there). Kept per served model and token."""
        need = sorted({s[0] for s, st in zip(seqs, starts, strict=True) if st <= 1})
        model = self._served(self._active)
        todo = [t for t in need if (model, t) not in self._firsts]
        if todo:
            bodies = [
                self._body(prompt=self._piece(t), max_tokens=1, logprobs=self.top_k, echo=False)
                for t in todo
            ]
            got = self.client.complete_all(bodies)
            for t, c in zip(todo, got, strict=True):
                self._firsts[(model, t)] = dict((c.top_logprobs or [None])[0] or {})
        return {t: self._firsts[(model, t)] for t in need}

    def read(
        self,
        c: Completion,
        seq: list[int],
        j: int,
        alignment: str,
        first: dict[int, TopK] | None = None,
    ) -> float:
        """Token j's log-probability from one echoed answer, under an alignment (raises
        EngineServerError where it cannot be read)."""
        return self.reader.value(c, seq, j, alignment, first)

    def top1(self, c: Completion, j: int, alignment: str) -> str | None:
        """The server's most likely piece at the position that predicts token j."""
        return self.reader.top1(c, j, alignment)


def _messages(p: ChatPrompt) -> list[dict[str, str]]:
    return ([{"role": "system", "content": p.system}] if p.system is not None else []) + [
        {"role": "user", "content": p.user}
    ]


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
        "any OpenAI-compatible server through /v1/completions (or /v1/chat/completions)",
    )


_register()
