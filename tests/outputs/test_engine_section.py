"""The served engine in the outputs: results.json's typed `engine` object (identity, server
version, reference, parity figures with their verdicts), integrity checks marked skipped,
and the report's "engine parity against transformers + peft" table and its banner for a
run without a reference. The HTML is parsed here; no browser."""

from __future__ import annotations

import copy
import json
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import jsonschema
import pytest

import evalkit.outputs as report
from evalkit.decide.integrity import IntegrityResult
from evalkit.decide.served import SKIP_REASON, SkippedCheck
from evalkit.outputs.model import Results
from tests.test_report import make_results

TOLERANCES = {"texts": 12, "max_mean_abs": 0.1, "max_abs": 2.0, "min_top1": 0.9}
BASE_FIG = {
    "variant": "base",
    "tokens": 118,
    "mean_abs": 0.0712,
    "max_abs": 0.388,
    "top1": 0.966,
    "unreadable": 0,
    "readings": {"aligned": 10.52, "shifted": 0.0712},
}
ADAPTER_FIG = {"variant": "legal-r16", "tokens": 118, "mean_abs": 1.84, "max_abs": 9.6,
               "top1": 0.51, "unreadable": 3, "readings": {}}  # fmt: skip
# the `engine` object as served_checks wrote it before 1.1: no server, reference, base_url
# or per-variant verdicts
ENGINE_1_0 = {
    "kind": "openai", "endpoint": "127.0.0.1:8000",
    "models": {"base": "smollm2", "legal-r16": "legal-r16"}, "concurrency": 4,
    "top_logprobs": 200, "prompt_logprobs": "shifted", "extra_body": {"repeat_penalty": 1.0},
    "parity": {"tolerances": TOLERANCES, "variants": {"base": BASE_FIG, "legal-r16": ADAPTER_FIG},
               "passed": False},
}  # fmt: skip


def engine_1_1(**changes: Any) -> dict[str, Any]:
    eng = copy.deepcopy(ENGINE_1_0)
    eng["parity"]["variants"]["base"]["passed"] = True
    eng["parity"]["variants"]["legal-r16"]["passed"] = False
    eng.update(
        base_url="http://127.0.0.1:8000/v1",
        server={"name": "🦙 llama.cpp Python API", "version": "0.3.36",
                "source": "GET /openapi.json", "note": None},
        reference={"skip": False, "device": "cpu", "dtype": "float32"},
    )  # fmt: skip
    eng.update(changes)
    return eng


def _doc(engine: dict[str, Any] | None, version: str = "1.1") -> dict[str, Any]:
    doc = make_results()
    doc["schema_version"] = version
    doc["integrity"] += [
        {"check": "engine_parity", "variant": "base", "passed": True, "value": 0.0712,
         "tolerance": 0.1, "detail": "vs transformers + peft"},
        {"check": "engine_parity", "variant": "legal-r16", "passed": False, "value": 1.84,
         "tolerance": 0.1, "detail": "does not compute variant 'legal-r16' as declared"},
    ]  # fmt: skip
    if engine is not None:
        doc["engine"] = engine
    return doc


class _Tables(HTMLParser):
    """Text of every cell of the tables with a given class, and every element's text by id."""

    def __init__(self, cls: str) -> None:
        super().__init__()
        self.cls, self.rows, self.ids = cls, [], {}
        self._in, self._cell, self._id = False, None, []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "table" and self.cls in (a.get("class") or "").split():
            self._in = True
        if self._in and tag == "tr":
            self.rows.append([])
        if self._in and tag in ("td", "th"):
            self._cell = ""
        if a.get("id"):
            self._id.append([a["id"], tag, ""])

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._in = False
        if self._in and tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append(self._cell.strip())
            self._cell = None
        if self._id and tag == self._id[-1][1]:
            key, _, text = self._id.pop()
            self.ids[key] = " ".join(text.split())

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell += data
        for entry in self._id:
            entry[2] += data


def _parse(page: str, cls: str) -> _Tables:
    p = _Tables(cls)
    p.feed(page)
    return p


