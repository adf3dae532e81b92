"""The lifetime of the harness's helper processes (isolating workers, reference pool workers).

A helper never decides what an interrupt means and never outlives the process that started it:
- SIGINT and SIGTERM are ignored in a helper. Ctrl-C and `kill -TERM` of a process group reach
  every process in it; the run's main process alone acts on them (it stops the run, marks the
  results incomplete and kills its helpers), so the item in flight is never turned into an
  invented error record by a helper that died first.
- A helper whose parent is gone (SIGKILLed, say) exits within `PERIOD` seconds, even in the
  middle of a hung framework call: orphaned, it is re-parented (to init or a subreaper), which
  getppid() shows. A watchdog thread checks; a call that hangs without releasing the GIL is the
  one case it cannot end (the kernel's PR_SET_PDEATHSIG could, but it fires when the parent's
  *thread* that started the helper ends, and job threads end before the run does).
"""

from __future__ import annotations

import os
import signal
import threading
import time

#: How often a helper checks that its parent is still there (seconds).
PERIOD = 0.5


def become_helper(parent: int | None = None) -> None:
    """Call first thing in a helper process: ignore interrupts, exit when `parent` (default:
    the current parent) is gone."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    parent = os.getppid() if parent is None else parent
    if os.getppid() != parent:  # gone already, between the fork and this call
        os._exit(0)

    def watch() -> None:
        while True:
            time.sleep(PERIOD)
            if os.getppid() != parent:
                os._exit(0)

    threading.Thread(target=watch, name="harness-parent-watch", daemon=True).start()


def end(proc, conn, wait: float = 5, kill: bool = False) -> None:
    """End a multiprocessing helper that serves requests over `conn` and stops at a None: asked
    to finish and given `wait` seconds, then killed (at once with `kill`: the run is stopping or
    a request is in flight). The connection is closed either way."""
    if proc is not None and proc.is_alive():
        if not kill:
            try:
                conn.send(None)
            except (OSError, ValueError):
                pass
            proc.join(wait)
        if proc.is_alive():
            proc.kill()
        proc.join(5)
    if conn is not None:
        try:
            conn.close()
        except OSError:
            pass
