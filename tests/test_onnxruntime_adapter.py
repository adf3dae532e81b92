"""The ONNX Runtime adapter (harness/adapters/onnxruntime.py): its outputs against closed forms, its
repro snippets replayed bit for bit in a fresh interpreter, a deliberately naive graph failing a
verdict the real one passes, the opset-11 variant's per-axis results, and its refusals (no
autodiff, bfloat16 nodes ORT has no kernel for, options ONNX cannot spell)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install -e '.[onnxruntime]')")
pytest.importorskip("onnx", reason="onnx is not installed (pip install -e '.[onnxruntime]')")
ml_dtypes = pytest.importorskip("ml_dtypes")
mpmath = pytest.importorskip("mpmath")
mpmath.mp.dps = 50

from harness import cases as K  # noqa: E402
from harness.adapters.base import Call, Unsupported  # noqa: E402
from harness.adapters.onnxruntime import OnnxRuntimeAdapter, _node  # noqa: E402
from harness.cache import Cache  # noqa: E402
from harness.policy import load as load_policy  # noqa: E402
from harness.runner import Item, Session  # noqa: E402
from tests.replaying import assert_replays  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
X = np.array([[1.0, 2.0, 3.0], [0.0, -1.0, 5.0]])


def np_dtype(dt):
    return ml_dtypes.bfloat16 if dt == "bfloat16" else np.dtype(dt)


def call(op, x=X, labels=None, dtype="float64", variant="default", mode="eager", axis=-1, check="forward", **options):
    x = np.asarray(x, dtype=np.float64).astype(np_dtype(dtype))
    if labels is not None and np.asarray(labels).dtype.kind == "f":
        labels = np.asarray(labels, dtype=np.float64).astype(np_dtype(dtype))
    elif labels is not None:
        labels = np.asarray(labels, dtype=np.int64)
    return Call(op, check, variant, x, labels, axis, None, dtype, "cpu", mode, options=options)


@pytest.fixture(scope="module")
def ad():
    return OnnxRuntimeAdapter()


def out(ad, c):
    return ad.run(c).arrays["out"]


def _logp(x, axis=-1):
    """log_softmax along `axis` as mpmath numbers (50 digits), class axis last, rows flattened."""
    x = np.moveaxis(np.asarray(x, dtype=np.float64), axis, -1)
    rows = []
    for row in x.reshape(-1, x.shape[-1]):
        L = mpmath.log(mpmath.fsum(mpmath.exp(mpmath.mpf(float(v))) for v in row))
        rows.append([mpmath.mpf(float(v)) - L for v in row])
    return rows, x.shape


def log_softmax(x, axis=-1):
    """Correctly rounded to float64, like softmax, lse and ce below."""
    rows, shape = _logp(x, axis)
    return np.moveaxis(np.array([[float(v) for v in r] for r in rows]).reshape(shape), -1, axis)


def softmax(x, axis=-1):
    rows, shape = _logp(x, axis)
    return np.moveaxis(np.array([[float(mpmath.exp(v)) for v in r] for r in rows]).reshape(shape), -1, axis)


def lse(x, axis=-1):
    x = np.moveaxis(np.asarray(x, dtype=np.float64), axis, -1)
    return np.array([float(mpmath.log(mpmath.fsum(mpmath.exp(mpmath.mpf(float(v))) for v in row)))
                     for row in x.reshape(-1, x.shape[-1])]).reshape(x.shape[:-1])


def ce(x, y):
    """-sum_i y_i log_softmax(x)_i per row (y dense, or integer labels), correctly rounded."""
    rows, _ = _logp(x)
    y = np.asarray(y)
    dense = y.dtype.kind == "f"
    return np.array([float(-mpmath.fsum(mpmath.mpf(float(w)) * v for w, v in zip(y[i], r)) if dense else -r[int(y[i])])
                     for i, r in enumerate(rows)])


#: 4 float64 ULPs, relative: the kernels' error allowed against the correctly rounded value; and
#: ATOL, absolute, for the outputs formed as a difference with log(sum): log S rounds to an absolute
#: error of about u whatever the size of the result (the standard policy's condition term).
TOL = 4 * 2.0**-52
ATOL = 2 * 2.0**-52


# -- values against closed forms ------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["eager", "jit"])
def test_float64_outputs_against_closed_forms(ad, mode):
    np.testing.assert_allclose(out(ad, call("softmax", mode=mode)), softmax(X), rtol=TOL)
    np.testing.assert_allclose(out(ad, call("log_softmax", mode=mode)), log_softmax(X), rtol=TOL, atol=ATOL)
    np.testing.assert_allclose(out(ad, call("logsumexp", mode=mode)), lse(X), rtol=TOL)
    # lse(1, 2, 3) = 3 + log(1 + e^-1 + e^-2), in closed form
    assert out(ad, call("logsumexp", mode=mode))[0] == pytest.approx(3 + math.log1p(math.exp(-1) + math.exp(-2)),
                                                                     rel=2e-16)
    y = np.array([[0.0, 0.5, 0.5], [1.0, 0.0, 0.0]])
    np.testing.assert_allclose(out(ad, call("softmax_cross_entropy", labels=y, mode=mode)), ce(X, y), rtol=TOL)
    for variant in ("default", "nll"):
        got = out(ad, call("sparse_softmax_cross_entropy", labels=[0, 2], variant=variant, mode=mode))
        # exactly log1p(e^-1 + e^-2) + 2 and log1p(e^-5 + e^-6)
        want = [2 + math.log1p(math.exp(-1) + math.exp(-2)), math.log1p(math.exp(-5) + math.exp(-6))]
        np.testing.assert_allclose(got, want, rtol=TOL, atol=ATOL)
        np.testing.assert_allclose(got, ce(X, [0, 2]), rtol=TOL, atol=ATOL)


def test_sparse_options_are_onnx_attributes(ad):
    """weights, ignore_index and reduction as SoftmaxCrossEntropyLoss takes them; the harness's
    default reduction (none) is written out, not ONNX's (mean)."""
    x = np.array([[1.0, 2.0, 3.0], [0.0, -1.0, 5.0], [2.0, 2.0, 2.0]])
    lab = [0, 2, 1]
    rows = ce(x, lab)
    w = [0.5, 2.0, 4.0]
    for v in ("default", "nll"):
        np.testing.assert_allclose(out(ad, call("sparse_softmax_cross_entropy", x, lab, variant=v)), rows, rtol=TOL,
                                   atol=ATOL)
        got = out(ad, call("sparse_softmax_cross_entropy", x, lab, variant=v, weights=w, reduction="mean"))
        want = (0.5 * rows[0] + 4.0 * rows[1] + 2.0 * rows[2]) / (0.5 + 4.0 + 2.0)
        assert got.shape == () and got == pytest.approx(want, rel=4e-16)
        got = out(ad, call("sparse_softmax_cross_entropy", x, lab, variant=v, ignore_index=2, reduction="none"))
        np.testing.assert_allclose(got, [rows[0], 0.0, rows[2]], rtol=TOL, atol=ATOL)
        got = out(ad, call("sparse_softmax_cross_entropy", x, lab, variant=v, reduction="sum"))
        assert got == pytest.approx(rows.sum(), rel=4e-16)


