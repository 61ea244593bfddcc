"""What the `vllm` engine needs before it loads anything: whether vLLM is installed, the
checks `evalkit validate` makes of a `kind: vllm` suite, the import of vLLM's classes, and
releasing an LLM's GPU memory. Nothing here imports vLLM or torch at module level."""

from __future__ import annotations

import gc
import importlib.util
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from evalkit.engines.registry import EngineCapabilities
from evalkit.errors import InputError
from evalkit.paths import digest_files

# vLLM returns top-k logprobs: no KL against the base, no full logits for integrity checks
VLLM_CAPABILITIES = EngineCapabilities(kl=False, probe_logits=False)
NOT_INSTALLED = "engine kind vllm: vLLM is not installed here (it runs on a CUDA GPU)"
INSTALL_HINT = (
    "On a machine with a CUDA GPU: pip install 'evalkit[vllm]'. Without one, use engine "
    "kind hf (this process) or openai (a vLLM server elsewhere)."
)
MAX_LOGPROBS = 20  # vLLM's default ceiling on (prompt_)logprobs per position

Problem = tuple[tuple[str | int, ...], str, str]  # (suite location, message, hint)


def vllm_installed() -> bool:
    """Whether vLLM can be imported, found without importing it (it imports torch)."""
    return importlib.util.find_spec("vllm") is not None


def local_path(path: str, root: Path | None) -> Path:
    """A path from the suite, relative to the suite file's folder."""
    p = Path(path).expanduser()
    return p if p.is_absolute() or root is None else root / p


def vllm_preflight(cfg: Any, plan: Any, root: Path, *, offline: bool = False) -> Problem | None:
    """At validate, before any model loads: the first problem of a `kind: vllm` suite, or
    None. `cfg` is the SuiteConfig, `plan` its Plan (the variants and tasks that will run).
    `offline` (validate
    --offline, e.g. a CPU CI job checking suite files) skips whether vLLM is installed."""
    from evalkit.weights import check_model_dir

    if not offline and not vllm_installed():
        return ("engine", "kind"), NOT_INSTALLED, INSTALL_HINT
    merged: dict[str, str] = dict(cfg.engine.vllm.merged)
    for name in merged:
        if name not in cfg.adapters:
            return (
                ("engine", "vllm", "merged", name),
                f"engine.vllm.merged names '{name}', which is not an adapter of this suite",
                f"Adapters: {', '.join(cfg.adapters) or '(none)'}.",
            )
    for v in plan.variants:
        name = v.removeprefix("merged:")
        if v.startswith("merged:") and name not in merged:
            source = getattr(cfg.adapters.get(name), "path", None) or "ADAPTER_DIR"
            declared = list(cfg.variants or [])
            return (
                ("variants", declared.index(v)) if v in declared else ("engine", "kind"),
                f"variant {v} on engine kind vllm needs the merged model's directory",
                f"Export it with `evalkit merge {source} --out merged/{name}` and add "
                f"`engine: {{vllm: {{merged: {{{name}: merged/{name}}}}}}}`, or leave {v} out "
                "of `variants:`.",
            )
    for name, path in merged.items():
        where = local_path(path, root)
        try:
            if not where.is_dir():
                raise InputError(f"not a directory: {where}")
            check_model_dir(where)
        except InputError as exc:
            return (
                ("engine", "vllm", "merged", name),
                f"the merged model of {name}: {exc.message}",
                exc.hint or f"Export it with `evalkit merge ADAPTER_DIR --out {path}`.",
            )
    kl = sorted(t.name for t in plan.tasks if "rolling_kl" in t.needs)
    if kl and not VLLM_CAPABILITIES.kl:
        return (
            ("probes",),
            f"engine kind vllm cannot compute the KL against the base that {', '.join(kl)} "
            "needs (vLLM returns top-k logprobs, not full distributions)",
            "Leave the KL probe out (probes.builtin without prose-kl), or use engine kind hf.",
        )
    return None


def load_vllm() -> SimpleNamespace:
    """vLLM's classes the engine uses (imported here only: `import evalkit` stays free of
    vLLM and torch). Not installed, or not importable: exit 2 with the install hint."""
    try:
        import vllm
        from vllm import LLM, SamplingParams
        from vllm.lora.request import LoRARequest
    except Exception as exc:  # ImportError, or a CUDA/driver error raised at import
        missing = isinstance(exc, ImportError) and not vllm_installed()
        raise InputError(
            NOT_INSTALLED if missing else f"engine kind vllm: vLLM does not import: {exc}",
            hint=INSTALL_HINT,
        ) from None
    return SimpleNamespace(
        LLM=LLM,
        SamplingParams=SamplingParams,
        LoRARequest=LoRARequest,
        version=str(getattr(vllm, "__version__", "unknown")),
        release=release_llm,
    )


def release_llm(llm: Any) -> None:
    """Free an LLM's GPU memory so the next one fits (vLLM has no public close)."""
    core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
    if core is not None and hasattr(core, "shutdown"):
        core.shutdown()  # the V1 engine core runs in a process of its own
    del llm
    try:
        from vllm.distributed.parallel_state import (
            destroy_distributed_environment,
            destroy_model_parallel,
        )

        destroy_model_parallel()
        destroy_distributed_environment()
    except (ImportError, AttributeError, RuntimeError, AssertionError):
        pass  # a release without them: the collection below still frees the weights
    gc.collect()
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def eos_ids(model_dir: str, tokenizer: Any) -> set[int]:
    """The ids that end a generation, as the hf engine's `generate` takes them: the base's
    generation_config.json eos ids (one or a list), else config.json's, else the
    tokenizer's."""
    for name in ("generation_config.json", "config.json"):
        try:
            data = json.loads((Path(model_dir) / name).read_text("utf-8"))
        except (OSError, ValueError):
            continue
        eos = data.get("eos_token_id") if isinstance(data, dict) else None
        ids = {int(e) for e in (eos if isinstance(eos, list) else [eos]) if e is not None}
        if ids:
            return ids
    return {int(tokenizer.eos_token_id)} if tokenizer.eos_token_id is not None else set()


def dir_digest(path: str) -> str:
    """A model directory's identity: its JSON and safetensors files, as the hf engine's."""
    p = Path(path)
    return digest_files([f for f in sorted(p.glob("*")) if f.suffix in (".json", ".safetensors")])
