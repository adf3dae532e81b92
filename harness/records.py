"""Result records: one JSON object per line, streamed and flushed as produced.

A results file holds a `run_start` record (run metadata), then `result` records, then a
`run_end` record. A file without `run_end` is an incomplete run (interrupted or killed); a
truncated last line is tolerated and reported. The schema is documented in docs/records.md.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
import subprocess
import sys
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, IO, Iterable

import numpy as np

from . import SCHEMA_VERSION, __version__
from .vocab import INVARIANCE_CHECKS

#: Outputs of at most this many elements carry their input, output and reference values.
SMALL = 64
#: The fields that identify a result: one record per such key in a run.
KEY_FIELDS = ("case_id", "op", "check", "cotangent", "variant", "framework", "device", "dtype", "mode")
#: What a result spent: the framework's first call and timed calls, the reference, the verdict.
TIME_FIELDS = ("time_first_call_s", "time_framework_s", "time_reference_s", "time_verdict_s")
#: The fields of a result that two runs of the same item may differ in without any verdict or
#: value differing: how long it took, whether a cache or a compiled program was there already,
#: and which run, job or worker it was.
INCIDENTAL_FIELDS = frozenset({*TIME_FIELDS, "reference_cached", "program_new", "run_id", "job", "worker"})


def spent_s(rec: dict[str, Any], timing_reps: int = 3) -> float:
    """The worker-seconds a result took by its time fields: the first call, the timed calls
    (`time_framework_s` is their median; a run repeats the call `timing_reps` times, and with 0
    it is the first call's time again), the reference and the verdict. An invariance check's
    record gives its whole time, every variant's calls, in both framework fields: counted once.
    What splits shards by duration and weighs the progress's ETA."""
    reps = 0 if rec.get("check") in INVARIANCE_CHECKS else timing_reps
    t = 0.0
    for f in TIME_FIELDS:
        v = rec.get(f)
        if isinstance(v, (int, float)) and v == v and v >= 0:
            t += float(v) * (reps if f == "time_framework_s" else 1)
    return t


def test_id(framework: Any, device: Any, dtype: Any, mode: Any, op: Any, variant: Any, check: Any,
            cotangent: Any, case_id: Any) -> str:
    """A result's test id (`torch-cpu-float32-eager-log_softmax:composed-grad.ones-seed/x`): what
    pytest names the test, the CLI prints and records carry as `test_id`."""
    op = op if variant in (None, "default") else f"{op}:{variant}"
    check = check if not cotangent else f"{check}.{cotangent}"
    return f"{framework}-{device}-{dtype}-{mode}-{op}-{check}-{case_id}"


def key(rec: dict[str, Any]) -> tuple:
    return tuple(rec.get(k) for k in KEY_FIELDS)


def jsonable(v: Any) -> Any:
    """Numbers, lists and arrays with non-finite values as the strings "inf", "-inf", "nan"."""
    if isinstance(v, np.ndarray):
        return jsonable(v.tolist())
    if isinstance(v, (list, tuple)):
        return [jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): jsonable(x) for k, x in v.items()}
    if isinstance(v, (np.floating, float)):
        f = float(v)
        if math.isnan(f):
            return "nan"
        if math.isinf(f):
            return "inf" if f > 0 else "-inf"
        return f
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.bool_):
        return bool(v)
    return v


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def git_commit() -> str | None:
    try:
        root = Path(__file__).resolve().parent.parent
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


#: The CPU features that change what a framework computes on the CPU, so a result's numbers: the
#: kernels' vector width and the half-precision paths they take (torch inductor and oneDNN pick
#: AVX-512 or AVX2, native float16/bfloat16 arithmetic or a float32 round trip, AMX; TensorFlow
#: runs float16 on oneDNN only with AVX512BW and AVX512_FP16 or AMX_FP16, or with AVX-NE-CONVERT,
#: and on Eigen's kernels else) -- the names /proc/cpuinfo gives them on x86 and Arm.
CPU_FEATURES = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
                "avx512_bf16", "avx512_fp16", "avx_vnni", "avx_ne_convert", "amx_tile", "amx_bf16", "amx_fp16",
                "asimd", "asimdhp", "fphp", "bf16", "i8mm", "sve", "sve2")


def cpu() -> dict[str, Any]:
    """The CPU's model and the CPU_FEATURES it has (Linux's /proc/cpuinfo; elsewhere the
    model only, as the platform names it). Two runs of one harness and framework versions can
    differ by these alone: TensorFlow's oneDNN kernels and torch.compile's code follow them."""
    model, flags = platform.processor() or None, None
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            text = f.read(1 << 16)
    except OSError:
        text = ""
    for line in text.splitlines():
        k, _, v = line.partition(":")
        k = k.strip()
        if k in ("model name", "Hardware") and model in (None, "", platform.machine()) and v.strip():
            model = v.strip()
        elif k in ("flags", "Features") and flags is None:
            have = set(v.split())
            flags = [f for f in CPU_FEATURES if f in have]
    return {"model": model or None, "features": flags}


