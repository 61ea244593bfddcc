"""Drafts checked instead of decoded (engines/hf_drafts) on a tiny random Llama: a draft
is kept exactly when greedy decoding writes it, and a merged variant reads its adapter's
generations as drafts with the texts and reference scores it decodes alone."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from evalkit.engines.base import ChatPrompt, Generation
from evalkit.engines.hf import HFEngine
from evalkit.engines.hf_drafts import verify_drafts
from evalkit.engines.hf_generate import GenRow, generate_rows
from evalkit.profile import Profile


@pytest.fixture(scope="module")
def adapter_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(5)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    config = LoraConfig(r=4, lora_alpha=8, init_lora_weights=False, target_modules=["q_proj"])
    out = tmp_path_factory.mktemp("adapter")
    get_peft_model(model, config).save_pretrained(out)
    return out


def new_engine(tiny_model_dir: Path, adapter_dir: Path) -> HFEngine:
    return HFEngine(str(tiny_model_dir), {"a": adapter_dir}, batch_size=4)


def rows_of(engine: HFEngine) -> list[GenRow]:
    tok = engine.tokenizer

    def ids(text: str) -> list[int]:
        return list(tok(text, add_special_tokens=False)["input_ids"])

    return [
        GenRow(ids("The first prompt is this one"), 6),
        GenRow(ids("Another"), 4, reference=ids("a reference to read")),
        GenRow(ids("A third and rather longer prompt than the others"), 9),
        GenRow(ids("Short"), 3, reference=ids("x")),
    ]


def test_a_draft_is_kept_exactly_when_greedy_decoding_writes_it(
    tiny_model_dir: Path, adapter_dir: Path
) -> None:
    engine = new_engine(tiny_model_dir, adapter_dir)
    rows = rows_of(engine)
    decoded = generate_rows(engine.model, engine.tokenizer, rows, batch_size=4)
    drafts = [list(r.tokens) for r in decoded]
    assert all(len(d) == r.max_new_tokens for d, r in zip(drafts, rows, strict=True))
    got = verify_drafts(engine.model, engine.tokenizer, rows, drafts, engine._token_batches)
    for row, want, have in zip(rows, decoded, got, strict=True):
        assert have is not None and have.tokens == want.tokens
        if row.reference is None:
            assert have.reference_logprob is None
        else:
            assert have.reference_logprob == pytest.approx(want.reference_logprob, abs=1e-4)
    vocab = len(engine.tokenizer)
    wrong = [list(d) for d in drafts]
    wrong[0][3] = (wrong[0][3] + 1) % vocab  # not the argmax there
    wrong[1] = wrong[1][:-1]  # stops short of its limit, with no end token
    wrong[2] = wrong[2] + [wrong[2][-1]]  # runs past its limit
    wrong[3] = []
    got = verify_drafts(engine.model, engine.tokenizer, rows, wrong, engine._token_batches)
    assert got == [None] * 4


def test_drafts_that_mostly_fail_stop_being_checked(
    tiny_model_dir: Path, adapter_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import evalkit.engines.hf_drafts as hf_drafts

    engine = new_engine(tiny_model_dir, adapter_dir)
    rows = [r for r in rows_of(engine) if r.reference is None]
    drafts = [r.tokens for r in generate_rows(engine.model, engine.tokenizer, rows, batch_size=4)]
    spoiled = [[(d[0] + 1) % len(engine.tokenizer), *d[1:]] for d in drafts]
    passes = []
    real = hf_drafts.read_continuations
    monkeypatch.setattr(hf_drafts, "read_continuations", lambda *a: passes.append(1) or real(*a))

    def one_by_one(order: list[int], lengths: list[int]):
        return ([i] for i in order)

    got = verify_drafts(engine.model, engine.tokenizer, rows, spoiled, one_by_one)
    assert got == [None, None] and len(passes) == 1  # the second row was not checked
    got = verify_drafts(engine.model, engine.tokenizer, rows, drafts, one_by_one)
    assert all(g is not None for g in got) and len(passes) == 3


def pooled(engine: HFEngine, variant: str, requests: list[Generation]) -> tuple[list, dict]:
    prof = Profile()
    with prof.activate(), prof.stage("gen"), engine.variant(variant):
        got = engine.generate_pooled(requests)
    return got, prof.rows()[0]


def test_a_merged_variant_reads_its_adapters_generations_as_drafts(
    tiny_model_dir: Path, adapter_dir: Path
) -> None:
    requests = [
        Generation(ChatPrompt(user=f"Question number {i}: what follows?"), 5 + i % 3, (), ref)
        for i, ref in enumerate([None, "an answer", None, "yes", None])
    ]
    engine = new_engine(tiny_model_dir, adapter_dir)
    adapter, _ = pooled(engine, "a", requests)
    merged, row = pooled(engine, "merged:a", requests)
    alone, alone_row = pooled(new_engine(tiny_model_dir, adapter_dir), "merged:a", requests)
    assert [g.text for g in merged] == [g.text for g in alone]
    for m, a in zip(merged, alone, strict=True):
        if a.reference is None:
            assert m.reference is None
        else:
            assert m.reference is not None
            assert m.reference.logprob == pytest.approx(a.reference.logprob, abs=1e-4)
            assert m.reference.n_tokens == a.reference.n_tokens
    # every row checked, none decoded
    assert row["verified_tokens"] == sum(r.max_new_tokens for r in requests)
    assert "generated_tokens" not in row
    assert alone_row["generated_tokens"] == row["verified_tokens"]
    assert [g.text for g in adapter] == [g.text for g in merged]


def test_a_draft_that_fails_is_decoded(tiny_model_dir: Path, adapter_dir: Path) -> None:
    requests = [Generation(ChatPrompt(user=f"Prompt {i}"), 6) for i in range(3)]
    engine = new_engine(tiny_model_dir, adapter_dir)
    pooled(engine, "a", requests)
    # one draft spoiled: its row is decoded, the other two are kept
    memo = engine._drafts._memo
    key = next(iter(memo))
    memo[key] = [(t + 1) % len(engine.tokenizer) for t in memo[key]]
    merged, row = pooled(engine, "merged:a", requests)
    alone, _ = pooled(new_engine(tiny_model_dir, adapter_dir), "merged:a", requests)
    assert [g.text for g in merged] == [g.text for g in alone]
    assert row["verified_tokens"] == 12 and row["generated_tokens"] == 6


class Interrupted(Exception):
    pass


def test_an_interrupted_check_has_handed_on_its_finished_batches(
    tiny_model_dir: Path, adapter_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import evalkit.engines.hf_drafts as hf_drafts

    requests = [Generation(ChatPrompt(user=f"Prompt {i}"), 4 + i % 2) for i in range(6)]
    engine = new_engine(tiny_model_dir, adapter_dir)  # batches of 4 rows
    pooled(engine, "a", requests)
    real = hf_drafts.read_continuations
    passes: list[int] = []

    def second_fails(*args):
        passes.append(1)
        if len(passes) == 2:
            raise Interrupted
        return real(*args)

    monkeypatch.setattr(hf_drafts, "read_continuations", second_fails)
    handed: list[int] = []
    with engine.variant("merged:a"), pytest.raises(Interrupted):
        engine.generate_pooled(requests, on_batch=lambda idx, gens: handed.extend(idx))
    # the first checked batch (the three rows of one limit) was handed on before the second ran
    assert sorted(handed) == [0, 2, 4]


def test_a_draft_must_end_where_decoding_would_stop(tiny_model_dir: Path) -> None:
    """The end check alone (no model): decoding stops at an end-of-sequence token, at the
    first token whose text holds a stop string, or at the limit, and a draft must end
    exactly there."""
    from transformers import AutoTokenizer

    from evalkit.engines.hf_drafts import _ends_as_written

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    eos = tok.eos_token_id

    def ids(text: str) -> list[int]:
        return list(tok(text, add_special_tokens=False)["input_ids"])

    upto, after = ids("Yes it is."), ids(" And more")
    row = GenRow([1], 40, stops=(".",))
    assert _ends_as_written(row, upto, {eos}, tok)
    assert not _ends_as_written(row, upto + after, {eos}, tok)  # runs past its stop
    assert not _ends_as_written(row, upto[:-1], {eos}, tok)  # stops before it
    plain = GenRow([1], 40)
    assert _ends_as_written(plain, after + [eos], {eos}, tok)
    assert not _ends_as_written(plain, [eos] + after, {eos}, tok)  # an end in the middle
    assert not _ends_as_written(plain, after, {eos}, tok)  # neither end nor limit
    assert _ends_as_written(GenRow([1], len(after)), after, {eos}, tok)  # the limit
