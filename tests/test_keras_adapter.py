"""The Keras 3 adapters (harness/adapters/keras.py): keras-tensorflow, keras-jax, keras-torch.

Each runs its calls in a child process of its own whose KERAS_BACKEND is its backend; these tests
check the values it returns against closed forms, that the child really has its backend while
this process's keras (tf.keras) keeps TensorFlow's, that a repro snippet replays bit for bit in a
fresh interpreter, that a wrong softmax fails where the real one passes, and that what the child
raises (Unsupported, a framework's error, its death) arrives here as what it is.

Nothing here imports keras in the test process: that would fix its backend for the session.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

from harness import adapters as A
from harness import cases as K
from harness.adapters import keras as KA
from harness.adapters.base import Call, Unsupported
from harness.cache import Cache
from harness.policy import load as load_policy
from harness.runner import Item, Session
from tests.replaying import assert_replays

ROOT = Path(__file__).resolve().parent.parent
BACKENDS = {"keras-tensorflow": "tensorflow", "keras-jax": "jax", "keras-torch": "torch"}


def _need(fw: str) -> None:
    ok, why = A.get(fw).available()
    if not ok:
        pytest.skip(why)


@pytest.fixture(params=list(BACKENDS), ids=list(BACKENDS), scope="module")
def fw(request):
    """A backend; module-scoped, so that pytest runs each backend's tests together: a process
    holds one Keras child at a time, and interleaved backends started one (5-8 s) per test."""
    _need(request.param)
    return request.param


X = np.array([[1.0, 2.0, 3.0], [0.5, -1.0, 2.0]])
Y_DENSE = np.array([[0.0, 0.0, 1.0], [0.5, 0.5, 0.0]])
Y_SPARSE = np.array([2, 0])


def _lse(x: np.ndarray, axis: int = -1) -> np.ndarray:
    m = x.max(axis=axis, keepdims=True)
    return (m + np.log(np.exp(x - m).sum(axis=axis, keepdims=True))).squeeze(axis)


def _softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.exp(x - np.expand_dims(_lse(x, axis), axis))


def _call(op, check="forward", variant="default", dtype="float64", x=X, labels=None, axis=-1, options=None,
          device="cpu") -> Call:
    npd = np.dtype(ml_dtypes.bfloat16) if dtype == "bfloat16" else np.dtype(dtype)
    g = None
    if check == "grad":
        shape = x.shape if op in ("softmax", "log_softmax") else tuple(n for i, n in enumerate(x.shape)
                                                                        if i != axis % x.ndim)
        g = np.ones(shape).astype(npd)
    if labels is not None and labels.dtype.kind == "f":
        labels = labels.astype(npd)
    return Call(op, check, variant, x.astype(npd), labels, axis, g, dtype, device, "eager", options=options or {})


def test_forward_values_against_closed_forms(fw):
    ad = A.get(fw)
    lse = _lse(X)
    expect = {
        "softmax": (_softmax(X), None),
        "log_softmax": (X - lse[:, None], None),
        "logsumexp": (lse, None),
        "softmax_cross_entropy": ((Y_DENSE * (lse[:, None] - X)).sum(-1), Y_DENSE),
        "sparse_softmax_cross_entropy": (lse - X[[0, 1], Y_SPARSE], Y_SPARSE),
    }
    for op, (want, y) in expect.items():
        variant = "dtype" if "cross_entropy" in op else "default"  # float64 throughout
        out = ad.run(_call(op, variant=variant, labels=y))
        assert out.dtypes == {"out": "float64"}, (op, out.dtypes)
        np.testing.assert_allclose(out.arrays["out"], want, rtol=1e-14, atol=1e-15, err_msg=op)
    # The loss as users construct it computes in floatx (float32), whatever the input.
    out = ad.run(_call("sparse_softmax_cross_entropy", labels=Y_SPARSE))
    assert out.dtypes == {"out": "float32"}
    np.testing.assert_allclose(out.arrays["out"], lse - X[[0, 1], Y_SPARSE], rtol=2 ** -22)  # float32's accuracy
    assert np.array_equal(out.arrays["out"], out.arrays["out"].astype(np.float32))  # float32 values


def test_gradients_through_the_backends_autodiff(fw):
    ad = A.get(fw)
    s = _softmax(X)
    out = ad.run(_call("sparse_softmax_cross_entropy", "grad", "dtype", labels=Y_SPARSE))
    np.testing.assert_allclose(out.arrays["d_logits"], s - np.eye(3)[Y_SPARSE], rtol=1e-13, atol=1e-15)
    out = ad.run(_call("softmax_cross_entropy", "grad", "dtype", labels=Y_DENSE))
    np.testing.assert_allclose(out.arrays["d_logits"], s * Y_DENSE.sum(-1, keepdims=True) - Y_DENSE, rtol=1e-13,
                               atol=1e-15)
    np.testing.assert_allclose(out.arrays["d_labels"], _lse(X)[:, None] - X, rtol=1e-14)
    out = ad.run(_call("logsumexp", "grad"))  # d lse / dx = softmax
    np.testing.assert_allclose(out.arrays["d_logits"], s, rtol=1e-14)
    # A float64 input to the floatx loss: the cotangent is cast to the output's float32, the gradient
    # comes back in the input's dtype with float32's values.
    out = ad.run(_call("sparse_softmax_cross_entropy", "grad", labels=Y_SPARSE))
    assert out.dtypes["d_logits"] == "float64"
    np.testing.assert_allclose(out.arrays["d_logits"], s - np.eye(3)[Y_SPARSE], rtol=1e-6, atol=1e-7)


def test_class_axis_not_last(fw):
    """Sparse loss on axis 0: moved last, as Keras users do (its TF and JAX backends take only -1)."""
    ad = A.get(fw)
    xt = X.T.copy()  # classes on axis 0
    out = ad.run(_call("sparse_softmax_cross_entropy", variant="dtype", x=xt, labels=Y_SPARSE, axis=0))
    np.testing.assert_allclose(out.arrays["out"], _lse(X) - X[[0, 1], Y_SPARSE], rtol=1e-14)
    out = ad.run(_call("softmax", x=xt, axis=0))
    np.testing.assert_allclose(out.arrays["out"], _softmax(X).T, rtol=1e-14)


def test_the_child_has_its_backend_and_the_parents_tf_keras_keeps_tensorflow(tmp_path):
    """In a fresh process that uses tf.keras first (keras on TensorFlow), every Keras adapter's child
    reports its own backend, and this process's keras still says tensorflow."""
    wanted = [fw for fw in BACKENDS if A.get(fw).available()[0]]
    if not wanted or importlib.util.find_spec("tensorflow") is None:
        pytest.skip("needs tensorflow and keras")
    script = tmp_path / "backends.py"
    script.write_text(textwrap.dedent(f"""
        import json
        import numpy as np
        import tensorflow as tf

        def main():
            layer = tf.keras.layers.Softmax()  # keras imported here, on TensorFlow
            from harness import adapters as A
            from harness.adapters.base import Call
            out = {{}}
            for fw in {wanted!r}:
                ad = A.get(fw)
                call = Call("softmax", "forward", "default", np.array([[0.0, 1.0]]), None, -1, None,
                            "float64", "cpu", "eager")
                r = ad.run(call)
                out[fw] = [ad.backend_of_child(), ad.versions().get("keras_backend"), r.arrays["out"].tolist()]
            import keras
            out["parent"] = [keras.backend.backend(), float(layer(tf.constant([[0.0, 1.0]]))[0, 1])]
            print("RESULT" + json.dumps(out))

        if __name__ == "__main__":
            main()
        """))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(ROOT))
    env.pop("KERAS_BACKEND", None)
    p = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=600)
    line = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULT")]
    assert line, p.stderr[-3000:]
    out = json.loads(line[-1][len("RESULT"):])
    e = np.exp(1.0) / (1 + np.exp(1.0))
    for fw in wanted:
        assert out[fw][:2] == [BACKENDS[fw]] * 2, out
        np.testing.assert_allclose(out[fw][2], [[1 - e, e]], rtol=1e-15)
    assert out["parent"][0] == "tensorflow"
    assert abs(out["parent"][1] - e) < 1e-6


