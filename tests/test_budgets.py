"""The condition terms of the `standard` budgets (harness/verdict.py, docs/tolerance.md).

- Shift invariance: the budget of a row and of the same row plus an exactly representable
  constant are equal, for every op, check and cotangent but logsumexp's forward (its output is
  max + log S). A budget that grows with the offset would let an error that grows with it pass.
- Golden values: each term as docs/tolerance.md derives it, for rows whose quantities are known
  in closed form.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from harness import dtypes as D
from harness import ops as O
from harness import reference as R
from harness.policy import load as load_policy
from harness.verdict import condition

ROWS = np.array([[0.0, 0.5, -1.0, 2.0, 1.5, -3.0], [1.0, 1.0, 0.25, -0.5, 3.0, 0.0]])
DENSE = np.array([[0.25, 0.5, 0.0, 0.125, 0.125, 0.0], [0.0, 1.0, -0.25, 0.5, 0.0, 0.75]])
SPARSE = np.array([4, 2])
OFFSETS = {"bfloat16": [16.0, -32.0, 48.0], "float16": [32.0, -256.0, 240.0], "float32": [1024.0, -2.0 ** 17, 2.0 ** 20],
           "float64": [1e3, -2.0 ** 40, 2.0 ** 44]}


def labels(op):
    return {"dense": DENSE, "sparse": SPARSE, "none": None}[O.OPS[op].labels]


def budgets(op, check, x, dt, g):
    """The full budget per element: ulp * ULP(exact) + cond * u * A."""
    tol = load_policy("standard").tolerance(op, check, dt.name, "any")
    y = labels(op)
    ref = R.compute(op, check, x, y, -1, dt, cotangent=g)
    cond = condition(op, check, x, y, g, -1, tol.sums(dt))
    return {n: tol.ulp * D.ulp(r.hi, r.lo, dt) + tol.cond * dt.u * cond[n] for n, r in ref.outputs.items()}, cond


@pytest.mark.parametrize("dt", D.DTYPE_NAMES)
@pytest.mark.parametrize("op,check,cot", [(op, "forward", None) for op in O.OP_NAMES] +
                         [(op, "grad", c) for op in O.OP_NAMES for c in O.COTANGENTS])
def test_no_budget_moves_with_a_common_offset_but_logsumexps(op, check, cot, dt):
    d = D.DTYPES[dt]
    x = D.cast_exact(ROWS, d)
    g = None if cot is None else D.cast_exact(O.cotangent(cot, op, x.shape, 1), d)
    base, base_cond = budgets(op, check, x, d, g)
    for c in OFFSETS[dt]:
        xc = x + c
        assert np.array_equal(D.cast_exact(xc, d), xc), "the shifted row must be exactly representable"
        shifted, shifted_cond = budgets(op, check, xc, d, g)
        for n in base:
            if op == "logsumexp" and check == "forward":
                # its output is max + log S: the term keeps |lse|, and grows with the offset
                assert np.all(shifted_cond[n] > base_cond[n])
                continue
            np.testing.assert_array_equal(shifted_cond[n], base_cond[n], err_msg=f"{op} {check} {cot} {n} c={c}")
            np.testing.assert_array_equal(shifted[n], base[n], err_msg=f"{op} {check} {cot} {n} c={c}")


def test_the_terms_are_the_derivations_closed_forms():
    """Row [0, 0] (C = 2, summation sqrt): d = 0, s = 1/2, L = log 2, D = 0, sigma = sqrt 2, so
    W = log 2 + sqrt 2 + 1 for both entries; the table of docs/tolerance.md follows."""
    x = np.array([[0.0, 0.0]])
    W = math.log(2) + math.sqrt(2) + 1
    s = 0.5

    def A(op, check, y=None, g=None, name=None):
        return condition(op, check, x, y, g, -1, "sqrt")[name or ("out" if check == "forward" else "d_logits")]

    np.testing.assert_allclose(A("softmax", "forward"), [[s * W, s * W]], rtol=1e-15)
    np.testing.assert_allclose(A("log_softmax", "forward"), [[W, W]], rtol=1e-15)
    np.testing.assert_allclose(A("logsumexp", "forward"), [math.log(2) + math.log(2) + math.sqrt(2) + 1], rtol=1e-15)
    y = np.array([[0.25, 0.5]])
    L = math.log(2)
    np.testing.assert_allclose(A("softmax_cross_entropy", "forward", y), [0.75 * (W + math.sqrt(2) * L)], rtol=1e-15)
    # one nonzero label (one-hot, sparse): a sum of one term adds no error
    np.testing.assert_allclose(A("sparse_softmax_cross_entropy", "forward", np.array([1])), [W], rtol=1e-15)
    np.testing.assert_allclose(A("softmax_cross_entropy", "forward", np.array([[0.0, 2.0]])), [2 * W], rtol=1e-15)
    g = np.array([[0.5, -1.0]])
    G, H = s * 1.5, s * 1.5 * W
    np.testing.assert_allclose(A("softmax", "grad", g=g), [[s * ((W + 1) * (0.5 + G) + H), s * ((W + 1) * (1 + G) + H)]],
                               rtol=1e-15)
    np.testing.assert_allclose(A("log_softmax", "grad", g=g),
                               [[s * 0.5 * (W + 1) + 0.5 + s * 1.5 * math.sqrt(2),
                                 s * 0.5 * (W + 1) + 1 + s * 1.5 * math.sqrt(2)]], rtol=1e-15)
    gr = np.array([-2.0])  # a reduction's cotangent scales every term of its row
    np.testing.assert_allclose(A("logsumexp", "grad", g=gr), [[2 * s * (W + 1)] * 2], rtol=1e-15)
    dl = 2 * (s * 0.75 * (W + 1) + s * 0.75 * math.sqrt(2) + np.array([0.25, 0.5]))
    np.testing.assert_allclose(A("softmax_cross_entropy", "grad", y, gr), [dl], rtol=1e-15)
    np.testing.assert_allclose(A("softmax_cross_entropy", "grad", y, gr, "d_labels"), [[2 * W, 2 * W]], rtol=1e-15)
    np.testing.assert_allclose(A("sparse_softmax_cross_entropy", "grad", np.array([1]), gr),
                               [2 * (s * (W + 1) + s * math.sqrt(2) + np.array([0.0, 1.0]))], rtol=1e-15)


def test_a_reduction_with_a_zero_cotangent_has_a_zero_term():
    """The pattern cotangent has zeros: a row whose upstream gradient is 0 has an exact gradient
    of 0 and no condition term, so anything but (near) 0 fails there."""
    x = np.array([[0.0, 1.0, 2.0], [3.0, 1.0, 0.0]])
    A = condition("sparse_softmax_cross_entropy", "grad", x, np.array([0, 1]), np.array([0.0, 1.0]), -1, "sqrt")
    assert np.all(A["d_logits"][0] == 0) and np.all(A["d_logits"][1] > 0)


@pytest.mark.parametrize("op,check", [(op, ch) for op in O.OP_NAMES for ch in O.VALUE_CHECKS])
def test_an_empty_batch_has_empty_terms(op, check):
    x = np.zeros((0, 5))
    y = {"dense": np.zeros((0, 5)), "sparse": np.zeros((0,), dtype=np.int64), "none": None}[O.OPS[op].labels]
    g = np.zeros((0,) if O.OPS[op].reduces else (0, 5)) if check != "forward" else None
    for name, a in condition(op, check, x, y, g, -1, "sqrt").items():
        assert a.shape == ((0,) if (check == "forward" and O.OPS[op].reduces) else (0, 5)), (op, check, name)
