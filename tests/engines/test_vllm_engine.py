"""The vllm engine (evalkit/engines/vllm_engine.py) against the hf engine on a tiny random
Llama with a real peft adapter.

vLLM cannot run here (no CUDA GPU, not installed), so `FakeLLM` stands in for `vllm.LLM`:
it takes vLLM's constructor arguments and `generate(inputs, sampling_params, use_tqdm,
lora_request)`, computes with transformers + peft on the CPU, and answers with objects
shaped like vLLM's `RequestOutput` (tests/engines/test_vllm_outputs.py copies vLLM's field
names and builds `prompt_logprobs` as vLLM's LogprobsProcessor does). Everything of the
engine is its real code: the token ids it sends, the LoRA request of each variant, one
`generate()` call per request batch, the stop handling, the reading of prompt logprobs,
merged variants in a second LLM, and the parity check of decide/parity.py on top."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from evalkit.engines.base import ChatPrompt
from evalkit.engines.hf import HFEngine
from evalkit.engines.registry import EngineRequest
from evalkit.engines.vllm_engine import VllmEngine
from tests.engines.test_vllm_outputs import CompletionOutput, RequestOutput, vllm_prompt_logprobs


@dataclass
class FakeSamplingParams:  # vllm.SamplingParams: the fields the engine sets
    temperature: float = 1.0
    max_tokens: int | None = 16
    stop: list[str] | None = None
    stop_token_ids: list[int] | None = None
    prompt_logprobs: int | None = None
    detokenize: bool = True


@dataclass(frozen=True)
class FakeLoRARequest:  # vllm.lora.request.LoRARequest(lora_name, lora_int_id, lora_path)
    lora_name: str
    lora_int_id: int
    lora_path: str


class FakeLLM:
    """vllm.LLM's surface, computing with transformers + peft (fp32, CPU)."""

    made: list[FakeLLM] = []
    drop_lora = False  # answer every LoRA request with the base (a broken engine)

    def __init__(self, **kwargs: Any) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.kwargs = kwargs
        self.model = AutoModelForCausalLM.from_pretrained(kwargs["model"], dtype=torch.float32)
        self.model.eval()
        self.tok = AutoTokenizer.from_pretrained(kwargs["tokenizer"])
        self.peft: Any = None
        self.calls: list[tuple[list[dict[str, list[int]]], Any, Any]] = []
        self.released = False
        FakeLLM.made.append(self)

    def _as(self, lora: FakeLoRARequest | None) -> Any:
        from peft import PeftModel

        if lora is None or FakeLLM.drop_lora:
            return self.peft.disable_adapter() if self.peft else contextlib.nullcontext()
        assert self.kwargs.get("enable_lora"), "a LoRA request on an LLM without LoRA"
        if self.peft is None:
            self.peft = PeftModel.from_pretrained(
                self.model, lora.lora_path, adapter_name=lora.lora_name
            )
        elif lora.lora_name not in self.peft.peft_config:
            self.peft.load_adapter(lora.lora_path, adapter_name=lora.lora_name)
        self.peft.set_adapter(lora.lora_name)
        return contextlib.nullcontext()

    def _logp(self, ids: list[int]) -> torch.Tensor:
        net = self.peft if self.peft is not None else self.model
        with torch.inference_mode():
            return torch.log_softmax(net(input_ids=torch.tensor([ids])).logits[0].float(), -1)

    def generate(
        self, inputs: list[dict[str, list[int]]], sampling_params: Any, use_tqdm: bool = True,
        lora_request: Any = None,
    ) -> list[RequestOutput]:  # fmt: skip
        self.calls.append((inputs, sampling_params, lora_request))
        p = sampling_params
        out = []
        with self._as(lora_request):
            for i, inp in enumerate(inputs):
                seq = list(inp["prompt_token_ids"])
                plp = None
                gen: list[int] = []
                while len(gen) < (p.max_tokens or 16):
                    logp = self._logp(seq + gen)
                    if plp is None and p.prompt_logprobs is not None:
                        rows = logp[: len(seq) - 1].numpy()
                        plp = vllm_prompt_logprobs(rows, seq, p.prompt_logprobs)
                    gen.append(int(logp[-1].argmax()))
                    text = self.tok.decode(gen, skip_special_tokens=True)
                    if gen[-1] in (p.stop_token_ids or []) or any(s in text for s in p.stop or []):
                        break  # vLLM's stop: an eos id, or a stop string in the text
                comp = CompletionOutput(0, "", gen, None, None, finish_reason="stop")
                out.append(RequestOutput(str(i), None, seq, plp, [comp], lora_request=lora_request))
        return out


