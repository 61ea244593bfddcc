"""The `vllm` engine (`engine: {kind: vllm}`, `pip install 'evalkit[vllm]'`, a CUDA GPU):
vLLM in this process, one `vllm.LLM` holding the base with LoRA enabled and one
`LoRARequest` per adapter, so switching a variant loads nothing.

- Each task's requests for the active variant go to vLLM in one `generate()` call (vLLM
  schedules and batches them); base rows carry no LoRA request, an adapter's rows its own.
- Prompts are token ids: the base's chat template is applied here with the base's
  tokenizer, exactly as the hf engine does, and the generated ids are decoded and cut at
  the stop strings by the hf engine's own function.
- Log-likelihoods and rolling NLL come from `prompt_logprobs` (evalkit.engines.
  vllm_engine_outputs reads them); rolling windows are the hf engine's.
- `merged:NAME` runs the exported merged model (`evalkit merge`, then
  `engine.vllm.merged: {NAME: DIR}`) in a second LLM, loaded when that variant starts and
  replacing the first (one model on the GPU at a time).
- Not computed: KL against the base and full logits (vLLM returns top-k logprobs), and
  open-shift for a merged variant (the base is not loaded beside it). The run says so.
- vLLM's LoRA + prompt-logprob path has had bugs (vLLM #16668, #29955, #51594), so the
  parity check against transformers + peft runs before every vllm run (decide/parity.py).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from types import SimpleNamespace
from typing import Any

from evalkit.engines.base import ChatPrompt, LogLikelihood, Progress, RollingScore, TopKShift
from evalkit.engines.chat import (
    cut_at_stops,
    encode_chat,
    generation_stops,
)
from evalkit.engines.hf_scoring import ROLLING_WINDOW
from evalkit.engines.openai_client import EngineServerError
from evalkit.engines.registry import EngineCapabilities
from evalkit.engines.vllm_engine_outputs import (
    ParityReads,
    PromptScores,
    adapter_config,
    completion_tokens,
    loglikelihoods,
    lora_for,
    lora_rank,
    lora_specs,
    model_for,
    prompt_scores,
    risky_targets,
    rolling_nlls,
    rolling_windows,
    topk_shifts,
)
from evalkit.engines.vllm_engine_setup import (
    INSTALL_HINT,
    MAX_LOGPROBS,
    VLLM_CAPABILITIES,
    dir_digest,
    eos_ids,
    load_vllm,
    local_path,
)
from evalkit.errors import InputError, ModelLoadError
from evalkit.paths import digest_files

log = logging.getLogger(__name__)


class VllmEngine(ParityReads):
    """An Engine over vLLM in this process; see the module docstring. `api` is what
    `load_vllm()` returns (tests pass objects shaped like vLLM's, saying so)."""

    alignment = "aligned"  # prompt_logprobs entry j is log p(token j | before): as OpenAI

    def __init__(self, request: Any, api: SimpleNamespace) -> None:
        from transformers import AutoTokenizer

        from evalkit.engines.resolve import resolve_model

        self.api = api
        self.name = request.base
        self.opts: dict[str, Any] = dict(request.options.get("vllm") or {})
        resolved = resolve_model(request.base, relative_to=request.relative_to)
        self.base_dir = resolved.source
        self.tokenizer = AutoTokenizer.from_pretrained(resolved.source)
        self.dtype = str(self.opts.get("dtype") or request.dtype)
        self.k = max(1, int(self.opts.get("prompt_logprobs") or 1))
        self.max_model_len: int | None = self.opts.get("max_model_len")
        # the hf engine's windows, unless the model length is shorter (a window plus the
        # one token vLLM generates must fit it)
        self.window = min(ROLLING_WINDOW, (self.max_model_len or ROLLING_WINDOW + 1) - 1)
        self.merged = {
            n: str(local_path(p, request.relative_to))
            for n, p in (self.opts.get("merged") or {}).items()
        }
        self.specs = lora_specs(request.adapters)
        configs = {n: adapter_config(p) for n, p in request.adapters.items()}
        for n, c in configs.items():
            risky = risky_targets(c)
            if risky:
                log.warning(
                    "adapter %s targets %s: vLLM has dropped such deltas from prompt "
                    "logprobs (vLLM #51594); the parity check measures this release",
                    n,
                    ", ".join(risky),
                )
        self.max_lora_rank = int(
            self.opts.get("max_lora_rank") or lora_rank(list(configs.values()))
        )
        self._base_fp = dir_digest(self.base_dir) if resolved.is_local else request.base
        self._adapter_fp = {
            n: digest_files([p / "adapter_config.json", p / "adapter_model.safetensors"])
            for n, p in request.adapters.items()
        }
        self._merged_fp: dict[str, str] = {}
        self._eos = sorted(eos_ids(self.base_dir, self.tokenizer))
        self._llm: Any = None
        self._llm_dir: str | None = None
        self._active = "base"
        self.device = SimpleNamespace(type="cuda")
        self._llm_for("base")  # load now: a model that cannot load fails the load stage

    # -- identity and variants --------------------------------------------------------

    @property
    def capabilities(self) -> EngineCapabilities:
        # open-shift reads the base's top-k; beside a merged model the base is not loaded
        if self._active.startswith("merged:"):
            return replace(VLLM_CAPABILITIES, open_shift=False)
        return VLLM_CAPABILITIES

    def fingerprint(self, variant: str) -> str:
        head = f"vllm:{self.dtype}"
        if variant.startswith("merged:"):
            name = variant.removeprefix("merged:")
            if name not in self._merged_fp:  # every byte is hashed: once per run
                self._merged_fp[name] = dir_digest(self.merged[name])
            return f"{head}:merged:{self._merged_fp[name]}"
        if variant == "base":
            return f"{head}:{self._base_fp}"
        return f"{head}:{self._base_fp}+adapter:{self._adapter_fp[variant]}"

    def describe(self) -> dict[str, Any]:
        """The engine's settings for results.json."""
        return {
            "kind": "vllm",
            "version": self.api.version,
            "model": self.name,
            "dtype": self.dtype,
            "tensor_parallel_size": int(self.opts.get("tensor_parallel_size") or 1),
            "max_model_len": self.max_model_len,
            "max_lora_rank": self.max_lora_rank,
            "lora_ids": {n: s.int_id for n, s in self.specs.items()},
            "merged": dict(self.merged),
            "prompt_logprobs": self.k,
            "rolling_window": self.window,
        }

    def _check_variant(self, name: str) -> None:
        adapter = name.removeprefix("merged:")
        if name == "base" or (name in self.specs):
            return
        if name.startswith("merged:") and adapter in self.merged:
            return
        raise InputError(
            f"unknown variant '{name}' for the vllm engine",
            hint="merged:NAME needs engine.vllm.merged: {NAME: DIR}"
            if name.startswith("merged:")
            else None,
        )

    @contextmanager
    def variant(self, name: str) -> Iterator[None]:
        self._check_variant(name)
        self._active = name
        try:
            yield
        finally:
            self._active = "base"  # the LLM stays: the next variant loads only if it must

    def _llm_for(self, variant: str) -> Any:
        target = model_for(variant, self.base_dir, self.merged)
        if self._llm is not None and self._llm_dir == target:
            return self._llm
        self.close()
        is_base = target == self.base_dir
        kwargs: dict[str, Any] = {
            "model": target,
            "tokenizer": self.base_dir,  # prompts are token ids of the base's tokenizer
            "dtype": self.dtype,
            "tensor_parallel_size": int(self.opts.get("tensor_parallel_size") or 1),
            "gpu_memory_utilization": float(self.opts.get("gpu_memory_utilization") or 0.9),
            "max_model_len": self.max_model_len,
            "seed": int(self.opts.get("seed") or 0),
            "enforce_eager": bool(self.opts.get("enforce_eager")),
            "max_logprobs": max(MAX_LOGPROBS, self.k),
        }
        if is_base and self.specs:
            kwargs |= {
                "enable_lora": True,
                "max_loras": int(self.opts.get("max_loras") or len(self.specs)),
                "max_lora_rank": self.max_lora_rank,
            }
        log.info("vLLM %s: loading %s", self.api.version, target)
        try:
            self._llm = self.api.LLM(**kwargs)
        except Exception as exc:  # vLLM raises many kinds (CUDA, memory, config)
            raise ModelLoadError(
                f"vLLM could not load {target}: {exc}",
                hint="Out of GPU memory? Lower engine.vllm.gpu_memory_utilization or "
                "max_model_len, or raise tensor_parallel_size.",
            ) from None
        self._llm_dir = target
        return self._llm

    def close(self) -> None:
        """Release the LLM (its GPU memory)."""
        llm, self._llm, self._llm_dir = self._llm, None, None
        if llm is not None:
            self.api.release(llm)

    # -- requests -------------------------------------------------------------------

    def _run(self, seqs: list[list[int]], params: Any, *, base: bool = False) -> list[Any]:
        """One `generate()` call for all of `seqs` under the active variant (or, with
        `base`, under the base on the same LLM: no LoRA request)."""
        if self.max_model_len is not None:
            longest = max((len(s) for s in seqs), default=0)
            if longest >= self.max_model_len:  # vLLM generates at least one token
                raise InputError(
                    f"a request of {longest} tokens is longer than engine.vllm.max_model_len "
                    f"({self.max_model_len}) leaves room for",
                    hint="Raise engine.vllm.max_model_len, or shorten the prompts.",
                )
        llm = self._llm_for(self._active)
        spec = None if base else lora_for(self._active, self.specs)
        lora = None if spec is None else self.api.LoRARequest(spec.name, spec.int_id, spec.path)
        inputs = [{"prompt_token_ids": s} for s in seqs]
        try:
            outs = list(llm.generate(inputs, params, use_tqdm=False, lora_request=lora))
        except Exception as exc:  # an engine-side failure: exit 3, with vLLM's words
            raise EngineServerError(
                f"vLLM failed on {len(seqs)} request(s) for {self._active}: {exc}"
            ) from None
        if len(outs) != len(seqs):
            raise EngineServerError(f"vLLM answered {len(outs)} of {len(seqs)} requests")
        return outs

    def _encode_chat(self, prompt: ChatPrompt) -> list[int]:
        return encode_chat(self.tokenizer, prompt)

    def _encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def generate(
        self,
        prompts: list[ChatPrompt],
        *,
        max_new_tokens: int,
        stop: tuple[str, ...] = (),
        progress: Progress | None = None,
    ) -> list[str]:
        stops = generation_stops(self.tokenizer, stop)
        if max_new_tokens <= 0 or not prompts:
            return ["" for _ in prompts]
        params = self.api.SamplingParams(
            temperature=0.0, max_tokens=max_new_tokens, stop=stops, stop_token_ids=self._eos
        )
        outs = self._run([self._encode_chat(p) for p in prompts], params)
        texts = [
            cut_at_stops(
                str(self.tokenizer.decode(completion_tokens(o), skip_special_tokens=False)),
                stops,
                self.tokenizer,
            )
            for o in outs
        ]
        if progress:
            progress(len(prompts))
        return texts

    def _scores(self, seqs: list[list[int]], k: int, *, base: bool = False) -> list[PromptScores]:
        params = self.api.SamplingParams(
            temperature=0.0, max_tokens=1, prompt_logprobs=k, detokenize=False
        )
        outs = self._run(seqs, params, base=base)
        return [prompt_scores(o, s, k) for o, s in zip(outs, seqs, strict=True)]

    def loglikelihood(
        self, requests: list[tuple[ChatPrompt, str]], *, progress: Progress | None = None
    ) -> list[LogLikelihood]:
        seqs, starts = [], []
        for prompt, cont in requests:
            ctx = self._encode_chat(prompt)
            seqs.append(ctx + self._encode(cont))
            starts.append(len(ctx))
        out = loglikelihoods(self._scores(seqs, self.k), starts) if seqs else []
        if progress:
            progress(len(requests))
        return out

    def rolling_nll(
        self, texts: list[str], *, progress: Progress | None = None
    ) -> list[LogLikelihood]:
        ids = [self._encode(t) for t in texts]
        seqs, owner = rolling_windows(ids, int(self.tokenizer.eos_token_id), self.window)
        scores = self._scores(seqs, self.k) if seqs else []
        if progress:
            progress(len(texts))
        return rolling_nlls(scores, owner, [len(i) for i in ids])

    def rolling_kl(
        self, texts: list[str], *, progress: Progress | None = None
    ) -> list[RollingScore]:
        raise InputError(
            "the vllm engine cannot compute KL(base || variant): vLLM returns top-k "
            "logprobs, not the distributions the KL needs",
            hint="Leave the KL probe out (probes.builtin without prose-kl), or use engine kind hf.",
        )

    def base_topk_shift(
        self,
        requests: list[tuple[ChatPrompt, str]],
        *,
        k: int,
        progress: Progress | None = None,
    ) -> list[TopKShift]:
        """Open-shift: the base (no LoRA request, on the same LLM) reads each answer with
        its top-k prompt logprobs."""
        if self._active.startswith("merged:"):
            raise InputError("the vllm engine does not compute open-shift beside a merged model")
        if k > max(MAX_LOGPROBS, self.k):
            raise InputError(f"open-shift k={k} is above vLLM's {MAX_LOGPROBS} logprobs")
        seqs, starts = [], []
        for prompt, answer in requests:
            ctx = self._encode_chat(prompt)
            seqs.append(ctx + self._encode(answer))
            starts.append(len(ctx))
        out = topk_shifts(self._scores(seqs, max(k, self.k), base=True), starts, k) if seqs else []
        if progress:
            progress(len(requests))
        return out

    def probe_logits(self, texts: list[str]) -> list[Any]:
        raise InputError(
            "the vllm engine has no full logits; integrity checks use the local reference"
        )


def _factory(request: Any) -> VllmEngine:
    api = load_vllm()
    import torch

    if not torch.cuda.is_available():
        raise InputError(
            "engine kind vllm needs a CUDA GPU, and none is visible here", hint=INSTALL_HINT
        )
    return VllmEngine(request, api)


def _register() -> None:
    from evalkit.engines.registry import register_engine

    register_engine(
        "vllm",
        _factory,
        VLLM_CAPABILITIES,
        "vLLM in this process: one LLM, a LoRARequest per adapter",
    )


_register()
