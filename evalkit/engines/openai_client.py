"""`/v1/completions` and `/v1/chat/completions` calls for the served engine, on the
judge's client machinery.

`CompletionClient` is a `JudgeClient` (evalkit.scoring.judges.openai_provider) that sends
the engine's requests: the same event loop and connection pool, the same bounded
concurrency, the same Retry-After and jittered backoff (`_wait`, `_retry_after`). What
differs is the end of a failed call: a judge reply may fail alone, but an engine answer
that cannot be had stops the run (exit 3), because a score with a hole in it is not a
score. Finished tasks stay in the result cache, so a rerun continues from there.

One refusal is not a failure: a server that says it cannot give logprobs for a request
that asks for them (llama.cpp without `--logits_all`: "logprobs is not supported for models
created with logits_all=False", http 500; OpenAI's models: echo with logprobs refused,
http 400) raises `NoPromptLogprobs` at once, without retries, and the engine leaves those
metrics unscored with the server's words as the reason.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from evalkit.errors import EvalkitError
from evalkit.scoring.judges.openai_provider import (
    JudgeClient,
    ProviderSettings,
    _short,
)


class EngineServerError(EvalkitError):
    """The served engine could not answer (down, erroring, or an answer evalkit cannot
    use). Exit code 3."""


class NoPromptLogprobs(EngineServerError):
    """The server refused a request for logprobs (or answered it without them): its
    log-likelihoods cannot be read, so the metrics built on them are unscored with this
    message as the reason."""


@dataclass(frozen=True)
class Completion:
    text: str
    finish_reason: str | None
    tokens: list[str] | None  # the echoed prompt + completion tokens, as the server cut them
    token_logprobs: list[float | None] | None
    top_logprobs: list[dict[str, float] | None] | None
    # the server left out our first token (llama-cpp-python drops a leading BOS); the
    # lists were padded back so entry j is our token j
    dropped_first: bool = False


class CompletionClient(JudgeClient):
    """Sends `/v1/completions` requests; `complete_all` returns their answers in order or
    raises EngineServerError."""

    def __init__(self, settings: ProviderSettings) -> None:
        super().__init__(settings)

    def complete_all(
        self, requests: list[dict[str, Any]], on_done: Any = None, *, chat: bool = False
    ) -> list[Completion]:
        """`chat`: the bodies go to /v1/chat/completions (the server applies its chat
        template); a Completion's text is then the message content, without logprobs."""
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
        return self._loop.run_until_complete(self._complete_all(requests, on_done, chat))

    async def _complete_all(
        self, requests: list[dict[str, Any]], on_done: Any, chat: bool
    ) -> list[Completion]:
        from openai import AsyncOpenAI

        s = self.settings
        if self._client is None:
            self._client = AsyncOpenAI(
                base_url=s.base_url, api_key=s.api_key, max_retries=0, timeout=s.timeout_s
            )
        gate = asyncio.Semaphore(s.concurrency)

        async def one(body: dict[str, Any]) -> Completion:
            async with gate:
                out = await self._completion(body, chat)
            if on_done:
                on_done(1)
            return out

        tasks = [asyncio.ensure_future(one(b)) for b in requests]
        try:
            return list(await asyncio.gather(*tasks))
        except BaseException:
            for t in tasks:  # one failure ends the batch: do not leave calls running
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise

    async def _completion(self, body: dict[str, Any], chat: bool = False) -> Completion:
        import openai

        s = self.settings
        self.stats.calls += 1
        attempts = 0
        last = "no attempt made"
        create = self._client.chat.completions.create if chat else self._client.completions.create
        while attempts <= s.max_retries:
            attempts += 1
            self.stats.attempts += 1
            try:
                resp = await create(**body)
            except (openai.RateLimitError, openai.APIConnectionError) as exc:
                last = await self._transient(exc, attempts)
                continue
            except openai.APIStatusError as exc:
                if _refuses_logprobs(body, exc):
                    raise NoPromptLogprobs(
                        f"the engine server at {s.endpoint} cannot return logprobs for "
                        f"model '{body.get('model')}': http {exc.status_code}: {_short(exc)}",
                        hint="Serve with prompt logprobs enabled (llama.cpp: --logits_all "
                        "true; vLLM: --max-logprobs at least engine.top_logprobs).",
                    ) from None
                if isinstance(exc, openai.InternalServerError):
                    last = f"server error ({exc.status_code}): {_short(exc)}"
                    await self._wait(attempts, f"http {exc.status_code}")
                    continue
                raise EngineServerError(
                    f"the engine server at {s.endpoint} refused a completion for model "
                    f"'{body.get('model')}': http {exc.status_code}: {_short(exc)}",
                    hint="Check that engine.models names what the server serves "
                    "(GET /v1/models lists it).",
                ) from None
            return _chat_of(resp, s.endpoint) if chat else _completion_of(resp, s.endpoint)
        raise EngineServerError(
            f"the engine server at {s.endpoint} did not answer: {last}; gave up after "
            f"{attempts} attempts",
            hint="Finished tasks are kept in the result cache: restart the server and run "
            "again, and only the rest is computed.",
        )


def _refuses_logprobs(body: dict[str, Any], exc: Exception) -> bool:
    """A 4xx/5xx answer to a request for logprobs that names them: the server cannot give
    them (not a fault a retry would mend). A 401, 403 or 404 is about the key or the
    model name, never this."""
    status = getattr(exc, "status_code", None)
    if "logprobs" not in body or status in (401, 403, 404, 429):
        return False
    text = str(exc).lower()
    return "logprob" in text or "echo" in text or "logits_all" in text


def _first_choice(resp: Any, endpoint: str, what: str) -> Any:
    choices = getattr(resp, "choices", None)
    if not choices:
        raise EngineServerError(f"the engine server at {endpoint} sent a {what} without choices")
    return choices[0]


def _chat_of(resp: Any, endpoint: str) -> Completion:
    c = _first_choice(resp, endpoint, "chat completion")
    message = getattr(c, "message", None)
    return Completion(
        text=str(getattr(message, "content", "") or ""),
        finish_reason=getattr(c, "finish_reason", None),
        tokens=None,
        token_logprobs=None,
        top_logprobs=None,
    )


def _completion_of(resp: Any, endpoint: str) -> Completion:
    c = _first_choice(resp, endpoint, "completion")
    lp = getattr(c, "logprobs", None)
    return Completion(
        text=str(getattr(c, "text", "") or ""),
        finish_reason=getattr(c, "finish_reason", None),
        tokens=list(lp.tokens) if lp is not None and lp.tokens is not None else None,
        token_logprobs=(
            list(lp.token_logprobs) if lp is not None and lp.token_logprobs is not None else None
        ),
        top_logprobs=(
            [dict(t) if t else None for t in lp.top_logprobs]
            if lp is not None and lp.top_logprobs is not None
            else None
        ),
    )
