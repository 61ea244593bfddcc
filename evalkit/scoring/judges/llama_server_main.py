"""Entry point of the local judge server: llama-cpp-python's OpenAI-compatible server with
ggml's extra CPU buffer types turned off.

With them on, llama.cpp repacks the weights for AMX / AVX-512 kernels; on Xeon processors
with AMX (the machines evalkit's CI runs on) the first decode of the default Q4_1 model
then crashes with a segmentation fault inside `llama_decode`, before any reply (llama.cpp
reports the same crash in `ggml_backend_amx_mul_mat`). The model's own buffers compute the
same results on every CPU, so evalkit always asks for them.

Run as `python -m evalkit.scoring.judges.llama_server_main <llama_cpp.server args>`.
"""

from __future__ import annotations

import runpy
from typing import Any


def _without_extra_buffer_types() -> None:
    import llama_cpp.llama_cpp as native

    original = native.llama_model_default_params

    def params() -> Any:
        p = original()
        if hasattr(p, "use_extra_bufts"):
            p.use_extra_bufts = False
        return p

    # llama_cpp.llama calls it through this module at model load, so one patch is enough
    native.llama_model_default_params = params


def main() -> None:
    _without_extra_buffer_types()
    runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
