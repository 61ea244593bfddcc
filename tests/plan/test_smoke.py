"""A smoke run (--limit N) cuts each document of a rolling task to its first
SMOKE_DOCUMENT_CHARS characters, says so in the plan's notes, and leaves everything else
(and every full run) as it was."""

from __future__ import annotations

from pathlib import Path

from evalkit.plan.build import build_plan
from evalkit.plan.smoke import SMOKE_DOCUMENT_CHARS, cut_document
from evalkit.suite.loader import load_suite

DEMO = Path(__file__).resolve().parents[2] / "suites" / "legal.yaml"


def test_a_document_is_cut_at_the_last_word_boundary() -> None:
    text = "word " * 300  # 1500 characters
    cut = cut_document(text)
    assert len(cut) <= SMOKE_DOCUMENT_CHARS and text.startswith(cut)
    assert cut.endswith("word") and len(cut) > SMOKE_DOCUMENT_CHARS - 6
    assert cut_document("short text") == "short text"
    assert cut_document("x" * 1500) == "x" * SMOKE_DOCUMENT_CHARS  # no boundary to cut at


def test_a_smoke_plan_cuts_the_prose_and_says_so() -> None:
    suite = load_suite(DEMO)
    full, smoke = build_plan(suite), build_plan(suite, limit=3)
    prose_full, prose_smoke = full.task("prose-perplexity"), smoke.task("prose-perplexity")
    assert prose_full is not None and prose_smoke is not None
    assert len(prose_smoke.examples) == 3
    assert any(len(ex.text or "") > SMOKE_DOCUMENT_CHARS for ex in prose_full.examples[:3])
    for cut, whole in zip(prose_smoke.examples, prose_full.examples, strict=False):
        assert cut.id == whole.id and (whole.text or "").startswith(cut.text or "")
        assert 0 < len(cut.text or "") <= SMOKE_DOCUMENT_CHARS
    assert smoke.notes == (
        f"smoke run: prose-perplexity scores each document's first "
        f"{SMOKE_DOCUMENT_CHARS:,} characters",
    )
    assert full.notes == ()
    # tasks without whole documents keep their texts and prompts
    for name in ("legal-summary", "knowledge-open"):
        a, b = full.task(name), smoke.task(name)
        assert a is not None and b is not None
        assert [ex.prompt for ex in b.examples] == [ex.prompt for ex in a.examples[:3]]
