"""Adapters that raise what ends a thread or a process: SystemExit and KeyboardInterrupt from
inside a framework call (a library calling sys.exit(), a C extension re-raising an interrupt),
and a BaseException that no `except Exception` in the harness catches (a harness fault)."""

from __future__ import annotations

import numpy as np

from harness.adapters.base import Call, Output
from harness.adapters.numpy import NumpyAdapter

#: The logit values that trigger each fault.
EXIT_VALUE, INTERRUPT_VALUE, ESCAPE_VALUE = 13.0, 17.0, 19.0


class Escape(BaseException):
    """Not an Exception: passes every `except Exception` of the harness, as a bug of its own would."""


def _has(call: Call, v: float) -> bool:
    return bool(np.any(np.asarray(call.logits, dtype=np.float64) == v))


class ExitingAdapter(NumpyAdapter):
    """sys.exit() on EXIT_VALUE, KeyboardInterrupt on INTERRUPT_VALUE, inside the framework call."""

    name = "exiting"

    def run(self, call: Call) -> Output:
        if _has(call, EXIT_VALUE):
            raise SystemExit(3)
        if _has(call, INTERRUPT_VALUE):
            raise KeyboardInterrupt("raised by the library itself")
        return super().run(call)


class EscapingAdapter(NumpyAdapter):
    """A BaseException that no `except Exception` catches, as a fault of the harness's own code
    would be: the job that meets it must not end in silence."""

    name = "escaping"

    def run(self, call: Call) -> Output:
        if _has(call, ESCAPE_VALUE):
            raise Escape("a fault the item's handler does not catch")
        return super().run(call)


#: The logit value on which SignallingAdapter sends Ctrl-C to its process group.
SIGNAL_VALUE = 23.0


class SignallingAdapter(NumpyAdapter):
    """Sends SIGINT to its whole process group as its call returns: the interrupt reaches the
    run at an item boundary (its record on its way, the next item about to start)."""

    name = "signalling"

    def run(self, call: Call) -> Output:
        out = super().run(call)
        if _has(call, SIGNAL_VALUE):
            import os
            import signal

            os.killpg(os.getpgrp(), signal.SIGINT)
        return out
