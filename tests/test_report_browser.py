"""report.html in a real browser: headless Chromium (the Debian package, /usr/bin/chromium;
`make browser` installs it) driven by Playwright for Python. Playwright never downloads a
browser here.

The pages are rendered from generated runs (tests/fixtures/report_data.py), with a planted
corpus of hostile outputs. Screenshots go to the test's tmp dir and to reports/screenshots/
(gitignored) for review.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import evalkit.outputs as report
from tests.fixtures.report_data import HOSTILE, make_run

CHROMIUM = "/usr/bin/chromium"
ARGS = [  # without the background-networking flags Chromium tries the (closed) network
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SHOTS = Path(__file__).resolve().parents[1] / "reports" / "screenshots"
VARIANTS = ("base", "legal-r8", "legal-r16", "merged:legal-r16", "legal-r64")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is not installed: run `make browser`")
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


class Page:
    """A page opened from disk, recording what a report must never do."""

    def __init__(self, browser: Any, path: Path, timeout_ms: int = 20_000) -> None:
        self.url = path.resolve().as_uri()
        self.page = browser.new_page(viewport={"width": 1360, "height": 900})
        self.page.set_default_timeout(timeout_ms)
        self.console: list[str] = []
        self.requests: list[str] = []
        self.dialogs: list[str] = []
        self.page.on("console", lambda m: self.console.append(f"{m.type}: {m.text}"))
        self.page.on("pageerror", lambda e: self.console.append(f"pageerror: {e}"))
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        self.page.goto(self.url)
        self.page.wait_for_selector("body[data-ready='1']")

    def table(self, task: str) -> Any:
        return self.page.locator(".task-samples").filter(has=self.page.locator("h3", has_text=task))

    def shown(self, task: str) -> int:
        return int(self.table(task).get_attribute("data-shown"))

    def set(self, task: str, cls: str, value: str) -> None:
        self.table(task).locator(f"select.{cls}").select_option(value)

    def search(self, task: str, text: str) -> None:
        before = self.table(task).locator(".f-count").text_content()
        self.table(task).locator(".f-search").fill(text)
        # the search is debounced: wait until the count line changes (or already matched)
        self.page.wait_for_function(
            "([el, before]) => el.textContent !== before",
            arg=[self.table(task).locator(".f-count").element_handle(), before],
            timeout=5_000,
        ) if text else None

    def shoot(self, tmp_path: Path, name: str) -> None:
        self.page.screenshot(path=str(tmp_path / name), full_page=True)
        SHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(tmp_path / name, SHOTS / name)

    def assert_quiet(self) -> None:
        """No console message, no script error, no request beyond the file, no dialog."""
        assert self.console == []
        assert set(self.requests) == {self.url}
        assert self.dialogs == []


def _write(tmp_path: Path, results: dict[str, Any]) -> Path:
    return report.write_outputs(results, tmp_path / "run")["report.html"]


def _expected(results: dict[str, Any], task: str, base: str = "base") -> dict[str, int]:
    """Counts the page's filters must show, computed here from the per-example scores."""
    rows = [s for s in results["samples"] if s["task"] == task]

    def any_v(pred: Any) -> int:  # noqa: E306
        return sum(any(pred(s, v) for v in s["scores"] if v != base) for s in rows)

    flips = {
        "r2w": lambda s, v: any(s["scores"][base][m] == 1.0 and s["scores"][v][m] == 0.0
                                for m in s["scores"][v] if m != "reference_perplexity"),
        "w2r": lambda s, v: any(s["scores"][base][m] == 0.0 and s["scores"][v][m] == 1.0
                                for m in s["scores"][v] if m != "reference_perplexity"),
    }  # fmt: skip
    out = {k: any_v(f) for k, f in flips.items()}
    out["judge"] = sum(any(j["error"] for js in (s.get("judgments") or {}).values() for j in js)
                       for s in rows)  # fmt: skip
    return out


