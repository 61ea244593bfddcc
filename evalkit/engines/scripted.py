"""A scripted engine: deterministic outputs and log-likelihoods read from a table, no model
and no torch. It is registered like the real backends (kind "scripted"), so everything after
the engine (scores, comparisons, gates, the cache, baselines, results) can be tested in
milliseconds, and a suite can be dry-run end to end with `engine: {kind: scripted, ...}`.

The table maps each variant to what it answers (JSON data, never pickle):

    {"base": {
        "outputs": {"<prompt or example id>": "answer", ...},
        "default_output": "",                        # optional; else a missing prompt is an error
        "loglikelihoods": {"<prompt or id>": {"<continuation>": [logprob, n_tokens]}},
        "rolling": {"<text or id>": [nll, n_tokens, kl, kl_tokens, top1?]},
        "shifts": {"<prompt or id>": [outside, n_tokens]},  # optional: base_topk_shift
        "logits": [[...], ...]                       # optional: probe_logits for every text
     },
     "NAME": {...}}

Keys are a prompt's user text (or a rolling text itself); `ScriptedEngine.for_plan` also
accepts example ids and translates them through the plan. A `merged:NAME` variant without
its own entry computes what NAME computes. The base's KL is 0 whatever the table says.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evalkit.engines.base import ChatPrompt, LogLikelihood, Progress, RollingScore, TopKShift
from evalkit.engines.registry import EngineCapabilities, EngineRequest, register_engine
from evalkit.errors import InputError

if TYPE_CHECKING:
    import numpy as np

    from evalkit.plan.types import Plan

Table = Mapping[str, Mapping[str, Any]]


@dataclass(frozen=True)
class _Device:
    type: str = "scripted"


class ScriptedEngine:
    """An Engine whose answers come from a table (see the module docstring)."""

    name = "scripted"

    def __init__(self, table: Table, *, capabilities: EngineCapabilities | None = None) -> None:
        if "base" not in table:
            raise InputError("a scripted engine's table needs a 'base' entry")
        self.table = {v: dict(entry) for v, entry in table.items()}
        has_logits = all("logits" in e for e in self.table.values())
        has_shifts = all("shifts" in e for e in self.table.values())
        self.capabilities = capabilities or EngineCapabilities(
            probe_logits=has_logits, open_shift=has_shifts
        )
        self.device = _Device()
        self.active = "base"
        self.calls: list[tuple[str, str, int]] = []  # (variant, request kind, n), for tests

    @classmethod
    def for_plan(cls, plan: Plan, table: Table, **kw: Any) -> ScriptedEngine:
        """A table keyed by example ids, translated into the plan's prompts and texts."""
        keys: dict[str, str] = {}
        for task in plan.tasks:
            for ex in task.examples:
                keys[ex.id] = ex.text if ex.text is not None else ex.prompt
        resolved: dict[str, dict[str, Any]] = {}
        for variant, entry in table.items():
            out = dict(entry)
            for part in ("outputs", "loglikelihoods", "rolling", "shifts"):
                if part in entry:
                    out[part] = {keys.get(k, k): v for k, v in entry[part].items()}
            resolved[variant] = out
        return cls(resolved, **kw)

    # -- the Engine protocol ---------------------------------------------------------

    def fingerprint(self, variant: str) -> str:
        # the base's entry is part of every variant's identity, as base weights are
        entry = self._entry(variant)
        text = json.dumps([self.table["base"], entry], sort_keys=True, default=str)
        return "scripted-" + hashlib.sha256(text.encode()).hexdigest()[:16]

    @contextmanager
    def variant(self, name: str) -> Iterator[None]:
        self._entry(name)  # fails early on a variant the table does not know
        before, self.active = self.active, name
        try:
            yield
        finally:
            self.active = before

    def generate(
        self,
        prompts: list[ChatPrompt],
        *,
        max_new_tokens: int,
        stop: tuple[str, ...] = (),
        progress: Progress | None = None,
    ) -> list[str]:
        entry = self._entry(self.active)
        outputs = entry.get("outputs", {})
        out = []
        for p in prompts:
            if p.user in outputs:
                text = str(outputs[p.user])
            elif entry.get("default_output") is not None:
                text = str(entry["default_output"])
            else:
                raise KeyError(f"scripted variant {self.active} has no output for {p.user!r}")
            for s in stop:  # as a real backend does: the text up to the first stop string
                text = text.split(s, 1)[0] if s else text
            out.append(text)
        self._done("generate", len(prompts), progress)
        return out

    def loglikelihood(
        self, requests: list[tuple[ChatPrompt, str]], *, progress: Progress | None = None
    ) -> list[LogLikelihood]:
        table = self._entry(self.active).get("loglikelihoods", {})
        out = []
        for prompt, continuation in requests:
            try:
                logprob, n = table[prompt.user][continuation]
            except KeyError:
                raise KeyError(
                    f"scripted variant {self.active} has no log-likelihood for "
                    f"{continuation!r} after {prompt.user!r}"
                ) from None
            out.append(LogLikelihood(float(logprob), int(n)))
        self._done("loglikelihood", len(requests), progress)
        return out

    def rolling_nll(
        self, texts: list[str], *, progress: Progress | None = None
    ) -> list[LogLikelihood]:
        scores = self._rolling(texts)
        self._done("rolling", len(texts), progress)
        return [LogLikelihood(s.nll, s.n_tokens) for s in scores]

    def rolling_kl(
        self, texts: list[str], *, progress: Progress | None = None
    ) -> list[RollingScore]:
        scores = self._rolling(texts)
        self._done("rolling_kl", len(texts), progress)
        return scores

    def base_topk_shift(
        self,
        requests: list[tuple[ChatPrompt, str]],
        *,
        k: int,
        progress: Progress | None = None,
    ) -> list[TopKShift]:
        """The table's [outside, n_tokens] per prompt (whatever k is: the table plays the
        base's top-k)."""
        if "shifts" not in self._entry(self.active):
            raise NotImplementedError("this scripted table has no shifts (capability off)")
        table = self._entry(self.active)["shifts"]
        out = []
        for prompt, _ in requests:
            if prompt.user not in table:
                raise KeyError(f"scripted variant {self.active} has no shift for {prompt.user!r}")
            outside, n = table[prompt.user]
            out.append(TopKShift(int(outside), int(n)))
        self._done("base_topk_shift", len(requests), progress)
        return out

    def probe_logits(self, texts: list[str]) -> list[np.ndarray]:
        import numpy as np

        entry = self._entry(self.active)
        if "logits" not in entry:
            raise NotImplementedError("this scripted table has no logits (capability off)")
        return [np.asarray(entry["logits"], dtype=np.float32) for _ in texts]

    # -- helpers ---------------------------------------------------------------------

    def _entry(self, variant: str) -> dict[str, Any]:
        if variant in self.table:
            return self.table[variant]
        if variant.startswith("merged:") and variant.removeprefix("merged:") in self.table:
            return self.table[variant.removeprefix("merged:")]
        raise KeyError(f"the scripted table has no variant {variant!r}")

    def _rolling(self, texts: list[str]) -> list[RollingScore]:
        table = self._entry(self.active).get("rolling", {})
        out = []
        for t in texts:
            if t not in table:
                raise KeyError(f"scripted variant {self.active} has no rolling NLL for {t!r}")
            nll, n, kl, kl_n, *rest = table[t]
            # top1: positions agreeing with the base's argmax (optional; all for the base)
            top1 = int(rest[0]) if rest and rest[0] is not None else None
            if self.active == "base":
                kl, top1 = 0.0, int(kl_n)
            out.append(RollingScore(float(nll), int(n), float(kl), int(kl_n), top1))
        return out

    def _done(self, kind: str, n: int, progress: Progress | None) -> None:
        self.calls.append((self.active, kind, n))
        if progress is not None:
            progress(n)


def _factory(request: EngineRequest) -> ScriptedEngine:
    """From the suite's `engine:` block: `table:` inline, or `path:` to a JSON file."""
    opts = request.options
    if "table" in opts:
        return ScriptedEngine(opts["table"])
    if "path" in opts:
        path = Path(opts["path"])
        if request.relative_to is not None and not path.is_absolute():
            path = request.relative_to / path
        try:
            return ScriptedEngine(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, json.JSONDecodeError) as exc:
            raise InputError(
                f"{path}: cannot read the scripted engine's table ({exc})",
                hint="`path:` names a JSON file: {variant: {outputs, loglikelihoods, rolling}}.",
            ) from None
    raise InputError(
        "a scripted engine needs `table:` or `path:` in its `engine:` block",
        hint="See evalkit/engines/scripted.py for the table's shape.",
    )


register_engine(
    "scripted",
    _factory,
    # what the table can hold; probe logits and open-shift only when the table gives them
    EngineCapabilities(probe_logits=False, open_shift=False),
    "deterministic answers from a table (tests, dry runs); no model",
)
