"""An unchanged rerun against the cold run it repeats: `evalkit run SUITE --limit N` twice
on one empty cache directory (results, judge replies and calibration cached by the first
run), then the second run's wall time as a share of the first's, with both runs' cache
counters (results reused / computed, judge calls answered from the cache) from
results.json. A rerun should cost a few percent of a cold run: reading the plan, loading
the model, the integrity checks and the outputs, and nothing of the engine or the judge.

The model conversion is done before the timed runs (a set-up cost, not a run's).

Run: .venv/bin/python bench/bench_rerun.py [--suite suites/legal.yaml] [--limit 10]
(about 2.5 minutes for --limit 10 on 2 cores; without --limit, the whole demo, twice)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def run(suite: Path, out: Path, limit: int | None, env: dict[str, str]) -> tuple[float, Any]:
    cmd = [sys.executable, "-m", "evalkit", "run", str(suite), "-o", str(out), "--quiet"]
    if limit is not None:
        cmd += ["--limit", str(limit)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode not in (0, 1):  # 1: a gate failed, still a complete run
        sys.exit(f"evalkit run exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return wall, json.loads((out / "results.json").read_text())


def counters(results: Any) -> str:
    cache = results["run"].get("cache") or {}
    judge = sum(j.get("n_cached", 0) for j in results.get("judges") or [])
    calls = sum(j.get("n_calls", 0) for j in results.get("judges") or [])
    return (
        f"results reused {cache.get('reused', 0):,}, computed {cache.get('computed', 0):,}; "
        f"judge replies from the cache {judge:,} of {calls:,}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--suite", type=Path, default=REPO / "suites" / "legal.yaml")
    ap.add_argument("--limit", type=int, default=10, help="0: the whole suite")
    args = ap.parse_args()
    limit = args.limit or None
    with tempfile.TemporaryDirectory(prefix="bench-rerun-") as tmp:
        env = {**os.environ, "EVALKIT_CACHE_DIR": str(Path(tmp) / "cache")}
        subprocess.run(
            [sys.executable, "-c", "from evalkit.engines.resolve import resolve_model as r; "
             "r('builtin:smollm2-135m-instruct')"],
            env=env, cwd=REPO, check=True,
        )  # fmt: skip
        cold_s, cold = run(args.suite, Path(tmp) / "cold", limit, env)
        warm_s, warm = run(args.suite, Path(tmp) / "warm", limit, env)
    same = cold["comparisons"] == warm["comparisons"] and cold["gates"] == warm["gates"]
    print(f"suite {args.suite.name}, --limit {limit or 'none'}")
    print(f"cold run   {cold_s:8.1f} s   {counters(cold)}")
    print(f"warm rerun {warm_s:8.1f} s   {counters(warm)}")
    print(f"rerun / cold: {warm_s / cold_s:.3f} (target under 0.05); figures identical: {same}")
    for label, results in (("cold", cold), ("warm", warm)):
        stages = [r for r in results.get("profile") or [] if "parent" not in r]
        print(f"{label} stages: " + ", ".join(f"{r['stage']} {r['seconds']:.1f} s" for r in stages))


if __name__ == "__main__":
    main()
