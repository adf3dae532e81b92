"""The invariance checks (harness.invariance): batch_invariance, determinism, eager_vs_jit and
permutation.

Here: the comparison's ULP distances on golden values; the derived inputs (permuted classes, a
row inside a batch) against what they must be, and `variant_array` (what repro snippets load)
returning the same arrays; each mutant of tests/plugins/mutants.py that only an invariance check
catches, run through the runner on invariance/rows_sparse (its forward check passes, the named
check fails, the record names the differing variant); the careful implementation passing all
four; a difference in bits only (BatchOrderOnly) passing `standard` and failing a `bitwise` rule;
and the repro snippet of a failing invariance result replaying both variants bit for bit.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import replace

import numpy as np
import pytest

from harness import adapters as A
from harness import cases as K
from harness import dtypes as D
from harness import invariance as INV
from harness import ops as O
from harness import records
from harness import threads as T
from harness.cache import Cache
from harness.policy import POLICY_DIR
from harness.policy import load as load_policy
from harness.repro import check as replay
from harness.runner import Selection, Session, expand
from tests.plugins.mutants import (BatchDependentSum, BatchKeepsDims, BatchOrderOnly, Careful, JitDiffers,
                                   NonDeterministic, TailMaxNotRescaled)

F16, BF16, F32, F64 = (D.DTYPES[n] for n in ("float16", "bfloat16", "float32", "float64"))
ROWS_SPARSE = "invariance/rows_sparse"
OPS = ["softmax", "log_softmax", "logsumexp", "sparse_softmax_cross_entropy"]


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(autouse=True)
def repo_on_path(monkeypatch):
    """The processes these tests start import the mutants as `tests.plugins.mutants`: the
    determinism check's thread workers (`python -m harness.threads ... tests.plugins.mutants:Class`)
    and the repro replay (`python -c`). Each has its cwd on sys.path, not the parent's sys.path:
    from the repository root that is enough; from elsewhere a worker could not import the class
    (its thread variants recorded as not run: "the worker closed its pipe"). The repository on
    PYTHONPATH makes these tests independent of the cwd."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([REPO, *filter(None, [os.environ.get("PYTHONPATH")])]))


@pytest.fixture(scope="module")
def library() -> dict[str, K.Case]:
    return {c.id: c for c in K.load() if c.family == "invariance"}


# --------------------------------------------------------------------------------------------
# compare / ordinal: golden ULP distances


def _cmp(a, b, dt):
    return INV.compare(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64), dt)


def test_compare_float32_neighbours_and_specials():
    one = 1.0
    nxt = float(np.nextafter(np.float32(1), np.float32(2)))
    assert nxt == 1 + 2.0 ** -23
    assert _cmp([one], [nxt], F32) == (1, 1.0)
    assert _cmp([one], [one + 2.0 ** -22], F32) == (1, 2.0)
    assert _cmp([one], [float(np.nextafter(np.float32(1), np.float32(0)))], F32) == (1, 1.0)  # 1 - 2^-24
    assert _cmp([one], [one], F32) == (0, 0.0)
    assert _cmp([0.0], [-0.0], F32) == (1, 0.0)  # differ in bits, 0 ULPs apart
    assert _cmp([np.nan], [np.nan], F32) == (0, 0.0)
    assert _cmp([np.nan], [1.0], F32) == (1, float("inf"))
    assert _cmp([1.0], [np.nan], F32) == (1, float("inf"))
    f32max = float(np.finfo(np.float32).max)
    assert _cmp([f32max], [np.inf], F32) == (1, 1.0)  # inf is the float after the largest
    tiny = 2.0 ** -149  # the smallest float32 subnormal
    assert _cmp([tiny], [-tiny], F32) == (1, 2.0)  # across zero: tiny, +-0, -tiny
    assert _cmp([tiny], [0.0], F32) == (1, 1.0)
    # several elements: the count of those differing in bits, the largest distance
    assert _cmp([1.0, 2.0, np.nan, 0.0, 3.0], [1.0, 2.0 + 2.0 ** -22, np.nan, -0.0, 3.0], F32) == (2, 1.0)
    # shapes that differ: every element, infinitely far
    assert _cmp(np.zeros(3), np.zeros(4), F32) == (4, float("inf"))


