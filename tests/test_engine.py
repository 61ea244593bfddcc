"""The HF engine on a tiny random Llama: requests agree with a plain forward pass, and
variants switch without reloading (base, adapter, merged)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from evalkit.models.engine import ChatPrompt
from evalkit.models.hf import HFEngine
from evalkit.tasks.chat import render_chat


@pytest.fixture(scope="module")
def adapter_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LoRA with random (non-zero) B matrices, so it visibly changes the outputs."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    peft_model = get_peft_model(
        model,
        LoraConfig(r=4, lora_alpha=8, init_lora_weights=False, target_modules=["q_proj", "v_proj"]),
    )
    out = tmp_path_factory.mktemp("adapter")
    peft_model.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def engine(tiny_model_dir: Path, adapter_dir: Path) -> HFEngine:
    return HFEngine(str(tiny_model_dir), {"a": adapter_dir}, batch_size=3)


def manual_logprob(engine: HFEngine, context: str, continuation: str) -> float:
    tok = engine.tokenizer
    ctx = tok(context, add_special_tokens=False)["input_ids"]
    cont = tok(continuation, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([ctx + cont])
    with torch.inference_mode():
        logp = torch.log_softmax(engine.model(input_ids=ids).logits[0].float(), -1)
    return float(sum(logp[len(ctx) - 1 + i, t] for i, t in enumerate(cont)))


def test_loglikelihood_matches_single_forward(engine: HFEngine) -> None:
    prompts = [ChatPrompt("What is two plus two?"), ChatPrompt("Name a colour.")]
    reqs = [
        (prompts[0], "Four, of course."),
        (prompts[1], "Blue"),
        (prompts[0], "A"),
        (prompts[0], "B"),
    ]
    with engine.variant("base"):
        got = engine.loglikelihood(reqs)
        for (p, cont), ll in zip(reqs, got, strict=True):
            want = manual_logprob(engine, render_chat(engine.tokenizer, p.user), cont)
            assert ll.logprob == pytest.approx(want, abs=1e-3)
            assert ll.n_tokens == len(engine.tokenizer(cont, add_special_tokens=False)["input_ids"])


def test_rolling_nll_counts_every_token_once(engine: HFEngine, monkeypatch) -> None:
    text = "The river rose after rain. " * 40
    with engine.variant("base"):
        whole = engine.rolling_nll([text, "Short text."])
        monkeypatch.setattr("evalkit.models.hf.ROLLING_WINDOW", 64)  # force many windows
        windowed = engine.rolling_nll([text])
    n = len(engine.tokenizer(text, add_special_tokens=False)["input_ids"])
    assert whole[0].n_tokens == n and windowed[0].n_tokens == n
    assert whole[0].logprob > 0
    # Shorter windows see less context, so the NLL differs but stays close per token.
    assert windowed[0].logprob / n == pytest.approx(whole[0].logprob / n, rel=0.2)


def test_generation_is_deterministic_and_order_preserving(engine: HFEngine) -> None:
    prompts = [ChatPrompt("a"), ChatPrompt("a much longer prompt " * 5), ChatPrompt("b")]
    with engine.variant("base"):
        batched = engine.generate(prompts, max_new_tokens=8)
        single = [engine.generate([p], max_new_tokens=8)[0] for p in prompts]
    assert batched == single


def test_variants_switch_and_merge_without_reload(engine: HFEngine) -> None:
    texts = ["The quick brown fox jumps over the lazy dog."]
    with engine.variant("base"):
        base1 = engine.probe_logits(texts)[0]
    with engine.variant("a"):
        adapted = engine.probe_logits(texts)[0]
    with engine.variant("merged:a"):
        merged = engine.probe_logits(texts)[0]
    with engine.variant("base"):
        base2 = engine.probe_logits(texts)[0]
    assert np.abs(adapted - base1).max() > 1e-3  # the adapter is applied
    assert np.abs(merged - adapted).max() < 1e-3  # merging computes the same function
    assert np.abs(base2 - base1).max() < 1e-4  # unmerge restored the base
    assert engine.fingerprint("a") != engine.fingerprint("merged:a") != engine.fingerprint("base")


def test_token_batches_respect_the_budget(engine: HFEngine, monkeypatch) -> None:
    monkeypatch.setattr("evalkit.models.hf.TOKEN_BUDGET", 100)
    lengths = [60, 50, 40, 30, 10, 10, 10]
    got = list(engine._token_batches(list(range(len(lengths))), lengths))
    assert sorted(i for b in got for i in b) == list(range(len(lengths)))
    for batch in got:
        assert len(batch) <= engine.batch_size
        assert len(batch) == 1 or max(lengths[i] for i in batch) * len(batch) <= 100
