"""The report in a real browser (headless Debian Chromium through Playwright): the numbers shown,
the filters, the expanded rows, and a screenshot in reports/. Its load time is measured against
its target by benchmarks/report_and_cases.py (a timed assertion here would fail on a loaded
machine)."""

from __future__ import annotations

import json
import re
import shutil
import time
from collections import Counter
from pathlib import Path

import pytest

from harness.report import render

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--no-first-run"]
SCREENSHOT = Path(__file__).resolve().parent.parent / "reports" / "report-screenshot.png"
XSS = "<script>alert(1)</script>"

try:
    from playwright.sync_api import sync_playwright
except ImportError:  # pragma: no cover - depends on the environment
    sync_playwright = None

pytestmark = [
    pytest.mark.skipif(sync_playwright is None, reason="the playwright package is not installed (pip install playwright)"),
    pytest.mark.skipif(not (Path(CHROMIUM).exists() or shutil.which("chromium")),
                       reason=f"no Chromium at {CHROMIUM} (Debian: apt-get install chromium)"),
]


def rec(case_id, op="softmax", framework="torch", dtype="float32", mode="eager", status="pass", special="match",
        max_ulp=0.5, known=None, check="forward", variant="default", **kw):
    r = {"kind": "result", "case_id": case_id, "family": case_id.split("/")[0], "op": op, "check": check,
         "variant": variant, "framework": framework, "framework_version": "1.0", "device": "cpu", "dtype": dtype,
         "mode": mode, "status": status, "special": None if status == "skip" else special,
         "max_ulp": None if status in ("skip", "error") else max_ulp,
         "excess": kw.pop("excess", max_ulp / 8 if status == "pass" else 2.0 if status == "fail" else None),
         "message": kw.pop("message", ""),
         "known": known, "invalid_input": False, "time_framework_s": 1e-4}
    r.update(kw)
    return r


def records():
    out = []
    known = {"id": "k1", "description": "documented", "link": "", "source": "known"}
    for fw in ("torch", "jax", "tensorflow"):
        for dt in ("float32", "float64"):
            for mode in ("eager", "jit"):
                for op in ("softmax", "log_softmax", "logsumexp"):
                    out.append(rec(f"fam/{op}", op, fw, dt, mode, max_ulp=0.25 + len(fw) / 10))
                out.append(rec("fam/bad", "softmax", fw, dt, mode, status="fail", max_ulp=10.0 * len(fw),
                               message=f"Bad results ({fw})",
                               input={"logits": [1.0, 2.0, 3.0], "labels": None, "axis": -1},
                               output={"out": [0.1, 0.25, 0.65]},
                               reference={"out": {"hi": [0.09003057317038046, 0.24472847105479764, 0.6652409557748218],
                                                  "lo": [0.0, 0.0, 0.0], "rounded": [0.09003057, 0.24472847, 0.66524096]}},
                               repro=f"import {fw}\nprint('repro {fw}')"))
            out.append(rec("fam/ce", "softmax_cross_entropy", fw, dt, status="fail" if fw == "tensorflow" else "pass",
                           max_ulp=3.0, known=known if fw == "tensorflow" else None))
            out.append(rec("fam/ce", "softmax_cross_entropy", fw, dt, "jit", status="skip", message="no jit"))
    out.append(rec("special/posinf", "softmax", "tensorflow", status="fail", special="nan_expected_finite", max_ulp=0.0,
                   input={"logits": ["inf", 0.0, 1.0], "labels": None, "axis": -1}, output={"out": ["nan", 0.0, 0.0]},
                   reference={"out": {"hi": [1.0, 0.0, 0.0], "lo": [0.0, 0.0, 0.0], "rounded": [1.0, 0.0, 0.0]}}))
    out.append(rec(XSS, "softmax", "jax", status="error", special="raised", message=XSS, repro=XSS))
    return out


def outcome(r):
    return ("known" if r.get("known") else r["status"]) if r["status"] in ("fail", "error") else r["status"]


def is_discrepancy(r):
    return r["status"] != "skip" and (r["status"] in ("fail", "error") or r.get("special") not in (None, "match"))


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    d = tmp_path_factory.mktemp("browser")
    recs = records()
    path = d / "results.jsonl"
    lines = [{"kind": "run_start", "schema": 1, "run_id": "b1", "harness_version": "0.1.0", "policy": "standard",
              "started": "2026-01-01T00:00:00+00:00", "git_commit": "abc", "machine": {"hostname": "h"},
              "frameworks": {}}] + recs + [{"kind": "run_end", "run_id": "b1", "complete": True}]
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n", encoding="utf-8")
    out = d / "report.html"
    summary = render([str(path)], str(out))
    return out, recs, summary


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        exe = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
        b = p.chromium.launch(executable_path=exe, args=ARGS)
        yield b
        b.close()


