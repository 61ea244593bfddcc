"""Several processes on one result cache file (what `--workers N` does): they open fresh
files at the same moment and write at once, and every row arrives, no "database is locked"."""

from __future__ import annotations

import multiprocessing
from pathlib import Path
from typing import Any

from evalkit.engines.cache import ResultCache


def _writer(folder: str, index: int, barrier: Any) -> None:
    for f in range(15):
        barrier.wait(20)  # all at once on a new file: each switches it to WAL
        cache = ResultCache(Path(folder) / f"{f}.sqlite")
        for batch in range(5):
            cache.put_many({f"{index}-{batch}-{k}": [index, batch, k] for k in range(20)})
            cache.get_many([f"{1 - index}-{batch}-{k}" for k in range(20)])
        cache.close()


def test_processes_open_and_write_one_cache_at_once(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(4)
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), i, barrier)) for i in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    for p in procs:  # one that failed breaks the barrier; the others then fail too
        if p.is_alive():
            p.terminate()
            p.join()
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    for f in range(15):
        cache = ResultCache(tmp_path / f"{f}.sqlite")
        keys = [f"{i}-{b}-{k}" for i in range(4) for b in range(5) for k in range(20)]
        found = cache.get_many(keys)
        assert len(found) == 400 and found["3-4-19"] == [3, 4, 19]
        cache.close()
