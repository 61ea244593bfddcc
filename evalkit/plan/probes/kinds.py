"""Probe kinds: how a declared probe (`kind: multiple_choice`, `open_answer`, `prose`,
`open_ended`; the models are in evalkit/suite/probes_config.py) becomes a probe task.

A kind is its metrics (each a key the suite's `margins:` names, a metric kind from the
metric registry, and a default margin) and a function from the declaration to examples.
One module per kind registers it here; the built-in probes are declared probe files built
by the same kinds (see `general`), so there is one implementation of each.

Data errors name the data file and its row (a JSONL file: its line) and point at the
suite key that maps the column, so they read like a task's (exit 2).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from evalkit.errors import DataError
from evalkit.plan.datasets import load_rows
from evalkit.plan.types import Example, TaskPlan
from evalkit.scoring.metrics import MetricSpec, metric_def
from evalkit.suite.yaml_lines import Loc

Row = dict[str, Any]


class ProbeSource(Protocol):
    """Where a declaration's relative paths resolve and how its errors are raised: the
    user's suite (`evalkit.suite.loader.Suite`), or the package for the built-in files."""

    def resolve(self, relative: str) -> Path: ...

    def error(self, loc: Loc, message: str, hint: str | None = None) -> Exception: ...


@dataclass(frozen=True)
class KindMetric:
    """One metric a kind measures: `key` is its name in the task and under `margins:`."""

    key: str
    metric: str  # the metric kind in evalkit.scoring.metrics
    default_margin: float

    def spec(self, margin: float, name: str | None = None) -> MetricSpec:
        return metric_def(self.metric).spec(name or self.key, margin)


# (declaration, source, loc) -> examples, every row checked
Examples = Callable[[Any, ProbeSource, Loc], list[Example]]


@dataclass(frozen=True)
class ProbeKind:
    name: str
    metrics: tuple[KindMetric, ...]
    examples: Examples

    def metric(self, key: str) -> KindMetric:
        found = next((m for m in self.metrics if m.key == key), None)
        if found is None:
            raise ValueError(f"probe kind {self.name} has no metric {key}")
        return found

    def metric_specs(self, cfg: Any) -> list[MetricSpec]:
        """Every metric of the kind, each with the declaration's margin for it."""
        return [m.spec(cfg.margin_for(m.key, m.default_margin)) for m in self.metrics]

    def task(
        self,
        cfg: Any,
        source: ProbeSource,
        loc: Loc,
        *,
        metrics: Sequence[MetricSpec] | None = None,
        limit: int | None = None,
    ) -> TaskPlan:
        """The probe task of a declaration: every row checked (before `limit` cuts them),
        its metrics the kind's own unless `metrics` chooses (the built-in probes do)."""
        examples = self.examples(cfg, source, loc)
        if limit is not None:
            examples = examples[:limit]
        generation = getattr(cfg, "generation", None)
        return TaskPlan(
            cfg.name,
            "probe",
            cfg.description or "",
            examples,
            list(self.metric_specs(cfg) if metrics is None else metrics),
            system=getattr(cfg, "system", None),
            max_new_tokens=generation.max_new_tokens if generation else 128,
            stop=tuple(generation.stop) if generation else (),
        )


_KINDS: dict[str, ProbeKind] = {}


def register_kind(kind: ProbeKind) -> ProbeKind:
    if kind.name in _KINDS and _KINDS[kind.name] != kind:
        raise ValueError(f"probe kind {kind.name} is registered twice")
    _KINDS[kind.name] = kind
    return kind


def probe_kind(name: str) -> ProbeKind:
    """A registered kind (every module of evalkit.plan.probes registers on import)."""
    if name not in _KINDS:
        raise ValueError(f"unknown probe kind {name}")
    return _KINDS[name]


def kind_names() -> list[str]:
    return list(_KINDS)


def build_kind_probe(suite: ProbeSource, cfg: Any, loc: Loc, limit: int | None) -> TaskPlan:
    """A `probes.extra` entry with a `kind:` as a probe task (the plan builder's hook)."""
    return probe_kind(cfg.kind).task(cfg, suite, loc, limit=limit)


# -- helpers the kinds share ------------------------------------------------------------


def where(rows: Sequence[Row], i: int) -> str:
    """How a message names row i: its file line when the reader kept it (JSONL)."""
    locate = getattr(rows, "where", None)
    if callable(locate):
        return str(locate(i))
    lines = getattr(rows, "lines", None)
    return f"line {lines[i]}" if lines else f"row {i + 1}"


