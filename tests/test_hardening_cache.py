"""Nothing read from a cache or a downloaded file runs code. A pickle payload that would
create a sentinel file is planted in each place evalkit reads a file (the results cache,
the judge cache, an adapter, a base model, a converted model; checkpoints are covered in
tests/test_train_resume.py) and the sentinel never appears: the entry is discarded or the
file refused. Also: the cache directory is user-only, and two runs on a cold cache
convert the built-in model once without crashing each other."""

from __future__ import annotations

import json
import os
import pickle
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from evalkit.cli import app
from evalkit.engines.cache import ResultCache
from evalkit.pipeline import run_suite
from tests.conftest import write_jsonl, write_minimal_safetensors
from tests.judge_server import JudgeServer

REPO = Path(__file__).resolve().parents[1]


class _Payload:
    """Unpickling this creates the sentinel file."""

    def __init__(self, sentinel: Path) -> None:
        self.sentinel = sentinel

    def __reduce__(self) -> tuple[object, tuple[Path]]:
        return (Path.touch, (self.sentinel,))


def _suite(d: Path, base: str, url: str, adapter: bool = False) -> Path:
    text = f"""
name: planted
base: {{model: {base}}}
{"adapters: {a1: {path: a1}}" if adapter else ""}
variants: [base{", a1" if adapter else ""}]
tasks:
  - name: qa
    data: {{path: qa.jsonl}}
    id: id
    prompt: "{{{{ q }}}}"
    generation: {{max_new_tokens: 3}}
    metrics: [{{type: contains, value: "4"}}]
    judges: [{{spec: {REPO / "judges" / "general.yaml"}}}]
probes: {{builtin: false}}
judge: {{provider: {{base_url: "{url}", model: fake, max_retries: 0}}}}
settings: {{bootstrap_resamples: 200}}
"""
    (d / "suite.yaml").write_text(text)
    write_jsonl(d / "qa.jsonl", [{"id": f"q{i}", "q": f"What is {i} plus {i}?"} for i in range(3)])
    return d / "suite.yaml"