def test_dense_reductions_scale_and_mask(ad):
    y = np.array([[0.0, 0.5, 0.5], [1.0, 0.0, 0.0]])
    rows = ce(X, y)
    assert out(ad, call("softmax_cross_entropy", labels=y, reduction="sum")) == pytest.approx(rows.sum(), rel=4e-16)
    assert out(ad, call("softmax_cross_entropy", labels=y, reduction="mean")) == pytest.approx(rows.mean(), rel=4e-16)
    # scale: the op of x * s
    np.testing.assert_allclose(out(ad, call("logsumexp", scale=0.5)), lse(X * 0.5), rtol=TOL)
    # where: the -inf fill users write (variant masked): masked entries 0
    mask = [[True, False, True], [True, True, True]]
    got = out(ad, call("softmax", variant="masked", where=mask))
    e = softmax(np.array([1.0, 3.0]))
    np.testing.assert_allclose(got[0], [e[0], 0.0, e[1]], rtol=TOL)


def test_float32_and_float16_round_like_the_exact_value(ad):
    """Every output within one ULP of the float64 value, in the dtype the input had."""
    for dt in ("float32", "float16"):
        r = ad.run(call("softmax", dtype=dt))
        assert r.dtypes["out"] == dt
        want = softmax(X)
        ulp = np.spacing(want.astype(dt)).astype(np.float64)
        assert np.all(np.abs(r.arrays["out"] - want) <= ulp)


def test_bfloat16_in_and_out_as_bits(ad):
    """bfloat16 goes in and comes out by its bits: ORT's ReduceLogSumExp takes it on the CPU;
    its Softmax has no bfloat16 kernel and the skip quotes ORT."""
    r = ad.run(call("logsumexp", dtype="bfloat16"))
    assert r.dtypes["out"] == "bfloat16"
    # lse(1, 2, 3) = 3.40760596 rounds to the bfloat16 3.40625 (spacing 2^-6); lse(0, -1, 5) to 5.0
    assert r.arrays["out"].tolist() == [3.40625, 5.0]
    with pytest.raises(Unsupported, match=r"refuses bfloat16 .*Could not find an implementation for ReduceMax"):
        ad.run(call("softmax", dtype="bfloat16"))
    with pytest.raises(Unsupported, match=r"Type 'tensor\(bfloat16\)' of input parameter \(x\) of operator \(Softmax\)"):
        ad.run(call("softmax", dtype="bfloat16", variant="opset11"))