def test_engine_object_validates_and_a_1_0_file_still_reads(tmp_path: Path) -> None:
    schema = json.loads(report.SCHEMA_PATH.read_text(encoding="utf-8"))
    new = report.to_jsonable(_doc(engine_1_1()))
    jsonschema.validate(new, schema)
    model = Results.model_validate(new)
    assert model.engine is not None and model.engine.parity is not None
    assert model.engine.server is not None and model.engine.server.version == "0.3.36"
    assert model.engine.parity.variants["legal-r16"].passed is False
    assert model.engine.reference is not None and model.engine.reference.device == "cpu"
    old = _doc(copy.deepcopy(ENGINE_1_0), version="1.0")
    (tmp_path / "results.json").write_text(json.dumps(report.to_jsonable(old)), encoding="utf-8")
    read = report.load_results_model(tmp_path)
    assert read.schema_version == "1.0" and read.engine is not None
    assert read.engine.parity is not None and read.engine.parity.variants["base"].passed is None
    # an engine kind's own settings are kept as written
    extra = report.to_jsonable(_doc(engine_1_1(tensor_parallel_size=2)))
    assert Results.model_validate(extra).engine.model_dump()["tensor_parallel_size"] == 2  # type: ignore[union-attr]
    bad = _doc(engine_1_1())
    bad["engine"]["parity"]["variants"]["base"]["top1"] = 1.7
    with pytest.raises(report.ResultsError, match="top1"):
        report.validate_results(bad)


def test_parity_table_shows_figures_verdicts_and_tolerances() -> None:
    page = report.render_html(_doc(engine_1_1()))
    p = _parse(page, "parity")
    head, *rows = p.rows
    assert head == ["Status", "Variant", "Tokens", "Mean |Δlogprob|", "Max |Δlogprob|",
                    "Top-1 agreement", "Note"]  # fmt: skip
    by_variant = {r[1]: r for r in rows}
    assert by_variant["base"][:6] == ["passed", "base", "118", "0.071", "0.388", "96.6%"]
    assert "aligned: 10.52" in by_variant["base"][6] and "shifted: 0.071" in by_variant["base"][6]
    assert by_variant["legal-r16"][:6] == ["failed", "legal-r16", "118", "1.84", "9.60", "51.0%"]
    assert by_variant["legal-r16"][6] == "3 tokens outside the top-k"
    # variants the run has but the parity check did not reach
    assert by_variant["legal-overfit"][0] == "not checked"
    assert "Engine parity against transformers + peft" in page
    assert "mean |Δlogprob| ≤ 0.1, max |Δlogprob| ≤ 2, top-1 agreement ≥ 90%, on 12 probe" in page
    identity = dict(r for r in _parse(page, "engine-identity").rows if len(r) == 2)
    assert identity["server"] == "🦙 llama.cpp Python API 0.3.36 (GET /openapi.json)"
    assert identity["base URL"] == "http://127.0.0.1:8000/v1"
    assert identity["reference"] == "transformers + peft on cpu float32"
    assert identity["prompt logprobs read"] == "shifted"
    assert "engine-unchecked" not in p.ids


def test_a_1_0_engine_object_takes_its_verdicts_from_integrity() -> None:
    rows = _parse(report.render_html(_doc(copy.deepcopy(ENGINE_1_0), "1.0")), "parity").rows
    assert {r[1]: r[0] for r in rows[1:]} == {
        "base": "passed", "legal-r16": "failed", "merged:legal-r16": "not checked",
        "legal-overfit": "not checked"}  # fmt: skip


def test_no_engine_section_for_an_hf_run() -> None:
    page = report.render_html(_doc(None))
    assert "Engine parity against" not in page and 'class="data parity"' not in page


