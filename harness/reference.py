"""High-precision references for the softmax family, from the exact input values.

One algorithm, three arithmetic backends:

- ``mpmath`` (the ground truth): mpf numbers inside ``mpmath.workprec``.
- ``mpfr``: gmpy2's MPFR numbers, whose exp, log and sum are correctly rounded, inside a local
  gmpy2 context. The tests check it against the mpmath backend value for value.
- ``arb`` (the default when python-flint is installed): Arb's midpoint-radius balls, which
  carry a rigorous bound on their own error. About five times faster than MPFR per
  exponential; the tests check it against mpmath to the claimed precision.

All only ever set precision in a local context, never globally.

Per row (the class axis moved last) the engine works with d_i = x_i - m (m the row max),
e_i = exp(d_i), S = sum e_i and L = log S, and evaluates each op's formula from those. The
special values of docs/semantics.md are decided per row before any arithmetic.

Certification: with the point backends (mpmath, mpfr), every row is evaluated at a high
precision P_hi and again at P_lo = P_hi - GAP (the exponentials rounded from the P_hi ones, the
rest of the formula recomputed at P_lo). Each output element must agree between the two to
``claim_bits(dtype)`` bits relative (or absolutely, far below the dtype's smallest subnormal,
for results that cancel to ~0). With the ball backend (arb) one evaluation suffices: each
output ball must be that narrow, and the exact value lies inside it. Where a row falls short,
it is redone at twice the precision, up to MAX_PREC bits, and the engine raises
ReferenceAccuracyError if it still does: cancellation cannot slip through.

The result of each output element is kept as a double-double (hi, lo) of float64, good to
``claim_bits`` bits, and rounded to the tested dtype with round-to-nearest-even. Where the
certified value may lie on either side of a rounding boundary of the dtype (a midpoint, a power
of two), the side is decided from a split evaluation, exact rationals plus a transcendental
rest, and the precision raised until it is (S18, `_SplitBackend`); where no precision up to
MAX_PREC does (a rest whose first-order terms cancel exactly), from an exact evaluation of the
row as a rational function of its exponentials (`_Exact`): `rounded` is the correct rounding of
the exact value, not round-half-to-even's guess.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import time
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Callable

import numpy as np

from . import dtypes as D
from . import ops as O
from .errors import ReferenceAccuracyError

#: Bump when a change to this module can change any stored reference (cache keys include it).
#: 6: a point backend's d_i = x_i - m exact (S17), a reduction's boundary decided from split sums
#: (S18, S21); 5: a mask's empty rows under a reduction (0, not NaN); 4: cotangents in the cache key;
#: 3: correct rounding (S18); 2: S17, arb balls.
ENGINE_VERSION = "6"
MAX_PREC = 16384
_NAN = float("nan")
_INF = float("inf")


def claim_bits(dt: D.DType) -> int:
    """Bits to which every reference value of output dtype `dt` is certified: 40 beyond the
    dtype's precision (errors measurable to 1e-12 ULP, far below 1/1000), at most the 106 of
    a double-double."""
    return min(106, dt.p + 40)


#: P_hi - P_lo. The P_lo evaluation must agree with P_hi to claim bits, so the condition of
#: the formula costs at most P_lo - claim bits there, and the P_hi value is then good to
#: claim + GAP bits: the stored value has GAP bits of margin over its claim.
GAP = 24


def zero_floor(dt: D.DType) -> float:
    """The absolute accuracy that certifies a value which cancels to ~0 (S16): 2^-16 of dt's
    smallest subnormal, so anything within it rounds to 0 in dt. Underflows to 0 for float64
    (there a difference below 2^-1074 counts as agreement)."""
    return dt.min_sub * 2.0 ** -16


def start_prec(dt: D.DType) -> int:
    """P_hi of the first attempt; P_lo = P_hi - GAP = claim + 8."""
    return claim_bits(dt) + 8 + GAP


# --------------------------------------------------------------------------------------------
# Backends: the few operations the formulas need beyond + - * / and comparisons.


class _NeverRaised(Exception):
    """The underflow of a backend whose exponents are unbounded."""


def _diff_bits(x: float, m: float) -> int:
    """Bits of mantissa that hold x - m exactly (two finite doubles): from the binade above the
    larger to the last bit of either."""
    nz = [v for v in (x, m) if v != 0]
    if not nz:
        return 2
    top = max(math.frexp(v)[1] for v in nz) + 1
    last = min(max(math.frexp(v)[1] - 53, -1074) for v in nz)
    return top - last + 1


def _num_diff(self: Any, x: float, m: float) -> Any:
    """x - m in the backend's numbers, at the working precision: a ball's width shows what a large
    |x - m| costs exp; split and exact numbers hold it exactly."""
    return self.num(x) - self.num(m)


def _point_diff(self: Any, x: float, m: float) -> Any:
    """d = x - m exactly, for a point backend (S17). exp(d) needs d to 2^-P absolute, not relative:
    rounded at P bits, 1 - 1.5e38 is -1.5e38 and its exponential off by a factor e, which both
    evaluations (P and P - GAP) share, and which a factor e^1.5e38 elsewhere in the formula (a
    cancelled group of logsumexp's weights) carries to an O(1) output. The exact d has as many
    bits as the span from the larger of x, m to the last bit of either (up to 2100 for doubles)."""
    n = _diff_bits(x, m)
    if n <= self.prec():
        return _num_diff(self, x, m)
    with self.context(n):
        return _num_diff(self, x, m)


def _point_exact(self: Any, q: Fraction) -> Any:
    """The rational q as a number of a point backend: exactly where it is dyadic (a difference of
    logits in the split arithmetic, S18), else rounded at the working precision."""
    den = q.denominator
    if den & (den - 1):
        return self.rational(q)
    with self.context(max(2, abs(q.numerator).bit_length())):
        return self.rational(q)


class _Mpmath:
    name = "mpmath"
    ball = False  # a point backend: certified by a second evaluation

    def __init__(self) -> None:
        import mpmath

        self.mp = mpmath

    def context(self, prec: int) -> Any:
        return self.mp.workprec(prec)

    strict_context = context  # mpf exponents are unbounded: nothing underflows
    underflow = _NeverRaised

    def num(self, x: float) -> Any:
        return self.mp.mpf(x)  # exact for any float

    def prec(self) -> int:
        return self.mp.mp.prec

    diff = _point_diff
    exact = _point_exact

    def exp(self, x: Any) -> Any:
        return self.mp.exp(x)

    def log(self, x: Any) -> Any:
        return self.mp.log(x)

    def log1p(self, x: Any) -> Any:
        return self.mp.log1p(x)

    def fsum(self, xs: list[Any]) -> Any:
        """The sum rounded once at the working precision, as MPFR's is. mpmath's own fsum drops a
        term far below the others (1 + 6.9e-287 - 1 is 0 at 125 bits and at 65: two precisions
        agreeing on a wrong 0, a sum of labels or weights whose large ones cancel), so terms within
        2^16 binades of each other are summed exactly as integers; beyond that, mpmath's fsum."""
        mp = self.mp
        vals = [v if isinstance(v, mp.mpf) else mp.mpf(v) for v in xs]
        parts = [v._mpf_ for v in vals if v]
        if not parts:
            return mp.mpf(0)
        if not all(mp.isfinite(v) for v in vals):
            return mp.fsum(vals)
        lo = min(e for _, _, e, _ in parts)
        if max(e + bc for _, _, e, bc in parts) - lo > 1 << 16:
            return mp.fsum(vals)
        return mp.ldexp(mp.mpf(sum((-int(m) if s else int(m)) << (e - lo) for s, m, e, _ in parts)), lo)

    def round(self, x: Any) -> Any:
        return +x  # mpf's unary plus rounds to the working precision

    def to_dd(self, xs: list[Any]) -> tuple[list[float], list[float]]:
        with self.mp.workprec(2200):  # wide enough that x - hi is exact
            return _split(xs)

    def zero(self) -> Any:
        return self.mp.mpf(0)

    def rational(self, q: Fraction) -> Any:
        from mpmath.libmp import from_rational, round_nearest

        return self.mp.mpf(from_rational(q.numerator, q.denominator, self.mp.mp.prec, round_nearest))

    def is_exact_zero(self, x: Any) -> bool:
        return x == 0


class _Mpfr:
    name = "mpfr"
    ball = False

    def __init__(self) -> None:
        import gmpy2

        self.g = gmpy2
        self._wide = 2200

    def context(self, prec: int) -> Any:
        g = self.g
        return g.context(precision=prec, emax=g.get_emax_max(), emin=g.get_emin_min())

    def strict_context(self, prec: int) -> Any:
        """For the formulas: MPFR's exponent range ends near 2^-4.6e18, and exp(-1e30) would
        underflow to 0 silently, making a present entry look masked and losing the sign of a
        rest that decides a rounding (S18); here it raises `underflow` (mpmath then computes).
        So does an overflow at the other end: exp(1.8e308), a gradient b_i exp(x_i - m) / S_b of
        logsumexp's weights beside a logit of -1.8e308, is a number mpmath holds."""
        g = self.g
        return g.context(precision=prec, emax=g.get_emax_max(), emin=g.get_emin_min(), trap_underflow=True,
                         trap_overflow=True)

    @property
    def underflow(self) -> tuple[type[Exception], ...]:
        """What running out of MPFR's exponent range raises, at either end."""
        return (self.g.UnderflowResultError, self.g.OverflowResultError)

    def num(self, x: float) -> Any:
        return self.g.mpfr(x)

    def prec(self) -> int:
        return self.g.get_context().precision

    diff = _point_diff
    exact = _point_exact

    def exp(self, x: Any) -> Any:
        return self.g.exp(x)

    def log(self, x: Any) -> Any:
        return self.g.log(x)

    def log1p(self, x: Any) -> Any:
        return self.g.log1p(x)

    def fsum(self, xs: list[Any]) -> Any:
        return self.g.fsum(xs) if xs else self.g.mpfr(0)

    def round(self, x: Any) -> Any:
        return +x  # rounds to the context precision

    def to_dd(self, xs: list[Any]) -> tuple[list[float], list[float]]:
        with self.context(2200):  # wide enough that x - hi is exact
            return _split(xs)

    def zero(self) -> Any:
        return self.g.mpfr(0)

    def rational(self, q: Fraction) -> Any:
        return self.g.mpfr(self.g.mpq(q.numerator, q.denominator))  # rounded at the context precision

    def is_exact_zero(self, x: Any) -> bool:
        return x == 0


class _Arb:
    """Arb balls (python-flint). Conversions from float are exact; every operation returns a
    ball that contains the exact result, so the width of an output is a proof of its accuracy."""

    name = "arb"
    ball = True

    def __init__(self) -> None:
        import flint

        self.f = flint
        self.arb = flint.arb

    def context(self, prec: int) -> Any:
        return self.f.ctx.workprec(prec)

    strict_context = context  # arb exponents are unbounded: nothing underflows
    underflow = _NeverRaised

    def num(self, x: float) -> Any:
        return self.arb(x)

    diff = _num_diff

    def exact(self, q: Fraction) -> Any:
        return self.rational(q)

    def exp(self, x: Any) -> Any:
        return x.exp()

    def log(self, x: Any) -> Any:
        return x.log()

    def log1p(self, x: Any) -> Any:
        return x.log1p()

    def fsum(self, xs: list[Any]) -> Any:
        s = self.arb(0)
        for v in xs:
            s += v
        return s

    def widths(self, vals: dict[str, list[Any]], claim: int, floor: float) -> dict[str, np.ndarray] | None:
        """None unless every ball is narrower than 2^-claim relative, or than `floor` absolute;
        else each element's radius: 0 for an exact ball, -1 for a special float or an exact ball
        that a double holds (nothing to decide)."""
        out = {}
        for n, xs in vals.items():
            w = []
            for v in xs:
                if isinstance(v, float):
                    w.append(-1.0)
                elif v.is_exact():  # nothing to decide where the double holds it (h, lo = 0)
                    w.append(-1.0 if v == float(v) else 0.0)
                else:
                    r = float(v.rad())
                    if not r <= floor and v.rel_accuracy_bits() <= claim:
                        return None
                    w.append(r * (1 + 2.0 ** -20))
            out[n] = np.asarray(w)
        return out

    def to_dd(self, xs: list[Any]) -> tuple[list[float], list[float]]:
        with self.f.ctx.workprec(2200):  # float() of a ball rounds its midpoint to nearest
            return _split(xs)

    def zero(self) -> Any:
        return self.arb(0)

    def rational(self, q: Fraction) -> Any:
        return self.arb(self.f.fmpq(q.numerator, q.denominator))  # a ball around q at the context precision

    def is_exact_zero(self, x: Any) -> bool:
        return bool(x.is_zero() and x.is_exact())


def _split(xs: list[Any]) -> tuple[list[float], list[float]]:
    """Double-double (hi, lo) of each value: hi its rounding to nearest (ties to even), lo the
    rounding of the rest, never 0 beside a normal hi where the rest is not (STICKY with its sign
    where it is below float64's range): the sign of lo is what decides a rounding or a binade at
    hi. Plain floats (special values) pass through."""
    his: list[float] = []
    los: list[float] = []
    for x in xs:
        if isinstance(x, float):
            his.append(x)
            los.append(0.0)
            continue
        h = float(x)
        his.append(h)
        if not math.isfinite(h):
            los.append(0.0)
            continue
        rest = x - h
        lo = float(rest)
        if lo == 0.0 and abs(h) >= _TINY64 and rest != 0:
            lo = STICKY if rest > 0 else -STICKY
        los.append(lo)
    return his, los


#: The lo word standing for a nonzero remainder below float64's smallest subnormal, beside a
#: normal hi (dtypes.abs_error measures it as 0). Beside a zero or subnormal hi the remainder is
#: below the zero floor (S16) and left 0.
STICKY = D.STICKY
_TINY64 = 2.0 ** -1022


_BACKENDS: dict[str, Callable[[], Any]] = {"mpmath": _Mpmath, "mpfr": _Mpfr, "arb": _Arb}
_instances: dict[str, Any] = {}


def default_backend() -> str:
    """arb where python-flint is installed, else mpfr where gmpy2 is, else mpmath;
    $HARNESS_REF_BACKEND chooses one explicitly."""
    env = os.environ.get("HARNESS_REF_BACKEND")
    if env:
        if env not in _BACKENDS:
            raise ValueError(f"HARNESS_REF_BACKEND={env!r}: choose one of {', '.join(_BACKENDS)}")
        return env
    import importlib.util

    for name, module in (("arb", "flint"), ("mpfr", "gmpy2")):
        if importlib.util.find_spec(module) is not None:
            return name
    return "mpmath"


def backend(name: str | None = None) -> Any:
    if name is None:
        name = default_backend()
    if name not in _instances:
        _instances[name] = _BACKENDS[name]()
    return _instances[name]


# --------------------------------------------------------------------------------------------
# Results


@dataclass
class RefArray:
    """One output of the reference: exact value as hi + lo, and rounded to the tested dtype."""

    hi: np.ndarray
    lo: np.ndarray
    rounded: np.ndarray
    invalid: np.ndarray  # True where the value is NaN because the input is invalid (a label)

    @property
    def value(self) -> np.ndarray:
        return self.hi


@dataclass
class Reference:
    outputs: dict[str, RefArray]
    prec_bits: int  # the highest working precision any row needed
    claim_bits: int
    backend: str
    rows: np.ndarray | None = None  # flat batch indices computed (None: all)
    decided: int = 0  # elements whose rounding side was decided from their exact part (S18)
    escalated_rows: int = 0  # rows whose precision was raised to decide one
    deciding_s: float = 0.0  # seconds spent deciding (not stored in the cache)


# --------------------------------------------------------------------------------------------
# The engine


def compute(op: str, check: str, logits: np.ndarray, labels: np.ndarray | None, axis: int,
            dt: D.DType, *, rows: np.ndarray | None = None, backend_name: str | None = None,
            cotangent: np.ndarray | None = None, options: dict[str, Any] | None = None,
            extra_bits: int = 0, row_cotangents: np.ndarray | None = None,
            direction: np.ndarray | None = None) -> Reference:
    """Reference outputs of `op`/`check` for the exact values in `logits` (and `labels`).

    `logits` and dense `labels` are float64 arrays holding the values *after* the cast to
    the tested dtype; sparse labels are integers. `rows` restricts the work to some rows of
    the flattened batch; the other rows come back as NaN.
    """
    spec = O.get(op)
    if check not in O.VALUE_CHECKS:  # an invariance check is judged by forward's reference (runner)
        raise ValueError(f"no reference of check {check!r}: the reference's checks are {O.VALUE_CHECKS}")
    opts = dict(options or {})
    be = backend(backend_name)
    x = np.asarray(logits, dtype=np.float64)
    if x.ndim == 0:
        raise ValueError("logits must have at least one dimension")
    ax = axis % x.ndim
    xm = np.moveaxis(x, ax, -1)
    batch_shape, C = xm.shape[:-1], xm.shape[-1]
    N = int(np.prod(batch_shape, dtype=np.int64))
    O.validate_options(op, opts, C, x.shape)
    if "scale" in opts:  # S24: the op of the product x * s rounded to the dtype; d/dx is s times its gradient
        x, opts = O.scaled_logits(x, opts, lambda a: D.cast_exact(a, dt))
        xm = np.moveaxis(x, ax, -1)
    if check == "grad2" and direction is None:
        direction = O.direction(x.shape, ax)
    # A reduction first: its rows are those of the other options, a mask's included (S21 over
    # S22: a row with nothing kept is a loss of 0 in the sum, not the NaN of an all -inf row).
    if O.reduction(opts) != "none" and row_cotangents is None:
        return _reduced(op, check, x, labels, ax, dt, be.name, cotangent, opts, direction)
    if "where" in opts:  # S22: a masked logit is -inf, a constant: its gradient is 0
        return _masked(op, check, x, labels, axis, dt, rows, be.name, cotangent, opts, extra_bits, direction,
                       row_cotangents)
    X, Y = _as_rows(spec, xm, labels, ax)
    G = row_cotangents  # a reduction's rows: one exact cotangent per row (S21)
    Vd = None if direction is None else np.moveaxis(np.asarray(direction, dtype=np.float64), ax, -1).reshape(N, C)
    if check != "forward" and G is None:
        g = cotangent if cotangent is not None else O.cotangent(O.reference_default(op), op, x.shape, ax, opts)
        G = (np.moveaxis(g, ax, -1).reshape(N, C) if not spec.reduces else np.asarray(g).reshape(N))
    names = spec.outputs(check, opts)
    width = 1 if (check == "forward" and spec.reduces) else C
    hi = {n: np.full((N, width), _NAN) for n in names}
    if spec.input_param in opts:  # an array of the logits' shape, row by row like the logits (S23)
        opts = {**opts, spec.input_param: np.moveaxis(np.asarray(opts[spec.input_param], dtype=np.float64), ax,
                                                       -1).reshape(N, C)}
    lo = {n: np.zeros((N, width)) for n in names}
    inv = {n: np.zeros((N, width), dtype=bool) for n in names}

    todo = np.arange(N) if rows is None else np.asarray(rows, dtype=np.int64)
    pmax = start_prec(dt)
    chunks = _chunks(todo, C)
    results = None
    if len(chunks) > 1:
        jobs = [(op, check, X[c], sub_(Y, c), sub_(G, c), dt.name, be.name, _rows_of(spec, opts, c), extra_bits,
                 sub_(Vd, c)) for c in chunks]
        try:
            results = list(_pool().map(_block_job, jobs))
        except Exception:  # noqa: BLE001 - a broken pool costs speed, never a reference
            _reset_pool()
    if results is None:
        chunks = [todo]
        results = [_block(op, check, X[todo], sub_(Y, todo), sub_(G, todo), dt, be, _rows_of(spec, opts, todo),
                          extra_bits, sub_(Vd, todo))]
    rounding = RoundingStats()
    for c, (h_, l_, i_, p_, st) in zip(chunks, results):
        for n in names:
            hi[n][c], lo[n][c], inv[n][c] = h_[n], l_[n], i_[n]
        pmax = max(pmax, p_)
        rounding.add(st)
    out: dict[str, RefArray] = {}
    keep = not (check == "forward" and spec.reduces)  # the output keeps the class axis
    for n in names:
        shape = batch_shape + (C,) if keep else batch_shape
        h, l_, iv = (a.reshape(shape) for a in (hi[n], lo[n], inv[n]))
        if keep:
            h, l_, iv = (np.moveaxis(a, -1, ax) for a in (h, l_, iv))
        h, l_, iv = (np.array(a, copy=True) for a in (h, l_, iv))  # contiguous; 0-d stays 0-d
        out[n] = RefArray(h, l_, D.round_to(h, l_, dt), iv)
    return Reference(out, pmax, claim_bits(dt), be.name, None if rows is None else todo, rounding.decided,
                     rounding.escalated_rows, rounding.seconds)


def _masked(op: str, check: str, x: np.ndarray, labels: Any, axis: int, dt: D.DType, rows: Any, be_name: str,
            cotangent: np.ndarray | None, opts: dict[str, Any], extra_bits: int,
            direction: np.ndarray | None = None, row_cotangents: np.ndarray | None = None) -> Reference:
    """The op over the kept entries of each row (S22): computed on the logits with -inf at the
    masked entries (which gives the kept values and the masked constants: softmax 0, log_softmax
    -inf), the masked outputs' cotangents not flowing (0), every gradient with respect to a masked
    entry 0; a row with nothing kept takes the constants (loss 0, logsumexp -inf, gradients 0);
    a label on a masked class is invalid (NaN)."""
    spec = O.OPS[op]
    mask = np.asarray(opts["where"], dtype=bool)
    rest = {k: v for k, v in opts.items() if k != "where"}
    ax = axis % x.ndim
    g = cotangent
    if check != "forward" and not spec.reduces:
        g = np.where(mask, cotangent if cotangent is not None else
                     O.cotangent(O.reference_default(op), op, x.shape, ax, rest), 0.0)
    if direction is not None:  # no derivative along a masked logit: the function does not depend on it
        direction = np.where(mask, direction, 0.0)
    ref = compute(op, check, np.where(mask, x, -_INF), labels, axis, dt, rows=rows, backend_name=be_name,
                  cotangent=g, options=rest, extra_bits=extra_bits, direction=direction,
                  row_cotangents=row_cotangents)
    keep = np.moveaxis(mask, ax, -1)
    empty = ~np.any(keep, axis=-1)  # rows with nothing kept
    bad = _masked_labels(spec.labels, labels, keep, ax)
    for n, r in ref.outputs.items():  # per row: a reduction is taken over these rows (compute)
        hi, lo, rd, iv = (np.array(a, copy=True) for a in (r.hi, r.lo, r.rounded, r.invalid))
        if n != "out" or not spec.reduces:  # the class axis kept: masked entries, row by row
            hm, lm, rm, im = (np.moveaxis(a, ax, -1) for a in (hi, lo, rd, iv))
            const = spec.masked if n == "out" else 0.0
            for a, v in ((hm, const), (lm, 0.0), (rm, const)):
                a[~keep] = v
            for a, v in ((hm, _NAN), (lm, 0.0), (rm, _NAN)):
                a[bad] = v
            im[bad] = True
        else:  # one value per row: the empty sum (0; logsumexp -inf, its sign 0)
            const = spec.masked if n == "out" else 0.0
            hi[empty], lo[empty], rd[empty] = const, 0.0, const
            hi[bad], lo[bad], rd[bad], iv[bad] = _NAN, 0.0, _NAN, True
        ref.outputs[n] = RefArray(hi, lo, rd, iv)
    return ref


def _masked_labels(kind: str, labels: Any, keep: np.ndarray, ax: int) -> np.ndarray:
    """Rows (batch shape) whose labels sit on a masked class: an integer label there, or a nonzero
    dense label (S22: a label outside the row's classes is invalid, as in S11 and S12)."""
    if kind == "none" or labels is None:
        return np.zeros(keep.shape[:-1], dtype=bool)
    if kind == "sparse":
        lab = np.asarray(labels)
        C = keep.shape[-1]
        ok = (lab >= 0) & (lab < C)
        on = np.take_along_axis(keep, np.clip(lab, 0, C - 1)[..., None], axis=-1)[..., 0]
        return ok & ~on
    y = np.moveaxis(np.asarray(labels, dtype=np.float64), ax, -1)
    return np.any((y != 0) & ~keep, axis=-1)


def _reduced(op: str, check: str, x: np.ndarray, labels: Any, ax: int, dt: D.DType, be_name: str,
             cotangent: np.ndarray | None, opts: dict[str, Any], direction: np.ndarray | None = None) -> Reference:
    """A loss under `reduction` sum or mean (S21). Forward: the exact sum of the rows' certified
    values, divided by the exact sum of the rows' weights for a mean, certified from the rows'
    error bounds (more bits for the rows where those bounds could move the rounding). Grad: the
    rows' gradients with the row cotangent g (sum) or g / W (mean) as an exact rational."""
    spec = O.OPS[op]
    base = {k: v for k, v in opts.items() if k != "reduction"}
    xm = np.moveaxis(x, ax, -1)
    C = xm.shape[-1]
    N = int(np.prod(xm.shape[:-1], dtype=np.int64))
    yr = _as_rows(spec, xm, labels, ax)[1]
    wr = O.row_weights(yr if yr is not None else np.zeros(N), spec.labels, C, base)
    Wsum = sum((Fraction(float(v)) for v in wr), Fraction(0)) if O.reduction(opts) == "mean" else Fraction(1)
    if check != "forward":
        g = Fraction(float(np.asarray(cotangent if cotangent is not None else 1.0).reshape(())))
        share = Fraction(0) if Wsum == 0 else g / Wsum
        G = np.empty(N, dtype=object)
        G[:] = [share] * N
        return compute(op, check, x, labels, ax, dt, backend_name=be_name, options=base, row_cotangents=G,
                       direction=direction)
    extra = 8
    n_decided, deciding_s = 0, 0.0
    while True:
        rows = compute(op, "forward", x, labels, ax, dt, backend_name=be_name, options=base, extra_bits=extra)
        r = rows.outputs["out"]
        hi, lo = r.hi.reshape(-1), r.lo.reshape(-1)
        invalid = bool(np.any(r.invalid))
        if np.any(np.isnan(hi)):
            h, l_ = _NAN, 0.0
        elif np.any(np.isinf(hi)):
            h, l_ = O.signed_inf_sum([float(v) for v in hi[np.isinf(hi)]]), 0.0
        elif Wsum == 0:  # every row ignored: 0 / 0
            h, l_ = _NAN, 0.0
        else:
            T = sum((Fraction(float(a)) + Fraction(float(b)) for a, b in zip(hi, lo)), Fraction(0)) / Wsum
            claim = claim_bits(dt) + extra
            E = sum((abs(Fraction(float(a))) for a in hi), Fraction(0)) / abs(Wsum) * Fraction(2) ** -claim \
                + Fraction(zero_floor(dt)) * N / abs(Wsum)
            ends = []
            for v in (T - E, T + E):
                vh = float(v)
                ends.append(D.round_to(np.array([vh]), np.array([float(v - Fraction(vh))]), dt)[0])
            h = float(T)
            l_ = float(T - Fraction(h))
            if ends[0] != ends[1]:  # the rows' error bounds straddle a rounding boundary
                # As a row's value does (S18): a boundary named, the side of the exact sum is decided
                # from the rows' split values (`_decide_sum`); else, or where those do not decide it,
                # more bits. T is the boundary plus a hair (1500 + 7/8 e^-4000) that no relative bound
                # excludes, and the rows' double-doubles cannot carry: escalating alone never ends.
                risky = _at_risk(np.array([h]), np.array([l_]), np.array([float(E)]), dt)
                decided = None
                if risky and risky[0][1] is not None:
                    t0 = time.perf_counter()
                    decided = _decide_sum(be_name, op, x, labels, ax, dt, base, Wsum, risky[0][1],
                                          max(rows.prec_bits, start_prec(dt)))
                    deciding_s += time.perf_counter() - t0
                if decided is None:
                    if extra >= 8 + 4 * 64:
                        raise ReferenceAccuracyError(f"{op}: the {O.reduction(opts)} of {N} rows is not decided "
                                                     f"at {claim} bits")
                    extra += 64
                    continue
                h, l_ = decided
                n_decided += 1
        hh, ll = np.array(h), np.array(l_)
        out = {"out": RefArray(hh, ll, np.asarray(D.round_to(hh.reshape(1), ll.reshape(1), dt)[0]),
                               np.array(invalid))}
        return Reference(out, rows.prec_bits, claim_bits(dt), rows.backend, None, rows.decided + n_decided,
                         rows.escalated_rows, rows.deciding_s + deciding_s)


def _decide_sum(be_name: str, op: str, x: np.ndarray, labels: Any, ax: int, dt: D.DType, opts: dict[str, Any],
                Wsum: Fraction, bnd: Boundary, p0: int) -> tuple[float, float] | None:
    """(hi, lo) of a reduction's forward value (the rows' sum, over Wsum) near the boundary bnd, or
    None where no precision decides its side (S18, S21): the rows' split values a_r + t_r summed,
    sum a_r exactly and sum t_r at p bits (and at p - GAP for a point backend), their side of bnd
    decided as a row's (`_decide`), p doubled up to MAX_PREC. (No exact decision after that, as a
    row's has: a loss's value carries log S, which `_Exact` does not hold.) The rows as `compute`
    forms them: a mask's entries -inf and its empty rows 0 (S22), the weights' rows (S23), the
    logits already scaled (S24)."""
    spec = O.OPS[op]
    be = backend(be_name)
    empty = None
    if "where" in opts:
        mask = np.asarray(opts["where"], dtype=bool)
        x = np.where(mask, x, -_INF)
        empty = ~np.any(np.moveaxis(mask, ax % x.ndim, -1), axis=-1).reshape(-1)
        opts = {k: v for k, v in opts.items() if k != "where"}
    xm = np.moveaxis(x, ax, -1)
    N, C = int(np.prod(xm.shape[:-1], dtype=np.int64)), xm.shape[-1]
    X, Y = _as_rows(spec, xm, labels, ax)
    arr = None
    if spec.input_param in opts:
        arr = np.moveaxis(np.asarray(opts[spec.input_param], dtype=np.float64), ax, -1).reshape(N, C)
    fixed: list[float] = []  # the rows whose value needs no arithmetic
    work = []  # the others: (logits, labels, options)
    for r in range(N):
        if empty is not None and empty[r]:
            fixed.append(spec.masked)
            continue
        ys = None if Y is None else (Y[r].tolist() if spec.labels == "dense" else Y[r].item())
        xs, ro = O.row_options(opts, X[r].tolist(), None if arr is None else arr[r].tolist())
        special = _special_row(be, op, "forward", xs, ys, None, ro)
        if special is not None:
            if not isinstance(special[0]["out"][0], float):
                return None
            fixed.append(special[0]["out"][0])
        else:
            work.append((xs, ys, ro))
    if not all(math.isfinite(v) for v in fixed):
        return None
    A0 = sum((Fraction(v) for v in fixed), Fraction(0))

    def total(sp: Any, p: int) -> _Split:
        with sp.context(p):
            t = sp.rational(A0)
            for xs, ys, ro in work:
                t = t + _evaluate(sp, op, "forward", xs, ys, None, ro, p)[0]["out"][0]
            return t / Wsum if Wsum != 1 else t

    p = p0
    while True:
        try:
            sp = _SplitBackend(be)
            v = total(sp, p)
            v_lo = None if be.ball else total(sp, p - GAP)
        except be.underflow:  # MPFR's exponent range: mpmath's is unbounded
            be = backend("mpmath")
            continue
        res = _decide(be, v, v_lo, bnd, p)
        if res is not None:
            return res
        if p * 2 > MAX_PREC:
            return None
        p *= 2


def _as_rows(spec: O.OpSpec, xm: np.ndarray, labels: Any, ax: int) -> tuple[np.ndarray, np.ndarray | None]:
    """The logits (class axis last, `xm`) as rows (N, C), and the labels the op takes likewise:
    dense (N, C), integer (N,), or None."""
    C = xm.shape[-1]
    N = int(np.prod(xm.shape[:-1], dtype=np.int64))
    if spec.labels == "dense":
        return xm.reshape(N, C), np.moveaxis(np.asarray(labels, dtype=np.float64), ax, -1).reshape(N, C)
    if spec.labels == "sparse":
        return xm.reshape(N, C), np.asarray(labels).reshape(N)
    return xm.reshape(N, C), None


#: Inputs with at least this many elements to compute are split over worker processes.
PARALLEL_MIN = 16384
_POOL: Any = None


def _workers() -> int:
    env = os.environ.get("HARNESS_REF_WORKERS")
    return max(1, int(env)) if env else (os.cpu_count() or 1)


def _chunks(todo: np.ndarray, C: int) -> list[np.ndarray]:
    w = _workers()
    if w <= 1 or len(todo) < 2 or len(todo) * C < PARALLEL_MIN:
        return [todo]
    return [c for c in np.array_split(todo, min(len(todo), 4 * w)) if len(c)]


def _pool() -> Any:
    """A process pool started by a fork server: clean processes that import only this module
    (no framework threads are forked), kept for the life of the process."""
    global _POOL
    if _POOL is None:
        import concurrent.futures
        import multiprocessing

        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["harness.reference"])
        from .procs import become_helper

        # Its workers ignore interrupts and end with the forkserver, which ends with this process.
        _POOL = concurrent.futures.ProcessPoolExecutor(max_workers=_workers(), mp_context=ctx,
                                                       initializer=become_helper)
        # Joined at exit, before the interpreter tears down the modules its manager thread uses
        # (left to the garbage collector, it printed "Exception ignored in ... weakref_cb").
        import atexit

        atexit.register(_close_pool)
    return _POOL


