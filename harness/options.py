"""The run options shared by the CLI and the pytest plugin: declared once (harness.flags),
parsed by two front ends, validated here.

An unknown value raises HarnessInputError naming the valid ones.
"""

from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from . import adapters as A
from . import cases as K
from . import ops as O
from .errors import HarnessInputError
from .flags import FLAGS
from .runner import Selection, split_csv, validate_choices
from .vocab import QUICK_EAGER_DTYPES, QUICK_FAMILIES, QUICK_JIT_DTYPES, QUICK_TAG, QUICK_TIMING_REPS, SUITES


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
    shard: tuple[int, int] | None = None  # (K, N) of --shard K/N (harness.shards)
    shard_durations: list[str] = field(default_factory=list)
    #: Seconds per unit in the --shard-durations files, read once when the options are checked.
    shard_weights: dict[tuple[str, ...], float] | None = None

    def whole_library(self, shards: bool = False) -> bool:
        """Whether the run holds every result of its suite's library (any frameworks and devices):
        no case filter, case files, shard (with `shards`: or one part of a split), or narrowed
        dtypes, ops, modes, checks or variants; the quick suite's sample is no whole library.
        Only such runs can call a known entry stale (known.judged)."""
        d = Selection()
        narrowed = any(getattr(self, f) != getattr(d, f) for f in
                       ("dtypes", "ops", "modes", "checks", "variants", "jit_dtypes", "eager_dtypes", "sampled"))
        return not (narrowed or self.case_filter or self.cases or (self.shard and not shards)
                    or self.suite == "quick")

    def library(self) -> dict[str, Any] | None:
        """The run_start's `library`: the suite, devices and known file (None: the built-in one) of
        a run of a whole library or of one part of a split of one (whole_library(shards=True));
        None for any other run. known.judged reads it, from one run or from the merged files of
        every worker, shard and machine."""
        if not self.whole_library(shards=True):
            return None
        return {"suite": self.suite, "devices": sorted(self.devices), "known": self.known}

    def selection(self) -> Selection:
        return Selection(**{f.name: getattr(self, f.name) for f in fields(Selection)})


def run_start(o: RunOptions, policy: Any, frameworks: dict[str, Any], skipped: dict[str, str], argv: list[str],
              run_id: str, worker: str | None = None, threads: int | None = None) -> dict[str, Any]:
    """The run_start record of a run of `o` (docs/records.md), the CLI's and the pytest plugin's."""
    from . import records

    meta = records.run_start(policy.name, frameworks, argv, run_id, worker)
    meta["policy_budgets"] = policy.budgets
    meta["policy_invariance"] = policy.invariance
    meta["skipped_frameworks"] = skipped
    meta["worker_threads"] = threads
    if o.shard:
        meta["shard"] = "{}/{}".format(*o.shard)
    meta["library"] = o.library()
    return meta


def from_values(v: dict[str, Any]) -> RunOptions:
    """Build validated RunOptions from parsed flag values (argparse or pytest)."""
    o = RunOptions()
    fws = split_csv(v.get("framework"))
    if fws:
        validate_choices([f for f in fws if not A.is_callable_target(f)], A.names(), "framework")
        for f in fws:
            if A.is_callable_target(f):
                A.get(f)  # imported now: a wrong module or name is bad input, before anything runs
        o.frameworks = fws
    attrs = {"device": "devices", "dtype": "dtypes", "op": "ops", "mode": "modes", "check": "checks"}
    for f in FLAGS:
        vals = split_csv(v.get(f.dest)) if f.kind == "list" and f.dest != "framework" else []
        if not vals:
            continue
        if f.choices is not None:
            validate_choices(vals, list(f.choices), f.dest)
        setattr(o, attrs.get(f.dest, f.dest), vals)
    if any(A.is_callable_target(f) for f in fws) and len(o.ops) != 1:
        raise HarnessInputError("a function under test (--framework module:function) implements one op: give it "
                                "with --op", field="op", choices=list(O.OP_NAMES))
    o.case_filter = v.get("case_filter") or None
    suite = v.get("suite") or "default"
    if suite not in SUITES:
        raise HarnessInputError(f"unknown suite {suite!r}", field="suite", choices=list(SUITES))
    o.suite = suite
    if suite == "quick" and not v.get("cases") and not split_csv(v.get("dtype")):
        o.jit_dtypes = list(QUICK_JIT_DTYPES)  # each case compiles in one of two dtypes (vocab.QUICK_JIT_DTYPES)
        o.eager_dtypes = [list(g) for g in QUICK_EAGER_DTYPES]  # and runs eagerly in two (vocab.QUICK_EAGER_DTYPES)
    # A sampled mode: on every case when the modes are given; left out of the quick suite (vocab.SUITES).
    o.sampled = "all" if split_csv(v.get("mode")) else "none" if suite == "quick" else "sample"
    o.policy = v.get("policy") or "standard"
    o.known = v.get("known") or None
    o.variants = not v.get("no_variants", False)
    reps = v.get("timing_reps")
    if reps is None and suite == "quick":
        o.timing_reps = QUICK_TIMING_REPS  # (vocab.QUICK_TIMING_REPS)
    if reps is not None:
        if int(reps) < 0:
            raise HarnessInputError("must be >= 0", field="timing-reps")
        o.timing_reps = int(reps)
    o.cache_dir = v.get("cache_dir") or None
    o.no_cache = bool(v.get("no_cache", False))
    o.isolate = not v.get("no_isolate", False)
    from . import shards

    o.shard = shards.parse(v.get("shard"))
    if o.shard_durations:
        if o.shard is None:
            raise HarnessInputError("--shard-durations balances --shard K/N: give --shard too", field="shard-durations")
        from .records import read_inputs, require_files

        require_files(o.shard_durations, "shard-durations")
        # Refused here, before any results file is opened: a file of no records.
        o.shard_weights = shards.durations(read_inputs(o.shard_durations, "shard-durations"))
    t = v.get("timeout")
    if t is not None:
        if not (float(t) > 0 and math.isfinite(float(t))):
            raise HarnessInputError(f"{t!r} is not a positive number of seconds", field="timeout")
        o.timeout = float(t)
    return o


