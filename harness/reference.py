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
``claim_bits`` bits, and rounded to the tested dtype with round-to-nearest-even.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from . import dtypes as D
from . import ops as O
from .errors import ReferenceAccuracyError

#: Bump when a change to this module can change any stored reference (cache keys include it).
ENGINE_VERSION = "2"  # 2: precision resolves the closest logits (S17); arb balls
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


class _Mpmath:
    name = "mpmath"
    ball = False  # a point backend: certified by a second evaluation

    def __init__(self) -> None:
        import mpmath

        self.mp = mpmath

    def context(self, prec: int) -> Any:
        return self.mp.workprec(prec)

    def num(self, x: float) -> Any:
        return self.mp.mpf(x)  # exact for any float

    def exp(self, x: Any) -> Any:
        return self.mp.exp(x)

    def log(self, x: Any) -> Any:
        return self.mp.log(x)

    def log1p(self, x: Any) -> Any:
        return self.mp.log1p(x)

    def fsum(self, xs: list[Any]) -> Any:
        return self.mp.fsum(xs) if xs else self.mp.mpf(0)

    def round(self, x: Any) -> Any:
        return +x  # mpf's unary plus rounds to the working precision

    def to_dd(self, xs: list[Any]) -> tuple[list[float], list[float]]:
        with self.mp.workprec(2200):  # wide enough that x - hi is exact
            return _split(xs)


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

    def num(self, x: float) -> Any:
        return self.g.mpfr(x)

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

    def num(self, x: float) -> Any:
        return self.arb(x)

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

    def tight(self, vals: dict[str, list[Any]], claim: int, floor: float) -> bool:
        """Every ball is narrower than 2^-claim relative, or than `floor` absolute."""
        for xs in vals.values():
            for v in xs:
                if isinstance(v, float):
                    continue
                if v.rel_accuracy_bits() <= claim and not float(v.rad()) <= floor:
                    return False
        return True

    def to_dd(self, xs: list[Any]) -> tuple[list[float], list[float]]:
        with self.f.ctx.workprec(2200):  # float() of a ball rounds its midpoint to nearest
            return _split(xs)


def _split(xs: list[Any]) -> tuple[list[float], list[float]]:
    """Double-double (hi, lo) of each value; plain floats (special values) pass through."""
    his: list[float] = []
    los: list[float] = []
    for x in xs:
        if isinstance(x, float):
            his.append(x)
            los.append(0.0)
            continue
        h = float(x)
        his.append(h)
        los.append(float(x - h) if math.isfinite(h) else 0.0)
    return his, los


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


# --------------------------------------------------------------------------------------------
# The engine


def compute(op: str, check: str, logits: np.ndarray, labels: np.ndarray | None, axis: int,
            dt: D.DType, *, rows: np.ndarray | None = None, backend_name: str | None = None,
            cotangent: np.ndarray | None = None) -> Reference:
    """Reference outputs of `op`/`check` for the exact values in `logits` (and `labels`).

    `logits` and dense `labels` are float64 arrays holding the values *after* the cast to
    the tested dtype; sparse labels are integers. `rows` restricts the work to some rows of
    the flattened batch; the other rows come back as NaN.
    """
    spec = O.get(op)
    be = backend(backend_name)
    x = np.asarray(logits, dtype=np.float64)
    if x.ndim == 0:
        raise ValueError("logits must have at least one dimension")
    ax = axis % x.ndim
    xm = np.moveaxis(x, ax, -1)
    batch_shape, C = xm.shape[:-1], xm.shape[-1]
    N = int(np.prod(batch_shape, dtype=np.int64))
    X = xm.reshape(N, C)
    Y = None
    if spec.labels == "dense":
        Y = np.moveaxis(np.asarray(labels, dtype=np.float64), ax, -1).reshape(N, C)
    elif spec.labels == "sparse":
        Y = np.asarray(labels).reshape(N)
    G = None
    if check == "grad":
        g = cotangent if cotangent is not None else O.cotangent(op, x.shape, ax)
        G = (np.moveaxis(g, ax, -1).reshape(N, C) if not spec.reduces else np.asarray(g).reshape(N))
    names = ("out",) if check == "forward" else spec.grad_outputs
    width = 1 if (check == "forward" and spec.reduces) else C
    hi = {n: np.full((N, width), _NAN) for n in names}
    lo = {n: np.zeros((N, width)) for n in names}
    inv = {n: np.zeros((N, width), dtype=bool) for n in names}

    todo = np.arange(N) if rows is None else np.asarray(rows, dtype=np.int64)
    pmax = start_prec(dt)
    chunks = _chunks(todo, C)
    results = None
    if len(chunks) > 1:
        jobs = [(op, check, X[c], sub_(Y, c), sub_(G, c), dt.name, be.name) for c in chunks]
        try:
            results = list(_pool().map(_block_job, jobs))
        except Exception:  # noqa: BLE001 - a broken pool costs speed, never a reference
            _reset_pool()
    if results is None:
        chunks = [todo]
        results = [_block(op, check, X[todo], sub_(Y, todo), sub_(G, todo), dt, be)]
    for c, (h_, l_, i_, p_) in zip(chunks, results):
        for n in names:
            hi[n][c], lo[n][c], inv[n][c] = h_[n], l_[n], i_[n]
        pmax = max(pmax, p_)
    out: dict[str, RefArray] = {}
    keep = not (check == "forward" and spec.reduces)  # the output keeps the class axis
    for n in names:
        shape = batch_shape + (C,) if keep else batch_shape
        h, l_, iv = (a.reshape(shape) for a in (hi[n], lo[n], inv[n]))
        if keep:
            h, l_, iv = (np.moveaxis(a, -1, ax) for a in (h, l_, iv))
        h, l_, iv = (np.array(a, copy=True) for a in (h, l_, iv))  # contiguous; 0-d stays 0-d
        out[n] = RefArray(h, l_, D.round_to(h, l_, dt), iv)
    return Reference(out, pmax, claim_bits(dt), be.name, None if rows is None else todo)


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
        _POOL = concurrent.futures.ProcessPoolExecutor(max_workers=_workers(), mp_context=ctx)
    return _POOL


