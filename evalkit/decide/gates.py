"""Gates: the suite's release conditions checked against scores and comparisons, and the
exit code they add up to."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from evalkit.decide.proof import probe_comparisons, prove
from evalkit.decide.verdicts import Comparison
from evalkit.errors import EXIT_GATE_FAILED, EXIT_INFRA, EXIT_OK
from evalkit.plan.types import Plan
from evalkit.scoring.score import Scores


@dataclass(frozen=True)
class GateResult:
    name: str
    passed: bool
    severity: str
    detail: str
    # a gate on a judge that failed its calibration: neither pass nor fail (shown as a
    # warning, never fails the run)
    inconclusive: bool = False


@dataclass
class Decision:
    comparisons: list[Comparison] = field(default_factory=list)
    forgetting: dict[str, list[Comparison]] = field(default_factory=dict)
    gates: list[GateResult] = field(default_factory=list)


def apply_gates(
    plan: Plan,
    scores: Scores,
    comparisons: list[Comparison],
    flags: dict[str, list[Comparison]],
    unreliable: dict[tuple[str, str], str] | None = None,
) -> list[GateResult]:
    """The plan's gates. `unreliable`: (task, judge metric) -> why that judge is not
    trusted; its gates become "inconclusive: judge unreliable" (its error-rate gate still
    applies)."""
    results = []
    for gate in plan.gates:
        if gate.variant not in plan.variants:
            # `--variants` left it out: nothing to judge, and no reason to fail the run.
            detail = "not evaluated: variant not in this run"
            results.append(GateResult(gate.label, False, "warning", detail, True))
            continue
        why = (unreliable or {}).get((gate.task or "", gate.metric or ""))
        if why and gate.require != "max_judge_error_rate":
            results.append(GateResult(gate.label, False, "warning", f"inconclusive: {why}", True))
            continue
        if gate.require == "max_judge_error_rate":
            ms = scores[(gate.task or "", gate.metric or "", gate.variant)]
            n = len(ms.values)
            rate = (n - ms.n_scored) / n if n else 0.0
            threshold = gate.value if gate.value is not None else 0.0
            passed = rate <= threshold
            detail = (
                f"{gate.task}/{gate.metric}: {n - ms.n_scored} of {n} unscored "
                f"({rate:.1%}; max {threshold:.1%})"
            )
        elif gate.require == "no_forgetting" and gate.proof == "equivalence":
            passed, detail = prove(probe_comparisons(comparisons, gate.variant))
        elif gate.require == "no_forgetting":
            probes = flags.get(gate.variant, [])
            passed = not probes
            detail = (
                "no general probe regressed"
                if passed
                else "regressed: "
                + ", ".join(f"{c.task}/{c.metric.name} ({_fmt_delta(c)})" for c in probes)
            )
        elif gate.require in ("at_least", "at_most"):
            task = plan.task(gate.task or "")
            spec = task.metric(gate.metric or "") if task else None
            assert spec is not None, "gate references are checked when the plan is built"
            value = scores[(gate.task or "", spec.name, gate.variant)].aggregate(spec)
            threshold = gate.value if gate.value is not None else math.nan
            passed = (value >= threshold) if gate.require == "at_least" else (value <= threshold)
            detail = f"{gate.task}/{spec.name} = {value:.4g} (threshold {threshold:g})"
        else:
            comp = next(
                c
                for c in comparisons
                if c.variant == gate.variant
                and c.baseline == "base"
                and c.task == gate.task
                and c.metric.name == gate.metric
            )
            passed = (
                comp.verdict == "improved"
                if gate.require == "improved"
                else comp.verdict != "regressed"
            )
            detail = (
                f"{comp.verdict}: {_fmt_delta(comp)}, margin {comp.metric.margin:g}, "
                f"n={comp.stats.n}"
            )
            if gate.require == "not_regressed" and gate.proof == "equivalence":
                passed, detail = prove([comp], what="metric")
        results.append(GateResult(gate.label, bool(passed), gate.severity, detail))
    return results


def _fmt_delta(c: Comparison) -> str:
    s = c.stats
    if c.metric.delta_kind == "ratio":
        return f"{s.delta:+.1%} [{s.ci_low:+.1%}, {s.ci_high:+.1%}]"
    return f"{s.delta:+.3f} [{s.ci_low:+.3f}, {s.ci_high:+.3f}]"


def exit_code(gates: list[GateResult], integrity_failed: bool) -> int:
    if integrity_failed:
        return EXIT_INFRA
    if any(not g.passed and g.severity == "error" for g in gates):
        return EXIT_GATE_FAILED
    return EXIT_OK
