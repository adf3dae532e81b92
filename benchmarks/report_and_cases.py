"""Speed of what the harness does around the frameworks: loading the case library, rendering a
report of 20000 results, and opening that report in headless Chromium.

Run by hand:  python benchmarks/report_and_cases.py
Prints figures against their targets; asserts nothing. (These were timed assertions in the test
suite until a loaded machine made them fail at random: issue 23.)
Targets: the built-in library loads in under 1 s; a report of 20000 results renders in under
60 s, stays under 10 MB (that one is asserted by tests/test_report.py) and opens in Chromium in
under 2 s.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness import cases as K  # noqa: E402
from harness.report import render  # noqa: E402
from tests.test_report import many_records, write  # noqa: E402


def line(what: str, seconds: float, target: float) -> None:
    print(f"{what:52s} {seconds:8.3f} s   target < {target:g} s: {'met' if seconds < target else 'NOT MET'}")


def main() -> None:
    K.load()  # warm imports and the file cache once; the timed load is the steady cost
    t0 = time.perf_counter()
    n = len(K.load())
    line(f"case library load ({n} cases)", time.perf_counter() - t0, 1.0)

    with tempfile.TemporaryDirectory() as d:
        path = write(Path(d) / "big.jsonl", many_records(20000))
        out = Path(d) / "big.html"
        t0 = time.perf_counter()
        s = render([path], str(out))
        line(f"report of {s['results']} results ({s['bytes'] / 1e6:.1f} MB)", time.perf_counter() - t0, 60.0)
        try:
            from playwright.sync_api import sync_playwright
        except ImportError:
            print("browser load: skipped (pip install playwright)")
            return
        exe = "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else shutil.which("chromium")
        if not exe:
            print("browser load: skipped (no Chromium; Debian: apt-get install chromium)")
            return
        with sync_playwright() as p:
            b = p.chromium.launch(executable_path=exe, args=["--no-sandbox", "--disable-gpu"])
            page = b.new_page(viewport={"width": 1440, "height": 1000})
            t0 = time.perf_counter()
            page.goto(out.as_uri())
            page.wait_for_selector("html[data-ready='1']")
            line("the same report opened in Chromium", time.perf_counter() - t0, 2.0)
            b.close()


if __name__ == "__main__":
    main()