def test_compare_half_precision_neighbours():
    assert _cmp([1.0], [1.0 + 2.0 ** -7], BF16) == (1, 1.0)  # bfloat16: 8 bits of precision
    assert _cmp([1.0], [1.0 + 2.0 ** -6], BF16) == (1, 2.0)
    assert _cmp([1.0], [1.0 + 2.0 ** -10], F16) == (1, 1.0)  # float16: 11 bits
    assert _cmp([65504.0], [np.inf], F16) == (1, 1.0)  # float16's largest, then inf
    assert _cmp([2.0 ** -24], [-(2.0 ** -24)], F16) == (1, 2.0)  # float16's smallest subnormal across 0
    assert _cmp([2.0 ** -133], [-(2.0 ** -133)], BF16) == (1, 2.0)  # bfloat16's smallest subnormal
    # the same two values are 2^13 float32 ULPs apart, one float16 ULP
    assert _cmp([1.0], [1.0 + 2.0 ** -10], F32) == (1, 8192.0)


def test_compare_float64_across_zero_and_far():
    tiny = float(np.nextafter(0.0, 1.0))  # 5e-324
    assert tiny == 2.0 ** -1074
    assert _cmp([tiny], [-tiny], F64) == (1, 2.0)
    assert _cmp([1.0], [float(np.nextafter(1.0, 2.0))], F64) == (1, 1.0)
    # 1 and -1: each 0x3FF0000000000000 floats from zero (exact in float64: 1023 * 2^52)
    assert _cmp([1.0], [-1.0], F64) == (1, 2.0 * 0x3FF0000000000000)


def test_ordinal_places():
    assert np.asarray(INV.ordinal(np.array([0.0, -0.0, 2.0 ** -149, -(2.0 ** -149), 1.0, -1.0]), F32)).tolist() \
        == [0, 0, 1, -1, 0x3F800000, -0x3F800000]
    assert np.asarray(INV.ordinal(np.array([1.0, 2.0 ** -24, np.inf]), F16)).tolist() == [0x3C00, 1, 0x7C00]
    assert np.asarray(INV.ordinal(np.array([1.0, -(2.0 ** -133)]), BF16)).tolist() == [0x3F80, -1]
    assert np.asarray(INV.ordinal(np.array([2.0 ** -1074, -1.0]), F64)).tolist() == [1, -0x3FF0000000000000]


# --------------------------------------------------------------------------------------------
# Derived inputs: permuted classes


def test_permutation_is_a_seeded_bijection(library):
    case = library[ROWS_SPARSE]
    C = 37
    rev = INV.permutation(case, "reversed", C)
    assert rev.tolist() == list(range(C))[::-1]
    sh = INV.permutation(case, "shuffled", C)
    assert sorted(sh.tolist()) == list(range(C)) and sh.tolist() != list(range(C))
    assert INV.permutation(case, "shuffled", C).tolist() == sh.tolist()  # deterministic
    other = INV.permutation(library["invariance/rows_all_dtypes"], "shuffled", C)
    assert sorted(other.tolist()) == list(range(C)) and other.tolist() != sh.tolist()  # seeded by the case
    with pytest.raises(ValueError):
        INV.permutation(case, "sorted", C)


def test_permutation_keeps_an_ignore_index_class_in_place(library):
    case = library["invariance/weighted_ignore"]  # ignore_index 3, 37 classes
    assert case.options["ignore_index"] == 3
    rev = INV.permutation(case, "reversed", 37)
    assert rev[3] == 3
    assert rev[:3].tolist() == [36, 35, 34] and rev[4] == 33 and rev[-1] == 0
    sh = INV.permutation(case, "shuffled", 37)
    assert sh[3] == 3 and sorted(sh.tolist()) == list(range(37))
    # An ignore_index that is no class (-100) fixes nothing.
    out = replace(case, options={**case.options, "ignore_index": -100})
    assert INV.permutation(out, "reversed", 37).tolist() == list(range(37))[::-1]