def test_versions_name_keras_and_the_backend(fw):
    v = A.get(fw).versions()
    assert list(v)[0] == "keras" and v["keras"].startswith("3.")
    assert v["keras_backend"] == BACKENDS[fw] and BACKENDS[fw] in v


def test_the_run_header_leaves_no_child_behind():
    """The header's questions (versions, devices, determinism settings) start the child; the run's
    main process, which never runs a call, does not keep it (1-3 GB) for the whole run."""
    _need("keras-torch")
    ad = A.get("keras-torch")
    ad.close()
    m = A.meta("keras-torch")
    assert m["versions"]["keras_backend"] == "torch" and m["devices"]["cpu"]
    assert ad._child is None or ad._child.proc is None
    np.testing.assert_allclose(ad.run(_call("logsumexp")).arrays["out"], _lse(X), rtol=1e-14)  # a fresh one


def test_repro_prints_exactly_the_adapters_output(fw):
    ad = A.get(fw)
    calls = [_call("softmax", dtype="bfloat16", x=np.array([[1.0, 2.0, 3.0], [100.0, 0.5, -3.0]])),
             _call("sparse_softmax_cross_entropy", "grad", "default", "float16", labels=Y_SPARSE),
             _call("softmax_cross_entropy", "grad", "dtype", "float32", labels=Y_DENSE)]
    for src in assert_replays(ad, calls):
        assert src.startswith(f'import os\nos.environ["KERAS_BACKEND"] = "{BACKENDS[fw]}"\nimport keras\n'), src


