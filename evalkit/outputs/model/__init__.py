"""The typed model of results.json.

Every results document evalkit writes is validated by :class:`Results` first, and every
one it reads (`load_results`, `evalkit report RUN_DIR`) is validated again. The JSON
Schema committed at evalkit/outputs/results.schema.json is generated from this model
(:func:`json_schema`); a test checks the two agree.

`schema_version` is "MAJOR.MINOR": a minor version adds optional fields, which this
reader accepts; another major version is refused. A document from before the version
was written as "MAJOR.MINOR" (the integer 1, or no version at all) reads as "1.0".
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import ConfigDict, Field

from evalkit.outputs.model._base import _KEYWORDS, Part
from evalkit.outputs.model.engine import (
    EngineInfo,
    Parity,
    ParityFigures,
    ParityTolerances,
    ReferenceInfo,
    ServerInfo,
)
from evalkit.outputs.model.figures import (
    Comparison,
    Forgetting,
    ForgettingProbe,
    Gate,
    Integrity,
    MetricValue,
    Task,
    TaskMetric,
)
from evalkit.outputs.model.run import (
    BaseInfo,
    Baseline,
    CacheCounts,
    Diagnosis,
    DiagnosisEvidence,
    Fingerprints,
    ProfileRow,
    RunError,
    RunInfo,
    Stats,
    SuiteInfo,
    Sweep,
    SweepPoint,
    TaskFingerprint,
    Training,
    Variant,
)
from evalkit.outputs.model.samples import Judge, Judgment, Reliability, Sample

__all__ = [
    "SCHEMA_MAJOR",
    "SCHEMA_VERSION",
    "BaseInfo",
    "Baseline",
    "CacheCounts",
    "Comparison",
    "Diagnosis",
    "DiagnosisEvidence",
    "EngineInfo",
    "Fingerprints",
    "Forgetting",
    "ForgettingProbe",
    "Gate",
    "Integrity",
    "Judge",
    "Judgment",
    "MetricValue",
    "Parity",
    "ParityFigures",
    "ParityTolerances",
    "ProfileRow",
    "ReferenceInfo",
    "Reliability",
    "Results",
    "RunError",
    "RunInfo",
    "Sample",
    "ServerInfo",
    "Stats",
    "SuiteInfo",
    "Sweep",
    "SweepPoint",
    "as_results",
    "Task",
    "TaskFingerprint",
    "TaskMetric",
    "Training",
    "Variant",
    "json_schema",
    "major_of",
    "normalize_version",
    "schema_text",
]

# 1.1: the typed `engine` object (server version, reference, parity figures with their
# verdicts) and integrity checks marked `skipped`.
SCHEMA_VERSION = "1.1"
LEGACY_VERSION = "1.0"  # what a file from before "MAJOR.MINOR" reads as
SCHEMA_MAJOR = 1
_SCHEMA_ID = "urn:evalkit:results:1"


class Results(Part):
    """The results of one `evalkit run`: the contract between evaluation and its outputs
    (results.json, report.html, junit.xml, summary.md). NaN and infinite numbers are
    written as null."""

    model_config = ConfigDict(
        title="evalkit results",
        json_schema_extra={
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": _SCHEMA_ID,
        },
    )

    schema_version: str = Field(
        pattern=r"^1\.[0-9]+$",
        description='"MAJOR.MINOR"; a reader refuses another major version. Files written '
        "before this form (the integer 1, or no version) read as 1.0.",
    )
    evalkit_version: str
    suite: SuiteInfo
    run: RunInfo
    base: BaseInfo
    stats: Stats | None = Field(
        None,
        description="The statistics settings of the comparisons (seed, confidence, "
        "resamples, alpha). Absent in files from before it was recorded.",
    )
    error: RunError | None = Field(None, description="Why a run ended with exit code 2 or 3.")
    sweep: Sweep | None = None
    variants: list[Variant] = Field(min_length=1)
    tasks: list[Task]
    metrics: list[MetricValue]
    comparisons: list[Comparison]
    fingerprints: Fingerprints | None = None
    baseline: Baseline | None = None
    forgetting: dict[str, Forgetting]
    integrity: list[Integrity]
    gates: list[Gate]
    samples: list[Sample]
    judges: list[Judge] | None = Field(
        None, description="One entry per (judge, task) of the run's LLM judges."
    )
    profile: list[ProfileRow] | None = Field(
        None, description="Where the run's time went: one row per stage."
    )
    engine: EngineInfo | None = Field(
        None,
        description="The engine that produced the records, for runs whose engine is not hf: "
        "kind, endpoint, served model names, the server's version, settings, the local "
        "reference and the engine_parity figures.",
    )
    warnings: list[str]
    exit_code: Literal[0, 1, 2, 3]

    @property
    def confidence(self) -> float:
        """The interval level of the comparisons (0.95 for files that did not record it)."""
        return self.stats.confidence if self.stats is not None else 0.95


def normalize_version(version: Any) -> str | None:
    """`schema_version` as "MAJOR.MINOR": the integer 1 and a missing version (files from
    before the string form) read as "1.0". None when it is neither."""
    if version is None or (type(version) is int and version == SCHEMA_MAJOR):
        return LEGACY_VERSION
    if isinstance(version, str):
        major, dot, minor = version.partition(".")
        if major.isdigit() and (not dot or minor.isdigit()):
            return version if dot else f"{version}.0"
    return None


def major_of(version: str) -> int:
    """The major part of a normalized version."""
    return int(version.split(".")[0])


# Keys of a document that has figures: one without any of them is a run that ended early.
_FIGURES = ("variants", "tasks", "metrics", "comparisons", "gates", "integrity", "samples")


def as_results(results: Mapping[str, Any] | Results) -> Results | None:
    """``results`` as the model, for a renderer. None for a document with no figures at
    all (a run that ended early: an exit code, an error, warnings), which the views still
    render; a document with figures that the model refuses raises ValidationError."""
    if isinstance(results, Results):
        return results
    from evalkit.outputs._fmt import to_jsonable

    doc = to_jsonable(results)
    version = normalize_version(doc.get("schema_version"))
    if version is not None:
        doc["schema_version"] = version
    if not any(k in doc for k in _FIGURES):
        return None
    return Results.model_validate(doc)


def json_schema() -> dict[str, Any]:
    """The JSON Schema of results.json, as committed at evalkit/outputs/results.schema.json."""
    return _bounds_as_keywords(Results.model_json_schema())


def _bounds_as_keywords(node: Any) -> Any:
    """pydantic writes the bounds of an optional ``int | float`` as "ge"/"le" (not JSON
    Schema keywords, so a validator would ignore them): rename them where they sit next to
    a "number" type."""
    if isinstance(node, list):
        return [_bounds_as_keywords(x) for x in node]
    if not isinstance(node, dict):
        return node
    number = node.get("type") == "number"
    return {(_KEYWORDS.get(k, k) if number else k): _bounds_as_keywords(v) for k, v in node.items()}


def schema_text() -> str:
    """The committed schema file's text: `python -m evalkit.outputs.model` writes it."""
    return json.dumps(json_schema(), indent=2, ensure_ascii=False) + "\n"
