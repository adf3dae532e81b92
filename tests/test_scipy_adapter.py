"""The SciPy adapter (harness.adapters.scipy): scipy.special.softmax, log_softmax and logsumexp
(b=, return_sign=) forward, eager, on the CPU; every call is its repro snippet.

Pinned here: its outputs equal scipy's own answer bit for bit and the closed forms; what scipy
does with each dtype (bfloat16 logsumexp comes back float64); the snippet printed for a call,
run in a fresh interpreter, prints exactly the adapter's output; what it cannot run is a skip
with the reason (gradients, jit, GPU, the losses, a mask); and a deliberately wrong
implementation (softmax without the max shift, log of softmax) fails a verdict on an extreme
case that the real adapter passes.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest

scipy_special = pytest.importorskip("scipy.special", reason="scipy is not installed (pip install -e '.[scipy]')")
ml_dtypes = pytest.importorskip("ml_dtypes", reason="ml_dtypes is not installed")

from harness import adapters as A  # noqa: E402
from harness import cases as K  # noqa: E402
from harness import records  # noqa: E402
from harness.adapters.base import Call, Unsupported  # noqa: E402
from harness.adapters.scipy import API, ScipyAdapter  # noqa: E402
from harness.cache import Cache  # noqa: E402
from harness.policy import load as load_policy  # noqa: E402
from harness.repro import same_bits  # noqa: E402
from harness.runner import Item, Session  # noqa: E402
from tests.replaying import assert_replays  # noqa: E402

#: scipy warns of the overflows and invalid values these extreme inputs are made of.
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

ROOT = Path(__file__).resolve().parent.parent
DTYPES = ("float16", "bfloat16", "float32", "float64")


def _np(dtype: str):
    return ml_dtypes.bfloat16 if dtype == "bfloat16" else np.dtype(dtype)


def _call(op, logits, dtype="float64", b=None, options=None, axis=-1, check="forward", device="cpu", mode="eager"):
    x = np.asarray(logits, dtype=np.float64).astype(_np(dtype))
    y = None if b is None else np.asarray(b, dtype=np.float64).astype(_np(dtype))
    opts = dict(options or {})
    if b is not None:
        opts["b"] = np.asarray(b, dtype=np.float64).tolist()
    g = None if check == "forward" else np.ones(x.shape[:-1] if op == "logsumexp" else x.shape, dtype=_np(dtype))
    return Call(op, check, "default", x, y, axis, g, dtype, device, mode, options=opts)


def _bits_equal(a, b) -> bool:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return same_bits(a, b)


@pytest.fixture(scope="module")
def ad():
    return A.get("scipy")


def test_registered_available_and_versions(ad):
    import scipy

    assert isinstance(ad, ScipyAdapter) and ad.name == "scipy"
    assert ad.available() == (True, "")
    v = ad.versions()
    assert v["scipy"] == scipy.__version__ and v["numpy"] == np.__version__
    assert ad.modes == ("eager",)
    assert ad.devices() == {"cpu": "cpu", "gpu": None}
    assert "CPU only" in ad.device_reason("gpu")


def test_missing_scipy_says_how_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "scipy" else real(name, *a))
    assert ScipyAdapter().available() == (False, "scipy is not installed (pip install -e '.[scipy]')")


# -- values: scipy's own answer bit for bit, and the closed forms ----------------------------------

X = [[1.0, 2.0, 3.0, -0.5], [0.0, 0.0, 0.0, 0.0]]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op", ["softmax", "log_softmax", "logsumexp"])
def test_output_is_scipys_own_bit_for_bit(ad, op, dtype):
    out = ad.run(_call(op, X, dtype))
    x = np.asarray(X, dtype=np.float64).astype(_np(dtype))
    want = getattr(scipy_special, op)(x, axis=-1)
    assert _bits_equal(out.arrays["out"], want)
    assert out.dtypes["out"] == ("bfloat16" if want.dtype == ml_dtypes.bfloat16 else str(want.dtype))
    assert out.devices["out"] == "cpu"


def test_what_scipy_does_with_each_dtype(ad):
    """softmax and log_softmax keep every dtype; logsumexp keeps float16, float32 and float64 and
    returns float64 for bfloat16 (its array-API promotion does not know bfloat16 as floating),
    computed in float64 from the bfloat16 inputs: with b and the sign too."""
    for dtype in DTYPES:
        for op in ("softmax", "log_softmax"):
            assert ad.run(_call(op, X, dtype)).dtypes == {"out": dtype}
        want = "float64" if dtype == "bfloat16" else dtype
        assert ad.run(_call("logsumexp", X, dtype)).dtypes == {"out": want}
        signed = ad.run(_call("logsumexp", X, dtype, b=[[1, -1, 1, 1], [1, 1, 1, 1]], options={"return_sign": True}))
        assert signed.dtypes == {"out": want, "sign": want}
    # bfloat16 logits [0.10009765625, 0.30078125, 0.5, 0.8984375] (seed/softmax_classic): the float64
    # logsumexp of those exact values, not the bfloat16 1.8828125.
    x = [0.10009765625, 0.30078125, 0.5, 0.8984375]
    got = ad.run(_call("logsumexp", x, "bfloat16")).arrays["out"]
    assert float(got) == 1.881093783591843 == pytest.approx(math.log(sum(math.exp(v) for v in x)), rel=1e-15)


@pytest.mark.parametrize("dtype", DTYPES)
def test_closed_forms(ad, dtype):
    # A row of equal logits: softmax 1/4 exactly, log_softmax -log 4, logsumexp log 4 (+ the common value).
    x = [[5.0, 5.0, 5.0, 5.0]]
    rnd = lambda v: float(np.asarray(v, dtype=np.float64).astype(_np(dtype)).astype(np.float64))  # noqa: E731
    assert ad.run(_call("softmax", x, dtype)).arrays["out"].tolist() == [[0.25] * 4]
    assert ad.run(_call("log_softmax", x, dtype)).arrays["out"].tolist() == [[rnd(-math.log(4))] * 4]
    lse = float(ad.run(_call("logsumexp", x, dtype)).arrays["out"][0])
    assert lse == (5 + math.log(4) if dtype == "bfloat16" else rnd(5 + math.log(4)))
    # float64, [1, 2, 3]: e^i / (e + e^2 + e^3) and i - log(e + e^2 + e^3), to the last bits.
    s = ad.run(_call("softmax", [1.0, 2.0, 3.0])).arrays["out"]
    den = math.e + math.e ** 2 + math.e ** 3
    assert s.tolist() == pytest.approx([math.e / den, math.e ** 2 / den, math.e ** 3 / den], rel=4e-16)
    ls = ad.run(_call("log_softmax", [1.0, 2.0, 3.0])).arrays["out"]
    assert ls.tolist() == pytest.approx([1 - math.log(den), 2 - math.log(den), 3 - math.log(den)], rel=4e-16)


def test_logsumexp_weights_and_sign(ad):
    """log |sum b_i exp(x_i)|: logits [0, 0, 0], b [1, -3, 0]: the sum is -2, so log 2 with the sign
    -1, and NaN without return_sign; a weight 0 drops its logit, +inf included (scipy's rule)."""
    out = ad.run(_call("logsumexp", [0.0, 0.0, 0.0], b=[1.0, -3.0, 0.0], options={"return_sign": True}))
    assert float(out.arrays["out"]) == math.log(2) and float(out.arrays["sign"]) == -1.0
    nan = ad.run(_call("logsumexp", [0.0, 0.0, 0.0], b=[1.0, -3.0, 0.0]))
    assert set(nan.arrays) == {"out"} and math.isnan(float(nan.arrays["out"]))
    dropped = ad.run(_call("logsumexp", [math.inf, 0.0, 0.0], b=[0.0, 1.0, 1.0]))
    assert float(dropped.arrays["out"]) == math.log(2)
    zero = ad.run(_call("logsumexp", [1.0, 1.0, 2.0], b=[1.0, -1.0, 0.0], options={"return_sign": True}))
    assert float(zero.arrays["out"]) == -math.inf and float(zero.arrays["sign"]) == 0.0


def test_scale_is_the_product_rounded_in_the_dtype(ad):
    """scale s: softmax(x * s) with s an array of the dtype; float16 300 * 300 overflows to +inf."""
    out = ad.run(_call("softmax", [[2.0, 1.0, 0.0]], "float32", options={"scale": 0.5}))
    x = np.asarray([[2.0, 1.0, 0.0]], dtype=np.float32)
    assert _bits_equal(out.arrays["out"], scipy_special.softmax(x * np.float32(0.5), axis=-1))
    assert "(x * s)" in ad.repro(_call("softmax", [[2.0, 1.0, 0.0]], "float32", options={"scale": 0.5}))
    over = ad.run(_call("logsumexp", [[300.0, 1.0, 0.0]], "float16", options={"scale": 300.0}))
    assert over.arrays["out"].tolist() == [math.inf]


def test_pos_inf_logit(ad):
    """softmax([inf, 0, 1]) is [1, 0, 0] in the limit: scipy returns NaN everywhere; its log_softmax
    NaN at the +inf entry only; its logsumexp +inf (right)."""
    assert np.isnan(ad.run(_call("softmax", [math.inf, 0.0, 1.0])).arrays["out"]).all()
    ls = ad.run(_call("log_softmax", [math.inf, 0.0, 1.0])).arrays["out"]
    assert math.isnan(ls[0]) and ls[1:].tolist() == [-math.inf, -math.inf]
    assert float(ad.run(_call("logsumexp", [math.inf, 0.0, 1.0])).arrays["out"]) == math.inf


def test_bfloat16_softmax_sum_stalls(ad):
    """numpy sums an ml_dtypes bfloat16 array in bfloat16, one rounding per addition: a sum of ones
    stops at 256, so softmax of 4100 equal logits is 1/256, not 1/4100 (float16 sums in float32)."""
    for dtype, want in (("bfloat16", 1 / 256), ("float16", float(np.float16(1 / 4100))), ("float32", float(np.float32(1 / 4100)))):
        got = ad.run(_call("softmax", np.zeros(4100), dtype)).arrays["out"]
        assert set(got.tolist()) == {want}, dtype
    assert ad.run(_call("log_softmax", np.zeros(4100), "bfloat16")).arrays["out"][0] == -5.53125  # -log 256


# -- the repro snippet is what ran ------------------------------------------------------------------

REPRO_CALLS = [
    ("softmax", X, "bfloat16", None, {}, -1),
    ("log_softmax", [[1.0, -2.0], [0.5, 3.0], [-1.0, 7.0]], "float16", None, {}, 0),
    ("logsumexp", [[0.5, 1.0, -2.0], [1.0, 1.0, 2.0]], "float32", [[1.0, -3.0, 0.0], [1.0, -1.0, 0.0]],
     {"return_sign": True}, -1),
    ("logsumexp", X, "bfloat16", None, {}, -1),
    ("softmax", [[300.0, 1.0, 0.0], [2.0, 1.0, 0.0]], "float16", None, {"scale": 300.0}, -1),
    ("logsumexp", np.zeros((0, 3)), "float64", None, {}, -1),  # an empty batch keeps its shape
]


def test_repro_snippets_print_the_adapters_output(ad):
    calls = [_call(op, x, dtype, b=b, options=options, axis=axis) for op, x, dtype, b, options, axis in REPRO_CALLS]
    for snippet in assert_replays(ad, calls):
        assert snippet.startswith("import numpy as np\nimport ml_dtypes\nimport scipy.special\n")


# -- what it cannot run: a skip with the reason -----------------------------------------------------

def test_unsupported_calls_say_why(ad):
    for check in ("grad", "grad2"):
        with pytest.raises(Unsupported, match="scipy has no autodiff"):
            ad.run(_call("softmax", X, check=check))
    with pytest.raises(Unsupported, match="CPU only"):
        ad.run(_call("softmax", X, device="gpu"))
    with pytest.raises(Unsupported, match="no jit mode"):
        ad.run(_call("softmax", X, mode="jit"))
    for op in ("softmax_cross_entropy", "sparse_softmax_cross_entropy"):
        assert "scipy has no softmax cross-entropy" in ad.unsupported(op, "default", {})
    for op in ("softmax", "log_softmax", "logsumexp"):
        assert ad.unsupported(op, "default", {"where": [[True]]}) == f"scipy.special.{op} takes no mask (where=)"
        assert ad.unsupported(op, "default", {"scale": 2.0}) is None
    assert ad.unsupported("logsumexp", "default", {"b": [[1.0]], "return_sign": True}) is None
    assert "takes no b" in ad.unsupported("softmax", "default", {"b": [[1.0]]})
    assert set(API) == {("softmax", "default"), ("log_softmax", "default"), ("logsumexp", "default")}


def _case(cid, logits, labels=None, **options):
    raw = {"id": cid, "logits": logits, **options}
    if labels is not None:
        raw["labels"] = labels
    return K.parse_case(raw, file="<test>", index=0, family=None, base=ROOT)


def _run(case, op, fw="scipy", dtype="float64", check="forward", mode="eager", device="cpu"):
    s = Session(load_policy("standard"), Cache(None, enabled=False), [], None, timing_reps=0)
    cot = "ones" if check in ("grad", "grad2") else None
    return records.jsonable(s.run(Item(case, op, check, "default", fw, device, dtype, mode, cot)))


def test_the_run_records_skips_with_their_reasons():
    case = _case("t/seed", [[1.0, 2.0, 3.0]], [2])
    grad = _run(case, "log_softmax", check="grad")
    assert grad["status"] == "skip" and "scipy has no autodiff" in grad["message"]
    assert _run(case, "softmax", mode="jit")["message"] == "scipy has no jit mode"
    assert "CPU only" in _run(case, "softmax", device="gpu")["message"]
    loss = _run(case, "sparse_softmax_cross_entropy")
    assert loss["status"] == "skip" and "scipy has no softmax cross-entropy" in loss["message"]
    masked = _run(_case("t/where", [[1.0, 2.0, 3.0]], where=[[True, False, True]]), "softmax")
    assert masked["status"] == "skip" and masked["message"] == "scipy.special.softmax takes no mask (where=)"


def test_the_verdicts_of_the_run():
    ok = _run(_case("t/seed", [[1.0, 2.0, 3.0]]), "softmax", dtype="float32")
    assert ok["status"] == "pass" and ok["out_dtype"] == {"out": "float32"}
    bf = _run(_case("t/seed", [[1.0, 2.0, 3.0]]), "logsumexp", dtype="bfloat16")
    assert bf["status"] == "fail" and bf["dtype_ok"] is False and bf["out_dtype"] == {"out": "float64"}
    assert bf["n_bad"] == 0 and bf["output"]["out"] == [math.log(math.e + math.e ** 2 + math.e ** 3)]
    inf = _run(_case("t/posinf", [["inf", 0.0, 1.0]]), "softmax")
    assert inf["status"] == "fail" and inf["special"] == "nan_expected_finite"
    # 4100 equal bfloat16 logits: 1/256 for 1/4100 (300 give 1/256 for 1/300, within the budget of a
    # sum of 300 terms).
    stall = _run(_case("t/stall", [[0.0] * 4100]), "softmax", dtype="bfloat16")
    assert stall["status"] == "fail" and stall["n_bad"] == 4100  # a large record keeps its worst element
    assert stall["worst"]["got"] == 0.00390625 and stall["worst"]["rounded"] == 0.000244140625


# -- a wrong implementation fails where the real adapter passes -------------------------------------

class NaiveSoftmaxScipy(ScipyAdapter):
    """softmax as exp(x) / sum(exp(x)), without the max shift; log_softmax as log(softmax)."""

    name = "scipy-naive"

    def expression(self, call: Call) -> str:
        ax = call.axis
        if call.op == "softmax":
            return f"np.exp(x) / np.sum(np.exp(x), axis={ax}, keepdims=True)"
        if call.op == "log_softmax":
            return f"np.log(scipy.special.softmax(x, axis={ax}))"
        return super().expression(call)


@pytest.fixture
def naive(registered):
    return registered(NaiveSoftmaxScipy)


def test_a_wrong_implementation_fails_where_the_real_one_passes(naive):
    # float32 logits [1e4, 0, 1]: exp overflows without the shift (inf / inf = NaN); the softmax is
    # [1, e^-1e4, e^(1 - 1e4)], which rounds to [1, 0, 0].
    big = _case("t/big", [[1e4, 0.0, 1.0]])
    real = _run(big, "softmax", dtype="float32")
    wrong = _run(big, "softmax", naive, dtype="float32")
    assert real["status"] == "pass" and real["output"]["out"] == [[1.0, 0.0, 0.0]]
    assert wrong["status"] == "fail" and wrong["output"]["out"][0][0] == "nan"
    # float64 [1000, 1]: log_softmax is [0, -999]; log(softmax) is [0, -inf] (e^-999 underflows).
    wide = _case("t/wide", [[1000.0, 1.0]])
    real = _run(wide, "log_softmax")
    wrong = _run(wide, "log_softmax", naive)
    assert real["status"] == "pass" and real["output"]["out"] == [[0.0, -999.0]]
    assert wrong["status"] == "fail" and wrong["output"]["out"] == [[0.0, "-inf"]]
    # On a benign row both pass: the verdict tells them apart by the extreme case only.
    seed = _case("t/seed", [[1.0, 2.0, 3.0]])
    assert _run(seed, "softmax", naive)["status"] == _run(seed, "softmax")["status"] == "pass"