def open_page(browser, out, reveal=True):
    """The report opened; with `reveal`, every section shown as a reader sees it who scrolls to it
    (off screen, a section is not rendered and its innerText is empty: the test below)."""
    page = browser.new_page(viewport={"width": 1440, "height": 1000})
    dialogs, errors = [], []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.on("pageerror", lambda e: errors.append(str(e)))
    t0 = time.perf_counter()
    page.goto(out.as_uri())
    page.wait_for_selector("html[data-ready='1']")
    load_s = time.perf_counter() - t0
    if reveal:
        page.add_style_tag(content="section { content-visibility: visible !important; }")
    return page, load_s, dialogs, errors


def pages(pdf: bytes) -> int:
    return len(re.findall(rb"/Type\s*/Page[^s]", pdf))


def rendered(page, selector):
    return page.evaluate(f"document.querySelector({selector!r}).checkVisibility({{contentVisibilityAuto: true}})")


def test_sections_off_screen_are_rendered_when_scrolled_to(report, browser):
    """Opening a report lays out only what is on screen (content-visibility: auto): laying out the
    130k nodes of a default run's report was half its opening time. A section below renders when
    the reader scrolls to it, with its text, and printing renders every one."""
    out, recs, summary = report
    page, _, _, errors = open_page(browser, out, reveal=False)
    sections = page.eval_on_selector_all("main > section", "ss => ss.map(s => s.id)")
    assert sections[0] == "overview" and "known" in sections and len(sections) >= 8
    assert rendered(page, "#kpi-total") and page.inner_text("#kpi-total") == str(len(recs))
    assert not rendered(page, "#known h2") and page.inner_text("#known") == ""
    page.locator("#known").scroll_into_view_if_needed()
    page.evaluate("new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
    assert rendered(page, "#known h2") and "Known discrepancies" in page.inner_text("#known")
    assert not rendered(page, "#overview h1")  # scrolled away: skipped again
    assert page.evaluate("getComputedStyle(document.querySelector('#known')).contentVisibility") == "auto"
    # A printout holds every section: as many pages as that of the page without the skipping.
    plain, _, _, _ = open_page(browser, out)
    assert pages(page.pdf()) == pages(plain.pdf()) > len(sections) / 2 and errors == []
    page.close()
    plain.close()


def test_summary_numbers_filters_details_and_load_time(report, browser):
    out, recs, summary = report
    page, load_s, dialogs, errors = open_page(browser, out)
    print(f"report loaded and rendered in {load_s:.2f} s")  # the target is benchmarks/report_and_cases.py's

    c = Counter(outcome(r) for r in recs)
    shown = {k: int(page.inner_text(f"#kpi-{k}")) for k in ("total", "pass", "fail", "error", "known", "skip", "disc")}
    assert shown == {"total": len(recs), "pass": c["pass"], "fail": c["fail"], "error": c["error"],
                     "known": c["known"], "skip": c["skip"], "disc": sum(map(is_discrepancy, recs))}
    assert shown["total"] == summary["results"]
    # The matrix cells add up to the records, and a cell's visible text is its own count.
    sums = page.evaluate("""() => { const s = {pass: 0, fail: 0, error: 0, known: 0, skip: 0};
        document.querySelectorAll('#matrix td.cell[data-filter]').forEach(td => {
          for (const k in s) s[k] += +td.dataset[k]; }); return s; }""")
    assert sums == {k: c[k] for k in ("pass", "fail", "error", "known", "skip")}
    torch_sm = [r for r in recs if (r["framework"], r["dtype"], r["mode"], r["op"], r["check"]) ==
                ("torch", "float64", "jit", "softmax", "forward")]
    cells = page.locator("#matrix td.cell[data-filter]")
    filters = cells.evaluate_all("tds => tds.map(td => JSON.parse(td.dataset.filter))")
    want = {"framework": "torch", "device": "cpu", "dtype": "float64", "mode": "jit", "op": "softmax", "check": "forward"}
    assert filters.count(want) == 1
    cell = cells.nth(filters.index(want))
    n_pass = sum(r["status"] == "pass" for r in torch_sm)
    n_fail = sum(r["status"] == "fail" for r in torch_sm)
    assert cell.inner_text().split()[0] == f"{n_pass}/{len(torch_sm)}"
    assert f"{n_fail} fail" in cell.inner_text()
    # The cell's headline is the passing results' utilisation; the worst ULP one click away.
    util = max(r["excess"] for r in torch_sm if r["status"] == "pass")
    worst = max(r["max_ulp"] for r in torch_sm)
    assert f"{100 * util:.3g}% of budget" in cell.inner_text() and "ulp" not in cell.inner_text()
    page.click("#matrix-ulp")
    assert f"{worst:.3g} ulp" in cell.inner_text() and "% of budget" not in cell.inner_text()
    page.click("#matrix-ulp")
    assert "% of budget" in cell.inner_text()
    # Histograms: utilisation on [0, 1] with the failures in an overflow bin; ULP on a fixed
    # readable axis with its own overflow bin; one panel per dtype each.
    n_dt = len({r["dtype"] for r in recs})
    assert page.locator("#util-plots svg").count() == n_dt and page.locator("#hist-plots svg").count() == n_dt
    assert "> 1 fails" in page.inner_text("#util-plots") and "> 1e4" in page.inner_text("#hist-plots")

    # All discrepancy rows, then only torch's.
    rows = page.locator("#disc-body tr.main")
    assert rows.count() == sum(map(is_discrepancy, recs))
    page.select_option("#f-framework", "torch")
    assert rows.count() == sum(1 for r in recs if is_discrepancy(r) and r["framework"] == "torch") == 4
    page.select_option("#f-dtype", "float64")
    assert rows.count() == 2
    assert page.get_attribute("#disc-count", "data-matching") == "2"
    page.click("#f-reset")
    assert rows.count() == sum(map(is_discrepancy, recs))

    # Sorting by max ulp (descending first) puts the largest error on top.
    page.click("#disc-table th[data-key='max_ulp']")
    top = max(r["max_ulp"] for r in recs if is_discrepancy(r) and r["max_ulp"] is not None)
    assert float(rows.first.locator("td").nth(10).get_attribute("title")) == top

    # Expanding a row shows the message, the output against the reference and the repro.
    page.select_option("#f-framework", "jax")
    page.fill("#f-text", "fam/bad")
    page.locator("#disc-body tr.main summary").first.click()
    detail = page.locator("#disc-body tr.detail").first
    assert "Bad results (jax)" in detail.inner_text()
    assert "0.09003057317038046" in detail.inner_text() and "repro jax" in detail.inner_text()

    # A hostile case id and message are shown as text and never run.
    page.click("#f-reset")
    page.fill("#f-text", "script")
    assert rows.count() == 1
    assert rows.first.locator("td.case").inner_text() == XSS
    rows.first.locator("summary").click()
    assert XSS in page.locator("#disc-body tr.detail").first.inner_text()
    assert dialogs == [] and errors == []

    # A matrix cell filters the table to itself.
    page.click("#f-reset")
    cell.click()
    assert page.input_value("#f-framework") == "torch" and page.input_value("#f-dtype") == "float64"
    assert rows.count() == n_fail

    # The findings: one row per known id, or per special class (or "over budget"), op and case;
    # fam/bad's twelve failures (three frameworks, two dtypes, two modes) are one finding, new,
    # listed first, and expanding it shows its results and the repro of the worst (tensorflow's,
    # 10 ulp x 10 letters).
    want_findings = Counter(("known/" + r["known"]["id"]) if r.get("known") else
                            f"{outcome(r)}/{'over budget' if r['special'] == 'match' else r['special']}/"
                            f"{r['op']}/{r['case_id']}" for r in recs if is_discrepancy(r))
    frows = page.locator("#findings-table tr.finding")
    keys = frows.evaluate_all("trs => trs.map(tr => tr.dataset.key)")
    assert Counter(keys) == Counter(set(want_findings)) and len(keys) == len(want_findings)
    counts = frows.evaluate_all("trs => trs.map(tr => +tr.children[1].textContent)")
    assert dict(zip(keys, counts)) == dict(want_findings)
    bad = frows.nth(keys.index("fail/over budget/softmax/fam/bad"))
    assert keys.index("fail/over budget/softmax/fam/bad") < keys.index("known/k1")  # new before known
    assert bad.locator(":scope > td").nth(4).inner_text() == "jax, tensorflow, torch"
    bad.locator("summary").click()
    text = bad.locator("details").inner_text()
    assert "repro tensorflow" in text and bad.locator("table.finding-results tr").count() == 1 + 12
    assert "repro of tensorflow-cpu-float32-eager-softmax-forward-fam/bad" in text
    xss = frows.nth(next(i for i, k in enumerate(keys) if k.startswith("error/raised")))
    xss.locator("summary").click()
    assert XSS in xss.inner_text() and dialogs == [] and errors == []

    page.click("#f-reset")
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(SCREENSHOT), full_page=True)
    assert SCREENSHOT.stat().st_size > 10_000
    page.close()


