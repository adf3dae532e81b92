"""Comparing two runs: new failures, fixed results, error changes, framework version changes.

Results are matched by `records.key`. A result failing now (fail or error) that passed, was
skipped or did not exist before is a new failure (`was` says which; "absent" marks a new
result). One that failed before and passes now is fixed. An error change is a change of
max_ulp by more than the threshold (in ULPs) *and* by more than a factor of two, so that noise
around zero and small drifts of large errors are both left out.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import records
from .merge import Merged, merge
from .numbers import measure

FAILING = ("fail", "error")


def label(rec: dict[str, Any]) -> str:
    """A one-line name of a result, like the pytest id."""
    op = rec.get("op") or "?"
    if rec.get("variant") not in (None, "default"):
        op = f"{op}:{rec['variant']}"
    check = rec.get("check") if not rec.get("cotangent") else f"{rec.get('check')}.{rec['cotangent']}"
    return "-".join(str(rec.get(k)) for k in ("framework", "device", "dtype", "mode")) + \
        f"-{op}-{check}-{rec.get('case_id')}"


@dataclass
class Change:
    key: tuple
    old: dict[str, Any] | None
    new: dict[str, Any] | None

    @property
    def name(self) -> str:
        return label(self.new or self.old or {})

    @property
    def was(self) -> str:
        return "absent" if self.old is None else str(self.old.get("status"))

    @property
    def known(self) -> bool:
        return bool(self.new and self.new.get("known"))

    def to_json(self) -> dict[str, Any]:
        rec = self.new or self.old or {}
        out = {k: rec.get(k) for k in records.KEY_FIELDS}
        out.update(was=self.was, now=None if self.new is None else self.new.get("status"),
                   old_max_ulp=None if self.old is None else self.old.get("max_ulp"),
                   new_max_ulp=None if self.new is None else self.new.get("max_ulp"),
                   special=(self.new or {}).get("special"), known=((self.new or {}).get("known") or {}).get("id"),
                   message=_first_line((self.new or {}).get("message")))
        return out


@dataclass
class Diff:
    old_paths: list[str]
    new_paths: list[str]
    threshold_ulp: float
    new_failures: list[Change] = field(default_factory=list)
    fixed: list[Change] = field(default_factory=list)
    error_changes: list[Change] = field(default_factory=list)
    #: {"framework", "old": [versions], "new": [versions]}
    version_changes: list[dict[str, Any]] = field(default_factory=list)
    #: {"old": [cpus], "new": [cpus]} when the runs ran on other CPUs (Merged.cpus), else None:
    #: with the same versions, a changed verdict can come from the CPU's kernels alone.
    cpu_change: dict[str, list[str]] | None = None
    added: int = 0  # results only in the new run
    removed: int = 0  # results only in the old run
    n_old: int = 0
    n_new: int = 0

    @property
    def new_results(self) -> list[Change]:
        """New failures that did not exist in the old run at all."""
        return [c for c in self.new_failures if c.old is None]

    @property
    def has_new_failures(self) -> bool:
        """True when a result fails now that did not fail before and no known discrepancy covers it."""
        return any(not c.known for c in self.new_failures)

    def to_json(self) -> dict[str, Any]:
        return {"old": self.old_paths, "new": self.new_paths, "threshold_ulp": self.threshold_ulp,
                "n_old": self.n_old, "n_new": self.n_new, "added": self.added, "removed": self.removed,
                "new_failures": [c.to_json() for c in self.new_failures],
                "fixed": [c.to_json() for c in self.fixed],
                "error_changes": [c.to_json() for c in self.error_changes],
                "version_changes": self.version_changes, "cpu_change": self.cpu_change,
                "has_new_failures": self.has_new_failures}

    def to_text(self, limit: int = 50) -> str:
        lines = [f"diff {', '.join(self.old_paths)} -> {', '.join(self.new_paths)}",
                 f"  {self.n_old} old results, {self.n_new} new results ({self.added} added, {self.removed} removed)"]
        for vc in self.version_changes:
            lines.append(f"  framework {vc['framework']}: {', '.join(vc['old']) or '-'} -> {', '.join(vc['new']) or '-'}")
        if self.cpu_change:
            lines.append(f"  cpu: {'; '.join(self.cpu_change['old']) or '-'} -> {'; '.join(self.cpu_change['new']) or '-'}")

        def section(title: str, items: list[Change], fmt) -> None:
            lines.append(f"{title}: {len(items)}")
            for c in items[:limit]:
                lines.append("  " + fmt(c))
            if len(items) > limit:
                lines.append(f"  ... and {len(items) - limit} more")

        def fmt_new(c: Change) -> str:
            n = c.new or {}
            tag = " [new result]" if c.old is None else f" [was {c.was}]"
            known = f" (known: {n['known'].get('id')})" if n.get("known") else ""
            return f"{c.name}: {n.get('status')} {n.get('special') or ''}{tag}{known} {_first_line(n.get('message'))}".rstrip()

        section("new failures", self.new_failures, fmt_new)
        section("fixed", self.fixed, lambda c: f"{c.name}: {c.was} -> {(c.new or {}).get('status')}")
        section(f"error changes (> {self.threshold_ulp:g} ULP and > 2x)", self.error_changes,
                lambda c: f"{c.name}: max_ulp {_fmt(c.old['max_ulp'])} -> {_fmt(c.new['max_ulp'])}")
        unknown = sum(1 for c in self.new_failures if not c.known)
        lines.append(f"result: {unknown} new failure(s) not covered by a known discrepancy" if unknown
                     else "result: no new failures")
        return "\n".join(lines)


def _fmt(v: Any) -> str:
    return "-" if v is None else (f"{v:.4g}" if isinstance(v, (int, float)) else str(v))


def _first_line(s: Any) -> str:
    return str(s).strip().splitlines()[0][:160] if s else ""


def _changed(old: float, new: float, threshold: float) -> bool:
    if abs(new - old) <= threshold:
        return False
    lo, hi = sorted((abs(old), abs(new)))
    return lo == 0 or hi / lo > 2.0


def diff(old_paths: Iterable[str | Path], new_paths: Iterable[str | Path], threshold_ulp: float = 1.0) -> Diff:
    old_paths, new_paths = [str(p) for p in old_paths], [str(p) for p in new_paths]
    return diff_merged(merge(old_paths), merge(new_paths), old_paths, new_paths, threshold_ulp)


def diff_merged(old: Merged, new: Merged, old_paths: list[str], new_paths: list[str],
                threshold_ulp: float = 1.0) -> Diff:
    d = Diff(old_paths, new_paths, threshold_ulp, n_old=len(old.results), n_new=len(new.results))
    before = {records.key(r): r for r in old.results}
    now_keys = set()
    for rec in new.results:
        k = records.key(rec)
        now_keys.add(k)
        prev = before.get(k)
        st, pst = rec.get("status"), None if prev is None else prev.get("status")
        if prev is None:
            d.added += 1
        if st in FAILING and pst not in FAILING:
            d.new_failures.append(Change(k, prev, rec))
        elif pst in FAILING and st == "pass":
            d.fixed.append(Change(k, prev, rec))
        if prev is not None:
            a, b = measure(prev.get("max_ulp")), measure(rec.get("max_ulp"))
            if a is not None and b is not None and _changed(a, b, threshold_ulp):
                d.error_changes.append(Change(k, prev, rec))
    d.removed = sum(1 for k in before if k not in now_keys)
    d.new_failures.sort(key=lambda c: (c.known, c.old is None, c.name))
    d.fixed.sort(key=lambda c: c.name)
    d.error_changes.sort(key=lambda c: -abs((measure(c.new["max_ulp"]) or 0.0) - (measure(c.old["max_ulp"]) or 0.0)))  # type: ignore[index]
    ov, nv = old.framework_versions(), new.framework_versions()
    for fw in sorted(set(ov) | set(nv)):
        if ov.get(fw, []) != nv.get(fw, []):  # a framework that appears or goes away counts too
            d.version_changes.append({"framework": fw, "old": ov.get(fw, []), "new": nv.get(fw, [])})
    if old.cpus() != new.cpus():
        d.cpu_change = {"old": old.cpus(), "new": new.cpus()}
    return d
