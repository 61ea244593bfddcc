"""A peft LoRA adapter written as a llama.cpp LoRA GGUF, so a real llama.cpp server can
serve the base with the adapter applied (`lora_path`) for the served-engine tests.

llama.cpp's own converter (convert_lora_to_gguf.py) ships with llama.cpp's source, not with
llama-cpp-python; this writes the same format with the `gguf` package, for the attention
projections the test adapters target: tensors `blk.N.attn_{q,k,v,output}.weight.lora_{a,b}`
(peft's lora_A (r × in) and lora_B (out × r), float32), `general.type: adapter`,
`adapter.type: lora`, `adapter.lora.alpha`. As in llama.cpp's converter for Llama models,
the q and k rows are permuted into llama.cpp's rotary layout, so lora_B of q_proj and
k_proj is permuted the same way.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

TARGETS = {"q_proj": "attn_q", "k_proj": "attn_k", "v_proj": "attn_v", "o_proj": "attn_output"}


def _permute(w: Any, n_head: int) -> Any:
    """llama.cpp's q/k row order for rotary embeddings (convert_hf_to_gguf's permute): the
    rows of each head's two rotary halves interleaved."""
    rows = w.shape[0]
    return w.reshape(n_head, 2, rows // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def lora_to_gguf(adapter: Path, model_config: dict[str, Any], out: Path) -> Path:
    """Write `adapter` (a peft LoRA directory) as a llama.cpp LoRA GGUF at `out`."""
    import gguf
    import numpy as np
    from safetensors import safe_open

    cfg = json.loads((adapter / "adapter_config.json").read_text())
    if cfg.get("use_rslora") or cfg.get("use_dora") or cfg.get("modules_to_save"):
        raise ValueError("only plain LoRA on attention projections is written here")
    heads = {
        "q_proj": int(model_config["num_attention_heads"]),
        "k_proj": int(model_config["num_key_value_heads"]),
    }
    writer = gguf.GGUFWriter(str(out), "llama")
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(cfg["lora_alpha"]))
    pattern = re.compile(r".*layers\.(\d+)\.self_attn\.(\w+)\.lora_([AB])\.weight$")
    with safe_open(str(adapter / "adapter_model.safetensors"), "np") as f:
        for key in sorted(f.keys()):
            m = pattern.match(key)
            if not m or m.group(2) not in TARGETS:
                raise ValueError(f"{key}: not a LoRA tensor of an attention projection")
            layer, proj, ab = m.groups()
            w = np.ascontiguousarray(f.get_tensor(key).astype(np.float32))
            if ab == "B" and proj in heads:
                w = np.ascontiguousarray(_permute(w, heads[proj]))
            writer.add_tensor(f"blk.{layer}.{TARGETS[proj]}.weight.lora_{ab.lower()}", w)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out
