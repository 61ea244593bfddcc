"""The HF engine on a tiny random Llama: requests agree with a plain forward pass, and
variants switch without reloading (base, adapter, merged)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from evalkit.engines.base import ChatPrompt
from evalkit.engines.chat import render_chat
from evalkit.engines.hf import HFEngine


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


def test_contexts_share_their_common_start_and_score_the_same(engine: HFEngine) -> None:
    """Multiple-choice contexts in one batch share the chat template's system turn: it
    runs once, and every option's log-likelihood is still a plain forward's, on the base
    and on the adapter."""
    from evalkit.profile import Profile

    questions = ["What is two plus two?", "Name a colour.", "Which planet is red?"]
    reqs = [(ChatPrompt(q), opt) for q in questions for opt in ("Four", "Blue sky", "Mars")]
    ctx = [engine._encode_chat(p) for p, _ in reqs[::3]]
    shared = next(k for k in range(len(ctx[0])) if len({tuple(c[: k + 1]) for c in ctx}) > 1)
    assert shared >= 20  # the system turn
    conts = [engine.tokenizer(o, add_special_tokens=False)["input_ids"] for _, o in reqs]
    for variant in ("base", "a"):
        prof = Profile()
        with engine.variant(variant):
            with prof.activate(), prof.stage("mc"):
                got = engine.loglikelihood(reqs)
            for (p, cont), ll in zip(reqs, got, strict=True):
                want = manual_logprob(engine, render_chat(engine.tokenizer, p.user), cont)
                assert ll.logprob == pytest.approx(want, abs=1e-4)
        # batch_size 3: one batch of the three contexts, its system turn counted once
        ctx_tokens = sum(len(c) for c in ctx) - 2 * shared
        assert prof.rows()[0]["forward_tokens"] == ctx_tokens + sum(len(c) - 1 for c in conts)


def test_rolling_nll_counts_every_token_once(engine: HFEngine, monkeypatch) -> None:
    text = "The river rose after rain. " * 40
    with engine.variant("base"):
        whole = engine.rolling_nll([text, "Short text."])
        monkeypatch.setattr("evalkit.engines.hf_scoring.ROLLING_WINDOW", 64)  # force many windows
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


@pytest.mark.parametrize("variant", ["base", "a", "merged:a"])
def test_pooled_generations_match_separate_calls(engine: HFEngine, variant: str) -> None:
    """Two tasks' prompts in one pooled request, one task with references: the same texts
    as each task's own `generate` and the same reference scores as `loglikelihood`."""
    from evalkit.engines.base import Generation

    clauses = [ChatPrompt("Summarize: the tenant pays rent."), ChatPrompt("Summarize: no pets.")]
    refs = ['{"type": "payment"}', '{"type": "restriction", "obligor": "tenant"}']
    questions = [ChatPrompt("What is two plus two?"), ChatPrompt("a"), ChatPrompt("b " * 9)]
    pooled = [Generation(p, 7, (), r) for p, r in zip(clauses, refs, strict=True)]
    pooled += [Generation(q, 4, ("\n",)) for q in questions]
    with engine.variant(variant):
        got = engine.generate_pooled(pooled)
        texts = engine.generate(clauses, max_new_tokens=7)
        texts += engine.generate(questions, max_new_tokens=4, stop=("\n",))
        lls = engine.loglikelihood(list(zip(clauses, refs, strict=True)))
    assert [g.text for g in got] == texts
    assert [g.reference for g in got[2:]] == [None] * 3
    for g, ll in zip(got[:2], lls, strict=True):
        assert g.reference is not None and g.reference.n_tokens == ll.n_tokens
        assert g.reference.logprob == pytest.approx(ll.logprob, abs=1e-4)


