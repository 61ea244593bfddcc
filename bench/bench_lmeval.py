"""evalkit's scoring engine against lm-evaluation-harness's HF backend, in one process, on
the same model, texts and questions, with a roofline measured in the same run.

What runs, both on CPU in fp32 with the same thread count and batch size:
- the model: the built-in default (`builtin:smollm2-135m-instruct`), converted to a
  safetensors directory by `evalkit.engines.resolve.resolve_model`; lm-eval's `HFLM` loads
  that directory (no hub, no download);
- rolling perplexity: the built-in prose probe documents (evalkit/plan/probe_data/prose/,
  half from each set): evalkit `HFEngine.rolling_nll` against `HFLM.loglikelihood_rolling`;
- multiple choice: the built-in knowledge questions, built by evalkit's own
  `knowledge-mc` probe (so the prompt is the probe's), each option's text scored after the
  chat-formatted question: evalkit `HFEngine.loglikelihood` (each question in one row with
  all its options, engines/hf_contexts.py) against `HFLM.loglikelihood` on `Instance`
  objects, the requests a
  `multiple_choice` task makes, built in code instead of from a hub task.

Printed: each engine's time and throughput (tokens/s, questions/s) and their ratio; the
total NLL's relative difference and the largest per-item differences; the accuracy of each
and the number of questions whose chosen option differs; each engine's fraction of the
roofline.

Conventions aligned so both compute the same numbers (each is a real difference between
the two tools' defaults, not a bug in either):
- Rolling prefix: evalkit predicts a text's first token from EOS (`<|im_end|>`), lm-eval
  from BOS when the tokenizer has one (`<|im_start|>` here); `prefix_token_id` is set to
  EOS. Windows: evalkit uses disjoint windows of ROLLING_WINDOW tokens; `max_length` is set
  to the same. lm-eval's last window of a longer text keeps a full context where evalkit's
  has one token, so values would differ above ROLLING_WINDOW tokens (no built-in document
  is that long; the script prints the longest).
- Multiple choice, continuation: evalkit scores the option text right after the
  assistant header, which ends in "\\n"; lm-eval's `multiple_choice` puts
  `target_delimiter` (" ") before the option, so the requests here pass the option with
  no delimiter (the equivalent of `target_delimiter: ""`).
- Multiple choice, context boundary: lm-eval moves a context's trailing whitespace into
  the continuation (`_encode_pair`), so its log-likelihood includes log p("\\n" | context
  up to "assistant"). That term is the same for every option of a question, so the choice
  cannot change; for per-item values the script subtracts it, scored by lm-eval itself in
  one extra request per question (untimed). lm-eval then encodes context + continuation
  together and splits; the script counts the requests whose tokens differ from evalkit's
  (which encodes them apart).

Timing: the machine may be shared, so each measurement runs in --rounds rounds that
alternate which engine goes first; each engine's fastest round counts, and every round's
time is printed. Results are the same in every round. Throughput is over the scored items
only (tokenization included).

Roofline (tokens/s) = measured fp32 GEMM FLOP/s / forward FLOPs per token, where
- GEMM FLOP/s: `F.linear` of an M x K input by an N x K weight in fp32 (as the model's
  linear layers run) for every linear shape of the model (per layer q, k, v, o, gate, up,
  down; then the vocabulary projection), M = GEMM_TOKENS rows, each shape's faster of two
  calls after a warm-up; FLOP/s = sum of 2*M*K*N over one forward's GEMMs (layers x the
  per-layer shapes + the projection) / the sum of their times. It is measured right before
  every timed call, and each engine's fraction uses the one before its fastest round, so
  a busy spell slows the roofline and the engine alike;
- forward FLOPs per token = 2 * (parameters of those linear layers) + attention: for a
  sequence of n tokens, 2 * 2 * layers * heads * head_dim * n(n+1)/2 (QK^T and AV over
  the causal half), divided by n; averaged over the scored sequences.
The rolling roofline uses the documents as the engines run them (one window each, with the
prefix token); the multiple-choice roofline the least work: each question once plus each
option's tokens once. Norms, activations, softmax and attention run below GEMM speed, and
the engines' batches have other row counts than M, so the fraction says how close the
whole forward comes to the speed of its GEMMs alone.

Run (after `make bench-lmeval-setup`; heavy, alone):
  bench/.venv-lmeval/bin/python bench/bench_lmeval.py [--docs 4] [--questions 40]
      [--rounds 2] [--threads 1]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the model is a local directory; no hub

from evalkit.engines.base import ChatPrompt  # noqa: E402
from evalkit.engines.chat import render_chat  # noqa: E402
from evalkit.engines.hf_scoring import ROLLING_WINDOW  # noqa: E402
from evalkit.plan.probes import build_probes, probe_data_dir  # noqa: E402

MODEL = "builtin:smollm2-135m-instruct"
GEMM_TOKENS = 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=4, help="prose documents, half per set")
    parser.add_argument("--questions", type=int, default=40, help="knowledge questions")
    parser.add_argument("--batch-size", type=int, default=8)
    # One thread: on a shared 2-core machine a 2-thread forward stalls at every parallel
    # region whenever another job holds a core (short multiple-choice batches ran 5-10x
    # slower so); one thread keeps the comparison steady. Use 2 on an idle machine.
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--rounds", type=int, default=2, help="alternating rounds per engine; best time kept"
    )
    args = parser.parse_args()
    try:
        import torch
        from lm_eval.api.instance import Instance
        from lm_eval.models.huggingface import HFLM
    except ImportError as exc:
        print(
            f"error: {exc.name} is not installed here; run this bench in its own venv:\n"
            "  make bench-lmeval   (or make bench-lmeval-setup, then "
            "bench/.venv-lmeval/bin/python bench/bench_lmeval.py)",
            file=sys.stderr,
        )
        raise SystemExit(2) from None
    from evalkit.engines.hf import HFEngine
    from evalkit.engines.resolve import resolve_model

    torch.set_num_threads(args.threads)
    for name in ("lm-eval", "lm_eval"):
        logging.getLogger(name).setLevel(logging.ERROR)

    docs = sorted((probe_data_dir() / "prose").glob("*.txt"))
    half = len(docs) // 2
    docs = docs[: args.docs // 2] + docs[half : half + args.docs - args.docs // 2]
    texts = [p.read_text(encoding="utf-8").strip() for p in docs]
    (task,) = build_probes(["knowledge-mc"], {})
    step = max(1, len(task.examples) // max(1, args.questions))  # spread over subjects
    examples = task.examples[::step][: args.questions]

    source = resolve_model(MODEL).source
    t0 = time.perf_counter()
    engine = HFEngine(MODEL, {}, batch_size=args.batch_size, device="cpu")
    t1 = time.perf_counter()
    with contextlib.redirect_stderr(io.StringIO()):  # lm-eval's load-time notices
        lm = HFLM(
            pretrained=source,
            backend="causal",
            device="cpu",
            dtype="float32",
            batch_size=args.batch_size,
            max_length=ROLLING_WINDOW,
            prefix_token_id=engine.tokenizer.eos_token_id,
            add_bos_token=False,
        )
    t2 = time.perf_counter()
    tok = engine.tokenizer
    print(
        f"model {MODEL} ({source}); fp32, cpu, threads {args.threads}, batch "
        f"{args.batch_size}, best of {args.rounds} alternating rounds; loaded evalkit "
        f"{t1 - t0:.1f}s, lm-eval {t2 - t1:.1f}s",
        flush=True,
    )
    prompts = [ChatPrompt(ex.prompt, task.system) for ex in examples]
    contexts = [render_chat(tok, p.user, system=p.system) for p in prompts]
    pairs = [(p, c) for p, ex in zip(prompts, examples, strict=True) for c in ex.choices]
    lm_pairs = [(ctx, c) for ctx, ex in zip(contexts, examples, strict=True) for c in ex.choices]
    roll_reqs = [_inst(Instance, "loglikelihood_rolling", (t,)) for t in texts]
    mc_reqs = [_inst(Instance, "loglikelihood", pair) for pair in lm_pairs]
    runs: dict[str, Any] = {
        "ek_roll": lambda: [ll.logprob for ll in engine.rolling_nll(texts)],
        "lm_roll": lambda: [-v for v in lm.loglikelihood_rolling(roll_reqs, disable_tqdm=True)],
        "ek_mc": lambda: [ll.logprob for ll in engine.loglikelihood(pairs)],
        "lm_mc": lambda: [v for v, _ in lm.loglikelihood(mc_reqs, disable_tqdm=True)],
    }
    with _quiet():  # warm-up: the first forwards of each pay one-off allocation costs
        engine.rolling_nll([texts[0][:400]])
        lm.loglikelihood_rolling(
            [_inst(Instance, "loglikelihood_rolling", (texts[0][:400],))], True
        )
        engine.loglikelihood(pairs[:4])
        lm.loglikelihood(mc_reqs[:4], True)

    def gemm() -> float:
        return _gemm_flops_per_s(engine.model.config, torch)

    ids = [list(tok(t, add_special_tokens=False)["input_ids"]) for t in texts]
    values, timing = _rounds(runs, "roll", args.rounds, gemm)
    _report_rolling(engine, docs, ids, values, timing)
    values, timing = _rounds(runs, "mc", args.rounds, gemm)
    _report_mc(lm, tok, Instance, examples, contexts, lm_pairs, values, timing)


def _rounds(
    runs: dict[str, Any], kind: str, rounds: int, gemm: Any
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Each engine's run of `kind`, `rounds` times, alternating which engine goes first,
    with the GEMM FLOP/s measured right before every call: the machine may be shared, and
    a slow spell should not land on one engine (or on the roofline) only."""
    values: dict[str, Any] = {}
    timing: dict[str, Any] = {who: {"times": [], "gemm": []} for who in ("ek", "lm")}
    for r in range(rounds):
        for who in ("ek", "lm") if r % 2 == 0 else ("lm", "ek"):
            timing[who]["gemm"].append(gemm())
            t0 = time.perf_counter()
            with _quiet():
                values[who] = runs[f"{who}_{kind}"]()
            timing[who]["times"].append(time.perf_counter() - t0)
    return values, timing


