"""Rows whose exact outputs are finite although a logit is not, or although their spread
overflows float64, are judged against a budget, not waved through (harness/verdict.py).

- One `+inf` logit (docs/semantics.md S6, S7): the outputs are the limits, a one-hot softmax,
  a log_softmax of 0 at the `+inf` entry, the constant gradients. Their condition terms are
  those of the same row with that entry as its max and every other entry masked.
- A float64 row spanning more than float64's max: the far entries' `d_i` overflow, and their
  `0 * inf` made the row's sum `D` NaN: every element got an unlimited budget.

Both used to pass any finite answer under `standard`: the exact answer passes here, and a
wrong one on any finite element fails. Also: a large input's sampled rows include every row of
the semantics' own rules (cases.sample_rows), labels and masks included.
"""

from __future__ import annotations

import numpy as np
import pytest

from harness import cases as K
from harness import dtypes as D
from harness import ops as O
from harness import reference as R
from harness.policy import load as load_policy
from harness.verdict import condition, judge

STANDARD = load_policy("standard")


def _judge(op, check, x, dt, out, y=None, g=None, options=None):
    tol = STANDARD.tolerance(op, check, dt.name, "any")
    ref = R.compute(op, check, x, y, -1, dt, cotangent=g, options=options)
    cond = condition(op, check, x, y, g, -1, tol.sums(dt), options, dt, None)
    shapes = O.output_shapes(op, check, x.shape, x.ndim - 1, options or {})
    outs = out(ref) if callable(out) else out
    return judge(op, check, outs, {n: dt.name for n in outs}, None, ref, dt, tol, cond, shapes), ref, cond


def _exact(ref):
    return {n: np.asarray(r.rounded, np.float64) for n, r in ref.outputs.items()}


def _wrong(ref):
    """Every finite element a quarter of its magnitude (or 0.25) off: far outside any budget."""
    out = {}
    for n, r in ref.outputs.items():
        a = np.array(r.rounded, np.float64)
        fin = np.isfinite(a)
        a[fin] = a[fin] + 0.25 * np.maximum(1.0, np.abs(a[fin]))
        out[n] = a
    return out


def _labels(op, C, p):
    kind = O.OPS[op].labels
    if kind == "sparse":
        return np.array([p, 1])  # row 0 on the +inf class: a finite loss (0)
    if kind == "dense":
        y = np.zeros((2, C))
        y[0, p] = 1.0  # row 0's labels all on the +inf class: a finite loss (0)
        y[1, :] = [0.25, 0.5, 0.25, 0.0][:C]
        return y
    return None


CASES = [(op, "forward", None) for op in O.OP_NAMES] + [(op, "grad", c) for op in O.OP_NAMES for c in O.COTANGENTS]


@pytest.mark.parametrize("dt", ["float16", "bfloat16", "float32", "float64"])
@pytest.mark.parametrize("op,check,cot", CASES)
def test_a_row_with_one_pos_inf_has_the_limits_budget(op, check, cot, dt):
    d = D.DTYPES[dt]
    x = D.cast_exact(np.array([[0.5, np.inf, -1.0, 2.0], [1.0, -0.5, 0.25, 3.0]]), d)
    y = _labels(op, 4, 1)
    g = None if cot is None else D.cast_exact(O.cotangent(cot, op, x.shape, 1), d)
    v, ref, cond = _judge(op, check, x, d, _exact, y, g)
    assert v.status == "pass", (v.message, v.max_ulp)
    finite = {n: np.isfinite(np.asarray(r.rounded, np.float64)) for n, r in ref.outputs.items()}
    assert any(np.any(f) for f in finite.values())
    # The +inf row's terms are those of its limit: the +inf entry the max (0), the rest masked.
    limit = np.where(x == np.inf, 0.0, -np.inf)
    limit[1] = x[1]
    cl = condition(op, check, limit, y, g, -1, STANDARD.tolerance(op, check, dt, "any").sums(d), None, d, None)
    for n, a in cond.items():
        a, b = np.asarray(a), np.asarray(cl[n])
        assert np.all(np.isfinite(a[0])) if a.ndim else np.isfinite(a), (n, a)
        np.testing.assert_array_equal(a, b, err_msg=n)
    w, _, _ = _judge(op, check, x, d, _wrong, y, g)
    assert w.status == "fail" and w.n_bad > 0, (op, check, cot, w.status, w.max_ulp)


@pytest.mark.parametrize("op,check,cot", CASES)
def test_a_float64_row_spanning_more_than_max_keeps_its_budget(op, check, cot):
    d = D.DTYPES["float64"]
    M = float(np.finfo(np.float64).max)
    x = np.array([[M, 0.0, -M, 1.0]])
    y = _labels(op, 4, 0)[:1] if O.OPS[op].labels != "none" else None
    g = None if cot is None else O.cotangent(cot, op, x.shape, 1)
    v, ref, cond = _judge(op, check, x, d, _exact, y, g)
    assert v.status == "pass", v.message
    for n, a in cond.items():  # each finite output's term is of its own size: no overflow spread into it
        r = np.asarray(ref.outputs[n].rounded, np.float64)
        fin = np.isfinite(r)
        assert np.all(np.asarray(a)[fin] <= 1e3 * np.maximum(1.0, np.abs(r[fin]))), (n, a, r)
    w, _, _ = _judge(op, check, x, d, _wrong, y, g)
    assert w.status == "fail", (op, check, cot, w.max_ulp)


