"""What a run on a served engine checks before it trusts the engine: that the plan asks for
nothing the engine cannot compute, and engine_parity against the local reference. Returns
the integrity results and the `engine` object for results.json; without a reference
(`engine.reference: skip`), the checks it would have made, each skipped with the reason."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from evalkit.decide.integrity import IntegrityResult
from evalkit.decide.parity import check_parity
from evalkit.errors import InputError


def refuse_unsupported(kind: str, needs: dict[str, set[str]]) -> None:
    """Exit 2 before any request when a task needs what the engine kind cannot compute at
    all (a config error). What a served engine cannot compute for some texts or on some
    servers (prompt logprobs refused, a token outside a shifted server's top-k, chat
    completions) is not refused: those metrics are unscored with the reason. The KL probe
    runs on served engines, approximated from top-k logprobs (a lower bound)."""
    from evalkit.engines.registry import engine_kind

    caps = engine_kind(kind).capabilities
    can = {
        "rolling_kl": caps.kl,
        "loglikelihood": caps.loglikelihood,
        "choice": caps.loglikelihood,
        "rolling": caps.rolling,
        "generate": caps.generate,
    }
    bad = {t: sorted(x for x in n if not can.get(x, True)) for t, n in needs.items()}
    bad = {t: x for t, x in bad.items() if x}
    if bad:
        which = "; ".join(f"{t} ({', '.join(x)})" for t, x in sorted(bad.items()))
        raise InputError(
            f"engine kind '{kind}' cannot compute what these tasks need: {which}",
            hint="Leave those tasks or probes out, or use engine kind hf.",
        )


@dataclass(frozen=True)
class SkippedCheck:
    """An integrity check this run did not make, and why (`engine.reference: skip`)."""

    check: str
    variant: str
    reason: str


def served_checks(
    engine: Any,
    reference: Any,
    plan: Any,
    engine_cfg: Any,
    knowledge: Path,
    reference_info: dict[str, Any] | None = None,
) -> tuple[list[IntegrityResult], dict[str, Any]]:
    """`knowledge`: the built-in knowledge probe data the parity texts are drawn from;
    `reference_info`: where the reference ran (device, dtype), for results.json."""
    refuse_unsupported(engine_cfg.kind, {t.name: set(t.needs) for t in plan.tasks})
    results, figures = check_parity(
        engine, reference, list(plan.variants), engine_cfg.parity, knowledge
    )
    verdicts = {r.variant: r.passed for r in results}
    meta = {
        **engine.describe(),
        "prompt_logprobs": engine.alignment,  # as the parity check settled it
        "reference": {"skip": False, **(reference_info or {})},
        "parity": {
            "tolerances": engine_cfg.parity.model_dump(),
            "variants": {
                f.variant: {**_finite(asdict(f)), "passed": verdicts.get(f.variant)}
                for f in figures
            },
            "passed": all(r.passed for r in results),
        },
    }
    return results, meta


SKIP_REASON = (
    "engine.reference is skip: no local transformers + peft reference was built, so the "
    "served engine's figures were not checked against one"
)


def unchecked(engine: Any, plan: Any, engine_cfg: Any) -> tuple[list[SkippedCheck], dict[str, Any]]:
    """A served run without a reference (`engine.reference: skip`): the checks that need
    one (engine_parity for every variant, adapter_applied and merge_agrees, which compare
    full logits), each skipped with the reason, and the `engine` object for results.json."""
    refuse_unsupported(engine_cfg.kind, {t.name: set(t.needs) for t in plan.tasks})
    skipped = [SkippedCheck("engine_parity", v, SKIP_REASON) for v in plan.variants]
    skipped += [
        SkippedCheck("merge_agrees" if v.startswith("merged:") else "adapter_applied", v,
                     SKIP_REASON)
        for v in plan.variants
        if v != "base"
    ]  # fmt: skip
    meta = {
        **engine.describe(),
        "prompt_logprobs": engine.alignment,
        "reference": {"skip": True, "reason": SKIP_REASON},
        "parity": None,
    }
    return skipped, meta


def _finite(d: dict[str, Any]) -> dict[str, Any]:
    """JSON has no infinity: a figure that could not be measured is null."""
    import math

    def fix(v: Any) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            return None
        return {k: fix(x) for k, x in v.items()} if isinstance(v, dict) else v

    return {k: fix(v) for k, v in d.items()}
