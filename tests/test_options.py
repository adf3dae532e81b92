"""The op options of the registry (harness.ops.PARAMS): exact references against mpmath at high
precision, the special rows of docs/semantics.md S19, and the condition term.

Label smoothing: the loss is taken against y' = (1 - eps) y + eps / C over the class axis (C its
length), y the dense labels or the one-hot row of an integer label; eps is the case's double
exactly."""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest

from harness import dtypes as D
from harness import ops as O
from harness import reference as R
from harness import verdict as V

F64 = D.DTYPES["float64"]
INF = math.inf
BACKENDS = ["arb", "mpfr", "mpmath"]


def _backend(name: str) -> str:
    if name == "arb":
        pytest.importorskip("flint")
    return name


def _mp_smoothed_ce(row: list[float], y: list[float], eps: float, g: float, prec: int = 400):
    """loss, d_logits, d_labels of the smoothed dense CE of one row, by mpmath at `prec` bits,
    straight from the definition (no max shift, no rearrangement)."""
    with mpmath.workprec(prec):
        C = len(row)
        E = mpmath.mpf(eps)
        yp = [(1 - E) * mpmath.mpf(v) + E / C for v in y]
        lse = mpmath.log(mpmath.fsum(mpmath.exp(mpmath.mpf(v)) for v in row))
        s = [mpmath.exp(mpmath.mpf(v) - lse) for v in row]
        loss = mpmath.fsum(yp[i] * (lse - row[i]) for i in range(C))
        Sy = mpmath.fsum(yp)
        dl = [g * (s[i] * Sy - yp[i]) for i in range(C)]
        dy = [g * (1 - E) * (lse - row[i]) for i in range(C)]
        return loss, dl, dy


ROWS = [  # logits, dense labels, eps
    ([2.0, 1.5, 0.1, -1.0, 0.5], [0, 0, 0, 1, 0], 0.1),
    ([0.2, 1.3, 1.7, 0.0, -2.0], [0.5, 0, 0.5, 1, 0], 0.25),
    ([12.0, 0, 0, 0, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0, 0, 0], 0.1),
    ([1.0, 2.0, 3.0, 4.0], [0.25, 0.5, 0.25, 0], 1.0),
    ([-3.0, 0.0, 3.0, 1.0, 0.25], [1.5, -0.5, 0, 0, 0], 0.3),
    ([1e4, 0.0, -1e4], [0, 1, 0], 1e-3),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("row,y,eps", ROWS)
def test_S19_smoothed_dense_ce_matches_mpmath(backend, row, y, eps):
    be = _backend(backend)
    x, yy = np.array([row]), np.array([y], dtype=np.float64)
    opts = {"label_smoothing": eps}
    fwd = R.compute("softmax_cross_entropy", "forward", x, yy, -1, F64, backend_name=be, options=opts)
    grd = R.compute("softmax_cross_entropy", "grad", x, yy, -1, F64, backend_name=be, options=opts,
                    cotangent=np.array([0.625]))
    loss, dl, dy = _mp_smoothed_ce(row, y, eps, 0.625)
    with mpmath.workprec(400):
        def close(hi, lo, exact):
            err = abs(mpmath.mpf(hi) + mpmath.mpf(lo) - exact)
            return err <= abs(exact) * mpmath.mpf(2) ** -100 or err <= R.zero_floor(F64)

        assert close(fwd.outputs["out"].hi[0], fwd.outputs["out"].lo[0], loss)
        for i in range(len(row)):
            assert close(grd.outputs["d_logits"].hi[0, i], grd.outputs["d_logits"].lo[0, i], dl[i]), i
            assert close(grd.outputs["d_labels"].hi[0, i], grd.outputs["d_labels"].lo[0, i], dy[i]), i
    if eps == 1.0:  # the loss no longer depends on y
        assert np.all(grd.outputs["d_labels"].hi == 0.0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_S19_sparse_equals_dense_of_the_one_hot_row(backend):
    be = _backend(backend)
    x = np.array([[2.0, 1.5, 0.1, -1.0, 0.5], [0.2, 1.3, 1.7, 0.0, -2.0], [-3.0, 0.0, 3.0, 1.0, 0.25]])
    lab = np.array([3, 1, 0])
    onehot = (np.arange(5) == lab[:, None]).astype(np.float64)
    opts = {"label_smoothing": 0.1}
    for check in ("forward", "grad"):
        sp = R.compute("sparse_softmax_cross_entropy", check, x, lab, -1, F64, backend_name=be, options=opts)
        de = R.compute("softmax_cross_entropy", check, x, onehot, -1, F64, backend_name=be, options=opts)
        name = "out" if check == "forward" else "d_logits"
        np.testing.assert_array_equal(sp.outputs[name].hi, de.outputs[name].hi)
        np.testing.assert_array_equal(sp.outputs[name].lo, de.outputs[name].lo)
    # golden: 0.9 (lse - x_3) + 0.1 mean(lse - x) of each row, by mpmath, correctly rounded
    out = R.compute("sparse_softmax_cross_entropy", "forward", x, lab, -1, F64, backend_name=be, options=opts)
    for r in range(3):
        loss, _, _ = _mp_smoothed_ce(list(x[r]), list(onehot[r]), 0.1, 1.0)
        assert out.outputs["out"].hi[r] == float(loss)


@pytest.mark.parametrize("backend", BACKENDS)
def test_S19_special_rows(backend):
    be = _backend(backend)
    opts = {"label_smoothing": 0.1}
    # A masked class: mass eps / C on a class of probability 0 -> +inf; d_logits finite, -g y'_i there.
    x = np.array([[-INF, 0.0, 1.0, 2.0]])
    f = R.compute("sparse_softmax_cross_entropy", "forward", x, np.array([3]), -1, F64, backend_name=be, options=opts)
    assert f.outputs["out"].hi[0] == INF
    g = R.compute("sparse_softmax_cross_entropy", "grad", x, np.array([3]), -1, F64, backend_name=be, options=opts,
                  cotangent=np.array([1.0]))
    assert g.outputs["d_logits"].hi[0, 0] == -0.1 / 4
    # eps = 0 is the unsmoothed loss, bit for bit, the zero label at -inf contributing 0 (S3).
    for check in ("forward", "grad"):
        a = R.compute("sparse_softmax_cross_entropy", check, x, np.array([3]), -1, F64, backend_name=be,
                      options={"label_smoothing": 0.0})
        b = R.compute("sparse_softmax_cross_entropy", check, x, np.array([3]), -1, F64, backend_name=be)
        for n in a.outputs:
            np.testing.assert_array_equal(a.outputs[n].hi, b.outputs[n].hi)
    # eps = 1: d_labels exactly 0, also at the -inf logit; the loss lse - mean(x) is +inf there.
    d = R.compute("softmax_cross_entropy", "grad", x, np.array([[0, 0, 0, 1.0]]), -1, F64, backend_name=be,
                  options={"label_smoothing": 1.0}, cotangent=np.array([1.0]))
    np.testing.assert_array_equal(d.outputs["d_labels"].hi, [[0.0, 0.0, 0.0, 0.0]])
    # One +inf logit at p = 0, label 0: the loss is +inf (mass eps / C off p); d_logits = delta_ip sum y' - y'_i.
    xp = np.array([[INF, 0.0, 1.0]])
    f = R.compute("sparse_softmax_cross_entropy", "forward", xp, np.array([0]), -1, F64, backend_name=be, options=opts)
    assert f.outputs["out"].hi[0] == INF
    g = R.compute("sparse_softmax_cross_entropy", "grad", xp, np.array([0]), -1, F64, backend_name=be, options=opts,
                  cotangent=np.array([1.0]))
    with mpmath.workprec(200):
        want = [float(2 * mpmath.mpf(0.1) / 3), float(-mpmath.mpf(0.1) / 3), float(-mpmath.mpf(0.1) / 3)]
    np.testing.assert_array_equal(g.outputs["d_logits"].hi[0], want)
    # An invalid label stays invalid: NaN, marked invalid.
    bad = R.compute("sparse_softmax_cross_entropy", "forward", np.array([[1.0, 2.0, 3.0]]), np.array([3]), -1, F64,
                    backend_name=be, options=opts)
    assert np.isnan(bad.outputs["out"].hi[0]) and bad.outputs["out"].invalid[0]


def test_S19_class_axis_0_divides_by_the_class_count():
    """Classes on axis 0 (4) with a batch of 3 on the last axis: eps / 4, not eps / 3."""
    x = np.array([[2.0, 0.5, -1.0], [1.5, 1.0, 3.0], [0.1, -0.5, 0.0], [-1.0, 2.0, 0.5]])
    x = x.astype(np.float32).astype(np.float64)  # the case's float32 values (0.1 -> 0.100000001490116)
    y = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 0], [0, 0, 1.0]])
    r = R.compute("softmax_cross_entropy", "forward", x, y, 0, F64, options={"label_smoothing": 0.2})
    for j in range(3):
        loss, _, _ = _mp_smoothed_ce(list(x[:, j]), list(y[:, j]), 0.2, 1.0)
        assert r.outputs["out"].hi[j] == float(loss)
    # the README's numbers (Keras divides by 3 and gets 0.9904549, ...)
    np.testing.assert_allclose(r.outputs["out"].hi, [0.8610515224450684, 1.5646749655009753, 2.614925151560595],
                               rtol=1e-15)


