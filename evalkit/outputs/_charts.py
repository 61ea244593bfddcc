"""Geometry of the report's server-rendered SVG charts.

Each function returns plain numbers and strings; the templates draw them (with Jinja's
escaping), so a chart reads without the page's script and no text becomes markup.

- ``forest``: per (task, metric), each variant's change from the base with its 95%
  interval, the equivalence margin shaded.
- ``histograms``: per (task, metric, variant), the distribution of per-example change
  for perplexity-type metrics, from the samples' per-example scores.
- ``sweep``: task gain against each probe's change, one point per sweep point.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from evalkit.outputs import _fmt as f
from evalkit.outputs.model import Comparison, Results

Row = dict[str, Any]

W = 420  # chart width in px (SVG user units)
LABEL_W = 150  # left column for row labels
PAD = 14
ROW_H = 24


def _scale(x: float, lo: float, hi: float, x0: float, x1: float) -> float:
    return round(x0 + (x - lo) / (hi - lo) * (x1 - x0), 2) if hi > lo else (x0 + x1) / 2


def _nice_ticks(lo: float, hi: float, n: int = 4) -> list[float]:
    span = hi - lo
    if span <= 0:
        return [lo]
    raw = span / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step) * step
    out, t = [], first
    while t <= hi + step * 1e-9:
        out.append(0.0 if abs(t) < step * 1e-9 else round(t, 12))
        t += step
    return out


def _display(x: Any, kind: str, unit: str) -> float | None:
    """A delta in the units it is printed in: pp / % are x100."""
    if f.is_missing(x):
        return None
    return float(x) * 100 if (kind == "ratio" or unit == "fraction") else float(x)


def _tick_label(t: float, kind: str, unit: str) -> str:
    if kind == "ratio" or unit == "fraction":
        return f"{t:+g}" if t else "0"
    return f.fmt_num(t, signed=bool(t))


def _range(values: Sequence[float | None], pad: float = 0.08) -> tuple[float, float]:
    vals = [v for v in values if v is not None]
    lo, hi = min(vals + [0.0]), max(vals + [0.0])
    if hi == lo:
        lo, hi = lo - 1, hi + 1
    span = hi - lo
    return lo - span * pad, hi + span * pad


def _against_base(doc: Results, base: str) -> list[Comparison]:
    """Comparisons with the base variant (not with an earlier run's variants)."""
    return [c for c in doc.comparisons if c.baseline == base]


def forest(
    doc: Results, meta: Mapping[tuple[str, str], Mapping[str, Any]], kinds: dict, base: str
) -> list[Row]:
    """One panel per (task, metric) that has comparisons; probes first."""
    groups: dict[tuple[str, str], list[Comparison]] = {}
    for c in _against_base(doc, base):
        groups.setdefault((c.task, c.metric), []).append(c)
    panels = []
    for (task, metric), comps in groups.items():
        kind, unit = f.meta_for(meta, task, metric)
        m = meta.get((task, metric)) or {}
        margin = _display(m.get("margin", comps[0].margin), kind, unit)
        pts = [
            (c, _display(c.delta, kind, unit), _display(c.ci_low, kind, unit),
             _display(c.ci_high, kind, unit))
            for c in comps
        ]  # fmt: skip
        extra: list[float | None] = [margin, -margin] if margin else []
        lo, hi = _range([v for _, d, a, b in pts for v in (d, a, b)] + extra)
        x0, x1 = LABEL_W, W - PAD
        rows = []
        for i, (c, d, a, b) in enumerate(pts):
            y = 18 + i * ROW_H + ROW_H / 2
            rows.append(
                {
                    "label": c.variant,
                    "y": y,
                    "x": None if d is None else _scale(d, lo, hi, x0, x1),
                    "x_lo": None if a is None else _scale(a, lo, hi, x0, x1),
                    "x_hi": None if b is None else _scale(b, lo, hi, x0, x1),
                    "verdict": c.verdict,
                    "title": f"{c.variant}: "
                    + f.fmt_delta_ci(c.delta, c.ci_low, c.ci_high, kind, unit)
                    + f" ({c.verdict})",
                }
            )
        height = 18 + len(rows) * ROW_H + 26
        panels.append(
            {
                "task": task,
                "metric": str(m.get("label") or metric),
                "probe": kinds.get(task) == "probe",
                "direction": {True: "higher is better", False: "lower is better"}.get(
                    m.get("higher_is_better", True), "no better direction"
                ),
                "unit": "Δ " + (f.delta_suffix(kind, unit).strip() or "units"),
                "width": W,
                "height": height,
                "plot_x0": x0,
                "plot_x1": x1,
                "axis_y": height - 22,
                "zero": _scale(0.0, lo, hi, x0, x1),
                "band": None
                if not margin
                else (_scale(-margin, lo, hi, x0, x1), _scale(margin, lo, hi, x0, x1)),
                "ticks": [
                    {"x": _scale(t, lo, hi, x0, x1), "label": _tick_label(t, kind, unit)}
                    for t in _nice_ticks(lo, hi)
                ],
                "rows": rows,
            }
        )
    panels.sort(key=lambda p: not p["probe"])
    return panels


HIST_W, HIST_H, BINS = 300, 120, 24


def _quantile(xs: list[float], q: float) -> float:
    i = min(len(xs) - 1, max(0, int(round(q * (len(xs) - 1)))))
    return xs[i]


_LIKELIHOOD_WORDS = ("perplexity", "ppl", "kl", "bpb", "nll", "logprob", "loss")


def _likelihood_type(
    metric: str, meta: Mapping[tuple[str, str], Mapping[str, Any]], task: str
) -> bool:
    """Perplexity-type metrics (a ratio delta, or a likelihood measure by name): the ones
    whose per-example spread the aggregate hides. Text metrics are left to the tables."""
    kind, _ = f.meta_for(meta, task, metric)
    return kind == "ratio" or any(w in metric.lower() for w in _LIKELIHOOD_WORDS)


def histograms(
    results: Mapping[str, Any],
    meta: Mapping[tuple[str, str], Mapping[str, Any]],
    variants: list[str],
    base: str,
) -> list[Row]:
    """Distributions of per-example change for perplexity-type metrics (not 0/1 scores)."""
    per: dict[tuple[str, str, str], list[float]] = {}
    binary: dict[tuple[str, str], bool] = {}
    for s in results.get("samples") or []:
        task = str(s.get("task", ""))
        scores = s.get("scores") or {}
        bs = scores.get(base) or {}
        for v in variants:
            for m, value in (scores.get(v) or {}).items():
                if not f.is_missing(value):
                    binary[(task, m)] = binary.get((task, m), True) and value in (0, 1)
                b = bs.get(m)
                if v == base or f.is_missing(value) or f.is_missing(b):
                    continue
                kind, _ = f.meta_for(meta, task, m)
                if kind == "ratio":
                    if b == 0:
                        continue
                    d = (value / b - 1) * 100
                else:
                    d = value - b
                per.setdefault((task, m, v), []).append(d)
    out = []
    for (task, m, v), ds in per.items():
        if binary.get((task, m), True) or len(ds) < 2 or not _likelihood_type(m, meta, task):
            continue
        kind, unit = f.meta_for(meta, task, m)
        xs = sorted(ds)
        lo, hi = _quantile(xs, 0.01), _quantile(xs, 0.99)
        lo, hi = min(lo, 0.0), max(hi, 0.0)
        if hi == lo:
            hi = lo + 1
        width = (hi - lo) / BINS
        counts = [0] * BINS
        for d in xs:
            counts[min(BINS - 1, max(0, int((d - lo) / width)))] += 1
        top = max(counts)
        x0, x1, y0, y1 = 30, HIST_W - 8, 12, HIST_H - 22
        bw = (x1 - x0) / BINS
        label = str((meta.get((task, m)) or {}).get("label") or m)
        med = _quantile(xs, 0.5)
        suffix = "%" if kind == "ratio" else ""
        out.append(
            {
                "task": task,
                "metric": label,
                "variant": v,
                "width": HIST_W,
                "height": HIST_H,
                "n": len(xs),
                "median": f"{med:+.1f}%" if kind == "ratio" else f.fmt_num(med, signed=True),
                "what": "per-example change vs base, %" if kind == "ratio" else "per-example Δ",
                "worse": sum(
                    1
                    for d in xs
                    if (meta.get((task, m)) or {}).get("higher_is_better", True) is not None
                    and (d < 0) == bool((meta.get((task, m)) or {}).get("higher_is_better", True))
                    and d != 0
                ),
                "bars": [
                    {
                        "x": round(x0 + i * bw + 0.5, 2),
                        "w": round(max(bw - 1, 0.5), 2),
                        "y": round(y1 - (c / top) * (y1 - y0), 2),
                        "h": round((c / top) * (y1 - y0), 2),
                        "title": f"{lo + i * width:+.3g}{suffix} … {lo + (i + 1) * width:+.3g}"
                        f"{suffix}: {c}",
                    }
                    for i, c in enumerate(counts)
                    if c
                ],
                "zero": _scale(0.0, lo, hi, x0, x1),
                "axis_y": y1,
                "x0": x0,
                "x1": x1,
                "lo": f"{lo:+.3g}{suffix}",
                "hi": f"{hi:+.3g}{suffix}",
                "clipped": sum(1 for d in xs if d < lo or d > hi),
                "unit": unit,
            }
        )
    return out


def sweep(
    doc: Results, meta: Mapping[tuple[str, str], Mapping[str, Any]], kinds: dict, base: str
) -> Row | None:
    """The rank-sweep trade-off: task gain (first golden metric) vs each probe's change."""
    sw = doc.sweep
    if sw is None or not sw.points:
        return None
    comps = {(c.variant, c.task, c.metric): c for c in _against_base(doc, base)}
    golden = [k for k in meta if kinds.get(k[0]) != "probe"]
    probes = [k for k in meta if kinds.get(k[0]) == "probe"]
    gain_key = golden[0] if golden else None
    points = []
    for i, p in enumerate(sw.points):
        name = p.adapter or f"point {i + 1}"
        label = ", ".join(f"{k}={v}" for k, v in p.settings.items())
        cells = []
        for key in ([gain_key] if gain_key else []) + probes:
            c = comps.get((name, *key))
            kind, unit = f.meta_for(meta, *key)
            delta = c.delta if c else None
            cells.append(
                {
                    "text": f.fmt_delta_ci(
                        delta, c.ci_low if c else None, c.ci_high if c else None, kind, unit
                    ),
                    "verdict": c.verdict if c else "",
                    "value": _display(delta, kind, unit),
                }
            )
        info = doc.forgetting.get(name)
        flagged = bool(info and info.flagged)
        points.append({"name": name, "label": label or name, "cells": cells, "flagged": flagged})
    points_typed: list[Row] = points
    columns = [
        f"{t} / {(meta.get((t, m)) or {}).get('label') or m}"
        for t, m in ([gain_key] if gain_key else []) + probes
    ]
    charts = []
    if gain_key:
        for j, key in enumerate(probes[:4], start=1):
            xy = [(p["cells"][0]["value"], p["cells"][j]["value"], p) for p in points_typed]
            xy = [(x, y, p) for x, y, p in xy if x is not None and y is not None]
            if not xy:
                continue
            xlo, xhi = _range([x for x, _, _ in xy], 0.15)
            ylo, yhi = _range([y for _, y, _ in xy], 0.15)
            cx0, cx1, cy0, cy1 = 50, 340, 14, 200
            gk, gu = f.meta_for(meta, *gain_key)
            pk, pu = f.meta_for(meta, *key)
            dots = [
                {
                    "x": _scale(x, xlo, xhi, cx0, cx1),
                    "y": _scale(y, ylo, yhi, cy1, cy0),
                    "label": p["label"],
                    "flagged": p["flagged"],
                }
                for x, y, p in xy
            ]
            charts.append(
                {
                    "title": columns[j],
                    "x_title": f"{columns[0]} (Δ{f.delta_suffix(gk, gu)})",
                    "y_title": f"Δ{f.delta_suffix(pk, pu)}",
                    "width": 360,
                    "height": 236,
                    "box": (cx0, cy0, cx1, cy1),
                    "zero_x": _scale(0.0, xlo, xhi, cx0, cx1),
                    "zero_y": _scale(0.0, ylo, yhi, cy1, cy0),
                    "xticks": [
                        {"x": _scale(t, xlo, xhi, cx0, cx1), "label": _tick_label(t, gk, gu)}
                        for t in _nice_ticks(xlo, xhi)
                    ],
                    "yticks": [
                        {"y": _scale(t, ylo, yhi, cy1, cy0), "label": _tick_label(t, pk, pu)}
                        for t in _nice_ticks(ylo, yhi)
                    ],
                    "path": " ".join(f"{d['x']},{d['y']}" for d in dots),
                    "dots": dots,
                }
            )
    return {
        "name": sw.name or "sweep",
        "parameters": list(sw.parameters),
        "columns": columns,
        "points": points,
        "charts": charts,
    }
