"""Sharing compiled programs changes no verdict (issue 19): the quick suite run twice through the
CLI, once as always (a program compiled or traced once serves every case it fits) and once with
HARNESS_SHARE_PROGRAMS=0 (every call compiles its own, as a fresh process running its snippet
would), then the two results files compared record by record, key by key, apart from the fields
that two runs of the same items may differ in (records.INCIDENTAL_FIELDS: timings, caches hit,
program_new, which run).

Run by hand:  python benchmarks/sharing.py [--framework torch,jax] [--jobs 2] [--keep DIR]
              [-- more CLI options, e.g. --dtype float32]
Prints both wall times, how many records were compared and every record that differs (its test
id and the keys); exit 1 when any differs or either run failed to write its results, 0 otherwise.
The unshared run is slow (every compiled call compiles): the quick suite's compiled items on
torch take several times their shared time.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness import records  # noqa: E402
from harness.adapters.base import SHARE_ENV  # noqa: E402

IGNORED = records.INCIDENTAL_FIELDS


def run(share: bool, out: Path, extra: list[str], env: dict[str, str]) -> float:
    env = dict(env, **{SHARE_ENV: "1" if share else "0"})
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "harness", "run", "--suite", "quick", "--results", str(out), "-q", *extra],
                   cwd=ROOT, env=env, check=False)
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--framework", help="comma-separated frameworks (default: the CLI's, every installed one)")
    ap.add_argument("--jobs", default="2")
    ap.add_argument("--keep", help="write the two results files here (default: a temporary directory)")
    args, extra = ap.parse_known_args()
    extra = [a for a in extra if a != "--"] + ["--jobs", args.jobs]
    if args.framework:
        extra += ["--framework", args.framework]
    work = Path(args.keep or tempfile.mkdtemp(prefix="sharing-"))
    work.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3"))
    files = {True: work / "shared.jsonl", False: work / "unshared.jsonl"}
    for share, path in files.items():
        print(f"{'shared' if share else 'unshared'}: {run(share, path, extra, env):.0f} s -> {path}", flush=True)
    loaded = {share: {r["test_id"]: r for r in records.read([p]).results} for share, p in files.items()
              if p.exists()}
    if len(loaded) < 2:
        print("a run wrote no results file: nothing compared")
        return 1
    a, b = loaded[True], loaded[False]
    if set(a) != set(b):
        print(f"the runs hold other items: {len(set(a) - set(b))} only shared, {len(set(b) - set(a))} only unshared")
    differ = {}
    for tid in sorted(set(a) & set(b)):
        keys = sorted(k for k in (set(a[tid]) | set(b[tid])) - IGNORED
                      if json.dumps(records.jsonable(a[tid].get(k)), sort_keys=True)
                      != json.dumps(records.jsonable(b[tid].get(k)), sort_keys=True))
        if keys:
            differ[tid] = keys
    print(f"{len(set(a) & set(b))} records compared, {len(differ)} differ")
    for tid, keys in differ.items():
        print(f"  {tid}: {', '.join(keys)}")
    return 1 if differ or set(a) != set(b) else 0


if __name__ == "__main__":
    raise SystemExit(main())
