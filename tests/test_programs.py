"""Records name the program that served them (issue 19): the digest of the source the adapter
compiled or traced once and reused, and whether the call was that program's first in the
process. Cases of different shapes share a program; another dtype, mode or check is another."""

import numpy as np
import pytest

from harness import adapters as A
from harness import cases as K
from harness import records
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


SHARING_FWS = [f for f in ("torch", "jax", "tensorflow") if A.get(f).available()[0]]


def _sharing_differences(fw, monkeypatch, tmp_path) -> tuple[dict, dict[str, list]]:
    """(records with sharing, {test id: [(key, shared value, unshared value)]} where they differ) of
    three quick-suite cases of three shapes, eager and compiled, forward and gradient, float32: the
    same items run as always, then with every call compiling its own (HARNESS_SHARE_PROGRAMS=0),
    compared key by key apart from the incidental fields (records.INCIDENTAL_FIELDS). Not torch's
    jit_static, which shares no program across shapes (test_torch_jit_compiles_per_class_count...)."""
    from harness.adapters.base import SHARE_ENV
    from harness.options import RunOptions, load_cases
    from harness.runner import Selection, expand

    shapes, cases = set(), []
    for c in load_cases(RunOptions(suite="quick")):
        shape = np.shape(c.logits)
        if (not c.options and c.labels is not None and np.ndim(c.labels) == len(shape) - 1
                and "sparse_softmax_cross_entropy" in c.ops and shape not in shapes):
            shapes.add(shape)
            cases.append(c)
        if len(cases) == 3:
            break
    sel = Selection(frameworks=[fw], dtypes=["float32"], ops=["log_softmax", "sparse_softmax_cross_entropy"],
                    modes=["eager", "jit"], checks=["forward", "grad"])
    items = expand(cases, sel, [fw])
    assert len(items) >= 12

    def run(share: bool, items=items) -> dict[str, dict]:
        monkeypatch.setenv(SHARE_ENV, "1" if share else "0")
        A._cache.pop(fw, None)  # a fresh adapter: no program of another test reused
        s = Session(load_policy("standard"), Cache(tmp_path / "cache"), [], None, 0)
        return {it.id: {k: v for k, v in s.run(it).items() if k not in records.INCIDENTAL_FIELDS} for it in items}

    # Warnings a framework gives once per process (torch's first compile: a DeprecationWarning of
    # torch.jit.script_method) go to the first item run: the warm-up's, not either side's.
    run(True, [it for it in items if it.mode == "jit"][:1])
    shared, alone = run(True), run(False)
    differ = {t: [(k, shared[t].get(k), alone[t].get(k)) for k in sorted(set(shared[t]) | set(alone[t]))
                  if records.jsonable(shared[t].get(k)) != records.jsonable(alone[t].get(k))] for t in shared}
    return shared, {t: d for t, d in differ.items() if d}


@pytest.mark.parametrize("fw", SHARING_FWS)
def test_sharing_programs_changes_no_record(tmp_path, monkeypatch, fw):
    """Issue 19: a program compiled (or traced) once serves every case it fits, and no record
    changes because of it."""
    shared, differ = _sharing_differences(fw, monkeypatch, tmp_path)
    assert sum(r["status"] == "pass" for r in shared.values()) >= len(shared) // 2
    assert not differ, differ


@pytest.mark.skipif("tensorflow" not in SHARING_FWS, reason="needs TensorFlow")
def test_a_program_shared_where_it_does_not_fit_is_caught(tmp_path, monkeypatch, registered):
    """A wrong sharing: the step looked up by the function's source alone, so that the gradient of
    an op is served by the forward step compiled before it. The comparison names the records."""
    from harness.adapters.tensorflow import TensorFlowAdapter

    class WrongSharing(TensorFlowAdapter):
        name = "tf-wrong-sharing"

        def step(self, fsrc, ssrc, call):
            return self._exec(fsrc, fsrc + "\n" + ssrc, self.namespace())["step"]

    _, differ = _sharing_differences(registered(WrongSharing), monkeypatch, tmp_path)
    assert differ and all("-grad." in t for t in differ), differ
    assert any(k == "status" for d in differ.values() for k, *_ in d)


