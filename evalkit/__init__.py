"""evalkit: evaluate LoRA adapters for task gain and forgetting, and gate releases on it.

`import evalkit` stays light: torch, transformers and peft are imported inside the
functions that need them, and pandas inside `load_run`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from evalkit.outputs.frames import Run

__version__ = "0.1.0"
__all__ = ["__version__", "load_run"]


def load_run(run_dir: Path | str) -> Run:
    """A finished run directory as pandas DataFrames: ``run.samples`` (example × variant ×
    metric), ``run.metrics``, ``run.comparisons``, ``run.gates`` and ``run.records``.

    Raises evalkit.errors.InputError when ``run_dir`` holds no readable results.json.
    """
    from evalkit.outputs.frames import load_run as _load_run

    return _load_run(run_dir)
