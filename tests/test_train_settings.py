"""One set of training settings: the library's `LoraSettings`, the suite's `train:` block and
`evalkit train`'s flags have the same fields, defaults, bounds and descriptions, and the
adapter cache key of settings already trained is what it was (no torch: milliseconds)."""

from __future__ import annotations

import json
import math
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
import typer
from pydantic import ValidationError

from evalkit.cli import app
from evalkit.cli.train import FLAG_SETTINGS, settings_from_flags
from evalkit.suite.config import TrainConfig
from evalkit.suite.loader import load_suite
from evalkit.suite.train_settings import SETTINGS, Setting
from evalkit.training import LoraSettings, training_key
from evalkit.training.declared import lora_settings

ROOT = Path(__file__).resolve().parents[1]
DATA = {"path": "train.jsonl"}
# Cache keys computed by the code before the three definitions became one (fingerprint
# "fp", data hash "data" unless noted). Equal keys: an adapter trained then is reused now.
SUITE_DEFAULT_KEY = "1eccbd8a22c281169eff7bf5e253a98205b05cf3ce70b362c970599a0cee7113"
DEMO_KEYS = {  # the committed demo adapters' recorded settings, base and data hash
    "legal-r16": "da3bf1f672125b83353db2013ca63fb920f990fd73bce1330b607a144d8a3421",
    "legal-overfit": "d2c8f61dda3428429f953ae1d2b64359f4bfdf24e72e472aee7abf5163e7a1e4",
}
SWEEP_KEYS = {  # suites/legal-sweep.yaml's three points
    "legal-r4": "0ed383bc65a4d81e0e1b0ee91f3016dac6362bfc92b131b0fe09ae226197de2c",
    "legal-r16": "e9bcac68f6ed156ef7f88c9475eed5359167f64a966608b2e59d279bd7ad2f12",
    "legal-r64": "a0c143b4a028cf54c0e3c8fbcb8a6493a88e44268dab1eaf0f6026113be20746",
}
# every non-default value the suite offers, at once
UNUSUAL = dict(target_modules="all-linear", alpha=7, qlora=True, compute_dtype="bfloat16",
               lr_schedule="cosine", save_dtype="float16", warmup_ratio=0.1, grad_accum=2,
               epochs=1)  # fmt: skip
UNUSUAL_KEY = "9ceffb10d5f647daebecc7dbe77d2778fbdf6f4baf943b1756ee2102ed87dac3"


@pytest.mark.parametrize("name", sorted(DEMO_KEYS))
def test_demo_adapters_recorded_settings_keep_their_key(name: str) -> None:
    card = json.loads((ROOT / "suites/adapters" / name / "training_card.json").read_text())
    settings = LoraSettings(**card["settings"])
    # the recorded values come back as recorded; the fields the older card lacks are defaults
    assert {k: settings.to_dict()[k] for k in card["settings"]} == card["settings"]
    key = training_key("builtin:smollm2-135m-instruct", card["data_sha256"], settings)
    assert key == DEMO_KEYS[name]


def test_suite_keys_are_unchanged() -> None:
    assert training_key("fp", "data", lora_settings(TrainConfig(data=DATA))) == SUITE_DEFAULT_KEY
    unusual = lora_settings(TrainConfig(data=DATA, **UNUSUAL))
    assert training_key("fp", "data", unusual) == UNUSUAL_KEY
    suite = load_suite(ROOT / "suites/legal-sweep.yaml")
    keys = {n: training_key("fp", "data", lora_settings(a.train))
            for n, a in suite.config.adapters.items() if a.train is not None}  # fmt: skip
    assert keys == SWEEP_KEYS
    # alpha follows each point's rank (2 x rank), as before
    assert [lora_settings(suite.config.adapters[n].train).alpha for n in SWEEP_KEYS] == [8, 32, 128]


def _flags(*args: str) -> dict[str, Any]:
    """`evalkit train`'s parameters as its command line parser fills them in."""
    command = typer.main.get_command(app).commands["train"]
    return dict(command.make_context("train", ["--data", "d", "--out", "o", *args]).params)


def test_library_suite_and_cli_defaults_are_one() -> None:
    library, suite, cli = (
        LoraSettings(),
        lora_settings(TrainConfig(data=DATA)),
        settings_from_flags(_flags()),
    )
    assert library == suite == cli
    assert training_key("fp", "data", library) == SUITE_DEFAULT_KEY
    # the defaults that changed for library callers, now those of the suite and the CLI
    assert (library.alpha, library.learning_rate) == (32, 1e-3)
    assert library.target_modules == ("q_proj", "k_proj", "v_proj", "o_proj")
    # a flag set on the command line reaches the settings under its setting's name
    flagged = settings_from_flags(_flags("--lr", "0.01", "--schedule", "cosine", "--rank",
                                         "4", "--target-modules", "q_proj, v_proj"))  # fmt: skip
    assert (flagged.learning_rate, flagged.lr_schedule, flagged.alpha) == (0.01, "cosine", 8)
    assert flagged.target_modules == ("q_proj", "v_proj")
    all_linear = settings_from_flags(_flags("--target-modules", "all-linear", "--alpha", "5"))
    assert (all_linear.target_modules, all_linear.alpha) == ("all-linear", 5)


