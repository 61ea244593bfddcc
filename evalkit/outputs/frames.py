"""A finished run as pandas DataFrames, for analysis in a notebook.

`load_run(run_dir)` reads a run directory (results.json, scores.json, records.parquet or
records.jsonl) and gives its figures as typed tables:

* ``samples``: one row per example × variant × metric, with the example's prompt,
  reference and the variant's output, its per-example value (a perplexity for
  perplexity metrics, 0/1 for accuracy) and the base's value on the same example;
* ``metrics``: one row per task × metric × variant, the aggregates;
* ``comparisons``: one row per comparison: delta, interval, p-values, mde, verdict;
* ``gates``: one row per gate;
* ``records``: one row per example × variant, what the engine returned.

results.json is read as plain JSON, so this module depends on the file's shape only, not
on the code that wrote it. pandas and pyarrow are imported inside the functions, so
`import evalkit` stays light.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import secrets
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evalkit.errors import InputError

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

RESULTS_JSON = "results.json"
SCORES_JSON = "scores.json"
RECORDS_JSONL = "records.jsonl"
RECORDS_PARQUET = "records.parquet"

_SAMPLE_COLUMNS = {
    "task": "category",
    "task_kind": "category",
    "example_id": "string",
    "variant": "category",
    "metric": "category",
    "value": "float64",
    "weight": "float64",
    "base_value": "float64",
    "output": "string",
    "reference": "string",
    "prompt": "string",
}
_METRIC_COLUMNS = {
    "task": "category",
    "task_kind": "category",
    "variant": "category",
    "metric": "category",
    "value": "float64",
    "n": "int64",
    "n_unscored": "int64",
    "higher_is_better": "boolean",
    "margin": "float64",
    "delta_kind": "category",
}
_COMPARISON_COLUMNS = {
    "task": "category",
    "task_kind": "category",
    "variant": "category",
    "baseline": "category",
    "metric": "category",
    "base_value": "float64",
    "value": "float64",
    "delta": "float64",
    "ci_low": "float64",
    "ci_high": "float64",
    "p_value": "float64",
    "p_adjusted": "float64",
    "test": "category",
    "verdict": "category",
    "margin": "float64",
    "delta_kind": "category",
    "n": "int64",
    "mde": "float64",
}
_GATE_COLUMNS = {"name": "string", "passed": "bool", "severity": "category", "detail": "string"}


@dataclass(frozen=True)
class Run:
    """One finished run directory. Each table is built on first access."""

    path: Path
    results: dict[str, Any]

    @cached_property
    def variants(self) -> list[str]:
        return [str(v["name"]) for v in self.results.get("variants") or []]

    @cached_property
    def samples(self) -> pd.DataFrame:
        """One row per example × variant × metric (every task, documents included)."""
        return self._guard(lambda: _samples_frame(self.results, _read_scores(self.path)))

    @cached_property
    def metrics(self) -> pd.DataFrame:
        """One row per task × metric × variant: the aggregate value and its counts."""
        return self._guard(lambda: _metrics_frame(self.results))

    @cached_property
    def comparisons(self) -> pd.DataFrame:
        """One row per comparison (with the base, or with a baseline run)."""
        return self._guard(lambda: _comparisons_frame(self.results))

    @cached_property
    def gates(self) -> pd.DataFrame:
        """One row per gate: passed, severity, detail."""
        return self._guard(lambda: _typed(list(self.results.get("gates") or []), _GATE_COLUMNS, []))

    @cached_property
    def records(self) -> pd.DataFrame:
        """One row per example × variant: outputs, log-likelihoods, token counts."""
        parquet = self.path / RECORDS_PARQUET
        if parquet.is_file():
            import pandas as pd

            return pd.read_parquet(parquet)
        jsonl = self.path / RECORDS_JSONL
        if not jsonl.is_file():
            raise InputError(f"{self.path}: no {RECORDS_PARQUET} or {RECORDS_JSONL} here")
        rows = []
        with jsonl.open(encoding="utf-8") as f:
            for i, line in enumerate(f, 1):
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise InputError(f"{jsonl}:{i}: not a JSON record: {e}") from None
        return records_table(rows).to_pandas()

    def _guard(self, build: typing.Callable[[], pd.DataFrame]) -> pd.DataFrame:
        try:
            return build()
        except (KeyError, TypeError, ValueError) as e:
            raise InputError(
                f"{self.path / RESULTS_JSON}: not a results file this evalkit can read "
                f"({type(e).__name__}: {e})",
                hint="Re-run the suite with this evalkit version.",
            ) from None


def load_run(run_dir: Path | str) -> Run:
    """Open a run directory (the output of `evalkit run`) for analysis.

    Raises InputError (exit code 2 in the CLI) when the directory has no readable
    results.json.
    """
    path = Path(run_dir)
    if path.is_file() and path.name == RESULTS_JSON:
        path = path.parent
    results_path = path / RESULTS_JSON
    if not results_path.is_file():
        raise InputError(
            f"{results_path}: no results.json here",
            hint="Pass the output directory of an `evalkit run` (reports/<suite>-<time>/).",
        )
    try:
        data = json.loads(results_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"{results_path}: cannot read results: {e}") from None
    if not isinstance(data, dict):
        raise InputError(f"{results_path}: results must be a JSON object")
    return Run(path, data)


def _read_scores(run_dir: Path) -> dict[str, Any] | None:
    path = run_dir / SCORES_JSON
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"{path}: cannot read scores: {e}") from None
    return doc if isinstance(doc, dict) else None


def _task_info(results: Mapping[str, Any]) -> tuple[dict[str, str], dict[tuple[str, str], dict]]:
    """task -> kind, and (task, metric) -> the metric's entry in results.json."""
    kinds: dict[str, str] = {}
    metrics: dict[tuple[str, str], dict] = {}
    for t in results.get("tasks") or []:
        kinds[t["name"]] = t["kind"]
        for m in t.get("metrics") or []:
            metrics[(t["name"], m["name"])] = m
    return kinds, metrics


