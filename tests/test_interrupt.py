"""Nothing lost: a run killed with SIGKILL, terminated or interrupted in the middle of an item
leaves a results file that parses up to its last complete record and is marked incomplete; a
truncated last line is tolerated and reported.

Deterministic on a loaded machine: the run is held inside an item by a gate the test controls
(tests/plugins/misbehaving.py, GatedAdapter), so the signal always arrives while it runs, after
a known number of records.
"""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from harness import records
from harness.cases import load
from harness.runner import Selection, expand
from harness import adapters as A
from tests.plugins.misbehaving import GATE_VALUE, GatedAdapter

ROOT = Path(__file__).resolve().parent.parent
N_CASES, GATE_AT = 60, 30


def _start(tmp_path, ignore_sigint=False):
    rows = [{"id": f"k/c{i}", "logits": {"random": "normal", "shape": [3, 40], "seed": i}} for i in range(N_CASES)]
    rows[GATE_AT]["logits"] = [[GATE_VALUE, 0.0, 1.0]]
    cases = tmp_path / "many.json"
    cases.write_text(json.dumps({"cases": rows}))
    results = tmp_path / "r.jsonl"
    gate = str(tmp_path / "gate")
    env = dict(os.environ, HARNESS_CACHE_DIR=str(tmp_path / "cache"), HARNESS_REF_WORKERS="1",
               HARNESS_EXTRA_ADAPTERS="gated=tests.plugins.misbehaving:GatedAdapter", HARNESS_TEST_GATE=gate)
    # A process manager or CI runner may start us with SIGINT ignored; the harness must still act on it.
    pre = (lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if ignore_sigint else None
    p = subprocess.Popen([sys.executable, "-m", "harness", "run", "--framework", "gated", "--no-isolate",
                          "--cases", str(cases), "--results", str(results), "--timing-reps", "0", "-q"],
                         cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=pre)
    # The items before the gate: every item of the cases before it, in the run's order.
    with A.registered("gated", GatedAdapter):
        items = expand(load([str(cases)]), Selection(frameworks=["gated"]), ["gated"])
    before = next(i for i, it in enumerate(items) if it.case.id == f"k/c{GATE_AT}")
    return p, results, gate, before


def _wait_for_gate(p, gate):
    while not os.path.exists(gate + ".reached"):
        try:
            p.wait(0.05)
        except subprocess.TimeoutExpired:
            continue
        out, err = p.communicate()
        pytest.fail(f"the run ended (exit {p.returncode}) before reaching the gate:\n{err.decode()[-3000:]}")


@pytest.mark.parametrize("sig,ignored", [(signal.SIGKILL, False), (signal.SIGTERM, False), (signal.SIGINT, False),
                                         (signal.SIGINT, True)],
                         ids=["SIGKILL", "SIGTERM", "SIGINT", "SIGINT-inherited-ignored"])
def test_killed_run_leaves_a_readable_incomplete_file(tmp_path, sig, ignored):
    p, results, gate, before = _start(tmp_path, ignore_sigint=ignored)
    try:
        _wait_for_gate(p, gate)
        p.send_signal(sig)
        _, err = p.communicate(timeout=120)
    finally:
        open(gate + ".open", "w").close()  # never leave the run waiting
        if p.poll() is None:
            p.kill()
    if sig == signal.SIGKILL:
        assert p.returncode == -signal.SIGKILL
    else:
        assert p.returncode == 130, err.decode()[-3000:]  # interrupted: what was written stays
        assert "marked incomplete" in err.decode()
    loaded = records.read([results])
    assert len(loaded.runs) == 1 and not loaded.complete
    assert len(loaded.results) == before > 0  # every record before the item in flight, none after
    assert all(r["status"] in ("pass", "fail", "error", "skip") for r in loaded.results)
    # A kill can land mid-write: simulate the worst case, a truncated last line.
    with open(results, "a") as f:
        f.write('{"kind": "result", "case_id": "k/trunc')
    loaded = records.read([results])
    assert len(loaded.results) == before
    assert any("truncated last line" in x for x in loaded.problems)
    report = pytest.importorskip("harness.report")
    out = tmp_path / "index.html"
    report.render([str(results)], str(out))
    assert "incomplete" in out.read_text().lower()
