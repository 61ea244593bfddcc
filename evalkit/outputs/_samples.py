"""The per-example data of report.html: one JSON document that the page's script renders
page by page.

Rows are compact arrays, not objects (a 10,000 x 4 run repeats its keys 40,000 times
otherwise), and the per-variant flags the filters need (regressed, flipped, judge error)
are computed here, once, so the page only compares integers.

The JSON is embedded in ``<script type="application/json">``: ``safe_json`` escapes every
character that could end that element or start markup (``<``, ``>``, ``&``) and the two
line separators that older JavaScript parsers reject, so no text in an output can close
the tag.
"""

from __future__ import annotations

import base64
import json
import math
import os
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

from evalkit.outputs import _fmt as f

COMPRESS_ABOVE = 2_000_000  # characters of page JSON kept plain
TEXT_CAP = 20_000  # characters kept of one prompt, reference, output or judge text

# Per-variant flag bits (kept in step with _report.js).
REGRESSED = 1  # some metric worse than the base by more than its margin
IMPROVED = 2  # some metric better than the base by more than its margin
RIGHT_TO_WRONG = 4  # an accuracy-type (0/1) metric: base right, variant wrong
WRONG_TO_RIGHT = 8  # ... base wrong, variant right
JUDGE_ERROR = 16  # the judge could not score this variant's output
CHANGED = 32  # some score differs from the base's

_ESCAPES = (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"),
            ("\u2029", "\\u2029"))  # fmt: skip


def safe_json(data: Any) -> str:
    """JSON text that is inert inside a ``<script type="application/json">`` element."""
    text = json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    for char, escaped in _ESCAPES:  # str.replace is ~20x faster than str.translate here
        text = text.replace(char, escaped)
    return text


def encode(data: Any) -> tuple[str, str]:
    """(encoding, text) of the page data for a ``<script type="application/json">``.

    Small pages carry plain JSON, readable in the page source and in every browser. Above
    COMPRESS_ABOVE characters (a large run: 10,000 examples x 4 variants is ~45 MB of JSON)
    the JSON is deflated and base64-encoded, 3-4x smaller; the page inflates it with the
    browser's DecompressionStream (Chrome 80+, Firefox 113+, Safari 16.4+).
    """
    text = safe_json(data)
    if len(text) <= COMPRESS_ABOVE:
        return "json", text
    packed = zlib.compress(text.encode("utf-8"), 6)
    return "deflate-base64", base64.b64encode(packed).decode("ascii")


def clip(x: Any) -> str | None:
    if x is None:
        return None
    text = x if isinstance(x, str) else json.dumps(x, ensure_ascii=False)
    if len(text) <= TEXT_CAP:
        return text
    return text[:TEXT_CAP] + f"\n… [{len(text) - TEXT_CAP} more characters in results.json]"


def _num(x: Any) -> float | None:
    return None if f.is_missing(x) else float(x)


def _binary_metrics(samples: list[Mapping[str, Any]], metrics: list[str]) -> set[str]:
    """Metrics whose every recorded per-example score is 0 or 1 (accuracy-type)."""
    seen: dict[str, set[float]] = {m: set() for m in metrics}
    for s in samples:
        for vs in (s.get("scores") or {}).values():
            for m, value in (vs or {}).items():
                if m in seen and not f.is_missing(value):
                    seen[m].add(float(value))
    return {m for m, vals in seen.items() if vals and vals <= {0.0, 1.0}}


def _beyond(value: float, base: float, kind: str, margin: float) -> float:
    """How far value lies from base in the metric's delta units, less the margin (signed)."""
    if kind == "ratio":
        if base == 0:
            return 0.0 if value == 0 else math.copysign(math.inf, value)
        d = value / base - 1
    else:
        d = value - base
    return math.copysign(max(0.0, abs(d) - margin), d) if d else 0.0


def _flags(
    vs: Mapping[str, Any],
    bs: Mapping[str, Any],
    metas: Sequence[Mapping[str, Any]],
    binary: set[str],
) -> int:
    flags = 0
    for m in metas:
        name = m["name"]
        a, b = _num(vs.get(name)), _num(bs.get(name))
        if f.scores_differ(a, b):
            flags |= CHANGED
        if a is None or b is None:
            continue
        hib = m.get("higher_is_better", True)
        if name in binary and hib is not False:
            if b == 1.0 and a == 0.0:
                flags |= RIGHT_TO_WRONG
            elif b == 0.0 and a == 1.0:
                flags |= WRONG_TO_RIGHT
        if hib is None:
            continue
        gap = _beyond(a, b, str(m.get("delta_kind", "difference")), float(m.get("margin") or 0))
        if gap and (gap > 0) == bool(hib):
            flags |= IMPROVED
        elif gap:
            flags |= REGRESSED
    return flags


