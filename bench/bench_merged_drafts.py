"""A merged variant's generations checked against its adapter's, against decoded, on the
real default model.

The demo suite's generation requests (legal-summary with its references, knowledge-open,
open-ended; `--limit N` keeps N of each, as a smoke run does) on an adapter first, as the
engine stage runs them; then its merged variant two ways, alternating, the best of
`--rounds`:
- decoded: the engine's draft memo emptied, so every row decodes (before hf_drafts);
- checked: the adapter's generations read as drafts in one pass each batch, every row
  whose draft the merged model would write kept without decoding.
Printed: wall time, forward, generated and verified tokens of each, the ratio, and whether
the texts are identical and the reference scores agree (largest relative difference).

Run: .venv/bin/python bench/bench_merged_drafts.py [--limit 10] [--adapter legal-overfit]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench._two_ways import agreement, best_of  # noqa: E402
from evalkit.engines.evaluate import generation_requests  # noqa: E402
from evalkit.engines.hf import HFEngine  # noqa: E402
from evalkit.engines.hf_drafts import Drafts  # noqa: E402
from evalkit.pipeline import validate  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, default=None, help="examples per task")
    parser.add_argument("--adapter", default="legal-r16")
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    suite, plan = validate(REPO / "suites" / "legal.yaml", limit=args.limit, offline=True)
    requests = [g for gens in generation_requests(plan.tasks).values() for g in gens]
    batch = suite.config.settings.batch_size
    adapters = {args.adapter: REPO / "suites" / "adapters" / args.adapter}
    engine = HFEngine("builtin:smollm2-135m-instruct", adapters, batch_size=batch)
    with engine.variant(args.adapter):
        engine.generate_pooled(requests)  # the adapter's own run: the drafts
    kept = engine._drafts
    merged = f"merged:{args.adapter}"

    def decoded() -> list:
        engine._drafts = Drafts()
        try:
            return engine.generate_pooled(requests)
        finally:
            engine._drafts = kept

    ways = {"decoded": decoded, "checked": lambda: engine.generate_pooled(requests)}
    with engine.variant(merged):
        engine.generate_pooled(requests[:2])  # warm-up
        best, outputs = best_of(ways, args.rounds)
    print(f"{len(requests)} generation requests on {merged}, batch {batch}, best of {args.rounds}")
    for name, (wall, row) in best.items():
        print(
            f"  {name:<8} {wall:6.1f} s  {row.get('forward_tokens', 0):>7,} forward tokens  "
            f"{row.get('generated_tokens', 0):>6,} generated  {row.get('verified_tokens', 0):>6,}"
            " verified"
        )
    print(f"  checked is {best['decoded'][0] / best['checked'][0]:.2f}x decoded")
    print("  " + agreement(outputs["decoded"], outputs["checked"]))


if __name__ == "__main__":
    main()
