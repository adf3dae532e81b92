"""The public API (harness.exact, harness.assert_conforms, cases_for, the `conformance` fixture,
`--framework module:function`): real values against mpmath, wrong kernels rejected with the
failing results listed, right ones accepted, bad arguments refused by name."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import mpmath
import numpy as np
import pytest

import harness
from harness import Failure, assert_conforms, cases_for, exact
from harness.errors import HarnessInputError

ROOT = Path(__file__).resolve().parent.parent
torch = pytest.importorskip("torch")


def _mp_softmax(row, prec=200):
    with mpmath.workprec(prec):
        e = [mpmath.exp(mpmath.mpf(float(v))) for v in row]
        s = mpmath.fsum(e)
        return [x / s for x in e]


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_exact_softmax_is_mpmath_correctly_rounded(dtype):
    rng = np.random.default_rng(3)
    x = (rng.normal(0, 4, (5, 7))).astype(dtype)
    got = exact("softmax", x)
    assert got.dtype == np.dtype(dtype) and got.shape == x.shape
    for i in range(5):
        want = [np.dtype(dtype).type(float(v)) for v in _mp_softmax(x[i])]  # float of a 200-bit value, then rounded
        np.testing.assert_array_equal(got[i], np.array(want, dtype=dtype))


def test_exact_takes_torch_jax_and_bfloat16_and_the_gradient():
    import ml_dtypes

    t = torch.tensor([[20.0, 0.0, 0.0]], dtype=torch.bfloat16)
    got = exact("sparse_softmax_cross_entropy", t, torch.tensor([0]))
    assert got.dtype == ml_dtypes.bfloat16
    with mpmath.workprec(200):
        ce = mpmath.log1p(2 * mpmath.exp(-20))  # 4.1223072e-9
    assert float(got[0]) == float(np.array(float(ce), dtype=ml_dtypes.bfloat16))
    # d/dx of the CE: softmax - onehot, times the cotangent (ones): [-2e^-20/(1+2e^-20), e^-20/(..), ..]
    g = exact("sparse_softmax_cross_entropy", np.array([[20.0, 0.0, 0.0]], np.float64), np.array([0]), check="grad")
    with mpmath.workprec(200):
        p1 = mpmath.exp(-20) / (1 + 2 * mpmath.exp(-20))
    assert g[0, 1] == float(p1) and g[0, 0] == float(-2 * p1)
    hi, lo = exact("log_softmax", np.array([1.0, 2.0], np.float32), certified=True)
    with mpmath.workprec(300):
        want = 1 - mpmath.log(mpmath.e + mpmath.e ** 2)
    with mpmath.workprec(300):
        assert lo[0] != 0 and abs((mpmath.mpf(hi[0]) + mpmath.mpf(lo[0]) - want) / want) < mpmath.mpf(2) ** -93


def test_exact_options_and_several_outputs():
    out = exact("logsumexp", np.array([[0.0, 0.0, 0.0]]), b=[[1.0, -3.0, 1.0]], return_sign=True)
    assert set(out) == {"out", "sign"} and out["sign"][0] == -1.0 and out["out"][0] == 0.0  # log|1 - 3 + 1| = 0
    smooth = exact("sparse_softmax_cross_entropy", np.array([[0.0, 0.0]]), np.array([0]), label_smoothing=0.5)
    assert smooth[0] == float(np.log(2))  # uniform logits: every target row costs log 2


def test_exact_refuses_bad_arguments_by_name():
    with pytest.raises(HarnessInputError, match="field 'op'.*valid: softmax"):
        exact("sofmax", np.array([1.0, 2.0]))
    with pytest.raises(HarnessInputError, match="field 'logits'"):
        exact("softmax", np.array([1, 2]))
    with pytest.raises(HarnessInputError, match="label_smoothing"):
        exact("sparse_softmax_cross_entropy", np.array([[1.0, 2.0]]), np.array([0]), label_smoothing=2.0)


def _textbook(x, dim=-1):
    e = torch.exp(x)
    return e / e.sum(dim=dim, keepdim=True)


def _right(x, dim=-1):
    return torch.softmax(x, dim=dim)


def _off_by_8_ulp(x, dim=-1):  # a subtle wrong kernel: every output 8 ULP up (the budget is 2 ULP + conditioning)
    s = torch.softmax(x, dim=dim)
    for _ in range(8):
        s = torch.nextafter(s, torch.full_like(s, 2.0))
    return s


#: Accepted: NaN where the logits hold +inf (the exact answer is a limit), as torch.softmax gives;
#: `inputs` keeps it from excusing a NaN of finite logits (the textbook softmax's overflow).
INF = [{"id": "limits", "description": "NaN at +inf logits, as torch.softmax", "inputs": ["pos_inf"],
        "special": ["nan_expected_finite", "finite_expected_nan"]}]


def test_assert_conforms_accepts_a_right_kernel_and_returns_the_records():
    recs = assert_conforms(_right, "softmax", framework="torch", dtypes=["float32"], known=INF)
    assert {r["framework"] for r in recs} == {"torch:_right"}
    assert sum(r["status"] == "pass" for r in recs) > 50
    assert all(r["status"] in ("pass", "skip") or r["known"]["id"] == "limits" for r in recs)


@pytest.mark.parametrize("fn,where", [(_textbook, "extreme/big_1e4"), (_off_by_8_ulp, "seed/")])
def test_assert_conforms_rejects_wrong_kernels_naming_the_results(fn, where):
    with pytest.raises(Failure) as e:
        assert_conforms(fn, "softmax", framework="torch", dtypes=["float32"], known=INF)
    msg = str(e.value)
    assert isinstance(e.value, AssertionError) and "does not conform on softmax" in msg
    assert where in msg and "repro of the first:" in msg
    bad = [r for r in e.value.records if r["status"] == "fail" and not r.get("known")]
    assert bad and all(r["dtype"] == "float32" for r in bad)


def _in_float32(x, dim=-1):  # a float64 kernel with no double path: float32 arithmetic, float64 returned
    return torch.softmax(x.float(), dim=dim).double()


def _in_bfloat16(x, dim=-1):  # the same symptoms, in bfloat16
    return torch.softmax(x.to(torch.bfloat16), dim=dim).double()


def test_a_known_entry_with_a_model_accepts_what_the_kernel_computes_and_nothing_worse():
    """`model`: the entry excuses a float64 kernel's values only within float32's budget of the
    float32-rounded logits; a kernel that computes in bfloat16 has the same symptom and fails."""
    f32 = [{"id": "in-float32", "description": "computes in float32", "dtypes": ["float64"], "special": ["match"],
            "model": {"dtype": "float32", "rounds": ["logits"]}}]
    recs = assert_conforms(_in_float32, "softmax", framework="torch", dtypes=["float64"], case_filter="seed/*",
                           checks=["forward"], known=f32)
    known = [r for r in recs if r.get("known")]
    assert known and all(r["known"]["models"]["in-float32"]["holds"] for r in known)
    assert min(r["max_ulp"] for r in known) > 1e3  # float64 ULPs: the entry is needed
    with pytest.raises(Failure, match="7 of 8 results fail") as e:
        assert_conforms(_in_bfloat16, "softmax", framework="torch", dtypes=["float64"], case_filter="seed/*",
                        checks=["forward"], known=f32)
    bad = [r for r in e.value.records if r["status"] == "fail"]
    assert len(bad) == 7 and all(not r.get("known") and "its model (the exact result of logits rounded to float32, "
                                 "within float32's budget) does not hold" in r["message"] for r in bad)


def test_a_known_entry_that_matches_nothing_warns_and_a_call_that_checks_nothing_raises():
    with pytest.warns(UserWarning, match="matched no result: nothing-here"):
        assert_conforms(_right, "softmax", framework="torch", dtypes=["float64"], case_filter="seed/*", checks=["forward"],
                        known=[{"id": "nothing-here", "description": "d", "cases": ["no/such"]}])
    with pytest.raises(Failure, match="nothing was checked"):
        assert_conforms(_right, "softmax", framework="torch", case_filter="no-such-case")
    with pytest.raises(HarnessInputError, match="valid: torch, jax, tensorflow"):
        assert_conforms(_right, "softmax", framework="numpy")


def test_options_reach_the_function_and_a_function_without_one_is_a_skip():
    seen = []

    def smooth_ce(x, y, label_smoothing=0.0):
        seen.append(label_smoothing)
        return torch.nn.functional.cross_entropy(x, y, reduction="none", label_smoothing=label_smoothing)

    recs = assert_conforms(smooth_ce, "sparse_softmax_cross_entropy", framework="torch", dtypes=["float64"],
                           case_filter="seed/*", checks=["forward"], label_smoothing=0.25)
    assert set(seen) == {0.25} and any(r["status"] == "pass" for r in recs)
    recs = assert_conforms(lambda x, y: torch.nn.functional.cross_entropy(x, y, reduction="none"),
                           "sparse_softmax_cross_entropy", framework="torch", dtypes=["float64"],
                           case_filter="label_smoothing/*,seed/*", cases="default", checks=["forward"])
    smoothed = [r for r in recs if r["case_id"].startswith("label_smoothing/")]
    assert smoothed and all(r["status"] == "skip" and "takes no label_smoothing" in r["message"] for r in smoothed)
    other_axis = [r for r in recs if r["case_id"] == "seed/classic_axis0"]  # no axis keyword: last axis only
    assert other_axis and all(r["status"] == "skip" and "takes no axis or dim" in r["message"] for r in other_axis)


def test_cases_for_arrays_and_parametrize():
    rows = [np.array([[1.0, 2.0, 3.0]], np.float32), np.array([[0.0, 1.0]], np.float16)]
    cs = cases_for("softmax", rows)
    assert [c.id for c in cs] == ["given/0", "given/1"] and cs[1].dtypes == ["float16"]
    recs = assert_conforms(_right, "softmax", framework="torch", cases=rows)
    assert {r["dtype"] for r in recs} == {"float32", "float16"}
    assert cases_for("softmax", case_filter="seed/*") and all(c.id.startswith("seed/") for c in
                                                             cases_for("softmax", case_filter="seed/*"))


def test_the_public_names_import_lazily():
    """`import harness` (which the pytest plugin does in every project) imports no numpy."""
    out = subprocess.run([sys.executable, "-c", "import sys, harness; print('numpy' in sys.modules); "
                          "from harness import exact; print('numpy' in sys.modules)"],
                         capture_output=True, text=True, cwd=ROOT)
    assert out.stdout.split() == ["False", "True"], out.stderr
    assert set(harness.__all__) == {"exact", "assert_conforms", "cases_for", "Failure"}


def test_conformance_fixture(conformance):
    assert conformance is assert_conforms


def test_cli_framework_module_function(tmp_path):
    (tmp_path / "mykernels.py").write_text("import torch\n\ndef softmax(x, dim=-1):\n"
                                           "    e = torch.exp(x)\n    return e / e.sum(dim=dim, keepdim=True)\n")
    env = dict(os.environ, PYTHONPATH=str(tmp_path), HARNESS_CACHE_DIR=str(tmp_path / "cache"),
               TF_CPP_MIN_LOG_LEVEL="3")
    res = tmp_path / "r.jsonl"
    base = [sys.executable, "-m", "harness", "run", "--framework", "mykernels:softmax", "--case-filter", "extreme/big_1e4",
            "--dtype", "float32", "--mode", "eager", "--results", str(res), "--timing-reps", "0", "-q", "--jobs", "1"]
    p = subprocess.run(base + ["--op", "softmax"], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert p.returncode == 1, p.stderr  # the textbook softmax overflows at logits of 1e4
    recs = [json.loads(line) for line in res.read_text().splitlines()]
    fails = [r for r in recs if r.get("status") == "fail"]
    assert fails and all(r["framework"] == "mykernels:softmax" for r in fails)
    assert "from mykernels import softmax as user_fn" in fails[0]["repro"]
    p = subprocess.run(base, capture_output=True, text=True, cwd=tmp_path, env=env)
    assert p.returncode == 2 and "implements one op" in p.stderr
    p = subprocess.run(base[:5] + ["nosuch:fn"] + base[6:] + ["--op", "softmax"], capture_output=True, text=True,
                       cwd=tmp_path, env=env)
    assert p.returncode == 2 and "module 'nosuch' cannot be imported" in p.stderr and "Traceback" not in p.stderr


@pytest.mark.parametrize("fw", ["jax", "tensorflow"])
def test_exact_takes_jax_and_tensorflow_arrays(fw):
    """The same exact values in any framework's array give the same answer, in that dtype."""
    mod = pytest.importorskip(fw)
    vals = [[0.5, -3.25, 7.0]]
    if fw == "jax":
        x = mod.numpy.asarray(vals, dtype=mod.numpy.bfloat16)
    else:
        x = mod.cast(mod.constant(vals, dtype=mod.float64), mod.bfloat16)
    import ml_dtypes

    got = exact("log_softmax", x)
    want = exact("log_softmax", np.asarray(vals, dtype=ml_dtypes.bfloat16))
    assert got.dtype == ml_dtypes.bfloat16 and np.array_equal(got.astype(np.float64), want.astype(np.float64))
    with mpmath.workprec(200):
        e = [mpmath.exp(mpmath.mpf(v)) for v in vals[0]]
        ls = mpmath.mpf(vals[0][1]) - mpmath.log(mpmath.fsum(e))
    assert float(got[0, 1]) == float(np.asarray(float(ls), dtype=ml_dtypes.bfloat16))
