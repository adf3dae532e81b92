"""The run options shared by the CLI and the pytest plugin: declared once (harness.flags),
parsed by two front ends, validated here.

An unknown value raises HarnessInputError naming the valid ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

from . import adapters as A
from . import cases as K
from .errors import HarnessInputError
from .flags import FLAGS
from .runner import Selection, split_csv, validate_choices
from .vocab import QUICK_FAMILIES, QUICK_TAG, SUITES


def select_suite(cases: list[K.Case], suite: str) -> list[K.Case]:
    if suite == "full":
        return cases
    cs = [c for c in cases if "large" not in c.tags]
    if suite == "quick":
        cs = [c for c in cs if c.family in QUICK_FAMILIES or QUICK_TAG in c.tags]
    return cs


@dataclass
class RunOptions(Selection):
    """What to run (the Selection's fields) and how."""

    cases: list[str] = field(default_factory=list)
    case_filter: str | None = None
    suite: str = "default"
    policy: str = "standard"
    baseline: list[str] = field(default_factory=list)
    known: str | None = None
    timing_reps: int = 3
    cache_dir: str | None = None
    no_cache: bool = False
    isolate: bool = True
    timeout: float = 300.0

    def selection(self) -> Selection:
        return Selection(**{f.name: getattr(self, f.name) for f in fields(Selection)})


def from_values(v: dict[str, Any]) -> RunOptions:
    """Build validated RunOptions from parsed flag values (argparse or pytest)."""
    o = RunOptions()
    fws = split_csv(v.get("framework"))
    if fws:
        validate_choices(fws, A.names(), "framework")
        o.frameworks = fws
    attrs = {"device": "devices", "dtype": "dtypes", "op": "ops", "mode": "modes", "check": "checks"}
    for f in FLAGS:
        vals = split_csv(v.get(f.dest)) if f.kind == "list" and f.dest != "framework" else []
        if not vals:
            continue
        if f.choices is not None:
            validate_choices(vals, list(f.choices), f.dest)
        setattr(o, attrs.get(f.dest, f.dest), vals)
    o.case_filter = v.get("case_filter") or None
    suite = v.get("suite") or "default"
    if suite not in SUITES:
        raise HarnessInputError(f"unknown suite {suite!r}", field="suite", choices=list(SUITES))
    o.suite = suite
    o.policy = v.get("policy") or "standard"
    o.known = v.get("known") or None
    o.variants = not v.get("no_variants", False)
    reps = v.get("timing_reps")
    if reps is not None:
        if int(reps) < 0:
            raise HarnessInputError("must be >= 0", field="timing-reps")
        o.timing_reps = int(reps)
    o.cache_dir = v.get("cache_dir") or None
    o.no_cache = bool(v.get("no_cache", False))
    o.isolate = not v.get("no_isolate", False)
    t = v.get("timeout")
    if t is not None:
        if not (float(t) > 0 and math.isfinite(float(t))):
            raise HarnessInputError(f"{t!r} is not a positive number of seconds", field="timeout")
        o.timeout = float(t)
    return o


def executor(o: RunOptions, session: Any, job: int = 0) -> Any:
    """What runs one item: the session itself, or an isolating worker process (the default),
    so that a crash or a hang in a framework costs one result, not the run."""
    if not o.isolate:
        return session
    from .isolation import Executor

    return Executor(session, policy_ref=o.policy, known_ref=o.known, timeout=o.timeout, job=job)


def load_cases(o: RunOptions) -> list[K.Case]:
    cs = K.load(o.cases or None)
    if not o.cases:  # a user's own case files run whole
        cs = select_suite(cs, o.suite)
    return K.select(cs, o.case_filter)
