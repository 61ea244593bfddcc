"""Integrity checks ask the engine's capabilities: a backend without logits has its
variant checks skipped (not failed, not faked); with logits they run as for a model."""

from __future__ import annotations

import logging

import pytest

from evalkit.decide.integrity import run_checks
from evalkit.engines.registry import EngineCapabilities
from evalkit.engines.scripted import ScriptedEngine
from evalkit.plan.types import IntegritySettings, Plan

SETTINGS = IntegritySettings(base_model="scripted")


def plan(variants: list[str]) -> Plan:
    return Plan(variants, integrity=SETTINGS)


def _table(logits: dict[str, list[list[float]]] | None) -> dict:
    variants = ["base", "legal", "merged:legal"]
    return {v: ({"logits": logits[v]} if logits else {}) for v in variants}


def test_no_logits_skips_the_variant_checks(caplog: pytest.LogCaptureFixture) -> None:
    engine = ScriptedEngine(_table(None))
    with caplog.at_level(logging.INFO, logger="evalkit.decide.integrity"):
        results = run_checks(engine, plan(["base", "legal"]), {})
    assert results == []
    assert "gives no logits; variant checks skipped" in caplog.text


def test_with_logits_the_checks_run_and_can_fail() -> None:
    logits = {
        "base": [[0.0, 1.0, 2.0]],
        "legal": [[0.0, 1.0, 2.0]],  # equal to the base: the adapter changes nothing
        "merged:legal": [[2.0, 1.0, 0.0]],  # computes something else than its adapter
    }
    engine = ScriptedEngine(_table(logits))
    variants = ["base", "legal", "merged:legal"]
    results = run_checks(engine, plan(variants), {})
    assert [(r.check, r.variant, r.passed) for r in results] == [
        ("adapter_applied", "legal", False),
        ("merge_agrees", "merged:legal", False),
    ]
    # a backend that cannot merge has no merge check
    no_merge = ScriptedEngine(_table(logits), capabilities=EngineCapabilities(merged=False))
    results = run_checks(no_merge, plan(variants), {})
    assert [r.check for r in results] == ["adapter_applied"]
