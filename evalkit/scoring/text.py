"""Metrics computed from a generated text. Each returns a float, or NaN when the output
cannot be scored (the caller records why)."""

from __future__ import annotations

import functools
import json
import math
import re
import unicodedata
from collections import Counter
from typing import Any

_WORD = re.compile(r"[\w']+", re.UNICODE)
_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL)


def normalize(text: str) -> str:
    """Lower case, accents and punctuation folded to spaces, whitespace collapsed."""
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return " ".join(_WORD.findall(text.lower()))


def exact_match(output: str, reference: str) -> float:
    return float(output.strip() == reference.strip())


def contains(output: str, value: str) -> float:
    return float(value.lower() in output.lower())


@functools.lru_cache(maxsize=256)
def compile_regex(pattern: str) -> Any:
    """A user's `regex` pattern, compiled for RE2, whose matching time is linear in the
    text: a backtracking pattern such as `(a+)+$` cannot hang a run on a long output.
    Raises ValueError naming what RE2 lacks (backreferences, lookaround)."""
    import re2

    options = re2.Options()
    options.log_errors = False  # the message goes into our error, not onto stderr
    options.max_mem = 64 << 20
    try:
        return re2.compile(pattern, options)
    except re2.error as exc:
        reason = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else exc
        raise ValueError(
            f"the pattern {pattern!r} is not supported by the linear-time engine (RE2): "
            f"{reason}; backreferences and lookaround are not available"
        ) from None


def regex_match(output: str, pattern: str) -> float:
    """1 when the pattern matches anywhere in the output; linear time (RE2)."""
    return float(compile_regex(pattern).search(output) is not None)


def parse_json_object(output: str) -> Any | None:
    """The output as JSON (a ```json fence around it allowed), or None."""
    text = output.strip()
    fenced = _FENCE.match(text)
    if fenced:
        text = fenced.group(1)
    try:
        return json.loads(text)
    except (json.JSONDecodeError, ValueError):
        return None


def json_valid(output: str) -> float:
    return float(isinstance(parse_json_object(output), dict))


def json_field_match(output: str, reference: str, field: str) -> float:
    """1 when the output's JSON has `field` equal to the reference JSON's `field`.
    NaN when the reference itself lacks the field (the example cannot be scored)."""
    ref = parse_json_object(reference)
    if not isinstance(ref, dict) or field not in ref:
        return math.nan
    got = parse_json_object(output)
    if not isinstance(got, dict) or field not in got:
        return 0.0
    a, b = got[field], ref[field]
    if isinstance(a, str) and isinstance(b, str):
        return float(normalize(a) == normalize(b))
    return float(a == b)


def accepted_match(output: str, accepted: list[str]) -> float:
    """1 when any accepted answer appears in the output as whole words."""
    text = f" {normalize(output)} "
    return float(any(f" {normalize(a)} " in text for a in accepted if normalize(a)))


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def distinct_n(text: str, n: int = 2) -> float:
    """Share of the answer's n-grams that are distinct (1.0 = no n-gram repeats).
    NaN for answers too short to have an n-gram."""
    grams = _ngrams(words(text), n)
    return len(set(grams)) / len(grams) if grams else math.nan


def repeated_ngram_rate(text: str, n: int = 3) -> float:
    """Share of n-gram occurrences that repeat an earlier one in the same answer."""
    grams = _ngrams(words(text), n)
    if not grams:
        return math.nan
    counts = Counter(grams)
    return sum(c - 1 for c in counts.values()) / len(grams)


def _ngrams(tokens: list[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


def cross_answer_overlap(answers: list[str | None], n: int = 3) -> list[float]:
    """Per answer: the share of its distinct n-grams that also occur in another answer of
    the same model to a *different* prompt. Open prompts on different topics share few
    trigrams (a handful of phrases); a model that collapsed into one template ("Here is a
    summary: {...") shares most of them. Defined per answer, so it pairs with the base
    prompt by prompt. NaN for a missing answer or one too short to have an n-gram."""
    grams = [set(_ngrams(words(a), n)) if a is not None else set() for a in answers]
    seen: Counter[tuple[str, ...]] = Counter()
    for g in grams:
        seen.update(g)
    out = []
    for a, g in zip(answers, grams, strict=True):
        if a is None or not g:
            out.append(math.nan)
            continue
        # seen[x] counts the answers holding x, this one included
        out.append(sum(seen[x] > 1 for x in g) / len(g))
    return out
