"""The sums of a float16 or bfloat16 call accumulate in float32 (the `standard` policy's
`accumulate`, docs/tolerance.md): the summation term of those dtypes is one rounding of the sum
to the dtype plus a float32 sum's error, 1 + sqrt(C) u_float32 / u, not sqrt(C) u.

Summed in the half dtype itself, sqrt(C) u reaches the value at a few thousand terms in bfloat16
(4 sqrt(4100) 2^-8 = 1.0), and until 2026-12 a wrong answer passed there: a long bfloat16 row's
softmax of 0, a sign-flipped logsumexp gradient, a negated mean of 20000 losses. Each of them
fails here, and passes the half-dtype model (shown, so the test says what the change bought);
the max-shifted algorithm with every step rounded to the half dtype and its sums in float32
passes, and the same algorithm summing in the half dtype fails.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from harness import dtypes as D
from harness import ops as O
from harness import reference as R
from harness.policy import load as load_policy
from harness.verdict import condition, judge

STANDARD = load_policy("standard")
HALF = ("float16", "bfloat16")


def _row(dt: D.DType) -> np.ndarray:
    """extreme/long_row's logits: one row of 4100 classes, normal at scale 1 (seed 4100)."""
    return D.cast_exact(np.random.default_rng(4100).normal(size=(1, 4100)), dt)


def _judge(op, check, x, dt, out, y=None, g=None, options=None, summation=None, ref=None):
    """The verdict on `out` (ref: the exact reference of these inputs, when a test judges several
    outputs of one call)."""
    tol = STANDARD.tolerance(op, check, dt.name, "any")
    if ref is None:
        ref = R.compute(op, check, x, y, -1, dt, cotangent=g, options=options)
    cond = condition(op, check, x, y, g, -1, summation or tol.sums(dt), options, dt, None)
    shapes = O.output_shapes(op, check, x.shape, x.ndim - 1, options or {})
    outs = out(ref) if callable(out) else out
    return judge(op, check, outs, {n: dt.name for n in outs}, None, ref, dt, tol, cond, shapes)


def _in_dtype(x: np.ndarray, dt: D.DType, acc: D.DType) -> dict[str, np.ndarray]:
    """softmax, log_softmax and logsumexp by the max-shifted algorithm, every step rounded to
    `dt` (x - m, exp, log, the division and the subtractions), the row's sum accumulated one term
    at a time in `acc` and rounded to `dt`."""
    r = lambda a: D.cast_exact(a, dt)  # noqa: E731
    m = np.max(x, axis=-1, keepdims=True)
    d = r(x - m)
    e = r(np.exp(d))
    S = np.zeros(e.shape[:-1] + (1,))
    for j in range(e.shape[-1]):
        S = D.cast_exact(S + e[..., j:j + 1], acc)
    S = r(S)
    L = r(np.log(S))
    return {"softmax": r(e / S), "log_softmax": r(d - L), "logsumexp": r(m + L)[..., 0]}


@pytest.mark.parametrize("dt", D.DTYPE_NAMES)
def test_the_policy_sums_half_dtypes_in_float32_and_the_others_in_their_own(dt):
    for op in O.OP_NAMES:
        for check in ("forward", "grad", "grad2"):
            tol = STANDARD.tolerance(op, check, dt, "any")
            assert tol.accumulate == ("float32" if dt in HALF else None)
            d = D.get(dt)
            want = 1.0 + math.sqrt(4100) * 2.0 ** -24 / d.u if dt in HALF else math.sqrt(4100)
            assert tol.sums(d)(4100) == pytest.approx(want, rel=1e-15)
    # an accumulator narrower than the dtype changes nothing: the sum is at least as wide as its terms
    tol = STANDARD.tolerance("softmax", "forward", "float64", "any")
    assert dataclasses.replace(tol, accumulate="float32").sums(D.get("float64"))(4100) == math.sqrt(4100)


@pytest.mark.parametrize("dt", HALF)
def test_the_condition_term_is_the_closed_form_with_a_float32_sum(dt):
    """C equal logits: d = 0, s = 1/C, L = log C, D = 0, so softmax's term is s (L + sigma + 1),
    sigma = 1 + sqrt(C) u_float32 / u."""
    d = D.get(dt)
    C = 4100
    x = np.zeros((1, C))
    sig = 1.0 + math.sqrt(C) * 2.0 ** -24 / d.u
    A = condition("softmax", "forward", x, None, None, -1, STANDARD.tolerance("softmax", "forward", dt, "any").sums(d),
                  None, d)["out"]
    np.testing.assert_allclose(A, (math.log(C) + sig + 1) / C, rtol=1e-14)
    old = condition("softmax", "forward", x, None, None, -1, "sqrt", None, d)["out"]
    np.testing.assert_allclose(old, (math.log(C) + math.sqrt(C) + 1) / C, rtol=1e-14)


@pytest.mark.parametrize("dt", HALF)
def test_the_algorithm_in_the_half_dtype_with_a_float32_sum_passes_and_with_a_half_sum_fails(dt):
    d = D.get(dt)
    x = _row(d)
    wide = _in_dtype(x, d, D.get("float32"))
    narrow = _in_dtype(x, d, d)
    for op in ("softmax", "log_softmax", "logsumexp"):
        v = _judge(op, "forward", x, d, {"out": wide[op]})
        assert v.status == "pass", (op, v.message)
        w = _judge(op, "forward", x, d, {"out": narrow[op]})
        assert w.status == "fail" and w.excess > 1, (op, w.excess)


