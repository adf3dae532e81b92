"""Harness overhead: run the default CPU suite of one framework with a warm reference cache and
print the total wall time, the sum of the framework's own call times, and their ratio.

Run by hand:  python benchmarks/suite_overhead.py [--framework torch] [--mode eager]
The first pass warms the cache (and is reported too); the second is the measurement.
Target (issue: performance): harness time at most 2x the framework's own time.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from harness.cache import Cache  # noqa: E402
from harness.options import RunOptions, load_cases  # noqa: E402
from harness.policy import load as load_policy  # noqa: E402
from harness.runner import Selection, Session, expand  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--framework", default="torch")
    ap.add_argument("--mode", action="append", help="default: eager and jit")
    args = ap.parse_args()
    cases = load_cases(RunOptions())
    sel = Selection(frameworks=[args.framework], modes=args.mode or ["eager", "jit"])
    items = expand(cases, sel, [args.framework])
    print(f"{args.framework}: {len(items)} results, {len(cases)} cases")
    for label in ("first pass (cache may be cold)", "warm cache"):
        s = Session(load_policy("standard"), Cache(), None, None, timing_reps=3)
        t0 = time.perf_counter()
        recs = [s.run(it) for it in items]
        wall = time.perf_counter() - t0
        # The framework's own time: the first call (compilation included) and the timed repetitions.
        fw = sum((r.get("time_first_call_s") or 0) + 3 * (r.get("time_framework_s") or 0) for r in recs)
        ref = sum(r.get("time_reference_s") or 0 for r in recs)
        ver = sum(r.get("time_verdict_s") or 0 for r in recs)
        harness = wall - fw
        print(f"{label}: wall {wall:.1f} s; framework calls {fw:.1f} s; harness {harness:.1f} s "
              f"(reference {ref:.1f} s, verdict {ver:.1f} s); harness / framework = {harness / fw:.2f}", flush=True)


if __name__ == "__main__":
    main()
