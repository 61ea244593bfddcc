"""Integrity checks: is each variant what it claims to be?

- adapter_applied: an adapter whose outputs equal the base's was never applied (or is all
  zeros); its scores would silently equal the base's.
- merge_agrees: a merged variant must compute what its adapter computes: top-1 agreement
  and the max / mean KL(adapter || merged) per token on probe text, within a tolerance that
  depends on the precision (fp32 merges agree to ~1e-9 nats; half precision and 4-bit
  bases round the merged weights, see `merge_tolerances`).
- base_matches: the base the adapter declares (adapter_config.json
  `base_model_name_or_path`, training_card.json `base_model` / `base_fingerprint`) is the
  suite's base.
- tokenizer_matches: an adapter saved with its own tokenizer must have the base's
  vocabulary and chat template (it was trained on the text that template produces).

An adapter whose LoRA shapes do not fit the base cannot be evaluated at all; that is bad
input, refused when the engine loads the adapter
(`evalkit.engines.adapter_shapes.check_lora_shapes`, exit code 2).
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evalkit.engines.base import Engine
from evalkit.engines.registry import capabilities_of
from evalkit.plan.types import IntegritySettings, Plan

log = logging.getLogger(__name__)

PROBE_TEXTS = (
    "The river rose after three days of rain, and the village moved its boats uphill.",
    "Question: What is seven times eight? Answer: fifty-six.",
    '{"type": "payment", "obligor": "Customer", "summary": "Invoices are due in 30 days."}',
)
# (max KL per token in nats, min top-1 agreement) a merge must meet, by precision. fp32:
# the demo's merges differ by max |Δlogit| 1e-4 (KL ~1e-9). Half precision rounds every
# merged weight to 8 or 11 bits; a 4-bit base is dequantised, merged and requantised,
# which moves logits by up to a few tenths.
MERGE_TOLERANCES = {"float32": (1e-3, 0.99), "half": (2e-2, 0.95), "4bit": (1e-1, 0.90)}


@dataclass(frozen=True)
class IntegrityResult:
    check: str
    variant: str
    passed: bool
    value: float
    tolerance: float
    detail: str


def merge_tolerances(settings: IntegritySettings) -> tuple[float, float]:
    """(max KL, min top-1 agreement) for merge_agrees: the suite's, or by the base's
    precision."""
    precision = "float32" if settings.dtype == "float32" else "half"
    key = "4bit" if settings.load_in_4bit else precision
    kl, agree = MERGE_TOLERANCES[key]
    return (settings.merge_kl_tolerance or kl, settings.merge_min_agreement or agree)


def _kl_stats(ref: Any, other: Any) -> tuple[float, float]:
    """Max and mean per-token KL(ref || other) between two logits arrays (tokens × vocab)."""
    import numpy as np

    def log_softmax(x: Any) -> Any:
        x = x.astype(np.float64)
        x = x - x.max(-1, keepdims=True)
        return x - np.log(np.exp(x).sum(-1, keepdims=True))

    lp, lq = log_softmax(ref), log_softmax(other)
    kl = np.clip((np.exp(lp) * (lp - lq)).sum(-1), 0.0, None)
    return float(kl.max()), float(kl.mean())


def check_variants(
    engine: Engine,
    variants: list[str],
    settings: IntegritySettings,
) -> list[IntegrityResult]:
    import numpy as np

    logits = {}
    for v in variants:
        with engine.variant(v):
            logits[v] = engine.probe_logits(list(PROBE_TEXTS))

    def compare(a: str, b: str) -> tuple[float, float, float, float]:
        pairs = list(zip(logits[a], logits[b], strict=True))
        diff = max(float(np.abs(x - y).max()) for x, y in pairs)
        agree = float(np.mean([(x.argmax(-1) == y.argmax(-1)).mean() for x, y in pairs]))
        kls = [_kl_stats(x, y) for x, y in pairs]
        weights = [x.shape[0] for x, _ in pairs]
        mean_kl = float(np.average([m for _, m in kls], weights=weights))
        return diff, agree, max(k for k, _ in kls), mean_kl

    kl_tol, agree_min = merge_tolerances(settings)
    results = []
    for v in variants:
        if v == "base":
            continue
        if v.startswith("merged:"):
            adapter = v.removeprefix("merged:")
            if adapter not in logits:
                with engine.variant(adapter):
                    logits[adapter] = engine.probe_logits(list(PROBE_TEXTS))
            diff, agree, max_kl, mean_kl = compare(adapter, v)
            ok = max_kl <= kl_tol and agree >= agree_min
            results.append(
                IntegrityResult(
                    "merge_agrees",
                    v,
                    ok,
                    max_kl,
                    kl_tol,
                    f"vs {adapter}: max KL {max_kl:.2e} (mean {mean_kl:.2e}) nats/token, "
                    f"top-1 agreement {agree:.1%} (min {agree_min:.0%}), "
                    f"max |Δlogit| {diff:.2e}"
                    + ("" if ok else ": the merged weights do not compute the adapter"),
                )
            )
        else:
            diff, agree, _, mean_kl = compare("base", v)
            applied = diff > settings.adapter_min_effect
            results.append(
                IntegrityResult(
                    "adapter_applied",
                    v,
                    applied,
                    diff,
                    settings.adapter_min_effect,
                    f"max |Δlogit| vs base {diff:.3g}, mean KL {mean_kl:.2e}, "
                    f"top-1 agreement {agree:.1%}"
                    + (
                        ""
                        if applied
                        else ": the adapter changes nothing (all-zero weights, or not applied)"
                    ),
                )
            )
    return results


# -- what an adapter declares ------------------------------------------------------------


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _model_key(spec: str) -> str:
    """A base's name without where it lives: `builtin:smollm2-135m-instruct`,
    `HuggingFaceTB/SmolLM2-135M-Instruct` and `/models/SmolLM2-135M-Instruct` all give
    `smollm2-135m-instruct`."""
    return re.split(r"[/\\:]", spec.rstrip("/\\"))[-1].lower()


def _same_model(declared: str, suite_base: str, base_root: Path | None) -> bool:
    if declared == suite_base or _model_key(declared) == _model_key(suite_base):
        return True
    paths = []
    for spec in (declared, suite_base):
        p = Path(spec) if Path(spec).is_absolute() or base_root is None else base_root / spec
        paths.append(p.resolve() if p.exists() else None)
    return paths[0] is not None and paths[0] == paths[1]


def check_base_match(
    adapters: dict[str, Path], suite_base: str, base_fingerprint: str, base_root: Path | None
) -> list[IntegrityResult]:
    """The base each adapter declares against the suite's base. A declared fingerprint in
    evalkit's own format (16 hex digits) decides; otherwise the declared name does."""
    results = []
    for name, path in adapters.items():
        declared = str(
            _read_json(path / "adapter_config.json").get("base_model_name_or_path") or ""
        )
        card = _read_json(path / "training_card.json")
        card_base = str(card.get("base_model") or "")
        card_fp = str(card.get("base_fingerprint") or "")
        if re.fullmatch(r"[0-9a-f]{16}", card_fp):
            ok = card_fp == base_fingerprint
            why = f"training card base fingerprint {card_fp}, suite base {base_fingerprint}"
        elif declared or card_base:
            names = [d for d in (declared, card_base) if d]
            ok = all(_same_model(d, suite_base, base_root) for d in names)
            why = f"declared base {' / '.join(sorted(set(names)))}, suite base {suite_base}"
        else:
            ok, why = True, "the adapter declares no base; nothing to compare"
        results.append(
            IntegrityResult(
                "base_matches",
                name,
                ok,
                0.0 if ok else 1.0,
                0.0,
                why + ("" if ok else ": the adapter was trained for another base"),
            )
        )
    return results