def _reset_pool() -> None:
    global _POOL
    if _POOL is not None:
        _POOL.shutdown(wait=False, cancel_futures=True)
    _POOL = None


def sub_(A: np.ndarray | None, idx: np.ndarray) -> np.ndarray | None:
    return None if A is None else A[idx]


def _block_job(job: tuple) -> tuple:
    op, check, X, Y, G, dt_name, be_name = job
    return _block(op, check, X, Y, G, D.DTYPES[dt_name], backend(be_name))


def _block(op: str, check: str, X: np.ndarray, Y: np.ndarray | None, G: np.ndarray | None, dt: D.DType,
           be: Any) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, np.ndarray], int]:
    """The certified values of the rows X (N, C) (labels Y, cotangents G), as (hi, lo, invalid,
    highest working precision used)."""
    spec = O.OPS[op]
    n_rows, C = X.shape
    names = ("out",) if check == "forward" else spec.grad_outputs
    width = 1 if (check == "forward" and spec.reduces) else C
    hi = {n: np.empty((n_rows, width)) for n in names}
    lo = {n: np.empty((n_rows, width)) for n in names}
    inv = {n: np.zeros((n_rows, width), dtype=bool) for n in names}
    p0 = pmax = start_prec(dt)
    claim = claim_bits(dt)
    floor = zero_floor(dt)
    for r in range(n_rows):
        xs = X[r].tolist()
        ys = None if Y is None else (Y[r].tolist() if spec.labels == "dense" else Y[r].item())
        gs = None if G is None else (G[r].tolist() if not spec.reduces else float(G[r]))
        vals, invalid, p = _certified_row(be, op, check, xs, ys, gs, _resolving_prec(X[r], p0), claim, floor)
        pmax = max(pmax, p)
        for n in names:
            hi[n][r, :], lo[n][r, :] = _to_dd(be, vals[n], dt)
            inv[n][r, :] = invalid
    return hi, lo, inv, pmax


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


def _to_dd(be: Any, vals: list[Any], dt: D.DType) -> tuple[Any, Any]:
    """hi (float64 round-to-nearest of each value) and lo (the remainder). lo matters for
    float64 outputs (errors to 1/1000 ULP) and, for the smaller dtypes, only where hi sits on a
    rounding midpoint of dt, which lo moves off; elsewhere it is left 0 (saves the time)."""
    if dt.name == "float64":
        return be.to_dd(vals)
    his = np.array([v if isinstance(v, float) else float(v) for v in vals])
    los = np.zeros_like(his)
    for i in np.nonzero(D.is_midpoint(his, dt))[0].tolist():
        los[i] = be.to_dd([vals[i]])[1][0]
    return his, los


