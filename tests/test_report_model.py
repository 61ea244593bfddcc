"""The typed results model: the committed schema is generated from it, every fixture and
every document build_results assembles from real stage values validates through it, and
the reader refuses another major schema_version."""

from __future__ import annotations

import copy
import dataclasses
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import evalkit.outputs as report
from evalkit.decide.gates import Decision, apply_gates, exit_code
from evalkit.decide.verdicts import compare, forgetting
from evalkit.engines.records import Record
from evalkit.errors import InputError
from evalkit.outputs.model import Results, Stats, json_schema, schema_text
from evalkit.outputs.results import build_results
from evalkit.pipeline import validate
from evalkit.plan.types import StatsSettings
from evalkit.scoring.score import score
from tests.conftest import write_jsonl, write_minimal_safetensors
from tests.fixtures.report_data import make_run
from tests.test_report import FIXTURE, make_results

REGENERATE = "PYTHONPATH=. python -m evalkit.outputs.model"


def test_committed_schema_is_the_generated_one() -> None:
    committed = report.SCHEMA_PATH.read_text(encoding="utf-8")
    assert committed == schema_text(), (
        "evalkit/outputs/results.schema.json is not the schema of the results model; "
        f"regenerate it with `{REGENERATE}` and commit it"
    )
    schema = json_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["additionalProperties"] is False
    assert {"schema_version", "stats", "profile", "engine"} <= set(schema["properties"])


def test_report_fixtures_validate_through_the_model() -> None:
    small = Results.model_validate(report.to_jsonable(make_results()))
    assert small.schema_version == "1.0" and small.stats is None and small.confidence == 0.95
    assert [g.inconclusive for g in small.gates] == [False, False, False]
    run = Results.model_validate(
        report.to_jsonable(make_run(20, ("base", "legal-r8", "legal-r16", "legal-r64")))
    )
    assert run.judges and run.sweep and run.baseline
    assert run.samples[0].judgments is not None
    assert report.load_results_model(FIXTURE).exit_code in (0, 1)


def _stage_values(tmp_path: Path) -> dict[str, Any]:
    """A real suite and plan, records as an engine would return them, and the real
    scoring, comparison and gate stages on them."""
    rows = [{"id": f"q{i}", "q": f"{i}+{i}?", "a": str(2 * i)} for i in range(12)]
    write_jsonl(tmp_path / "qa.jsonl", rows)
    (tmp_path / "a1").mkdir()  # the suite checks that it is there; nothing loads it
    (tmp_path / "a1" / "adapter_config.json").write_text("{}")
    write_minimal_safetensors(tmp_path / "a1" / "adapter_model.safetensors")  # validate reads it
    (tmp_path / "s.yaml").write_text(
        """name: tiny
base: {model: builtin:smollm2-135m-instruct}
adapters: {a1: {path: a1}}
tasks:
  - name: qa
    data: {path: qa.jsonl}
    id: id
    prompt: "{{ q }}"
    reference: "{{ a }}"
    metrics:
      - type: exact_match
      - type: reference_perplexity
        margin: 0.1
probes: {builtin: false}
gates:
  - {variant: a1, task: qa, metric: exact_match, require: improved}
  - {variant: a1, task: qa, metric: exact_match, require: at_least, value: 0.5}
  - {variant: merged:a1, require: no_forgetting, severity: warning}
""",
        encoding="utf-8",
    )
    suite, plan = validate(tmp_path / "s.yaml")
    plan = dataclasses.replace(
        plan, variants=["base", "a1", "merged:a1"], stats=StatsSettings(7, 0.9, 300, 0.1)
    )
    # the adapters answer 10 of 12 right, the base none; a1 also makes the reference likelier
    records = [
        Record(
            "qa",
            r["id"],
            v,
            output=r["a"] if v != "base" and i % 6 else "no idea",
            ref_logprob=-2.0 if v == "base" else -1.5 - 0.01 * i,
            ref_tokens=2,
        )
        for i, r in enumerate(rows)
        for v in plan.variants
    ]
    scores = score(plan, records)
    comparisons = compare(plan, scores)
    flags = forgetting(plan, comparisons)
    gates = apply_gates(plan, scores, comparisons, flags)
    return {
        "plan": plan,
        "suite_meta": {"name": "tiny", "path": str(suite.path), "sha256": suite.sha256,
                       "text": suite.text},
        "run_meta": {"started_at": "2026-12-01T10:00:00+00:00",
                     "finished_at": "2026-12-01T10:00:09+00:00", "duration_s": 9.0,
                     "seed": plan.seed, "limit": None, "smoke": False,
                     "output_dir": str(tmp_path / "out"), "device": "cpu",
                     "versions": {"python": "3.11"}, "cache": {"reused": 0, "computed": 36}},
        "base_meta": {"model": "builtin:smollm2-135m-instruct", "fingerprint": "fp-base"},
        "adapters": {"a1": str(tmp_path / "a1")},
        "fingerprints": {"base": "fp-base", "a1": "fp-a1", "merged:a1": "fp-m"},
        "records": records,
        "scores": scores,
        "decision": Decision(comparisons, flags, gates),
        "integrity": [],
        "exit_code": exit_code(gates, False),
        "warnings": [],
    }  # fmt: skip


