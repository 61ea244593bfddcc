"""Read golden datasets into plain rows.

jsonl is read here, line by line, so a broken line is reported with its number; csv,
parquet and saved Hugging Face datasets go through `datasets`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from evalkit.errors import DataError
from evalkit.paths import FileProblem, read_regular_file

Row = dict[str, Any]
SUPPORTED = ".jsonl, .json (one object per line), .csv, .parquet, or a saved dataset directory"
# A golden set is hand-curated: thousands of rows, not gigabytes. The limit stops a wrong
# path (a model file, /dev/zero's cousin) from filling memory.
MAX_BYTES = 256 << 20


class Rows(list[Row]):
    """Rows with the file line each came from (JSONL), for messages that name the line."""

    lines: list[int]

    def where(self, i: int) -> str:
        lines = getattr(self, "lines", None)
        return f"line {lines[i]}" if lines else f"row {i + 1}"


def _read(path: Path) -> bytes:
    try:
        return read_regular_file(path, max_bytes=MAX_BYTES, what="data file")
    except FileProblem as exc:
        raise DataError(f"{path}: {exc.reason}", hint=exc.hint) from None


def load_rows(path: Path, *, split: str | None = None) -> list[Row]:
    """All rows of a dataset file or saved dataset directory."""
    if path.is_symlink() and not path.exists():
        _read(path)  # says why: a symlink loop, or a link to nothing
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


def _text(path: Path, raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataError(
            f"{path}:{line}: not UTF-8 text ({exc.reason} at byte {exc.start})",
            hint="Save the file as UTF-8.",
        ) from None


def _load_jsonl(path: Path) -> list[Row]:
    text = _text(path, _read(path))
    if text.lstrip("\ufeff \t\r\n").startswith("["):
        raise DataError(
            f"{path}: this is a JSON array; evalkit reads JSON Lines (one object per line)",
            hint='Convert it: python -c "import json,sys; [print(json.dumps(r)) for r in '
            'json.load(open(sys.argv[1]))]" FILE > FILE.jsonl',
        )
    rows = Rows()
    rows.lines = []
    # split on \n only: str.splitlines also splits on U+2028 and other characters that
    # JSON allows raw inside a string
    for number, line in enumerate(text.removeprefix("\ufeff").split("\n"), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(
                f"{path}:{number}: not valid JSON ({exc.msg} at column {exc.colno})",
                hint="Each line must be one JSON object.",
            ) from None
        except RecursionError:
            raise DataError(f"{path}:{number}: JSON nested too deeply") from None
        if not isinstance(value, dict):
            raise DataError(f"{path}:{number}: expected a JSON object, got {type(value).__name__}")
        rows.append(value)
        rows.lines.append(number)
    return rows


def _load_with_datasets(path: Path, builder: str) -> list[Row]:
    raw = _read(path)  # regular file, bounded size: before the library opens it
    if builder == "csv":
        if b"\x00" in raw:
            line = raw[: raw.index(b"\x00")].count(b"\n") + 1
            raise DataError(
                f"{path}:{line}: a NUL byte in a CSV file (a binary file, or a broken export)",
                hint="Re-export the file as UTF-8 CSV.",
            )
        _text(path, raw)
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


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "text"
    return "a list" if isinstance(value, list | tuple) else "an object"


def check_rows(
    rows: list[Row], path: Path, *, id_column: str | None, columns: Iterable[str]
) -> None:
    """Per-row types of what the suite maps, over every row (before --limit cuts them):
    the id column present, text or an integer, not empty, unique; each template column
    present and of one scalar kind in all rows. A message names the row (JSONL: the line)."""
    where = rows.where if isinstance(rows, Rows) else (lambda i: f"row {i + 1}")
    name = path.name
    if id_column:
        seen: dict[str, int] = {}
        for i, row in enumerate(rows):
            if id_column not in row:
                raise DataError(
                    f"{path}: {where(i)} has no id column '{id_column}'",
                    hint="Every row needs an id; add it or fix the column name in `id:`.",
                )
            value = row[id_column]
            if isinstance(value, bool) or not isinstance(value, str | int):
                raise DataError(
                    f"{path}: {where(i)}: id '{id_column}' is {_kind(value)}; ids are text "
                    "or integers",
                )
            key = str(value)
            if not key.strip():
                raise DataError(f"{path}: {where(i)}: id '{id_column}' is empty")
            if key in seen:
                raise DataError(
                    f"{path}: {where(i)}: duplicate id '{key}' (first at {where(seen[key])})",
                    hint="Ids pair a variant's answer with the base's; each must be unique.",
                )
            seen[key] = i
    for col in sorted(set(columns)):
        first: str | None = None
        for i, row in enumerate(rows):
            if col not in row:
                raise DataError(f"{path}: {where(i)} has no column '{col}' (a template uses it)")
            kind = _kind(row[col])
            if kind in ("null", "a list", "an object"):
                raise DataError(
                    f"{path}: {where(i)}: column '{col}' is {kind}; the templates need text "
                    "or a number",
                    hint=f"Fix that row of {name}, or drop it.",
                )
            if first is None:
                first = kind
            elif kind != first:
                raise DataError(
                    f"{path}: {where(i)}: column '{col}' is {kind} here but {first} in {where(0)}",
                    hint="A column holds one kind of value in every row.",
                )
