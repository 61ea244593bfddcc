"""The HF engine's drift measures on a tiny random Llama with a random LoRA: prose top-1
agreement (counted in rolling_kl's passes) and open-shift (base_topk_shift), each against a
direct computation from plain forward passes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from evalkit.engines.base import ChatPrompt
from evalkit.engines.chat import render_chat
from evalkit.engines.hf import HFEngine
from evalkit.engines.records import Record
from evalkit.plan.types import Example
from evalkit.scoring.metrics import metric_def
from evalkit.scoring.score import score_one

TEXTS = ["The quick brown fox jumps over the lazy dog. " * 6, "A short one, still prose."]


@pytest.fixture(scope="module")
def engine(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> HFEngine:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    lora = LoraConfig(
        r=4, lora_alpha=8, init_lora_weights=False, target_modules=["q_proj", "v_proj"]
    )
    out = tmp_path_factory.mktemp("adapter")
    get_peft_model(model, lora).save_pretrained(out)
    return HFEngine(str(tiny_model_dir), {"a": out}, batch_size=3)


def _logits(engine: HFEngine, ids: list[int], variant: str) -> torch.Tensor:
    with engine.variant(variant), torch.inference_mode():
        return engine.model(input_ids=torch.tensor([ids])).logits[0].float()


def direct_top1(engine: HFEngine, text: str, variant: str, n: int) -> int:
    """Positions among the text's first n where the variant's argmax is the base's: the
    text after the separator token, one plain forward each."""
    ids = engine.tokenizer(text, add_special_tokens=False)["input_ids"]
    seq = [engine.tokenizer.eos_token_id, *ids]
    base = _logits(engine, seq, "base")[:n].argmax(-1)
    var = _logits(engine, seq, variant)[:n].argmax(-1)
    return int((base == var).sum())


def test_top1_is_all_for_the_base_and_matches_a_direct_count(
    engine: HFEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("evalkit.engines.hf_scoring.KL_TOKENS", 20)
    with engine.variant("base"):
        base = engine.rolling_kl(TEXTS)
    with engine.variant("a"):
        adapted = engine.rolling_kl(TEXTS)
    with engine.variant("merged:a"):
        merged = engine.rolling_kl(TEXTS)
    assert [r.top1 for r in base] == [r.kl_tokens for r in base]
    for text, got, m in zip(TEXTS, adapted, merged, strict=True):
        want = direct_top1(engine, text, "a", got.kl_tokens)
        assert got.top1 == want == m.top1
    assert sum(r.top1 or 0 for r in adapted) < sum(r.kl_tokens for r in adapted)
    # the metric: agreeing positions over positions, 1.0 for the base
    spec = metric_def("top1_agreement").spec()
    ex = Example(id="d", text=TEXTS[0])

    def value(rs: object) -> float:
        rec = Record("prose", "d", "v", nll=rs.nll, n_tokens=rs.n_tokens)  # type: ignore[attr-defined]
        rec.kl, rec.kl_tokens, rec.top1 = rs.kl, rs.kl_tokens, rs.top1  # type: ignore[attr-defined]
        v, w, reason = score_one(spec, ex, rec)
        assert reason is None
        return v / w

    assert value(base[0]) == 1.0
    assert value(adapted[0]) == pytest.approx(adapted[0].top1 / 20)
    assert value(adapted[0]) < 1.0


def direct_shift(engine: HFEngine, prompt: ChatPrompt, answer: str, k: int) -> tuple[int, int]:
    tok = engine.tokenizer
    ctx = tok(render_chat(tok, prompt.user, system=prompt.system), add_special_tokens=False)[
        "input_ids"
    ]
    cont = tok(answer, add_special_tokens=False)["input_ids"]
    logits = _logits(engine, ctx + cont, "base")
    outside = 0
    for i, t in enumerate(cont):
        top = logits[len(ctx) - 1 + i].topk(k).indices.tolist()
        outside += t not in top
    return outside, len(cont)


def test_open_shift_matches_the_base_teacher_forced(engine: HFEngine) -> None:
    prompts = [ChatPrompt("What is the capital of France?"), ChatPrompt("Name a colour.")]
    with engine.variant("a"):
        answers = engine.generate(prompts, max_new_tokens=12)
        shifts = engine.base_topk_shift(list(zip(prompts, answers, strict=True)), k=3)
        wide = engine.base_topk_shift(list(zip(prompts, answers, strict=True)), k=50)
        empty = engine.base_topk_shift([(prompts[0], "")], k=3)
    assert empty[0].outside == 0 and empty[0].n_tokens == 0
    for p, a, s, w in zip(prompts, answers, shifts, wide, strict=True):
        assert (s.outside, s.n_tokens) == direct_shift(engine, p, a, 3)
        assert w.outside <= s.outside  # a wider top-k holds at least as many tokens
    # the variant's greedy answers move away from the base: some tokens fall outside
    assert sum(s.outside for s in shifts) > 0
    # the whole vocabulary as top-k: nothing is outside; the base computes it whichever
    # variant is active, merged too
    everything = len(engine.tokenizer)
    with engine.variant("merged:a"):
        full = engine.base_topk_shift(list(zip(prompts, answers, strict=True)), k=everything)
        again = engine.base_topk_shift(list(zip(prompts, answers, strict=True)), k=3)
    assert [s.outside for s in full] == [0, 0]
    assert again == shifts


def test_open_shift_reads_an_answer_once_whichever_variant_wrote_it(tiny_model_dir: Path) -> None:
    """The base's reading of an answer does not depend on the variant that wrote it: a
    merged variant repeating its adapter's answers costs no second forward pass, and the
    figures are the ones a fresh engine computes."""
    from evalkit.profile import Profile, timer

    fresh = HFEngine(str(tiny_model_dir), {}, batch_size=3)
    prompts = [ChatPrompt("What is the capital of France?"), ChatPrompt("Name a colour.")]
    pairs = list(zip(prompts, ["Paris, I think.", "Blue is a colour."], strict=True))
    prof = Profile()
    with prof.activate():
        with timer("first"), fresh.variant("base"):
            first = fresh.base_topk_shift(pairs, k=3)
        with timer("again"), fresh.variant("base"):
            again = fresh.base_topk_shift(pairs, k=3)
        with timer("other k"), fresh.variant("base"):
            other = fresh.base_topk_shift(pairs, k=1)
    rows = {r["stage"]: r for r in prof.rows()}
    # one batch: the prompts' common start (the chat template's system turn) runs once
    ctxs = [fresh._encode_chat(p) for p in prompts]
    seqs = [
        c + fresh.tokenizer(a, add_special_tokens=False)["input_ids"]
        for c, (_, a) in zip(ctxs, pairs, strict=True)
    ]
    shared = next(k for k in range(len(ctxs[0])) if ctxs[0][k] != ctxs[1][k])
    assert shared >= 20
    # an answer's last token predicts nothing of its own, so it is not fed
    assert rows["first"]["forward_tokens"] == sum(map(len, seqs)) - shared - len(seqs)
    assert "forward_tokens" not in rows["again"]  # nothing ran
    assert rows["other k"]["forward_tokens"] == rows["first"]["forward_tokens"]
    assert again == first
    for s, (p, a) in zip(first, pairs, strict=True):
        assert (s.outside, s.n_tokens) == direct_shift(fresh, p, a, 3)
    # a narrower top-k is another request: computed, and leaves at least as many out
    assert all(o.outside >= f.outside for o, f in zip(other, first, strict=True))


@pytest.mark.integration
def test_the_base_reading_its_own_greedy_answers_runs_nothing(default_model_dir: Path) -> None:
    """Answers the base generated itself are its argmax at every token: open-shift counts
    none of them outside its top k without a forward pass, and the engine with nothing
    remembered computes the same zeros; top-1 is still computed (a near tie there may
    break either way in another batch's float order). The default model: a tiny random
    one writes token salad that does not tokenize back to the tokens it wrote."""
    from evalkit.profile import Profile, timer

    prompts = [ChatPrompt("What is the capital of France?"), ChatPrompt("Name a colour.")]
    gen = HFEngine(str(default_model_dir), {}, batch_size=3)
    prof = Profile()
    with prof.activate(), gen.variant("base"):
        answers = gen.generate(prompts, max_new_tokens=12)
        pairs = list(zip(prompts, answers, strict=True))
        with timer("own"):
            own = gen.base_topk_shift(pairs, k=3)
        with timer("top1"):
            gen.base_topk_shift(pairs, k=1)
    rows = {r["stage"]: r for r in prof.rows()}
    assert "forward_tokens" not in rows["own"]
    assert rows["top1"]["forward_tokens"] > 0
    assert [s.outside for s in own] == [0, 0] and all(s.n_tokens > 3 for s in own)
    # the same engine with nothing remembered computes the same zeros (one model load)
    gen._base_greedy.clear()
    gen._shift_memo.clear()
    with gen.variant("base"):
        assert gen.base_topk_shift(pairs, k=3) == own
    for s, (p, a) in zip(own, pairs, strict=True):
        assert (s.outside, s.n_tokens) == direct_shift(gen, p, a, 3)
