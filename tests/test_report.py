"""The output stage: results.json, report.html, junit.xml, summary.md."""

from __future__ import annotations

import copy
import json
import math
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

import evalkit.outputs as report
from evalkit.errors import InputError
from tests.fixtures.report_data import make_run

FIXTURE = Path(__file__).parent / "fixtures" / "results_small.json"
HOSTILE = ["<script>alert(1)</script>", "</script><script>alert(2)</script>",
           "<img src=x onerror=alert(1)>", "{{7*7}}", "| pipe | in | text |",
           '"><a href="https://evil.example/x">click</a>']  # fmt: skip
VARIANTS = ["base", "legal-r16", "merged:legal-r16", "legal-overfit"]


def _variant_scores(i: int, variant: str) -> dict[str, float]:
    if variant == "base":
        return {"json_valid": 0.0, "type_match": 0.0}
    ok = float(i % 10 != 0)  # adapters fix nine examples in ten
    return {"json_valid": ok, "type_match": ok if i % 3 else 0.0}


def _samples(n: int, task: str = "legal-summary", output_chars: int = 60) -> list[dict[str, Any]]:
    bad = [HOSTILE[i % len(HOSTILE)] for i in range(n)]
    return [
        {"task": task, "id": f"legal-eval-{i:04d}",
         "prompt": f"Summarise clause {i} as JSON. {bad[i]}",
         "reference": '{"party": "Acme", "term_months": 12}' if i % 2 else None,
         "outputs": {v: f"{v} says {bad[i]} " + "x" * output_chars if v != "base" else bad[i]
                     for v in VARIANTS},
         "scores": {v: _variant_scores(i, v) for v in VARIANTS}}
        for i in range(n)
    ]  # fmt: skip


def _comparison(task: str, variant: str, metric: str, **kw: Any) -> dict[str, Any]:
    c: dict[str, Any] = {
        "task": task, "variant": variant, "baseline": "base", "metric": metric,
        "base_value": 0.0, "value": 0.93, "delta": 0.93, "ci_low": 0.86, "ci_high": 0.98,
        "p_value": 1e-9, "p_adjusted": 1e-8, "test": "mcnemar-exact", "verdict": "improved",
        "margin": 0.05, "delta_kind": "difference", "n": 72, "mde": 0.1,
    }  # fmt: skip
    c.update(kw)
    return c


def _task(name: str, kind: str, n: int, desc: str, *metrics: tuple[str, str, bool, str]) -> Any:
    return {"name": name, "kind": kind, "n": n, "description": desc, "metrics": [
        {"name": m, "label": label, "higher_is_better": hib, "margin": 0.05, "delta_kind": dk}
        for m, label, hib, dk in metrics]}  # fmt: skip