def _certified_row(be: Any, op: str, check: str, xs: list[float], ys: Any, gs: Any, p0: int,
                   claim: int, floor: float) -> tuple[dict[str, list[Any]], bool, int]:
    p = p0
    while True:
        special = _special_row(be, op, check, xs, ys, gs)
        if special is not None:
            vals, invalid = special
            return vals, invalid, p
        with be.context(p):
            m = max(v for v in xs if v != -_INF)
            mm = be.num(m)
            exp = be.exp
            d: list[Any] = []
            e: list[Any] = []
            cache: dict[float, tuple[Any, Any]] = {}
            for v in xs:
                hit = cache.get(v)
                if hit is None:
                    if v == -_INF:
                        hit = cache[v] = (None, None)
                    else:
                        dv = v - mm
                        hit = cache[v] = (dv, exp(dv))
                d.append(hit[0])
                e.append(hit[1])
            hi_vals = _formula(be, op, check, d, e, ys, gs, m)
        if be.ball:
            if be.tight(hi_vals, claim, floor):
                return hi_vals, False, p
        else:
            with be.context(p - GAP):
                d_lo = [None if v is None else be.round(v) for v in d]
                e_lo = [None if v is None else be.round(v) for v in e]
                lo_vals = _formula(be, op, check, d_lo, e_lo, ys, gs, m)
            if _agree_all(be, hi_vals, lo_vals, p + 64, 2.0 ** -claim, floor):
                return hi_vals, False, p
        if p * 2 > MAX_PREC:
            raise ReferenceAccuracyError(
                f"{op}/{check}: no agreement to {claim} bits up to {p} bits of working precision "
                f"for the row {xs[:8]}{'...' if len(xs) > 8 else ''}")
        p *= 2


def _agree_all(be: Any, a: dict[str, list[Any]], b: dict[str, list[Any]], prec: int, tol: float,
               floor: float) -> bool:
    """Every element of the two evaluations agrees to `tol` relative, or to `floor` absolute
    (results that cancel to ~0). The differences are taken exactly, compared as floats."""
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
                return False
    return True


def _formula(be: Any, op: str, check: str, d: list[Any], e: list[Any], ys: Any, gs: Any,
             m: float) -> dict[str, list[Any]]:
    """The op's value from d_i = x_i - m and e_i = exp(d_i) (None at -inf logits), at the
    current precision. Masked (-inf) entries take their limit values.

    No quantity is formed as 1 + tiny and then taken apart again: with k the first index of
    the row max (e_k = 1 exactly) and T = sum of the other terms, log S = log1p(T) and
    1 - s_k = T / S. A confident row (T below 2^-P) would otherwise round S to 1 at both
    precisions, and the two evaluations would agree on a wrong 0.
    """
    k = next(i for i, di in enumerate(d) if di is not None and di == 0)
    T = be.fsum([v for i, v in enumerate(e) if v is not None and i != k])
    S = 1 + T
    L = be.log1p(T)
    s = [0.0 if v is None else v / S for v in e]
    one_minus_sk = T / S
    if op == "softmax":
        if check == "forward":
            return {"out": s}
        # g_i - G with G = sum g_j s_j = g_k s_k + R: g_i - G = (g_i - g_k) + Q, Q = g_k (1 - s_k) - R.
        R = be.fsum([g * si for i, (g, si) in enumerate(zip(gs, s)) if si != 0.0 and i != k])
        Q = gs[k] * one_minus_sk - R
        return {"d_logits": [0.0 if si == 0.0 else si * ((g - gs[k]) + Q) for g, si in zip(gs, s)]}
    if op == "log_softmax":
        if check == "forward":
            return {"out": [-_INF if di is None else di - L for di in d]}
        Sg = be.fsum([be.num(g) for g in gs])
        # At k: g_k - s_k sum g = -(sum of the other g) + (1 - s_k) sum g.
        rest = be.fsum([be.num(-g) for i, g in enumerate(gs) if i != k])
        return {"d_logits": [float(g) if si == 0.0 else (rest + one_minus_sk * Sg if i == k else g - si * Sg)
                             for i, (g, si) in enumerate(zip(gs, s))]}
    if op == "logsumexp":
        if check == "forward":
            return {"out": [L + m]}
        return {"d_logits": [0.0 if si == 0.0 else gs * si for si in s]}
    if op == "softmax_cross_entropy":
        if check == "forward":
            # -sum y_i log_softmax_i = sum y_i (L - d_i); y_i = 0 contributes 0 even at -inf.
            inf_terms = [y for y, di in zip(ys, d) if di is None and y != 0]
            if inf_terms:
                return {"out": [_signed_inf_sum(inf_terms)]}
            return {"out": [be.fsum([y * (L - di) for y, di in zip(ys, d) if y != 0])]}
        # The VJP with the row's cotangent gs (1 in the suite: the gradient of the sum):
        # s_i sum(y) - y_i, at k as (sum of the other y) - (1 - s_k) sum(y).
        Sy = be.fsum([be.num(y) for y in ys])
        rest = be.fsum([be.num(y) for i, y in enumerate(ys) if i != k])
        dl = [(-be.num(y)) * gs if si == 0.0 else
              ((rest - one_minus_sk * Sy) if i == k else (si * Sy - y)) * gs
              for i, (y, si) in enumerate(zip(ys, s))]
        dy = [_scaled_inf(gs) if di is None else (L - di) * gs for di in d]
        return {"d_logits": dl, "d_labels": dy}
    if op == "sparse_softmax_cross_entropy":
        lab = ys
        if check == "forward":
            return {"out": [_INF if d[lab] is None else L - d[lab]]}
        out = []
        for i, si in enumerate(s):
            if i != lab:
                v = si
            elif si == 0.0:
                v = be.num(-1.0)
            elif i == k:
                v = -one_minus_sk  # s_k - 1, without the cancellation
            else:
                v = si - 1
            out.append(v * gs)
        return {"d_logits": out}
    raise ValueError(op)


