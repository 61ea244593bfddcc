"""Judge a list of items with one spec: render, look up the cache, call the endpoint for
what is missing, parse. Shared by the run stage and by calibration."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from evalkit.engines.cache import request_key
from evalkit.errors import EvalkitError, InputError
from evalkit.plan.types import Plan
from evalkit.redact import register_secret
from evalkit.scoring.judges.cache import JudgeCache
from evalkit.scoring.judges.hf_judge import HFJudgeClient, HFJudgeSettings, resolve_dtype
from evalkit.scoring.judges.openai_provider import JudgeClient, ProviderSettings, Reply
from evalkit.scoring.judges.parse import Verdict, weighted_score
from evalkit.scoring.judges.render import render_prompt
from evalkit.scoring.judges.spec import JudgeSpec

DEFAULT_BASE_URL = "https://api.openai.com/v1"


class ProviderConfig(Protocol):
    """Where judge calls go: the plan's `JudgeProvider`, or the suite's
    `judge.provider` as `evalkit judge calibrate` reads it (both have these fields)."""

    @property
    def hf(self) -> str | None: ...
    @property
    def serve(self) -> str | None: ...
    @property
    def base_url(self) -> str | None: ...
    @property
    def model(self) -> str | None: ...
    @property
    def api_key_env(self) -> str: ...
    @property
    def base_url_env(self) -> str: ...
    @property
    def concurrency(self) -> int: ...
    @property
    def timeout_s(self) -> float: ...
    @property
    def max_retries(self) -> int: ...
    @property
    def max_tokens(self) -> int: ...
    @property
    def temperature(self) -> float: ...
    @property
    def structured(self) -> bool: ...
    @property
    def logprobs(self) -> bool: ...
    @property
    def n_ctx(self) -> int: ...
    @property
    def threads(self) -> int: ...
    @property
    def batch_size(self) -> int: ...
    @property
    def dtype(self) -> str: ...


class JudgeUnavailableError(EvalkitError):
    """Every call to the judge failed (unreachable, refused, auth): exit code 3, since no
    verdict means the gates cannot be decided, and 0 or 1 would be a claim about quality."""


@dataclass(frozen=True)
class Item:
    """One thing to judge: for pairwise, answers = (answer_a, answer_b)."""

    question: str
    answers: tuple[str, ...]
    reference: str | None = None
    row: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True)
class Judged:
    score: float | None
    reason: str | None
    error: str | None
    prompt: str
    raw: str
    weighted: float | None = None
    cached: bool = False


@dataclass(frozen=True)
class Endpoint:
    """Where calls go, resolved without starting anything."""

    config: ProviderConfig
    model_id: str  # part of every cache key: which judge model answered
    model: str
    base_url: str | None  # None: a local server, URL known once it is started
    api_key: str
    gguf: Path | None = None
    hf_source: str | None = None  # the in-process judge's model directory
    hf_dtype: str = "float32"  # and its dtype, `auto` resolved

    @property
    def host(self) -> str:
        if self.hf_source is not None:
            return "in-process (transformers)"
        if self.gguf is not None:
            return "127.0.0.1 (local llama.cpp)"
        return ProviderSettings(self.base_url or "", self.model).endpoint

    def hf_settings(self) -> HFJudgeSettings:
        """Settings of the in-process judge (`hf:`)."""
        assert self.hf_source is not None
        c = self.config
        return HFJudgeSettings(
            self.hf_source, c.max_tokens, c.structured, c.logprobs, c.batch_size, self.hf_dtype
        )

    def settings(self, base_url: str) -> ProviderSettings:
        c = self.config
        return ProviderSettings(
            base_url=base_url,
            model=self.model,
            api_key=self.api_key,
            concurrency=c.concurrency,
            timeout_s=c.timeout_s,
            max_retries=c.max_retries,
            max_tokens=c.max_tokens,
            temperature=c.temperature,
            structured=c.structured,
            structured_style="json_object" if self.gguf is not None else "json_schema",
            logprobs=c.logprobs,
        )


def check_endpoint(plan: Plan, *, offline: bool = False) -> None:
    """The judge preflight, run before any model loads: the local judge's model file, or
    the remote endpoint's model name and API key. `offline`: check only what needs no
    credentials (a local judge's file). Raises InputError (exit 2)."""
    if plan.judge is None or not any(t.judges for t in plan.tasks):
        return
    provider = plan.judge.provider
    if provider.hf:
        check_hf_model(provider.hf, plan.root or Path.cwd())
        return
    if offline and not provider.serve:
        return
    resolve_endpoint(provider, plan.root or Path.cwd())


def check_hf_model(spec: str, root: Path) -> None:
    """The in-process judge's model exists, without converting or loading it."""
    from evalkit.engines.resolve import builtin_gguf_path

    if spec.startswith("builtin:"):
        builtin_gguf_path(spec.removeprefix("builtin:"))
        return
    path = Path(spec).expanduser()
    path = path if path.is_absolute() else root / path
    if not (path.suffix == ".gguf" and path.is_file()) and not (path / "config.json").is_file():
        raise InputError(
            f"judge `hf: {spec}` is neither builtin:NAME, a .gguf file nor a model directory",
            hint="Use hf: builtin:smollm2-135m-instruct, or a local model; nothing is downloaded.",
        )


def resolve_endpoint(cfg: ProviderConfig, root: Path) -> Endpoint:
    """The judge endpoint a suite asks for. Credentials come from the environment only."""
    from evalkit.scoring.judges.local_server import resolve_gguf

    if cfg.hf:
        from evalkit.engines.resolve import model_fingerprint, resolve_model

        check_hf_model(cfg.hf, root)
        resolved = resolve_model(cfg.hf, relative_to=root)
        dtype = resolve_dtype(cfg.dtype)
        model_id = f"hf|{cfg.hf}|{model_fingerprint(resolved)}|{dtype}"
        return Endpoint(
            cfg, model_id, cfg.hf, None, "local", hf_source=resolved.source, hf_dtype=dtype
        )
    if cfg.serve:
        gguf = resolve_gguf(cfg.serve, root)
        model_id = f"{cfg.serve}|{gguf.name}|{gguf.stat().st_size}"
        return Endpoint(cfg, model_id, cfg.model or gguf.stem, None, "local", gguf)
    base_url = cfg.base_url or os.environ.get(cfg.base_url_env) or DEFAULT_BASE_URL
    if not cfg.model:
        raise InputError(
            "the judge provider needs `model:` (the model name at the endpoint)",
            hint="Set judge.provider.model, or use serve: builtin:smollm2-135m-instruct.",
        )
    key = os.environ.get(cfg.api_key_env, "")
    register_secret(key)  # redacted from every server string from now on
    host = ProviderSettings(base_url, cfg.model).endpoint
    loopback = (host.split(":")[0] if host.count(":") == 1 else host) in ("127.0.0.1", "localhost")
    if not key and not loopback:
        raise InputError(
            f"the judge endpoint {host} needs an API key in ${cfg.api_key_env}",
            hint=f"export {cfg.api_key_env}=...  (it is never written to any output)",
        )
    return Endpoint(cfg, f"{host}|{cfg.model}", cfg.model, base_url, key or "none")


@contextmanager
def started(endpoint: Endpoint) -> Iterator[ProviderSettings]:
    """Settings for calls; a local server runs only inside this block."""
    from evalkit.scoring.judges.local_server import llama_server

    if endpoint.gguf is None:
        yield endpoint.settings(endpoint.base_url or DEFAULT_BASE_URL)
        return
    c = endpoint.config
    with llama_server(endpoint.gguf, n_ctx=c.n_ctx, threads=c.threads) as url:
        yield endpoint.settings(url)


def verdict_schema(spec: JudgeSpec) -> dict[str, Any]:
    """The JSON schema asked for where the endpoint supports structured output. The verdict
    comes first, so a reply cut by max_tokens still holds it."""
    first = spec.judge_kind.output_schema(spec.config.scale)
    key = next(iter(first))
    return {
        "type": "object",
        "properties": {**first, "reason": {"type": "string"}},
        "required": [key, "reason"],
    }


def parse_reply(spec: JudgeSpec, raw: str, finish_reason: str | None) -> Verdict:
    if finish_reason == "refusal":
        return Verdict(None, raw[:300], "refused")
    return spec.judge_kind.parse(raw, spec.config.scale, finish_reason)


def _key(spec: JudgeSpec, endpoint: Endpoint, item: Item) -> str:
    c = endpoint.config
    return request_key(
        "judge",
        endpoint.model_id,
        spec.template_sha256,
        spec.kind,
        list(spec.config.scale),
        item.question,
        list(item.answers),
        item.reference,
        json.dumps(dict(item.row), sort_keys=True, default=str),
        [c.max_tokens, c.temperature, c.structured, c.logprobs],
    )


def _raise_if_all_failed(endpoint: Endpoint, replies: list[Reply]) -> None:
    """A judge that answered none of the calls is an outage, not a verdict."""
    if not replies or any(r.error is None for r in replies):
        return
    from collections import Counter

    reasons = Counter((r.error or "no reply").split(";")[0] for r in replies)
    top, n = reasons.most_common(1)[0]
    raise JudgeUnavailableError(
        f"the judge at {endpoint.host} failed on all {len(replies)} calls "
        f"({top}{'' if n == len(replies) else f' on {n}'}); no verdict was given",
        hint="Check the endpoint (base_url, server running), the key and the model name; "
        "the generated answers are cached, so a rerun judges without regenerating.",
    )


class JudgeRunner:
    """Judges items for one or more specs, starting the endpoint (a local server) at most
    once and only when the cache misses something."""

    def __init__(self, endpoint: Endpoint, cache: JudgeCache | None) -> None:
        self.endpoint = endpoint
        self.cache = cache
        self._settings: ProviderSettings | None = None
        self._stack: Any = None
        self.client: JudgeClient | HFJudgeClient | None = None

    def __enter__(self) -> JudgeRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.client is not None:
            self.client.close()  # before the server it talks to stops
        if self._stack is not None:
            self._stack.close()

    def retries(self) -> dict[str, int]:
        """Retries so far by reason (429, http 5xx, timeout, connection)."""
        return dict(self.client.stats.retries) if self.client is not None else {}

    def _client(self) -> JudgeClient | HFJudgeClient:
        if self.client is None:
            from contextlib import ExitStack

            e = self.endpoint
            if e.hf_source is not None:
                self.client = HFJudgeClient(e.hf_settings())
                return self.client
            self._stack = ExitStack()
            self.client = JudgeClient(self._stack.enter_context(started(e)))
        return self.client

    def judge(
        self,
        spec: JudgeSpec,
        items: list[Item],
        on_done: Callable[[int], None] | None = None,
    ) -> list[Judged]:
        prompts = [
            render_prompt(
                spec,
                question=it.question,
                answers=list(it.answers),
                reference=it.reference,
                row=dict(it.row),
            )
            for it in items
        ]
        keys = [_key(spec, self.endpoint, it) for it in items]
        found = self.cache.get_many(keys) if self.cache else {}
        missing = [i for i, k in enumerate(keys) if k not in found]
        if on_done and len(items) > len(missing):
            on_done(len(items) - len(missing))
        replies: dict[int, Reply] = {}
        if missing:
            client = self._client()
            schema = verdict_schema(spec)
            got = client.run_all([(prompts[i].messages(), schema) for i in missing], on_done)
            replies = dict(zip(missing, got, strict=True))
            if not found:  # with some verdicts cached, a failing rerun is not an outage
                _raise_if_all_failed(self.endpoint, got)
            if self.cache:
                self.cache.put_many(
                    {
                        keys[i]: {
                            "prompt": prompts[i].text(),
                            "raw": r.text,
                            "finish_reason": r.finish_reason,
                            "top": r.top_logprobs,
                        }
                        for i, r in replies.items()
                        if r.error is None and r.text is not None
                    }
                )
        out = []
        for i, key in enumerate(keys):
            if i in replies:
                r = replies[i]
                out.append(
                    self._judged(
                        spec,
                        prompts[i].text(),
                        r.text,
                        r.finish_reason,
                        r.top_logprobs,
                        r.error,
                        False,
                    )
                )
            else:
                v = found[key]
                top = [[(t, lp) for t, lp in pos] for pos in v["top"]] if v.get("top") else None
                out.append(
                    self._judged(spec, v["prompt"], v["raw"], v["finish_reason"], top, None, True)
                )
        return out

    @staticmethod
    def _judged(
        spec: JudgeSpec,
        prompt: str,
        raw: str | None,
        finish_reason: str | None,
        top: list[list[tuple[str, float]]] | None,
        error: str | None,
        cached: bool,
    ) -> Judged:
        if error is not None or raw is None:
            return Judged(None, None, error or "no reply", prompt, raw or "", None, cached)
        v = parse_reply(spec, raw, finish_reason)
        weighted = (
            weighted_score(top, spec.config.scale, v.score)
            if top and v.score is not None and spec.judge_kind.weights_by_logprobs
            else None
        )
        return Judged(v.score, v.reason, v.error, prompt, raw, weighted, cached)
