"""Judge kinds: rubric/reference and pairwise as two implementations of one protocol, and
a new kind added by registration alone (spec check, variables, rendering, parsing)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from evalkit.errors import SuiteError
from evalkit.scoring.judges import kinds
from evalkit.scoring.judges.core import parse_reply, verdict_schema
from evalkit.scoring.judges.render import neutralize, render_prompt
from evalkit.scoring.judges.spec import load_judge_spec


def _spec(tmp_path: Path, kind: str, template: str, scale: str = "[1, 5]") -> Path:
    (tmp_path / "t.j2").write_text(template, encoding="utf-8")
    path = tmp_path / "j.yaml"
    path.write_text(f"name: j\nkind: {kind}\ntemplate: t.j2\nscale: {scale}\n")
    return path


def test_built_in_kinds() -> None:
    assert kinds.judge_kind_names()[:3] == ["rubric", "reference", "pairwise"]
    rubric, pairwise = kinds.judge_kind("rubric"), kinds.judge_kind("pairwise")
    assert rubric.orders(("x",)) == [("x",)]
    assert pairwise.orders(("a", "b")) == [("a", "b"), ("b", "a")]
    # A wins in both orders; a flip with the order is a tie; one unscored order, unscored
    assert pairwise.combine([1.0, 0.0]) == 1.0
    assert pairwise.combine([1.0, 1.0]) == 0.5
    assert pairwise.combine([0.5, None]) is None
    assert (pairwise.unit, rubric.unit) == ("fraction", "score")
    assert [pairwise.category_name(c) for c in pairwise.categories((1, 5))] == ["B", "tie", "A"]
    assert rubric.categories((1, 3)) == [1.0, 2.0, 3.0] and rubric.weighted_kappa([1.0, 2.0, 3.0])
    assert rubric.read_label({"answer": "x", "label": 4}, (1, 5)) == (("x",), 4.0)
    assert pairwise.read_label({"answer_a": "x", "answer_b": "y", "label": "Tie"}, (1, 5)) == (
        ("x", "y"),
        0.5,
    )
    with pytest.raises(ValueError, match="outside the scale"):
        rubric.read_label({"answer": "x", "label": 7}, (1, 5))


def test_an_unknown_kind_names_the_kinds(tmp_path: Path) -> None:
    with pytest.raises(SuiteError) as err:
        load_judge_spec(_spec(tmp_path, "ranking", "{{ answer }}"))
    assert "unknown judge kind 'ranking'; kinds: rubric, reference, pairwise" in str(err.value)
    assert err.value.line == 2


@dataclasses.dataclass(frozen=True)
class PassFail(kinds.RatingKind):
    """A kind a user might add: one answer, pass (1) or fail (0), its checklist in the
    template as `criteria`, and a verdict key of its own."""

    name: str = "pass_fail"
    extra_vars: frozenset[str] = frozenset({"reference", "criteria"})
    unit: str = "fraction"

    def scale_error(self, scale: tuple[int, int]) -> str | None:
        return None if scale == (0, 1) else "a pass_fail judge has scale [0, 1]"

    def output_schema(self, scale: tuple[int, int]) -> dict:
        return {"passed": {"type": "integer", "enum": [0, 1]}}


def test_a_new_kind_is_one_registration(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kinds, "_KINDS", dict(kinds._KINDS))
    kinds.register_judge_kind(PassFail())
    with pytest.raises(SuiteError, match="a pass_fail judge has scale"):
        load_judge_spec(_spec(tmp_path, "pass_fail", "{{ answer }}"))
    spec = load_judge_spec(
        _spec(tmp_path, "pass_fail", "Q: {{ question }}\n{{ answer }}", "[0, 1]")
    )
    assert {"answer", "criteria", "reference"} <= spec.allowed_vars(set())
    prompt = render_prompt(spec, question="2+2?", answers=["4"], reference=None, row={}, nonce="n1")
    assert prompt.user == "Q: 2+2?\n<<ANSWER n1>>\n4\n<</ANSWER n1>>"
    assert verdict_schema(spec)["required"] == ["passed", "reason"]
    assert parse_reply(spec, '{"score": 1, "reason": "ok"}', "stop").score == 1.0


def test_markers_of_every_kind_are_defanged() -> None:
    assert neutralize("<</ANSWER_B abc>> <<answer x>>") == "‹‹/ANSWER_B abc›› ‹‹answer x››"
