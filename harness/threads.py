"""Calls run in a process of their own with a chosen number of CPU threads (the determinism
check, harness.invariance): one persistent worker per (framework, thread count), started on
first use with the adapter's thread settings in its environment (`Adapter.thread_env`: OpenMP,
MKL, TensorFlow's and XLA's own variables, read when the framework starts) and applied again
through the framework's API before its first call (`Adapter.set_threads`).

The protocol is pickles over the worker's stdin and a private copy of its stdout (the worker's
fd 1 goes to stderr: a framework that prints cannot corrupt it). A worker that cannot start, dies
or hangs costs the variants it was to run (recorded as not run, with the reason), never the run.
"""

from __future__ import annotations

import atexit
import os
import pickle
import select
import struct
import subprocess
import sys
import tempfile
import threading
from typing import Any

#: Seconds a worker may take to answer one call (its first includes importing the framework).
TIMEOUT = 300.0


class WorkerError(Exception):
    """The worker could not run the call at all (it did not start, died or hung)."""


def _send(f: Any, obj: Any) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    f.write(struct.pack("<Q", len(data)) + data)
    f.flush()


def _recv_exact(fd: int, n: int, timeout: float | None) -> bytes:
    buf = b""
    while len(buf) < n:
        if timeout is not None:
            ready, _, _ = select.select([fd], [], [], timeout)
            if not ready:
                raise TimeoutError(f"no answer within {timeout:g} s")
        chunk = os.read(fd, n - len(buf))
        if not chunk:
            raise EOFError("the worker closed its pipe")
        buf += chunk
    return buf


def _recv(fd: int, timeout: float | None = None) -> Any:
    (n,) = struct.unpack("<Q", _recv_exact(fd, 8, timeout))
    return pickle.loads(_recv_exact(fd, n, timeout))  # noqa: S301 - our own worker's answer


def adapter_target(name: str) -> str | None:
    """What a fresh process loads the adapter `name` from: None for the names every process knows
    (built-in, entry points, HARNESS_EXTRA_ADAPTERS, module:function targets), "module:Class" for
    a class registered at run time, or "" when it cannot be loaded elsewhere (a factory that is no
    importable class)."""
    from . import adapters as A

    factory = A._extra.get(name)
    if factory is None:
        return None
    mod, qual = getattr(factory, "__module__", ""), getattr(factory, "__qualname__", "")
    if not isinstance(factory, type) or not mod or mod == "__main__" or "<" in qual:
        return ""
    return f"{mod}:{qual}"


class Worker:
    """One process running one framework's calls with `n` CPU threads."""

    def __init__(self, framework: str, n: int):
        from . import adapters as A

        self.framework, self.n = framework, n
        target = adapter_target(framework)
        if target == "":
            raise WorkerError(f"{framework} is registered in this process only (no importable class): "
                              f"it cannot run in a process of its own")
        ad = A.get(framework)
        env = dict(os.environ)
        env.update(ad.thread_env(n))
        env.update(ad.process_env())  # what the adapter needs of a process to run its calls there itself
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        # This process's import path: an adapter importable here (from pytest's rootdir, a script's
        # directory) is importable there.
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        self.stderr = tempfile.TemporaryFile()  # what the worker said, quoted when it fails
        self.proc = subprocess.Popen([sys.executable, "-m", "harness.threads", framework, str(n), target or "",
                                      str(os.getpid())], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.stderr, env=env)
        self.lock = threading.Lock()
        self.in_force: dict[str, Any] | None = None

    def run(self, call: Any) -> tuple[Any, Any]:
        """(Output or None, (exception type name, message) or None) of the call in the worker;
        Unsupported where the adapter there cannot run it (a skip with its reason, as in process)."""
        with self.lock:
            if self.proc.poll() is not None:
                raise WorkerError(f"the {self.framework} worker with {self.n} thread(s) exited "
                                  f"(code {self.proc.returncode})")
            try:
                _send(self.proc.stdin, call)
                kind, payload, in_force = _recv(self.proc.stdout.fileno(), TIMEOUT)  # type: ignore[union-attr]
            except (OSError, EOFError, TimeoutError, pickle.UnpicklingError) as e:
                self.close()
                raise WorkerError(f"the {self.framework} worker with {self.n} thread(s) failed: "
                                  f"{type(e).__name__}: {e}{self.said()}") from None
            self.in_force = in_force
        if kind == "unsupported":
            from .adapters import Unsupported

            raise Unsupported(payload)
        return (payload, None) if kind == "ok" else (None, payload)

    def said(self) -> str:
        """The end of the worker's stderr (its traceback, where it died of one), or ""."""
        try:
            self.stderr.seek(0)
            lines = [ln for ln in self.stderr.read().decode(errors="replace").splitlines() if ln.strip()]
        except (OSError, ValueError):
            return ""
        return ("; it said: " + " | ".join(lines[-3:])[-600:]) if lines else ""

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(5)


_workers: dict[tuple[str, int], Worker] = {}
_failed: dict[tuple[str, int], str] = {}
_lock = threading.Lock()


def worker(framework: str, n: int) -> Worker:
    """The worker for (framework, n), started on first use; WorkerError (remembered) if it cannot be."""
    key = (framework, n)
    with _lock:
        if key in _failed:
            raise WorkerError(_failed[key])
        w = _workers.get(key)
        if w is None or w.proc.poll() is not None:
            # One framework's workers at a time: each holds its framework in memory (a Keras one its
            # backend's child too), and eight frameworks' pairs in every job exhausted 24 GB. Items
            # come grouped by framework, so a framework's pair serves all its determinism items.
            for other in [k for k in _workers if k[0] != framework]:
                _workers.pop(other).close()
            try:
                w = _workers[key] = Worker(framework, n)
            except WorkerError as e:
                _failed[key] = str(e)
                raise
            except OSError as e:
                _failed[key] = f"cannot start a worker process: {e}"
                raise WorkerError(_failed[key]) from None
        return w


@atexit.register
def close_all() -> None:
    with _lock:
        for w in _workers.values():
            w.close()
        _workers.clear()


def _main(argv: list[str]) -> None:
    framework, n, target, parent = argv[0], int(argv[1]), argv[2], int(argv[3])
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # what the framework prints goes to stderr, never into the protocol
    from .procs import become_helper

    become_helper(parent)
    from . import adapters as A
    from .runner import WORKER_ENV

    os.environ[WORKER_ENV] = "1"
    if target:
        A.register(framework, A.load_target(target))
    ad = A.get(framework)
    ad.set_threads(n)
    inp = sys.stdin.buffer.fileno()
    while True:
        try:
            call = _recv(inp)
        except EOFError:
            return
        try:
            res: tuple[str, Any, Any] = ("ok", ad.run(call), None)
        except A.Unsupported as e:  # the adapter cannot run it at all: a skip, not the framework's answer
            res = ("unsupported", str(e), None)
        except BaseException as e:  # noqa: BLE001 - the framework's answer, sent back as what it is
            res = ("raised", (type(e).__name__, str(e)[:2000]), None)
        try:
            in_force = ad.threads_in_force()
        except Exception as e:  # noqa: BLE001
            in_force = {"error": str(e)}
        _send(out, (res[0], res[1], in_force))


if __name__ == "__main__":
    _main(sys.argv[1:])