def test_a_long_bfloat16_rows_zero_softmax_and_sign_flipped_gradient_fail():
    d = D.get("bfloat16")
    x = _row(d)
    g = np.ones_like(x[..., 0])
    half = O.Summation("sqrt")  # the sum's error in bfloat16's own u: what the budget was

    def zeroed(ref):  # the smallest output answered 0
        a = np.array(ref.outputs["out"].rounded, np.float64)
        a[np.unravel_index(np.argmin(a), a.shape)] = 0.0
        return {"out": a}

    def flipped(ref):  # the gradient's largest element with its sign flipped
        a = np.array(ref.outputs["d_logits"].rounded, np.float64)
        i = np.unravel_index(np.argmax(a), a.shape)
        a[i] = -a[i]
        return {"d_logits": a}

    for op, check, wrong, cot in (("softmax", "forward", zeroed, None), ("logsumexp", "grad", flipped, g)):
        assert _judge(op, check, x, d, wrong, g=cot).status == "fail"
        assert _judge(op, check, x, d, wrong, g=cot, summation=half).status == "pass"  # the hole it closes
        right = lambda ref: {n: np.asarray(r.rounded, np.float64) for n, r in ref.outputs.items()}  # noqa: E731
        assert _judge(op, check, x, d, right, g=cot).status == "pass"


def test_a_mean_of_20000_bfloat16_losses_summed_in_bfloat16_fails_and_in_float32_passes():
    """A running bfloat16 sum of 20000 losses near 0.7 stalls near 2^9 (adding 0.7 to 512 rounds
    back), so the mean is off by most of its value; sigma(20000) = 141 in bfloat16's u let that
    and a negated mean pass."""
    d = D.get("bfloat16")
    rng = np.random.default_rng(20000)
    x = D.cast_exact(rng.normal(size=(20000, 2)), d)
    y = rng.integers(0, 2, size=20000)
    opts = {"reduction": "mean"}
    op = "sparse_softmax_cross_entropy"
    rows = R.compute(op, "forward", x, y, -1, d, options={"reduction": "none"}).outputs["out"]
    losses = D.cast_exact(rows.rounded, d)
    running = 0.0
    for v in losses:
        running = float(D.cast_exact(np.array(running + v), d))
    wide = float(D.cast_exact(np.array(math.fsum(losses) / 20000), d))
    narrow = float(D.cast_exact(np.array(running / 20000), d))
    half = O.Summation("sqrt")
    ref = R.compute(op, "forward", x, y, -1, d, options=opts)
    assert _judge(op, "forward", x, d, {"out": np.asarray(wide)}, y, options=opts, ref=ref).status == "pass"
    for wrong in (narrow, -wide):
        assert _judge(op, "forward", x, d, {"out": np.asarray(wrong)}, y, options=opts, ref=ref).status == "fail", wrong
        assert _judge(op, "forward", x, d, {"out": np.asarray(wrong)}, y, options=opts, summation=half,
                      ref=ref).status == "pass"


def test_exps_below_float16s_normal_range_err_absolutely_and_the_budget_says_so():
    """exp's rounding is u e_j relative only while e_j is a normal number: a float16 exp below
    2^-14 (x - max < -9.7) errs by up to u * 2^-14 absolutely (gradual underflow; e^-17.34 rounds
    to 0). 200000 logits 17.34 below the max, exp rounded to float16 and summed in float32, leave
    S short by 0.0058 (12 u): logsumexp 0 for exactly 0.0058541. Found by review once the sums
    became float32's: the old sqrt(C) of float16 had hidden it, and the budget without the
    subnormal term failed this right implementation (excess 1.1 to 1.4)."""
    d = D.get("float16")
    C = 200000
    x = np.full((1, C), -17.34375)
    x[0, 0] = 0.0
    right = _in_dtype_exp_then_float32(x, d)
    for op in ("softmax", "log_softmax", "logsumexp"):
        v = _judge(op, "forward", x, d, {"out": right[op]})
        assert v.status == "pass", (op, v.excess)
        tol = STANDARD.tolerance(op, "forward", "float16", "any")
        ref = R.compute(op, "forward", x, None, -1, d)
        no_sub = condition(op, "forward", x, None, None, -1, tol.sums(d), None, None, None)  # no dtype: no subnormal term
        w = judge(op, "forward", {"out": right[op]}, {"out": "float16"}, None, ref, d, tol, no_sub,
                  O.output_shapes(op, "forward", x.shape, 1, {}))
        assert w.status == "fail" and w.excess > 1, (op, w.excess)
    # a flushed or dropped term still fails where it is not below half the subnormal spacing
    x2 = np.full((1, 4096), -12.0)
    x2[0, 0] = 0.0
    flushed = _in_dtype_exp_then_float32(x2, d, flush=True)
    assert _judge("logsumexp", "forward", x2, d, {"out": flushed["logsumexp"]}).status == "fail"
    assert _judge("logsumexp", "forward", x2, d,
                  {"out": _in_dtype_exp_then_float32(x2, d)["logsumexp"]}).status == "pass"


def _in_dtype_exp_then_float32(x, dt, flush=False):
    """jax.nn's float16 softmax: x - max and exp rounded to the dtype (gradual underflow, or
    flushed to 0 below its normal range), the sum in float32, log and the outputs in the dtype."""
    r = lambda a: D.cast_exact(a, dt)  # noqa: E731
    m = np.max(x, axis=-1, keepdims=True)
    d = r(x - m)
    e = r(np.exp(d))
    if flush:
        e = np.where(e < dt.tiny, 0.0, e)
    S = r(np.sum(e.astype(np.float32), axis=-1, keepdims=True, dtype=np.float32).astype(np.float64))
    L = r(np.log(S))
    return {"softmax": r(e / S), "log_softmax": r(d - L), "logsumexp": r(m + L)[..., 0]}
