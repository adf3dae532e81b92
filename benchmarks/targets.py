"""The three time targets of a grown suite (issue: at three times the size), measured as a new user
meets them, on a fresh clone of this repository's HEAD, and printed against their targets:

  test     the README's test command (`python -m pytest -n 2 --harness-suite quick`), harness
           caches empty (pip install excluded: this interpreter's environment runs the clone)  < 10 min
  cold     the README's run (`python -m harness run`), harness caches empty                      < 15 min
  warm     the same run again, caches warm from `cold`                                            <  5 min
  ci       `bash .ci/run` (a fresh virtual environment and its pip install included)             < 20 min

Run by hand:  python benchmarks/targets.py [--only test,cold,warm,ci] [--keep DIR]
Prints figures, one line per target as it finishes and a table at the end; asserts nothing. Run
it on an idle machine: the targets are wall-clock times of the whole machine (2 cores here).
Exit status 0 whatever the figures (a benchmark, not a test).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGETS = {"test": 600.0, "cold": 900.0, "warm": 300.0, "ci": 1200.0}
WHAT = {"test": "README test command, caches empty", "cold": "default CLI run, caches empty",
        "warm": "default CLI run, caches warm", "ci": ".ci/run (install included)"}


def clone(into: Path) -> Path:
    """A fresh clone of HEAD (committed files only, as CI sees them)."""
    subprocess.run(["git", "clone", "-q", "--no-hardlinks", str(ROOT), str(into)], check=True)
    return into


def timed(cmd: list[str], cwd: Path, env: dict[str, str], log: Path) -> tuple[float, int]:
    t0 = time.perf_counter()
    with open(log, "wb") as out:
        rc = subprocess.run(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT).returncode
    return time.perf_counter() - t0, rc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="test,cold,warm,ci", help="comma-separated: test, cold, warm, ci")
    ap.add_argument("--keep", help="work in this directory and keep it (default: a temporary one, removed)")
    args = ap.parse_args()
    which = [w.strip() for w in args.only.split(",") if w.strip()]
    unknown = sorted(set(which) - set(TARGETS))
    if unknown:
        ap.error(f"unknown target(s) {', '.join(unknown)}; valid: {', '.join(TARGETS)}")
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="harness-targets-"))
    work.mkdir(parents=True, exist_ok=True)
    base = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONHASHSEED": "0"}
    rows = []
    try:
        for w in which:
            repo = clone(work / f"clone-{w}") if not (w == "warm" and (work / "clone-cold").exists()) \
                else work / "clone-cold"
            cache = work / ("cache-cold" if w in ("cold", "warm") else f"cache-{w}")
            if w != "warm":
                shutil.rmtree(cache, ignore_errors=True)
            cache.mkdir(parents=True, exist_ok=True)
            env = {**base, "HARNESS_CACHE_DIR": str(cache), "PYTHONPATH": str(repo)}
            if w == "test":
                cmd = [sys.executable, "-m", "pytest", "-n", "2", "--harness-suite", "quick", "-q", "-p", "no:warnings"]
            elif w in ("cold", "warm"):
                cmd = [sys.executable, "-m", "harness", "run", "--results", f"reports/{w}.jsonl"]
            else:  # its own venv and install, as CI: this interpreter's environment stays out
                env = {k: v for k, v in env.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
                env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep)
                                              if not p.startswith(str(Path(sys.executable).parent)))
                cmd = ["bash", ".ci/run"]
            secs, rc = timed(cmd, repo, env, work / f"{w}.log")
            met = secs < TARGETS[w]
            rows.append((w, secs, rc, met))
            print(f"{w:5} {secs / 60:6.1f} min  exit {rc}  target < {TARGETS[w] / 60:.0f} min: "
                  f"{'met' if met else 'NOT met'}  ({WHAT[w]}; log {work / f'{w}.log'})", flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print()
    print(f"{'target':6} {'what':38} {'minutes':>8} {'limit':>6} {'exit':>5}  verdict")
    for w, secs, rc, met in rows:
        print(f"{w:6} {WHAT[w]:38} {secs / 60:8.1f} {TARGETS[w] / 60:6.0f} {rc:5}  {'met' if met else 'NOT met'}")


if __name__ == "__main__":
    main()
