"""The bad-input corpus of tests/test_hardening_inputs.py: a valid suite and, per case, a
set-up that breaks one thing, the words its message must hold, and the flags to pass."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import write_jsonl, write_minimal_safetensors

REPO = Path(__file__).resolve().parents[1]

SUITE = """\
name: bad-input
base:
  model: builtin:smollm2-135m-instruct
adapters:
  a1: {path: a1}
variants: [base, a1]
tasks:
  - name: qa
    data: {path: qa.jsonl}
    id: id
    prompt: "{{ q }}"
    reference: "{{ a }}"
    generation: {max_new_tokens: 8}
    metrics:
      - type: exact_match
probes: {builtin: false}
gates:
  - {variant: a1, task: qa, metric: exact_match, require: not_regressed}
"""
JUDGED = (
    SUITE.replace(
        "      - type: exact_match\n",
        "      - type: exact_match\n"
        "    judges:\n      - {spec: judge/spec.yaml, labels: labels.jsonl}\n",
    )
    + 'judge:\n  provider: {base_url: "http://127.0.0.1:9/v1", model: fake}\n'
)
ROWS = [{"id": f"q{i}", "q": f"What is {i} plus {i}?", "a": str(2 * i)} for i in range(5)]


@pytest.fixture()
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("EVALKIT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    (tmp_path / "suite.yaml").write_text(SUITE)
    write_jsonl(tmp_path / "qa.jsonl", ROWS)
    a1 = tmp_path / "a1"
    a1.mkdir()
    (a1 / "adapter_config.json").write_text(
        json.dumps({"r": 4, "lora_alpha": 8, "target_modules": ["q_proj"], "peft_type": "LORA"})
    )
    write_minimal_safetensors(a1 / "adapter_model.safetensors")
    judge = tmp_path / "judge"
    judge.mkdir()
    (judge / "spec.yaml").write_text(
        "name: g\nkind: rubric\ntemplate: t.j2\nscale: [1, 5]\nrubric: be fair\n"
    )
    (judge / "t.j2").write_text("Grade {{ answer }} for {{ question }}.\n")
    write_jsonl(tmp_path / "labels.jsonl", [{"question": "q", "answer": "a", "label": 3}])
    return tmp_path


def _suite(text: str) -> Callable[[Path], None]:
    return lambda d: (d / "suite.yaml").write_text(text)


def _edit(old: str, new: str, base: str = SUITE) -> Callable[[Path], None]:
    assert old in base
    return _suite(base.replace(old, new))


def _rows(rows: list[dict]) -> Callable[[Path], None]:
    return lambda d: write_jsonl(d / "qa.jsonl", rows)


def _raw(name: str, data: bytes) -> Callable[[Path], None]:
    return lambda d: (d / name).write_bytes(data)


def _data_path(name: str, make: Callable[[Path], None]) -> Callable[[Path], None]:
    def do(d: Path) -> None:
        make(d / name)
        (d / "suite.yaml").write_text(SUITE.replace("path: qa.jsonl", f"path: {name}"))

    return do


def _suite_is(make: Callable[[Path], None]) -> Callable[[Path], None]:
    def do(d: Path) -> None:
        (d / "suite.yaml").unlink()
        make(d / "suite.yaml")

    return do


def _loop(p: Path) -> None:
    other = p.with_name(p.name + ".other")
    os.symlink(other, p)
    os.symlink(p, other)


def _judged(d: Path) -> None:
    (d / "suite.yaml").write_text(JUDGED)


def _judge_template(text: str) -> Callable[[Path], None]:
    def do(d: Path) -> None:
        _judged(d)
        (d / "judge" / "t.j2").write_text(text)

    return do


def _labels(data: bytes) -> Callable[[Path], None]:
    def do(d: Path) -> None:
        _judged(d)
        (d / "labels.jsonl").write_bytes(data)

    return do


def _adapter(fn: Callable[[Path], None]) -> Callable[[Path], None]:
    return lambda d: fn(d / "a1")


def _truncate(a: Path) -> None:
    w = a / "adapter_model.safetensors"
    data = w.read_bytes()
    w.write_bytes(data[:-4])


def _pickled_adapter(a: Path) -> None:
    (a / "adapter_model.safetensors").unlink()
    (a / "adapter_model.bin").write_bytes(b"\x80\x04K\x01.")


def _base_dir(files: dict[str, bytes]) -> Callable[[Path], None]:
    def do(d: Path) -> None:
        base = d / "base"
        base.mkdir()
        for name, data in files.items():
            (base / name).write_bytes(data)
        (d / "suite.yaml").write_text(SUITE.replace("builtin:smollm2-135m-instruct", "base"))

    return do


BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{c}: &{c} [{', '.join([f'*{p}'] * 9)}]\n" for p, c in zip("abcdefg", "bcdefgh", strict=True)
)
UTF8_BAD = b"\xff\xfe not utf-8"

# (case id, set-up, the words the message must hold, extra command-line arguments)
CASES: list[tuple[str, Callable[[Path], None], str, list[str]]] = [
    # -- the suite file itself
    ("suite-is-a-directory", _suite_is(lambda p: p.mkdir()), "is a directory", []),
    ("suite-symlink-loop", _suite_is(_loop), "symbolic links", []),
    ("suite-is-a-fifo", _suite_is(lambda p: os.mkfifo(p)), "not a regular file", []),
    ("suite-missing", _suite_is(lambda p: None), "not found", []),
    ("suite-not-utf8", _raw("suite.yaml", UTF8_BAD), "not UTF-8", []),
    ("suite-nul-byte", _raw("suite.yaml", b"name: x\x00\n"), "not valid YAML", []),
    ("suite-alias-bomb", _suite(BOMB), "expands to more than", []),
    ("suite-recursive-alias", _suite("a: &a [*a]\n"), "expands to more than", []),
    ("suite-too-big", _suite("# " + "x" * (1 << 20) + "\n"), "over the 1,048,576", []),
    ("suite-deep-nesting", _suite("a: " + "[" * 200 + "]" * 200 + "\n"), "levels", []),
    ("suite-list-key", _suite("? [a, b]\n: 1\n"), "mapping key must be a plain value", []),
    ("suite-empty", _suite(""), "a suite is a YAML mapping", []),
    ("suite-a-list", _suite("- name: x\n"), "a suite is a YAML mapping", []),
    ("suite-bad-date", _suite("name: 2024-02-31\n"), "unsupported YAML value", []),
    ("max-new-tokens-bool", _edit("max_new_tokens: 8", "max_new_tokens: true"), "integer", []),
    ("batch-size-string", _edit("probes:", 'settings: {batch_size: "16"}\nprobes:'), "integer", []),
    ("seed-float", _edit("probes:", "settings: {seed: 1.5}\nprobes:"), "integer", []),
    (
        "4bit-string",
        _edit("builtin:smollm2-135m-instruct", "builtin:x\n  load_in_4bit: 'yes'"),
        "boolean",
        [],
    ),  # fmt: skip
    (
        "regex-backreference",
        _edit("- type: exact_match", "- {type: regex, value: '(a)\\1'}"),
        "RE2",
        [],
    ),  # fmt: skip
    (
        "regex-lookahead",
        _edit("- type: exact_match", "- {type: regex, value: '(?=a)b'}"),
        "lookaround",
        [],
    ),  # fmt: skip
    (
        "gate-unknown-metric",
        _edit("metric: exact_match,", "metric: accuracy,"),
        "no metric 'accuracy'",
        [],
    ),  # fmt: skip
    # -- the data file
    ("data-fifo", _data_path("pipe.jsonl", lambda p: os.mkfifo(p)), "not a regular file", []),
    ("data-symlink-loop", _data_path("loop.jsonl", _loop), "symbolic links", []),
    (
        "data-garbage-dir",
        _data_path("garbage", lambda p: (p.mkdir(), (p / "x").write_text("?"))),
        "not a saved dataset",
        [],
    ),  # fmt: skip
    (
        "data-json-array",
        _data_path("qa.json", lambda p: p.write_text(json.dumps(ROWS))),
        "JSON array",
        [],
    ),  # fmt: skip
    (
        "data-not-utf8",
        _raw("qa.jsonl", b'{"id": "q0", "q": "\xff", "a": "0"}\n'),
        "qa.jsonl:1: not UTF-8",
        [],
    ),
    (
        "data-line-is-list",
        _raw("qa.jsonl", b'{"id": "q0", "q": "x", "a": "0"}\n[1]\n'),
        "qa.jsonl:2: expected a JSON object",
        [],
    ),  # fmt: skip
    (
        "data-bad-json",
        _raw("qa.jsonl", b'{"id": "q0", "q": "x", "a": "0"}\n{"id": \n'),
        "qa.jsonl:2: not valid JSON",
        [],
    ),  # fmt: skip
    (
        "row-without-id",
        _rows([*ROWS[:3], {"q": "x", "a": "y"}]),
        "line 4 has no id column 'id'",
        [],
    ),
    ("id-null", _rows([*ROWS[:2], {**ROWS[2], "id": None}]), "line 3: id 'id' is null", []),
    ("id-empty", _rows([*ROWS[:2], {**ROWS[2], "id": " "}]), "line 3: id 'id' is empty", []),
    ("id-list", _rows([{**ROWS[0], "id": [1]}]), "line 1: id 'id' is a list", []),
    ("id-bool", _rows([{**ROWS[0], "id": True}]), "id 'id' is true/false", []),
    (
        "id-duplicate",
        _rows([*ROWS, {**ROWS[1]}]),
        "line 6: duplicate id 'q1' (first at line 2)",
        [],
    ),  # fmt: skip
    (
        "id-duplicate-beyond-limit",
        _rows([*ROWS, {**ROWS[1]}]),
        "duplicate id 'q1'",
        ["--limit", "2"],
    ),  # fmt: skip
    (
        "column-number-in-some-rows",
        _rows([*ROWS[:3], {**ROWS[3], "q": 7}]),
        "line 4: column 'q' is a number here but text in line 1",
        [],
    ),  # fmt: skip
    (
        "column-list",
        _rows([*ROWS[:1], {**ROWS[1], "q": ["a"]}]),
        "line 2: column 'q' is a list",
        [],
    ),  # fmt: skip
    ("column-object", _rows([{**ROWS[0], "a": {"x": 1}}]), "column 'a' is an object", []),
    ("column-null", _rows([*ROWS[:4], {**ROWS[4], "a": None}]), "line 5: column 'a' is null", []),
    (
        "column-missing-late",
        _rows(
            [
                *ROWS * 0,
                *[{**r, "id": f"x{i}"} for i, r in enumerate(ROWS * 12)],
                {"id": "z", "q": "x"},
            ]
        ),
        "has no column 'a'",
        [],
    ),  # fmt: skip
    (
        "csv-nul-bytes",
        _data_path("qa.csv", lambda p: p.write_bytes(b"id,q,a\nq0,x\x00,0\n")),
        "qa.csv:2: a NUL byte",
        [],
    ),  # fmt: skip
    (
        "csv-not-utf8",
        _data_path("qa.csv", lambda p: p.write_bytes(b"id,q,a\nq0,\xff,0\n")),
        "not UTF-8",
        [],
    ),  # fmt: skip
    # -- judge templates and labels, checked at validate
    ("judge-include", _judge_template("{% include 'x.j2' %} {{ answer }}"), "include", []),
    ("judge-dunder", _judge_template("{{ answer.__class__ }}"), "__class__", []),
    ("judge-dunder-item", _judge_template("{{ answer['__class__'] }}"), "__class__", []),
    ("judge-import", _judge_template("{% import 'm' as m %}{{ answer }}"), "import", []),
    ("labels-row-is-list", _labels(b"[1, 2]\n"), "labels.jsonl:1: expected a JSON object", []),
    (
        "labels-label-word",
        _labels(b'{"question": "q", "answer": "a", "label": "high"}\n'),
        "labels.jsonl:1: bad label row",
        [],
    ),  # fmt: skip
    ("labels-not-utf8", _labels(UTF8_BAD), "not UTF-8", []),
    (
        "labels-fifo",
        lambda d: (_judged(d), (d / "labels.jsonl").unlink(), os.mkfifo(d / "labels.jsonl")),
        "not a regular file",
        [],
    ),  # fmt: skip
    # -- adapters and base models, checked without loading them
    ("adapter-truncated", _adapter(_truncate), "truncated", []),
    ("adapter-pickle", _adapter(_pickled_adapter), "pickle", []),
    (
        "adapter-r-string",
        _adapter(lambda a: (a / "adapter_config.json").write_text('{"r": "16"}')),
        "'r' is '16'",
        [],
    ),  # fmt: skip
    (
        "adapter-targets-number",
        _adapter(lambda a: (a / "adapter_config.json").write_text('{"r": 4, "target_modules": 7}')),
        "target_modules",
        [],
    ),  # fmt: skip
    (
        "adapter-config-not-json",
        _adapter(lambda a: (a / "adapter_config.json").write_text("{")),
        "not a readable JSON",
        [],
    ),  # fmt: skip
    (
        "base-pickle-weights",
        _base_dir({"config.json": b"{}", "pytorch_model.bin": b"\x80\x04."}),
        "pickle",
        [],
    ),  # fmt: skip
    (
        "base-remote-code",
        _base_dir({"config.json": b'{"auto_map": {"AutoModel": "m.M"}}'}),
        "trust_remote_code",
        [],
    ),  # fmt: skip
    # -- flags
    ("variants-empty", lambda d: None, "--variants is empty", ["--variants", ""]),
    ("variants-blank", lambda d: None, "--variants is empty", ["--variants", " , "]),
    ("output-dir-is-a-file", lambda d: (d / "out").write_text("x"), "is a file", ["-o", "out"]),
    (
        "output-dir-under-a-file",
        lambda d: (d / "f").write_text("x"),
        "is a file",
        ["-o", "f/out"],
    ),  # fmt: skip
]
