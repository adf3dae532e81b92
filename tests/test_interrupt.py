"""Nothing lost: a run killed with SIGKILL halfway (or interrupted) leaves a results file that
parses up to its last complete record and is marked incomplete; a truncated last line is
tolerated and reported."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness import records

ROOT = Path(__file__).resolve().parent.parent


def _start(tmp_path):
    cases = tmp_path / "many.json"
    cases.write_text(json.dumps({"cases": [
        {"id": f"k/c{i}", "logits": {"random": "normal", "shape": [3, 40], "seed": i}} for i in range(60)]}))
    results = tmp_path / "r.jsonl"
    env = dict(os.environ, HARNESS_CACHE_DIR=str(tmp_path / "cache"), HARNESS_REF_WORKERS="1")
    p = subprocess.Popen([sys.executable, "-m", "harness", "run", "--framework", "numpy", "--no-isolate",
                          "--cases", str(cases), "--results", str(results), "--timing-reps", "0", "-q"],
                         cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 60
    while time.time() < deadline:
        if results.exists() and results.read_text().count("\n") > 30:
            break
        time.sleep(0.05)
    return p, results


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT])
def test_killed_run_leaves_a_readable_incomplete_file(tmp_path, sig):
    p, results = _start(tmp_path)
    p.send_signal(sig)
    p.wait(30)
    if sig == signal.SIGKILL:
        assert p.returncode == -signal.SIGKILL
    else:
        assert p.returncode == 130  # interrupted: what was written stays
    # A kill can land mid-write: simulate the worst case, a truncated last line.
    with open(results, "a") as f:
        f.write('{"kind": "result", "case_id": "k/trunc')
    loaded = records.read([results])
    assert len(loaded.runs) == 1 and not loaded.complete
    assert len(loaded.results) >= 30
    assert any("truncated last line" in x for x in loaded.problems)
    assert all(r["status"] in ("pass", "fail", "error", "skip") for r in loaded.results)
    report = pytest.importorskip("harness.report")
    out = tmp_path / "index.html"
    report.render([str(results)], str(out))
    html = out.read_text()
    assert "incomplete" in html.lower()