def _skip_results() -> dict[str, Any]:
    """results.json of a served run with engine.reference: skip, assembled as the pipeline
    does (build_results with the skipped checks)."""
    from evalkit.decide.gates import Decision, apply_gates, exit_code
    from evalkit.decide.verdicts import compare, forgetting
    from evalkit.outputs.results import build_results
    from tests.scripted_run import make_plan, run

    plan, engine, records, scores = run(make_plan(["base", "good"]))
    comps = compare(plan, scores)
    flags = forgetting(plan, comps)
    gates = apply_gates(plan, scores, comps, flags)
    fps = {v: engine.fingerprint(v) for v in plan.variants}
    skipped = [SkippedCheck("engine_parity", v, SKIP_REASON) for v in plan.variants]
    skipped.append(SkippedCheck("adapter_applied", "good", SKIP_REASON))
    results = build_results(
        plan=plan,
        suite_meta={"name": "served", "path": "s.yaml", "sha256": "0" * 64, "text": ""},
        run_meta={
            "started_at": "2026-01-01T00:00:00+00:00",
            "finished_at": None,
            "duration_s": 1.0,
            "seed": 0,
            "limit": None,
            "smoke": False,
            "output_dir": "out",
            "device": "server",
            "versions": {},
        },  # fmt: skip
        base_meta={"model": "scripted", "fingerprint": fps["base"]},
        adapters={"good": "adapters/good"},
        fingerprints=fps,
        records=records,
        scores=scores,
        decision=Decision(comps, flags, gates),
        integrity=[IntegrityResult("base_matches", "good", True, 0.0, 0.0, "declared base")],
        skipped=skipped,
        exit_code=exit_code(gates, False),
        warnings=["engine.reference is skip: the served engine is NOT checked"],
    )
    results["engine"] = engine_1_1(
        reference={"skip": True, "reason": SKIP_REASON}, parity=None,
        models={"base": "b", "good": "g"})  # fmt: skip
    return results


def test_skipped_checks_in_results_report_junit_and_summary(tmp_path: Path) -> None:
    results = _skip_results()
    paths = report.write_outputs(results, tmp_path)
    written = json.loads(paths["results.json"].read_text(encoding="utf-8"))
    jsonschema.validate(written, json.loads(report.SCHEMA_PATH.read_text(encoding="utf-8")))
    assert written["schema_version"] == "1.1"
    skipped = [c for c in written["integrity"] if c.get("skipped")]
    assert [(c["check"], c["variant"]) for c in skipped] == [
        ("engine_parity", "base"),
        ("engine_parity", "good"),
        ("adapter_applied", "good"),
    ]
    assert all(not c["passed"] and c["value"] is None for c in skipped)
    assert all(c["detail"] == f"skipped: {SKIP_REASON}" for c in skipped)
    first = written["integrity"][0]
    assert first["check"] == "base_matches" and first["passed"] and "skipped" not in first
    assert written["engine"]["reference"] == {"skip": True, "reason": SKIP_REASON}
    assert written["engine"]["parity"] is None

    page = paths["report.html"].read_text(encoding="utf-8")
    p = _parse(page, "data")
    banner = p.ids["engine-unchecked"]
    assert banner.startswith("Served figures not checked against a reference.")
    assert "openai" in banner and "not compared with transformers + peft" in banner
    # the banner comes before the gates and the integrity table
    assert page.index('id="engine-unchecked"') < page.index("<h2>Gates</h2>")
    statuses = [r[0] for r in p.rows if len(r) == 6 and r[1] in ("engine_parity", "adapter_applied",
                                                                  "base_matches")]  # fmt: skip
    assert statuses == ["passed", "skipped", "skipped", "skipped"]
    assert "0 integrity checks failed, 3 skipped" in page
    assert "1/1 passed, 2 skipped" in page  # variants at a glance: good
    assert 'class="data parity"' not in page and "Not checked: engine.reference is skip" in page

    suite = ET.fromstring(paths["junit.xml"].read_text(encoding="utf-8")).find("testsuite")
    assert suite is not None and suite.get("skipped") == "3" and suite.get("failures") == "0"
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    sk = cases["engine_parity[good]"].find("skipped")
    assert sk is not None and SKIP_REASON in (sk.get("message") or "")

    summary = paths["summary.md"].read_text(encoding="utf-8")
    assert "**Served figures not checked against a reference**" in summary
    assert "**Integrity:** all 1 checks passed." in summary and "3 checks skipped" in summary


def test_summary_lists_the_parity_figures() -> None:
    text = report.render_summary(_doc(engine_1_1()))
    assert "## Engine parity (openai, 🦙 llama.cpp Python API 0.3.36) against transformers" in text
    assert "| base | passed | 118 | 0.071 | 0.388 | 96.6% |" in text
    assert "| legal-r16 | **failed** | 118 | 1.84 | 9.60 | 51.0% |" in text
    assert "Tolerances: mean ≤ 0.1, max ≤ 2 nats per token, top-1 ≥ 90%." in text
