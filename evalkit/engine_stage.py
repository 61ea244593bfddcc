"""The engine stage of a one-process run: the engine, and for an engine that is not `hf`
its local transformers + peft reference (`engine.reference`), the integrity checks and
engine_parity (evalkit.decide.served).

- `hf`: the engine is its own reference.
- a served engine, default: an hf reference on the base's device and dtype (fp32 unless
  the suite says otherwise); `engine.reference: {device: cuda, dtype: bfloat16}` moves it.
- `engine.reference: skip`: no reference. The checks that compare full logits and
  engine_parity are skipped with the reason, the adapter and tokenizer checks that read
  files still run, and the run warns before it starts and in its report.

Adapters that train the head or the embeddings get a warning before the run on engine
kinds known to score them wrong (evalkit.decide.adapter_risks).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evalkit.decide.integrity import IntegrityResult, run_checks
from evalkit.decide.served import SkippedCheck
from evalkit.engines.base import Progress
from evalkit.plan.types import Plan
from evalkit.profile import timer
from evalkit.suite.loader import Suite

log = logging.getLogger(__name__)

LOG_NEEDS = {"loglikelihood", "choice", "rolling"}  # what prompt logprobs serve


@dataclass
class EngineStage:
    """What the engine stage hands the rest of the run."""

    engine: Any
    integrity: list[IntegrityResult]
    skipped: list[SkippedCheck] = field(default_factory=list)
    meta: dict[str, Any] | None = None  # results.json's `engine` object (not for hf)
    warnings: list[str] = field(default_factory=list)  # also printed before the run


def check_reference(suite: Suite, plan: Plan) -> None:
    """`engine.reference` against the rest of the suite, at validate (exit 2, its line)."""
    eng = suite.config.engine
    ref = eng.reference
    if eng.kind == "hf" and (ref.skip or ref.device or ref.dtype):
        raise suite.error(
            ("engine", "reference"),
            "engine.reference applies to served engines; the hf engine is its own reference",
            hint="Remove engine.reference, or set base.device / base.dtype for the hf engine.",
        )
    needing = sorted({t.name for t in plan.tasks if set(t.needs) & LOG_NEEDS})
    if ref.skip and eng.prompt_logprobs == "auto" and needing:
        raise suite.error(
            ("engine", "reference"),
            "with reference: skip nothing settles how the server aligns its prompt logprobs "
            f"(prompt_logprobs: auto), and task(s) {', '.join(needing)} need log-likelihoods",
            hint="Set engine.prompt_logprobs: aligned (vLLM, SGLang) or shifted "
            "(llama-cpp-python), or keep a reference.",
        )


def reference_request(request: Any, ref: Any) -> Any:
    """The hf reference's EngineRequest: the base's, with the reference's device and dtype
    where `engine.reference` sets them."""
    changes = {k: v for k, v in (("device", ref.device), ("dtype", ref.dtype)) if v}
    return dataclasses.replace(request, **changes)


def _need_cuda(suite: Suite, device: str) -> None:
    if device != "cuda":
        return
    import torch

    if not torch.cuda.is_available():
        raise suite.error(
            ("engine", "reference", "device"),
            "engine.reference.device is cuda, and no CUDA device is visible here",
            hint="Run on a machine with a GPU (check CUDA_VISIBLE_DEVICES), or set "
            "engine.reference.device: cpu.",
        )


def base_fingerprint(request: Any) -> str:
    """The base's fingerprint as the hf engine computes it (its config and safetensors
    files), without loading it: base_matches compares an adapter's training card with it."""
    from evalkit.engines.resolve import model_fingerprint, resolve_model

    return model_fingerprint(resolve_model(request.base, relative_to=request.relative_to))


def _warn_before_run(kind: str, skip: bool, adapters: dict[str, Path]) -> list[str]:
    from evalkit.decide.adapter_risks import adapter_risk_warnings

    warnings = adapter_risk_warnings(kind, adapters)
    if skip:
        warnings.insert(
            0,
            "engine.reference is skip: the served engine is NOT checked against transformers "
            "+ peft (no engine_parity, adapter_applied or merge_agrees); a server that drops "
            "or swaps an adapter, or misreads its logprobs, will go unnoticed",
        )
    for w in warnings:
        log.warning("%s", w)
    return warnings


def engine_stage(
    suite: Suite,
    plan: Plan,
    request: Any,
    adapter_paths: dict[str, Path],
    progress: Any,
) -> EngineStage:
    """Load the engine (and its reference) and run the integrity checks."""
    from evalkit.engines.registry import create_engine

    cfg = suite.config.engine
    kind = cfg.kind
    ref_cfg = cfg.reference
    warnings = _warn_before_run(kind, ref_cfg.skip and kind != "hf", adapter_paths)
    ref_request = reference_request(request, ref_cfg)
    if kind != "hf" and not ref_cfg.skip:
        _need_cuda(suite, ref_request.device)
    bar: Progress
    with timer("load"), progress("loading model", 1) as bar:
        engine: Any = create_engine(kind, request)
        reference: Any = None
        if kind == "hf":
            reference = engine
        elif not ref_cfg.skip:
            reference = create_engine("hf", ref_request)
        bar(1)
    with timer("integrity"):
        if kind == "hf":
            return EngineStage(engine, run_checks(engine, plan, adapter_paths), warnings=warnings)
        if reference is None:
            return _without_reference(engine, plan, request, adapter_paths, warnings, cfg)
        # the integrity checks run on the reference; engine_parity compares the two
        from evalkit.decide.served import served_checks
        from evalkit.plan.probes import probe_data_dir

        integrity = run_checks(reference, plan, adapter_paths)
        where = {"device": str(reference.device), "dtype": ref_request.dtype}
        knowledge = probe_data_dir() / "knowledge.jsonl"
        parity, meta = served_checks(engine, reference, plan, cfg, knowledge, where)
        return EngineStage(engine, integrity + parity, meta=meta, warnings=warnings)


def _without_reference(
    engine: Any,
    plan: Plan,
    request: Any,
    adapter_paths: dict[str, Path],
    warnings: list[str],
    cfg: Any,
) -> EngineStage:
    """`reference: skip`: the checks that read the adapters' files, against the base's
    fingerprint and the client-side tokenizer; the rest skipped with the reason."""
    from evalkit.decide.integrity import check_base_match, check_tokenizer_match
    from evalkit.decide.served import unchecked

    settings = plan.integrity
    integrity = check_base_match(
        adapter_paths, settings.base_model, base_fingerprint(request), plan.root
    )
    integrity += check_tokenizer_match(adapter_paths, engine.tokenizer)
    skipped, meta = unchecked(engine, plan, cfg)
    return EngineStage(engine, integrity, skipped, meta, warnings)
