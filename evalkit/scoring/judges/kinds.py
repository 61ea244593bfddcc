"""Judge kinds: what a judge of each kind is given, what it must answer, how its reply is
read, in which orders it sees the answers, and how its verdicts are compared with human
labels. A spec's `kind:` names one of them.

- rating kinds ("rubric", "reference"): one answer, a score on the spec's integer scale.
- "pairwise": two answers (A = the variant, B = the base), a winner; asked in both orders,
  so a verdict that flips with the order counts as a tie.

A new kind is one module named `kind_NAME.py` in this package that calls
`register_judge_kind` with an object meeting the `JudgeKind` protocol; such modules are
imported on the first lookup (see the README's CONTRIBUTING section).
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from evalkit.scoring.judges.parse import Verdict, parse_pairwise, parse_rating

Scale = tuple[int, int]


class JudgeKind(Protocol):
    """One kind of judge. `answer_slots` pairs each answer's delimiter label with the
    template variable that holds it, in the order answers are passed."""

    @property
    def name(self) -> str: ...

    @property
    def answer_slots(self) -> tuple[tuple[str, str], ...]:
        """(marker label, template variable) per answer."""
        ...

    @property
    def extra_vars(self) -> frozenset[str]:
        """Template variables beside COMMON_VARS and the answers."""
        ...

    @property
    def unit(self) -> str:
        """The unit of its metric (evalkit.scoring.metrics UNITS)."""
        ...

    @property
    def weights_by_logprobs(self) -> bool:
        """Whether a probability-weighted score is read from top logprobs."""
        ...

    def scale_error(self, scale: Scale) -> str | None:
        """Why the spec's `scale:` cannot be used, or None."""
        ...

    def score_range(self, scale: Scale) -> Scale:
        """The range of a per-example value."""
        ...

    def output_schema(self, scale: Scale) -> dict[str, Any]:
        """The verdict property asked for first in the structured reply."""
        ...

    def parse(self, text: str, scale: Scale, finish_reason: str | None) -> Verdict: ...

    def orders(self, answers: tuple[str, ...]) -> list[tuple[str, ...]]:
        """The orders the answers are judged in (combined by `combine`)."""
        ...

    def combine(self, scores: Sequence[float | None]) -> float | None:
        """One value from the verdicts of `orders`, each in its own order."""
        ...

    def agrees(self, scores: Sequence[float]) -> bool:
        """Whether the verdicts of `orders` (all scored) say the same thing."""
        ...

    def read_label(self, row: dict[str, Any], scale: Scale) -> tuple[tuple[str, ...], float]:
        """(answers, human label) of a labels row; KeyError/ValueError when malformed."""
        ...

    def categories(self, scale: Scale) -> list[float]:
        """The calibration categories (kappa, the confusion table)."""
        ...

    def category(self, score: float) -> float:
        """The category a judge's score falls in."""
        ...

    def category_name(self, category: float) -> str: ...

    def weighted_kappa(self, categories: list[float]) -> bool: ...

    def length_correlation(self) -> bool:
        """Whether the score-length correlation means something for this kind."""
        ...


@dataclass(frozen=True)
class RatingKind:
    """One answer rated on the spec's integer scale."""

    name: str
    answer_slots: tuple[tuple[str, str], ...] = (("ANSWER", "answer"),)
    extra_vars: frozenset[str] = frozenset({"reference"})
    unit: str = "score"
    weights_by_logprobs: bool = True

    def scale_error(self, scale: Scale) -> str | None:
        lo, hi = scale
        return None if lo < hi else f"scale must be [min, max] with min < max, got [{lo}, {hi}]"

    def score_range(self, scale: Scale) -> Scale:
        return scale

    def output_schema(self, scale: Scale) -> dict[str, Any]:
        lo, hi = scale
        # an enum, not minimum/maximum: llama.cpp's grammar enforces enums only
        return {"score": {"type": "integer", "enum": list(range(lo, hi + 1))}}

    def parse(self, text: str, scale: Scale, finish_reason: str | None) -> Verdict:
        return parse_rating(text, scale, finish_reason)

    def orders(self, answers: tuple[str, ...]) -> list[tuple[str, ...]]:
        return [answers]

    def combine(self, scores: Sequence[float | None]) -> float | None:
        return scores[0]

    def agrees(self, scores: Sequence[float]) -> bool:
        return True

    def read_label(self, row: dict[str, Any], scale: Scale) -> tuple[tuple[str, ...], float]:
        lo, hi = scale
        label = float(row["label"])
        if not lo <= label <= hi:
            raise ValueError(f"label {row['label']} outside the scale [{lo}, {hi}]")
        return (str(row["answer"]),), label

    def categories(self, scale: Scale) -> list[float]:
        lo, hi = scale
        return [float(c) for c in range(lo, hi + 1)]

    def category(self, score: float) -> float:
        return float(round(score))

    def category_name(self, category: float) -> str:
        return f"{category:g}"

    def weighted_kappa(self, categories: list[float]) -> bool:
        # ordinal: a 4 against a human 5 is a smaller miss than a 1
        return len(categories) > 2

    def length_correlation(self) -> bool:
        return True