def _close_pool() -> None:
    global _POOL
    if _POOL is not None:
        _POOL.shutdown(wait=True, cancel_futures=True)
    _POOL = None


def _reset_pool() -> None:
    global _POOL
    if _POOL is not None:
        _POOL.shutdown(wait=False, cancel_futures=True)
    _POOL = None


def _rows_of(spec: O.OpSpec, opts: dict[str, Any], idx: np.ndarray) -> dict[str, Any]:
    """The options for the rows `idx`: an option array of the logits' shape restricted to them."""
    if spec.input_param not in opts:
        return opts
    return {**opts, spec.input_param: opts[spec.input_param][idx]}


def sub_(A: np.ndarray | None, idx: np.ndarray) -> np.ndarray | None:
    return None if A is None else A[idx]


def _block_job(job: tuple) -> tuple:
    op, check, X, Y, G, dt_name, be_name, opts, extra_bits, V = job
    return _block(op, check, X, Y, G, D.DTYPES[dt_name], backend(be_name), opts, extra_bits, V)


@dataclass
class RoundingStats:
    """What deciding roundings cost (rule S18): elements whose side of a rounding boundary was
    decided from their exact part, rows whose precision was raised (Ziv) before it was, and the
    seconds spent on both."""

    decided: int = 0
    escalated_rows: int = 0
    seconds: float = 0.0

    def add(self, other: "RoundingStats") -> None:
        self.decided += other.decided
        self.escalated_rows += other.escalated_rows
        self.seconds += other.seconds