def test_report_loads_filters_sorts_and_expands(browser: Any, tmp_path: Path) -> None:
    results = make_run(60, VARIANTS, n_probe=80)
    p = Page(browser, _write(tmp_path, results))
    page = p.page
    for section in ("verdict", "matrix", "charts", "judges", "samples", "manifest"):
        assert page.locator(f"section#{section}").count() == 1, section
    assert page.locator("#charts svg.forest").count() == 6  # 4 golden metrics + 2 probes
    assert page.locator("#charts svg.sweep").count() == 2  # gain vs each probe
    assert page.locator("#charts figure.hist").count() == 4  # reference ppl, 4 variants
    assert "weighted κ vs human labels" in page.locator("#judges").text_content()

    legal, know = "legal-summary", "knowledge-open"
    assert p.shown(legal) == 60 and p.shown(know) == 80
    assert p.table(legal).locator("tbody tr.row").count() == 25  # one page at a time
    p.table(legal).locator(".f-next").click()
    assert "26–50 of 60" in p.table(legal).locator(".f-count").text_content()

    exp = _expected(results, know)
    assert 0 < exp["r2w"] < 80 and 0 < exp["w2r"] < 80
    for show in ("r2w", "w2r"):
        p.set(know, "f-show", show)
        assert p.shown(know) == exp[show], show
    # one variant only: legal-r64 forgets far more than legal-r8
    p.set(know, "f-show", "r2w")
    p.set(know, "f-variant", str(VARIANTS.index("legal-r64")))
    r64 = p.shown(know)
    p.set(know, "f-variant", str(VARIANTS.index("legal-r8")))
    assert p.shown(know) < r64 <= exp["r2w"]
    p.set(know, "f-show", "regressed")
    p.set(know, "f-variant", "-1")
    assert p.shown(know) == exp["r2w"]  # for 0/1 scores a regression is a right-to-wrong flip

    p.set(legal, "f-show", "judge")
    assert p.shown(legal) == _expected(results, legal)["judge"] == 2
    assert p.table(legal).locator("td", has_text="judge error").count() == 2 * len(VARIANTS)
    p.set(legal, "f-show", "all")
    p.search(legal, "clause-00042")
    assert p.shown(legal) == 1
    p.search(legal, "no such text anywhere")
    assert p.shown(legal) == 0
    p.search(legal, "")
    page.wait_for_function("() => document.querySelector('.task-samples').dataset.shown === '60'")

    # sort legal-r64's per-example reference perplexity, both ways; missing scores last
    p.set(legal, "f-metric", "2")
    ppl = [s["scores"]["legal-r64"]["reference_perplexity"] for s in results["samples"]
           if s["task"] == legal]  # fmt: skip
    col = 3 + VARIANTS.index("legal-r64")
    header = p.table(legal).locator("thead th").nth(col)
    cell = p.table(legal).locator("tbody tr.row").first.locator("td").nth(col).locator(".v")
    header.click()
    assert cell.text_content() == f"{min(x for x in ppl if x is not None):.2f}"
    header.click()
    assert cell.text_content() == f"{max(x for x in ppl if x is not None):.2f}"
    assert "▼" in header.text_content()

    # a row opens to the outputs side by side, with word differences against the base
    p.table(legal).locator("tbody tr.row").first.click()
    detail = p.table(legal).locator("tr.detail")
    assert detail.locator(".output").count() == len(VARIANTS)
    assert detail.locator("pre.out ins").count() > 0 and detail.locator("pre.out del").count() > 0
    assert detail.locator(".judge").count() == len(VARIANTS)
    p.shoot(tmp_path, "report-filters.png")
    p.assert_quiet()
    page.close()


def test_hostile_text_stays_inert(browser: Any, tmp_path: Path) -> None:
    results = make_run(30, VARIANTS[:3], n_probe=10)
    p = Page(browser, _write(tmp_path, results))
    page = p.page
    legal = "legal-summary"
    p.search(legal, "__pwned")
    hostile_rows = p.shown(legal)
    assert hostile_rows >= 4
    rows = p.table(legal).locator("tbody tr.row")
    for i in range(rows.count()):  # open every row that carries a payload: rendered text
        rows.nth(i).click()
    text = page.evaluate("() => document.body.textContent")
    for s in HOSTILE:
        assert s in text, s  # every payload is on the page as text, NUL and ANSI included
    assert "<script>window.__pwned=6</script>" in page.locator("#verdict").text_content()
    assert page.evaluate("() => window.__pwned") is None  # no planted script ran
    assert (
        page.evaluate(
            """() => [...document.querySelectorAll('*')].filter(e =>
             [...e.attributes].some(a => a.name.startsWith('on'))).length"""
        )
        == 0
    )
    for tag in ("img", "iframe", "link", "object", "embed", "base", "form", "style ~ style"):
        assert page.locator(tag).count() == 0, tag
    assert page.locator("script").count() == 2  # the page data and the page's own script
    hrefs = page.evaluate(
        "() => [...document.querySelectorAll('[href]')].map(a => a.getAttribute('href'))"
    )
    assert hrefs and all(h.startswith("#") for h in hrefs)
    assert page.evaluate("() => getComputedStyle(document.body).display") == "block"
    p.shoot(tmp_path, "report-hostile.png")
    p.assert_quiet()

    # the policy is enforced, not decorative: an injected inline script is refused
    page.evaluate(
        "() => { const s = document.createElement('script');"
        " s.textContent = 'window.__csp = 1'; document.body.appendChild(s); }"
    )
    assert page.evaluate("() => window.__csp") is None
    assert any("Content Security Policy" in m for m in p.console)
    page.close()


