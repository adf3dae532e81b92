"""The interface every framework adapter implements, and the plumbing they share.

An adapter knows one framework. It says whether the framework is importable
(`available()`), what it is (`versions()`), where it can run (`devices()`), and runs one
call: an op's forward, or its gradient through the framework's own autodiff, on a device,
in a dtype, eager or compiled. It hands back numpy arrays and what the framework said about
them (dtype, shape, device). Exceptions the framework raises propagate: the runner records
them as what they are.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
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
    mode: str  # vocab.MODES: "eager", "jit" or "jit_static"
    source: str = ""  # the case file and id, so a repro of a large input can load it
    case_id: str = ""
    cotangent_name: str | None = None  # which of the case's cotangents `cotangent` is
    options: dict[str, Any] = field(default_factory=dict)  # the op's options (ops.PARAMS), as the case gives them
    direction: np.ndarray | None = None  # the grad2 check's direction v, in the test dtype (ops.direction)
    #: Source for inputs the case does not hold (an invariance variant's batch or permutation),
    #: by case field: the repro writes it instead of the literal or array_of (harness.invariance).
    literals: dict[str, str] = field(default_factory=dict)


@dataclass
class Output:
    arrays: dict[str, np.ndarray]  # float64 arrays holding the exact returned values
    dtypes: dict[str, str]  # dtype name the framework returned, per output
    devices: dict[str, str] = field(default_factory=dict)  # where each output lived
    note: str = ""
    #: Which program served the call: a digest of the source that defines it (a SourceAdapter's
    #: function and step, compiled or traced once per process and reused by every call of that
    #: text), and whether this call was its first in this process (it compiled or traced here).
    program: str = ""
    program_new: bool | None = None


class Unsupported(Exception):
    """The adapter cannot run this combination at all (a skip, with the reason)."""


class AdapterOutputError(Exception):
    """An adapter's `run` returned something other than an Output of arrays of numbers (None, a
    string, a dict, an Output holding a string where an array belongs): a defect of that adapter.
    The verdict records it as an error (special `bad_output`) that says what came back."""


def _shown(v: Any) -> str:
    r = repr(v)
    return "None" if v is None else f"{type(v).__name__} {r if len(r) <= 60 else r[:57] + '...'}"


def check_output(out: Any) -> Output:
    """What an adapter's `run` returned, checked and read as the harness reads it: an Output
    whose `arrays` map output names to arrays of real numbers (held as float64: every float
    dtype converts exactly) and whose `dtypes` and `devices` map names to strings. Anything else
    raises AdapterOutputError saying what came back. Applied to every adapter `adapters.get`
    hands out."""
    if not isinstance(out, Output):
        raise AdapterOutputError(f"the adapter returned {_shown(out)}, not an Output of arrays")
    for what, d in (("arrays", out.arrays), ("dtypes", out.dtypes), ("devices", out.devices)):
        if not isinstance(d, dict) or not all(isinstance(k, str) for k in d):
            raise AdapterOutputError(f"Output.{what} is {_shown(d)}, not a dict keyed by output name")
    for what, d in (("dtypes", out.dtypes), ("devices", out.devices)):
        for k, v in d.items():
            if not isinstance(v, str):
                raise AdapterOutputError(f"Output.{what}[{k!r}] is {_shown(v)}, not a string")
    arrays = {}
    for k, a in out.arrays.items():
        if a is None or isinstance(a, (str, bytes, dict)):
            raise AdapterOutputError(f"output {k!r} is {_shown(a)}, not an array of numbers")
        try:
            arr = np.asarray(a)
        except Exception as e:  # noqa: BLE001 - whatever numpy makes of it, it is no array
            raise AdapterOutputError(f"output {k!r} is {_shown(a)}, not an array of numbers ({e})") from None
        if arr.dtype.hasobject or arr.dtype.names is not None or arr.dtype.kind in "SUcmM":
            raise AdapterOutputError(f"output {k!r} holds {arr.dtype}, not numbers")
        if arr.dtype != np.float64:
            try:
                arr = arr.astype(np.float64)
            except (TypeError, ValueError) as e:
                raise AdapterOutputError(f"output {k!r} holds {arr.dtype}, not numbers ({e})") from None
        arrays[k] = arr
    if all(arrays[k] is out.arrays[k] for k in arrays):
        return out
    return Output(arrays, out.dtypes, out.devices, out.note)


class Adapter:
    """Base class; subclasses fill in the framework-specific parts."""

    name = "base"
    #: Extra API variants besides "default", by op.
    variants: dict[str, tuple[str, ...]] = {}
    #: Variants that exist for an option (a composition users write where the framework's call
    #: lacks it): they run only on the cases that set that option.
    option_variants: dict[str, tuple[str, ...]] = {}
    modes: tuple[str, ...] = ("eager", "jit")
    #: Modes run on a sample of the cases, one case in N by a digest of its id, and for the value
    #: checks only, unless the modes are given (--mode), and not in the quick suite (runner.expand,
    #: Selection.sampled): a variant of another mode's program whose cost would not buy its share
    #: of a run's time.
    sampled_modes: dict[str, int] = {}
    #: Modes whose first calls compile per program and shape at a cost that dominates the quick
    #: suite: mode -> N. The quick suite runs this mode's forward and grad in about 1 in N of the
    #: (case, dtype) pairs its dtype sample gives it otherwise (runner.thinned: eager keeps at
    #: least one dtype of every case, a compiled mode 1 case in N); grad2, the invariance checks,
    #: an explicit --dtype and the other suites are not thinned.
    quick_thinning: dict[str, int] = {}
    #: The checks this adapter can run (None: every one); a run over every check leaves the others out.
    checks: tuple[str, ...] | None = None
    #: Modes whose output can depend on the calls before it in the process (a compiler that
    #: reuses what it generated for other inputs), with the reason: `repro.check` reports a
    #: replay that differs there apart from the mismatches, which are defects of the harness.
    history_dependent: dict[str, str] = {}
    #: The modules the adapter imports and the pip extra of this package that installs them: the
    #: first one missing makes the framework a skip that says how to install it.
    requires: tuple[str, ...] = ()
    extra = ""

    def available(self) -> tuple[bool, str]:
        """(True, "") where the adapter can run here; else False and the reason."""
        for mod in self.requires:
            if importlib.util.find_spec(mod) is None:
                return False, f"{mod} is not installed (pip install -e '.[{self.extra or self.name}]')"
        return True, ""

    def versions(self) -> dict[str, str]:
        return {}

    def devices(self) -> dict[str, str | None]:
        """Device kind -> a human-readable name, or None with the reason in `device_reason`."""
        return {"cpu": "cpu", "gpu": None}

    def device_reason(self, device: str) -> str:
        return f"{self.name} has no {device} device here"

    # -- threads, streams and determinism flags (the invariance checks, harness.invariance) ----
    def thread_env(self, n: int) -> dict[str, str]:
        """Environment variables that give a fresh process of this framework `n` CPU threads (read
        at start-up, before the framework is imported)."""
        return {k: str(n) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}

    def set_threads(self, n: int) -> None:
        """Set `n` CPU threads through the framework's API, before its first call."""

    def process_env(self) -> dict[str, str]:
        """Environment variables a fresh process of this adapter's own (a thread-count worker) sets
        at start-up so that the adapter runs its calls in it (Keras: its backend)."""
        return {}

    def threads_in_force(self) -> dict[str, Any]:
        """The thread settings the framework reports (recorded beside a thread-count variant)."""
        return {}

    def stream_context(self, k: int, device: str) -> Any:
        """A context manager running calls on stream `k` of `device`, or None where the framework
        exposes no streams (the determinism check's GPU variants)."""
        return None

    def determinism_flags(self) -> dict[str, Any]:
        """The framework's determinism settings in force (the run header's `determinism`)."""
        return {}

    def variants_for(self, op: str, options: Any = ()) -> tuple[str, ...]:
        """The variants of `op` that run on a case with these options (names)."""
        return ("default",) + tuple(v for v in self.variants.get(op, ())
                                    if v not in self.option_variants or set(self.option_variants[v]) & set(options))

    def run(self, call: Call) -> Output:
        raise NotImplementedError

    def repro(self, call: Call) -> str:
        """A snippet that runs as is and prints the framework's answer for this call."""
        return ""

    #: The op options (ops.PARAMS) this adapter's calls implement. An adapter that does not name
    #: an option never sees a case that sets it (a skip with the reason): an option silently
    #: ignored would be a wrong answer to another question.
    takes: tuple[str, ...] = ()

    def unsupported(self, op: str, variant: str, options: Any) -> str | None:
        """Why (op, variant) cannot run with these options, or None."""
        missing = [k for k in sorted(options) if k not in self.takes]
        return f"{self.name}'s {op} ({variant}) takes no {', '.join(missing)}" if missing else None


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


