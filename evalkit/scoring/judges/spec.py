"""A judge spec: `judges/NAME.yaml` plus the Jinja template it names.

Specs belong to users, so every mistake is reported with the spec's file and line, and a
template that uses a variable the judge cannot supply fails at `evalkit validate`, before
any call is made.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from evalkit.errors import SuiteError
from evalkit.scoring.judges.kinds import JudgeKind, judge_kind
from evalkit.suite.yaml_lines import format_loc, line_for, load_yaml_with_lines

# What evalkit supplies to every template, beside the dataset's columns.
COMMON_VARS = {"question", "rubric", "scale_min", "scale_max", "delimiter_note"}


def kind_vars(kind: str) -> set[str]:
    """The template variables a judge kind adds: its answers and its extras."""
    k = judge_kind(kind)
    return {var for _, var in k.answer_slots} | set(k.extra_vars)


class JudgeSpecConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+$")]
    kind: str = Field(description="a judge kind: rubric, reference, pairwise, ...")
    description: str | None = None
    template: str = Field(description="the Jinja template file, relative to this spec")
    system: str | None = None
    scale: tuple[int, int] = (1, 5)
    rubric: str = ""

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, value: str) -> str:
        judge_kind(value)  # ValueError naming the kinds
        return value

    @model_validator(mode="after")
    def _scale(self) -> JudgeSpecConfig:
        error = judge_kind(self.kind).scale_error(self.scale)
        if error:
            raise ValueError(error)
        return self


@dataclass(frozen=True)
class JudgeSpec:
    """A loaded spec: its config, template text and where both came from."""

    config: JudgeSpecConfig
    path: Path
    template_path: Path
    template: str

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def kind(self) -> str:
        return self.config.kind

    @property
    def judge_kind(self) -> JudgeKind:
        """The kind's behaviour: variables, output schema, parsing, orders, calibration."""
        return judge_kind(self.config.kind)

    @property
    def scale(self) -> tuple[int, int]:
        """The range of a per-example value (a pairwise win value lies in [0, 1])."""
        return self.judge_kind.score_range(self.config.scale)

    @property
    def template_sha256(self) -> str:
        # The system text is part of the prompt, so it is part of the hash (and the cache key).
        text = (self.config.system or "") + "\x00" + self.template + "\x00" + self.config.rubric
        return hashlib.sha256(text.encode()).hexdigest()

    def allowed_vars(self, columns: set[str]) -> set[str]:
        return COMMON_VARS | kind_vars(self.kind) | columns


def load_judge_spec(path: Path) -> JudgeSpec:
    """Read and check a judge spec. Raises SuiteError naming the spec file and line."""
    data, lines = load_yaml_with_lines(path)
    if not isinstance(data, dict):
        raise SuiteError(
            "a judge spec is a YAML mapping with `name`, `kind` and `template`",
            file=path,
            line=1,
            hint="See judges/general.yaml for an example.",
        )
    try:
        config = JudgeSpecConfig.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = tuple(err["loc"])
        if err["type"] == "extra_forbidden":
            msg = f"unknown key '{loc[-1]}' in judge spec"
            hint = f"Known keys: {', '.join(JudgeSpecConfig.model_fields)}."
        elif err["type"] == "missing":
            msg, hint = f"missing required key '{loc[-1]}' in judge spec", "Add it to the spec."
        else:
            msg = f"{format_loc(loc)}: {str(err['msg']).removeprefix('Value error, ')}"
            hint = None
        raise SuiteError(msg, file=path, line=line_for(lines, loc), hint=hint) from None
    template_path = path.parent / config.template
    from evalkit.paths import FileProblem, read_regular_file

    try:
        template = read_regular_file(template_path, max_bytes=1 << 20, what="template").decode()
    except (FileProblem, UnicodeDecodeError) as exc:
        reason = exc.reason if isinstance(exc, FileProblem) else "not UTF-8 text"
        raise SuiteError(
            f"template file {template_path}: {reason}",
            file=path,
            line=line_for(lines, ("template",)),
            hint="`template:` is a path relative to the spec file.",
        ) from None
    spec = JudgeSpec(config, path, template_path, template)
    _check_syntax(spec)
    return spec


def _check_syntax(spec: JudgeSpec) -> None:
    from jinja2 import TemplateSyntaxError

    from evalkit.plan.prompts import prompt_environment

    try:
        ast = prompt_environment().parse(spec.template)
    except TemplateSyntaxError as exc:
        raise SuiteError(
            f"template syntax error: {exc.message}", file=spec.template_path, line=exc.lineno
        ) from None
    problem = _unsafe_node(ast)
    if problem:
        raise SuiteError(
            problem[0],
            file=spec.template_path,
            line=problem[1],
            hint="A judge template is one self-contained file of text and variables.",
        )


def _unsafe_node(ast: Any) -> tuple[str, int] | None:
    """What the sandbox would refuse only at render time, after generation: another
    template pulled in (include, import, extends) or a dunder attribute."""
    from jinja2 import nodes

    for node in ast.find_all((nodes.Include, nodes.Import, nodes.FromImport, nodes.Extends)):
        return f"the template uses {{% {type(node).__name__.lower()} %}}, not allowed", node.lineno
    for node in ast.find_all((nodes.Getattr, nodes.Getitem, nodes.Name)):
        name = getattr(node, "attr", None) or getattr(node, "name", None)
        if isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
            name = node.arg.value
        if isinstance(name, str) and name.startswith("_"):
            return f"the template uses '{name}': names starting with _ are not allowed", (
                node.lineno
            )
    return None


def check_template_vars(spec: JudgeSpec, columns: set[str], has_reference: bool) -> None:
    """Fail on a template variable the judge cannot supply (validate time, no call made)."""
    from jinja2 import meta

    from evalkit.plan.prompts import prompt_environment

    ast = prompt_environment().parse(spec.template)
    used = set(meta.find_undeclared_variables(ast))
    unknown = used - spec.allowed_vars(columns)
    if unknown:
        name = sorted(unknown)[0]
        raise SuiteError(
            f"template uses unknown variable '{name}'",
            file=spec.template_path,
            line=_line_of(spec.template, name),
            hint="Variables: "
            + ", ".join(sorted(COMMON_VARS | kind_vars(spec.kind)))
            + (", and the dataset's columns: " + ", ".join(sorted(columns)) if columns else ""),
        )
    if "reference" in used and not has_reference:
        raise SuiteError(
            "template uses 'reference' but the task has no `reference:` template",
            file=spec.template_path,
            line=_line_of(spec.template, "reference"),
            hint="Add `reference:` to the task, or use a rubric judge.",
        )


def _line_of(text: str, name: str) -> int | None:
    for i, line in enumerate(text.splitlines(), 1):
        if name in line:
            return i
    return None