def _judgment(j: Any) -> list[Any] | None:
    """[score, reason, error, judge, prompt, raw] of one judgment."""
    if not isinstance(j, Mapping):
        return None
    score = j.get("score")
    return [
        score if isinstance(score, (int, float)) and not isinstance(score, bool) else clip(score),
        clip(j.get("reason")),
        clip(j.get("error")) or None,
        clip(j.get("judge")),
        clip(j.get("prompt")),
        clip(j.get("raw")),
    ]


def judgments_of(entry: Any) -> list[Mapping[str, Any]]:
    """A variant's judgments: a list (one per judge of the task), or one mapping."""
    items = entry if isinstance(entry, list) else [entry]
    return [j for j in items if isinstance(j, Mapping)]


def task_payload(
    task: str,
    samples: list[Mapping[str, Any]],
    variants: list[str],
    base: str,
    meta: Mapping[tuple[str, str], Mapping[str, Any]],
) -> dict[str, Any]:
    """The page data of one task's examples, and counts for the server-rendered heading."""
    names: list[str] = [m for (t, m) in meta if t == task]
    for s in samples:  # metrics scored per example but not declared by the task
        for vs in (s.get("scores") or {}).values():
            names += [str(m) for m in (vs or {}) if str(m) not in names]
    binary = _binary_metrics(samples, names)
    metas = []
    for name in names:
        m = meta.get((task, name)) or {}
        metas.append(
            {
                "name": name,
                "label": str(m.get("label") or name),
                "higher_is_better": m.get("higher_is_better", True),
                "delta_kind": str(m.get("delta_kind", "difference")),
                "margin": _num(m.get("margin")) or 0.0,
                "binary": name in binary,
            }
        )
    has_judge = any(s.get("judgments") for s in samples)
    rows = []
    counts = {"changed": 0, "regressed": 0, "flipped": 0, "judge_errors": 0}
    for s in samples:
        scores = s.get("scores") or {}
        outputs = s.get("outputs") or {}
        bs = scores.get(base) or {}
        judgments = s.get("judgments") or {}
        flags = []
        for v in variants:
            fl = 0 if v == base else _flags(scores.get(v) or {}, bs, metas, binary)
            if any(j.get("error") for j in judgments_of(judgments.get(v))):
                fl |= JUDGE_ERROR
            flags.append(fl)
        union = 0
        for fl in flags:
            union |= fl
        counts["changed"] += bool(union & CHANGED)
        counts["regressed"] += bool(union & REGRESSED)
        counts["flipped"] += bool(union & (RIGHT_TO_WRONG | WRONG_TO_RIGHT))
        counts["judge_errors"] += bool(union & JUDGE_ERROR)
        row: list[Any] = [
            str(s.get("id", "")),
            clip(s.get("prompt")) or "",
            clip(s.get("reference")),
            [clip(outputs.get(v)) for v in variants],
            [[_num((scores.get(v) or {}).get(m)) for m in names] for v in variants],
            flags,
        ]
        if has_judge:
            row.append([[_judgment(j) for j in judgments_of(judgments.get(v))] for v in variants])
        rows.append(row)
    prompts = [str(s.get("prompt") or "") for s in samples]
    prefix = os.path.commonprefix(prompts) if len(prompts) > 1 else ""
    # whole words of a template that every prompt continues; identical prompts keep theirs
    prefix = prefix[: max(prefix.rfind(" "), prefix.rfind("\n")) + 1]
    if any(len(p.strip()) <= len(prefix.strip()) for p in prompts):
        prefix = ""
    payload = {
        "name": task,
        "prompt_prefix": len(prefix),  # the shared template, skipped in the table's snippet
        "metrics": [
            {k: m[k] for k in ("name", "label", "higher_is_better", "binary")} for m in metas
        ],
        "judged": has_judge,
        "rows": rows,
    }
    return {"payload": payload, "total": len(samples), **counts}
