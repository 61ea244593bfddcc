"""Property tests of the suite loader and the data loaders: whatever the bytes, they load
or are refused with an InputError (exit 2, a message), never another exception, and
within a few seconds. Inputs are drawn from YAML- and JSON-shaped text as well as raw
bytes, so both the parsers and the checks behind them are reached."""

from __future__ import annotations

import json
import time
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evalkit.errors import InputError
from evalkit.plan.datasets import check_rows, load_rows
from evalkit.suite.loader import load_suite

FUZZ = settings(
    max_examples=150,
    deadline=None,  # bounded below with our own clock: the machine is shared
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
LIMIT_S = 3.0

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=20)
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
SUITE_KEYS = ["name", "base", "tasks", "variants", "adapters", "gates", "settings", "probes"]
suites = st.dictionaries(st.sampled_from(SUITE_KEYS), values, max_size=6)
yaml_fragments = st.lists(
    st.sampled_from(
        ["a: ", "&x ", "*x ", "[", "]", "{", "}", "- ", "\n", "  ", "? ", ": ", "!!python/object ",
         "<<: ", "'", '"', "|\n", "name: t\n", "tasks:\n", "\t", "%YAML 1.1\n", "---\n", "\x00"]
    ),
    max_size=40,
).map("".join)  # fmt: skip


def _bounded(fn: object) -> None:
    t0 = time.monotonic()
    try:
        fn()  # type: ignore[operator]
    except InputError as exc:
        assert exc.message and exc.exit_code == 2
    assert time.monotonic() - t0 < LIMIT_S


@FUZZ
@given(data=st.one_of(suites.map(json.dumps), yaml_fragments, st.binary(max_size=300).map(
    lambda b: b.decode("latin-1"))))  # fmt: skip
def test_any_suite_text_loads_or_is_refused(tmp_path: Path, data: str) -> None:
    path = tmp_path / "suite.yaml"
    path.write_bytes(data.encode("utf-8", "surrogateescape"))
    _bounded(lambda: load_suite(path))


@FUZZ
@given(raw=st.binary(max_size=400))
def test_any_suite_bytes_load_or_are_refused(tmp_path: Path, raw: bytes) -> None:
    path = tmp_path / "suite.yaml"
    path.write_bytes(raw)
    _bounded(lambda: load_suite(path))


rows = st.lists(
    st.dictionaries(st.sampled_from(["id", "q", "a", "x"]), values, max_size=4), max_size=8
)
jsonl_text = st.one_of(
    rows.map(lambda rs: "".join(json.dumps(r) + "\n" for r in rs)),
    st.lists(values, max_size=6).map(lambda vs: "\n".join(json.dumps(v) for v in vs)),
    st.text(max_size=200),
)


@FUZZ
@given(text=jsonl_text, suffix=st.sampled_from([".jsonl", ".json"]))
def test_any_jsonl_loads_or_is_refused(tmp_path: Path, text: str, suffix: str) -> None:
    path = tmp_path / f"data{suffix}"
    path.write_text(text, encoding="utf-8")

    def load_and_check() -> None:
        loaded = load_rows(path)
        check_rows(loaded, path, id_column="id", columns=["q", "a"])

    _bounded(load_and_check)


@FUZZ
@given(raw=st.binary(max_size=300))
def test_any_jsonl_bytes_load_or_are_refused(tmp_path: Path, raw: bytes) -> None:
    path = tmp_path / "data.jsonl"
    path.write_bytes(raw)
    _bounded(lambda: load_rows(path))


@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
@given(raw=st.binary(max_size=200))
def test_any_csv_bytes_load_or_are_refused(tmp_path: Path, raw: bytes) -> None:
    path = tmp_path / "data.csv"
    path.write_bytes(b"id,q,a\n" + raw)

    def load_and_check() -> None:
        loaded = load_rows(path)
        check_rows(loaded, path, id_column="id", columns=["q"])

    t0 = time.monotonic()
    try:
        load_and_check()
    except InputError as exc:
        assert exc.message
    assert time.monotonic() - t0 < 10  # the csv reader starts a library: slower, still bounded
