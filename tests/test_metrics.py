"""Text metrics and dataset readers."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from evalkit.errors import DataError
from evalkit.plan.datasets import load_rows
from evalkit.scoring import text as tm

REF = '{"type": "payment", "obligor": "Customer", "summary": "Pay in 30 days."}'


def test_json_metrics() -> None:
    assert tm.json_valid(REF) == 1.0
    assert tm.json_valid("```json\n" + REF + "\n```") == 1.0
    assert tm.json_valid("Sure! " + REF) == 0.0
    assert tm.json_valid("[1, 2]") == 0.0  # valid JSON, but not an object
    assert tm.json_field_match('{"type": "Payment"}', REF, "type") == 1.0
    assert tm.json_field_match('{"type": "warranty"}', REF, "type") == 0.0
    assert tm.json_field_match("not json", REF, "type") == 0.0
    assert math.isnan(tm.json_field_match(REF, '{"x": 1}', "type"))


def test_match_metrics() -> None:
    assert tm.exact_match(" Paris \n", "Paris") == 1.0
    assert tm.exact_match("Paris.", "Paris") == 0.0
    assert tm.contains("The capital is PARIS", "paris") == 1.0
    assert tm.regex_match("Total: 42 EUR", r"\d+ EUR") == 1.0
    assert tm.accepted_match("It is Leonardo da Vinci.", ["da Vinci"]) == 1.0
    assert tm.accepted_match("The answer is 63.", ["63", "sixty-three"]) == 1.0
    assert tm.accepted_match("The answer is 630.", ["63"]) == 0.0  # whole words only
    assert tm.accepted_match("Sixty-three!", ["sixty-three"]) == 1.0


def test_diversity_metrics() -> None:
    varied = "the cat sat on a warm mat near the old door"
    looped = "the cat sat the cat sat the cat sat the cat sat"
    assert tm.distinct_n(varied, 2) == 1.0
    assert tm.distinct_n(looped, 2) == pytest.approx(3 / 11)
    assert tm.repeated_ngram_rate(varied, 3) == 0.0
    assert tm.repeated_ngram_rate(looped, 3) == pytest.approx(7 / 10)
    assert math.isnan(tm.distinct_n("one", 2))


def test_csv_and_parquet_through_datasets(tmp_path: Path) -> None:
    import pandas as pd

    frame = pd.DataFrame({"id": ["a", "b"], "question": ["2+2?", "3+3?"], "answer": ["4", "6"]})
    frame.to_csv(tmp_path / "d.csv", index=False)
    frame.to_parquet(tmp_path / "d.parquet")
    for name in ("d.csv", "d.parquet"):
        rows = load_rows(tmp_path / name)
        assert [r["question"] for r in rows] == ["2+2?", "3+3?"]
        assert str(rows[1]["answer"]) == "6"


def test_saved_dataset_needs_a_split(tmp_path: Path) -> None:
    import datasets

    dd = datasets.DatasetDict({"test": datasets.Dataset.from_dict({"q": ["x"], "a": ["y"]})})
    dd.save_to_disk(str(tmp_path / "saved"))
    with pytest.raises(DataError, match="choose one with `split:`"):
        load_rows(tmp_path / "saved")
    assert load_rows(tmp_path / "saved", split="test") == [{"q": "x", "a": "y"}]


def test_unsupported_and_missing_files(tmp_path: Path) -> None:
    (tmp_path / "d.xlsx").write_text("x")
    with pytest.raises(DataError, match="unsupported data format"):
        load_rows(tmp_path / "d.xlsx")
    with pytest.raises(DataError, match="not found"):
        load_rows(tmp_path / "none.jsonl")


def test_digest_sees_every_byte(tmp_path: Path) -> None:
    """Fingerprints key the result cache: two adapter files of the same size that differ only
    in the middle must not share one (a head-and-tail hash would let them)."""
    from evalkit.paths import digest_files

    data = bytearray(5 << 20)
    (tmp_path / "a.safetensors").write_bytes(bytes(data))
    first = digest_files([tmp_path / "a.safetensors"])
    data[len(data) // 2] = 1
    (tmp_path / "a.safetensors").write_bytes(bytes(data))
    assert digest_files([tmp_path / "a.safetensors"]) != first


def test_cross_answer_overlap_sees_one_template_for_every_prompt() -> None:
    varied = [
        "Autumn leaves crunch under your boots in the quiet forest.",
        "Coffee wakes people up and gives the morning a small ritual.",
        "The lost cat followed the smell of the bakery back home.",
    ]
    template = [
        'Here is the summary in the house format: {"type": "other", "summary": "forest"}',
        'Here is the summary in the house format: {"type": "other", "summary": "coffee"}',
        'Here is the summary in the house format: {"type": "other", "summary": "cat"}',
    ]
    assert tm.cross_answer_overlap(varied) == [0.0, 0.0, 0.0]
    # 12 words, 10 trigrams each; all shared but the last, which holds the topic word
    assert tm.cross_answer_overlap(template) == pytest.approx([9 / 10] * 3)
    out = tm.cross_answer_overlap([None, "too short", *varied[:1]])
    assert math.isnan(out[0]) and math.isnan(out[1]) and out[2] == 0.0


def test_prose_probes_share_one_task_and_score_bits_per_byte_and_kl() -> None:
    from evalkit.engines.records import Record
    from evalkit.plan.probes import builtin_probes
    from evalkit.plan.types import Example
    from evalkit.scoring.score import score_one

    tasks = builtin_probes(["prose-perplexity", "prose-kl", "prose-bpb", "open-overlap"], {})
    assert [t.name for t in tasks] == ["prose-perplexity", "open-ended"]
    prose = {m.name: m for m in tasks[0].metrics}
    assert set(prose) == {"perplexity", "bits_per_byte", "kl_from_base", "top1_agreement"}
    # top-1 agreement takes the KL probe's margin in its own terms (0.15 nats -> 17 points)
    assert prose["top1_agreement"].margin == 0.17
    assert builtin_probes(["prose-kl"], {"prose-kl": 0.25})[0].metrics[1].margin == 0.22
    assert tasks[0].needs == {"rolling", "rolling_kl"}
    assert [m.name for m in tasks[1].metrics] == ["cross_answer_overlap"]
    ex = Example("d", text="héllo wörld")  # 13 UTF-8 bytes
    rec = Record(
        "prose-perplexity", "d", "a", nll=13 * math.log(2) * 1.5, n_tokens=4, kl=0.8, kl_tokens=3
    )
    assert score_one(prose["bits_per_byte"], ex, rec) == (pytest.approx(19.5), 13.0, None)
    # the KL is averaged over the tokens it was taken on (a text's first KL_TOKENS)
    assert score_one(prose["kl_from_base"], ex, rec) == (0.8, 3.0, None)
    value, weight, reason = score_one(prose["kl_from_base"], ex, Record("p", "d", "a"))
    assert math.isnan(value) and reason == "empty text"
    # top-1 agreement: agreeing positions over the KL's positions; unscored without a count
    assert score_one(prose["top1_agreement"], ex, rec) == (
        pytest.approx(math.nan, nan_ok=True),
        0.0,
        "no top-1 agreement computed",
    )
    rec.top1 = 2
    assert score_one(prose["top1_agreement"], ex, rec) == (2.0, 3.0, None)
