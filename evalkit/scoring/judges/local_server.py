"""The zero-key local judge: an OpenAI-compatible llama.cpp server (llama-cpp-python's
`llama_cpp.server`) on a free loopback port, started for a run and always stopped after
it, also when the run fails."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from evalkit.errors import EvalkitError, InputError

log = logging.getLogger(__name__)


class JudgeServerError(EvalkitError):
    """The local judge server could not start or answer. Exit code 3."""


def resolve_gguf(serve: str, relative_to: Path | None = None) -> Path:
    """`builtin:NAME` or a path to a .gguf file."""
    from evalkit.engines.resolve import builtin_gguf_path

    if serve.startswith("builtin:"):
        return builtin_gguf_path(serve.removeprefix("builtin:"))
    path = Path(serve).expanduser()
    if relative_to is not None and not path.is_absolute():
        path = relative_to / path
    if path.suffix != ".gguf" or not path.is_file():
        raise InputError(
            f"judge `serve: {serve}` is neither builtin:NAME nor an existing .gguf file",
            hint="Use serve: builtin:smollm2-135m-instruct, or a path to a GGUF model.",
        )
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def llama_server(
    gguf: Path,
    *,
    n_ctx: int = 2048,
    threads: int = 1,
    startup_timeout_s: float = 180.0,
) -> Iterator[str]:
    """Start llama_cpp.server on 127.0.0.1:<free port>; yield its /v1 base URL; stop it."""
    import importlib.util

    if importlib.util.find_spec("llama_cpp") is None:
        raise JudgeServerError(
            "the local judge needs llama-cpp-python's server",
            hint="Install it with: pip install 'llama-cpp-python[server]'  "
            "(or `pip install -e '.[local-judge]'`), or point the judge at an endpoint "
            "with base_url.",
        )
    port = free_port()
    cmd = [
        sys.executable, "-m", "evalkit.scoring.judges.llama_server_main",
        "--model", str(gguf),
        "--host", "127.0.0.1", "--port", str(port),
        "--n_ctx", str(n_ctx), "--n_threads", str(threads), "--n_threads_batch", str(threads),
        "--verbose", "False",
    ]  # fmt: skip
    # The server's log stays on disk only while it runs (read back if it fails to start).
    logf = tempfile.NamedTemporaryFile(  # noqa: SIM115
        prefix="evalkit-judge-", suffix=".log", delete=False
    )
    # Own process group: stopping the server cannot reach evalkit, and nothing else is hit.
    proc = subprocess.Popen(
        cmd, stdout=logf, stderr=subprocess.STDOUT, start_new_session=True, env=os.environ.copy()
    )
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        _wait_ready(proc, base_url, startup_timeout_s, Path(logf.name))
        log.info("local judge server on %s (pid %d)", base_url, proc.pid)
        yield base_url
    finally:
        _stop(proc)
        logf.close()
        Path(logf.name).unlink(missing_ok=True)


def _wait_ready(
    proc: subprocess.Popen[bytes], base_url: str, timeout: float, log_path: Path
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace")[-1500:]
            raise JudgeServerError(
                f"the local judge server exited with code {proc.returncode} before answering",
                hint=f"Its log ends with:\n{tail}",
            )
        try:
            with urllib.request.urlopen(base_url + "/models", timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            pass
        time.sleep(0.25)
    raise JudgeServerError(f"the local judge server did not answer within {timeout:g}s")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