def make_results(n_samples: int = 6, exit_code: int = 1, **run_kw: Any) -> dict[str, Any]:
    """A small, realistic run: 4 variants, a golden task with 2 metrics, 2 probes."""
    # (task, metric) -> base value, adapter value, overfit value
    values = {("legal-summary", "json_valid"): (0.0, 0.93, 0.93),
              ("legal-summary", "type_match"): (0.0, 0.71, 0.71),
              ("knowledge-open", "accuracy"): (0.62, 0.62, 0.17),
              ("prose-ppl", "perplexity"): (12.64, 12.64, 14.2)}  # fmt: skip
    col = {"base": 0, "legal-r16": 1, "merged:legal-r16": 1, "legal-overfit": 2}
    metrics = [
        {"task": t, "variant": v, "metric": m, "value": vals[col[v]], "n": 72,
         "n_unscored": 2 if m == "type_match" and v != "base" else 0}
        for (t, m), vals in values.items() for v in VARIANTS
    ]  # fmt: skip
    comparisons = []
    for v in VARIANTS[1:]:
        bad = v == "legal-overfit"
        comparisons += [
            _comparison("legal-summary", v, "json_valid"),
            _comparison("legal-summary", v, "type_match", value=0.71, delta=0.71, ci_low=0.6,
                        ci_high=0.8),
            _comparison("knowledge-open", v, "accuracy", base_value=0.62,
                        value=0.17 if bad else 0.62, delta=-0.45 if bad else 0.0,
                        ci_low=-0.55 if bad else -0.03, ci_high=-0.35 if bad else 0.03,
                        verdict="regressed" if bad else "equivalent", n=100,
                        p_value=1e-12 if bad else 1.0, p_adjusted=1e-11 if bad else 1.0),
            _comparison("prose-ppl", v, "perplexity", base_value=12.64,
                        value=14.2 if bad else 12.64, delta=0.123 if bad else 0.0,
                        ci_low=0.05 if bad else -0.01, ci_high=0.2 if bad else 0.01,
                        test="paired-bootstrap", delta_kind="ratio", n=30,
                        verdict="inconclusive" if bad else "equivalent",
                        p_value=0.04 if bad else float("nan"), p_adjusted=float("nan")),
        ]  # fmt: skip
    run = {"started_at": "2025-06-01T12:00:00+00:00", "finished_at": "2025-06-01T12:06:52+00:00",
           "duration_s": 412.3, "seed": 0, "limit": None, "smoke": False,
           "output_dir": "runs/legal-20250601", "device": "cpu",
           "versions": {"torch": "2.13.0", "transformers": "5.1.0", "peft": "0.17.1"}}  # fmt: skip
    run.update(run_kw)
    gate = {"passed": False, "severity": "error"}
    return {
        "schema_version": "1.0", "evalkit_version": "0.1.0", "run": run,
        "suite": {"name": "legal", "path": "suites/legal.yaml", "sha256": "ab" * 32,
                  "text": "name: legal\n# </pre><script>alert(1)</script>\ntasks: []\n"},
        "base": {"model": "builtin:smollm2-135m-instruct", "fingerprint": "sha256:base"},
        "variants": [
            {"name": "base", "kind": "base", "adapter": None},
            {"name": "legal-r16", "kind": "adapter", "adapter": "legal-r16",
             "path": "adapters/legal-r16", "fingerprint": "f1"},
            {"name": "merged:legal-r16", "kind": "merged", "adapter": "legal-r16",
             "path": None, "fingerprint": "f2"},
            {"name": "legal-overfit", "kind": "adapter", "adapter": "legal-overfit",
             "path": "adapters/<img src=x onerror=alert(1)>", "fingerprint": "f3"},
        ],
        "tasks": [
            _task("legal-summary", "golden", 72, "Summarise a clause as JSON <b>fields</b>.",
                  ("json_valid", "JSON valid", True, "difference"),
                  ("type_match", "Field types match", True, "difference")),
            _task("knowledge-open", "probe", 100, "General knowledge, open answers.",
                  ("accuracy", "Accuracy", True, "difference")),
            _task("prose-ppl", "probe", 30, "Prose perplexity.",
                  ("perplexity", "Perplexity", False, "ratio")),
        ],
        "metrics": metrics,
        "comparisons": comparisons,
        "forgetting": {
            "legal-r16": {"flagged": False, "probes": []},
            "merged:legal-r16": {"flagged": False, "probes": []},
            "legal-overfit": {"flagged": True, "probes": [
                {"task": "knowledge-open", "metric": "accuracy", "delta": -0.45,
                 "ci_low": -0.55, "ci_high": -0.35, "margin": 0.05}]},
        },
        "integrity": [
            {"check": "adapter_applied", "variant": "legal-r16", "passed": True, "value": 3.2,
             "tolerance": 0.001, "detail": "max |Δlogit| vs base 3.2"},
            {"check": "merge_agrees", "variant": "merged:legal-r16", "passed": False,
             "value": 0.02, "tolerance": 0.001, "detail": "max |Δlogit| vs adapter 0.02"},
        ],
        "gates": [
            {"name": "legal-r16 improves json_valid", "passed": True, "severity": "error",
             "detail": "+93.0 pp [+86.0, +98.0] > margin"},
            {**gate, "name": "legal-overfit: no forgetting",
             "detail": "knowledge-open accuracy regressed -45.0 pp | <script>alert(1)</script>"},
            {**gate, "name": "legal-overfit perplexity within 5%", "severity": "warning",
             "detail": "prose-ppl +12.3% [+5.0, +20.0]"},
        ],
        "samples": _samples(n_samples),
        "warnings": ["type_match: 2 examples could not be scored (legal-r16)"],
        "exit_code": exit_code,
    }  # fmt: skip


