"""The in-process judge (`judge.provider.hf:`) on a tiny random Llama with the default
model's tokenizer: its verdict is the allowed value the model finds most likely after the
verdict's opening, its reason is the model's greedy continuation, both checked against a
direct transformers computation; batching changes neither; it goes through JudgeRunner
and the cache like a served judge."""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Any

import pytest

from evalkit.errors import InputError
from evalkit.scoring.judges.core import Item, JudgeRunner, resolve_endpoint, verdict_schema
from evalkit.scoring.judges.hf_judge import (
    REASON_OPENER,
    HFJudgeClient,
    HFJudgeSettings,
    verdict_tokens,
)
from evalkit.scoring.judges.spec import load_judge_spec
from evalkit.suite.config import JudgeProviderConfig

REPO = Path(__file__).resolve().parents[3]
RATING = {
    "type": "object",
    "properties": {"score": {"type": "integer", "enum": [1, 2, 3, 4, 5]}, "reason": {}},
}
PAIRWISE = {
    "type": "object",
    "properties": {"winner": {"type": "string", "enum": ["A", "B", "tie"]}, "reason": {}},
}
QUESTIONS = [
    "Rate this answer: Paris is the capital of France.",
    "Rate: 2 + 2 = 5.",
    "Rate this summary of a lease clause: the tenant pays rent monthly, in advance.",
    "Rate: water boils at 100 degrees Celsius at sea level.",
    "Rate the answer 'blue' to: what colour is a clear daytime sky?",
]


