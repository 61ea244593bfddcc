"""Who answered a served run: the endpoint without credentials, and the server's own name
and version where it reports them, for results.json's `engine` object.

Servers report their version in different places, all outside the OpenAI API and all at
the server's root (not under /v1):

- vLLM: `GET /version` -> {"version": "0.11.2"}.
- llama.cpp's C++ server (llama-server): `GET /props` -> {"build_info": "b6400-1b2c3d4", ...}.
- llama-cpp-python's server has no version endpoint; as a FastAPI app it describes itself
  in `GET /openapi.json` (info.title "🦙 llama.cpp Python API", info.version its package
  version, 0.3.36 here). FastAPI's defaults (title "FastAPI", version "0.1.0") say
  nothing about the server and are not taken.

The probes are tried in that order; the first that answers wins. A server that answers
none is recorded with version null and why, never guessed. The probe never fails a run:
the server already answered the engine's requests, and its version is a record, not a
check. Strings from the server are redacted and shortened before they are kept.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from evalkit.redact import redact

MAX_BYTES = 4 << 20  # vLLM's OpenAPI document is a few hundred kB; anything larger is not it
MAX_TEXT = 200
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def public_url(url: str) -> str:
    """`url` without user:password@, query or fragment: what may be written to outputs."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path.rstrip("/"), "", ""))


def server_root(base_url: str) -> str:
    """The server's root: the base URL without its trailing /v1 (where the OpenAI routes
    are mounted), and without credentials or query (the probes send the API key as the
    engine does, in the Authorization header)."""
    url = public_url(base_url)
    return url[: -len("/v1")] if url.endswith("/v1") else url


def _text(value: Any) -> str | None:
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):
        return None
    s = _CONTROL.sub("", redact(str(value))).strip()
    return s[:MAX_TEXT] or None


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is an answer of its own (its status), never followed: the key is sent
    to the engine's server only."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def _get_json(url: str, headers: dict[str, str], timeout_s: float) -> tuple[Any, str | None]:
    """(the JSON body, None), or (None, why not) for an error, a non-200 or a non-JSON
    body, or one past MAX_BYTES."""
    request = urllib.request.Request(url, headers=headers)
    try:
        with _OPENER.open(request, timeout=timeout_s) as resp:
            body = resp.read(MAX_BYTES + 1)
    except urllib.error.HTTPError as exc:
        return None, f"http {exc.code}"
    except (OSError, ValueError) as exc:  # refused, timed out, a malformed answer
        return None, type(exc).__name__
    if len(body) > MAX_BYTES:
        return None, f"answer over {MAX_BYTES >> 20} MB"
    try:
        return json.loads(body), None
    except ValueError:
        return None, "not JSON"


def _from_version(doc: Any) -> dict[str, Any] | None:
    version = _text(doc.get("version")) if isinstance(doc, dict) else None
    return {"name": None, "version": version} if version else None


def _from_props(doc: Any) -> dict[str, Any] | None:
    build = _text(doc.get("build_info")) if isinstance(doc, dict) else None
    return {"name": "llama.cpp server", "version": build} if build else None


def _from_openapi(doc: Any) -> dict[str, Any] | None:
    info = doc.get("info") if isinstance(doc, dict) else None
    if not isinstance(info, dict):
        return None
    title, version = _text(info.get("title")), _text(info.get("version"))
    if not version or (title in (None, "FastAPI") and version == "0.1.0"):
        return None  # FastAPI's defaults: an app that did not say what it is
    return {"name": title, "version": version}


PROBES = (
    ("/version", _from_version),
    ("/props", _from_props),
    ("/openapi.json", _from_openapi),
)


def probe_version(
    base_url: str, *, api_key: str | None = None, timeout_s: float = 5.0
) -> dict[str, Any]:
    """{"name", "version", "source", "note"}: the server's own name and version and the
    request that gave them; version null and `note` saying why when none did."""
    headers = {"Accept": "application/json"}
    if api_key and api_key != "none":
        headers["Authorization"] = f"Bearer {api_key}"
    root = server_root(base_url)
    tried = []
    for path, read in PROBES:
        doc, why = _get_json(root + path, headers, timeout_s)
        found = read(doc) if why is None else None
        if found is not None:
            return {**found, "source": f"GET {path}", "note": None}
        tried.append(f"GET {path}: {why or 'no version in it'}")
    return {
        "name": None,
        "version": None,
        "source": None,
        "note": "the server reports no version (" + "; ".join(tried) + ")",
    }


def server_identity(settings: Any) -> dict[str, Any]:
    """The served engine's identity for its `describe()`: `base_url` without credentials
    and `server` (probe_version). `settings`: the client's ProviderSettings."""
    return {
        "base_url": public_url(settings.base_url),
        "server": probe_version(
            settings.base_url,
            api_key=settings.api_key,
            timeout_s=min(float(settings.timeout_s), 10.0),
        ),
    }