def test_S19_condition_term_covers_a_rounded_eps_and_stays_shift_invariant():
    """A float32 implementation that rounds eps to float32 (as Keras does) and forms y' in float32
    passes; the budget of a row and of the row shifted by a representable constant are equal."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((6, 12)).astype(np.float32).astype(np.float64)
    lab = rng.integers(0, 12, 6)
    eps = 0.1
    f32 = D.DTYPES["float32"]
    ref = R.compute("sparse_softmax_cross_entropy", "forward", x, lab, -1, f32, options={"label_smoothing": eps})
    e32 = np.float32(eps)
    onehot = (np.arange(12) == lab[:, None]).astype(np.float32)
    yp = (np.float32(1) - e32) * onehot + e32 / np.float32(12)
    xs = x.astype(np.float32)
    m = xs.max(-1, keepdims=True)
    ls = (xs - m) - np.log(np.sum(np.exp(xs - m), -1, keepdims=True))
    out = -np.sum(yp * ls, -1)
    cond = V.condition("sparse_softmax_cross_entropy", "forward", x, lab, None, -1, "sqrt", {"label_smoothing": eps})
    cond0 = V.condition("sparse_softmax_cross_entropy", "forward", x, lab, None, -1, "sqrt")
    assert np.all(cond["out"] > cond0["out"])  # the smoothing terms are there
    from harness.policy import load

    tol = load("standard").tolerance("sparse_softmax_cross_entropy", "forward", "float32", "x", None)
    v = V.judge("sparse_softmax_cross_entropy", "forward", {"out": out.astype(np.float64)}, {"out": "float32"}, None,
                ref, f32, tol, cond, {"out": (6,)})
    assert v.status == "pass", v.message
    shifted = V.condition("sparse_softmax_cross_entropy", "forward", x + 1024.0, lab, None, -1, "sqrt",
                          {"label_smoothing": eps})
    np.testing.assert_allclose(shifted["out"], cond["out"], rtol=1e-12)
    # eps / (C - 1) off the target (fairseq's convention) is another loss: it fails.
    yw = (np.float32(1) - e32) * onehot + e32 / np.float32(11) * (1 - onehot)
    wrong = -np.sum(yw * ls, -1)
    v = V.judge("sparse_softmax_cross_entropy", "forward", {"out": wrong.astype(np.float64)}, {"out": "float32"}, None,
                ref, f32, tol, cond, {"out": (6,)})
    assert v.status == "fail"


def test_options_are_declared_once_with_their_ranges():
    assert set(O.PARAMS) == {"where", "reduction", "label_smoothing", "weights", "ignore_index", "b", "return_sign",
                             "scale"}
    assert all("scale" in s.params for s in O.OPS.values())
    assert {n for n, s in O.OPS.items() if {"b", "return_sign"} & set(s.params)} == {"logsumexp"}
    assert "shape [1, 2] does not match" in O.PARAMS["b"].check([[1.0, 2.0]], 3, (1, 3))
    assert "finite numbers" in O.PARAMS["b"].check([[1.0, float("inf")]], 2, (1, 2))
    assert "true or false" in O.PARAMS["return_sign"].check(1)
    assert all("where" in s.params for s in O.OPS.values())
    assert "one of none, sum, mean" in O.PARAMS["reduction"].check("avg")
    assert {n for n, s in O.OPS.items() if "weights" in s.params} == {"sparse_softmax_cross_entropy"}
    assert O.PARAMS["weights"].check([1.0, 2.0], 3) == "weights has 2 entries for 3 classes"
    assert "integer" in O.PARAMS["ignore_index"].check(1.5)
    assert {n for n, s in O.OPS.items() if "label_smoothing" in s.params} == {
        "softmax_cross_entropy", "sparse_softmax_cross_entropy"}
    p = O.PARAMS["label_smoothing"]
    assert p.check(0.0) is None and p.check(1.0) is None
    assert "[0, 1]" in p.check(1.5) and "finite number" in p.check(float("nan")) and p.check(True)
    from harness.errors import HarnessInputError

    with pytest.raises(HarnessInputError, match="takes no option 'label_smoothing'"):
        R.compute("softmax", "forward", np.array([[1.0, 2.0]]), None, -1, F64, options={"label_smoothing": 0.1})


# ---------------------------------------------------------------------------------------------
# S20: class weights and ignored rows


def _mp_weighted_sparse(row, k, w, eps, g, prec=400):
    """Loss and d_logits of sum_i w_i y'_i (lse - x_i), y' the smoothed one-hot row, by mpmath."""
    y = [1.0 if i == k else 0.0 for i in range(len(row))]
    with mpmath.workprec(prec):
        E = mpmath.mpf(eps)
        yw = [mpmath.mpf(w[i]) * ((1 - E) * y[i] + E / len(row)) for i in range(len(row))]
        lse = mpmath.log(mpmath.fsum(mpmath.exp(mpmath.mpf(v)) for v in row))
        s = [mpmath.exp(mpmath.mpf(v) - lse) for v in row]
        loss = mpmath.fsum(yw[i] * (lse - row[i]) for i in range(len(row)))
        S = mpmath.fsum(yw)
        return loss, [g * (s[i] * S - yw[i]) for i in range(len(row))]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_S20_weighted_sparse_ce_matches_mpmath(backend, eps):
    be = _backend(backend)
    x = np.array([[2.0, 1.5, 0.1, -1.0, 0.5], [0.2, 1.3, 1.7, 0.0, -2.0], [-3.0, 0.0, 3.0, 1.0, 0.25]])
    lab = np.array([3, 1, 0])
    w = [0.5, 2.0, 1.0, 0.25, -3.0]
    opts = {"weights": w, "label_smoothing": eps} if eps else {"weights": w}
    f = R.compute("sparse_softmax_cross_entropy", "forward", x, lab, -1, F64, backend_name=be, options=opts)
    gr = R.compute("sparse_softmax_cross_entropy", "grad", x, lab, -1, F64, backend_name=be, options=opts,
                   cotangent=np.array([1.0, -0.375, 0.625]))
    for r, gg in zip(range(3), (1.0, -0.375, 0.625)):
        loss, dl = _mp_weighted_sparse(list(x[r]), lab[r], w, eps, gg)
        assert f.outputs["out"].hi[r] == float(loss)  # correctly rounded to float64
        np.testing.assert_array_equal(gr.outputs["d_logits"].hi[r], [float(v) for v in dl])
    if not eps:  # w_k (lse - x_k): the unweighted loss times the label's weight, exactly as rounded
        plain = R.compute("sparse_softmax_cross_entropy", "forward", x, lab, -1, F64, backend_name=be)
        with mpmath.workprec(300):
            for r in range(3):
                want = mpmath.mpf(w[lab[r]]) * (mpmath.mpf(plain.outputs["out"].hi[r]) + plain.outputs["out"].lo[r])
                assert abs(f.outputs["out"].hi[r] - want) <= abs(want) * 2.0 ** -52


@pytest.mark.parametrize("backend", BACKENDS)
def test_S20_ignored_rows_are_exactly_zero_whatever_their_logits(backend):
    be = _backend(backend)
    nan = float("nan")
    x = np.array([[2.0, 1.0, 0.5], [nan, 0.0, 1.0], [-INF, -INF, -INF], [INF, INF, 0.0], [1.0, 3.0, 2.0]])
    lab = np.array([2, -100, -100, -100, 1])
    opts = {"ignore_index": -100}
    f = R.compute("sparse_softmax_cross_entropy", "forward", x, lab, -1, F64, backend_name=be, options=opts)
    g = R.compute("sparse_softmax_cross_entropy", "grad", x, lab, -1, F64, backend_name=be, options=opts,
                  cotangent=np.ones(5))
    np.testing.assert_array_equal(f.outputs["out"].hi[1:4], [0.0, 0.0, 0.0])
    np.testing.assert_array_equal(g.outputs["d_logits"].hi[1:4], np.zeros((3, 3)))
    assert not f.outputs["out"].invalid.any()
    plain = R.compute("sparse_softmax_cross_entropy", "forward", x[[0, 4]], lab[[0, 4]], -1, F64, backend_name=be)
    np.testing.assert_array_equal(f.outputs["out"].hi[[0, 4]], plain.outputs["out"].hi)
    # an ignore_index that is a valid class ignores that class's rows; other out-of-range labels stay invalid
    h = R.compute("sparse_softmax_cross_entropy", "forward", np.array([[1.0, 2.0], [1.0, 2.0], [1.0, 2.0]]),
                  np.array([1, 0, 7]), -1, F64, backend_name=be, options={"ignore_index": 1})
    assert h.outputs["out"].hi[0] == 0.0 and h.outputs["out"].hi[1] > 0 and h.outputs["out"].invalid[2]
    # a zero weight on the label of a -inf logit is a zero label (S3): 0, not 0 * inf
    z = R.compute("sparse_softmax_cross_entropy", "forward", np.array([[-INF, 0.0, 1.0]]), np.array([0]), -1, F64,
                  backend_name=be, options={"weights": [0.0, 1.0, 1.0]})
    assert z.outputs["out"].hi[0] == 0.0


def test_S20_condition_budget_is_zero_on_ignored_rows_and_catches_a_wrong_weight():
    x = np.array([[2.0, 1.0, 0.5, -1.0], [-INF, -INF, -INF, -INF], [0.5, 2.0, 1.0, 0.0]])
    lab = np.array([2, -100, 3])
    w = [0.5, 2.0, 1.0, 4.0]
    opts = {"weights": w, "ignore_index": -100}
    for check, g in (("forward", None), ("grad", np.ones(3))):
        cond = V.condition("sparse_softmax_cross_entropy", check, x, lab, g, -1, "sqrt", opts)
        a = cond["out" if check == "forward" else "d_logits"]
        assert np.all(a[1] == 0.0) and np.all(np.isfinite(a[[0, 2]]))
    f32 = D.DTYPES["float32"]
    ref = R.compute("sparse_softmax_cross_entropy", "forward", x, lab, -1, f32, options=opts)
    from harness.policy import load

    tol = load("standard").tolerance("sparse_softmax_cross_entropy", "forward", "float32", "x", None)
    cond = V.condition("sparse_softmax_cross_entropy", "forward", x, lab, None, -1, "sqrt", opts)
    good = ref.outputs["out"].rounded.copy()
    v = V.judge("sparse_softmax_cross_entropy", "forward", {"out": good}, {"out": "float32"}, None, ref, f32, tol,
                cond, {"out": (3,)})
    assert v.status == "pass", v.message
    wrong = good.copy()
    wrong[2] = np.float32(good[2] / 4.0)  # the row's loss unweighted (w_3 = 4 dropped)
    v = V.judge("sparse_softmax_cross_entropy", "forward", {"out": wrong}, {"out": "float32"}, None, ref, f32, tol,
                cond, {"out": (3,)})
    assert v.status == "fail"
    tiny = good.copy()
    tiny[1] = 1e-30  # an ignored row must be exactly 0
    v = V.judge("sparse_softmax_cross_entropy", "forward", {"out": tiny}, {"out": "float32"}, None, ref, f32, tol,
                cond, {"out": (3,)})
    assert v.status == "fail"


# ---------------------------------------------------------------------------------------------
# S21: reductions


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("red", ["sum", "mean"])
def test_S21_reductions_match_mpmath(backend, red):
    be = _backend(backend)
    x = np.array([[2.0, 1.5, 0.1, -1.0], [0.2, 1.3, 1.7, 0.0], [-3.0, 0.0, 3.0, 1.0], [1.0, 1.0, 1.0, 1.0]])
    lab = np.array([3, -100, 0, 2])
    w = [0.5, 2.0, 1.0, 4.0]
    opts = {"weights": w, "ignore_index": -100, "reduction": red}
    f = R.compute("sparse_softmax_cross_entropy", "forward", x, lab, -1, F64, backend_name=be, options=opts)
    g = R.compute("sparse_softmax_cross_entropy", "grad", x, lab, -1, F64, backend_name=be, options=opts,
                  cotangent=np.array(-0.625))
    assert f.outputs["out"].hi.shape == () and g.outputs["d_logits"].hi.shape == (4, 4)
    with mpmath.workprec(400):
        rows = [r for r in range(4) if lab[r] != -100]
        losses = {r: _mp_weighted_sparse(list(x[r]), lab[r], w, 0.0, 1.0)[0] for r in rows}
        W = mpmath.fsum(mpmath.mpf(w[lab[r]]) for r in rows) if red == "mean" else mpmath.mpf(1)
        total = mpmath.fsum(losses.values()) / W
        assert f.outputs["out"].hi == float(total)  # correctly rounded
        for r in range(4):
            want = [0.0] * 4 if lab[r] == -100 else [float(v) for v in _mp_weighted_sparse(
                list(x[r]), lab[r], w, 0.0, mpmath.mpf(-0.625) / W)[1]]
            np.testing.assert_array_equal(g.outputs["d_logits"].hi[r], want)


def test_S21_every_row_ignored_is_nan_for_a_mean_and_zero_for_a_sum():
    x = np.array([[2.0, 1.5, 0.1], [0.2, 1.3, 1.7]])
    lab = np.array([-100, -100])
    m = R.compute("sparse_softmax_cross_entropy", "forward", x, lab, -1, F64,
                  options={"ignore_index": -100, "reduction": "mean"})
    assert np.isnan(m.outputs["out"].hi) and not m.outputs["out"].invalid
    s = R.compute("sparse_softmax_cross_entropy", "forward", x, lab, -1, F64,
                  options={"ignore_index": -100, "reduction": "sum"})
    assert s.outputs["out"].hi == 0.0
    g = R.compute("sparse_softmax_cross_entropy", "grad", x, lab, -1, F64,
                  options={"ignore_index": -100, "reduction": "mean"}, cotangent=np.array(1.0))
    np.testing.assert_array_equal(g.outputs["d_logits"].hi, np.zeros((2, 3)))
    # a row of +inf loss makes the sum +inf; an invalid label makes it NaN, marked invalid
    inf = R.compute("sparse_softmax_cross_entropy", "forward", np.array([[-INF, 0.0], [1.0, 2.0]]), np.array([0, 1]),
                    -1, F64, options={"reduction": "sum"})
    assert inf.outputs["out"].hi == INF
    bad = R.compute("sparse_softmax_cross_entropy", "forward", x, np.array([0, 5]), -1, F64,
                    options={"reduction": "mean"})
    assert np.isnan(bad.outputs["out"].hi) and bad.outputs["out"].invalid


def test_S21_the_float16_mean_of_70000_rows_is_ordinary_and_a_count_in_float16_fails():
    """The mean of 70000 float16 rows: a kernel forming the count 70000 in float16 (inf) returns 0."""
    rng = np.random.default_rng(3)
    f16 = D.DTYPES["float16"]
    x = D.cast_exact(rng.standard_normal((70000, 2)), f16)
    lab = rng.integers(0, 2, 70000)
    opts = {"reduction": "mean"}
    ref = R.compute("sparse_softmax_cross_entropy", "forward", x, lab, -1, f16, options=opts)
    cond = V.condition("sparse_softmax_cross_entropy", "forward", x, lab, None, -1, "sqrt", opts)
    from harness.policy import load

    tol = load("standard").tolerance("sparse_softmax_cross_entropy", "forward", "float16", "x", None)
    assert 0.5 < float(ref.outputs["out"].hi) < 1.5
    good = ref.outputs["out"].rounded
    v = V.judge("sparse_softmax_cross_entropy", "forward", {"out": good}, {"out": "float16"}, None, ref, f16, tol, cond,
                {"out": ()})
    assert v.status == "pass", v.message
    v = V.judge("sparse_softmax_cross_entropy", "forward", {"out": np.asarray(0.0)}, {"out": "float16"}, None, ref,
                f16, tol, cond, {"out": ()})
    assert v.status == "fail"


# ---------------------------------------------------------------------------------------------
# S22: masks


@pytest.mark.parametrize("backend", BACKENDS)
def test_S22_a_mask_keeps_entries_and_its_gradients_are_exact(backend):
    be = _backend(backend)
    x = np.array([[2.0, 1.5, 0.1, -1.0, 0.5], [0.2, 1.3, 1.7, 0.0, -2.0], [1.0, 2.0, 3.0, 4.0, 5.0]])
    w = [[True, True, True, False, False], [True, True, False, True, True], [False] * 5]
    g = np.array([[-0.625, 0.25, 0.5, 0.375, -0.125]] * 3)
    kept = [[0, 1, 2], [0, 1, 3, 4], []]
    for op in ("softmax", "log_softmax", "logsumexp"):
        f = R.compute(op, "forward", x, None, -1, F64, backend_name=be, options={"where": w})
        gg = g if op != "logsumexp" else np.array([0.75, -0.5, 1.0])
        d = R.compute(op, "grad", x, None, -1, F64, backend_name=be, options={"where": w}, cotangent=gg)
        for r in range(3):
            k = kept[r]
            with mpmath.workprec(300):
                lse = mpmath.log(mpmath.fsum(mpmath.exp(mpmath.mpf(x[r, i])) for i in k)) if k else -mpmath.inf
                s = {i: mpmath.exp(mpmath.mpf(x[r, i]) - lse) for i in k}
                if op == "logsumexp":
                    assert f.outputs["out"].hi[r] == float(lse)
                    want = [float(gg[r] * s[i]) if i in k else 0.0 for i in range(5)]
                else:
                    const = 0.0 if op == "softmax" else -INF
                    val = [float(s[i] if op == "softmax" else mpmath.mpf(x[r, i]) - lse) if i in k else const
                           for i in range(5)]
                    np.testing.assert_array_equal(f.outputs["out"].hi[r], val)
                    Sg = mpmath.fsum(mpmath.mpf(g[r, i]) * (s[i] if op == "softmax" else 1) for i in k)
                    want = [float(s[i] * (g[r, i] - Sg) if op == "softmax" else g[r, i] - s[i] * Sg) if i in k
                            else 0.0 for i in range(5)]
            np.testing.assert_array_equal(d.outputs["d_logits"].hi[r], want)


@pytest.mark.parametrize("backend", BACKENDS)
def test_S22_losses_under_a_mask(backend):
    be = _backend(backend)
    x = np.array([[2.0, 1.5, 0.1, -1.0], [0.2, 1.3, 1.7, 0.0], [1.0, 2.0, 3.0, 4.0]])
    w = [[True, True, True, False], [True, True, False, True], [False] * 4]
    lab = np.array([1, 3, 0])
    f = R.compute("sparse_softmax_cross_entropy", "forward", x, lab, -1, F64, backend_name=be, options={"where": w})
    with mpmath.workprec(300):
        for r, k in ((0, [0, 1, 2]), (1, [0, 1, 3])):
            lse = mpmath.log(mpmath.fsum(mpmath.exp(mpmath.mpf(x[r, i])) for i in k))
            assert f.outputs["out"].hi[r] == float(lse - x[r, lab[r]])
    # nothing kept: an integer label necessarily sits on a masked class, an invalid input
    assert np.isnan(f.outputs["out"].hi[2]) and f.outputs["out"].invalid[2]
    # dense labels that are all 0 on a row with nothing kept: an empty sum, 0, gradients 0
    e = R.compute("softmax_cross_entropy", "grad", x[2:], np.zeros((1, 4)), -1, F64, backend_name=be,
                  options={"where": w[2:]}, cotangent=np.array([1.0]))
    z = R.compute("softmax_cross_entropy", "forward", x[2:], np.zeros((1, 4)), -1, F64, backend_name=be,
                  options={"where": w[2:]})
    assert z.outputs["out"].hi[0] == 0.0 and not np.any(e.outputs["d_logits"].hi) and not np.any(e.outputs["d_labels"].hi)
    # a label on a masked class is invalid, whatever else the row holds
    bad = R.compute("sparse_softmax_cross_entropy", "forward", x[:1], np.array([3]), -1, F64, backend_name=be,
                    options={"where": w[:1]})
    assert np.isnan(bad.outputs["out"].hi[0]) and bad.outputs["out"].invalid[0]
    # dense: zero labels on masked classes are fine, and their gradient is 0 (they do not enter)
    y = np.array([[0.5, 0.5, 0.0, 0.0]])
    d = R.compute("softmax_cross_entropy", "grad", x[:1], y, -1, F64, backend_name=be, options={"where": w[:1]},
                  cotangent=np.array([1.0]))
    assert d.outputs["d_labels"].hi[0, 3] == 0.0 and d.outputs["d_logits"].hi[0, 3] == 0.0
    assert np.isfinite(d.outputs["d_labels"].hi[0, :3]).all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_S21_over_S22_a_row_with_nothing_kept_is_a_zero_of_the_sum(backend):
    """A reduction's rows are the masked rows: a row with nothing kept (and labels 0) is a loss of
    0 (S22) in the sum, and one row of the mean's count (dense labels, S21). The reference gave
    the NaN of an all -inf row, and the verdict an unlimited budget, so that the NaN of a -inf fill
    passed and the right answer failed."""
    be = _backend(backend)
    f32 = D.DTYPES["float32"]
    x = np.array([[2.0, 1.5, 0.1, -1.0], [0.2, 1.3, 1.7, 0.0]])
    y = np.array([[0.5, 0.5, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    w = [[True, True, False, False], [False] * 4]
    with mpmath.workprec(300):
        lse = mpmath.log(mpmath.exp(mpmath.mpf(2.0)) + mpmath.exp(mpmath.mpf(1.5)))
        row0 = lse - (mpmath.mpf(2.0) + mpmath.mpf(1.5)) / 2
        s = [mpmath.exp(mpmath.mpf(v) - lse) for v in (2.0, 1.5)]
    from harness.policy import load

    tol = load("standard").tolerance("softmax_cross_entropy", "forward", "float32", "x", None)
    for red, want in (("sum", row0), ("mean", row0 / 2)):
        opts = {"where": w, "reduction": red}
        ref = R.compute("softmax_cross_entropy", "forward", x, y, -1, f32, backend_name=be, options=opts)
        assert float(ref.outputs["out"].hi) == float(want) and not ref.outputs["out"].invalid
        cond = V.condition("softmax_cross_entropy", "forward", x, y, None, -1, "sqrt", opts)
        assert 0 < float(cond["out"]) < 10
        judged = {a: V.judge("softmax_cross_entropy", "forward", {"out": np.asarray(v)}, {"out": "float32"}, None,
                             ref, f32, tol, cond, {"out": ()}).status
                  for a, v in (("exact", ref.outputs["out"].rounded), ("nan", np.nan), ("0.8x", 0.8 * float(want)))}
        assert judged == {"exact": "pass", "nan": "fail", "0.8x": "fail"}
        # the gradient: row 0's with the row cotangent g (sum) or g / 2 (mean), row 1's 0
        g = R.compute("softmax_cross_entropy", "grad", x, y, -1, f32, backend_name=be, options=opts,
                      cotangent=np.asarray(1.0))
        share = 1 if red == "sum" else mpmath.mpf(1) / 2
        with mpmath.workprec(300):
            np.testing.assert_array_equal(g.outputs["d_logits"].hi[0], [float(share * (s[0] - mpmath.mpf(0.5))),
                                                                         float(share * (s[1] - mpmath.mpf(0.5))), 0, 0])
        assert not np.any(g.outputs["d_logits"].hi[1]) and not np.any(g.outputs["d_labels"].hi[1])


# ---------------------------------------------------------------------------------------------
# The adapters' option tables


def _sample(k: str, C: int, shape: tuple[int, ...]) -> dict:
    b = np.full(shape, 0.5).tolist()
    return {"label_smoothing": {k: 0.125}, "weights": {k: [0.5] * (C - 1) + [3.0]}, "ignore_index": {k: -77},
            "reduction": {k: "sum"}, "where": {k: np.ones(shape, dtype=bool).tolist()}, "b": {k: b},
            "return_sign": {"b": b, k: True}, "scale": {k: 0.5}}[k]


@pytest.mark.parametrize("name", ["torch", "tensorflow", "jax"])
def test_every_option_an_adapter_declares_reaches_its_call(name):
    """Render each (op, variant) with each option it declares: the option's value must appear in
    the source that runs (a fragment that lands nowhere would test the call without the option)."""
    from harness import adapters as A
    from harness.adapters.base import Call

    ad = A.get(name)
    n = 0
    for (op, variant), table in ad.options.items():
        for k in table:
            for axis in (-1, 0):
                x = np.zeros((3, 4))
                C = x.shape[axis]
                lab = (np.zeros((3, 4)) if O.OPS[op].labels == "dense" else
                       np.zeros(4 if axis == 0 else 3, dtype=np.int64) if O.OPS[op].labels == "sparse" else None)
                if k == "b":  # the step's second input y, fed to the call as b
                    lab = np.full(x.shape, 0.5)
                opts = _sample(k, C, x.shape)
                call = Call(op, "forward", variant, x, lab, axis, None, "float32", "cpu", "eager", options=opts)
                src = ad.function_source(call)
                tokens = {"label_smoothing": ["0.125"], "weights": ["3.0"], "ignore_index": ["-77"],
                          "reduction": ["sum"], "where": ["True"], "b": ["b=y", "y * "],
                          "return_sign": ["return_sign=True", "sign(s)"], "scale": ["(x * s)"]}[k]
                if k == "scale":  # a runtime input: f takes it, the step passes it
                    assert "f(x, y, s)" in ad.step_source(Call(op, "grad", variant, x, lab, axis, None, "float32",
                                                               "cpu", "eager", options=opts)), (name, op, variant)
                assert any(t in src for t in tokens), (name, op, variant, k, src)
                n += 1
    assert n >= 4


# ---------------------------------------------------------------------------------------------
# S23: logsumexp with scale weights b and return_sign


def _mp_weighted_lse(row, b, g=1.0, prec=600):
    """log |S|, sign S, d_logits and d_b of S = sum_i b_i exp(x_i) by mpmath at `prec` bits, from the
    definition (no shift): the entries with b_i = 0 still have d/db_i = exp(x_i) / S."""
    with mpmath.workprec(prec):
        E = [mpmath.exp(mpmath.mpf(v)) for v in row]
        S = mpmath.fsum(mpmath.mpf(bi) * e for bi, e in zip(b, E))
        return (mpmath.log(abs(S)), mpmath.sign(S), [g * mpmath.mpf(bi) * e / S for bi, e in zip(b, E)],
                [g * e / S for e in E])


WEIGHTED = [  # logits, weights
    ([0.5, 1.0, -2.0, 0.25], [0.0, 2.0, -1.0, 0.5]),
    ([2.0, 1.5, 0.25, -1.0], [1.0, 0.5, 3.0, 0.0]),
    ([0.5, 1.0, -2.0], [1.0, -3.0, 0.0]),  # a negative sum
    ([0.0, 2.0 ** -30, -3.0], [-1.0, 1.0, 0.0]),  # cancellation: S ~ 2^-30
    ([100.0, 0.0, 1.0, 2.0], [0.0, 1.0, 1.0, 1.0]),  # the weight-0 entry is the max
    ([1000.0, 999.0, 998.0], [0.5, 2.0, 3.0]),
    ([0.0, 0.0, 0.0], [1.0, 1.0, -1.5]),  # ties: a negative sum from exact weights
]


@pytest.mark.parametrize("backend", BACKENDS)
def test_S23_weighted_logsumexp_matches_mpmath(backend):
    x = np.array([r for r, _ in WEIGHTED[:2]])
    for row, b in WEIGHTED:
        x = np.array([row])
        opts = {"b": [b], "return_sign": True}
        f = R.compute("logsumexp", "forward", x, None, -1, F64, backend_name=_backend(backend), options=opts)
        g = R.compute("logsumexp", "grad", x, None, -1, F64, backend_name=backend, options=opts,
                      cotangent=np.array([0.625]))
        L, sg, dl, db = _mp_weighted_lse(row, b, 0.625)
        assert f.outputs["out"].hi[0] == float(L) and f.outputs["sign"].hi[0] == float(sg), (row, b)
        np.testing.assert_array_equal(g.outputs["d_logits"].hi[0], [float(v) for v in dl])
        np.testing.assert_array_equal(g.outputs["d_b"].hi[0], [float(v) for v in db])
        # the double-double carries the exact value to the claimed bits, far below float64's last
        for out, exact in (("d_logits", dl), ("d_b", db)):
            for i, v in enumerate(exact):
                h, lo = g.outputs[out].hi[0, i], g.outputs[out].lo[0, i]
                with mpmath.workprec(600):
                    assert abs(mpmath.mpf(h) + mpmath.mpf(lo) - v) <= abs(v) * 2.0 ** -R.claim_bits(F64), (row, out, i)
    # without return_sign a negative sum is outside the domain: NaN, marked invalid
    n = R.compute("logsumexp", "forward", np.array([WEIGHTED[2][0]]), None, -1, F64, backend_name=backend,
                  options={"b": [WEIGHTED[2][1]]})
    assert np.isnan(n.outputs["out"].hi[0]) and n.outputs["out"].invalid[0] and "sign" not in n.outputs


def test_S23_the_sign_of_the_sum_is_decided_exactly():
    """0 exactly when the weights of each distinct logit cancel (Lindemann-Weierstrass), else the
    sign of an interval evaluation, however close the sum is to 0."""
    assert O.weighted_sign([1.0, 1.0, 2.0], [1.0, -1.0, 0.0]) == 0
    assert O.weighted_sign([0.5, 0.5, 0.5], [0.25, 0.5, -0.75]) == 0
    assert O.weighted_sign([0.0, 2.0 ** -1000], [1.0, -1.0]) == -1  # 1 - exp(2^-1000)
    assert O.weighted_sign([0.0, -(2.0 ** -1000)], [1.0, -1.0]) == 1
    assert O.weighted_sign([0.0, 1.0], [math.e, -1.0]) == -1  # the double e is below e: e * 1 - e^1 < 0
    assert O.weighted_sign([-INF, 3.0], [5.0, 0.0]) == 0  # nothing takes part


@pytest.mark.parametrize("backend", BACKENDS)
def test_S23_special_rows(backend):
    be = _backend(backend)

    def run(row, b, check="forward", rs=True):
        opts = {"b": [b], "return_sign": True} if rs else {"b": [b]}
        r = R.compute("logsumexp", check, np.array([row]), None, -1, F64, backend_name=be, options=opts,
                      cotangent=np.array([1.0]) if check == "grad" else None)
        return {k: v.hi[0].tolist() for k, v in r.outputs.items()}, {k: bool(np.any(v.invalid)) for k, v in
                                                                      r.outputs.items()}

    # an exactly zero sum: log 0 = -inf, sign 0; no gradient where an entry takes part
    v, _ = run([1.0, 1.0, 2.0], [1.0, -1.0, 0.0])
    assert v == {"out": -INF, "sign": 0.0}
    v, _ = run([1.0, 1.0, 2.0], [1.0, -1.0, 0.0], "grad")
    assert np.isnan(v["d_logits"][:2]).all() and v["d_logits"][2] == 0.0 and np.isnan(v["d_b"]).all()
    # a +inf logit whose weight is 0 takes no part; its weight's gradient is +inf
    v, _ = run([INF, 0.5, -1.0], [0.0, 1.0, 2.0])
    L, _, dl, db = _mp_weighted_lse([0.5, -1.0], [1.0, 2.0])
    assert v == {"out": float(L), "sign": 1.0}
    v, _ = run([INF, 0.5, -1.0], [0.0, 1.0, 2.0], "grad")
    assert v["d_logits"] == [0.0] + [float(t) for t in dl] and v["d_b"] == [INF] + [float(t) for t in db]
    # a single +inf that takes part: +inf with the sign of its weight; gradients one-hot and 1/b
    v, _ = run([INF, 0.5], [-4.0, 1.0])
    assert v == {"out": INF, "sign": -1.0}
    v, _ = run([INF, 0.5], [-4.0, 1.0], "grad")
    assert v == {"d_logits": [1.0, 0.0], "d_b": [-0.25, 0.0]}
    # ... without return_sign a negative weight there is the log of -inf: NaN, invalid
    v, inv = run([INF, 0.5], [-4.0, 1.0], rs=False)
    assert np.isnan(v["out"]) and inv["out"]
    # two +inf of opposite weights: inf - inf
    v, inv = run([INF, INF], [1.0, -1.0])
    assert np.isnan(v["out"]) and np.isnan(v["sign"]) and not inv["out"]
    # every weight 0: the empty sum
    v, _ = run([1.0, 2.0], [0.0, 0.0])
    assert v == {"out": -INF, "sign": 0.0}


def test_S23_budget_is_shift_invariant_passes_scipy_and_fails_a_zeroed_weight_gradient():
    rng = np.random.default_rng(3)
    f32 = D.DTYPES["float32"]
    x = rng.standard_normal((5, 7)).astype(np.float32).astype(np.float64)
    b = rng.choice([0.0, 0.5, 1.0, 2.0, -0.25], (5, 7)).astype(np.float64)
    b[:, 0], x[:, 0] = 4.0, 3.0  # a positive sum in every row: the largest term is positive
    opts = {"b": b.tolist()}
    g = np.ones(5)
    ref = R.compute("logsumexp", "grad", x, None, -1, f32, options=opts, cotangent=g)
    cond = V.condition("logsumexp", "grad", x, None, g, -1, "sqrt", opts)
    shifted = V.condition("logsumexp", "grad", x + 64.0, None, g, -1, "sqrt", opts)
    for k in ("d_logits", "d_b"):
        np.testing.assert_allclose(shifted[k], cond[k], rtol=1e-12)
    # scipy's algorithm in float32, with the gradient of a weight that is 0 kept (exp(x_i - m) / S)
    xs, bs = x.astype(np.float32), b.astype(np.float32)
    m = np.max(np.where(bs != 0, xs, -np.inf), -1, keepdims=True)
    e = np.exp(xs - m)
    S = np.sum(bs * e, -1, keepdims=True)
    good = {"d_logits": (bs * e / S).astype(np.float64), "d_b": (e / S).astype(np.float64)}
    from harness.policy import load

    tol = load("standard").tolerance("logsumexp", "grad", "float32", "x", None)
    shapes = {"d_logits": (5, 7), "d_b": (5, 7)}
    dts = {"d_logits": "float32", "d_b": "float32"}
    v = V.judge("logsumexp", "grad", good, dts, None, ref, f32, tol, cond, shapes)
    assert v.status == "pass", v.message
    zeroed = dict(good, d_b=np.where(b != 0, good["d_b"], 0.0))  # jax#22398
    v = V.judge("logsumexp", "grad", zeroed, dts, None, ref, f32, tol, cond, shapes)
    assert v.status == "fail" and v.worst["output"] == "d_b"
    # the forward: the budget grows with the cancellation sum |b_i e_i| / |S| (row 2: ~2^21)
    xc = np.array([[0.0, 2.0 ** -20, -3.0], [0.0, 1.0, -3.0]])
    bc = {"b": [[-1.0, 1.0, 0.0], [-1.0, 1.0, 0.0]], "return_sign": True}
    A = V.condition("logsumexp", "forward", xc, None, None, -1, "sqrt", bc)["out"]
    assert A[0] > 2.0 ** 21 and A[1] < 16 and np.all(V.condition("logsumexp", "forward", xc, None, None, -1,
                                                                   "sqrt", bc)["sign"] == 0)


def test_S23_option_errors():
    from harness.errors import HarnessInputError

    x = np.array([[1.0, 2.0]])
    with pytest.raises(HarnessInputError, match="return_sign needs b"):
        R.compute("logsumexp", "forward", x, None, -1, F64, options={"return_sign": True})
    with pytest.raises(HarnessInputError, match="takes no option 'b'"):
        R.compute("softmax", "forward", x, None, -1, F64, options={"b": [[1.0, 1.0]]})
    with pytest.raises(HarnessInputError, match=r"b of shape \[2\] does not match the logits \[1, 2\]"):
        R.compute("logsumexp", "forward", x, None, -1, F64, options={"b": [1.0, 1.0]})


# ---------------------------------------------------------------------------------------------
# S24: a runtime scale of the logits


def _mp_softmax_family(row, g, prec=400):
    """softmax, log_softmax, lse and their VJPs (cotangent g) of one row by mpmath, no shift."""
    with mpmath.workprec(prec):
        xs = [mpmath.mpf(v) for v in row]
        lse = mpmath.log(mpmath.fsum(mpmath.exp(v) for v in xs))
        s = [mpmath.exp(v - lse) for v in xs]
        G = mpmath.fsum(gi * si for gi, si in zip(g, s))
        return {"softmax": [si * (gi - G) for si, gi in zip(s, g)],
                "log_softmax": [gi - si * mpmath.fsum(g) for si, gi in zip(s, g)]}, s, [v - lse for v in xs]


@pytest.mark.parametrize("dt_name", ["float16", "bfloat16", "float32", "float64"])
def test_S24_the_op_of_the_rounded_product_and_s_times_its_gradient(dt_name):
    dt = D.DTYPES[dt_name]
    x = D.cast_exact(np.array([[0.3, -1.7, 2.2, 0.1], [4.0, 0.0, -3.0, 1.5]]), dt)
    s = float(D.cast_exact(np.array(-0.7), dt))
    xp = D.cast_exact(x * s, dt)  # the product, rounded in the tested dtype
    if dt_name != "float64":
        assert not np.array_equal(xp, x * s)  # it did round: the reference must not use x * s itself
    g = np.array([[0.5, -0.25, 1.0, 0.0], [1.0, 1.0, -0.5, 0.125]])
    for op in ("softmax", "log_softmax"):
        fwd = R.compute(op, "forward", x, None, -1, dt, options={"scale": s})
        grd = R.compute(op, "grad", x, None, -1, dt, options={"scale": s}, cotangent=g)
        for r in range(2):
            vjp, sm, ls = _mp_softmax_family(xp[r].tolist(), g[r].tolist())
            want = sm if op == "softmax" else ls
            for i in range(4):
                with mpmath.workprec(400):
                    assert abs(mpmath.mpf(fwd.outputs["out"].hi[r, i]) + fwd.outputs["out"].lo[r, i] - want[i]) \
                        <= abs(want[i]) * 2.0 ** -50
                    exact = s * vjp[op][i]
                    assert abs(mpmath.mpf(grd.outputs["d_logits"].hi[r, i]) - exact) <= abs(exact) * 2.0 ** -52, \
                        (op, r, i)
            np.testing.assert_array_equal(grd.outputs["d_logits"].rounded[r],
                                          D.cast_exact(np.array([float(s * v) for v in vjp[op]]), dt))


def test_S24_a_product_that_overflows_is_inf_and_a_zero_scale_has_zero_gradients():
    f16 = D.DTYPES["float16"]
    x = np.array([[300.0, 1.0, 0.0]])
    sm = R.compute("softmax", "forward", x, None, -1, f16, options={"scale": 300.0})
    np.testing.assert_array_equal(sm.outputs["out"].hi, [[1.0, 0.0, 0.0]])  # 90000 -> +inf: S6
    d = R.compute("log_softmax", "grad", x, None, -1, f16, options={"scale": 300.0}, cotangent=np.ones((1, 3)))
    np.testing.assert_array_equal(d.outputs["d_logits"].hi, [[300.0 * -2.0, 300.0, 300.0]])  # 300 (g - onehot sum g)
    z = R.compute("sparse_softmax_cross_entropy", "grad", np.array([[3.0, -2.0, 0.5]]), np.array([0]), -1, F64,
                  options={"scale": 0.0})
    assert not np.any(z.outputs["d_logits"].hi)
    f = R.compute("sparse_softmax_cross_entropy", "forward", np.array([[3.0, -2.0, 0.5]]), np.array([0]), -1, F64,
                  options={"scale": 0.0})
    assert f.outputs["out"].hi[0] == math.log(3.0)


def test_S24_budget_scales_with_s_passes_a_fused_product_and_fails_a_dropped_factor():
    rng = np.random.default_rng(11)
    f16 = D.DTYPES["float16"]
    x = D.cast_exact(rng.standard_normal((6, 10)) * 3, f16)
    s = float(D.cast_exact(np.array(1.7), f16))
    opts = {"scale": s}
    g = D.cast_exact(O.cotangent("pattern", "softmax", x.shape, 1), f16)
    ref = R.compute("softmax", "grad", x, None, -1, f16, options=opts, cotangent=g)
    cond = V.condition("softmax", "grad", x, None, g, -1, "sqrt", opts, f16)
    with pytest.raises(ValueError, match="needs the tested dtype"):
        V.condition("softmax", "grad", x, None, g, -1, "sqrt", opts)
    plain = V.condition("softmax", "grad", D.cast_exact(x * s, f16), None, g, -1, "sqrt")
    assert np.all(cond["d_logits"] >= plain["d_logits"] * s)  # |s| times the op's, and the P term
    from harness.policy import load

    tol = load("standard").tolerance("softmax", "grad", "float16", "x", None)

    def vjp(xp: np.ndarray, factor: float) -> np.ndarray:
        e = np.exp(xp - xp.max(-1, keepdims=True))
        sm = e / e.sum(-1, keepdims=True)
        return D.cast_exact(factor * sm * (g - np.sum(g * sm, -1, keepdims=True)), f16)

    # a fused kernel: the product kept in float64 (never rounded to float16), the rest exact
    v = V.judge("softmax", "grad", {"d_logits": vjp(x * s, s)}, {"d_logits": "float16"}, None, ref, f16, tol, cond,
                {"d_logits": (6, 10)})
    assert v.status == "pass", v.message
    v = V.judge("softmax", "grad", {"d_logits": vjp(D.cast_exact(x * s, f16), 1.0)}, {"d_logits": "float16"}, None,
                ref, f16, tol, cond, {"d_logits": (6, 10)})
    assert v.status == "fail"
    assert "scale must be a finite number" in O.PARAMS["scale"].check(float("inf"))


# ---------------------------------------------------------------------------------------------
# S25: the grad2 check (second derivatives)


def _mp_first(op, row, y, g, prec=500):
    """The exact first-order gradients of <g, op(x)> at `row` by mpmath (d_logits, and d_labels for
    the dense cross-entropy), straight from the definitions."""
    def grads(xs, ys):
        xs = [mpmath.mpf(a) for a in xs]
        lse = mpmath.log(mpmath.fsum(mpmath.exp(a) for a in xs))
        s = [mpmath.exp(a - lse) for a in xs]
        if op == "softmax":
            G = mpmath.fsum(gi * si for gi, si in zip(g, s))
            return [si * (gi - G) for si, gi in zip(s, g)], None
        if op == "log_softmax":
            return [gi - si * mpmath.fsum(g) for si, gi in zip(s, g)], None
        if op == "logsumexp":
            return [g * si for si in s], None
        if op == "sparse_softmax_cross_entropy":
            return [g * (si - (1 if i == y else 0)) for i, si in enumerate(s)], None
        Sy = mpmath.fsum(ys)
        return [g * (si * Sy - yi) for si, yi in zip(s, ys)], [g * (lse - a) for a in xs]
    return grads


def _mp_hvp(op, row, y, g, v, prec=500):
    """d2_logits (and d2_labels) by a central difference of the exact gradient at 500 bits with a
    step of 2^-200: its error (h^2 times the third derivative) is far below float64's."""
    grads = _mp_first(op, row, y, g)
    with mpmath.workprec(prec):
        h = mpmath.mpf(2) ** -200
        plus = grads([mpmath.mpf(a) + h * b for a, b in zip(row, v)], y)[0]
        minus = grads([mpmath.mpf(a) - h * b for a, b in zip(row, v)], y)[0]
        d2 = [(p - q) / (2 * h) for p, q in zip(plus, minus)]
        d2y = None
        if op == "softmax_cross_entropy":  # d/dy_j <d_logits, v>
            d2y = []
            for j in range(len(row)):
                yp = [mpmath.mpf(t) + (h if i == j else 0) for i, t in enumerate(y)]
                ym = [mpmath.mpf(t) - (h if i == j else 0) for i, t in enumerate(y)]
                a = mpmath.fsum(p * b for p, b in zip(grads(row, yp)[0], v))
                b_ = mpmath.fsum(p * b for p, b in zip(grads(row, ym)[0], v))
                d2y.append((a - b_) / (2 * h))
        return d2, d2y


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("op", list(O.OPS))
def test_S25_second_derivatives_match_mpmath(backend, op):
    rows = [[2.0, 1.5, 0.1, -1.0, 0.5], [20.0, 0.0, 0.0, 0.0, 0.0], [0.2, 1.3, 1.7, 0.0, -2.0]]
    x = np.array(rows)
    v = O.direction(x.shape)
    spec = O.OPS[op]
    g = np.array([0.625, -1.0, 0.5]) if spec.reduces else O.cotangent("pattern", op, x.shape, 1)
    y = {"dense": np.array([[0.5, 0.25, 0.25, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.5, 0.5, 0.0]]),
         "sparse": np.array([1, 0, 4]), "none": None}[spec.labels]
    r = R.compute(op, "grad2", x, y, -1, F64, backend_name=_backend(backend), cotangent=g)
    assert set(r.outputs) == set(spec.outputs("grad2"))
    for i, row in enumerate(rows):
        yi = None if y is None else (y[i].tolist() if spec.labels == "dense" else int(y[i]))
        gi = float(g[i]) if spec.reduces else g[i].tolist()
        d2, d2y = _mp_hvp(op, row, yi, gi, v[i].tolist())
        for j in range(5):
            got = r.outputs["d2_logits"].hi[i, j]
            assert abs(got - float(d2[j])) <= 2.0 ** -50 * abs(float(d2[j])) + 1e-300, (op, i, j, got, float(d2[j]))
            if d2y is not None:
                got = r.outputs["d2_labels"].hi[i, j]
                assert abs(got - float(d2y[j])) <= 2.0 ** -50 * abs(float(d2y[j])) + 1e-300, (i, j)