def executor(o: RunOptions, session: Any, job: int = 0, jobs: int = 1) -> Any:
    """What runs one item: the session itself, or an isolating worker process (the default),
    so that a crash or a hang in a framework costs one result, not the run. `jobs`: how many such
    workers run at once (the CLI's jobs, pytest-xdist's workers): they share the CPUs (isolation.threads_for)."""
    if not o.isolate:
        return session
    from .isolation import Executor

    return Executor(session, policy_ref=o.policy, known_ref=o.known, timeout=o.timeout, job=job, jobs=jobs)


def load_cases(o: RunOptions) -> list[K.Case]:
    cs = K.load(o.cases or None)
    if not o.cases:  # a user's own case files run whole
        cs = select_suite(cs, o.suite)
    return K.select(cs, o.case_filter)


def input_paths(o: RunOptions) -> list[tuple[str, str]]:
    """Every file a run reads that an output could be pointed at by mistake: the case files
    given and the built-in library (always), the policy, known and baseline files."""
    return input_files(o.cases, o.policy, o.known, o.baseline) + [("shard-durations", p) for p in o.shard_durations]


def input_files(case_paths: list[str], policy: str | None = None, known: str | None = None,
                baseline: list[str] | tuple[str, ...] = ()) -> list[tuple[str, str]]:
    """input_paths for any command (`run`, `search`): the built-in library, the case files and
    the files of the case directories given, and the policy, known and baseline files."""
    cases = [str(f) for f in K.builtin_files()]  # the built-in library, read or not, is never an output
    for p in case_paths:
        q = Path(p)
        cases += [str(f) for f in sorted(q.glob("*.json")) + sorted(q.glob("*.toml"))] if q.is_dir() else [p]
    out = [("cases", c) for c in cases] + [("baseline", b) for b in baseline]
    if known:
        out.append(("known", known))
    if policy and policy.endswith(".toml"):  # a built-in policy is a name, not a path
        out.append(("policy", policy))
    return out


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet)
        return os.path.abspath(a) == os.path.abspath(b)


def check_outputs(outputs: list[tuple[str, str | None]], inputs: list[tuple[str, str]]) -> None:
    """One up-front check of every output path, before anything runs or is written (issue 21):
    no output is one of the inputs or another output (the HTML report over the results, the
    results over a case file), and each can be written: it is a regular file or absent, and its
    directory exists or can be made and takes a new file (a read-only directory, a parent that
    is a file, /proc are refused here, not after a whole run). Directories made by the probe are
    removed again when an output is refused."""
    given = [(f, p) for f, p in outputs if p]
    made: list[Path] = []
    try:
        for i, (fld, p) in enumerate(given):
            for other, q in inputs:
                if _same_file(p, q):
                    raise HarnessInputError(f"is also the {other} file this run reads: writing it would destroy it; "
                                            "choose another path", file=p, field=fld)
            for other, q in given[:i]:
                if _same_file(p, q):
                    raise HarnessInputError(f"is also the {other} output: one would overwrite the other", file=p,
                                            field=fld)
            _probe_output(Path(p), fld, made)
    except HarnessInputError:
        for d in reversed(made):
            with contextlib.suppress(OSError):
                d.rmdir()
        raise


def _probe_output(path: Path, fld: str, made: list[Path]) -> None:
    """Whether `path` can be written as a file, found by trying: open for appending (an existing
    file keeps its content), or create and remove again."""
    p = str(path)
    if path.is_dir():
        raise HarnessInputError("is a directory, not a file", file=p, field=fld)
    if path.exists() and not path.is_file():
        raise HarnessInputError("is not a regular file (a device, a FIFO, a socket): choose a file path", file=p,
                                field=fld)
    missing = [d for d in (path.parent, *path.parent.parents) if not d.exists()]
    anc = path.parent.parents[len(missing) - 1] if missing else path.parent
    if not anc.is_dir():
        raise HarnessInputError(f"cannot be written: {str(anc)!r} is a file, not a directory", file=p, field=fld)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        made.extend(reversed(missing))
        existed = path.exists()
        os.close(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644))
        if not existed:
            os.unlink(path)
    except OSError as e:
        raise HarnessInputError(f"cannot be written: {e.strerror or e}", file=p, field=fld) from None
