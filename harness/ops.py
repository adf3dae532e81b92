"""The op contracts: names, checks, what each returns, and the shapes the output must have."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import HarnessInputError
from .vocab import CHECKS, DEVICES, MODES, OP_NAMES


@dataclass(frozen=True)
class OpSpec:
    name: str
    labels: str  # "none", "dense" or "sparse"
    reduces: bool  # True when the class axis is reduced away in the forward output
    grad_outputs: tuple[str, ...]  # names of the gradient arrays the grad check returns


OPS: dict[str, OpSpec] = {
    "softmax": OpSpec("softmax", "none", False, ("d_logits",)),
    "log_softmax": OpSpec("log_softmax", "none", False, ("d_logits",)),
    "logsumexp": OpSpec("logsumexp", "none", True, ("d_logits",)),
    "softmax_cross_entropy": OpSpec("softmax_cross_entropy", "dense", True, ("d_logits", "d_labels")),
    "sparse_softmax_cross_entropy": OpSpec("sparse_softmax_cross_entropy", "sparse", True, ("d_logits",)),
}
__all__ = ["CHECKS", "COTANGENTS", "DEFAULT_COTANGENTS", "DEVICES", "MODES", "OP_NAMES", "OPS", "OpSpec", "cotangent",
           "get", "output_shapes", "reference_default"]

#: The named cotangents of the grad check (docs/semantics.md S15): the gradient of a sum, a
#: fixed non-constant pattern, the gradient of a mean. A case may also give its own arrays.
COTANGENTS = ("ones", "pattern", "mean")
#: What every grad check runs unless the case names its own: a VJP that drops or mis-scales
#: the upstream gradient is invisible to "ones" for the reductions, and "ones" is what
#: training feeds softmax and log_softmax (the gradient of sum(log_softmax(x))).
DEFAULT_COTANGENTS = ("ones", "pattern")


def get(name: str) -> OpSpec:
    try:
        return OPS[name]
    except KeyError:
        raise HarnessInputError(f"unknown op {name!r}", field="op", choices=OP_NAMES) from None


def output_shapes(op: str, check: str, logits_shape: tuple[int, ...], axis: int) -> dict[str, tuple[int, ...]]:
    """The shapes the framework must return, by output name."""
    spec = OPS[op]
    ax = axis % len(logits_shape)
    reduced = tuple(n for i, n in enumerate(logits_shape) if i != ax)
    if check == "forward":
        return {"out": reduced if spec.reduces else tuple(logits_shape)}
    return {name: tuple(logits_shape) for name in spec.grad_outputs}


def reference_default(op: str) -> str:
    """The cotangent the reference engine takes for a grad check given none (S15): the gradient
    of the sum for the reductions, the pattern for softmax and log_softmax (for which "ones" makes
    softmax's exact VJP identically 0)."""
    return "ones" if OPS[op].reduces else "pattern"


def cotangent(kind: str, op: str, logits_shape: tuple[int, ...], axis: int) -> np.ndarray:
    """A named cotangent of the grad check, in the forward output's shape, as float64 (cast to
    the tested dtype by the caller: the reference and the framework see the same values).

    - `ones`: the gradient of the sum of the outputs (what training feeds a loss, and what
      sum(log_softmax(x)) feeds log_softmax). For softmax the exact VJP is then 0.
    - `pattern`: ((5j mod 11) - 5) / 8 over the C-order flat index j: multiples of 1/8 in
      [-5/8, 5/8], mixed signs, zeros, unequal magnitudes, exact in every dtype.
    - `mean`: 1/N for N output elements (the rows of a reduction): the gradient of a mean.
    """
    shape = output_shapes(op, "forward", logits_shape, axis)["out"]
    n = int(np.prod(shape, dtype=np.int64))
    if kind == "ones":
        return np.ones(shape, dtype=np.float64)
    if kind == "pattern":
        k = np.arange(n, dtype=np.int64)
        return (((k * 5) % 11 - 5) / 8.0).reshape(shape)
    if kind == "mean":
        return np.full(shape, 1.0 / max(n, 1))
    raise HarnessInputError(f"unknown cotangent {kind!r}", field="cotangent", choices=list(COTANGENTS))
