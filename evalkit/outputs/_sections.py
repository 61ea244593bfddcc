"""Views of the results document's optional sections: judges and their reliability, the
baseline run and comparisons against it, and key/value lists for the manifest.

Each is absent (None or empty) when the run did not write the section, so the template can
leave it out cleanly.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from evalkit.outputs import _fmt as f
from evalkit.outputs._samples import judgments_of
from evalkit.outputs.model import Results, Training

Row = dict[str, Any]

# Judge summary keys shown in their own places; anything else is listed as written.
_JUDGE_KNOWN = {"name", "task", "metric", "kind", "model", "endpoint", "template_sha256",
                "scale", "n_calls", "n_cached", "n_unscored", "error_rate", "errors_by_reason",
                "swap_consistency", "reliability"}  # fmt: skip
_REL_KNOWN = {"kappa", "weighted", "agreement", "n", "n_labels", "n_unscored", "errors",
              "confusion", "swap_consistency", "length_correlation", "min_kappa",
              "reliable"}  # fmt: skip


def _s(x: Any) -> str:
    if x is None:
        return ""
    if isinstance(x, float):
        return f.fmt_num(x)
    if isinstance(x, (list, Mapping)):
        return json.dumps(x, ensure_ascii=False)
    return str(x)


def flat_pairs(obj: Any, prefix: str = "") -> list[tuple[str, str]]:
    """A nested mapping as ("a.b", "value") pairs, for key/value tables."""
    if not isinstance(obj, Mapping):
        return [(prefix or "value", _s(obj))]
    out: list[tuple[str, str]] = []
    for k, val in obj.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        out += flat_pairs(val, key) if isinstance(val, Mapping) and val else [(key, _s(val))]
    return out


def _confusion(conf: Any) -> Row | None:
    """Human label (rows) x judge score (columns) -> count."""
    if not isinstance(conf, Mapping) or not conf:
        return None
    cols: list[str] = []
    for row in conf.values():
        for k in row or {}:
            if str(k) not in cols:
                cols.append(str(k))
    cols.sort(key=lambda c: (c == "unscored", c))
    rows = [(str(label), [_s((row or {}).get(c, "")) for c in cols]) for label, row in conf.items()]
    return {"columns": cols, "rows": rows}


def _judge_card(j: Mapping[str, Any]) -> Row:
    rel = j.get("reliability")
    rel = rel if isinstance(rel, Mapping) else None
    scale = j.get("scale")
    figures = [
        ("kind", _s(j.get("kind"))),
        ("model", _s(j.get("model")) + (f" at {_s(j['endpoint'])}" if j.get("endpoint") else "")),
        ("scale", f"{scale[0]}–{scale[1]}" if isinstance(scale, list) and len(scale) == 2 else ""),
        ("calls", _s(j.get("n_calls")) + (f" ({_s(j['n_cached'])} cached)" if j.get("n_cached")
                                           else "")),
        ("unscored", _s(j.get("n_unscored"))),
        ("error rate", f"{j['error_rate'] * 100:.1f}%" if not f.is_missing(j.get("error_rate"))
         else ""),
        ("errors by reason", ", ".join(f"{k}: {v}" for k, v in (j.get("errors_by_reason") or {})
                                       .items())),
        ("swap consistency", _s(j.get("swap_consistency"))),
        ("template sha256", _s(j.get("template_sha256"))),
    ]  # fmt: skip
    figures += [(str(k), _s(v)) for k, v in j.items() if k not in _JUDGE_KNOWN]
    reliability = None
    if rel is not None:
        kappa = "weighted κ" if rel.get("weighted") else "κ"
        reliability = {
            "reliable": rel.get("reliable"),
            "figures": [
                (f"{kappa} vs human labels", _s(rel.get("kappa"))),
                ("minimum κ (suite)", _s(rel.get("min_kappa"))),
                (
                    "exact agreement",
                    "" if f.is_missing(rel.get("agreement")) else f"{rel['agreement'] * 100:.1f}%",
                ),
                ("labelled examples", _s(rel.get("n_labels", rel.get("n")))),
                ("unscored on labels", _s(rel.get("n_unscored"))),
                ("swap consistency", _s(rel.get("swap_consistency"))),
                ("length correlation", _s(rel.get("length_correlation"))),
            ]
            + [(str(k), _s(v)) for k, v in rel.items() if k not in _REL_KNOWN],  # fmt: skip
            "errors": [_s(e) for e in rel.get("errors") or []],
            "confusion": _confusion(rel.get("confusion")),
        }
    return {
        "title": _s(j.get("name") or "judge"),
        "task": _s(j.get("task")),
        "metric": _s(j.get("metric")),
        "figures": [(k, v) for k, v in figures if v],
        "reliability": reliability,
    }


def judges(results: Mapping[str, Any]) -> Row | None:
    """Judge summaries as the judge stage wrote them, and counts from the judgments."""
    cards = [_judge_card(j) for j in results.get("judges") or [] if isinstance(j, Mapping)]
    counts: dict[tuple[str, str, str], list[Any]] = {}
    for s in results.get("samples") or []:
        for v, entry in (s.get("judgments") or {}).items():
            for j in judgments_of(entry):
                c = counts.setdefault((_s(j.get("judge")), _s(s.get("task")), _s(v)), [0, 0, []])
                c[0] += 1
                c[1] += bool(j.get("error"))
                if not f.is_missing(j.get("score")):
                    c[2].append(float(j["score"]))
    observed = [
        {"judge": judge, "task": task, "variant": v, "n": n, "errors": err,
         "mean": f.fmt_num(sum(sc) / len(sc)) if sc else f.MISSING}
        for (judge, task, v), (n, err, sc) in counts.items()
    ]  # fmt: skip
    if not cards and not observed:
        return None
    return {"cards": cards, "observed": observed}


def baseline_comparisons(
    doc: Results, meta: Mapping[tuple[str, str], Mapping[str, Any]], base: str
) -> list[Row]:
    """Comparisons against an earlier run's variants (baseline '<label>:<variant>')."""
    rows = []
    for c in doc.comparisons:
        if c.baseline == base:
            continue
        kind, unit = f.meta_for(meta, c.task, c.metric)
        rows.append(
            {
                "task": c.task,
                "metric": _s((meta.get((c.task, c.metric)) or {}).get("label") or c.metric),
                "variant": c.variant,
                "baseline": c.baseline,
                "was": f.fmt_value(c.base_value, unit),
                "now": f.fmt_value(c.value, unit),
                "delta": f.fmt_delta_ci(c.delta, c.ci_low, c.ci_high, kind, unit),
                "verdict": c.verdict,
            }
        )
    return rows