def test_rows_sparse_row_maxima_and_the_reversed_tail(library):
    """What the case says of itself, and what TailMaxNotRescaled relies on."""
    case = library[ROWS_SPARSE]
    x = case.logits_for(F32)
    assert x.shape == (4, 37)
    assert np.argmax(x, axis=1).tolist() == [27, 2, 12, 12]  # none in the tail 32..36
    d = INV.derived(case, "softmax", F32, {"kind": "permuted", "order": "reversed"})
    assert np.argmax(d["logits"], axis=1).tolist() == [9, 34, 24, 24]  # row 1's max now in the tail
    d = INV.derived(case, "softmax", F32, {"kind": "permuted", "order": "shuffled"})
    assert max(np.argmax(d["logits"], axis=1).tolist()) < 32  # the shuffle leaves the tail without a max


def test_permuted_sparse_labels_follow_their_logit(library):
    case = library[ROWS_SPARSE]
    x, y = case.logits_for(F32), np.asarray(case.labels_for(F32))
    for order in ("reversed", "shuffled"):
        d = INV.derived(case, "sparse_softmax_cross_entropy", F32, {"kind": "permuted", "order": order})
        sigma = INV.permutation(case, order, 37)
        assert np.array_equal(d["logits"], np.take(x, sigma, axis=1))
        rows = np.arange(4)
        assert np.array_equal(d["logits"][rows, d["labels"]], x[rows, y])  # x'[label'] == x[label]
        assert np.array_equal(np.take(d["logits"], d["inverse"], axis=1), x)  # the inverse undoes it
        assert d["axis"] == case.axis
    d = INV.derived(case, "sparse_softmax_cross_entropy", F32, {"kind": "permuted", "order": "reversed"})
    assert d["labels"].tolist() == [36, 0, 31, 19]  # 36 - label


def test_permuted_labels_keep_ignored_and_out_of_range_ones(library):
    base = library[ROWS_SPARSE]
    case = replace(base, labels=[-100, 40, 5, 17], options={"ignore_index": -100})
    d = INV.derived(case, "sparse_softmax_cross_entropy", F32, {"kind": "permuted", "order": "reversed"})
    assert d["labels"].tolist() == [-100, 40, 31, 19]
    # An in-range ignore_index: its rows keep the label (the class stays in place, too).
    case = library["invariance/weighted_ignore"]
    x, y = case.logits_for(F32), np.asarray(case.labels_for(F32))
    assert y.tolist() == [3, 0, 36, 5]
    for order in ("reversed", "shuffled"):
        d = INV.derived(case, "sparse_softmax_cross_entropy", F32, {"kind": "permuted", "order": order})
        assert d["labels"][0] == 3
        rows = np.arange(4)
        assert np.array_equal(d["logits"][rows, d["labels"]], x[rows, y])
        # the class weights (as the call takes them: float32) move with the classes:
        # w'[label'] == w[label], w'[k] == w[sigma[k]]
        w, wp = np.asarray(case.options_for(F32)["weights"]), np.asarray(d["options"]["weights"])
        sigma = INV.permutation(case, order, 37)
        assert np.array_equal(wp, w[sigma])
        assert np.array_equal(wp[d["labels"]], w[y])
        assert d["options"]["ignore_index"] == 3
    assert case.options["weights"][0] == 1.98  # the case's own options untouched


def test_permuted_dense_labels_move_with_the_logits(library):
    case = library["invariance/soft_labels"]
    x, y = case.logits_for(F32), case.labels_for(F32)
    d = INV.derived(case, "softmax_cross_entropy", F32, {"kind": "permuted", "order": "shuffled"})
    sigma = INV.permutation(case, "shuffled", 37)
    assert np.array_equal(d["logits"], x[:, sigma]) and np.array_equal(d["labels"], y[:, sigma])
    assert np.array_equal(np.take(d["labels"], d["inverse"], axis=1), y)