def test_large_run_opens_and_filters_in_budget(browser: Any, tmp_path: Path) -> None:
    """10,000 examples x 4 variants: a behavioural bound (60 s), not a benchmark."""
    results = make_run(10_000, VARIANTS[:2] + VARIANTS[3:], n_probe=200, judged=True)
    path = tmp_path / "report.html"  # the page alone: results.json is not what is under test
    path.write_text(report.render_html(results), encoding="utf-8")
    size = path.stat().st_size
    assert size < 25_000_000, size
    start = time.monotonic()
    p = Page(browser, path, timeout_ms=60_000)
    legal = "legal-summary"
    assert p.shown(legal) == 10_000
    assert p.table(legal).locator("tbody tr.row").count() == 25
    p.set(legal, "f-show", "judge")
    assert p.shown(legal) == _expected(results, legal)["judge"] == 200
    p.set(legal, "f-show", "all")
    p.search(legal, "clause-09999")
    assert p.shown(legal) == 1
    p.search(legal, "")
    page = p.page
    page.wait_for_function(
        "() => document.querySelector('.task-samples').dataset.shown === '10000'"
    )
    p.table(legal).locator("thead th").nth(4).click()  # sort a 10,000-row column
    p.table(legal).locator("tbody tr.row").first.click()
    assert p.table(legal).locator("tr.detail .output").count() == 4
    elapsed = time.monotonic() - start
    assert elapsed < 60, elapsed
    p.assert_quiet()
    page.close()


def _wide_run() -> dict[str, Any]:
    """A run whose content is wider than any card: a flagged variant with many probes of
    long unbroken names, and a long unbroken gate name and warning."""
    results = make_run(20, VARIANTS, n_probe=10, judged=True)
    long = "knowledge-probe-" + "x" * 90
    flagged = VARIANTS[-1]
    results["forgetting"][flagged] = {
        "flagged": True,
        "probes": [
            {"task": f"{long}-{i}", "metric": "accuracy_" + "y" * 40, "delta": -0.2,
             "ci_low": -0.31234, "ci_high": -0.10987, "margin": 0.05}
            for i in range(6)
        ],
    }  # fmt: skip
    for v in VARIANTS[1:-1]:
        results["forgetting"][v] = {"flagged": False, "probes": []}
    results["gates"][0]["name"] = "gate-" + "z" * 160
    results.setdefault("warnings", []).append("w" * 300)
    return results


@pytest.mark.parametrize("width", [1400, 390])
def test_layout_never_scrolls_the_page_sideways(browser: Any, tmp_path: Path, width: int) -> None:
    path = _write(tmp_path, _wide_run())
    page = browser.new_page(viewport={"width": width, "height": 900})
    page.goto(path.resolve().as_uri())
    page.wait_for_selector("body[data-ready='1']")
    page.screenshot(path=str(tmp_path / f"layout-{width}.png"), full_page=True)
    SHOTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(tmp_path / f"layout-{width}.png", SHOTS / f"layout-{width}.png")
    scroll, client = page.evaluate(
        "[document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    assert scroll <= client, f"the page scrolls sideways at {width}px: {scroll} > {client}"
    # every card holds its content: a wide table scrolls inside it
    overflow = page.evaluate(
        """() => [...document.querySelectorAll('.card, .judge-card')].flatMap(card => {
             const box = card.getBoundingClientRect();
             return [...card.children].filter(ch => {
               const r = ch.getBoundingClientRect();
               return r.right > box.right + 1 || r.left < box.left - 1;
             }).map(ch => card.className + ' > ' + ch.tagName);
           })"""
    )
    assert overflow == []
    # unflagged cards size to their content, not to the flagged card's height
    heights = page.evaluate(
        "[...document.querySelectorAll('#verdict .card')].map(c => "
        "[c.classList.contains('flagged'), c.getBoundingClientRect().height])"
    )
    flagged = [h for f, h in heights if f]
    clear = [h for f, h in heights if not f]
    assert flagged and clear and max(clear) < min(flagged) / 2
    page.close()
