"""The served engine's identity: its base URL without credentials, and the server's version
from where each server reports it.

vLLM and llama.cpp's C++ server cannot run on these machines (no GPU, no llama.cpp source
tree), so their version endpoints are played here by a loopback HTTP server answering
exactly what theirs answer (vLLM: GET /version -> {"version": ...}; llama-server: GET
/props with `build_info`). llama-cpp-python's real server is probed in
tests/test_engine_parity_served.py.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from evalkit.engines.server_info import probe_version, public_url, server_identity, server_root
from evalkit.scoring.judges.openai_provider import ProviderSettings


@contextmanager
def answering(routes: dict[str, tuple[int, Any]]) -> Iterator[tuple[str, list[dict[str, str]]]]:
    """A loopback server: path -> (status, JSON body or raw bytes); yields its /v1 base URL
    and the headers of every request it got."""
    seen: list[dict[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            seen.append({"path": self.path, **dict(self.headers)})
            status, body = routes.get(self.path, (404, {"detail": "Not Found"}))
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(status)
            if status in (301, 302, 307):
                self.send_header("Location", "http://127.0.0.1:9/elsewhere")
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/v1", seen
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.mark.parametrize(
    ("url", "public", "root"),
    [
        ("http://127.0.0.1:8000/v1", "http://127.0.0.1:8000/v1", "http://127.0.0.1:8000"),
        ("https://user:s3cret@llm.example:443/v1/?api_key=k#x", "https://llm.example:443/v1",
         "https://llm.example:443"),
        ("http://[::1]:8080/proxy/v1/", "http://[::1]:8080/proxy/v1", "http://[::1]:8080/proxy"),
        ("http://host:9000", "http://host:9000", "http://host:9000"),
    ],
)  # fmt: skip
def test_public_url_and_root(url: str, public: str, root: str) -> None:
    assert public_url(url) == public
    assert server_root(url) == root


def test_vllm_version_endpoint() -> None:
    with answering({"/version": (200, {"version": "0.11.2"})}) as (url, seen):
        info = probe_version(url)
    assert info == {"name": None, "version": "0.11.2", "source": "GET /version", "note": None}
    assert [s["path"] for s in seen] == ["/version"]  # the first that answers wins


def test_llama_cpp_server_props_build_info() -> None:
    props = {"build_info": "b6400-1b2c3d4", "model_path": "m.gguf", "total_slots": 1}
    with answering({"/props": (200, props)}) as (url, seen):
        info = probe_version(url)
    assert info["name"] == "llama.cpp server" and info["version"] == "b6400-1b2c3d4"
    assert info["source"] == "GET /props"
    assert [s["path"] for s in seen] == ["/version", "/props"]


def test_no_version_anywhere_is_null_with_the_reason() -> None:
    # FastAPI's default info (an app that never said what it is) is not a version
    default_info = {"title": "FastAPI", "version": "0.1.0"}
    routes = {
        "/openapi.json": (200, {"openapi": "3.1.0", "info": default_info}),
        "/props": (200, b"<html>not json</html>"),
        "/version": (302, {}),  # a redirect is not followed
    }  # fmt: skip
    with answering(routes) as (url, seen):
        info = probe_version(url)
    assert info["version"] is None and info["source"] is None
    assert info["note"] == (
        "the server reports no version (GET /version: http 302; GET /props: not JSON; "
        "GET /openapi.json: no version in it)"
    )
    assert [s["path"] for s in seen] == ["/version", "/props", "/openapi.json"]


def test_unreachable_server_is_recorded_not_raised() -> None:
    with answering({}) as (url, _):
        pass  # closed: nothing listens on that port any more
    info = probe_version(url, timeout_s=2.0)
    assert info["version"] is None and "URLError" in info["note"]


def test_identity_sends_the_key_to_the_server_and_writes_it_nowhere() -> None:
    key = "sk-live-0123456789abcdefXYZ"
    hostile = {"version": f"1.0 {key}\x1b[31m" + "x" * 500}
    with answering({"/version": (200, hostile)}) as (url, seen):
        creds = url.replace("http://", "http://alice:pw@") + "?api_key=" + key
        ident = server_identity(ProviderSettings(base_url=creds, model="m", api_key=key))
    assert seen[0]["Authorization"] == f"Bearer {key}"
    text = json.dumps(ident)
    assert key not in text and "alice" not in text and "pw@" not in text
    assert ident["base_url"] == url
    version = ident["server"]["version"]
    assert version.startswith("1.0 [redacted]") and "\x1b" not in version and len(version) == 200
