"""Bad probe declarations and bad probe data fail before any model loads, like a task's:
the suite's file and line, the data file and its row, and what to do (exit 2)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from evalkit.errors import EXIT_BAD_INPUT, SuiteError
from evalkit.plan.build import build_plan
from evalkit.suite.loader import load_suite
from tests.conftest import REPO, write_jsonl

SUITE = """\
name: kinds
base: {model: builtin:smollm2-135m-instruct}
probes:
  builtin: false
  extra:
    - name: house-mc
      kind: multiple_choice
      data: {path: mc.jsonl}
      prompt: "{{ question }}"
      choices: options
      answer: right
"""
GOOD_ROW = {
    "question": "Which metal is liquid at room temperature?",
    "options": ["iron", "mercury"],
}


def error_for(d: Path, text: str = SUITE) -> SuiteError:
    path = d / "suite.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(SuiteError) as info:
        build_plan(load_suite(path))
    return info.value


def mc_rows(d: Path, *rows: dict) -> None:
    write_jsonl(d / "mc.jsonl", list(rows))


ROW = r"(line|row)"  # JSONL rows are named by their line where the reader keeps it


def test_missing_column_names_the_row_and_the_key(tmp_path: Path) -> None:
    mc_rows(tmp_path, dict(GOOD_ROW, right=1), {"question": "Which?", "right": 0})
    err = error_for(tmp_path)
    assert err.line == 10  # the `choices: options` line
    assert str(err).startswith(f"{tmp_path / 'suite.yaml'}:10: ")
    assert "mc.jsonl" in str(err)
    assert err.hint and "Columns there: question, right" in err.hint
    assert re.search(rf"{ROW} 2 has no column 'options' \(named by `choices:`\)", str(err))


@pytest.mark.parametrize(
    ("row", "line", "message"),
    [
        (dict(GOOD_ROW, options="iron, mercury", right=1), 10, "holds the text 'iron, mercury'"),
        (dict(GOOD_ROW, options=["mercury"], right=0), 10, "1 option(s); a question needs"),
        (dict(GOOD_ROW, options=["iron", None], right=0), 10, "option 1 holds null"),
        (dict(GOOD_ROW, right=2), 11, "answer index 2 is out of range for 2 options (0 to 1)"),
        (dict(GOOD_ROW, right=-1), 11, "answer index -1 is out of range"),
        (dict(GOOD_ROW, right="Mercury"), 11, "answer 'Mercury' is not one of the options"),
        (dict(GOOD_ROW, right=True), 11, "holds true/false; it needs the right option's index"),
    ],
)
def test_bad_cells(tmp_path: Path, row: dict, line: int, message: str) -> None:
    mc_rows(tmp_path, dict(GOOD_ROW, right=1), row)
    err = error_for(tmp_path)
    assert err.line == line
    assert "mc.jsonl: " in str(err) and message in str(err)
    assert re.search(rf"mc.jsonl: {ROW} 2: ", str(err))


def test_open_answer_and_template_errors(tmp_path: Path) -> None:
    write_jsonl(
        tmp_path / "facts.jsonl",
        [{"q": "What colour is the sky on a clear day?", "ok": []}],
    )
    text = """\
name: kinds
base: {model: builtin:smollm2-135m-instruct}
probes:
  builtin: false
  extra:
    - name: house-facts
      kind: open_answer
      data: {path: facts.jsonl}
      prompt: "{{ q }}"
      accepted: ok
"""
    err = error_for(tmp_path, text)
    assert err.line == 10 and "accepted column 'ok' holds a list" in str(err)
    err = error_for(tmp_path, text.replace("{{ q }}", "{{ question }}"))
    assert err.line == 9 and "prompt template uses question, which" in str(err)
    err = error_for(tmp_path, text.replace("{{ q }}", "{{ q "))
    assert err.line == 9 and "prompt template has a syntax error" in str(err)


def test_prose_folder_errors(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "one.txt").write_text("A document about lighthouses.")
    (docs / "two.txt").write_text("   \n")
    text = """\
name: kinds
base: {model: builtin:smollm2-135m-instruct}
probes:
  builtin: false
  extra:
    - name: house-docs
      kind: prose
      data: {path: docs/}
