"""The built-in case library (cases/*.json): present, well formed, affordable, and loadable.

These tests check the data, not the frameworks: every family file exists, every case says why
it exists, ids are stable and unique, the whole library loads fast, every case's arrays
resolve in each of its dtypes to the declared shape, and the hand-computed boundary values
(exp overflow thresholds, one-ULP near ties) are what their names say.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import mpmath
import numpy as np
import pytest

from harness import cases as K
from harness import dtypes as D
from harness import ops as O
from harness import reference as R

CASES_DIR = Path(__file__).resolve().parent.parent / "cases"
FAMILIES = ["random", "extreme", "soft_labels", "integer_labels", "shapes", "large_vocab", "seed", "offset",
            "label_smoothing", "sparse_options", "reduction", "where", "lse_weights", "scale", "second_order", "invariance"]
ID_RE = re.compile(r"^[a-z0-9_]+/[A-Za-z0-9_.+\-]+$")
#: The default suite (no "large" tag) stays small: at most this many classes and elements.
SMALL_C, SMALL_SIZE = 64, 512
#: except a row of a few thousand classes (tagged long_row), whose sums exceed 2048: one for the value
#: checks, one for the invariance checks (a reduction this long is split across threads and lanes).
LONG_ROW = 4608


def _raw_files() -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted(CASES_DIR.glob("*.json"))}


def _declared_shape(spec, base: Path) -> tuple[int, ...]:
    """The shape a case file declares for an array, read from the raw JSON, independently of
    the loader: a generator's "shape", a file's array shape, or the nested list's shape."""
    if isinstance(spec, str) and spec.strip().lower().lstrip("+-") not in {"inf", "nan", *K.TOKENS}:
        spec = {"path": spec}
    if isinstance(spec, dict):
        if "random" in spec:
            return tuple(spec["shape"])
        p = base / spec["path"]
        if p.suffix == ".npz":
            with np.load(p, allow_pickle=False) as z:
                return z[spec.get("key", "logits")].shape
        return np.load(p, allow_pickle=False, mmap_mode="r").shape
    return np.shape(np.array(spec, dtype=object))


@pytest.fixture(scope="module")
def library() -> list[K.Case]:
    return K.load()


@pytest.fixture(scope="module")
def by_id(library) -> dict[str, K.Case]:
    return {c.id: c for c in library}


def test_every_family_file_present():
    present = {p.stem for p in CASES_DIR.glob("*.json")}
    missing = [f for f in FAMILIES if f not in present]
    assert not missing, f"missing family files in {CASES_DIR}: {missing}"


@pytest.mark.parametrize("family", FAMILIES)
def test_family_file_header(family):
    raw = _raw_files()[family]
    assert raw.get("family") == family, f"cases/{family}.json declares family {raw.get('family')!r}"
    assert str(raw.get("description", "")).strip(), f"cases/{family}.json has no description"
    assert raw["cases"], f"cases/{family}.json has no cases"


@pytest.mark.parametrize("family", FAMILIES)
def test_ids_and_why(family):
    raw = _raw_files()[family]
    seen: set[str] = set()
    for i, c in enumerate(raw["cases"]):
        cid = c.get("id", "")
        assert ID_RE.match(cid), f"cases/{family}.json case #{i}: id {cid!r} is not family/name"
        assert cid.split("/", 1)[0] == family, f"case {cid!r} in cases/{family}.json: wrong family prefix"
        assert cid not in seen, f"duplicate id {cid!r} in cases/{family}.json"
        seen.add(cid)
        assert str(c.get("why", "")).strip(), f"case {cid!r} has no 'why'"


def test_ids_unique_across_library(library):
    ids = [c.id for c in library]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    assert not dup, f"ids defined twice: {dup}"
    assert {c.family for c in library} >= set(FAMILIES)


def test_library_loads_twice_alike():
    """The library loads without generating its large arrays twice differently (its load time is
    measured by benchmarks/report_and_cases.py: a timed assertion would fail on a loaded machine)."""
    a, b = K.load(), K.load()
    assert [c.id for c in a] == [c.id for c in b] and len(a) > 100
    for c, d in zip(a, b):
        assert np.array_equal(c.logits_for(D.DTYPES["float32"]), d.logits_for(D.DTYPES["float32"]), equal_nan=True)


