"""The engine stage: run every request the plan needs, for every variant, and return
records. One variant is active at a time. Within it, every generation task's prompts go to
the engine as one request (a reference log-likelihood with its prompt, see
evalkit.engines.generations), then each task's other requests as one batch, so the
backend can sort and pad them well."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext

from evalkit.engines.base import (
    OPEN_SHIFT_TOP_K,
    ChatPrompt,
    Engine,
    Generated,
    Generation,
    LogLikelihood,
    Progress,
)
from evalkit.engines.generations import run_generations
from evalkit.engines.records import Record
from evalkit.engines.registry import capabilities_of
from evalkit.plan.types import Plan, TaskPlan
from evalkit.profile import timer

# an engine that returned a generation without the score of the reference it was given
_NOT_RETURNED = LogLikelihood(float("nan"), 0, "the engine returned no reference score")

# (description, total units) -> a context manager yielding an advance(n) callback
ProgressFactory = Callable[[str, int], AbstractContextManager[Progress]]


def evaluate(plan: Plan, engine: Engine, progress: ProgressFactory) -> list[Record]:
    """Records for every (variant, task, example) in the plan."""
    records: list[Record] = []
    with timer("evaluate"):
        for variant in plan.variants:
            with engine.variant(variant):
                generated = _generate(plan.tasks, variant, engine, progress)
                for task in plan.tasks:
                    with timer(f"{variant} · {task.name}", requests=len(task.examples)):
                        records.extend(
                            _run_task(task, variant, engine, progress, generated.get(task.name))
                        )
    return records


def _generates(task: TaskPlan) -> bool:
    return bool(task.needs & {"generate", "open_shift"})


def _generations(task: TaskPlan) -> list[Generation] | None:
    """What a task asks the engine to generate (None: nothing); a task that also scores
    its reference asks for it with the prompt."""
    if not _generates(task):
        return None
    scored = "loglikelihood" in task.needs
    return [
        Generation(
            ChatPrompt(ex.prompt, task.system),
            task.max_new_tokens,
            task.stop,
            (ex.reference or "") if scored else None,
        )
        for ex in task.examples
    ]


def generation_requests(tasks: list[TaskPlan]) -> dict[str, list[Generation]]:
    """The generation tasks' requests, by task name, in plan order."""
    return {t.name: g for t in tasks if (g := _generations(t)) is not None}


def _generate(
    tasks: list[TaskPlan], variant: str, engine: Engine, progress: ProgressFactory
) -> dict[str, list[Generated]]:
    """Every generation task's outputs for the active variant, from one engine request."""
    asked = generation_requests(tasks)
    n = sum(len(gens) for gens in asked.values())
    if not n:
        return {}
    with (
        timer(f"{variant} · generation", requests=n),
        progress(f"{variant} · generation", n) as advance,
    ):
        outputs = run_generations(engine, list(asked.values()), advance)
    return dict(zip(asked, outputs, strict=True))


def variant_units(tasks: list[TaskPlan]) -> int:
    """The progress units of one variant's requests: its generations, then each task's
    other stages."""
    return sum(len(t.examples) * _generates(t) + _units(t, _generates(t)) for t in tasks)


def _ignore(n: int) -> None:
    pass


def _units(task: TaskPlan, generated: bool) -> int:
    # rolling_kl's pass also yields the rolling NLL: one stage, not two
    stages = task.needs - {"rolling"} if "rolling_kl" in task.needs else task.needs
    if generated:  # the answers (and the reference with them) came from the generation
        stages = stages - {"generate", "loglikelihood"}
    return len(task.examples) * len(stages)


def _run_task(
    task: TaskPlan,
    variant: str,
    engine: Engine,
    progress: ProgressFactory,
    generated: list[Generated] | None,
) -> Iterator[Record]:
    recs = {ex.id: Record(task.name, ex.id, variant) for ex in task.examples}
    prompts = [ChatPrompt(ex.prompt, task.system) for ex in task.examples]
    units = _units(task, generated is not None)
    # a task whose every request came from the generation gets no bar of its own
    bar = progress(f"{variant} · {task.name}", units) if units else nullcontext(_ignore)
    with bar as advance:
        for ex, gen in zip(task.examples, generated or [], strict=bool(generated)):
            recs[ex.id].output = gen.text
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
            if generated is not None:
                lls = [g.reference or _NOT_RETURNED for g in generated]
            else:
                pairs = [
                    (p, ex.reference or "") for p, ex in zip(prompts, task.examples, strict=True)
                ]
                lls = list(engine.loglikelihood(pairs, progress=advance))
            for ex, ll in zip(task.examples, lls, strict=True):
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
