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
from typing import Any

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
    with serve(cmd, f"http://127.0.0.1:{port}/v1", startup_timeout_s) as url:
        yield url


def _die_with_parent() -> None:
    """In the child, before exec: the kernel sends it SIGTERM when evalkit dies, even by
    SIGKILL, which no `finally` survives (Linux prctl PR_SET_PDEATHSIG)."""
    import ctypes

    pr_set_pdeathsig = 1
    with suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)


@contextmanager
def serve(cmd: list[str], base_url: str, startup_timeout_s: float = 180.0) -> Iterator[str]:
    """Run a server command until the block ends; yield `base_url` once `/models` answers.

    The server runs in its own process group (stopping it reaches nothing else), dies with
    evalkit (parent-death signal), and logs to an unnamed temporary file: nothing is left
    in the temp directory, whatever way evalkit ends."""
    logf = tempfile.TemporaryFile(prefix="evalkit-judge-")  # noqa: SIM115
    proc = subprocess.Popen(
        cmd,
        stdout=logf,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env=os.environ.copy(),
        preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,  # noqa: PLW1509
    )
    try:
        _wait_ready(proc, base_url, startup_timeout_s, logf)
        log.info("local judge server on %s (pid %d)", base_url, proc.pid)
        yield base_url
    finally:
        _stop(proc)
        logf.close()


def _wait_ready(proc: subprocess.Popen[bytes], base_url: str, timeout: float, logf: Any) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            logf.seek(0)
            tail = logf.read().decode(errors="replace")[-1500:]
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
