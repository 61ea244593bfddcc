"""Wall time of a run on 2 worker processes against 1, on a tiny random Llama (the default
model's tokenizer, 4 layers, hidden 256) with two adapters: base, a1 and a2 on one golden
task and the prose-perplexity probe, each run with an empty result cache. It prints both
times, their ratio (2 workers / 1) and whether the figures agree.

On CPU the two workers split the cores (cores / 2 threads each), so the ratio measures what
process-level parallelism adds over torch's threads, minus each worker's start-up (a fresh
interpreter importing torch and loading the model). On a machine with GPUs each worker gets
its own GPU. Under 2 minutes on 2 cores.

Run: flock /tmp/evalkit-heavy.lock .venv/bin/python bench/bench_workers.py [--examples 16]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SUITE = """
name: bench-workers
base:
  model: {model}
adapters:
  a1: {{path: a1}}
  a2: {{path: a2}}
variants: [base, a1, a2]
tasks:
  - name: qa
    data: {{path: qa.jsonl}}
    id: id
    prompt: "{{{{ q }}}}"
    reference: "{{{{ a }}}}"
    generation: {{max_new_tokens: 12}}
    metrics:
      - type: exact_match
      - type: reference_perplexity
probes:
  builtin: [prose-perplexity]
settings:
  bootstrap_resamples: 200
"""


def build(folder: Path, examples: int) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from evalkit.engines.resolve import resolve_model

    tok = AutoTokenizer.from_pretrained(resolve_model("builtin:smollm2-135m-instruct").source)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=256,
        intermediate_size=512,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    model_dir = folder / "model"
    LlamaForCausalLM(config).save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    for i, name in enumerate(("a1", "a2")):
        torch.manual_seed(10 + i)
        lora = LoraConfig(
            r=8, lora_alpha=16, init_lora_weights=False, target_modules=["q_proj", "v_proj"]
        )
        get_peft_model(LlamaForCausalLM.from_pretrained(model_dir), lora).save_pretrained(
            folder / name
        )
    rows = [
        {"id": f"q{i}", "q": f"What is {i} plus {i}?", "a": str(2 * i)} for i in range(examples)
    ]
    (folder / "qa.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    path = folder / "suite.yaml"
    path.write_text(SUITE.format(model=model_dir))
    return path


def timed(suite: Path, folder: Path, workers: int, limit: int) -> tuple[float, dict]:
    from evalkit.pipeline import run_suite

    os.environ["EVALKIT_CACHE_DIR"] = str(folder / f"cache-{workers}")  # empty: all computed
    t0 = time.perf_counter()
    outcome = run_suite(suite, output_dir=folder / f"out-{workers}", limit=limit, workers=workers)
    elapsed = time.perf_counter() - t0
    results = outcome.results
    return elapsed, {k: results[k] for k in ("metrics", "comparisons", "integrity", "samples")}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--examples", type=int, default=16, help="golden examples (and probe docs)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-workers-") as tmp:
        folder = Path(tmp)
        suite = build(folder, args.examples)
        one, figures_one = timed(suite, folder, 1, args.examples)
        two, figures_two = timed(suite, folder, 2, args.examples)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(
        f"{cores} cores, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}; "
        f"variants base,a1,a2 × (qa + prose-perplexity), {args.examples} examples each"
    )
    print(f"1 worker  {one:6.1f} s")
    print(f"2 workers {two:6.1f} s")
    print(f"ratio (2 workers / 1) {two / one:.2f}")
    print(f"figures identical: {figures_one == figures_two}")


if __name__ == "__main__":
    main()