# --------------------------------------------------------------------------------------------
# Derived inputs: a row inside a batch


def _bits(a) -> bytes:
    return np.asarray(a, dtype=np.float64).tobytes()


@pytest.mark.parametrize("filler", ["random", "padding"])
def test_batch_rows_sit_at_their_place_bit_for_bit(library, filler):
    case = library[ROWS_SPARSE]
    x, y = case.logits_for(F32), np.asarray(case.labels_for(F32))
    for r, B, p in [(0, 7, 0), (1, 7, 3), (3, 64, 63), (2, 2, 1)]:
        spec = {"kind": "batch", "row": r, "size": B, "at": p, "filler": filler}
        d = INV.derived(case, "sparse_softmax_cross_entropy", F32, spec)
        xb, yb = d["logits"], d["labels"]
        assert xb.shape == (B, 37) and yb.shape == (B,) and d["axis"] == -1
        assert _bits(xb[p]) == _bits(x[r]) and yb[p] == y[r]
        others = np.delete(np.arange(B), p)
        if filler == "padding":
            assert not np.any(xb[others]) and not np.any(yb[others])  # zeros, label 0 (no ignore_index)
        else:
            assert np.all(np.isfinite(xb[others])) and np.all(xb[others] != 0)
            assert np.array_equal(D.cast_exact(xb, F32), xb)  # exact float32 values
            assert np.all((yb >= 0) & (yb < 37))
        again = INV.derived(case, "sparse_softmax_cross_entropy", F32, spec)
        assert _bits(again["logits"]) == _bits(xb) and np.array_equal(again["labels"], yb)  # seeded
        # What a repro snippet loads: the same arrays.
        for fld in ("logits", "labels"):
            got = INV.variant_array(case.source, case.id, fld, "float32", "sparse_softmax_cross_entropy", **spec)
            assert np.array_equal(got, d[fld]) and _bits(got) == _bits(d[fld])


def test_batch_filler_is_at_the_case_scale(library):
    case = library[ROWS_SPARSE]  # normal logits of std 4
    d = INV.derived(case, "softmax", F32, {"kind": "batch", "row": 0, "size": 1024, "at": 512, "filler": "random"})
    assert d["labels"] is None and d["logits"].shape == (1024, 37)
    assert 3.0 < float(np.std(d["logits"])) < 5.0


def test_batch_padding_labels_are_the_ignore_index(library):
    case = library["invariance/weighted_ignore"]
    x, y = case.logits_for(F32), np.asarray(case.labels_for(F32))
    spec = {"kind": "batch", "row": 2, "size": 7, "at": 6, "filler": "padding"}
    d = INV.derived(case, "sparse_softmax_cross_entropy", F32, spec)
    assert d["labels"].tolist() == [3, 3, 3, 3, 3, 3, 36] and y[2] == 36
    assert _bits(d["logits"][6]) == _bits(x[2]) and not np.any(d["logits"][:6])
    assert d["options"] == case.options_for(F32)
    got = INV.variant_array(case.source, case.id, "labels", "float32", "sparse_softmax_cross_entropy", **spec)
    assert got.tolist() == [3, 3, 3, 3, 3, 3, 36]


def test_batch_dense_labels(library):
    case = library["invariance/soft_labels"]
    x, y = case.logits_for(F32), case.labels_for(F32)
    for filler in ("random", "padding"):
        spec = {"kind": "batch", "row": 1, "size": 7, "at": 3, "filler": filler}
        d = INV.derived(case, "softmax_cross_entropy", F32, spec)
        yb = d["labels"]
        assert yb.shape == (7, 37) and _bits(yb[3]) == _bits(y[1]) and _bits(d["logits"][3]) == _bits(x[1])
        others = yb[[0, 1, 2, 4, 5, 6]]
        if filler == "random":  # one-hot rows
            assert np.all(others.sum(axis=1) == 1) and np.all((others == 0) | (others == 1))
        else:
            assert not np.any(others)
        got = INV.variant_array(case.source, case.id, "labels", "float32", "softmax_cross_entropy", **spec)
        assert _bits(got) == _bits(yb)