def check_tokenizer_match(adapters: dict[str, Path], tokenizer: Any) -> list[IntegrityResult]:
    """Adapters saved with a tokenizer: same vocabulary and chat template as the base's.
    Adapters without one use the base's tokenizer by construction and are not listed."""
    results = []
    for name, path in adapters.items():
        if not (path / "tokenizer_config.json").exists():
            continue
        from transformers import AutoTokenizer

        theirs = AutoTokenizer.from_pretrained(str(path))
        problems = []
        if theirs.get_vocab() != tokenizer.get_vocab():
            problems.append(f"vocabulary differs ({len(theirs)} vs {len(tokenizer)} tokens)")
        if (theirs.chat_template or "") != (tokenizer.chat_template or ""):
            problems.append("chat template differs")
        results.append(
            IntegrityResult(
                "tokenizer_matches",
                name,
                not problems,
                float(len(problems)),
                0.0,
                "; ".join(problems) if problems else "vocabulary and chat template match the base",
            )
        )
    return results


def failed(results: list[IntegrityResult]) -> bool:
    return any(not r.passed for r in results)


def run_checks(engine: Any, plan: Plan, adapters: dict[str, Path]) -> list[IntegrityResult]:
    """Every integrity check of a run, with the plan's integrity settings; `adapters`:
    the adapter directories the engine loaded."""
    settings = plan.integrity
    results = check_base_match(adapters, settings.base_model, engine.fingerprint("base"), plan.root)
    tokenizer = getattr(engine, "tokenizer", None)
    if tokenizer is not None:
        results += check_tokenizer_match(adapters, tokenizer)
    variants = plan.variants
    # what the backend cannot compute is skipped, and the log says so
    caps = capabilities_of(engine)
    if not caps.probe_logits:
        log.info("integrity: the %s engine gives no logits; variant checks skipped", engine.name)
        return results
    if not caps.merged:
        variants = [v for v in variants if not v.startswith("merged:")]
    results += check_variants(engine, variants, settings)
    return results