def _block(op: str, check: str, X: np.ndarray, Y: np.ndarray | None, G: np.ndarray | None, dt: D.DType,
           be: Any, opts: dict[str, Any], extra_bits: int = 0, V: np.ndarray | None = None) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, np.ndarray], int, RoundingStats]:
    """The certified values of the rows X (N, C) (labels Y, cotangents G), as (hi, lo, invalid,
    highest working precision used, what the rounding decisions cost)."""
    spec = O.OPS[op]
    n_rows, C = X.shape
    names = spec.outputs(check, opts)
    arr = opts.get(spec.input_param) if spec.input_param else None
    width = 1 if (check == "forward" and spec.reduces) else C
    hi = {n: np.empty((n_rows, width)) for n in names}
    lo = {n: np.empty((n_rows, width)) for n in names}
    inv = {n: np.zeros((n_rows, width), dtype=bool) for n in names}
    p0 = pmax = start_prec(dt)
    claim = claim_bits(dt) + extra_bits
    floor = zero_floor(dt)
    stats = RoundingStats()
    for r in range(n_rows):
        xs = X[r].tolist()
        ys = None if Y is None else (Y[r].tolist() if spec.labels == "dense" else Y[r].item())
        gs = None if G is None else (G[r].tolist() if not spec.reduces else
                                     G[r] if G.dtype == object else float(G[r]))
        if check == "grad2":  # the cotangent and the direction (S25)
            gs = (gs, V[r].tolist())
        xs, ro = O.row_options(opts, xs, None if arr is None else arr[r].tolist())
        dd, invalid, p = _certified_row(be, op, check, xs, ys, gs, ro, _resolving_prec(np.asarray(xs), p0), claim,
                                        floor, dt, stats)
        pmax = max(pmax, p)
        for n in names:
            hi[n][r, :], lo[n][r, :] = dd[n]
            inv[n][r, :] = invalid
    return hi, lo, inv, pmax, stats