def test_S25_limits_masks_scale_and_reductions():
    # one +inf: s one-hot, H v = 0; the dense labels' mixed derivative g (v_p - v_j)
    x = np.array([[INF, 0.0, 1.0]])
    v = O.direction(x.shape)[0]
    r = R.compute("softmax_cross_entropy", "grad2", x, np.array([[0.0, 0.5, 0.5]]), -1, F64, cotangent=np.array([2.0]))
    np.testing.assert_array_equal(r.outputs["d2_logits"].hi, [[0.0, 0.0, 0.0]])
    np.testing.assert_array_equal(r.outputs["d2_labels"].hi, [[2.0 * (v[0] - vj) for vj in v]])
    # a mask: 0 at masked entries, the kept ones those of the kept row (with the kept direction)
    xs = np.array([[2.0, 1.5, 0.1, -1.0]])
    m = [[True, False, True, True]]
    g = O.cotangent("pattern", "softmax", xs.shape, 1)
    a = R.compute("softmax", "grad2", xs, None, -1, F64, options={"where": m}, cotangent=g)
    b = R.compute("softmax", "grad2", np.array([[2.0, -INF, 0.1, -1.0]]), None, -1, F64, cotangent=g * [1, 0, 1, 1],
                  direction=O.direction(xs.shape) * [1, 0, 1, 1])
    assert a.outputs["d2_logits"].hi[0, 1] == 0.0
    np.testing.assert_array_equal(a.outputs["d2_logits"].hi, b.outputs["d2_logits"].hi)
    # a runtime scale: s^2 along the logits twice, s for the mixed derivative
    y = np.array([[0.5, 0.25, 0.25, 0.0]])
    s1 = R.compute("softmax_cross_entropy", "grad2", xs, y, -1, F64, options={"scale": 0.5})
    s0 = R.compute("softmax_cross_entropy", "grad2", xs * 0.5, y, -1, F64)
    np.testing.assert_array_equal(s1.outputs["d2_logits"].hi, s0.outputs["d2_logits"].hi * 0.25)
    np.testing.assert_array_equal(s1.outputs["d2_labels"].hi, s0.outputs["d2_labels"].hi * 0.5)
    # a mean over rows: each row's second derivative with the row cotangent g / N
    x2 = np.array([[2.0, 1.5, 0.1, -1.0], [0.2, 1.3, 1.7, 0.0]])
    mean = R.compute("sparse_softmax_cross_entropy", "grad2", x2, np.array([1, 3]), -1, F64,
                     options={"reduction": "mean"}, cotangent=np.array(1.0))
    rows = R.compute("sparse_softmax_cross_entropy", "grad2", x2, np.array([1, 3]), -1, F64,
                     cotangent=np.array([0.5, 0.5]))
    np.testing.assert_array_equal(mean.outputs["d2_logits"].hi, rows.outputs["d2_logits"].hi)


