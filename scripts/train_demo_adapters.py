"""Train the two demo adapters under suites/adapters/ and print a quick sanity check.

- legal-r16: a sensible adapter (rank 16, attention projections) that learns the
  house JSON format for contract clauses. A fifth of its training examples are replay:
  general requests (suites/data/legal/replay_prompts.jsonl, none of them a probe item)
  answered by the base model itself, so the adapter learns to use the format for clauses
  only. Trained on clauses alone, the same adapter answered "What is the capital of
  France?" in the house JSON format.
- legal-overfit: deliberately over-trained (rank 64, all linear layers, high learning
  rate): it learns the format and then answers general questions in it too.

Usage: python scripts/train_demo_adapters.py [--only NAME] [--no-check] [--check-only]
Takes several minutes on 2 CPU cores (`make adapters`).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

from evalkit.engines.chat import end_of_turn, render_chat
from evalkit.engines.resolve import resolve_model
from evalkit.training import LoraSettings, train_lora

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "suites" / "data" / "legal"
ADAPTERS = ROOT / "suites" / "adapters"
BASE = "builtin:smollm2-135m-instruct"

# Must match the task prompt in suites/legal.yaml: the adapters are trained on exactly
# the text they are evaluated on.
PROMPT = "Summarize this contract clause in the house format.\n\n{{ clause }}"

ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")
REPLAY = {"legal-r16": True, "legal-overfit": False}
ADAPTER_SETTINGS = {
    "legal-r16": LoraSettings(
        rank=16, alpha=32, dropout=0.05, target_modules=ATTENTION,
        learning_rate=1e-3, epochs=3, batch_size=8, seed=0,
    ),
    "legal-overfit": LoraSettings(
        rank=64, alpha=128, dropout=0.05, target_modules="all-linear",
        learning_rate=3e-3, epochs=4, batch_size=4, seed=0, save_dtype="float16",
    ),
}  # fmt: skip
MAX_ADAPTER_MB = 45.0
GENERAL_QUESTIONS = [
    "What is the capital of France?",
    "Give me three tips for sleeping better.",
    "How many legs does a spider have?",
    "Write a haiku about autumn.",
    "What is 12 times 7?",
]


def render_prompt(clause: str) -> str:
    """The task prompt for one clause, rendered as evaluation renders suite templates."""
    from evalkit.plan.prompts import prompt_environment

    return str(prompt_environment().from_string(PROMPT).render(clause=clause))


def read_rows(path: Path, wait_minutes: float = 40.0) -> list[dict[str, Any]]:
    """Rows of a JSONL file with `clause` and `target`; waits (polling each minute) for a
    file that is missing or still being written."""
    deadline = time.monotonic() + wait_minutes * 60
    while True:
        problem = None
        rows: list[dict[str, Any]] = []
        if not path.exists():
            problem = "missing"
        else:
            try:
                text = path.read_text(encoding="utf-8")
                rows = [json.loads(line) for line in text.splitlines() if line.strip()]
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                problem = f"not readable yet ({exc})"
            else:
                if not rows or not text.endswith("\n"):
                    problem = "empty or still being written"
                elif bad := [
                    i for i, r in enumerate(rows) if "clause" not in r or "target" not in r
                ]:
                    raise SystemExit(f"{path}: row {bad[0] + 1} lacks `clause` or `target`")
        if problem is None:
            return rows
        if time.monotonic() > deadline:
            raise SystemExit(f"{path} is {problem}; gave up after {wait_minutes:g} minutes")
        print(f"{path} is {problem}; checking again in a minute", flush=True)
        time.sleep(60)


def load_base() -> tuple[Any, Any]:
    """The built-in base model in float32 and its tokenizer, from local files only."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = resolve_model(BASE).source
    tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(
        source, dtype=torch.float32, local_files_only=True
    ).eval()
    # Recorded as the adapters' base in adapter_config.json and the training card,
    # instead of the cache path this machine happened to convert the model to.
    model.name_or_path = BASE
    return model, tokenizer


def replay_examples(model: Any, tokenizer: Any) -> list[tuple[str, str]]:
    """General requests with the base model's own greedy answers, generated once and kept
    in suites/data/legal/replay.jsonl so retraining is reproducible."""
    path = DATA / "replay.jsonl"
    if not path.exists():
        prompts = [
            json.loads(line)
            for line in (DATA / "replay_prompts.jsonl").read_text(encoding="utf-8").splitlines()
        ]
        answers = generate(model, tokenizer, [p["prompt"] for p in prompts], 96)
        path.write_text(
            "".join(
                json.dumps({"id": p["id"], "prompt": p["prompt"], "completion": a}) + "\n"
                for p, a in zip(prompts, answers, strict=True)
            ),
            encoding="utf-8",
        )
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    return [(r["prompt"], r["completion"]) for r in rows]