def _resolving_prec(x: np.ndarray, p0: int) -> int:
    """The first working precision for the row x: p0, raised so that exp keeps the smallest
    difference between two finite logits. Logits closer than 2^-P give exponentials that round
    alike at P bits (exp(d) = 1 + d + ...), and at P - GAP as well: a point evaluation at both
    precisions would then agree on whatever the lost difference decides (a softmax gradient
    that is exactly 0 instead of 1.4e-309). The ball backend would widen and escalate; this
    starts where the information is kept, for every backend. (Higher-order cancellations, a
    second difference of three nearly equal logits, remain the ball backend's to catch.)"""
    f = np.unique(x[np.isfinite(x)])
    if f.size < 2:
        return p0
    with np.errstate(over="ignore"):  # -max and max are 2 max apart: inf, no constraint
        gap = float(np.min(np.diff(f)))
    if gap >= 2.0 ** -(p0 - GAP - 8):  # kept at P_lo to the claimed bits: the check sees it
        return p0
    need = p0 + int(math.ceil(-math.log2(gap))) if gap > 0 else MAX_PREC
    return min(MAX_PREC, max(p0, need))


def _dd(be: Any, vals: list[Any], dt: D.DType, exact: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """hi (float64 round-to-nearest of each value) and lo (the rest, rounded; STICKY where it
    underflows). lo matters for float64 outputs (errors to 1/1000 ULP) and, for the smaller
    dtypes, only where hi sits on a rounding boundary of dt (a midpoint, a power of two, the
    overflow threshold), which lo moves off; elsewhere it is left 0 (saves the time). For
    `exact` values (the special rows) lo is taken there at once; computed values near a boundary
    are settled by `_at_risk` and `_decide`."""
    if dt.name == "float64":
        h, l_ = be.to_dd(vals)
        return np.asarray(h, dtype=np.float64), np.asarray(l_, dtype=np.float64)
    his = np.array([v if isinstance(v, float) else float(v) for v in vals], dtype=np.float64)
    los = np.zeros_like(his)
    if exact:
        for i in np.nonzero(_on_boundary(his, dt))[0].tolist():
            if not isinstance(vals[i], float):
                los[i] = be.to_dd([vals[i]])[1][0]
    return his, los


def _on_boundary(h: np.ndarray, dt: D.DType) -> np.ndarray:
    """Where h is a rounding midpoint of dt, the overflow threshold, or a power of two above dt's
    smallest normal (where the ULP changes): there the rest below h decides."""
    a = np.abs(h)
    with np.errstate(invalid="ignore", over="ignore"):
        pow2 = np.isfinite(a) & (a > dt.tiny) & (np.frexp(np.where(np.isfinite(a), a, 1.0))[0] == 0.5)
    return D.is_midpoint(h, dt) | pow2


#: A rounding boundary near a value: ("double", B) where B is a float64 (a midpoint or power of
#: two of a smaller dtype, a power of two of float64), or ("mid", parts, low, high): the float64
#: midpoint, the exact sum of the products in `parts`, between the doubles low < high.
Boundary = tuple


def _point_widths(h: np.ndarray, diffs: list[float], p: int) -> np.ndarray:
    """A bound on |value - exact| per element of a point backend: its distance to the evaluation
    at P - GAP bits plus two of its own ULPs at P bits; -1 where there is nothing to decide (an
    exact 0, or a special float: `_agree_all` gives those the distance -1)."""
    d = np.asarray(diffs)
    with np.errstate(invalid="ignore"):
        r = d + np.abs(h) * 2.0 ** (2 - p)
    return np.where(((h == 0) & (d == 0)) | (d < 0) | ~np.isfinite(h), -1.0, r)


def _at_risk(h: np.ndarray, l_: np.ndarray, r: np.ndarray, dt: D.DType) -> list[tuple[int, Boundary | None]]:
    """The elements whose enclosure (h + l within r) may hold a rounding boundary of dt (for
    float64 outputs: of float64, whose correct rounding is hi itself), with that boundary; None
    where the nearest one is not worth naming (the precision is simply raised)."""
    maybe = (r >= 0) & np.isfinite(h)
    if dt.name != "float64":
        # A fast screen on the bits of h below dt's precision, in units of h's double ULP: the
        # distance to dt's midpoint (the low bits at one half) and to a power of two (all the
        # mantissa bits 0, or all 1 just below). Only normal values away from max; the rest,
        # and whatever the screen keeps, get the exact treatment below.
        a = np.abs(h)
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            inner = maybe & (a >= 2 * dt.tiny) & (a < dt.max / 2)
            bits = np.where(inner, a, 1.0).view(np.int64) & ((1 << 52) - 1)
            shift = 53 - dt.p
            d_mid = np.abs((bits & ((1 << shift) - 1)) - (1 << (shift - 1)))
            d_pow = np.minimum(bits, (1 << 52) - bits)
            slack = np.where(inner, r, 0.0) / np.spacing(np.where(inner, a, 1.0)) + 4
            maybe &= ~(inner & (np.minimum(d_mid, d_pow) > slack))
    cand = np.nonzero(maybe)[0]
    if cand.size == 0:
        return []
    hh, ll, rr = h[cand], l_[cand], r[cand]
    inf = np.full(hh.shape, np.inf)
    with np.errstate(invalid="ignore", over="ignore"):
        a = np.abs(hh)
        sg = np.where(np.signbit(hh), -1.0, 1.0)
        if dt.name == "float64":
            la = ll * sg
            up = np.where(a < D.DTYPES["float64"].max, np.spacing(a), 2.0 ** 971)  # away from zero (beyond max: inf)
            pow2 = (a > 2.0 ** -1022) & (np.frexp(np.where(a > 0, a, 1.0))[0] == 0.5)
            down = np.where(pow2, up / 2, up)  # to the neighbour toward zero
            margin = rr + up * 2.0 ** -50
            d_away = np.where(a > 0, up / 2 - la, 0.0)  # at 0: the midpoint 2^-1075, beyond doubles
            d_toward = np.where(a > 0, down / 2 + la, inf)
            d_pow = np.where(pow2, np.abs(la), inf)
            near = np.stack([d_away, d_toward, d_pow])
        else:
            c = np.clip(hh, -dt.max, dt.max).astype(dt.np).astype(np.float64)
            lo_n, hi_n = D.neighbours(hh, c, dt)
            inside = lo_n != hi_n
            mid = (lo_n + hi_n) / 2
            d_mid = np.where(inside, np.abs(hh - mid), D.ulp(hh, None, dt) / 4)

            def pow2(v: np.ndarray) -> np.ndarray:
                av = np.abs(v)
                return (av > dt.tiny) & np.isfinite(av) & (np.frexp(np.where(np.isfinite(av), av, 1.0))[0] == 0.5)

            T = dt.max + 0.5 * 2.0 ** (dt.emax - dt.p + 1)
            near = np.stack([d_mid, np.where(pow2(lo_n), np.abs(hh - lo_n), inf),
                             np.where(pow2(hi_n), np.abs(hh - hi_n), inf), np.abs(a - T)])
            margin = rr + 2 * np.spacing(a)
    which = np.argmin(near, axis=0)
    out: list[tuple[int, Boundary | None]] = []
    for j in np.nonzero(near[which, np.arange(len(cand))] <= margin)[0].tolist():
        w = int(which[j])
        hj, sj = float(hh[j]), float(sg[j])
        if dt.name == "float64":
            if w == 2:
                b: Boundary | None = ("double", hj)
            elif w == 0:  # away from zero
                step = float(up[j])
                other = hj + sj * step  # +-inf beyond max: the midpoint is the overflow threshold
                b = ("mid", ((hj, 1.0), (sj * step, 0.5)), min(hj, other), max(hj, other))
            else:
                step = float(down[j])
                other = hj - sj * step
                b = ("mid", ((hj, 1.0), (-sj * step, 0.5)), min(hj, other), max(hj, other))
        else:
            if w == 0:
                b = ("double", float(mid[j])) if inside[j] else None
            else:
                b = ("double", [float(lo_n[j]), float(hi_n[j]), sj * T][w - 1])
        out.append((int(cand[j]), b))
    return out


def _decide_row(be: Any, op: str, check: str, xs: list[float], ys: Any, gs: Any, opts: dict[str, Any], p: int,
                risky: list[tuple[str, int, Boundary]], exact: bool = False) -> list[tuple[float, float]] | None:
    """(hi, lo) of each risky element from the row's split evaluation at p bits, or None when
    one is not decided there. Where MPFR's exponent range would lose a sign, mpmath decides.
    With `exact` (the last precision, Ziv's strategy run out), an element the split evaluation
    leaves undecided is decided from the row's exact evaluation instead (`_decide_exact`): a rest
    whose terms cancel exactly to their first order, leaving e^-2e30, is beyond every precision."""
    sp = _SplitBackend(be)
    try:
        split = _evaluate(sp, op, check, xs, ys, gs, opts, p)[0]
        split_lo = None if be.ball else _evaluate(sp, op, check, xs, ys, gs, opts, p - GAP)[0]
    except be.underflow:
        return _decide_row(backend("mpmath"), op, check, xs, ys, gs, opts, p, risky, exact)
    out = []
    exact_vals: dict[str, list[Any]] | None = None
    for n, i, bnd in risky:
        res = _decide(be, split[n][i], None if split_lo is None else split_lo[n][i], bnd, p)
        if res is None and exact:
            if exact_vals is None:
                exact_vals = _exact_values(op, check, xs, ys, gs, opts) or {}
            res = _decide_exact(exact_vals[n][i], bnd) if exact_vals else None
        if res is None:
            return None
        out.append(res)
    return out


def _joined(be: Any, vals: dict[str, list[Any]], p: int) -> dict[str, list[Any]]:
    """Split values a + t as numbers of the base backend, at p bits."""
    with be.context(p):
        return {n: [v.base() if isinstance(v, _Split) else v for v in xs] for n, xs in vals.items()}


def _sign(be: Any, w: Any, w_lo: Any) -> int | None:
    """The certain sign of w (+1, -1, or 0 for an exact zero), or None. A ball's sign is certain
    when it excludes 0, its zero when it is the exact ball 0. A point value's sign is taken as
    certain when its two evaluations (P and P - GAP bits) agree on it, 0 included: the rest of a
    value that sits exactly on a boundary at both precisions would have to agree with a short
    dyadic to P bits without being it (the point backends' certification is agreement, S17)."""
    if be.ball:
        if be.is_exact_zero(w):
            return 0
        return 1 if w > 0 else (-1 if w < 0 else None)
    sw, sl = (w > 0) - (w < 0), (w_lo > 0) - (w_lo < 0)
    return sw if sw == sl else None


def _boundary_value(bnd: Boundary) -> Fraction:
    """The boundary B of `_at_risk`, exactly."""
    return Fraction(bnd[1]) if bnd[0] == "double" else sum((Fraction(x) * Fraction(y) for x, y in bnd[1]), Fraction(0))


def _decide(be: Any, v: _Split, v_lo: _Split | None, bnd: Boundary, p: int) -> tuple[float, float] | None:
    """The double-double (hi, lo) of an element near the boundary bnd, from its split value
    a + t (and, for a point backend, the same at P - GAP bits): the side of the exact value is
    the sign of (a - B) + t, exact in its first term. None when that sign is not certain at this
    precision (the precision is then raised)."""
    Dq = v.a - _boundary_value(bnd)

    def rest(x: _Split, q: Fraction, prec: int) -> Any:
        with be.context(prec):
            return be.rational(q) + x.t if q else x.t

    w = rest(v, Dq, p)
    side = _sign(be, w, None if v_lo is None else rest(v_lo, Dq, p - GAP))
    if side is None:
        return None
    if bnd[0] == "double":
        hi = float(bnd[1])
        if side == 0:
            return hi, 0.0
        with be.context(2200):
            return hi, _sticky(float(w), side, hi)
    low, high = bnd[2], bnd[3]
    if side == 0:
        hi = low if _even64(low) else high
    else:
        hi = high if side > 0 else low
    if not math.isfinite(hi):
        return hi, 0.0
    r = rest(v, v.a - Fraction(hi), p)
    with be.context(2200):
        f = float(r)
    return hi, _sticky(f, 1 if r > 0 else -1, hi)


def _sticky(f: float, side: int, hi: float) -> float:
    """A rest of sign `side` beside hi, never rounded away to 0 beside a normal hi."""
    return f if f != 0.0 or abs(hi) < _TINY64 else math.copysign(STICKY, side)


def _even64(x: float) -> bool:
    return (int(np.float64(abs(x)).view(np.int64)) & 1) == 0


def _certified_row(be: Any, op: str, check: str, xs: list[float], ys: Any, gs: Any, opts: dict[str, Any], p0: int,
                   claim: int,
                   floor: float, dt: D.DType, stats: RoundingStats
                   ) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], bool, int]:
    """The row's outputs as double-doubles (hi, lo) per output name, whether it is invalid, and the
    precision it needed: certified to the claim (S16, S17) and correctly rounded (S18)."""
    special = _special_row(be, op, check, xs, ys, gs, opts)
    if special is not None:  # exact values: their rounding needs no decision
        vals, invalid = special
        with be.context(4400):  # exact specials stay exact (a product of two doubles has 106 bits)
            vals = _scaled_grad(be, vals, opts)
        return {n: _dd(be, v, dt, exact=True) for n, v in vals.items()}, invalid, p0
    p = p0
    deciding = False
    # A point backend cannot see a cancellation that is exact at both of its precisions: tied
    # maxima (each e_i = 1) whose contributions cancel (softmax grad of [0, -1000, -500, 0] with
    # g = [1, 0, 0, 1] is e^-500 / 4, and 0 at P and P - GAP). It evaluates such rows in split
    # arithmetic, whose exact parts cancel exactly and leave the rest to its own precision.
    finite = [v for v in xs if v != -_INF]
    ev = _SplitBackend(be) if not be.ball and finite.count(max(finite)) > 1 else be
    while True:
        t_iter = time.perf_counter()
        try:
            hi_vals, d, e = _evaluate(ev, op, check, xs, ys, gs, opts, p)
            if be.ball:
                widths = be.widths(hi_vals, claim, floor)
            else:
                lo_vals, _, _ = _evaluate(ev, op, check, xs, ys, gs, opts, p - GAP, rounded_from=(d, e))
                if ev is not be:
                    hi_vals, lo_vals = _joined(be, hi_vals, p), _joined(be, lo_vals, p - GAP)
                widths = _agree_all(be, hi_vals, lo_vals, p + 64, 2.0 ** -claim, floor)
            ok = widths is not None
        except be.underflow:  # MPFR's exponent range ends near 2^-4.6e18: mpmath's does not
            return _certified_row(backend("mpmath"), op, check, xs, ys, gs, opts, p0, claim, floor, dt, stats)
        if ok:
            t0 = time.perf_counter()
            dd = {n: _dd(be, v, dt) for n, v in hi_vals.items()}
            risky = [(n, i, bnd) for n in hi_vals
                     for i, bnd in _at_risk(*dd[n], widths[n] if be.ball else _point_widths(dd[n][0], widths[n], p), dt)]
            undecided = any(bnd is None for _, _, bnd in risky)
            if risky and not undecided:
                # The exact decision only where Ziv's strategy has run out: it is slower for a row
                # of many distinct logits (its numerators grow as their powers), and a row the
                # split arithmetic decides keeps the (hi, lo) and precision it always had (cache).
                decided = _decide_row(be, op, check, xs, ys, gs, opts, p, risky, exact=p * 2 > MAX_PREC)
                if decided is None:
                    undecided = True
                else:
                    for (n, i, _), (h, l_) in zip(risky, decided):
                        dd[n][0][i], dd[n][1][i] = h, l_
            if risky or deciding:
                stats.seconds += time.perf_counter() - t0 + (t0 - t_iter if deciding else 0.0)
            if not undecided:
                stats.decided += len(risky)
                return dd, False, p
            if not deciding:
                stats.escalated_rows += 1
                deciding = True
        elif deciding:
            stats.seconds += time.perf_counter() - t_iter
        if p * 2 > MAX_PREC:
            raise ReferenceAccuracyError(
                f"{op}/{check}: no agreement to {claim} bits, or no decided rounding, up to {p} bits of working "
                f"precision for the row {xs[:8]}{'...' if len(xs) > 8 else ''}")
        p *= 2