def _messages(q: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": "You grade answers."}, {"role": "user", "content": q}]


@functools.cache
def _load(model_dir: Path) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    return tok, AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()


def _direct(model_dir: Path, q: str, schema: dict[str, Any], max_tokens: int) -> dict[str, Any]:
    """The same reply computed one request at a time with plain transformers calls."""
    import torch

    tok, model = _load(model_dir)
    v = verdict_tokens(tok, schema)
    text = tok.apply_chat_template(_messages(q), add_generation_prompt=True, tokenize=False)
    ids = tok(text + v.opening, add_special_tokens=False)["input_ids"]
    with torch.inference_mode():
        logits = model(torch.tensor([ids])).logits[0, -1]
    lp = torch.log_softmax(logits.float(), -1)[list(v.tokens)]
    best = int(lp.argmax())
    closing = tok(v.closing, add_special_tokens=False)["input_ids"] if v.closing else []
    opener = tok(REASON_OPENER, add_special_tokens=False)["input_ids"]
    opening = tok(v.opening, add_special_tokens=False)["input_ids"]
    room = max_tokens - len(opening) - 1 - len(closing) - len(opener)
    ids = ids + [v.tokens[best], *closing, *opener]
    reason: list[int] = []
    with torch.inference_mode():
        for _ in range(room):
            nxt = int(model(torch.tensor([ids + reason])).logits[0, -1].argmax())
            reason.append(nxt)
            if nxt == tok.eos_token_id or '"' in tok.decode(reason):
                break
    return {"value": v.values[best], "logprobs": lp.tolist(), "reason": tok.decode(reason)}


def test_verdict_and_reason_match_a_direct_computation(tiny_model_dir: Path) -> None:
    client = HFJudgeClient(HFJudgeSettings(str(tiny_model_dir), max_tokens=16, batch_size=4))
    replies = client.run_all([(_messages(q), RATING) for q in QUESTIONS])
    assert len(replies) == len(QUESTIONS)
    for q, reply in zip(QUESTIONS, replies, strict=True):
        want = _direct(tiny_model_dir, q, RATING, 16)
        assert reply.text is not None
        assert reply.text.startswith(f'{{"score": {want["value"]}{REASON_OPENER}')
        written = reply.text.removeprefix(f'{{"score": {want["value"]}{REASON_OPENER}')
        assert written.removesuffix('"}') == want["reason"].split('"')[0]
        assert reply.finish_reason == ("stop" if '"' in want["reason"] else "length")
        # top logprobs: every allowed value, most likely first, as the model gives them
        assert reply.top_logprobs is not None
        top = dict(reply.top_logprobs[0])
        assert set(top) == {"1", "2", "3", "4", "5"}
        assert reply.top_logprobs[0][0][0] == str(want["value"])
        for value, lp in zip([1, 2, 3, 4, 5], want["logprobs"], strict=True):
            assert math.isclose(top[str(value)], lp, abs_tol=1e-4)


def test_batch_size_changes_no_verdict(tiny_model_dir: Path) -> None:
    requests = [(_messages(q), RATING) for q in QUESTIONS]
    one = HFJudgeClient(HFJudgeSettings(str(tiny_model_dir), max_tokens=12, batch_size=1))
    many = HFJudgeClient(HFJudgeSettings(str(tiny_model_dir), max_tokens=12, batch_size=8))
    for a, b in zip(one.run_all(requests), many.run_all(requests), strict=True):
        assert a.top_logprobs is not None and b.top_logprobs is not None
        for (va, la), (vb, lb) in zip(
            sorted(a.top_logprobs[0]), sorted(b.top_logprobs[0]), strict=True
        ):
            assert va == vb and math.isclose(la, lb, abs_tol=1e-4)
        assert a.top_logprobs[0][0][0] == b.top_logprobs[0][0][0]
        assert a.text == b.text


def test_pairwise_verdict_is_a_quoted_letter_and_parses(tiny_model_dir: Path) -> None:
    from evalkit.scoring.judges.parse import parse_pairwise

    client = HFJudgeClient(HFJudgeSettings(str(tiny_model_dir), max_tokens=6, logprobs=False))
    (reply,) = client.run_all([(_messages("Which answer is better, A or B?"), PAIRWISE)])
    want = _direct(tiny_model_dir, "Which answer is better, A or B?", PAIRWISE, 6)
    # 6 tokens hold `{"winner": "X"` and nothing more: no reason, a closed object
    assert reply.text == f'{{"winner": "{want["value"]}"}}'
    assert reply.top_logprobs is None
    assert parse_pairwise(reply.text).score == {"A": 1.0, "B": 0.0, "tie": 0.5}[want["value"]]


def test_values_that_are_not_one_token_are_refused(tiny_model_dir: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    ten = {"properties": {"score": {"enum": list(range(1, 11))}, "reason": {}}}
    with pytest.raises(InputError, match="one token") as err:
        verdict_tokens(tok, ten)
    assert "at most 9 points" in (err.value.hint or "")


def test_runner_judges_in_process_and_reuses_the_cache(tiny_model_dir: Path) -> None:
    from evalkit.paths import cache_dir
    from evalkit.scoring.judges.cache import JudgeCache

    spec = load_judge_spec(REPO / "judges" / "general.yaml")
    endpoint = resolve_endpoint(JudgeProviderConfig(hf=str(tiny_model_dir), max_tokens=10), REPO)
    assert endpoint.host == "in-process (transformers)" and endpoint.model_id.startswith("hf|")
    items = [Item(q, ("An answer.",)) for q in QUESTIONS[:3]]
    cache = JudgeCache(cache_dir() / "results.sqlite")
    with JudgeRunner(endpoint, cache) as runner:
        first = runner.judge(spec, items)
    assert all(j.score is not None and 1 <= j.score <= 5 for j in first)
    assert all(j.weighted is not None for j in first)  # logprobs on by default
    with JudgeRunner(endpoint, cache) as runner:
        again = runner.judge(spec, items)
        assert runner.client is None  # all from the cache: no model loaded
    assert [j.score for j in again] == [j.score for j in first] and all(j.cached for j in again)
    assert verdict_schema(spec)["required"][0] == "score"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"hf": "builtin:smollm2-135m-instruct", "serve": "builtin:smollm2-135m-instruct"}, "one"),
        ({"hf": "builtin:smollm2-135m-instruct", "temperature": 0.7}, "greedily"),
    ],
)
def test_provider_config_refuses_hf_with_another_endpoint_or_sampling(
    fields: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        JudgeProviderConfig(**fields)


def test_missing_hf_model_is_an_input_error(tmp_path: Path) -> None:
    from evalkit.scoring.judges.core import check_hf_model

    with pytest.raises(InputError, match="neither builtin"):
        check_hf_model("no-such-model-dir", tmp_path)


def test_dtype_auto_is_bfloat16_only_where_the_cpu_computes_it(monkeypatch) -> None:
    from pathlib import Path as P

    import torch

    from evalkit.scoring.judges import hf_judge

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)

    assert hf_judge.resolve_dtype("float32") == "float32"
    assert hf_judge.resolve_dtype("bfloat16") == "bfloat16"
    for flags, want in (("fpu avx2 avx512f", "float32"), ("fpu avx512_bf16 amx_bf16", "bfloat16")):
        monkeypatch.setattr(P, "read_text", lambda self, flags=flags: f"flags : {flags}\n")
        assert hf_judge.resolve_dtype("auto") == want


def test_the_dtype_is_part_of_the_judge_model_id(tiny_model_dir: Path) -> None:
    ids = {
        d: resolve_endpoint(JudgeProviderConfig(hf=str(tiny_model_dir), dtype=d), REPO).model_id
        for d in ("float32", "bfloat16")
    }
    assert ids["float32"].endswith("|float32") and ids["bfloat16"].endswith("|bfloat16")


def test_a_model_that_does_not_load_is_a_model_load_error(tmp_path: Path) -> None:
    from evalkit.errors import ModelLoadError

    (tmp_path / "config.json").write_text('{"model_type": "no-such-architecture"}')
    with pytest.raises(ModelLoadError, match="could not load the judge model"):
        HFJudgeClient(HFJudgeSettings(str(tmp_path)))