def portable_text(text: str) -> str:
    """`text` (a framework's error message) without the paths that differ by machine, clone and
    job: the compile cache of a framework in a job (compile_cache_dir) reads
    `<compile cache>/<framework>/`, a scratch directory (scratch_dir) `<scratch>/<framework>/`.
    torch.compile's errors name the generated kernel file, so records of one run would otherwise
    differ from another's in `message` by where their caches lay."""
    root = compile_root()
    if root is not None:
        text = re.sub(re.escape(str(root)) + r"/([^/\s]+)/[^/\s]+(?=/|\b)", r"<compile cache>/\1", text)
    scratch = re.escape(tempfile.gettempdir()) + rf"/harness_([^/\s]+?)_{os.getuid()}_[^/\s]+(?=/|\b)"
    return re.sub(scratch, r"<scratch>/\1", text)


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


def empty_shape(a: Any) -> str:
    """`.reshape(shape)` for an empty array, whose literal `[]` loses its shape (an empty batch of
    rows of C classes is (0, C), not (0,)), else nothing: what an input's source appends."""
    return f".reshape({tuple(np.shape(a))!r})" if np.size(a) == 0 else ""


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


#: Set to 0, every call of a SourceAdapter compiles (or traces) its program afresh, none shared with
#: the calls before it: the check that sharing programs changes no verdict (tests/test_programs.py,
#: benchmarks/sharing.py).
SHARE_ENV = "HARNESS_SHARE_PROGRAMS"