def train_all(model: Any, tokenizer: Any, rows: list[dict[str, Any]], names: list[str]) -> None:
    legal = [(render_prompt(r["clause"]), r["target"]) for r in rows]
    for name in names:
        settings = ADAPTER_SETTINGS[name]
        out = ADAPTERS / name
        examples = legal + (replay_examples(model, tokenizer) if REPLAY[name] else [])
        meta = {
            "base": BASE,
            "data": "suites/data/legal/train.jsonl",
            "prompt": PROMPT,
            "replay": "suites/data/legal/replay.jsonl" if REPLAY[name] else None,
        }
        result = train_lora(model, tokenizer, examples, settings, out, meta=meta)
        size_mb = (out / "adapter_model.safetensors").stat().st_size / 1e6
        if size_mb > MAX_ADAPTER_MB and settings.rank > 32:
            print(f"{name}: {size_mb:.1f} MB is over {MAX_ADAPTER_MB} MB; retraining at rank 32")
            settings = LoraSettings(**{**settings.__dict__, "rank": 32, "alpha": 64})
            result = train_lora(model, tokenizer, examples, settings, out, meta=meta)
            size_mb = (out / "adapter_model.safetensors").stat().st_size / 1e6
        epochs = ", ".join(f"{x:.3f}" for x in result.epoch_losses)
        print(
            f"{name}: {len(examples)} examples, {result.tokens} tokens in {result.seconds:.0f} s "
            f"({result.tokens / result.seconds:.0f} tokens/s); epoch losses {epochs}; "
            f"last step {result.losses[-1]:.3f}; adapter {size_mb:.1f} MB",
            flush=True,
        )


def generate(model: Any, tokenizer: Any, prompts: list[str], max_new_tokens: int = 80) -> list[str]:
    """Greedy completions, one prompt at a time (no padding effects)."""
    import torch

    stop = tokenizer.convert_tokens_to_ids(end_of_turn(tokenizer))
    outputs = []
    for prompt in prompts:
        ids = tokenizer(
            render_chat(tokenizer, prompt), add_special_tokens=False, return_tensors="pt"
        )
        with torch.no_grad():
            out = model.generate(
                **ids, max_new_tokens=max_new_tokens, do_sample=False,
                eos_token_id=stop, pad_token_id=tokenizer.pad_token_id,
            )  # fmt: skip
        new = out[0, ids["input_ids"].shape[1] :]
        outputs.append(tokenizer.decode(new, skip_special_tokens=True).strip())
    return outputs


def _is_json_object(text: str) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except json.JSONDecodeError:
        return False


def sanity_check(model: Any, tokenizer: Any, eval_rows: list[dict[str, Any]]) -> None:
    """Greedy outputs of base and both adapters on 8 eval clauses and 5 general questions."""
    from peft import PeftModel

    clauses = [render_prompt(r["clause"]) for r in eval_rows[:8]]
    variants: list[str | None] = [None, *ADAPTER_SETTINGS]
    for name in variants:
        if name is None:
            variant, label = model, "base"
        else:
            variant, label = PeftModel.from_pretrained(model, str(ADAPTERS / name)).eval(), name
        start = time.perf_counter()
        legal = generate(variant, tokenizer, clauses)
        general = generate(variant, tokenizer, GENERAL_QUESTIONS)
        if name is not None:
            variant.unload()
        exact = sum(o == r["target"] for o, r in zip(legal, eval_rows, strict=False))
        print(f"\n=== {label} ({time.perf_counter() - start:.0f} s) ===")
        print(
            f"clauses: {sum(map(_is_json_object, legal))}/{len(legal)} valid JSON, "
            f"{exact} exact; general questions: {sum(o.startswith('{') for o in general)}"
            f"/{len(general)} answered in JSON"
        )
        for row, out in zip(eval_rows, legal, strict=False):
            print(f"  [{row.get('id', '?')}] {out!r}")
        for q, out in zip(GENERAL_QUESTIONS, general, strict=True):
            print(f"  Q: {q}\n     {out!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=list(ADAPTER_SETTINGS), action="append")
    parser.add_argument("--no-check", action="store_true", help="skip the sanity check")
    parser.add_argument("--check-only", action="store_true", help="skip training")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (2)")
    args = parser.parse_args()

    import torch

    logging.basicConfig(level=logging.INFO, format="%(message)s")  # per-epoch losses
    torch.set_num_threads(args.threads)
    rows = read_rows(DATA / "train.jsonl")
    model, tokenizer = load_base()
    if not args.check_only:
        train_all(model, tokenizer, rows, args.only or list(ADAPTER_SETTINGS))
    if not args.no_check:
        sanity_check(model, tokenizer, read_rows(DATA / "eval.jsonl"))


if __name__ == "__main__":
    main()