def test_logits_resolve_to_declared_shape(library):
    raw = {c["id"]: c for f in _raw_files().values() for c in f["cases"]}
    for case in library:
        want = _declared_shape(raw[case.id]["logits"], CASES_DIR)
        assert case.shape == want, f"{case.id}: loader shape {case.shape} != declared {want}"
        for name in case.dtypes:
            dt = D.get(name)
            x = case.logits_for(dt)
            assert x.shape == want, f"{case.id} [{name}]: logits shape {x.shape} != declared {want}"
            assert x.dtype == np.float64
            # exact cast: every value is representable in the tested dtype
            finite = np.isfinite(x)
            back = x[finite].astype(dt.np).astype(np.float64)
            assert np.array_equal(back, x[finite]), f"{case.id} [{name}]: logits not exact in {name}"
            y = case.labels_for(dt)
            if case.label_kind == "dense":
                assert y.shape == want, f"{case.id} [{name}]: dense labels {y.shape} != {want}"
            elif case.label_kind == "sparse":
                batch = tuple(n for i, n in enumerate(want) if i != case.axis % len(want))
                assert y.shape == batch and y.dtype == np.int64, f"{case.id}: sparse labels {y.shape}"


def test_every_case_runs_some_op_in_some_dtype(library):
    for c in library:
        assert c.ops and all(o in O.OPS for o in c.ops), c.id
        assert c.dtypes and all(d in D.DTYPES for d in c.dtypes), c.id


def test_default_suite_stays_small(library):
    long_rows = []
    for c in library:
        if "large" in c.tags:
            continue
        shape = c.shape
        C = shape[c.axis % len(shape)]
        size = int(np.prod(shape))
        if "long_row" in c.tags:  # one row longer than float16's exact integer sums (2048)
            assert size == C <= LONG_ROW, f"{c.id}: a long_row case is one row of at most {LONG_ROW}"
            long_rows.append(c.id)
            continue
        if "vocab" in c.tags:  # a sum over a whole vocabulary (an option's, S's): two rows at most, half dtypes
            assert size // C <= 2 and C <= 131072 and set(c.dtypes) <= {"float16", "bfloat16"}, c.id
            continue
        if "batch" in c.tags:  # a reduction over more rows than float16 counts: 2 classes, half dtypes
            assert C <= 2 and size // C <= 70000 and set(c.dtypes) <= {"float16", "bfloat16"}, c.id
            continue
        assert C <= SMALL_C and size <= SMALL_SIZE, (
            f"{c.id}: shape {shape} is too big for the default suite; tag it 'large'")
    assert sorted(long_rows) == ["extreme/long_row", "invariance/long_row"]


def test_large_cases_are_tagged(by_id):
    large = [i for i in by_id if i.startswith("large_vocab/")]
    assert len(large) >= 4
    for cid in large + ["shapes/long_batch"]:
        assert "large" in by_id[cid].tags, f"{cid} must carry the tag 'large'"
    widths = {by_id[i].shape[-1] for i in large}
    assert {32768, 131072} <= widths
    assert all(by_id[i].label_kind == "sparse" for i in ("large_vocab/c32768", "large_vocab/c131072"))
    masked = by_id["large_vocab/c32768_masked"].logits_for(D.get("float32"))
    assert np.isneginf(masked).any()


def test_select_substring_and_glob(library):
    ids = lambda pat: [c.id for c in K.select(library, pat)]  # noqa: E731
    assert ids("neg_inf_all") == ["extreme/neg_inf_all"]
    assert set(ids("large_vocab/")) == {"large_vocab/c32768", "large_vocab/c32768_dense",
                                        "large_vocab/c131072", "large_vocab/c32768_masked"}
    assert set(ids("extreme/exp_overflow_*_float16")) == {"extreme/exp_overflow_below_float16",
                                                          "extreme/exp_overflow_above_float16"}
    assert set(ids("soft_labels/one_hot*")) == {"soft_labels/one_hot", "soft_labels/one_hot_generated"}
    assert set(ids("shapes/empty_batch*, seed/uniform")) == {"shapes/empty_batch",
                                                            "shapes/empty_batch_dense", "seed/uniform"}
    assert ids("random/scale_1e4_sparse_seed?03") == ["random/scale_1e4_sparse_seed703"]
    assert ids("no-such-case") == []
    assert len(ids(None)) == len(library)


