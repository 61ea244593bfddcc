"""Judge calls through the openai client against any OpenAI-compatible endpoint (OpenAI,
vLLM, llama.cpp, Ollama), async with bounded concurrency.

Retries are ours alone: the client is built with max_retries=0 so its own retries do not
stack on top of these. Rate limits (429) wait for Retry-After when the server sends one;
server errors, timeouts and dropped connections back off exponentially with jitter. A
call that still fails comes back as a Reply with its error, never as an exception, so one
bad call does not lose the others' work.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from evalkit.redact import redact, redact_opt, register_secret

MAX_RETRY_AFTER_S = 60.0


@dataclass(frozen=True)
class ProviderSettings:
    base_url: str
    model: str
    api_key: str = "none"  # never written to any output
    concurrency: int = 4
    timeout_s: float = 60.0
    max_retries: int = 3
    max_tokens: int = 64
    temperature: float = 0.0
    structured: bool = True
    # json_schema: OpenAI's form; json_object: {"type": "json_object", "schema": ...},
    # the form llama-cpp-python's server takes (it answers json_schema with a 500)
    structured_style: str = "json_schema"
    logprobs: bool = True
    backoff_s: float = 0.5

    @property
    def endpoint(self) -> str:
        """Host and port only: no scheme credentials, path or query in any output."""
        parts = urlsplit(self.base_url)
        return parts.hostname + (f":{parts.port}" if parts.port else "") if parts.hostname else ""


@dataclass
class Reply:
    text: str | None
    finish_reason: str | None = None
    error: str | None = None  # set when no reply text came back
    attempts: int = 0
    top_logprobs: list[list[tuple[str, float]]] | None = None


@dataclass
class CallStats:
    calls: int = 0
    attempts: int = 0
    retries: Counter[str] = field(default_factory=Counter)  # reason -> retries
    structured_supported: bool | None = None


def _retry_after(exc: Any) -> float | None:
    headers = getattr(getattr(exc, "response", None), "headers", None) or {}
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return min(max(float(value), 0.0), MAX_RETRY_AFTER_S)
    except ValueError:
        when = email.utils.parsedate_to_datetime(value) if value else None
        return min(max(when.timestamp() - time.time(), 0.0), MAX_RETRY_AFTER_S) if when else None


class JudgeClient:
    """Sends chat-completion requests; `run_all` judges a batch and returns its replies in
    order."""

    def __init__(self, settings: ProviderSettings) -> None:
        self.settings = settings
        register_secret(settings.api_key)
        self.stats = CallStats()
        # Downgraded after an endpoint rejects them, so later calls do not pay twice:
        # json_schema -> json_object -> none.
        self._format: str | None = settings.structured_style if settings.structured else None
        self._logprobs = settings.logprobs
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: Any = None

    def run_all(
        self,
        requests: list[tuple[list[dict[str, str]], dict[str, Any] | None]],
        on_done: Any = None,
    ) -> list[Reply]:
        # One loop and one client for the runner's life: batches (a judge's calls, its
        # calibration) reuse the open connections instead of dialling again.
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
        return self._loop.run_until_complete(self._run_all(requests, on_done))

    def close(self) -> None:
        if self._loop is None:
            return
        if self._client is not None:
            self._loop.run_until_complete(self._client.close())
            self._client = None
        self._loop.close()
        self._loop = None

    async def _run_all(
        self,
        requests: list[tuple[list[dict[str, str]], dict[str, Any] | None]],
        on_done: Any,
    ) -> list[Reply]:
        from openai import AsyncOpenAI

        s = self.settings
        if self._client is None:
            self._client = AsyncOpenAI(
                base_url=s.base_url, api_key=s.api_key, max_retries=0, timeout=s.timeout_s
            )
        client = self._client
        gate = asyncio.Semaphore(s.concurrency)

        async def one(messages: list[dict[str, str]], schema: dict[str, Any] | None) -> Reply:
            async with gate:
                reply = await self._complete(client, messages, schema)
            if on_done:
                on_done(1)
            return reply

        return list(await asyncio.gather(*(one(m, sch) for m, sch in requests)))

    def _kwargs(self, schema: dict[str, Any] | None) -> dict[str, Any]:
        s = self.settings
        kw: dict[str, Any] = {"max_tokens": s.max_tokens, "temperature": s.temperature}
        if self._format == "json_schema" and schema is not None:
            kw["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "verdict", "schema": schema},
            }
        elif self._format == "json_object" and schema is not None:
            kw["response_format"] = {"type": "json_object", "schema": schema}
        if self._logprobs:
            kw["logprobs"], kw["top_logprobs"] = True, 5
        return kw

    async def _complete(
        self, client: Any, messages: list[dict[str, str]], schema: dict[str, Any] | None
    ) -> Reply:
        # The one boundary: whatever the server said (an error body that echoes the key,
        # a reply that repeats it) is redacted before anyone caches, logs or writes it.
        reply = await self._complete_raw(client, messages, schema)
        reply.text = redact_opt(reply.text)
        reply.error = redact_opt(reply.error)
        if reply.top_logprobs:
            reply.top_logprobs = [[(redact(t), lp) for t, lp in pos] for pos in reply.top_logprobs]
        return reply

    async def _complete_raw(
        self, client: Any, messages: list[dict[str, str]], schema: dict[str, Any] | None
    ) -> Reply:
        import openai

        s = self.settings
        self.stats.calls += 1
        attempts = 0
        last = "no attempt made"
        while attempts <= s.max_retries:
            attempts += 1
            self.stats.attempts += 1
            kwargs = self._kwargs(schema)
            try:
                resp = await client.chat.completions.create(
                    model=s.model, messages=messages, **kwargs
                )
            except (openai.BadRequestError, openai.InternalServerError) as exc:
                # An endpoint that does not take our response_format or logprobs rejects
                # the request (400; llama-cpp-python says 500 and names the field):
                # downgrade once and ask again, without counting it as a retry.
                if self._downgrade(kwargs, exc):
                    attempts -= 1
                    self.stats.attempts -= 1
                    continue
                if isinstance(exc, openai.InternalServerError):
                    last = f"server error ({exc.status_code})"
                    await self._wait(attempts, f"http {exc.status_code}")
                    continue
                return Reply(None, error=f"http 400: {_short(exc)}", attempts=attempts)
            except (openai.RateLimitError, openai.APIConnectionError) as exc:
                last = await self._transient(exc, attempts)
                continue
            except openai.APIStatusError as exc:
                return Reply(
                    None, error=f"http {exc.status_code}: {_short(exc)}", attempts=attempts
                )
            except Exception as exc:  # a body that is not a chat completion (garbage, cut JSON)
                return Reply(None, error=f"invalid response: {_short(exc)}", attempts=attempts)
            return _reply_of(resp, attempts)
        return Reply(None, error=f"{last}; gave up after {attempts} attempts", attempts=attempts)

    def _downgrade(self, kwargs: dict[str, Any], exc: Exception) -> bool:
        text = str(exc)
        is_400 = getattr(exc, "status_code", None) == 400
        if "response_format" in kwargs and (is_400 or "response_format" in text):
            # Concurrent calls see the same rejection: only the first moves the format
            # down a step, the others retry with whatever it is now.
            if kwargs["response_format"]["type"] == self._format:
                self._format = "json_object" if self._format == "json_schema" else None
                self.stats.structured_supported = self._format is not None
            return True
        if "logprobs" in kwargs and (is_400 or "logprobs" in text):
            self._logprobs = False
            return True
        return False

    async def _transient(self, exc: Exception, attempt: int) -> str:
        """After a 429, a timeout or a lost connection: wait as the retry policy says
        (Retry-After first) and return the reason for the give-up message. Shared by the
        judge's chat calls and the served engine's completions."""
        import openai

        if isinstance(exc, openai.RateLimitError):
            await self._wait(attempt, "429", _retry_after(exc))
            return "rate limited (429)"
        if isinstance(exc, openai.APITimeoutError):
            await self._wait(attempt, "timeout")
            return f"timeout after {self.settings.timeout_s:g}s"
        await self._wait(attempt, "connection")
        return "connection failed"

    async def _wait(self, attempt: int, reason: str, retry_after: float | None = None) -> None:
        if attempt > self.settings.max_retries:
            return  # no retry follows, so no wait
        self.stats.retries[reason] += 1
        if retry_after is not None:
            delay = retry_after
        else:
            base = self.settings.backoff_s * 2 ** (attempt - 1)
            delay = min(base, 8.0) * (0.5 + random.random() / 2)  # jitter: no thundering herd
        await asyncio.sleep(delay)


def _short(exc: Exception) -> str:
    # redacted before the cut, so a key split at the 200th character cannot survive
    return redact(str(exc).replace("\n", " "))[:200]


def _reply_of(resp: Any, attempts: int) -> Reply:
    choices = getattr(resp, "choices", None)
    if not choices or not isinstance(choices, list):
        return Reply(None, error="invalid response: no choices", attempts=attempts)
    choice = choices[0]
    message = getattr(choice, "message", None)
    content = getattr(message, "content", None)
    if content is None:
        refusal = getattr(message, "refusal", None)
        if refusal:
            return Reply(str(refusal), "refusal", error=None, attempts=attempts)
        return Reply(None, error="invalid response: no message content", attempts=attempts)
    top = None
    logprobs = getattr(choice, "logprobs", None)
    items = getattr(logprobs, "content", None) if logprobs else None
    if items:
        top = [
            [(it.token, it.logprob)] + [(t.token, t.logprob) for t in (it.top_logprobs or [])]
            for it in items
        ]
    return Reply(str(content), getattr(choice, "finish_reason", None), None, attempts, top)
