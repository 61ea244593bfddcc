"""Suite -> Plan: read the data, render the prompts, and check every reference, still
before any model is loaded."""

from __future__ import annotations

import dataclasses
from typing import Any

from evalkit.errors import DataError, SuiteError
from evalkit.plan.datasets import load_rows
from evalkit.plan.probes import BUILTIN_PROBES, builtin_probes
from evalkit.plan.types import Example, Plan, TaskPlan
from evalkit.scoring.metrics import golden_metric
from evalkit.suite.config import TaskConfig
from evalkit.suite.loader import Suite
from evalkit.suite.yaml_lines import Loc


def prompt_environment() -> Any:
    """The Jinja environment suite templates render in (training scripts use it too, so a
    prompt is the same text in training and evaluation)."""
    from jinja2 import StrictUndefined
    from jinja2.sandbox import SandboxedEnvironment

    # Sandboxed: prompt templates come from suite files; StrictUndefined: a misspelt
    # column is an error, not an empty string in every prompt.
    return SandboxedEnvironment(undefined=StrictUndefined, keep_trailing_newline=False)


def _template_columns(env: Any, source: str) -> set[str]:
    from jinja2 import meta

    return set(meta.find_undeclared_variables(env.parse(source)))


def build_golden_task(suite: Suite, task: TaskConfig, loc: Loc, limit: int | None) -> TaskPlan:
    """Load a golden task's data and render its prompts and references."""
    from jinja2 import TemplateSyntaxError

    env = prompt_environment()
    data_path = suite.resolve(task.data.path)
    try:
        rows = load_rows(data_path, split=task.data.split)
    except DataError as exc:
        raise suite.error(loc + ("data", "path"), exc.message, hint=exc.hint) from None
    if not rows:
        raise suite.error(loc + ("data", "path"), f"{data_path} has no rows")
    columns = set().union(*(r.keys() for r in rows[:50]))
    templates = {"prompt": task.prompt, "reference": task.reference, "system": task.system}
    compiled = {}
    for key, source in templates.items():
        if source is None:
            continue
        try:
            missing = _template_columns(env, source) - columns
            compiled[key] = env.from_string(source)
        except TemplateSyntaxError as exc:
            raise suite.error(
                loc + (key,), f"{key} template has a syntax error: {exc.message}"
            ) from None
        if missing:
            raise suite.error(
                loc + (key,),
                f"{key} template uses {', '.join(sorted(missing))}, which {data_path.name} "
                f"does not have",
                hint=f"Columns in {data_path.name}: {', '.join(sorted(columns))}.",
            )
    if task.id and task.id not in columns:
        raise suite.error(
            loc + ("id",),
            f"id column '{task.id}' is not in {data_path.name}",
            hint=f"Columns: {', '.join(sorted(columns))}.",
        )
    needs_ref = [
        m
        for m in task.metrics
        if m.type in ("exact_match", "json_field_match", "reference_perplexity")
    ]
    if needs_ref and task.reference is None:
        raise suite.error(
            loc + ("metrics",), f"metric {needs_ref[0].type} needs the task's `reference:` template"
        )
    if limit is not None:
        rows = rows[:limit]
    examples = []
    seen: set[str] = set()
    for i, row in enumerate(rows):
        ex_id = str(row[task.id]) if task.id else f"{task.name}-{i:05d}"
        if ex_id in seen:
            raise DataError(f"{data_path}: duplicate example id '{ex_id}' in column '{task.id}'")
        seen.add(ex_id)
        try:
            rendered = {k: t.render(**row) for k, t in compiled.items()}
        except Exception as exc:  # a template error on one row names that row
            raise suite.error(
                loc + ("prompt",), f"rendering row {i + 1} of {data_path.name} failed: {exc}"
            ) from None
        examples.append(
            Example(id=ex_id, prompt=rendered["prompt"], reference=rendered.get("reference"))
        )
    metrics = [
        golden_metric(m.type, m.label, m.margin, value=m.value, field=m.field) for m in task.metrics
    ]
    if task.judges:  # judge templates are checked here, before any model or judge call
        from evalkit.scoring.judges.plan_check import judge_metric_specs

        metrics += judge_metric_specs(suite, task, loc, columns)
    return TaskPlan(
        task.name,
        "golden",
        task.description or "",
        examples,
        metrics,
        system=task.system,
        max_new_tokens=task.generation.max_new_tokens,
        stop=tuple(task.generation.stop),
    )


def build_plan(
    suite: Suite,
    *,
    limit: int | None = None,
    variants: list[str] | None = None,
    seed: int | None = None,
) -> Plan:
    """Everything the run will evaluate. Raises SuiteError/DataError (exit 2)."""
    cfg = suite.config
    all_variants = cfg.all_variants()
    if variants:
        unknown = [v for v in variants if v not in all_variants]
        if unknown:
            raise SuiteError(
                f"--variants names {', '.join(unknown)}, not in this suite",
                file=suite.path,
                hint=f"Variants: {', '.join(all_variants)}.",
            )
        chosen = ["base"] + [v for v in variants if v != "base"]
    else:
        chosen = all_variants
    tasks = [build_golden_task(suite, t, ("tasks", i), limit) for i, t in enumerate(cfg.tasks)]
    which: list[str] = (
        list(BUILTIN_PROBES) if cfg.probes.builtin is True else list(cfg.probes.builtin or [])
    )
    for name in cfg.probes.margins:
        if name not in which:
            raise suite.error(
                ("probes", "margins", name),
                f"no probe named '{name}'",
                hint=f"Probes: {', '.join(which)}.",
            )
    probes = builtin_probes(which, dict(cfg.probes.margins))
    if limit is not None:
        probes = [dataclasses.replace(p, examples=p.examples[:limit]) for p in probes]
    for i, t in enumerate(cfg.probes.extra):
        extra = build_golden_task(suite, t, ("probes", "extra", i), limit)
        probes.append(dataclasses.replace(extra, kind="probe"))
    plan = Plan(chosen, tasks + probes, limit, cfg.settings.seed if seed is None else seed)
    _check_gates(suite, plan)
    return plan


def _check_gates(suite: Suite, plan: Plan) -> None:
    for i, gate in enumerate(suite.config.gates):
        if gate.task is None:
            continue
        task = plan.task(gate.task)
        if task is None:
            raise suite.error(
                ("gates", i, "task"),
                f"gate names task '{gate.task}', which the suite does not have",
                hint=f"Tasks: {', '.join(t.name for t in plan.tasks)}.",
            )
        if task.metric(gate.metric or "") is None:
            raise suite.error(
                ("gates", i, "metric"),
                f"task '{gate.task}' has no metric '{gate.metric}'",
                hint=f"Its metrics: {', '.join(m.name for m in task.metrics)}.",
            )
