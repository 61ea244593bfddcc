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


def read_labels(path: Path, spec: JudgeSpec) -> list[tuple[Item, Label]]:
    """Rows of a JSONL labels file: question, answer (or answer_a/answer_b), reference,
    label, and any other column the template uses. Rows naming another `judge` are
    skipped, so one file can hold labels for several judges."""
    from evalkit.paths import FileProblem, read_regular_file

    try:
        lines = read_regular_file(path, max_bytes=64 << 20, what="labels file").decode().split("\n")
    except FileProblem as exc:
        raise DataError(f"{path}: {exc.reason}", hint=exc.hint) from None
    except UnicodeDecodeError:
        raise DataError(f"{path}: not UTF-8 text", hint="Save it as UTF-8.") from None
    out: list[tuple[Item, Label]] = []
    lo, hi = spec.config.scale
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{n}: not JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise DataError(f"{path}:{n}: expected a JSON object, got {type(row).__name__}")
        if row.get("judge") not in (None, spec.name):
            continue
        try:
            answers, label = spec.judge_kind.read_label(row, (lo, hi))
            question = str(row["question"])
        except (KeyError, ValueError, TypeError) as exc:  # TypeError: a list as the label
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


def limit_labels(labels: list[tuple[Item, Label]], limit: int) -> list[tuple[Item, Label]]:
    """The labels a smoke run (`--limit N`) calibrates on: N, as each task keeps N
    examples (the demo: 10 of 48 labels beside 10 of 72 examples), picked evenly over the
    labels sorted by value so every scale point stays represented; in file order."""
    if limit >= len(labels):
        return labels
    by_value = sorted(range(len(labels)), key=lambda i: (labels[i][1], i))
    picked = {by_value[(2 * k + 1) * len(labels) // (2 * limit)] for k in range(limit)}
    return [lab for i, lab in enumerate(labels) if i in picked]


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
    """Judge the labelled items and compare. Each item is judged in every order its kind
    asks for (pairwise: both), and the verdicts combined as the kind says."""
    items = [it for it, _ in labels]
    kind = spec.judge_kind
    # each item in each of the kind's orders (pairwise: as given and swapped), combined
    n_orders = len(kind.orders(items[0].answers)) if items else 1
    asked = [
        Item(it.question, answers, it.reference, it.row)
        for k in range(n_orders)
        for it in items
        for answers in [kind.orders(it.answers)[k]]
    ]
    judged = runner.judge(spec, asked)
    per_order = [judged[k * len(items) : (k + 1) * len(items)] for k in range(n_orders)]
    scores: list[float | None] = []
    consistent = both = 0
    for verdicts in zip(*per_order, strict=True):
        got = [j.score for j in verdicts]
        scores.append(kind.combine(got))
        if n_orders > 1 and all(g is not None for g in got):
            both += 1
            consistent += kind.agrees(got)
    categories = kind.categories(spec.config.scale)
    raw_errors = [j.error for j in judged if j.score is None]
    human = [lab for _, lab in labels]
    category = kind.category

    pairs = [(h, category(s)) for h, s in zip(human, scores, strict=True) if s is not None]
    pairs = [(h, s) for h, s in pairs if s in categories and h in categories]
    weighted = kind.weighted_kappa(categories)
    kappa = cohen_kappa([h for h, _ in pairs], [s for _, s in pairs], categories, weighted)
    name = kind.category_name
    confusion: dict[str, dict[str, int]] = {
        name(c): {**{name(d): 0 for d in categories}, "unscored": 0} for c in categories
    }
    for h, s in zip(human, scores, strict=True):
        col = "unscored" if s is None else name(category(s))
        if name(h) in confusion and col in confusion[name(h)]:
            confusion[name(h)][col] += 1
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
        "swap_consistency": (consistent / both if both else None) if n_orders > 1 else None,
        "length_correlation": pearson([ln for ln, _ in scored_len], [s for _, s in scored_len])
        if kind.length_correlation()
        else None,
    }
