"""Known entries excuse symptoms, not scopes: a failing result is known only when every one of its
symptoms (harness.known.symptoms) is excused by an entry in whose scope it is. An entry for
one defect of a framework cannot excuse another defect of the same framework, dtype and op.

The wrong implementations below run under the names of real frameworks (as a wrong kernel
would) against the project's own harness/known.toml: each is in the scope of an entry whose
description explains a different symptom, and each fails; an implementation that does what
the entry describes is known.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
from pathlib import Path

import numpy as np
import pytest

from harness import adapters as A
from harness import cases as K
from harness import dtypes as D
from harness.adapters.base import Call, Output
from harness.cache import Cache
from harness.errors import HarnessInputError
from harness.known import Known, Model, excuse, input_kinds, load_known, parse_entries, symptoms
from harness.policy import load as load_policy
from harness.runner import Item, Session
from tests.plugins.mutants import Careful

ROOT = Path(__file__).resolve().parent.parent


def test_every_entry_of_the_project_names_the_symptoms_it_excuses():
    """An entry without `special` excuses every symptom in its scope (a user's file may say so);
    the project's own entries each name theirs, so none excuses what its description does not."""
    blanket = [k.id for k in load_known() if k.excuses is None]
    assert not blanket, f"entries that name no symptom: {blanket}"


@pytest.mark.parametrize("rec, want", [
    # the worst class alone was all the old matcher saw: here it is nan_expected_finite
    ({"status": "fail", "special": "nan_expected_finite", "special_counts": {"nan_expected_finite": 2},
      "n_bad": 1, "dtype_ok": True, "shape_ok": True}, {"nan_expected_finite", "match"}),
    # flushed subnormals count in n_bad: not numeric on their own ...
    ({"status": "fail", "special": "subnormal_flushed", "special_counts": {"subnormal_flushed": 2}, "n_bad": 2},
     {"subnormal_flushed"}),
    # ... but a third bad element is
    ({"status": "fail", "special": "subnormal_flushed", "special_counts": {"subnormal_flushed": 2}, "n_bad": 3},
     {"subnormal_flushed", "match"}),
    ({"status": "fail", "special": "match", "special_counts": {}, "n_bad": 0, "dtype_ok": False}, {"wrong_dtype"}),
    ({"status": "fail", "special": "match", "special_counts": {}, "n_bad": 4, "dtype_ok": False},
     {"wrong_dtype", "match"}),
    ({"status": "fail", "special": "match", "shape_ok": False}, {"wrong_shape"}),
    ({"status": "error", "special": "raised", "special_counts": {"raised": 1}}, {"raised"}),
    ({"status": "error", "special": "crash"}, {"crash"}),
    # an invariance check failing on bits alone
    ({"status": "fail", "special": "not_invariant", "special_counts": {}, "n_bad": 0}, {"not_invariant"}),
])
def test_symptoms_of_a_failing_result(rec, want):
    assert symptoms(rec) == want


def test_beyond_float32_is_read_from_the_input_or_its_summary():
    assert input_kinds({"input": {"logits": [[1e300, 0.0, "-inf"]]}}) == {"beyond_float32", "neg_inf"}
    assert input_kinds({"input": {"logits": [[3.4028234663852886e38, -3.4028234663852886e38]]}}) == set()
    assert input_kinds({"input_summary": {"min": -1e39, "max": 1.0, "n_nan": 1}}) == {"beyond_float32", "nan"}
    assert input_kinds({"input_summary": {"min": -1.0, "max": 1.0, "n_nan": 0}}) == set()


def _entry(kid, special, **match):
    m = {k: list(v) for k, v in match.items()}
    if special is not None:
        m["special"] = list(special)
    return Known(kid, f"{kid} described", "numpy", m)


def _session(tmp_path, entries):
    return Session(load_policy("standard"), Cache(tmp_path / "c"), entries, None, timing_reps=0)


def test_each_symptom_needs_an_entry_of_the_scope_that_excuses_it(tmp_path):
    floatx = _entry("floatx", ["match", "wrong_dtype"], dtypes=["float64"])
    posinf = _entry("posinf", ["nan_expected_finite"], inputs=["pos_inf"])
    other_dtype = _entry("other-dtype", ["inf_mismatch"], dtypes=["float16"])
    entries = [floatx, posinf, other_dtype]
    base = {"framework": "numpy", "dtype": "float64", "status": "fail", "input": {"logits": [["inf", 0.0, 1.0]]}}

    # Two defects, two entries: known, the worst class's entry first.
    both = {**base, "special": "nan_expected_finite", "special_counts": {"nan_expected_finite": 1}, "n_bad": 2,
            "dtype_ok": False}
    used, left = excuse(entries, both)
    assert [k.id for k in used] == ["posinf", "floatx"] and left == set()
    s = _session(tmp_path, entries)
    s.classify_known(both)
    assert both["known"]["id"] == "posinf" and both["known"]["also"] == ["floatx"]
    assert s.known_use.hits == {"posinf", "floatx"}

    # A third symptom that only an entry of another scope excuses: not known, and the message says so.
    third = {**both, "special_counts": {"nan_expected_finite": 1, "inf_mismatch": 1}, "message": "special values"}
    third.pop("known")
    used, left = excuse(entries, third)
    assert left == {"inf_mismatch"}
    s.classify_known(third)
    assert "known" not in third
    assert third["message"] == ("special values; not a known discrepancy: inf_mismatch excused by no entry of "
                                "its scope (floatx: match, wrong_dtype; posinf: nan_expected_finite)")

    # The NaN without a +inf logit: posinf's scope does not hold it.
    finite = {**both, "input": {"logits": [[1.0, 0.0, 1.0]]}}
    assert excuse(entries, finite)[1] == {"nan_expected_finite"}

    # An entry that names no symptom excuses all of them (a user's blanket entry).
    assert [k.id for k in excuse([_entry("all", None)], third)[0]] == ["all"]


def _item(case, op, fw, dtype, variant="default", check="forward"):
    return Item(case, op, check, variant, fw, "cpu", dtype, "eager", "ones" if check == "grad" else None)


CE = K.parse_case({"id": "t/ce", "logits": [[1.0, 2.0, 3.0], [0.5, -1.0, 2.0]], "labels": [[0, 0, 1], [0.25, 0.25, 0.5]],
                   "op": "softmax_cross_entropy"}, file="<test>", index=0, family=None, base=ROOT)
LSE = K.parse_case({"id": "t/lse", "logits": [[0.1, 0.3, 0.5, 0.9]], "op": "logsumexp"}, file="<test>", index=0,
                   family=None, base=ROOT)
TINY = K.parse_case({"id": "t/tiny", "logits": [[88.72, 0.0, -1.0], [1.0, 2.0, 3.0]], "op": "softmax"}, file="<test>",
                    index=0, family=None, base=ROOT)


class KerasFloatx(Careful):
    """tf.keras' CategoricalCrossentropy as keras-cce-computes-in-floatx describes it: the inputs
    cast to float32, the loss computed and returned in float32 whatever the input dtype."""

    name = "tensorflow"
    modes = ("eager",)
    variants = {"softmax_cross_entropy": ("keras",)}
    wrong: str | None = None
    floatx = "float32"

    def run(self, call: Call) -> Output:
        fx = D.get(self.floatx)
        f32 = Call(**{**call.__dict__, "dtype": self.floatx,
                      "logits": D.cast_exact(np.asarray(call.logits, np.float64), fx),
                      "labels": D.cast_exact(np.asarray(call.labels, np.float64), fx)})
        out = super().run(f32)
        arrays = {k: v.copy() for k, v in out.arrays.items()}
        if self.wrong == "nan":  # a NaN loss for finite logits in range
            for v in arrays.values():
                v.reshape(-1)[0] = np.nan
        if self.wrong == "scaled":  # a loss 1000 times too large, in the dtype asked for
            return Output({k: (v * 1000).astype(np.float16).astype(np.float64) for k, v in arrays.items()},
                          {k: call.dtype for k in arrays}, out.devices)
        return Output(arrays, {k: "float32" for k in arrays}, out.devices)


class KerasFloatxNan(KerasFloatx):
    wrong = "nan"


class KerasScaled(KerasFloatx):
    wrong = "scaled"


class KerasBfloat16(KerasFloatx):
    """A float64 loss computed in bfloat16 (a mixed-precision policy's), returned in float32: the
    symptoms of keras-cce-computes-in-floatx (`match`, `wrong_dtype`), values 2^16 times further
    off than float32's."""

    floatx = "bfloat16"


class ScipyFloat64(Careful):
    """scipy.special.logsumexp on bfloat16 as scipy-logsumexp-bfloat16-returns-float64 says: the
    exact value in float64; with `plus_one`, that value + 1 (a wrong value in the same dtype)."""

    name = "scipy"
    modes = ("eager",)
    plus_one = False

    def run(self, call: Call) -> Output:
        f64 = Call(**{**call.__dict__, "dtype": "float64", "logits": np.asarray(call.logits, np.float64)})
        out = super().run(f64)
        return Output({k: v + (1.0 if self.plus_one else 0.0) for k, v in out.arrays.items()},
                      {k: "float64" for k in out.arrays}, out.devices)


class ScipyPlusOne(ScipyFloat64):
    plus_one = True


class TfFlush(Careful):
    """TensorFlow's softmax as ftz-subnormal-results-tf says (subnormal results flushed to zero);
    with `doubled`, every normal result doubled too."""

    name = "tensorflow"
    modes = ("eager",)
    doubled = False

    def finish(self, a, dt):
        v, n = super().finish(a, dt)
        return np.where(np.abs(v) < dt.tiny, 0.0, (2.0 if self.doubled else 1.0) * v), n


class TfFlushDoubled(TfFlush):
    doubled = True


@pytest.mark.parametrize("cls, case, op, dtype, variant, known", [
    (KerasFloatx, CE, "softmax_cross_entropy", "float64", "keras", "keras-cce-computes-in-floatx"),
    (KerasFloatx, CE, "softmax_cross_entropy", "float16", "keras", "keras-cce-computes-in-floatx-half"),
    (KerasFloatxNan, CE, "softmax_cross_entropy", "float64", "keras", None),
    (KerasScaled, CE, "softmax_cross_entropy", "float16", "keras", None),
    (KerasBfloat16, CE, "softmax_cross_entropy", "float64", "keras", None),
    (ScipyFloat64, LSE, "logsumexp", "bfloat16", "default", "scipy-logsumexp-bfloat16-returns-float64"),
    (ScipyPlusOne, LSE, "logsumexp", "bfloat16", "default", None),
    (TfFlush, TINY, "softmax", "float32", "default", "ftz-subnormal-results-tf"),
    (TfFlushDoubled, TINY, "softmax", "float32", "default", None),
], ids=["floatx-float64", "floatx-float16", "floatx-nan", "float16-wrong-values", "floatx-bfloat16", "scipy-float64",
        "scipy-plus-one",
        "tf-flush", "tf-flush-doubled"])
def test_an_entry_excuses_what_it_describes_and_no_other_defect(tmp_path, cls, case, op, dtype, variant, known):
    """Under the project's known.toml, the behaviour an entry describes is known; a wrong
    implementation in the same entry's scope with another symptom fails (before symptoms, the
    four wrong ones were known: their entries matched on framework, dtype and op, or on the worst
    class alone)."""
    with A.registered(cls.name, cls):
        rec = _session(tmp_path, load_known()).run(_item(case, op, cls.name, dtype, variant))
    assert rec["status"] == "fail", rec.get("message")
    assert (rec.get("known") or {}).get("id") == known, (rec.get("known"), rec.get("message"), symptoms(rec))
    if known is None:
        assert "not a known discrepancy" in rec["message"]


def test_a_model_excuses_what_the_framework_computes_and_not_a_worse_computation_of_the_same_symptoms(tmp_path):
    """keras-cce-computes-in-floatx's model (float32 arithmetic on float32-rounded inputs): a float64
    loss computed in float32 is known, with the model's judgment as evidence; one computed in
    bfloat16 has the same symptoms (`match`, `wrong_dtype`) and was known before models; now it
    fails, naming the model and how far off it is."""
    item = _item(CE, "softmax_cross_entropy", "tensorflow", "float64", "keras")
    with A.registered("tensorflow", KerasFloatx):
        rec = _session(tmp_path, load_known()).run(item)
    m = rec["known"]["models"]["keras-cce-computes-in-floatx"]
    assert m["holds"] and m["model"]["dtype"] == "float32" and m["n_bad"] == 0 and m["excess"] < 1
    # Row 0, logits [1, 2, 3], label 2: exact log(e + e^2 + e^3) - 3 = 0.4076059644443803; float32
    # gives its nearest float, 0.40760597586631775: ~1e8 float64 ULPs, under the model 0.5 ULP at most.
    assert rec["output"]["out"][0] == 0.40760597586631775 and rec["max_ulp"] > 1e7 and m["max_ulp"] <= 0.5

    with A.registered("tensorflow", KerasBfloat16):
        worse = _session(tmp_path, load_known()).run(item)
        unmodelled = [dataclasses.replace(k, model=None) for k in load_known()]
        before = _session(tmp_path, unmodelled).run(item)
    assert symptoms(worse) == symptoms(rec) == {"match", "wrong_dtype"}
    assert worse["output"]["out"][0] == 0.408203125  # bfloat16's nearest
    assert not worse.get("known") and "its model (the exact result of logits, labels, cotangent, options rounded " \
        "to float32, within float32's budget) does not hold: 2 of 2 elements out of its budget" in worse["message"]
    assert "so it excuses only wrong_dtype" in worse["message"]
    assert before["known"]["id"] == "keras-cce-computes-in-floatx"  # what the model closes


OVER = K.parse_case({"id": "t/over", "logits": [[65504.0, 0.0, -65504.0]], "labels": [[0.0, 0.0, 1.0]],
                     "op": "softmax_cross_entropy"}, file="<test>", index=0, family=None, base=ROOT)


def test_a_half_inputs_float32_loss_is_excused_an_overflow_only_where_its_model_holds(tmp_path):
    """keras-cce-computes-in-floatx-half excuses a float32 result (`wrong_dtype`) and a finite one
    where the exact loss overflows the half dtype (`inf_mismatch`): float16 logits [65504, 0, -65504],
    label 2, exact loss 131008 + e^-65504 (inf in float16), float32 gives 131008.0. Its model says
    the value is float32's; a loss computed in bfloat16 (logits 65536, loss 131072.0) has the same
    symptoms and was known without the model."""
    item = _item(OVER, "softmax_cross_entropy", "tensorflow", "float16", "keras")
    with A.registered("tensorflow", KerasFloatx):
        rec = _session(tmp_path, load_known()).run(item)
    assert symptoms(rec) == {"inf_mismatch", "wrong_dtype"} and rec["output"]["out"] == [131008.0]
    assert rec["known"]["id"] == "keras-cce-computes-in-floatx-half"
    m = rec["known"]["models"]["keras-cce-computes-in-floatx-half"]
    assert m["holds"] and m["model"]["dtype"] == "float32" and m["n_bad"] == 0 and m["max_ulp"] <= 0.5

    with A.registered("tensorflow", KerasBfloat16):
        worse = _session(tmp_path, load_known()).run(item)
        unmodelled = [dataclasses.replace(k, model=None) for k in load_known()]
        before = _session(tmp_path, unmodelled).run(item)
    assert symptoms(worse) == symptoms(rec) and worse["output"]["out"] == [131072.0]
    assert worse["status"] == "fail" and not worse.get("known"), worse.get("known")
    assert "its model (the exact result of logits, labels, cotangent, options rounded to float32, within " \
        "float32's budget) does not hold: 1 of 1 elements out of its budget" in worse["message"], worse["message"]
    assert before["known"]["id"] == "keras-cce-computes-in-floatx-half"  # what the model closes


class KerasLabelsRounded(Careful):
    """keras-jax's SparseCategoricalCrossentropy(dtype=...) as sparse-dtype-rounds-integer-labels-
    keras-jax describes it: the integer labels through the loss's dtype (`through`, default the
    call's) and back."""

    name = "keras-jax"
    modes = ("eager",)
    variants = {"sparse_softmax_cross_entropy": ("dtype",)}
    through: str | None = None

    def run(self, call: Call) -> Output:
        lab = D.cast_exact(np.asarray(call.labels, np.float64), D.get(self.through or call.dtype)).astype(np.int64)
        return super().run(Call(**{**call.__dict__, "labels": lab}))


class KerasLabelsThroughBfloat16(KerasLabelsRounded):
    through = "bfloat16"


_X = (np.arange(4110) % 16) / 16  # exact in float16
_X[4102] = 8.0
VOCAB = K.parse_case({"id": "large_vocab/t", "logits": [_X.tolist()], "labels": [4102],
                      "op": "sparse_softmax_cross_entropy"}, file="<test>", index=0, family=None, base=ROOT)


@pytest.mark.parametrize("cls, loss, known", [
    (KerasLabelsRounded, 8.6953125, True),
    (KerasLabelsThroughBfloat16, 9.1953125, False),
])
def test_a_model_that_rounds_the_labels(tmp_path, cls, loss, known):
    """Label 4102 of 4110 classes (logits (j mod 16)/16, x[4102] = 8): exact loss
    1.1923419718200918. Through float16 (spacing 4 at 4096) it becomes 4104, whose loss
    8.692341971820092 rounds to 8.6953125: what the entry's model ({rounds = ["labels"]})
    computes, known. Through bfloat16 on a float16 call it becomes 4096 (9.192341971820092,
    9.1953125): the same symptom, another computation, not known (mpmath at 200 bits)."""
    with A.registered("keras-jax", cls):
        rec = _session(tmp_path, load_known()).run(
            _item(VOCAB, "sparse_softmax_cross_entropy", "keras-jax", "float16", "dtype"))
    assert rec["status"] == "fail" and rec["worst"]["got"] == loss
    assert rec["worst"]["exact"] == 1.1923419718200918
    assert bool(rec.get("known")) == known, rec.get("message")
    if known:
        assert rec["known"]["models"]["sparse-dtype-rounds-integer-labels-keras-jax"]["max_ulp"] <= 0.5


def test_a_model_is_checked_when_the_file_is_read():
    base = {"id": "m", "framework": "numpy", "description": "d", "special": ["match"]}
    ok = parse_entries([{**base, "model": {"dtype": "float32", "rounds": ["logits", "labels"]}}], "k.toml")[0]
    assert ok.model == Model("float32", ("logits", "labels"))
    assert ok.excuses_for({"m": {"holds": True}}) == {"match"} and ok.excuses_for({}) == set()
    for model, field, words in [
        ({"dtype": "float33"}, "model.dtype", "valid: float16, bfloat16, float32, float64"),
        ({"dtype": "float32", "round": ["logits"]}, "model.round", "valid: dtype, rounds"),
        ({"rounds": ["logit"]}, "model.rounds", "valid: logits, labels, cotangent, direction, options"),
        ({"rounds": "logits"}, "model.rounds", "must be a list of strings"),
        ({}, "model", "give model.dtype or model.rounds"),
        ("float32", "model", "must be a table"),
    ]:
        with pytest.raises(HarnessInputError) as e:
            parse_entries([{**base, "model": model}], "k.toml")
        assert e.value.field == field and words in str(e.value) and "k.toml" in str(e.value), str(e.value)


def test_a_stale_entry_is_one_whose_scope_ran_and_excused_nothing(tmp_path):
    """A run of the default suite leaves the large cases to the full one: an entry no result of
    the run was in the scope of cannot be called stale there; one whose scope ran and excused
    no failure can."""
    from harness.options import from_values

    used = _entry("used", ["match"], dtypes=["float32"])
    stale = _entry("stale", ["nan_expected_finite"], dtypes=["float32"])
    elsewhere = _entry("elsewhere", ["match"], cases=["large/*"])
    s = _session(tmp_path, [used, stale, elsewhere])
    for rec in ({"framework": "numpy", "dtype": "float32", "case_id": "a/b", "status": "pass"},
                {"framework": "numpy", "dtype": "float32", "case_id": "a/c", "status": "fail", "special": "match",
                 "special_counts": {}, "n_bad": 1}):
        s.classify_known(rec)
    assert s.known_use.in_scope == {"used", "stale"} and s.known_use.hits == {"used"}
    assert [k.id for k in s.unmatched_known(["numpy"], in_scope=True)] == ["stale"]
    assert [k.id for k in s.unmatched_known(["numpy"])] == ["stale", "elsewhere"]
    assert s.unmatched_known(["torch"], in_scope=True) == []
    # Only a run of a whole library can tell (the CLI warns after such a run).
    whole = {(): True, (("suite", "full"),): True, (("framework", "torch"),): True, (("suite", "quick"),): False,
             (("dtype", "float32"),): False, (("mode", "eager"),): False, (("case_filter", "seed/*"),): False,
             (("shard", "1/2"),): False, (("no_variants", True),): False}
    assert {k: from_values(dict(k)).whole_library() for k in whole} == whole


def test_every_case_glob_of_an_entry_names_cases_of_the_library():
    """A misspelt or removed case in an entry's `cases` would silently narrow its scope."""
    from harness.options import from_values, load_cases

    ids = [c.id for c in load_cases(from_values({"suite": "full"}))]
    dead = [(k.id, g) for k in load_known() for g in k.match.get("cases", [])
            if not any(fnmatch.fnmatchcase(i, g) for i in ids)]
    assert not dead, dead


def test_the_report_shows_the_other_entries_a_result_needed():
    from harness.report.tables import detail

    rec = {"status": "fail", "message": "m", "known": {"id": "posinf", "description": "d", "link": "", "source": "known",
                                                       "also": ["floatx"]}}
    assert detail(rec)["known"] == {"id": "posinf", "description": "d", "link": "", "source": "known",
                                    "also": ["floatx"]}
    rec["known"].pop("also")
    assert "also" not in detail(rec)["known"]
    rec["known"]["models"] = {"floatx": {"model": {"dtype": "float32", "rounds": ["logits", "labels"]}, "holds": True,
                                         "excess": 0.2096}}
    assert detail(rec)["known"]["models"] == [
        "floatx: model held (logits, labels rounded to float32; largest error 0.21 of its budget)"]


def _run_start(run_id, library, shard=None, worker=None, policy="standard"):
    r = {"kind": "run_start", "run_id": run_id, "policy": policy, "frameworks": {"numpy": {}}, "library": library,
         "worker": worker}
    return {**r, "shard": shard} if shard else r


DEFAULT_LIB = {"suite": "default", "devices": ["cpu"], "known": None}


@pytest.mark.parametrize("runs, judged", [
    ([_run_start("a", DEFAULT_LIB)], {"numpy": ("default", "standard")}),
    ([_run_start("a", {**DEFAULT_LIB, "suite": "full"})], {"numpy": ("full", "standard")}),
    ([_run_start("a", None)], {}),  # the quick suite, or a narrowed run
    ([_run_start("a", DEFAULT_LIB, "1/2")], {}),  # half a split
    ([_run_start("a", DEFAULT_LIB, "1/2"), _run_start("b", DEFAULT_LIB, "2/2")], {"numpy": ("default", "standard")}),
    ([_run_start("a", DEFAULT_LIB, "1/3"), _run_start("b", DEFAULT_LIB, "3/3")], {}),
    # the parts of one split per devices: a whole GPU run does not complete the CPU's split
    ([_run_start("a", DEFAULT_LIB, "1/2"), _run_start("b", {**DEFAULT_LIB, "devices": ["gpu"]})], {}),
    ([_run_start("a", DEFAULT_LIB, "1/2"), _run_start("b", DEFAULT_LIB, "2/2"),
      _run_start("c", {**DEFAULT_LIB, "devices": ["gpu"]})], {"numpy": ("default", "standard")}),
    ([_run_start("a", DEFAULT_LIB), _run_start("b", {**DEFAULT_LIB, "suite": "full"})], {}),  # two suites
    ([_run_start("a", DEFAULT_LIB), _run_start("b", DEFAULT_LIB, policy="strict")], {}),  # two policies
    ([_run_start("a", DEFAULT_LIB), _run_start("b", None)], {}),  # one run of it narrowed
    ([_run_start("a", {**DEFAULT_LIB, "known": "mine.toml"})], {}),  # judged under another known file
], ids=["whole", "full", "narrowed", "half-split", "split", "split-missing-part", "gpu-no-cpu-split",
        "split-and-gpu", "two-suites", "two-policies", "one-narrowed", "other-known"])
def test_only_the_runs_of_a_whole_library_can_call_an_entry_stale(runs, judged):
    from harness.known import judged as judge

    assert judge(runs) == judged
    if runs[0]["library"] and runs[0]["library"]["known"]:
        assert judge(runs, "mine.toml") == {"numpy": ("default", "standard")}


def _shard_files(tmp_path, s, suite="default", complete=True, fails=True):
    """Two shards of a whole library's numpy results, classified by session `s`: a passing
    result in the first, a failure (or, without `fails`, another pass) in the second."""
    lib = {**DEFAULT_LIB, "suite": suite}
    passing = {"framework": "numpy", "dtype": "float32", "case_id": "a/b", "status": "pass", "run_id": "r1"}
    failing = {"framework": "numpy", "dtype": "float32", "case_id": "a/c", "status": "fail", "special": "match",
               "special_counts": {}, "n_bad": 1, "run_id": "r2"}
    if not fails:
        failing = {**passing, "case_id": "a/c", "run_id": "r2"}
    paths = []
    for i, (rec, done) in enumerate(((passing, True), (failing, complete)), 1):
        s.classify_known(rec)
        recs = [_run_start(f"r{i}", lib, f"{i}/2"), {"kind": "result", "op": "softmax", **rec}]
        recs += [{"kind": "run_end", "run_id": f"r{i}", "complete": True}] if done else []
        p = tmp_path / f"part{i}.jsonl"
        p.write_text("".join(json.dumps(r) + "\n" for r in recs))
        paths.append(str(p))
    return paths


def test_stale_entries_are_told_from_the_merged_parts_of_a_split(tmp_path):
    """What a CI matrix or pytest-xdist's workers leave: each part holds some of the results. An
    entry used in one part is not stale though the other part, alone, would say so; only every
    part together tells, and a part that did not finish tells nothing."""
    from harness.report.merge import merge

    used = _entry("used", ["match"], dtypes=["float32"])
    stale = _entry("stale", ["nan_expected_finite"], dtypes=["float32"])
    elsewhere = _entry("elsewhere", ["match"], cases=["large/*"])
    entries = [used, stale, elsewhere]
    p1, p2 = _shard_files(tmp_path, _session(tmp_path, entries))
    told = merge([p1, p2]).stale_known(entries)
    assert [t.split("'")[1] for t in told] == ["stale"]
    assert "excused no result of its scope in a whole run of the default suite" in told[0]
    assert merge([p1]).stale_known(entries) == []  # the first part alone would call "used" stale
    full = _shard_files(tmp_path, _session(tmp_path, entries), suite="full")
    assert [t.split("'")[1] for t in merge(full).stale_known(entries)] == ["stale", "elsewhere"]
    cut = _shard_files(tmp_path, _session(tmp_path, entries), complete=False)
    assert merge(cut).stale_known(entries) == []
    # A result that did not run is in no entry's scope, as in the session, which never classifies it.
    from harness.known import Use

    use = Use(entries)
    use.observe({"framework": "numpy", "dtype": "float32", "case_id": "a/b", "status": "skip"})
    assert use.in_scope == set()


def test_the_report_and_the_plugin_warn_of_a_stale_entry(tmp_path, capsys):
    """`harness report` over the parts warns on stderr and in the page; the pytest plugin, on
    the controller that ran none of the results, reads its workers' records from the results
    file (the built-in numpy entry is in the scope of every numpy result, and excused none)."""
    from harness.cli import main
    from harness.plugin import HarnessPlugin

    p1, p2 = _shard_files(tmp_path, _session(tmp_path, load_known()), fails=False)
    p1_only = tmp_path / "one.html"
    assert main(["report", p1, "-o", str(p1_only)]) == 0
    assert "excused no result" not in capsys.readouterr().err and 'id="stale-known"' not in p1_only.read_text()
    out = tmp_path / "r.html"
    assert main(["report", p1, p2, "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert "warning: known discrepancy 'numpy-textbook-yardstick' excused no result of its scope" in err
    assert 'id="stale-known"' in out.read_text() and "numpy-textbook-yardstick" in out.read_text()
    # The plugin: one results file, one run id, each xdist worker's run_start and results.
    lines = []
    for i, p in enumerate((p1, p2)):
        for r in map(json.loads, Path(p).read_text().splitlines()):
            if r["kind"] != "run_end":
                lines.append({**r, "run_id": "x", "worker": f"gw{i}", "shard": None})
    results = tmp_path / "pytest-results.jsonl"
    results.write_text("".join(json.dumps(r) + "\n" for r in lines))
    plugin = HarnessPlugin.__new__(HarnessPlugin)
    plugin.values, plugin.results_path, plugin.run_id = {"suite": "default"}, str(results), "x"
    told = plugin._stale_known()
    assert len(told) == 1 and "'numpy-textbook-yardstick'" in told[0]
    plugin.values = {"suite": "quick"}  # the README's run reads nothing and tells nothing
    assert plugin._stale_known() == []
    plugin.values = {"suite": "default", "shard": "1/2"}  # one part alone cannot tell
    assert plugin._stale_known() == []