def _agree_all(be: Any, a: dict[str, list[Any]], b: dict[str, list[Any]], prec: int, tol: float,
               floor: float) -> dict[str, list[float]] | None:
    """|a - b| per element (-1 for a special float), when every element of the two evaluations
    agrees to `tol` relative, or to `floor` absolute (results that cancel to ~0); None when one
    does not. The differences are taken exactly, compared as floats."""
    out: dict[str, list[float]] = {}
    with be.context(prec):
        for n in a:
            his, diffs = [], []
            for x, y in zip(a[n], b[n]):
                if isinstance(x, float) or isinstance(y, float):
                    same = x == y or (x != x and y != y)
                    his.append(1.0)
                    diffs.append(0.0 if same else _INF)
                else:
                    his.append(float(x))
                    diffs.append(float(x - y))
            h = np.abs(np.asarray(his))
            d = np.abs(np.asarray(diffs))
            if not np.all((d <= h * tol) | (d <= floor)):
                return None
            special = np.array([isinstance(x, float) for x in a[n]], dtype=bool)
            out[n] = np.where(special, -1.0, d).tolist()  # -1: an exact special (_point_widths)
    return out


def _formula(be: Any, op: str, check: str, d: list[Any], e: list[Any], ys: Any, gs: Any,
             m: float, opts: dict[str, Any]) -> dict[str, list[Any]]:
    """The op's value from d_i = x_i - m and e_i = exp(d_i) (None at -inf logits), at the
    current precision: the op's `formula` (harness.ops) over the row's quantities (ops.Row).
    Written once against the backends' common arithmetic, it runs on Arb balls, MPFR and mpmath
    numbers, and on the split numbers of `_SplitBackend` that decide roundings (S18)."""
    if check == "grad2":  # S25: (cotangent, direction)
        return O.hvp(be, op, O.Row(be, d, e, m), ys, gs[0], gs[1], opts)
    return O.OPS[op].formula(be, check, O.Row(be, d, e, m), ys, gs, opts)


