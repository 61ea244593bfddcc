"""report.html: escaping, the Content-Security-Policy, the sections and their figures, the
embedded per-example data. The same pages in a real browser: test_report_browser.py."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import re
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any

import evalkit.outputs as report
from evalkit.outputs import html as report_html
from tests.fixtures.report_data import make_run
from tests.test_report import _samples, _Tags, make_results


def _page_data(page: str) -> dict[str, Any]:
    """The per-example data embedded in a report, decoded as the page's script does."""
    m = re.search(r'<script type="application/json" id="page-data" data-encoding="([a-z0-9-]+)">'
                  r"(.*?)</script>", page, re.S)  # fmt: skip
    assert m, "no page data"
    text = m.group(2)
    if m.group(1) == "deflate-base64":
        text = zlib.decompress(base64.b64decode(text)).decode("utf-8")
    return json.loads(text)


def test_html_escapes_hostile_text() -> None:
    page = report.render_html(make_results())
    assert "<script>alert" not in page
    assert "<img src=x" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page  # server-rendered: gate detail
    assert "&lt;img src=x onerror=alert(1)&gt;" in page  # variant path in the manifest
    assert "\\u003cscript\\u003ealert(1)\\u003c/script\\u003e" in page  # sample data: JSON
    assert "{{7*7}}" in page and ">49<" not in page  # data is never rendered as a template
    assert "&lt;b&gt;fields&lt;/b&gt;" in page
    parser = _Tags()
    parser.feed(page)
    tags = [t for t, _ in parser.tags]
    assert tags.count("script") == 2 and page.count("</script>") == 2  # data + the page's JS
    assert [a.get("type") for t, a in parser.tags if t == "script"] == ["application/json", None]
    assert not {"img", "iframe", "link", "object", "embed", "base", "form"} & set(tags)
    for tag, attrs in parser.tags:
        assert not any(k.startswith("on") for k in attrs), (tag, attrs)
        assert "src" not in attrs and "style" not in attrs
        assert (attrs.get("href") or "#").startswith("#"), (tag, attrs)
    js = parser.scripts[1]
    assert "innerHTML" not in js and "eval(" not in js and "insertAdjacentHTML" not in js
    data = _page_data(page)
    outputs = [o for t in data["tasks"] for r in t["rows"] for o in r[3]]
    assert "</script><script>alert(2)</script>" in " ".join(outputs)  # intact once decoded


def test_safe_json_cannot_close_its_element() -> None:
    hostile = {"x": "</script><!-- <script> & \u2028\u2029 \x00 \x1b[31m"}
    text = report_html._samples.safe_json(hostile)
    assert not set("<>&\u2028\u2029") & set(text)
    assert json.loads(text) == hostile


def test_large_page_data_is_compressed_and_round_trips() -> None:
    results = make_results(n_samples=3)
    results["samples"] += _samples(2500, task="knowledge-open", output_chars=400)
    page = report.render_html(results)
    assert 'data-encoding="deflate-base64"' in page
    data = _page_data(page)
    know = next(t for t in data["tasks"] if t["name"] == "knowledge-open")
    assert len(know["rows"]) == 2500 and know["rows"][7][0] == "legal-eval-0007"
    assert len(page) < 0.5 * len(json.dumps(results["samples"]))
    small = report.render_html(make_results(n_samples=3))
    assert 'data-encoding="json"' in small


def test_html_is_self_contained_with_csp() -> None:
    results = make_results()
    page = report.render_html(results)
    m = re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]+)">', page)
    assert m
    policy = dict(d.strip().split(" ", 1) for d in m.group(1).split(";"))
    assert policy["default-src"] == "'none'" and policy["img-src"] == "data:"
    assert policy["base-uri"] == "'none'" and policy["form-action"] == "'none'"
    assert "unsafe" not in m.group(1)  # neither script nor style may be inline at large
    parser = _Tags()
    parser.feed(page)
    style = page[page.index("<style>") + 7 : page.index("</style>")]
    for directive, text in (("script-src", parser.scripts[1]), ("style-src", style)):
        digest = base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()
        assert policy[directive] == f"'sha256-{digest}'", directive
    for s in results["samples"]:  # keep the URL in the hostile text out of this check
        s["outputs"] = {k: v.replace("https://", "") for k, v in s["outputs"].items()}
        s["prompt"] = s["prompt"].replace("https://", "")
    page = report.render_html(results)
    assert "http://" not in page and "https://" not in page
    assert "url(" not in page and "@import" not in page