class _Tags(HTMLParser):
    """Every start tag and its attributes, and the raw text inside <script> blocks."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.scripts.append(data)


def _validator() -> Any:
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads(report.SCHEMA_PATH.read_text())
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_results_json_validates_and_nan_is_null(tmp_path: Path) -> None:
    results = make_results()
    results["comparisons"][0]["mde"] = float("inf")
    paths = report.write_outputs(results, tmp_path)
    text = paths["results.json"].read_text(encoding="utf-8")

    def no_constants(name: str) -> None:
        raise AssertionError(f"results.json contains {name}")

    data = json.loads(text, parse_constant=no_constants)
    errors = sorted(_validator().iter_errors(data), key=str)
    assert not errors, [f"{list(e.absolute_path)}: {e.message}" for e in errors]
    ppl = [c for c in data["comparisons"] if c["metric"] == "perplexity"]
    assert all(c["p_adjusted"] is None for c in ppl)
    assert data["comparisons"][0]["mde"] is None
    assert math.isnan(results["comparisons"][-1]["p_adjusted"])  # input left untouched


def test_generated_run_matches_the_schema() -> None:
    """The report's fixture generator writes what the pipeline writes, optional keys too."""
    data = report.to_jsonable(make_run(20, ("base", "legal-r8", "legal-r16", "legal-r64")))
    assert {"judges", "sweep", "baseline"} <= set(data) and "judgments" in data["samples"][0]
    errors = sorted(_validator().iter_errors(data), key=str)
    assert not errors, [f"{list(e.absolute_path)}: {e.message}" for e in errors]


def test_schema_rejects_contract_violations() -> None:
    validator = _validator()
    bad = report.to_jsonable(make_results())
    bad["comparisons"][0]["verdict"] = "better"
    bad["variants"][1]["kind"] = "lora"
    del bad["gates"][0]["severity"]
    paths = {tuple(e.absolute_path) for e in validator.iter_errors(bad)}
    assert ("comparisons", 0, "verdict") in paths
    assert ("variants", 1, "kind") in paths
    assert ("gates", 0) in paths


def test_fixture_validates_and_loads(tmp_path: Path) -> None:
    data = report.load_results(FIXTURE)
    assert not list(_validator().iter_errors(data))
    (tmp_path / "results.json").write_text(FIXTURE.read_text())
    assert report.load_results(tmp_path) == data
    report.render_html(data), report.render_junit(data), report.render_summary(data)


def test_to_jsonable_converts_non_json_values() -> None:
    class Scalar:  # stands in for a numpy scalar
        def item(self) -> float:
            return float("nan")

    out = report.to_jsonable({"a": (1, Scalar()), "b": Path("x/y"), 3: -math.inf, "ok": 0.5})
    assert out == {"a": [1, None], "b": "x/y", "3": None, "ok": 0.5}
    with pytest.raises(TypeError):
        report.to_jsonable({"x": object()})
    json.loads(report.render_results_json({"x": float("nan")}), parse_constant=lambda c: 1 / 0)


def test_partial_results_still_render() -> None:
    """A run that failed early has little more than an exit code and an error."""
    partial = {"schema_version": 1, "exit_code": 3, "error": {"message": "no <model> here"}}
    page = report.render_html(partial)
    assert '<div class="word">ERROR</div>' in page and "no &lt;model&gt; here" in page
    assert ET.fromstring(report.render_junit(partial)).get("errors") == "1"
    assert report.render_summary(partial).startswith("# ❌ evalkit: ERROR")


def test_junit_counts_failures() -> None:
    root = ET.fromstring(report.render_junit(make_results()))
    suite = root.find("testsuite")
    assert suite is not None and suite.get("name") == "evalkit.legal"
    cases = suite.findall("testcase")
    assert len(cases) == 5 and suite.get("tests") == "5"
    failed = [c for c in cases if c.find("failure") is not None]
    assert {(c.get("classname"), c.get("name")) for c in failed} == {
        ("gates", "legal-overfit: no forgetting"),
        ("integrity", "merge_agrees[merged:legal-r16]"),
    }
    assert suite.get("failures") == "2" and suite.get("errors") == "0"
    assert root.get("failures") == "2"
    warning = next(c for c in cases if c.get("name") == "legal-overfit perplexity within 5%")
    assert warning.find("failure") is None
    out = warning.find("system-out")
    assert out is not None and "WARNING" in (out.text or "")
    message = failed[0].find("failure")
    assert message is not None and "<script>alert(1)</script>" in (message.get("message") or "")


def test_junit_error_on_infra_failure_and_bad_chars() -> None:
    results = make_results(exit_code=3)
    results["error"] = {"type": "ModelLoadError", "message": "cannot load adapter\x00 here"}
    results["gates"][0]["name"] = "ctrl\x1b[31m gate"
    root = ET.fromstring(report.render_junit(results).encode("utf-8"))
    suite = root.find("testsuite")
    assert suite is not None and suite.get("errors") == "1" and suite.get("tests") == "6"
    errors = suite.findall("testcase/error")
    assert len(errors) == 1 and "cannot load adapter" in (errors[0].get("message") or "")
    assert errors[0].get("type") == "ModelLoadError"


