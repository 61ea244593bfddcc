"""What the prose KL probe costs on top of the rolling NLL, on the real default model and
the demo adapters, and how large the KL is.

For each variant the same documents are scored twice: `rolling_nll` (the perplexity pass,
the baseline) and `rolling_kl` (the same pass plus the base's forward on each document's
first KL_TOKENS tokens, inside the engine); the script prints both times, their ratio, and
the KL per token with its spread over documents. Loads the real model: run it under the
heavy lock.

Run: flock /tmp/evalkit-heavy.lock .venv/bin/python bench/bench_prose_kl.py [--docs 8]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from evalkit.engines import hf_scoring  # noqa: E402
from evalkit.engines.hf import HFEngine  # noqa: E402
from evalkit.plan.probes import probe_data_dir  # noqa: E402

ADAPTERS = REPO / "suites" / "adapters"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--docs", type=int, default=8, help="documents, half from each set")
    parser.add_argument(
        "--variants", default="legal-r16,merged:legal-r16,legal-overfit", help="comma-separated"
    )
    args = parser.parse_args()
    docs = sorted((probe_data_dir() / "prose").glob("*.txt"))
    docs = docs[: args.docs // 2] + docs[12 : 12 + args.docs - args.docs // 2]
    texts = [p.read_text(encoding="utf-8").strip() for p in docs]
    engine = HFEngine(
        "builtin:smollm2-135m-instruct",
        {n: ADAPTERS / n for n in ("legal-r16", "legal-overfit")},
        batch_size=16,
    )
    print(f"KL_TOKENS {hf_scoring.KL_TOKENS}; documents {[p.stem for p in docs]}", flush=True)
    for variant in args.variants.split(","):
        with engine.variant(variant):
            t0 = time.perf_counter()
            nll = engine.rolling_nll(texts)
            t1 = time.perf_counter()
            kl = engine.rolling_kl(texts)
            t2 = time.perf_counter()
        tokens = sum(x.n_tokens for x in nll)
        kl_tokens = sum(k.kl_tokens for k in kl)
        per_doc = [k.kl / k.kl_tokens for k in kl]
        drift = max(abs(a.logprob - b.nll) for a, b in zip(nll, kl, strict=True))
        print(
            f"{variant:22s} tokens {tokens} (KL on {kl_tokens}) rolling_nll {t1 - t0:.1f}s "
            f"rolling_kl {t2 - t1:.1f}s ratio {(t2 - t1) / (t1 - t0):.2f}  "
            f"KL/token {sum(k.kl for k in kl) / kl_tokens:.4f} "
            f"(documents {min(per_doc):.4f}..{max(per_doc):.4f}), NLL equal to {drift:.1e}",
            flush=True,
        )


if __name__ == "__main__":
    main()