#: The rewrites of SourceAdapter.options that are not named fields of a template.
_SLOTS = frozenset({"kw", "y", "x", "out", "den", "reduce", "plain", "by_value"})


class SourceAdapter(Adapter):
    """An adapter whose every call is Python source, run in this process exactly as the repro
    snippet prints it: the snippet is by construction what ran.

    A subclass gives its framework's spelling in a few strings: `imports` (the snippet's first
    lines), `expression(call)` (the op applied to `x` and `y`, say "torch.softmax(x, dim=-1)"),
    `function_source(call)` (source defining `f(x, y)` from that expression, compiled where the
    framework compiles the forward alone), `step_source(call)` (source defining `step(x, y, g)`
    from `f`: the forward or the gradient, compiled where the framework compiles the whole
    step), `context_source(call)` (a `with` statement the inputs and the call run under, or ""),
    `input_source` (the literal that makes x, y or g) and `result_source` (what prints the
    outputs as exact float64 lists). `make_input` builds, in process, the object the input
    literal builds, and `convert` reads an output back. Each source is executed once per
    distinct text and reused: a compiled function keeps its cache across the cases it serves.
    """

    imports = ""

    def __init__(self) -> None:
        self._steps: dict[str, dict[str, Any]] = {}
        self._programs: dict[tuple[str, ...], str] = {}  # program() digests, by source, dtype, mode, device
        self._refused: dict[str, str] = {}  # function source -> why the framework refused to build it (step)

    # -- what a subclass gives ---------------------------------------------------------------
    def namespace(self) -> dict[str, Any]:
        """The names the imports bind (the frameworks, imported and configured)."""
        raise NotImplementedError

    def expression(self, call: Call) -> str:
        raise NotImplementedError

    def function_source(self, call: Call) -> str:
        return self.plain_function(call)

    def plain_function(self, call: Call) -> str:
        """Source defining f(x, y): the expression, after an option's rewrite of the logits (an `x`
        entry of `options`: a mask applied as users apply it, `x = x.masked_fill(...)`)."""
        xr = self.x_source(call)
        expr = self.expression(call)
        p = self.fparams(call)
        if expr.startswith("def f(x, y):"):  # a composition users write in several lines
            head, body = expr.split("\n", 1)
            head = f"def f({p}):"
            return f"{head}\n    x = {xr}\n{body}" if xr else f"{head}\n{body}"
        if xr is None:
            return f"f = lambda {p}: {expr}"
        return f"def f({p}):\n    x = {xr}\n    return {expr}"

    def x_source(self, call: Call) -> str | None:
        from .. import ops as O

        table = self.options.get((call.op, call.variant), {})
        xr = None
        for k in O.PARAMS:
            f = table.get(k)
            if k in call.options and isinstance(f, dict) and "x" in f:
                xr = f["x"].format(x=xr or "x", v=repr(call.options[k]))
        return xr

    def step_source(self, call: Call) -> str:
        raise NotImplementedError

    def context_source(self, call: Call) -> str:
        return ""

    def input_source(self, name: str, a: np.ndarray, call: Call) -> str:
        raise NotImplementedError

    def make_input(self, name: str, a: np.ndarray, call: Call) -> Any:
        raise NotImplementedError

    def result_source(self) -> str:
        raise NotImplementedError

    def shapes_source(self) -> str:
        """The snippet's line before its values: the outputs' shapes, which the values of an
        empty output (`[]`) do not show (repro.check compares them with the record's out_shape)."""
        return "print([list(o.shape) for o in outs])"

    def convert(self, o: Any) -> tuple[np.ndarray, str, str]:
        """An output as (exact float64 values, its dtype name, the device it lives on)."""
        raise NotImplementedError

    def check_device(self, call: Call) -> None:
        """Raise Unsupported where the call's device is not here."""

    #: How each (op, variant) takes each option, as users write it: a keyword argument (a string,
    #: "label_smoothing={v}", joined into the template's `{kw}` or `{args}`), or rewrites of named
    #: parts of the call (a dict): `y` the labels expression (its template holds `{y}`, the labels
    #: so far), `x` the logits (before the call: `x = <rewrite>` in f), `out` the whole expression
    #: (`{out}`, the call so far), `den` a factor of the
    #: rows' weights in a mean, `reduce` the reduction of the rows (`{out}` the rows' losses,
    #: `{den}` the product of the `den` factors; `plain` instead where there is none). `{v}` is
    #: the value's repr;
    #: `by_value` picks the rewrites by the value; any other name fills that field of the template
    #: (`{ret}` of a composition written as `def f(x, y):`). The labels' rewrites come first, then the
    #: others in the order of ops.PARAMS, the reduction last. An option missing here is
    #: Unsupported (a skip with the reason); `option_defaults` are rendered where a case sets none.
    options: dict[tuple[str, str], dict[str, Any]] = {}
    option_defaults: dict[str, Any] = {}

    def unsupported(self, op: str, variant: str, options: Any) -> str | None:
        table = self.options.get((op, variant), {})
        for k in sorted(options):
            if k not in table:
                takes = sorted(v for (o, v), t in self.options.items() if o == op and k in t)
                return (f"{self.name}'s {op} ({variant}) takes no {k}"
                        + (f"; the {', '.join(takes)} variant does" if takes else ""))
        return None

    def render(self, template: str, call: Call, **fields: Any) -> str:
        """The API template of the call with its options in (see `options`); `fields` fill the rest
        (`{axis}`, ...)."""
        from .. import ops as O

        why = self.unsupported(call.op, call.variant, call.options)
        if why is not None:
            raise Unsupported(why)
        table = self.options.get((call.op, call.variant), {})
        parts = []
        for k in O.PARAMS:
            if k not in table or (k not in call.options and k not in self.option_defaults):
                continue
            val = call.options.get(k, self.option_defaults.get(k))
            f = table[k]
            f = {"kw": f} if isinstance(f, str) else f["by_value"].get(val, {}) if "by_value" in f else f
            parts.append((repr(val), f))
        y, kws = "y", []
        for v, f in parts:
            if "y" in f:
                y = f["y"].format(y=y, v=v, **fields)
        for v, f in parts:  # named fields of the template
            for name, tpl in f.items():
                if name not in _SLOTS:
                    fields[name] = tpl.format(y=y, v=v, **fields)
        for v, f in parts:
            if "kw" in f:
                kws.append(f["kw"].format(v=v, y=y, **fields))
        if kws and "{kw}" not in template and "{args}" not in template:  # an option must never vanish
            raise RuntimeError(f"{self.name}: the call of {call.op} ({call.variant}) has no place for {kws}")
        out = template.format(y=y, kw="".join(", " + k for k in kws), args=", ".join(kws), **fields)
        for v, f in parts:
            if "out" in f:
                out = f["out"].format(out=out, y=y, v=v, **fields)
        dens = [f["den"].format(y=y, v=v, **fields) for v, f in parts if "den" in f]
        for v, f in parts:
            if "reduce" in f:  # a mean without weights or masks is the plain mean users write
                tpl = f["reduce"] if dens or "plain" not in f else f["plain"]
                out = tpl.format(out=out, den=" * ".join(dens), y=y, v=v, **fields)
        return out

    # -- the machinery -----------------------------------------------------------------------
    def output_names(self, call: Call) -> tuple[str, ...]:
        from .. import ops as O

        return O.OPS[call.op].outputs(call.check, call.options)

    def wrt_y(self, call: Call) -> bool:
        """Whether the grad check differentiates with respect to `y` too (dense labels, logsumexp's b; the
        grad2 check's mixed derivative)."""
        return call.check != "forward" and len(self.output_names(call)) > 1

    def step_names(self, call: Call) -> tuple[str, ...]:
        """The step's inputs: x, y, g, s where the op takes a runtime scale (S24), v for grad2 (S25)."""
        return ("x", "y", "g") + (("s",) if "scale" in call.options else ()) + (("v",) if call.check == "grad2" else ())

    def fparams(self, call: Call) -> str:
        """f's parameters: the logits, the labels (or b), and the scale s where there is one."""
        return "x, y, s" if "scale" in call.options else "x, y"

    def step_header(self, call: Call) -> str:
        return f"def step({', '.join(self.step_names(call))}):"

    def forward_return(self, call: Call) -> str:
        """The forward step's return: the op's outputs as a tuple (logsumexp with return_sign returns two)."""
        f = f"f({self.fparams(call)})"
        return f"return tuple({f})" if len(self.output_names(call)) > 1 else f"return ({f},)"

    def loss_source(self, call: Call) -> str:
        """What the grad check differentiates: the op's value (the first of a (value, sign) pair)."""
        from .. import ops as O

        f = f"f({self.fparams(call)})"
        return f"{f}[0]" if len(O.OPS[call.op].outputs("forward", call.options)) > 1 else f

    def inputs(self, call: Call) -> list[tuple[str, np.ndarray]]:
        out = [("x", call.logits)]
        if call.labels is not None:
            out.append(("y", call.labels))
        if call.check != "forward":
            out.append(("g", call.cotangent))
        if "scale" in call.options:  # a runtime input of the (compiled) step, in the tested dtype (S24)
            out.append(("s", np.asarray(call.options["scale"], dtype=np_dtype(call.dtype))))
        if call.check == "grad2":
            out.append(("v", call.direction))
        return out

    def _exec(self, key: str, src: str, base: dict[str, Any]) -> dict[str, Any]:
        ns = self._steps.get(key)
        if ns is None:
            ns = dict(base)
            exec(compile(src, f"<{self.name}>", "exec"), ns)  # noqa: S102 - our own source, as the repro shows it
            self._steps[key] = ns
        return ns

    def refusal(self, e: Exception, call: Call) -> str | None:
        """Why the framework refuses the call, read from the exception that running its function
        source raised (ONNX Runtime has no kernel for a dtype: its session is not built), or None
        for anything else, which propagates as the error it is."""
        return None

    def step(self, fsrc: str, ssrc: str, call: Call) -> Any:
        """`step` of a call whose function and step sources these are: the function source run
        once (f, compiled or not, shared by every step that uses it), then the step source in a
        copy of that namespace. A function source the framework refused (`refusal`) is refused
        again without being run again, whatever the shapes: Unsupported, a skip with its reason."""
        if fsrc in self._refused:
            raise Unsupported(self._refused[fsrc])
        try:
            fn = self._exec(fsrc, fsrc, self.namespace())
        except Unsupported:
            raise
        except Exception as e:  # noqa: BLE001 - a refusal is read; anything else propagates
            why = self.refusal(e, call)
            if why is None:
                raise
            self._refused[fsrc] = why
            raise Unsupported(why) from None
        return self._exec(fsrc + "\n" + ssrc, ssrc, fn)["step"]

    def program(self, fsrc: str, ssrc: str, ctx: str, call: Call) -> tuple[str, bool]:
        """The program serving the call and whether this is its first call in this process: the
        digest of the source defining its step (what `step` reuses) with the dtype, mode and
        device it runs in (every framework compiles or dispatches per dtype; the shapes it
        specialises on beside that are its own: jax.jit per shape, torch.compile per rank and
        class count in jit, per shape in jit_static). Digested once per program, not per call."""
        key = (fsrc, ssrc, ctx, call.dtype, call.mode, call.device)
        digest = self._programs.get(key)
        if digest is not None:
            return digest, False
        import hashlib

        digest = self._programs[key] = hashlib.sha256("\n".join(key).encode()).hexdigest()[:12]
        return digest, True

    def forget_programs(self) -> None:
        """Drop every program this adapter compiled or traced (SHARE_ENV=0: each call then builds
        its own, as a fresh process running its snippet would). A subclass also clears what its
        framework keeps per process beside them (JAX's eager primitives, dynamo's caches)."""
        self._steps.clear()
        self._programs.clear()
        self._refused.clear()

    def run(self, call: Call) -> Output:
        self.check_device(call)
        if os.environ.get(SHARE_ENV) == "0":
            self.forget_programs()
        fsrc, ssrc, ctx = self.function_source(call), self.step_source(call), self.context_source(call)
        program, new = self.program(fsrc, ssrc, ctx, call)
        step = self.step(fsrc, ssrc, call)
        manager = eval(ctx[len("with "):-1], dict(self.namespace())) if ctx else contextlib.nullcontext()  # noqa: S307
        with manager:
            args = {n: self.make_input(n, a, call) for n, a in self.inputs(call)}
            outs = step(*(args.get(n) for n in self.step_names(call)))
            arrays, dts, devs = {}, {}, {}
            for n, o in zip(self.output_names(call), outs):
                if o is None:
                    raise RuntimeError(f"{self.name} returned no gradient for {n}")
                arrays[n], dts[n], devs[n] = self.convert(o)
        return Output(arrays, dts, devs, program=program, program_new=new)

    def repro(self, call: Call) -> str:
        ctx = self.context_source(call)
        ind = "    " if ctx else ""
        body = [f"{ind}{n} = {self.input_source(n, a, call)}" for n, a in self.inputs(call)]
        if "y" not in dict(self.inputs(call)):
            body.append(f"{ind}y = None")
        if "g" not in dict(self.inputs(call)):
            body.append(f"{ind}g = None")
        body += [f"{ind}outs = step({', '.join(self.step_names(call))})", f"{ind}{self.shapes_source()}",
                 f"{ind}{self.result_source()}"]
        lines = [self.imports.strip()]
        if any("array_of(" in b for b in body):
            lines.append("from harness.cases import array_of")
        lines += [self.function_source(call).rstrip(), self.step_source(call).rstrip()]
        if ctx:
            lines.append(ctx)
        return "\n".join(lines + body)