def _speed(timing: dict[str, Any], work: float, flops_per_unit: float) -> tuple[str, float]:
    """One engine's line: fastest round's time and throughput, its fraction of the roofline
    measured just before that call, and every round's time."""
    times, gemms = timing["times"], timing["gemm"]
    i = min(range(len(times)), key=times.__getitem__)
    roof = gemms[i] / flops_per_unit
    rounds = "/".join(f"{t:.1f}" for t in times)
    line = (
        f"{times[i]:6.1f}s {work / times[i]:7.2f}/s, {work / times[i] / roof:.2f} of the "
        f"roofline {roof:.1f}/s (GEMM {gemms[i] / 1e9:.0f} GFLOP/s; rounds {rounds}s)"
    )
    return line, times[i]


def _report_rolling(
    engine: Any,
    docs: list[Path],
    ids: list[list[int]],
    values: dict[str, Any],
    timing: dict[str, Any],
) -> None:
    ek, lm = values["ek"], values["lm"]
    n_tokens = sum(len(x) for x in ids)
    per_token = _flops_per_token(engine.model.config, [len(x) + 1 for x in ids])
    ek_line, t_ek = _speed(timing["ek"], n_tokens, per_token)
    lm_line, t_lm = _speed(timing["lm"], n_tokens, per_token)
    rel = [abs(a - b) / abs(b) for a, b in zip(ek, lm, strict=True)]
    worst = max(range(len(docs)), key=rel.__getitem__)
    ref = _direct_nll(engine, ids[worst])
    print(
        f"\nrolling perplexity: {len(docs)} documents, {n_tokens} tokens "
        f"(longest {max(len(x) for x in ids)}, window {ROLLING_WINDOW}); tokens/s\n"
        f"  evalkit {ek_line}\n  lm-eval {lm_line}\n"
        f"  ratio (lm-eval time / evalkit time) {t_lm / t_ek:.2f}x\n"
        f"  total NLL evalkit {sum(ek):.4f} lm-eval {sum(lm):.4f}: relative "
        f"difference {abs(sum(ek) - sum(lm)) / abs(sum(lm)):.1e}\n"
        f"  largest per-document difference {max(rel):.1e} relative "
        f"({abs(ek[worst] - lm[worst]):.1e} nats, {docs[worst].stem}); against a direct "
        f"unpadded forward of it: evalkit {abs(ek[worst] - ref) / ref:.1e}, "
        f"lm-eval {abs(lm[worst] - ref) / ref:.1e}",
        flush=True,
    )


