"""What a run on a served engine checks before it trusts the engine: that the plan asks for
nothing the engine cannot compute, and engine_parity against the local reference. Returns
the integrity results and the `engine` object for results.json."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from evalkit.decide.integrity import IntegrityResult
from evalkit.decide.parity import check_parity
from evalkit.errors import InputError


def refuse_unsupported(kind: str, needs: dict[str, set[str]]) -> None:
    """Exit 2 before any request when a task needs what the engine kind cannot give."""
    from evalkit.engines.registry import engine_kind

    caps = engine_kind(kind).capabilities
    missing = {
        "rolling_kl": caps.kl,
        "loglikelihood": caps.loglikelihood,
        "choice": caps.loglikelihood,
        "rolling": caps.rolling,
        "generate": caps.generate,
    }
    bad = sorted(t for t, n in needs.items() if any(not missing.get(x, True) for x in n))
    if bad:
        raise InputError(
            f"engine kind '{kind}' cannot compute what task(s) {', '.join(bad)} need "
            "(KL against the base needs full distributions, which a server does not return)",
            hint="Leave those probes out (e.g. probes.builtin without prose-kl), or use "
            "engine kind hf.",
        )


def served_checks(
    engine: Any, reference: Any, plan: Any, engine_cfg: Any, knowledge: Path
) -> tuple[list[IntegrityResult], dict[str, Any]]:
    """`knowledge`: the built-in knowledge probe data the parity texts are drawn from."""
    refuse_unsupported(engine_cfg.kind, {t.name: set(t.needs) for t in plan.tasks})
    results, figures = check_parity(
        engine, reference, list(plan.variants), engine_cfg.parity, knowledge
    )
    meta = {
        **engine.describe(),
        "prompt_logprobs": engine.alignment,  # as the parity check settled it
        "parity": {
            "tolerances": engine_cfg.parity.model_dump(),
            "variants": {f.variant: _finite(asdict(f)) for f in figures},
            "passed": all(r.passed for r in results),
        },
    }
    return results, meta


def _finite(d: dict[str, Any]) -> dict[str, Any]:
    """JSON has no infinity: a figure that could not be measured is null."""
    import math

    def fix(v: Any) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            return None
        return {k: fix(x) for k, x in v.items()} if isinstance(v, dict) else v

    return {k: fix(v) for k, v in d.items()}
