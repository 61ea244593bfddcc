"""Where evalkit keeps converted models and cached results."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

from evalkit.errors import InputError


def cache_dir() -> Path:
    """`EVALKIT_CACHE_DIR`, or `~/.cache/evalkit`."""
    env = os.environ.get("EVALKIT_CACHE_DIR")
    path = Path(env).expanduser() if env else Path.home() / ".cache" / "evalkit"
    if not path.is_dir():
        # user-only: the cache holds model weights and cached answers that later runs trust
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        path.chmod(0o700)  # mkdir's mode is masked by the umask
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


class FileProblem(InputError):
    """A path that is not a readable regular file of a sane size; `reason` is a sentence
    without the path, for the caller to place (a suite line, a task's data path)."""

    def __init__(self, reason: str, *, hint: str | None = None) -> None:
        super().__init__(reason, hint=hint)
        self.reason = reason


def read_regular_file(path: Path, *, max_bytes: int, what: str = "file") -> bytes:
    """The bytes of a regular file, refusing what would hang or exhaust a run: a FIFO or
    device (a read would block forever), a directory, a symlink loop, a file over
    `max_bytes`. Opened non-blocking and checked with fstat, so a path swapped for a FIFO
    between a check and the read cannot hang either."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise FileProblem(f"{what} not found") from None
    except IsADirectoryError:
        raise FileProblem(f"{what} is a directory, not a file") from None
    except OSError as exc:  # ELOOP (a symlink loop), EACCES, ENAMETOOLONG ...
        raise FileProblem(f"cannot open the {what}: {exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise FileProblem(f"{what} is a directory, not a file")
        if not stat.S_ISREG(st.st_mode):
            raise FileProblem(
                f"{what} is not a regular file (a FIFO, socket or device)",
                hint="evalkit reads only regular files; write the data to a file first.",
            )
        if st.st_size > max_bytes:
            raise FileProblem(f"{what} is {st.st_size:,} bytes, over the {max_bytes:,} limit")
    except BaseException:
        os.close(fd)
        raise
    with os.fdopen(fd, "rb") as f:
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:  # grew while we read it
        raise FileProblem(f"{what} is over the {max_bytes:,} byte limit")
    return data


def check_output_dir(path: Path) -> None:
    """Refuse an output directory that cannot be written, before any model loads: a
    regular file in the way, a parent that is a file, a directory without write access."""
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise InputError(
            f"--output-dir {path}: {probe} is a file, not a directory",
            hint="Choose another --output-dir, or remove the file.",
        )
    if probe.exists() and not os.access(probe, os.W_OK | os.X_OK):
        raise InputError(
            f"--output-dir {path}: {probe} is not writable",
            hint="Choose a directory you can write to with --output-dir.",
        )
