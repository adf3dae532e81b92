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
    # Which cotangent the grad check uses: "pattern" (a fixed non-constant array) for the
    # ops whose output keeps the class axis, "ones" (the gradient of the sum) for reductions.
    cotangent: str


OPS: dict[str, OpSpec] = {
    "softmax": OpSpec("softmax", "none", False, ("d_logits",), "pattern"),
    "log_softmax": OpSpec("log_softmax", "none", False, ("d_logits",), "pattern"),
    "logsumexp": OpSpec("logsumexp", "none", True, ("d_logits",), "ones"),
    "softmax_cross_entropy": OpSpec("softmax_cross_entropy", "dense", True,
                                    ("d_logits", "d_labels"), "ones"),
    "sparse_softmax_cross_entropy": OpSpec("sparse_softmax_cross_entropy", "sparse", True,
                                           ("d_logits",), "ones"),
}
__all__ = ["CHECKS", "DEVICES", "MODES", "OP_NAMES", "OPS", "OpSpec", "cotangent", "get", "output_shapes"]


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


def cotangent(op: str, logits_shape: tuple[int, ...], axis: int) -> np.ndarray | None:
    """The cotangent of the grad check, in the forward output's shape, exact in every dtype.

    For softmax the cotangent must not be constant along the class axis: with all-ones the
    exact VJP is identically zero and the check would measure nothing but rounding noise.
    The values are multiples of 1/8 in [-5/8, 5/8], exactly representable in float16 and
    bfloat16.
    """
    spec = OPS[op]
    shape = output_shapes(op, "forward", logits_shape, axis)["out"]
    if spec.cotangent == "ones":
        return np.ones(shape, dtype=np.float64)
    k = np.arange(int(np.prod(shape, dtype=np.int64)), dtype=np.int64)
    return (((k * 5) % 11 - 5) / 8.0).reshape(shape)
