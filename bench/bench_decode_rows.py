"""What a decode step costs with few rows and with more, on the real default model.

The built-in open-ended prompts (each answered to its 96-token limit by the base, so the
rows stay in the batch) generated greedily by `HFEngine.generate`, first with `--few` rows,
then with `--many`, alternating, the best of `--rounds`. Printed per row count: the wall
time (the profiler's own cost included), the tokens run, and the rate of the matrix
products (torch's profiler: aten::mm time; FLOPs from the model's linear shapes, the lm
head once per generated token), then the ratio of the two times. A step with few rows is
bound by reading the weights, so more rows cost little more: the rows of several variants
in one batch would share that cost.

Run: .venv/bin/python bench/bench_decode_rows.py [--few 10] [--many 30] [--rounds 2]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from evalkit.engines.base import ChatPrompt  # noqa: E402
from evalkit.engines.hf import HFEngine  # noqa: E402
from evalkit.plan.probes import build_probes  # noqa: E402
from evalkit.profile import Profile  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--few", type=int, default=10)
    parser.add_argument("--many", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    from torch.profiler import ProfilerActivity, profile

    (task,) = build_probes(["open-ended"], {})
    prompts = [ChatPrompt(ex.prompt, task.system) for ex in task.examples]
    engine = HFEngine("builtin:smollm2-135m-instruct", {}, batch_size=128)
    cfg = engine.model.config
    kv = cfg.num_key_value_heads * (cfg.hidden_size // cfg.num_attention_heads)
    per_layer = 2 * cfg.hidden_size**2 + 2 * cfg.hidden_size * kv
    per_layer += 3 * cfg.hidden_size * cfg.intermediate_size
    layers = cfg.num_hidden_layers * per_layer
    head = cfg.vocab_size * cfg.hidden_size
    engine.generate(prompts[:2], max_new_tokens=4)  # warm-up
    best: dict[int, tuple[float, int, int, float]] = {}
    for _ in range(args.rounds):
        for n in (args.few, args.many):
            prof = Profile()
            with prof.activate(), prof.stage("g"), profile(activities=[ProfilerActivity.CPU]) as tp:
                t0 = time.perf_counter()
                engine.generate(prompts[:n], max_new_tokens=task.max_new_tokens, stop=task.stop)
                wall = time.perf_counter() - t0
            row = prof.rows()[0]
            mm = sum(e.self_cpu_time_total for e in tp.key_averages() if e.key == "aten::mm")
            got = (wall, int(row["forward_tokens"]), int(row["generated_tokens"]), mm / 1e6)
            if n not in best or wall < best[n][0]:
                best[n] = got
    for n in (args.few, args.many):
        wall, fwd, gen, mm = best[n]
        rate = (2 * layers * fwd + 2 * head * gen) / mm / 1e9
        print(
            f"{n:3d} rows: {wall:5.2f} s wall, {fwd} forward tokens ({gen} generated), "
            f"matrix products {mm:.2f} s at {rate:.0f} GFLOP/s"
        )
    few, many = best[args.few][0], best[args.many][0]
    print(
        f"{args.many} rows cost {many / few:.2f}x the time of {args.few}: "
        f"{args.many // args.few} batches of {args.few} would cost {args.many // args.few}x"
    )


if __name__ == "__main__":
    main()