def _report_mc(
    lm: Any,
    tok: Any,
    instance_cls: Any,
    examples: list[Any],
    contexts: list[str],
    lm_pairs: list[tuple[str, str]],
    values: dict[str, Any],
    timing: dict[str, Any],
) -> None:
    ek_ll, lm_raw = values["ek"], values["lm"]
    # the whitespace lm-eval moves from each context into its options, scored alone
    moved = [
        _inst(instance_cls, "loglikelihood", (ctx.rstrip(), ctx[len(ctx.rstrip()) :]))
        for ctx in contexts
    ]
    with _quiet():
        offsets = [v for v, _ in lm.loglikelihood(moved, disable_tqdm=True)]
    n_opts = [len(ex.choices) for ex in examples]
    owner = [q for q, n in enumerate(n_opts) for _ in range(n)]
    lm_ll = [v - offsets[q] for v, q in zip(lm_raw, owner, strict=True)]
    diffs = [abs(a - b) for a, b in zip(ek_ll, lm_ll, strict=True)]
    ek_pick, lm_pick = _picks(ek_ll, n_opts), _picks(lm_raw, n_opts)
    answers = [ex.answer for ex in examples]
    boundary = sum(_split_differs(lm, tok, ctx, c) for ctx, c in lm_pairs)
    n_q = len(examples)
    ctx_lens = [len(tok(c, add_special_tokens=False)["input_ids"]) for c in contexts]
    cont_lens = [len(tok(c, add_special_tokens=False)["input_ids"]) for _, c in lm_pairs]
    mc_tokens = sum(ctx_lens) + sum(cont_lens)
    per_question = _flops_per_token(lm.model.config, ctx_lens) * mc_tokens / n_q
    ek_line, t_ek = _speed(timing["ek"], n_q, per_question)
    lm_line, t_lm = _speed(timing["lm"], n_q, per_question)
    print(
        f"\nmultiple choice: {n_q} questions, {len(lm_pairs)} options "
        f"(knowledge-mc prompts, option text after the chat-formatted question; "
        f"{mc_tokens} tokens at least); questions/s\n"
        f"  evalkit {ek_line}\n  lm-eval {lm_line}\n"
        f"  ratio (lm-eval time / evalkit time) {t_lm / t_ek:.2f}x\n"
        f"  lm-eval moved {sorted({repr(m.args[1]) for m in moved})} into the continuation: "
        f"log p {min(offsets):.4f}..{max(offsets):.4f}, subtracted below\n"
        f"  total log-likelihood relative difference "
        f"{abs(sum(ek_ll) - sum(lm_ll)) / abs(sum(lm_ll)):.1e}; largest per-option "
        f"difference {max(diffs):.1e} nats "
        f"({max(d / abs(b) for d, b in zip(diffs, lm_ll, strict=True) if b):.1e} relative)\n"
        f"  requests whose context/continuation tokens differ from evalkit's: {boundary}\n"
        f"  accuracy evalkit {_acc(ek_pick, answers):.3f} lm-eval {_acc(lm_pick, answers):.3f}; "
        f"questions with a different choice: "
        f"{sum(a != b for a, b in zip(ek_pick, lm_pick, strict=True))} of {n_q}",
        flush=True,
    )


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """lm-eval opens progress bars inside its calls whatever disable_tqdm says."""
    with contextlib.redirect_stderr(io.StringIO()):
        yield