def test_summary_has_verdict_gates_forgetting_and_table() -> None:
    text = report.render_summary(make_results(exit_code=1, limit=5, smoke=True))
    assert text.startswith("# ❌ evalkit: FAIL — legal")
    assert "Smoke run" in text
    assert "legal-overfit: no forgetting" in text
    assert "legal-overfit: forgetting flagged" in text
    assert "knowledge-open / accuracy: -45.0 pp [-55.0, -35.0]" in text
    assert "| legal-summary | JSON valid | merged:legal-r16 | 0.0% → 93.0% |" in text
    assert "+12.3% [+5.0, +20.0]" in text
    assert "regressed -45.0 pp \\| &lt;script&gt;" in text  # pipes and HTML escaped
    outside_code = re.sub(r"^(`{3,})text\n.*?\n\1$", "", text, flags=re.S | re.M)
    assert "```" not in outside_code and "<script>" not in outside_code
    table_rows = [ln for ln in text.splitlines() if ln.startswith("| ")]
    assert all(ln.count(" | ") + 2 == ln.count("|") - ln.count("\\|") for ln in table_rows)
    assert report.render_summary(make_results(exit_code=0)).startswith("# ✅ evalkit: PASS")


def test_summary_stays_under_limit_with_many_samples() -> None:
    results = make_results(n_samples=3000)
    results["samples"] += _samples(3000, task="knowledge-open", output_chars=3000)
    limit = 60_000
    text = report.render_summary(results, max_bytes=limit)
    assert len(text.encode("utf-8")) <= limit
    assert "FAIL" in text and "legal-overfit: no forgetting" in text
    assert "changed examples not shown" in text
    full = report.render_summary(results)
    assert len(full.encode("utf-8")) <= 1_000_000
    for tiny in (2_000, 300):
        small = report.render_summary(results, max_bytes=tiny)
        assert len(small.encode("utf-8")) <= tiny and "FAIL" in small


def test_summary_drops_comparison_rows_before_the_verdict() -> None:
    results = make_results(n_samples=0)
    base = results["comparisons"]
    results["comparisons"] = [dict(c, task=f"{c['task']}-{i}") for i in range(80) for c in base]
    text = report.render_summary(results, max_bytes=12_000)
    assert len(text.encode("utf-8")) <= 12_000
    assert "comparisons not shown" in text and "## Gates" in text


def test_write_outputs_writes_four_files_and_no_temp(tmp_path: Path) -> None:
    out = tmp_path / "run"
    paths = report.write_outputs(make_results(), out)
    names = {"results.json", "report.html", "junit.xml", "summary.md"}
    assert set(paths) == names and {p.name for p in out.iterdir()} == names
    report.write_outputs(make_results(exit_code=0), out)  # overwrite in place
    assert {p.name for p in out.iterdir()} == names
    assert "PASS" in (out / "summary.md").read_text(encoding="utf-8")
    assert report.load_results(out)["exit_code"] == 0
    mask = os.umask(0o022)
    os.umask(mask)
    assert (out / "report.html").stat().st_mode & 0o777 == 0o666 & ~mask


def test_interrupted_write_leaves_no_half_file(tmp_path: Path, monkeypatch: Any) -> None:
    report.write_outputs(make_results(), tmp_path)
    before = (tmp_path / "report.html").read_bytes()

    def boom(src: Any, dst: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(KeyboardInterrupt):
        report.write_outputs(make_results(exit_code=0), tmp_path)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert (tmp_path / "report.html").read_bytes() == before


def test_render_error_keeps_results_json_and_no_half_view(tmp_path: Path, monkeypatch: Any) -> None:
    # A renderer bug is injected (no real input breaks the JUnit writer): results.json holds
    # every figure, so it must survive; the views are all-or-nothing.
    def fail(results: Any) -> str:
        raise RuntimeError("render failed")

    monkeypatch.setattr(report, "render_junit", fail)
    with pytest.raises(report.ReportError, match="results.json was written") as err:
        report.write_outputs(make_results(), tmp_path / "out")
    assert err.value.exit_code == 3 and "evalkit report" in str(err.value)
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["results.json"]
    assert report.load_results(tmp_path / "out")["exit_code"] == make_results()["exit_code"]


def test_load_results_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no results.json"):
        report.load_results(tmp_path)
    (tmp_path / "results.json").write_text("{not json")
    with pytest.raises(InputError, match="cannot read"):
        report.load_results(tmp_path)
    data = copy.deepcopy(report.to_jsonable(make_results()))
    data["schema_version"] = 99
    (tmp_path / "results.json").write_text(json.dumps(data))
    with pytest.raises(InputError, match="schema_version 99"):
        report.load_results(tmp_path)


def test_import_does_not_pull_torch() -> None:
    code = "import sys, evalkit.outputs; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