def _release(llm: FakeLLM) -> None:
    llm.released = True


API = SimpleNamespace(
    LLM=FakeLLM,
    SamplingParams=FakeSamplingParams,
    LoRARequest=FakeLoRARequest,
    version="fake",
    release=_release,
)


@pytest.fixture(autouse=True)
def _fresh() -> Any:
    FakeLLM.made.clear()
    FakeLLM.drop_lora = False
    yield
    FakeLLM.drop_lora = False


@pytest.fixture(scope="module")
def adapter(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LoRA whose B is random and large enough to move the tiny model's logprobs well
    past the parity tolerances (a random model's next-token distribution is flat)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    out = tmp_path_factory.mktemp("adapter") / "a"
    torch.manual_seed(3)
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(tiny_model_dir),
        LoraConfig(
            r=8,
            lora_alpha=16,
            init_lora_weights=False,
            target_modules=["q_proj", "v_proj", "o_proj"],
        ),  # noqa: E501
    )
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0.0, 2.0)
    model.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def merged_dir(
    tiny_model_dir: Path, adapter: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:  # noqa: E501
    from evalkit.training.merge import merge_adapter

    out = tmp_path_factory.mktemp("merged") / "a"
    merge_adapter(adapter, out, base=str(tiny_model_dir))
    return out


@pytest.fixture(scope="module")
def hf(tiny_model_dir: Path, adapter: Path) -> HFEngine:
    return HFEngine(str(tiny_model_dir), {"a": adapter}, batch_size=4, device="cpu")


def _vllm(base: Path, adapter: Path, **vllm: Any) -> VllmEngine:
    return VllmEngine(EngineRequest(str(base), {"a": adapter}, options={"vllm": vllm}), API)


PROMPTS = [
    ChatPrompt("What is the capital of France?"),
    ChatPrompt("List three prime numbers.", system="Answer briefly."),
    ChatPrompt("Write one sentence about the sea."),
]


def test_generation_is_the_hf_engines_with_one_call_and_one_lora_per_variant(
    tiny_model_dir: Path, adapter: Path, hf: HFEngine
) -> None:
    eng = _vllm(tiny_model_dir, adapter)
    llm = FakeLLM.made[0]
    assert llm.kwargs["enable_lora"] and llm.kwargs["max_loras"] == 1
    assert llm.kwargs["max_lora_rank"] == 8 and llm.kwargs["model"] == str(tiny_model_dir)
    for v in ("base", "a"):
        with hf.variant(v):
            want = hf.generate(PROMPTS, max_new_tokens=10)
        with eng.variant(v):
            got = eng.generate(PROMPTS, max_new_tokens=10)
        assert got == want, v
    assert len(llm.calls) == 2  # one generate() call per variant for all three prompts
    (base_in, params, base_lora), (_, _, a_lora) = llm.calls
    assert base_in == [{"prompt_token_ids": hf._encode_chat(p)} for p in PROMPTS]
    assert base_lora is None and a_lora == FakeLoRARequest("a", 1, str(adapter))
    assert params.temperature == 0.0 and params.max_tokens == 10
    assert params.stop == [hf.tokenizer.eos_token] and params.stop_token_ids == [
        hf.tokenizer.eos_token_id
    ]


def test_stop_strings_cut_as_the_hf_engine_cuts(
    tiny_model_dir: Path, adapter: Path, hf: HFEngine
) -> None:
    eng = _vllm(tiny_model_dir, adapter)
    with hf.variant("a"):  # the adapter writes words; the random base, newlines
        full = hf.generate(PROMPTS[:1], max_new_tokens=12)[0]
        stop = full[len(full) // 2 : len(full) // 2 + 2]
        assert stop.strip(), full
        want = hf.generate(PROMPTS, max_new_tokens=12, stop=(stop,))
    with eng.variant("a"):
        got = eng.generate(PROMPTS, max_new_tokens=12, stop=(stop,))
    assert got == want and 0 < len(got[0]) < len(full) and stop not in got[0]
    assert FakeLLM.made[0].calls[-1][1].stop[0] == stop


def test_scoring_agrees_with_the_hf_engine(
    tiny_model_dir: Path, adapter: Path, hf: HFEngine
) -> None:
    eng = _vllm(tiny_model_dir, adapter)
    pairs = [(PROMPTS[0], "Paris."), (PROMPTS[0], "Lyon, of course."), (PROMPTS[1], "2, 3, 5")]
    text = "The river rose after three days of rain, and the village moved uphill. " * 6
    llm = FakeLLM.made[0]
    for v in ("base", "a"):
        with hf.variant(v):
            want_ll = hf.loglikelihood(pairs)
            want_nll = hf.rolling_nll([text, "Short."])
        with eng.variant(v):
            got_ll = eng.loglikelihood(pairs)
            got_nll = eng.rolling_nll([text, "Short."])
        for g, w in zip(got_ll + got_nll, want_ll + want_nll, strict=True):
            assert g.n_tokens == w.n_tokens and g.logprob == pytest.approx(w.logprob, abs=1e-3)
    _, params, _ = llm.calls[0]
    assert params.prompt_logprobs == 1 and params.max_tokens == 1
    assert len(llm.calls) == 4  # each request batch in one generate() call


def test_open_shift_reads_the_base_without_a_lora_request(
    tiny_model_dir: Path, adapter: Path, hf: HFEngine
) -> None:
    eng = _vllm(tiny_model_dir, adapter)
    pairs = [(PROMPTS[0], "Paris is the capital."), (PROMPTS[2], "The sea is wide.")]
    with hf.variant("a"):
        want = hf.base_topk_shift(pairs, k=3)
    with eng.variant("a"):
        assert eng.capabilities.open_shift
        got = eng.base_topk_shift(pairs, k=3)
    assert got == want and any(s.outside for s in got)
    _, params, lora = FakeLLM.made[0].calls[-1]
    assert lora is None and params.prompt_logprobs == 3


def test_parity_passes_the_engine_and_catches_a_dropped_adapter(
    tiny_model_dir: Path, adapter: Path, hf: HFEngine
) -> None:
    from evalkit.decide.parity import check_parity
    from evalkit.plan.probes import probe_data_dir
    from evalkit.suite.engine_config import ParityConfig

    knowledge = probe_data_dir() / "knowledge.jsonl"
    settings = ParityConfig(texts=8)
    results, figures = check_parity(
        _vllm(tiny_model_dir, adapter), hf, ["base", "a"], settings, knowledge
    )
    assert all(r.passed for r in results), [r.detail for r in results]
    assert all(f.max_abs < 1e-3 and f.top1 == 1.0 and f.tokens > 50 for f in figures)
    assert "prompt logprobs read aligned" in results[1].detail

    FakeLLM.drop_lora = True  # the adapter's rows computed by the base
    results, figures = check_parity(
        _vllm(tiny_model_dir, adapter), hf, ["base", "a"], settings, knowledge
    )
    assert results[0].passed and not results[1].passed
    assert "does not compute variant 'a'" in results[1].detail
    assert figures[1].mean_abs > settings.max_mean_abs


def test_a_merged_variant_runs_the_exported_model_in_a_second_llm(
    tiny_model_dir: Path, adapter: Path, merged_dir: Path, hf: HFEngine
) -> None:
    eng = _vllm(tiny_model_dir, adapter, merged={"a": str(merged_dir)})
    first = FakeLLM.made[0]
    pairs = [(PROMPTS[0], "Paris."), (PROMPTS[2], "Waves.")]
    with eng.variant("merged:a"):
        assert not eng.capabilities.open_shift  # the base is not loaded beside it
        got = eng.loglikelihood(pairs)
        assert len(FakeLLM.made) == 2 and first.released
        second = FakeLLM.made[1]
        assert second.kwargs["model"] == str(merged_dir) and "enable_lora" not in second.kwargs
        assert second.calls[0][2] is None  # no LoRA request: the weights are merged
    with hf.variant("merged:a"):
        want = hf.loglikelihood(pairs)
    assert [g.logprob for g in got] == pytest.approx([w.logprob for w in want], abs=1e-3)
    with eng.variant("a"):  # back on the base: a third load, the merged model released
        assert eng.capabilities.open_shift
        eng.loglikelihood(pairs[:1])
    assert len(FakeLLM.made) == 3 and second.released
    fps = {eng.fingerprint(v) for v in ("base", "a", "merged:a")}
    assert len(fps) == 3 and all(f.startswith("vllm:float32:") for f in fps)
    assert hf.fingerprint("base") not in fps  # vLLM's results are never hf's in the cache


def test_unknown_variants_and_what_vllm_cannot_compute_are_refused(
    tiny_model_dir: Path, adapter: Path
) -> None:
    from evalkit.errors import InputError

    eng = _vllm(tiny_model_dir, adapter)
    with pytest.raises(InputError, match="needs engine.vllm.merged"), eng.variant("merged:a"):
        pass
    with pytest.raises(InputError, match="cannot compute KL"):
        eng.rolling_kl(["text"])
    with pytest.raises(InputError, match="no full logits"):
        eng.probe_logits(["text"])
    assert not eng.capabilities.kl and not eng.capabilities.probe_logits
    long = _vllm(tiny_model_dir, adapter, max_model_len=16)
    with pytest.raises(InputError, match="longer than engine.vllm.max_model_len"):
        long.loglikelihood([(PROMPTS[1], "x " * 20)])


def test_a_suite_on_the_vllm_kind_runs_end_to_end(
    tiny_model_dir: Path, adapter: Path, merged_dir: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    import json

    import evalkit.engines.vllm_engine_setup as setup
    from evalkit.engines import registry
    from evalkit.pipeline import run_suite
    from tests.conftest import write_jsonl

    monkeypatch.setattr(setup, "vllm_installed", lambda: True)
    kind = registry.engine_kind("vllm")
    monkeypatch.setitem(
        registry._ENGINES,
        "vllm",
        registry.EngineKind("vllm", lambda r: VllmEngine(r, API), kind.capabilities),
    )
    write_jsonl(tmp_path / "qa.jsonl", [{"id": f"q{i}", "q": f"Say {i}."} for i in range(3)])
    suite = tmp_path / "suite.yaml"
    suite.write_text(f"""name: vllm-e2e
base: {{model: {tiny_model_dir}}}
adapters: {{a: {{path: {adapter}}}}}
variants: [base, a, "merged:a"]
tasks:
  - name: qa
    data: {{path: qa.jsonl}}
    id: id
    prompt: "{{{{ q }}}}"
    reference: "{{{{ q }}}}"
    generation: {{max_new_tokens: 4}}
    metrics: [{{type: regex, value: "a"}}, {{type: reference_perplexity}}]
probes: {{builtin: [knowledge-mc, knowledge-open]}}
engine: {{kind: vllm, vllm: {{merged: {{a: {merged_dir}}}}}, parity: {{texts: 8}}}}
settings: {{bootstrap_resamples: 200}}
""")
    out = run_suite(suite, output_dir=tmp_path / "out", limit=2)
    assert out.exit_code == 0, out.results.get("warnings")
    eng = out.results["engine"]
    assert eng["kind"] == "vllm" and eng["lora_ids"] == {"a": 1} and eng["parity"]["passed"]
    assert set(eng["parity"]["variants"]) == {"base", "a", "merged:a"}
    checks = {(r["check"], r["variant"]) for r in out.results["integrity"]}
    assert ("engine_parity", "merged:a") in checks
    records = [json.loads(x) for x in (out.output_dir / "records.jsonl").read_text().splitlines()]
    shift = {r["variant"]: r["shift_tokens"] for r in records if r["task"] == "knowledge-open"}
    assert shift["a"] is not None and shift["merged:a"] is None  # unscored, not faked
    assert all(len(r["choice_logprobs"]) == 4 for r in records if r["task"] == "knowledge-mc")
    metrics = {(m["variant"], m["task"], m["metric"]): m for m in out.results["metrics"]}
    shifted = [
        metrics[(v, "knowledge-open", "open_shift")]["n_unscored"] for v in ("a", "merged:a")
    ]
    assert shifted == [0, 2]
    assert metrics[("merged:a", "qa", "reference_perplexity")]["n_unscored"] == 0
