"""The probe registry: the built-in names and margins as the suite schema and earlier
runs know them, and grouping by declared group, not by name."""

from __future__ import annotations

from typing import get_args

import pytest

from evalkit.plan import probes
from evalkit.plan.probes import registry as reg
from evalkit.plan.types import Example
from evalkit.scoring.metrics import metric_def
from evalkit.suite.config import BuiltinProbe


def test_names_and_margins_are_unchanged() -> None:
    assert probes.probe_names() == list(get_args(BuiltinProbe)) == list(probes.BUILTIN_PROBES)
    assert probes.DEFAULT_MARGINS == {
        "knowledge-mc": 0.05,
        "knowledge-open": 0.05,
        "prose-perplexity": 0.10,
        "prose-bpb": 0.03,
        "prose-kl": 0.15,
        "open-ended": 0.05,
        "open-overlap": 0.10,
    }


def test_groups_share_one_task_in_registration_order() -> None:
    tasks = probes.builtin_probes(["open-overlap", "prose-kl", "knowledge-mc", "prose-bpb"], {})
    assert [(t.name, [m.name for m in t.metrics]) for t in tasks] == [
        ("knowledge-mc", ["accuracy"]),
        ("prose-perplexity", ["bits_per_byte", "kl_from_base", "top1_agreement"]),
        ("open-ended", ["cross_answer_overlap"]),
    ]
    prose = tasks[1]
    assert [m.margin for m in prose.metrics] == [0.03, 0.15, 0.17]
    assert [m.unit for m in prose.metrics] == ["bits_per_byte", "nats_per_token", "fraction"]
    assert len(prose.examples) == len(list((probes.probe_data_dir() / "prose").glob("*.txt")))
    # a margin override applies to its probe's metrics only; length keeps its own
    (open_task,) = probes.builtin_probes(["open-ended"], {"open-ended": 0.2})
    assert [(m.name, m.margin) for m in open_task.metrics] == [
        ("distinct_2", 0.2),
        ("repeated_3gram_rate", 0.2),
        ("length_words", 0.5),
    ]


def test_a_probe_joins_its_declared_group_whatever_its_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(reg, "_GROUPS", dict(reg._GROUPS))
    monkeypatch.setattr(reg, "_PROBES", dict(reg._PROBES))
    reg.register_probe_group(
        reg.ProbeGroup("arith", "sums", lambda: [Example("s1", "1+1?", accepted=("2",))])
    )
    reg.register_probe(
        reg.ProbeDef(
            "sums-open", "arith", 0.1, lambda m: [metric_def("accepted_match").spec("accuracy", m)]
        )
    )
    # named like a prose probe, grouped with the open prompts: the group decides
    reg.register_probe(
        reg.ProbeDef(
            "prose-length",
            "open-ended",
            0.2,
            lambda m: [metric_def("length_words").spec("words", m)],
        )
    )
    tasks = reg.build_probes(["sums-open", "prose-length", "prose-kl"], {})
    assert [(t.name, [m.name for m in t.metrics]) for t in tasks] == [
        ("prose-perplexity", ["kl_from_base", "top1_agreement"]),
        ("open-ended", ["words"]),
        ("arith", ["accuracy"]),
    ]
    assert reg.probe_def("sums-open").needs() == {"generate"}
    with pytest.raises(ValueError, match="no probe group 'nowhere'"):
        reg.register_probe(reg.ProbeDef("x", "nowhere", 0.1, lambda m: []))
    with pytest.raises(ValueError, match="unknown probe nope"):
        reg.build_probes(["nope"], {})