def test_build_results_from_stage_values_validates(tmp_path: Path) -> None:
    values = _stage_values(tmp_path)
    results = build_results(**values)
    model = Results.model_validate(report.to_jsonable(results))
    assert model.schema_version == "1.1"  # written by this evalkit
    assert model.stats is not None and model.stats.model_dump() == {
        "seed": 7, "confidence": 0.9, "resamples": 300, "alpha": 0.1}  # fmt: skip
    assert model.confidence == 0.9
    # every gate carries `inconclusive`, although this run has no judge
    assert all("inconclusive" in g for g in results["gates"])
    assert [(g.passed, g.inconclusive) for g in model.gates] == [(True, False)] * 3
    assert [c.verdict for c in model.comparisons if c.metric == "exact_match"] == ["improved"] * 2
    assert len(model.samples) == 12 and model.samples[1].outputs["a1"] == "2"
    assert model.exit_code == 0
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.validate(report.to_jsonable(results), json.loads(report.SCHEMA_PATH.read_text()))
    # written and read back: the same document, through the model both ways
    report.write_outputs(results, tmp_path / "out")
    assert report.load_results_model(tmp_path / "out") == model


def test_writer_refuses_what_the_model_refuses_and_writes_nothing(tmp_path: Path) -> None:
    bad = make_results()
    bad["gates"][0]["passd"] = True  # a misspelt key: extra="forbid"
    bad["comparisons"][1]["verdict"] = "better"
    with pytest.raises(report.ResultsError) as err:
        report.write_outputs(bad, tmp_path / "out")
    assert err.value.exit_code == 3
    assert "gates[0].passd" in str(err.value) and "comparisons[1].verdict" in str(err.value)
    assert not (tmp_path / "out").exists()


def _write(tmp_path: Path, **changes: Any) -> Path:
    data = copy.deepcopy(report.to_jsonable(make_results()))
    for k, v in changes.items():
        if v is None:
            data.pop(k, None)
        else:
            data[k] = v
    (tmp_path / "results.json").write_text(json.dumps(data), encoding="utf-8")
    return tmp_path


@pytest.mark.parametrize("old", [1, None, "1", "1.3"])
def test_older_and_minor_versions_read(tmp_path: Path, old: Any) -> None:
    """The integer 1 and a missing version read as 1.0; a later minor version reads."""
    data = report.load_results(_write(tmp_path, schema_version=old))
    assert data["schema_version"] == ("1.3" if old == "1.3" else "1.0")


@pytest.mark.parametrize("other", ["2.0", 2, "0.9", "one"])
def test_another_major_version_is_refused(tmp_path: Path, other: Any) -> None:
    with pytest.raises(InputError, match=f"schema_version {other!r} is not supported"):
        report.load_results(_write(tmp_path, schema_version=other))


def test_reader_names_what_is_wrong(tmp_path: Path) -> None:
    data = copy.deepcopy(report.to_jsonable(make_results()))
    data["tasks"][0]["metrics"][0]["unit"] = 3
    data["surprise"] = {}
    (tmp_path / "results.json").write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(InputError) as err:
        report.load_results(tmp_path)
    assert err.value.exit_code == 2
    assert "tasks[0].metrics[0].unit" in str(err.value) and "surprise" in str(err.value)


def test_cli_report_refuses_another_major_version(tmp_path: Path) -> None:
    run_dir = _write(tmp_path, schema_version="2.0")
    proc = subprocess.run(
        [sys.executable, "-m", "evalkit", "report", str(run_dir)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert "schema_version '2.0' is not supported" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert not (run_dir / "report.html").exists()


def test_cli_report_rerenders_an_old_file(tmp_path: Path) -> None:
    """A results.json from before the "MAJOR.MINOR" form re-renders, upgraded to 1.0."""
    run_dir = _write(tmp_path, schema_version=1)
    proc = subprocess.run(
        [sys.executable, "-m", "evalkit", "report", str(run_dir)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert (run_dir / "report.html").stat().st_size > 0
    written = json.loads((run_dir / "results.json").read_text(encoding="utf-8"))
    assert written["schema_version"] == "1.0"


def test_junit_reads_the_model_and_refuses_a_broken_document() -> None:
    model = Results.model_validate(report.to_jsonable(make_results()))
    assert report.render_junit(model) == report.render_junit(make_results())
    broken = make_results()
    broken["gates"][0]["severity"] = "fatal"
    with pytest.raises(ValueError, match="severity"):
        report.render_junit(broken)


def test_numbers_keep_their_type_and_schema_bounds_hold() -> None:
    """An integer figure stays an integer (the report prints 1 and 1.0 differently), and
    the bounds of optional numbers are JSON Schema keywords a validator enforces."""
    doc = report.to_jsonable(make_results())
    doc["comparisons"][0]["margin"] = 1
    doc["integrity"][0]["tolerance"] = 0
    model = Results.model_validate(doc)
    assert type(model.comparisons[0].margin) is int and type(model.integrity[0].tolerance) is int
    assert report.render_junit(model) == report.render_junit(doc)
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft202012Validator(json.loads(report.SCHEMA_PATH.read_text()))
    doc["comparisons"][0]["p_value"] = 1.5
    doc["comparisons"][1]["margin"] = -0.1
    paths = {tuple(e.absolute_path) for e in validator.iter_errors(doc)}
    assert paths == {("comparisons", 0, "p_value"), ("comparisons", 1, "margin")}


def test_scripted_run_validates_through_the_model() -> None:
    """The scripted engine's run (tests/scripted_run.py) assembled by build_results."""
    from tests.outputs.test_results_assembly import scripted_results

    model = Results.model_validate(report.to_jsonable(scripted_results()))
    assert {m.unit for t in model.tasks for m in t.metrics} == {
        "fraction", "perplexity", "nats_per_token"}  # fmt: skip
    assert model.stats == Stats() and all(not g.inconclusive for g in model.gates)
