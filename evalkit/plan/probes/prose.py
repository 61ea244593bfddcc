"""`kind: prose`: documents scored by rolling log-likelihood: perplexity, bits per UTF-8
byte, and KL(base‖variant) per token from the same forward passes. Each document is one
unit of the bootstrap. Documents are a `text` column, or a folder of .txt files (each
file one document, its name the id)."""

from __future__ import annotations

from pathlib import Path

from evalkit.plan.probes.kinds import (
    KindMetric,
    ProbeKind,
    ProbeSource,
    as_text,
    describe,
    example_ids,
    groups,
    read_rows,
    register_kind,
    require_column,
    where,
)
from evalkit.plan.types import Example
from evalkit.suite.probes_config import ProseProbe
from evalkit.suite.yaml_lines import Loc


def _folder(cfg: ProseProbe, source: ProbeSource, loc: Loc, folder: Path) -> list[Example]:
    for key in ("text", "id", "group"):
        if key in cfg.model_fields_set:
            raise source.error(
                loc + (key,),
                f"`{key}:` names a column, but {folder} is a folder of .txt files "
                "(each file is one document, its name the id)",
                hint=f"Remove `{key}:`, or point `data.path` at a .jsonl/.csv file.",
            )
    examples = []
    for file in sorted(folder.glob("*.txt")):
        try:
            raw = file.read_bytes().decode("utf-8")
            # universal newlines, as Path.read_text: a file saved with CRLF is the same text
            text = raw.replace("\r\n", "\n").replace("\r", "\n").strip()
        except UnicodeDecodeError as exc:
            raise source.error(
                loc + ("data", "path"),
                f"{file}: not UTF-8 text ({exc.reason} at byte {exc.start})",
                hint="Save the file as UTF-8.",
            ) from None
        except OSError as exc:
            raise source.error(loc + ("data", "path"), f"{file}: cannot read ({exc})") from None
        if not text:
            raise source.error(
                loc + ("data", "path"),
                f"{file} is empty; a prose document needs text",
                hint="Remove the file or write the document.",
            )
        examples.append(Example(id=file.stem, text=text))
    return examples


def _examples(cfg: ProseProbe, source: ProbeSource, loc: Loc) -> list[Example]:
    target = source.resolve(cfg.data.path)
    if target.is_dir() and any(target.glob("*.txt")):
        return _folder(cfg, source, loc, target)
    saved = ("dataset_dict.json", "state.json")  # what `datasets` saves in a dataset folder
    if target.is_dir() and not any((target / name).exists() for name in saved):
        raise source.error(
            loc + ("data", "path"),
            f"{target} has no .txt files",
            hint="A prose folder holds one document per .txt file (UTF-8); or point "
            "`data.path` at a .jsonl/.csv file with a `text` column.",
        )
    path, rows = read_rows(cfg, source, loc)
    require_column(source, loc, "text", cfg.text, path, rows)
    ids = example_ids(cfg, source, loc, path, rows)
    subjects = groups(cfg, source, loc, path, rows)
    out = []
    for i, row in enumerate(rows):
        text = as_text(row[cfg.text])
        if text is None or not text.strip():
            raise source.error(
                loc + ("text",),
                f"{path}: {where(rows, i)}: text column '{cfg.text}' holds "
                f"{describe(row[cfg.text])}; a prose document needs text",
            )
        out.append(Example(id=ids[i], text=text, group=subjects[i]))
    return out


PROSE = register_kind(
    ProbeKind(
        "prose",
        (
            KindMetric("perplexity", "rolling_perplexity", 0.10),
            KindMetric("bits_per_byte", "bits_per_byte", 0.03),
            KindMetric("kl_from_base", "kl_from_base", 0.15),
            # same passes as the KL; the default matches the KL's (evalkit.scoring.metrics.drift)
            KindMetric("top1_agreement", "top1_agreement", 0.17),
        ),
        _examples,
    )
)