def test_checked_rows_and_batch_sizes():
    assert INV.BATCH_SIZES == (1, 2, 7, 64, 1024)
    assert INV.checked_rows(4) == [0, 3]
    assert INV.checked_rows(10) == [0, 9]
    assert INV.checked_rows(2) == [0, 1]
    assert INV.checked_rows(1) == [0]


# --------------------------------------------------------------------------------------------
# The mutants that only an invariance check catches, through the runner


def _run(cls, checks, policy="standard", ops=None, modes=None, name=None):
    """{(op, check, mode): record} of `cls` on invariance/rows_sparse (float32, CPU), in the runner's
    order (per op: forward, then the invariance checks), one session, a fresh adapter instance."""
    name = name or cls.name
    A.register(name, cls)
    _close_workers(name)
    try:
        cases = [c for c in K.load() if c.id == ROWS_SPARSE]
        sel = Selection(frameworks=[name], dtypes=["float32"], ops=ops or OPS, checks=list(checks),
                        modes=modes or list(cls.modes))
        session = Session(load_policy(policy), Cache(), [], None, timing_reps=0)
        return {(it.op, it.check, it.mode): session.run(it) for it in expand(cases, sel, [name])}
    finally:
        _close_workers(name)
        A.unregister(name)


def _close_workers(name: str) -> None:
    """Stop this adapter's thread workers (harness.threads): a later run starts fresh ones, whose
    call counts (NonDeterministic) start at zero."""
    with T._lock:
        for key in [k for k in T._workers if k[0] == name]:
            T._workers.pop(key).close()
        for key in [k for k in T._failed if k[0] == name]:
            T._failed.pop(key)


def _results(rec) -> dict[str, dict]:
    return {r["variant"]: r for r in rec["invariance"]["results"]}


@pytest.fixture(scope="module")
def batch_records():
    return _run(BatchDependentSum, ["forward", "batch_invariance"])


def test_batch_dependent_sum_fails_batch_invariance_only(batch_records):
    recs = batch_records
    assert len(recs) == 8
    for op in OPS:
        fwd = recs[(op, "forward", "eager")]
        assert fwd["status"] == "pass", (op, fwd["message"])
        rec = recs[(op, "batch_invariance", "eager")]
        assert rec["status"] == "fail", op
        info = rec["invariance"]
        assert info["rule"] == "budget" and info["base"] == "row 0 alone"
        # rows 0 and 3 x (alone; in 2 at 2 places x 2 fillers; in 7, 64 and 1024 at 3 places x 2 fillers)
        assert info["variants"] == 46
        res = _results(rec)
        narrow = [v for v in res if re.fullmatch(r"row \d in (7|64|1024) at \d+, (random|padding)", v)]
        assert len(narrow) == 36
        assert info["differing"] == 36  # exactly the batches of 7 rows and more
        for v, r in res.items():
            if v in narrow:
                assert r["status"] == "fail" and r["n_diff"] > 0 and r["ulp_between"] > 100, (op, v, r)
            else:  # alone, and in batches of 2: the careful path
                assert r["status"] == "pass" and r["n_diff"] == 0, (op, v, r)
        assert re.fullmatch(r"row \d in (7|64|1024) at \d+, (random|padding)", info["worst"])
        assert info["max_ulp_between"] > 100  # float16 sums: ~2^-11 relative, hundreds of float32 ULPs
        assert rec["pair"]["variants"] == [info["worst"].split(" in ")[0] + " alone", info["worst"]]
        assert "variant_array(" in rec["repro"]  # a batch of 7 x 37 > 256 elements: rebuilt, not written out
    soft = recs[("softmax", "batch_invariance", "eager")]["invariance"]
    assert soft["bitwise_differences"] == 36 * 37  # every element of every narrow variant
    assert soft["worst"] == "row 3 in 7 at 0, random" and soft["max_ulp_between"] == 3105.0
    lse = recs[("logsumexp", "batch_invariance", "eager")]["invariance"]
    assert lse["bitwise_differences"] == 36  # one value per row


