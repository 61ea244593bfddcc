"""report.html: one self-contained page (inline CSS, JS and SVG; no external resources).

The page is rendered by Jinja2 with autoescaping on, from a "view" built here: every
string a template prints is plain data that Jinja escapes, and numbers arrive already
formatted. Nothing from the results is ever marked safe: the only markup passed through
unescaped is this package's own CSS and JS files.

The verdict, the result matrix and the charts are server-rendered HTML and SVG, so they
read without script. The per-example tables are data (``_samples``) rendered page by page
by ``templates/_report.js`` with ``textContent`` only. The Content-Security-Policy allows
exactly the page's own inline script and style, by their sha256 hashes, and nothing else:
no network, no other script, no inline event handlers.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from functools import lru_cache
from importlib import resources
from typing import TYPE_CHECKING, Any

from evalkit.outputs import _charts, _samples, _sections
from evalkit.outputs import _fmt as f
from evalkit.outputs.model import Comparison, MetricValue, Results, as_results

if TYPE_CHECKING:
    import jinja2

Row = dict[str, Any]

# What a run that ended before it had figures (exit code and error only) renders from:
# every list of figures empty. Built without validation: it is not a document.
_NO_FIGURES = Results.model_construct(
    variants=[], tasks=[], metrics=[], comparisons=[], forgetting={}, integrity=[], gates=[]
)


@lru_cache(maxsize=1)
def _env() -> jinja2.Environment:
    import jinja2  # only when rendering: it is most of this package's import time

    return jinja2.Environment(
        loader=jinja2.PackageLoader("evalkit.outputs", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


@lru_cache(maxsize=4)
def _asset(name: str) -> str:
    text = resources.files("evalkit.outputs").joinpath("templates", name).read_text("utf-8")
    closing = "</script" if name.endswith(".js") else "</style"
    for bad in (closing, "<!--"):  # would end the inline element early, or confuse its end
        if bad in text.lower():
            raise ValueError(f"templates/{name} must not contain {bad!r}")
    return text


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def csp(script: str, style: str) -> str:
    """The page's policy: its own inline script and style (by hash) and nothing else."""
    return (
        f"default-src 'none'; script-src {_sha256(script)}; style-src {_sha256(style)}; "
        "img-src data:; base-uri 'none'; form-action 'none'"
    )


def _s(x: Any) -> str:
    return "" if x is None else str(x)


def _task_names(doc: Results) -> list[str]:
    names = [t.name for t in doc.tasks]
    for m in doc.metrics:
        if m.task not in names:
            names.append(m.task)
    return names


def _gates(doc: Results) -> list[Row]:
    rows = []
    for g in doc.gates:
        status = "passed" if g.passed else ("warned" if g.severity == "warning" else "failed")
        if g.inconclusive:  # a gate on a judge that failed its calibration
            status = "inconclusive"
        rows.append({"name": g.name, "status": status, "severity": g.severity, "detail": g.detail})
    return rows


def _forgetting(doc: Results, meta: Mapping[tuple[str, str], Row]) -> list[Row]:
    rows = []
    for variant, info in doc.forgetting.items():
        probes = []
        for p in info.probes:
            kind, unit = f.meta_for(meta, p.task, p.metric)
            probes.append(
                {
                    "task": p.task,
                    "metric": _s((meta.get((p.task, p.metric)) or {}).get("label") or p.metric),
                    "delta": f.fmt_delta(p.delta, kind, unit),
                    "ci": f.fmt_ci(p.ci_low, p.ci_high, kind, unit),
                    "margin": f.fmt_margin(p.margin, kind, unit),
                }
            )
        rows.append({"variant": variant, "flagged": info.flagged, "probes": probes})
    return rows


_DIAGNOSIS_WORDS = {
    "knowledge_loss": "knowledge loss",
    "format_drift": "format drift",
    "unclear": "format or knowledge (unclear)",
}


def _diagnoses(doc: Results) -> list[Row]:
    """One line per variant diagnosed with knowledge loss, format drift or unclear."""
    return [
        {
            "variant": v.name,
            "kind": v.diagnosis.kind,
            "word": _DIAGNOSIS_WORDS[v.diagnosis.kind],
            "summary": v.diagnosis.summary,
        }
        for v in doc.variants
        if v.diagnosis is not None and v.diagnosis.kind in _DIAGNOSIS_WORDS
    ]


