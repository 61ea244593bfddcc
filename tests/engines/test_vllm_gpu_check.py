"""bench/gpu/vllm_check.py --cpu-only: the GPU check script's CPU half runs here (it builds
its tiny model, tokenizer, adapter and merged export, and runs the hf engine), so the
script a GPU machine runs is known to work up to the vLLM half. The vLLM half itself
cannot run on this machine (no CUDA GPU, vLLM not installed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO


def test_the_cpu_half_of_the_gpu_check_runs_and_measures(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    env["EVALKIT_CACHE_DIR"] = str(tmp_path / "cache")
    out = tmp_path / "check.json"
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench/gpu/vllm_check.py"), "--cpu-only", "--prompts", "4",
         "--texts", "6", "--max-new-tokens", "8", "--json", str(out)],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result == json.loads(proc.stdout[proc.stdout.index("{") :])
    assert result["device"] == "cpu" and "vllm" not in result and "parity" not in result
    assert result["model"]["vocab"] > 300 and result["model"]["merge_max_abs_logit_diff"] < 1e-3
    figs = result["hf"]["throughput"]
    assert set(figs) == {"base", "tiny-lora", "merged:tiny-lora"}
    for f in figs.values():
        assert f["generated_tokens"] > 0 and f["generate_tokens_per_s"] > 0
        assert f["scored_tokens"] > 20 and f["score_tokens_per_s"] > 0
    # an engine that dropped this adapter would miss the parity tolerances by far
    effect = result["adapter_effect"]
    assert effect["mean_abs"] > 0.1 * 3 and effect["top1"] < 0.9