_PAIR = {"a": 1.0, "b": 0.0, "tie": 0.5}


@dataclass(frozen=True)
class PairwiseKind:
    """Two answers, a winner: 1 = A wins, 0 = B wins, 0.5 = tie."""

    name: str = "pairwise"
    answer_slots: tuple[tuple[str, str], ...] = (("ANSWER_A", "answer_a"), ("ANSWER_B", "answer_b"))
    extra_vars: frozenset[str] = frozenset({"reference"})
    unit: str = "fraction"  # a win rate against the base
    weights_by_logprobs: bool = False

    def scale_error(self, scale: Scale) -> str | None:
        return None  # a pairwise judge has no scale

    def score_range(self, scale: Scale) -> Scale:
        # a pairwise verdict becomes a per-example win value in [0, 1]
        return (0, 1)

    def output_schema(self, scale: Scale) -> dict[str, Any]:
        return {"winner": {"type": "string", "enum": ["A", "B", "tie"]}}

    def parse(self, text: str, scale: Scale, finish_reason: str | None) -> Verdict:
        return parse_pairwise(text, finish_reason)

    def orders(self, answers: tuple[str, ...]) -> list[tuple[str, ...]]:
        return [answers, answers[::-1]]

    def combine(self, scores: Sequence[float | None]) -> float | None:
        first, second = scores
        if first is None or second is None:
            return None
        # a verdict that flips with the order is a tie
        return first if self.agrees([first, second]) else 0.5

    def agrees(self, scores: Sequence[float]) -> bool:
        first, second = scores  # the second was asked with A and B swapped
        return first == 1.0 - second

    def read_label(self, row: dict[str, Any], scale: Scale) -> tuple[tuple[str, ...], float]:
        return (str(row["answer_a"]), str(row["answer_b"])), _PAIR[str(row["label"]).lower()]

    def categories(self, scale: Scale) -> list[float]:
        return [0.0, 0.5, 1.0]

    def category(self, score: float) -> float:
        return score  # 0.5 is a tie, not a rounding

    def category_name(self, category: float) -> str:
        return {1.0: "A", 0.0: "B"}.get(category, "tie")

    def weighted_kappa(self, categories: list[float]) -> bool:
        return False

    def length_correlation(self) -> bool:
        return False


_KINDS: dict[str, JudgeKind] = {}
_loaded = False


def register_judge_kind(kind: JudgeKind) -> JudgeKind:
    """Add a judge kind (at import time of its `kind_NAME.py` module)."""
    if kind.name in _KINDS and _KINDS[kind.name] != kind:
        raise ValueError(f"judge kind {kind.name} is registered twice")
    _KINDS[kind.name] = kind
    return kind


def _load() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    here = str(Path(__file__).parent)
    for mod in pkgutil.iter_modules([here]):
        if mod.name.startswith("kind_"):
            importlib.import_module(f"{__package__}.{mod.name}")


def judge_kind_names() -> list[str]:
    _load()
    return list(_KINDS)


def judge_kind(name: str) -> JudgeKind:
    """The registered kind `name`. Raises ValueError naming the known kinds."""
    if name not in _KINDS:
        _load()
    if name not in _KINDS:
        raise ValueError(f"unknown judge kind '{name}'; kinds: {', '.join(_KINDS)}")
    return _KINDS[name]


def answer_labels() -> set[str]:
    """Every marker label any kind uses (the renderer defangs look-alikes of all)."""
    _load()
    return {label for k in _KINDS.values() for label, _ in k.answer_slots}


register_judge_kind(RatingKind("rubric"))
register_judge_kind(RatingKind("reference"))
register_judge_kind(PairwiseKind())
