"""Judge replies, cached in the results SQLite file in a table of their own.

Keyed by (judge model, template hash, kind and scale, inputs, call settings): the random
delimiter nonce is not part of the key, since it changes every call by design. Only
replies are stored, never failures, so a rerun retries what failed; verdicts are parsed
again from the stored reply, so a parser fix applies to cached replies too.
"""

from __future__ import annotations

from pathlib import Path

from evalkit.engines.cache import ResultCache


class JudgeCache(ResultCache):
    def __init__(self, path: Path) -> None:
        super().__init__(path, table="judgments")
