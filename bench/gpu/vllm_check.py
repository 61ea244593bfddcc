"""The vllm engine on a GPU against evalkit's hf engine, on a tiny random Llama built here.

It builds (in a temporary folder, nothing downloaded) a byte-level BPE tokenizer trained on
evalkit's own probe data with a ChatML chat template, a random Llama (hidden 256, 4 layers)
saved with save_pretrained, a LoRA adapter made with peft (random, non-zero B, on every
projection) and its merged model exported with evalkit's `merge_adapter`. Then:

- hf side (always): evalkit's hf engine (fp32) generates greedily for each variant and
  scores rolling NLL over the probe texts; throughput of each, and how far the adapter
  moves the per-token logprobs from the base's (what the parity check must see).
- vllm side (not with --cpu-only): evalkit's vllm engine (one vllm.LLM, a LoRARequest for
  the adapter, the merged directory in a second LLM) does the same; the parity check of
  decide/parity.py (per-token logprobs against transformers + peft fp32 on probe texts:
  mean and max |Δlogprob|, top-1 agreement) for base, the adapter and its merge; how many
  greedy generations equal the hf engine's; throughput and its ratio to hf's.

Prints one JSON object (and writes it to --json, default $OUT/vllm_check.json when $OUT is
set); exit 1 when a variant fails the parity check. Needs under 5 minutes on one H200.

Run:  python bench/gpu/vllm_check.py              (a CUDA GPU and `pip install 'evalkit[vllm]'`)
      python bench/gpu/vllm_check.py --cpu-only   (the hf half; runs anywhere evalkit does)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

ADAPTER = "tiny-lora"
VARIANTS = ["base", ADAPTER, f"merged:{ADAPTER}"]
CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def corpus() -> list[str]:
    """Text to train the tokenizer on: evalkit's probe data and integrity probe texts."""
    from evalkit.decide.integrity import PROBE_TEXTS
    from evalkit.plan.probes import probe_data_dir

    root = probe_data_dir()
    lines = list(PROBE_TEXTS)
    for name in ("knowledge.jsonl", "open_prompts.jsonl"):
        for line in (root / name).read_text("utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                lines += [str(v) for v in row.values() if isinstance(v, str)]
                lines += [str(c) for c in row.get("choices", [])]
    lines += [p.read_text("utf-8") for p in sorted((root / "prose").glob("*")) if p.is_file()]
    return lines


def build_tokenizer(out: Path, vocab: int) -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tk.train_from_iterator(corpus(), trainer)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=tk,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
    )
    tok.chat_template = CHATML
    tok.save_pretrained(out)
    return tok


