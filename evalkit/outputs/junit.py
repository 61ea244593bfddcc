"""junit.xml: one test suite, one test case per gate and per integrity check.

- a failed gate of severity "error" is a <failure>; a failed "warning" gate passes with a
  <system-out> note;
- a failed integrity check is a <failure>; one the run did not make (engine.reference:
  skip) is <skipped> with the reason;
- a run that ended in an error (exit code 2 or 3) adds a test case with an <error>.

Everything goes through ElementTree, so names and details are escaped; characters that
XML 1.0 cannot hold at all (control characters) are removed.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from typing import Any

from evalkit.outputs._fmt import exit_meaning, fmt_num, is_missing, to_jsonable
from evalkit.outputs.model import Gate, Integrity, Results, RunError, as_results

# Characters XML 1.0 does not allow, even escaped.
_INVALID_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_MAX_TEXT = 8_000


def _x(value: Any, limit: int = _MAX_TEXT) -> str:
    text = _INVALID_XML.sub("\ufffd", "" if value is None else str(value))
    if len(text) > limit:
        text = text[:limit] + f"… [{len(text) - limit} characters cut]"
    return text


class _Counts:
    def __init__(self) -> None:
        self.tests = 0
        self.failures = 0
        self.errors = 0
        self.skipped = 0

    def set_on(self, el: ET.Element) -> None:
        el.set("tests", str(self.tests))
        el.set("failures", str(self.failures))
        el.set("errors", str(self.errors))
        el.set("skipped", str(self.skipped))


def _case(parent: ET.Element, counts: _Counts, classname: str, name: str) -> ET.Element:
    counts.tests += 1
    return ET.SubElement(
        parent, "testcase", {"classname": classname, "name": _x(name, 500), "time": "0"}
    )


def _add_gates(suite: ET.Element, counts: _Counts, gates: list[Gate]) -> None:
    for gate in gates:
        case = _case(suite, counts, "gates", gate.name)
        detail = _x(gate.detail)
        if gate.passed:
            if detail:
                ET.SubElement(case, "system-out").text = detail
            continue
        if gate.severity == "warning":
            note = f"WARNING (does not fail the run): gate failed. {detail}".strip()
            ET.SubElement(case, "system-out").text = note
            continue
        counts.failures += 1
        failure = ET.SubElement(
            case, "failure", {"message": _x(detail or "gate failed", 1_000), "type": "gate"}
        )
        failure.text = detail or "gate failed"


def _add_integrity(suite: ET.Element, counts: _Counts, checks: list[Integrity]) -> None:
    for check in checks:
        case = _case(suite, counts, "integrity", f"{check.check}[{check.variant}]")
        detail = _x(check.detail)
        numbers = f"value {fmt_num(check.value)}, tolerance {fmt_num(check.tolerance)}"
        if check.skipped:
            counts.skipped += 1
            ET.SubElement(case, "skipped", {"message": _x(detail, 1_000)})
            continue
        if check.passed:
            ET.SubElement(case, "system-out").text = f"{detail} ({numbers})".strip()
            continue
        counts.failures += 1
        message = detail or f"integrity check failed ({numbers})"
        failure = ET.SubElement(
            case, "failure", {"message": _x(message, 1_000), "type": "integrity"}
        )
        failure.text = f"{message}\n{numbers}"


def _add_run_error(
    suite: ET.Element, counts: _Counts, exit_code: Any, err: RunError | None, warnings: list[str]
) -> None:
    if exit_code not in (2, 3):
        return
    case = _case(suite, counts, "evalkit", "run")
    counts.errors += 1
    message = (err.message if err else "") or f"evalkit exited with code {exit_code}"
    body = "\n".join([f"exit code {exit_code}: {exit_meaning(exit_code)}", message, *warnings])
    error = ET.SubElement(
        case,
        "error",
        {"message": _x(message, 1_000), "type": (err.type if err else None) or "infrastructure"},
    )
    error.text = _x(body)


def _suite_element(root: ET.Element, name: str, time_s: str) -> ET.Element:
    suite = ET.SubElement(root, "testsuite", {"name": _x(f"evalkit.{name}", 500)})
    suite.set("time", time_s)
    return suite


def _finish(root: ET.Element, suite: ET.Element, counts: _Counts) -> ET.Element:
    counts.set_on(suite)
    counts.set_on(root)
    root.attrib.pop("skipped")
    return root


def _partial(results: Mapping[str, Any]) -> ET.Element:
    """A run that ended before it had figures: its exit code, error and warnings only."""
    raw_err = results.get("error")
    err = RunError.model_validate(raw_err) if isinstance(raw_err, Mapping) else None
    root = ET.Element("testsuites", {"name": "evalkit", "time": "0"})
    suite = _suite_element(root, "suite", "0")
    ET.SubElement(suite, "properties")
    counts = _Counts()
    warnings = [str(w) for w in results.get("warnings") or []]
    _add_run_error(suite, counts, results.get("exit_code"), err, warnings)
    return _finish(root, suite, counts)


def build_junit(results: Mapping[str, Any] | Results) -> ET.Element:
    """The <testsuites> element for ``results``.

    A document the results model refuses is rendered as a run that ended early (exit
    code, error, warnings) when it has no figures at all, and refused otherwise.
    """
    doc = as_results(results)
    if doc is None:
        return _partial(to_jsonable(results))
    run = doc.run
    time_s = f"{run.duration_s:.3f}" if not is_missing(run.duration_s) else "0"
    root = ET.Element("testsuites", {"name": "evalkit", "time": time_s})
    suite = _suite_element(root, doc.suite.name, time_s)
    if run.started_at:
        suite.set("timestamp", _x(run.started_at, 100))

    props = ET.SubElement(suite, "properties")
    for key, value in (
        ("evalkit_version", doc.evalkit_version),
        ("base_model", doc.base.model),
        ("suite_sha256", doc.suite.sha256),
        ("seed", run.seed),
        ("limit", run.limit),
        ("smoke", run.smoke),
        ("exit_code", doc.exit_code),
    ):
        if value is not None:
            text = str(value).lower() if isinstance(value, bool) else _x(value, 500)
            ET.SubElement(props, "property", {"name": key, "value": text})

    counts = _Counts()
    _add_gates(suite, counts, doc.gates)
    _add_integrity(suite, counts, doc.integrity)
    _add_run_error(suite, counts, doc.exit_code, doc.error, doc.warnings)
    return _finish(root, suite, counts)


def render_junit(results: Mapping[str, Any] | Results) -> str:
    """junit.xml text (UTF-8, with an XML declaration)."""
    root = build_junit(results)
    ET.indent(root, space="  ")
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
