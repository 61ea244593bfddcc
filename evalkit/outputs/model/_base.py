"""The base class of every part of the results model, and its number type."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, GetJsonSchemaHandler
from pydantic_core import CoreSchema

_KEYWORDS = {"ge": "minimum", "le": "maximum", "gt": "exclusiveMinimum", "lt": "exclusiveMaximum"}


class Part(BaseModel):
    """A part of results.json: unknown keys are refused (``extra="forbid"``), values are
    checked strictly (no "1" for 1, no 1 for true), NaN and infinities are refused (they
    are written as null), and a validated document is read-only."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)


class _AsJsonNumber:
    """The JSON Schema of ``int | float`` as one "number" (with its bounds as JSON Schema
    keywords, which pydantic leaves as "ge"/"le" on a union)."""

    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> dict[str, Any]:
        js = dict(handler(core_schema))
        js.pop("anyOf", None)
        out: dict[str, Any] = {"type": "number"}
        for k, v in js.items():
            out[_KEYWORDS.get(k, k)] = v
        return out


# A figure: an int stays an int (a float field would turn a margin of 1 into 1.0, which
# the report prints differently), a float stays a float; the schema says "number".
Number = Annotated[int | float, _AsJsonNumber()]
