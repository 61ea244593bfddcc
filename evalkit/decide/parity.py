"""engine_parity: does a served engine compute what the suite declares?

On probe texts, each variant's per-token log-probabilities from the engine are compared
with transformers + peft computed here (fp32, the adapter unmerged): mean and max
|Δlogprob| and top-1 agreement, within tolerances the suite can set (`engine.parity`).
An engine that serves the base under an adapter's name, the wrong adapter, or an adapter
its prompt-logprob path ignores (vLLM #51594) misses them and the run exits 3 naming the
variant.

The first variant checked is the base, which also settles how the server aligns its
prompt logprobs (`aligned`, or `shifted` as llama-cpp-python 0.3.36's are): the reading
that matches transformers is kept, and one that matches neither fails the check.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evalkit.decide.integrity import PROBE_TEXTS, IntegrityResult
from evalkit.engines.openai_client import EngineServerError

log = logging.getLogger(__name__)


@dataclass
class ParityFigures:
    variant: str
    tokens: int
    mean_abs: float
    max_abs: float
    top1: float
    unreadable: int = 0  # tokens a shifted server's top-k did not cover
    readings: dict[str, float] = field(default_factory=dict)  # alignment -> mean |Δ| (base)


def probe_texts(n: int, knowledge: Path) -> list[str]:
    """n short texts: the integrity probes, then general-knowledge question/answer lines
    from the built-in probe data (`knowledge`: its knowledge.jsonl, spread over subjects)."""
    rows = [json.loads(line) for line in knowledge.read_text("utf-8").splitlines() if line.strip()]
    step = max(1, len(rows) // n)
    qa = [f"Question: {r['question']} Answer: {r['choices'][r['answer']]}." for r in rows[::step]]
    return (list(PROBE_TEXTS) + qa)[:n]


def _reference(ref: Any, seqs: list[list[int]]) -> list[tuple[list[float], list[int]]]:
    """(log p(token j | before), argmax id) for j >= 1 of each sequence, fp32."""
    import torch

    out = []
    with torch.inference_mode():
        for s in seqs:
            logits = ref.model(input_ids=torch.tensor([s], device=ref.device)).logits[0].float()
            logp = torch.log_softmax(logits, -1)
            target = torch.tensor(s[1:], device=logp.device)
            vals = logp[:-1].gather(1, target.unsqueeze(1)).squeeze(1)
            out.append(([float(v) for v in vals], [int(i) for i in logp[:-1].argmax(-1)]))
    return out


def _compare(
    engine: Any,
    answers: list[Any],
    seqs: list[list[int]],
    ref: list[tuple[list[float], list[int]]],
    alignment: str,
) -> tuple[list[float], int, int, int]:
    """|Δ| per readable token, top-1 matches, top-1 positions compared, unreadable tokens."""
    deltas: list[float] = []
    agree = compared = unreadable = 0
    first = engine._first_after(seqs, [1] * len(seqs)) if alignment == "shifted" else {}
    for c, s, (vals, argmax) in zip(answers, seqs, ref, strict=True):
        for j in range(1, len(s)):
            try:
                got = engine.read(c, s, j, alignment, first)
            except EngineServerError:
                unreadable += 1
                continue
            deltas.append(abs(got - vals[j - 1]))
            top = engine.top1(c, j, alignment)
            if top is not None:
                compared += 1
                agree += top == engine._piece(argmax[j - 1])
    return deltas, agree, compared, unreadable


def check_parity(
    engine: Any, reference: Any, variants: list[str], settings: Any, knowledge: Path
) -> tuple[list[IntegrityResult], list[ParityFigures]]:
    """engine_parity for each variant (the base first) on `probe_texts`; `settings` is the
    suite's ParityConfig. Sets `engine.alignment` when it was `auto`."""
    tok = reference.tokenizer
    sep = int(tok.eos_token_id)
    seqs = [
        [sep, *tok(t, add_special_tokens=False)["input_ids"]]
        for t in probe_texts(settings.texts, knowledge)
    ]
    order = ["base"] + [v for v in variants if v != "base"]
    results: list[IntegrityResult] = []
    figures: list[ParityFigures] = []
    for v in order:
        with reference.variant(v):
            ref = _reference(reference, seqs)
        with engine.variant(v):
            answers = engine.echo(seqs)
            readings: dict[str, float] = {}
            if engine.alignment == "auto":
                for a in ("aligned", "shifted"):
                    d, _, _, _ = _compare(engine, answers, seqs, ref, a)
                    readings[a] = sum(d) / len(d) if d else float("inf")
                engine.alignment = min(readings, key=lambda a: readings[a])
                log.info("prompt logprobs read %s (mean |Δ| %s)", engine.alignment, readings)
            deltas, agree, compared, unreadable = _compare(
                engine, answers, seqs, ref, engine.alignment
            )
        n = len(deltas)
        fig = ParityFigures(
            v,
            n,
            sum(deltas) / n if n else float("inf"),
            max(deltas) if n else float("inf"),
            agree / compared if compared else 0.0,
            unreadable,
            readings,
        )
        figures.append(fig)
        ok = (
            fig.mean_abs <= settings.max_mean_abs
            and fig.max_abs <= settings.max_abs
            and fig.top1 >= settings.min_top1
            # a shifted server's values exist only inside its top-k: rare tokens drop out
            and unreadable <= n
        )
        detail = (
            f"vs transformers + peft (fp32) on {len(seqs)} texts, {n} tokens: mean |Δlogprob| "
            f"{fig.mean_abs:.3g} (max {settings.max_mean_abs:g}), max {fig.max_abs:.3g} "
            f"(max {settings.max_abs:g}), top-1 agreement {fig.top1:.1%} "
            f"(min {settings.min_top1:.0%})"
            + (f", {unreadable} tokens outside the server's top-k" if unreadable else "")
            + f"; prompt logprobs read {engine.alignment}"
            + (
                ""
                if ok
                else f": the engine does not compute variant '{v}' as declared (an adapter "
                "dropped or swapped, another base, or misaligned logprobs)"
            )
        )
        results.append(
            IntegrityResult("engine_parity", v, ok, fig.mean_abs, settings.max_mean_abs, detail)
        )
        if v == "base" and not ok:
            break  # nothing else can be trusted against a base that does not match
    return results, figures