def _evaluate(be: Any, op: str, check: str, xs: list[float], ys: Any, gs: Any, opts: dict[str, Any], p: int,
              rounded_from: tuple[list[Any], list[Any]] | None = None) -> tuple[dict[str, list[Any]], list, list]:
    """The formula at p bits: d_i = x_i - m and e_i = exp(d_i) (each distinct logit once), then
    `_formula`. With `rounded_from` (the d and e of a higher precision) they are rounded from
    those instead, as the point backends' second evaluation does (S17)."""
    with be.strict_context(p):
        m = max(v for v in xs if v != -_INF)
        if rounded_from is not None:
            d = [None if v is None else be.round(v) for v in rounded_from[0]]
            e = [None if v is None else be.round(v) for v in rounded_from[1]]
        else:
            exp = be.exp
            d, e = [], []
            cache: dict[float, tuple[Any, Any]] = {}
            for v in xs:
                hit = cache.get(v)
                if hit is None:
                    if v == -_INF:
                        hit = cache[v] = (None, None)
                    else:
                        dv = be.diff(v, m)
                        hit = cache[v] = (dv, exp(dv))
                d.append(hit[0])
                e.append(hit[1])
        return _scaled_grad(be, _formula(be, op, check, d, e, ys, gs, m, opts), opts), d, e


