"""One redaction step for every string that came from a provider or a server.

Servers echo what they were sent: a 401 body that repeats the bearer token, a proxy error
that prints the URL with its credentials, a model that was asked to repeat its system
prompt. Each such string passes `redact` before it is logged, cached or written, so the
key cannot reach results.json, report.html, summary.md, the judge cache or stderr.
"""

from __future__ import annotations

import re
import threading

MASK = "[redacted]"
# Values shorter than this are not secrets worth masking ("none", "local") and would
# mangle ordinary words if replaced.
_MIN_SECRET = 6

_lock = threading.Lock()
_secrets: set[str] = set()

# user:password@ in any URL
_URL_CREDS = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@:]+(?::[^/\s@]*)?@")
# Authorization headers and common key-bearing query parameters
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{6,}")
_QUERY = re.compile(r"(?i)([?&](?:api[_-]?key|key|token|access_token|auth)=)[^&\s\"']+")
# Key shapes of the common providers, masked even when the key was never registered
# (a server that echoes a *different* key it holds)
_KEY_SHAPES = re.compile(r"\b(?:sk-[A-Za-z0-9_-]{16,}|hf_[A-Za-z0-9]{20,})\b")


def register_secret(value: str | None) -> None:
    """Remember a credential so every later `redact` removes it."""
    if value and len(value) >= _MIN_SECRET:
        with _lock:
            _secrets.add(value)


def redact(text: str) -> str:
    """`text` without any registered secret, URL credentials, bearer tokens, key query
    parameters or provider-shaped keys."""
    if not text:
        return text
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for s in secrets:
        if s in text:
            text = text.replace(s, MASK)
    text = _URL_CREDS.sub(lambda m: m.group(1) + MASK + "@", text)
    text = _BEARER.sub(lambda m: m.group(1) + " " + MASK, text)
    text = _QUERY.sub(lambda m: m.group(1) + MASK, text)
    return _KEY_SHAPES.sub(MASK, text)


def redact_opt(text: str | None) -> str | None:
    return None if text is None else redact(text)
