"""A small run for the scripted engine: a plan built in code (no suite file, no model) and
a table of what each variant answers, chosen so every verdict and gate outcome occurs.

- golden task `qa` (40 items, exact match against "yes"): base right on items 0-9, `good`
  on 0-35, `bad` on 0-1, `same` on the base's 0-9, `mixed` on 5-16 (5 lost, 7 gained).
- probe `mc` (40 two-option items, answer 0): base and `good` right on 30, `bad` on 5.
- probe `prose` (30 documents, 10 tokens each): `bad` has 1.5x the base's NLL per document
  and a KL of 0.9 nats per token; `good` the base's NLL and a KL of 0.01.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from evalkit.engines.evaluate import evaluate
from evalkit.engines.records import Record
from evalkit.engines.scripted import ScriptedEngine
from evalkit.plan.types import Example, Plan, TaskPlan
from evalkit.scoring.metrics import metric_def
from evalkit.scoring.score import Scores, score

REPO_ROOT = Path(__file__).resolve().parents[1]
N_QA, N_MC, N_DOCS = 40, 40, 30
VARIANTS = ["base", "good", "bad", "same", "mixed"]
RIGHT_QA = {
    "base": range(10),
    "good": range(36),
    "bad": range(2),
    "same": range(10),
    "mixed": range(5, 17),
}
RIGHT_MC = {"base": 30, "good": 30, "bad": 5, "same": 30, "mixed": 30}
NLL_SCALE = {"base": 1.0, "good": 1.0, "bad": 1.5, "same": 1.0, "mixed": 1.0}
KL_PER_TOKEN = {"base": 0.0, "good": 0.01, "bad": 0.9, "same": 0.0, "mixed": 0.0}


def no_progress(description: str, total: int) -> Any:
    from contextlib import nullcontext

    return nullcontext(lambda n: None)


def make_plan(variants: list[str] | None = None) -> Plan:
    qa = TaskPlan(
        "qa",
        "golden",
        "",
        [Example(id=f"qa{i:02d}", prompt=f"question {i}?", reference="yes") for i in range(N_QA)],
        [metric_def("exact_match").spec("exact_match", 0.05, label="exact match")],
    )
    mc = TaskPlan(
        "mc",
        "probe",
        "",
        [
            Example(id=f"mc{i:02d}", prompt=f"pick {i}", choices=("right", "wrong"), answer=0)
            for i in range(N_MC)
        ],
        [metric_def("choice_accuracy").spec("accuracy", 0.05)],
    )
    prose = TaskPlan(
        "prose",
        "probe",
        "",
        [Example(id=f"doc{i:02d}", text=f"document number {i}.") for i in range(N_DOCS)],
        [
            metric_def("rolling_perplexity").spec("perplexity", 0.10),
            metric_def("kl_from_base").spec("kl_from_base", 0.15),
        ],
    )
    return Plan(variants or list(VARIANTS), [qa, mc, prose])


def doc_nll(i: int) -> float:
    """The base's NLL of document i (nats over its 10 tokens): 20 to 34.5."""
    return 20.0 + 0.5 * i


def table(variants: list[str] | None = None) -> dict[str, dict[str, Any]]:
    """The scripted table, keyed by example id (use ScriptedEngine.for_plan)."""
    out: dict[str, dict[str, Any]] = {}
    for v in variants or VARIANTS:
        outputs = {f"qa{i:02d}": "yes" if i in RIGHT_QA[v] else "no" for i in range(N_QA)}
        lls = {
            f"mc{i:02d}": {"right": [-1.0, 1], "wrong": [-3.0 if i < RIGHT_MC[v] else 0.0, 1]}
            for i in range(N_MC)
        }
        rolling = {
            f"doc{i:02d}": [doc_nll(i) * NLL_SCALE[v], 10, KL_PER_TOKEN[v] * 10, 10]
            for i in range(N_DOCS)
        }
        out[v] = {"outputs": outputs, "loglikelihoods": lls, "rolling": rolling}
    return out


def run(plan: Plan | None = None) -> tuple[Plan, ScriptedEngine, list[Record], Scores]:
    plan = plan or make_plan()
    engine = ScriptedEngine.for_plan(plan, table())
    records = evaluate(plan, engine, no_progress)
    return plan, engine, records, score(plan, records)