@pytest.mark.skipif(not A.get("torch").available()[0], reason="needs torch")
def test_torch_jit_compiles_per_class_count_and_jit_static_per_shape(tmp_path):
    """torch's jit is torch.compile's default as a process runs it once its batch size has
    changed: the batch dims dynamic, the class count static, so another batch size reuses the
    graph and another class count compiles one. jit_static (dynamic=False) compiles one graph
    per shape. Counted by dynamo's own counter of the graphs it captured. With dynamic=True for
    jit the class counts would share a graph; without the marks every batch size would compile."""
    from torch._dynamo.utils import counters

    A._cache.pop("torch", None)
    s = Session(load_policy("standard"), Cache(tmp_path / "cache"), [], None, 0)

    def graphs(mode, shapes):
        new = []
        for i, shape in enumerate(shapes):
            before = counters["stats"]["unique_graphs"]
            r = s.run(Item(case(f"g/{mode}{i}", shape), "log_softmax", "forward", "default", "torch", "cpu",
                           "float32", mode, None))
            assert r["status"] == "pass", r
            new.append(counters["stats"]["unique_graphs"] - before)
        return new

    shapes = [(4, 8), (5, 8), (4, 16), (2, 3, 8), (3, 3, 8)]
    assert graphs("jit", shapes) == [1, 0, 1, 1, 0]
    assert graphs("jit_static", shapes) == [1, 1, 1, 1, 1]
    r = s.run(Item(case("g/src", (4, 8)), "log_softmax", "forward", "default", "torch", "cpu", "float32",
                   "jit_static", None))
    assert "dynamic=False" in r["repro"] and "maybe_mark_dynamic" not in r["repro"]
    r = s.run(Item(case("g/src3", (2, 3, 8)), "log_softmax", "forward", "default", "torch", "cpu", "float32",
                   "jit", None))
    assert "torch._dynamo.maybe_mark_dynamic(x, [0, 1])" in r["repro"], r["repro"]
    assert "f = torch.compile(f, fullgraph=True)\n" in r["repro"], r["repro"]


_FIRST_COMPILE = """
from harness import cases as K
from harness.cache import Cache
from harness.policy import load as load_policy
from harness.runner import Item, Session
case = K.parse_case({"id": "t/w", "logits": [[1.0, 2.0, 3.0]]}, file="<t>", index=0, family=None, base=".")
s = Session(load_policy("standard"), Cache(None, enabled=False), [], None, timing_reps=0)
recs = [s.run(Item(case, "softmax", "forward", "default", "torch", "cpu", "float32", m)) for m in ("eager", "jit")]
print([(r["status"], r.get("framework_warnings")) for r in recs])
"""


def test_torchs_import_warning_on_a_first_compile_is_no_calls_warning(tmp_path):
    """Inductor imports torch.utils.mkldnn on a process's first compile, and that module warns when
    it loads (a DeprecationWarning of torch.jit.script_method): it landed in the record of whichever
    compiled call came first. The adapter loads it beside torch, quietly: a fresh process's first
    compiled call records no warning."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    if not A.get("torch").available()[0]:
        pytest.skip("torch is not installed")
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "HARNESS_COMPILE_CACHE": "off", "PYTHONPATH": str(root)}
    premise = subprocess.run([sys.executable, "-W", "always::DeprecationWarning", "-c", "import torch.utils.mkldnn"],
                             capture_output=True, text=True, timeout=300, env=env)
    assert "DeprecationWarning" in premise.stderr  # the module still warns: else this test proves nothing
    p = subprocess.run([sys.executable, "-c", _FIRST_COMPILE], capture_output=True, text=True, timeout=600, env=env,
                       cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.strip().splitlines()[-1] == "[('pass', []), ('pass', [])]", p.stdout