def test_S25_budget_passes_float32_double_backward_and_fails_a_dropped_term():
    rng = np.random.default_rng(5)
    f32 = D.DTYPES["float32"]
    x = D.cast_exact(rng.standard_normal((6, 9)) * 3, f32)
    g = D.cast_exact(O.cotangent("pattern", "softmax", x.shape, 1), f32)
    v = O.direction(x.shape)
    ref = R.compute("softmax", "grad2", x, None, -1, f32, cotangent=g)
    cond = V.condition("softmax", "grad2", x, None, g, -1, "sqrt")
    shifted = V.condition("softmax", "grad2", x + 512.0, None, g, -1, "sqrt")
    np.testing.assert_allclose(shifted["d2_logits"], cond["d2_logits"], rtol=1e-12)
    from harness.policy import load

    tol = load("standard").tolerance("softmax", "grad2", "float32", "x", None)
    xf, gf, vf = (a.astype(np.float32) for a in (x, g, v))
    e = np.exp(xf - xf.max(-1, keepdims=True))
    s = e / e.sum(-1, keepdims=True)
    c = s * (vf - np.sum(s * vf, -1, keepdims=True))
    G = np.sum(gf * s, -1, keepdims=True)
    good = c * (gf - G) - s * np.sum(gf * c, -1, keepdims=True)  # all in float32
    shapes, dts = {"d2_logits": (6, 9)}, {"d2_logits": "float32"}
    v1 = V.judge("softmax", "grad2", {"d2_logits": good.astype(np.float64)}, dts, None, ref, f32, tol, cond, shapes)
    assert v1.status == "pass", v1.message
    bad = c * (gf - G)  # the derivative of G along v dropped
    v2 = V.judge("softmax", "grad2", {"d2_logits": bad.astype(np.float64)}, dts, None, ref, f32, tol, cond, shapes)
    assert v2.status == "fail"