def test_an_interrupted_pooled_request_keeps_its_finished_batches(
    engine: HFEngine, tmp_path: Path
) -> None:
    """The result cache stores a pooled request batch by batch: interrupted in its second
    batch, the first batch's texts and reference scores are kept, and a rerun computes
    only the rest, with the same results as an uninterrupted run."""
    from evalkit.engines.base import Generation
    from evalkit.engines.cache import CachedEngine, ResultCache

    class Interrupted(Exception):
        pass

    prompts = [ChatPrompt(f"Summarize clause {i}: the tenant pays rent.") for i in range(5)]
    requests = [Generation(p, 5, (), " the tenant pays") for p in prompts]
    db = tmp_path / "results.sqlite"
    finished = 0

    def interrupt(n: int) -> None:  # batch_size 3: the first batch has finished
        nonlocal finished
        finished += n
        raise Interrupted

    cached = CachedEngine(engine, ResultCache(db))
    with cached.variant("a"), pytest.raises(Interrupted):
        cached.generate_pooled(requests, progress=interrupt)
    assert finished == engine.batch_size == 3
    rerun = CachedEngine(engine, ResultCache(db))
    with rerun.variant("a"):
        got = rerun.generate_pooled(requests)
    assert (rerun.hits, rerun.misses) == (2 * 3, 2 * 2)
    with engine.variant("a"):
        want = engine.generate_pooled(requests)
    assert [g.text for g in got] == [g.text for g in want]
    for g, w in zip(got, want, strict=True):
        assert g.reference is not None and w.reference is not None
        assert g.reference.logprob == pytest.approx(w.reference.logprob, abs=1e-4)


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
    monkeypatch.setattr("evalkit.engines.hf_scoring.TOKEN_BUDGET", 100)
    lengths = [60, 50, 40, 30, 10, 10, 10]
    got = list(engine._token_batches(list(range(len(lengths))), lengths))
    assert sorted(i for b in got for i in b) == list(range(len(lengths)))
    for batch in got:
        assert len(batch) <= engine.batch_size
        assert len(batch) == 1 or max(lengths[i] for i in batch) * len(batch) <= 100
    # long sequences run alone, the short ones still share batches
    alone = list(engine._token_batches(list(range(len(lengths))), lengths, alone=40))
    assert alone[:3] == [[0], [1], [2]]
    assert sorted(i for b in alone[3:] for i in b) == [3, 4, 5, 6] and len(alone) < 7


def manual_kl(engine: HFEngine, text: str, variant: str, first: int) -> tuple[float, float]:
    """(NLL, KL(base || variant) summed over the first `first` tokens) of a text in one
    window, by plain forwards."""
    ids = engine.tokenizer(text, add_special_tokens=False)["input_ids"]
    seq = torch.tensor([[engine.tokenizer.eos_token_id, *ids]])
    with torch.inference_mode():
        with engine.variant("base"):
            base = torch.log_softmax(engine.model(input_ids=seq).logits[0, :-1].float(), -1)
        with engine.variant(variant):
            var = torch.log_softmax(engine.model(input_ids=seq).logits[0, :-1].float(), -1)
    nll = -float(var.gather(1, torch.tensor(ids).unsqueeze(1)).sum())
    kl = float((base.exp() * (base - var)).sum(-1)[:first].sum())
    return nll, kl


