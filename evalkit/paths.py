"""Where evalkit keeps converted models and cached results."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """`EVALKIT_CACHE_DIR`, or `~/.cache/evalkit`."""
    env = os.environ.get("EVALKIT_CACHE_DIR")
    path = Path(env).expanduser() if env else Path.home() / ".cache" / "evalkit"
    path.mkdir(parents=True, exist_ok=True)
    return path
