"""`evalkit train` and `evalkit merge` end to end on a tiny random model saved to disk:
data formats, bad input (exit 2, nothing overwritten), reuse, merge fidelity."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
peft = pytest.importorskip("peft")

from typer.testing import CliRunner  # noqa: E402

from evalkit.cli import app  # noqa: E402
from evalkit.errors import DataError  # noqa: E402
from evalkit.training.data import DataSpec, load_examples  # noqa: E402
from tests.conftest import write_jsonl  # noqa: E402
from tests.test_train import _examples, _tiny_model, _tiny_tokenizer  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing:FutureWarning")
FAST = ["--rank", "4", "--epochs", "2", "--batch-size", "4", "--lr", "5e-3", "--dropout", "0",
        "--target-modules", "q_proj,v_proj", "--quiet"]  # fmt: skip


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.set_num_threads(1)
    tok = _tiny_tokenizer()
    out = tmp_path_factory.mktemp("tiny-base")
    _tiny_model(tok).save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("data")
    return write_jsonl(d / "train.jsonl",
                       [{"p": p, "c": c} for p, c in _examples(12)])  # fmt: skip


def _text(result: Any) -> str:
    """CLI output with rich's line wrapping undone."""
    return " ".join(result.output.split())


def _train(base: Path, data: Path, out: Path, *extra: str) -> Any:
    args = ["train", "--base", str(base), "--data", str(data), "--out", str(out),
            "--prompt-column", "p", "--completion-column", "c", *FAST, *extra]  # fmt: skip
    return CliRunner().invoke(app, args)


def test_train_writes_a_plain_peft_adapter_and_reuses_it(
    base: Path, data: Path, tmp_path: Path
) -> None:
    out = tmp_path / "a"
    r = _train(base, data, out, "--val-fraction", "0.25")
    assert r.exit_code == 0, r.output
    assert "trained" in _text(r) and "validation" in _text(r)
    assert {"adapter_config.json", "adapter_model.safetensors", "training_card.json"} <= {
        p.name for p in out.iterdir()}  # fmt: skip
    card = json.loads((out / "training_card.json").read_text())
    assert card["settings"]["rank"] == 4 and card["examples_validation"] == 3
    assert len(card["base_fingerprint"]) == 16 and card["versions"]["evalkit"]
    loaded = peft.PeftModel.from_pretrained(_tiny_model(_tiny_tokenizer()), str(out))
    assert any("lora_A" in n for n, _ in loaded.named_parameters())
    # the same command again: the directory already holds this adapter
    before = (out / "adapter_model.safetensors").read_bytes()
    again = _train(base, data, out, "--val-fraction", "0.25")
    assert again.exit_code == 0 and "already holds this adapter" in _text(again)
    # other settings into the same directory: refused, nothing overwritten
    other = _train(base, data, out, "--rank", "8")
    assert other.exit_code == 2 and "already holds a different adapter" in _text(other)
    assert (out / "adapter_model.safetensors").read_bytes() == before


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--rank", "0"], "`rank` must be >= 1"),
        (["--lr", "fast"], "Invalid value for '--lr'"),
        (["--target-modules", "q_proj,qkv_proj"], "'qkv_proj' not found"),
        (["--prompt-column", "question"], "no column 'question'"),
    ],
)
def test_bad_input_exits_2_with_a_message(
    base: Path, data: Path, tmp_path: Path, extra: list[str], message: str
) -> None:
    r = _train(base, data, tmp_path / "x", *extra)
    assert r.exit_code == 2, r.output
    assert message in _text(r), r.output
    assert "Traceback" not in r.output
    assert not (tmp_path / "x").exists()


def test_data_formats_and_errors(tmp_path: Path) -> None:
    rows = [{"q": "Say hi", "a": "hi"}, {"q": "Say yo", "a": "yo"}]
    jl = write_jsonl(tmp_path / "a.jsonl", rows)
    spec = DataSpec(jl, prompt_template="Q: {{ q }}", completion_column="a")
    assert load_examples(spec) == [("Q: Say hi", "hi"), ("Q: Say yo", "yo")]
    import pandas as pd

    pd.DataFrame(rows).to_csv(tmp_path / "a.csv", index=False)
    pd.DataFrame(rows).to_parquet(tmp_path / "a.parquet")
    for f in ("a.csv", "a.parquet"):
        assert load_examples(DataSpec(tmp_path / f, "q", "a")) == [
            ("Say hi", "hi"),
            ("Say yo", "yo"),
        ]
    chat = write_jsonl(tmp_path / "c.jsonl", [{"messages": [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"}]}])  # fmt: skip
    ((prompt, completion),) = load_examples(DataSpec(chat, messages_column="messages"))
    assert completion == "Hello" and [m["role"] for m in prompt] == ["system", "user"]

    cases = [
        (write_jsonl(tmp_path / "m.jsonl", [{"prompt": "x"}]), "row 1: no column 'completion'"),
        (
            write_jsonl(
                tmp_path / "e.jsonl",
                [{"prompt": "x", "completion": "y"}, {"prompt": "x", "completion": "  "}],
            ),
            "row 2: column 'completion' is empty",
        ),  # fmt: skip
        (write_jsonl(tmp_path / "z.jsonl", []), "has no rows"),
    ]
    for path, message in cases:
        with pytest.raises(DataError, match=message):
            load_examples(DataSpec(path))


def test_empty_dataset_exits_2(base: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    r = CliRunner().invoke(app, ["train", "--base", str(base), "--data", str(empty),
                                 "--out", str(tmp_path / "o"), *FAST])  # fmt: skip
    assert r.exit_code == 2 and "has no rows" in _text(r)


def test_merge_exports_a_model_that_matches_the_adapter(
    base: Path, data: Path, tmp_path: Path
) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    assert _train(base, data, tmp_path / "a").exit_code == 0
    r = CliRunner().invoke(app, ["merge", str(tmp_path / "a"), "--out", str(tmp_path / "m")])
    assert r.exit_code == 0, r.output
    assert "largest disagreement" in _text(r)
    merged_card = json.loads((tmp_path / "m" / "merge_card.json").read_text())
    assert merged_card["max_abs_logit_diff"] < 1e-4 and merged_card["qlora"] is False
    tok = AutoTokenizer.from_pretrained(tmp_path / "m")
    assert tok.chat_template and "<|im_start|>" in tok.chat_template
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "m")
    assert not any("lora" in n for n, _ in model.named_parameters())
    # a second merge into the same directory is refused
    r2 = CliRunner().invoke(app, ["merge", str(tmp_path / "a"), "--out", str(tmp_path / "m")])
    assert r2.exit_code == 2 and "not empty" in _text(r2)
