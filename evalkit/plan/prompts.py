"""The prompt layer: the one Jinja environment suite templates, judge templates and
training data render in, so a prompt is the same text in training and evaluation."""

from __future__ import annotations

from typing import Any


def prompt_environment() -> Any:
    """The Jinja environment suite templates render in."""
    from jinja2 import StrictUndefined
    from jinja2.sandbox import SandboxedEnvironment

    # Sandboxed: prompt templates come from suite files; StrictUndefined: a misspelt
    # column is an error, not an empty string in every prompt.
    return SandboxedEnvironment(undefined=StrictUndefined, keep_trailing_newline=False)


def template_columns(env: Any, source: str) -> set[str]:
    """The variables a template reads (for a dataset: the columns it needs)."""
    from jinja2 import meta

    return set(meta.find_undeclared_variables(env.parse(source)))