def describe(value: Any) -> str:
    """A cell's type in words, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return f"the number {value!r}"
    if isinstance(value, str):
        return f"the text {value[:40]!r}"
    return "a list" if isinstance(value, list | tuple) else "an object"


def as_text(value: Any) -> str | None:
    """A cell as text (numbers too: an option may be 42), or None for anything else."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return str(value)
    return None


def read_rows(cfg: Any, source: ProbeSource, loc: Loc) -> tuple[Path, list[Row]]:
    """The declaration's data rows (at least one), errors pointing at `data.path`."""
    path = source.resolve(cfg.data.path)
    try:
        rows = load_rows(path, split=cfg.data.split)
    except DataError as exc:
        raise source.error(loc + ("data", "path"), exc.message, hint=exc.hint) from None
    if not rows:
        raise source.error(loc + ("data", "path"), f"{path} has no rows")
    return path, rows


def require_column(
    source: ProbeSource, loc: Loc, key: str, column: str, path: Path, rows: Sequence[Row]
) -> None:
    """Every row has `column` (which the declaration's `key:` names)."""
    for i, row in enumerate(rows):
        if column not in row:
            columns = ", ".join(sorted(row))
            raise source.error(
                loc + (key,),
                f"{path}: {where(rows, i)} has no column '{column}' (named by `{key}:`)",
                hint=f"Columns there: {columns}. Fix `{key}:` or that row.",
            )


def example_ids(
    cfg: Any, source: ProbeSource, loc: Loc, path: Path, rows: Sequence[Row]
) -> list[str]:
    """Each row's id: its `id:` column (text or an integer, unique), else `<name>-00000`."""
    if cfg.id is None:
        return [f"{cfg.name}-{i:05d}" for i in range(len(rows))]
    require_column(source, loc, "id", cfg.id, path, rows)
    ids: list[str] = []
    seen: dict[str, int] = {}
    for i, row in enumerate(rows):
        value = row[cfg.id]
        if isinstance(value, bool) or not isinstance(value, str | int) or not str(value).strip():
            raise source.error(
                loc + ("id",),
                f"{path}: {where(rows, i)}: id column '{cfg.id}' holds {describe(value)}; "
                "ids are non-empty text or integers",
            )
        key = str(value)
        if key in seen:
            raise source.error(
                loc + ("id",),
                f"{path}: {where(rows, i)}: duplicate id '{key}' (first at "
                f"{where(rows, seen[key])})",
                hint="Ids pair a variant's answer with the base's; each must be unique.",
            )
        seen[key] = i
        ids.append(key)
    return ids


def groups(
    cfg: Any, source: ProbeSource, loc: Loc, path: Path, rows: Sequence[Row]
) -> list[str | None]:
    """Each row's group (the `group:` column, text or a number), else None."""
    if cfg.group is None:
        return [None] * len(rows)
    require_column(source, loc, "group", cfg.group, path, rows)
    out: list[str | None] = []
    for i, row in enumerate(rows):
        text = as_text(row[cfg.group])
        if text is None:
            raise source.error(
                loc + ("group",),
                f"{path}: {where(rows, i)}: group column '{cfg.group}' holds "
                f"{describe(row[cfg.group])}; a group is text",
            )
        out.append(text)
    return out


def render(
    cfg: Any, source: ProbeSource, loc: Loc, key: str, path: Path, rows: Sequence[Row]
) -> list[str]:
    """The declaration's template `key` (e.g. `prompt`) rendered for every row, checked
    against the columns first (a misspelt column is an error, not an empty prompt)."""
    from jinja2 import TemplateSyntaxError

    from evalkit.plan.prompts import prompt_environment, template_columns

    env = prompt_environment()
    source_text = getattr(cfg, key)
    try:
        used = template_columns(env, source_text)
        template = env.from_string(source_text)
    except TemplateSyntaxError as exc:
        raise source.error(
            loc + (key,), f"{key} template has a syntax error: {exc.message}"
        ) from None
    for column in sorted(used):
        for i, row in enumerate(rows):
            if column not in row:
                raise source.error(
                    loc + (key,),
                    f"{key} template uses {column}, which {path}: {where(rows, i)} does not have",
                    hint=f"Columns there: {', '.join(sorted(row))}.",
                )
    out = []
    for i, row in enumerate(rows):
        try:
            out.append(template.render(**row))
        except Exception as exc:  # a template error on one row names that row
            raise source.error(
                loc + (key,), f"rendering {path}: {where(rows, i)} failed: {exc}"
            ) from None
    return out
