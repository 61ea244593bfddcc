"""The transformers + peft backend: the base loaded once, adapters loaded beside it and
switched by name, merged variants made by merging in place and unmerging after."""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from evalkit.engines.base import ChatPrompt, Generated, Generation, LogLikelihood, Progress
from evalkit.engines.chat import (
    cut_at_stops,
    encode_chat,
    generation_stops,
)
from evalkit.engines.hf_drafts import Drafts
from evalkit.engines.hf_scoring import BaseDistributions, ScoringMixin
from evalkit.engines.resolve import model_fingerprint, resolve_model
from evalkit.errors import InputError, ModelLoadError
from evalkit.paths import digest_files

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)


class HFEngine(ScoringMixin):
    """An Engine over a transformers model and its peft adapters."""

    def __init__(
        self,
        base_spec: str,
        adapters: dict[str, Path],
        *,
        dtype: str = "float32",
        device: str = "auto",
        load_in_4bit: bool = False,
        batch_size: int = 16,
        relative_to: Path | None = None,
    ) -> None:
        import torch

        from evalkit.engines.hf_load import load_for_inference

        self.name = base_spec
        self.batch_size = batch_size
        self._kl_base = BaseDistributions()
        self._shift_memo = {}
        self._base_greedy = set()
        self._drafts = Drafts()  # each adapter's generations, its merged variant's drafts
        # a merged variant's targeted weights as they were before the merge (see _merge)
        self._kept_weights: list[tuple[Any, Any, Any]] = []
        resolved = resolve_model(base_spec, relative_to=relative_to)
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        t0 = time.perf_counter()
        self.tokenizer, model = load_for_inference(
            resolved.source,
            dtype=dtype,
            device=self.device,
            what=f"model '{base_spec}'",
            hint=None
            if resolved.is_local
            else (
                "No hub is reachable from here? Use a local model directory, a .gguf file, "
                "or builtin:smollm2-135m-instruct."
            ),
            quantization_config=_bnb_4bit_config(dtype) if load_in_4bit else None,
        )
        self._base_fp = model_fingerprint(resolved)
        self._adapter_fp: dict[str, str] = {}
        self.model: Any = model
        self.peft: Any = None
        self._active = "base"
        for name, path in adapters.items():
            self._load_adapter(name, path)
        log.info(
            "loaded %s with %d adapter(s) in %.1fs",
            base_spec,
            len(adapters),
            time.perf_counter() - t0,
        )
        self._generation_defaults()

    # -- variants ---------------------------------------------------------------------

    def _load_adapter(self, name: str, path: Path) -> None:
        from peft import PeftModel

        weights = [
            p
            for p in (path / "adapter_config.json", path / "adapter_model.safetensors")
            if p.exists()
        ]
        from evalkit.engines.adapter_shapes import check_lora_shapes

        base = self.model if self.peft is None else self.peft.base_model.model
        check_lora_shapes(base, path, name)
        try:
            if self.peft is None:
                self.peft = PeftModel.from_pretrained(
                    self.model, str(path), adapter_name=name, is_trainable=False
                )
                self.model = self.peft
            else:
                self.peft.load_adapter(str(path), adapter_name=name, is_trainable=False)
        except Exception as exc:  # peft raises many kinds for a mismatched adapter
            raise ModelLoadError(f"could not load adapter '{name}' from {path}: {exc}") from None
        self._adapter_fp[name] = digest_files(weights)
        self.model.eval()
        from evalkit.engines.hf_lora import fuse_lora_forwards

        fuse_lora_forwards(self.model)

    def fingerprint(self, variant: str) -> str:
        if variant == "base":
            return self._base_fp
        adapter = variant.removeprefix("merged:")
        kind = "merged" if variant.startswith("merged:") else "adapter"
        return f"{self._base_fp}+{kind}:{self._adapter_fp[adapter]}"

    @contextmanager
    def variant(self, name: str) -> Iterator[None]:
        self._active = name
        try:
            with self._switch(name):
                yield
        finally:
            self._active = "base"

    def _active_is_base(self) -> bool:
        return self._active == "base" or self.peft is None

    @contextmanager
    def _as_base(self) -> Iterator[None]:
        """The base's function while a variant is active (for KL against the base): an
        adapter is disabled; a merged adapter is unmerged and merged back after."""
        if self._active_is_base():
            yield
        elif not self._active.startswith("merged:"):
            with self.peft.disable_adapter():
                yield
        else:
            self._unmerge()
            try:
                with self.peft.disable_adapter():  # unmerged, the LoRA layers are live again
                    yield
            finally:
                self._merge(self._active.removeprefix("merged:"))

    @contextmanager
    def _switch(self, name: str) -> Iterator[None]:
        if name == "base":
            if self.peft is None:
                yield
                return
            with self.peft.disable_adapter():
                yield
            return
        adapter = name.removeprefix("merged:")
        if self.peft is None or adapter not in self._adapter_fp:
            raise InputError(f"unknown variant '{name}'")
        self.peft.set_adapter(adapter, inference_mode=True)
        if not name.startswith("merged:"):
            yield
            return
        # Merge in place and back: no second copy of the model, no save and reload.
        self._merge(adapter)
        try:
            yield
        finally:
            self._unmerge()

    def _merge(self, adapter: str) -> None:
        """Merge `adapter` into the base weights, keeping the weights it changes: W + BA - BA
        is not W in floating point (peft's unmerge left 3,144 of 4,096 weights of a
        targeted layer off by an ulp), and every later variant would compute with them."""
        from peft.tuners.lora import LoraLayer

        # (layer, its weight, a copy on the CPU): a 4-bit merge replaces the weight object
        # (the original then is intact), a full-precision one changes it in place
        self._kept_weights = [
            (layer, layer.weight, layer.weight.detach().to("cpu", copy=True))
            for module in self.peft.base_model.model.modules()
            if isinstance(module, LoraLayer) and adapter in module.lora_A
            for layer in [cast(Any, module).get_base_layer()]
        ]
        self.peft.base_model.merge_adapter(adapter_names=[adapter])

    def _unmerge(self) -> None:
        """Undo `_merge`: peft's unmerge (its bookkeeping), then the kept weights back."""
        import torch

        with warnings.catch_warnings():
            # layers that only other adapters target were never merged; peft warns
            warnings.filterwarnings("ignore", message="Already unmerged")
            self.peft.base_model.unmerge_adapter()
        with torch.no_grad():
            for layer, weight, kept in self._kept_weights:
                layer.weight = weight
                weight.data.copy_(kept)
        self._kept_weights = []

    # -- requests -------------------------------------------------------------------

    def _generation_defaults(self) -> None:
        gc = self.model.generation_config
        for key in ("temperature", "top_p", "top_k"):
            setattr(gc, key, None)
        gc.do_sample = False

    def _encode_chat(self, prompt: ChatPrompt) -> list[int]:
        return encode_chat(self.tokenizer, prompt)

    def generate(
        self,
        prompts: list[ChatPrompt],
        *,
        max_new_tokens: int,
        stop: tuple[str, ...] = (),
        progress: Progress | None = None,
    ) -> list[str]:
        requests = [Generation(p, max_new_tokens, stop) for p in prompts]
        return [g.text for g in self.generate_pooled(requests, progress=progress)]

    def generate_pooled(
        self,
        requests: list[Generation],
        *,
        progress: Progress | None = None,
        on_batch: Callable[[list[int], list[Generated]], None] | None = None,
    ) -> list[Generated]:
        """Every request in shared batches (rows of any limit and stop strings), each
        reference read in its prompt's forward pass (see hf_generate). `on_batch` gets
        each finished batch's request indices and results (the result cache keeps them,
        so an interrupted run loses at most the batch it was in). For an adapter or its
        merged variant, the rows the other one generated are checked first (hf_drafts):
        those it would write token for token need no decoding."""
        from evalkit.engines.hf_drafts import verify_drafts
        from evalkit.engines.hf_generate import GenRow, RowResult, generate_rows

        stops = {r.stop: generation_stops(self.tokenizer, r.stop) for r in requests}
        encoded = [self._encode_chat(r.prompt) for r in requests]
        rows = [
            GenRow(
                ids,
                r.max_new_tokens,
                tuple(stops[r.stop]),
                None if r.reference is None else self._tokens(r.reference),
            )
            for ids, r in zip(encoded, requests, strict=True)
        ]
        out: dict[int, Generated] = {}
        adapter = None if self._active_is_base() else self._active.removeprefix("merged:")

        def finished(idx: list[int], done: list[RowResult]) -> None:
            if adapter is not None:
                self._drafts.keep(adapter, [rows[i] for i in idx], [d.tokens for d in done])
            texts = [
                cut_at_stops(
                    str(self.tokenizer.decode(d.tokens, skip_special_tokens=False)),
                    stops[requests[i].stop],
                    self.tokenizer,
                )
                for i, d in zip(idx, done, strict=True)
            ]
            if self._active_is_base():
                self._remember_base_greedy(
                    [encoded[i] for i in idx], [d.tokens for d in done], texts
                )
            gens = [
                Generated(
                    text,
                    None
                    if rows[i].reference is None or d.reference_logprob is None
                    else LogLikelihood(d.reference_logprob, len(rows[i].reference or [])),
                )
                for i, text, d in zip(idx, texts, done, strict=True)
            ]
            out.update(zip(idx, gens, strict=True))
            if on_batch:
                on_batch(idx, gens)

        drafts = self._drafts.of(adapter, rows) if adapter is not None else {}
        have = sorted(drafts)

        def checked(idx: list[int], done: list[RowResult]) -> None:
            finished([have[j] for j in idx], done)
            if progress:
                progress(len(idx))

        if have:
            verify_drafts(
                self.model,
                self.tokenizer,
                [rows[i] for i in have],
                [drafts[i] for i in have],
                self._token_batches,
                on_batch=checked,
            )
        rest = [i for i in range(len(rows)) if i not in out]
        generate_rows(
            self.model,
            self.tokenizer,
            [rows[i] for i in rest],
            batch_size=self.batch_size,
            device=self.device,
            progress=progress,
            on_batch=lambda idx, done: finished([rest[j] for j in idx], done),
        )
        return [out[i] for i in range(len(requests))]

    def _tokens(self, text: str) -> list[int]:
        """A continuation's token ids, as `loglikelihood` scores it."""
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def loglikelihood(
        self, requests: list[tuple[ChatPrompt, str]], *, progress: Progress | None = None
    ) -> list[LogLikelihood]:
        """Requests with the same prompt share one row of one forward pass, the prompt
        once and every continuation after it (see hf_contexts)."""
        from evalkit.engines.hf_contexts import score_contexts

        groups: dict[ChatPrompt, list[int]] = {}
        for r, (prompt, _) in enumerate(requests):
            groups.setdefault(prompt, []).append(r)
        conts = [self._tokens(c) for _, c in requests]
        scores = [0.0] * len(requests)
        items = [(self._encode_chat(p), idx) for p, idx in groups.items()]
        # a row holds its prompt and each continuation but its last token
        lengths = [len(ctx) + sum(max(len(conts[r]) - 1, 0) for r in idx) for ctx, idx in items]
        order = sorted(range(len(items)), key=lambda i: lengths[i])  # rows of like length
        for batch in self._token_batches(order, lengths):
            chosen = [items[i] for i in batch]
            values = score_contexts(
                self.model,
                self.tokenizer.pad_token_id,
                [(ctx, [conts[r] for r in idx]) for ctx, idx in chosen],
            )
            for (_, idx), row in zip(chosen, values, strict=True):
                for r, value in zip(idx, row, strict=True):
                    scores[r] = value
            if progress:
                progress(sum(len(idx) for _, idx in chosen))
        return [LogLikelihood(scores[r], len(conts[r])) for r in range(len(requests))]

    def probe_logits(self, texts: list[str]) -> list[np.ndarray]:
        import torch

        out = []
        with torch.inference_mode():
            for text in texts:
                ids = self.tokenizer(text, add_special_tokens=False, return_tensors="pt")
                logits = self.model(input_ids=ids["input_ids"].to(self.device)).logits[0]
                out.append(logits.float().cpu().numpy())
        return out


def _bnb_4bit_config(dtype: str) -> Any:
    try:
        import bitsandbytes  # noqa: F401
        import torch
        from transformers import BitsAndBytesConfig
    except ImportError:
        raise ModelLoadError(
            "load_in_4bit needs bitsandbytes", hint="pip install bitsandbytes"
        ) from None
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=getattr(torch, dtype),
    )


def _hf_factory(request: Any) -> HFEngine:
    return HFEngine(
        request.base,
        request.adapters,
        dtype=request.dtype,
        device=request.device,
        load_in_4bit=request.load_in_4bit,
        batch_size=request.batch_size,
        relative_to=request.relative_to,
    )


def _register() -> None:
    from evalkit.engines.registry import EngineCapabilities, register_engine

    register_engine("hf", _hf_factory, EngineCapabilities(), "transformers + peft in this process")


_register()