def _scaled_grad(be: Any, vals: dict[str, list[Any]], opts: dict[str, Any]) -> dict[str, list[Any]]:
    """The derivatives with respect to the logits times the scale s (S24: d/dx op(x s) = s op'(x s)),
    the second one along them s^2 (S25): exactly for a float (the product of two doubles as a
    rational, a float where one holds it), at the working precision for a number of the backend."""
    s = opts.get("_scale")
    if s is None:
        return vals
    # d/dx op(x s) = s op'(x s); the second derivative along x twice s^2, the mixed one s (S24, S25)
    factors = {"d_logits": Fraction(s), "d2_logits": Fraction(s) ** 2, "d2_labels": Fraction(s)}
    out = dict(vals)
    for name, q0 in factors.items():
        if name not in vals:
            continue
        col = []
        for v in vals[name]:
            if isinstance(v, float):
                if not math.isfinite(v):  # inf * 0 is NaN, as the product would be
                    col.append(v * float(q0))
                else:
                    q = Fraction(v) * q0
                    col.append(float(q) if Fraction(float(q)) == q else be.rational(q))
            else:
                col.append(v * be.rational(q0))
        out[name] = col
    return out


class _Split:
    """a + t: a an exact rational (Fraction), t the rest in the base backend's arithmetic.

    Arithmetic keeps a exact and never adds it into t, so a rest far below a (log S = 1e-90
    beside 414.625, or e^-3.4e38 beside the 1 of a tie) is carried with its own relative
    accuracy instead of being rounded away at P bits: the sign of (value - B) for a rounding
    boundary B is then the sign of (a - B) + t, exact in its first term (rule S18).
    """

    __slots__ = ("a", "t", "be")

    def __init__(self, a: Fraction, t: Any, be: Any):
        self.a, self.t, self.be = a, t, be

    def _of(self, x: Any) -> "_Split":
        return x if isinstance(x, _Split) else _Split(Fraction(x), self.be.zero(), self.be)

    def base(self) -> Any:
        """a + t as one number of the base backend (rounded at the current precision)."""
        return self.be.rational(self.a) + self.t if self.a else self.t

    def t_is_zero(self) -> bool:
        return self.be.is_exact_zero(self.t)

    def __add__(self, o: Any) -> "_Split":
        o = self._of(o)
        return _Split(self.a + o.a, self.t + o.t, self.be)

    __radd__ = __add__

    def __neg__(self) -> "_Split":
        return _Split(-self.a, -self.t, self.be)

    def __sub__(self, o: Any) -> "_Split":
        return self + (-self._of(o))

    def __rsub__(self, o: Any) -> "_Split":
        return self._of(o) - self

    def __mul__(self, o: Any) -> "_Split":
        o = self._of(o)
        be = self.be
        # the first-order terms first: they may cancel exactly ((1/2 + t)(1/2 - t)), leaving t t
        lin = (be.rational(self.a) * o.t if self.a else be.zero()) + (be.rational(o.a) * self.t if o.a else be.zero())
        return _Split(self.a * o.a, lin + self.t * o.t, be)

    __rmul__ = __mul__

    def __truediv__(self, o: Any) -> "_Split":
        o = self._of(o)
        be = self.be
        if not o.a:
            return _Split(Fraction(0), self.base() / o.t, be)
        q = self.a / o.a
        # a1/b1 with a1 = a + t, b1 = b + u: a/b + (t b - a u) / (b (b + u))
        bb = be.rational(o.a)
        num = self.t * bb - (be.rational(self.a) * o.t if self.a else be.zero())
        return _Split(q, num / (bb * (bb + o.t)), be)

    def __rtruediv__(self, o: Any) -> "_Split":
        return self._of(o) / self

    def __eq__(self, o: object) -> bool:  # exact equality with a float (the formula asks `== 0`)
        return isinstance(o, (int, float)) and self.a == Fraction(o) and self.t_is_zero()

    def __ne__(self, o: object) -> bool:
        return not self.__eq__(o)

    __hash__ = None  # type: ignore[assignment]


class _SplitBackend:
    """The base backend's arithmetic on `_Split` numbers: exact rationals for what the inputs
    determine exactly (differences of logits, the 1 = exp(0) of each maximum, sums of labels and
    cotangents, their quotients), the base backend for every transcendental value."""

    def __init__(self, base: Any):
        self.base = base
        self.ball = base.ball
        self.name = base.name

    def context(self, prec: int) -> Any:
        return self.base.strict_context(prec)

    strict_context = context

    def num(self, x: float) -> _Split:
        return _Split(Fraction(x), self.base.zero(), self.base)

    def _transcendental(self, f: Callable[[Any], Any], x: _Split, exact_at: int, value_there: int) -> _Split:
        if x.a == exact_at and x.t_is_zero():
            return self.num(value_there)
        return _Split(Fraction(0), f(x.base()), self.base)

    def exp(self, x: _Split) -> _Split:  # exp(0) = 1; exp of anything else is transcendental
        if x.a and x.t_is_zero():  # a difference of logits: its exponential from it exactly (`_point_diff`)
            return _Split(Fraction(0), self.base.exp(self.base.exact(x.a)), self.base)
        return self._transcendental(self.base.exp, x, 0, 1)

    diff = _num_diff

    def log(self, x: _Split) -> _Split:  # log(1) = 0
        return self._transcendental(self.base.log, x, 1, 0)

    def log1p(self, x: _Split) -> _Split:  # log1p(0) = 0
        return self._transcendental(self.base.log1p, x, 0, 0)

    def fsum(self, xs: list[Any]) -> _Split:
        total = self.num(0.0)
        for v in xs:
            total = total + v
        return total

    def round(self, x: _Split) -> _Split:
        return _Split(x.a, self.base.round(x.t), self.base)

    def rational(self, q: Fraction) -> _Split:  # exact: a smoothed label stays a rational
        return _Split(Fraction(q), self.base.zero(), self.base)

    def zero(self) -> _Split:  # the exact 0 a formula starts from (logsumexp's weights: T's Q = 0)
        return self.num(0.0)


# --------------------------------------------------------------------------------------------
# Exact decisions (S18): where the split arithmetic's rest drowns in its own error


class _TooLarge(Exception):
    """An exact rational function of the row's exponentials outgrew `_EXACT_WORK`."""


#: The most term products one multiplication of `_Exact` numbers may take: a row of n distinct
#: logits gives second derivatives over S^3, whose expansion has about n^3 / 6 terms.
_EXACT_WORK = 1 << 18

#: A sum of exponentials {k: c}: sum_k c exp(k 2^-EXP_UNIT), c a nonzero Fraction (ops.exp_sum).
Poly = dict


def _padd(a: Poly, b: Poly, sign: int = 1) -> Poly:
    out = dict(a)
    for k, c in b.items():
        v = out.get(k, 0) + (c if sign > 0 else -c)
        if v:
            out[k] = v
        else:
            out.pop(k, None)
    return out


def _pmul(a: Poly, b: Poly) -> Poly:
    if len(a) * len(b) > _EXACT_WORK:
        raise _TooLarge
    out: Poly = {}
    for k1, c1 in a.items():
        for k2, c2 in b.items():
            k = k1 + k2
            out[k] = out.get(k, 0) + c1 * c2
    return {k: c for k, c in out.items() if c}


# A denominator: a sorted tuple of (factor, power), each factor a normalised Poly as a sorted tuple
# of its (k, c) (largest k 0, its c 1): equal factors compare equal, whatever made them.

def _qcombine(a: tuple, b: tuple, how: Callable[[int, int], int]) -> tuple:
    pa, pb = dict(a), dict(b)
    out = {f: how(pa.get(f, 0), pb.get(f, 0)) for f in {**pa, **pb}}
    return tuple(sorted((f, n) for f, n in out.items() if n > 0))


def _qmul(a: tuple, b: tuple) -> tuple:
    return _qcombine(a, b, lambda x, y: x + y) if a and b else a or b


def _qdiv(a: tuple, b: tuple) -> tuple:  # b divides a
    return _qcombine(a, b, lambda x, y: x - y) if b else a


@functools.lru_cache(maxsize=256)
def _expand(q: tuple) -> Poly:
    """The product of a denominator's factors as one Poly (shared: never modified)."""
    out: Poly = {0: Fraction(1)}
    for f, n in q:
        for _ in range(n):
            out = _pmul(out, dict(f))
    return out


@functools.lru_cache(maxsize=256)
def _factor_value(f: tuple) -> tuple[int, Any]:
    """A factor's exact sign and value (an mpf, 64 bits relative)."""
    import mpmath

    sign, (lo, hi) = O.exp_sum(dict(f), 64)
    with mpmath.workprec(96):
        return sign, (lo + hi) / 2


