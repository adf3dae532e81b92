"""The op registry: each op of the softmax family declared once, beside everything about it.

An `OpSpec` holds an op's contract (the labels it takes, whether it reduces the class axis, its
gradient outputs, the options it accepts) and its mathematics, written once:

- `formula`: the exact value from the max-shifted quantities of a row (`Row`), in the reference
  backends' common arithmetic (+ - * /, exp, log1p, fsum, num: Arb balls, MPFR, mpmath and the
  split numbers of reference._SplitBackend all run it; docs/semantics.md S2-S5);
- `limit`: the row's values at a single +inf logit (S6, S7), decided without arithmetic;
- `no_limit`: the value of a row without a limit (two +inf, no finite entry: S8, S9);
- `condition`: the term A_i of the `standard` budget, from the algorithm's quantities of the
  exact inputs (`Terms`; docs/tolerance.md).

The reference engine, the verdict, the case loader and the search dispatch on the spec; nothing
else holds a per-op branch, and an unknown op or option raises naming the valid ones (the model:
PyTorch's OpInfo, an op declared once with its reference beside it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Callable

import numpy as np

from .errors import HarnessInputError
from .vocab import CHECKS, DEVICES, INVARIANCE_CHECKS, MODES, OP_NAMES, VALUE_CHECKS

_INF = float("inf")
_NAN = float("nan")

__all__ = ["CHECKS", "INVARIANCE_CHECKS", "VALUE_CHECKS", "COTANGENTS", "DEFAULT_COTANGENTS", "DEVICES", "MODES", "OP_NAMES", "OPS", "OpSpec", "PARAMS",
           "Param", "Row", "Terms", "cotangent", "get", "output_shapes", "reference_default", "validate_options",
           "fits"]


# ---------------------------------------------------------------------------------------------
# The quantities the formulas and condition terms are written in


class Row:
    """One row's max-shifted quantities at the current precision of backend `be`: d_i = x_i - m
    and e_i = exp(d_i) (None at -inf), k the first index of the max (e_k = 1 exactly), T the sum
    of the other terms, S = 1 + T, L = log S = log1p(T), s_i = e_i / S and 1 - s_k = T / S.

    No quantity is formed as 1 + tiny and then taken apart again: a confident row (T below 2^-P)
    would otherwise round S to 1 and lose log S and 1 - s_k, which are computed from T instead."""

    def __init__(self, be: Any, d: list[Any], e: list[Any], m: float):
        self.be, self.d, self.e, self.m = be, d, e, m
        self.k = next(i for i, di in enumerate(d) if di is not None and di == 0)
        self.T = be.fsum([v for i, v in enumerate(e) if v is not None and i != self.k])
        self.S = 1 + self.T
        self.L = be.log1p(self.T)
        self.s = [0.0 if v is None else v / self.S for v in e]
        self.one_minus_sk = self.T / self.S


@dataclass
class Terms:
    """The quantities of a batch of rows (class axis last) that the condition terms are written in,
    in float64 from the exact inputs: s_i, |d_i|, L = log S, D = sum_j s_j |d_j|, sigma(C), W_i
    (the absolute error of d_i - L in units of u), m, the one-hot or dense labels y and the
    cotangent g (the row's number for the reductions), and `summation` (the policy's model)."""

    s: np.ndarray
    absd: np.ndarray
    L: np.ndarray
    D: np.ndarray
    sig: float
    W: np.ndarray
    m: np.ndarray
    y: np.ndarray | None
    g: np.ndarray | None
    summation: Summation
    #: The labels as given (before an option such as label smoothing made `y` of them) and the
    #: case's options: the condition terms of an option read them.
    y0: np.ndarray | None = None
    opts: dict[str, Any] = field(default_factory=dict)
    #: The logits (class axis last; -inf where masked), and the options' arrays likewise in `opts`.
    x: np.ndarray | None = None
    #: The grad2 check's direction (class axis last; 0 where masked).
    v: np.ndarray | None = None


def sum_term(C: Any, how: str) -> Any:
    """sigma(C), the summation error of C terms in units of u (C a number or an array): log2
    (pairwise), sqrt (Higham and Mary's probabilistic bound) or linear (a recursive sum)."""
    c = np.asarray(C, dtype=np.float64)
    with np.errstate(divide="ignore"):
        out = {"log2": np.where(c > 0, np.log2(np.maximum(c, 1.0)) + 1, 1.0), "sqrt": np.sqrt(c), "linear": c}[how]
    return float(out) if out.ndim == 0 else out


@dataclass(frozen=True)
class Summation:
    """The policy's model of a sum's error, sigma(C) in units of the tested dtype's u: `how` the
    growth with the count of terms (sum_term), `wide` the unit roundoff of the accumulator over the
    dtype's. With an accumulator as narrow as the dtype (wide = 1) a sum of C terms errs by
    sum_term(C); with a wider one (float32 for float16 and bfloat16, the best algorithm: the
    policy's `accumulate`) by that sum's own error, wide * sum_term(C), and one rounding of the
    sum to the dtype, 1 + wide * sum_term(C) (docs/tolerance.md)."""

    how: str = "sqrt"
    wide: float = 1.0

    def __call__(self, C: Any) -> Any:
        sig = sum_term(C, self.how)
        return sig if self.wide >= 1.0 else 1.0 + self.wide * sig

    @classmethod
    def of(cls, s: Summation | str) -> Summation:
        return s if isinstance(s, Summation) else cls(s)


# ---------------------------------------------------------------------------------------------
# Rules shared by the ops (docs/semantics.md)


def scaled_inf(g: float) -> float:
    """+inf times the cotangent g (0 for g == 0: the limit of g times a term that grows, S7)."""
    return math.copysign(_INF, g) if g != 0 else 0.0


def exact_sum(be: Any, vals: list[Any]) -> Any:
    """The exact sum of floats (a wide enough precision holds any sum of doubles exactly), or of
    exact rationals (summed as Fractions, then one number at 4400 bits)."""
    if any(isinstance(v, Fraction) for v in vals):
        with be.context(4400):
            return lab(be, sum((Fraction(v) for v in vals), Fraction(0)))
    with be.context(4400):
        return be.fsum([be.num(v) for v in vals])


def lab(be: Any, y: Any) -> Any:
    """A label value as a number of the backend: a float exactly, an exact rational (a smoothed
    label) rounded at the current precision (exactly in the split arithmetic that decides)."""
    return be.rational(y) if isinstance(y, Fraction) else be.num(y)


# ---------------------------------------------------------------------------------------------
# The options (docs/semantics.md S19): each declared once with its type and valid range.


@dataclass(frozen=True)
class Param:
    name: str
    kind: str  # "number" (a float in [lo, hi]), "integer", "flag", "per_class" (C finite numbers), "choice",
    # "mask" (booleans of the logits' shape), "array" (finite numbers of the logits' shape)
    lo: float = -math.inf  # the valid range of a number, both ends included
    hi: float = math.inf
    #: Whether the value is an input cast to the tested dtype like the logits (a tensor the framework
    #: takes in that dtype: class weights), or a hyper-parameter taken exactly as given (S19).
    cast: bool = False
    doc: str = ""
    choices: tuple[str, ...] = ()  # the values of a "choice"

    def check(self, v: Any, C: int | None = None, shape: tuple[int, ...] | None = None) -> str | None:
        """Why `v` is not a valid value (for C classes, logits of `shape`), or None."""
        if self.kind in ("mask", "array"):
            def ok(a: Any) -> bool:
                if isinstance(a, list):
                    return all(ok(b) for b in a)
                if self.kind == "mask":
                    return isinstance(a, bool)
                return not isinstance(a, bool) and isinstance(a, (int, float)) and math.isfinite(a)
            if not isinstance(v, list) or not ok(v):
                what = "true/false" if self.kind == "mask" else "finite numbers"
                return f"{self.name} must be a nested list of {what}, not {str(v)[:40]}"
            got = np.shape(np.asarray(v, dtype=object))
            if shape is not None and tuple(got) != tuple(shape):
                return f"{self.name} of shape {list(got)} does not match the logits {list(shape)}"
            return None
        if self.kind == "flag":
            if not isinstance(v, bool):
                return f"{self.name} must be true or false, not {v!r}"
            return None
        if self.kind == "choice":
            if v not in self.choices:
                return f"{self.name} must be one of {', '.join(self.choices)}, not {v!r}"
            return None
        if self.kind == "integer":
            if isinstance(v, bool) or not isinstance(v, int):
                return f"{self.name} must be an integer, not {v!r}"
            return None
        if self.kind == "per_class":
            ok = isinstance(v, list) and all(not isinstance(w, bool) and isinstance(w, (int, float))
                                             and math.isfinite(w) for w in v)
            if not ok:
                return f"{self.name} must be a list of finite numbers, one per class, not {v!r}"
            if C is not None and len(v) != C:
                return f"{self.name} has {len(v)} entries for {C} classes"
            return None
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            return f"{self.name} must be a finite number, not {v!r}"
        if not self.lo <= v <= self.hi:
            return f"{self.name} must lie in [{self.lo:g}, {self.hi:g}], not {v!r}"
        return None


def value_check_error(check: str) -> str:
    """Why `check` is no value check (what `harness search` and `harness.exact` take)."""
    if check in INVARIANCE_CHECKS:
        return (f"check {check!r} compares variants of a call with each other (an invariance check of `harness run`); "
                f"this takes a check of one call's values")
    return f"unknown check {check!r}"


PARAMS: dict[str, Param] = {p.name: p for p in (
    Param("reduction", "choice", choices=("none", "sum", "mean"),
          doc="none: one loss per row; sum: their sum; mean: their weighted mean, sum_r w_r loss_r / sum_r w_r "
              "over the rows not ignored, w_r the weight of row r's label (1 without weights): torch's "
              "definition; every row ignored is 0 / 0, NaN (S21)"),
    Param("scale", "number", cast=True,
          doc="s, a finite number cast to the tested dtype and given to the call as a runtime input: the op of "
              "the logits x * s (an inverse temperature, as users write softmax(logits * s)), the product "
              "rounded in the tested dtype; the gradient with respect to x is s times the op's (S24)"),
    Param("where", "mask",
          doc="a boolean array of the logits' shape: where it is false the logit is -inf, a constant (the "
              "S4 limits; gradients 0 there); a row with nothing kept is S9 (S22)"),
    Param("label_smoothing", "number", 0.0, 1.0,
          doc="epsilon in [0, 1]: the labels become (1 - epsilon) y + epsilon / C over the class axis, C its "
              "length (torch, Keras and optax.smooth_labels agree); for integer labels y is the one-hot row (S19)"),
    Param("weights", "per_class", cast=True,
          doc="w, one finite number per class, cast to the tested dtype: the loss of a row is sum_i w_i y'_i "
              "(lse - x_i), y' the (smoothed) one-hot row: w_k (lse - x_k) without smoothing (S20)"),
    Param("b", "array", cast=True,
          doc="scale weights of the logits' shape, cast to the tested dtype: log |sum_i b_i exp(x_i)| (scipy's and "
              "jax.nn's logsumexp); an entry with b_i = 0 takes no part (its logit may be +inf), negative "
              "weights allowed; a negative sum is NaN without return_sign (S23)"),
    Param("return_sign", "flag",
          doc="with b: logsumexp returns (log |sum b_i exp(x_i)|, sign of the sum), the sign +1, -1 or 0 "
              "(an exactly zero sum, whose log is -inf) (S23)"),
    Param("ignore_index", "integer",
          doc="a label value whose rows do not take part: loss and gradients exactly 0, whatever the row's "
              "logits; any integer, a valid class index too (S20)"),
)}


def cast_options(opts: dict[str, Any], cast: Callable[[np.ndarray], np.ndarray]) -> dict[str, Any]:
    """The options with their `cast` values (class weights) cast to the tested dtype by `cast`
    (float64 arrays holding the cast values), as lists of floats: what the reference and the
    framework see (S1)."""
    return {k: (cast(np.asarray(v, dtype=np.float64)).tolist() if PARAMS[k].cast else v) for k, v in opts.items()}


def scaled_logits(x: np.ndarray, opts: dict[str, Any], round_: Callable[[np.ndarray], np.ndarray]
                  ) -> tuple[np.ndarray, dict[str, Any]]:
    """The logits the op is taken of under `scale` (S24): x * s rounded by `round_` to the tested
    dtype (the product of two values of it is exact in float64 below float64, which rounds its own
    correctly), and the options with the scale kept as `_scale`, the factor of the gradient with
    respect to x. Unchanged without a scale."""
    if "scale" not in opts:
        return x, opts
    s = float(opts["scale"])
    with np.errstate(invalid="ignore", over="ignore"):
        xs = round_(np.asarray(x, dtype=np.float64) * s)
    return xs, {**{k: v for k, v in opts.items() if k != "scale"}, "_scale": s}


def smoothing(opts: dict[str, Any]) -> Fraction:
    """The label smoothing epsilon of the options, exactly (0 when absent)."""
    return Fraction(opts.get("label_smoothing", 0.0))


def smoothed(ys: list[Any], eps: Fraction) -> list[Any]:
    """(1 - eps) y_i + eps / C, exactly (Fractions); the labels as given where eps = 0."""
    if not eps:
        return ys
    C = len(ys)
    return [(1 - eps) * Fraction(y) + eps / C for y in ys]


def reduction(opts: dict[str, Any]) -> str:
    return opts.get("reduction", "none")


def row_weights(y: np.ndarray, label_kind: str, C: int, opts: dict[str, Any]) -> np.ndarray:
    """The weight of each row in a mean (S21), exactly as float64 values of the cast weights:
    w[label] for integer labels under class weights, else 1; 0 for an ignored row. Rows of an
    invalid label get 1 (their NaN decides the result anyway)."""
    out = np.ones(np.shape(y)[0], dtype=np.float64)
    if label_kind != "sparse":
        return out
    lab = np.asarray(y).reshape(-1)
    if "weights" in opts:
        w = np.asarray(opts["weights"], dtype=np.float64)
        ok = (lab >= 0) & (lab < C)
        out = np.where(ok, w[np.clip(lab, 0, C - 1)], 1.0)
    if "ignore_index" in opts:
        out = np.where(lab == opts["ignore_index"], 0.0, out)
    return out


def ignored(lab_: Any, opts: dict[str, Any]) -> bool:
    """Whether an integer label is the options' ignore_index: its row does not take part (S20)."""
    return "ignore_index" in opts and lab_ == opts["ignore_index"]


def sparse_labels(lab_: int, C: int, opts: dict[str, Any]) -> list[Any]:
    """The dense labels the sparse loss of label k is taken against under the options (exact):
    w_i ((1 - eps) delta_ik + eps / C), zero for an ignored row (S19, S20)."""
    if ignored(lab_, opts):
        return [0.0] * C
    ys = smoothed([1.0 if i == lab_ else 0.0 for i in range(C)], smoothing(opts))
    w = opts.get("weights")
    if w is None:
        return ys
    return [Fraction(wi) * Fraction(y) if isinstance(y, Fraction) else wi * y for wi, y in zip(w, ys)]


def labels_seen(y: np.ndarray | None, opts: dict[str, Any], lab: np.ndarray | None = None) -> np.ndarray | None:
    """The labels the loss is taken against (class axis last), in float64, for the condition terms
    (the reference uses them exactly): smoothed, weighted per class, zero on ignored rows. `lab`
    holds the integer labels where `y` is their one-hot rows."""
    if y is None:
        return y
    eps = float(opts.get("label_smoothing", 0.0))
    if eps:
        y = (1.0 - eps) * y + eps / y.shape[-1]
    if "weights" in opts:
        y = y * np.asarray(opts["weights"], dtype=np.float64)
    if lab is not None and "ignore_index" in opts:
        y = np.where((lab == opts["ignore_index"])[..., None], 0.0, y)
    return y


def signed_inf_sum(weights: list[float]) -> float:
    """Sum of y_i * (+inf) for nonzero y_i: +inf, -inf, or NaN when signs are mixed (S5)."""
    pos = any(w > 0 for w in weights)
    neg = any(w < 0 for w in weights)
    return _NAN if (pos and neg) else (_INF if pos else -_INF)


# ---------------------------------------------------------------------------------------------
# softmax


def _softmax_formula(be: Any, check: str, r: Row, ys: Any, gs: Any, opts: dict[str, Any]) -> dict[str, list[Any]]:
    if check == "forward":
        return {"out": r.s}
    # g_i - G with G = sum g_j s_j = g_k s_k + R: g_i - G = (g_i - g_k) + Q, Q = g_k (1 - s_k) - R.
    R = be.fsum([g * si for i, (g, si) in enumerate(zip(gs, r.s)) if si != 0.0 and i != r.k])
    Q = gs[r.k] * r.one_minus_sk - R
    gk = be.num(gs[r.k])  # g_i - g_k in the backend: as floats it could round
    return {"d_logits": [0.0 if si == 0.0 else si * ((g - gk) + Q) for g, si in zip(gs, r.s)]}


def _softmax_limit(be: Any, check: str, xs: list[float], ys: Any, gs: Any, p: int, opts: dict[str, Any]) -> dict[str, list[Any]]:
    C = len(xs)
    if check == "forward":  # one-hot at the +inf entry
        return {"out": [1.0 if i == p else 0.0 for i in range(C)]}
    return {"d_logits": [0.0] * C}  # s_p (g_p - g_p) = 0, and s_i = 0 elsewhere


def _softmax_condition(check: str, t: Terms) -> dict[str, np.ndarray]:
    if check == "forward":
        return {"out": t.s * t.W}  # s_i = e_i / S: the relative errors of e_i and S
    ag = np.abs(t.g)  # s_i (g_i - G), G = sum g_j s_j
    G = np.sum(ag * t.s, axis=-1, keepdims=True)
    H = np.sum(ag * t.s * t.W, axis=-1, keepdims=True)
    return {"d_logits": t.s * ((t.W + 1) * (ag + G) + H)}


# ---------------------------------------------------------------------------------------------
# log_softmax


def _log_softmax_formula(be: Any, check: str, r: Row, ys: Any, gs: Any, opts: dict[str, Any]) -> dict[str, list[Any]]:
    if check == "forward":
        return {"out": [-_INF if di is None else di - r.L for di in r.d]}
    Sg = be.fsum([be.num(g) for g in gs])
    # At k: g_k - s_k sum g = -(sum of the other g) + (1 - s_k) sum g.
    rest = be.fsum([be.num(-g) for i, g in enumerate(gs) if i != r.k])
    return {"d_logits": [float(g) if si == 0.0 else (rest + r.one_minus_sk * Sg if i == r.k else g - si * Sg)
                         for i, (g, si) in enumerate(zip(gs, r.s))]}


def _log_softmax_limit(be: Any, check: str, xs: list[float], ys: Any, gs: Any, p: int, opts: dict[str, Any]) -> dict[str, list[Any]]:
    if check == "forward":
        return {"out": [0.0 if i == p else -_INF for i in range(len(xs))]}
    # g_p - sum g = -(sum of the others), exactly: a float fsum minus g_p can cancel.
    rest = exact_sum(be, [-g for i, g in enumerate(gs) if i != p])
    return {"d_logits": [rest if i == p else float(g) for i, g in enumerate(gs)]}


def _log_softmax_condition(check: str, t: Terms) -> dict[str, np.ndarray]:
    if check == "forward":
        return {"out": t.W}  # d_i - L: steps 1 and 4, absolute
    Sg = np.sum(t.g, axis=-1, keepdims=True)  # g_i - s_i sum g
    return {"d_logits": t.s * np.abs(Sg) * (t.W + 1) + np.abs(t.g)
            + t.s * np.sum(np.abs(t.g), axis=-1, keepdims=True) * t.sig}


# ---------------------------------------------------------------------------------------------
# logsumexp


def _logsumexp_formula(be: Any, check: str, r: Row, ys: Any, gs: Any, opts: dict[str, Any]) -> dict[str, list[Any]]:
    if "b" in opts:
        return _weighted_lse_formula(be, check, r, gs, opts)
    if check == "forward":
        return {"out": [r.L + r.m]}
    return {"d_logits": [0.0 if si == 0.0 else gs * si for si in r.s]}


# logsumexp with scale weights b (S23). The reference works on the row as scipy defines it: an
# entry with b_i = 0 takes no part (its logit is -inf to the sum, row_options), m is the max of the
# others, and the sign of S_b = sum b_i exp(x_i - m) is decided exactly before any arithmetic
# (weighted_sign). Then sigma S_b = 1 + T_b with T_b = (sigma B_0 - 1) + sigma sum_{d_i < 0} b_i e_i,
# B_0 the exact sum of the weights at the max: log sigma S_b = log1p(T_b) keeps a confident row's
# tiny T_b, as Row does for the plain op.


#: Exponents of exact sums of exponentials (exp_sum) are integers in units of 2^-EXP_UNIT: every
#: double, and every sum or integer multiple of doubles, is an integer multiple of 2^-1074.
EXP_UNIT = 1074


def exponent(x: float | Fraction) -> int:
    """x (a double, or a sum of them) as an exponent of exp_sum: x 2^EXP_UNIT, an integer."""
    q = Fraction(x) * (1 << EXP_UNIT)
    if q.denominator != 1:
        raise ValueError(f"{x} is no multiple of 2^-{EXP_UNIT}")
    return q.numerator


def exp_sum(terms: dict[int, Fraction], rel_bits: int | None = None) -> tuple[int, Any]:
    """The sign of sum_k c_k exp(k 2^-EXP_UNIT) for exact rationals c_k, exactly; with `rel_bits`,
    also the ends (lo, hi) of an interval around the sum (mpf numbers) narrower than 2^-rel_bits
    relative (None for the exact 0, or without `rel_bits`).

    The sum is 0 only when every c_k is 0: the exponentials of distinct rationals are linearly
    independent over the algebraic numbers (Lindemann-Weierstrass). Else the interval evaluation is
    repeated at a precision raised until its interval excludes 0 (it does, the sum being nonzero),
    and is that narrow. The exponents are shifted by the largest one first, exactly: the terms
    that matter have small exponents then, and the others' exp spreads harmlessly below them."""
    import mpmath

    terms = {k: c for k, c in terms.items() if c}
    if not terms:
        return 0, None
    top = max(terms)
    iv, prec, saved = mpmath.iv, 64, mpmath.iv.prec
    try:
        while prec <= 1 << 20:
            iv.prec = prec
            tot = iv.mpf(0)
            for k, c in terms.items():
                e = iv.exp(iv.ldexp(iv.mpf(k - top), -EXP_UNIT)) if k != top else iv.mpf(1)
                tot += (iv.mpf(c.numerator) / iv.mpf(c.denominator)) * e
            if tot.a > 0 or tot.b < 0:
                sign = 1 if tot.a > 0 else -1
                if rel_bits is None:
                    return sign, None
                tot *= iv.exp(iv.ldexp(iv.mpf(top), -EXP_UNIT))
                lo, hi = (mpmath.mpf(v) for v in tot._mpi_)
                if hi - lo <= min(abs(lo), abs(hi)) * mpmath.ldexp(1, -rel_bits):
                    return sign, (lo, hi)
            prec *= 2
    finally:
        iv.prec = saved
    raise ArithmeticError(f"the sign of a sum of {len(terms)} exponentials is not decided at {prec} bits")


def _weights_by_logit(xs: list[float], bs: list[float]) -> dict[float, Fraction]:
    """The sum of the weights of each distinct finite logit, exactly."""
    W: dict[float, Fraction] = {}
    for x, b in zip(xs, bs):
        if math.isfinite(x):
            W[x] = W.get(x, Fraction(0)) + Fraction(b)
    return W


def _sign_of(W: dict[float, Fraction], xs: list[float]) -> int:
    """The sign of sum_x W[x] exp(x), exactly (exp_sum); `xs` names the row in the error."""
    try:
        return exp_sum({exponent(x): B for x, B in W.items()})[0]
    except ArithmeticError:
        raise ArithmeticError(f"the sign of sum b exp(x) over {xs[:8]} is not decided") from None


def weighted_sign(xs: list[float], bs: list[float]) -> int:
    """The sign of sum_i b_i exp(x_i) over the finite x_i, exactly (exp_sum): 0 only when the
    weights of each distinct logit sum to 0."""
    return _sign_of(_weights_by_logit(xs, bs), xs)


def row_options(opts: dict[str, Any], xs: list[float], bs: list[float] | None) -> tuple[list[float], dict[str, Any]]:
    """A row's logits and options for the reference (S23): with weights `bs`, an entry with b_i = 0
    becomes -inf (it takes no part), and so do equal logits whose weights sum to 0; the options
    carry the row's b, its original logits and the exact sign of the sum."""
    if bs is None:
        return xs, opts
    # Equal finite logits whose weights sum to 0 take no part either: their terms cancel exactly,
    # which a ball's e - e cannot show, and the value they leave (often exact: the max, a quotient
    # of one remaining term) sits on a rounding boundary that only exact arithmetic decides (S18).
    # The groups that cancel add 0 to the sum, so its sign is that of all the groups.
    W = _weights_by_logit(xs, bs)
    xr = [-_INF if b == 0 or (math.isfinite(x) and W[x] == 0) else x for x, b in zip(xs, bs)]
    return xr, {**opts, "b": bs, "_x": xs, "_sign": _sign_of(W, xr)}


def _weighted_lse_formula(be: Any, check: str, r: Row, gs: Any, opts: dict[str, Any]) -> dict[str, list[Any]]:
    bs, xs, sg = opts["b"], opts["_x"], opts["_sign"]
    Q = sg * sum((Fraction(b) for b, di in zip(bs, r.d) if di is not None and di == 0), Fraction(0)) - 1
    rest = be.fsum([be.num(b) * ei for b, di, ei in zip(bs, r.d, r.e) if di is not None and not di == 0])
    T = (be.rational(Q) if Q else be.zero()) + (rest if sg > 0 else -rest)
    if check == "forward":
        out = {"out": [be.log1p(T) + r.m]}
        if opts.get("return_sign"):
            out["sign"] = [float(sg)]
        return out
    gsb = lab(be, gs) if isinstance(gs, Fraction) else gs
    den = (1 + T) if sg > 0 else -(1 + T)  # S_b, with its sign
    # exp(x_i - m) of every finite logit: the row's e_i, or the own one of a logit that takes no
    # part in S_b (b_i = 0, or a group whose weights cancel: row_options), which d_b_i needs all
    # the same, and such a group's d_logits_i = b_i exp(x_i - m) / S_b too.
    ex = [ei if ei is not None else be.exp(be.diff(x, r.m)) if math.isfinite(x) else None
          for x, ei in zip(xs, r.e)]
    dl = [0.0 if b == 0 or e is None else gsb * (be.num(b) * e) / den for b, e in zip(bs, ex)]
    db = []
    for x, e in zip(xs, ex):
        if e is not None:
            db.append(gsb * e / den)
        elif x == -_INF:
            db.append(0.0)
        elif x != x:
            db.append(_NAN)
        else:  # +inf
            db.append(scaled_inf(gs * sg))
    return {"d_logits": dl, "d_b": db}


def _logsumexp_special(be: Any, check: str, xs: list[float], gs: Any, opts: dict[str, Any], names: tuple[str, ...]
                       ) -> tuple[dict[str, list[Any]], bool] | None:
    """The rows of logsumexp with weights that S23 decides without arithmetic (xs as row_options
    made them: -inf where b_i = 0), or None."""
    if "b" not in opts:
        return None
    bs, x0, sg, rs = opts["b"], opts["_x"], opts["_sign"], bool(opts.get("return_sign"))
    C = len(xs)
    g = gs if check == "grad" else 1.0

    def rows(out: float, sign: float, dl: list[Any], db: list[Any], invalid: bool = False,
             d2: list[Any] | None = None):
        # grad2 (S25): NaN where the gradient has no value, 0 where it is constant, as d_logits
        vals = {"out": [out], "sign": [sign], "d_logits": dl, "d_b": db, "d2_logits": dl if d2 is None else d2}
        return {n: vals[n] for n in names}, invalid

    nan = [_NAN] * C
    if any(v != v for v in xs):
        return rows(_NAN, _NAN, nan, nan)
    pinf = [i for i, v in enumerate(xs) if v == _INF]
    if pinf:
        signs = {1 if bs[i] > 0 else -1 for i in pinf}
        if len(signs) > 1:  # +inf - inf
            return rows(_NAN, _NAN, nan, nan)
        s = signs.pop()
        if s < 0 and not rs:  # the log of -inf: outside the op's domain without the sign
            return rows(_NAN, _NAN, nan, nan, True)
        if len(pinf) > 1:  # inf / inf in every gradient
            return rows(_INF, float(s), nan, nan)
        p = pinf[0]
        with be.context(4400):
            dbp = lab(be, Fraction(g) / Fraction(bs[p])) if check == "grad" else 0.0
        dl = [g if i == p else 0.0 for i in range(C)]
        db = [dbp if i == p else (_NAN if x0[i] != x0[i] or x0[i] == _INF else 0.0) for i in range(C)]
        return rows(_INF, float(s), dl, db, d2=[0.0] * C)
    if sg == 0:  # an exactly zero sum (or nothing left): log 0, no gradient
        dl = [_NAN if (b != 0 and x != -_INF) else 0.0 for x, b in zip(x0, bs)]
        db = [0.0 if x == -_INF else _NAN for x in x0]
        return rows(-_INF, 0.0, dl, db)
    if sg < 0 and not rs:  # the log of a negative number
        return rows(_NAN, _NAN, nan, nan, True)
    return None


def _logsumexp_limit(be: Any, check: str, xs: list[float], ys: Any, gs: Any, p: int, opts: dict[str, Any]) -> dict[str, list[Any]]:
    if check == "forward":
        return {"out": [_INF]}
    return {"d_logits": [gs * (1.0 if i == p else 0.0) for i in range(len(xs))]}


def _logsumexp_no_limit(check: str, has_pos_inf: bool) -> float:
    """Two +inf: lse = +inf; no finite entry: the log of an empty sum, -inf (S8, S9)."""
    if check == "forward":
        return _INF if has_pos_inf else -_INF
    return _NAN


def _weighted_lse_condition(check: str, t: Terms) -> dict[str, np.ndarray]:
    """S23's terms, from the algorithm scipy and jax.nn write: m_b the max over b_i != 0, t_i =
    b_i e_i (e_i = exp(x_i - m_b): |d_i| + 1 roundings of a relative u, one more for the product),
    S_b their sum (sigma(C) more, relative to sum |t_i|), log |S_b| (+|L_b|), + m_b (+|m_b + L_b|).
    K is the relative error of S_b in units of u: sum |t_i| (|d_i| + 2 + sigma) / |S_b|, which
    grows with the cancellation sum |t_i| / |S_b| of mixed signs, as the problem's conditioning
    does. The gradients b_i e_i / S_b and e_i / S_b add one rounding each for the product and the
    quotient and K for S_b (the cotangent's product one more)."""
    b = np.asarray(t.opts["b"], dtype=np.float64)
    x = t.x
    with np.errstate(all="ignore"):
        keep = (b != 0) & (x > -np.inf)
        xb = np.where(keep, x, -np.inf)
        mb = np.max(xb, axis=-1, keepdims=True)
        fin = np.isfinite(x)
        d = np.where(fin, x - mb, -np.inf)
        e = np.where(fin, np.exp(d), 0.0)
        ad = np.where(fin, np.abs(d), 0.0)
        tt = np.where(keep, np.abs(b) * e, 0.0)
        Sb = np.abs(np.sum(np.where(keep, b * e, 0.0), axis=-1, keepdims=True))
        K = np.sum(tt * (ad + 2 + t.sig), axis=-1, keepdims=True) / Sb
        Lb = np.log(Sb)
        if check == "forward":
            A = (np.abs(mb + Lb) + np.abs(Lb) + K + 1.0)[..., 0]
            return {"out": A, "sign": np.zeros_like(A)}
        g = np.abs(t.g)
        return {"d_logits": g * tt / Sb * (ad + 4 + K), "d_b": g * e / Sb * (ad + 3 + K)}


def _logsumexp_condition(check: str, t: Terms) -> dict[str, np.ndarray]:
    if "b" in t.opts:
        return _weighted_lse_condition(check, t)
    if check == "forward":  # m + L: the output's own magnitude enters its last rounding
        return {"out": (np.abs(t.m + t.L) + t.L + t.sig + t.D + 1.0)[..., 0]}
    return {"d_logits": np.abs(t.g) * t.s * (t.W + 1)}  # g s_i


# ---------------------------------------------------------------------------------------------
# The cross-entropies (sparse labels are one-hot dense labels to the condition term)


def _ce_core(be: Any, check: str, r: Row, ys: list[Any], gs: Any, dy_factor: Fraction | None
             ) -> dict[str, list[Any]]:
    """The dense cross-entropy of the labels `ys` the loss is taken against (floats, or exact
    rationals under an option), and d_labels times `dy_factor` (None: no d_labels)."""
    Y = [lab(be, y) if isinstance(y, Fraction) else y for y in ys]
    gs = lab(be, gs) if isinstance(gs, Fraction) else gs  # the row's share of a mean's cotangent (S21)
    if check == "forward":
        # -sum y_i log_softmax_i = sum y_i (L - d_i); y_i = 0 contributes 0 even at -inf.
        inf_terms = [y for y, di in zip(ys, r.d) if di is None and y != 0]
        if inf_terms:
            return {"out": [signed_inf_sum(inf_terms)]}
        # As (sum y) L - sum y_i d_i, sum y exact: labels summing to 0 leave no L, and the loss is
        # the rational -sum y_i d_i, exactly (a ball's L (y_1 + y_2) with y_2 = -y_1 is not 0).
        Sy = sum((Fraction(y) for y in ys if y != 0), Fraction(0))
        terms = [(-Yi) * di for y, Yi, di in zip(ys, Y, r.d) if y != 0]
        return {"out": [be.fsum(terms + ([be.rational(Sy) * r.L] if Sy else []))]}
    # The VJP with the row's cotangent gs: s_i sum(y) - y_i, at k as (sum of the other y) - (1 - s_k) sum(y).
    Sy = be.fsum([lab(be, y) for y in ys])
    rest = be.fsum([lab(be, y) for i, y in enumerate(ys) if i != r.k])
    dl = [(-lab(be, y)) * gs if si == 0.0 else
          ((rest - r.one_minus_sk * Sy) if i == r.k else (si * Sy - Yi)) * gs
          for i, (y, Yi, si) in enumerate(zip(ys, Y, r.s))]
    if dy_factor is None:
        return {"d_logits": dl}
    # d loss / d y_i = (1 - eps) (L - d_i): the smoothed labels' own derivative; 0 at eps = 1,
    # where the loss no longer depends on y (even at a -inf logit).
    if dy_factor == 0:
        return {"d_logits": dl, "d_labels": [0.0] * len(ys)}
    f = lab(be, dy_factor) if dy_factor != 1 else None
    dy = [scaled_inf(gs) if di is None else (r.L - di) * gs if f is None else (r.L - di) * gs * f for di in r.d]
    return {"d_logits": dl, "d_labels": dy}


def _ce_formula(be: Any, check: str, r: Row, ys: Any, gs: Any, opts: dict[str, Any]) -> dict[str, list[Any]]:
    eps = smoothing(opts)
    return _ce_core(be, check, r, smoothed(ys, eps), gs, 1 - eps)


def _ce_limit_core(be: Any, check: str, ys: list[Any], gs: Any, p: int, dy_factor: Fraction | None
                   ) -> dict[str, list[Any]]:
    C = len(ys)
    if check == "forward":
        inf_terms = [y for i, y in enumerate(ys) if i != p and y != 0]
        return {"out": [signed_inf_sum(inf_terms) if inf_terms else 0.0]}
    # s = onehot(p): d_logits = gs (s sum(y) - y) is gs * (sum of the other labels) at p.
    rest = exact_sum(be, [y for i, y in enumerate(ys) if i != p])
    with be.context(4400):
        gb = lab(be, gs) if isinstance(gs, Fraction) else gs
        dl = [rest * gb if i == p else (-lab(be, y)) * gb for i, y in enumerate(ys)]
    if dy_factor is None:
        return {"d_logits": dl}
    return {"d_logits": dl, "d_labels": [0.0 if i == p or dy_factor == 0 else scaled_inf(gs) for i in range(C)]}


def _ce_limit(be: Any, check: str, xs: list[float], ys: Any, gs: Any, p: int, opts: dict[str, Any]
              ) -> dict[str, list[Any]]:
    eps = smoothing(opts)
    return _ce_limit_core(be, check, smoothed(ys, eps), gs, p, 1 - eps)


def _ce_condition(check: str, t: Terms) -> dict[str, np.ndarray]:
    y = t.y  # the labels the loss is taken against (smoothed, weighted, zero where ignored)
    eps = float(t.opts.get("label_smoothing", 0.0))
    w = np.abs(np.asarray(t.opts["weights"], dtype=np.float64)) if "weights" in t.opts else None
    if eps:
        # The framework forms y' = (1 - eps) y + eps / C in the tested dtype (three roundings,
        # each relative to a term of the sum), and may round eps itself to that dtype first (Keras
        # does): y'_i is off by at most c_i = 3 ((1 - eps)|y_i| + eps / C) + eps (|y_i| + 1/C) u,
        # times |w_i| under class weights.
        y0 = np.abs(t.y0)
        C = y0.shape[-1]
        c = 3 * ((1 - eps) * y0 + eps / C) + eps * (y0 + 1.0 / C)
        c = np.where(np.any(y != 0, axis=-1, keepdims=True), c, 0.0)  # an ignored row: exactly 0
        if w is not None:
            c = c * w
    if w is not None:  # each weighted term w_i y'_i (L - d_i) rounds once more: u |y''_i| (L + |d_i|)
        cw = np.abs(y)
        c = c + cw if eps else cw
    weighted_or_smoothed = eps or w is not None
    if check == "forward":  # sum_i y_i (L - d_i): each term as log_softmax, and the sum of the n nonzero ones
        n = np.sum(y != 0, axis=-1, keepdims=True)  # (L - d_i >= 0): a sum of one term is exact
        sig_y = np.where(n > 1, t.summation(n), 0.0)
        A = np.sum(np.abs(y) * (t.W + sig_y * (t.L + t.absd)), axis=-1)
        if weighted_or_smoothed:
            A = A + np.sum(c * (t.L + t.absd), axis=-1)
        return {"out": A}
    gr = np.abs(t.g)  # the row's cotangent scales every term: g (s_i sum y - y_i), g (L - d_i)
    Sy = np.sum(y, axis=-1, keepdims=True)
    Sabs = np.sum(np.abs(y), axis=-1, keepdims=True)
    dl = gr * (t.s * np.abs(Sy) * (t.W + 1) + t.s * Sabs * t.sig + np.abs(y))
    # d_labels, for the dense op (the caller keeps the op's grad_outputs): (1 - eps) g (L - d_i),
    # the factor 1 - eps rounded once (a term L + |d_i| of the value itself)
    dy = gr * t.W
    if weighted_or_smoothed:
        dl = dl + gr * (t.s * np.sum(c, axis=-1, keepdims=True) + c)
    if eps:
        dy = gr * (t.W + t.L + t.absd)
    return {"d_logits": dl, "d_labels": dy}


def _sparse_formula(be: Any, check: str, r: Row, lab_: Any, gs: Any, opts: dict[str, Any]) -> dict[str, list[Any]]:
    if opts:  # the dense loss of the labels the options make of the one-hot row (S19, S20)
        return _ce_core(be, check, r, sparse_labels(lab_, len(r.d), opts), gs, None)
    if check == "forward":
        return {"out": [_INF if r.d[lab_] is None else r.L - r.d[lab_]]}
    gs = lab(be, gs) if isinstance(gs, Fraction) else gs
    out = []
    for i, si in enumerate(r.s):
        if i != lab_:
            v = si
        elif si == 0.0:
            v = be.num(-1.0)
        elif i == r.k:
            v = -r.one_minus_sk  # s_k - 1, without the cancellation
        else:
            v = si - 1
        out.append(v * gs)
    return {"d_logits": out}


def _sparse_limit(be: Any, check: str, xs: list[float], lab_: Any, gs: Any, p: int, opts: dict[str, Any]
                  ) -> dict[str, list[Any]]:
    if opts:
        return _ce_limit_core(be, check, sparse_labels(lab_, len(xs), opts), gs, p, None)
    if check == "forward":
        return {"out": [0.0 if lab_ == p else _INF]}
    if isinstance(gs, Fraction):  # exact: the values are (0 or +-1) times the row's cotangent
        with be.context(4400):
            return {"d_logits": [lab(be, ((1 if i == p else 0) - (1 if i == lab_ else 0)) * gs) for i in range(len(xs))]}
    return {"d_logits": [((1.0 if i == p else 0.0) - (1.0 if i == lab_ else 0.0)) * gs for i in range(len(xs))]}


# ---------------------------------------------------------------------------------------------
# Second derivatives (the grad2 check, S25): with the first-order check's cotangent g and a
# direction v of the logits' shape, d2_logits = H v, the Hessian of <g, op(x)> times v, and for
# the dense cross-entropy d2_labels = d/dy <d_logits, v> (the mixed derivative). Every op's H v is
# written in one quantity, s_i (v_i - V) with V = sum_j s_j v_j, the derivative of s_i along v:


def _deviations(be: Any, r: Row, v: list[float]) -> list[Any]:
    """v_i - V, V = sum_j s_j v_j, without V's cancellation at a confident row's max:
    v_i - V = (v_i - v_k) + D, D = v_k - V = sum_{j != k} s_j (v_k - v_j) (exact differences)."""
    vk = be.num(v[r.k])
    D = be.fsum([si * (vk - vj) for j, (si, vj) in enumerate(zip(r.s, v)) if j != r.k and si != 0.0])
    return [(be.num(vi) - vk) + D for vi in v]


def _centered(be: Any, r: Row, dev: list[Any]) -> list[Any]:
    """s_i (v_i - V) from the deviations v_i - V: exactly 0 where s_i is."""
    return [0.0 if si == 0.0 else si * di for si, di in zip(r.s, dev)]


def _weights_centered(be: Any, r: Row, v: list[float], opts: dict[str, Any]) -> list[Any]:
    """t_i (v_i - V_t) for logsumexp with weights (S23): t_i = b_i e_i / S_b, V_t = sum t_j v_j.
    As _deviations: sum t_j = 1, so v_i - V_t = (v_i - v_k) + sum_{j != k} t_j (v_k - v_j), without
    V_t's cancellation against v_k where t_k is 1 to within e^-700 (a point backend's two
    precisions would agree on a 0 there for an exact 4.4e-304)."""
    dl = _weighted_lse_formula(be, "grad", r, 1.0, opts)["d_logits"]  # t_i
    vk = be.num(v[r.k])
    D = be.fsum([t * (vk - vj) for j, (t, vj) in enumerate(zip(dl, v))
                 if j != r.k and not (isinstance(t, float) and t == 0.0)])
    return [0.0 if isinstance(t, float) and t == 0.0 else t * ((be.num(vi) - vk) + D) for t, vi in zip(dl, v)]


def hvp(be: Any, op: str, r: Row, ys: Any, g: Any, v: list[float], opts: dict[str, Any]) -> dict[str, list[Any]]:
    """H v (and the dense cross-entropy's mixed derivative) of one finite row (S25)."""
    g = lab(be, g) if isinstance(g, Fraction) else g
    if op == "logsumexp" and "b" in opts:
        return {"d2_logits": [t if isinstance(t, float) else g * t for t in _weights_centered(be, r, v, opts)]}
    dev = _deviations(be, r, v)
    c = _centered(be, r, dev)
    if op == "softmax":  # s_i (v_i - V)(g_i - G) - s_i sum_j g_j s_j (v_j - V)
        R_ = be.fsum([gj * sj for j, (gj, sj) in enumerate(zip(g, r.s)) if sj != 0.0 and j != r.k])
        Q = g[r.k] * r.one_minus_sk - R_  # g_k - G
        gk = be.num(g[r.k])
        K = be.fsum([gj * cj for gj, cj in zip(g, c) if not isinstance(cj, float)])
        return {"d2_logits": [0.0 if si == 0.0 else ci * ((gi - gk) + Q) - si * K
                              for gi, si, ci in zip(g, r.s, c)]}
    if op == "log_softmax":  # -(sum g) s_i (v_i - V)
        Sg = be.fsum([be.num(-gj) for gj in g])
        return {"d2_logits": [ci if isinstance(ci, float) else Sg * ci for ci in c]}
    if op == "logsumexp":
        return {"d2_logits": [ci if isinstance(ci, float) else g * ci for ci in c]}
    # the cross-entropies: g (sum_i y'_i) s_i (v_i - V); the dense one's d/dy_j: (1 - eps) g (V - v_j)
    if op == "sparse_softmax_cross_entropy":
        ys = sparse_labels(ys, len(r.d), opts)
        eps = Fraction(0)
    else:
        eps = smoothing(opts)
        ys = smoothed(ys, eps)
    Sy = be.fsum([lab(be, y) for y in ys])
    out = {"d2_logits": [ci if isinstance(ci, float) else (g * Sy) * ci for ci in c]}
    if op == "softmax_cross_entropy":  # (1 - eps) g (V - v_j); 0 at eps = 1, where y does not enter
        if eps == 1:
            out["d2_labels"] = [0.0] * len(v)
        else:
            dy = [-(dj * g) for dj in dev]
            f = lab(be, 1 - eps)
            out["d2_labels"] = [t * f for t in dy] if eps else dy
    return out


def hvp_limit(be: Any, op: str, xs: list[float], ys: Any, g: Any, v: list[float], p: int, opts: dict[str, Any]
               ) -> dict[str, list[Any]]:
    """A row with one +inf logit at p (S6): s is one-hot, every s_i (v_i - V) is 0, so H v is 0;
    the dense cross-entropy's mixed derivative is (1 - eps) g (v_p - v_j), exactly."""
    C = len(xs)
    out: dict[str, list[Any]] = {"d2_logits": [0.0] * C}
    if op == "softmax_cross_entropy":
        eps = smoothing(opts)
        with be.context(4400):
            out["d2_labels"] = [lab(be, (1 - eps) * Fraction(g) * (Fraction(v[p]) - Fraction(vj))) for vj in v]
    return out


def hvp_condition(op: str, t: Terms) -> dict[str, np.ndarray]:
    """The grad2 check's terms (S25; docs/tolerance.md), from the first-order ones: s_j carries a
    relative error of (W_j + 1) u, so V = sum s_j v_j an absolute EV = sum s_j |v_j| (W_j + 1 + sigma),
    and c_i = s_i (v_i - V) an absolute s_i ((W_i + 2) |v_i - V| + EV). Each op's H v is a product
    or a sum of such terms with g and the labels, each product one rounding more."""
    v = t.v
    with np.errstate(all="ignore"):
        s, W, sig = t.s, t.W, t.sig
        V = np.sum(s * v, axis=-1, keepdims=True)
        dv = np.abs(v - V)
        EV = np.sum(s * np.abs(v) * (W + 1 + sig), axis=-1, keepdims=True)
        c = s * (v - V)
        Ec = s * ((W + 2) * dv + EV)
        if op == "logsumexp" and "b" in t.opts:  # t_i = b_i e_i / S_b: the d_logits terms of S23, relative
            tl = _weighted_lse_condition("grad", Terms(**{**t.__dict__, "g": np.ones_like(t.m)}))["d_logits"]
            b = np.asarray(t.opts["b"], dtype=np.float64)
            xb = np.where((b != 0) & (t.x > -np.inf), t.x, -np.inf)
            e = np.exp(xb - np.max(xb, axis=-1, keepdims=True))
            tt = b * e / np.sum(b * e, axis=-1, keepdims=True)
            Vt = np.sum(tt * v, axis=-1, keepdims=True)
            EVt = np.sum(tl * np.abs(v), axis=-1, keepdims=True) + sig * np.sum(np.abs(tt * v), axis=-1, keepdims=True)
            dvt = np.abs(v - Vt)
            return {"d2_logits": np.abs(t.g) * (tl * dvt + np.abs(tt) * (EVt + 2 * dvt))}
        if op == "softmax":  # c_i (g_i - G) - s_i K, K = sum_j g_j c_j
            g = t.g
            G = np.sum(g * s, axis=-1, keepdims=True)
            dg = np.abs(g - G)
            EG = np.sum(s * np.abs(g) * (W + 1 + sig), axis=-1, keepdims=True)
            K = np.sum(g * c, axis=-1, keepdims=True)
            EK = np.sum(np.abs(g) * (Ec + np.abs(c)), axis=-1, keepdims=True) + sig * np.sum(np.abs(g * c), axis=-1,
                                                                                           keepdims=True)
            T1 = Ec * dg + np.abs(c) * (EG + dg) + np.abs(c) * dg
            T2 = s * (EK + (W + 2) * np.abs(K))
            return {"d2_logits": T1 + T2 + np.abs(c * (g - G) - s * K)}
        if op == "log_softmax":  # -(sum g) c_i
            Sg = np.sum(t.g, axis=-1, keepdims=True)
            return {"d2_logits": np.abs(Sg) * (Ec + 2 * np.abs(c)) + np.abs(c) * sig * np.sum(np.abs(t.g), axis=-1,
                                                                                               keepdims=True)}
        g = np.abs(t.g)  # one number per row (the reductions)
        if op == "logsumexp":
            return {"d2_logits": g * (Ec + np.abs(c))}
        y = t.y  # the cross-entropies: g (sum y') c_i, and d/dy_j = (1 - eps) g (V - v_j)
        Sy = np.sum(y, axis=-1, keepdims=True)
        Sabs = np.sum(np.abs(y), axis=-1, keepdims=True)
        out = {"d2_logits": g * (np.abs(Sy) * (Ec + 2 * np.abs(c)) + np.abs(c) * Sabs * sig)}
        if op == "softmax_cross_entropy":
            eps = float(t.opts.get("label_smoothing", 0.0))
            out["d2_labels"] = g * (1 - eps) * (EV + 3 * dv)
        return out


def direction(shape: tuple[int, ...], axis: int = -1) -> np.ndarray:
    """The grad2 check's direction v (S25), of the logits' shape: ((3j mod 7) - 3) / 4 with j the
    index along the class axis, the same in every row: multiples of 1/4 in [-3/4, 3/4], mixed
    signs, zeros, unequal magnitudes, exact in every dtype. A function of the class index only,
    so that moving the class axis, or shifting a row by a constant, moves nothing else."""
    shape = tuple(shape)
    if not shape:
        return np.zeros(shape)
    ax = axis % len(shape)
    j = np.arange(shape[ax], dtype=np.int64)
    v = ((j * 3) % 7 - 3) / 4.0
    return np.broadcast_to(v.reshape([-1 if i == ax else 1 for i in range(len(shape))]), shape).copy()


# ---------------------------------------------------------------------------------------------
# The registry


@dataclass(frozen=True)
class OpSpec:
    name: str
    labels: str  # "none", "dense" or "sparse"
    reduces: bool  # True when the class axis is reduced away in the forward output
    grad_outputs: tuple[str, ...]  # names of the gradient arrays the grad check returns
    formula: Callable[[Any, str, Row, Any, Any, dict[str, Any]], dict[str, list[Any]]]
    limit: Callable[[Any, str, list[float], Any, Any, int, dict[str, Any]], dict[str, list[Any]]]
    condition: Callable[[str, Terms], dict[str, np.ndarray]]
    no_limit: Callable[[str, bool], float] = lambda check, has_pos_inf: _NAN
    #: The forward output where a mask leaves everything out (S22): at a masked entry of an op that
    #: keeps the class axis, or for a row with nothing kept of one that reduces it.
    masked: float = 0.0
    #: The options the op accepts (names of PARAMS); a case naming any other is an error
    #: (validate_options). The formula, limit and condition read them from `opts` / `Terms.opts`.
    params: tuple[str, ...] = field(default=())
    doc: str = ""
    #: Rows an option decides without arithmetic, before the shared rules of S6-S9 (S23: weights):
    #: (be, check, xs, gs, opts, names) -> (values by output name, invalid) or None.
    special: Callable[..., Any] | None = None
    #: An option whose array is the call's second input (`y`: what a label-free op's frameworks take
    #: as a tensor beside the logits, differentiated like the labels), and the gradient output it
    #: adds; forward outputs an option adds (by option name).
    input_param: str | None = None
    input_grad: str = ""
    extra_outputs: tuple[tuple[str, str], ...] = ()

    def outputs(self, check: str, opts: dict[str, Any] | None = None) -> tuple[str, ...]:
        """The names of the outputs of a check under the options: forward `out` (and what an option
        adds: logsumexp's `sign`), grad the op's gradients (and the option input's: `d_b`)."""
        opts = opts or {}
        if check == "forward":
            return ("out",) + tuple(n for k, n in self.extra_outputs if opts.get(k))
        if check == "grad2":  # H v, and the dense labels' mixed derivative (S25)
            return tuple("d2_" + n[2:] for n in self.grad_outputs)
        return self.grad_outputs + ((self.input_grad,) if self.input_param in opts else ())


OPS: dict[str, OpSpec] = {s.name: s for s in (
    OpSpec("softmax", "none", False, ("d_logits",), _softmax_formula, _softmax_limit, _softmax_condition,
           params=("scale", "where"), doc="exp(x_i) / sum_j exp(x_j)"),
    OpSpec("log_softmax", "none", False, ("d_logits",), _log_softmax_formula, _log_softmax_limit,
           _log_softmax_condition, params=("scale", "where"), masked=-_INF, doc="x_i - logsumexp(x)"),
    OpSpec("logsumexp", "none", True, ("d_logits",), _logsumexp_formula, _logsumexp_limit, _logsumexp_condition,
           _logsumexp_no_limit, params=("scale", "where", "b", "return_sign"), masked=-_INF,
           doc="log sum_j exp(x_j); with b: log |sum_j b_j exp(x_j)|", special=_logsumexp_special,
           input_param="b", input_grad="d_b", extra_outputs=(("return_sign", "sign"),)),
    OpSpec("softmax_cross_entropy", "dense", True, ("d_logits", "d_labels"), _ce_formula, _ce_limit,
           _ce_condition, params=("reduction", "label_smoothing", "scale", "where"), doc="-sum_i y_i log_softmax(x)_i, dense (soft) labels"),
    OpSpec("sparse_softmax_cross_entropy", "sparse", True, ("d_logits",), _sparse_formula, _sparse_limit,
           _ce_condition, params=("reduction", "label_smoothing", "weights", "ignore_index", "scale", "where"),
           doc="-log_softmax(x)_k, integer labels"),
)}

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


def validate_options(op: str, options: dict[str, Any], C: int | None = None, shape: tuple[int, ...] | None = None,
                     **where: Any) -> None:
    """An option the op does not take, or a value outside the option's range (for C classes,
    logits of `shape`), is an error naming the valid ones."""
    spec = get(op)
    for k, v in options.items():
        if k.startswith("_"):  # the engine's own (a scale already applied to the logits)
            continue
        if k not in spec.params:
            raise HarnessInputError(f"op {op!r} takes no option {k!r}", field=k,
                                    choices=list(spec.params) or ["(none)"], **where)
        why = PARAMS[k].check(v, C, shape)
        if why is not None:
            raise HarnessInputError(why, field=k, **where)
    if "return_sign" in options and "b" not in options:
        raise HarnessInputError("return_sign needs b (the sign of a sum of positive terms is 1)", field="return_sign",
                                **where)


def fits(label_kind: str) -> list[str]:
    """The ops a case with these labels ("none", "dense", "sparse") runs when it names none."""
    return [n for n, s in OPS.items() if s.labels in ("none", label_kind)]


def output_shapes(op: str, check: str, logits_shape: tuple[int, ...], axis: int,
                  opts: dict[str, Any] | None = None) -> dict[str, tuple[int, ...]]:
    """The shapes the framework must return, by output name (a scalar loss under a reduction)."""
    spec = OPS[op]
    ax = axis % len(logits_shape)
    reduced = tuple(n for i, n in enumerate(logits_shape) if i != ax)
    if check == "forward":
        out = () if reduction(opts or {}) != "none" else reduced if spec.reduces else tuple(logits_shape)
        return {name: out for name in spec.outputs(check, opts)}
    return {name: tuple(logits_shape) for name in spec.outputs(check, opts)}


def reference_default(op: str) -> str:
    """The cotangent the reference engine takes for a grad check given none (S15): the gradient
    of the sum for the reductions, the pattern for softmax and log_softmax (for which "ones" makes
    softmax's exact VJP identically 0)."""
    return "ones" if OPS[op].reduces else "pattern"


def cotangent(kind: str, op: str, logits_shape: tuple[int, ...], axis: int,
              opts: dict[str, Any] | None = None) -> np.ndarray:
    """A named cotangent of the grad check, in the forward output's shape, as float64 (cast to
    the tested dtype by the caller: the reference and the framework see the same values).

    - `ones`: the gradient of the sum of the outputs (what training feeds a loss, and what
      sum(log_softmax(x)) feeds log_softmax). For softmax the exact VJP is then 0.
    - `pattern`: ((5j mod 11) - 5) / 8 over the C-order flat index j: multiples of 1/8 in
      [-5/8, 5/8], mixed signs, zeros, unequal magnitudes, exact in every dtype.
    - `mean`: 1/N for N output elements (the rows of a reduction): the gradient of a mean.
    """
    shape = output_shapes(op, "forward", logits_shape, axis, opts)["out"]
    n = int(np.prod(shape, dtype=np.int64))
    if kind == "ones":
        return np.ones(shape, dtype=np.float64)
    if kind == "pattern":
        k = np.arange(n, dtype=np.int64)
        return (((k * 5) % 11 - 5) / 8.0).reshape(shape)
    if kind == "mean":
        return np.full(shape, 1.0 / max(n, 1))
    raise HarnessInputError(f"unknown cotangent {kind!r}", field="cotangent", choices=list(COTANGENTS))
