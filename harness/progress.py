"""The CLI's progress on a long run: a live bar (rich) with the count, the ETA and the results
per status when stderr is a terminal; plain lines (every `every` results, and at least once a
minute) with the same figures when it is not (a CI log, a pipe), so a log reads as a history.

The pytest plugin reports through pytest's own progress ([ 42%], one character per result:
x for a known discrepancy, F for a new failure) and summary.
"""

from __future__ import annotations

import sys
import time
from typing import IO, Any

STATUS_ORDER = ("pass", "known", "fail", "error", "skip")


def counts_text(counts: dict[str, int]) -> str:
    keys = [k for k in STATUS_ORDER if k in counts] + sorted(k for k in counts if k not in STATUS_ORDER)
    return " ".join(f"{k} {counts[k]}" for k in keys)


def eta_text(seconds: float | None) -> str:
    if seconds is None or seconds != seconds or seconds == float("inf"):
        return "ETA -"
    s = int(round(seconds))
    return f"ETA {s // 3600}h{s // 60 % 60:02d}m" if s >= 3600 else f"ETA {s // 60}m{s % 60:02d}s"


class Progress:
    """progress.update(done, counts) after each result; progress.print(line) for what the run
    says meanwhile (a failure); progress.close() at the end."""

    def __init__(self, total: int, stream: IO[str] | None = None, every: int = 500, quiet: bool = False,
                 live: bool | None = None):
        self.total, self.every, self.quiet = total, every, quiet
        self.stream = stream or sys.stderr
        self.start = time.monotonic()
        self.last_line = self.start
        self._bar: Any = None
        tty = bool(getattr(self.stream, "isatty", lambda: False)())
        if (live if live is not None else tty) and not quiet:
            try:
                from rich.console import Console
                from rich.progress import BarColumn, MofNCompleteColumn, Progress as Bar, TextColumn, \
                    TimeElapsedColumn, TimeRemainingColumn
            except ImportError:  # rich is a dependency; a stripped install prints lines instead
                pass
            else:
                self._bar = Bar(TextColumn("harness"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                                TextColumn("ETA"), TimeRemainingColumn(), TextColumn("{task.fields[counts]}"),
                                console=Console(file=self.stream), transient=False, refresh_per_second=4)
                self._task = self._bar.add_task("run", total=total, counts="")
                self._bar.start()

    def eta(self, done: int) -> float | None:
        elapsed = time.monotonic() - self.start
        return None if done <= 0 else elapsed / done * (self.total - done)

    def line(self, done: int, counts: dict[str, int]) -> str:
        return f"... {done}/{self.total} {counts_text(counts)} {eta_text(self.eta(done))}"

    def update(self, done: int, counts: dict[str, int]) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=done, counts=counts_text(counts))
            return
        now = time.monotonic()
        if not self.quiet and done < self.total and (done % self.every == 0 or now - self.last_line >= 60):
            self.last_line = now
            print(self.line(done, counts), file=self.stream, flush=True)

    def print(self, text: str, stream: IO[str] | None = None) -> None:
        if self._bar is not None:  # above the live bar, not through it
            self._bar.console.print(text, markup=False, highlight=False, soft_wrap=True)
        else:
            print(text, file=stream or sys.stdout, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