# --------------------------------------------------------------------------------------------
# The hand-computed values are what the case names say.


def _exp_finite(x: float, dt: D.DType) -> bool:
    """exp(x) rounds to a finite number of dt (overflow starts at max + ulp(max)/2)."""
    with mpmath.workprec(200):
        return mpmath.exp(mpmath.mpf(x)) < mpmath.mpf(dt.max) + mpmath.mpf(2.0) ** (dt.emax - dt.p)


@pytest.mark.parametrize("name", D.DTYPE_NAMES)
def test_exp_overflow_edges(by_id, name):
    dt = D.get(name)
    below = by_id[f"extreme/exp_overflow_below_{name}"].logits_for(dt)[0, 0]
    above = by_id[f"extreme/exp_overflow_above_{name}"].logits_for(dt)[0, 0]
    assert _exp_finite(below, dt), f"{name}: exp({below!r}) overflows"
    assert not _exp_finite(above, dt), f"{name}: exp({above!r}) is finite"
    assert above - below == D.ulp(np.array([below]), None, dt)[0], f"{name}: not neighbours"
    for cid in (f"extreme/exp_overflow_below_{name}", f"extreme/exp_overflow_above_{name}"):
        assert by_id[cid].dtypes == [name]


@pytest.mark.parametrize("name", ["bfloat16", "float32", "float64"])
def test_near_tie_is_one_ulp(by_id, name):
    dt = D.get(name)
    x = by_id[f"extreme/near_tie_ulp_{name}"].logits_for(dt)
    assert x[0, 1] - x[0, 0] == dt.eps, f"{name}: {x[0, 1]!r} - 1 is not one ULP"
    x16 = by_id["extreme/near_tie_float16_ulp"]
    assert "bfloat16" not in x16.dtypes
    for n in x16.dtypes:
        assert x16.logits_for(D.get(n))[0, 1] == 1 + 2.0 ** -10


def test_overflowing_values_restricted(by_id):
    """A literal beyond a dtype's range (1e30 in float16, 1e300 below float64) is only tested
    in the dtypes that hold it; the dtype-relative tokens ("max") resolve per dtype."""
    for c in by_id.values():
        for n in c.dtypes:
            dt = D.get(n)
            x = np.asarray(K._resolve(c.logits, dt))  # before the cast
            big = np.abs(x[np.isfinite(x)])
            if big.size and big.max() > dt.max:
                pytest.fail(f"{c.id}: logit {big.max():g} overflows {n}; restrict its dtypes")


def test_classic_findings_present(by_id):
    c = by_id["extreme/inf_0_1"]
    assert c.logits_for(D.get("float32")).tolist() == [[np.inf, 0.0, 1.0]]
    c = by_id["extreme/ce_masked_zero_label"]
    assert "softmax_cross_entropy" in c.ops
    assert c.labels_for(D.get("float32")).tolist() == [[0.0, 0.5, 0.5]]


def test_npz_and_npy_examples_load(by_id):
    c = by_id["extreme/training_step_npz"]
    assert c.shape == (4, 16) and c.label_kind == "sparse"
    assert by_id["large_vocab/c32768_masked"].shape == (4, 32768)


def test_reference_computes_every_small_case(library):
    """Every non-large case and op has a float32 forward reference: the engine raises on
    nothing in the library, and the output has the contract's number of elements."""
    dt = D.get("float32")
    for c in library:
        if "large" in c.tags or "float32" not in c.dtypes:
            continue
        for op in c.ops:
            ref = R.compute(op, "forward", c.logits_for(dt), c.labels_for(dt), c.axis, dt)
            want = O.output_shapes(op, "forward", c.shape, c.axis)["out"]
            assert ref.outputs["out"].rounded.size == int(np.prod(want)), f"{c.id} {op}"


