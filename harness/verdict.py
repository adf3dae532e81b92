"""The verdict: a pure function of (framework output, reference, dtype, tolerance).

Per element it classifies special values (never folded into a number), measures the error of
finite values in ULPs of the exact value, absolutely and relatively, and compares it with the
budget  ulp * ULP(exact_i) + cond * u * A_i. A_i, the op's first-order condition term, is
derived in docs/tolerance.md and computed here from the exact inputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import dtypes as D
from . import ops as O
from .adapters.base import AdapterOutputError
from .policy import Tolerance
from .records import jsonable
from .reference import Reference, zero_floor

#: Special-value classes, most severe first (the result's `special` is the first present).
CLASSES = ["raised", "silent_invalid", "finite_expected_nan", "nan_expected_finite", "inf_mismatch",
           "subnormal_flushed", "match"]
#: Every value the record's `special` field takes: `bad_output` for an adapter whose answer is no
#: Output of arrays (adapters.base.check_output); the runner adds `harness_error`, `crash` and
#: `timeout`, and `not_invariant` for an invariance check that fails on bits alone (every variant
#: within its budget, some differing from their base, under a policy whose rule is bitwise).
ALL_SPECIAL = CLASSES + ["bad_output", "harness_error", "crash", "timeout", "not_invariant"]


@dataclass
class Verdict:
    status: str  # pass | fail | error
    special: str
    special_counts: dict[str, int] = field(default_factory=dict)
    invalid_input: bool = False
    invalid_handling: str | None = None  # raised | nan | finite: what the framework chose
    max_ulp: float | None = None
    p99_ulp: float | None = None
    max_abs_err: float | None = None
    max_rel_err: float | None = None
    excess: float | None = None  # max over elements of error / budget (> 1 fails)
    worst: dict[str, Any] | None = None
    bad: list[dict[str, Any]] = field(default_factory=list)
    n_bad: int = 0
    n_checked: int = 0
    shape_ok: bool = True
    dtype_ok: bool = True
    message: str = ""


_BIG = float(np.finfo(np.float64).max) / 16
#: The cap of the row's terms |d_i| and W_i (float64's max / 2^32): the op's terms multiply them by
#: the summation term (C itself when linear), the cotangent and the labels, so uncapped a term of
#: the size of max overflowed, and an entry whose s_i is 0 made 0 * inf = NaN of its term, an
#: unlimited budget. Only float64 rows spanning more than 4e298 reach it; their outputs holding
#: d_i are of that size, where the policy's ULP term is the larger anyway.
_CAP = float(np.finfo(np.float64).max) / 2.0 ** 32


def condition(op: str, check: str, x: np.ndarray, y: np.ndarray | None, g: np.ndarray | None,
              axis: int, summation: O.Summation | str, options: dict[str, Any] | None = None,
              dt: D.DType | None = None, direction: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """A_i per output element (same layout as the output), from the exact inputs in float64: the
    op's `condition` (harness.ops) over the quantities of the max-shifted algorithm.

    Those quantities (d_i = x_i - m, L = log S, D = sum s_j |d_j|, the labels, the cotangent and
    the summation term, docs/tolerance.md) do not change when one constant is added to every logit
    of a row, so no budget grows with a common offset of the logits: an implementation whose error
    does (one that rounds m + log S before subtracting x_i) fails, as it should, where the
    max-shifted one stays within an ULP. Only logsumexp's forward output is m + L itself.

    A row with one `+inf` logit has the terms of its limit (S6, `_limit_rows`). The other rows
    with a non-finite logit (a NaN, two `+inf`, S8-S10) get inf: every output of theirs is
    non-finite, judged by the special-value classes alone.
    """
    spec = O.get(op)
    summation = O.Summation.of(summation)
    ax = axis % x.ndim
    kept = None
    scale = None
    if options and "scale" in options:  # S24: the terms of the op at x' = x * s rounded to dt, and P below
        if dt is None:
            raise ValueError("the condition term of a scaled op needs the tested dtype (the product rounds in it)")
        x0 = np.asarray(x, np.float64)
        x, options = O.scaled_logits(x, options, lambda a: D.cast_exact(a, dt))
        scale = float(options.pop("_scale"))
        # How far the product's rounding moved each logit, in units of u: 0 where x * s is exact
        # in the dtype (a power-of-two scale, small integers), never more than half an ULP.
        rounding = np.moveaxis(product_rounding(x0, scale, np.asarray(x, np.float64)) / dt.u, ax, -1)
    if options and "where" in options:  # S22: the kept entries; masked outputs and gradients are exact constants
        mask = np.asarray(options["where"], dtype=bool)
        kept = np.moveaxis(mask, ax, -1)
        x = np.where(mask, x, -np.inf)
        if check != "forward" and not spec.reduces:  # the masked outputs' cotangents do not flow
            g = np.where(mask, g, 0.0)
        if direction is not None:
            direction = np.where(mask, direction, 0.0)
        options = {k: v for k, v in options.items() if k != "where"}
    xm = np.moveaxis(np.asarray(x, np.float64), ax, -1)
    C = xm.shape[-1]
    with np.errstate(all="ignore"):
        xm = _limit_rows(xm, np.moveaxis(np.asarray(options["b"], np.float64), ax, -1)
                         if options and "b" in options else None)
        masked = xm == -np.inf
        fin = np.where(masked, -np.inf, xm)
        m = np.max(fin, axis=-1, keepdims=True)
        d = fin - m
        # An entry whose d_i overflows float64 (a float64 row spanning more than its max) has the
        # outputs of a masked one, in float64: s_i = 0, and every output holding d_i (log_softmax,
        # a cross-entropy term, d_labels) beyond the max, so -inf or +inf (S4, S5). Masked, its
        # terms are 0; as |d_i| = inf they were 0 * inf = NaN in every sum over the row (D),
        # and the whole row got an unlimited budget.
        masked = masked | (np.isfinite(fin) & (d == -np.inf))
        e = np.where(masked, 0.0, np.exp(d))
        S = np.sum(e, axis=-1, keepdims=True)
        s = e / S
        L = np.log(S)  # >= 0: S >= 1 (the max contributes exp(0) = 1)
        absd = np.where(masked, 0.0, np.minimum(np.abs(d), _CAP))
        Dw = np.sum(s * absd, axis=-1, keepdims=True)
        if dt is not None:
            # exp's own rounding is u e_j relative (the +1 below) only while e_j is a normal number of
            # the dtype: below its smallest normal (float16: d_j < -9.7) it is absolute, at most
            # u * tiny (gradual underflow), so S takes sum_j max(0, tiny - e_j) / S more (in units
            # of u). It matters only for float16 rows of many such terms: 256000 logits 17.3 below
            # the max, exp rounded to float16 and summed in float32, are off by 15 u of S.
            Dw = Dw + np.sum(np.where(masked, 0.0, np.maximum(dt.tiny / S - s, 0.0)), axis=-1, keepdims=True)
        P = 0.0
        if scale is not None:
            # A kernel may keep x * s wider than the dtype (a fused, upcast product): its input then
            # differs from x' by what the rounding of the product moved it, |x_i s - x'_i| (at most
            # half an ULP of x'_i; 0 where the product is exact), which moves d_i - L by P_i + sum
            # s_j P_j (P_i that distance in units of u): one term more beside d_i's own rounding
            # (S24). Not the half ULP itself: where the product is exact, no kernel has a reason to
            # differ, and half an ULP of a large x'_i would let any answer pass.
            P = np.where(masked, 0.0, rounding)
            Dw = Dw + np.sum(s * P, axis=-1, keepdims=True)
        sig = summation(C)
        # W_i: the absolute error, in units of u, of d_i - L: d_i's rounding (|d_i|), what exp
        # and the sum pass on to S and log passes on to L (D + sigma + 1), log's own rounding (L).
        W = absd + P + L + sig + Dw + 1.0
        # Terms of the size of float64's max (logits of +-max) overflow: cap them (_CAP), and
        # keep 0 * cap = 0 where s_i = 0.
        W = np.where(masked, 0.0, np.minimum(np.nan_to_num(W, nan=_CAP, posinf=_CAP), _CAP))
        bad_row = ~np.all(np.isfinite(xm) | masked, axis=-1, keepdims=True) | ~np.isfinite(m + L)
        if spec.labels == "dense":
            ym = np.moveaxis(np.asarray(y, np.float64), ax, -1)
        lab, ign = None, None
        if spec.labels == "sparse":
            lab = np.asarray(y).reshape(xm.shape[:-1])
            ym = (np.arange(C) == lab[..., None]).astype(np.float64)
        elif spec.labels == "none":
            ym = None
        opts = dict(options or {})
        red = O.reduction(opts)
        opts.pop("reduction", None)  # the rows' terms are those of reduction none
        if red != "none":  # S21: the rows' weights in a mean, their sum W (1 for a sum)
            wr = O.row_weights(np.zeros(int(np.prod(xm.shape[:-1]))) if y is None else np.asarray(y).reshape(
                (-1,) if spec.labels == "sparse" else (-1, C)), spec.labels, C, opts).reshape(xm.shape[:-1])
            Wsum = float(np.sum(wr)) if red == "mean" else 1.0
        gm = None
        if check != "forward":  # a reduction's cotangent is one number per row; a mean's row gets g / W
            if red != "none":
                share = float(np.asarray(g, np.float64).reshape(())) / Wsum if Wsum else 0.0
                gm = np.full(xm.shape[:-1] + (1,), share)
            else:
                gm = (np.asarray(g, np.float64).reshape(xm.shape[:-1])[..., None] if spec.reduces
                      else np.moveaxis(np.asarray(g, np.float64), ax, -1))
        if lab is not None and "ignore_index" in opts:  # an ignored row does not take part (S20)
            ign = lab == opts["ignore_index"]
            bad_row = bad_row & ~ign[..., None]
            ym = np.where(ign[..., None], 0.0, ym)
        seen = O.labels_seen(ym, opts, lab)
        names = spec.outputs(check, opts)
        if "b" in opts:  # an array of the logits' shape: class axis last, like the rows (S23)
            opts["b"] = np.moveaxis(np.asarray(opts["b"], dtype=np.float64), ax, -1)
        vm = None
        if check == "grad2":  # S25: the direction, class axis last
            vm = np.moveaxis(np.asarray(O.direction(x.shape, ax) if direction is None else direction, np.float64), ax, -1)
        terms = O.Terms(s, absd, L, Dw, sig, W, m, seen, gm, summation, ym, opts, xm, vm)
        terms_of = O.hvp_condition(op, terms) if check == "grad2" else spec.condition(check, terms)
        out: dict[str, np.ndarray] = {}
        for name, A in terms_of.items():
            if name not in names:
                continue
            A = np.nan_to_num(A, nan=_BIG, posinf=_BIG)
            if ign is not None:  # an ignored row's exact outputs are 0 whatever its logits: budget 0
                A = np.where(ign[..., None] if A.ndim == xm.ndim else ign, 0.0, A)
            if red != "none" and name == "out":
                rows_bad, rows_L = bad_row[..., 0], L
                if kept is not None:  # a row with nothing kept is an exact 0 of the sum (S22): no term
                    empty = ~np.any(kept, axis=-1)
                    A, rows_bad = np.where(empty, 0.0, A), rows_bad & ~empty
                    rows_L = np.where(empty[..., None], 0.0, L)
                out[name] = _reduced_condition(A, rows_bad, seen, rows_L, absd, Wsum, red, summation)
                continue
            if red == "mean" and name in ("d_logits", "d2_logits"):  # the row's cotangent g / W rounds once
                f = 2.0 if name == "d2_logits" else 1.0  # |v_i - V| <= 3/2 for the direction (S25)
                A = A + f * np.abs(gm) * (s * np.abs(np.sum(seen, axis=-1, keepdims=True)) + np.abs(seen))
            if kept is not None:  # exact constants: masked entries, and every output of an empty row
                empty = ~np.any(kept, axis=-1)
                if A.ndim == xm.ndim:
                    A = np.where(kept, A, 0.0)
                    bad_row = bad_row & ~empty[..., None]
                else:
                    A = np.where(empty, 0.0, A)
                    bad_row = bad_row & ~empty[..., None]
            if A.ndim == xm.ndim:
                out[name] = np.moveaxis(np.where(bad_row, np.inf, A), -1, ax)
            else:
                out[name] = np.where(bad_row[..., 0], np.inf, A)
        if scale is not None:  # s op'(x'): the budget scales (s^2 along x twice, S25); the product's own
            for name, f in (("d_logits", abs(scale)), ("d2_logits", scale * scale), ("d2_labels", abs(scale))):
                if name in out:  # rounding is the policy's ULP term's (S24); a special row's stays inf
                    A = out[name]
                    out[name] = np.where(np.isinf(A), A, A * f)
        return out


def _limit_rows(xm: np.ndarray, b: np.ndarray | None) -> np.ndarray:
    """The logits (class axis last, as S23's weights `b`) whose condition terms a row takes: a row with exactly one
    `+inf` logit and no NaN (S6) has the outputs of its limit, those of the row with that logit
    as its max (0) and every other entry masked (`-inf`, S4, S7): one-hot softmax, a log_softmax
    of 0 there, the constant gradients. Finite outputs, so a finite answer is judged against the
    budget of that row, not the special classes alone: with an unlimited budget any finite
    answer passed. Under S23's weights an entry of weight 0 takes no part whatever its logit: a
    `+inf` or NaN there is `-inf` to the terms first (its only output, d_b, is `+inf` or NaN)."""
    if b is not None:
        xm = np.where((b == 0) & ~np.isfinite(xm), -np.inf, xm)
    pinf = xm == np.inf
    one = (np.sum(pinf, axis=-1, keepdims=True) == 1) & ~np.any(np.isnan(xm), axis=-1, keepdims=True)
    return np.where(one, np.where(pinf, 0.0, -np.inf), xm)


def product_rounding(x: np.ndarray, s: float, rounded: np.ndarray) -> np.ndarray:
    """|x * s - rounded| for dtype numbers x and s, computed exactly (the product of two numbers
    of at most 26 bits is exact in float64; a float64 product's error comes from Dekker's
    TwoProduct); where that overflows, |rounded| / 2 (more than half an ULP); 0 at non-finite values."""
    with np.errstate(all="ignore"):
        p = x * s
        split = 134217729.0  # 2^27 + 1: Veltkamp's splitting of a double into two 26-bit halves
        def halves(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            c = split * a
            hi = c - (c - a)
            return hi, a - hi
        ah, al = halves(x)
        bh, bl = halves(np.asarray(s, np.float64))
        err = ((ah * bh - p) + ah * bl + al * bh) + al * bl  # x * s = p + err exactly
        out = np.abs((p - rounded) + err)
    fin = np.isfinite(rounded) & np.isfinite(x)
    return np.where(fin, np.where(np.isfinite(out), out, np.abs(rounded) / 2), 0.0)


def _reduced_condition(A: np.ndarray, bad: np.ndarray, y: np.ndarray, L: np.ndarray, absd: np.ndarray, W: float,
                       red: str, summation: O.Summation) -> np.ndarray:
    """The condition term of a sum or mean of N row losses (S21): the rows' own terms, the
    summation of N terms of magnitude at most sum_i |y_i| (L + |d_i|) each, and for a mean the
    rounding of the division and of W itself (one relative error of the result each); divided by
    |W|. A non-finite row makes the whole result a special value (inf)."""
    if np.any(bad) or W == 0:
        return np.asarray(np.inf)
    mag = np.sum(np.abs(y) * (L + absd), axis=-1)
    n = A.size
    total = float(np.sum(A)) + summation(n) * float(np.sum(mag))
    if red == "mean":
        total += 2.0 * float(np.sum(mag))
    return np.asarray(min(total / abs(W), _BIG))


def judge(op: str, check: str, arrays: dict[str, np.ndarray] | None, out_dtypes: dict[str, str] | None,
          raised: BaseException | None, ref: Reference, dt: D.DType, tol: Tolerance,
          cond: dict[str, np.ndarray], expected_shapes: dict[str, tuple[int, ...]],
          checked: dict[str, np.ndarray] | None = None, inputs: np.ndarray | None = None) -> Verdict:
    """Judge one result. `checked` masks the elements to compare (sampled rows); `inputs` is
    used only to name the input row of the worst elements in the message."""
    invalid_input = any(bool(np.any(r.invalid)) for r in ref.outputs.values())
    if isinstance(raised, AdapterOutputError):  # the adapter answered nothing judgeable: never a conforming raise
        return Verdict("error", "bad_output", {}, invalid_input, None, message=f"adapter defect: {raised}")
    if raised is not None:
        name = type(raised).__name__
        if invalid_input:
            return Verdict("pass", "match", {"raised": 1}, True, "raised",
                           message=f"invalid input; the framework raised {name} (conforms): {raised}")
        return Verdict("error", "raised", {"raised": 1}, False, None,
                       message=f"the framework raised {name} on a valid input: {raised}")
    assert arrays is not None and out_dtypes is not None
    v = Verdict("pass", "match", invalid_input=invalid_input)
    msgs: list[str] = []
    shapes = {n: tuple(np.shape(a)) for n, a in arrays.items()}
    if set(arrays) != set(expected_shapes) or any(shapes[n] != expected_shapes[n] for n in expected_shapes):
        v.shape_ok = False
        msgs.append(f"output shape {shapes} != contract {expected_shapes}")
    if any(out_dtypes.get(n) != dt.name for n in arrays):
        v.dtype_ok = False
        msgs.append(f"output dtype {out_dtypes} != input dtype {dt.name}")
    if not v.shape_ok:
        v.status, v.message = "fail", "; ".join(msgs)
        return v

    counts = {c: 0 for c in CLASSES[1:]}
    ulps, abss, rels, ratios = [], [], [], []
    handling: set[str] = set()
    worst: dict[str, Any] | None = None
    bad: list[dict[str, Any]] = []
    n_bad = n_checked = 0
    for name in expected_shapes:
        # Work on at least 1-D views: a reduction of a single row is 0-D.
        r0 = ref.outputs[name]
        r = type(r0)(*(np.atleast_1d(a) for a in (r0.hi, r0.lo, r0.rounded, r0.invalid)))
        o = np.atleast_1d(np.asarray(arrays[name], dtype=np.float64))
        mask = np.atleast_1d(checked[name]) if checked is not None else np.ones(o.shape, dtype=bool)
        cond_n = np.atleast_1d(cond[name])
        want_nan = np.isnan(r.hi)
        got_nan = np.isnan(o)
        got_inf = np.isinf(o)
        want_inf = np.isinf(r.rounded) & ~want_nan
        cls = np.full(o.shape, "match", dtype=object)
        # NaN expected: the framework answered a number.
        num_for_nan = want_nan & ~got_nan
        cls[num_for_nan & r.invalid] = "silent_invalid"
        cls[num_for_nan & ~r.invalid] = "finite_expected_nan"
        cls[~want_nan & got_nan & ~want_inf] = "nan_expected_finite"
        cls[~want_nan & got_nan & want_inf] = "inf_mismatch"
        inf_bad = ~want_nan & ~got_nan & (got_inf | want_inf) & (o != r.rounded)
        cls[inf_bad] = "inf_mismatch"
        cls[~mask] = "match"
        for c in counts:
            if c != "match":
                counts[c] += int(np.sum(cls == c))
        inv = r.invalid & mask
        if np.any(inv):
            handling.add("nan" if np.all(got_nan[inv]) else "finite")
        numeric = mask & ~want_nan & ~got_nan & ~got_inf & ~want_inf
        n_checked += int(np.sum(mask))
        if not np.any(numeric):
            continue
        err = D.abs_error(o, r.hi, r.lo)
        u = D.ulp(r.hi, r.lo, dt)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            ue = err / u
            # A reference within the zero floor (S16) is certified ~0, not to a relative claim
            # (the backends differ below it): relative error 0 for an output as close, else inf.
            zf = zero_floor(dt)
            rel = np.where(np.abs(r.hi) > zf, err / np.abs(r.hi), np.where(err <= zf, 0.0, np.inf))
            budget = tol.ulp * u + tol.cond * dt.u * np.nan_to_num(cond_n, nan=np.inf)
            ratio = np.where(budget > 0, err / budget, np.where(err == 0, 0.0, np.inf))
        # Gradual underflow: a zero where the exact value rounds to a nonzero subnormal of dt,
        # beyond the budget, is a flush to zero (FTZ/DAZ): a class of its own (its error is
        # still measured). Within the budget it is ordinary rounding error of a tiny result.
        flushed = numeric & (o == 0) & (r.rounded != 0) & (np.abs(r.rounded) < dt.tiny) & (ratio > 1.0)
        cls[flushed] = "subnormal_flushed"
        counts["subnormal_flushed"] += int(np.sum(flushed))
        ulps.append(ue[numeric])
        abss.append(err[numeric])
        rels.append(rel[numeric])
        ratios.append(ratio[numeric])
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            bu = budget / u
        idx = np.argwhere(numeric & (ratio > 1.0))
        n_bad += len(idx)
        order = np.argsort(-ratio[tuple(idx.T)])[:5] if len(idx) else []
        for j in order:
            ix = tuple(int(k) for k in idx[j])
            bad.append(_point(name, ix, o, r, ue, bu, ratio))
        flat = np.where(numeric, ue, -1.0)
        k = np.unravel_index(int(np.argmax(flat)), flat.shape)
        if worst is None or flat[k] > worst["ulp"]:
            worst = _point(name, tuple(int(i) for i in k), o, r, ue, bu, ratio)
    v.special_counts = {c: n for c, n in counts.items() if n}
    v.special = next((c for c in CLASSES[1:] if counts.get(c)), "match")
    v.n_checked, v.n_bad, v.bad, v.worst = n_checked, n_bad, bad, worst
    if invalid_input:
        v.invalid_handling = "finite" if "finite" in handling else "nan"
    if ulps:
        allu = np.concatenate(ulps)
        v.max_ulp = float(np.max(allu))
        with np.errstate(invalid="ignore"):  # inf errors (a finite answer for an overflow)
            v.p99_ulp = float(np.percentile(allu, 99))
        v.max_abs_err = float(np.max(np.concatenate(abss)))
        v.max_rel_err = float(np.max(np.concatenate(rels)))
        v.excess = float(np.max(np.concatenate(ratios)))
    if v.special != "match":
        msgs.append(f"special values: {v.special_counts}")
    if n_bad:
        msgs.append(f"Bad results ({n_bad} of {n_checked})")
    if not v.dtype_ok or v.special != "match" or n_bad:
        v.status = "fail"
    v.message = "; ".join(msgs) if msgs else (
        "invalid input; the framework returned NaN (conforms)" if invalid_input else "")
    return v


def _point(name: str, ix: tuple[int, ...], o: np.ndarray, r: Any, ue: np.ndarray, bu: np.ndarray,
           ratio: np.ndarray) -> dict[str, Any]:
    return {"output": name, "index": list(ix), "got": _num(o[ix]), "exact": _num(r.hi[ix] + r.lo[ix]),
            "exact_hi": _num(r.hi[ix]), "exact_lo": _num(r.lo[ix]), "rounded": _num(r.rounded[ix]),
            "ulp": float(ue[ix]), "budget_ulp": float(bu[ix]), "ratio": float(ratio[ix])}


def _num(v: Any) -> float | str:
    return jsonable(float(v))  # the records' one spelling of non-finite numbers