def test_a_batch_that_keeps_the_reduced_axis_fails_batch_invariance_on_its_shape():
    """BatchKeepsDims answers (B, 1) for (B,) from 7 rows on: each variant is held to the output
    contract of its own call, before its row is cut into the case's layout (which hid the shape:
    every variant passed)."""
    recs = _run(BatchKeepsDims, ["forward", "batch_invariance"])
    for op in OPS:
        assert recs[(op, "forward", "eager")]["status"] == "pass", op
        rec = recs[(op, "batch_invariance", "eager")]
        per_row = len(O.output_shapes(op, "forward", (4, 37), 1, {})["out"]) == 1
        assert rec["status"] == ("fail" if per_row else "pass"), (op, rec["message"])
        if per_row:
            res = _results(rec)
            wide = [v for v, r in res.items() if re.fullmatch(r"row \d in (7|64|1024) at \d+, (random|padding)", v)]
            assert len(wide) == 36 and all(res[v]["status"] == "fail" for v in wide)
            assert all(r["status"] == "pass" for v, r in res.items() if v not in wide)
            assert rec["shape_ok"] is False and "!= contract" in rec["message"], rec["message"]


def test_nondeterministic_fails_determinism_only():
    recs = _run(NonDeterministic, ["forward", "batch_invariance", "determinism"])
    n = os.cpu_count() or 1
    threads = ["1 thread"] + ([f"{n} threads"] if n > 1 else [])
    for op in OPS:
        assert recs[(op, "forward", "eager")]["status"] == "pass", op
        assert recs[(op, "batch_invariance", "eager")]["status"] == "pass", op  # each batch called once
        rec = recs[(op, "determinism", "eager")]
        assert rec["status"] == "fail", op
        info = rec["invariance"]
        assert info["base"] == "call 1" and info["variants"] == 5 + len(threads)
        assert "not_run" not in info, info.get("not_run")  # the workers imported the mutant (cwd: repo root)
        assert sorted(info["threads"]) == sorted(threads)
        res = _results(rec)
        # The forward check made the process's first call, so call 1 is its second (right); calls
        # 2..5 its third to sixth (float16 sums). Each worker's one call is its first: right.
        assert info["differing"] == 4 and info["worst"] == "call 2"
        for k in range(2, 6):
            assert res[f"call {k}"]["status"] == "fail" and res[f"call {k}"]["n_diff"] > 0
        for t in ["call 1", *threads]:
            assert res[t]["status"] == "pass" and res[t]["n_diff"] == 0, (op, t, res[t])
        assert rec["pair"]["variants"] == ["call 1", "call 2"]
    assert recs[("softmax", "determinism", "eager")]["invariance"]["bitwise_differences"] == 4 * 148


def test_jit_differs_fails_eager_vs_jit():
    recs = _run(JitDiffers, ["forward", "eager_vs_jit"])
    for op in OPS:
        assert recs[(op, "forward", "eager")]["status"] == "pass", op
        # The jit-mode forward check runs the jit path alone: it fails too.
        assert recs[(op, "forward", "jit")]["status"] == "fail", op
        rec = recs[(op, "eager_vs_jit", "jit")]
        assert ("eager_vs_jit", "eager") not in {(c, m) for (_, c, m) in recs}  # one item, recorded as jit
        assert rec["status"] == "fail"
        info = rec["invariance"]
        assert (info["base"], info["variants"], info["differing"], info["worst"]) == ("eager", 2, 1, "jit")
        res = _results(rec)
        assert res["eager"]["status"] == "pass" and res["jit"]["status"] == "fail"
        assert rec["pair"]["variants"] == ["eager", "jit"]
    assert recs[("softmax", "eager_vs_jit", "jit")]["invariance"]["bitwise_differences"] == 148


