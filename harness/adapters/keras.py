"""Keras 3 adapters, one per backend: `keras-tensorflow`, `keras-jax`, `keras-torch`.

The calls are Keras' own: `keras.ops.softmax`, `keras.ops.log_softmax`, `keras.ops.logsumexp`,
`keras.losses.CategoricalCrossentropy(from_logits=True, axis=, label_smoothing=, reduction=)` for
the dense loss and `keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=,
reduction=)` for the sparse one. The sparse loss's `axis=` is honoured by the torch backend only
(the TensorFlow backend raises for another axis, the JAX backend's shape check rejects it), so
where the class axis is not last its users move it there (`keras.ops.moveaxis`), as written here
on every backend. A loss is constructed as users construct it, in Keras' floatx (float32: a
float16, bfloat16 or float64 input is cast, and the result is judged as it is), or with
`dtype=` the tested dtype (variant `dtype`). Options a loss does not take (class weights, masks,
logsumexp's scale weights, label smoothing of the sparse loss) are skips with the reason.

Forward and gradients go through the backend's own autodiff: each class is its backend's
adapter (TensorFlowAdapter, JaxAdapter, TorchAdapter: inputs, outputs, steps, device context)
with Keras' calls in place of the backend's. The gradient's cotangent is cast to the output's
dtype (a loss in floatx returns float32 for a float64 input; the cotangent's values are exact in
every dtype). Eager mode only: users call Keras' ops and losses eagerly, and the backends'
compilers are tested by the backend adapters themselves.

One process per backend. Keras picks its backend once, when it is first imported, from the
environment variable KERAS_BACKEND, and the TensorFlow adapter's `tf.keras` is this same
`keras` package. So an adapter here never imports keras in the harness's process: it runs its
calls in a persistent child process of its own (multiprocessing, spawn), started at its first
call with KERAS_BACKEND (and CHILD_ENV) set before anything imports keras, and reused. The call
goes there pickled and the Output comes back; Unsupported raised there is Unsupported here;
any other exception comes back as an exception of the same type name, module and message (the
record's error_type, error_origin "framework"); warnings the framework emitted are emitted here
again (the record's framework_warnings). A child that dies costs the call in flight, with an
error saying so, and a fresh child serves the next call. The child ends with its parent
(daemon, an atexit close, and the helpers' parent watch of harness.procs, which also covers a
parent that was SIGKILLed). In the child itself the adapter runs the call in process
(SourceAdapter.run): the same source its repro snippet prints, which sets KERAS_BACKEND before
`import keras`, so that it runs as is in a fresh interpreter.
"""

from __future__ import annotations

import atexit
import importlib.util
import multiprocessing as mp
import multiprocessing.util as mp_util
import os
import threading
import traceback
import warnings
from typing import Any

import numpy as np

from .. import procs
from .base import Call, Output, SourceAdapter, Unsupported, with_scale
from .jax import JaxAdapter
from .tensorflow import TensorFlowAdapter
from .torch import TorchAdapter

#: Set in a Keras adapter's child process, to its backend's name: there the adapter runs its calls
#: itself.
CHILD_ENV = "HARNESS_KERAS_CHILD"

