"""Every benchmark script still imports what it uses from evalkit: `make bench` runs them
only on request, so a renamed function would otherwise surface only then (bench_lmeval.py
went on importing a probe builder that was gone). Each script is loaded as a module, which
runs its imports and definitions but not its main()."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.mark.parametrize("script", sorted(BENCH.glob("bench_*.py")), ids=lambda p: p.name)
def test_the_benchmark_script_loads(script: Path) -> None:
    namespace = runpy.run_path(str(script), run_name="loaded_by_test")
    assert callable(namespace.get("main")), f"{script.name} has no main()"
