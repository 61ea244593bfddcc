"""The output stage: from a results dict, write results.json, report.html, junit.xml and
summary.md into a run directory.

The results document is the contract between the evaluation and its outputs; its shape is
the typed model in ``evalkit.outputs.model`` (``Results``), and ``results.schema.json`` next
to this file is generated from it. A document is validated by the model when it is written
and when it is read. Nothing here imports torch.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from evalkit.errors import EvalkitError, InputError
from evalkit.outputs._fmt import to_jsonable
from evalkit.outputs.html import render_html
from evalkit.outputs.junit import render_junit
from evalkit.outputs.model import (
    SCHEMA_MAJOR,
    SCHEMA_VERSION,
    Results,
    major_of,
    normalize_version,
)
from evalkit.outputs.summary import render_summary

__all__ = [
    "SCHEMA_PATH",
    "SCHEMA_VERSION",
    "Results",
    "ResultsError",
    "load_results",
    "load_results_model",
    "render_html",
    "render_junit",
    "render_results_json",
    "render_summary",
    "to_jsonable",
    "validate_results",
    "write_outputs",
]

SCHEMA_PATH = Path(__file__).with_name("results.schema.json")

RESULTS_JSON = "results.json"


class ReportError(EvalkitError):
    """A view (HTML, JUnit, summary) failed to render; results.json is already on disk."""


class ResultsError(EvalkitError):
    """A results document evalkit assembled does not match its own model: a defect in
    evalkit (or in a plug-in stage), so nothing is written. Exit code 3."""


def _problems(err: ValidationError, limit: int = 5) -> str:
    """The first few validation errors, one a line, each with where it is in the document."""
    lines = []
    for e in err.errors()[:limit]:
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in e["loc"])
        got = "" if e["type"] == "missing" else f" (found {e['input']!r:.80})"
        lines.append(f"  {where.lstrip('.') or '(document)'}: {e['msg']}{got}")
    more = err.error_count() - limit
    if more > 0:
        lines.append(f"  ... and {more} more")
    return "\n".join(lines)


def validate_results(results: Mapping[str, Any] | Results) -> tuple[dict[str, Any], Results]:
    """The document as JSON-ready data (NaN as None) and as the validated model.

    Raises ResultsError when it does not match the model; a document from before
    `schema_version` was "MAJOR.MINOR" is upgraded to "1.0" first. A model is written
    with the fields that were set on it (an optional section left unset stays absent).
    """
    if isinstance(results, Results):
        return results.model_dump(mode="json", exclude_unset=True), results
    clean = to_jsonable(results)
    version = normalize_version(clean.get("schema_version"))
    if version is not None:
        clean["schema_version"] = version
    try:
        return clean, Results.model_validate(clean)
    except ValidationError as e:
        raise ResultsError(
            f"the results document does not match the results model; nothing was written:\n"
            f"{_problems(e)}",
            hint="This is a defect in evalkit or in a stage that added to the results; "
            "please report it with the lines above.",
        ) from e


def render_results_json(results: Mapping[str, Any]) -> str:
    """results.json text: valid JSON (NaN written as null), UTF-8, stable key order."""
    return json.dumps(to_jsonable(results), indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def _atomic_write(path: Path, text: str) -> None:
    """Write ``text`` to a hidden temp file beside ``path``, then rename it into place.

    The temp file is created with mode 0666 less the umask, like an ordinary file, so the
    outputs keep the permissions a CI artifact upload expects.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_outputs(results: Mapping[str, Any] | Results, out_dir: Path) -> dict[str, Path]:
    """Write results.json, report.html, junit.xml and summary.md into ``out_dir``.

    results.json is written first: it holds every figure, and the other three are views of
    it, so a view that fails to render costs nothing `evalkit report RUN_DIR` cannot redo.
    Each view is rendered before any is written; each file goes to a temp file in
    ``out_dir`` and is renamed into place, so an interrupted write never leaves a half file.
    The document is validated by the results model before anything is written
    (ResultsError otherwise). Returns name -> path.
    """
    clean, model = validate_results(results)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {RESULTS_JSON: out_dir / RESULTS_JSON}
    _atomic_write(written[RESULTS_JSON], render_results_json(clean))
    try:
        views = {
            "report.html": render_html(clean, clean=True, model=model),
            "junit.xml": render_junit(model),
            "summary.md": render_summary(clean),
        }
    except Exception as exc:
        raise ReportError(
            f"{out_dir}: results.json was written, but the report could not be rendered: "
            f"{type(exc).__name__}: {exc}",
            hint=f"Fix the cause, then `evalkit report {out_dir}` renders it again "
            "without recomputing anything.",
        ) from exc
    for name, text in views.items():
        written[name] = out_dir / name
        _atomic_write(written[name], text)
    return written


def load_results(run_dir: Path) -> dict[str, Any]:
    """Read and validate a run's results.json (``run_dir`` may also be the file itself).

    Returns the document as a dict, with `schema_version` as "MAJOR.MINOR". Raises
    InputError (exit code 2) for a missing or unreadable file, another major
    `schema_version`, or a document the results model refuses.
    """
    return _read(Path(run_dir))[0]


def load_results_model(run_dir: Path) -> Results:
    """Like load_results, as the typed model (attributes instead of keys)."""
    return _read(Path(run_dir))[1]


def _read(run_dir: Path) -> tuple[dict[str, Any], Results]:
    path = run_dir if run_dir.is_file() else run_dir / RESULTS_JSON
    if not path.is_file():
        raise InputError(
            f"{path}: no results.json here",
            hint="Pass the output directory of an `evalkit run`.",
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"{path}: cannot read results: {e}") from e
    if not isinstance(data, dict):
        raise InputError(f"{path}: results must be a JSON object, found {type(data).__name__}")
    raw = data.get("schema_version")
    version = normalize_version(raw)
    if version is None or major_of(version) != SCHEMA_MAJOR:
        raise InputError(
            f"{path}: results schema_version {raw!r} is not supported "
            f"(this evalkit reads version {SCHEMA_MAJOR}.x, and writes {SCHEMA_VERSION})",
            hint="Re-render with the evalkit version that wrote the run, or re-run the suite.",
        )
    data["schema_version"] = version
    try:
        return data, Results.model_validate(data)
    except ValidationError as e:
        raise InputError(
            f"{path}: not a valid results document (schema_version {version}):\n{_problems(e)}",
            hint="Re-run the suite, or re-render with the evalkit version that wrote it.",
        ) from e
