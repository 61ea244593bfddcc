"""Bad suites fail before any model loads, naming the file, the line and the fix."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from evalkit.errors import SuiteError
from evalkit.plan.build import build_plan
from evalkit.suite.loader import load_suite
from tests.conftest import write_jsonl, write_minimal_safetensors

GOOD = """\
name: demo
base:
  model: builtin:smollm2-135m-instruct
tasks:
  - name: qa
    data:
      path: data.jsonl
    id: id
    prompt: "{{ question }}"
    reference: "{{ answer }}"
    metrics:
      - type: exact_match
probes:
  builtin: false
"""


@pytest.fixture
def suite_dir(tmp_path: Path) -> Path:
    write_jsonl(
        tmp_path / "data.jsonl",
        [
            {"id": "a", "question": "2+2?", "answer": "4"},
            {"id": "b", "question": "3+3?", "answer": "6"},
        ],
    )
    return tmp_path


def write_suite(d: Path, text: str) -> Path:
    p = d / "suite.yaml"
    p.write_text(text, encoding="utf-8")
    return p


def error_for(d: Path, text: str) -> SuiteError:
    with pytest.raises(SuiteError) as info:
        suite = load_suite(write_suite(d, text))
        build_plan(suite)
    return info.value


def test_good_suite_builds_a_plan(suite_dir: Path) -> None:
    suite = load_suite(write_suite(suite_dir, GOOD))
    plan = build_plan(suite)
    assert plan.variants == ["base"]
    assert [t.name for t in plan.tasks] == ["qa"]
    assert [e.prompt for e in plan.tasks[0].examples] == ["2+2?", "3+3?"]
    assert [e.reference for e in plan.tasks[0].examples] == ["4", "6"]


def test_typo_key_names_line_and_suggests(suite_dir: Path) -> None:
    err = error_for(suite_dir, GOOD.replace("    prompt:", "    promt:"))
    assert err.line == 9
    assert "unknown key 'promt'" in str(err)
    assert "Did you mean 'prompt'?" in str(err)
    assert str(err).startswith(f"{suite_dir / 'suite.yaml'}:9:")


def test_duplicate_key_is_refused(suite_dir: Path) -> None:
    err = error_for(suite_dir, GOOD.replace("    id: id\n", "    id: id\n    id: other\n"))
    assert err.line == 9 and "duplicate key 'id' (first at line 8)" in str(err)


def test_missing_data_file(suite_dir: Path) -> None:
    err = error_for(suite_dir, GOOD.replace("path: data.jsonl", "path: nope.jsonl"))
    assert err.line == 7 and "data file not found" in str(err) and "nope.jsonl" in str(err)


def test_unmapped_column(suite_dir: Path) -> None:
    err = error_for(suite_dir, GOOD.replace("{{ question }}", "{{ questoin }}"))
    assert err.line == 9
    assert "questoin" in str(err) and "Columns in data.jsonl: answer, id, question" in str(err)


def test_bad_jsonl_line_is_named(suite_dir: Path) -> None:
    (suite_dir / "data.jsonl").write_text('{"id": "a", "question": "q", "answer": "x"}\n{oops\n')
    err = error_for(suite_dir, GOOD)
    assert "data.jsonl:2: not valid JSON" in str(err)


def test_unknown_variant_and_metric_type(suite_dir: Path) -> None:
    err = error_for(suite_dir, GOOD + "variants: [base, legal]\n")
    assert "unknown variant 'legal'" in str(err) and err.line == 15
    err = error_for(suite_dir, GOOD.replace("type: exact_match", "type: exact"))
    assert err.line == 12 and "'exact'" in str(err) and "exact_match" in str(err)


def test_gate_on_unknown_metric(suite_dir: Path, tmp_path: Path) -> None:
    adapter = tmp_path / "ad"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    write_minimal_safetensors(adapter / "adapter_model.safetensors")  # validate reads it
    text = (
        GOOD
        + f"""adapters:
  a1:
    path: {adapter}
gates:
  - variant: a1
    task: qa
    metric: accuracy
    require: improved
"""
    )
    err = error_for(suite_dir, text)
    assert "task 'qa' has no metric 'accuracy'" in str(err) and "exact_match" in str(err)
    assert err.line == 21


def test_invalid_yaml(suite_dir: Path) -> None:
    err = error_for(suite_dir, GOOD.replace("  model: builtin", "  model: [builtin"))
    assert "not valid YAML" in str(err)


def test_cli_exits_2_without_traceback(suite_dir: Path) -> None:
    path = write_suite(suite_dir, GOOD.replace("    prompt:", "    promt:"))
    proc = subprocess.run(
        [sys.executable, "-m", "evalkit", "run", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert f"{path}:9: unknown key 'promt'" in proc.stderr.replace("\n", " ")


def test_cli_validate_ok(suite_dir: Path) -> None:
    path = write_suite(suite_dir, GOOD)
    proc = subprocess.run(
        [sys.executable, "-m", "evalkit", "validate", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "ok" in proc.stdout and "2 examples" in proc.stdout


def test_an_unknown_metric_type_names_its_line_and_the_registered_kinds(tmp_path: Path) -> None:
    """Metric types come from the metric registry (a new metric is one module), so the
    check is the plan's: a file:line error with the kinds and the closest one."""
    from evalkit.errors import SuiteError
    from evalkit.pipeline import validate

    (tmp_path / "d.jsonl").write_text('{"id": "a", "q": "x", "a": "y"}\n', encoding="utf-8")
    suite = tmp_path / "s.yaml"
    suite.write_text(
        "name: s\n"
        "base: {model: builtin:smollm2-135m-instruct}\n"
        "tasks:\n"
        "  - name: t\n"
        "    data: {path: d.jsonl}\n"
        "    id: id\n"
        '    prompt: "{{ q }}"\n'
        '    reference: "{{ a }}"\n'
        "    metrics:\n"
        "      - type: exact_match\n"
        "      - type: json_vaild\n"
        "probes: {builtin: false}\n",
        encoding="utf-8",
    )
    with pytest.raises(SuiteError) as info:
        validate(suite)
    text = str(info.value)
    assert f"{suite}:11:" in text and "unknown metric type 'json_vaild'" in text
    assert "did you mean 'json_valid'?" in text and "reference_perplexity" in text