# -- a wrong implementation fails where the real one passes -------------------------------------

_NAIVE = "keras.ops.exp(x) / keras.ops.sum(keras.ops.exp(x), axis={axis}, keepdims=True)"


class NaiveKerasTorch(KA.KerasTorchAdapter):
    name = "keras-torch-naive"
    api = {**KA.API, ("softmax", "default"): _NAIVE}


class NaiveKerasJax(KA.KerasJaxAdapter):
    name = "keras-jax-naive"
    api = {**KA.API, ("softmax", "default"): _NAIVE}


class NaiveKerasTensorFlow(KA.KerasTensorFlowAdapter):
    name = "keras-tensorflow-naive"
    api = {**KA.API, ("softmax", "default"): _NAIVE}

    def die(self) -> None:  # called in the child by test_a_child_that_dies_is_an_error_and_replaced
        os._exit(3)


NAIVE = {"keras-torch": NaiveKerasTorch, "keras-jax": NaiveKerasJax, "keras-tensorflow": NaiveKerasTensorFlow}


def _session() -> Session:
    return Session(load_policy("standard"), Cache(None, enabled=False), [], None, timing_reps=0)


def _case(raw: dict):
    return K.parse_case({"id": "t/keras", **raw}, file="<test>", index=0, family=None, base=ROOT)


def test_a_naive_softmax_fails_where_keras_passes(fw, registered):
    case = _case({"logits": [[1000.0, 0.0, -1000.0], [1.0, 2.0, 3.0]]})
    naive = registered(NAIVE[fw])
    s = _session()
    good = s.run(Item(case, "softmax", "forward", "default", fw, "cpu", "float32", "eager"))
    bad = s.run(Item(case, "softmax", "forward", "default", naive, "cpu", "float32", "eager"))
    assert good["status"] == "pass", good
    assert bad["status"] == "fail" and bad["special"] == "nan_expected_finite", bad
    assert np.isnan(bad["output"]["out"][0][0])  # exp(1000) = inf, inf / inf
    np.testing.assert_allclose(bad["output"]["out"][1], _softmax(np.array([1.0, 2.0, 3.0])), rtol=1e-6)  # ordinary row
    np.testing.assert_allclose(good["output"]["out"][0], [1.0, 0.0, 0.0])  # exp(-1000) underflows to 0 in float32


