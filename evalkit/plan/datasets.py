"""Read golden datasets into plain rows.

jsonl is read here, line by line, so a broken line is reported with its number; csv,
parquet and saved Hugging Face datasets go through `datasets`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from evalkit.errors import DataError

Row = dict[str, Any]
SUPPORTED = ".jsonl, .json (one object per line), .csv, .parquet, or a saved dataset directory"


def load_rows(path: Path, *, split: str | None = None) -> list[Row]:
    """All rows of a dataset file or saved dataset directory."""
    if not path.exists():
        raise DataError(
            f"data file not found: {path}",
            hint="Paths in a suite are relative to the suite file's folder.",
        )
    if path.is_dir():
        return _load_saved(path, split)
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json"):
        return _load_jsonl(path)
    if suffix in (".csv", ".parquet"):
        return _load_with_datasets(path, suffix.lstrip("."))
    raise DataError(f"{path}: unsupported data format '{suffix}'", hint=f"Use {SUPPORTED}.")


def _load_jsonl(path: Path) -> list[Row]:
    rows: list[Row] = []
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(
                    f"{path}:{number}: not valid JSON ({exc.msg} at column {exc.colno})",
                    hint="Each line must be one JSON object.",
                ) from None
            if not isinstance(value, dict):
                raise DataError(
                    f"{path}:{number}: expected a JSON object, got {type(value).__name__}"
                )
            rows.append(value)
    return rows


def _load_with_datasets(path: Path, builder: str) -> list[Row]:
    import datasets

    datasets.disable_progress_bars()
    try:
        ds = datasets.load_dataset(builder, data_files=str(path), split="train")
    except Exception as exc:  # the library raises many types for a malformed file
        raise DataError(f"{path}: could not read as {builder}: {exc}") from None
    return [dict(r) for r in ds]


def _load_saved(path: Path, split: str | None) -> list[Row]:
    import datasets

    try:
        ds = datasets.load_from_disk(str(path))
    except Exception as exc:
        raise DataError(
            f"{path}: not a saved dataset directory ({exc})", hint=f"Use {SUPPORTED}."
        ) from None
    if isinstance(ds, datasets.DatasetDict):
        if split is None:
            raise DataError(f"{path} holds splits {sorted(ds)}; choose one with `split:`")
        if split not in ds:
            raise DataError(f"{path} has no split '{split}'; it has {sorted(ds)}")
        ds = ds[split]
    return [dict(r) for r in ds]
