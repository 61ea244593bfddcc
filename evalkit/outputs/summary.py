"""summary.md: a short Markdown verdict for a CI job summary ($GITHUB_STEP_SUMMARY).

It holds the overall verdict, the gates, forgetting flags, integrity failures, a compact
table of the comparisons and, last, a few examples whose outcome changed. It stays under
``max_bytes`` (UTF-8): examples are dropped first, then comparison rows, and the text says
what was left out.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from typing import Any

from evalkit.outputs import _fmt as f
from evalkit.plan.types import ci_label

SAMPLES_PER_TASK = 20
SAMPLE_TEXT_CHARS = 800

_MD_SPECIAL = re.compile(r"([\\`*_\[\]|~#])")
_ICON = {"passed": "✅", "failed": "❌", "warned": "⚠️"}
_VERDICT_ICON = {"improved": "🟢", "regressed": "🔴", "equivalent": "🔵", "inconclusive": "⚪"}


def md(text: Any) -> str:
    """Text for a Markdown table cell or line: one line, HTML and Markdown escaped."""
    s = "" if text is None else str(text)
    s = html.escape(s, quote=False)
    s = _MD_SPECIAL.sub(r"\\\1", s)
    return " ".join(s.split())


def _nbytes(s: str) -> int:
    return len(s.encode("utf-8"))


def _fence(text: str) -> str:
    """A fenced code block that ``text`` cannot close early."""
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    ticks = "`" * max(3, longest + 1)
    return f"{ticks}text\n{text}\n{ticks}"


def _clip(text: str, limit: int = SAMPLE_TEXT_CHARS) -> str:
    return text if len(text) <= limit else text[:limit] + f"\n… [{len(text) - limit} chars cut]"


def _header(results: Mapping[str, Any]) -> list[str]:
    exit_code = results.get("exit_code")
    word = f.overall(exit_code)
    icon = "✅" if word == "PASS" else "❌"
    suite = (results.get("suite") or {}).get("name") or "suite"
    run = results.get("run") or {}
    variants = [v.get("name") for v in results.get("variants") or []]
    lines = [
        f"# {icon} evalkit: {word} — {md(suite)}",
        "",
        f"**Exit code {md(exit_code)}**: {f.exit_meaning(exit_code)}.  ",
        f"Base model {md((results.get('base') or {}).get('model'))} · "
        f"{len(variants)} variants · {len(results.get('tasks') or [])} tasks · "
        f"took {f.fmt_duration(run.get('duration_s'))}",
        "",
    ]
    err = results.get("error")
    if isinstance(err, Mapping) and err.get("message"):
        lines += [f"> **Error:** {md(err.get('message'))}", ""]
    if run.get("smoke"):
        lines += [
            f"> ⚠️ **Smoke run** (limit {md(run.get('limit'))} examples per task): the numbers "
            "check the pipeline; they are not evidence for a release decision.",
            "",
        ]
    ref = (results.get("engine") or {}).get("reference") or {}
    if ref.get("skip"):
        lines += [
            "> ⚠️ **Served figures not checked against a reference** (engine.reference: "
            "skip): an engine that drops or swaps an adapter would go unnoticed.",
            "",
        ]
    return lines


def _engine(results: Mapping[str, Any]) -> list[str]:
    """The served engine's parity figures against transformers + peft, per variant."""
    eng = results.get("engine") or {}
    parity = eng.get("parity") or {}
    figures = parity.get("variants") or {}
    if not figures:
        return []
    server = eng.get("server") or {}
    who = " ".join(md(x) for x in (server.get("name"), server.get("version")) if x)
    lines = [
        f"## Engine parity ({md(eng.get('kind'))}"
        + (f", {who}" if who else "")
        + ") against transformers + peft",
        "",
        "| Variant | Status | Tokens | Mean \\|Δlogprob\\| | Max \\|Δlogprob\\| | Top-1 |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for v, fig in figures.items():
        status = {True: "passed", False: "**failed**"}.get(fig.get("passed"), "")
        top1 = fig.get("top1")
        lines.append(
            f"| {md(v)} | {status} | {md(fig.get('tokens'))} | {f.fmt_num(fig.get('mean_abs'))} "
            f"| {f.fmt_num(fig.get('max_abs'))} "
            f"| {'' if f.is_missing(top1) else f'{top1 * 100:.1f}%'} |"
        )
    t = parity.get("tolerances") or {}
    if {"max_mean_abs", "max_abs", "min_top1"} <= set(t):
        lines += [
            "",
            f"Tolerances: mean ≤ {t['max_mean_abs']:g}, max ≤ {t['max_abs']:g} nats per "
            f"token, top-1 ≥ {t['min_top1'] * 100:g}%.",
        ]
    lines.append("")
    return lines


def _gates(results: Mapping[str, Any]) -> list[str]:
    gates = results.get("gates") or []
    if not gates:
        return ["## Gates", "", "_No gates configured._", ""]
    lines = ["## Gates", "", "| | Gate | Severity | Detail |", "|---|---|---|---|"]
    for g in gates:
        sev = g.get("severity") or "error"
        status = "passed" if g.get("passed") else ("warned" if sev == "warning" else "failed")
        lines.append(
            f"| {_ICON[status]} | {md(g.get('name'))} | {md(sev)} | {md(g.get('detail'))} |"
        )
    return [*lines, ""]


def _forgetting(results: Mapping[str, Any], meta: Mapping[tuple[str, str], Any]) -> list[str]:
    forgetting = results.get("forgetting") or {}
    if not forgetting:
        return []
    lines = ["## Forgetting", ""]
    for variant, info in forgetting.items():
        if not info.get("flagged"):
            lines.append(f"- ✅ {md(variant)}: no forgetting on the general probes")
            continue
        lines.append(f"- ❌ **{md(variant)}: forgetting flagged**")
        for p in info.get("probes") or []:
            task, metric = str(p.get("task", "")), str(p.get("metric", ""))
            kind, unit = f.meta_for(meta, task, metric)
            delta = f.fmt_delta_ci(p.get("delta"), p.get("ci_low"), p.get("ci_high"), kind, unit)
            margin = f.fmt_margin(p.get("margin"), kind, unit)
            lines.append(f"  - {md(task)} / {md(metric)}: {delta} (margin {margin})")
    return [*lines, ""]


def _diagnoses(results: Mapping[str, Any]) -> list[str]:
    """One line per variant diagnosed with knowledge loss, format drift or unclear."""
    lines = []
    for v in results.get("variants") or []:
        d = v.get("diagnosis") or {}
        if d.get("kind") in ("knowledge_loss", "format_drift", "unclear"):
            lines.append(f"- 🔎 {md(v.get('name'))}: {md(d.get('summary'))}")
    return ["## Format drift or knowledge loss", "", *lines, ""] if lines else []


def _integrity(results: Mapping[str, Any]) -> list[str]:
    every = results.get("integrity") or []
    skipped = [c for c in every if c.get("skipped")]
    checks = [c for c in every if not c.get("skipped")]
    failed = [c for c in checks if not c.get("passed")]
    note = (
        [f"**Integrity:** {len(skipped)} checks skipped: {md(skipped[0].get('detail'))}", ""]
        if skipped
        else []
    )
    if not checks:
        return note
    if not failed:
        return [f"**Integrity:** all {len(checks)} checks passed.", "", *note]
    lines = [
        "## Integrity failures",
        "",
        "| Check | Variant | Value | Tolerance | Detail |",
        "|---|---|---:|---:|---|",
    ]
    for c in failed:
        lines.append(
            f"| {md(c.get('check'))} | {md(c.get('variant'))} | {f.fmt_num(c.get('value'))} "
            f"| {f.fmt_num(c.get('tolerance'))} | {md(c.get('detail'))} |"
        )
    return [*lines, "", *note]


def _comparison_rows(
    results: Mapping[str, Any], meta: Mapping[tuple[str, str], Any]
) -> list[tuple[int, str]]:
    """(priority, row): regressions 0, improvements 1, the rest 2."""
    rows = []
    for c in results.get("comparisons") or []:
        task, metric = str(c.get("task", "")), str(c.get("metric", ""))
        kind, unit = f.meta_for(meta, task, metric)
        verdict = str(c.get("verdict") or "inconclusive")
        label = (meta.get((task, metric)) or {}).get("label") or metric
        priority = {"regressed": 0, "improved": 1}.get(verdict, 2)
        values = f"{f.fmt_value(c.get('base_value'), unit)} → {f.fmt_value(c.get('value'), unit)}"
        delta = f.fmt_delta_ci(c.get("delta"), c.get("ci_low"), c.get("ci_high"), kind, unit)
        # the smallest effect this comparison could detect, next to its margin: an
        # "inconclusive" with an mde above the margin is a probe too small to tell
        mde = f.fmt_margin(c.get("mde"), kind, unit).replace("±", "")
        margin = f.fmt_margin(c.get("margin"), kind, unit)
        against = str(c.get("baseline") or "base")
        variant = str(c.get("variant")) + ("" if against == "base" else f" vs {against}")
        row = (
            f"| {md(task)} | {md(label)} | {md(variant)} | {values} | {delta} "
            f"| {margin} | {mde} | {_VERDICT_ICON.get(verdict, '')} {md(verdict)} |"
        )
        rows.append((priority, row))
    return rows


def _comparisons(rows: list[tuple[int, str]], keep: int, max_bytes: int, ci: str = "95% CI") -> str:
    """The comparisons section with the ``keep`` most important rows, in their order."""
    if not rows:
        return ""
    ranked = sorted(range(len(rows)), key=lambda i: (rows[i][0], i))[:keep]
    shown = [rows[i][1] for i in sorted(ranked)]
    dropped = len(rows) - len(shown)
    note = (
        [
            f"_{dropped} of {len(rows)} comparisons not shown to stay under {max_bytes} "
            "bytes (regressions and improvements kept first); see report.html._",
            "",
        ]
        if dropped
        else []
    )
    head = [line.replace("95% CI", ci) for line in _COMP_HEAD]  # the level the run used
    return "\n".join([*head, *shown, "", *note]) + "\n"


_COMP_HEAD = [
    "## Comparisons (vs base unless a baseline run is named)",
    "",
    "| Task | Metric | Variant | Base → value | Δ [95% CI] | Margin | MDE | Verdict |",
    "|---|---|---|---:|---:|---:|---:|---|",
]


def _sample_blocks(results: Mapping[str, Any]) -> tuple[list[str], int]:
    """Changed-outcome examples as <details> blocks, and how many changed in all."""
    base = f.base_variant(results)
    blocks: list[str] = []
    per_task: dict[str, int] = {}
    total = 0
    for s in results.get("samples") or []:
        if not f.changed_outcome(s, base):
            continue
        total += 1
        task = str(s.get("task", ""))
        if per_task.get(task, 0) >= SAMPLES_PER_TASK:
            continue
        per_task[task] = per_task.get(task, 0) + 1
        scores = s.get("scores") or {}
        score_txt = "; ".join(
            f"{v}: " + ", ".join(f"{k}={f.fmt_score(val)}" for k, val in (sc or {}).items())
            for v, sc in scores.items()
        )
        parts = [
            f"<details><summary>{html.escape(task)} · {html.escape(str(s.get('id', '')))}"
            f"</summary>",
            "",
            f"Scores — {md(score_txt)}",
            "",
            "Prompt:",
            _fence(_clip(str(s.get("prompt") or ""))),
        ]
        if s.get("reference") is not None:
            parts += ["Reference:", _fence(_clip(str(s["reference"])))]
        for variant, out in (s.get("outputs") or {}).items():
            parts += [f"{md(variant)}:", _fence(_clip("" if out is None else str(out)))]
        parts += ["", "</details>", ""]
        blocks.append("\n".join(parts) + "\n")
    return blocks, total


def _truncate_bytes(text: str, max_bytes: int) -> str:
    note = "\n\n_… summary cut to stay under the size limit; see report.html._\n"
    if _nbytes(text) <= max_bytes:
        return text
    room = max(0, max_bytes - _nbytes(note))
    cut = text.encode("utf-8")[:room].decode("utf-8", errors="ignore")
    cut = cut[: cut.rfind("\n")] if "\n" in cut else cut
    out = cut + note
    return (
        out
        if _nbytes(out) <= max_bytes
        else out.encode("utf-8")[:max_bytes].decode("utf-8", errors="ignore")
    )


def render_summary(results: Mapping[str, Any], max_bytes: int = 1_000_000) -> str:
    """summary.md text, at most ``max_bytes`` bytes of UTF-8."""
    results = f.to_jsonable(results)
    meta = f.metric_meta(results)
    head = _header(results) + _gates(results) + _forgetting(results, meta) + _diagnoses(results)
    head += _integrity(results) + _engine(results)
    warnings = [f"- {md(w)}" for w in results.get("warnings") or []]
    tail = ["## Warnings", "", *warnings, ""] if warnings else []
    core = "\n".join(head) + "\n"
    after = "\n".join(tail) + ("\n" if tail else "")

    rows = _comparison_rows(results, meta)
    keep = len(rows)
    ci = ci_label(float((results.get("stats") or {}).get("confidence", 0.95)))
    comp = _comparisons(rows, keep, max_bytes, ci)
    while keep > 0 and _nbytes(core + comp + after) > max_bytes:
        keep //= 2
        comp = _comparisons(rows, keep, max_bytes, ci)

    text = core + comp + after
    blocks, changed = _sample_blocks(results)
    if blocks:
        section = ["## Examples with changed outcomes", ""]
        budget = max_bytes - _nbytes(text) - _nbytes("\n".join(section)) - 300
        used, shown = 0, 0
        for b in blocks:
            if used + _nbytes(b) > budget:
                break
            used += _nbytes(b)
            shown += 1
        if shown:
            text += "\n".join(section) + "\n" + "".join(blocks[:shown])
        if shown < changed:
            text += (
                f"\n_{changed - shown} of {changed} changed examples not shown here "
                f"(at most {SAMPLES_PER_TASK} per task, {max_bytes} bytes in all); "
                "see report.html._\n"
            )
    return _truncate_bytes(text, max_bytes)
