"""Training-loop features on a tiny random Llama: resume equals an uninterrupted run,
divergence keeps the last good checkpoint, validation loss, max_steps, QLoRA on CPU."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
peft = pytest.importorskip("peft")

from safetensors.torch import load_file  # noqa: E402

from evalkit.training import LoraSettings, TrainingDiverged, train_lora  # noqa: E402
from evalkit.training.settings import TrainingError  # noqa: E402
from evalkit.training.store import (  # noqa: E402
    checkpoint_root,
    latest_checkpoint,
    load_checkpoint,
)
from tests.test_train import _examples, _logits, _tiny_model, _tiny_tokenizer  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing:FutureWarning")

# dropout > 0 and grad_accum > 1: resume must restore the RNG and the position in an epoch
SETTINGS = LoraSettings(rank=4, alpha=8, dropout=0.1, target_modules=("q_proj", "v_proj"),
                        learning_rate=5e-3, epochs=3, batch_size=2, grad_accum=2,
                        val_fraction=0.25, seed=3)  # fmt: skip


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    return _tiny_tokenizer()


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Any:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class Interrupt(Exception):
    pass


def _stop_at(n: int) -> Any:
    def hook(step: int, loss: float) -> None:
        if step == n:
            raise Interrupt

    return hook


@pytest.mark.parametrize(("every", "stop", "ckpt_step"), [(2, 5, 4), (3, 4, 3)])
def test_resume_after_interruption_equals_uninterrupted(
    tokenizer: Any, tmp_path: Path, every: int, stop: int, ckpt_step: int
) -> None:
    """Interrupted mid-epoch (checkpoint at step 4 of 3-step epochs), and at an epoch's
    end (checkpoint at step 3): the resumed run ends with identical tensors."""
    data = _examples(16)  # 12 train, 4 validation: 6 batches, 3 steps per epoch, 9 steps
    full = train_lora(_tiny_model(tokenizer), tokenizer, data, SETTINGS, tmp_path / "full",
                      progress=False, checkpoint_every=2)  # fmt: skip
    assert len(full.losses) == 9 and len(full.val_losses) == 3

    out = tmp_path / "cut"
    with pytest.raises(Interrupt):
        train_lora(_tiny_model(tokenizer), tokenizer, data, SETTINGS, out, progress=False,
                   checkpoint_every=every, on_step=_stop_at(stop))  # fmt: skip
    assert not out.exists(), "an interrupted run must not leave an adapter that looks finished"
    ckpt = latest_checkpoint(out)
    assert ckpt is not None and ckpt.name == f"step-{ckpt_step:06d}"

    resumed = train_lora(_tiny_model(tokenizer), tokenizer, data, SETTINGS, out,
                         progress=False, checkpoint_every=every, resume=True)  # fmt: skip
    assert resumed.resumed_from == ckpt_step
    assert resumed.losses == full.losses
    assert resumed.val_losses == full.val_losses
    a = load_file(str(tmp_path / "full" / "adapter_model.safetensors"))
    b = load_file(str(out / "adapter_model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    card = json.loads((out / "training_card.json").read_text())
    assert card["resumed_from_step"] == ckpt_step and card["key"] == json.loads(
        (tmp_path / "full" / "training_card.json").read_text())["key"]  # fmt: skip
    assert not checkpoint_root(out).exists(), "checkpoints are removed once the adapter is saved"


def test_resume_refuses_a_checkpoint_of_other_settings(tokenizer: Any, tmp_path: Path) -> None:
    out = tmp_path / "a"
    with pytest.raises(Interrupt):
        train_lora(_tiny_model(tokenizer), tokenizer, _examples(16), SETTINGS, out,
                   progress=False, checkpoint_every=2, on_step=_stop_at(3))  # fmt: skip
    other = SETTINGS.replace(rank=8)
    with pytest.raises(ValueError, match="other settings"):
        train_lora(_tiny_model(tokenizer), tokenizer, _examples(16), other, out,
                   progress=False, resume=True)  # fmt: skip
    assert latest_checkpoint(out) is not None


def test_divergence_keeps_the_last_good_checkpoint(tokenizer: Any, tmp_path: Path) -> None:
    model = _tiny_model(tokenizer)

    def poison(step: int, loss: float) -> None:
        if step == 4:  # after the step-4 checkpoint, make the next forward pass NaN
            with torch.no_grad():
                model.model.norm.weight.fill_(float("nan"))

    out = tmp_path / "x"
    with pytest.raises(TrainingDiverged, match="loss is nan") as info:
        train_lora(model, tokenizer, _examples(16), SETTINGS, out, progress=False,
                   checkpoint_every=2, on_step=poison)  # fmt: skip
    assert "step-000004" in str(info.value)
    assert not out.exists()
    state = load_checkpoint(latest_checkpoint(out))
    assert state["step"] == 4
    assert all(torch.isfinite(t).all() for t in state["adapter"].values())
    assert not any("lora" in n for n, _ in model.named_modules())


class _Payload:
    """Unpickling this creates the sentinel file: what a planted checkpoint would run."""

    def __init__(self, sentinel: Path) -> None:
        self.sentinel = sentinel

    def __reduce__(self) -> Any:
        return (Path.touch, (self.sentinel,))


def test_checkpoints_hold_no_pickle(tokenizer: Any, tmp_path: Path) -> None:
    out = tmp_path / "a"
    with pytest.raises(Interrupt):
        train_lora(_tiny_model(tokenizer), tokenizer, _examples(16), SETTINGS, out,
                   progress=False, checkpoint_every=2, on_step=_stop_at(3))  # fmt: skip
    ckpt = latest_checkpoint(out)
    assert ckpt is not None
    assert sorted(p.name for p in ckpt.iterdir()) == ["state.json", "state.safetensors"]
    raw = (ckpt / "state.safetensors").read_bytes()
    header_len = int.from_bytes(raw[:8], "little")
    assert json.loads(raw[8 : 8 + header_len])["__metadata__"]["format"] == "evalkit-state/1"
    state = load_checkpoint(ckpt)  # tuples, integer keys and RNG states come back as written
    assert isinstance(state["optimizer"]["param_groups"][0]["betas"], tuple)
    assert set(state["optimizer"]["state"]) == set(range(len(state["optimizer"]["state"])))
    assert state["torch_rng"].dtype == torch.uint8


@pytest.mark.parametrize("plant", ["legacy_pickle", "pickle_as_tensors", "swapped_tensors"])
def test_a_planted_checkpoint_never_runs_code(tokenizer: Any, tmp_path: Path, plant: str) -> None:
    """A checkpoint in the cache can come from a restored CI cache that other jobs write:
    resuming from a planted one is refused with the command that discards it, and the
    payload never runs."""
    import pickle

    sentinel = tmp_path / "SENTINEL"
    out = tmp_path / "a"
    payload = pickle.dumps({"adapter": _Payload(sentinel), "step": 2})
    if plant == "legacy_pickle":  # what earlier versions wrote: state.pt
        step = checkpoint_root(out) / "step-000002"
        step.mkdir(parents=True)
        (step / "state.pt").write_bytes(payload)
    else:
        with pytest.raises(Interrupt):
            train_lora(_tiny_model(tokenizer), tokenizer, _examples(16), SETTINGS, out,
                       progress=False, checkpoint_every=2, on_step=_stop_at(3))  # fmt: skip
        step = latest_checkpoint(out)
        assert step is not None
        if plant == "pickle_as_tensors":
            (step / "state.safetensors").write_bytes(payload)
        else:  # valid safetensors, but not the file the JSON side recorded
            from safetensors.torch import save_file

            save_file({"t000000": torch.zeros(2)}, str(step / "state.safetensors"))
    with pytest.raises(TrainingError) as info:
        train_lora(_tiny_model(tokenizer), tokenizer, _examples(16), SETTINGS, out,
                   progress=False, resume=True)  # fmt: skip
    assert "rm -rf" in str(info.value) and str(checkpoint_root(out)) in str(info.value)
    assert not sentinel.exists()
    assert not out.exists()


def test_max_steps_cosine_and_validation_loss(tokenizer: Any, tmp_path: Path) -> None:
    s = LoraSettings(rank=8, alpha=16, dropout=0.0, target_modules="all-linear",
                     learning_rate=1e-2, lr_schedule="cosine", max_steps=10, batch_size=4,
                     val_fraction=0.2)  # fmt: skip
    r = train_lora(_tiny_model(tokenizer), tokenizer, _examples(20), s, tmp_path / "m",
                   progress=False)  # fmt: skip
    assert len(r.losses) == 10  # 16 train examples: 4 steps per epoch: 4 + 4 + 2
    assert len(r.epoch_losses) == len(r.val_losses) == 3
    assert r.val_losses[-1] < r.val_losses[0]
    card = json.loads((tmp_path / "m" / "training_card.json").read_text())
    assert card["examples_validation"] == 4 and card["val_losses"] == r.val_losses
    assert card["tokens_per_second"] > 0 and card["settings"]["lr_schedule"] == "cosine"


def test_qlora_trains_on_cpu_and_loads_on_the_full_precision_base(
    tokenizer: Any, tmp_path: Path
) -> None:
    pytest.importorskip("bitsandbytes")
    from evalkit.training.data import DataSpec
    from evalkit.training.run import train_adapter
    from tests.conftest import write_jsonl

    base = tmp_path / "base"
    _tiny_model(tokenizer).save_pretrained(base)
    tokenizer.save_pretrained(base)
    data = write_jsonl(tmp_path / "d.jsonl",
                       [{"prompt": p, "completion": c} for p, c in _examples(16)])  # fmt: skip
    s = LoraSettings(rank=8, alpha=16, dropout=0.0, target_modules="all-linear",
                     learning_rate=1e-2, epochs=4, batch_size=4, qlora=True)  # fmt: skip
    outcome = train_adapter(str(base), DataSpec(data), s, tmp_path / "q", progress=False)
    card = outcome.card
    assert card["qlora"] is True and card["settings"]["qlora"] is True
    assert card["epoch_losses"][-1] < card["epoch_losses"][0] / 2, card["epoch_losses"]
    # trained on 4-bit weights, evaluated on full precision: the drift is measured, not hidden
    drift = card["quantization_drift"]["max_abs_logit_diff"]
    assert 0 < drift < 10
    fp = peft.PeftModel.from_pretrained(_tiny_model(tokenizer), str(tmp_path / "q")).eval()
    assert not torch.allclose(_logits(fp, tokenizer), _logits(_tiny_model(tokenizer), tokenizer))
    # merged into the full-precision base: the merge itself is faithful, and the report
    # carries the quantization drift beside it
    from evalkit.training.merge import merge_adapter

    report = merge_adapter(tmp_path / "q", tmp_path / "merged")
    assert report.qlora is True and report.quantization_drift == drift
    assert report.max_abs_logit_diff < 1e-4 < drift