def machine() -> dict[str, Any]:
    return {"hostname": platform.node(), "platform": platform.platform(), "machine": platform.machine(),
            "processor": platform.processor(), "cpu": cpu(), "cpus": os.cpu_count(), "python": sys.version.split()[0]}


def run_start(policy: str, frameworks: dict[str, Any], argv: list[str], run_id: str | None = None,
              worker: str | None = None) -> dict[str, Any]:
    return {"kind": "run_start", "schema": SCHEMA_VERSION, "run_id": run_id or uuid.uuid4().hex[:12],
            "harness_version": __version__, "started": now(), "git_commit": git_commit(),
            "machine": machine(), "policy": policy, "frameworks": frameworks, "argv": argv,
            "worker": worker}


class Writer:
    """Appends records to a JSON Lines file, one flushed line per record, thread-safe."""

    def __init__(self, path: str | Path, mode: str = "w"):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f: IO[str] = open(self.path, mode, encoding="utf-8")
        self._lock = threading.Lock()

    def write(self, rec: dict[str, Any]) -> None:
        line = json.dumps(jsonable(rec), ensure_ascii=False, allow_nan=False)
        with self._lock:
            self._f.write(line + "\n")
            self._f.flush()

    def close(self) -> None:
        with self._lock:
            if not self._f.closed:
                self._f.flush()
                os.fsync(self._f.fileno())
                self._f.close()


@dataclass
class Loaded:
    """What a results file held: metadata, results, and what was wrong with the file."""

    runs: list[dict[str, Any]] = field(default_factory=list)
    ends: list[dict[str, Any]] = field(default_factory=list)
    results: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        started = {r["run_id"] for r in self.runs}
        ended = {r["run_id"] for r in self.ends}
        return bool(started) and started <= ended


def read(paths: Iterable[str | Path]) -> Loaded:
    """The records of results files. What cannot be a record is a problem line, ignored: a line
    that is not JSON (or is cut off), not an object, of an unknown kind, or whose key fields
    (KEY_FIELDS, and run_id) are not strings (or null): every reader hashes and sorts those; nor
    a run_start whose metadata the report reads is of the wrong type."""
    names = {str: "a string", dict: "an object", list: "a list"}
    typed: dict[str, dict[str, type]] = {
        "result": {k: str for k in (*KEY_FIELDS, "run_id")},
        "run_start": {"run_id": str, "frameworks": dict, "skipped_frameworks": dict, "machine": dict,
                      "git_commit": str, "policy": str, "policy_budgets": list, "policy_invariance": dict,
                      "argv": list, "library": dict, "shard": str},
        "run_end": {"run_id": str},
    }
    out = Loaded()
    for p in paths:
        p = Path(p)
        out.files.append(str(p))
        try:
            text = p.read_text(encoding="utf-8", errors="replace")
        except OSError as e:
            out.problems.append(f"{p}: cannot read ({e.strerror or e}); ignored")
            continue
        lines = text.split("\n")
        for i, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                last = i == len(lines) or (i == len(lines) - 1 and lines[-1] == "")
                out.problems.append(f"{p}:{i}: {'truncated last line' if last else 'malformed line'} ignored")
                continue
            if not isinstance(rec, dict):
                out.problems.append(f"{p}:{i}: not a JSON object, ignored")
                continue
            kind = rec.get("kind", "result")
            types = typed.get(kind, {}) if isinstance(kind, str) else {}
            wrong = next((k for k, t in types.items() if rec.get(k) is not None and not isinstance(rec[k], t)), None)
            if wrong is not None:
                out.problems.append(f"{p}:{i}: field {wrong!r} is not {names[types[wrong]]}; record ignored")
                continue
            if kind == "run_start":
                out.runs.append(rec)
            elif kind == "run_end":
                out.ends.append(rec)
            elif kind == "result":
                out.results.append(rec)
            else:
                out.problems.append(f"{p}:{i}: unknown record kind {kind!r} ignored")
    return out


def require_files(paths: Iterable[str | Path], field: str) -> None:
    """Each path a results file that exists and is a regular file, or a HarnessInputError naming
    it and `field` (os.path.exists: Path("") is the working directory)."""
    from .cases import require_regular_file
    from .errors import HarnessInputError

    for p in paths:
        if not os.path.exists(p):
            raise HarnessInputError("no such results file", file=str(p), field=field)
        require_regular_file(p, "results file", field)


def read_inputs(paths: Iterable[str | Path], field: str) -> Loaded:
    """`read` for results files given as a command's input (repro, --shard-durations): a file
    holding no record at all (a case file, an empty or garbled file) is a HarnessInputError
    naming it and `field`, not an empty input that passes; its problem lines say why."""
    from .errors import HarnessInputError

    out = Loaded()
    for p in paths:
        one = read([p])
        if not (one.runs or one.results or one.ends):
            why = "; ".join(one.problems[:3]) or "the file is empty"
            raise HarnessInputError(f"holds no results records ({why})", file=str(p), field=field)
        out.runs += one.runs
        out.ends += one.ends
        out.results += one.results
        out.problems += one.problems
        out.files += one.files
    return out
