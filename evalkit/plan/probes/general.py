"""The built-in general probes, declared in probe files shipped in the package
(evalkit/plan/probe_data/*.yaml, each a `probes.extra` entry a suite could hold) and built
by the same probe kinds as a user's probes:

- knowledge-mc (multiple_choice): knowledge questions, each option's text scored by
  log-likelihood as the answer.
- knowledge-open (open_answer): the same questions asked openly and answered by
  generation, correct when an accepted answer appears.
- prose-perplexity / prose-bpb / prose-kl (prose): perplexity, bits per byte and
  KL(base || variant) per token on general English prose, one document per unit.
- open-ended / open-overlap (open_ended): open requests whose answers are measured for
  repetition, diversity, length, and overlap with the answers to the other prompts.

Each file is one probe group (one task); the probes a suite lists under `probes.builtin`
choose metrics of their group's kind, under the names and margins earlier runs know (the
margins are the files'). Margins are in the metric's own unit: points of accuracy, a
perplexity ratio, bits per byte, nats per token, a share of n-grams.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evalkit.errors import DataError
from evalkit.plan.probes.kinds import ProbeKind
from evalkit.plan.probes.multiple_choice import MULTIPLE_CHOICE
from evalkit.plan.probes.open_answer import OPEN_ANSWER
from evalkit.plan.probes.open_ended import OPEN_ENDED
from evalkit.plan.probes.prose import PROSE
from evalkit.plan.probes.registry import (
    ProbeDef,
    ProbeGroup,
    probe_data_dir,
    register_probe,
    register_probe_group,
)
from evalkit.scoring.metrics.drift import top1_margin_for_kl
from evalkit.suite.yaml_lines import Loc


@dataclass(frozen=True)
class PackageSource:
    """Paths and errors of a probe file shipped in the package: paths resolve against its
    folder; an error there is a packaging defect, reported with the file's name."""

    file: Path

    def resolve(self, relative: str) -> Path:
        return self.file.parent / relative

    def error(self, loc: Loc, message: str, hint: str | None = None) -> Exception:
        return DataError(f"built-in probe file {self.file.name}: {message}", hint=hint)


def read_declared(name: str) -> Any:
    """A built-in probe file as the probe kind model a suite's entry validates to."""
    from pydantic import TypeAdapter

    from evalkit.suite.probes_config import KindProbe
    from evalkit.suite.yaml_lines import load_yaml_with_lines

    data, _ = load_yaml_with_lines(probe_data_dir() / name)
    return TypeAdapter(KindProbe).validate_python(data)


def declared_group(name: str, kind: ProbeKind) -> tuple[Any, ProbeKind]:
    """Register the group a built-in probe file of `kind` declares; its examples are built
    on use."""
    cfg = read_declared(name)
    if cfg.kind != kind.name:
        raise ValueError(f"built-in probe file {name} declares kind {cfg.kind}, not {kind.name}")
    source = PackageSource(probe_data_dir() / name)
    generation = getattr(cfg, "generation", None)
    register_probe_group(
        ProbeGroup(
            cfg.name,
            cfg.description or "",
            lambda: kind.examples(cfg, source, ()),
            max_new_tokens=generation.max_new_tokens if generation else 128,
            system=getattr(cfg, "system", None),
            stop=tuple(generation.stop) if generation else (),
        )
    )
    return cfg, kind


def _probe(
    name: str,
    decl: tuple[Any, ProbeKind],
    metrics: dict[str, str],
    own: dict[str, str] | None = None,
    scaled: dict[str, Callable[[float], float]] | None = None,
) -> None:
    """Register probe `name`: `metrics` (kind metric -> name in the task) at the probe's
    margin, its default the file's margin for the first; `own` at the file's margins;
    `scaled` (kind metric -> margin from the probe's) at the probe's margin in its unit."""
    cfg, kind = decl

    def specs(margin: float) -> list[Any]:
        out = [kind.metric(key).spec(margin, as_name) for key, as_name in metrics.items()]
        for key, as_name in (own or {}).items():
            m = kind.metric(key)
            out.append(m.spec(cfg.margin_for(key, m.default_margin), as_name))
        out += [kind.metric(key).spec(fn(margin)) for key, fn in (scaled or {}).items()]
        return out

    first = next(iter(metrics))
    default = cfg.margin_for(first, kind.metric(first).default_margin)
    register_probe(ProbeDef(name, cfg.name, default, specs))


_mc = declared_group("knowledge-mc.yaml", MULTIPLE_CHOICE)
_open = declared_group("knowledge-open.yaml", OPEN_ANSWER)
_prose = declared_group("prose-perplexity.yaml", PROSE)
_open_ended = declared_group("open-ended.yaml", OPEN_ENDED)

_probe("knowledge-mc", _mc, {"acc": "accuracy"})
_probe("knowledge-open", _open, {"acc": "accuracy"}, own={"open_shift": "open_shift"})
_probe("prose-perplexity", _prose, {"perplexity": "perplexity"})
_probe("prose-bpb", _prose, {"bits_per_byte": "bits_per_byte"})
# top-1 agreement comes from the KL's passes; the probe's one margin governs both
_probe(
    "prose-kl",
    _prose,
    {"kl_from_base": "kl_from_base"},
    scaled={"top1_agreement": top1_margin_for_kl},
)
# length keeps its own margin (a ratio): the probe's margin is a share of n-grams
_probe(
    "open-ended",
    _open_ended,
    {"distinct_2": "distinct_2", "repeated_3gram_rate": "repeated_3gram_rate"},
    own={"length_words": "length_words"},
)
_probe("open-overlap", _open_ended, {"cross_answer_overlap": "cross_answer_overlap"})
