"""The transformers + peft backend: the base loaded once, adapters loaded beside it and
switched by name, merged variants made by merging in place and unmerging after."""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evalkit.errors import InputError, ModelLoadError
from evalkit.models.engine import ChatPrompt, LogLikelihood, Progress, batches
from evalkit.models.resolve import resolve_model
from evalkit.paths import digest_files
from evalkit.tasks.chat import end_of_turn, render_chat

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)
ROLLING_WINDOW = 1024
# ~1.6 GB of fp32 logits for a 49k vocabulary
TOKEN_BUDGET = 8192


class HFEngine:
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
        from transformers import AutoModelForCausalLM, AutoTokenizer

        _quiet_transformers()
        self.name = base_spec
        self.batch_size = batch_size
        resolved = resolve_model(base_spec, relative_to=relative_to)
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        kwargs: dict[str, Any] = {"dtype": getattr(torch, dtype)}
        if load_in_4bit:
            kwargs["quantization_config"] = _bnb_4bit_config(dtype)
        t0 = time.perf_counter()
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(resolved.source)
            model: Any = AutoModelForCausalLM.from_pretrained(resolved.source, **kwargs)
        except OSError as exc:
            hint = (
                None
                if resolved.is_local
                else (
                    "No hub is reachable from here? Use a local model directory, a .gguf file, "
                    "or builtin:smollm2-135m-instruct."
                )
            )
            raise ModelLoadError(f"could not load model '{base_spec}': {exc}", hint=hint) from None
        if not load_in_4bit:
            model.to(self.device)
        model.eval()
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self._base_fp = (
            digest_files(
                [
                    p
                    for p in Path(resolved.source).glob("*")
                    if p.suffix in (".json", ".safetensors")
                ]
            )
            if resolved.is_local
            else base_spec
        )
        self._adapter_fp: dict[str, str] = {}
        self.model: Any = model
        self.peft: Any = None
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

    def fingerprint(self, variant: str) -> str:
        if variant == "base":
            return self._base_fp
        adapter = variant.removeprefix("merged:")
        kind = "merged" if variant.startswith("merged:") else "adapter"
        return f"{self._base_fp}+{kind}:{self._adapter_fp[adapter]}"

    @contextmanager
    def variant(self, name: str) -> Iterator[None]:
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
        self.peft.base_model.merge_adapter(adapter_names=[adapter])
        try:
            yield
        finally:
            with warnings.catch_warnings():
                # layers that only other adapters target were never merged; peft warns
                warnings.filterwarnings("ignore", message="Already unmerged")
                self.peft.base_model.unmerge_adapter()

    # -- requests -------------------------------------------------------------------

    def _generation_defaults(self) -> None:
        gc = self.model.generation_config
        for key in ("temperature", "top_p", "top_k"):
            setattr(gc, key, None)
        gc.do_sample = False

    def _encode_chat(self, prompt: ChatPrompt) -> list[int]:
        text = render_chat(self.tokenizer, prompt.user, system=prompt.system)
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def generate(
        self,
        prompts: list[ChatPrompt],
        *,
        max_new_tokens: int,
        stop: tuple[str, ...] = (),
        progress: Progress | None = None,
    ) -> list[str]:
        import torch

        encoded = [self._encode_chat(p) for p in prompts]
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))  # less padding
        out: list[str] = [""] * len(prompts)
        pad = self.tokenizer.pad_token_id
        stops = [s for s in (*stop, end_of_turn(self.tokenizer)) if s]
        for idx in batches(order, self.batch_size):
            width = max(len(encoded[i]) for i in idx)
            ids = torch.full((len(idx), width), pad, dtype=torch.long)
            mask = torch.zeros((len(idx), width), dtype=torch.long)
            for row, i in enumerate(idx):  # left padding: generation continues at the right
                ids[row, width - len(encoded[i]) :] = torch.tensor(encoded[i])
                mask[row, width - len(encoded[i]) :] = 1
            with torch.inference_mode():
                gen = self.model.generate(
                    input_ids=ids.to(self.device),
                    attention_mask=mask.to(self.device),
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                    pad_token_id=pad,
                    stop_strings=list(stop) or None,
                    tokenizer=self.tokenizer if stop else None,
                )
            for row, i in enumerate(idx):
                text = str(self.tokenizer.decode(gen[row, width:], skip_special_tokens=False))
                out[i] = _cut_at_stops(text, stops, self.tokenizer)
            if progress:
                progress(len(idx))
        return out

    def loglikelihood(
        self, requests: list[tuple[ChatPrompt, str]], *, progress: Progress | None = None
    ) -> list[LogLikelihood]:
        groups: dict[ChatPrompt, list[int]] = {}
        for r, (prompt, _) in enumerate(requests):
            groups.setdefault(prompt, []).append(r)
        conts = [
            list(self.tokenizer(c, add_special_tokens=False)["input_ids"]) for _, c in requests
        ]
        scores = [0.0] * len(requests)
        items = [(self._encode_chat(p), idx) for p, idx in groups.items()]
        items.sort(key=lambda it: len(it[0]))  # similar lengths share a batch: less padding
        for start in range(0, len(items), self.batch_size):
            batch = items[start : start + self.batch_size]
            for r, value in self._score_shared_context(batch, conts).items():
                scores[r] = value
            if progress:
                progress(sum(len(idx) for _, idx in batch))
        return [LogLikelihood(scores[r], len(conts[r])) for r in range(len(requests))]

    def _score_shared_context(
        self, batch: list[tuple[list[int], list[int]]], conts: list[list[int]]
    ) -> dict[int, float]:
        """Score every continuation of each context while running the context only once:
        the contexts go through the model left-padded, their KV cache is repeated once per
        continuation, and the continuations run on top of it. For multiple choice this
        costs one pass over the question instead of one per option."""
        import torch

        pad = self.tokenizer.pad_token_id
        width = max(len(ctx) for ctx, _ in batch)
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, (ctx, _) in enumerate(batch):
            ids[row, width - len(ctx) :] = torch.tensor(ctx)
            mask[row, width - len(ctx) :] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        rows = [(g, r) for g, (_, idx) in enumerate(batch) for r in idx]
        owner = torch.tensor([g for g, _ in rows])
        longest = max(len(conts[r]) for _, r in rows)
        with torch.inference_mode():
            out = self.model(
                input_ids=ids.to(self.device),
                attention_mask=mask.to(self.device),
                position_ids=positions.to(self.device),
                use_cache=True,
            )
            # logits predicting each continuation token: the context's last position for
            # the first token, then the continuation's own positions
            first = torch.log_softmax(out.logits[:, -1].float(), -1)[owner.to(self.device)]
            later = None
            if longest > 1:
                cache = out.past_key_values
                cache.reorder_cache(owner.to(self.device))
                cont_ids = torch.full((len(rows), longest - 1), pad, dtype=torch.long)
                cont_mask = torch.zeros((len(rows), longest - 1), dtype=torch.long)
                for row, (_, r) in enumerate(rows):
                    tail = conts[r][:-1]
                    if tail:
                        cont_ids[row, : len(tail)] = torch.tensor(tail)
                    cont_mask[row, : len(tail)] = 1
                ctx_len = mask.sum(-1)[owner]
                cont_pos = ctx_len.unsqueeze(1) + torch.arange(longest - 1).unsqueeze(0)
                full_mask = torch.cat([mask[owner], cont_mask], dim=1)
                later = torch.log_softmax(
                    self.model(
                        input_ids=cont_ids.to(self.device),
                        attention_mask=full_mask.to(self.device),
                        position_ids=cont_pos.to(self.device),
                        past_key_values=cache,
                        use_cache=False,
                    ).logits.float(),
                    -1,
                )
        result = {}
        for row, (_, r) in enumerate(rows):
            toks = conts[r]
            total = float(first[row, toks[0]]) if toks else 0.0
            for k in range(1, len(toks)):
                assert later is not None
                total += float(later[row, k - 1, toks[k]])
            result[r] = total
        return result

    def rolling_nll(
        self, texts: list[str], *, progress: Progress | None = None
    ) -> list[LogLikelihood]:
        """Each text is scored in disjoint windows of ROLLING_WINDOW tokens; every token is
        predicted once, the first from a separator token, later windows start from the
        last token of the window before."""
        prefix = self.tokenizer.eos_token_id
        seqs: list[list[int]] = []
        reads: list[list[tuple[int, int, list[int]]]] = []
        counts = []
        for t, text in enumerate(texts):
            ids = list(self.tokenizer(text, add_special_tokens=False)["input_ids"])
            counts.append(len(ids))
            prev = prefix
            for start in range(0, len(ids), ROLLING_WINDOW - 1):
                chunk = ids[start : start + ROLLING_WINDOW - 1]
                seqs.append([prev, *chunk])
                reads.append([(t, 1, chunk)])
                prev = chunk[-1]
        scores = self._score_sequences(seqs, reads, progress, n_keys=len(texts))
        return [LogLikelihood(-scores[t], counts[t]) for t in range(len(texts))]

    def _score_sequences(
        self,
        seqs: list[list[int]],
        reads: list[list[tuple[int, int, list[int]]]],
        progress: Progress | None,
        n_keys: int | None = None,
    ) -> list[float]:
        """Run each sequence once (batched, right-padded) and sum the log-probabilities of
        the continuation tokens each read names: (key, start, tokens) reads logits at
        positions start-1 .. start+len(tokens)-2. Sums are accumulated per key."""
        import torch

        total = [0.0] * (
            n_keys
            if n_keys is not None
            else 1 + max((k for rs in reads for k, _, _ in rs), default=-1)
        )
        order = sorted(range(len(seqs)), key=lambda i: -len(seqs[i]))
        pad = self.tokenizer.pad_token_id
        for idx in self._token_batches(order, [len(x) for x in seqs]):
            width = max(len(seqs[i]) for i in idx)
            ids = torch.full((len(idx), width), pad, dtype=torch.long)
            mask = torch.zeros((len(idx), width), dtype=torch.long)
            for row, i in enumerate(idx):
                ids[row, : len(seqs[i])] = torch.tensor(seqs[i])
                mask[row, : len(seqs[i])] = 1
            with torch.inference_mode():
                logits = self.model(
                    input_ids=ids.to(self.device), attention_mask=mask.to(self.device)
                ).logits
                for row, i in enumerate(idx):
                    for key, start, tokens in reads[i]:
                        span = logits[row, start - 1 : start - 1 + len(tokens)].float()
                        logp = torch.log_softmax(span, dim=-1)
                        target = torch.tensor(tokens, device=logp.device).unsqueeze(1)
                        total[key] += float(logp.gather(1, target).sum())
            if progress:
                progress(len(idx))
        return total

    def _token_batches(self, order: list[int], lengths: list[int]) -> Iterator[list[int]]:
        """Batches of at most batch_size sequences and TOKEN_BUDGET padded tokens: a full
        forward keeps logits for every position (tokens × vocab floats), so long documents
        must come in smaller batches than short prompts."""
        batch: list[int] = []
        width = 0
        for i in order:
            grown = max(width, lengths[i])
            if batch and (len(batch) >= self.batch_size or grown * (len(batch) + 1) > TOKEN_BUDGET):
                yield batch
                batch, grown = [], lengths[i]
            batch.append(i)
            width = grown
        if batch:
            yield batch

    def probe_logits(self, texts: list[str]) -> list[np.ndarray]:
        import torch

        out = []
        with torch.inference_mode():
            for text in texts:
                ids = self.tokenizer(text, add_special_tokens=False, return_tensors="pt")
                logits = self.model(input_ids=ids["input_ids"].to(self.device)).logits[0]
                out.append(logits.float().cpu().numpy())
        return out


def _quiet_transformers() -> None:
    """Per-load progress bars and deprecation notices from the libraries would drown the
    run's own progress; evalkit reports loading itself."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"transformers\..*")
    warnings.filterwarnings("ignore", message=".*past_key_values. is deprecated")


def _cut_at_stops(text: str, stops: list[str], tokenizer: Any) -> str:
    """Cut a completion at its first stop string and drop special tokens after that."""
    cut = len(text)
    for s in stops:
        pos = text.find(s)
        if pos != -1:
            cut = min(cut, pos)
    text = text[:cut]
    for special in tokenizer.all_special_tokens:
        text = text.replace(special, "")
    return text.strip()


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