def test_a_refused_graph_is_not_built_again(ad, monkeypatch):
    """The refusal is remembered by the graph's source (base.SourceAdapter.step): the next call of
    that graph, of another shape, is refused without building its session again."""
    with pytest.raises(Unsupported, match=r"refuses bfloat16 for log_softmax"):
        ad.run(call("log_softmax", dtype="bfloat16"))
    built = []
    real = ad._exec
    monkeypatch.setattr(ad, "_exec", lambda *a: built.append(a[0]) or real(*a))
    with pytest.raises(Unsupported, match=r"refuses bfloat16 for log_softmax"):
        ad.run(call("log_softmax", np.zeros((3, 7)), dtype="bfloat16"))
    assert built == []
    assert ad.run(call("log_softmax", np.zeros((3, 7)), dtype="float32")).arrays["out"].shape == (3, 7)
    assert len(built) == 2  # the float32 graph is built: its function, then its step


def test_refusals(ad):
    with pytest.raises(Unsupported, match="inference runtime: no autodiff"):
        ad.run(call("softmax", check="grad"))
    assert "takes no label_smoothing" in ad.unsupported("softmax_cross_entropy", "default", {"label_smoothing": 0.1})
    assert "takes no b" in ad.unsupported("logsumexp", "default", {"b": [[1.0]]})
    assert "the masked variant does" in ad.unsupported("softmax", "default", {"where": [[True]]})
    assert ad.variants_for("softmax") == ("default", "opset11")
    assert ad.variants_for("softmax", {"where"}) == ("default", "opset11", "masked")
    assert ad.devices()["cpu"] == "cpu"
    v = ad.versions()
    assert v["onnxruntime"] and v["onnx"] and v["provider"] == "CPUExecutionProvider"


def test_one_session_serves_every_shape_of_a_rank(ad):
    a = ad.run(call("log_softmax", np.zeros((2, 5)), dtype="float32"))
    b = ad.run(call("log_softmax", np.ones((7, 3)), dtype="float32"))
    assert a.program == b.program and b.program_new is False
    c = ad.run(call("log_softmax", np.ones((7, 3)), dtype="float32", mode="jit"))
    assert c.program != a.program


# -- the opset-11 variant ------------------------------------------------------------------------

def test_opset11_variant_is_per_axis_on_a_middle_axis(ad):
    x = (np.arange(24, dtype=np.float64).reshape(2, 3, 4) * 0.37) % 5 - 2
    for op, ref in (("softmax", softmax(x, 1)), ("log_softmax", log_softmax(x, 1))):
        for dt in ("float64", "float32"):
            o11 = out(ad, call(op, x, dtype=dt, variant="opset11", axis=1))
            o13 = out(ad, call(op, x, dtype=dt, axis=1))
            assert o11.shape == (2, 3, 4)
            tol = TOL if dt == "float64" else 3e-7
            np.testing.assert_allclose(o11, ref, rtol=tol, atol=tol)
            np.testing.assert_allclose(o11, o13, rtol=tol, atol=tol)
    # the snippet moves the class axis last and back; Softmax-11 at axis 1 alone would normalise
    # over 3 x 4 entries (its flatten-to-2-D semantics), which the sums show
    assert "'Transpose', ['x'], ['xt'], perm=[0, 2, 1]" in ad.repro(call("softmax", x, variant="opset11", axis=1))
    np.testing.assert_allclose(out(ad, call("softmax", x, variant="opset11", axis=1)).sum(axis=1), 1.0, rtol=1e-15)


# -- repro snippets, bit for bit -----------------------------------------------------------------

REPRO_CALLS = [
    ("softmax", dict(x=np.arange(24.0).reshape(2, 3, 4) / 3, axis=1, variant="opset11", dtype="float32")),
    ("log_softmax", dict(dtype="float16", mode="jit")),
    ("logsumexp", dict(dtype="bfloat16")),
    ("logsumexp", dict(dtype="float64", scale=0.5)),
    ("softmax_cross_entropy", dict(labels=[[0.0, 0.5, 0.5], [1.0, 0.0, 0.0]], dtype="float32", reduction="mean")),
    ("sparse_softmax_cross_entropy", dict(x=np.arange(12.0).reshape(3, 4).T, labels=[0, 2, 3], axis=0,
                                          dtype="float16", weights=[0.5, 2.0, 4.0, 1.0], ignore_index=2)),
    ("sparse_softmax_cross_entropy", dict(x=[1e4, 0.0, -1e4], labels=1, variant="nll", dtype="float32")),
    ("softmax", dict(variant="masked", where=[[True, False, True], [False, False, False]], dtype="float64")),
]


