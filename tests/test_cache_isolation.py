"""Every test runs with its own EVALKIT_CACHE_DIR (tests/conftest.py); only converted
models are shared, through a link."""

from __future__ import annotations

import os
from pathlib import Path

from evalkit.paths import cache_dir

SEEN: list[Path] = []


def _check_and_mark() -> None:
    here = cache_dir()
    assert Path(os.environ["EVALKIT_CACHE_DIR"]) == here
    assert here != Path.home() / ".cache" / "evalkit"
    assert (here / "models").is_symlink()
    assert not (here / "results.sqlite").exists()  # nothing cached by an earlier test
    (here / "results.sqlite").write_text("x")
    assert here not in SEEN
    SEEN.append(here)


def test_first_test_gets_a_fresh_cache() -> None:
    _check_and_mark()


def test_second_test_gets_another_fresh_cache() -> None:
    _check_and_mark()
