"""Fault injection: real runs (`python -m harness run`, a subprocess each) met by what ends
threads and processes, at several points, in both execution modes. Whatever happens:

- the records written so far are intact and readable, each a whole result;
- a run that did not run every item is marked incomplete (no `run_end`) and never says complete;
- no record is invented by the fault (no `error` record for an item the run was stopped in);
- no process the run started outlives it (workers, reference pools, resource trackers);
- the exit code is the documented one (README, "Exit codes"): 130 interrupted, 3 stopped by a
  fault of the harness, 2 bad input, 1 a failure, 0 all passed or covered.

The runs are held at a known point by a gate the test controls (tests/plugins/misbehaving.py,
GatedAdapter), so each signal arrives where the test says, on any machine load.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from harness import records
from tests.plugins.faulty import ESCAPE_VALUE, EXIT_VALUE, INTERRUPT_VALUE, SIGNAL_VALUE
from tests.plugins.misbehaving import GATE_VALUE

ROOT = Path(__file__).resolve().parent.parent
ADAPTERS = ("gated=tests.plugins.misbehaving:GatedAdapter,exiting=tests.plugins.faulty:ExitingAdapter,"
            "escaping=tests.plugins.faulty:EscapingAdapter,signalling=tests.plugins.faulty:SignallingAdapter")


def _cases(tmp_path: Path, values: list[float], n: int = 12) -> Path:
    """n cases of random logits; case i (for i < len(values)) gets the trigger value values[i],
    placed where the test wants it by listing None for the others."""
    rows = []
    for i in range(n):
        v = values[i] if i < len(values) else None
        logits = [[v, 0.0, 1.0]] if v is not None else {"random": "normal", "shape": [2, 5], "seed": i}
        rows.append({"id": f"f/c{i:02d}", "logits": logits, "grad": False})
    p = tmp_path / "cases.json"
    p.write_text(json.dumps({"cases": rows}))
    return p


def _procs_tagged(tag: str) -> list[int]:
    """Processes (other than this one) whose environment holds the run's tag: every process a
    run starts inherits it (workers, forkservers, pool workers, resource trackers)."""
    found = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            env = (d / "environ").read_bytes()
        except OSError:
            continue
        if f"HARNESS_FAULT_TAG={tag}".encode() in env.split(b"\0"):
            found.append(int(d.name))
    return found


def _wait_none_left(tag: str, within: float = 15.0) -> list[int]:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        left = _procs_tagged(tag)
        if not left:
            return []
        time.sleep(0.2)
    return _procs_tagged(tag)


def _wait_gate(p: subprocess.Popen, gate: str) -> None:
    """Until the process `p` is held in the gate; a failure with its output if it ended first."""
    while not os.path.exists(gate + ".reached"):
        if p.poll() is not None:
            out, err = p.communicate()
            pytest.fail(f"the run ended (exit {p.returncode}) before the gate:\n{(out + err).decode()[-3000:]}")
        time.sleep(0.05)


def _terminal_sigint() -> None:
    """SIGINT as a terminal's Ctrl-C finds it: pytest (unlike the harness's CLI, which installs its
    own handler) keeps a SIGINT its parent ignored, and a shell's background job without job
    control (`bash -c '... &'`, as .ci/run may be started) ignores it: the run never stopped."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _communicate(p: subprocess.Popen, gate: str, timeout: float = 120) -> tuple[bytes, bytes]:
    """p's (stdout, stderr) once it ends (the gate opened after, never leaving a run waiting). A run
    that hangs fails with what would explain it: the processes of its session still there, and the
    Python stack of each thread of its main process (faulthandler, $PYTHONFAULTHANDLER, on SIGABRT)."""
    try:
        return p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        left = subprocess.run(["ps", "-o", "pid,ppid,stat,etime,args", "-s", str(p.pid)], capture_output=True,
                              text=True).stdout
        if p.poll() is None:
            os.kill(p.pid, signal.SIGABRT)
        try:
            out, err = p.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            out, err = b"", b"(no output: the pipes are still held open)"
        pytest.fail(f"the run did not end within {timeout:g} s; its session's processes:\n{left}\n"
                    f"stdout: {out.decode(errors='replace')[-1500:]}\nstderr: {err.decode(errors='replace')[-6000:]}")
    finally:
        open(gate + ".open", "w").close()
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


