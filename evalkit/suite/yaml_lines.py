"""YAML loading that remembers where each value came from.

pydantic reports errors by location (`tasks[0].metrics[1].type`); users need a line in
their file. This loader builds plain Python values from PyYAML's node tree and records
the line of every mapping key and sequence item, refusing duplicate keys (which PyYAML
silently lets the last one win).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from evalkit.errors import SuiteError
from evalkit.paths import FileProblem, read_regular_file

Loc = tuple[str | int, ...]

# A suite is a page of YAML. Aliases share one node, so a few hundred bytes of `&a [*b,
# *b, ...]` expand to billions of values when built; these budgets refuse that, a
# recursive alias and a file nobody typed, in well under a second.
MAX_BYTES = 1 << 20
MAX_VALUES = 100_000
MAX_DEPTH = 64


def load_yaml_with_lines(path: Path) -> tuple[Any, dict[Loc, int]]:
    """Parse a YAML file; return its value and a map from location to 1-based line."""
    try:
        raw = read_regular_file(path, max_bytes=MAX_BYTES, what="suite file")
    except FileProblem as exc:
        raise SuiteError(exc.reason, file=path, hint=exc.hint) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SuiteError(
            f"not UTF-8 text ({exc.reason})",
            file=path,
            line=raw[: exc.start].count(b"\n") + 1,
            hint="Save it as UTF-8.",
        ) from None
    try:
        loader = yaml.SafeLoader(text)  # its reader refuses control characters here
    except yaml.YAMLError as exc:
        raise SuiteError(f"this is not valid YAML: {exc}", file=path) from None
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else None
        raise SuiteError(
            f"this is not valid YAML: {exc.problem}",
            file=path,
            line=line,
            hint="Check indentation and quoting on that line and the one before it.",
        ) from None
    except yaml.YAMLError as exc:  # the reader: control characters, NUL bytes
        raise SuiteError(f"this is not valid YAML: {exc}", file=path) from None
    except RecursionError:
        raise SuiteError(f"nested more than {MAX_DEPTH} levels deep", file=path) from None
    finally:
        loader.dispose()
    lines: dict[Loc, int] = {}
    if node is None:
        return None, lines

    built = [0]

    def build(n: yaml.Node, loc: Loc) -> Any:
        built[0] += 1
        if built[0] > MAX_VALUES or len(loc) > MAX_DEPTH:
            raise SuiteError(
                f"expands to more than {MAX_VALUES:,} values or {MAX_DEPTH} levels "
                "(YAML aliases that repeat each other, or a recursive alias)",
                file=path,
                line=n.start_mark.line + 1,
                hint="Write the values out; a suite needs no aliases of aliases.",
            )
        lines.setdefault(loc, n.start_mark.line + 1)
        if isinstance(n, yaml.MappingNode):
            out: dict[Any, Any] = {}
            for key_node, value_node in n.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    raise SuiteError(
                        "a mapping key must be a plain value, not a list or a mapping",
                        file=path,
                        line=key_node.start_mark.line + 1,
                    )
                key = loader.construct_object(key_node, deep=True)
                if key == "<<":
                    raise SuiteError(
                        "YAML merge keys (<<) are not supported in suites",
                        file=path,
                        line=key_node.start_mark.line + 1,
                        hint="Write the keys out in full.",
                    )
                if key in out:
                    raise SuiteError(
                        f"duplicate key '{key}' (first at line {lines[loc + (key,)]})",
                        file=path,
                        line=key_node.start_mark.line + 1,
                        hint="YAML keeps only the last one; remove or merge the duplicate.",
                    )
                lines[loc + (key,)] = key_node.start_mark.line + 1
                out[key] = build(value_node, loc + (key,))
            return out
        if isinstance(n, yaml.SequenceNode):
            return [build(item, loc + (i,)) for i, item in enumerate(n.value)]
        return loader.construct_object(n, deep=True)

    try:
        return build(node, ()), lines
    except yaml.constructor.ConstructorError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else None
        raise SuiteError(f"unsupported YAML value: {exc.problem}", file=path, line=line) from None
    except (ValueError, TypeError, OverflowError) as exc:  # e.g. a date like 2024-02-31
        raise SuiteError(f"unsupported YAML value: {exc}", file=path) from None
    except RecursionError:
        raise SuiteError(f"nested more than {MAX_DEPTH} levels deep", file=path) from None


def line_for(lines: dict[Loc, int], loc: Loc) -> int | None:
    """The line of `loc`, or of its nearest recorded parent."""
    for cut in range(len(loc), -1, -1):
        if loc[:cut] in lines:
            return lines[loc[:cut]]
    return None


def format_loc(loc: Loc) -> str:
    """`("tasks", 0, "metrics", 1, "type")` -> `tasks[0].metrics[1].type`."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"
