"""Records name the program that served them (issue 19): the digest of the source the adapter
compiled or traced once and reused, and whether the call was that program's first in the
process. Cases of different shapes share a program; another dtype, mode or check is another."""

import numpy as np
import pytest

from harness import adapters as A
from harness import cases as K
from harness.cache import Cache
from harness.policy import load as load_policy
from harness.runner import Item, Session

FW = next((f for f in ("torch", "jax", "tensorflow") if A.get(f).available()[0]), None)
pytestmark = pytest.mark.skipif(FW is None, reason="needs torch, JAX or TensorFlow")


def case(cid, shape):
    x = np.arange(np.prod(shape), dtype=np.float64).reshape(shape) / 7
    return K.Case(cid, ["log_softmax"], x, None, -1, ["float32", "float64"], True, source="<test>")


def test_records_name_the_program_and_its_first_call(tmp_path):
    A._cache.pop(FW, None)  # a fresh adapter: no program used yet in it
    s = Session(load_policy("standard"), Cache(tmp_path / "cache"), [], None, 0)

    def run(c, dtype="float32", check="forward", mode="eager"):
        cot = "ones" if check != "forward" else None
        return s.run(Item(c, "log_softmax", check, "default", FW, "cpu", dtype, mode, cot))

    a, b = case("p/a", (2, 5)), case("p/b", (3, 9))
    ra, rb = run(a), run(b)
    assert ra["status"] == rb["status"] == "pass"
    assert ra["program"] == rb["program"] and len(ra["program"]) == 12
    assert ra["program_new"] is True and rb["program_new"] is False  # one program for both shapes
    r64 = run(a, "float64")
    rg = run(a, check="grad")
    assert len({ra["program"], r64["program"], rg["program"]}) == 3  # a dtype, a check: other programs
    assert r64["program_new"] is True and rg["program_new"] is True
    assert run(b, "float64")["program_new"] is False
