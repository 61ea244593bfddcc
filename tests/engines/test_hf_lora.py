"""The fused LoRA forward (engines/hf_lora) on a tiny random Llama: the same logits as
peft's own forward, bit for bit where the scaling is a power of two, and peft's forward
wherever the layer is not in the plain inference case."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from evalkit.engines.hf import HFEngine
from evalkit.engines.hf_lora import fuse_lora_forwards

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def lora_model(tiny_model_dir: Path, alpha: int, seed: int = 3):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    config = LoraConfig(r=4, lora_alpha=alpha, init_lora_weights=False, target_modules=TARGETS)
    return get_peft_model(model, config).eval()


@pytest.fixture
def peft_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the calls of peft's own Linear forward."""
    from peft.tuners.lora.layer import Linear

    calls: list[int] = []
    own = Linear.forward

    def counted(self, *args, **kwargs):
        calls.append(1)
        return own(self, *args, **kwargs)

    monkeypatch.setattr(Linear, "forward", counted)
    return calls


def logits(model, ids: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return model(input_ids=ids).logits


IDS = torch.randint(0, 1000, (3, 17), generator=torch.Generator().manual_seed(0))


def test_fused_layers_give_peft_logits_bit_for_bit(tiny_model_dir: Path, peft_calls) -> None:
    model = lora_model(tiny_model_dir, alpha=8)  # scaling 2
    expected = logits(model, IDS)
    assert len(peft_calls) == 14  # 7 targeted layers × 2 layers, peft's forward each
    assert fuse_lora_forwards(model) == 14
    assert fuse_lora_forwards(model) == 14  # idempotent
    peft_calls.clear()
    got = logits(model, IDS)
    assert peft_calls == []  # every layer took the fused path
    assert torch.equal(got, expected)
    # and the adapter is visible: without it the logits differ
    with model.disable_adapter():
        assert not torch.allclose(logits(model, IDS), got, atol=1e-3)
    assert len(peft_calls) == 14  # a disabled adapter is peft's forward


def test_another_scaling_agrees_to_rounding(tiny_model_dir: Path) -> None:
    model = lora_model(tiny_model_dir, alpha=6)  # scaling 1.5
    expected = logits(model, IDS)
    fuse_lora_forwards(model)
    torch.testing.assert_close(logits(model, IDS), expected, rtol=1e-5, atol=1e-5)


def test_merged_and_training_layers_keep_peft_forward(tiny_model_dir: Path, peft_calls) -> None:
    model = lora_model(tiny_model_dir, alpha=8)
    fuse_lora_forwards(model)
    unmerged = logits(model, IDS)
    model.merge_adapter()
    peft_calls.clear()
    merged = logits(model, IDS)
    assert len(peft_calls) == 14
    torch.testing.assert_close(merged, unmerged, rtol=1e-4, atol=1e-4)
    model.unmerge_adapter()
    peft_calls.clear()
    with torch.enable_grad():  # autograd on: peft's forward, which it can differentiate
        model(input_ids=IDS).logits.sum().backward()
    assert len(peft_calls) == 14


def test_the_engine_runs_its_adapters_fused(tiny_model_dir: Path, tmp_path: Path) -> None:
    model = lora_model(tiny_model_dir, alpha=8)
    model.save_pretrained(tmp_path / "a")
    expected = logits(model, IDS)
    engine = HFEngine(str(tiny_model_dir), {"a": tmp_path / "a"}, batch_size=2)
    fused = [m for m in engine.model.modules() if "forward" in vars(m)]
    assert len(fused) == 14
    with engine.variant("a"):
        assert torch.equal(logits(engine.model, IDS), expected)
