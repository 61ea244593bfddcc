"""Greedy generation where finished rows leave the batch (engines/hf_generate.py): the
same tokens as transformers' `generate` run on one prompt at a time, on a tiny random
Llama, with rows that end at different steps (an end-of-sequence token, a stop string)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from evalkit.engines.hf_generate import generate_greedy
from evalkit.profile import Profile

PROMPTS = [
    "a",
    "a much longer prompt about contract clauses " * 4,
    "b c d",
    "Summarize this clause: the tenant pays rent monthly.",
    "x " * 30,
    "What is the capital of France?",
]


@pytest.fixture(scope="module")
def tiny(tiny_model_dir: Path) -> tuple[Any, Any]:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    tok.padding_side = "left"
    config = AutoConfig.from_pretrained(tiny_model_dir)
    # larger random weights than the shared tiny model's: its greedy text repeats one
    # token, this one writes varied text, so rows end at different steps
    config.initializer_range = 0.2
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()
    model.generation_config.do_sample = False
    return model, tok


def _encode(tok: Any) -> list[list[int]]:
    return [list(tok(p, add_special_tokens=False)["input_ids"]) for p in PROMPTS]


def _one_at_a_time(model: Any, tok: Any, encoded: list[list[int]], n: int) -> list[list[int]]:
    """transformers' own greedy generate, one prompt per call (no padding at all), cut
    after the first end-of-sequence token."""
    import torch

    ends = model.generation_config.eos_token_id
    ends = set(ends if isinstance(ends, list) else [ends])
    out = []
    with torch.inference_mode():
        for ids in encoded:
            gen = model.generate(
                input_ids=torch.tensor([ids]),
                attention_mask=torch.ones((1, len(ids)), dtype=torch.long),
                max_new_tokens=n,
                do_sample=False,
                pad_token_id=tok.pad_token_id,
            )[0, len(ids) :].tolist()
            cut = next((k + 1 for k, t in enumerate(gen) if t in ends), len(gen))
            out.append(gen[:cut])
    return out


def test_rows_that_end_early_leave_the_batch_with_the_same_tokens(tiny: tuple) -> None:
    model, tok = tiny
    encoded = _encode(tok)
    free = _one_at_a_time(model, tok, encoded, 12)
    # make a token the random model writes mid-way an end-of-sequence token, so rows end
    # at different steps (a random model never writes the real one)
    original = model.generation_config.eos_token_id
    model.generation_config.eos_token_id = [original, free[0][3], free[3][6]]
    try:
        want = _one_at_a_time(model, tok, encoded, 12)
        prof = Profile()
        with prof.activate(), prof.stage("gen"):
            got = generate_greedy(model, tok, encoded, max_new_tokens=12, batch_size=4)
    finally:
        model.generation_config.eos_token_id = original
    assert got == want
    lengths = sorted(len(g) for g in got)
    assert len(got[0]) <= 4 and len(got[3]) <= 7  # ended early, at different steps
    assert lengths[-1] == 12  # others ran to the limit
    row = prof.rows()[0]
    # every generated token counted once; in batches of 4 a finished row is a quarter of
    # its batch, so it leaves at once and costs no further forward tokens
    assert row["generated_tokens"] == sum(lengths)
    prompt_tokens = sum(len(e) for e in encoded)
    # each row's last token is never fed back
    assert row["forward_tokens"] == prompt_tokens + sum(lengths) - len(PROMPTS)


def test_a_stop_string_ends_a_row_and_batching_changes_nothing(tiny: tuple) -> None:
    model, tok = tiny
    encoded = _encode(tok)
    free = _one_at_a_time(model, tok, encoded, 10)
    # a stop string row 1 first writes with its (k+1)-th and (k+2)-th tokens
    k = next(
        k
        for k in range(3, 8)
        if tok.decode(free[1][k : k + 2]).strip()
        and tok.decode(free[1][k : k + 2]) not in tok.decode(free[1][: k + 1])
    )
    stop = tok.decode(free[1][k : k + 2])
    got = generate_greedy(model, tok, encoded, max_new_tokens=10, batch_size=3, stops=[stop])
    for g, f in zip(got, free, strict=True):
        assert f[: len(g)] == g  # a prefix of the free run: the same tokens, cut early
        text = tok.decode(g)
        assert len(g) == len(f) or stop in text
    assert len(got[1]) == k + 2
    one = generate_greedy(model, tok, encoded, max_new_tokens=10, batch_size=1, stops=[stop])
    assert one == got
    for size in (1, 2, 16):
        assert generate_greedy(model, tok, encoded, max_new_tokens=10, batch_size=size) == free


def test_no_tokens_asked_for_gives_empty_rows(tiny: tuple) -> None:
    model, tok = tiny
    assert generate_greedy(model, tok, _encode(tok), max_new_tokens=0, batch_size=4) == [
        [] for _ in PROMPTS
    ]


def test_a_shared_prompt_start_runs_once_with_the_same_tokens(tiny: tuple) -> None:
    from evalkit.engines.chat import render_chat

    model, tok = tiny
    # chat prompts share the template's system turn (25 tokens with the default model's
    # template) and, here, an instruction: their common start runs once per batch
    encoded = [
        list(tok(render_chat(tok, f"Answer briefly. {p}"), add_special_tokens=False)["input_ids"])
        for p in PROMPTS
    ]
    shared = next(
        k for k in range(len(encoded[0])) if len({tuple(e[: k + 1]) for e in encoded}) > 1
    )
    assert shared >= 25
    want = _one_at_a_time(model, tok, encoded, 8)
    prof = Profile()
    with prof.activate(), prof.stage("gen"):
        got = generate_greedy(model, tok, encoded, max_new_tokens=8, batch_size=len(PROMPTS))
    assert got == want
    row = prof.rows()[0]
    prompt_tokens = sum(len(e) for e in encoded) - (len(PROMPTS) - 1) * shared
    assert row["forward_tokens"] == prompt_tokens + sum(map(len, got)) - len(PROMPTS)


def _reference_logprob(model: Any, prompt: list[int], ref: list[int]) -> float:
    """log p(ref | prompt) from one unpadded forward over prompt + ref."""
    import torch

    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([prompt + ref])).logits[0].double()
    logp = torch.log_softmax(logits, dim=-1)
    return float(sum(logp[len(prompt) - 1 + t, tok] for t, tok in enumerate(ref)))


def test_rows_of_several_tasks_share_a_batch_and_read_their_references(tiny: tuple) -> None:
    """Rows with their own limits, stop strings and references in one batch: each row's
    tokens are the ones it gets alone with its settings, and each reference's score is a
    plain forward's, read in the prompt's pass (no second pass over the prompt)."""
    from evalkit.engines.hf_generate import GenRow, generate_rows

    model, tok = tiny
    encoded = _encode(tok)
    free = _one_at_a_time(model, tok, encoded, 12)
    stop = tok.decode(free[4][2:4])  # row 4's own text, so its stop string ends it early
    refs: list[list[int] | None] = [
        list(tok(" the tenant pays", add_special_tokens=False)["input_ids"]),
        None,
        [],  # an empty reference scores 0
        list(tok(" rent monthly and on time", add_special_tokens=False)["input_ids"]),
        None,
        [free[5][0]],  # one token: nothing to feed after the prompt
    ]
    limits = [12, 5, 3, 0, 12, 9]  # row 3 only reads its reference
    rows = [
        GenRow(p, n, (stop,) if i == 4 else (), r)
        for i, (p, n, r) in enumerate(zip(encoded, limits, refs, strict=True))
    ]
    prof = Profile()
    with prof.activate(), prof.stage("gen"):
        got = generate_rows(model, tok, rows, batch_size=len(rows))
    for i, (g, row) in enumerate(zip(got, rows, strict=True)):
        alone = generate_greedy(
            model,
            tok,
            [row.prompt],
            max_new_tokens=row.max_new_tokens,
            batch_size=1,
            stops=row.stops,
        )[0]
        assert g.tokens == alone == free[i][: len(alone)], i
        if row.reference is None:
            assert g.reference_logprob is None
        else:
            want = _reference_logprob(model, row.prompt, row.reference)
            assert g.reference_logprob == pytest.approx(want, abs=1e-4), i
    assert got[2].reference_logprob == 0.0 and got[3].tokens == []
    assert len(got[1].tokens) == 5 and len(got[4].tokens) < 12  # its limit; its stop string
    assert stop in tok.decode(got[4].tokens)
    # the prompts, each reference but its last token, then the decode steps: every
    # generated token but each row's last, and the finished rows that stay in the batch
    # until they are a quarter of it
    fed = sum(len(r) - 1 for r in refs if r)
    written = [len(g.tokens) for g in got]
    assert prof.rows()[0]["generated_tokens"] == sum(written)
    decode = prof.rows()[0]["forward_tokens"] - sum(len(e) for e in encoded) - fed
    needed = sum(written) - sum(1 for w in written if w)
    assert needed < decode <= needed * 4 / 3  # row 3 (no tokens) stays until a second ends
    # batches of two and of one give the same
    for size in (1, 2):
        again = generate_rows(model, tok, rows, batch_size=size)
        assert [a.tokens for a in again] == [g.tokens for g in got]
        for a, g in zip(again, got, strict=True):
            assert (a.reference_logprob is None) == (g.reference_logprob is None)
            if g.reference_logprob is not None:
                assert a.reference_logprob == pytest.approx(g.reference_logprob, abs=1e-4)


def test_rows_with_references_prefill_in_chunks_within_the_budget(
    tiny: tuple, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows with references prefill in chunks of at most REFERENCE_BUDGET padded positions
    (their logits over the whole vocabulary are held at once); the chunks are joined for
    the decode, with the same tokens and scores as one prefill."""
    from evalkit.engines import hf_generate
    from evalkit.engines.hf_generate import GenRow, _prefill_chunks, generate_rows

    model, tok = tiny
    encoded = _encode(tok)
    ref = list(tok(" the tenant pays rent", add_special_tokens=False)["input_ids"])
    rows = [GenRow(p, 6, (), ref) for p in encoded]
    whole = generate_rows(model, tok, rows, batch_size=len(rows))
    budget = 3 * (max(len(p) for p in encoded) + len(ref))
    monkeypatch.setattr(hf_generate, "REFERENCE_BUDGET", budget)
    order = sorted(range(len(rows)), key=lambda i: len(rows[i].prompt))
    chunks = _prefill_chunks(rows, order)
    assert len(chunks) >= 2 and [i for c in chunks for i in c] == order
    for c in chunks:
        assert len(c) * max(len(rows[i].prompt) + len(ref) for i in c) <= budget
    chunked = generate_rows(model, tok, rows, batch_size=len(rows))
    assert [r.tokens for r in chunked] == [r.tokens for r in whole]
    for a, b in zip(chunked, whole, strict=True):
        assert a.reference_logprob == pytest.approx(b.reference_logprob, abs=1e-4)
