"""Baselines on scripted runs: scores.json written and read back, a candidate compared
with a baseline run by example id with the same statistics as against the base, and a
baseline whose data differ refused before anything runs."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from evalkit.decide.baseline import prepare_baseline, run_fingerprints, write_scores
from evalkit.decide.verdicts import compare
from evalkit.errors import InputError
from tests.scripted_run import make_plan, run


def _write_run(out: Path, variants: list[str]) -> Path:
    plan, engine, _, scores = run(make_plan(variants))
    out.mkdir()
    fps = run_fingerprints(plan, "suite-sha", {v: engine.fingerprint(v) for v in variants})
    write_scores(out, plan, scores, fps)
    return out


def test_candidate_against_baseline_matches_against_base(tmp_path: Path) -> None:
    # baseline run: base and good; candidate: base and bad
    before = _write_run(tmp_path / "before", ["base", "good"])
    plan, engine, _, scores = run(make_plan(["base", "bad"]))
    stage = prepare_baseline(before, plan, "suite-sha")
    fps = run_fingerprints(plan, "suite-sha", {v: engine.fingerprint(v) for v in plan.variants})
    comps, meta = stage.compare(plan, scores, fps)
    assert meta["pairs"] == [["base", "base"]]
    assert meta["notes"] == []  # same suite, same base
    by = {(c.task, c.metric.name): c for c in comps}
    assert {c.baseline for c in comps} == {"baseline:base"}
    # the base against its own earlier run: nothing moved
    assert all(c.verdict == "equivalent" for c in comps)
    assert by[("qa", "exact_match")].stats.delta == 0.0
    # a variant against a baseline variant of the same name is compared like against base
    renamed = _write_run(tmp_path / "renamed", ["base", "good"])
    plan2, engine2, _, scores2 = run(make_plan(["base", "good"]))
    tab_scores = dict(scores2)
    bad_plan, _, _, bad_scores = run(make_plan(["base", "bad"]))
    for key, ms in bad_scores.items():  # the candidate's `good` answers as `bad` does
        if key[2] == "bad":
            tab_scores[(key[0], key[1], "good")] = ms
    comps2, _ = prepare_baseline(renamed, plan2, "suite-sha").compare(
        plan2, tab_scores, run_fingerprints(plan2, "suite-sha", {"base": "x"})
    )
    good = {(c.task, c.metric.name): c for c in comps2 if c.variant == "good"}
    direct = {
        (c.task, c.metric.name): c
        for c in compare(make_plan(["base", "bad"]), _as_base(scores2, bad_scores))
    }
    assert sorted(good) == [
        ("mc", "accuracy"),
        ("prose", "kl_from_base"),
        ("prose", "perplexity"),
        ("qa", "exact_match"),
    ]
    assert good[("qa", "exact_match")].verdict == "regressed"
    for key, c in good.items():
        assert c.verdict == direct[key].verdict, key
        assert c.stats.delta == pytest.approx(direct[key].stats.delta), key


def _as_base(good_scores: dict, bad_scores: dict) -> dict:
    """`good`'s scores as the base of a plan whose other variant is `bad`."""
    out = {}
    for (task, metric, v), ms in good_scores.items():
        if v == "good":
            out[(task, metric, "base")] = ms
    for (task, metric, v), ms in bad_scores.items():
        if v == "bad":
            out[(task, metric, "bad")] = ms
    return out


def test_a_baseline_with_other_data_is_refused(tmp_path: Path) -> None:
    before = _write_run(tmp_path / "before", ["base", "good"])
    plan = make_plan(["base", "good"])
    qa = plan.tasks[0]
    reworded = dataclasses.replace(
        qa, examples=[dataclasses.replace(e, prompt=e.prompt + " ") for e in qa.examples]
    )
    changed = dataclasses.replace(plan, tasks=[reworded, *plan.tasks[1:]])
    with pytest.raises(InputError, match="task 'qa': data differ"):
        prepare_baseline(before, changed, "suite-sha")
    forced = prepare_baseline(before, changed, "other-sha", force=True)
    assert forced.notes == [
        "the suite files differ (tasks with equal data and settings are compared)",
        "forced: task 'qa': data differ",
    ]
