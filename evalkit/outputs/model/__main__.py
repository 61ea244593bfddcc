"""`python -m evalkit.outputs.model`: regenerate evalkit/outputs/results.schema.json from
the results model (run it after changing the model, and commit the file)."""

from __future__ import annotations

from pathlib import Path

from evalkit.outputs.model import schema_text

if __name__ == "__main__":
    path = Path(__file__).resolve().parent.parent / "results.schema.json"
    path.write_text(schema_text(), encoding="utf-8")
    print(f"wrote {path}")
