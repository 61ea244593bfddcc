"""Benchmark: the size and render time of report.html for a large run.

Builds a synthetic results document (tests/fixtures/report_data.py: 10,000 contract
clauses x 4 variants by default, with judge verdicts, realistic text lengths and a hostile
corpus), renders report.html, and prints its size and render time against a baseline
measured in the same process: writing the same document as results.json (the plain JSON a
run already stores). With --browser it also opens the page in headless Chromium and times
how long until the tables are ready and a filter and a search have applied.

    flock /tmp/evalkit-heavy.lock .venv/bin/python bench/bench_report.py [--examples N] [--browser]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # for tests.fixtures.report_data

from evalkit.outputs import _samples, render_html, render_results_json, to_jsonable  # noqa: E402
from tests.fixtures.report_data import make_run  # noqa: E402

VARIANTS = ("base", "legal-r8", "merged:legal-r16", "legal-r64")


def _best_of(n: int, fn):  # type: ignore[no-untyped-def]
    best, out = float("inf"), None
    for _ in range(n):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def _browser(path: Path) -> dict[str, float]:
    from playwright.sync_api import sync_playwright

    args = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update",
            "--disable-sync"]  # fmt: skip
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path="/usr/bin/chromium", args=args)
        page = b.new_page()
        page.set_default_timeout(120_000)
        start = time.perf_counter()
        page.goto(path.as_uri())
        page.wait_for_selector("body[data-ready='1']")
        ready = time.perf_counter() - start
        table = page.locator(".task-samples").first
        start = time.perf_counter()
        table.locator("select.f-show").select_option("judge")
        table.locator("select.f-show").select_option("all")
        table.locator(".f-search").fill("clause-09999")
        page.wait_for_function(
            "() => document.querySelector('.task-samples').dataset.shown === '1'"
        )
        filtered = time.perf_counter() - start
        b.close()
    return {"ready_s": ready, "filter_search_s": filtered}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--browser", action="store_true", help="also time the page in Chromium")
    a = ap.parse_args()

    start = time.perf_counter()
    results = to_jsonable(make_run(a.examples, VARIANTS, n_probe=200))
    n_samples = len(results["samples"])
    print(f"generated {a.examples:,} clauses + 200 probe questions x {len(VARIANTS)} variants "
          f"({n_samples:,} samples) in {time.perf_counter() - start:.1f}s")  # fmt: skip

    json_s, json_text = _best_of(a.repeats, lambda: render_results_json(results))
    html_s, html_text = _best_of(a.repeats, lambda: render_html(results, clean=True))
    json_b, html_b = len(json_text.encode()), len(html_text.encode())
    print(f"baseline results.json: {json_b / 1e6:7.2f} MB  {json_s:6.2f}s  "
          f"({json_b / n_samples:,.0f} B/sample)")  # fmt: skip
    print(f"report.html:           {html_b / 1e6:7.2f} MB  {html_s:6.2f}s  "
          f"({html_b / n_samples:,.0f} B/sample)")  # fmt: skip
    print(f"ratio report.html / results.json: size {html_b / json_b:.2f}x, "
          f"render time {html_s / json_s:.2f}x")  # fmt: skip
    print(f"under 25 MB: {'yes' if html_b < 25_000_000 else 'NO'}")
    _samples.COMPRESS_ABOVE, keep = 10**12, _samples.COMPRESS_ABOVE
    plain_s, plain = _best_of(1, lambda: render_html(results, clean=True))
    _samples.COMPRESS_ABOVE = keep
    print(f"for reference, the page with plain (uncompressed) JSON data: "
          f"{len(plain.encode()) / 1e6:.2f} MB, {plain_s:.2f}s")  # fmt: skip
    if a.browser:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "report.html"
            path.write_text(html_text, encoding="utf-8")
            t = _browser(path)
        print(f"chromium: tables ready {t['ready_s']:.1f}s after load started; "
              f"filter + search {t['filter_search_s']:.2f}s")  # fmt: skip


if __name__ == "__main__":
    main()