#: The case field each input of a step comes from (a large one is loaded from it by array_of).
INPUT_FIELDS = {"x": "logits", "y": "labels", "g": "cotangent", "s": "scale", "v": "direction"}

#: How every call takes `scale` (S24): the logits times the runtime input s, before any other rewrite.
SCALE = {"x": "({x} * s)"}


def with_scale(api: dict[tuple[str, str], str], options: dict[tuple[str, str], dict[str, Any]]) -> None:
    """Declare `scale` for every (op, variant) of an adapter's API table (each table its own copy)."""
    for key in api:
        options[key] = {**options.get(key, {}), "scale": SCALE}


def input_field(name: str, call: Call) -> str:
    """The case field of input `name`: `y` of a label-free op is an option's array (logsumexp's b)."""
    from .. import ops as O

    spec = O.OPS[call.op]
    return spec.input_param if name == "y" and spec.labels == "none" and spec.input_param else INPUT_FIELDS[name]


def literal(a: np.ndarray, call: "Call", name: str) -> str:
    """Python source for the exact values of input `name` (x, y or g): integers as such, floats by
    format_array (repr of each value, or array_of(...) of its case field for a large one)."""
    field = input_field(name, call)
    if field in call.literals:
        return call.literals[field]
    arr = np.asarray(a)
    if arr.dtype.kind in "iu":
        if arr.size > REPRO_INLINE and call.source:
            return f"array_of({call.source!r}, {call.case_id!r}, {field!r}, {call.dtype!r}, op={call.op!r})"
        return repr(arr.tolist())
    return format_array(arr, call.dtype, call, field)
