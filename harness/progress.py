"""The CLI's progress on a long run: a live bar (rich) with the count, the ETA and the results
per status when stderr is a terminal; plain lines (every `every` results, and at least once a
minute) with the same figures when it is not (a CI log, a pipe), so a log reads as a history.

The pytest plugin reports through pytest's own progress ([ 42%], one character per result:
x for a known discrepancy, F for a new failure) and summary.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Hashable, Iterable
from typing import IO, Any

STATUS_ORDER = ("pass", "known", "fail", "error", "skip")


def counts_text(counts: dict[str, int]) -> str:
    keys = [k for k in STATUS_ORDER if k in counts] + sorted(k for k in counts if k not in STATUS_ORDER)
    return " ".join(f"{k} {counts[k]}" for k in keys)


def kind_of(item: Any) -> tuple[str, str, str]:
    """What an item's cost goes by, for the ETA: its framework, mode and check (a compiled
    gradient, an eager forward, an invariance check of one framework)."""
    return (item.framework, item.mode, item.check)


def eta_text(seconds: float | None) -> str:
    if seconds is None or seconds != seconds or seconds == float("inf"):
        return "ETA -"
    s = int(round(seconds))
    return f"ETA {s // 3600}h{s // 60 % 60:02d}m" if s >= 3600 else f"ETA {s // 60}m{s % 60:02d}s"


class Progress:
    """progress.update(done, counts) after each result; progress.print(line) for what the run
    says meanwhile (a failure); progress.close() at the end.

    The ETA. Items differ in cost by orders of magnitude (a compiled first call against a cached
    eager one) and a run meets them in groups, so a mean rate extrapolated from the items done
    says minutes while an hour of slow items waits at the end. Given the `kinds` of all items
    (the CLI's: framework, mode and check) and each result's kind and cost (its seconds by its
    time fields, records.spent_s), the ETA is the elapsed time times the cost left over the cost
    done, the cost left being each kind's items left times that kind's mean cost so far (the
    mean of every kind for a kind not started yet). It gets honest as soon as one item of each
    kind is done. Without kinds, the items' mean rate."""

    def __init__(self, total: int, stream: IO[str] | None = None, every: int = 500, quiet: bool = False,
                 live: bool | None = None, kinds: Iterable[Hashable] | None = None):
        self.total, self.every, self.quiet = total, every, quiet
        self.stream = stream or sys.stderr
        self.start = time.monotonic()
        self.last_line = self.start
        self.left: Counter | None = Counter(kinds) if kinds is not None else None
        self.spent: Counter = Counter()  # seconds of the results done, by kind
        self.seen: Counter = Counter()  # results done with a cost, by kind
        self._bar: Any = None
        tty = bool(getattr(self.stream, "isatty", lambda: False)())
        if (live if live is not None else tty) and not quiet:
            try:
                from rich.console import Console
                from rich.progress import BarColumn, MofNCompleteColumn, Progress as Bar, TextColumn, \
                    TimeElapsedColumn
            except ImportError:  # rich is a dependency; a stripped install prints lines instead
                pass
            else:
                self._bar = Bar(TextColumn("harness"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                                TextColumn("{task.fields[eta]}"), TextColumn("{task.fields[counts]}"),
                                console=Console(file=self.stream), transient=False, refresh_per_second=4)
                self._task = self._bar.add_task("run", total=total, counts="", eta=eta_text(None))
                self._bar.start()

    def eta(self, done: int) -> float | None:
        elapsed = time.monotonic() - self.start
        if done <= 0:
            return None
        cost_done = sum(self.spent.values())
        if self.left is None or cost_done <= 0:
            return elapsed / done * (self.total - done)
        mean = cost_done / sum(self.seen.values())
        cost_left = sum(n * (self.spent[k] / self.seen[k] if self.seen[k] else mean)
                        for k, n in self.left.items() if n > 0)
        return elapsed * cost_left / cost_done

    def line(self, done: int, counts: dict[str, int]) -> str:
        return f"... {done}/{self.total} {counts_text(counts)} {eta_text(self.eta(done))}"

    def update(self, done: int, counts: dict[str, int], kind: Hashable | None = None,
               cost: float | None = None) -> None:
        if self.left is not None and kind is not None:
            self.left[kind] -= 1
            if cost is not None and cost == cost and cost >= 0:
                self.spent[kind] += cost
                self.seen[kind] += 1
        if self._bar is not None:
            self._bar.update(self._task, completed=done, counts=counts_text(counts), eta=eta_text(self.eta(done)))
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
