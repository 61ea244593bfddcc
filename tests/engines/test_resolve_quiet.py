"""Converting the built-in GGUF model draws no per-tensor bar: transformers' GGUF reader
uses tqdm directly, outside its own progress-bar switch, and `--quiet` must stay quiet."""

from __future__ import annotations

import io

from evalkit.engines.resolve import _no_tensor_bar


def _drawn(bar_factory: object) -> str:
    out = io.StringIO()
    for _ in bar_factory(range(3), desc="Converting and de-quantizing GGUF tensors...", file=out):  # type: ignore[operator]
        pass
    return out.getvalue()


def test_the_gguf_readers_bar_is_off_during_conversion_only() -> None:
    import transformers.modeling_gguf_pytorch_utils as gguf_utils

    assert "Converting" in _drawn(gguf_utils.tqdm)  # the reader's bar, as transformers has it
    with _no_tensor_bar():
        assert _drawn(gguf_utils.tqdm) == ""
    assert "Converting" in _drawn(gguf_utils.tqdm)  # restored afterwards
