"""Judge throughput against concurrency on a latency-bound loopback endpoint.

The endpoint (tests/judge_server.py, a real HTTP server in its own process) sleeps a
fixed time per request, like a remote judge whose cost is latency, not local compute. The
same batch of judge calls goes through evalkit's provider (the openai client, our retries
and semaphore) at
concurrency 1 (serial, the baseline) and higher; the script prints calls/s and the ratio
to serial. Run: .venv/bin/python bench/bench_judge.py [--calls 64] [--delay-ms 50]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from evalkit.scoring.judges.core import Item, JudgeRunner, resolve_endpoint  # noqa: E402
from evalkit.scoring.judges.spec import load_judge_spec  # noqa: E402
from evalkit.suite.config import JudgeProviderConfig  # noqa: E402

GOOD = '{"type": "payment", "obligor": "Tenant", "summary": "The Tenant pays rent."}'


def rate(url: str, concurrency: int, n: int) -> float:
    spec = load_judge_spec(REPO / "judges" / "general.yaml")
    cfg = JudgeProviderConfig(base_url=url, model="bench", concurrency=concurrency)
    items = [Item(f"Request {i}", (GOOD,)) for i in range(n)]
    with JudgeRunner(resolve_endpoint(cfg, REPO), cache=None) as runner:
        # warm-up: client start-up and one connection per concurrent call, as in a
        # long run (the runner keeps its client and connections between batches)
        runner.judge(spec, [Item(f"warm-up {i}", (GOOD,)) for i in range(concurrency)])
        t0 = time.perf_counter()
        out = runner.judge(spec, items)
        elapsed = time.perf_counter() - t0
    assert all(j.score == 5.0 for j in out), "every bench call must be scored"
    return n / elapsed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=64)
    ap.add_argument("--delay-ms", type=float, default=50.0)
    ap.add_argument("--levels", default="1,2,4,8,16")
    args = ap.parse_args()
    server = subprocess.Popen(
        [sys.executable, "-m", "tests.judge_server", "--delay-ms", str(args.delay_ms)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        url = server.stdout.readline().strip()
        levels = [int(x) for x in args.levels.split(",")]
        serial = rate(url, 1, args.calls)
        print(f"endpoint: loopback, {args.delay_ms:g} ms per request; {args.calls} calls each")
        print(f"{'concurrency':>11} {'calls/s':>9} {'vs serial':>10}")
        print(f"{1:>11} {serial:>9.1f} {1.0:>9.2f}x")
        for c in levels:
            if c == 1:
                continue
            r = rate(url, c, args.calls)
            print(f"{c:>11} {r:>9.1f} {r / serial:>9.2f}x")
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
