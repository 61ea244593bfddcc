"""Several devices: a run's (variant × task) work split across worker processes.

`run_workers` splits the plan's variants into shares (`split_work`): the base is one share
of work, each adapter with its `merged:NAME` another, dealt out so the workers' loads are
even. Each worker is a process of its own, on one device (`CUDA_VISIBLE_DEVICES` names one
GPU per worker where there are GPUs; on CPU each gets cores / N threads); it loads the base
once with its share of the adapters, builds its engine through the registry from the
request (plain data), saves the probe logits the integrity checks need, and evaluates its
variants into the shared result cache (SQLite, WAL: safe for concurrent writers). The base
is evaluated by one worker only.

Nothing crosses between processes as pickle: a worker is started (multiprocessing, "spawn")
with two plain arguments, the path of a JSON job file and its index; its results go into
the result cache, its report (fingerprints, counts, failure) into a JSON file, its probe
logits into .npy files read with `allow_pickle=False`. The parent then reads the records
back from the cache with the same `evaluate` code on a `ReplayEngine` (every request is a
cache hit; one that is not fails loudly), and the pipeline runs the integrity checks on
that engine exactly as it does on a live one, so results.json is the one-worker run's.

A worker that fails stops the others; what any of them finished stays in the cache, so a
rerun computes only the rest. The failure is raised with the worker's reason: exit code 2
where the worker found bad input (as a one-worker run would), 3 otherwise.
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evalkit.engines.base import Progress
from evalkit.engines.cache import CachedEngine, ResultCache
from evalkit.engines.evaluate import ProgressFactory, evaluate, variant_units
from evalkit.engines.records import Record
from evalkit.engines.registry import EngineRequest, capabilities_of, create_engine
from evalkit.engines.replay import ReplayEngine, WorkerError
from evalkit.engines.worker_data import (
    decode_plan,
    decode_request,
    encode_plan,
    encode_request,
    read_json,
    write_json,
)
from evalkit.errors import EXIT_BAD_INPUT, EvalkitError, InputError

if TYPE_CHECKING:
    from evalkit.plan.types import Plan

log = logging.getLogger(__name__)

__all__ = ["ReplayEngine", "Share", "WorkerError", "WorkerRun", "run_workers", "split_work"]


@dataclass(frozen=True)
class Share:
    """One worker's work: its variants (in plan order), the adapters it loads for them, and
    the variants whose probe logits it saves for the integrity checks (its own, plus the
    adapter of a `merged:NAME` whose NAME the plan does not evaluate)."""

    variants: tuple[str, ...]
    adapters: tuple[str, ...]
    probes: tuple[str, ...]


def split_work(variants: list[str], n: int) -> list[Share]:
    """At most `n` shares of `variants`: the base alone, each adapter with its merged
    variant (one worker loads NAME for both), each dealt to the least loaded worker."""
    units: list[list[str]] = []
    by_adapter: dict[str, list[str]] = {}
    for v in variants:
        if v == "base":
            units.append([v])
            continue
        name = v.removeprefix("merged:")
        if name not in by_adapter:
            by_adapter[name] = []
            units.append(by_adapter[name])
        by_adapter[name].append(v)
    loads: list[list[str]] = [[] for _ in range(min(n, len(units)))]
    for unit in units:
        min(loads, key=len).extend(unit)  # min() takes the first of equals: stable
    shares = []
    for load in loads:
        mine = tuple(v for v in variants if v in load)
        adapters = tuple(dict.fromkeys(v.removeprefix("merged:") for v in mine if v != "base"))
        extra = tuple(a for a in adapters if a not in variants)
        shares.append(Share(mine, adapters, mine + extra))
    return shares


@dataclass(frozen=True)
class WorkerRun:
    """What the workers produced, read back in the parent."""

    engine: ReplayEngine  # fingerprints, device, probe logits: what later stages ask
    records: list[Record]  # in the one-worker order: variants, then tasks, then examples
    cache_stats: dict[str, int] | None  # summed over the workers; None without the cache
    shares: list[Share]
    counts: list[dict[str, list[int]]]  # per worker: variant -> [reused, computed]


def run_workers(
    plan: Plan,
    kind: str,
    request: EngineRequest,
    n: int,
    *,
    cache_path: Path | None,
    probe_texts: tuple[str, ...] | list[str],
    progress: ProgressFactory,
) -> WorkerRun:
    """Evaluate `plan` on `n` worker processes (see the module docstring). `cache_path`:
    the result cache to share, or None to compute everything (a private cache for this run,
    deleted after)."""
    shares = split_work(plan.variants, n)
    if len(shares) < n:
        log.info(
            "%d workers asked for, %d have work (one per adapter, one for the base)", n, len(shares)
        )
    workdir = Path(tempfile.mkdtemp(prefix="evalkit-workers-"))
    procs: list[Any] = []
    try:
        cache_file = cache_path or workdir / "results.sqlite"
        ResultCache(cache_file).close()  # made (and set to WAL) once, before the workers
        job = {
            "kind": kind,
            "request": encode_request(_per_worker_device(request)),
            "cache": str(cache_file),
            "plan": encode_plan(plan),
            "probe_texts": list(probe_texts),
            "shares": [
                {**dataclasses.asdict(s), "env": env}
                for s, env in zip(shares, _worker_envs(len(shares), request.device), strict=True)
            ],
        }
        job_path = workdir / "job.json"
        write_json(job_path, job)
        ctx = multiprocessing.get_context("spawn")  # a fresh interpreter: no inherited state
        procs = [
            ctx.Process(target=worker_main, args=(str(job_path), i), name=f"evalkit-worker-{i}")
            for i in range(len(shares))
        ]
        total = len(plan.variants) * variant_units(plan.tasks)
        with progress(f"{len(shares)} workers", total) as advance:
            for p in procs:
                p.start()
            _wait(procs, workdir, advance)
        reports = [read_json(workdir / f"worker-{i}.json") for i in range(len(procs))]
        _raise_failures(shares, procs, reports, kept=cache_path is not None)
        engine = ReplayEngine.from_reports(reports, list(probe_texts), workdir)
        cache = ResultCache(cache_file)
        try:
            records = evaluate(plan, CachedEngine(engine, cache), _no_progress)
        finally:
            cache.close()
    finally:
        for p in procs:  # only after an error (or an interrupt) are any still running
            if p.is_alive():
                p.terminate()
                p.join()
        shutil.rmtree(workdir, ignore_errors=True)
    counts = [r["cache"] for r in reports]
    stats = None
    if cache_path is not None:
        stats = {
            "reused": sum(c[0] for r in counts for c in r.values()),
            "computed": sum(c[1] for r in counts for c in r.values()),
        }
    return WorkerRun(engine, records, stats, shares, counts)


@contextmanager
def _no_progress(description: str, total: int) -> Iterator[Progress]:
    yield lambda n: None


def _per_worker_device(request: EngineRequest) -> EngineRequest:
    # each worker sees one GPU, as cuda:0; `cuda:K` in the suite cannot name it
    if request.device.startswith("cuda:"):
        return dataclasses.replace(request, device="cuda")
    return request


def _cuda_devices(device: str) -> list[str]:
    """The GPUs the workers are spread over: those CUDA_VISIBLE_DEVICES lists, else all."""
    if device == "cpu":
        return []
    try:
        import torch
    except ImportError:
        return []
    count = torch.cuda.device_count()
    visible = [d for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    return visible[:count] if visible else [str(i) for i in range(count)]


def _cpu_budget() -> int:
    """The threads the run may use: OMP_NUM_THREADS where the user set it, else the cores
    this process may run on."""
    try:
        return max(1, int(os.environ["OMP_NUM_THREADS"]))
    except (KeyError, ValueError):
        return (
            len(os.sched_getaffinity(0))
            if hasattr(os, "sched_getaffinity")
            else (os.cpu_count() or 1)
        )


def _worker_envs(n: int, device: str) -> list[dict[str, str]]:
    """Per worker, the environment set before it imports torch: its threads (the cores
    split N ways, so workers do not oversubscribe them) and, with GPUs, the one it sees."""
    threads = str(max(1, _cpu_budget() // n))
    gpus = _cuda_devices(device)
    if gpus and n > len(gpus):
        log.warning("%d workers on %d GPUs: some share a GPU", n, len(gpus))
    envs = []
    for i in range(n):
        env = {"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
        if gpus:
            env["CUDA_VISIBLE_DEVICES"] = gpus[i % len(gpus)]
        envs.append(env)
    return envs


def _wait(procs: list[Any], workdir: Path, advance: Progress) -> None:
    """Until every worker has exited, moving the bar by what they report done. The first
    worker to fail stops the others (their finished tasks are already committed)."""
    from multiprocessing.connection import wait

    done = [0] * len(procs)
    pending = set(range(len(procs)))
    while pending:
        wait([procs[i].sentinel for i in pending], timeout=0.5)
        for i in range(len(procs)):
            now = int(read_json(workdir / f"worker-{i}.progress").get("done", done[i]))
            if now > done[i]:
                advance(now - done[i])
                done[i] = now
        for i in sorted(pending):
            if procs[i].is_alive():
                continue
            procs[i].join()
            pending.discard(i)
            if procs[i].exitcode != 0:
                for j in pending:
                    procs[j].terminate()
                for j in pending:
                    procs[j].join()
                pending.clear()


def _raise_failures(
    shares: list[Share], procs: list[Any], reports: list[dict[str, Any]], *, kept: bool
) -> None:
    failed = [i for i, r in enumerate(reports) if not r.get("ok")]
    if not failed:
        return
    lines = []
    cause: dict[str, Any] = {}
    for i in failed:
        who = f"worker {i} ({', '.join(shares[i].variants)})"
        err = reports[i].get("error")
        if err:
            cause = cause or err
            lines.append(f"{who}: {err['message']}")
            log.debug("%s failed:\n%s", who, err.get("traceback", ""))
        elif procs[i].exitcode is not None and procs[i].exitcode < 0 and cause:
            lines.append(f"{who}: stopped when another worker failed")
        else:
            lines.append(f"{who}: exited with code {procs[i].exitcode} before it reported")
    message = "a worker failed: " + "; ".join(lines)
    if cause.get("exit_code") == EXIT_BAD_INPUT:
        raise InputError(message, hint=cause.get("hint"))
    hint = cause.get("hint") or ""
    if kept:
        hint = (hint + "\n" if hint else "") + (
            "What the workers finished is kept in the result cache: a rerun computes only the rest."
        )
    raise WorkerError(message, hint=hint or None)


# -- in the worker process --------------------------------------------------------------


def worker_main(job_path: str, index: int) -> None:
    """A worker process's entry point: do share `index` of the JSON job at `job_path`,
    write its report beside the job, exit 0 (done) or 1 (the report says why)."""
    workdir = Path(job_path).parent
    code = 0
    try:
        job = read_json(Path(job_path))
        share = job["shares"][index]
        # before torch is imported (it sizes its thread pool from OMP_NUM_THREADS and
        # picks its GPUs from CUDA_VISIBLE_DEVICES when it starts)
        os.environ.update(share["env"])
        report = _work(job, share, index, workdir)
    except BaseException as exc:  # noqa: BLE001 - every failure is reported, then exit 1
        report = {"ok": False, "error": _describe(exc)}
        code = 1
    write_json(workdir / f"worker-{index}.json", report)
    sys.exit(code)


def _work(job: dict[str, Any], share: dict[str, Any], index: int, workdir: Path) -> dict[str, Any]:
    plan = decode_plan(job["plan"])
    request = decode_request(job["request"], share["adapters"])
    engine: Any = create_engine(job["kind"], request)
    caps = capabilities_of(engine)
    # the probe logits first: a one-worker run checks integrity before it evaluates
    probes: dict[str, list[str]] = {}
    if caps.probe_logits:
        import numpy as np

        for k, v in enumerate(share["probes"]):
            if v.startswith("merged:") and not caps.merged:
                continue
            with engine.variant(v):
                arrays = engine.probe_logits(list(job["probe_texts"]))
            probes[v] = []
            for j, arr in enumerate(arrays):
                name = f"probe-{index}-{k}-{j}.npy"
                np.save(workdir / name, np.asarray(arr), allow_pickle=False)
                probes[v].append(name)
    cached = CachedEngine(engine, ResultCache(Path(job["cache"])))
    bar = _ProgressFile(workdir / f"worker-{index}.progress")
    counts: dict[str, list[int]] = {}
    for v in share["variants"]:
        hits, misses = cached.hits, cached.misses
        evaluate(dataclasses.replace(plan, variants=[v]), cached, bar.factory)
        counts[v] = [cached.hits - hits, cached.misses - misses]
    bar.flush()
    cached.cache.close()
    tokenizer = getattr(engine, "tokenizer", None)
    return {
        "ok": True,
        "name": engine.name,
        "device": str(getattr(getattr(engine, "device", None), "type", "cpu")),
        "fingerprints": {
            v: engine.fingerprint(v) for v in ("base", *share["variants"], *share["adapters"])
        },
        "capabilities": dataclasses.asdict(caps),
        "tokenizer": getattr(tokenizer, "name_or_path", None) if tokenizer else None,
        "cache": counts,
        "probes": probes,
    }


def _describe(exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, EvalkitError):
        message, hint, code = exc.message, exc.hint, exc.exit_code
    elif isinstance(exc, KeyboardInterrupt):
        message, hint, code = "interrupted", None, 130
    else:
        message, hint, code = f"{type(exc).__name__}: {exc}", None, 3
    return {
        "message": message,
        "hint": hint,
        "exit_code": code,
        "traceback": traceback.format_exc(),
    }


class _ProgressFile:
    """A worker's progress, written (at most twice a second) for the parent's bar."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.done = 0
        self.last = 0.0

    @contextmanager
    def factory(self, description: str, total: int) -> Iterator[Progress]:
        yield self.advance

    def advance(self, n: int) -> None:
        self.done += n
        if time.monotonic() - self.last >= 0.5:
            self.flush()

    def flush(self) -> None:
        self.last = time.monotonic()
        write_json(self.path, {"done": self.done})
