"""The worst-case search (harness/search.py).

- The differential search, seeded near the known framework-specific findings of the default
  library (inputs that each framework still gets right), finds each again within a few hundred
  calls, tells it apart from the problem's conditioning (cause `framework`: the peers pass),
  shrinks it to a couple of classes of simple values, and the input found shows the known
  mechanism (the framework's output equals the closed form of its defect). The case file
  replays to the same record.
- A deliberately wrong implementation (a softmax without the max shift) is found and shrunk; a
  right one (torch's own softmax behind the same callable adapter) yields no finding.
- The default objective (utilisation) writes inputs that replay to the same error.
- The shrinker's pieces on golden values.
"""

import json
import math
import subprocess
import sys
from pathlib import Path

import mpmath
import numpy as np
import pytest

from harness import adapters as A
from harness import dtypes as D
from harness import records
from harness.cache import Cache
from harness.policy import load as load_policy
from harness.runner import Session
from harness.search import (Point, _bits, _classes, _round_bits, _simpler, search, start_points,
                            write_cases)

ROOT = Path(__file__).resolve().parent.parent
BIG3 = ("tensorflow", "torch", "jax")
INSTALLED = [f for f in BIG3 if A.get(f).available()[0]]
SEED_ROW = [0.0, 1.0, 2.0, 3.0, 5.0, -2.0, 7.0, 4.0]  # cases/seed.json's row, without an offset

needs_all = pytest.mark.skipif(len(INSTALLED) < 3, reason="the differential search compares TensorFlow, PyTorch "
                               f"and JAX; installed: {INSTALLED}")


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    return Session(load_policy("standard"), Cache(tmp_path_factory.mktemp("cache")), [], None, 0)


def _simple(v: float) -> bool:
    """An integer or a short binary fraction: at most 4 significant bits."""
    return not math.isfinite(v) or _bits(v) <= 4


def lse(row):
    mpmath.mp.prec = 200
    return mpmath.log(mpmath.fsum(mpmath.exp(mpmath.mpf(v)) for v in row))


# framework, op, check, dtype, the starting point (passes), and the known defect's closed form:
# what the framework returns on the shrunk input, computed from the input alone.
def torch_lse_grad(x, y, dt):  # torch-logsumexp-grad-uses-rounded-output: exp(x - fl(lse))
    r = D.cast_exact(np.asarray([float(lse(x[0]))]), dt)[0]
    return np.exp(x - r)


def optax_sparse_ce(x, y, dt):  # optax-sparse-ce-not-max-shifted: fl(lse) - x_label
    r = D.cast_exact(np.asarray([float(lse(row)) for row in x]), dt)
    return r - x[np.arange(len(x)), y]


def tf_ce_grad(x, y, dt):  # tf-ce-grad-assumes-normalised-labels: softmax(x) - y
    p = np.exp(x - x.max(axis=-1, keepdims=True))
    return p / p.sum(axis=-1, keepdims=True) - y


KNOWN = [
    ("torch", "logsumexp", "grad", "bfloat16", Point(np.asarray([SEED_ROW]), None, {}, "ones"), torch_lse_grad,
     "d_logits"),
    ("jax", "sparse_softmax_cross_entropy", "forward", "float32", Point(np.asarray([SEED_ROW]), np.asarray([5])),
     optax_sparse_ce, "out"),
    ("tensorflow", "softmax_cross_entropy", "grad", "float32",
     Point(np.asarray([SEED_ROW]), np.asarray([[0.5, 0.5, 0, 0, 0, 0, 0, 0]]), {}, "ones"), tf_ce_grad, "d_logits"),
]


