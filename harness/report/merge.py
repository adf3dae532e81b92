"""Merging results files (CI shards) into one set of results.

Each file is read on its own (so the report can say which file is incomplete or damaged), then
the results are merged: one result per key (`records.KEY_FIELDS`), the last one read winning,
every duplicate listed so that the report can show it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import cause, records


@dataclass
class FileInfo:
    """What one results file held and what was wrong with it."""

    path: str
    runs: list[dict[str, Any]] = field(default_factory=list)
    ends: list[dict[str, Any]] = field(default_factory=list)
    n_results: int = 0
    problems: list[str] = field(default_factory=list)
    #: framework -> framework_version values seen in this file's results
    versions: dict[str, set[str]] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        """A file is complete when every run it started has a run_end that says so.

        Counted, not matched by run_id: a run_end whose run_id differs from its run_start is
        reported as a problem, not as an interrupted run."""
        if not self.ends or len(self.ends) < max(1, len(self.runs)):
            return False
        return all(e.get("complete", True) is not False for e in self.ends)

    @property
    def incomplete_reason(self) -> str:
        if not self.ends:
            return "no run_end record (interrupted or killed run)"
        if len(self.ends) < len(self.runs):
            return f"{len(self.runs)} run_start but only {len(self.ends)} run_end record(s)"
        if any(e.get("complete", True) is False for e in self.ends):
            return "run_end says complete: false"
        return ""


@dataclass
class Duplicate:
    """A key that more than one result carried; the last one read is kept."""

    key: dict[str, Any]
    files: list[str]
    statuses: list[str | None]


@dataclass
class Merged:
    results: list[dict[str, Any]] = field(default_factory=list)
    files: list[FileInfo] = field(default_factory=list)
    duplicates: list[Duplicate] = field(default_factory=list)
    #: index of each kept result -> the file it came from (same order as `results`)
    origins: list[str] = field(default_factory=list)

    @property
    def runs(self) -> list[dict[str, Any]]:
        return [r for f in self.files for r in f.runs]

    @property
    def problems(self) -> list[str]:
        return [p for f in self.files for p in f.problems]

    @property
    def incomplete(self) -> list[FileInfo]:
        return [f for f in self.files if not f.complete]

    @property
    def complete(self) -> bool:
        return bool(self.files) and not self.incomplete

    def stale_known(self, entries: list[Any] | None = None) -> list[str]:
        """The known entries (None: the built-in ones) that excused no result though the complete
        files hold a whole library's results of their framework, however the runs were split
        (known.judged, known.stale): the warnings, one per entry."""
        from ..known import load_known, stale_in

        runs = [r for f in self.files if f.complete for r in f.runs]
        return stale_in(load_known() if entries is None else entries, self.results, runs)

    def cpus(self) -> list[str]:
        """The CPUs the runs ran on (cpu_text of their headers), sorted."""
        return sorted({t for r in self.runs if (t := cpu_text((r.get("machine") or {}).get("cpu")))})

    def framework_versions(self) -> dict[str, list[str]]:
        """framework -> sorted versions, from run_start metadata and the records themselves."""
        out: dict[str, set[str]] = {}
        for f in self.files:
            for run in f.runs:
                for fw, meta in (run.get("frameworks") or {}).items():
                    vs = (meta or {}).get("versions") if isinstance(meta, dict) else None
                    v = (vs.get(fw) or next(iter(vs.values()), None)) if isinstance(vs, dict) and vs else None
                    if v:
                        out.setdefault(fw, set()).add(str(v))
            for fw, vs in f.versions.items():
                out.setdefault(fw, set()).update(vs)
        return {fw: sorted(vs) for fw, vs in sorted(out.items())}


def cpu_text(c: Any) -> str:
    """A run header's CPU (records.cpu) in a few words: its model and vector features."""
    if not isinstance(c, dict):
        return ""
    feats = c.get("features")
    return " ".join(x for x in (str(c.get("model") or ""), f"({' '.join(map(str, feats))})" if feats else "") if x)


def merge(paths: Iterable[str | Path]) -> Merged:
    """Read results files and merge their results (last one wins on duplicate keys)."""
    m = Merged()
    kept: dict[tuple, int] = {}
    seen: dict[tuple, list[tuple[str, str | None]]] = {}
    for p in paths:
        p = str(p)
        info = FileInfo(p)
        m.files.append(info)
        if not Path(p).is_file():
            info.problems.append(f"{p}: no such file")
            continue
        loaded = records.read([p])
        info.runs, info.ends = loaded.runs, loaded.ends
        info.problems.extend(loaded.problems)
        info.n_results = len(loaded.results)
        if not loaded.runs and loaded.results:
            info.problems.append(f"{p}: no run_start record (run metadata missing)")
        started = {r.get("run_id") for r in loaded.runs}
        for e in loaded.ends:
            if started and e.get("run_id") not in started:
                info.problems.append(f"{p}: run_end run_id {e.get('run_id')!r} matches no run_start "
                                     f"(run_start ids: {', '.join(sorted(map(str, started)))})")
        for rec in loaded.results:
            fw, v = rec.get("framework"), rec.get("framework_version")
            if fw and v:
                info.versions.setdefault(fw, set()).add(str(v))
            k = records.key(rec)
            seen.setdefault(k, []).append((p, rec.get("status")))
            if k in kept:
                m.results[kept[k]] = rec
                m.origins[kept[k]] = p
            else:
                kept[k] = len(m.results)
                m.results.append(rec)
                m.origins.append(p)
    for k, occ in seen.items():
        if len(occ) > 1:
            m.duplicates.append(Duplicate(dict(zip(records.KEY_FIELDS, k)), [o[0] for o in occ], [o[1] for o in occ]))
    # Causes over everything merged: shards that ran different frameworks see each other here.
    cause.assign(m.results)
    return m