def _inst(instance_cls: Any, kind: str, arguments: tuple[str, ...]) -> Any:
    return instance_cls(request_type=kind, doc={}, arguments=arguments, idx=0)


def _picks(scores: list[float], n_opts: list[int]) -> list[int]:
    """The first highest-scoring option of each question (as evalkit and numpy's argmax)."""
    out, pos = [], 0
    for n in n_opts:
        group = scores[pos : pos + n]
        out.append(max(range(n), key=group.__getitem__))
        pos += n
    return out


def _acc(picks: list[int], answers: list[int | None]) -> float:
    return sum(p == a for p, a in zip(picks, answers, strict=True)) / len(picks)


def _split_differs(lm: Any, tok: Any, ctx: str, cont: str) -> bool:
    """Whether lm-eval's tokens for (context, continuation) differ from evalkit's: the
    context and the option encoded apart, the moved whitespace put back in front."""
    lm_ctx, lm_cont = lm._encode_pair(ctx, cont)
    ws = ctx[len(ctx.rstrip()) :]
    ek_ctx = list(tok(ctx.rstrip(), add_special_tokens=False)["input_ids"])
    ek_ws = list(tok(ws, add_special_tokens=False)["input_ids"]) if ws else []
    ek_cont = list(tok(cont, add_special_tokens=False)["input_ids"])
    full = list(tok(ctx, add_special_tokens=False)["input_ids"]) + ek_cont
    return bool(lm_ctx != ek_ctx or lm_cont != ek_ws + ek_cont or lm_ctx + lm_cont != full)