def build(folder: Path, seed: int) -> dict[str, Any]:
    """The model, the adapter and its merged export; returns their paths and facts."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    from evalkit.training.merge import merge_adapter

    model_dir, adapter_dir, merged_dir = folder / "model", folder / ADAPTER, folder / "merged"
    tok = build_tokenizer(model_dir, vocab=1024)
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=256,
        intermediate_size=512,
        num_hidden_layers=4,
        num_attention_heads=4,  # head dim 64: every vLLM attention backend takes it
        num_key_value_heads=2,
        max_position_embeddings=2048,
        initializer_range=0.1,  # peaked next-token distributions, not near-uniform ones
        tie_word_embeddings=False,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    LlamaForCausalLM(config).save_pretrained(model_dir)
    torch.manual_seed(seed + 1)
    lora = LoraConfig(
        r=8,
        lora_alpha=16,
        init_lora_weights=False,
        target_modules=[
            "q_proj",
            "k_proj",
            "v_proj",
            "o_proj",
            "gate_proj",
            "up_proj",
            "down_proj",
        ],
    )
    peft_model = get_peft_model(LlamaForCausalLM.from_pretrained(model_dir), lora)
    with torch.no_grad():  # a B far from zero: the adapter moves the logprobs for sure
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0.0, 0.05)
    peft_model.save_pretrained(adapter_dir)
    report = merge_adapter(adapter_dir, merged_dir, base=str(model_dir))
    return {
        "model_dir": model_dir,
        "adapter_dir": adapter_dir,
        "merged_dir": merged_dir,
        "facts": {
            "vocab": len(tok),
            "hidden": 256,
            "layers": 4,
            "lora_rank": 8,
            "merge_max_abs_logit_diff": report.max_abs_logit_diff,
        },
    }


def workload(n_prompts: int, n_texts: int) -> tuple[list[Any], list[str]]:
    from evalkit.decide.parity import probe_texts
    from evalkit.engines.base import ChatPrompt
    from evalkit.plan.probes import probe_data_dir

    rows = (probe_data_dir() / "open_prompts.jsonl").read_text("utf-8").splitlines()
    asks = [json.loads(r)["prompt"] for r in rows if r.strip()]
    prompts = [ChatPrompt(asks[i % len(asks)]) for i in range(n_prompts)]
    texts = probe_texts(n_texts, probe_data_dir() / "knowledge.jsonl")
    return prompts, texts


def throughput(
    engine: Any, variants: list[str], prompts: list[Any], texts: list[str], max_new: int
) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """Per variant: generated and scored tokens per second (after a small warm-up)."""
    tok = engine.tokenizer
    score_tokens = sum(len(tok(t, add_special_tokens=False)["input_ids"]) for t in texts)
    figures: dict[str, Any] = {}
    outputs: dict[str, list[str]] = {}
    for v in variants:
        with engine.variant(v):
            engine.generate(prompts[:2], max_new_tokens=4)  # warm-up (kernels, a load)
            engine.rolling_nll(texts[:2])
            t0 = time.perf_counter()
            outs = engine.generate(prompts, max_new_tokens=max_new)
            gen_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            engine.rolling_nll(texts)
            score_s = time.perf_counter() - t0
        gen_tokens = sum(len(tok(o, add_special_tokens=False)["input_ids"]) for o in outs)
        outputs[v] = outs
        figures[v] = {
            "generate_s": round(gen_s, 4),
            "generated_tokens": gen_tokens,  # re-encoded answers: after the stop cut
            "generate_tokens_per_s": round(gen_tokens / gen_s, 1) if gen_s else None,
            "requests_per_s": round(len(prompts) / gen_s, 2) if gen_s else None,
            "score_s": round(score_s, 4),
            "scored_tokens": score_tokens,
            "score_tokens_per_s": round(score_tokens / score_s, 1) if score_s else None,
        }
    return figures, outputs


def adapter_effect(hf: Any, texts: list[str]) -> dict[str, float]:
    """How far the adapter moves the reference's per-token logprobs from the base's: an
    engine that dropped it would be off by this much (the parity check's tolerances are
    0.1 mean, 2.0 max, 90% top-1)."""
    from evalkit.decide.parity import _reference

    tok = hf.tokenizer
    seqs = [[int(tok.eos_token_id), *tok(t, add_special_tokens=False)["input_ids"]] for t in texts]
    ref = {}
    for v in ("base", ADAPTER):
        with hf.variant(v):
            ref[v] = _reference(hf, seqs)
    deltas, agree = [], []
    for (bv, bt), (av, at) in zip(ref["base"], ref[ADAPTER], strict=True):
        deltas += [abs(x - y) for x, y in zip(bv, av, strict=True)]
        agree += [x == y for x, y in zip(bt, at, strict=True)]
    return {
        "mean_abs": sum(deltas) / len(deltas),
        "max_abs": max(deltas),
        "top1": sum(agree) / len(agree),
        "tokens": len(deltas),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu-only", action="store_true", help="the hf half only, no vLLM")
    parser.add_argument("--prompts", type=int, default=256, help="generation requests")
    parser.add_argument("--texts", type=int, default=32, help="parity and scoring texts")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--dtype", default="float16", help="vLLM's dtype (hf stays fp32)")
    parser.add_argument("--gpu-memory-utilization", type=float, default=0.5)
    parser.add_argument("--eager", action="store_true", help="vLLM without CUDA graphs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    t_start = time.perf_counter()

    import torch

    from evalkit.engines.hf import HFEngine

    device = "cpu" if args.cpu_only or not torch.cuda.is_available() else "cuda"
    result: dict[str, Any] = {"device": device, "torch": torch.__version__}
    if device == "cuda":
        result["gpu"] = torch.cuda.get_device_name(0)
    with tempfile.TemporaryDirectory(prefix="vllm-check-") as tmp:
        os.environ.setdefault("EVALKIT_CACHE_DIR", str(Path(tmp) / "cache"))
        t0 = time.perf_counter()
        built = build(Path(tmp), args.seed)
        result["model"] = {**built["facts"], "build_s": round(time.perf_counter() - t0, 2)}
        prompts, texts = workload(args.prompts, args.texts)
        adapters = {ADAPTER: built["adapter_dir"]}
        t0 = time.perf_counter()
        hf = HFEngine(str(built["model_dir"]), adapters, dtype="float32", device=device)
        result["hf"] = {"dtype": "float32", "load_s": round(time.perf_counter() - t0, 2)}
        result["adapter_effect"] = adapter_effect(hf, texts)
        hf_figs, hf_out = throughput(hf, VARIANTS, prompts, texts, args.max_new_tokens)
        result["hf"]["throughput"] = hf_figs
        passed = True
        if not args.cpu_only:
            try:
                passed = vllm_half(args, built, adapters, hf, prompts, texts, hf_out, result)
            except Exception as exc:  # keep what was measured, and vLLM's words, in the JSON
                import traceback

                result["vllm_error"] = traceback.format_exception_only(exc)[-1].strip()
                passed = False
    result["wall_s"] = round(time.perf_counter() - t_start, 1)
    text = json.dumps(result, indent=2)
    print(text)
    target = args.json or (
        Path(os.environ["OUT"]) / "vllm_check.json" if "OUT" in os.environ else None
    )
    if target is not None:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text + "\n", encoding="utf-8")
    return 0 if passed else 1


def vllm_half(
    args: argparse.Namespace,
    built: dict[str, Any],
    adapters: dict[str, Path],
    hf: Any,
    prompts: list[Any],
    texts: list[str],
    hf_out: dict[str, list[str]],
    result: dict[str, Any],
) -> bool:
    """The vllm engine: throughput on base and the adapter (one LLM), then the parity
    check of every variant (the merged one loads the second LLM), then the merged
    variant's throughput on it: two loads in all."""
    from dataclasses import asdict

    from evalkit.decide.parity import check_parity
    from evalkit.engines.registry import EngineRequest
    from evalkit.engines.vllm_engine import VllmEngine
    from evalkit.engines.vllm_engine_setup import load_vllm
    from evalkit.plan.probes import probe_data_dir
    from evalkit.suite.engine_config import ParityConfig

    api = load_vllm()
    options = {
        "vllm": {
            "dtype": args.dtype,
            "gpu_memory_utilization": args.gpu_memory_utilization,
            "max_model_len": 2048,
            "enforce_eager": args.eager,
            "seed": args.seed,
            "merged": {ADAPTER: str(built["merged_dir"])},
        }
    }
    t0 = time.perf_counter()
    engine = VllmEngine(EngineRequest(str(built["model_dir"]), adapters, options=options), api)
    info: dict[str, Any] = {**engine.describe(), "load_s": round(time.perf_counter() - t0, 2)}
    figs, out = throughput(engine, VARIANTS[:2], prompts, texts, args.max_new_tokens)
    settings = ParityConfig(texts=args.texts)
    t0 = time.perf_counter()
    results, figures = check_parity(
        engine, hf, VARIANTS, settings, probe_data_dir() / "knowledge.jsonl"
    )
    info["parity_s_with_merged_load"] = round(time.perf_counter() - t0, 2)
    more, more_out = throughput(engine, VARIANTS[2:], prompts, texts, args.max_new_tokens)
    figs |= more
    out |= more_out
    engine.close()
    info["throughput"] = figs
    result["vllm"] = info
    result["parity"] = {
        "tolerances": settings.model_dump(),
        "variants": {
            f.variant: {**asdict(f), "passed": r.passed}
            for f, r in zip(figures, results, strict=True)
        },
    }
    result["generation_agreement"] = {
        v: sum(a == b for a, b in zip(out[v], hf_out[v], strict=True)) / len(prompts)
        for v in VARIANTS
    }
    result["ratio_vllm_over_hf"] = {
        v: {
            k: round(figs[v][k] / result["hf"]["throughput"][v][k], 2)
            for k in ("generate_tokens_per_s", "requests_per_s", "score_tokens_per_s")
            if figs[v][k] and result["hf"]["throughput"][v][k]
        }
        for v in VARIANTS
    }
    return all(r.passed for r in results) and len(results) == len(VARIANTS)


if __name__ == "__main__":  # vLLM's engine core is a spawned process: it re-imports this file
    sys.exit(main())
