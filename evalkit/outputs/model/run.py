"""What was run: the suite, the run itself, the base model, the variants (with their
training), a sweep, the statistics settings, the fingerprints and a baseline."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field

from evalkit.outputs.model._base import Number, Part

SHA256 = r"^[0-9a-f]{64}$"


class SuiteInfo(Part):
    name: str = Field(min_length=1)
    path: str | None
    sha256: str | None = Field(pattern=SHA256)
    text: str


class CacheCounts(Part):
    """Results reused from the cache and computed in this run."""

    reused: int = Field(ge=0)
    computed: int = Field(ge=0)


class RunInfo(Part):
    started_at: str = Field(description="ISO 8601")
    finished_at: str | None = Field(description="ISO 8601")
    duration_s: Number | None = Field(ge=0)
    seed: int
    limit: int | None = Field(ge=1)
    smoke: bool = Field(description="true when limit is set")
    output_dir: str
    device: str
    versions: dict[str, str | None]
    cache: CacheCounts | None = None


class BaseInfo(Part):
    model: str
    fingerprint: str | None


class Stats(Part):
    """How the comparisons were computed (the run's `Plan.stats`). Absent in files
    written before it was recorded: those used the defaults below."""

    seed: int = 0
    confidence: Number = Field(0.95, gt=0, lt=1)
    resamples: int = Field(2000, ge=1)
    alpha: Number = Field(0.05, gt=0, lt=1)


class Training(Part):
    """For an adapter declared with `train:`: trained in this run or reused from the
    adapter cache."""

    status: Literal["trained", "reused"]
    key: str = Field(pattern=SHA256)
    path: str | None = None
    qlora: bool
    settings: dict[str, Any]
    final_loss: Number | None = None
    epoch_losses: list[Number | None] = Field(default_factory=list)
    val_losses: list[Number | None] = Field(default_factory=list)
    seconds: Number | None = None
    quantization_drift: Number | None = Field(
        None,
        description="QLoRA only: max |delta logit| between the adapter on the 4-bit base "
        "and on the full-precision base.",
    )


class DiagnosisEvidence(Part):
    """One comparison behind a diagnosis: its role, verdict and figures as text."""

    role: Literal["knowledge", "format", "context"]
    task: str
    metric: str
    verdict: str
    figure: str = Field(description='Delta, interval and margin, e.g. "-12.5 points [...]".')


class Diagnosis(Part):
    """Format drift vs knowledge loss (evalkit.decide.diagnosis): knowledge_loss (a
    multiple-choice or prose perplexity probe regressed), format_drift (open answers or
    open-shift regressed while those stayed equivalent), unclear (format regressed but a
    knowledge probe is inconclusive) or none."""

    kind: Literal["knowledge_loss", "format_drift", "unclear", "none"]
    summary: str
    evidence: list[DiagnosisEvidence] = Field(default_factory=list)


class Variant(Part):
    name: str = Field(min_length=1)
    kind: Literal["base", "adapter", "merged"]
    adapter: str | None
    path: str | None = None
    fingerprint: str | None = None
    training: Training | None = None
    diagnosis: Diagnosis | None = Field(
        None, description="Absent for the base and for runs without knowledge probes."
    )


class SweepPoint(Part):
    adapter: str
    settings: dict[str, Number]


class Sweep(Part):
    """Present when the suite swept an adapter's training settings: each point is an
    ordinary adapter variant."""

    name: str
    parameters: list[Literal["rank", "learning_rate", "epochs"]]
    points: list[SweepPoint]


class TaskFingerprint(Part):
    # the scores.json reader has always tolerated more keys here; keep that
    model_config = ConfigDict(extra="allow")

    data: str
    settings: str


class Fingerprints(Part):
    """What a baseline comparison checks: suite_sha256, limit, per task its data and
    settings hashes, per variant its weights fingerprint (also in scores.json)."""

    model_config = ConfigDict(extra="allow")

    suite_sha256: str | None = None
    limit: int | None = None
    tasks: dict[str, TaskFingerprint] = Field(default_factory=dict)
    variants: dict[str, str | None] = Field(default_factory=dict)


class Baseline(Part):
    """The earlier run compared with (evalkit run --baseline); comparisons against it
    carry baseline '<label>:<variant>'."""

    model_config = ConfigDict(extra="allow")

    run_dir: str
    label: str
    suite_sha256: str | None = None
    pairs: list[list[str]] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)


class RunError(Part):
    """Why a run ended with exit code 2 or 3."""

    type: str | None = None
    message: str


class ProfileRow(Part):
    """One stage's wall time; further keys (counts, throughput) are free-form."""

    model_config = ConfigDict(extra="allow")

    stage: str
    seconds: Number | None
