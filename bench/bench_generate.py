"""Generation that stops when it is done, against transformers' `generate`, on the real
default model.

Three ways to answer the same prompts greedily, in one process on the same weights:
- one at a time: `model.generate` per prompt (no padding, stops at its own end of turn);
- padded batches: the engine's previous code, `model.generate` on length-sorted batches
  of `--batch` prompts, every row carried along until the batch's last row finishes;
- the engine: `HFEngine.generate`, where finished rows leave the batch and its KV cache.
Two workloads from the demo: open knowledge questions (short answers, max 32 new tokens)
and the legal clauses on legal-r16 (JSON answers, max 80). The script prints each time,
the ratios, the tokens each way generated, and whether the texts are identical.

Run: .venv/bin/python bench/bench_generate.py [--examples 16] [--batch 16]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from evalkit.engines.base import ChatPrompt  # noqa: E402
from evalkit.engines.chat import cut_at_stops, end_of_turn  # noqa: E402
from evalkit.engines.hf import HFEngine  # noqa: E402
from evalkit.plan.probes import probe_data_dir  # noqa: E402


def _rows(path: Path, n: int) -> list[dict[str, Any]]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()][:n]


def workloads(n: int) -> list[tuple[str, str, list[ChatPrompt], int]]:
    """(name, variant, prompts, max_new_tokens) as the demo asks them."""
    knowledge = [
        ChatPrompt(f"{r['question']} Answer in a few words.")
        for r in _rows(probe_data_dir() / "knowledge.jsonl", n)
    ]
    legal = [
        ChatPrompt(f"Summarize this contract clause in the house format.\n\n{r['clause']}")
        for r in _rows(REPO / "suites" / "data" / "legal" / "eval.jsonl", n)
    ]
    return [("knowledge-open", "base", knowledge, 32), ("legal-summary", "legal-r16", legal, 80)]


def _ids(engine: HFEngine, prompts: list[ChatPrompt]) -> list[list[int]]:
    return [engine._encode_chat(p) for p in prompts]


def one_at_a_time(engine: HFEngine, prompts: list[ChatPrompt], n: int) -> tuple[list[str], int]:
    import torch

    stops = [s for s in (end_of_turn(engine.tokenizer),) if s]
    out, tokens = [], 0
    for ids in _ids(engine, prompts):
        with torch.inference_mode():
            gen = engine.model.generate(
                input_ids=torch.tensor([ids]),
                attention_mask=torch.ones((1, len(ids)), dtype=torch.long),
                max_new_tokens=n,
                do_sample=False,
                pad_token_id=engine.tokenizer.pad_token_id,
            )[0, len(ids) :]
        tokens += len(gen)
        text = str(engine.tokenizer.decode(gen, skip_special_tokens=False))
        out.append(cut_at_stops(text, stops, engine.tokenizer))
    return out, tokens


def padded_batches(
    engine: HFEngine, prompts: list[ChatPrompt], n: int, batch: int
) -> tuple[list[str], int]:
    """The engine's previous generate: sorted, left-padded batches through `generate`."""
    import torch

    encoded = _ids(engine, prompts)
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
    out = [""] * len(prompts)
    pad = engine.tokenizer.pad_token_id
    stops = [s for s in (end_of_turn(engine.tokenizer),) if s]
    tokens = 0
    for start in range(0, len(order), batch):
        idx = order[start : start + batch]
        width = max(len(encoded[i]) for i in idx)
        ids = torch.full((len(idx), width), pad, dtype=torch.long)
        mask = torch.zeros((len(idx), width), dtype=torch.long)
        for row, i in enumerate(idx):
            ids[row, width - len(encoded[i]) :] = torch.tensor(encoded[i])
            mask[row, width - len(encoded[i]) :] = 1
        with torch.inference_mode():
            gen = engine.model.generate(
                input_ids=ids, attention_mask=mask, max_new_tokens=n, do_sample=False,
                pad_token_id=pad,
            )  # fmt: skip
        tokens += (gen.shape[1] - width) * len(idx)  # finished rows are padded along
        for row, i in enumerate(idx):
            text = str(engine.tokenizer.decode(gen[row, width:], skip_special_tokens=False))
            out[i] = cut_at_stops(text, stops, engine.tokenizer)
    return out, tokens


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--examples", type=int, default=16, help="prompts per workload")
    parser.add_argument("--batch", type=int, default=16)
    args = parser.parse_args()
    from evalkit.profile import Profile

    engine = HFEngine(
        "builtin:smollm2-135m-instruct",
        {"legal-r16": REPO / "suites" / "adapters" / "legal-r16"},
        batch_size=args.batch,
    )
    totals = {"one": 0.0, "padded": 0.0, "engine": 0.0}
    all_same = True
    for name, variant, prompts, n in workloads(args.examples):
        with engine.variant(variant):
            t0 = time.perf_counter()
            ref, ref_tokens = one_at_a_time(engine, prompts, n)
            t1 = time.perf_counter()
            old, old_tokens = padded_batches(engine, prompts, n, args.batch)
            t2 = time.perf_counter()
            prof = Profile()
            with prof.activate(), prof.stage(name):
                new = engine.generate(prompts, max_new_tokens=n)
            t3 = time.perf_counter()
        same = new == ref == old
        all_same &= same
        new_tokens = prof.rows()[0].get("generated_tokens", 0)
        totals["one"] += t1 - t0
        totals["padded"] += t2 - t1
        totals["engine"] += t3 - t2
        print(
            f"{name:15s} {variant:10s} {len(prompts)} prompts, max {n} new tokens: "
            f"one at a time {t1 - t0:6.1f}s ({ref_tokens} tokens)  "
            f"padded batches {t2 - t1:6.1f}s ({old_tokens})  engine {t3 - t2:6.1f}s "
            f"({new_tokens})  x{(t1 - t0) / (t3 - t2):.2f} / x{(t2 - t1) / (t3 - t2):.2f}  "
            f"identical: {same}",
            flush=True,
        )
    print(
        f"total: engine {totals['engine']:.1f}s; {totals['one'] / totals['engine']:.2f}x "
        f"one-at-a-time generate, {totals['padded'] / totals['engine']:.2f}x padded batches "
        f"(batch {args.batch}); outputs identical: {all_same}"
    )
    if not all_same:
        sys.exit(1)


if __name__ == "__main__":
    main()
