"""Test adapters that misbehave on purpose: one aborts the process on a case, one hangs, and
a third-party style "softmax then log" adapter that plugs in through the registry."""

from __future__ import annotations

import ctypes
import os
import time

import numpy as np

from harness.adapters.base import Call, Output
from harness.adapters.numpy import NumpyAdapter


class CrashAdapter(NumpyAdapter):
    name = "crashy"

    def run(self, call: Call) -> Output:
        if np.any(call.logits.astype(np.float64) == 13.0):
            if os.environ.get("CRASHY_SEGFAULT"):
                ctypes.string_at(0)  # SIGSEGV
            os.abort()  # SIGABRT, as a failed CUDA device-side assert does
        return super().run(call)


class SleepyAdapter(NumpyAdapter):
    name = "sleepy"

    def run(self, call: Call) -> Output:
        if np.any(call.logits.astype(np.float64) == 7.0):
            time.sleep(60)
        return super().run(call)


class NaiveLogSoftmaxAdapter(NumpyAdapter):
    """A third-party adapter: log_softmax as log(exp(x) / sum(exp(x))), no max shift."""

    name = "naive"

    def run(self, call: Call) -> Output:
        if call.op != "log_softmax" or call.check != "forward":
            return super().run(call)
        x = call.logits
        with np.errstate(all="ignore"):
            e = np.exp(x)
            out = np.log(e / np.sum(e, axis=call.axis, keepdims=True)).astype(x.dtype)
        return Output({"out": out.astype(np.float64)}, {"out": str(out.dtype)}, {"out": "cpu"})


class WarnyAdapter(NumpyAdapter):
    """Warns on every call, as Keras does for a single class: the record keeps the warning."""

    name = "warny"

    def run(self, call: Call) -> Output:
        import warnings

        warnings.warn(f"{call.logits.shape[-1]} classes is an odd choice", UserWarning, stacklevel=1)
        return super().run(call)


#: The logit value at which GatedAdapter holds the run.
GATE_VALUE = 31.0


class GatedAdapter(NumpyAdapter):
    """Holds the run, deterministically, where a test wants to interrupt it: on the first call
    whose logits hold GATE_VALUE it creates `$HARNESS_TEST_GATE.reached` and waits until the
    test creates `$HARNESS_TEST_GATE.open`. Whatever the machine's load, the run is then still
    running, inside an item, when the test's signal arrives."""

    name = "gated"

    def run(self, call: Call) -> Output:
        gate = os.environ.get("HARNESS_TEST_GATE")
        if gate and np.any(call.logits.astype(np.float64) == GATE_VALUE):
            open(gate + ".reached", "w").close()
            deadline = time.monotonic() + 600  # a forgotten gate ends, never hangs a CI job
            while not os.path.exists(gate + ".open"):
                if time.monotonic() > deadline:
                    raise TimeoutError("the test never opened the gate")
                time.sleep(0.01)
        return super().run(call)


class BadOutputAdapter(NumpyAdapter):
    """Returns `returns(call, right)` instead of its Output (`right`, the numpy adapter's own): an
    adapter with a defect. The harness records an error saying what came back, never a harness
    error (tests/test_adapter_outputs.py)."""

    name = "bad_output"

    @staticmethod
    def returns(call: Call, right: Output) -> object:
        return None

    def run(self, call: Call) -> Output:
        return self.returns(call, super().run(call))  # type: ignore[return-value]


class NoneOutputAdapter(BadOutputAdapter):
    name = "none_output"


class StringOutputAdapter(BadOutputAdapter):
    name = "string_output"

    @staticmethod
    def returns(call: Call, right: Output) -> object:
        return "softmax"


class StringArrayAdapter(BadOutputAdapter):
    name = "string_array"

    @staticmethod
    def returns(call: Call, right: Output) -> object:
        return Output({n: "0.1 0.2 0.7" for n in right.arrays}, right.dtypes, right.devices)


class DictOutputAdapter(BadOutputAdapter):
    name = "dict_output"

    @staticmethod
    def returns(call: Call, right: Output) -> object:
        return dict(right.arrays)


class NoneArrayAdapter(BadOutputAdapter):
    name = "none_array"

    @staticmethod
    def returns(call: Call, right: Output) -> object:
        return Output({n: None for n in right.arrays}, right.dtypes, right.devices)


class ObjectArrayAdapter(BadOutputAdapter):
    name = "object_array"

    @staticmethod
    def returns(call: Call, right: Output) -> object:
        return Output({n: np.array([{"x": 1}] * a.size, dtype=object).reshape(a.shape) for n, a in right.arrays.items()},
                      right.dtypes, right.devices)


class BadDtypesAdapter(BadOutputAdapter):
    name = "bad_dtypes"

    @staticmethod
    def returns(call: Call, right: Output) -> object:
        return Output(right.arrays, "float64", right.devices)  # type: ignore[arg-type]


class Float32OutputAdapter(BadOutputAdapter):
    """Not a defect: float32 arrays holding the values are read as the float64 they are exactly."""

    name = "float32_output"

    @staticmethod
    def returns(call: Call, right: Output) -> object:
        return Output({n: a.astype(np.float32) for n, a in right.arrays.items()}, right.dtypes, right.devices)


class ThreadsAdapter(NumpyAdapter):
    """Says, as its skip's reason, the thread settings of the process it runs in (isolation.threads_for)
    and which process that is (its pid, and the names of the adapters that have run in it)."""

    name = "threadsays"

    def run(self, call: Call) -> Output:
        from harness.adapters import Unsupported

        _RAN_HERE.add(self.name)
        keys = ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "XLA_FLAGS")
        raise Unsupported("; ".join(f"{k}={os.environ.get(k)}" for k in keys)
                          + f"; pid={os.getpid()}; ran here={','.join(sorted(_RAN_HERE))}")


#: The names of the ThreadsAdapters that have run in this process.
_RAN_HERE: set[str] = set()


class OtherThreadsAdapter(ThreadsAdapter):
    """A second framework saying where it runs (isolation.Executor: a worker per framework)."""

    name = "threadsays2"
