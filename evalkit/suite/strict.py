"""The base of every suite config model: unknown keys are errors (a typo names the key,
its line and the key probably meant) and a loaded config is immutable."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
