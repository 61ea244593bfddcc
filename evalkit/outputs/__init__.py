"""The output stage: from a results dict, write results.json, report.html, junit.xml and
summary.md into a run directory.

The results dict is the contract between the evaluation and its outputs; its shape is
described by ``results.schema.json`` next to this file. Nothing here imports torch.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from evalkit.errors import EvalkitError, InputError
from evalkit.outputs._fmt import to_jsonable
from evalkit.outputs.html import render_html
from evalkit.outputs.junit import render_junit
from evalkit.outputs.summary import render_summary

__all__ = [
    "SCHEMA_PATH",
    "SCHEMA_VERSION",
    "load_results",
    "render_html",
    "render_junit",
    "render_results_json",
    "render_summary",
    "to_jsonable",
    "write_outputs",
]

SCHEMA_VERSION = 1
SCHEMA_PATH = Path(__file__).with_name("results.schema.json")

RESULTS_JSON = "results.json"
OUTPUT_NAMES = (RESULTS_JSON, "report.html", "junit.xml", "summary.md")


class ReportError(EvalkitError):
    """A view (HTML, JUnit, summary) failed to render; results.json is already on disk."""


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


def write_outputs(results: Mapping[str, Any], out_dir: Path) -> dict[str, Path]:
    """Write results.json, report.html, junit.xml and summary.md into ``out_dir``.

    results.json is written first: it holds every figure, and the other three are views of
    it, so a view that fails to render costs nothing `evalkit report RUN_DIR` cannot redo.
    Each view is rendered before any is written; each file goes to a temp file in
    ``out_dir`` and is renamed into place, so an interrupted write never leaves a half file.
    Returns name -> path.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    clean = to_jsonable(results)
    written = {RESULTS_JSON: out_dir / RESULTS_JSON}
    _atomic_write(written[RESULTS_JSON], render_results_json(clean))
    try:
        views = {
            "report.html": render_html(clean, clean=True),
            "junit.xml": render_junit(clean),
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
    """Read a run's results.json (``run_dir`` may also be the file itself)."""
    run_dir = Path(run_dir)
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
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        raise InputError(
            f"{path}: results schema_version {version!r} is not supported "
            f"(this evalkit reads version {SCHEMA_VERSION})",
            hint="Re-render with the evalkit version that wrote the run, or re-run the suite.",
        )
    return data
