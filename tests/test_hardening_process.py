"""Clean shutdown of the local judge server, with real processes: SIGTERM to evalkit (a
cancelled CI job) stops the server and leaves no file behind; even SIGKILL, which no
`finally` survives, takes the server with it (parent-death signal). The server here is a
small Python HTTP server started through the same `serve` as llama.cpp's, since the
behaviour under test is the process handling, not the model."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

FAKE_SERVER = (
    "import functools, http.server, os, sys\n"
    "open(sys.argv[2], 'w').write(str(os.getpid()))\n"
    "h = functools.partial(http.server.SimpleHTTPRequestHandler, directory=sys.argv[3])\n"
    "http.server.ThreadingHTTPServer(('127.0.0.1', int(sys.argv[1])), h).serve_forever()\n"
)
PARENT = (
    "import sys, time\n"
    "from evalkit.cli.common import Terminated, handle_signals\n"
    "from evalkit.scoring.judges.local_server import free_port, serve\n"
    "handle_signals()\n"
    "port = free_port()\n"
    "cmd = [sys.executable, '-c', sys.argv[1], str(port), sys.argv[2], sys.argv[3]]\n"
    "try:\n"
    "    with serve(cmd, f'http://127.0.0.1:{port}/v1', 30):\n"
    "        print('READY', port, flush=True)\n"
    "        time.sleep(300)\n"
    "except Terminated:\n"
    "    sys.exit(143)\n"
)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in state  # a zombie waiting for its reaper is dead


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _start(tmp_path: Path) -> tuple[subprocess.Popen[str], int, int, Path]:
    root = tmp_path / "www"
    (root / "v1").mkdir(parents=True)
    (root / "v1" / "models").write_text('{"data": []}')
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    pidfile = tmp_path / "server.pid"
    env = {**os.environ, "TMPDIR": str(tmpdir), "PYTHONPATH": str(REPO)}
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, FAKE_SERVER, str(pidfile), str(root)],
        stdout=subprocess.PIPE, text=True, env=env, cwd=REPO,
    )  # fmt: skip
    assert parent.stdout is not None
    line = parent.stdout.readline()
    assert line.startswith("READY"), line
    port = int(line.split()[1])
    server_pid = int(pidfile.read_text())
    assert _alive(server_pid) and _listening(port)
    assert list(tmpdir.iterdir()) == []  # the server's log has no name on disk
    return parent, server_pid, port, tmpdir


def _gone(pid: int, port: int, within: float = 10.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not _alive(pid) and not _listening(port):
            return True
        time.sleep(0.1)
    return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl is Linux's")
def test_sigkill_of_evalkit_takes_the_server_with_it(tmp_path: Path) -> None:
    parent, server, port, tmpdir = _start(tmp_path)
    parent.kill()
    parent.wait(timeout=10)
    try:
        assert _gone(server, port), "the judge server outlived evalkit"
    finally:
        if _alive(server):
            os.kill(server, signal.SIGKILL)
    assert list(tmpdir.iterdir()) == []


def test_sigterm_stops_the_server_and_removes_its_files(tmp_path: Path) -> None:
    parent, server, port, tmpdir = _start(tmp_path)
    parent.send_signal(signal.SIGTERM)
    assert parent.wait(timeout=20) == 143
    try:
        assert _gone(server, port, within=2.0)  # stopped by evalkit itself, at once
    finally:
        if _alive(server):
            os.kill(server, signal.SIGKILL)
    assert list(tmpdir.iterdir()) == []
