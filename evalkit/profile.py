"""Where a run's time goes: wall time and work per stage (load, integrity, each task ×
variant, the judge, scoring, outputs), recorded as plain dicts for results.json's `profile`
and printed by `evalkit run --profile`.

Stages are opened with `timer(name)`; work inside one is counted with `count(key, n)`
(requests, forward tokens, generated tokens, judge calls), which adds to the innermost open
stage. Without an active `Profile` both are no-ops, so engines and scorers can call them
unconditionally and a library user who never asks for a profile pays nothing. Free of torch
and of every other evalkit module, so any stage may import it.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar, cast

_active: ContextVar[Profile | None] = ContextVar("evalkit_profile", default=None)


class Profile:
    """The stages of one run, in the order they started."""

    def __init__(self) -> None:
        self._rows: list[dict[str, Any]] = []
        self._open: list[dict[str, Any]] = []

    @contextmanager
    def activate(self) -> Iterator[Profile]:
        """Make this profile the one `timer` and `count` record into."""
        token = _active.set(self)
        try:
            yield self
        finally:
            _active.reset(token)

    @contextmanager
    def stage(self, name: str, **counts: float) -> Iterator[dict[str, Any]]:
        row: dict[str, Any] = {"stage": name, "seconds": 0.0, **counts}
        if self._open:  # nested: the table indents it under its parent
            row["parent"] = self._open[-1]["stage"]
        self._rows.append(row)
        self._open.append(row)
        t0 = time.perf_counter()
        try:
            yield row
        finally:
            row["seconds"] = round(time.perf_counter() - t0, 3)
            self._open.pop()

    def count(self, key: str, n: float) -> None:
        if self._open:
            row = self._open[-1]
            row[key] = row.get(key, 0) + n

    def rows(self) -> list[dict[str, Any]]:
        """Copies of the finished stages: {"stage", "seconds", optional "parent", counts}."""
        return [dict(r) for r in self._rows]


@contextmanager
def timer(name: str, **counts: float) -> Iterator[dict[str, Any]]:
    """Time a stage of the active profile (a no-op without one). Yields the stage's row, to
    which a caller may add counts it only knows at the end."""
    prof = _active.get()
    if prof is None:
        yield {}
        return
    with prof.stage(name, **counts) as row:
        yield row


def count(key: str, n: float = 1) -> None:
    """Add `n` to counter `key` of the innermost open stage (a no-op without a profile)."""
    prof = _active.get()
    if prof is not None:
        prof.count(key, n)


# columns of the printed table, in order, with their headers
_COLUMNS = (
    ("requests", "requests"),
    ("forward_tokens", "fwd tokens"),
    ("generated_tokens", "gen tokens"),
    ("verified_tokens", "verified"),
    ("judge_calls", "judge calls"),
    ("labels", "labels"),
)


def format_table(rows: list[dict[str, Any]], total_s: float | None = None) -> str:
    """The profile as a fixed-width text table (nested stages indented, share of the run's
    wall time per stage when `total_s` is given)."""
    used = [(k, h) for k, h in _COLUMNS if any(k in r for r in rows)]
    depth: dict[str, int] = {}
    names = []
    for r in rows:
        d = depth.get(r.get("parent", ""), -1) + 1 if "parent" in r else 0
        depth[r["stage"]] = d
        names.append("  " * d + r["stage"])
    width = max([len(n) for n in names] + [5])
    head = f"{'stage':<{width}}  {'seconds':>8}" + ("  share" if total_s else "")
    head += "".join(f"  {h:>{max(len(h), 8)}}" for _, h in used)
    lines = [head, "-" * len(head)]
    for name, r in zip(names, rows, strict=True):
        line = f"{name:<{width}}  {r['seconds']:>8.1f}"
        if total_s:
            line += f"  {100 * r['seconds'] / total_s:>4.0f}%"
        for k, h in used:
            v = r.get(k)
            cell = "" if v is None else f"{v:g}" if isinstance(v, float) else str(v)
            line += f"  {cell:>{max(len(h), 8)}}"
        lines.append(line)
    if total_s:
        lines.append(f"{'total':<{width}}  {total_s:>8.1f}")
    return "\n".join(lines)


def run_profile() -> list[dict[str, Any]]:
    """The active profile's stages so far ([] without one)."""
    prof = _active.get()
    return prof.rows() if prof is not None else []


F = TypeVar("F", bound=Callable[..., Any])


def profiled(fn: F) -> F:
    """Run `fn` with a profile active: the caller's, if it made one active (so it sees
    every stage, also those after `fn` copied the rows), else a fresh one."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if _active.get() is not None:
            return fn(*args, **kwargs)
        with Profile().activate():
            return fn(*args, **kwargs)

    return cast(F, wrapper)