class _Opaque:
    """A value of the exact arithmetic that is no rational function of the row's exponentials (a
    log: log S, log1p(T)): whatever it enters is opaque too, and left undecided (`_decide_exact`)."""

    def _same(self, *_: Any) -> "_Opaque":
        return self

    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = __truediv__ = __rtruediv__ = __neg__ = _same

    def __eq__(self, o: object) -> bool:
        return False

    def __ne__(self, o: object) -> bool:
        return True

    __hash__ = None  # type: ignore[assignment]


_OPAQUE = _Opaque()


class _Exact:
    """p / q exactly: p a sum of exponentials of exact exponents with exact rational coefficients,
    sum_k c_k exp(k 2^-1074) (the k: sums of the row's differences d_i = x_i - m), and q a product of
    such sums (`_expand`). The formulas of softmax's family are rational functions of the row's
    e_i = exp(d_i), so every value they make is one of these but a log's (`_Opaque`): + - * / keep
    it exact, with no rounding and no radius, and the distance to a boundary B has the exact sign
    of p - B q (`minus`), however far below 1 the terms that survive are.

    The split arithmetic (`_Split`) carries its rest t in the base backend: a ball's radius is
    relative to the terms it was formed from, not to what is left of them, so where the terms of
    t cancel exactly (softmax's gradient at a tie, 1/2 e - 1/2 e, leaving the e^2 of
    (1 + 2e) / (32 (1 + e)^2)), t is 0 within e 2^-P: e^-2e30 is out of reach of any precision."""

    __slots__ = ("p", "q")

    def __init__(self, p: Poly, q: tuple = ()):
        self.p, self.q = p, (q if p else ())

    @staticmethod
    def of(x: Any) -> Any:
        if isinstance(x, (_Exact, _Opaque)):
            return x
        if isinstance(x, float) and not math.isfinite(x):
            return _OPAQUE
        v = Fraction(x)
        return _Exact({0: v} if v else {})

    def __add__(self, o: Any) -> Any:
        o = _Exact.of(o)
        if o is _OPAQUE or not self.p:
            return o
        if not o.p:
            return self
        if self.q == o.q:
            return _Exact(_padd(self.p, o.p), self.q)
        lcm = _qcombine(self.q, o.q, max)
        return _Exact(_padd(_pmul(self.p, _expand(_qdiv(lcm, self.q))), _pmul(o.p, _expand(_qdiv(lcm, o.q)))), lcm)

    __radd__ = __add__

    def __neg__(self) -> "_Exact":
        return _Exact({k: -c for k, c in self.p.items()}, self.q)

    def __sub__(self, o: Any) -> Any:
        return self + (-_Exact.of(o))

    def __rsub__(self, o: Any) -> Any:
        return _Exact.of(o) + (-self)

    def __mul__(self, o: Any) -> Any:
        o = _Exact.of(o)
        if o is _OPAQUE:
            return o
        if not self.p or not o.p:
            return _Exact({})
        return _Exact(_pmul(self.p, o.p), _qmul(self.q, o.q))

    __rmul__ = __mul__

    def __truediv__(self, o: Any) -> Any:
        o = _Exact.of(o)
        if o is _OPAQUE:
            return o
        if not o.p:
            raise ZeroDivisionError("an exact division by 0")
        common = _qcombine(self.q, o.q, min)
        p = _pmul(self.p, _expand(_qdiv(o.q, common)))
        q = _qdiv(self.q, common)
        top = max(o.p)  # o.p = c exp(top) f, f normalised: a new factor unless a single term
        c = o.p[top]
        p = {k - top: v / c for k, v in p.items()}
        if len(o.p) > 1:
            q = _qmul(q, ((tuple(sorted((k - top, v / c) for k, v in o.p.items())), 1),))
        return _Exact(p, q)

    def __rtruediv__(self, o: Any) -> Any:
        return _Exact.of(o) / self

    def __eq__(self, o: object) -> bool:  # exact equality with a number (the formula asks `== 0`)
        if not isinstance(o, (int, float, Fraction)) or (isinstance(o, float) and not math.isfinite(o)):
            return False
        if o == 0:
            return not self.p
        return not self.q and self.p == {0: Fraction(o)}

    def __ne__(self, o: object) -> bool:
        return not self.__eq__(o)

    __hash__ = None  # type: ignore[assignment]

    def minus(self, B: Fraction) -> tuple[int, float]:
        """The sign of self - B, exactly (ops.exp_sum), and its value rounded to a double (0.0
        below float64's range: the caller makes it STICKY)."""
        import mpmath

        w = _padd(self.p, {k: B * c for k, c in _expand(self.q).items()}, -1) if B else self.p
        sign, ends = O.exp_sum(w, 64)
        if not sign:
            return 0, 0.0
        with mpmath.workprec(96):
            val = (ends[0] + ends[1]) / 2
            for f, n in self.q:
                fs, fv = _factor_value(f)
                sign *= fs ** n
                val /= fv ** n
            return sign, float(val)


class _ExactBackend:
    """The formulas in `_Exact` numbers: no precision, nothing rounded; exp of an exact exponent is
    a term of its own, every other transcendental value opaque."""

    name = "exact"
    ball = False
    underflow = _NeverRaised

    def context(self, prec: int) -> Any:
        return contextlib.nullcontext()

    strict_context = context

    def num(self, x: float) -> Any:
        return _Exact.of(x)

    rational = num

    diff = _num_diff

    def zero(self) -> _Exact:
        return _Exact({})

    def exp(self, x: Any) -> Any:
        if isinstance(x, _Exact) and not x.q and set(x.p) <= {0}:
            try:
                return _Exact({O.exponent(x.p.get(0, Fraction(0))): Fraction(1)})
            except ValueError:  # no multiple of 2^-EXP_UNIT
                pass
        return _OPAQUE

    def log(self, x: Any) -> Any:  # log(1) = 0
        return _Exact({}) if x == 1 else _OPAQUE

    def log1p(self, x: Any) -> Any:  # log1p(0) = 0
        return _Exact({}) if x == 0 else _OPAQUE

    def fsum(self, xs: list[Any]) -> Any:
        total: Any = _Exact({})
        for v in xs:
            total = total + v
        return total

    def round(self, x: Any) -> Any:
        return x


_EXACT = _ExactBackend()


def _exact_values(op: str, check: str, xs: list[float], ys: Any, gs: Any, opts: dict[str, Any]
                  ) -> dict[str, list[Any]] | None:
    """The row's outputs in exact arithmetic, or None where they outgrow `_EXACT_WORK`."""
    try:
        return _evaluate(_EXACT, op, check, xs, ys, gs, opts, 0)[0]
    except _TooLarge:
        return None


def _decide_exact(v: Any, bnd: Boundary) -> tuple[float, float] | None:
    """The double-double (hi, lo) of an element near the boundary bnd from its exact value (as
    `_decide` from a split one); None where it has none (a log entered it) or it outgrew
    `_EXACT_WORK`."""
    v = _Exact.of(v)
    if v is _OPAQUE:
        return None
    try:
        side, f = v.minus(_boundary_value(bnd))
        if bnd[0] == "double":
            hi = float(bnd[1])
            return (hi, 0.0) if side == 0 else (hi, _sticky(f, side, hi))
        low, high = bnd[2], bnd[3]
        hi = (low if _even64(low) else high) if side == 0 else (high if side > 0 else low)
        if not math.isfinite(hi):
            return hi, 0.0
        side, f = v.minus(Fraction(hi))
    except (_TooLarge, ArithmeticError):
        return None
    return hi, (0.0 if side == 0 else _sticky(f, side, hi))


def _special_row(be: Any, op: str, check: str, xs: list[float], ys: Any,
                 gs: Any, opts: dict[str, Any]) -> tuple[dict[str, list[Any]], bool] | None:
    """The row's values when docs/semantics.md decides them without arithmetic, else None.

    Returns (values by output name, invalid) where invalid marks NaN caused by invalid labels.
    """
    spec = O.OPS[op]
    C = len(xs)
    names = spec.outputs(check, opts)
    width = 1 if (check == "forward" and spec.reduces) else C

    def fill(v: float, invalid: bool = False) -> tuple[dict[str, list[Any]], bool]:
        return {n: [v] * width for n in names}, invalid

    # An ignored row first: it does not take part, whatever its logits (S20); then invalid labels:
    # the input is outside the op's domain whatever the logits are.
    if spec.labels == "sparse" and O.ignored(ys, opts):
        return fill(0.0)
    if spec.labels == "sparse" and not (0 <= ys < C):
        return fill(_NAN, True)
    if spec.labels == "dense" and any(not math.isfinite(y) for y in ys):
        return fill(_NAN, True)
    if spec.special is not None:  # an option's own rows (S23)
        got = spec.special(be, check, xs, gs, opts, names)
        if got is not None:
            return got
    if any(v != v for v in xs):
        return fill(_NAN)  # NaN propagates
    pinf = [i for i, v in enumerate(xs) if v == _INF]
    all_neg_inf = all(v == -_INF for v in xs)
    if len(pinf) >= 2 or (all_neg_inf and not pinf):
        return fill(spec.no_limit(check, bool(pinf)))  # inf - inf, or 0 / 0: no limit (S8, S9)
    if len(pinf) == 1:
        if check == "grad2":
            return O.hvp_limit(be, op, xs, ys, gs[0], gs[1], pinf[0], opts), False
        return spec.limit(be, check, xs, ys, gs, pinf[0], opts), False  # the limits of S6, S7
    return None
