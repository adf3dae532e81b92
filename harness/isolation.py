"""Crash and hang isolation: run items in persistent child processes, one per framework.

A framework call that aborts the process (segfault, abort, CUDA device-side assert) or hangs
must cost one result, not the run. A Worker is one process (spawned, so no framework state is
inherited): it is sent one item at a time and waited for at most `timeout` seconds. If it dies,
the item is recorded as `error` with the signal; if it hangs, it is killed and the item is
recorded as `error` with `timeout`. Either way a fresh worker takes the next item. A worker
keeps its framework imported and its compiled functions cached between items.

The Executor gives each framework a worker of its own, as a user's process has one framework (and
the repro snippet runs in a fresh one): no framework's process state reaches another's calls.
Shared, it did: in the one worker that had run JAX, torch and TensorFlow before it, every ONNX
Runtime call took 85 ms instead of 0.1 ms (each call throws and catches C++ exceptions inside
ORT's Python binding, and the unwinder's search for the frames grew with what the other
frameworks had loaded and compiled), and ORT's 5800 results of the default run took some 40
worker-minutes."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time
import traceback
from collections import OrderedDict
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


#: How many frameworks' workers an Executor keeps alive at once (the least recently used one ends
#: first). Each holds its framework, its compiled programs and, for the determinism check, its own
#: thread-count workers in memory; two per job bound that, and the runs order their items by
#: framework (cli, plugin.xdist_scheduler) so that a job seldom comes back to a framework it left.
KEEP = 2


class Executor:
    """Runs items in isolated worker processes, one per framework (at most `keep` alive at once);
    `run(item)` returns the record."""

    def __init__(self, session: Session, *, policy_ref: str, known_ref: str | None, timeout: float = DEFAULT_TIMEOUT,
                 registrations: list[tuple[str, str]] | None = None, job: int = 0, jobs: int = 1,
                 keep: int = KEEP):
        self.session = session
        self.timeout = timeout
        #: CPU threads of the workers' frameworks (threads_for: `jobs` workers share the CPUs).
        self.threads = threads_for(jobs)
        self.args = {"policy": policy_ref, "known": known_ref, "cache_dir": str(session.cache.dir),
                     "cache_enabled": session.cache.enabled, "timing_reps": session.timing_reps,
                     "backend": session.backend, "job": job, "threads": self.threads}
        self.registrations = registrations or []
        self.keep = max(1, keep)
        self.workers: OrderedDict[str, Worker] = OrderedDict()  # by framework, least recently used first
        self.closing = False
        self._ended_restarts = 0

    @property
    def restarts(self) -> int:
        """How many times a worker died or hung and was replaced."""
        return self._ended_restarts + sum(w.restarts for w in self.workers.values())

    def run(self, item: Item) -> dict[str, Any]:
        """The item's record, from its framework's worker (started on first use). Raises Stopped
        when close() ended the worker while the item was in flight."""
        if self.closing:
            raise Stopped()
        w = self.workers.get(item.framework)
        if w is None:
            while len(self.workers) >= self.keep:
                _, old = self.workers.popitem(last=False)
                self._ended_restarts += old.restarts
                old.close()
            w = self.workers[item.framework] = Worker(self.session, self.args, self.registrations, self.timeout)
            if self.closing:  # close() ran meanwhile (another thread): this worker would outlive it
                w.close(now=True)
                raise Stopped()
        else:
            self.workers.move_to_end(item.framework)
        return w.run(item)

    def close(self, now: bool = False) -> None:
        """End every worker: asked to finish (at the end of a run), or killed at once (`now`)."""
        self.closing = True
        for w in list(self.workers.values()):
            w.close(now=now)


class Worker:
    """One isolated worker process; `run(item)` returns the record."""

    def __init__(self, session: Session, args: dict[str, Any], registrations: list[tuple[str, str]],
                 timeout: float):
        self.session = session
        self.timeout = timeout
        self.args = args
        self.registrations = registrations
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