def test_tail_max_not_rescaled_fails_permutation_only():
    recs = _run(TailMaxNotRescaled, ["forward", "batch_invariance", "permutation"])
    for op in OPS:
        assert recs[(op, "forward", "eager")]["status"] == "pass", op
        assert recs[(op, "batch_invariance", "eager")]["status"] == "pass", op
        rec = recs[(op, "permutation", "eager")]
        assert rec["status"] == "fail", op
        info = rec["invariance"]
        assert (info["base"], info["variants"], info["differing"], info["worst"]) == \
            ("identity", 3, 1, "classes reversed")
        res = _results(rec)
        assert res["identity"]["status"] == "pass" and res["classes shuffled"]["status"] == "pass"
        assert res["classes shuffled"]["n_diff"] == 0  # no max moved into the tail: the same bits
        assert res["classes reversed"]["status"] == "fail"
        assert rec["pair"]["variants"] == ["identity", "classes reversed"]
        per_class = op in ("softmax", "log_softmax")
        assert info["bitwise_differences"] == (37 if per_class else 1)  # row 1 only
        if per_class:
            assert rec["pair"]["rows"] == [1]
    assert recs[("softmax", "permutation", "eager")]["invariance"]["max_ulp_between"] > 1e6


def test_careful_passes_every_invariance_check():
    recs = _run(Careful, ["forward", *INV.CHECKS], modes=list(O.MODES))  # every mode: the ones Careful lacks are left out
    for op in OPS:
        assert recs[(op, "forward", "eager")]["status"] == "pass"
        for check in ("batch_invariance", "determinism", "permutation"):
            rec = recs[(op, check, "eager")]
            assert rec["status"] == "pass", (op, check, rec["message"])
            info = rec["invariance"]
            assert info["differing"] == 0 and info["bitwise_differences"] == 0 and info["worst"] is None
            assert "not_run" not in info
        assert (op, "eager_vs_jit", "jit") not in recs  # a run over every mode leaves out a mode it lacks
    # Asked for by name, the check it cannot run is a skip with the reason.
    skip = _run(Careful, ["eager_vs_jit"], modes=["jit"])[("softmax", "eager_vs_jit", "jit")]
    assert skip["status"] == "skip" and skip["message"] == "careful has no jit mode"


# --------------------------------------------------------------------------------------------
# A difference in bits only: the policy's rule decides


def _bitwise_policy(tmp_path) -> str:
    text = (POLICY_DIR / "standard.toml").read_text()
    assert text.count('rule = "budget"') == 1 and text.count('name = "standard"') == 1
    p = tmp_path / "standard_bitwise.toml"
    p.write_text(text.replace('rule = "budget"', 'rule = "bitwise"').replace('name = "standard"',
                                                                          'name = "standard_bitwise"'))
    return str(p)


def test_policy_rules():
    assert load_policy("strict").invariance["rule"] == "bitwise"
    assert load_policy("standard").invariance["rule"] == "budget"


def test_batch_order_only_passes_standard_and_fails_bitwise(tmp_path):
    path = _bitwise_policy(tmp_path)
    pol = load_policy(path)
    assert pol.invariance["rule"] == "bitwise" and pol.budgets == load_policy("standard").budgets
    std = _run(BatchOrderOnly, ["forward", "batch_invariance"], ops=["softmax"])
    bit = _run(BatchOrderOnly, ["forward", "batch_invariance"], policy=path, ops=["softmax"])
    assert std[("softmax", "forward", "eager")]["status"] == "pass"
    rec = std[("softmax", "batch_invariance", "eager")]
    info = rec["invariance"]
    assert rec["status"] == "pass", rec["message"]
    assert info["rule"] == "budget" and info["differing"] == 44 and info["bitwise_differences"] == 638
    assert info["max_ulp_between"] == 1.0
    assert all(r["status"] == "pass" for r in info["results"])
    # the rows alone (2 variants) are the careful path: the 44 in batches differ
    assert {r["variant"] for r in info["results"] if r["n_diff"] == 0} == {"row 0 alone", "row 3 alone"}
    assert "44 differ from their base bit for bit" in rec["message"]
    rec = bit[("softmax", "batch_invariance", "eager")]
    assert rec["status"] == "fail"
    assert rec["invariance"]["rule"] == "bitwise" and rec["invariance"]["differing"] == 44
    assert all(r["status"] == "pass" for r in rec["invariance"]["results"])  # every variant within budget
    assert rec["tolerance"]["policy"] == "standard_bitwise"


