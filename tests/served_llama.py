"""A real llama.cpp server (llama-cpp-python's) on a loopback port for the served-engine
tests, serving the default model's GGUF under several names from one config file. Started
through the local judge's entry point, which turns off llama.cpp's extra (repacked, AMX)
weight buffers that crash it on these machines."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from evalkit.scoring.judges.local_server import _stop, _wait_ready, free_port, resolve_gguf


@dataclass
class Served:
    url: str
    proc: subprocess.Popen[bytes]

    def kill(self) -> None:
        """The server dies as a crash would take it: SIGKILL, no shutdown."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)


@contextmanager
def llama_models(
    aliases: list[str],
    *,
    port: int | None = None,
    n_ctx: int = 1024,
    logits_all: bool = True,
    loras: dict[str, Path] | None = None,
) -> Iterator[Served]:
    """Serve the default GGUF as each alias; yield it (its /v1 base URL and process); stop
    it after. `logits_all=False`: a server that keeps no prompt logits, so it cannot answer
    `echo` + `logprobs`. `loras`: alias -> a LoRA GGUF (tests/served_lora.py) that alias
    serves applied to the base."""
    gguf = str(resolve_gguf("builtin:smollm2-135m-instruct"))
    port = port or free_port()
    work = Path(tempfile.mkdtemp(prefix="evalkit-served-"))
    config = {
        "host": "127.0.0.1",
        "port": port,
        "models": [
            {
                "model": gguf,
                "model_alias": a,
                "n_ctx": n_ctx,
                "n_threads": 1,
                "n_threads_batch": 1,
                "logits_all": logits_all,
                "verbose": False,
                **({"lora_path": str(loras[a])} if loras and a in loras else {}),
            }
            for a in aliases
        ],
    }
    (work / "config.json").write_text(json.dumps(config))
    logf = (work / "server.log").open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "evalkit.scoring.judges.llama_server_main",
            "--config_file",
            str(work / "config.json"),
        ],
        stdout=logf,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}/v1"
    try:
        _wait_ready(proc, url, 120.0, work / "server.log")
        yield Served(url, proc)
    finally:
        _stop(proc)
        logf.close()
        shutil.rmtree(work, ignore_errors=True)
