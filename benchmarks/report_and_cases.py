"""Speed of what the harness does around the frameworks: loading the case library, rendering a
report of 20000 results, and opening that report in headless Chromium; with `--results`, the same
for the reports of real runs' results files (a default run's: the report users open).

Run by hand:  python benchmarks/report_and_cases.py [--results RESULTS.jsonl ...]
Prints figures against their targets; asserts nothing. (These were timed assertions in the test
suite until a loaded machine made them fail at random: issue 23.)
Targets: the built-in library loads in under 1 s; a report renders in under 60 s, stays under
10 MB (asserted for 20000 results by tests/test_report.py) and opens in Chromium in under 2 s:
from the start of the navigation to the first frame painted after its scripts have run
(`data-ready`), in the page's own clock, the median of three opens.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness import cases as K  # noqa: E402
from harness.report import render  # noqa: E402
from tests.test_report import many_records, write  # noqa: E402

#: Notes in the page's clock when the report's scripts are done and when the next frame is painted.
FIRST_FRAME = """
new MutationObserver(function (ms, obs) {
  if (document.documentElement.getAttribute("data-ready") !== "1") { return; }
  obs.disconnect();
  requestAnimationFrame(function () { setTimeout(function () { window.__frame = performance.now(); }, 0); });
}).observe(document, { attributes: true, subtree: true, attributeFilter: ["data-ready"] });
"""


def line(what: str, seconds: float, target: float) -> None:
    print(f"{what:52s} {seconds:8.3f} s   target < {target:g} s: {'met' if seconds < target else 'NOT MET'}")


def open_s(browser, html: Path, reps: int = 3) -> float:
    """Median seconds from navigation start to the first frame after the report's scripts ran."""
    times = []
    for _ in range(reps):
        page = browser.new_page(viewport={"width": 1440, "height": 1000})
        page.add_init_script(FIRST_FRAME)
        page.goto(html.as_uri())
        page.wait_for_function("window.__frame !== undefined", timeout=120_000)
        times.append(page.evaluate("window.__frame") / 1000)
        page.close()
    return statistics.median(times)


def chromium():
    """(playwright's context manager, the executable) or a reason it is missing."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None, "pip install playwright"
    exe = "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else shutil.which("chromium")
    return (sync_playwright, exe) if exe else (None, "no Chromium; Debian: apt-get install chromium")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--results", nargs="+", default=[], metavar="RESULTS",
                    help="results files of a run (one report of them all), e.g. a default run's")
    args = ap.parse_args()

    K.load()  # warm imports and the file cache once; the timed load is the steady cost
    t0 = time.perf_counter()
    n = len(K.load())
    line(f"case library load ({n} cases)", time.perf_counter() - t0, 1.0)

    with tempfile.TemporaryDirectory() as d:
        reports = [("synthetic", [write(Path(d) / "big.jsonl", many_records(20000))], Path(d) / "big.html")]
        if args.results:
            reports.append(("results files'", args.results, Path(d) / "run.html"))
        for what, src, out in reports:
            t0 = time.perf_counter()
            s = render(src, str(out))
            mb = s["bytes"] / 1e6
            line(f"{what} report of {s['results']} results ({mb:.1f} MB{'' if mb < 10 else ', NOT under 10'})",
                 time.perf_counter() - t0, 60.0)
        sync_playwright, exe = chromium()
        if sync_playwright is None:
            print(f"browser load: skipped ({exe})")
            return
        with sync_playwright() as p:
            b = p.chromium.launch(executable_path=exe, args=["--no-sandbox", "--disable-gpu"])
            for what, _, out in reports:
                line(f"the {what} report opened in Chromium", open_s(b, out), 2.0)
            b.close()


if __name__ == "__main__":
    main()
