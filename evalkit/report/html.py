"""report.html: one self-contained page (inline CSS and JS, no external resources).

The page is rendered by Jinja2 with autoescaping on, from a "view" built here: every
string a template prints is plain data that Jinja escapes, and numbers arrive already
formatted. Nothing from the results is ever marked safe.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from evalkit.report import _fmt as f

if TYPE_CHECKING:
    import jinja2

SAMPLE_CAP = 200  # examples rendered per task; the rest stay in results.json
TEXT_CAP = 20_000  # characters shown of one prompt, reference or output
CSP = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:"

Row = dict[str, Any]


@lru_cache(maxsize=1)
def _env() -> jinja2.Environment:
    import jinja2  # only when rendering: it is most of this package's import time

    return jinja2.Environment(
        loader=jinja2.PackageLoader("evalkit.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _s(x: Any) -> str:
    return "" if x is None else str(x)


def _clip(x: Any) -> str:
    text = _s(x)
    if len(text) <= TEXT_CAP:
        return text
    return text[:TEXT_CAP] + f"\n… [{len(text) - TEXT_CAP} more characters in results.json]"


def _task_names(results: Mapping[str, Any]) -> list[str]:
    names = [_s(t.get("name")) for t in results.get("tasks") or []]
    for m in results.get("metrics") or []:
        if _s(m.get("task")) not in names:
            names.append(_s(m.get("task")))
    return names


def _gates(results: Mapping[str, Any]) -> list[Row]:
    rows = []
    for g in results.get("gates") or []:
        severity = _s(g.get("severity") or "error")
        passed = bool(g.get("passed"))
        status = "passed" if passed else ("warned" if severity == "warning" else "failed")
        rows.append(
            {
                "name": _s(g.get("name")),
                "status": status,
                "severity": severity,
                "detail": _s(g.get("detail")),
            }
        )
    return rows


def _forgetting(results: Mapping[str, Any], meta: Mapping[tuple[str, str], Row]) -> list[Row]:
    rows = []
    for variant, info in (results.get("forgetting") or {}).items():
        probes = []
        for p in info.get("probes") or []:
            task, metric = _s(p.get("task")), _s(p.get("metric"))
            kind, unit = f.meta_for(meta, task, metric)
            probes.append(
                {
                    "task": task,
                    "metric": _s((meta.get((task, metric)) or {}).get("label") or metric),
                    "delta": f.fmt_delta(p.get("delta"), kind, unit),
                    "ci": f.fmt_ci(p.get("ci_low"), p.get("ci_high"), kind, unit),
                    "margin": f.fmt_margin(p.get("margin"), kind, unit),
                }
            )
        rows.append(
            {"variant": _s(variant), "flagged": bool(info.get("flagged")), "probes": probes}
        )
    return rows


def _integrity(results: Mapping[str, Any]) -> list[Row]:
    return [
        {
            "check": _s(c.get("check")),
            "variant": _s(c.get("variant")),
            "passed": bool(c.get("passed")),
            "value": f.fmt_num(c.get("value")),
            "tolerance": f.fmt_num(c.get("tolerance")),
            "detail": _s(c.get("detail")),
        }
        for c in results.get("integrity") or []
    ]


def _glance(results: Mapping[str, Any], base: str) -> list[Row]:
    """One row per non-base variant: verdict counts, forgetting, integrity."""
    forgetting = results.get("forgetting") or {}
    rows = []
    for v in results.get("variants") or []:
        name = _s(v.get("name"))
        if name == base:
            continue
        counts = dict.fromkeys(f.VERDICTS, 0)
        for c in results.get("comparisons") or []:
            if c.get("variant") == name and c.get("verdict") in counts:
                counts[c["verdict"]] += 1
        checks = [c for c in results.get("integrity") or [] if c.get("variant") == name]
        rows.append(
            {
                "name": name,
                "kind": _s(v.get("kind")),
                "counts": counts,
                "flagged": bool((forgetting.get(name) or {}).get("flagged")),
                "integrity": (
                    "—"
                    if not checks
                    else f"{sum(bool(c.get('passed')) for c in checks)}/{len(checks)} passed"
                ),
                "integrity_ok": all(bool(c.get("passed")) for c in checks),
            }
        )
    return rows


def _cell(
    metric: Mapping[str, Any] | None, comp: Mapping[str, Any] | None, kind: str, unit: str
) -> Row:
    m = metric or {}
    value = m.get("value") if metric else (comp or {}).get("value")
    cell: Row = {
        "value": f.fmt_value(value, unit),
        "n": _s(m.get("n") if metric else (comp or {}).get("n")),
        "unscored": int(m.get("n_unscored") or 0),
        "comp": None,
    }
    if comp is not None:
        verdict = _s(comp.get("verdict") or "inconclusive")
        details = [
            f"test: {_s(comp.get('test'))}",
            f"p = {f.fmt_p(comp.get('p_value'))}",
            f"p (adjusted) = {f.fmt_p(comp.get('p_adjusted'))}",
            f"n = {_s(comp.get('n'))}",
            f"margin {f.fmt_margin(comp.get('margin'), kind, unit)}",
            f"MDE {f.fmt_margin(comp.get('mde'), kind, unit)}",
            f"baseline {_s(comp.get('baseline'))} = {f.fmt_value(comp.get('base_value'), unit)}",
        ]
        cell["comp"] = {
            "delta": f.fmt_delta(comp.get("delta"), kind, unit),
            "ci": f.fmt_ci(comp.get("ci_low"), comp.get("ci_high"), kind, unit),
            "verdict": verdict if verdict in f.VERDICTS else "inconclusive",
            "p_adj": f.fmt_p(comp.get("p_adjusted")),
            "title": "; ".join(details),
        }
    return cell


def _matrix(
    results: Mapping[str, Any], meta: Mapping[tuple[str, str], Row], variants: list[str], base: str
) -> dict[str, list[Row]]:
    """task -> one row per metric, one cell per variant."""
    metrics = {
        (_s(m.get("task")), _s(m.get("variant")), _s(m.get("metric"))): m
        for m in results.get("metrics") or []
    }
    comps: dict[tuple[str, str, str], Mapping[str, Any]] = {}
    for c in results.get("comparisons") or []:
        key = (_s(c.get("task")), _s(c.get("variant")), _s(c.get("metric")))
        if c.get("baseline", base) == base or key not in comps:
            comps[key] = c
    out: dict[str, list[Row]] = {}
    for task, metric in meta:
        m = meta[(task, metric)]
        kind, unit = f.meta_for(meta, task, metric)
        cells = []
        for v in variants:
            comp = None if v == base else comps.get((task, v, metric))
            cells.append(_cell(metrics.get((task, v, metric)), comp, kind, unit))
        out.setdefault(task, []).append(
            {
                "name": metric,
                "label": _s(m.get("label") or metric),
                "direction": {True: "higher is better", False: "lower is better"}.get(
                    m.get("higher_is_better", True), "a change either way is a drift"
                ),
                "delta_note": "Δ as relative change"
                if kind == "ratio"
                else ("Δ in percentage points" if unit == "fraction" else "Δ in metric units"),
                "cells": cells,
            }
        )
    return out


def _samples(
    task: str,
    samples: list[Mapping[str, Any]],
    variants: list[str],
    base: str,
    meta: Mapping[tuple[str, str], Row],
) -> Row:
    """The examples rendered for a task: changed outcomes first, up to SAMPLE_CAP."""
    flagged = [(i, s, f.changed_outcome(s, base)) for i, s in enumerate(samples)]
    changed = [x for x in flagged if x[2]]
    room = max(0, SAMPLE_CAP - len(changed))
    chosen = changed[:SAMPLE_CAP] + [x for x in flagged if not x[2]][:room]
    chosen.sort(key=lambda x: x[0])
    items = []
    for _, s, is_changed in chosen:
        scores = s.get("scores") or {}
        base_scores = scores.get(base) or {}
        outputs = s.get("outputs") or {}
        cols = []
        for v in variants:
            vs = scores.get(v) or {}
            marks = []
            for metric, value in vs.items():
                cls = ""
                if v != base and f.scores_differ(value, base_scores.get(metric)):
                    hib = (meta.get((task, _s(metric))) or {}).get("higher_is_better", True)
                    other = base_scores.get(metric)
                    better = (
                        not f.is_missing(value)
                        and not f.is_missing(other)
                        and (value > other) == bool(hib)
                    )
                    cls = "" if hib is None else ("up" if better else "down")
                marks.append({"metric": _s(metric), "value": f.fmt_score(value), "cls": cls})
            out = outputs.get(v)
            cols.append(
                {"variant": v, "has_output": out is not None, "text": _clip(out), "scores": marks}
            )
        items.append(
            {
                "id": _s(s.get("id")),
                "prompt": _clip(s.get("prompt")),
                "reference": None if s.get("reference") is None else _clip(s.get("reference")),
                "changed": is_changed,
                "outputs": cols,
            }
        )
    return {
        "total": len(samples),
        "shown": len(items),
        "hidden": len(samples) - len(items),
        "changed": len(changed),
        "examples": items,
    }


def build_view(results: Mapping[str, Any]) -> Row:
    """Everything the template prints, as plain strings, booleans and lists."""
    results = f.to_jsonable(results)
    base = f.base_variant(results)
    meta = f.metric_meta(results)
    variant_rows = list(results.get("variants") or [])
    variants = [_s(v.get("name")) for v in variant_rows] or [base]
    suite = results.get("suite") or {}
    run = results.get("run") or {}
    exit_code = results.get("exit_code")
    task_decl = {_s(t.get("name")): t for t in results.get("tasks") or []}
    by_task: dict[str, list[Mapping[str, Any]]] = {}
    for s in results.get("samples") or []:
        by_task.setdefault(_s(s.get("task")), []).append(s)
    matrix = _matrix(results, meta, variants, base)
    tasks = []
    for i, name in enumerate(_task_names(results)):
        t = task_decl.get(name) or {}
        tasks.append(
            {
                "anchor": f"task-{i}",
                "name": name,
                "kind": _s(t.get("kind") or "golden"),
                "description": _s(t.get("description")),
                "n": _s(t.get("n")),
                "rows": matrix.get(name, []),
                "samples": _samples(name, by_task[name], variants, base, meta)
                if by_task.get(name)
                else None,
            }
        )
    gates = _gates(results)
    forgetting = _forgetting(results, meta)
    integrity = _integrity(results)
    raw_err = results.get("error")
    err: Mapping[str, Any] = raw_err if isinstance(raw_err, Mapping) else {}
    return {
        "suite": {k: _s(suite.get(k)) for k in ("name", "path", "sha256", "text")},
        "base": {k: _s((results.get("base") or {}).get(k)) for k in ("model", "fingerprint")},
        "base_variant": base,
        "evalkit_version": _s(results.get("evalkit_version")),
        "run": {
            "started_at": _s(run.get("started_at")),
            "finished_at": _s(run.get("finished_at")),
            "duration": f.fmt_duration(run.get("duration_s")),
            "seed": _s(run.get("seed")),
            "limit": "none" if run.get("limit") is None else _s(run.get("limit")),
            "smoke": bool(run.get("smoke")),
            "device": _s(run.get("device")),
            "output_dir": _s(run.get("output_dir")),
        },
        "versions": [(_s(k), _s(v)) for k, v in (run.get("versions") or {}).items()],
        "overall": f.overall(exit_code),
        "exit_code": _s(exit_code),
        "exit_meaning": f.exit_meaning(exit_code),
        "error_message": _s(err.get("message")),
        "gates": gates,
        "gates_failed": sum(g["status"] == "failed" for g in gates),
        "gates_warned": sum(g["status"] == "warned" for g in gates),
        "forgetting": forgetting,
        "flagged": [r["variant"] for r in forgetting if r["flagged"]],
        "integrity": integrity,
        "integrity_failed": sum(not c["passed"] for c in integrity),
        "glance": _glance(results, base),
        "warnings": [_s(w) for w in results.get("warnings") or []],
        "variants": [
            {k: _s(v.get(k)) for k in ("name", "kind", "adapter", "path", "fingerprint")}
            for v in variant_rows
        ],
        "variant_names": variants,
        "tasks": tasks,
        "sample_cap": SAMPLE_CAP,
        "has_samples": any(t["samples"] for t in tasks),
    }


def render_html(results: Mapping[str, Any]) -> str:
    """report.html text."""
    return _env().get_template("report.html.j2").render(v=build_view(results))