def training(t: Training | None) -> str:
    """One line on how an adapter declared with `train:` came to be."""
    if t is None:
        return ""
    parts: list[str] = [t.status]
    if t.qlora:
        parts.append("QLoRA")
    if not f.is_missing(t.final_loss):
        parts.append(f"final loss {f.fmt_num(t.final_loss)}")
    if not f.is_missing(t.seconds):
        parts.append(f.fmt_duration(t.seconds))
    if t.settings:
        parts.append(", ".join(f"{k}={_s(v)}" for k, v in t.settings.items()))
    return " · ".join(p for p in parts if p)


def engine(doc: Results) -> Row | None:
    """The served engine of a run whose engine is not hf: what answered (kind, base URL,
    the server's version), its settings, where the reference ran, and the engine_parity
    figures against transformers + peft per variant with the tolerances. None for hf runs
    (no `engine` object)."""
    e = doc.engine
    if e is None or e.kind == "hf":
        return None
    server = e.server
    if server is not None and server.version:
        version = " ".join(x for x in (server.name, server.version) if x)
        version += f" ({server.source})" if server.source else ""
    else:
        version = "not reported" + (
            f": {server.note}" if server is not None and server.note else ""
        )
    ref = e.reference
    if ref is None:
        where = ""
    elif ref.skip:
        where = "none (engine.reference: skip)"
    else:
        where = "transformers + peft on " + " ".join(_s(x) for x in (ref.device, ref.dtype) if x)
    identity = [
        ("kind", e.kind),
        ("base URL", _s(e.base_url or e.endpoint)),
        ("server", version),
        ("served models", ", ".join(f"{v} → {m}" for v, m in e.models.items())),
        ("concurrency", _s(e.concurrency)),
        ("top logprobs", _s(e.top_logprobs)),
        ("prompt logprobs read", _s(e.prompt_logprobs)),
        ("reference", where),
    ]
    parity = e.parity
    rows: list[Row] = []
    tolerances = ""
    if parity is not None:
        t = parity.tolerances
        tolerances = (
            f"mean |Δlogprob| ≤ {t.max_mean_abs:g}, max |Δlogprob| ≤ {t.max_abs:g}, top-1 "
            f"agreement ≥ {t.min_top1 * 100:g}%, on {t.texts} probe texts"
        )
        # files from before 1.1 have the verdicts in `integrity` only
        verdicts = {c.variant: c.passed for c in doc.integrity if c.check == "engine_parity"}
        for v in [x.name for x in doc.variants] or list(parity.variants):
            fig = parity.variants.get(v)
            if fig is None:
                blank = dict.fromkeys(("tokens", "mean_abs", "max_abs", "top1"), "")
                base_failed = rows and rows[0]["status"] == "failed"
                note = "the base failed first: nothing else is trusted" if base_failed else ""
                rows.append({"variant": v, "status": "not checked", **blank, "note": note})
                continue
            top1 = "" if fig.top1 is None else f"{fig.top1 * 100:.1f}%"
            notes = [f"{fig.unreadable} tokens outside the top-k"] if fig.unreadable else []
            if fig.readings:  # prompt_logprobs auto: the alignment the base settled
                notes.append(
                    "mean |Δ| read "
                    + ", ".join(f"{a}: {f.fmt_num(x)}" for a, x in fig.readings.items())
                )
            rows.append(
                {
                    "variant": v,
                    "status": {True: "passed", False: "failed", None: "not checked"}[
                        fig.passed if fig.passed is not None else verdicts.get(v)
                    ],
                    "tokens": _s(fig.tokens),
                    "mean_abs": f.fmt_num(fig.mean_abs),
                    "max_abs": f.fmt_num(fig.max_abs),
                    "top1": top1,
                    "note": "; ".join(notes),
                }
            )
    return {
        "identity": [(k, v) for k, v in identity if v],
        "unchecked": bool(ref is not None and ref.skip),
        "unchecked_reason": _s(ref.reason) if ref is not None else "",
        "tolerances": tolerances,
        "rows": rows,
    }