def _num(x: Any) -> float:
    return math.nan if x is None else float(x)


def _per_example(value: Any, weight: Any, transform: str) -> float:
    """The per-example figure results.json shows: transform(value / weight)."""
    if value is None or not weight:
        return math.nan
    mean = float(value) / float(weight)
    return math.exp(mean) if transform == "exp" else mean


def _samples_frame(results: Mapping[str, Any], scores: Mapping[str, Any] | None) -> pd.DataFrame:
    kinds, _ = _task_info(results)
    texts = {(s["task"], s["id"]): s for s in results.get("samples") or []}
    rows: list[dict[str, Any]] = []
    covered: set[str] = set()
    # scores.json holds every example of every task (documents too) with its weight
    for task, doc in ((scores or {}).get("tasks") or {}).items():
        covered.add(task)
        for metric, entry in (doc.get("metrics") or {}).items():
            transform = (entry.get("spec") or {}).get("transform", "identity")
            for variant, vw in (entry.get("variants") or {}).items():
                for ex_id, v, w in zip(doc["ids"], vw["values"], vw["weights"], strict=True):
                    rows.append(
                        {
                            "task": task,
                            "example_id": str(ex_id),
                            "variant": variant,
                            "metric": metric,
                            "value": _per_example(v, w, transform),
                            "weight": _num(w),
                        }
                    )
    # a run without scores.json: the per-example values results.json shows
    for s in results.get("samples") or []:
        if s["task"] in covered:
            continue
        for variant, per_metric in (s.get("scores") or {}).items():
            for metric, value in per_metric.items():
                rows.append(
                    {
                        "task": s["task"],
                        "example_id": s["id"],
                        "variant": variant,
                        "metric": metric,
                        "value": _num(value),
                        "weight": math.nan,
                    }
                )
    base = {
        (r["task"], r["metric"], r["example_id"]): r["value"]
        for r in rows
        if r["variant"] == "base"
    }
    for r in rows:
        r["task_kind"] = kinds.get(r["task"])
        r["base_value"] = base.get((r["task"], r["metric"], r["example_id"]), math.nan)
        text = texts.get((r["task"], r["example_id"]))
        r["output"] = (text.get("outputs") or {}).get(r["variant"]) if text else None
        r["reference"] = text.get("reference") if text else None
        r["prompt"] = text.get("prompt") if text else None
    variants = [str(v["name"]) for v in results.get("variants") or []]
    return _typed(rows, _SAMPLE_COLUMNS, variants)


