"""The run profile (evalkit/profile.py) and the smoke run's share of judge labels."""

from __future__ import annotations

import time

from evalkit.profile import Profile, count, format_table, profiled, run_profile, timer
from evalkit.scoring.judges.calibrate import limit_labels
from evalkit.scoring.judges.core import Item


def test_stages_nest_and_counts_go_to_the_innermost() -> None:
    prof = Profile()
    with prof.activate():
        with timer("evaluate"):
            count("forward_tokens", 5)
            with timer("base · qa", requests=3) as row:
                count("forward_tokens", 10)
                count("generated_tokens", 4)
                time.sleep(0.02)
                row["note"] = 1
        with timer("outputs"):
            pass
    rows = prof.rows()
    assert [r["stage"] for r in rows] == ["evaluate", "base · qa", "outputs"]
    ev, qa, outputs = rows
    assert ev["forward_tokens"] == 5 and "parent" not in ev
    assert qa == {
        "stage": "base · qa",
        "seconds": qa["seconds"],
        "parent": "evaluate",
        "requests": 3,
        "forward_tokens": 10,
        "generated_tokens": 4,
        "note": 1,
    }
    assert ev["seconds"] >= qa["seconds"] >= 0.02
    table = format_table(rows, total_s=ev["seconds"] + outputs["seconds"])
    assert "  base · qa" in table and "gen tokens" in table and "total" in table.splitlines()[-1]


def test_without_a_profile_nothing_is_recorded() -> None:
    with timer("stage") as row:
        count("forward_tokens", 3)
    assert row == {} and run_profile() == []


def test_profiled_uses_the_callers_profile_or_its_own() -> None:
    @profiled
    def work() -> list[dict]:
        with timer("inner"):
            pass
        return run_profile()

    assert [r["stage"] for r in work()] == ["inner"]
    assert run_profile() == []  # its own profile is gone afterwards
    outer = Profile()
    with outer.activate():
        work()
        with timer("after"):
            pass
    assert [r["stage"] for r in outer.rows()] == ["inner", "after"]


def _labels(values: list[float]) -> list[tuple[Item, float]]:
    return [(Item(f"q{i}", (f"a{i}",)), v) for i, v in enumerate(values)]


def test_a_smoke_run_takes_n_labels_over_every_value() -> None:
    labels = _labels([5.0] * 8 + [4.0] * 8 + [3.0] * 12 + [2.0] * 12 + [1.0] * 8)  # the demo's
    picked = limit_labels(labels, 10)  # --limit 10
    assert len(picked) == 10
    assert {v for _, v in picked} == {1.0, 2.0, 3.0, 4.0, 5.0}
    # evenly over the 48 sorted by value (8 ones, 12 twos, 12 threes, 8 fours, 8 fives)
    assert sorted(v for _, v in picked) == [1, 1, 2, 2, 3, 3, 3, 4, 5, 5]
    assert picked == limit_labels(labels, 10)  # deterministic
    order = [int(it.question[1:]) for it, _ in picked]
    assert order == sorted(order)  # file order kept
    assert len(limit_labels(labels, 36)) == 36
    assert limit_labels(labels, 60) == labels  # more than there are: all of them