@pytest.mark.parametrize("alone", [512, 30])  # 30: the long text runs in a forward of its own
def test_rolling_kl_matches_plain_forwards(engine: HFEngine, monkeypatch, alone: int) -> None:
    monkeypatch.setattr("evalkit.engines.hf_scoring.KL_TOKENS", 20)  # the KL on 20 tokens
    monkeypatch.setattr("evalkit.engines.hf_scoring.ALONE_TOKENS", alone)
    texts = ["The quick brown fox jumps over the lazy dog. " * 6, "A short one."]
    with engine.variant("base"):
        base = engine.rolling_kl(texts)
        base_nll = engine.rolling_nll(texts)
    assert [r.kl for r in base] == [0.0, 0.0]  # the base against itself: no second pass
    assert [r.nll for r in base] == pytest.approx([r.logprob for r in base_nll], rel=1e-5)
    with engine.variant("a"):
        adapted = engine.rolling_kl(texts)
        adapted_nll = engine.rolling_nll(texts)
    with engine.variant("merged:a"):
        merged = engine.rolling_kl(texts)
    n_tokens = [len(engine.tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]
    assert n_tokens[0] > 20 > n_tokens[1]
    assert [r.kl_tokens for r in adapted] == [20, n_tokens[1]]
    assert [r.n_tokens for r in adapted] == n_tokens  # the NLL is still over every token
    for text, got in zip(texts, adapted, strict=True):
        nll, kl = manual_kl(engine, text, "a", 20)
        assert got.nll == pytest.approx(nll, rel=1e-4)
        assert got.kl == pytest.approx(kl, rel=1e-3)
        assert got.kl > 1e-4
    assert [r.nll for r in adapted] == pytest.approx([r.logprob for r in adapted_nll], rel=1e-5)
    # merged: the base is computed by unmerging, then the merge is restored
    assert [r.kl for r in merged] == pytest.approx([r.kl for r in adapted], rel=1e-3)
    with engine.variant("merged:a"):
        again = engine.rolling_kl(texts)
    assert [r.kl for r in again] == pytest.approx([r.kl for r in merged], rel=1e-4)


@pytest.mark.parametrize("variant", ["a", "merged:a"])
def test_a_variants_kl_reads_the_bases_own_prose_pass(
    tiny_model_dir: Path, adapter_dir: Path, monkeypatch, variant: str
) -> None:
    """After the base has run the prose, a variant's KL takes the base's distributions from
    that pass: no second base pass (forward tokens are the NLL pass's only), and the same
    figures as an engine that runs the base again."""
    from evalkit.profile import Profile, timer

    monkeypatch.setattr("evalkit.engines.hf_scoring.KL_TOKENS", 20)
    texts = ["The quick brown fox jumps over the lazy dog. " * 6, "A short one."]
    reused, fresh = (HFEngine(str(tiny_model_dir), {"a": adapter_dir}) for _ in range(2))
    prof = Profile()
    with prof.activate():
        with timer("base"), reused.variant("base"):
            reused.rolling_kl(texts)
        with timer("after base"), reused.variant(variant):
            after = reused.rolling_kl(texts)
        with timer("alone"), fresh.variant(variant):
            alone = fresh.rolling_kl(texts)
    rows = {r["stage"]: r for r in prof.rows()}
    assert rows["after base"]["forward_tokens"] == rows["base"]["forward_tokens"]
    # alone, a base pass over each text's first 20 tokens (and the separator) comes on top
    lengths = [len(reused.tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]
    second = sum(min(n, 20) + 1 for n in lengths)
    assert rows["alone"]["forward_tokens"] == rows["base"]["forward_tokens"] + second
    assert [r.kl for r in after] == pytest.approx([r.kl for r in alone], rel=1e-4)
    assert [r.top1 for r in after] == [r.top1 for r in alone]
    assert [r.nll for r in after] == [r.nll for r in alone]
    assert all(r.kl > 1e-4 for r in after)


def test_a_merged_variant_leaves_the_base_weights_exactly_as_they_were(
    tiny_model_dir: Path, adapter_dir: Path
) -> None:
    """Merging and unmerging in place is W + BA - BA, which floating point does not undo:
    the weights a merge touched are put back bit for bit, so the figures of a variant do
    not depend on whether a merged variant ran before it (nor does the base inside a
    merged variant's KL pass)."""
    eng = HFEngine(str(tiny_model_dir), {"a": adapter_dir})
    before = {k: v.clone() for k, v in eng.model.state_dict().items()}
    ids = torch.tensor([eng.tokenizer("The river rose after three days.")["input_ids"]])
    with torch.inference_mode():
        with eng.variant("a"):
            adapted = eng.model(input_ids=ids).logits
        for _ in range(2):
            with eng.variant("merged:a"):
                merged = eng.model(input_ids=ids).logits
                with eng._as_base():
                    inside = eng.model(input_ids=ids).logits
        with eng.variant("base"):
            base = eng.model(input_ids=ids).logits
        with eng.variant("a"):
            again = eng.model(input_ids=ids).logits
    after = eng.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert torch.equal(adapted, again)
    assert torch.equal(inside, base)
    assert (merged - adapted).abs().max() < 1e-4 < (adapted - base).abs().max()
