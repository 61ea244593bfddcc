"""Metrics read from log-likelihoods: reference perplexity, multiple-choice accuracy (raw
and per byte of the option), and the rolling measures over whole texts (perplexity, bits
per byte, KL from the base)."""

from __future__ import annotations

import math

from evalkit.engines.records import Record
from evalkit.plan.types import Example
from evalkit.scoring.metrics.registry import MetricDef, Scored, register_metric
from evalkit.scoring.metrics.spec import MetricSpec


def _reference_nll(spec: MetricSpec, ex: Example, rec: Record) -> Scored:
    if not rec.ref_tokens:
        return math.nan, 0.0, "empty reference"
    return -(rec.ref_logprob or 0.0), float(rec.ref_tokens), None


def _choice(spec: MetricSpec, ex: Example, rec: Record) -> Scored:
    if not rec.choice_logprobs or ex.answer is None:
        return math.nan, 1.0, "no options scored"
    best = max(range(len(rec.choice_logprobs)), key=rec.choice_logprobs.__getitem__)
    return float(best == ex.answer), 1.0, None


def _choice_norm(spec: MetricSpec, ex: Example, rec: Record) -> Scored:
    # lm-evaluation-harness's acc_norm: the option with the highest log-likelihood per
    # unit of its length, the length taken in UTF-8 bytes of the option's text (not
    # tokens, so it does not depend on the tokenizer)
    if not rec.choice_logprobs or ex.answer is None:
        return math.nan, 1.0, "no options scored"
    lengths = [len(c.encode("utf-8")) for c in ex.choices]
    if len(lengths) != len(rec.choice_logprobs) or not all(lengths):
        return math.nan, 1.0, "an option has no text"
    normed = [lp / n for lp, n in zip(rec.choice_logprobs, lengths, strict=True)]
    best = max(range(len(normed)), key=normed.__getitem__)  # first of ties, as argmax
    return float(best == ex.answer), 1.0, None


def _rolling_nll(spec: MetricSpec, ex: Example, rec: Record) -> Scored:
    if not rec.n_tokens:
        return math.nan, 0.0, "empty text"
    return rec.nll or 0.0, float(rec.n_tokens), None


def _bits_per_byte(spec: MetricSpec, ex: Example, rec: Record) -> Scored:
    if not rec.n_tokens:
        return math.nan, 0.0, "empty text"
    # nats -> bits over UTF-8 bytes: comparable across tokenizers
    n_bytes = len((ex.text or "").encode("utf-8"))
    return (rec.nll or 0.0) / math.log(2), float(n_bytes), None


def _kl(spec: MetricSpec, ex: Example, rec: Record) -> Scored:
    if not rec.kl_tokens or rec.kl is None:
        return math.nan, 0.0, "empty text" if not rec.n_tokens else "no KL computed"
    return rec.kl, float(rec.kl_tokens), None


register_metric(
    MetricDef(
        "reference_perplexity",
        "loglikelihood",
        "lower",
        "perplexity",
        "reference perplexity",
        compute=_reference_nll,
        transform="exp",
        delta_kind="ratio",
        golden=True,
        needs_reference=True,
    )
)
register_metric(
    MetricDef(
        "choice_accuracy",
        "choice",
        "higher",
        "fraction",
        "accuracy (multiple choice)",
        compute=_choice,
        binary=True,
    )
)
register_metric(
    MetricDef(
        "choice_accuracy_norm",
        "choice",
        "higher",
        "fraction",
        "accuracy per byte (multiple choice)",
        compute=_choice_norm,
        binary=True,
    )
)
register_metric(
    MetricDef(
        "rolling_perplexity",
        "rolling",
        "lower",
        "perplexity",
        "perplexity",
        compute=_rolling_nll,
        transform="exp",
        delta_kind="ratio",
    )
)
# Bits per UTF-8 byte: the same NLL, but per byte and in bits, so it compares across
# tokenizers; the margin is an absolute change in bits per byte.
register_metric(
    MetricDef(
        "bits_per_byte",
        "rolling",
        "lower",
        "bits_per_byte",
        "bits per byte",
        compute=_bits_per_byte,
    )
)
# KL(base || variant) per token: how far the next-token distribution moved, whichever
# token is right. The base's own value is 0, so the delta is the KL itself.
register_metric(
    MetricDef(
        "kl_from_base",
        "rolling_kl",
        "lower",
        "nats_per_token",
        "KL(base‖variant) per token",
        compute=_kl,
    )
)
