"""`evalkit judge calibrate` and `evalkit judge preview` against the loopback test server:
the figures follow from the labels and the judge's behaviour."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from evalkit.cli import app
from tests.conftest import write_jsonl
from tests.judge_server import JudgeServer, ServerState

REPO = Path(__file__).resolve().parents[1]
GOOD = '{"type": "payment", "obligor": "Tenant", "summary": "The Tenant pays."}'


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVALKIT_CACHE_DIR", str(tmp_path / "cache"))


def test_calibrate_rubric_figures(tmp_path: Path) -> None:
    # The fake judge gives house JSON 5 and anything else 2; the labels agree on 6 of 8.
    rows = [{"question": "q", "answer": GOOD, "label": 5} for _ in range(3)]
    rows += [{"question": "q", "answer": "no", "label": 2} for _ in range(3)]
    rows += [
        {"question": "q", "answer": GOOD, "label": 2},
        {"question": "q", "answer": "x y z", "label": 5},
    ]
    rows += [{"question": "q", "answer": "other judge", "label": 1, "judge": "someone-else"}]
    labels = write_jsonl(tmp_path / "labels.jsonl", rows)
    with JudgeServer() as srv:
        res = CliRunner().invoke(
            app,
            ["judge", "calibrate", str(REPO / "judges/general.yaml"), "--labels", str(labels),
             "--base-url", srv.base_url, "--model", "fake", "--json", str(tmp_path / "c.json")],
        )  # fmt: skip
    assert res.exit_code == 0, res.output
    figures = json.loads((tmp_path / "c.json").read_text())
    assert figures["n"] == 8 and figures["agreement"] == pytest.approx(6 / 8)
    assert figures["confusion"]["5"]["5"] == 3 and figures["confusion"]["5"]["2"] == 1
    assert 0 < figures["kappa"] < 1 and figures["weighted"] is True
    assert "kappa (quadratic-weighted)" in res.output


def test_calibrate_pairwise_measures_swap_consistency(tmp_path: Path) -> None:
    rows = [{"question": "q", "answer_a": "a", "answer_b": "b", "label": "A"} for _ in range(4)]
    labels = write_jsonl(tmp_path / "labels.jsonl", rows)

    def always_a(body: dict[str, Any]) -> str:
        return '{"winner": "A", "reason": "first is best"}'

    with JudgeServer(ServerState(responder=always_a)) as srv:
        res = CliRunner().invoke(
            app,
            ["judge", "calibrate", str(REPO / "judges/pairwise.yaml"), "--labels", str(labels),
             "--base-url", srv.base_url, "--model", "fake", "--json", str(tmp_path / "c.json")],
        )  # fmt: skip
        n_requests = len(srv.state.requests)
    assert res.exit_code == 0, res.output
    figures = json.loads((tmp_path / "c.json").read_text())
    # a position-biased judge: every verdict flips with the swap, so all are ties
    assert n_requests == 8 and figures["swap_consistency"] == 0.0
    assert figures["confusion"]["A"]["tie"] == 4 and figures["agreement"] == 0.0


def test_bad_labels_file_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "labels.jsonl"
    bad.write_text('{"question": "q", "answer": "a", "label": 9}\n')
    res = CliRunner().invoke(
        app,
        ["judge", "calibrate", str(REPO / "judges/general.yaml"), "--labels", str(bad),
         "--base-url", "http://127.0.0.1:9/v1", "--model", "fake"],
    )  # fmt: skip
    assert res.exit_code == 2
    assert "labels.jsonl:1" in res.output and "outside the scale" in res.output


def test_preview_renders_without_calling(tmp_path: Path) -> None:
    res = CliRunner().invoke(
        app,
        ["judge", "preview", str(REPO / "suites/legal.yaml"), "--task", "legal-summary", "-n", "2"],
    )
    assert res.exit_code == 0, res.output
    assert res.output.count("===== judge:legal-format") == 2
    assert "Reference answer:" in res.output and "<<ANSWER " in res.output