def test_html_verdict_first_then_matrix_samples_manifest() -> None:
    page = report.render_html(make_results())
    assert '<div class="verdict fail">' in page and '<div class="word">FAIL</div>' in page
    for gate in ("legal-r16 improves json_valid", "legal-overfit: no forgetting"):
        assert gate in page
    flagged = page[page.index('<div class="card flagged">') :]
    flagged = flagged[: flagged.index("</table>")]
    assert "legal-overfit" in flagged and "knowledge-open" in flagged
    assert "-45.0 pp" in flagged and "[-55.0, -35.0]" in flagged
    order = [page.index(f'<section id="{s}">') for s in ("verdict", "matrix", "samples")]
    assert order == sorted(order) and order[-1] < page.index('<section id="manifest">')
    assert "Smoke run" not in page
    assert "&lt;/pre&gt;&lt;script&gt;" in page  # suite text in the manifest, escaped


def test_html_matrix_formats_deltas_and_badges() -> None:
    page = report.render_html(make_results())
    assert "+93.0 pp" in page and "[+86.0, +98.0]" in page  # fraction: percentage points
    assert "93.0%" in page
    assert "+12.3%" in page and "[+5.0, +20.0]" in page  # ratio: relative change
    assert "12.64" in page
    for verdict in ("improved", "regressed", "equivalent", "inconclusive"):
        assert f'<span class="badge {verdict}">{verdict}</span>' in page
    assert "2 unscored" in page


def test_html_smoke_banner_pass_and_error() -> None:
    page = report.render_html(make_results(exit_code=0, limit=5, smoke=True))
    assert "Smoke run" in page and "limited to 5 examples" in page
    assert '<div class="word">PASS</div>' in page
    assert '<div class="word">ERROR</div>' in report.render_html(make_results(exit_code=3))


def test_html_carries_every_sample_with_flags() -> None:
    n = 255
    page = report.render_html(make_results(n_samples=n))
    task = _page_data(page)["tasks"][0]
    assert len(task["rows"]) == n  # no cap: the page renders a page of rows at a time
    assert [m["name"] for m in task["metrics"]] == ["json_valid", "type_match"]
    assert all(m["binary"] for m in task["metrics"])
    flags = [r[5] for r in task["rows"]]  # per variant: base, legal-r16, merged, overfit
    w2r, changed = report_html._samples.WRONG_TO_RIGHT, report_html._samples.CHANGED
    assert all(f[0] == 0 for f in flags)  # the base is never flagged against itself
    fixed = [i for i in range(n) if i % 10 != 0]  # the adapters fix nine examples in ten
    assert [i for i, f in enumerate(flags) if f[1] & w2r] == fixed
    assert [i for i, f in enumerate(flags) if f[1] & changed] == fixed
    assert "229 changed outcome" in page and f"{n} examples" in page


def test_sample_flags_follow_scores_and_margins() -> None:
    results = make_results(n_samples=2)  # example 0: every variant scores like the base
    one_differs = copy.deepcopy(results["samples"][0])
    one_differs["id"] = "one-differs"
    one_differs["scores"]["base"]["type_match"] = 1.0
    results["samples"].append(one_differs)
    s = report_html._samples
    rows = _page_data(report.render_html(results))["tasks"][0]["rows"]
    assert [r[5][3] for r in rows] == [0, s.WRONG_TO_RIGHT | s.IMPROVED | s.CHANGED,
                                       s.RIGHT_TO_WRONG | s.REGRESSED | s.CHANGED]  # fmt: skip
    # a continuous lower-is-better score: worse beyond its 10% margin is a regression
    metas = [{"name": "ppl", "higher_is_better": False, "delta_kind": "ratio", "margin": 0.1}]
    assert s._flags({"ppl": 10.5}, {"ppl": 10.0}, metas, set()) == s.CHANGED
    assert s._flags({"ppl": 11.5}, {"ppl": 10.0}, metas, set()) == s.CHANGED | s.REGRESSED
    assert s._flags({"ppl": 8.0}, {"ppl": 10.0}, metas, set()) == s.CHANGED | s.IMPROVED
    assert s._flags({"ppl": None}, {"ppl": 10.0}, metas, set()) == s.CHANGED