def test_repro_snippets_print_the_adapters_output_bit_for_bit(ad):
    assert_replays(ad, [call(op, **kw) for op, kw in REPRO_CALLS])


# -- a naive graph fails where the real one passes -------------------------------------------------

class NaiveOnnxRuntime(OnnxRuntimeAdapter):
    """Softmax as Exp(x) / ReduceSum(Exp(x)) without the max shift, log_softmax as Log(Softmax)."""

    name = "onnxruntime-naive"

    def nodes(self, c):
        nodes, ins, opset = super().nodes(c)
        ax = c.axis % np.ndim(c.logits)
        if c.op == "softmax":
            nodes = [_node("Exp", ["x"], ["e"]), _node("ReduceSum", ["e", "axes"], ["S"], keepdims=1),
                     _node("Div", ["e", "S"], ["out"])]
            nodes.insert(1, "helper.make_node('Constant', [], ['axes'], value=helper.make_tensor("
                            f"'axes', TensorProto.INT64, [1], [{ax}]))")
        elif c.op == "log_softmax":
            nodes = [_node("Softmax", ["x"], ["p"], axis=ax), _node("Log", ["p"], ["out"])]
        return nodes, ins, opset


def _verdict(fw, op, logits, dtype="float32"):
    case = K.parse_case({"id": "ort/extreme", "logits": logits, "dtypes": [dtype]}, file="<test>", index=0,
                        family=None, base=ROOT)
    s = Session(load_policy("standard"), Cache(None, enabled=False), [], None, timing_reps=0)
    return s.run(Item(case, op, "forward", "default", fw, "cpu", dtype, "eager", None))


@pytest.fixture
def naive(registered):
    return registered(NaiveOnnxRuntime)


def test_a_naive_graph_fails_a_verdict_the_adapter_passes(naive):
    # softmax([100, 0, -100]) in float32: exp(100) overflows, the naive row is [nan, 0, 0]
    good = _verdict("onnxruntime", "softmax", [[100.0, 0.0, -100.0]])
    bad = _verdict(naive, "softmax", [[100.0, 0.0, -100.0]])
    assert good["status"] == "pass", good
    assert bad["status"] == "fail", bad
    assert np.isnan(np.asarray(bad["output"]["out"], dtype=np.float64)[0, 0])
    # log_softmax([0, -200]) in float32: exactly [-1.4e-87 (rounds to -0), -200]; Log(Softmax) is -inf
    good = _verdict("onnxruntime", "log_softmax", [[0.0, -200.0]])
    bad = _verdict(naive, "log_softmax", [[0.0, -200.0]])
    assert good["status"] == "pass", good
    assert bad["status"] == "fail", bad
    assert np.asarray(bad["output"]["out"], dtype=np.float64)[0, 1] == -np.inf


# -- the findings of the default run (onnxruntime 1.32, /tmp/known-onnxruntime.toml), pinned -------

def test_reducelogsumexp_findings(ad):
    """float16 ReduceLogSumExp is not max-shifted (+-inf past float64's exp range); float32/64
    start the max at 0 when a row begins with an infinite entry."""
    inf = float("inf")
    got = out(ad, call("logsumexp", [[1000.0, 999.0, 998.0, 995.0], [709.0, 0.0, 0.0, 0.0], [710.0, 0.0, 0.0, 0.0]],
                       dtype="float16"))
    assert got.tolist() == [inf, 709.0, inf]  # exactly 1000.41208 (float16 1000.5), 709, 710
    got = out(ad, call("logsumexp", [[-inf, -10000.0, -inf, -inf], [-10000.0, -inf, -inf, -inf]]))
    assert got.tolist() == [-inf, -10000.0]  # both exactly -10000


def test_sparse_loss_findings(ad):
    # the label -1 is the last class, silently: lse(x) - 0.5 = 2.2075512 (float32)
    x = [[2.0, 1.5, 0.1, -1.0, 0.5]]
    for v in ("default", "nll"):
        got = out(ad, call("sparse_softmax_cross_entropy", x, [-1], dtype="float32", variant=v))
        assert got[0] == pytest.approx(2.2075512, rel=1e-7)
    # SoftmaxCrossEntropyLoss raises on an empty batch; NLL over LogSoftmax returns it empty
    empty = np.zeros((0, 5))
    assert out(ad, call("sparse_softmax_cross_entropy", empty, np.zeros(0, np.int64), variant="nll")).shape == (0,)
    with pytest.raises(Exception, match=r"Input shape:\{0,5\}, requested shape:\{0,5,-1\}"):
        ad.run(call("sparse_softmax_cross_entropy", empty, np.zeros(0, np.int64)))
