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

Loc = tuple[str | int, ...]


def load_yaml_with_lines(path: Path) -> tuple[Any, dict[Loc, int]]:
    """Parse a YAML file; return its value and a map from location to 1-based line."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SuiteError("file not found", file=path) from None
    except UnicodeDecodeError as exc:
        raise SuiteError(f"not UTF-8 text ({exc.reason})", file=path) from None
    loader = yaml.SafeLoader(text)
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
    finally:
        loader.dispose()
    lines: dict[Loc, int] = {}
    if node is None:
        return None, lines

    def build(n: yaml.Node, loc: Loc) -> Any:
        lines.setdefault(loc, n.start_mark.line + 1)
        if isinstance(n, yaml.MappingNode):
            out: dict[Any, Any] = {}
            for key_node, value_node in n.value:
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
