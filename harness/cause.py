"""Why a result failed, told by its peers: the other implementations that ran the same input.

A failing result (status `fail` or `error`, known or not; never a harness error) gets a `cause`:

- `framework`: at least one peer passes the same input (same case, op, check, cotangent, dtype,
  device and mode): the input is solvable within the budget, so this is the implementation's
  own defect;
- `special`: every peer fails too and this result's failure is a special-value class
  (`nan_expected_finite`, `silent_invalid`, `subnormal_flushed`, a raised error, ...): a
  convention the implementations share and the semantics (docs/semantics.md) do not;
- `shared`: every peer fails too, with an ordinary rounding error over budget: the problem's
  conditioning (or the budget) rather than one implementation;
- `alone`: no peer ran the input (one framework installed, the others skipped it), so nothing
  tells these apart.

A peer is any other implementation: another framework, or another API variant of the same one
(`torch:composed` is a peer of `torch`), since a variant is a different code path. Beside the
cause, `peers` holds each peer's status, special class, max ULP and budget utilisation, so a
reader sees how far the others were.

The cause is a function of a set of results: the CLI and the plugin write it into the results
file when a run completes (`annotate_file`), and `harness report` recomputes it over every file
it merges (`assign`), so shards that ran different frameworks still see each other.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from . import records

CAUSES = ("framework", "shared", "special", "alone")
#: What makes two results the same input (the report's cross-framework groups use it too).
PEER_FIELDS = ("case_id", "op", "check", "cotangent", "dtype", "device", "mode")
#: What a peer's summary holds (and the whole of what annotate_file keeps of a passing result).
SUMMARY_FIELDS = ("status", "special", "max_ulp", "excess")


def impl_label(rec: dict[str, Any]) -> str:
    v = rec.get("variant")
    return str(rec.get("framework")) if v in (None, "default") else f"{rec.get('framework')}:{v}"


def failing(rec: dict[str, Any]) -> bool:
    """A result that gets a cause: a framework's failure (a harness error is nobody's)."""
    return rec.get("status") in ("fail", "error") and rec.get("special") != "harness_error"


def ran(rec: dict[str, Any]) -> bool:
    """A result that is a peer: the framework answered (not a skip, not a harness error)."""
    return rec.get("status") in ("pass", "fail", "error") and rec.get("special") != "harness_error"


def summary(rec: dict[str, Any]) -> dict[str, Any]:
    """What `peers` holds of a peer's result."""
    return {k: rec.get(k) for k in SUMMARY_FIELDS}


def _group(rec: dict[str, Any]) -> tuple:
    return tuple(rec.get(f) for f in PEER_FIELDS)


def classify(rec: dict[str, Any], peers: dict[str, dict[str, Any]]) -> str:
    """The cause of one failing result given its peers' summaries."""
    if not peers:
        return "alone"
    if any(p.get("status") == "pass" for p in peers.values()):
        return "framework"
    if rec.get("special") not in (None, "match"):
        return "special"
    return "shared"


def causes(results: Iterable[dict[str, Any]]) -> dict[int, tuple[str, dict[str, dict[str, Any]]]]:
    """index in `results` -> (cause, peers) for each failing result."""
    recs = list(results)
    groups: dict[tuple, dict[str, dict[str, Any]]] = {}
    for rec in recs:
        if ran(rec):
            groups.setdefault(_group(rec), {})[impl_label(rec)] = summary(rec)
    out = {}
    for i, rec in enumerate(recs):
        if not failing(rec):
            continue
        me = impl_label(rec)
        peers = {lab: s for lab, s in sorted(groups.get(_group(rec), {}).items()) if lab != me}
        out[i] = (classify(rec, peers), peers)
    return out


def assign(results: list[dict[str, Any]]) -> None:
    """Set `cause` and `peers` on every failing result (and clear them on the others)."""
    found = causes(results)
    for i, rec in enumerate(results):
        if i in found:
            rec["cause"], rec["peers"] = found[i]
        else:
            rec.pop("cause", None)
            rec.pop("peers", None)


def annotate_file(path: str | Path, run_id: str) -> int:
    """Write the causes of one run's failing results into its results file; returns how many.

    Two passes over the file, so memory holds summaries, not records: the first reads each
    result of the run (its key fields and SUMMARY_FIELDS), the second rewrites the lines of
    the failing ones with `cause` and `peers`, every other line byte for byte (read and written
    as bytes: an undecodable or CRLF line stays as it was). The new file takes the old one's
    permissions and replaces it in one rename (of the file a symbolic link points to, not the
    link): an interruption leaves the old file whole."""
    path = Path(os.path.realpath(path))
    slim: list[dict[str, Any]] = []
    lines: list[int] = []
    with open(path, "rb") as f:
        for n, line in enumerate(f):
            rec = _result_of_run(line, run_id)
            if rec is not None:
                slim.append({k: rec.get(k) for k in (*PEER_FIELDS, "framework", "variant", *SUMMARY_FIELDS)})
                lines.append(n)
    found = {lines[i]: c for i, c in causes(slim).items()}
    if not found:
        return 0
    tmp = path.with_name(path.name + ".cause.tmp")
    try:
        with open(path, "rb") as f, open(tmp, "wb") as out:
            for n, line in enumerate(f):
                if n in found:
                    end = line[len(line.rstrip(b"\r\n")):]
                    rec = json.loads(line)
                    rec["cause"], rec["peers"] = found[n]
                    line = json.dumps(records.jsonable(rec), ensure_ascii=False, allow_nan=False).encode() + end
                out.write(line)
            out.flush()
            os.fsync(out.fileno())
        shutil.copymode(path, tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return len(found)


def _result_of_run(line: bytes, run_id: str) -> dict[str, Any] | None:
    if f'"{run_id}"'.encode() not in line:  # cheap: most lines of another run are skipped unparsed
        return None
    try:
        rec = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    if not isinstance(rec, dict) or rec.get("kind", "result") != "result" or rec.get("run_id") != run_id:
        return None
    return rec
