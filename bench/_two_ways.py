"""What the generation benchmarks share: two ways of answering the same requests, run
alternately, and how their outputs compare."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from evalkit.engines.base import Generated
from evalkit.profile import Profile


def best_of(
    ways: dict[str, Callable[[], list[Generated]]], rounds: int
) -> tuple[dict[str, tuple[float, dict[str, Any]]], dict[str, list[Generated]]]:
    """Each way's best wall time with its profile row (forward, generated and verified
    tokens), the ways alternating for `rounds`, and each way's outputs."""
    best: dict[str, tuple[float, dict[str, Any]]] = {}
    outputs: dict[str, list[Generated]] = {}
    for _ in range(rounds):
        for name, run in ways.items():
            prof = Profile()
            with prof.activate(), prof.stage(name):
                t0 = time.perf_counter()
                outputs[name] = run()
                wall = time.perf_counter() - t0
            if name not in best or wall < best[name][0]:
                best[name] = (wall, prof.rows()[0])
    return best, outputs


def agreement(a: Sequence[Generated], b: Sequence[Generated]) -> str:
    """How many texts are identical, and the largest relative difference of the
    reference scores, as a line to print."""
    same = sum(x.text == y.text for x, y in zip(a, b, strict=True))
    worst = max(
        (
            abs(x.reference.logprob - y.reference.logprob) / abs(x.reference.logprob)
            for x, y in zip(a, b, strict=True)
            if x.reference and y.reference and x.reference.logprob
        ),
        default=0.0,
    )
    return f"texts identical: {same} of {len(a)}; reference scores within {worst:.1e} relative"
