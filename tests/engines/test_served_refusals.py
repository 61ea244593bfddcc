"""What a served run refuses before any request (decide/served.py: refuse_unsupported):
only what the engine kind cannot compute at all. What a server cannot give for some texts
or in some modes is unscored with the reason instead (tests/engines/test_served_modes.py)."""

from __future__ import annotations

import pytest

from evalkit.decide.served import refuse_unsupported
from evalkit.engines import registry
from evalkit.engines.registry import EngineCapabilities, engine_kind, register_engine
from evalkit.errors import InputError


def test_the_openai_kind_refuses_nothing_it_can_approximate_or_leave_unscored() -> None:
    caps = engine_kind("openai").capabilities
    assert caps.kl and caps.loglikelihood and caps.rolling and not caps.probe_logits
    refuse_unsupported(
        "openai",
        {
            "prose": {"rolling", "rolling_kl"},
            "qa": {"generate", "loglikelihood"},
            "mc": {"choice"},
            "open": {"generate", "open_shift"},  # declared off: unscored, not refused
        },
    )


def test_a_kind_without_a_capability_is_refused_naming_the_task_and_the_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def never(request: object) -> object:
        raise AssertionError("not built: the refusal comes first")

    monkeypatch.setattr(registry, "_ENGINES", dict(registry._ENGINES))  # undone after
    register_engine("gen-only", never, EngineCapabilities(loglikelihood=False, kl=False))
    with pytest.raises(InputError) as err:
        refuse_unsupported("gen-only", {"qa": {"generate"}, "prose": {"rolling", "rolling_kl"}})
    assert err.value.exit_code == 2
    assert "prose (rolling_kl)" in err.value.message and "qa" not in err.value.message
    refuse_unsupported("gen-only", {"qa": {"generate"}})
