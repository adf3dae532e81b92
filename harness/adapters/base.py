"""The interface every framework adapter implements, and the plumbing they share.

An adapter knows one framework. It says whether the framework is importable
(`available()`), what it is (`versions()`), where it can run (`devices()`), and runs one
call: an op's forward, or its gradient through the framework's own autodiff, on a device,
in a dtype, eager or compiled. It hands back numpy arrays and what the framework said about
them (dtype, shape, device). Exceptions the framework raises propagate: the runner records
them as what they are.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import dtypes as D
from ..cache import compile_root


@dataclass
class Call:
    op: str
    check: str  # "forward" or "grad"
    variant: str
    logits: np.ndarray  # already in the test dtype (numpy / ml_dtypes array)
    labels: np.ndarray | None  # dense labels in the test dtype, or int64 class indices
    axis: int
    cotangent: np.ndarray | None  # in the test dtype, for the grad check
    dtype: str
    device: str  # "cpu" or "gpu"
    mode: str  # "eager" or "jit"
    source: str = ""  # the case file and id, so a repro of a large input can load it
    case_id: str = ""
    cotangent_name: str | None = None  # which of the case's cotangents `cotangent` is


@dataclass
class Output:
    arrays: dict[str, np.ndarray]  # float64 arrays holding the exact returned values
    dtypes: dict[str, str]  # dtype name the framework returned, per output
    devices: dict[str, str] = field(default_factory=dict)  # where each output lived
    note: str = ""


class Unsupported(Exception):
    """The adapter cannot run this combination at all (a skip, with the reason)."""


class Adapter:
    """Base class; subclasses fill in the framework-specific parts."""

    name = "base"
    #: Extra API variants besides "default", by op.
    variants: dict[str, tuple[str, ...]] = {}
    modes: tuple[str, ...] = ("eager", "jit")

    def available(self) -> tuple[bool, str]:
        raise NotImplementedError

    def versions(self) -> dict[str, str]:
        return {}

    def devices(self) -> dict[str, str | None]:
        """Device kind -> a human-readable name, or None with the reason in `device_reason`."""
        return {"cpu": "cpu", "gpu": None}

    def device_reason(self, device: str) -> str:
        return f"{self.name} has no {device} device here"

    def variants_for(self, op: str) -> tuple[str, ...]:
        return ("default",) + tuple(self.variants.get(op, ()))

    def run(self, call: Call) -> Output:
        raise NotImplementedError

    def repro(self, call: Call) -> str:
        """A snippet that runs as is and prints the framework's answer for this call."""
        return ""


def job_name() -> str:
    """This process's job: the xdist worker or the CLI job index, "main" otherwise."""
    return os.environ.get("PYTEST_XDIST_WORKER") or os.environ.get("HARNESS_JOB") or "main"


def compile_cache_dir(framework: str) -> str | None:
    """The persistent compilation cache directory for `framework` in this job, or None when
    compile caching is off (`harness.cache.compile_root`). One directory per job: two processes
    never write one entry.

    The caches hold what the framework itself compiled, keyed by the framework on the program
    and its own version; loading an executable instead of compiling it changes no value, only
    `time_first_call_s`."""
    root = compile_root()
    if root is None:
        return None
    d = root / framework / job_name()
    d.mkdir(parents=True, exist_ok=True)
    return str(d)


def scratch_dir(framework: str) -> str:
    """A per-job scratch directory outside the cache, for compilers that need one anyway."""
    d = Path(tempfile.gettempdir()) / f"harness_{framework}_{os.getuid()}_{job_name()}"
    d.mkdir(parents=True, exist_ok=True)
    return str(d)


def set_by_harness(path: str) -> bool:
    """Whether a compiler cache path in the environment is one the harness chose (in this
    process or in the parent that started it, for another job) rather than the user's: the
    adapters then replace it with this job's own, so that no two jobs share one."""
    p, root = Path(path), compile_root()
    if root is not None and p.is_relative_to(root):
        return True
    return p.parent == Path(tempfile.gettempdir()) and p.name.startswith("harness_")


def dtype_name(dt: Any) -> str:
    """Our dtype name for a numpy/ml_dtypes dtype or a framework dtype's string form."""
    s = str(dt).replace("torch.", "").replace("<dtype: '", "").replace("'>", "")
    return {"half": "float16", "float": "float32", "double": "float64", "bfloat16": "bfloat16"}.get(s, s)


def to_f64(a: Any) -> np.ndarray:
    """Exact float64 copy of a numpy array of any float dtype (bfloat16 included)."""
    arr = np.asarray(a)
    if arr.dtype.kind in "iu":
        return arr.astype(np.float64)
    return arr.astype(np.float64)


def np_dtype(name: str) -> np.dtype:
    return D.get(name).np


#: Arrays up to this many elements are written into a repro as literals; larger ones are
#: loaded from their case file by `harness.cases.array_of`.
REPRO_INLINE = 256


def format_array(a: np.ndarray, dtype: str, call: "Call | None" = None, field: str = "logits") -> str:
    """Python source for an expression that reproduces the exact values of `a`."""
    vals = np.asarray(a, dtype=np.float64)
    if call is not None and vals.size > REPRO_INLINE and call.source:
        cot = f", cotangent={call.cotangent_name!r}" if field == "cotangent" and call.cotangent_name else ""
        return f"array_of({call.source!r}, {call.case_id!r}, {field!r}, {dtype!r}, op={call.op!r}{cot})"

    def fmt(v: float) -> str:
        if np.isnan(v):
            return "float('nan')"
        if np.isinf(v):
            return "float('inf')" if v > 0 else "-float('inf')"
        return repr(float(v))

    def rec(x: np.ndarray) -> str:
        if x.ndim == 0:
            return fmt(float(x))
        return "[" + ", ".join(rec(y) for y in x) + "]"

    return rec(vals)
