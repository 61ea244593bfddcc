"""Shared helpers for the renderers: JSON cleaning, number formatting, lookups.

Units: a metric declared ``"unit": "fraction"`` (accuracy, pass rate, win rate) is shown
as a percentage, and its "difference" deltas as percentage points; every other declared unit
(perplexity, bits_per_byte, nats_per_token, words, score, number) is a plain number.
"ratio" deltas (value / base - 1) are shown as a relative change in percent. Units come
from the metric registry through results.json; only results written before units were
recorded lack one, and for those a difference metric is read as a fraction when every value
recorded for it lies in [0, 1].
"""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

MISSING = "—"

VERDICTS = ("improved", "regressed", "equivalent", "inconclusive")


def to_jsonable(obj: Any) -> Any:
    """A copy of ``obj`` that ``json.dumps(allow_nan=False)`` accepts.

    NaN and ±inf become None; tuples and sets become lists; Paths and dates become
    strings; numpy scalars (anything with ``.item()``) become Python numbers. Mapping
    keys become strings.
    """
    if obj is None or isinstance(obj, (bool, str, int)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, (set, frozenset)):
        return [to_jsonable(v) for v in sorted(obj, key=repr)]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (_dt.datetime, _dt.date)):
        return obj.isoformat()
    item = getattr(obj, "item", None)
    if callable(item):  # numpy scalar or 0-d array
        return to_jsonable(item())
    tolist = getattr(obj, "tolist", None)
    if callable(tolist):  # numpy array
        return to_jsonable(tolist())
    raise TypeError(f"results contain a value that is not JSON data: {type(obj).__name__}")


def is_missing(x: Any) -> bool:
    """None, NaN, ±inf and anything that is not a number."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return True
    return not math.isfinite(x)


def _clean_zero(v: float, digits: int) -> float:
    """Avoid printing "-0.0" for a value that rounds to zero."""
    return 0.0 if round(v, digits) == 0 else v


def fmt_num(x: Any, signed: bool = False) -> str:
    """A plain number with precision that suits its size: 0.934, 12.35, 1234.5, 12,345."""
    if is_missing(x):
        return MISSING
    sign = "+" if signed else ""
    if isinstance(x, int):
        return f"{x:{sign},d}"
    a = abs(x)
    if a >= 10_000:
        digits = 0
    elif a >= 100:
        digits = 1
    elif a >= 1 or a == 0:
        digits = 2
    elif a >= 0.001:
        digits = 3
    else:
        return f"{x:{sign}.2e}"
    return f"{_clean_zero(x, digits):{sign},.{digits}f}"


def fmt_score(x: Any) -> str:
    """A per-example score: 1 and 0 for binary scores, a short number otherwise."""
    if is_missing(x):
        return MISSING
    if float(x).is_integer() and abs(x) < 1e6:
        return str(int(x))
    return fmt_num(x)


def fmt_value(x: Any, unit: str) -> str:
    """A metric value: 93.0% for a fraction, a plain number otherwise."""
    if is_missing(x):
        return MISSING
    if unit == "fraction":
        return f"{_clean_zero(x * 100, 1):.1f}%"
    return fmt_num(x)


def _delta_core(x: Any, delta_kind: str, unit: str) -> str:
    if is_missing(x):
        return MISSING
    if delta_kind == "ratio" or unit == "fraction":
        return f"{_clean_zero(x * 100, 1):+.1f}"
    return fmt_num(x, signed=True)


def delta_suffix(delta_kind: str, unit: str) -> str:
    if delta_kind == "ratio":
        return "%"
    if unit == "fraction":
        return " pp"
    return ""


def fmt_delta(x: Any, delta_kind: str, unit: str) -> str:
    """+93.0 pp (fraction difference), +12.3% (ratio), +0.41 (plain difference)."""
    core = _delta_core(x, delta_kind, unit)
    return core if core == MISSING else core + delta_suffix(delta_kind, unit)


def fmt_ci(lo: Any, hi: Any, delta_kind: str, unit: str) -> str:
    """The 95% interval in the delta's units, without the unit suffix: [+86.0, +98.0]."""
    if is_missing(lo) and is_missing(hi):
        return ""
    return f"[{_delta_core(lo, delta_kind, unit)}, {_delta_core(hi, delta_kind, unit)}]"


def fmt_delta_ci(x: Any, lo: Any, hi: Any, delta_kind: str, unit: str) -> str:
    ci = fmt_ci(lo, hi, delta_kind, unit)
    delta = fmt_delta(x, delta_kind, unit)
    return f"{delta} {ci}" if ci else delta


