"""Crash and hang isolation: run items in a persistent child process.

A framework call that aborts the process (segfault, abort, CUDA device-side assert) or hangs
must cost one result, not the run. The Executor keeps one worker process (spawned, so no
framework state is inherited), sends it one item at a time and waits at most `timeout` seconds.
If the worker dies, the item is recorded as `error` with the signal; if it hangs, the worker is
killed and the item is recorded as `error` with `timeout`. Either way a fresh worker takes the
next item. The worker keeps frameworks imported and compiled functions cached between items.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time
import traceback
from typing import Any

from .errors import Stopped
from . import procs
from .procs import become_helper
from .runner import WORKER_ENV, Item, Session, base_record

#: Default per-item timeout in seconds: the first call of a compiled mode includes compilation.
DEFAULT_TIMEOUT = 300.0
#: What a worker sends once it has started (imports done, session built). Its start-up is not
#: part of any item's time: on a loaded machine a spawned interpreter importing numpy can take
#: longer than an item's whole timeout.
READY = "ready"
#: How long a worker may take to start before it counts as crashed.
STARTUP_TIMEOUT = 300.0


#: The environment variables that, set by the user, say how many CPU threads the frameworks take:
#: the harness then leaves the threads of its workers alone.
USER_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "TF_NUM_INTRAOP_THREADS")


def threads_for(jobs: int) -> int | None:
    """The CPU threads each of `jobs` worker processes running at once may use: the CPUs shared out
    (at least 1), or None for a single job (the frameworks' own default: every CPU).

    Why: every framework sizes its thread pool to the machine, and OpenMP's threads spin while they
    wait; two workers of two threads each on two CPUs spend most of their time spinning against one
    another (the quick suite's eager torch results under pytest -n 2: 67 s, and 22 s with one
    thread per worker; the frameworks' own call times 50 times longer). The values do not depend on
    it: the determinism check runs every call with 1 thread and with every CPU, and they agree."""
    if jobs <= 1 or any(v in os.environ for v in USER_THREAD_VARS):
        return None
    return max(1, (os.cpu_count() or 1) // jobs)


def thread_env(n: int) -> dict[str, str]:
    """The environment giving a fresh process `n` CPU threads in every built-in framework (each
    adapter's thread_env, read at the framework's start-up: OpenMP/MKL, TensorFlow's, XLA's)."""
    from . import adapters as A

    env: dict[str, str] = {}
    for name in A.DEFAULT_FRAMEWORKS:
        try:
            env.update(A.get(name).thread_env(n))
        except Exception:  # noqa: BLE001 - an adapter that cannot say leaves its framework's default
            continue
    return env


def _worker(conn: Any, session_args: dict[str, Any], registrations: list[tuple[str, str]],
            parent: int | None = None) -> None:
    # The parent alone decides what an interrupt means, and the worker ends with it (procs.py).
    become_helper(parent)
    os.environ[WORKER_ENV] = "1"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ["HARNESS_JOB"] = str(session_args.get("job", 0))  # per-job compiler caches
    if session_args.get("threads"):  # before any framework is imported: they read it at start-up
        os.environ.update(thread_env(session_args["threads"]))
    from . import adapters as A
    from .cache import Cache
    from .known import load_known
    from .policy import load as load_policy

    for name, target in registrations:  # adapters registered at run time in the parent
        A.register(name, A.load_target(target))
    session = Session(load_policy(session_args["policy"]),
                      Cache(session_args["cache_dir"], enabled=session_args["cache_enabled"]),
                      load_known(session_args["known"]), None, session_args["timing_reps"],
                      session_args.get("backend"))
    try:
        conn.send(READY)  # the item clock of the parent starts after this
        while True:
            item = conn.recv()
            if item is None:
                return
            try:
                rec = session.run(item)
            except BaseException as e:  # noqa: BLE001 - report, never die silently
                rec = base_record(item)
                rec.update(status="error", special="harness_error",
                           message=f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=5)}")
            conn.send(rec)
    except (EOFError, OSError):  # the parent is gone or closed the pipe: nothing to report to
        return


class Executor:
    """Runs items in an isolated worker process; `run(item)` returns the record."""

    def __init__(self, session: Session, *, policy_ref: str, known_ref: str | None, timeout: float = DEFAULT_TIMEOUT,
                 registrations: list[tuple[str, str]] | None = None, job: int = 0, jobs: int = 1):
        self.session = session
        self.timeout = timeout
        #: CPU threads of the worker's frameworks (threads_for: `jobs` workers share the CPUs).
        self.threads = threads_for(jobs)
        self.args = {"policy": policy_ref, "known": known_ref, "cache_dir": str(session.cache.dir),
                     "cache_enabled": session.cache.enabled, "timing_reps": session.timing_reps,
                     "backend": session.backend, "job": job, "threads": self.threads}
        self.registrations = registrations or []
        self.ctx = mp.get_context("spawn")
        self.proc: Any = None
        self.conn: Any = None
        self.restarts = 0
        self.closing = False
        self.busy = False

    def _start(self) -> Any:
        """Start a worker and wait until it is ready; EOFError if it died or never got there."""
        parent, child = self.ctx.Pipe()
        proc = self.ctx.Process(target=_worker, args=(child, self.args, self.registrations, os.getpid()),
                                daemon=True)
        proc.start()
        self.proc = proc
        child.close()
        self.conn = parent
        if not parent.poll(max(STARTUP_TIMEOUT, self.timeout)):
            proc.kill()
            raise EOFError("the worker did not start")
        if parent.recv() != READY:
            raise EOFError("the worker did not say it was ready")
        return proc

    def run(self, item: Item) -> dict[str, Any]:
        """The item's record. Raises Stopped when close() ended the worker while the item was in
        flight: the run is stopping, and the item's result is not known (never an invented error)."""
        if self.closing:
            raise Stopped()
        t0 = time.perf_counter()
        proc = self.proc
        try:
            if proc is None or not proc.is_alive():
                proc = self._start()
                t0 = time.perf_counter()
            self.busy = True
            self.conn.send(item)
            if self.conn.poll(self.timeout):
                rec = self.conn.recv()
                self.busy = False
                self.session.classify_known(rec)  # the baseline lives in this process
                return rec
            cause = "timeout"
        except (EOFError, BrokenPipeError, ConnectionResetError, OSError):
            cause = "crash"
        # (An interrupt propagating from poll() leaves `busy` set: close() then kills at once.)
        self.busy = False
        if self.closing:
            raise Stopped()
        proc = proc or self.proc
        if proc is None:  # no worker process could be made at all: the run cannot go on (exit 3)
            raise OSError("could not start a worker process")
        # The worker died or hung: record it, replace the worker, go on.
        rec = base_record(item)
        if cause == "timeout" and proc.is_alive():
            proc.kill()
        proc.join(5)
        code = proc.exitcode
        if self.closing:
            raise Stopped()
        if cause == "crash" or (code is not None and code < 0 and cause != "timeout"):
            sig = -code if code is not None and code < 0 else None
            name = signal.Signals(sig).name if sig else f"exit code {code}"
            rec.update(status="error", special="crash", error_type=name, error_origin="crash",
                       message=f"the worker process died ({name}) while the framework ran this item")
        else:
            rec.update(status="error", special="timeout", error_type="timeout", error_origin="timeout",
                       message=f"no result within {self.timeout:g} s: the worker was killed")
        rec["time_framework_s"] = time.perf_counter() - t0
        self.restarts += 1
        self.proc = None
        self.session.classify_known(rec)
        return rec

    def close(self, now: bool = False) -> None:
        """End the worker: asked to finish (at the end of a run), or killed at once (`now`: the
        run is stopping; an item in flight is abandoned, and run() raises Stopped for it)."""
        self.closing = True
        # an item in flight (pytest interrupted in it) is not waited for
        procs.end(self.proc, self.conn, wait=10, kill=now or self.busy)
        self.proc = None