def test_reference_reduction_of_1d_logits_is_0d(by_id):
    c = by_id["shapes/one_d"]
    dt = D.get("float32")
    for op in ("logsumexp", "sparse_softmax_cross_entropy"):
        ref = R.compute(op, "forward", c.logits_for(dt), c.labels_for(dt), c.axis, dt)
        assert ref.outputs["out"].rounded.shape == (), op


def test_reference_output_shapes_match_contract(library):
    dt = D.get("float32")
    bad = []
    for c in library:
        if "large" in c.tags or "float32" not in c.dtypes:
            continue
        for op in c.ops:
            for check in O.VALUE_CHECKS:
                ref = R.compute(op, check, c.logits_for(dt), c.labels_for(dt), c.axis, dt)
                want = O.output_shapes(op, check, c.shape, c.axis)
                got = {n: a.rounded.shape for n, a in ref.outputs.items()}
                if got != want:
                    bad.append(f"{c.id} {op} {check}: {got} != {want}")
    assert not bad, "\n".join(bad)


# --------------------------------------------------------------------------------------------
# The offset family: built by tests/offset_family.py, a metamorphic shift of exact values.


def test_offset_family_is_what_its_builder_makes():
    from tests import offset_family

    assert (CASES_DIR / "offset.json").read_text() == offset_family.dumps(offset_family.build())


def test_offset_family_reaches_the_magnitudes_where_the_ulp_exceeds_1(by_id):
    from tests import offset_family

    for name in D.DTYPE_NAMES:
        dt = D.DTYPES[name]
        big = max(abs(c) for c in offset_family.OFFSETS[name])
        assert float(D.ulp(np.array([big]), None, dt)[0]) >= 0.125 if name == "float64" else 1.0
        x = by_id[f"offset/seed_{name}"].logits_for(dt)
        assert np.array_equal(D.cast_exact(x, dt), x)  # every shifted value exact
    # language-model logit ranges (tens to a few hundred) in the half-precision formats
    for name in ("bfloat16", "float16"):
        x = by_id[f"offset/seed_{name}"].logits_for(D.DTYPES[name])
        assert any(10 <= abs(r).max() <= 400 and np.ptp(r) >= 3 for r in x)


@pytest.mark.parametrize("name", D.DTYPE_NAMES)
def test_offset_rows_have_the_exact_outputs_of_their_base_rows(by_id, name):
    """Row 2k + 1 is row 2k plus a constant c: every exact output (and gradient) is the same,
    logsumexp's is c more; the reference must say so bit for bit."""
    dt = D.DTYPES[name]
    for kind in ("seed", "soft"):
        case = by_id[f"offset/{kind}_{name}"]
        x = case.logits_for(dt)
        y = case.labels_for(dt)
        c = x[1::2, 0] - x[0::2, 0]
        assert np.all(x[1::2] - x[0::2] == c[:, None])
        for op in case.ops:
            spec = O.OPS[op]
            yy = y if spec.labels != "none" else None
            for check in O.VALUE_CHECKS:
                g = case.cotangent_for("pattern", op, dt) if check != "forward" else None
                if g is not None and spec.reduces:  # the same cotangent for each twin
                    g = np.repeat(g[0::2], 2)
                elif g is not None:
                    g = np.repeat(g[0::2], 2, axis=0)
                ref = R.compute(op, check, x, yy, case.axis, dt, cotangent=g)
                for n, r in ref.outputs.items():
                    v0, v1 = r.rounded[0::2], r.rounded[1::2]
                    if op == "logsumexp" and check == "forward":
                        assert np.allclose(v1 - v0, c, rtol=0, atol=float(D.ulp(np.abs(v1), None, dt).max())), (kind, op)
                    else:
                        np.testing.assert_array_equal(v0, v1, err_msg=f"{case.id} {op} {check} {n}")