# ---------------------------------------------------------------------------------------------
# The Invariance section (harness/report/invariance.py)

@pytest.fixture(scope="module")
def inv_report(tmp_path_factory):
    from tests.test_report import invariance_records, write

    d = tmp_path_factory.mktemp("invariance")
    recs = invariance_records()
    # tensorflow's strict batch_invariance result with its (small) output: the worst variant, row 1
    # alone, answers row 1; rows 0 and 2 hold NaN in the record and read "–" in the details.
    tf_batch = next(r for r in recs if (r["framework"], r["check"]) == ("tensorflow", "batch_invariance"))
    tf_batch["output"] = {"out": [["nan", "nan"], [0.25, 0.75], ["nan", "nan"]]}
    tf_batch["reference"] = {"out": {"hi": [[0.5, 0.5], [0.25, 0.7500001], [0.5, 0.5]], "lo": [[0, 0]] * 3,
                                     "rounded": [[0.5, 0.5], [0.25, 0.7500001], [0.5, 0.5]]}}
    recs.append(rec("inv/other", "softmax", "torch", status="fail", max_ulp=9.0, message="Bad results (1 of 4)"))
    out = d / "inv.html"
    summary = render([write(d / "r.jsonl", recs)], str(out))
    return out, recs, summary


def test_invariance_matrix_lists_variants_filters_and_details(inv_report, browser):
    out, recs, summary = inv_report
    page, _, dialogs, errors = open_page(browser, out)
    assert page.get_attribute("html", "data-inv-ready") == "1"
    assert page.is_visible("#invariance") and page.is_hidden("#inv-panel")
    cells = page.locator("#inv-matrix td.cell[data-key]")
    keys = cells.evaluate_all("tds => tds.map(td => JSON.parse(td.dataset.key))")
    assert len(keys) == len({(r["framework"], r["dtype"], r["check"], r["mode"]) for r in recs
                             if r["check"] != "forward"}) == 10

    def cell(*key):
        return cells.nth(keys.index(list(key)))

    # A cell says how its results did and whether every variant equals its base.
    batch = cell("torch", "cpu", "float32", "batch_invariance", "eager")
    assert batch.inner_text().split() == ["2/2", "1", "differ,", "max", "4", "ULPs"]
    assert cell("torch", "cpu", "float32", "determinism", "eager").inner_text().split() == \
        ["0/1", "1", "fail", "bitwise", "equal"]

    # Clicking it lists its result that differs, with the variants that do (not all 69).
    batch.click()
    assert page.is_visible("#inv-panel")
    assert page.inner_text("#inv-panel-title") == "torch · cpu · float32 · batch_invariance (eager)"
    assert page.inner_text("#inv-panel-count") == \
        "2 results; 1 differs or fails (listed); 1 bitwise equal and passing (not listed)"
    assert page.is_hidden("#inv-filter")  # nothing of it is in the discrepancy table
    entries = page.locator("#inv-panel-list .inv-entry")
    assert entries.count() == 1
    e = entries.first
    assert e.get_attribute("data-id") == "torch-cpu-float32-eager-softmax-batch_invariance-inv/rows"
    summary_rows = e.locator("table.inv-summary tr").evaluate_all(
        "trs => trs.map(tr => [tr.children[0].textContent, tr.children[1].textContent])")
    assert dict(summary_rows) == {"rule": "budget", "base": "row 0 alone", "variants": "69", "differing": "12",
                                  "bitwise differences": "444", "max ULP between": "4",
                                  "worst": "row 1 in 1024 at 0, random"}
    vrows = e.locator("table.inv-variants tr")
    assert vrows.count() == 1 + 12
    assert vrows.nth(1).locator("td").evaluate_all("tds => tds.map(td => td.textContent)") == \
        ["row 1 in 1024 at 0, random", "row 1 alone", "pass", "match", "0.5", "0.25", "37", "4"]
    prow = e.locator("table.inv-pair tr")
    assert prow.count() == 3
    assert prow.nth(2).locator("td").evaluate_all("tds => tds.map(td => td.textContent)") == \
        ["out", "[1, 3]", "0.125", "0.12500005960464478", "4"]
    assert page.locator("#inv-matrix td.cell.sel").count() == 1

    # A cell with a failure: its variants folded into one row, and a button to the table.
    det = cell("torch", "cpu", "float32", "determinism", "eager")
    det.click()
    assert "row 1 in 1024" not in page.inner_text("#inv-panel-list")
    assert page.locator("#inv-panel-list table.inv-variants tr").nth(1).locator("td").first.inner_text() == \
        "call 1 and 6 equal variants"
    assert page.inner_text("#inv-filter") == "Show the 1 discrepancy in the table"
    page.click("#inv-filter")
    assert (page.input_value("#f-framework"), page.input_value("#f-dtype"), page.input_value("#f-check"),
            page.input_value("#f-mode"), page.input_value("#f-op")) == ("torch", "float32", "determinism", "eager", "")
    rows = page.locator("#disc-body tr.main")
    assert rows.count() == 1
    # Its expanded row has the invariance panel: summary, the variants, the thread settings.
    rows.first.locator("summary").click()
    page.wait_for_selector("#disc-body tr.detail")  # the row opens on the toggle event, a task later
    inv = page.locator("#disc-body tr.detail .inv-detail")
    assert inv.count() == 1
    text = inv.inner_text()
    assert "max ULP between" in text and "call 1 and 6 equal variants" in text and "torch.get_num_threads" in text
    # right after the message
    assert page.locator("#disc-body tr.detail .dgrid > .panel").nth(1).evaluate("p => p.classList.contains('inv-detail')")

    # The batch_invariance output: rows the worst variant did not answer read "–", with no verdict.
    page.click("#f-reset")
    cell("tensorflow", "cpu", "float32", "batch_invariance", "eager").click()
    page.click("#inv-filter")
    assert rows.count() == 1
    rows.first.locator("summary").click()
    page.wait_for_selector("#disc-body tr.detail")
    detail = page.locator("#disc-body tr.detail")
    assert detail.locator(".inv-detail").count() == 1
    got = detail.locator("table.arr").filter(has_text="exact rounded").locator("tr").evaluate_all(
        "trs => trs.slice(1).map(tr => [tr.children[0].textContent, tr.children[1].textContent, tr.children[5].textContent])")
    assert got == [["[0, 0]", "–", ""], ["[0, 1]", "–", ""], ["[1, 0]", "0.25", "= rounded"], ["[1, 1]", "0.75", "≠"],
                   ["[2, 0]", "–", ""], ["[2, 1]", "–", ""]]
    # A value-check row of the table gets no invariance panel.
    page.click("#f-reset")
    page.select_option("#f-check", "forward")
    assert rows.count() == 1
    rows.first.locator("summary").click()
    page.wait_for_selector("#disc-body tr.detail")
    assert "Bad results (1 of 4)" in page.locator("#disc-body tr.detail").inner_text()
    assert page.locator("#disc-body tr.detail .inv-detail").count() == 0
    assert dialogs == [] and errors == []
    page.close()


