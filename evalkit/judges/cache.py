"""Judge replies, cached in the results SQLite file in a table of their own.

Keyed by (judge model, template hash, kind and scale, inputs, call settings): the random
delimiter nonce is not part of the key, since it changes every call by design. Only
replies are stored, never failures, so a rerun retries what failed; verdicts are parsed
again from the stored reply, so a parser fix applies to cached replies too.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any


class JudgeCache:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(path), timeout=30)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("CREATE TABLE IF NOT EXISTS judgments (key TEXT PRIMARY KEY, value TEXT)")
        self.db.commit()

    def get_many(self, keys: list[str]) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for key, value in self.db.execute(
                f"SELECT key, value FROM judgments WHERE key IN ({marks})", chunk
            ):
                found[key] = json.loads(value)
        return found

    def put_many(self, items: dict[str, Any]) -> None:
        self.db.executemany(
            "INSERT OR REPLACE INTO judgments VALUES (?, ?)",
            [(k, json.dumps(v)) for k, v in items.items()],
        )
        self.db.commit()

    def close(self) -> None:
        self.db.close()