class Run:
    def __init__(self, tmp_path: Path, framework: str, cases: Path, *extra: str, isolate: bool = True, jobs: int = 1):
        self.tag = uuid.uuid4().hex
        self.gate = str(tmp_path / "gate")
        self.results = tmp_path / "r.jsonl"
        env = dict(os.environ, HARNESS_CACHE_DIR=str(tmp_path / "cache"), HARNESS_REF_WORKERS="1",
                   HARNESS_EXTRA_ADAPTERS=ADAPTERS, HARNESS_TEST_GATE=self.gate, HARNESS_FAULT_TAG=self.tag,
                   PYTHONPATH=str(ROOT), PYTHONFAULTHANDLER="1")
        cmd = [sys.executable, "-m", "harness", "run", "--framework", framework, "--cases", str(cases),
               "--results", str(self.results), "--timing-reps", "0", "--jobs", str(jobs), "--mode", "eager",
               "--op", "softmax", "--dtype", "float64",  # one item per case: case i is item i
               *(() if isolate else ("--no-isolate",)), *extra]
        # Its own process group, as a shell gives a foreground job: Ctrl-C reaches every process in it.
        self.p = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  start_new_session=True)

    def wait_gate(self) -> None:
        _wait_gate(self.p, self.gate)

    def finish(self, timeout: float = 120) -> tuple[int, str]:
        _, err = _communicate(self.p, self.gate, timeout)
        return self.p.returncode, err.decode()

    def loaded(self) -> records.Loaded:
        return records.read([self.results])


def _intact(loaded: records.Loaded) -> None:
    assert not loaded.problems, loaded.problems
    assert len(loaded.runs) == 1
    for r in loaded.results:
        assert r["status"] in ("pass", "fail", "error", "skip") and r["case_id"].startswith("f/c")


# -- signals to the whole process group (Ctrl-C, kill -TERM) and to the main process (SIGKILL) --

@pytest.mark.parametrize("isolate", [True, False], ids=["isolated", "no-isolate"])
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_to_the_group_mid_item_stops_the_run_and_invents_nothing(tmp_path, sig, isolate):
    """Before: a real Ctrl-C reached the worker too, which recorded the item in flight as an
    `error` "KeyboardInterrupt" (counted as a discrepancy); SIGTERM raced close() ('NoneType'
    object has no attribute 'join', a traceback and a 10 s stall)."""
    run = Run(tmp_path, "gated", _cases(tmp_path, [None] * 5 + [GATE_VALUE]), isolate=isolate)
    run.wait_gate()
    t0 = time.monotonic()
    os.killpg(run.p.pid, sig)
    code, err = run.finish()
    assert code == 130, err[-3000:]
    assert time.monotonic() - t0 < 8, "stopping took the old close() stall"  # kill, not a 10 s join
    assert "Traceback" not in err and "marked incomplete" in err
    loaded = run.loaded()
    _intact(loaded)
    assert not loaded.complete and not loaded.ends
    assert len(loaded.results) == 5 and all(r["status"] == "pass" for r in loaded.results)  # none invented
    assert _wait_none_left(run.tag) == []


def test_sigkill_of_the_run_leaves_no_worker_behind(tmp_path):
    """Before: SIGKILL of the main process while its worker was in a hung call left the worker
    (and multiprocessing's resource tracker) running, orphaned, for as long as the call hung; an
    idle worker printed a ConnectionResetError traceback. Two jobs: job 0's worker is in the gate,
    job 1's has finished its group (one case of another rank) and waits, idle, for the next."""
    cases = _cases(tmp_path, [None] * 3 + [GATE_VALUE])
    data = json.loads(cases.read_text())
    data["cases"].append({"id": "f/c_rank3", "logits": {"random": "normal", "shape": [2, 2, 5], "seed": 9}, "grad": False})
    cases.write_text(json.dumps(data))
    run = Run(tmp_path, "gated", cases, jobs=2)
    run.wait_gate()
    deadline = time.monotonic() + 60
    while sum(1 for r in run.loaded().results if r["case_id"] == "f/c_rank3") < 1 and time.monotonic() < deadline:
        time.sleep(0.1)  # job 1 done: its worker is idle
    assert len(_procs_tagged(run.tag)) >= 3  # the run and its two workers (and the resource tracker)
    run.p.send_signal(signal.SIGKILL)  # the main process only: its workers are orphaned, one in the gate
    try:
        run.p.wait(30)
        left = _wait_none_left(run.tag)
        assert left == [], f"processes outlived the run: {left}"
        err = run.p.stderr.read().decode()  # every writer of the pipe is gone: it ends
        assert "Traceback" not in err and "ConnectionResetError" not in err, err[-3000:]
    finally:
        open(run.gate + ".open", "w").close()
        for pid in _procs_tagged(run.tag):
            os.kill(pid, signal.SIGKILL)
    loaded = run.loaded()
    _intact(loaded)
    assert sorted(r["case_id"] for r in loaded.results) == ["f/c00", "f/c01", "f/c02", "f/c_rank3"]
    assert not loaded.complete