def test_invariance_lists_left_out_are_said_so(inv_report, browser, tmp_path):
    """Past its budget the section's lists give way (the matrix stays): the cell and the expanded
    row say the list was left out."""
    from harness.report import invariance as INV
    from tests.test_report import invariance_records, write

    keep = INV.INV_BUDGET
    INV.INV_BUDGET = 10  # not one entry fits
    try:
        out = tmp_path / "small.html"
        s = render([write(tmp_path / "r.jsonl", invariance_records())], str(out))
    finally:
        INV.INV_BUDGET = keep
    assert s["invariance_omitted"] == 7
    page, _, dialogs, errors = open_page(browser, out)
    cells = page.locator("#inv-matrix td.cell[data-key]")
    keys = cells.evaluate_all("tds => tds.map(td => JSON.parse(td.dataset.key))")
    cells.nth(keys.index(["torch", "cpu", "float32", "determinism", "eager"])).click()
    assert "the lists of 7 results of the report were left out" in page.inner_text("#inv-panel-count")
    assert page.locator("#inv-panel-list .inv-entry").count() == 0
    page.click("#inv-filter")
    page.locator("#disc-body tr.main summary").first.click()
    page.wait_for_selector("#disc-body tr.detail")
    assert "left out to keep the page small" in page.locator("#disc-body tr.detail .inv-detail").inner_text()
    assert dialogs == [] and errors == []
    page.close()