def test_scale_budget_takes_the_products_own_rounding_not_half_an_ulp():
    """S24's extra term is how far the rounding of x * s moved each logit: none where the product
    is exact. Half an ULP of x' instead (the budget before) grows with the logits' magnitude and
    let JAX's sparse cross-entropy answer 0 for log 3 on three equal float32 logits 1.06e37 with
    s = 2 pass (9.2e6 ULP; found by `harness search --objective differential`)."""
    from harness import dtypes as D
    from harness.verdict import condition, product_rounding

    f32 = D.get("float32")
    x = np.full((1, 3), 1.0633823966279327e37)
    lab = np.asarray([1])
    scaled = condition("sparse_softmax_cross_entropy", "forward", x, lab, None, -1, "log2", {"scale": 2.0}, f32)
    plain = condition("sparse_softmax_cross_entropy", "forward", 2 * x, lab, None, -1, "log2", {}, f32)
    assert scaled["out"].tolist() == plain["out"].tolist() and float(plain["out"][0]) < 10
    # An inexact product: the term is the rounding committed, exactly (float32: x * s exact in float64).
    from fractions import Fraction

    s32 = float(np.float32(0.1))  # the scale is cast to the dtype like the logits
    xs = np.asarray([[3.0, 5.0, 7.0]])
    r = product_rounding(xs, s32, D.cast_exact(xs * s32, f32))
    want = [abs(float(Fraction(float(np.float32(v * s32))) - Fraction(v) * Fraction(s32))) for v in (3.0, 5.0, 7.0)]
    assert r[0].tolist() == want and min(want) > 0
    # float64: Dekker's TwoProduct, checked against exact rationals.
    a = np.asarray([0.1, 1e300, 3.0])
    got = product_rounding(a, 0.7, a * 0.7)
    want = [abs(float(Fraction(v) * Fraction(0.7) - Fraction(v * 0.7))) for v in a]
    assert got.tolist() == want