def test_interrupt_before_the_first_record(tmp_path):
    """The gate is the first item: the file holds run_start only when the signal comes."""
    run = Run(tmp_path, "gated", _cases(tmp_path, [GATE_VALUE]))
    run.wait_gate()
    os.killpg(run.p.pid, signal.SIGINT)
    code, err = run.finish()
    assert code == 130, err[-3000:]
    loaded = run.loaded()
    _intact(loaded)
    assert loaded.results == [] and not loaded.complete
    assert _wait_none_left(run.tag) == []


@pytest.mark.parametrize("isolate", [True, False], ids=["isolated", "no-isolate"])
def test_interrupt_between_items(tmp_path, isolate):
    """Ctrl-C to the group as item 3's call returns: its record may or may not make it, the run
    stops within an item or two, and every record written is a real, passing result."""
    run = Run(tmp_path, "signalling", _cases(tmp_path, [None, None, None, SIGNAL_VALUE], n=40), isolate=isolate)
    code, err = run.finish()
    assert code == 130, err[-3000:]
    loaded = run.loaded()
    _intact(loaded)
    assert not loaded.complete and 3 <= len(loaded.results) < 40
    assert all(r["status"] == "pass" for r in loaded.results)
    assert [r["case_id"] for r in loaded.results] == [f"f/c{i:02d}" for i in range(len(loaded.results))]
    assert _wait_none_left(run.tag) == []


def test_interrupt_before_the_results_file_is_opened_leaves_the_old_one(tmp_path):
    """A signal during start-up (imports, case loading): the earlier results file is untouched."""
    old = b'{"kind": "sentinel"}\n'
    cases = _cases(tmp_path, [])
    run = Run(tmp_path, "gated", cases)
    run.results.write_bytes(old)
    # Interrupt as early as the process exists (before its handlers, Python's default KeyboardInterrupt).
    time.sleep(0.05)
    os.killpg(run.p.pid, signal.SIGINT)
    code, err = run.finish()
    if code == 0:
        pytest.skip("the run finished before the signal arrived")  # a very fast machine
    assert code in (130, -signal.SIGINT, 1), err[-2000:]
    if run.results.read_bytes() != old:  # it got as far as opening the file: then it is marked incomplete
        loaded = run.loaded()
        _intact(loaded)
        assert not loaded.complete


