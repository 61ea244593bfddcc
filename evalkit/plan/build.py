"""Suite -> Plan: read the data, render the prompts, check every reference, and resolve
every setting the later stages read (statistics, gates, integrity, judges), still before
any model is loaded. Nothing after this stage reads the suite."""

from __future__ import annotations

import dataclasses
import difflib

from evalkit.errors import DataError, SuiteError
from evalkit.plan.datasets import check_rows, load_rows
from evalkit.plan.probes import BUILTIN_PROBES, build_kind_probe, builtin_probes
from evalkit.plan.prompts import prompt_environment, template_columns
from evalkit.plan.types import (
    Example,
    GateSpec,
    IntegritySettings,
    JudgeProvider,
    JudgeRef,
    JudgeSettings,
    Plan,
    StatsSettings,
    TaskPlan,
)
from evalkit.scoring.metrics import golden_metric, metric_def, metric_kinds
from evalkit.scoring.text import compile_regex
from evalkit.suite.config import GateConfig, SuiteConfig, TaskConfig
from evalkit.suite.loader import Suite
from evalkit.suite.yaml_lines import Loc


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
            missing = template_columns(env, source) - columns
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
    try:  # per-row types of the id and template columns, over all rows (evalkit.plan.datasets)
        used = set().union(*(template_columns(env, t) for t in templates.values() if t))
        check_rows(rows, data_path, id_column=task.id, columns=used)
    except DataError as exc:
        raise suite.error(loc + ("data", "path"), exc.message, hint=exc.hint) from None
    kinds = metric_kinds(golden=True)
    for j, m in enumerate(task.metrics):  # user regexes compile for RE2 (linear time) now
        if m.type not in kinds:
            close = difflib.get_close_matches(m.type, kinds, n=1)
            raise suite.error(
                loc + ("metrics", j, "type"),
                f"unknown metric type '{m.type}'"
                + (f"; did you mean '{close[0]}'?" if close else ""),
                hint=f"Metric types: {', '.join(kinds)}.",
            )
        if m.type == "regex" and m.value:
            try:
                compile_regex(m.value)
            except ValueError as exc:
                raise suite.error(loc + ("metrics", j, "value"), str(exc)) from None
    needs_ref = [m for m in task.metrics if metric_def(m.type).needs_reference]
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
            Example(
                id=ex_id,
                prompt=rendered["prompt"],
                reference=rendered.get("reference"),
                row=tuple(row.items()),
            )
        )
    metrics = [
        golden_metric(m.type, m.label, m.margin, value=m.value, field=m.field) for m in task.metrics
    ]
    judges: list[JudgeRef] = []
    if task.judges:  # judge templates are checked here, before any model or judge call
        from evalkit.plan.judges import judge_metric_specs

        judge_specs, judges = judge_metric_specs(suite, task, loc, columns)
        metrics += judge_specs
    return TaskPlan(
        task.name,
        "golden",
        task.description or "",
        examples,
        metrics,
        system=task.system,
        max_new_tokens=task.generation.max_new_tokens,
        stop=tuple(task.generation.stop),
        judges=tuple(judges),
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
        if not isinstance(t, TaskConfig):  # a probe kind (evalkit/plan/probes/kinds.py)
            probes.append(build_kind_probe(suite, t, ("probes", "extra", i), limit))
            continue
        extra = build_golden_task(suite, t, ("probes", "extra", i), limit)
        probes.append(dataclasses.replace(extra, kind="probe"))
    stats = StatsSettings(
        seed=cfg.settings.seed if seed is None else seed,
        confidence=cfg.settings.confidence,
        resamples=cfg.settings.bootstrap_resamples,
    )
    plan = Plan(
        chosen,
        tasks + probes,
        limit,
        stats.seed,
        stats=stats,
        integrity=_integrity(cfg),
        judge=_judge(cfg),
        root=suite.root,
    )
    return dataclasses.replace(plan, gates=_gates(suite, plan))


def _integrity(cfg: SuiteConfig) -> IntegritySettings:
    i = cfg.settings.integrity
    return IntegritySettings(
        base_model=cfg.base.model,
        dtype=cfg.base.dtype,
        load_in_4bit=cfg.base.load_in_4bit,
        adapter_min_effect=i.adapter_min_effect,
        merge_kl_tolerance=i.merge_kl_tolerance,
        merge_min_agreement=i.merge_min_agreement,
        on_failure=i.on_failure,
    )


def _judge(cfg: SuiteConfig) -> JudgeSettings | None:
    if cfg.judge is None:
        return None
    return JudgeSettings(JudgeProvider(**cfg.judge.provider.model_dump()), cfg.judge.min_kappa)


def gate_spec(gate: GateConfig) -> GateSpec:
    """A suite gate as a plan value."""
    return GateSpec(
        gate.label,
        gate.variant,
        gate.require,
        gate.task,
        gate.metric,
        gate.value,
        gate.severity,
        gate.proof,
    )


def _gates(suite: Suite, plan: Plan) -> tuple[GateSpec, ...]:
    """The suite's gates as plan values, each reference checked against the plan."""
    out = []
    for i, gate in enumerate(suite.config.gates):
        out.append(gate_spec(gate))
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
    return tuple(out)