def _integrity(doc: Results) -> list[Row]:
    return [
        {
            "check": c.check,
            "variant": c.variant,
            "passed": c.passed,
            "status": "skipped" if c.skipped else ("passed" if c.passed else "failed"),
            "value": f.fmt_num(c.value),
            "tolerance": f.fmt_num(c.tolerance),
            "detail": c.detail,
        }
        for c in doc.integrity
    ]


def _glance(doc: Results, base: str) -> list[Row]:
    """One row per non-base variant: verdict counts, forgetting, integrity."""
    rows = []
    for v in doc.variants:
        if v.name == base:
            continue
        counts = dict.fromkeys(f.VERDICTS, 0)
        for c in doc.comparisons:
            if c.baseline != base:  # against an earlier run: shown on its own
                continue
            if c.variant == v.name and c.verdict in counts:
                counts[c.verdict] += 1
        checks = [c for c in doc.integrity if c.variant == v.name and not c.skipped]
        skipped = sum(c.skipped for c in doc.integrity if c.variant == v.name)
        info = doc.forgetting.get(v.name)
        rows.append(
            {
                "name": v.name,
                "kind": v.kind,
                "counts": counts,
                "flagged": bool(info and info.flagged),
                "integrity": (
                    ("—" if not checks else f"{sum(c.passed for c in checks)}/{len(checks)} passed")
                    + (f", {skipped} skipped" if skipped else "")
                ),
                "integrity_ok": all(c.passed for c in checks),
            }
        )
    return rows


def _why(reasons: Mapping[str, int] | None) -> str:
    """Why a cell's examples are unscored: the reason, or each with its count."""
    if not reasons:
        return ""
    if len(reasons) == 1:
        return next(iter(reasons))
    return "; ".join(f"{why} ({n})" for why, n in reasons.items())


def _cell(metric: MetricValue | None, comp: Comparison | None, kind: str, unit: str) -> Row:
    # a variant with a comparison but no aggregate row (a baseline-only figure) shows the
    # comparison's value and n
    source = metric or comp
    cell: Row = {
        "value": f.fmt_value(source.value if source else None, unit),
        "n": _s(source.n if source else None),
        "unscored": metric.n_unscored if metric else 0,
        "unscored_why": _why(metric.unscored_reasons if metric else None),
        "comp": None,
    }
    if comp is not None:
        details = [
            f"test: {_s(comp.test)}",
            f"p = {f.fmt_p(comp.p_value)}",
            f"p (adjusted) = {f.fmt_p(comp.p_adjusted)}",
            f"n = {comp.n}",
            f"margin {f.fmt_margin(comp.margin, kind, unit)}",
            f"MDE {f.fmt_margin(comp.mde, kind, unit)}",
            f"baseline {comp.baseline} = {f.fmt_value(comp.base_value, unit)}",
        ]
        cell["comp"] = {
            "delta": f.fmt_delta(comp.delta, kind, unit),
            "ci": f.fmt_ci(comp.ci_low, comp.ci_high, kind, unit),
            "verdict": comp.verdict,
            "p_adj": f.fmt_p(comp.p_adjusted),
            "title": "; ".join(details),
        }
    return cell


def _matrix(
    doc: Results, meta: Mapping[tuple[str, str], Row], variants: list[str], base: str
) -> dict[str, list[Row]]:
    """task -> one row per metric, one cell per variant."""
    metrics = {(m.task, m.variant, m.metric): m for m in doc.metrics}
    comps: dict[tuple[str, str, str], Comparison] = {}
    for c in doc.comparisons:
        key = (c.task, c.variant, c.metric)
        if c.baseline == base or key not in comps:
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


