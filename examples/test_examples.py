"""The examples under test, through the public API only (`from harness import ...`): each test
passes or fails as its kernel's docstring says. Run from anywhere the package is installed:

    python -m pytest examples/ -q

(tests/test_examples.py runs them from a temporary directory, outside the repository.)
"""

from __future__ import annotations

import numpy as np
import pytest

from harness import Failure, assert_conforms, cases_for, exact

torch = pytest.importorskip("torch")

#: Rows holding +inf logits: the exact answer is a limit (docs/semantics.md); these kernels, like
#: the frameworks' own, give NaN there. Declared, with the reason, instead of hidden.
INF_ROWS = [{"id": "nan-at-pos-inf-logits", "inputs": ["pos_inf"],
             "special": ["nan_expected_finite", "finite_expected_nan"],
             "description": "NaN where a row holds +inf logits: the exact answer is a limit (docs/semantics.md); "
                            "the kernel computes exp(inf - inf), as the frameworks' own kernels do"}]


def test_exact_is_the_correctly_rounded_answer():
    x = np.array([[1.0, 2.0, 3.0]], dtype=np.float32)
    e = np.exp(np.array([1.0, 2.0, 3.0]))
    assert exact("softmax", x).dtype == np.float32
    np.testing.assert_array_equal(exact("softmax", x), (e / e.sum()).astype(np.float32)[None])
    hi, lo = exact("softmax", x, certified=True)
    assert abs(hi[0, 0] - e[0] / e.sum()) < 1e-16
    # The confident row every float32 framework returns 0 for: log1p(2 e^-20) = 4.1223072e-09.
    assert exact("sparse_softmax_cross_entropy", np.array([[20.0, 0.0, 0.0]], np.float32), np.array([0]))[0] == \
        np.float32(4.122307236380e-9)


def test_chunked_cross_entropy_conforms():
    from chunked_ce import chunked_cross_entropy

    recs = assert_conforms(chunked_cross_entropy, "sparse_softmax_cross_entropy", framework="torch", known=INF_ROWS)
    assert sum(r["status"] == "pass" for r in recs) > 300


def test_chunked_cross_entropy_lse_first_is_rejected():
    from chunked_ce import chunked_cross_entropy_lse_first

    with pytest.raises(Failure) as e:
        assert_conforms(chunked_cross_entropy_lse_first, "sparse_softmax_cross_entropy", framework="torch",
                        known=INF_ROWS, dtypes=["float32"])
    msg = str(e.value)
    assert "extreme/big_1e4" in msg and "exact 1.09861229, got 1.09863281" in msg  # log(3), 172 ULP away
    assert "extreme/huge_1e30" in msg  # the loss is 0 there


def test_online_softmax_conforms_and_its_gradient_too():
    from online_softmax import online_softmax

    assert_conforms(online_softmax, "softmax", framework="torch", known=INF_ROWS)


def test_online_softmax_accumulating_in_bfloat16_fails_strict():
    """One bfloat16 row of 8192 classes: float32 accumulation is within 2 ULP; accumulating in
    the input dtype is not, which `strict` (no allowance for the sum's error) rejects."""
    import ml_dtypes
    from online_softmax import online_softmax, online_softmax_input_dtype

    row = np.random.default_rng(5).normal(0, 3, (2, 8192)).astype(ml_dtypes.bfloat16)
    assert_conforms(online_softmax, "softmax", framework="torch", cases=[row], checks=["forward"], policy="strict")
    with pytest.raises(Failure, match="does not conform on softmax"):
        assert_conforms(online_softmax_input_dtype, "softmax", framework="torch", cases=[row], checks=["forward"],
                        policy="strict")


def test_naive_softmax_is_rejected_with_a_readable_message():
    from naive_softmax import naive_softmax

    with pytest.raises(Failure) as e:
        assert_conforms(naive_softmax, "softmax", framework="torch", dtypes=["float32"], checks=["forward"])
    msg = str(e.value)
    assert msg.startswith("torch:naive_softmax does not conform on softmax")
    assert "extreme/big_1e4" in msg and "got nan (nan_expected_finite" in msg
    assert "repro of the first:" in msg and "from naive_softmax import naive_softmax as user_fn" in msg


@pytest.mark.parametrize("case", cases_for("log_softmax", case_filter="seed/*"), ids=lambda c: c.id)
def test_jax_custom_vjp_log_softmax_per_case(case):
    """One test id per case of your own suite: the parametrization helper."""
    pytest.importorskip("jax")
    from jax_log_softmax import log_softmax

    assert_conforms(log_softmax, "log_softmax", framework="jax", cases=[case])
