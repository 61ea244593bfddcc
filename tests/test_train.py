"""LoRA training: loss, saving/loading, determinism, prompt masking, bad input.

Runs on a tiny random Llama with a tiny byte-level BPE tokenizer that carries the
SmolLM2 chat template, so it needs no model files and takes a few seconds.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")

from safetensors.torch import load_file  # noqa: E402

from evalkit.engines.chat import end_of_turn, render_chat  # noqa: E402
from evalkit.training import (  # noqa: E402
    IGNORE_INDEX,
    LoraSettings,
    completion_loss,
    encode_example,
    train_lora,
)

# peft's loading path calls a transformers API deprecated in v5
pytestmark = pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing:FutureWarning")

CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful assistant<|im_end|>\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
KINDS = ["payment", "termination", "liability", "confidentiality"]


def _examples(n: int = 16) -> list[tuple[str, str]]:
    return [
        (
            f"Summarize clause {i}: the {KINDS[i % 4]} terms apply.",
            json.dumps({"type": KINDS[i % 4], "risk": "low" if i % 2 else "high"}),
        )
        for i in range(n)
    ]


def _tiny_tokenizer() -> Any:
    """A byte-level BPE tokenizer trained on the test data, with a ChatML template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=320,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    corpus = [p + " " + c for p, c in _examples()] + ["system user assistant helpful"]
    tok.train_from_iterator(corpus, trainer)
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|im_end|>",
        unk_token="<|endoftext|>",
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    return _tiny_tokenizer()


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Any:
    """The matrices here are tiny: on a shared 2-core machine two threads spin-wait on
    each other and ran 8-25x slower than one."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _tiny_model(tokenizer: Any, seed: int = 0) -> Any:
    torch.manual_seed(seed)
    config = transformers.LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=True,
        initializer_range=0.2,  # at 0.02 the frozen tied head keeps logits near-uniform
    )
    return transformers.LlamaForCausalLM(config).eval()


def _logits(model: Any, tokenizer: Any) -> Any:
    ids = tokenizer(render_chat(tokenizer, "Summarize clause 3."), return_tensors="pt")
    with torch.no_grad():
        return model(**ids).logits


FAST = LoraSettings(rank=8, alpha=16, dropout=0.0, target_modules=("q_proj", "v_proj"),
                    learning_rate=5e-3, epochs=2, batch_size=4)  # fmt: skip


def test_label_masking_counts_only_completion_and_eos(tokenizer: Any) -> None:
    prompt, completion = _examples()[1]
    ids, labels = encode_example(tokenizer, prompt, completion, max_seq_len=512)
    rendered = render_chat(tokenizer, prompt)
    n_prompt = len(tokenizer(rendered, add_special_tokens=False).input_ids)
    n_completion = len(tokenizer(completion, add_special_tokens=False).input_ids)
    assert len(ids) == len(labels)
    assert sum(y != IGNORE_INDEX for y in labels) == n_completion + 1  # + end of turn
    assert labels[:n_prompt] == [IGNORE_INDEX] * n_prompt
    assert labels[n_prompt:] == ids[n_prompt:]
    assert ids[-1] == tokenizer.convert_tokens_to_ids(end_of_turn(tokenizer))
    assert tokenizer.decode(ids[:n_prompt]) == rendered
    # truncation keeps the prompt and cuts the completion
    short_ids, short_labels = encode_example(tokenizer, prompt, completion, n_prompt + 2)
    assert len(short_ids) == n_prompt + 2
    assert sum(y != IGNORE_INDEX for y in short_labels) == 2


def test_label_masking_with_the_real_tokenizer(default_model_dir: Path) -> None:
    # the built-in model converts itself here if this session has not yet converted it
    tok = transformers.AutoTokenizer.from_pretrained(default_model_dir)
    prompt = "Summarize this contract clause in the house format.\n\nThe Licensee shall pay."
    completion = '{"type": "payment", "obligor": "Licensee", "summary": "The Licensee pays."}'
    ids, labels = encode_example(tok, prompt, completion, max_seq_len=512)
    n_completion = len(tok(completion, add_special_tokens=False).input_ids)
    n_prompt = len(ids) - n_completion - 1
    assert sum(y != IGNORE_INDEX for y in labels) == n_completion + 1
    assert tok.decode(ids[:n_prompt]) == render_chat(tok, prompt)
    assert tok.decode(ids[n_prompt:]) == completion + end_of_turn(tok)
    assert ids[-1] == tok.eos_token_id


def test_completion_loss_equals_the_models_own_loss(tokenizer: Any) -> None:
    model = _tiny_model(tokenizer)
    pairs = [encode_example(tokenizer, p, c, 512) for p, c in _examples(3)]
    width = max(len(ids) for ids, _ in pairs)
    pad = tokenizer.pad_token_id
    ids = torch.tensor([x + [pad] * (width - len(x)) for x, _ in pairs])
    mask = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x, _ in pairs])
    labels = torch.tensor([y + [IGNORE_INDEX] * (width - len(y)) for _, y in pairs])
    with torch.no_grad():
        ours = completion_loss(model, ids, mask, labels)
        theirs = model(input_ids=ids, attention_mask=mask, labels=labels).loss
    torch.testing.assert_close(ours, theirs)


def test_loss_goes_down_and_base_is_restored(tokenizer: Any, tmp_path: Path) -> None:
    model = _tiny_model(tokenizer)
    before = _logits(model, tokenizer)
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    settings = LoraSettings(
        rank=8, alpha=16, dropout=0.0, target_modules="all-linear",
        learning_rate=1e-2, epochs=6, batch_size=4, warmup_ratio=0.1,
    )  # fmt: skip
    result = train_lora(model, tokenizer, _examples(), settings, tmp_path / "a", progress=False)
    assert len(result.epoch_losses) == 6
    assert len(result.losses) == 6 * 4
    assert result.epoch_losses[-1] < result.epoch_losses[0] / 3, result.epoch_losses
    assert result.tokens > 0 and result.seconds > 0
    # the caller's model is the unchanged base again
    assert not any("lora" in n for n, _ in model.named_modules())
    assert {n: p.requires_grad for n, p in model.named_parameters()} == flags
    assert not model.training
    assert torch.equal(_logits(model, tokenizer), before)
    card = json.loads((tmp_path / "a" / "training_card.json").read_text())
    assert card["examples"] == 16 and len(card["data_sha256"]) == 64
    assert card["epoch_losses"] == result.epoch_losses
    assert card["settings"]["target_modules"] == "all-linear"
    assert {"evalkit", "torch", "peft", "transformers"} <= set(card["versions"])
    assert not list(tmp_path.glob(".*")), "temporary directories left behind"


def test_saved_adapter_reloads_with_same_logits(tokenizer: Any, tmp_path: Path) -> None:
    settings = LoraSettings(**{**FAST.__dict__, "target_modules": ("q_proj", "v_proj", "o_proj")})
    model = _tiny_model(tokenizer)
    result = train_lora(
        model, tokenizer, _examples(8), settings, tmp_path / "a", progress=False, keep_adapter=True
    )
    trained = _logits(result.model, tokenizer)
    assert not torch.allclose(trained, _logits(_tiny_model(tokenizer), tokenizer), atol=1e-4)
    assert {p.name for p in (tmp_path / "a").iterdir()} == {
        "adapter_config.json", "adapter_model.safetensors", "training_card.json",
    }  # fmt: skip
    loaded = peft.PeftModel.from_pretrained(_tiny_model(tokenizer), str(tmp_path / "a")).eval()
    torch.testing.assert_close(_logits(loaded, tokenizer), trained, atol=1e-5, rtol=1e-5)

    # float16 files: half-size tensors, logits close to the float32 adapter
    half = LoraSettings(**{**settings.__dict__, "save_dtype": "float16"})
    train_lora(
        _tiny_model(tokenizer), tokenizer, _examples(8), half, tmp_path / "h", progress=False
    )
    tensors = load_file(str(tmp_path / "h" / "adapter_model.safetensors"))
    assert tensors and all(t.dtype == torch.float16 for t in tensors.values())
    loaded16 = peft.PeftModel.from_pretrained(_tiny_model(tokenizer), str(tmp_path / "h")).eval()
    torch.testing.assert_close(_logits(loaded16, tokenizer), trained, atol=1e-2, rtol=1e-2)


def test_same_seed_same_weights_other_seed_differs(tokenizer: Any, tmp_path: Path) -> None:
    settings = LoraSettings(**{**FAST.__dict__, "dropout": 0.1})
    model = _tiny_model(tokenizer)  # reused: training leaves it unchanged
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        s = LoraSettings(**{**settings.__dict__, "seed": seed})
        train_lora(model, tokenizer, _examples(8), s, tmp_path / name, progress=False)
    a, b, c = (load_file(str(tmp_path / n / "adapter_model.safetensors")) for n in "abc")
    assert a.keys() == b.keys() == c.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


@pytest.mark.parametrize(
    ("examples", "settings", "message"),
    [
        ([], FAST, "no training examples"),
        (None, LoraSettings(rank=0), "rank"),
        (None, LoraSettings(target_modules=("q_proj", "qkv_proj")), "'qkv_proj' not found"),
        (None, LoraSettings(target_modules="everything"), "all-linear"),
    ],
)
def test_bad_input_raises_value_error(
    tokenizer: Any, tmp_path: Path, examples: Any, settings: LoraSettings, message: str
) -> None:
    model = _tiny_model(tokenizer)
    with pytest.raises(ValueError, match=message):
        train_lora(
            model,
            tokenizer,
            _examples(4) if examples is None else examples,
            settings,
            tmp_path / "x",
            progress=False,
        )
    assert not (tmp_path / "x").exists()
    assert not any("lora" in n for n, _ in model.named_modules())


def test_nan_loss_stops_with_clear_error(tokenizer: Any, tmp_path: Path) -> None:
    model = _tiny_model(tokenizer)
    with torch.no_grad():
        model.model.norm.weight.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match="loss is nan"):
        train_lora(model, tokenizer, _examples(4), FAST, tmp_path / "x", progress=False)
    assert not (tmp_path / "x").exists()
    assert not any("lora" in n for n, _ in model.named_modules())
