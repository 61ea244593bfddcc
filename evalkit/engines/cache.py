"""A result cache beside the Engine: same model weights, same request, no recompute.

Keys are content hashes of (variant fingerprint, request kind, request); values are JSON in
a SQLite file (never pickle). Each task's results are committed as soon as they are
computed, so an interrupted run keeps its finished work and a rerun resumes from it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar, cast

from evalkit.engines.base import (
    ChatPrompt,
    Engine,
    Generated,
    Generation,
    LogLikelihood,
    Progress,
    RollingScore,
    TopKShift,
)
from evalkit.engines.registry import EngineCapabilities, capabilities_of

T = TypeVar("T")


class ResultCache:
    """A key -> JSON value table in a SQLite file; several tables can share one file
    (engine results in `results`, judge replies in `judgments`)."""

    def __init__(self, path: Path, table: str = "results") -> None:
        if not table.isidentifier():
            raise ValueError(f"not a table name: {table!r}")
        self.table = table
        self.discarded = 0  # entries whose content did not match their digest
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.db = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_S)
        _shared_connection(self.db)
        cols = [r[1] for r in self.db.execute(f"PRAGMA table_info({table})")]
        if cols and "digest" not in cols:
            # a cache from before entries carried a digest: recomputed, never trusted
            self.db.execute(f"DROP TABLE {table}")
        self.db.execute(
            f"CREATE TABLE IF NOT EXISTS {table} (key TEXT PRIMARY KEY, value TEXT, digest TEXT)"
        )
        self.db.commit()

    def get_many(self, keys: list[str]) -> dict[str, Any]:
        """The entries found; one whose digest does not match its key and content (a
        damaged or edited cache) is deleted and counts as a miss."""
        found: dict[str, Any] = {}
        bad: list[str] = []
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for key, value, digest in self.db.execute(
                f"SELECT key, value, digest FROM {self.table} WHERE key IN ({marks})", chunk
            ):
                if not isinstance(value, str) or digest != _digest(key, value):
                    bad.append(key)
                    continue
                try:
                    found[key] = json.loads(value)
                except (ValueError, RecursionError):
                    bad.append(key)
        if bad:
            self.discarded += len(bad)
            self.db.executemany(f"DELETE FROM {self.table} WHERE key = ?", [(k,) for k in bad])
            self.db.commit()
        return found

    def put_many(self, items: dict[str, Any]) -> None:
        rows = []
        for k, v in items.items():
            text = json.dumps(v)
            rows.append((k, text, _digest(k, text)))
        self.db.executemany(f"INSERT OR REPLACE INTO {self.table} VALUES (?, ?, ?)", rows)
        self.db.commit()

    def close(self) -> None:
        self.db.close()


def _digest(key: str, value: str) -> str:
    return hashlib.sha256(f"{key}\0{value}".encode()).hexdigest()[:32]


# How long a writer waits for another process's commit (`evalkit run --workers N` runs
# several processes on one cache file) before it gives up.
BUSY_TIMEOUT_S = 30.0


def _shared_connection(db: sqlite3.Connection) -> None:
    """Set a connection up for several processes at once: WAL (readers never block the
    writer; each commit is atomic) and a busy timeout (a writer waits for the other's
    commit instead of failing). Switching a new file to WAL fails at once with "database is
    locked" when another process opens it at the same moment (SQLite does not wait there),
    so that step is retried until the timeout."""
    db.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _unscored(value: Any) -> bool:
    return bool(getattr(value, "reason", None) or getattr(value, "kl_reason", None))


def request_key(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


class CachedEngine:
    """Wraps an Engine; answers what the cache holds and asks the engine for the rest."""

    def __init__(self, inner: Engine, cache: ResultCache) -> None:
        self.inner = inner
        self.cache = cache
        self.name = inner.name
        self._fp = ""
        self.hits = 0
        self.misses = 0

    @property
    def capabilities(self) -> EngineCapabilities:
        """The wrapped engine's: the cache computes nothing itself."""
        return capabilities_of(self.inner)

    def fingerprint(self, variant: str) -> str:
        return self.inner.fingerprint(variant)

    @contextmanager
    def variant(self, name: str) -> Iterator[None]:
        self._fp = self.inner.fingerprint(name)
        with self.inner.variant(name):
            yield

    def _cached(
        self,
        keys: list[str],
        compute: Callable[[list[int]], list[T]],
        encode: Callable[[T], Any],
        decode: Callable[[Any], T],
        progress: Progress | None,
    ) -> list[T]:
        found = self.cache.get_many(keys)
        missing = [i for i, k in enumerate(keys) if k not in found]
        self.hits += len(keys) - len(missing)
        self.misses += len(missing)
        if progress and len(keys) > len(missing):
            progress(len(keys) - len(missing))
        fresh = compute(missing) if missing else []
        # a result the engine could not compute (it carries a reason) is not kept: a rerun
        # against a server that can answer computes it
        self.cache.put_many(
            {keys[i]: encode(v) for i, v in zip(missing, fresh, strict=True) if not _unscored(v)}
        )
        merged = {keys[i]: v for i, v in zip(missing, fresh, strict=True)}
        return [merged[k] if k in merged else decode(found[k]) for k in keys]

    def generate(
        self,
        prompts: list[ChatPrompt],
        *,
        max_new_tokens: int,
        stop: tuple[str, ...] = (),
        progress: Progress | None = None,
    ) -> list[str]:
        keys = [self._generate_key(p, max_new_tokens, stop) for p in prompts]
        return self._cached(
            keys,
            lambda idx: self.inner.generate(
                [prompts[i] for i in idx],
                max_new_tokens=max_new_tokens,
                stop=stop,
                progress=progress,
            ),
            lambda v: v,
            lambda v: str(v),
            progress,
        )

    @property
    def pools_generations(self) -> bool:
        """Pooled only in front of an engine that pools: any other is asked task by task
        through this cache, so each finished task is kept (evalkit.engines.generations)."""
        from evalkit.engines.generations import pools

        return pools(self.inner)

    def generate_pooled(
        self, requests: list[Generation], *, progress: Progress | None = None
    ) -> list[Generated]:
        """Texts and reference scores under the keys `generate` and `loglikelihood` use, so
        either call reuses what this one computed; the misses go to the engine as one
        pooled request, each reference with its prompt when its text is missing too. In
        front of an engine that does not pool, the requests go through this cache's own
        `generate` and `loglikelihood`, setting by setting, each kept as it finishes."""
        from evalkit.engines.generations import generate_in_groups, pools

        if not pools(self.inner):
            return generate_in_groups(self, requests, progress)
        text_keys = [self._generate_key(r.prompt, r.max_new_tokens, r.stop) for r in requests]
        ref_keys = [
            None if r.reference is None else self._ll_key(r.prompt, r.reference) for r in requests
        ]
        found = self.cache.get_many(text_keys + [k for k in ref_keys if k is not None])
        texts: dict[int, str] = {i: str(found[k]) for i, k in enumerate(text_keys) if k in found}
        refs: dict[int, LogLikelihood] = {
            i: LogLikelihood(found[k][0], found[k][1])
            for i, k in enumerate(ref_keys)
            if k is not None and k in found
        }
        asked = sum(1 + (k is not None) for k in ref_keys)
        self.hits += len(texts) + len(refs)
        self.misses += asked - len(texts) - len(refs)
        run = [i for i in range(len(requests)) if i not in texts]
        rerun = [  # a reference whose text was found
            i for i, k in enumerate(ref_keys) if k is not None and i in texts and i not in refs
        ]
        if progress and len(requests) > len(run):
            progress(len(requests) - len(run))
        asking = [
            dataclasses.replace(requests[i], reference=None if i in refs else requests[i].reference)
            for i in run
        ]

        def keep(batch: list[int], gens: list[Generated]) -> None:
            # each batch is stored as it finishes: an interrupted run keeps it
            new: dict[str, Any] = {}
            for j, gen in zip(batch, gens, strict=True):
                i = run[j]
                texts[i] = new[text_keys[i]] = gen.text
                key = ref_keys[i]
                if gen.reference is not None and key is not None:
                    refs[i] = gen.reference
                    if not _unscored(gen.reference):
                        new[key] = [gen.reference.logprob, gen.reference.n_tokens]
            self.cache.put_many(new)

        if run:
            cast(Any, self.inner).generate_pooled(asking, progress=progress, on_batch=keep)
        if rerun:
            scored = self.inner.loglikelihood(
                [(requests[i].prompt, requests[i].reference or "") for i in rerun]
            )
            new: dict[str, Any] = {}
            for i, ll in zip(rerun, scored, strict=True):
                refs[i] = ll
                key = ref_keys[i]
                if key is not None and not _unscored(ll):
                    new[key] = [ll.logprob, ll.n_tokens]
            self.cache.put_many(new)
        return [Generated(texts[i], refs.get(i)) for i in range(len(requests))]

    def _generate_key(self, prompt: ChatPrompt, max_new_tokens: int, stop: tuple[str, ...]) -> str:
        return request_key(
            self._fp, "generate", prompt.system, prompt.user, max_new_tokens, list(stop)
        )

    def _ll_key(self, prompt: ChatPrompt, continuation: str) -> str:
        return request_key(self._fp, "loglikelihood", prompt.system, prompt.user, continuation)

    def loglikelihood(
        self, requests: list[tuple[ChatPrompt, str]], *, progress: Progress | None = None
    ) -> list[LogLikelihood]:
        keys = [self._ll_key(p, c) for p, c in requests]
        return self._cached(
            keys,
            lambda idx: self.inner.loglikelihood([requests[i] for i in idx], progress=progress),
            lambda v: [v.logprob, v.n_tokens],
            lambda v: LogLikelihood(v[0], v[1]),
            progress,
        )

    def rolling_nll(
        self, texts: list[str], *, progress: Progress | None = None
    ) -> list[LogLikelihood]:
        keys = [request_key(self._fp, "rolling", t) for t in texts]
        return self._cached(
            keys,
            lambda idx: self.inner.rolling_nll([texts[i] for i in idx], progress=progress),
            lambda v: [v.logprob, v.n_tokens],
            lambda v: LogLikelihood(v[0], v[1]),
            progress,
        )

    def rolling_kl(
        self, texts: list[str], *, progress: Progress | None = None
    ) -> list[RollingScore]:
        # The key holds the variant's fingerprint, which includes the base's, so a KL
        # against another base is never reused. "+top1": entries from before the top-1
        # agreement was counted lack it, so they are not reused.
        keys = [request_key(self._fp, "rolling_kl+top1", t) for t in texts]
        return self._cached(
            keys,
            lambda idx: self.inner.rolling_kl([texts[i] for i in idx], progress=progress),
            lambda v: [v.nll, v.n_tokens, v.kl, v.kl_tokens, v.top1],
            lambda v: RollingScore(v[0], v[1], v[2], v[3], v[4]),
            progress,
        )

    def base_topk_shift(
        self,
        requests: list[tuple[ChatPrompt, str]],
        *,
        k: int,
        progress: Progress | None = None,
    ) -> list[TopKShift]:
        # the variant's fingerprint holds the base's, which computes the top-k
        keys = [
            request_key(self._fp, "base_topk_shift", p.system, p.user, c, k) for p, c in requests
        ]
        return self._cached(
            keys,
            lambda idx: self.inner.base_topk_shift(
                [requests[i] for i in idx], k=k, progress=progress
            ),
            lambda v: [v.outside, v.n_tokens],
            lambda v: TopKShift(v[0], v[1]),
            progress,
        )

    def probe_logits(self, texts: list[str]) -> list[Any]:
        return self.inner.probe_logits(texts)