def test_a_mean_over_a_pos_inf_row_is_judged():
    """Sparse cross-entropy, mean over two rows, one of them a +inf row on its label's class
    (loss exactly 0): the mean is (lse(1, 2, 3) - 3) / 2 = 0.2038..., and 1000 fails."""
    d = D.DTYPES["float32"]
    x = np.array([[np.inf, 0.0, 0.0], [1.0, 2.0, 3.0]])
    y, opts = np.array([0, 2]), {"reduction": "mean"}
    v, ref, _ = _judge("sparse_softmax_cross_entropy", "forward", x, d, _exact, y, options=opts)
    want = (np.log(np.exp(1.0) + np.exp(2.0) + np.exp(3.0)) - 3.0) / 2
    assert v.status == "pass" and abs(float(ref.outputs["out"].rounded) - want) < 1e-7
    w, _, _ = _judge("sparse_softmax_cross_entropy", "forward", x, d, {"out": np.array(1000.0)}, y, options=opts)
    assert w.status == "fail"


def test_a_scaled_product_that_overflows_is_a_pos_inf_row():
    """float16 softmax of [40000, 0, 0] * 2: the product rounds to +inf (S24, S6), so the exact
    answer is [1, 0, 0]; [0, 0.5, 0.5] fails."""
    d = D.DTYPES["float16"]
    x = np.array([[40000.0, 0.0, 0.0]])
    opts = {"scale": 2.0}
    v, ref, _ = _judge("softmax", "forward", x, d, _exact, options=opts)
    assert v.status == "pass" and ref.outputs["out"].rounded.tolist() == [[1.0, 0.0, 0.0]]
    w, _, _ = _judge("softmax", "forward", x, d, {"out": np.array([[0.0, 0.5, 0.5]])}, options=opts)
    assert w.status == "fail"


def test_a_pos_inf_logit_of_weight_zero_takes_no_part():
    """logsumexp with b (S23): a +inf logit of weight 0 is ignored, so the row's value is
    log(2 e^1 + e^0) and a wrong finite answer fails; before, the row had an unlimited budget."""
    d = D.DTYPES["float32"]
    x = np.array([[1.0, np.inf, 0.0]])
    opts = {"b": [[2.0, 0.0, 1.0]]}
    v, ref, cond = _judge("logsumexp", "forward", x, d, _exact, options=opts)
    assert v.status == "pass"
    assert abs(float(ref.outputs["out"].rounded[0]) - np.log(2 * np.e + 1)) < 1e-6 and np.isfinite(cond["out"]).all()
    w, _, _ = _judge("logsumexp", "forward", x, d, _wrong, options=opts)
    assert w.status == "fail"


def test_two_pos_inf_stay_for_the_special_classes():
    """S8: every output of a row with two +inf is NaN (logsumexp's forward +inf): no budget."""
    d = D.DTYPES["float32"]
    cond = condition("softmax", "forward", np.array([[np.inf, np.inf, 0.0]]), None, None, -1, "sqrt", None, d, None)
    assert np.all(np.isinf(cond["out"]))


@pytest.mark.parametrize("what", ["label out of range", "negative label", "ignored row", "dense NaN label",
                                  "where keeps nothing"])
def test_sampled_rows_include_the_rows_of_the_semantics_rules(what):
    x = np.zeros((1000, 300))
    base = set(K.sample_rows(x, 1).tolist())
    r = min(set(range(1000)) - base)  # a row the even sample leaves out
    at = np.arange(1000) == r
    kw = {"label out of range": {"labels": np.where(at, 300, 0)},
          "negative label": {"labels": np.where(at, -1, 0)},
          "ignored row": {"labels": np.where(at, 7, 0), "options": {"ignore_index": 7}},
          "dense NaN label": {"labels": np.where(at[:, None], np.nan, 1.0 / 300) * np.ones((1000, 300))},
          "where keeps nothing": {"options": {"where": ~at[:, None] & np.ones((1000, 300), bool)}}}[what]
    got = set(K.sample_rows(x, 1, **kw).tolist())
    assert got - base == {r}
    # the class axis first: the same row, transposed
    kt = {k: (np.moveaxis(v, 0, 1) if isinstance(v, np.ndarray) and v.ndim == 2 else v) for k, v in kw.items()}
    kt = {k: ({kk: (np.moveaxis(vv, 0, 1) if isinstance(vv, np.ndarray) and vv.ndim == 2 else vv)
               for kk, vv in v.items()} if isinstance(v, dict) else v) for k, v in kt.items()}
    assert r in set(K.sample_rows(np.zeros((300, 1000)), 0, **kt).tolist())


def test_a_kernel_that_drops_pos_inf_fails_and_the_limit_passes():
    """End to end (harness.api): on extreme/pos_inf_one, a torch softmax that sanitises +inf to 0
    first (torch.nan_to_num, as input guards do) fails; one that answers the limit (one-hot at
    the +inf entry, S6) conforms. Before, both conformed under `standard`."""
    torch = pytest.importorskip("torch")
    from harness import api

    def drops_inf(x, axis=-1):
        return torch.softmax(torch.nan_to_num(x, posinf=0.0), dim=axis)

    def limit(x, axis=-1):
        pinf = torch.isposinf(x)
        one = pinf.sum(dim=axis, keepdim=True) == 1
        return torch.where(one, pinf.to(x.dtype), torch.softmax(x, dim=axis))

    kw = dict(framework="torch", cases="full", case_filter="extreme/pos_inf_one", checks=("forward",),
              dtypes=["float32", "float64"])
    with pytest.raises(api.Failure) as e:
        api.assert_conforms(drops_inf, "softmax", **kw)
    assert "exact 0, got 1" in str(e.value) or "exact 1" in str(e.value), str(e.value)[:500]
    recs = api.assert_conforms(limit, "softmax", **kw)
    assert len(recs) == 2 and all(r["status"] == "pass" for r in recs)