# --------------------------------------------------------------------------------------------
# Repro: the snippet prints both variants and reproduces them bit for bit


def _as_written(rec):
    return json.loads(json.dumps(records.jsonable(rec), allow_nan=False))


def test_the_repro_of_a_failing_invariance_result_replays(batch_records):
    rec = _as_written(batch_records[("softmax", "batch_invariance", "eager")])
    assert rec["pair"]["variants"] == ["row 3 alone", "row 3 in 7 at 0, random"] and rec["pair"]["rows"] == [0]
    assert "tests.plugins.mutants import BatchDependentSum" in rec["repro"]
    n, bad = replay([rec])
    assert (n, bad) == (1, [])


def test_the_repro_of_a_framework_eager_vs_jit_difference_replays():
    pytest.importorskip("torch")
    if not A.get("torch").available()[0]:
        pytest.skip("torch: " + A.get("torch").available()[1])
    cases = [c for c in K.load() if c.id == ROWS_SPARSE]
    items = expand(cases, Selection(frameworks=["torch"], dtypes=["float32"], ops=["softmax"],
                                    checks=["eager_vs_jit"], modes=["eager", "jit"]), ["torch"])
    assert len(items) == 1
    rec = Session(load_policy("strict"), Cache(), [], None, timing_reps=0).run(items[0])
    assert rec["status"] == "fail" and rec["invariance"]["rule"] == "bitwise"
    info = rec["invariance"]
    if not info["differing"]:
        pytest.skip("torch's compiled softmax matches its eager one bit for bit on this machine")
    # torch 2.x on x86 CPUs: 35 of the 148 elements 1 ULP apart (the count depends on the CPU's
    # vector width); a compiled sum in another order, never far.
    assert info["worst"] == "jit" and 0 < info["bitwise_differences"] < 148 and info["max_ulp_between"] <= 4
    assert rec["pair"]["variants"] == ["eager", "jit"]
    n, bad = replay([_as_written(rec)])
    assert n == 1 and not bad, [(m.why, m.history) for m in bad]


def test_known_invariance_findings_match_only_bitwise_failures_under_their_policy():
    """The invariance findings of harness/known.toml (policies = ["strict"], special not_invariant)
    excuse a failure on bits alone under strict, nothing under standard, and are no stale entry of
    a standard run."""
    from harness.known import excuse, load_known
    from harness.runner import Session

    known = {k.id: k for k in load_known()}
    rec = {"framework": "jax", "check": "batch_invariance", "op": "softmax", "dtype": "float32", "mode": "eager",
           "device": "cpu", "variant": "default", "case_id": "invariance/rows_sparse", "status": "fail",
           "special": "not_invariant", "tolerance": {"policy": "strict"}}
    k = known["jax-cpu-not-batch-invariant"]
    assert k.matches(rec) and excuse([k], rec) == ([k], set())
    # a strict budget failure (numbers out of budget) is no reproducibility finding
    assert excuse([k], {**rec, "special": "match", "special_counts": {}, "n_bad": 2})[1] == {"match"}
    assert not k.matches({**rec, "tolerance": {"policy": "standard"}})
    assert not k.matches({**rec, "check": "determinism"})
    strict = Session(load_policy("strict"), Cache(), list(known.values()), None, timing_reps=0)
    standard = Session(load_policy("standard"), Cache(), list(known.values()), None, timing_reps=0)
    scoped = {i for i, e in known.items() if "policies" in e.match}
    assert {"jax-cpu-not-batch-invariant", "torch-compile-differs-from-eager", "tf-xla-differs-from-eager",
            "permutation-changes-summation-order-jax"} <= scoped
    assert scoped <= {e.id for e in strict.unmatched_known(["tensorflow", "torch", "jax"])}
    assert not scoped & {e.id for e in standard.unmatched_known(["tensorflow", "torch", "jax"])}