def test_interrupt_during_the_report_keeps_the_old_report_and_the_results(tmp_path):
    """The run is complete when its report is being written: the results file keeps its run_end,
    the earlier report is left whole (the new one is written to a temporary file and renamed), and
    no temporary file is left behind."""
    results = tmp_path / "r.jsonl"
    report = tmp_path / "index.html"
    report.write_text("<html>the earlier report</html>")
    gate = tmp_path / "gate"
    # Hold the report's rendering where it writes, with the same gate, in a real process.
    code = f"""
import os, sys, time
import importlib, pathlib
importlib.import_module('harness.report.render')
orig = pathlib.Path.write_text
def held(self, *a, **k):
    if self.name.endswith('.tmp'):
        orig(self, "<html>half", encoding="utf-8")
        open({str(gate)!r} + '.reached', 'w').close()
        while not os.path.exists({str(gate)!r} + '.open'):
            time.sleep(0.01)
    return orig(self, *a, **k)
pathlib.Path.write_text = held
from harness.cli import main
sys.exit(main(sys.argv[1:]))
"""
    env = dict(os.environ, HARNESS_CACHE_DIR=str(tmp_path / "cache"), PYTHONPATH=str(ROOT))
    p = subprocess.Popen([sys.executable, "-c", code, "run", "--framework", "numpy", "--case-filter", "seed/*",
                          "--mode", "eager", "--op", "softmax", "--dtype", "float64", "--results", str(results),
                          "--report", str(report), "--timing-reps", "0", "-q"], cwd=ROOT, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        _wait_gate(p, str(gate))
        os.killpg(p.pid, signal.SIGTERM)
        _, err = p.communicate(timeout=60)
    finally:
        open(str(gate) + ".open", "w").close()
        if p.poll() is None:
            p.kill()
    assert p.returncode == 130, err.decode()[-2000:]
    assert report.read_text() == "<html>the earlier report</html>"
    assert not list(tmp_path.glob("*.tmp"))
    loaded = records.read([results])
    assert loaded.complete and loaded.results and not loaded.problems


# -- what a framework call raises that ends a thread: SystemExit, KeyboardInterrupt, a BaseException --

@pytest.mark.parametrize("isolate", [True, False], ids=["isolated", "no-isolate"])
def test_a_library_raising_systemexit_or_keyboardinterrupt_is_its_answer(tmp_path, isolate):
    """Before, under --no-isolate: the exception ended the job thread, the items after it never
    ran, run_end said complete, exit 0. Now each is the framework's answer (an `error` record
    with its type) and the run goes on to its end."""
    run = Run(tmp_path, "exiting", _cases(tmp_path, [None, EXIT_VALUE, None, INTERRUPT_VALUE], n=6),
              isolate=isolate)
    code, err = run.finish()
    assert code == 1, err[-3000:]  # two errors, not known
    loaded = run.loaded()
    _intact(loaded)
    assert loaded.complete and len(loaded.results) == 6
    by_case = {r["case_id"]: r for r in loaded.results}
    assert by_case["f/c01"]["status"] == "error" and by_case["f/c01"]["error_type"] == "SystemExit"
    assert by_case["f/c03"]["status"] == "error" and by_case["f/c03"]["error_type"] == "KeyboardInterrupt"
    assert by_case["f/c03"]["error_origin"] == "framework"
    assert [by_case[f"f/c{i:02d}"]["status"] for i in (0, 2, 4, 5)] == ["pass"] * 4
    assert _wait_none_left(run.tag) == []


def test_a_fault_that_ends_a_job_stops_the_run_loudly(tmp_path):
    """A BaseException that the item's handler does not catch (a harness fault) under
    --no-isolate: before, the job thread ended in silence (run_end complete, exit 0, the items
    after it never run). Now: the run stops, says so, is marked incomplete, exit 3."""
    run = Run(tmp_path, "escaping", _cases(tmp_path, [None, None, ESCAPE_VALUE], n=6),
              isolate=False)
    code, err = run.finish()
    assert code == 3, err[-3000:]
    assert "the run stopped after 2 of 6 results" in err and "Escape" in err and "Traceback" not in err
    loaded = run.loaded()
    _intact(loaded)
    assert len(loaded.results) == 2 and not loaded.complete and not loaded.ends


# -- the pytest front end --

@pytest.mark.parametrize("how", ["SIGINT", "maxfail"])
def test_a_pytest_run_stopped_short_is_marked_incomplete(tmp_path, how):
    """Before, the plugin wrote run_end complete:true whatever happened: after Ctrl-C (and the
    worker recorded the item in flight as an error "KeyboardInterrupt") and after -x. Now: no
    run_end, no invented record, no worker left behind."""
    values = [None] * 3 + ([GATE_VALUE] if how == "SIGINT" else [EXIT_VALUE])
    cases = _cases(tmp_path, values)
    results = tmp_path / "r.jsonl"
    gate = str(tmp_path / "gate")
    tag = uuid.uuid4().hex
    env = dict(os.environ, HARNESS_CACHE_DIR=str(tmp_path / "cache"), HARNESS_REF_WORKERS="1",
               HARNESS_EXTRA_ADAPTERS=ADAPTERS, HARNESS_TEST_GATE=gate, HARNESS_FAULT_TAG=tag, PYTHONPATH=str(ROOT),
               PYTHONFAULTHANDLER="1")
    fw = "gated" if how == "SIGINT" else "exiting"
    p = subprocess.Popen([sys.executable, "-m", "pytest", "tests/test_conformance.py", "-q", "-p", "no:cacheprovider",
                          "-p", "no:xdist", "--harness-framework", fw, "--harness-cases", str(cases),
                          "--harness-results", str(results), "--harness-mode", "eager", "--harness-op", "softmax",
                          "--harness-dtype", "float64", "--harness-timing-reps", "0",
                          *(["-x"] if how == "maxfail" else [])],
                         cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                         preexec_fn=_terminal_sigint)
    if how == "SIGINT":
        _wait_gate(p, gate)
        os.killpg(p.pid, signal.SIGINT)
    out, _ = _communicate(p, gate)
    assert p.returncode == (2 if how == "SIGINT" else 1), out.decode()[-3000:]  # pytest: interrupted / failed
    loaded = records.read([results])
    _intact(loaded)
    assert not loaded.ends and not loaded.complete
    assert [r["status"] for r in loaded.results] == ["pass"] * 3 + ([] if how == "SIGINT" else ["error"])
    assert _wait_none_left(tag) == []
