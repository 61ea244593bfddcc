"""The scripted engine: answers from a table, registered as engine kind "scripted", and
free of torch (what lets the decide/ and outputs/ tests run in milliseconds)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from evalkit.engines.base import ChatPrompt
from evalkit.engines.registry import EngineRequest, capabilities_of, create_engine, engine_kind
from evalkit.engines.scripted import ScriptedEngine
from evalkit.errors import InputError
from tests.scripted_run import REPO_ROOT, make_plan, run, table

TABLE = {
    "base": {
        "outputs": {"q1": "Paris. Then more", "q2": "Rome"},
        "loglikelihoods": {"q1": {" Paris": [-0.5, 2]}},
        "rolling": {"some text": [12.0, 4, 3.0, 4]},
    },
    "legal": {
        "outputs": {"q1": "Lyon"},
        "default_output": "?",
        "rolling": {"some text": [9.0, 4, 3.0, 4]},
    },
}


def test_answers_per_variant_from_the_table() -> None:
    eng = ScriptedEngine(TABLE)
    prompts = [ChatPrompt("q1"), ChatPrompt("q2")]
    assert eng.generate(prompts, max_new_tokens=8, stop=(". ",)) == ["Paris", "Rome"]
    with eng.variant("legal"):
        assert eng.generate(prompts, max_new_tokens=8) == ["Lyon", "?"]
        (rs,) = eng.rolling_kl(["some text"])
        assert (rs.nll, rs.n_tokens, rs.kl, rs.kl_tokens) == (9.0, 4, 3.0, 4)
    with eng.variant("merged:legal"):  # a merge computes what its adapter computes
        assert eng.generate(prompts[:1], max_new_tokens=8) == ["Lyon"]
    (ll,) = eng.loglikelihood([(ChatPrompt("q1"), " Paris")])
    assert (ll.logprob, ll.n_tokens) == (-0.5, 2)
    (base_rs,) = eng.rolling_kl(["some text"])
    assert base_rs.kl == 0.0  # the base's KL from itself, whatever the table says
    assert eng.calls == [
        ("base", "generate", 2),
        ("legal", "generate", 2),
        ("legal", "rolling_kl", 1),
        ("merged:legal", "generate", 1),
        ("base", "loglikelihood", 1),
        ("base", "rolling_kl", 1),
    ]


def test_missing_entries_fail_loudly() -> None:
    eng = ScriptedEngine(TABLE)
    with pytest.raises(KeyError, match="no output for 'q3'"):
        eng.generate([ChatPrompt("q3")], max_new_tokens=8)
    with pytest.raises(KeyError, match="no variant 'other'"), eng.variant("other"):
        pass
    with pytest.raises(InputError, match="needs a 'base' entry"):
        ScriptedEngine({"legal": {}})


def test_fingerprints_are_stable_and_follow_the_table() -> None:
    a, b = ScriptedEngine(TABLE), ScriptedEngine(json.loads(json.dumps(TABLE)))
    assert a.fingerprint("legal") == b.fingerprint("legal") != a.fingerprint("base")
    changed = {**TABLE, "base": {**TABLE["base"], "outputs": {"q1": "Nice"}}}
    # the base is part of every variant's identity
    assert ScriptedEngine(changed).fingerprint("legal") != a.fingerprint("legal")


def test_registered_as_an_engine_kind(tmp_path: Path) -> None:
    kind = engine_kind("scripted")
    assert not kind.capabilities.probe_logits and kind.capabilities.generate
    eng = create_engine("scripted", EngineRequest("none", {}, options={"table": TABLE}))
    assert isinstance(eng, ScriptedEngine)
    (tmp_path / "t.json").write_text(json.dumps(TABLE))
    from_file = create_engine(
        "scripted", EngineRequest("none", {}, relative_to=tmp_path, options={"path": "t.json"})
    )
    assert from_file.fingerprint("legal") == eng.fingerprint("legal")
    with pytest.raises(InputError, match="needs `table:` or `path:`"):
        create_engine("scripted", EngineRequest("none", {}))
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(InputError, match="cannot read the scripted engine's table"):
        create_engine(
            "scripted", EngineRequest("none", {}, options={"path": str(tmp_path / "bad.json")})
        )
    assert not capabilities_of(eng).probe_logits
    with_logits = {v: {**e, "logits": [[0.0, 1.0]]} for v, e in TABLE.items()}
    assert capabilities_of(ScriptedEngine(with_logits)).probe_logits


def test_for_plan_translates_example_ids() -> None:
    plan, _, records, _ = run()
    by = {(r.task, r.example_id, r.variant): r for r in records}
    assert by[("qa", "qa09", "base")].output == "yes"
    assert by[("qa", "qa10", "base")].output == "no"
    assert by[("mc", "mc29", "bad")].choice_logprobs == [-1.0, 0.0]
    assert by[("prose", "doc02", "bad")].nll == pytest.approx(31.5)
    assert by[("prose", "doc02", "bad")].kl == pytest.approx(9.0)
    assert len(records) == 5 * (40 + 40 + 30)


def test_the_scripted_stages_import_no_torch() -> None:
    code = (
        "import sys\n"
        "import evalkit.engines.scripted, evalkit.engines.cache, evalkit.decide.gates\n"
        "import evalkit.decide.verdicts, evalkit.decide.baseline, evalkit.outputs.results\n"
        "import evalkit.decide.integrity, evalkit.outputs, tests.scripted_run\n"
        "tests.scripted_run.run()\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"


def test_plan_helper_has_every_variant() -> None:
    assert set(table()) == set(make_plan().variants)