def _metrics_frame(results: Mapping[str, Any]) -> pd.DataFrame:
    kinds, specs = _task_info(results)
    rows = []
    for r in results.get("metrics") or []:
        spec = specs.get((r["task"], r["metric"]), {})
        rows.append(
            {
                **r,
                "value": _num(r.get("value")),
                "task_kind": kinds.get(r["task"]),
                "higher_is_better": spec.get("higher_is_better"),
                "margin": _num(spec.get("margin")),
                "delta_kind": spec.get("delta_kind"),
            }
        )
    variants = [str(v["name"]) for v in results.get("variants") or []]
    return _typed(rows, _METRIC_COLUMNS, variants)


def _comparisons_frame(results: Mapping[str, Any]) -> pd.DataFrame:
    kinds, _ = _task_info(results)
    floats = [c for c, t in _COMPARISON_COLUMNS.items() if t == "float64"]
    rows = [
        {
            **r,
            **{c: _num(r.get(c)) for c in floats},  # null in JSON: NaN or an infinite bound
            "task_kind": kinds.get(r["task"]),
        }
        for r in results.get("comparisons") or []
    ]
    variants = [str(v["name"]) for v in results.get("variants") or []]
    return _typed(rows, _COMPARISON_COLUMNS, variants)


def _typed(rows: list[dict[str, Any]], columns: Mapping[str, str], variants: list[str]) -> Any:
    """A DataFrame with the known columns first, in their dtypes (others kept as read);
    `variant` is a categorical in the run's variant order."""
    import pandas as pd

    extra = [k for r in rows for k in r if k not in columns]
    order = list(columns) + list(dict.fromkeys(extra))
    df = pd.DataFrame({c: [r.get(c) for r in rows] for c in order}, columns=order)
    for col, dtype in columns.items():
        if col == "variant" and variants:
            seen = [v for v in dict.fromkeys(df[col]) if v not in variants]
            df[col] = pd.Categorical(df[col], categories=variants + seen)
        elif dtype == "string":
            df[col] = df[col].astype(pd.StringDtype())
        else:
            df[col] = df[col].astype(dtype)
    return df


# ---- records.parquet ---------------------------------------------------------------


def _arrow_type(hint: Any) -> pa.DataType | None:
    """The Arrow type of a Record field's annotation (None: let Arrow infer it)."""
    import pyarrow as pa

    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return _arrow_type(args[0]) if len(args) == 1 else None
    if typing.get_origin(hint) is list and len(args) == 1:
        inner = _arrow_type(args[0])
        return pa.list_(inner) if inner is not None else None
    return {str: pa.string(), float: pa.float64(), int: pa.int64(), bool: pa.bool_()}.get(hint)


def records_table(rows: Iterable[Mapping[str, Any]]) -> pa.Table:
    """Records (as dicts) -> an Arrow table, typed by the Record dataclass's fields so a
    column that is empty in one run has the same type as in any other."""
    import pyarrow as pa

    from evalkit.engines.records import Record

    rows = list(rows)
    hints = typing.get_type_hints(Record)
    names = [f.name for f in dataclasses.fields(Record)]
    names += list(dict.fromkeys(k for r in rows for k in r if k not in hints))
    arrays = [
        pa.array([r.get(name) for r in rows], type=_arrow_type(hints.get(name))) for name in names
    ]
    return pa.Table.from_arrays(arrays, names=names)


def write_records_parquet(path: Path, records: Iterable[Any]) -> Path:
    """Write Record objects to ``path`` as Parquet, through a temp file renamed into
    place, so an interrupted write never leaves a half file."""
    import pyarrow.parquet as pq

    table = records_table(dataclasses.asdict(r) for r in records)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
