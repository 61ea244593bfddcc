"""Integrity checks on tiny random models: an all-zero adapter, a merged model whose
weights were perturbed, an adapter trained for another base (other shapes: refused with
exit 2; same shapes but another declared base: failed check, exit 3), and a tokenizer
whose chat template differs."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from evalkit.decide.integrity import (
    check_base_match,
    check_tokenizer_match,
    check_variants,
    merge_tolerances,
)
from evalkit.engines.hf import HFEngine
from evalkit.errors import EXIT_BAD_INPUT, InputError
from evalkit.plan.types import IntegritySettings


def make_adapter(base_dir: Path, out: Path, *, zero: bool = False, seed: int = 2) -> Path:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(base_dir),
        LoraConfig(
            r=4, lora_alpha=16, init_lora_weights=False, target_modules=["q_proj", "v_proj"]
        ),
    )
    if zero:
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "lora_" in name:
                    p.zero_()
    model.save_pretrained(out)
    return out


def make_base(tiny_model_dir: Path, out: Path, *, hidden: int, seed: int) -> Path:
    """Another tiny Llama (the same tokenizer); `hidden` 64 gives the same shapes as the
    shared tiny model, anything else other shapes."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        tie_word_embeddings=True,
    )
    LlamaForCausalLM(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def dirs(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("integrity")
    other_shapes = make_base(tiny_model_dir, d / "other-32", hidden=32, seed=5)
    same_shapes = make_base(tiny_model_dir, d / "other-64", hidden=64, seed=6)
    return {
        "good": make_adapter(tiny_model_dir, d / "good"),
        "zero": make_adapter(tiny_model_dir, d / "zero", zero=True),
        "other_shapes": make_adapter(other_shapes, d / "for-other-32"),
        "same_shapes": make_adapter(same_shapes, d / "for-other-64"),
    }


@pytest.fixture(scope="module")
def engine(tiny_model_dir: Path, dirs: dict[str, Path]) -> HFEngine:
    return HFEngine(str(tiny_model_dir), {"good": dirs["good"], "zero": dirs["zero"]}, batch_size=4)


def by_check(results: list, check: str, variant: str):
    return next(r for r in results if r.check == check and r.variant == variant)


def test_all_zero_adapter_is_caught(engine: HFEngine) -> None:
    results = check_variants(
        engine, ["base", "good", "zero", "merged:good", "merged:zero"], IntegritySettings()
    )
    good = by_check(results, "adapter_applied", "good")
    zero = by_check(results, "adapter_applied", "zero")
    assert good.passed and good.value > 1e-2
    assert not zero.passed and zero.value == 0.0
    assert "changes nothing" in zero.detail
    merged = by_check(results, "merge_agrees", "merged:good")
    assert merged.passed and merged.value < 1e-6  # fp32: the merge computes the adapter


class PerturbedMerge:
    """The real engine, but its merged variant's weights get noise added after the merge:
    what a broken merge-and-save would ship."""

    def __init__(self, inner: HFEngine, scale: float) -> None:
        self.inner, self.scale = inner, scale
        self.name = inner.name

    def fingerprint(self, variant: str) -> str:
        return self.inner.fingerprint(variant)

    def probe_logits(self, texts: list[str]):
        return self.inner.probe_logits(texts)

    @contextmanager
    def variant(self, name: str) -> Iterator[None]:
        with self.inner.variant(name):
            if not name.startswith("merged:"):
                yield
                return
            weight = self.inner.peft.base_model.model.model.layers[0].mlp.down_proj.weight
            saved = weight.detach().clone()
            gen = torch.Generator().manual_seed(0)
            with torch.no_grad():
                weight.add_(self.scale * torch.randn(weight.shape, generator=gen))
            try:
                yield
            finally:
                with torch.no_grad():
                    weight.copy_(saved)


def test_merged_model_with_perturbed_weights_is_caught(engine: HFEngine) -> None:
    variants = ["base", "good", "merged:good"]
    broken = by_check(
        check_variants(PerturbedMerge(engine, 0.5), variants, IntegritySettings()),  # type: ignore[arg-type]
        "merge_agrees",
        "merged:good",
    )
    assert not broken.passed
    assert broken.value > 1e-3 and "do not compute the adapter" in broken.detail
    # the same engine, unperturbed, passes: the check is about the weights, not the setup
    fine = by_check(
        check_variants(engine, variants, IntegritySettings()), "merge_agrees", "merged:good"
    )
    assert fine.passed


def test_merge_tolerance_depends_on_precision() -> None:
    cfg = IntegritySettings()
    fp32, half, nf4 = (
        merge_tolerances(cfg),
        merge_tolerances(dataclasses.replace(cfg, dtype="bfloat16")),
        merge_tolerances(dataclasses.replace(cfg, load_in_4bit=True)),
    )
    assert fp32[0] < half[0] < nf4[0] and fp32[1] > half[1] > nf4[1]
    assert merge_tolerances(IntegritySettings(merge_kl_tolerance=0.5))[0] == 0.5


def test_adapter_for_other_shapes_is_refused_with_exit_2(
    tiny_model_dir: Path, dirs: dict[str, Path]
) -> None:
    with pytest.raises(InputError) as err:
        HFEngine(str(tiny_model_dir), {"alien": dirs["other_shapes"]})
    assert err.value.exit_code == EXIT_BAD_INPUT
    msg = str(err.value)
    assert "adapter 'alien'" in msg and "does not fit the suite's base" in msg
    assert "q_proj" in msg and "trained for another base" in msg


def test_adapter_declaring_another_base_fails_the_check(
    tiny_model_dir: Path, dirs: dict[str, Path]
) -> None:
    adapters = {"ours": dirs["good"], "theirs": dirs["same_shapes"]}
    results = check_base_match(adapters, str(tiny_model_dir), "0" * 16, None)
    assert by_check(results, "base_matches", "ours").passed
    theirs = by_check(results, "base_matches", "theirs")
    assert not theirs.passed and "trained for another base" in theirs.detail


def test_base_match_by_name_and_by_card_fingerprint(tmp_path: Path) -> None:
    a = tmp_path / "a"
    a.mkdir()
    (a / "adapter_config.json").write_text(
        json.dumps({"base_model_name_or_path": "HuggingFaceTB/SmolLM2-135M-Instruct"})
    )
    # the hub name and the built-in name are the same model
    assert check_base_match({"a": a}, "builtin:smollm2-135m-instruct", "f" * 16, None)[0].passed
    assert not check_base_match({"a": a}, "builtin:other-model", "f" * 16, None)[0].passed
    # a training card's fingerprint in evalkit's format decides over names
    (a / "training_card.json").write_text(json.dumps({"base_fingerprint": "ab" * 8}))
    assert not check_base_match({"a": a}, "builtin:smollm2-135m-instruct", "f" * 16, None)[0].passed
    assert check_base_match({"a": a}, "builtin:other-model", "ab" * 8, None)[0].passed


def test_tokenizer_with_another_chat_template_is_caught(
    engine: HFEngine, dirs: dict[str, Path], tmp_path: Path
) -> None:
    from transformers import AutoTokenizer

    same = tmp_path / "same"
    other = tmp_path / "other"
    for d in (same, other):
        d.mkdir()
    tok = AutoTokenizer.from_pretrained(engine.name)
    tok.save_pretrained(same)
    tok.chat_template = "{% for m in messages %}{{ m['content'] }}\n{% endfor %}"
    tok.save_pretrained(other)
    results = check_tokenizer_match(
        {"plain": dirs["good"], "same": same, "other": other}, engine.tokenizer
    )
    assert [r.variant for r in results] == ["same", "other"]  # no tokenizer: not listed
    assert results[0].passed
    assert not results[1].passed and "chat template differs" in results[1].detail
