"""A variant's generations pooled against asked task by task, on the real default model.

The demo suite's generation requests (legal-summary with its references, knowledge-open,
open-ended; `--limit N` keeps N of each, as a smoke run does) on the base, at the suite's
batch size, two ways, alternating, the best of `--rounds`:
- per task: one `generate` call per task, then one `loglikelihood` call for the
  references (`generations.generate_in_groups`, what an engine without a pooled path gets);
- pooled: one `generate_pooled` call for all of them, each task's rows prefilled together,
  the batch decoded as one, each reference read in its prompt's pass.
Printed: wall time, forward and generated tokens of each, the ratio, and whether the texts
are identical and the reference scores agree (largest relative difference).

Run: .venv/bin/python bench/bench_pooled_generation.py [--limit 10] [--rounds 2]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench._two_ways import agreement, best_of  # noqa: E402
from evalkit.engines.evaluate import generation_requests  # noqa: E402
from evalkit.engines.generations import generate_in_groups  # noqa: E402
from evalkit.engines.hf import HFEngine  # noqa: E402
from evalkit.pipeline import validate  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, default=None, help="examples per task")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    suite, plan = validate(REPO / "suites" / "legal.yaml", limit=args.limit, offline=True)
    requests = [g for gens in generation_requests(plan.tasks).values() for g in gens]
    batch = suite.config.settings.batch_size
    engine = HFEngine("builtin:smollm2-135m-instruct", {}, batch_size=batch)
    engine.generate_pooled(requests[:2])  # warm-up
    ways = {
        "per task": lambda: generate_in_groups(engine, requests),
        "pooled": lambda: engine.generate_pooled(requests),
    }
    best, outputs = best_of(ways, args.rounds)
    print(f"{len(requests)} generation requests, batch {batch}, best of {args.rounds}")
    for name, (wall, row) in best.items():
        fwd, gen = row.get("forward_tokens", 0), row.get("generated_tokens", 0)
        print(f"  {name:<9} {wall:6.1f} s  {fwd:>7,} forward tokens  {gen:>6,} generated")
    print(f"  pooled is {best['per task'][0] / best['pooled'][0]:.2f}x per task")
    print("  " + agreement(outputs["per task"], outputs["pooled"]))


if __name__ == "__main__":
    main()