def _direct_nll(engine: Any, ids: list[int]) -> float:
    """One document's NLL from one unpadded forward of [EOS] + its tokens, summed in
    float64: the arbiter for the document where the engines differ most."""
    import torch

    seq = torch.tensor([[engine.tokenizer.eos_token_id, *ids]])
    with torch.inference_mode():
        logits = engine.model(input_ids=seq).logits[0, :-1].double()
    logp = torch.log_softmax(logits, -1)
    return float(-logp.gather(1, seq[0, 1:].unsqueeze(1)).sum())


def _linear_shapes(cfg: Any) -> list[tuple[int, int]]:
    """(in, out) of one layer's linear maps: q, k, v, o, gate, up, down."""
    d, ff = cfg.hidden_size, cfg.intermediate_size
    hd = getattr(cfg, "head_dim", None) or d // cfg.num_attention_heads
    q, kv = cfg.num_attention_heads * hd, cfg.num_key_value_heads * hd
    return [(d, q), (d, kv), (d, kv), (q, d), (d, ff), (d, ff), (ff, d)]


def _flops_per_token(cfg: Any, seq_lens: list[int]) -> float:
    """Forward FLOPs per token over sequences of these lengths (see the docstring)."""
    params = cfg.num_hidden_layers * sum(k * n for k, n in _linear_shapes(cfg))
    params += cfg.hidden_size * cfg.vocab_size
    hd = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    per_pair = 4 * cfg.num_hidden_layers * cfg.num_attention_heads * hd
    attention = sum(per_pair * n * (n + 1) / 2 for n in seq_lens)
    return 2 * params + attention / sum(seq_lens)


def _gemm_flops_per_s(cfg: Any, torch: Any) -> float:
    """fp32 GEMM FLOP/s over one forward's GEMMs at GEMM_TOKENS rows, each shape as the
    model runs it (`F.linear` on an out x in weight), its fastest of a few calls."""
    shapes = [(k, n, cfg.num_hidden_layers) for k, n in _linear_shapes(cfg)]
    shapes.append((cfg.hidden_size, cfg.vocab_size, 1))
    flops = seconds = 0.0
    with torch.inference_mode():
        for k, n, count in shapes:
            a, w = torch.randn(GEMM_TOKENS, k), torch.randn(n, k)
            torch.nn.functional.linear(a, w)
            fastest = float("inf")
            for _ in range(2):
                t0 = time.perf_counter()
                torch.nn.functional.linear(a, w)
                fastest = min(fastest, time.perf_counter() - t0)
            flops += 2.0 * GEMM_TOKENS * k * n * count
            seconds += fastest * count
    return flops / seconds


if __name__ == "__main__":
    main()