#: The op as users write it, by (op, variant): `{axis}` the class axis, `{last}` the logits with
#: the class axis moved last, `{dt}` the tested dtype's name (variant `dtype`), `{y}` the labels
#: and `{kw}` the options' keyword arguments (OPTIONS).
API = {
    ("softmax", "default"): "keras.ops.softmax(x, axis={axis})",
    ("log_softmax", "default"): "keras.ops.log_softmax(x, axis={axis})",
    ("logsumexp", "default"): "keras.ops.logsumexp(x, axis={axis})",
    ("softmax_cross_entropy", "default"):
        "keras.losses.CategoricalCrossentropy(from_logits=True, axis={axis}{kw})({y}, x)",
    ("softmax_cross_entropy", "dtype"):
        "keras.losses.CategoricalCrossentropy(from_logits=True, axis={axis}, dtype={dt}{kw})({y}, x)",
    ("sparse_softmax_cross_entropy", "default"):
        "keras.losses.SparseCategoricalCrossentropy(from_logits=True{kw})({y}, {last})",
    ("sparse_softmax_cross_entropy", "dtype"):
        "keras.losses.SparseCategoricalCrossentropy(from_logits=True, dtype={dt}{kw})({y}, {last})",
}
#: Keras' losses reduce by default (sum_over_batch_size): one loss per row is reduction=None.
_REDUCTION = {"by_value": {"none": {"kw": "reduction=None"}, "sum": {"kw": "reduction='sum'"},
                           "mean": {"kw": "reduction='sum_over_batch_size'"}}}
OPTIONS: dict[tuple[str, str], dict[str, Any]] = {}
for _v in ("default", "dtype"):
    OPTIONS[("softmax_cross_entropy", _v)] = {"reduction": _REDUCTION, "label_smoothing": "label_smoothing={v}"}
    OPTIONS[("sparse_softmax_cross_entropy", _v)] = {"reduction": _REDUCTION, "ignore_index": "ignore_class={v}"}
with_scale(API, OPTIONS)


# -- the child process -----------------------------------------------------------------------

def _child_main(conn: Any, module: str, cls: str, backend: str, parent: int) -> None:
    """The child's loop: (method, args) in, ("ok", result, warnings) / ("unsupported", why, warnings)
    / ("raised", (type name, module, message, traceback), warnings) out."""
    os.environ["KERAS_BACKEND"] = backend  # before anything imports keras
    os.environ[CHILD_ENV] = backend
    from ..procs import become_helper
    from ..runner import WORKER_ENV

    become_helper(parent)  # interrupts are the parent's to act on; exit when the parent is gone
    os.environ[WORKER_ENV] = "1"
    from importlib import import_module

    adapter = getattr(import_module(module), cls)()
    import sys

    if "keras" in sys.modules and sys.modules["keras"].backend.backend() != backend:  # never a wrong backend
        conn.send(("raised", ("RuntimeError", "builtins", f"keras was imported in the child before its backend "
                              f"was set (backend {sys.modules['keras'].backend.backend()!r}, not {backend!r})", ""), []))
        return
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        method, args = msg
        with warnings.catch_warnings(record=True) as warned:
            warnings.simplefilter("always")
            try:
                res: tuple[str, Any] = ("ok", getattr(adapter, method)(*args))
            except Unsupported as e:
                res = ("unsupported", str(e))
            except BaseException as e:  # noqa: BLE001 - the framework's answer, sent back as what it is
                res = ("raised", (type(e).__name__, type(e).__module__, str(e), traceback.format_exc(limit=8)))
        said = [(w.category.__name__, w.category.__module__, str(w.message)) for w in warned]
        try:
            conn.send((res[0], res[1], said))
        except (OSError, EOFError):
            return
        except Exception as e:  # noqa: BLE001 - an answer that does not pickle: say so instead
            conn.send(("raised", (type(e).__name__, type(e).__module__, f"unpicklable answer: {e}", ""), said))


class KerasChildError(RuntimeError):
    """The Keras adapter's child process could not answer the call (it did not start or died)."""


_types: dict[tuple[str, str, type], type] = {}
_START_LOCK = threading.Lock()


def _type(name: str, module: str, base: type) -> type:
    """The exception (or warning) class the child raised, by name and module: the builtin one where it
    is builtin, otherwise a stand-in of that name and module (the framework is not imported here)."""
    if module == "builtins":
        import builtins

        t = getattr(builtins, name, None)
        if isinstance(t, type) and issubclass(t, base):
            return t
    key = (name, module, base)
    if key not in _types:
        _types[key] = type(name, (base,), {"__module__": module, "__qualname__": name})
    return _types[key]


