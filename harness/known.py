"""Known discrepancies (documented framework deviations, as data) and baselines (a previous
run's results file). Both turn a failing result into a known one; neither hides it: the record
keeps its status and measurements and gains a `known` field saying why it is expected.
"""

from __future__ import annotations

import fnmatch
import tomllib
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import records
from .errors import HarnessInputError

KNOWN_FILE = Path(__file__).resolve().parent / "known.toml"
ENTRY_KEYS = {"id", "description", "framework", "versions", "ops", "checks", "cotangents", "cases", "dtypes",
              "devices", "modes", "variants", "special", "status", "link", "finding"}
LIST_KEYS = ("ops", "checks", "cotangents", "cases", "dtypes", "devices", "modes", "variants", "special", "status",
             "versions")


@dataclass
class Known:
    id: str
    description: str
    framework: str
    match: dict[str, list[str]] = field(default_factory=dict)
    link: str = ""
    finding: bool = False  # a behaviour the harness reports as a finding (docs and report)

    def matches(self, rec: dict[str, Any]) -> bool:
        if rec.get("framework") != self.framework:
            return False
        fields = {"ops": "op", "checks": "check", "cotangents": "cotangent", "dtypes": "dtype", "devices": "device",
                  "modes": "mode", "variants": "variant", "special": "special", "status": "status"}
        for k, f in fields.items():
            if k in self.match and rec.get(f) not in self.match[k]:
                return False
        if "cases" in self.match and not any(fnmatch.fnmatchcase(rec.get("case_id", ""), p) for p in self.match["cases"]):
            return False
        if "versions" in self.match:
            v = str(rec.get("framework_version", ""))
            if not any(v.startswith(p) for p in self.match["versions"]):
                return False
        return True

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "description": self.description, "link": self.link, "source": "known"}


def load_known(path: str | Path | None = None) -> list[Known]:
    p = Path(path) if path else KNOWN_FILE
    if not p.exists():
        if path:
            raise HarnessInputError("no such known-discrepancies file", file=str(p))
        return []
    try:
        data = tomllib.loads(p.read_text())
    except tomllib.TOMLDecodeError as e:
        raise HarnessInputError(f"not valid TOML: {e}", file=str(p)) from None
    out = []
    for i, e in enumerate(data.get("known", [])):
        unknown = set(e) - ENTRY_KEYS
        if unknown:
            raise HarnessInputError(f"known[{i}]: unknown key(s) {sorted(unknown)}", file=str(p),
                                    field=sorted(unknown)[0], choices=sorted(ENTRY_KEYS))
        for req in ("id", "description", "framework"):
            if not e.get(req):
                raise HarnessInputError(f"known[{i}] needs {req!r}", file=str(p), field=req)
        match = {k: ([e[k]] if isinstance(e[k], str) else list(e[k])) for k in LIST_KEYS if k in e}
        _validate_entry(e, match, str(p), i)
        out.append(Known(e["id"], e["description"].strip(), e["framework"], match, e.get("link", ""),
                         bool(e.get("finding", False))))
    return out


def _validate_entry(e: dict[str, Any], match: dict[str, list[str]], file: str, i: int) -> None:
    """Names must be real: a misspelt one would silently match nothing."""
    from . import adapters as A
    from . import dtypes as D
    from . import ops as O
    from .verdict import ALL_SPECIAL

    if e["framework"] not in A.names():
        raise HarnessInputError(f"known[{i}]: unknown framework {e['framework']!r}", file=file, field="framework",
                                choices=A.names())
    valid = {"ops": O.OP_NAMES, "checks": O.CHECKS, "cotangents": list(O.COTANGENTS) + ["given"],
             "dtypes": D.DTYPE_NAMES, "devices": O.DEVICES,
             "modes": O.MODES, "status": ["pass", "fail", "error", "skip"],
             "special": ALL_SPECIAL}
    for k, vals in match.items():
        if not all(isinstance(v, str) for v in vals):
            raise HarnessInputError(f"known[{i}]: {k} must be strings", file=file, field=k)
        bad = [v for v in vals if k in valid and v not in valid[k]]
        if bad:
            raise HarnessInputError(f"known[{i}]: unknown {k[:-1] if k.endswith('s') else k} {bad[0]!r}", file=file,
                                    field=k, choices=valid[k])


class Baseline:
    """Failures of a previous run. A result that failed there and fails the same way now
    (same status and special class) is known; a new failure is not; one that passes now is
    listed as fixed."""

    def __init__(self, paths: list[str]):
        for p in paths:
            if not Path(p).exists():
                raise HarnessInputError("no such baseline file", file=p, field="baseline")
        loaded = records.read(paths)
        self.paths = paths
        self.failed: dict[tuple, dict[str, Any]] = {}
        for r in loaded.results:
            if r.get("status") in ("fail", "error"):
                self.failed[records.key(r)] = r
        self.seen: set[tuple] = set()
        self.fixed: list[dict[str, Any]] = []

    def apply(self, rec: dict[str, Any]) -> None:
        k = records.key(rec)
        old = self.failed.get(k)
        if old is None:
            return
        self.seen.add(k)
        if rec["status"] not in ("fail", "error"):
            self.fixed.append(rec)
            rec["baseline"] = "fixed"
            return
        if old.get("status") == rec["status"] and old.get("special") == rec.get("special"):
            rec["baseline"] = "known"
            if not rec.get("known"):
                rec["known"] = {"id": "baseline", "description": f"failed the same way in {', '.join(self.paths)}",
                                "link": "", "source": "baseline"}
        else:
            rec["baseline"] = "changed"

    def unmatched(self, ran: set[tuple]) -> list[tuple]:
        """Baseline failures whose key this run executed but never matched (should not happen)
        plus those this run did not execute at all: each gets a warning."""
        return [k for k in self.failed if k not in self.seen and k in ran]

    def warn_unmatched(self, ran: set[tuple]) -> None:
        for k in self.unmatched(ran):
            warnings.warn(f"baseline entry {dict(zip(records.KEY_FIELDS, k))} matched no result", stacklevel=2)
