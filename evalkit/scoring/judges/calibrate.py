"""How far to trust a judge: compare its verdicts with human labels.

Figures: exact agreement; Cohen's kappa, quadratically weighted when the scale is ordinal
with more than two points (a 4 against a human 5 is a smaller miss than a 1); the
confusion table (human label -> judge score, with an "unscored" column); the correlation
of the judge's score with the answer's length in words (a judge that rewards length
shows it here); for pairwise judges, the share of verdicts that survive swapping A and B.
Unscored replies are left out of kappa and counted separately.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from evalkit.errors import DataError
from evalkit.scoring.judges.core import Item, JudgeRunner
from evalkit.scoring.judges.spec import JudgeSpec

Label = float  # rubric: a scale point; pairwise: 1 = A, 0 = B, 0.5 = tie
_PAIR = {"a": 1.0, "b": 0.0, "tie": 0.5}


def read_labels(path: Path, spec: JudgeSpec) -> list[tuple[Item, Label]]:
    """Rows of a JSONL labels file: question, answer (or answer_a/answer_b), reference,
    label, and any other column the template uses. Rows naming another `judge` are
    skipped, so one file can hold labels for several judges."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise DataError(f"{path}: labels file not found") from None
    out: list[tuple[Item, Label]] = []
    lo, hi = spec.config.scale
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{n}: not JSON ({exc.msg})") from None
        if row.get("judge") not in (None, spec.name):
            continue
        answers: tuple[str, ...]
        try:
            if spec.kind == "pairwise":
                answers = (str(row["answer_a"]), str(row["answer_b"]))
                label = _PAIR[str(row["label"]).lower()]
            else:
                answers = (str(row["answer"]),)
                label = float(row["label"])
                if not lo <= label <= hi:
                    raise ValueError(f"label {row['label']} outside the scale [{lo}, {hi}]")
            question = str(row["question"])
        except (KeyError, ValueError) as exc:
            raise DataError(
                f"{path}:{n}: bad label row ({exc})",
                hint="Each row needs question, answer (pairwise: answer_a, answer_b) and "
                "label (pairwise: A, B or tie).",
            ) from None
        skip = {"question", "answer", "answer_a", "answer_b", "label", "judge", "reference"}
        extra = tuple(sorted((k, v) for k, v in row.items() if k not in skip))
        out.append((Item(question, answers, row.get("reference"), extra), label))
    if not out:
        raise DataError(f"{path}: no labels for judge '{spec.name}'")
    return out


def cohen_kappa(a: list[float], b: list[float], categories: list[float], weighted: bool) -> float:
    """Cohen's kappa of two raters over `categories`; quadratic weights when `weighted`."""
    k = len(categories)
    if not a or k < 2:
        return math.nan
    index = {c: i for i, c in enumerate(categories)}
    obs = [[0.0] * k for _ in range(k)]
    for x, y in zip(a, b, strict=True):
        obs[index[x]][index[y]] += 1
    n = float(len(a))
    rows = [sum(r) / n for r in obs]
    cols = [sum(obs[i][j] for i in range(k)) / n for j in range(k)]

    def w(i: int, j: int) -> float:
        return ((i - j) / (k - 1)) ** 2 if weighted else float(i != j)

    seen = sum(w(i, j) * obs[i][j] / n for i in range(k) for j in range(k))
    expected = sum(w(i, j) * rows[i] * cols[j] for i in range(k) for j in range(k))
    if expected == 0:
        return 1.0 if seen == 0 else math.nan
    return 1.0 - seen / expected


def pearson(x: list[float], y: list[float]) -> float:
    if len(x) < 3:
        return math.nan
    mx, my = sum(x) / len(x), sum(y) / len(y)
    sxy = sum((a - mx) * (b - my) for a, b in zip(x, y, strict=True))
    sxx = sum((a - mx) ** 2 for a in x)
    syy = sum((b - my) ** 2 for b in y)
    return sxy / math.sqrt(sxx * syy) if sxx > 0 and syy > 0 else math.nan


def calibrate(
    spec: JudgeSpec, labels: list[tuple[Item, Label]], runner: JudgeRunner
) -> dict[str, Any]:
    """Judge the labelled items and compare. Pairwise items are judged in both orders."""
    items = [it for it, _ in labels]
    if spec.kind == "pairwise":
        swapped = [Item(it.question, it.answers[::-1], it.reference, it.row) for it in items]
        judged = runner.judge(spec, items + swapped)
        first, second = judged[: len(items)], judged[len(items) :]
        scores: list[float | None] = []
        consistent = both = 0
        for a_first, b_first in zip(first, second, strict=True):
            if a_first.score is None or b_first.score is None:
                scores.append(None)
                continue
            both += 1
            same = a_first.score == 1.0 - b_first.score
            consistent += same
            # a verdict that flips with the order is a tie
            scores.append(a_first.score if same else 0.5)
        categories = [0.0, 0.5, 1.0]
        raw_errors = [j.error for j in judged if j.score is None]
    else:
        judged = runner.judge(spec, items)
        scores = [j.score for j in judged]
        lo, hi = spec.config.scale
        categories = [float(c) for c in range(lo, hi + 1)]
        raw_errors = [j.error for j in judged if j.score is None]
    human = [lab for _, lab in labels]
    pw = spec.kind == "pairwise"

    def category(s: float) -> float:
        return s if pw else float(round(s))  # pairwise 0.5 is a tie, not a rounding

    pairs = [(h, category(s)) for h, s in zip(human, scores, strict=True) if s is not None]
    pairs = [(h, s) for h, s in pairs if s in categories and h in categories]
    weighted = spec.kind != "pairwise" and len(categories) > 2
    kappa = cohen_kappa([h for h, _ in pairs], [s for _, s in pairs], categories, weighted)
    confusion: dict[str, dict[str, int]] = {
        _cat(c, pw): {**{_cat(d, pw): 0 for d in categories}, "unscored": 0} for c in categories
    }
    for h, s in zip(human, scores, strict=True):
        col = "unscored" if s is None else _cat(category(s), pw)
        if _cat(h, pw) in confusion and col in confusion[_cat(h, pw)]:
            confusion[_cat(h, pw)][col] += 1
    lengths = [float(len(it.answers[0].split())) for it in items]
    scored_len = [(ln, s) for ln, s in zip(lengths, scores, strict=True) if s is not None]
    return {
        "kappa": kappa,
        "weighted": weighted,
        "agreement": (sum(h == s for h, s in pairs) / len(pairs)) if pairs else math.nan,
        "n": len(pairs),
        "n_labels": len(labels),
        "n_unscored": sum(s is None for s in scores),
        "errors": sorted({e for e in raw_errors if e}),
        "confusion": confusion,
        "swap_consistency": (consistent / both if both else None)
        if spec.kind == "pairwise"
        else None,
        "length_correlation": pearson([ln for ln, _ in scored_len], [s for _, s in scored_len])
        if spec.kind != "pairwise"
        else None,
    }


def _cat(c: float, pairwise: bool = False) -> str:
    if pairwise:
        return {1.0: "A", 0.0: "B"}.get(c, "tie")
    return f"{c:g}"