def test_optional_sections_render_with_figures() -> None:
    results = make_run(40, ("base", "legal-r8", "legal-r16", "merged:legal-r16", "legal-r64"))
    page = report.render_html(results)
    for section in ("charts", "judges", "samples"):
        assert f'<section id="{section}">' in page
    assert page.count('<svg class="forest"') == 6 and page.count('<svg class="sweep"') == 2
    judges = page[page.index('<section id="judges">') : page.index('<section id="samples">')]
    assert "weighted κ vs human labels" in judges and '<td class="num">0.610</td>' in judges
    assert '<span class="status passed">reliable</span>' in judges
    assert "human label (rows) × judge score (columns)" in judges  # the confusion matrix
    against = page[page.index("<h3>Against the baseline run</h3>") :]
    assert "previous:legal-r16" in against[: against.index("</table>")]
    sweep = page[page.index("<h3>Sweep: rank") :]
    assert "rank=64" in sweep and "flagged" in sweep
    r64 = next(c for c in results["comparisons"] if c["variant"] == "legal-r64"
               and c["metric"] == "accuracy")  # fmt: skip
    assert f"{r64['delta'] * 100:+.1f} pp" in sweep  # the sweep table shows the comparison
    assert "reports/legal-20261101" in page  # the baseline run, in the manifest
    task = _page_data(page)["tasks"][0]
    assert task["judged"] and len(task["rows"][7][6]) == 5  # per variant, a list of judges
    assert task["rows"][7][6][1][0][2].startswith("judge reply had no score")  # judge error
    assert task["rows"][7][5][1] & report_html._samples.JUDGE_ERROR


def test_optional_sections_absent_cleanly() -> None:
    page = report.render_html(make_results())
    assert 'id="judges"' not in page and "Sweep:" not in page and "Baseline run" not in page
    assert "per-example figures for knowledge-open, prose-ppl" in page  # says what is missing
    assert '<section id="charts">' in page and page.count('<svg class="forest"') == 4


def test_histogram_counts_every_example() -> None:
    results = make_run(50, ("base", "legal-r16"), judged=False, sweep=False, hostile=False)
    view = report_html.build_view(results)
    (hist,) = view["histograms"]
    assert hist["metric"] == "reference perplexity" and hist["variant"] == "legal-r16"
    scored = [s for s in results["samples"] if s["task"] == "legal-summary"
              and s["scores"]["legal-r16"]["reference_perplexity"] is not None]  # fmt: skip
    assert hist["n"] == len(scored) == 49
    total = sum(int(b["title"].rsplit(": ", 1)[1]) for b in hist["bars"])
    assert total == hist["n"]


def test_forest_geometry_matches_the_interval() -> None:
    view = report_html.build_view(make_results())
    panel = next(p for p in view["forest"] if p["task"] == "knowledge-open")
    assert panel["probe"] and view["forest"][0]["probe"]  # probes first
    row = next(r for r in panel["rows"] if r["label"] == "legal-overfit")
    assert row["verdict"] == "regressed"
    assert row["x_lo"] < row["x"] < row["x_hi"] < panel["band"][0] < panel["zero"]
    assert row["title"] == "legal-overfit: -45.0 pp [-55.0, -35.0] (regressed)"


def test_cli_report_rerenders_from_results_json(tmp_path: Path) -> None:
    written = report.write_outputs(make_run(12, ("base", "legal-r16")), tmp_path)
    before = written["report.html"].read_text(encoding="utf-8")
    written["report.html"].unlink()
    proc = subprocess.run([sys.executable, "-m", "evalkit", "report", str(tmp_path)],
                          capture_output=True, text=True, check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert written["report.html"].read_text(encoding="utf-8") == before
    proc = subprocess.run([sys.executable, "-m", "evalkit", "report", str(tmp_path / "nope")],
                          capture_output=True, text=True, check=False)  # fmt: skip
    assert proc.returncode == 2 and "no results.json" in proc.stderr
    assert "Traceback" not in proc.stderr