def _rebuilt(name: str, module: str, message: str, tb: str) -> BaseException:
    t = _type(name, module, Exception)
    try:
        e = t(message)
    except Exception:  # noqa: BLE001 - a builtin with another signature (UnicodeDecodeError): a stand-in
        e = type(name, (Exception,), {"__module__": module, "__qualname__": name})(message)
    e.child_traceback = tb  # type: ignore[attr-defined]
    return e


class _Child:
    """A persistent child process running one Keras adapter's calls under its backend."""

    def __init__(self, adapter: "_KerasAdapter"):
        self.adapter = adapter
        self.proc: Any = None
        self.conn: Any = None
        self.lock = threading.Lock()

    def _start(self) -> None:
        ctx = mp.get_context("spawn")
        parent, child = ctx.Pipe()
        cls = type(self.adapter)
        proc = ctx.Process(target=_child_main, args=(child, cls.__module__, cls.__qualname__, self.adapter.backend,
                                                     os.getpid()),
                           daemon=True, name=f"harness-{self.adapter.name}")
        # A daemonic process (the harness's isolating worker is one) may not start children through
        # multiprocessing, lest they be orphaned when it is terminated; this one cannot be (the parent
        # watch of harness.procs ends it within half a second), so the flag is lifted for the start.
        # KERAS_BACKEND is in the child's environment from its first instruction (a spawned child
        # imports the parent's main module before its target runs), set here for the start only.
        cur = mp.current_process()._config  # type: ignore[attr-defined]
        with _START_LOCK:
            daemonic, given = cur.get("daemon"), os.environ.get("KERAS_BACKEND")
            cur["daemon"] = False
            os.environ["KERAS_BACKEND"] = self.adapter.backend
            try:
                proc.start()
            finally:
                if daemonic is not None:
                    cur["daemon"] = daemonic
                else:
                    cur.pop("daemon", None)
                if given is None:
                    os.environ.pop("KERAS_BACKEND", None)
                else:
                    os.environ["KERAS_BACKEND"] = given
        child.close()
        self.proc, self.conn = proc, parent

    def call(self, method: str, *args: Any) -> Any:
        with self.lock:
            if self.proc is None or not self.proc.is_alive():
                self.close()
                # One backend's child at a time in a process: each holds its backend (1-3 GB), and
                # three in every job of a run, with their thread workers, exhausted 24 GB. Items come
                # grouped by framework, so a child serves all of its backend's items in a row.
                for other in list(_children):
                    if other is not self and other.proc is not None:
                        other.close()
                try:
                    self._start()
                except Exception as e:  # noqa: BLE001
                    raise KerasChildError(f"{self.adapter.name}: cannot start its child process: "
                                          f"{type(e).__name__}: {e}") from None
            try:
                self.conn.send((method, args))
                kind, payload, said = self.conn.recv()
            except (EOFError, OSError) as e:
                proc = self.proc
                proc.join(5)
                code = proc.exitcode
                self.close()
                how = f"exit code {code}" if code is None or code >= 0 else f"signal {-code}"
                try:
                    import signal

                    how = signal.Signals(-code).name if code is not None and code < 0 else how
                except ValueError:
                    pass
                raise KerasChildError(f"the {self.adapter.name} child process (KERAS_BACKEND="
                                      f"{self.adapter.backend}) died ({how}) during {method}: "
                                      f"{type(e).__name__}; a fresh one starts at the next call") from None
        for name, module, message in said:  # what the framework warned about, said again here
            warnings.warn(message, _type(name, module, Warning), stacklevel=3)
        if kind == "ok":
            return payload
        if kind == "unsupported":
            raise Unsupported(payload)
        raise _rebuilt(*payload)

    def close(self) -> None:
        proc, conn = self.proc, self.conn
        self.proc = self.conn = None
        procs.end(proc, conn, wait=5)


_children: list[_Child] = []