def test_planted_cache_entries_are_discarded_and_recomputed(
    tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EVALKIT_CACHE_DIR", str(tmp_path / "cache"))
    sentinel = tmp_path / "SENTINEL"
    with JudgeServer() as srv:
        suite = _suite(tmp_path, str(tiny_model_dir), srv.base_url)
        first = run_suite(suite, output_dir=tmp_path / "one")
        db = sqlite3.connect(tmp_path / "cache" / "results.sqlite")
        payload = pickle.dumps(_Payload(sentinel))
        planted = 0
        for table in ("results", "judgments"):
            # every entry replaced by a pickle, its digest kept: what an attacker with
            # write access to a CI cache, or a damaged disk, would leave
            for (key,) in db.execute(f"SELECT key FROM {table}").fetchall():
                db.execute(f"UPDATE {table} SET value = ? WHERE key = ?", (payload, key))
                planted += 1
        db.commit()
        db.close()
        n_before = len(srv.state.requests)
        second = run_suite(suite, output_dir=tmp_path / "two")
        n_judge_calls = len(srv.state.requests) - n_before
    assert planted >= 6
    assert not sentinel.exists()
    assert second.results["run"]["cache"] == {"reused": 0, "computed": 3}
    assert n_judge_calls == 3  # the judge cache was not trusted either
    outputs = lambda r: [s["outputs"] for s in r["samples"]]  # noqa: E731
    assert outputs(second.results) == outputs(first.results)


def test_a_cache_entry_whose_digest_does_not_match_is_a_miss(tmp_path: Path) -> None:
    cache = ResultCache(tmp_path / "c.sqlite")
    cache.put_many({"k1": [1, 2], "k2": "two"})
    cache.db.execute("UPDATE results SET value = '[9, 9]' WHERE key = 'k1'")
    cache.db.commit()
    assert cache.get_many(["k1", "k2"]) == {"k2": "two"} and cache.discarded == 1
    assert cache.get_many(["k1"]) == {}  # deleted, not read again


def test_an_old_cache_without_digests_is_dropped(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "c.sqlite")
    db.execute("CREATE TABLE results (key TEXT PRIMARY KEY, value TEXT)")
    db.execute("INSERT INTO results VALUES ('k', '1')")
    db.commit()
    db.close()
    assert ResultCache(tmp_path / "c.sqlite").get_many(["k"]) == {}


def _plant_pickle(path: Path, sentinel: Path) -> None:
    path.write_bytes(pickle.dumps(_Payload(sentinel)))


@pytest.mark.parametrize("where", ["adapter", "base"])
def test_pickled_weights_are_refused_before_loading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    monkeypatch.setenv("EVALKIT_CACHE_DIR", str(tmp_path / "cache"))
    sentinel = tmp_path / "SENTINEL"
    base = tmp_path / "base"
    base.mkdir()
    (base / "config.json").write_text(json.dumps({"model_type": "llama"}))
    a1 = tmp_path / "a1"
    a1.mkdir()
    (a1 / "adapter_config.json").write_text(json.dumps({"r": 4}))
    if where == "base":
        _plant_pickle(base / "pytorch_model.bin", sentinel)
        write_minimal_safetensors(a1 / "adapter_model.safetensors")
    else:
        write_minimal_safetensors(base / "model.safetensors")
        _plant_pickle(a1 / "adapter_model.bin", sentinel)
    suite = _suite(tmp_path, str(base), "http://127.0.0.1:9/v1", adapter=True)
    for command in (["validate", str(suite)], ["run", str(suite), "-q", "-o", "out"]):
        result = CliRunner().invoke(app, command)
        assert result.exit_code == 2, result.output
        assert "pickle" in result.output and "safetensors" in result.output
        assert result.exception is None or isinstance(result.exception, SystemExit)
    assert not sentinel.exists()


def test_a_tampered_converted_model_is_discarded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A converted model in the cache whose weights were swapped for a pickle (or edited)
    is removed, so it is converted again rather than loaded."""
    from evalkit.engines import resolve

    target = tmp_path / "models" / "m-0123"
    target.mkdir(parents=True)
    (target / "config.json").write_text("{}")
    write_minimal_safetensors(target / "model.safetensors")
    (target / resolve._CONVERTED_MARKER).write_text("{}")
    assert resolve._usable(target)  # first use records the digest
    write_minimal_safetensors(target / "model.safetensors")  # same bytes: still fine
    assert resolve._usable(target)
    import numpy as np
    from safetensors.numpy import save_file

    save_file({"x": np.ones(2, dtype=np.float32)}, str(target / "model.safetensors"))
    assert not resolve._usable(target) and not target.exists()
    target.mkdir()
    (target / resolve._CONVERTED_MARKER).write_text("{}")
    (target / "config.json").write_text("{}")
    _plant_pickle(target / "pytorch_model.bin", tmp_path / "SENTINEL")
    assert not resolve._usable(target) and not (tmp_path / "SENTINEL").exists()


def test_the_cache_directory_is_user_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from evalkit.paths import cache_dir

    monkeypatch.setenv("EVALKIT_CACHE_DIR", str(tmp_path / "fresh" / "cache"))
    path = cache_dir()
    assert stat.S_IMODE(path.stat().st_mode) == 0o700


def test_two_runs_on_a_cold_cache_convert_once(tmp_path: Path) -> None:
    """Both processes resolve the built-in model at once on an empty cache: one converts,
    the other waits on the lock and reuses the result; neither crashes."""
    env = {**os.environ, "EVALKIT_CACHE_DIR": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    code = (
        "import logging, sys; logging.basicConfig(level=logging.INFO, stream=sys.stdout)\n"
        "from evalkit.engines.resolve import resolve_model\n"
        "print('SOURCE', resolve_model('builtin:smollm2-135m-instruct').source)\n"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, cwd=REPO,
        )
        for _ in range(2)
    ]  # fmt: skip
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    sources = {line for o in outs for line in o.splitlines() if line.startswith("SOURCE")}
    assert len(sources) == 1
    assert sum("converting" in o for o in outs) == 1, outs