"""
    err = error_for(tmp_path, text)
    assert err.line == 8 and f"{docs / 'two.txt'} is empty" in str(err)
    (docs / "two.txt").write_bytes(b"caf\xe9 au lait")
    err = error_for(tmp_path, text)
    assert "two.txt: not UTF-8 text" in str(err)
    (docs / "two.txt").write_text("A second document.")
    err = error_for(tmp_path, text + "      text: body\n")
    assert err.line == 9 and "`text:` names a column, but" in str(err)
    empty = tmp_path / "empty"
    empty.mkdir()
    err = error_for(tmp_path, text.replace("docs/", "empty/"))
    assert err.line == 8 and f"{empty} has no .txt files" in str(err)


def test_schema_errors_point_at_the_key(tmp_path: Path) -> None:
    mc_rows(tmp_path, dict(GOOD_ROW, right=1))
    with pytest.raises(SuiteError) as info:
        (tmp_path / "s.yaml").write_text(SUITE.replace("multiple_choice", "multichoice"))
        load_suite(tmp_path / "s.yaml")
    assert info.value.line == 7
    assert "probes.extra[0].kind: got 'multichoice', expected one of multiple_choice" in str(
        info.value
    )
    with pytest.raises(SuiteError) as info:
        (tmp_path / "s.yaml").write_text(SUITE + "      margins: {acc_nrom: 0.1}\n")
        load_suite(tmp_path / "s.yaml")
    assert info.value.line == 12
    assert "unknown key 'acc_nrom' at probes.extra[0].margins.acc_nrom" in str(info.value)
    assert info.value.hint == "Did you mean 'acc_norm'?"
    with pytest.raises(SuiteError) as info:
        (tmp_path / "s.yaml").write_text(SUITE.replace('      prompt: "{{ question }}"\n', ""))
        load_suite(tmp_path / "s.yaml")
    assert "missing required key 'prompt' at probes.extra[0]" in str(info.value)
    with pytest.raises(SuiteError) as info:  # prose has margins per metric, not one margin
        (tmp_path / "s.yaml").write_text(
            SUITE.split("    - name")[0]
            + "    - name: d\n      kind: prose\n      data: {path: x.jsonl}\n      margin: 0.1\n"
        )
        load_suite(tmp_path / "s.yaml")
    assert info.value.line == 9 and "unknown key 'margin'" in str(info.value)
    with pytest.raises(SuiteError) as info:  # numbers are strict, as the suite's others
        (tmp_path / "s.yaml").write_text(SUITE + '      margin: "0.05"\n')
        load_suite(tmp_path / "s.yaml")
    assert info.value.line == 12 and "probes.extra[0].margin" in str(info.value)
    (tmp_path / "s.yaml").write_text(SUITE + "      margin: 0\n")  # an integer is a number
    assert load_suite(tmp_path / "s.yaml").config.probes.extra[0].margin == 0.0


def test_a_forgotten_kind_is_named(tmp_path: Path) -> None:
    mc_rows(tmp_path, dict(GOOD_ROW, right=1))
    (tmp_path / "s.yaml").write_text(SUITE.replace("      kind: multiple_choice\n", ""))
    with pytest.raises(SuiteError) as info:
        load_suite(tmp_path / "s.yaml")
    assert info.value.line == 9
    assert str(info.value).endswith(
        "probes.extra[0].choices: 'choices' is a key of a probe kind (multiple_choice); add "
        "`kind: multiple_choice` (an entry without `kind:` is a task-shaped probe)"
    )


def test_cli_exits_2_without_a_traceback(tmp_path: Path) -> None:
    mc_rows(tmp_path, dict(GOOD_ROW, right=5))
    (tmp_path / "suite.yaml").write_text(SUITE)
    proc = subprocess.run(
        [sys.executable, "-m", "evalkit", "validate", str(tmp_path / "suite.yaml")],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert proc.returncode == EXIT_BAD_INPUT
    assert "Traceback" not in proc.stderr
    assert "suite.yaml:11:" in proc.stderr and "answer index 5 is out of range" in proc.stderr
