"""A corpus of bad inputs (tests/hardening_corpus.py), each through the real command line:
exit code 2, a message that names the file (and the line or row where there is one), no
traceback, no hang, and no output directory written. Nothing here loads a model: every
case is refused before."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from evalkit.cli import app
from tests.hardening_corpus import CASES, JUDGED, work

__all__ = ["work"]  # the fixture


@pytest.mark.parametrize(("setup", "expect", "args"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])  # fmt: skip
def test_bad_input_is_exit_2_with_a_message(
    work: Path,
    setup: Callable[[Path], None],
    expect: str,
    args: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    setup(work)
    monkeypatch.chdir(work)
    before = {p.name for p in work.iterdir()}
    # the flags of `run` need `run`; everything else is caught by `validate` already
    command = ["run", "suite.yaml", "-q", *args] if args else ["validate", "suite.yaml"]
    if args and "-o" not in args:
        command += ["-o", "never"]
    t0 = time.monotonic()
    result = CliRunner().invoke(app, command)
    elapsed = time.monotonic() - t0
    assert result.exit_code == 2, f"{result.output}\n{result.exception!r}"
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    assert expect in " ".join(result.output.split()), result.output
    assert elapsed < 10
    assert {p.name for p in work.iterdir()} - before - {"cache"} == set()  # nothing written


def test_the_corpus_is_large() -> None:
    assert len(CASES) >= 40


def test_the_good_suite_validates(work: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The corpus's base is valid, so each case fails for its own reason only."""
    monkeypatch.chdir(work)
    assert CliRunner().invoke(app, ["validate", "suite.yaml"]).exit_code == 0
    shutil.copy(work / "suite.yaml", work / "s2.yaml")
    (work / "suite.yaml").write_text(JUDGED)
    result = CliRunner().invoke(app, ["validate", "suite.yaml"])
    assert result.exit_code == 0, result.output
