"""junit.xml: one test suite, one test case per gate and per integrity check.

- a failed gate of severity "error" is a <failure>; a failed "warning" gate passes with a
  <system-out> note;
- a failed integrity check is a <failure>;
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

    def set_on(self, el: ET.Element) -> None:
        el.set("tests", str(self.tests))
        el.set("failures", str(self.failures))
        el.set("errors", str(self.errors))
        el.set("skipped", "0")


def _case(parent: ET.Element, counts: _Counts, classname: str, name: str) -> ET.Element:
    counts.tests += 1
    return ET.SubElement(
        parent, "testcase", {"classname": classname, "name": _x(name, 500), "time": "0"}
    )


def _add_gates(suite: ET.Element, counts: _Counts, gates: list[Mapping[str, Any]]) -> None:
    for gate in gates:
        case = _case(suite, counts, "gates", str(gate.get("name", "")))
        detail = _x(gate.get("detail") or "")
        severity = gate.get("severity", "error")
        if gate.get("passed"):
            if detail:
                ET.SubElement(case, "system-out").text = detail
            continue
        if severity == "warning":
            note = f"WARNING (does not fail the run): gate failed. {detail}".strip()
            ET.SubElement(case, "system-out").text = note
            continue
        counts.failures += 1
        failure = ET.SubElement(
            case, "failure", {"message": _x(detail or "gate failed", 1_000), "type": "gate"}
        )
        failure.text = detail or "gate failed"


def _add_integrity(suite: ET.Element, counts: _Counts, checks: list[Mapping[str, Any]]) -> None:
    for check in checks:
        name = f"{check.get('check', '')}[{check.get('variant', '')}]"
        case = _case(suite, counts, "integrity", name)
        detail = _x(check.get("detail") or "")
        value, tol = check.get("value"), check.get("tolerance")
        numbers = f"value {fmt_num(value)}, tolerance {fmt_num(tol)}"
        if check.get("passed"):
            ET.SubElement(case, "system-out").text = f"{detail} ({numbers})".strip()
            continue
        counts.failures += 1
        message = detail or f"integrity check failed ({numbers})"
        failure = ET.SubElement(
            case, "failure", {"message": _x(message, 1_000), "type": "integrity"}
        )
        failure.text = f"{message}\n{numbers}"


def _add_run_error(suite: ET.Element, counts: _Counts, results: Mapping[str, Any]) -> None:
    exit_code = results.get("exit_code")
    if exit_code not in (2, 3):
        return
    case = _case(suite, counts, "evalkit", "run")
    counts.errors += 1
    raw_err = results.get("error")
    err: Mapping[str, Any] = raw_err if isinstance(raw_err, Mapping) else {}
    message = str(err.get("message") or f"evalkit exited with code {exit_code}")
    warnings = [str(w) for w in results.get("warnings") or []]
    body = "\n".join([f"exit code {exit_code}: {exit_meaning(exit_code)}", message, *warnings])
    error = ET.SubElement(
        case,
        "error",
        {"message": _x(message, 1_000), "type": str(err.get("type") or "infrastructure")},
    )
    error.text = _x(body)


def build_junit(results: Mapping[str, Any]) -> ET.Element:
    """The <testsuites> element for ``results``."""
    results = to_jsonable(results)
    suite_name = str((results.get("suite") or {}).get("name") or "suite")
    run = results.get("run") or {}
    duration = run.get("duration_s")
    time_s = f"{duration:.3f}" if not is_missing(duration) else "0"

    root = ET.Element("testsuites", {"name": "evalkit", "time": time_s})
    suite = ET.SubElement(root, "testsuite", {"name": _x(f"evalkit.{suite_name}", 500)})
    suite.set("time", time_s)
    if run.get("started_at"):
        suite.set("timestamp", _x(run["started_at"], 100))

    props = ET.SubElement(suite, "properties")
    base = results.get("base") or {}
    for key, value in (
        ("evalkit_version", results.get("evalkit_version")),
        ("base_model", base.get("model")),
        ("suite_sha256", (results.get("suite") or {}).get("sha256")),
        ("seed", run.get("seed")),
        ("limit", run.get("limit")),
        ("smoke", run.get("smoke")),
        ("exit_code", results.get("exit_code")),
    ):
        if value is not None:
            text = str(value).lower() if isinstance(value, bool) else _x(value, 500)
            ET.SubElement(props, "property", {"name": key, "value": text})

    counts = _Counts()
    _add_gates(suite, counts, list(results.get("gates") or []))
    _add_integrity(suite, counts, list(results.get("integrity") or []))
    _add_run_error(suite, counts, results)
    counts.set_on(suite)
    counts.set_on(root)
    root.attrib.pop("skipped")
    return root


def render_junit(results: Mapping[str, Any]) -> str:
    """junit.xml text (UTF-8, with an XML declaration)."""
    root = build_junit(results)
    ET.indent(root, space="  ")
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
