"""Where evalkit keeps converted models and cached results."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def cache_dir() -> Path:
    """`EVALKIT_CACHE_DIR`, or `~/.cache/evalkit`."""
    env = os.environ.get("EVALKIT_CACHE_DIR")
    path = Path(env).expanduser() if env else Path.home() / ".cache" / "evalkit"
    path.mkdir(parents=True, exist_ok=True)
    return path


def digest_files(paths: list[Path]) -> str:
    """A content hash of files (names, sizes and every byte). It keys converted models and
    cached results, so a partial hash would let a retrained adapter of the same size reuse
    another adapter's results; hashing the 540 MB default model takes about a second."""
    h = hashlib.sha256()
    for p in sorted(paths):
        h.update(p.name.encode())
        h.update(str(p.stat().st_size).encode())
        with p.open("rb") as f:
            while chunk := f.read(1 << 22):
                h.update(chunk)
    return h.hexdigest()[:16]