def test_suite_fields_and_cli_flags_come_from_the_settings() -> None:
    names = [f.name for f in fields(LoraSettings)]
    assert list(SETTINGS) == names
    assert [n for n in TrainConfig.model_fields if n != "data"] == names
    for name, s in SETTINGS.items():
        field = TrainConfig.model_fields[name]
        default = field.get_default(call_default_factory=True)
        assert default == (list(s.default) if isinstance(s.default, tuple) else s.default)
        assert field.description == s.help
    command = typer.main.get_command(app).commands["train"]
    flags = {FLAG_SETTINGS.get(p.name, p.name): p for p in command.params}
    assert set(names) <= set(flags)
    for name, s in SETTINGS.items():
        if name != "target_modules":  # the flag is a comma-separated string
            assert flags[name].help == s.help and flags[name].default == s.default, name


def _outside(s: Setting) -> list[Any]:
    """Values just outside a setting's bounds (or not among its choices)."""
    if s.choices:
        return ["nope"]
    out: list[Any] = []
    if s.above is not None:
        out += [s.above] + ([] if s.integer else [s.above - 0.5, math.nan])
    if s.minimum is not None:
        out.append(s.minimum - (1 if s.integer else 0.01))
    if s.below is not None:
        out.append(s.below)
    if s.integer or out:
        out.append("x")
    return out


def _inside(s: Setting) -> list[Any]:
    """Values just inside the bounds (the edges that are allowed)."""
    if s.choices:
        return list(s.choices)
    out: list[Any] = []
    if s.above is not None:
        out.append(s.above + 1 if s.integer else s.above + 1e-6)
    if s.minimum is not None:
        out.append(s.minimum)
    if s.below is not None:
        out.append(s.below - 0.01)
    return out


CASES = [(n, v) for n, s in SETTINGS.items() for v in _outside(s)]


def test_every_bounded_setting_is_checked() -> None:
    bounded = {n for n, _ in CASES}
    assert bounded == set(SETTINGS) - {"target_modules", "qlora"}, bounded


@pytest.mark.parametrize(("name", "value"), CASES)
def test_suite_and_library_reject_the_same_values(name: str, value: Any) -> None:
    with pytest.raises(ValidationError, match=name):
        TrainConfig(data=DATA, **{name: value})
    problems = LoraSettings(**{name: value}).problems()
    assert problems and problems[0].startswith(f"`{name}` must be"), problems


@pytest.mark.parametrize(
    ("name", "value"), [(n, v) for n, s in SETTINGS.items() for v in _inside(s)]
)
def test_suite_and_library_accept_the_edges(name: str, value: Any) -> None:
    train = TrainConfig(data=DATA, **{name: value})
    assert lora_settings(train).problems() == []
    assert LoraSettings(**{name: value}).problems() == []


def test_messages_name_the_setting_and_the_bound() -> None:
    assert LoraSettings(rank=0).problems()[0] == "`rank` must be >= 1, got 0"
    assert LoraSettings(dropout=1.0).problems() == ["`dropout` must be in [0, 1), got 1.0"]
    assert LoraSettings(learning_rate="fast").problems() == [
        "`learning_rate` must be a number > 0, got 'fast'"
    ]
    assert LoraSettings(lr_schedule="step").problems() == [
        "`lr_schedule` must be one of linear, cosine, constant"
    ]
    assert LoraSettings(target_modules=()).problems() == ["`target_modules` is empty"]
    assert "all-linear" in LoraSettings(target_modules="everything").problems()[0]


def test_alpha_and_target_modules_are_settled_on_construction() -> None:
    assert LoraSettings(rank=8).alpha == 16 and LoraSettings(rank=8, alpha=4).alpha == 4
    # replace keeps the alpha already derived; alpha=None derives it again
    assert LoraSettings(rank=8).replace(rank=4).alpha == 16
    assert LoraSettings(rank=8).replace(rank=4, alpha=None).alpha == 8
    listed = LoraSettings(target_modules=["q_proj", "v_proj"])
    assert listed == LoraSettings(target_modules=("q_proj", "v_proj"))
    assert listed.to_dict()["target_modules"] == ["q_proj", "v_proj"]
    hash(listed)  # frozen and hashable, a list given or not
