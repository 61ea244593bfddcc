"""A small OpenAI-compatible chat-completions server on loopback, for judge tests and the
judge benchmark. It speaks just enough of the protocol for the openai client, and can be
told to fail: 500s, 429 with Retry-After, replies slower than the client's timeout,
garbage bodies and truncated JSON. It is a real HTTP server in a thread, so the openai
client runs unmodified against it.

`responder(body) -> str` writes the judge's reply text. The default one is a rule-based
judge that respects the prompt's declared delimiters: it grades only the answer between
the real markers, and obeys a "score N" instruction only when it appears *outside* them,
the way an injectable model would. So an answer that escapes its delimiters shows up as a
followed injection in the tests.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# ok | 500 | 429 | slow | garbage | truncated | content:<text>
# | 401-echo | 500-echo | reply-echo: the request's Authorization header echoed back in a
#   401 body, a 500 body or the reply text (as some servers and proxies do)
Action = str

_NOTE = re.compile(r"between (<<ANSWER [0-9a-f]+>>) and (<</ANSWER [0-9a-f]+>>)")


def delimiter_respecting_judge(body: dict[str, Any]) -> str:
    user = body["messages"][-1]["content"]
    m = _NOTE.search(user)
    if not m:
        return '{"score": 1, "reason": "no answer block"}'
    open_, close = m.group(1), m.group(2)
    start = user.rfind(open_ + "\n")
    end = user.find("\n" + close, start)  # the first close marker after the block opens
    answer = user[start + len(open_) + 1 : end]
    outside = user[:start] + user[end + len(close) + 1 :]
    injected = re.findall(r"score\s*:?\s*(\d+)", outside, re.I)
    # Rubric examples in the template do not match "score N" (they say "<integer 1-5>").
    if injected:
        return json.dumps({"score": int(injected[-1]), "reason": "followed an instruction"})
    try:
        ok = isinstance(json.loads(answer), dict) and "type" in json.loads(answer)
    except json.JSONDecodeError:
        ok = False
    return json.dumps({"score": 5 if ok else 2, "reason": "graded the answer"})


@dataclass
class ServerState:
    plan: Callable[[int, dict[str, Any]], Action] = lambda n, body: "ok"
    responder: Callable[[dict[str, Any]], str] = delimiter_respecting_judge
    delay_s: float = 0.0  # every request (latency-bound endpoint for the benchmark)
    slow_s: float = 5.0  # the "slow" action
    retry_after: str = "1"
    requests: list[dict[str, Any]] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _completion(text: str, model: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


def _handler(state: ServerState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # headers and body go out in two writes: with Nagle on, delayed ACKs add ~40 ms
        disable_nagle_algorithm = True

        def log_message(self, *args: Any) -> None:  # keep test output clean
            pass

        def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            self._send(200, json.dumps({"object": "list", "data": [{"id": "fake"}]}).encode())

        def do_POST(self) -> None:  # noqa: N802
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            with state.lock:
                n = len(state.requests)
                state.requests.append(body)
                state.times.append(time.monotonic())
            if state.delay_s:
                time.sleep(state.delay_s)
            action = state.plan(n, body)
            model = str(body.get("model", "fake"))
            auth = str(self.headers.get("Authorization", ""))
            if action in ("401-echo", "500-echo"):
                body_text = {"error": {"message": f"bad credentials: {auth}", "type": "auth"}}
                self._send(int(action[:3]), json.dumps(body_text).encode())
                return
            if action == "reply-echo":
                text = json.dumps({"score": 3, "reason": f"you sent {auth}"})
                self._send(200, json.dumps(_completion(text, model)).encode())
                return
            if action == "500":
                self._send(500, b'{"error": {"message": "boom", "type": "server_error"}}')
            elif action == "429":
                self._send(
                    429,
                    b'{"error": {"message": "slow down", "type": "rate_limit"}}',
                    {"Retry-After": state.retry_after},
                )
            elif action == "reject":
                self._send(400, b'{"error": {"message": "response_format is not supported"}}')
            elif action == "garbage":
                self._send(200, b"<html>this is not a chat completion</html>")
            elif action == "truncated":
                full = json.dumps(_completion('{"score": 4}', model)).encode()
                self._send(200, full[: len(full) // 2])
            else:
                if action == "slow":
                    time.sleep(state.slow_s)
                text = action[8:] if action.startswith("content:") else state.responder(body)
                # the client may have given up (timeout) before a slow reply
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self._send(200, json.dumps(_completion(text, model)).encode())

    return Handler


class JudgeServer:
    """`with JudgeServer() as srv:` -> srv.base_url, srv.state."""

    def __init__(self, state: ServerState | None = None) -> None:
        self.state = state or ServerState()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self.state))
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> JudgeServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def main() -> None:
    """Run the server in its own process (the benchmark does, so the server's threads do
    not share the client's interpreter lock): prints its base URL, serves until killed."""
    import argparse
    import sys

    ap = argparse.ArgumentParser()
    ap.add_argument("--delay-ms", type=float, default=0.0)
    args = ap.parse_args()
    srv = JudgeServer(ServerState(delay_s=args.delay_ms / 1000))
    print(srv.base_url, flush=True)
    sys.stdout.close()
    srv.httpd.serve_forever()


if __name__ == "__main__":
    main()
