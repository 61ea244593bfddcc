"""Load a suite file into a validated `Suite`: typed config plus the facts that need the
file system (paths resolved against the suite's folder, adapters and data that exist).

Everything here runs before any model is loaded, so a typo costs a second, not a model
load, and every error names the file and line.
"""

from __future__ import annotations

import difflib
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from evalkit.errors import InputError, SuiteError
from evalkit.suite.config import SuiteConfig
from evalkit.suite.sweep import expand_sweeps
from evalkit.suite.yaml_lines import Loc, format_loc, line_for, load_yaml_with_lines
from evalkit.weights import check_adapter_dir, check_local_model


@dataclass(frozen=True)
class Suite:
    """A validated suite and where it came from."""

    config: SuiteConfig
    path: Path
    text: str
    lines: dict[Loc, int]

    @property
    def root(self) -> Path:
        return self.path.parent

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()

    def resolve(self, relative: str) -> Path:
        """A path from the suite, relative to the suite file's folder."""
        p = Path(relative).expanduser()
        return p if p.is_absolute() else self.root / p

    def error(self, loc: Loc, message: str, hint: str | None = None) -> SuiteError:
        return SuiteError(message, file=self.path, line=line_for(self.lines, loc), hint=hint)


def _all_field_names() -> set[str]:
    from pydantic import BaseModel

    import evalkit.suite.config as cfg

    names: set[str] = set()
    for obj in vars(cfg).values():
        if isinstance(obj, type) and issubclass(obj, BaseModel) and obj is not BaseModel:
            names.update(obj.model_fields)
    return names


def _explain(err: dict[str, Any]) -> tuple[str, str | None]:
    """A pydantic error as a sentence and a hint."""
    loc = format_loc(tuple(err["loc"]))
    kind = err["type"]
    if kind == "extra_forbidden":
        key = str(err["loc"][-1])
        close = difflib.get_close_matches(key, sorted(_all_field_names()), n=1)
        hint = f"Did you mean '{close[0]}'?" if close else "Remove it, or check the key's spelling."
        return f"unknown key '{key}' at {loc}", hint
    if kind == "missing":
        return f"missing required key '{err['loc'][-1]}' at {loc}", "Add it to the suite."
    if kind == "literal_error":
        expected = err.get("ctx", {}).get("expected", "")
        return f"{loc}: got {err.get('input')!r}, expected one of {expected}", None
    msg = str(err["msg"]).removeprefix("Value error, ")
    return f"{loc}: {msg}", None


def load_suite(path: Path | str) -> Suite:
    """Read, type-check and cross-check a suite file. Raises SuiteError (exit 2)."""
    path = Path(path)
    data, lines = load_yaml_with_lines(path)
    if not isinstance(data, dict):
        raise SuiteError(
            "a suite is a YAML mapping with at least `name`, `base` and `tasks`",
            file=path,
            line=1,
            hint="See suites/legal.yaml for a complete example.",
        )
    try:
        config = SuiteConfig.model_validate(data)
    except ValidationError as exc:
        # A typo shows up twice: an unknown key and a missing one. The unknown key is the
        # one to report, since its message can suggest the intended spelling.
        errors = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")
        first = errors[0]
        message, hint = _explain(dict(first))
        # A missing key beside an unknown one is the same typo, not another problem.
        typo_parents = {tuple(e["loc"][:-1]) for e in errors if e["type"] == "extra_forbidden"}
        more = sum(
            1
            for e in errors[1:]
            if not (e["type"] == "missing" and tuple(e["loc"][:-1]) in typo_parents)
        )
        if more:
            message += f" (and {more} more problem{'s' if more > 1 else ''})"
        raise SuiteError(
            message, file=path, line=line_for(lines, tuple(first["loc"])), hint=hint
        ) from None
    config = _expand_sweeps(config, path, lines)
    suite = Suite(config, path, path.read_text(encoding="utf-8"), lines)
    _check_references(suite)
    return suite


def _expand_sweeps(config: SuiteConfig, path: Path, lines: dict[Loc, int]) -> SuiteConfig:
    """Each swept adapter becomes one ordinary adapter per point, so everything after the
    loader sees plain adapters."""
    try:
        adapters = expand_sweeps(config.adapters)
    except ValueError as exc:
        where = ("adapters",)
        raise SuiteError(
            f"{format_loc(where)}: {exc}", file=path, line=line_for(lines, where)
        ) from None
    return config.model_copy(update={"adapters": adapters})


def _check_references(suite: Suite) -> None:
    """Cross-field checks: names that must refer to declared things, files that must exist."""
    cfg = suite.config
    for name, adapter in cfg.adapters.items():
        if adapter.path is None:
            continue  # a `train:` adapter: evalkit.training.declared resolves it at run time
        adir = suite.resolve(adapter.path)
        if not (adir / "adapter_config.json").exists():
            raise suite.error(
                ("adapters", name, "path"),
                f"adapter '{name}': {adir} has no adapter_config.json",
                hint="Point `path:` at a peft adapter directory (adapter_config.json + "
                "adapter_model.safetensors).",
            )
        try:  # complete safetensors, typed config: evalkit.weights (no model load)
            check_adapter_dir(adir)
        except InputError as exc:
            raise suite.error(("adapters", name, "path"), exc.message, hint=exc.hint) from None
    try:
        check_local_model(cfg.base.model, suite.root)
    except InputError as exc:
        raise suite.error(("base", "model"), exc.message, hint=exc.hint) from None
    variants = cfg.all_variants()
    for i, variant in enumerate(variants):
        _check_variant(suite, variant, ("variants", i))
    if "base" not in variants:
        raise suite.error(
            ("variants",), "`variants` must include base: every comparison is made against it"
        )
    task_names = [t.name for t in cfg.tasks] + [t.name for t in cfg.probes.extra]
    dupes = sorted({n for n in task_names if task_names.count(n) > 1})
    if dupes:
        raise suite.error(("tasks",), f"two tasks are named '{dupes[0]}'; names must be unique")
    for i, gate in enumerate(cfg.gates):
        _check_variant(suite, gate.variant, ("gates", i, "variant"))
        if gate.variant not in variants:
            raise suite.error(
                ("gates", i, "variant"),
                f"gate on '{gate.variant}', which is not among the variants "
                f"evaluated ({', '.join(variants)})",
            )
        if gate.variant == "base" and gate.require not in ABSOLUTE_GATES:
            raise suite.error(
                ("gates", i, "variant"),
                "the base is what others are compared with; gate an adapter "
                "or a merged variant, or use at_least / at_most / max_judge_error_rate",
            )


# Gates that hold a variant to a fixed threshold, not to the base: they apply to the base too.
ABSOLUTE_GATES = ("at_least", "at_most", "max_judge_error_rate")


def _check_variant(suite: Suite, variant: str, loc: Loc) -> None:
    adapters = suite.config.adapters
    name = variant.removeprefix("merged:")
    if variant != "base" and name not in adapters:
        known = ", ".join(["base", *adapters, *(f"merged:{a}" for a in adapters)])
        close = difflib.get_close_matches(variant, known.split(", "), n=1)
        raise suite.error(
            loc,
            f"unknown variant '{variant}'",
            hint=(f"Did you mean '{close[0]}'? " if close else "") + f"Known variants: {known}.",
        )