def _scaled_inf(g: float) -> float:
    """+inf times the cotangent g (0 for g == 0: the VJP of a zero cotangent is zero)."""
    return math.copysign(_INF, g) if g != 0 else 0.0


def _exact_sum(be: Any, vals: list[float]) -> Any:
    """The exact sum of floats (a wide enough precision holds any sum of doubles exactly)."""
    with be.context(4400):
        return be.fsum([be.num(v) for v in vals])


def _signed_inf_sum(weights: list[float]) -> float:
    """Sum of y_i * (+inf) for nonzero y_i: +inf, -inf, or NaN when signs are mixed."""
    pos = any(w > 0 for w in weights)
    neg = any(w < 0 for w in weights)
    return _NAN if (pos and neg) else (_INF if pos else -_INF)


def _special_row(be: Any, op: str, check: str, xs: list[float], ys: Any,
                 gs: Any) -> tuple[dict[str, list[Any]], bool] | None:
    """The row's values when docs/semantics.md decides them without arithmetic, else None.

    Returns (values by output name, invalid) where invalid marks NaN caused by invalid labels.
    """
    spec = O.OPS[op]
    C = len(xs)
    names = ("out",) if check == "forward" else spec.grad_outputs
    width = 1 if (check == "forward" and spec.reduces) else C

    def fill(v: float, invalid: bool = False) -> tuple[dict[str, list[Any]], bool]:
        return {n: [v] * width for n in names}, invalid

    # Invalid labels first: the input is outside the op's domain whatever the logits are.
    if spec.labels == "sparse" and not (0 <= ys < C):
        return fill(_NAN, True)
    if spec.labels == "dense" and any(not math.isfinite(y) for y in ys):
        return fill(_NAN, True)
    if any(v != v for v in xs):
        return fill(_NAN)  # NaN propagates
    pinf = [i for i, v in enumerate(xs) if v == _INF]
    all_neg_inf = all(v == -_INF for v in xs)
    if len(pinf) >= 2 or (all_neg_inf and not pinf):
        if op == "logsumexp" and check == "forward":
            return fill(_INF if pinf else -_INF)
        return fill(_NAN)  # inf - inf, or 0 / 0: no limit
    if len(pinf) == 1:
        k = pinf[0]
        onehot = [1.0 if i == k else 0.0 for i in range(C)]
        if op == "softmax":
            return ({"out": onehot} if check == "forward" else {"d_logits": [0.0] * C}), False
        if op == "log_softmax":
            if check == "forward":
                return {"out": [0.0 if i == k else -_INF for i in range(C)]}, False
            # g_k - sum g = -(sum of the others), exactly: a float fsum minus g_k can cancel.
            rest = _exact_sum(be, [-g for i, g in enumerate(gs) if i != k])
            return {"d_logits": [rest if i == k else float(g) for i, g in enumerate(gs)]}, False
        if op == "logsumexp":
            if check == "forward":
                return {"out": [_INF]}, False
            return {"d_logits": [gs * o for o in onehot]}, False
        if op == "softmax_cross_entropy":
            if check == "forward":
                inf_terms = [y for i, y in enumerate(ys) if i != k and y != 0]
                return {"out": [_signed_inf_sum(inf_terms) if inf_terms else 0.0]}, False
            # s = onehot(k): d_logits = gs (s sum(y) - y) is gs * (sum of the other labels) at k.
            rest = _exact_sum(be, [y for i, y in enumerate(ys) if i != k])
            with be.context(4400):
                dl = [rest * gs if i == k else be.num(-y) * gs for i, y in enumerate(ys)]
            return {"d_logits": dl,
                    "d_labels": [0.0 if i == k else _scaled_inf(gs) for i in range(C)]}, False
        if op == "sparse_softmax_cross_entropy":
            if check == "forward":
                return {"out": [0.0 if ys == k else _INF]}, False
            return {"d_logits": [(o - (1.0 if i == ys else 0.0)) * gs for i, o in enumerate(onehot)]}, False
    return None