# -- what the child raises arrives as what it is ---------------------------------------------

def test_unsupported_crosses_the_process_boundary_as_a_skip(fw):
    ad = A.get(fw)
    with pytest.raises(Unsupported, match="takes no weights"):  # render() raises it in the child
        ad.run(_call("sparse_softmax_cross_entropy", labels=Y_SPARSE, options={"weights": [1.0, 2.0, 3.0]}))
    if ad.devices().get("gpu") is None:
        with pytest.raises(Unsupported):  # check_device() in the child
            ad.run(_call("softmax", device="gpu"))
    case = _case({"logits": [[1.0, 2.0, 3.0]], "labels": [1], "weights": [1.0, 2.0, 3.0]})
    rec = _session().run(Item(case, "sparse_softmax_cross_entropy", "forward", "default", fw, "cpu", "float32",
                              "eager"))
    assert rec["status"] == "skip" and "takes no weights" in rec["message"], rec
    case = _case({"logits": [[1.0, 2.0, 3.0]], "labels": [1], "label_smoothing": 0.1})
    rec = _session().run(Item(case, "sparse_softmax_cross_entropy", "forward", "default", fw, "cpu", "float32",
                              "eager"))
    assert rec["status"] == "skip" and "takes no label_smoothing" in rec["message"], rec


def test_a_framework_error_keeps_its_type_module_and_message():
    _need("keras-tensorflow")
    case = _case({"op": "sparse_softmax_cross_entropy", "logits": [[2.0, 1.5, 0.1]], "labels": [7]})
    rec = _session().run(Item(case, "sparse_softmax_cross_entropy", "forward", "default", "keras-tensorflow",
                              "cpu", "float32", "eager"))
    assert rec["error_type"] == "InvalidArgumentError" and rec["error_origin"] == "framework", rec
    assert "Received a label value of 7" in rec["message"], rec["message"]
    assert rec["status"] == "pass" and rec["invalid_handling"] == "raised"  # invalid input: raising conforms
    with pytest.raises(Exception) as ei:
        A.get("keras-tensorflow").run(_call("sparse_softmax_cross_entropy", labels=np.array([7, 0])))
    assert type(ei.value).__name__ == "InvalidArgumentError"
    assert type(ei.value).__module__.startswith("tensorflow")
    assert "child_traceback" in vars(ei.value)


def test_framework_warnings_are_recorded():
    """Keras warns on a single class (C = 1); the warning, emitted in the child, is the record's."""
    _need("keras-torch")
    case = _case({"op": "softmax_cross_entropy", "logits": [[1.5], [0.5]], "labels": [[1.0], [1.0]]})
    rec = _session().run(Item(case, "softmax_cross_entropy", "forward", "default", "keras-torch", "cpu",
                              "float32", "eager"))
    assert any(w.startswith("SyntaxWarning:") and "binary_crossentropy" in w for w in rec["framework_warnings"]), rec


def test_a_child_that_dies_is_an_error_and_replaced(registered):
    _need("keras-tensorflow")
    ad = A.get(registered(NaiveKerasTensorFlow))
    ad.run(_call("logsumexp"))
    first = ad._child.proc.pid
    with pytest.raises(KA.KerasChildError, match=r"died \(exit code 3\) during die.*fresh one"):
        ad.remote("die")
    out = ad.run(_call("logsumexp"))  # a fresh child
    np.testing.assert_allclose(out.arrays["out"], _lse(X), rtol=1e-14)
    assert ad._child.proc.pid != first
    ad._child.proc.kill()  # killed between calls: the next call starts another, silently
    ad._child.proc.join(5)
    np.testing.assert_allclose(ad.run(_call("logsumexp")).arrays["out"], _lse(X), rtol=1e-14)


