"""The base class of every part of the results model."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Part(BaseModel):
    """A part of results.json: unknown keys are refused (``extra="forbid"``), values are
    checked strictly (no "1" for 1, no 1 for true), NaN and infinities are refused (they
    are written as null), and a validated document is read-only."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)
