"""Read a verdict from the judge's reply, or say why there is none.

A reply that cannot be read is *unscored* with its reason; it is never a 0. Order of
trust: the whole reply as a JSON object (what structured output returns), then the last
JSON object in a code fence, then the last rating marker (`Score: 4`, `[[4]]`). Only the
judge's reply is parsed, never the prompt, so text in the judged answer cannot become a
verdict. A score outside the declared scale is unscored, not clamped.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

_FENCE = re.compile(r"```(?:json)?\s*(\{.*?\})\s*```", re.DOTALL | re.IGNORECASE)
# A complete number after a score key: `"score": 4,` / `Score: 4` / `rating = 4.5`.
_MARKER = re.compile(
    r"(?:\"?(?:score|rating)\"?)\s*[:=]\s*\"?(-?\d+(?:\.\d+)?)\"?(?=\s*(?:[,}\n/.]|$|\s))",
    re.IGNORECASE,
)
_BRACKETS = re.compile(r"\[\[\s*(-?\d+(?:\.\d+)?|A|B|tie)\s*\]\]", re.IGNORECASE)
_WINNER = re.compile(r"\"?(?:winner|verdict)\"?\s*[:=]\s*\"?(A|B|tie)\b", re.IGNORECASE)
_REFUSAL = re.compile(
    r"\b(I can(?:'|no)t|I cannot|I'm (?:not able|unable)|I am (?:not able|unable)|"
    r"I won't|as an AI)\b",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Verdict:
    score: float | None  # rubric: on the scale; pairwise: 1 = A wins, 0 = B wins, 0.5 tie
    reason: str | None  # the judge's rationale, when it gave one
    error: str | None  # why unscored; None when scored
    method: str = ""  # json | fence | marker

    @property
    def scored(self) -> bool:
        return self.score is not None


def _unscored(error: str, reason: str | None = None) -> Verdict:
    return Verdict(None, reason, error)


def _json_object(text: str) -> tuple[dict[str, Any] | None, str]:
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            value = json.loads(stripped)
            if isinstance(value, dict):
                return value, "json"
        except json.JSONDecodeError:
            pass
    for block in reversed(_FENCE.findall(text)):
        try:
            value = json.loads(block)
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            return value, "fence"
    return None, ""


def _reason_of(obj: dict[str, Any]) -> str | None:
    for key in ("reason", "rationale", "explanation"):
        if isinstance(obj.get(key), str):
            return str(obj[key])
    return None


def parse_rating(text: str, scale: tuple[int, int], finish_reason: str | None = None) -> Verdict:
    """A score on `scale` from a rubric or reference judge's reply."""
    if not text.strip():
        return _unscored("empty reply")
    obj, method = _json_object(text)
    value: Any = None
    reason: str | None = None
    if obj is not None:
        value, reason = obj.get("score", obj.get("rating")), _reason_of(obj)
        if value is None:
            return _unscored("JSON reply without a score", reason)
    else:
        markers = _MARKER.findall(text) or [
            m for m in _BRACKETS.findall(text) if m.lower() not in ("a", "b", "tie")
        ]
        if not markers:
            if finish_reason == "length":
                return _unscored("truncated reply (max_tokens) before a score")
            if _REFUSAL.search(text):
                return _unscored("refused", text.strip()[:300])
            return _unscored("no score found in reply")
        value, method = markers[-1], "marker"
        reason = text.strip()
    try:
        score = float(value)
    except (TypeError, ValueError):
        return _unscored(f"score is not a number: {str(value)[:40]!r}", reason)
    lo, hi = scale
    if math.isnan(score) or not lo <= score <= hi:
        return _unscored(f"score {value} outside the scale [{lo}, {hi}]", reason)
    return Verdict(score, reason, None, method)


def parse_pairwise(text: str, finish_reason: str | None = None) -> Verdict:
    """Which answer won: 1.0 for A, 0.0 for B, 0.5 for a tie."""
    if not text.strip():
        return _unscored("empty reply")
    obj, method = _json_object(text)
    reason: str | None = None
    raw: Any = None
    if obj is not None:
        raw, reason = obj.get("winner", obj.get("verdict")), _reason_of(obj)
    else:
        found = _WINNER.findall(text) or [
            m for m in _BRACKETS.findall(text) if m.lower() in ("a", "b", "tie")
        ]
        if found:
            raw, method, reason = found[-1], "marker", text.strip()
    if raw is None:
        if finish_reason == "length":
            return _unscored("truncated reply (max_tokens) before a verdict")
        if _REFUSAL.search(text):
            return _unscored("refused", text.strip()[:300])
        return _unscored("no verdict found in reply", reason)
    key = str(raw).strip().lower()
    values = {"a": 1.0, "b": 0.0, "tie": 0.5}
    if key not in values:
        return _unscored(f"verdict {str(raw)[:20]!r} is not A, B or tie", reason)
    return Verdict(values[key], reason, None, method)


def weighted_score(
    top_logprobs: list[list[tuple[str, float]]], scale: tuple[int, int], chosen: float
) -> float | None:
    """The probability-weighted score over the scale at the first position where the judge
    wrote its parsed score: sum(p(k) * k) / sum(p(k)) over the integer scale points among
    that position's top logprobs. None when no position holds the score as one token.
    Each token counts once: an OpenAI-style reply lists the chosen token and then its top
    logprobs, where the chosen token appears again with the same probability."""
    lo, hi = scale
    points = {str(k): k for k in range(lo, hi + 1)}
    if chosen != int(chosen):
        return None
    for candidates in top_logprobs:
        if not candidates or candidates[0][0].strip() != str(int(chosen)):
            continue
        distinct = dict(reversed(candidates))  # token -> logprob, each token once
        mass = [
            (points[t.strip()], math.exp(lp)) for t, lp in distinct.items() if t.strip() in points
        ]
        total = sum(p for _, p in mass)
        if total > 0:
            return sum(k * p for k, p in mass) / total
    return None
