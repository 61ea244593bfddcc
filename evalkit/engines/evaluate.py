"""The engine stage: run every request the plan needs, for every variant, and return
records. One variant is active at a time; within it, each task's requests go to the engine
as one batch so the backend can sort and pad them well."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager

from evalkit.engines.base import OPEN_SHIFT_TOP_K, ChatPrompt, Engine, Progress
from evalkit.engines.records import Record
from evalkit.engines.registry import capabilities_of
from evalkit.plan.types import Plan, TaskPlan
from evalkit.profile import timer

# (description, total units) -> a context manager yielding an advance(n) callback
ProgressFactory = Callable[[str, int], AbstractContextManager[Progress]]


def evaluate(plan: Plan, engine: Engine, progress: ProgressFactory) -> list[Record]:
    """Records for every (variant, task, example) in the plan."""
    records: list[Record] = []
    with timer("evaluate"):
        for variant in plan.variants:
            with engine.variant(variant):
                for task in plan.tasks:
                    with timer(f"{variant} · {task.name}", requests=len(task.examples)):
                        records.extend(_run_task(task, variant, engine, progress))
    return records


def _units(task: TaskPlan) -> int:
    # rolling_kl's pass also yields the rolling NLL: one stage, not two
    stages = task.needs - {"rolling"} if "rolling_kl" in task.needs else task.needs
    if "open_shift" in stages:  # the answers are generated first
        stages = stages | {"generate"}
    return len(task.examples) * len(stages)


def _run_task(
    task: TaskPlan, variant: str, engine: Engine, progress: ProgressFactory
) -> Iterator[Record]:
    recs = {ex.id: Record(task.name, ex.id, variant) for ex in task.examples}
    prompts = [ChatPrompt(ex.prompt, task.system) for ex in task.examples]
    with progress(f"{variant} · {task.name}", _units(task)) as advance:
        if "generate" in task.needs or "open_shift" in task.needs:
            outputs = engine.generate(
                prompts, max_new_tokens=task.max_new_tokens, stop=task.stop, progress=advance
            )
            for ex, out in zip(task.examples, outputs, strict=True):
                recs[ex.id].output = out
        if "open_shift" in task.needs:
            # an engine without it leaves the fields empty: the metric is unscored, saying so
            if capabilities_of(engine).open_shift:
                # a spec may name its k (one open-shift metric per task)
                spec = next(m for m in task.metrics if m.needs == "open_shift")
                k = int(spec.params.get("k", OPEN_SHIFT_TOP_K))
                pairs = [
                    (p, recs[ex.id].output or "")
                    for p, ex in zip(prompts, task.examples, strict=True)
                ]
                shifts = engine.base_topk_shift(pairs, k=k, progress=advance)
                for ex, sh in zip(task.examples, shifts, strict=True):
                    recs[ex.id].shift_outside, recs[ex.id].shift_tokens = sh.outside, sh.n_tokens
            else:
                advance(len(task.examples))
        # A result with a reason is one the engine could not compute (a server without
        # prompt logprobs, a token outside its top-k): the record keeps the reason and no
        # value, and the metrics that need it are unscored with that reason.
        if "loglikelihood" in task.needs:
            pairs = [(p, ex.reference or "") for p, ex in zip(prompts, task.examples, strict=True)]
            for ex, ll in zip(
                task.examples, engine.loglikelihood(pairs, progress=advance), strict=True
            ):
                rec = recs[ex.id]
                rec.ref_tokens = ll.n_tokens
                if ll.reason:
                    rec.mark_unscored("loglikelihood", ll.reason)
                else:
                    rec.ref_logprob = ll.logprob
        if "choice" in task.needs:
            reqs = [
                (p, c) for p, ex in zip(prompts, task.examples, strict=True) for c in ex.choices
            ]
            scores = iter(engine.loglikelihood(reqs))
            for ex in task.examples:
                options = [next(scores) for _ in ex.choices]
                why = next((o.reason for o in options if o.reason), None)
                if why:
                    recs[ex.id].mark_unscored("choice", why)
                else:
                    recs[ex.id].choice_logprobs = [o.logprob for o in options]
            advance(len(task.examples))
        if "rolling_kl" in task.needs:  # one pass gives the NLL and the KL
            texts = [ex.text or "" for ex in task.examples]
            for ex, rs in zip(
                task.examples, engine.rolling_kl(texts, progress=advance), strict=True
            ):
                rec = recs[ex.id]
                rec.n_tokens, rec.kl_tokens = rs.n_tokens, rs.kl_tokens
                if rs.reason:
                    rec.mark_unscored("rolling", rs.reason)
                else:
                    rec.nll = rs.nll
                if rs.kl_reason:
                    rec.mark_unscored("rolling_kl", rs.kl_reason)
                else:
                    rec.kl, rec.top1 = rs.kl, rs.top1
        elif "rolling" in task.needs:
            texts = [ex.text or "" for ex in task.examples]
            for ex, ll in zip(
                task.examples, engine.rolling_nll(texts, progress=advance), strict=True
            ):
                recs[ex.id].n_tokens = ll.n_tokens
                if ll.reason:
                    recs[ex.id].mark_unscored("rolling", ll.reason)
                else:
                    recs[ex.id].nll = ll.logprob
    yield from recs.values()
