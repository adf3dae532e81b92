"""Repro snippets reproduce what ran, bit for bit (issue 14).

Each adapter of a framework runs the very source its snippet prints (adapters.base.SourceAdapter).
`python -m harness repro RESULTS` replays the snippet of every failing result in a fresh
interpreter and compares the printout with the record; .ci/run does so for every failing result
of the quick suite. Here: failing results of the three frameworks, eager and jit, forward and
both gradients, a transposed class axis included, replayed; and a record whose output was changed
is caught.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest

from harness import adapters as A
from harness import cases as K
from harness import records
from harness.cache import Cache
from harness.policy import load as load_policy
from harness.repro import check, replayable
from harness.runner import Selection, Session, expand

FRAMEWORKS = [f for f in ("tensorflow", "torch", "jax") if A.get(f).available()[0]]

ROOT = Path(__file__).resolve().parent.parent

SAMPLE = ["extreme/pos_inf_one", "offset/seed_float32", "soft_labels/positive_label_at_neg_inf", "seed/classic_axis0",
          "extreme/big_1e4"]


@pytest.fixture(scope="module")
def failing():
    cases = [c for c in K.load() if c.id in SAMPLE]
    session = Session(load_policy("standard"), Cache(), [], None, timing_reps=0)
    recs = []
    for fw in FRAMEWORKS:
        items = expand(cases, Selection(frameworks=[fw], dtypes=["float32"]), [fw])
        recs += [records.jsonable(session.run(it)) for it in items]
    return [r for r in recs if replayable(r)]


@pytest.mark.skipif(not FRAMEWORKS, reason="no framework installed")
def test_failing_results_replay_bit_for_bit(failing):
    seen = {(r["framework"], r["mode"], r["check"]) for r in failing}
    for fw in FRAMEWORKS:  # the sample fails somewhere in each framework, mode and check
        assert {(fw, m, c) for m in ("eager", "jit") for c in ("forward", "grad")} <= seen, fw
    n, bad = check(failing)
    assert n == len(failing) > 20
    assert not bad, "\n".join(f"{m.test_id}: {m.why}\n{m.repro}" for m in bad[:5])


@pytest.mark.skipif(not FRAMEWORKS, reason="no framework installed")
def test_a_changed_output_is_caught(failing):
    def finite_row(r):
        out = r["output"]["out"]
        row = out[0] if isinstance(out[0], list) else out
        return row if any(isinstance(v, float) and v != 0 for v in row) else None

    rec = copy.deepcopy(next(r for r in failing if r["check"] == "forward" and finite_row(r)))
    row = finite_row(rec)
    i = next(j for j, v in enumerate(row) if isinstance(v, float) and v != 0)
    row[i] = row[i] * (1 + 2 ** -20)  # one value changed in its last bits
    n, bad = check([rec])
    assert n == 1 and len(bad) == 1 and bad[0].test_id == rec["test_id"]


def test_history_dependent_modes_are_told_apart(failing):
    """A replay that differs in a mode with compile history is listed as such (torch jit);
    elsewhere a difference is a defect of the snippet."""
    base = next(r for r in failing if r["check"] == "forward")
    for fw in FRAMEWORKS:
        for mode in ("eager", "jit"):
            rec = dict(base, framework=fw, mode=mode)
            assert _history(rec) == A.get(fw).history_dependent.get(mode, "")
    assert A.get("torch").history_dependent.get("jit") and not A.get("torch").history_dependent.get("eager")
    assert _history(dict(base, framework="no-such-framework")) == ""


def _history(rec):
    from harness.repro import _history_reason

    return _history_reason(rec)


_X = [[2.0, 1.5, 0.1, -1.0, 0.5], [0.2, 1.3, 1.7, 0.0, -2.0], [-3.0, 0.0, 3.0, 1.0, 0.25]]
_WARM = ("step(torch.zeros(4, 7, dtype=torch.float64).requires_grad_(), torch.tensor([0, 1, 2, 3]), "
         "torch.ones(4, dtype=torch.float64))")


@pytest.mark.skipif("torch" not in FRAMEWORKS, reason="torch is not installed")
def test_torch_compile_output_depends_on_the_shapes_compiled_before(tmp_path):
    """The finding behind Adapter.history_dependent: the harness's snippet of a compiled sparse
    cross-entropy gradient, compiled with dynamic=True, prints 0x1.99197f7096c35p-1 at [2, 2] run
    fresh, and 0x1.99197f7096c36p-1 after one call of zeros of shape (4, 7), another class count,
    to the same compiled function (torch 2.13.0, CPU, float64; inductor's caches off, so the
    kernel is generated in the process; eager gives ...c35 either way). The harness's own jit
    (the batch dims dynamic, the class count static) prints ...c35 after calls of both (4, 7) and
    (4, 5): the first compiles a graph of its own, the second makes the kernel the call reuses."""
    import os
    import subprocess
    import sys

    import numpy as np

    from harness.adapters.base import Call

    call = Call(op="sparse_softmax_cross_entropy", check="grad", variant="default",
                logits=np.array(_X), labels=np.array([3, 1, 0]), axis=-1, cotangent=np.ones(3),
                dtype="float64", device="cpu", mode="jit")
    ours = A.get("torch").repro(call)
    compile_line = "f = torch.compile(f, fullgraph=True)\n"
    assert compile_line in ours
    symbolic = ours.replace(compile_line, "f = torch.compile(f, fullgraph=True, dynamic=True)\n")
    same_classes = _WARM.replace("zeros(4, 7", "zeros(4, 5")

    def warm(snippet, first):
        cut = snippet.index("\nx = ")
        return snippet[:cut] + "\n" + first + snippet[cut:]

    probe = "\nprint(outs[0][2][2].item().hex())"
    env = dict(os.environ, TORCHINDUCTOR_CACHE_DIR=str(tmp_path), TORCHINDUCTOR_FX_GRAPH_CACHE="0",
               TORCHINDUCTOR_AUTOGRAD_CACHE="0")
    srcs = [symbolic, warm(symbolic, _WARM), warm(ours, _WARM + "\n" + same_classes)]
    procs = [subprocess.Popen([sys.executable, "-c", src + probe], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=env) for src in srcs]
    got = [p.communicate(timeout=600)[0].strip().splitlines()[-1] for p in procs]
    c35, c36 = "0x1.99197f7096c35p-1", "0x1.99197f7096c36p-1"
    assert got == [c35, c36, c35]


def test_the_sample_covers_every_group_and_every_moved_axis():
    """`repro --sample N`: the first N replayable results of each framework, mode, check, op,
    variant, dtype and cotangent, plus every result whose class axis is not the last."""
    from harness.repro import SAMPLE_KEY, sample

    def rec(i, **kw):
        r = {"kind": "result", "status": "fail", "repro": "x = 1", "output": {"out": [1.0]}, "test_id": f"t{i}",
             "framework": "torch", "mode": "eager", "check": "forward", "op": "softmax", "variant": "default",
             "dtype": "float32", "cotangent": None, "input": {"axis": -1}}
        r.update(kw)
        return r

    recs = [rec(0), rec(1), rec(2, dtype="float16"), rec(3, input={"axis": 0}), rec(4, status="pass"),
            rec(5, mode="jit"), rec(6, mode="jit"), rec(7, check="grad", cotangent="ones"),
            rec(8, check="grad", cotangent="pattern"), rec(9, output={})]
    assert [r["test_id"] for r in sample(recs, 1)] == ["t0", "t2", "t3", "t5", "t7", "t8"]
    assert [r["test_id"] for r in sample(recs, 2)] == ["t0", "t1", "t2", "t3", "t5", "t6", "t7", "t8"]
    assert "cotangent" in SAMPLE_KEY and "dtype" in SAMPLE_KEY


@pytest.mark.skipif(not FRAMEWORKS, reason="no framework installed")
def test_an_empty_batch_replays_with_its_shape():
    """An empty batch of rows of 5 classes is (0, 5): its literal `[]` alone is (0,), so each
    input's source reshapes it, and the snippet prints the outputs' shapes before their values
    (`[]` whatever the shape): a snippet that loses the shape is a mismatch."""
    cases = [c for c in K.load() if c.id in ("shapes/empty_batch", "shapes/empty_batch_dense")]
    session = Session(load_policy("standard"), Cache(), [], None, timing_reps=0)
    recs = []
    for fw in FRAMEWORKS:
        items = expand(cases, Selection(frameworks=[fw], dtypes=["float32"], modes=["eager"]), [fw])
        for it in items:
            r = records.jsonable(session.run(it))
            if r.get("repro") and isinstance(r.get("output"), dict) and r["output"]:
                recs.append(dict(r, status="fail"))  # replay every answered one, passing or not
    assert {r["framework"] for r in recs} == set(FRAMEWORKS) and len(recs) >= 10 * len(FRAMEWORKS)
    assert all(".reshape((0, 5))" in r["repro"] or "shape=(0, 5)" in r["repro"] for r in recs)
    assert all(0 in next(iter(r["out_shape"].values())) for r in recs)
    n, bad = check(recs)
    assert n == len(recs) and not bad, [(m.test_id, m.why) for m in bad[:3]]
    lost = [dict(r, repro=r["repro"].replace(".reshape((0, 5))", "").replace(", shape=(0, 5)", ""))
            for r in recs if r["check"] == "forward"][:3]
    n, bad = check(lost)
    assert n == len(lost) == len(bad) and all("shapes" in m.why or "raised" in m.why for m in bad), \
        [(m.test_id, m.why) for m in bad]


@pytest.mark.skipif("torch" not in FRAMEWORKS, reason="torch is not installed")
def test_a_large_input_loads_from_its_case_file_wherever_the_snippet_runs(tmp_path, monkeypatch):
    """A case file given by a relative path: its cases' source is absolute, so the snippet's
    array_of(source, ...) of a large input (300 logits, past REPRO_INLINE) loads it from any
    directory, and the snippet imports array_of once."""
    import json

    (tmp_path / "mine").mkdir()
    logits = [[float(i % 7) - 3.0 for i in range(300)]]
    (tmp_path / "mine" / "big.json").write_text(json.dumps({"cases": [{"id": "c1", "op": "softmax", "logits": logits}]}))
    monkeypatch.chdir(tmp_path / "mine")
    cases = K.load(["big.json"])
    assert cases[0].source == str(tmp_path / "mine" / "big.json")
    session = Session(load_policy("standard"), Cache(), [], None, timing_reps=0)
    items = expand(cases, Selection(frameworks=["torch"], dtypes=["float32"], modes=["eager"], checks=["forward"]),
                   ["torch"])
    rec = records.jsonable(session.run(items[0]))
    assert f"array_of({str(tmp_path / 'mine' / 'big.json')!r}" in rec["repro"]
    assert rec["repro"].count("from harness.cases import array_of") == 1
    # (a record keeps no output this large to replay against: the snippet runs, from elsewhere,
    # and prints what torch's softmax of those float32 logits is, bit for bit)
    import subprocess
    import sys

    import numpy as np
    import torch

    p = subprocess.run([sys.executable, "-c", rec["repro"]], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert p.returncode == 0, p.stderr[-2000:]
    shapes, values = [ln for ln in p.stdout.splitlines() if ln.strip()][-2:]
    assert shapes == "[[1, 300]]"
    want = torch.softmax(torch.tensor(logits, dtype=torch.float32), dim=-1).double().tolist()
    assert np.array_equal(np.asarray(eval(values, {"nan": float("nan"), "inf": float("inf")})[0]), np.asarray(want))