@needs_all
@pytest.mark.parametrize("fw,op,check,dtype,start,closed_form,output", KNOWN, ids=[k[0] for k in KNOWN])
def test_differential_search_finds_the_known_findings_again(session, tmp_path, fw, op, check, dtype, start,
                                                            closed_form, output):
    dt = D.get(dtype)
    peers = [p for p in BIG3 if p != fw]
    # The start passes for every framework: the search must move away from it to find anything.
    from harness.search import Searcher

    first = Searcher(session, fw, op, dtype, check, "eager", "cpu", "differential", peers).evaluate(start)
    assert first is not None and first.rec["status"] == "pass" and not first.finding, first.rec.get("max_ulp")
    found = search(session, fw, op, dtype, check=check, objective="differential", peers=peers, start=[start],
                   budget=90, shrink_budget=120, seed=1)
    # The known finding is a rounding error (other findings, special values, may come first).
    f = next((f for f in found if f.finding and f.rec["special"] == "match" and not f.point.options), None)
    assert f is not None, [(f.rec["special"], f.point.x) for f in found]
    assert f.cause == "framework", (f.rec["status"], f.cause, f.peers)
    assert all(p["status"] == "pass" for p in f.peers.values()) and set(f.peers) == set(peers)
    assert f.rec["cause"] == "framework" and f.rec["peers"] == f.peers
    R, C = f.point.shape
    assert R == 1 and C <= 3, f.point.x  # shrunk: one row, a few classes
    assert all(_simple(v) for v in f.point.x.ravel()), f.point.x  # integers or short binary fractions
    if f.point.labels is not None and np.asarray(f.point.labels).dtype.kind == "f":
        assert all(_simple(v) for v in np.asarray(f.point.labels).ravel())
    # The known mechanism, bit for bit within the dtype's rounding of the last operation.
    got = np.asarray(f.rec["output"][output], dtype=np.float64)
    want = D.cast_exact(closed_form(f.point.x, f.point.labels, dt), dt)
    assert np.allclose(got, want, rtol=dt.eps, atol=0), (got, want)
    exact = np.asarray(f.rec["reference"][output]["rounded"], dtype=np.float64)
    assert not np.array_equal(got, exact)
    # The case file replays to the same record, and the run gives it the same cause.
    out = tmp_path / "found.json"
    write_cases(found, out, fw, op, dtype, check, "eager", "differential", 1)
    case = json.loads(out.read_text())["cases"][next(k for k, g in enumerate(found) if g is f)]
    assert "Cause: framework" in case["why"] and ("Shrunk from" in case["why"]) == (f.shrunk_from != (R, C))
    res = tmp_path / "replay.jsonl"
    p = subprocess.run([sys.executable, "-m", "harness", "run", "--cases", str(out), "--framework", ",".join(BIG3),
                        "--mode", "eager", "--check", check, "--no-isolate", "--results", str(res),
                        "--cache-dir", str(tmp_path / "cache"), "-q"], cwd=ROOT, capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 1, p.stderr[-2000:]
    recs = [json.loads(line) for line in res.read_text().splitlines()]
    mine = [r for r in recs if r.get("kind") == "result" and r["framework"] == fw and r["case_id"] == case["id"]
            and r["cotangent"] == f.rec["cotangent"] and r["variant"] == "default"]
    assert len(mine) == 1 and mine[0]["status"] == "fail" and mine[0]["cause"] == "framework"
    assert mine[0]["max_ulp"] == pytest.approx(f.rec["max_ulp"], rel=1e-12)
    assert mine[0]["output"] == json.loads(json.dumps(records.jsonable(f.rec["output"])))
    # Every input written replays to the record the search judged (findings and the others).
    cases = json.loads(out.read_text())["cases"]
    for c, g in zip(cases, found):
        (r,) = [r for r in recs if r.get("kind") == "result" and r["framework"] == fw and r["case_id"] == c["id"]
                and r["cotangent"] == g.rec["cotangent"] and r["variant"] == "default"]
        for k in ("status", "special", "max_ulp", "excess", "output"):
            assert r.get(k) == json.loads(json.dumps(records.jsonable(g.rec.get(k)))), (c["id"], k)
        if g.cause == "framework":  # a run's peers are every variant, a superset of the search's
            assert r["cause"] == "framework"


def _naive_softmax(x, dim=-1):
    import torch

    e = torch.exp(x)
    return e / e.sum(dim=dim, keepdim=True)


def _torch_softmax(x, dim=-1):
    import torch

    return torch.softmax(x, dim=dim)


@pytest.mark.parametrize("fn,wrong", [(_naive_softmax, True), (_torch_softmax, False)], ids=["naive", "right"])
def test_search_tells_a_wrong_implementation_from_a_right_one(session, fn, wrong):
    pytest.importorskip("torch")
    peers = [p for p in INSTALLED if p != "torch"]
    if not peers:
        pytest.skip("the differential objective needs a peer of torch (TensorFlow or JAX)")
    from harness.adapters.callable import callable_adapter

    name = f"test_search_{fn.__name__}"
    with A.registered(name, callable_adapter(fn, "torch", name=name)):
        found = search(session, name, "softmax", "float32", objective="differential", peers=peers, budget=60,
                       shrink_budget=80, seed=3)
    if not wrong:
        assert not any(f.finding for f in found), [(f.rec["status"], f.point.x) for f in found]
        return
    f = found[0]
    assert f.finding and f.cause == "framework" and f.rec["special"] == "nan_expected_finite"
    # Shrunk to one class whose exp over- or underflows float32 (|x| > 88.7 or < -103.3).
    assert f.point.shape == (1, 1) and abs(f.point.x[0, 0]) > 88 and _bits(f.point.x[0, 0]) == 1, f.point.x


def test_default_objective_writes_inputs_that_replay(session, tmp_path):
    fw = next(f for f in ("torch", "jax", "tensorflow", "numpy") if A.get(f).available()[0])
    op, dtype = "log_softmax", "float16"
    found = search(session, fw, op, dtype, budget=40, shrink_budget=40, seed=0)
    assert found and found[0].value == max(f.value for f in found)
    out = tmp_path / "worst.json"
    write_cases(found, out, fw, op, dtype, "forward", "eager")
    data = json.loads(out.read_text())
    assert [c["id"] for c in data["cases"]] == [f"search/{fw}_{op}_{dtype}_forward_{k}" for k in range(len(found))]
    results = tmp_path / "replay.jsonl"
    p = subprocess.run([sys.executable, "-m", "harness", "run", "--cases", str(out), "--framework", fw,
                        "--dtype", dtype, "--op", op, "--mode", "eager", "--check", "forward", "--no-isolate",
                        "--results", str(results), "--cache-dir", str(tmp_path / "cache")],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode in (0, 1), p.stderr
    replay = {r["case_id"]: r for r in map(json.loads, results.read_text().splitlines()) if r["kind"] == "result"}
    for k, f in enumerate(found):
        r = replay[f"search/{fw}_{op}_{dtype}_forward_{k}"]
        for k in ("status", "special", "max_ulp", "excess", "output"):
            assert r.get(k) == json.loads(json.dumps(records.jsonable(f.rec.get(k)))), k


def test_start_points_come_from_the_library():
    """--near: a library case's rows (1-D logits become one row), its labels cast alike; a case
    with its classes on axis 0 is refused, naming the case."""
    from harness import cases as K
    from harness.errors import HarnessInputError

    lib = K.load()
    (p,) = start_points(lib, ["seed/ce_sparse"], "sparse_softmax_cross_entropy", "bfloat16")
    c = next(c for c in lib if c.id == "seed/ce_sparse")
    assert p.x.tolist() == c.logits_for(D.get("bfloat16")).tolist() and p.labels.tolist() == np.asarray(c.labels).tolist()
    (q,) = start_points(lib, ["seed/softmax_classic"], "softmax", "float32")
    assert q.x.shape == (1, 4) and q.labels is None
    with pytest.raises(HarnessInputError, match="axis 0"):
        start_points(lib, ["seed/classic_axis0"], "softmax", "float32")
    with pytest.raises(HarnessInputError, match="does not run op"):
        start_points(lib, ["seed/softmax_classic"], "sparse_softmax_cross_entropy", "float32")


def test_shrinker_pieces_on_golden_values():
    f32, bf16 = D.get("float32"), D.get("bfloat16")
    assert [_bits(v) for v in (1.0, 3.0, 0.375, 200.0, 203.0, 0.1)] == [1, 2, 2, 5, 8, 52]
    assert _simpler(203.0, f32) == [0.0, 256.0, 192.0, 208.0, 200.0, 204.0]
    assert _simpler(0.75, bf16) == [0.0, 1.0]
    assert _simpler(float("inf"), f32) == []
    assert _round_bits(np.asarray([0.1, -3.0, float("-inf")]), 3, f32).tolist() == [0.09375, -3.0, float("-inf")]
    # Dropping classes re-indexes sparse labels, keeps out-of-range ones out of range, and never
    # drops the labelled class (that would be another input, not a smaller one).
    p = Point(np.asarray([[1.0, 2.0, 3.0, 4.0]] * 2), np.asarray([2, 7]), {"weights": [1.0, 2.0, 3.0, 4.0]})
    q = _classes(p, [0, 2])
    assert q.x.tolist() == [[1.0, 3.0]] * 2 and q.labels.tolist() == [1, 2] and q.options["weights"] == [1.0, 3.0]
    assert _classes(p, [0, 1]) is None
    d = Point(np.asarray([[1.0, 2.0, 3.0]]), np.asarray([[0.25, 0.5, 0.25]]))
    assert _classes(d, [1, 2]).labels.tolist() == [[0.5, 0.25]]


def test_a_seed_reproduces_the_search(tmp_path):
    """Seeded and reproducible: the same seed draws, climbs and shrinks to the same inputs; another
    seed explores elsewhere."""
    def run(seed):
        s = Session(load_policy("standard"), Cache(tmp_path / "cache"), [], None, 0)
        found = search(s, "numpy", "log_softmax", "float32", objective="ulp", budget=24, shrink_budget=20, seed=seed)
        return [(json.dumps(records.jsonable(f.point.x)), json.dumps(records.jsonable(f.point.options), sort_keys=True),
                 f.value)
                for f in found]

    first = run(5)
    assert first and run(5) == first
    assert run(6) != first
