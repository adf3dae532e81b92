"""Crash and hang isolation (issue: reliability): a framework that aborts or hangs costs one
result, recorded as an error with its cause; every other result is present."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from harness import adapters as A
from harness import cases as K
from harness.cache import Cache
from harness.isolation import Executor
from harness.policy import load as load_policy
from harness.runner import Selection, Session, expand
from tests.plugins.misbehaving import OtherThreadsAdapter, ThreadsAdapter

ROOT = Path(__file__).resolve().parent.parent


def _cases(tmp_path):
    f = tmp_path / "c.json"
    f.write_text(json.dumps({"cases": [
        {"id": "t/ok1", "logits": [1.0, 2.0, 3.0]},
        {"id": "t/boom", "logits": [13.0, 0.0, 1.0]},
        {"id": "t/slow", "logits": [7.0, 0.0, 1.0]},
        {"id": "t/ok2", "logits": [[0.5, 0.25], [1.0, -1.0]]},
    ]}))
    return K.load([str(f)])


@pytest.mark.parametrize("name,target,bad_case,cause", [
    ("crashy", "tests.plugins.misbehaving:CrashAdapter", "t/boom", "crash"),
    ("sleepy", "tests.plugins.misbehaving:SleepyAdapter", "t/slow", "timeout"),
])
def test_crash_and_hang_cost_one_result(tmp_path, name, target, bad_case, cause, registered):
    mod, cls = target.split(":")
    registered(getattr(__import__(mod, fromlist=[cls]), cls), name)
    cases = _cases(tmp_path)
    sel = Selection(frameworks=[name], dtypes=["float32"], ops=["softmax"], modes=["eager"], checks=["forward"])
    items = expand(cases, sel, [name])
    session = Session(load_policy("standard"), Cache(tmp_path / "cache"), [], None, 0)
    ex = Executor(session, policy_ref="standard", known_ref=None, timeout=8, registrations=[(name, target)])
    try:
        recs = [ex.run(it) for it in items]
    finally:
        ex.close()
    by_case = {r["case_id"]: r for r in recs}
    assert set(by_case) == {"t/ok1", "t/boom", "t/slow", "t/ok2"}  # every result present
    bad = by_case[bad_case]
    assert bad["status"] == "error" and bad["special"] == cause
    if cause == "crash":
        assert bad["error_type"] == "SIGABRT"
    else:
        assert "8 s" in bad["message"]
    for cid, r in by_case.items():
        if cid != bad_case:
            assert r["status"] == "pass", r
    assert ex.restarts == 1


def test_cli_run_survives_a_segfault(tmp_path):
    """End to end through the CLI: an adapter registered by entry point is not needed; the
    test adapter is registered through a sitecustomize-free route, HARNESS_EXTRA_ADAPTERS."""
    cases = tmp_path / "c.json"
    cases.write_text(json.dumps({"cases": [
        {"id": "t/ok1", "logits": [1.0, 2.0, 3.0]},
        {"id": "t/boom", "logits": [13.0, 0.0, 1.0]},
        {"id": "t/ok2", "logits": [0.5, 0.25]},
    ]}))
    results = tmp_path / "r.jsonl"
    env = {"PATH": "/usr/bin:/bin", "CRASHY_SEGFAULT": "1", "PYTHONPATH": str(ROOT),
           "HARNESS_EXTRA_ADAPTERS": "crashy=tests.plugins.misbehaving:CrashAdapter",
           "HARNESS_CACHE_DIR": str(tmp_path / "cache")}
    p = subprocess.run([sys.executable, "-m", "harness", "run", "--framework", "crashy", "--cases", str(cases),
                        "--dtype", "float64", "--op", "softmax", "--mode", "eager", "--check", "forward",
                        "--results", str(results)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 1, p.stderr  # a conformance failure (the crash), not a crashed run
    recs = [json.loads(line) for line in results.read_text().splitlines()]
    res = {r["case_id"]: r for r in recs if r.get("kind") == "result"}
    assert res["t/boom"]["status"] == "error" and res["t/boom"]["error_type"] == "SIGSEGV"
    assert res["t/ok1"]["status"] == res["t/ok2"]["status"] == "pass"
    assert recs[-1]["kind"] == "run_end"


def test_workers_running_at_once_share_the_cpus(tmp_path, monkeypatch):
    """Two isolated workers on this machine's CPUs each get cpu_count // 2 threads (at least one) in
    every framework's own variable, set before any framework starts; one worker, or a user's own
    OMP_NUM_THREADS, leaves the frameworks' default. (Oversubscribed, OpenMP's spinning threads made
    the quick suite's eager torch results 3 times slower under pytest -n 2.)"""
    from harness import isolation as I

    for v in I.USER_THREAD_VARS:
        monkeypatch.delenv(v, raising=False)
    monkeypatch.setattr(I.os, "cpu_count", lambda: 8)
    assert (I.threads_for(1), I.threads_for(2), I.threads_for(3), I.threads_for(16)) == (None, 4, 2, 1)
    env = I.thread_env(3)
    assert env["OMP_NUM_THREADS"] == "3" and env["TF_NUM_INTRAOP_THREADS"] == "3"
    assert "intra_op_parallelism_threads=3" in env["XLA_FLAGS"]
    monkeypatch.undo()
    for v in I.USER_THREAD_VARS:
        monkeypatch.delenv(v, raising=False)
    want = max(1, (I.os.cpu_count() or 1) // 2)

    name, target = "threadsays", "tests.plugins.misbehaving:ThreadsAdapter"
    with A.registered(name, ThreadsAdapter):
        items = expand(_cases(tmp_path)[:1], Selection(frameworks=[name], dtypes=["float32"], ops=["softmax"],
                                                       modes=["eager"], checks=["forward"]), [name])
        session = Session(load_policy("standard"), Cache(tmp_path / "cache"), [], None, 0)
        said = {}
        for jobs in (2, 1):
            ex = Executor(session, policy_ref="standard", known_ref=None, timeout=60, registrations=[(name, target)],
                          jobs=jobs)
            try:
                said[jobs] = ex.run(items[0])["message"]
            finally:
                ex.close()
        assert f"OMP_NUM_THREADS={want};" in said[2] and f"TF_NUM_INTRAOP_THREADS={want};" in said[2]
        assert f"intra_op_parallelism_threads={want}" in said[2]
        assert "OMP_NUM_THREADS=None" in said[1]
        monkeypatch.setenv("OMP_NUM_THREADS", "5")  # the user's choice wins
        assert I.threads_for(2) is None


def test_each_framework_runs_in_a_worker_of_its_own(tmp_path, registered):
    """Two frameworks' items never run in one process: a framework's calls cannot be slowed or
    changed by what another loaded (ONNX Runtime's calls took 85 ms instead of 0.1 ms in the worker
    that had run JAX, torch and TensorFlow before them). A framework's worker is kept for its next
    items while at most `keep` are alive; beyond that the least recently used one ends."""
    regs = [(cls.name, f"tests.plugins.misbehaving:{cls.__name__}") for cls in (ThreadsAdapter, OtherThreadsAdapter)]
    for cls in (ThreadsAdapter, OtherThreadsAdapter):
        registered(cls)
    sel = dict(dtypes=["float32"], ops=["softmax"], modes=["eager"], checks=["forward"])
    case = _cases(tmp_path)[:1]
    item = {n: expand(case, Selection(frameworks=[n], **sel), [n])[0] for n, _ in regs}
    session = Session(load_policy("standard"), Cache(tmp_path / "cache"), [], None, 0)
    for keep in (2, 1):
        ex = Executor(session, policy_ref="standard", known_ref=None, timeout=60, registrations=regs, keep=keep)
        try:
            said = [ex.run(item[n])["message"] for n in ("threadsays", "threadsays2", "threadsays")]
            alive = len(ex.workers)
        finally:
            ex.close()
        pids = [re.search(r"pid=(\d+)", m).group(1) for m in said]
        ran_here = [re.search(r"ran here=(\S+)", m).group(1) for m in said]
        assert ran_here == ["threadsays", "threadsays2", "threadsays"], said  # one framework per process
        assert pids[0] != pids[1] and (pids[2] == pids[0]) == (keep == 2), (keep, pids)
        assert alive == keep and ex.restarts == 0


def test_one_frameworks_thread_workers_at_a_time():
    """The determinism check's thread-count workers (harness.threads) each hold their framework in
    memory: a worker of another framework ends the last framework's workers first."""
    from harness import threads as T

    a1, a2 = T.worker("numpy", 1), T.worker("numpy", 2)
    assert a1.proc.poll() is None and a2.proc.poll() is None
    b = T.worker("scipy", 1)
    try:
        for w in (a1, a2):
            w.proc.wait(10)
        assert a1.proc.poll() is not None and a2.proc.poll() is not None and b.proc.poll() is None
        assert T.worker("scipy", 1) is b  # a framework's worker is reused
    finally:
        T.close_all()