@atexit.register
def close_children() -> None:
    for c in list(_children):
        c.close()


# multiprocessing's own exit handler (in this process's atexit, and in place of atexit in a process
# multiprocessing started, the harness's isolating worker) terminates daemonic children with SIGTERM,
# which a helper ignores (harness.procs), and then joins them: the children are closed before that.
mp_util.Finalize(None, close_children, exitpriority=100)


# -- the adapters ----------------------------------------------------------------------------

class _KerasAdapter(SourceAdapter):
    """What the three Keras adapters share; each is also its backend's adapter (the MRO puts this first)."""

    backend = ""
    modes = ("eager",)
    history_dependent: dict[str, str] = {}
    variants = {"softmax_cross_entropy": ("dtype",), "sparse_softmax_cross_entropy": ("dtype",)}
    option_variants: dict[str, tuple[str, ...]] = {}
    options = OPTIONS
    option_defaults = {"reduction": "none"}
    #: The calls (API above; a subclass may give its own).
    api = API
    #: The backend's own lines of the snippet (after KERAS_BACKEND and `import keras`).
    backend_imports = ""

    def __init__(self) -> None:
        super().__init__()
        self._child: _Child | None = None
        self._remembered: dict[str, Any] = {}

    @property
    def imports(self) -> str:  # type: ignore[override]
        return (f'import os\nos.environ["KERAS_BACKEND"] = "{self.backend}"\nimport keras\n'
                + self.backend_imports)

    # -- where a call runs ---------------------------------------------------------------------
    def process_env(self) -> dict[str, str]:
        # A process started with these (a thread-count worker of harness.threads) is this adapter's
        # child itself: it runs the calls in process, with its threads, and starts no child of its own.
        return {"KERAS_BACKEND": self.backend, CHILD_ENV: self.backend}

    @staticmethod
    def in_child() -> bool:
        return bool(os.environ.get(CHILD_ENV))

    def remote(self, method: str, *args: Any) -> Any:
        if self._child is None:
            self._child = _Child(self)
            _children.append(self._child)
        return self._child.call(method, *args)

    def close(self) -> None:
        """End the child process (a fresh one starts at the next call)."""
        if self._child is not None:
            self._child.close()

    def available(self) -> tuple[bool, str]:
        if importlib.util.find_spec("keras") is None:
            return False, "keras is not installed (pip install -e '.[keras]')"
        ok, why = super().available()  # the backend adapter's (the next class in the MRO)
        return ok, why and f"the backend of {self.name}: {why}"

    def run(self, call: Call) -> Output:
        if self.in_child():
            if os.environ.get("KERAS_BACKEND") != self.backend:
                raise RuntimeError(f"{self.name} runs in a process whose KERAS_BACKEND is "
                                   f"{os.environ.get('KERAS_BACKEND')!r}")
            return SourceAdapter.run(self, call)
        return self.remote("run", call)

    def _asked(self, method: str, *args: Any, remember: bool = False) -> Any:
        """A query answered by the backend adapter in the child (the parent never imports keras)."""
        if self.in_child():
            return getattr(super(), method)(*args)
        if remember and method in self._remembered:
            return self._remembered[method]
        out = self.remote(method, *args)
        if remember:
            self._remembered[method] = out
        return out

    def versions(self) -> dict[str, str]:
        if self.in_child():
            import keras

            return {"keras": keras.__version__, "keras_backend": keras.backend.backend(), **super().versions()}
        return self._asked("versions", remember=True)

    def devices(self) -> dict[str, str | None]:
        return self._asked("devices", remember=True)

    def device_reason(self, device: str) -> str:
        return self._asked("device_reason", device)

    def determinism_flags(self) -> dict[str, Any]:
        return self._asked("determinism_flags")

    def threads_in_force(self) -> dict[str, Any]:
        return self._asked("threads_in_force")

    def set_threads(self, n: int) -> None:
        self._asked("set_threads", n)

    def stream_context(self, k: int, device: str) -> Any:
        return None  # a call crosses to the child: no stream of this process can hold it

    def backend_of_child(self) -> str:
        """keras.backend.backend() in the child (the backend its calls ran on)."""
        if self.in_child():
            import keras

            return keras.backend.backend()
        return self.remote("backend_of_child")

    def namespace(self) -> dict[str, Any]:
        import keras

        return {**super().namespace(), "keras": keras, "os": os}

    # -- the source ----------------------------------------------------------------------------
    def expression(self, call: Call) -> str:
        nd = np.ndim(call.logits)
        ax = call.axis % nd
        last = "x" if ax == nd - 1 else f"keras.ops.moveaxis(x, {call.axis}, -1)"
        return self.render(self.api[(call.op, call.variant)], call, axis=call.axis, last=last, dt=repr(call.dtype))

    def function_source(self, call: Call) -> str:
        return self.plain_function(call)  # eager only: nothing compiled