def build_view(
    results: Mapping[str, Any], *, clean: bool = False, model: Results | None = None
) -> Row:
    """Everything the template prints, as plain strings, numbers, booleans and lists.

    ``clean``: the caller already passed ``results`` through ``to_jsonable``. ``model``:
    the same document, already validated (saves validating it again).
    """
    results = results if clean else f.to_jsonable(results)
    # the document's figures through the model; a run that ended early has none
    doc = model or as_results(results) or _NO_FIGURES
    base = f.base_variant(results)
    meta = f.metric_meta(results)
    variants = [v.name for v in doc.variants] or [base]
    suite = results.get("suite") or {}
    run = results.get("run") or {}
    exit_code = results.get("exit_code")
    task_decl = {_s(t.get("name")): t for t in results.get("tasks") or []}
    kinds = {name: _s(t.get("kind") or "golden") for name, t in task_decl.items()}
    by_task: dict[str, list[Mapping[str, Any]]] = {}
    for s in results.get("samples") or []:
        by_task.setdefault(_s(s.get("task")), []).append(s)
    matrix = _matrix(doc, meta, variants, base)
    tasks: list[Row] = []
    payloads: list[Row] = []
    for i, name in enumerate(_task_names(doc)):
        t = task_decl.get(name) or {}
        sam = None
        if by_task.get(name):
            sam = _samples.task_payload(name, by_task[name], variants, base, meta)
            sam["index"] = len(payloads)
            payloads.append(sam.pop("payload"))
        tasks.append(
            {
                "anchor": f"task-{i}",
                "name": name,
                "kind": kinds.get(name, "golden"),
                "description": _s(t.get("description")),
                "n": _s(t.get("n")),
                "rows": matrix.get(name, []),
                "samples": sam,
            }
        )
    no_samples = [
        t["name"] for t in tasks if t["samples"] is None and t["rows"] and t["kind"] == "probe"
    ]
    gates = _gates(doc)
    forgetting = _forgetting(doc, meta)
    integrity = _integrity(doc)
    raw_err = results.get("error")
    err: Mapping[str, Any] = raw_err if isinstance(raw_err, Mapping) else {}
    encoding, page_data = _samples.encode({"base": base, "variants": variants, "tasks": payloads})
    return {
        "suite": {k: _s(suite.get(k)) for k in ("name", "path", "sha256", "text")},
        "base": {k: _s((results.get("base") or {}).get(k)) for k in ("model", "fingerprint")},
        "base_variant": base,
        # the interval level the comparisons were computed at (95 for files without stats)
        "ci_level": f"{round(doc.confidence * 100, 1):g}",
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
        "settings": _sections.flat_pairs(run["cache"], "cache") if run.get("cache") else [],
        "fingerprints": _sections.flat_pairs(results.get("fingerprints") or {}),
        "baseline": _sections.flat_pairs(results["baseline"]) if results.get("baseline") else [],
        "baseline_rows": _sections.baseline_comparisons(doc, meta, base),
        "overall": f.overall(exit_code),
        "exit_code": _s(exit_code),
        "exit_meaning": f.exit_meaning(exit_code),
        "error_message": _s(err.get("message")),
        "gates": gates,
        "gates_failed": sum(g["status"] == "failed" for g in gates),
        "gates_warned": sum(g["status"] in ("warned", "inconclusive") for g in gates),
        "forgetting": forgetting,
        "flagged": [r["variant"] for r in forgetting if r["flagged"]],
        "diagnoses": _diagnoses(doc),
        "integrity": integrity,
        "integrity_failed": sum(c["status"] == "failed" for c in integrity),
        "integrity_skipped": sum(c["status"] == "skipped" for c in integrity),
        "engine": _sections.engine(doc),
        "glance": _glance(doc, base),
        "warnings": [_s(w) for w in results.get("warnings") or []],
        "variants": [
            {
                "name": v.name,
                "kind": v.kind,
                "adapter": _s(v.adapter),
                "path": _s(v.path),
                "fingerprint": _s(v.fingerprint),
                "training": _sections.training(v.training),
            }
            for v in doc.variants
        ],
        "variant_names": variants,
        "tasks": tasks,
        "forest": _charts.forest(doc, meta, kinds, base),
        "histograms": _charts.histograms(results, meta, variants, base),
        "no_samples": no_samples,
        "sweep": _charts.sweep(doc, meta, kinds, base),
        "judges": _sections.judges(results),
        "has_samples": bool(payloads),
        "page_data": page_data,
        "page_encoding": encoding,
    }


def render_html(
    results: Mapping[str, Any], *, clean: bool = False, model: Results | None = None
) -> str:
    """report.html text (``clean``: ``results`` already went through ``to_jsonable``;
    ``model``: the same document as the validated results model)."""
    import markupsafe

    script, style = _asset("_report.js"), _asset("_report.css")
    view = build_view(results, clean=clean, model=model)
    # JSON with no < > & left (see _samples.safe_json), or base64: nothing that is markup
    view["page_data"] = markupsafe.Markup(view["page_data"])
    return (
        _env()
        .get_template("report.html.j2")
        .render(
            v=view,
            csp=markupsafe.Markup(csp(script, style)),  # our own text: hashes, no data
            # Our own files, checked by _asset not to close their element: the only markup
            # that is not escaped. page_data is JSON escaped by _samples.safe_json.
            script=markupsafe.Markup(script),
            style=markupsafe.Markup(style),
        )
    )