def fmt_margin(x: Any, delta_kind: str, unit: str) -> str:
    """An equivalence margin: ±5.0 pp, ±5.0%, ±0.05."""
    if is_missing(x):
        return MISSING
    if delta_kind == "ratio" or unit == "fraction":
        return f"±{abs(x) * 100:.1f}{delta_suffix(delta_kind, unit)}"
    return f"±{fmt_num(abs(x))}"


def fmt_p(x: Any) -> str:
    if is_missing(x):
        return MISSING
    if x < 0.001:
        return "<0.001"
    return f"{x:.3f}"


def fmt_duration(x: Any) -> str:
    """412.3 -> "6m 52s"."""
    if is_missing(x):
        return MISSING
    s = int(round(x))
    h, rest = divmod(s, 3600)
    m, sec = divmod(rest, 60)
    if h:
        return f"{h}h {m:02d}m {sec:02d}s"
    if m:
        return f"{m}m {sec:02d}s"
    return f"{x:.1f}s"


def overall(exit_code: Any) -> str:
    """PASS for exit code 0, FAIL for 1 (a gate failed), ERROR for anything else."""
    if exit_code == 0:
        return "PASS"
    if exit_code == 1:
        return "FAIL"
    return "ERROR"


def exit_meaning(exit_code: Any) -> str:
    return {
        0: "all error-severity gates passed",
        1: "one or more error-severity gates failed",
        2: "bad input (suite, dataset or argument)",
        3: "infrastructure failure (model load, judge, integrity)",
    }.get(exit_code, f"unexpected exit code {exit_code!r}")


def base_variant(results: Mapping[str, Any]) -> str:
    """The name of the base variant: the first of kind "base", else "base"."""
    for v in results.get("variants") or []:
        if v.get("kind") == "base":
            return str(v.get("name", "base"))
    return "base"


def metric_meta(results: Mapping[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """(task, metric) -> the metric's declaration, with "unit" as it is shown: "fraction"
    or "number"."""
    observed: dict[tuple[str, str], list[Any]] = {}
    for m in results.get("metrics") or []:
        observed.setdefault((m.get("task", ""), m.get("metric", "")), []).append(m.get("value"))
    for c in results.get("comparisons") or []:
        key = (c.get("task", ""), c.get("metric", ""))
        observed.setdefault(key, []).extend([c.get("value"), c.get("base_value")])

    out: dict[tuple[str, str], dict[str, Any]] = {}
    for t in results.get("tasks") or []:
        for m in t.get("metrics") or []:
            key = (t.get("name", ""), m.get("name", ""))
            meta = dict(m)
            meta.setdefault("label", m.get("name", ""))
            meta.setdefault("delta_kind", "difference")
            declared = m.get("unit")
            if isinstance(declared, str) and declared:
                meta["unit"] = display_unit(declared)
            else:  # a results.json from before units were recorded
                meta["unit"] = _infer_unit(meta["delta_kind"], observed.get(key, []))
            out[key] = meta
    for key, values in observed.items():  # metrics that no task declares
        if key not in out:
            out[key] = {
                "name": key[1],
                "label": key[1],
                "delta_kind": "difference",
                "unit": _infer_unit("difference", values),
            }
    return out


def display_unit(unit: str) -> str:
    """How a declared unit is shown: "fraction" as a percentage, any other as a number."""
    return "fraction" if unit == "fraction" else "number"


def _infer_unit(delta_kind: str, values: Iterable[Any]) -> str:
    if delta_kind == "ratio":
        return "number"
    finite = [v for v in values if not is_missing(v)]
    if finite and all(0.0 <= v <= 1.0 for v in finite):
        return "fraction"
    return "number"


def meta_for(
    meta: Mapping[tuple[str, str], Mapping[str, Any]], task: str, metric: str
) -> tuple[str, str]:
    """(delta_kind, unit) for a task's metric, with safe defaults."""
    m = meta.get((task, metric)) or {}
    return str(m.get("delta_kind", "difference")), str(m.get("unit", "number"))


def scores_differ(a: Any, b: Any) -> bool:
    """Whether two per-example scores differ (missing equals missing)."""
    if is_missing(a) or is_missing(b):
        return is_missing(a) != is_missing(b)
    return abs(float(a) - float(b)) > 1e-12


def changed_outcome(sample: Mapping[str, Any], base: str) -> bool:
    """Whether some variant's score on this example differs from the base's."""
    scores = sample.get("scores") or {}
    base_scores = scores.get(base) or {}
    for variant, vs in scores.items():
        if variant == base or not isinstance(vs, Mapping):
            continue
        for metric in set(vs) | set(base_scores):
            if scores_differ(vs.get(metric), base_scores.get(metric)):
                return True
    return False