def test_thread_count_workers_are_the_keras_child_themselves():
    """harness.threads imports the adapter by name in a fresh process with the thread settings and the
    adapter's process_env (KERAS_BACKEND and the child marker): the Keras adapter there runs the calls
    itself, under its backend and those threads, and starts no child of its own (a grandchild per
    worker held a second copy of the backend)."""
    _need("keras-torch")
    from harness import threads as T

    w = T.worker("keras-torch", 1)
    out, raised = w.run(_call("softmax"))
    assert raised is None, raised
    np.testing.assert_allclose(out.arrays["out"], _softmax(X), rtol=1e-15)
    assert w.in_force["torch.get_num_threads"] == 1, w.in_force
    kids = subprocess.run(["ps", "-o", "pid=", "--ppid", str(w.proc.pid)], capture_output=True, text=True).stdout
    assert kids.split() == [], f"the thread worker started a child: {kids}"


def test_one_backends_child_at_a_time():
    """A process holds one Keras child at a time (each holds its backend, 1-3 GB): the next backend's
    first call ends the last one's child; calling it again starts a fresh one."""
    for f in ("keras-torch", "keras-jax"):
        _need(f)
    torch_ad, jax_ad = A.get("keras-torch"), A.get("keras-jax")
    torch_ad.run(_call("softmax"))
    first = torch_ad._child.proc
    assert first.is_alive()
    out = jax_ad.run(_call("softmax"))
    np.testing.assert_allclose(out.arrays["out"], _softmax(X), rtol=1e-6)
    first.join(10)
    assert not first.is_alive() and jax_ad._child.proc.is_alive()
    out = torch_ad.run(_call("log_softmax"))
    np.testing.assert_allclose(out.arrays["out"], np.log(_softmax(X)), rtol=1e-14)
    assert torch_ad._child.proc is not first and not jax_ad._child.proc


def test_modes_variants_and_availability(monkeypatch):
    ad = A.get("keras-torch")
    assert ad.modes == ("eager",)
    assert ad.variants_for("sparse_softmax_cross_entropy") == ("default", "dtype")
    assert ad.variants_for("softmax") == ("default",)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "keras" else real(n, *a))
    assert ad.available() == (False, "keras is not installed (pip install -e '.[keras]')")
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "jax" else real(n, *a))
    ok, why = A.get("keras-jax").available()
    assert not ok and "jax" in why and ".[jax]" in why


def test_the_dtype_variant_rounds_large_labels_in_bfloat16(fw):
    """SparseCategoricalCrossentropy(dtype='bfloat16') converts the integer labels to bfloat16 (Loss.__call__
    converts y_true to the loss's dtype): label 4098 becomes class 4096 (bfloat16 has 8 significant
    bits), so the loss is that of another class; the default (float32) loss is right."""
    ad = A.get(fw)
    C = 4099
    x = np.zeros((1, C))
    x[0, 4098] = 8.0  # the labelled class stands out: its loss is small, class 4096's is not
    y = np.array([4098])
    exact = np.log(C - 1 + np.exp(8.0)) - 8.0  # 0.8648820
    wrong = np.log(C - 1 + np.exp(8.0))  # class 4096's loss, 8.8648820
    right = ad.run(_call("sparse_softmax_cross_entropy", "forward", "default", "bfloat16", x=x, labels=y))
    np.testing.assert_allclose(right.arrays["out"], [exact], rtol=1e-5)
    bad = ad.run(_call("sparse_softmax_cross_entropy", "forward", "dtype", "bfloat16", x=x, labels=y))
    np.testing.assert_allclose(bad.arrays["out"], [wrong], rtol=2 ** -7)