class KerasTensorFlowAdapter(_KerasAdapter, TensorFlowAdapter):
    name = "keras-tensorflow"
    backend = "tensorflow"
    backend_imports = "import tensorflow as tf"
    # TensorFlowAdapter.step_source casts the cotangent to the output's dtype already; eager only.


class KerasJaxAdapter(_KerasAdapter, JaxAdapter):
    name = "keras-jax"
    backend = "jax"
    backend_imports = "import jax\nimport jax.numpy as jnp\nimport numpy as np"

    def namespace(self) -> dict[str, Any]:
        import jax
        import jax.numpy as jnp
        import keras

        self._configure()
        return {"jax": jax, "jnp": jnp, "np": np, "keras": keras, "os": os}

    def step_source(self, call: Call) -> str:
        # jax.vjp, the cotangent in the output's dtype (a floatx loss returns float32).
        loss = self.loss_source(call)
        wrt = ("lambda x, y: " + loss + ", x, y") if self.wrt_y(call) else f"lambda x: {loss}, x"
        lines = [self.step_header(call)]
        if call.check == "forward":
            lines.append("    " + self.forward_return(call))
        elif call.check == "grad2":  # the VJP of the VJP, along v (S25)
            lines += ["    def d(x, y):",
                      f"        out, back = jax.vjp(lambda x: {loss}, x)",
                      "        return back(g.astype(out.dtype))[0]",
                      "    dx, back = jax.vjp(d, x, y)" if self.wrt_y(call) else
                      "    dx, back = jax.vjp(lambda x: d(x, y), x)",
                      "    return back(v.astype(dx.dtype))"]
        else:
            lines += [f"    out, back = jax.vjp({wrt})", "    return back(g.astype(out.dtype))"]
        return "\n".join(lines)


class KerasTorchAdapter(_KerasAdapter, TorchAdapter):
    name = "keras-torch"
    backend = "torch"
    backend_imports = "import torch"

    def namespace(self) -> dict[str, Any]:
        import keras

        return {"torch": self.torch, "keras": keras, "os": os}

    def step_source(self, call: Call) -> str:
        # torch.autograd.grad, the cotangent in the output's dtype (a floatx loss returns float32).
        wrt = "(x, y)" if self.wrt_y(call) else "(x,)"
        lines = [self.step_header(call)]
        if call.check == "forward":
            lines.append("    " + self.forward_return(call))
        elif call.check == "grad2":  # the gradient's graph, differentiated again along v (S25)
            lines += [f"    out = {self.loss_source(call)}",
                      "    d, = torch.autograd.grad(out, (x,), grad_outputs=g.to(out.dtype), create_graph=True)",
                      f"    return torch.autograd.grad(d, {wrt}, grad_outputs=v.to(d.dtype))"]
        else:
            lines += [f"    out = {self.loss_source(call)}",
                      f"    return torch.autograd.grad(out, {wrt}, grad_outputs=g.to(out.dtype))"]
        return "\n".join(lines)
