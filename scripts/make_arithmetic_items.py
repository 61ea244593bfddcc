"""Generate the 30 arithmetic items of evalkit's built-in knowledge probe set.

The items are single operations with small numbers: addition and subtraction up to 100,
multiplication from the tables up to 12, and easy exact division. The output is fully
determined by SEED, so rerunning the script reproduces the committed items exactly.

    python scripts/make_arithmetic_items.py           # print the items as JSON lines
    python scripts/make_arithmetic_items.py --write   # replace the arithmetic lines of
                                                      # evalkit/plan/probe_data/knowledge.jsonl
    python scripts/make_arithmetic_items.py --check   # exit 1 if the file differs

With --write, the lines of the other subjects are kept byte for byte; the arithmetic block
is placed in the subject order below.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

SEED = 20240611
KNOWLEDGE = Path(__file__).resolve().parents[1] / "evalkit/plan/probe_data/knowledge.jsonl"
SUBJECT_ORDER = (
    "geography",
    "science",
    "biology",
    "history",
    "arithmetic",
    "language",
    "everyday",
    "arts",
)
# How many items of each operation, in the order they appear.
PLAN = (
    ("add_small", 4),
    ("add", 4),
    ("sub_small", 4),
    ("sub", 4),
    ("mul", 8),
    ("div", 6),
)

_ONES = [
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
    "nineteen",
]  # fmt: skip
_TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]


def number_words(n: int) -> list[str]:
    """English spellings of n (0-199) that an open answer might use; hyphens are
    folded to spaces by evalkit's matcher, so "twenty-four" also covers "twenty four"."""
    if n < 20:
        return [_ONES[n]]
    if n < 100:
        tens, ones = divmod(n, 10)
        return [_TENS[tens] if ones == 0 else f"{_TENS[tens]}-{_ONES[ones]}"]
    if n == 100:
        return ["one hundred", "a hundred"]
    if n < 200:
        rest = number_words(n - 100)[0]
        return [f"one hundred and {rest}", f"one hundred {rest}"]
    raise ValueError(n)


def _operation(kind: str, rng: random.Random) -> tuple[str, int, tuple[int, int]]:
    """One question, its answer and its two operands."""
    if kind == "add_small":
        a, b = rng.randint(2, 9), rng.randint(2, 9)
        return f"What is {a} + {b}?", a + b, (a, b)
    if kind == "add":
        a = rng.randint(11, 60)
        b = rng.randint(5, 100 - a)
        return f"What is {a} + {b}?", a + b, (a, b)
    if kind == "sub_small":
        a = rng.randint(10, 20)
        b = rng.randint(2, a - 2)
        return f"What is {a} - {b}?", a - b, (a, b)
    if kind == "sub":
        a = rng.randint(30, 100)
        b = rng.randint(5, a - 5)
        return f"What is {a} - {b}?", a - b, (a, b)
    if kind == "mul":
        a, b = rng.randint(2, 12), rng.randint(2, 12)
        return f"What is {a} times {b}?", a * b, (a, b)
    if kind == "div":
        divisor, quotient = rng.randint(2, 10), rng.randint(2, 10)
        dividend = divisor * quotient
        return f"What is {dividend} divided by {divisor}?", quotient, (dividend, divisor)
    raise ValueError(kind)


def _distractors(
    kind: str, answer: int, operands: tuple[int, int], rng: random.Random
) -> list[int]:
    """Three plausible wrong answers: near misses of the kind a slip would produce."""
    a, b = operands
    if kind == "mul":
        pool = {a * (b + 1), a * (b - 1), (a + 1) * b, (a - 1) * b, answer + 1, answer - 1}
    elif kind in ("div", "add_small", "sub_small"):
        pool = {answer - 2, answer - 1, answer + 1, answer + 2}
    else:
        pool = {answer - 10, answer - 2, answer - 1, answer + 1, answer + 2, answer + 10}
    # An operand as a choice reads as a trick rather than a slip, so none is offered.
    candidates = sorted(n for n in pool if n > 0 and n != answer and n not in operands)
    return rng.sample(candidates, 3)


def make_items(seed: int = SEED) -> list[dict]:
    rng = random.Random(seed)
    total = sum(count for _, count in PLAN)
    positions = [i % 4 for i in range(total + (-total) % 4)]
    rng.shuffle(positions)
    items: list[dict] = []
    for kind, count in PLAN:
        answers: set[int] = set()
        while len(answers) < count:
            question, answer, operands = _operation(kind, rng)
            # An answer equal to an operand would be matched by a reply that only repeats
            # the question, so such items are skipped; answers differ within an operation.
            if answer in answers or answer in operands:
                continue
            answers.add(answer)
            wrong = _distractors(kind, answer, operands, rng)
            position = positions[len(items)]
            choices = [str(n) for n in wrong]
            choices.insert(position, str(answer))
            items.append(
                {
                    "id": f"ari-{len(items) + 1:03d}",
                    "subject": "arithmetic",
                    "question": question,
                    "choices": choices,
                    "answer": position,
                    "accepted": [str(answer), *number_words(answer)],
                }
            )
    return items


def merged_lines(existing: list[str], items: list[dict]) -> list[str]:
    """The file's non-arithmetic lines unchanged, with the new arithmetic block in its place."""
    keyed = []
    for line in existing:
        if not line.strip():
            continue
        subject = json.loads(line)["subject"]
        if subject != "arithmetic":
            keyed.append((SUBJECT_ORDER.index(subject), line))
    keyed += [(SUBJECT_ORDER.index("arithmetic"), json.dumps(item)) for item in items]
    keyed.sort(key=lambda pair: pair[0])  # stable: order within a subject is kept
    return [line for _, line in keyed]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--write", action="store_true", help="update knowledge.jsonl")
    group.add_argument("--check", action="store_true", help="fail if knowledge.jsonl differs")
    args = parser.parse_args()
    items = make_items()
    if not (args.write or args.check):
        for item in items:
            print(json.dumps(item))
        return 0
    existing = KNOWLEDGE.read_text(encoding="utf-8").splitlines() if KNOWLEDGE.exists() else []
    lines = merged_lines(existing, items)
    text = "\n".join(lines) + "\n"
    if args.check:
        current = KNOWLEDGE.read_text(encoding="utf-8") if KNOWLEDGE.exists() else ""
        if current != text:
            print(f"{KNOWLEDGE} is out of date; rerun with --write", file=sys.stderr)
            return 1
        return 0
    KNOWLEDGE.write_text(text, encoding="utf-8")
    print(f"wrote {len(items)} arithmetic items into {KNOWLEDGE} ({len(lines)} lines)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
