"""The run end to end: verdicts of real frameworks on pinned cases, policies, the baseline
round trip, adapters from entry points, xdist equivalence, and the search command."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from harness import adapters as A
from harness import cases as K
from harness import dtypes as D
from harness import records
from harness.cache import Cache
from harness.policy import load as load_policy
from harness.runner import Item, Session, exit_code

ROOT = Path(__file__).resolve().parent.parent
FRAMEWORKS = [f for f in ("tensorflow", "torch", "jax") if A.get(f).available()[0]]
need_fw = pytest.mark.skipif(not FRAMEWORKS, reason="no framework installed")


def _case(cid, logits, labels=None, op=None):
    raw = {"id": cid, "logits": logits}
    if labels is not None:
        raw["labels"] = labels
    if op:
        raw["op"] = op
    return K.parse_case(raw, file="<test>", index=0, family=None, base=ROOT)


def _run(policy, case, op, fw, dtype="float32", check="forward", mode="eager", tmp=None, cotangent=None):
    s = Session(load_policy(policy), Cache(tmp, enabled=tmp is not None), [], None, 0)
    cot = cotangent or ("ones" if check == "grad" else None)
    # What the results file holds: JSON values, non-finite numbers as strings.
    return records.jsonable(s.run(Item(case, op, check, "default", fw, "cpu", dtype, mode, cot)))


@need_fw
@pytest.mark.parametrize("fw", FRAMEWORKS)
def test_confident_ce_fails_strict_passes_standard_with_the_same_error(fw):
    """logits [20, 0, 0], label 0: exact CE = log1p(2 e^-20) = 4.1223072e-9; float32 frameworks
    return 0. strict fails it, standard (condition-aware) passes it; the error is the same."""
    case = _case("t/confident", [[20.0, 0.0, 0.0]], [0])
    strict = _run("strict", case, "sparse_softmax_cross_entropy", fw)
    std = _run("standard", case, "sparse_softmax_cross_entropy", fw)
    assert strict["status"] == "fail" and std["status"] == "pass"
    assert strict["max_ulp"] == std["max_ulp"] and strict["max_abs_err"] == std["max_abs_err"]
    assert std["output"]["out"] == [0.0]
    assert std["reference"]["out"]["hi"][0] == pytest.approx(4.122307236380e-9, rel=1e-12)
    assert std["max_rel_err"] == pytest.approx(1.0)
    assert std["excess"] < 1.0  # the excess over the ULP budget is recorded, within the condition term


@need_fw
def test_finding_softmax_of_pos_inf_row():
    """Finding: softmax([inf, 0, 1]) is one-hot in the limit; torch and JAX return all NaN, and
    so does TF, except with oneDNN's kernels ([nan, 0, 0]; see the next test). The harness
    reports it as nan_expected_finite either way."""
    case = _case("t/posinf", ["inf", 0.0, 1.0])
    got = {}
    for fw in FRAMEWORKS:
        r = _run("standard", case, "softmax", fw)
        assert r["reference"]["out"]["hi"] == [1.0, 0.0, 0.0]
        assert r["status"] == "fail" and r["special"] == "nan_expected_finite"
        got[fw] = r["output"]["out"]
    if "tensorflow" in got:
        onednn = A.get("tensorflow").versions().get("onednn")
        assert got["tensorflow"] == (["nan", 0.0, 0.0] if onednn == "on" else ["nan", "nan", "nan"]), onednn
    for fw in ("torch", "jax"):
        if fw in got:
            assert got[fw] == ["nan", "nan", "nan"]


_ONEDNN_PROBE = """
import json, sys
sys.path.insert(0, {root!r})
from harness import adapters as A
from harness.cache import Cache
from harness.policy import load
from harness.records import jsonable
from harness.runner import Item, Session
from harness import cases as K
s = Session(load("standard"), Cache(None, enabled=False), [], None, 0)
out = {{"onednn": A.get("tensorflow").versions().get("onednn")}}
for cid, x, dt in (("t/posinf", ["inf", 0.0, 1.0], "float32"), ("t/nan", ["nan", 0.0, 1.0], "float32"),
                   ("t/nan16", ["nan", 0.0, 1.0], "float16")):
    case = K.parse_case({{"id": cid, "logits": x}}, file="<probe>", index=0, family=None, base={root!r})
    r = jsonable(s.run(Item(case, "softmax", "forward", "default", "tensorflow", "cpu", dt, "eager")))
    out[cid] = [r["output"]["out"], r["status"], r["special"]]
flat, = K.select(K.load(), "extreme/flat_row_70k_float16")
r = jsonable(s.run(Item(flat, "softmax", "forward", "default", "tensorflow", "cpu", "float16", "eager")))
out["flat"] = [r["status"], r["special"], r["special_counts"], r["max_ulp"], [[b["got"], b["exact"]] for b in r["bad"][:1]]]
print("PROBE" + json.dumps(out))
"""


def onednn_takes_float16(features: list[str]) -> bool:
    """Whether TF's oneDNN kernels take float16 on a CPU with these /proc/cpuinfo features: TF's own
    rule (IsDataTypeSupportedByOneDNNOnThisCPU, tensorflow/core/util/util.cc, oneDNN v3): AVX512BW
    with AVX512_FP16 or AMX_FP16 (Intel Sapphire Rapids on), or AVX-NE-CONVERT. Elsewhere float16
    runs Eigen's kernels, with oneDNN on or off: on an AMD EPYC with AVX-512 (Zen 4) too."""
    f = set(features)
    return ("avx512bw" in f and bool(f & {"avx512_fp16", "amx_fp16"})) or "avx_ne_convert" in f


@pytest.mark.skipif("tensorflow" not in FRAMEWORKS, reason="TensorFlow not installed")
def test_finding_tf_softmax_depends_on_onednn_and_the_cpu():
    """Finding: TF's float32 softmax of a row with +inf or NaN depends on whether its oneDNN
    kernels run, which TF decides from the CPU (on by default where it has AVX512_VNNI,
    AVX512_BF16 or AMX, Intel Cascade Lake on; off on an AVX2-only AMD EPYC; forced either way
    by TF_ENABLE_ONEDNN_OPTS): with them [nan, 0, 0] for both rows (the NaN not propagated),
    without them all NaN (right for the NaN row). The run header records which (versions.onednn).
    In float16 both depend on the CPU's features besides the flag (onednn_takes_float16; the run
    header's machine.cpu): where oneDNN does not take float16, Eigen's kernel propagates the NaN
    (right), and sums in float16, so that a row whose sum passes 65504
    (extreme/flat_row_70k_float16, float16-row-sum-overflows-tf) gives 0 for every class of exact
    1.4429e-5, which oneDNN's gets right."""
    import os

    from harness.records import cpu

    got = {}
    for flag in ("0", "1"):
        env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": flag, "TF_CPP_MIN_LOG_LEVEL": "3"}
        p = subprocess.run([sys.executable, "-c", _ONEDNN_PROBE.format(root=str(ROOT))], env=env,
                           capture_output=True, text=True, timeout=300)
        line = next((ln for ln in p.stdout.splitlines() if ln.startswith("PROBE")), None)
        assert line, p.stderr[-2000:]
        got[flag] = json.loads(line[5:])
    off, on = got["0"], got["1"]
    assert off["onednn"] == "off" and on["onednn"] == "on"
    assert off["t/posinf"] == [["nan", "nan", "nan"], "fail", "nan_expected_finite"]
    assert off["t/nan"] == [["nan", "nan", "nan"], "pass", "match"]
    assert on["t/posinf"] == [["nan", 0.0, 0.0], "fail", "nan_expected_finite"]
    assert on["t/nan"] == [["nan", 0.0, 0.0], "fail", "finite_expected_nan"]
    # Every class 0 (a subnormal flushed, by its class), the worst of exact 1.4429243149210488e-05 at
    # class 36636: 242.08 float16 ULPs (the reference; test_rounding checks it with mpmath).
    eigen = ["fail", "subnormal_flushed", {"subnormal_flushed": 70000}, pytest.approx(242.0825290308246, rel=1e-12),
             [[0.0, 1.4429243149210488e-05]]]
    assert off["flat"] == eigen
    assert off["t/nan16"] == [["nan", "nan", "nan"], "pass", "match"]
    if onednn_takes_float16(cpu()["features"] or []):
        assert on["flat"][:2] == ["pass", "match"], on["flat"]  # within the budget (8.24 ULP at the worst)
        assert on["t/nan16"] == [["nan", 0.0, 0.0], "fail", "finite_expected_nan"]
    else:
        assert on["flat"] == eigen
        assert on["t/nan16"] == off["t/nan16"]


@need_fw
def test_finding_dense_ce_with_zero_label_at_masked_logit():
    """Finding: CE of logits [-inf, 0, 1] with labels [0, 0.5, 0.5] is finite (0 * log 0 = 0:
    log(1 + e) - 0.5 = 0.8132616875...), but all three frameworks return NaN."""
    case = _case("t/masked", [["-inf", 0.0, 1.0]], [[0.0, 0.5, 0.5]])
    for fw in FRAMEWORKS:
        r = _run("standard", case, "softmax_cross_entropy", fw, dtype="float64")
        assert r["reference"]["out"]["hi"][0] == pytest.approx(float(np.log1p(np.e)) - 0.5, rel=1e-15)
        assert r["output"]["out"] == ["nan"], fw
        assert r["special"] == "nan_expected_finite"


SEED_ROW = [0.0, 1.0, 2.0, 3.0, 5.0, -2.0, 7.0, 4.0]  # the offset family's seed row


@pytest.mark.skipif(not A.get("torch").available()[0], reason="torch not installed")
def test_finding_torch_logsumexp_grad_grows_with_the_offset():
    """Finding: torch.logsumexp's backward is grad * exp(x - result), with the forward's result
    rounded to the tested dtype, so the gradient (the row's softmax) is off by the rounding of
    logsumexp, an error that grows with a common offset of the logits. float32 row 1e7 + b
    (every value exact): d/dx at the max is 1.0, exactly 0.82393363650797...; the same row
    without the offset is right. JAX and TensorFlow (max-shifted) are right at both."""
    shifted = _case("t/lse_grad_1e7", [[1e7 + v for v in SEED_ROW]], op="logsumexp")
    base = _case("t/lse_grad_0", [SEED_ROW], op="logsumexp")
    r = _run("standard", shifted, "logsumexp", "torch", check="grad")
    assert r["status"] == "fail" and r["special"] == "match"
    assert r["output"]["d_logits"][0][6] == 1.0
    assert r["reference"]["d_logits"]["hi"][0][6] == pytest.approx(0.8239336365079705, rel=1e-15)
    assert sum(r["output"]["d_logits"][0]) == pytest.approx(1.2137, abs=1e-4)  # the gradient of logsumexp sums to 1
    assert _run("standard", base, "logsumexp", "torch", check="grad")["status"] == "pass"
    for fw in set(FRAMEWORKS) - {"torch"}:
        assert _run("standard", shifted, "logsumexp", fw, check="grad")["status"] == "pass", fw


@pytest.mark.skipif(not A.get("jax").available()[0], reason="jax not installed")
def test_finding_optax_sparse_ce_grows_with_the_offset():
    """Finding: optax.softmax_cross_entropy_with_integer_labels is logsumexp(x) - x_label, the
    logsumexp rounded to the tested dtype before the subtraction (not max-shifted): float32
    logits 1e7 + b, label 5: loss 9.0, exactly 9.19366529053452...; float16 logits [1e4, 1e4,
    1e4]: loss 0, exactly log 3 = 1.0986. TensorFlow and torch are right at both."""
    r = _run("standard", _case("t/ce_1e7", [[1e7 + v for v in SEED_ROW]], [5]), "sparse_softmax_cross_entropy", "jax")
    assert r["status"] == "fail" and r["output"]["out"] == [9.0]
    assert r["reference"]["out"]["hi"][0] == pytest.approx(9.193665290534524, rel=1e-15)
    r16 = _run("standard", _case("t/ce_1e4", [[1e4, 1e4, 1e4]], [0]), "sparse_softmax_cross_entropy", "jax",
               dtype="float16")
    assert r16["status"] == "fail" and r16["output"]["out"] == [0.0]
    assert r16["reference"]["out"]["rounded"][0] == 1.0986328125
    for fw in set(FRAMEWORKS) - {"jax"}:
        assert _run("standard", _case("t/ce_1e7", [[1e7 + v for v in SEED_ROW]], [5]),
                    "sparse_softmax_cross_entropy", fw)["status"] == "pass", fw


def test_out_of_range_label_numpy_raises_and_conforms():
    case = _case("t/oor", [[1.0, 2.0, 3.0]], [3])
    r = _run("standard", case, "sparse_softmax_cross_entropy", "numpy")
    assert r["status"] == "pass" and r["invalid_handling"] == "raised" and r["error_type"] == "IndexError"


@pytest.mark.skipif(not A.get("torch").available()[0], reason="torch not installed")
def test_finding_torch_ignore_index_is_a_silent_invalid():
    """Label -100 is out of range; torch treats it as ignore_index and returns a finite 0."""
    case = _case("t/ign", [[1.0, 2.0, 3.0]], [-100])
    r = _run("standard", case, "sparse_softmax_cross_entropy", "torch")
    assert r["status"] == "fail" and r["special"] == "silent_invalid" and r["invalid_handling"] == "finite"
    assert r["output"]["out"] == [0.0]


def _items(values: dict, fw: str) -> list:
    """The items the CLI's values `values` select for the framework `fw`."""
    from harness.options import from_values, load_cases
    from harness.runner import expand

    o = from_values(values)
    return expand(load_cases(o), o.selection(), [fw])


def _cli(*args, env_extra=None, timeout=300):
    import os

    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", **(env_extra or {}))
    return subprocess.run([sys.executable, "-m", "harness", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env=env)


def test_baseline_round_trip(tmp_path):
    """run, save, rerun with --baseline -> exit 0; perturb one case -> exit 1 naming it."""
    cases = tmp_path / "c.json"
    body = {"cases": [
        {"id": "b/confident", "logits": [[20.0, 0.0, 0.0]], "labels": [0]},
        {"id": "b/fine", "logits": [[1.0, 1.0]], "labels": [1]},  # log 2, correctly rounded
    ]}
    cases.write_text(json.dumps(body))
    no_known = tmp_path / "none.toml"  # only the baseline may excuse a failure here
    no_known.write_text("")
    common = ["--known", str(no_known), "--framework", "numpy", "--dtype", "float32", "--op", "sparse_softmax_cross_entropy",
              "--check", "forward", "--policy", "strict", "--no-isolate", "--cases", str(cases),
              "--cache-dir", str(tmp_path / "cache")]
    first = _cli("run", *common, "--results", str(tmp_path / "a.jsonl"))
    assert first.returncode == 1, first.stdout + first.stderr  # the strict failure
    again = _cli("run", *common, "--results", str(tmp_path / "b.jsonl"), "--baseline", str(tmp_path / "a.jsonl"))
    assert again.returncode == 0, again.stdout + again.stderr
    recs = [json.loads(x) for x in (tmp_path / "b.jsonl").read_text().splitlines()]
    conf = next(r for r in recs if r.get("case_id") == "b/confident")
    assert conf["status"] == "fail" and conf["baseline"] == "known" and conf["known"]["source"] == "baseline"
    # Perturb the passing case into a failing one: a new failure, named.
    body["cases"][1]["logits"] = [[30.0, 0.0, 0.0]]  # 1 - p rounds away: a strict failure
    body["cases"][1]["labels"] = [0]
    cases.write_text(json.dumps(body))
    third = _cli("run", *common, "--results", str(tmp_path / "c.jsonl"), "--baseline", str(tmp_path / "a.jsonl"))
    assert third.returncode == 1
    assert "b/fine" in third.stdout and "b/confident" not in third.stdout
    # The slim baseline a project commits (what did not pass) and `diff` against it, as CI does.
    slim = _cli("baseline", str(tmp_path / "a.jsonl"), "-o", str(tmp_path / "base.jsonl"))
    full = [json.loads(x) for x in (tmp_path / "a.jsonl").read_text().splitlines()]
    n_bad = sum(1 for r in full if r["kind"] == "result" and r["status"] not in ("pass", "skip"))
    n_all = sum(1 for r in full if r["kind"] == "result")
    assert slim.returncode == 0 and f"{n_bad} of {n_all} results did not pass" in slim.stdout, slim.stdout + slim.stderr
    kept = [json.loads(x) for x in (tmp_path / "base.jsonl").read_text().splitlines()]
    assert [r["kind"] for r in kept] == ["run_start"] + ["result"] * n_bad + ["run_end"]
    assert {r["case_id"] for r in kept[1:-1]} == {"b/confident"}
    assert all(r["status"] == "fail" and "input" not in r and "repro" not in r for r in kept[1:-1])
    same = _cli("diff", str(tmp_path / "base.jsonl"), str(tmp_path / "b.jsonl"))
    assert same.returncode == 0, same.stdout
    worse = _cli("diff", str(tmp_path / "base.jsonl"), str(tmp_path / "c.jsonl"))
    assert worse.returncode == 1 and "b/fine" in worse.stdout, worse.stdout


def test_entry_point_adapter(tmp_path, monkeypatch):
    """A third-party adapter plugs in through the `harness.adapters` entry point group."""
    dist = tmp_path / "naive_adapter-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: naive-adapter\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        "[harness.adapters]\nnaive = tests.plugins.misbehaving:NaiveLogSoftmaxAdapter\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    A._cache.pop("naive", None)
    assert "naive" in A.names()
    ad = A.get("naive")
    assert type(ad).__name__ == "NaiveLogSoftmaxAdapter"
    # Without the max shift, exp(1000) overflows: log_softmax([1000, 0]) = [0, -1000] exactly
    # (to float32), the naive composition returns NaN.
    r = _run("standard", _case("t/big", [1000.0, 0.0]), "log_softmax", "naive")
    assert r["special"] == "nan_expected_finite" and r["status"] == "fail"
    assert r["reference"]["out"]["rounded"] == [0.0, -1000.0]
    ok = _run("standard", _case("t/small", [1.0, 0.0]), "log_softmax", "naive")
    assert ok["status"] == "pass"
    A._cache.pop("naive", None)


def test_exit_code_counts_only_uncovered_failures():
    assert exit_code([{"status": "pass"}, {"status": "fail", "known": {"id": "x"}}]) == 0
    assert exit_code([{"status": "error", "known": None}]) == 1


@pytest.mark.skipif(importlib.util.find_spec("xdist") is None, reason="pytest-xdist not installed")
def test_xdist_gives_the_same_records_as_serial(tmp_path):
    def run(extra, name):
        out = tmp_path / name
        p = subprocess.run([sys.executable, "-m", "pytest", "tests/test_conformance.py", "-q", "-p", "no:warnings",
                            "--harness-framework", "numpy", "--harness-case-filter", "seed/",
                            "--harness-results", str(out), "--harness-dtype", "float32,float64",
                            "--harness-timing-reps", "0", "--harness-cache-dir", str(tmp_path / "cache"), *extra],
                           cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, p.stdout[-2000:]
        recs = [json.loads(x) for x in out.read_text().splitlines()]
        res = {r["test_id"]: r for r in recs if r["kind"] == "result"}
        assert sum(r["kind"] == "run_end" for r in recs) == 1
        return res

    serial = run([], "serial.jsonl")
    par = run(["-n", "2"], "parallel.jsonl")
    assert serial.keys() == par.keys() and len(serial) > 20
    volatile = {"time_framework_s", "time_first_call_s", "time_reference_s", "time_verdict_s", "run_id",
                "worker", "reference_cached"}
    for k in serial:
        a = {f: v for f, v in serial[k].items() if f not in volatile}
        b = {f: v for f, v in par[k].items() if f not in volatile}
        assert a == b, k


def test_a_known_failure_is_an_xfail_with_its_reason_and_no_traceback(tmp_path):
    """The plugin turns a known failure into an xfail whose reason names the known entry, and
    hands pytest no traceback to render and drop (it cost 27 ms an xfail). Covered and uncovered
    results of the numpy yardstick (known `numpy-textbook-yardstick`) under --junitxml."""
    import xml.etree.ElementTree as ET

    junit, reprs = tmp_path / "j.xml", tmp_path / "longrepr.jsonl"
    (tmp_path / "longrepr_probe.py").write_text(
        "import json, os\n"
        "def pytest_runtest_logreport(report):\n"
        "    if getattr(report, 'wasxfail', None):\n"
        "        with open(os.environ['LONGREPR_OUT'], 'a') as f:\n"
        "            f.write(json.dumps(str(report.longrepr)) + '\\n')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)]), "LONGREPR_OUT": str(reprs)}
    p = subprocess.run([sys.executable, "-m", "pytest", "tests/test_conformance.py", "-q", "-p", "no:warnings", "-rx",
                        "-p", "longrepr_probe",
                        "--harness-framework", "numpy", "--harness-case-filter", "extreme/big_1e4",
                        "--harness-op", "log_softmax", "--harness-check", "forward", "--harness-dtype", "float16",
                        "--harness-results", str(tmp_path / "r.jsonl"), "--harness-timing-reps", "0",
                        "--harness-cache-dir", str(tmp_path / "cache"), "--junitxml", str(junit)],
                       cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    recs = [json.loads(x) for x in (tmp_path / "r.jsonl").read_text().splitlines()]
    known = [r for r in recs if r.get("kind") == "result" and (r.get("known") or {}).get("id")]
    assert known and all(r["known"]["id"] == "numpy-textbook-yardstick" for r in known), recs
    assert "XFAIL" in p.stdout and "known: numpy-textbook-yardstick: The textbook composition" in p.stdout
    skipped = [sk for tc in ET.parse(junit).iter("testcase") for sk in tc.iter("skipped")]
    assert len(skipped) == len(known)
    for sk in skipped:
        assert sk.get("type") == "pytest.xfail" and sk.get("message", "").startswith("known: numpy-textbook-yardstick")
    # what pytest built for each xfail's report: the reason alone, no frame of the plugin's
    longreprs = [json.loads(x) for x in reprs.read_text().splitlines()]
    assert len(longreprs) == len(known)
    for text in longreprs:
        assert "plugin.py" not in text and "def check" not in text and "known: numpy-textbook-yardstick" in text, text


def test_framework_warnings_are_recorded_once():
    from tests.plugins.misbehaving import WarnyAdapter

    with A.registered("warny", WarnyAdapter):
        s = Session(load_policy("standard"), Cache(None, enabled=False), [], None, 3)
        rec = s.run(Item(_case("t/w", [[1.0, 2.0, 3.0]]), "softmax", "forward", "default", "warny", "cpu",
                         "float32", "eager"))
    assert rec["status"] == "pass"
    assert rec["framework_warnings"] == ["UserWarning: 3 classes is an odd choice"]
    plain = _run("standard", _case("t/w", [[1.0, 2.0, 3.0]]), "softmax", "numpy")
    assert plain["framework_warnings"] == []


@pytest.mark.skipif("tensorflow" not in FRAMEWORKS, reason="tensorflow is not installed")
def test_finding_keras_warns_on_a_single_class():
    case = _case("t/c1", [[0.5], [1.5], [-2.0]], [[1.0], [1.0], [1.0]])
    s = Session(load_policy("standard"), Cache(None, enabled=False), [], None, 0)
    rec = s.run(Item(case, "softmax_cross_entropy", "forward", "keras", "tensorflow", "cpu", "float32", "eager"))
    assert any("num_classes > 1" in w for w in rec["framework_warnings"]), rec["framework_warnings"]


def test_a_harness_error_is_never_known_and_a_bad_cache_dir_is_refused(tmp_path):
    """Issue 21: known.toml entries without a status filter (keras-cce-computes-in-floatx) match any
    record of their framework; an error of the harness itself must stay an error, and a cache
    directory that cannot be one is refused up front instead of failing every reference."""
    from harness.errors import HarnessInputError
    from harness.known import Known

    anything = Known("numpy-anything", "matches every numpy record", "numpy")
    session = Session(load_policy("standard"), Cache(tmp_path / "c"), [anything], None, timing_reps=0)
    harness_err = {"framework": "numpy", "status": "error", "special": "harness_error"}
    framework_err = {"framework": "numpy", "status": "error", "special": "raised"}
    session.classify_known(harness_err)
    session.classify_known(framework_err)
    assert "known" not in harness_err and framework_err["known"]["id"] == "numpy-anything"
    assert exit_code([harness_err]) == 1
    (tmp_path / "afile").write_text("x")
    for bad in (tmp_path / "afile", tmp_path / "afile" / "sub"):
        with pytest.raises(HarnessInputError, match="cannot be used as the reference cache") as e:
            Cache(bad).check()
        assert e.value.field == "cache-dir"
    Cache(tmp_path / "fine" / "deeper").check()  # created
    assert (tmp_path / "fine" / "deeper").is_dir()
    Cache(tmp_path / "afile", enabled=False).check()  # --no-cache: nothing to check


def test_the_quick_suite_runs_each_case_in_a_sample_of_the_dtypes_unless_dtypes_are_given():
    """vocab.QUICK_JIT_DTYPES: the quick suite runs jit's forward and grad on every case in one of
    bfloat16 and float32, chosen by a digest of the case's id, each dtype on about half the cases
    and with every op and check; grad2 and the invariance checks in both. vocab.QUICK_EAGER_DTYPES:
    eager's forward and grad in one of float16 and bfloat16 and one of float32 and float64, grad2
    and the invariance checks in all four; vocab.QUICK_EVERY_DTYPE_TAG: the long row's forward and
    grad eager in all four. An explicit --dtype, case files of one's own, or another
    suite run every dtype selected on every case."""
    import collections
    import hashlib

    from harness.options import from_values, load_cases

    def items(values, fw="tensorflow"):  # a framework without quick thinning (the next test)
        return _items(values, fw)

    quick = items({"suite": "quick"})
    eager = {i.case.id for i in quick if i.mode == "eager"}
    jit_checks = ("forward", "grad")
    jit = collections.defaultdict(set)
    for i in quick:
        if i.mode == "jit" and i.check in jit_checks:
            jit[i.case.id].add(i.dtype)
    # The rule written out: the digest of "compiled dtype <id>" picks from the case's dtypes among the
    # two; a case in neither (float64 only) is not compiled, in any suite that selects those two.
    for c in load_cases(from_values({"suite": "quick"})):
        pick = [d for d in ("bfloat16", "float32") if d in c.dtypes]
        if c.id in eager and pick:
            want = pick[int(hashlib.sha256(f"compiled dtype {c.id}".encode()).hexdigest()[:16], 16) % len(pick)]
            assert jit[c.id] == {want}, c.id
        else:
            assert c.id not in jit, c.id
    assert len(jit) > 0.8 * len(eager)
    halves = collections.Counter(d for ds in jit.values() for d in ds)
    assert set(halves) == {"bfloat16", "float32"} and 0.35 < halves["bfloat16"] / len(jit) < 0.65, halves
    # Against both dtypes on every case (what an explicit --dtype gives): every op, check and dtype
    # still compiled, and grad2 and the invariance checks (a few cases each) exactly as there.
    both = [i for i in items({"suite": "quick", "dtype": ["bfloat16", "float32"]}) if i.mode == "jit"]
    assert {(i.op, i.check, i.dtype) for i in quick if i.mode == "jit"} == {(i.op, i.check, i.dtype) for i in both}
    inv = {i.id for i in quick if i.mode == "jit" and i.check not in jit_checks}
    assert inv and inv == {i.id for i in both if i.check not in jit_checks}
    assert len([i for i in quick if i.mode == "jit"]) < 0.6 * len(both)
    # Eager, the rule written out: one dtype of each pair by the digest of "eager dtype <pair> <id>";
    # every dtype of a case tagged long_row (extreme/long_row: float64's long-row sums among them).
    eager_dts = collections.defaultdict(set)
    for i in quick:
        if i.mode == "eager" and i.check in jit_checks:
            eager_dts[i.case.id].add(i.dtype)
    for c in load_cases(from_values({"suite": "quick"})):
        want = set()
        for pair in (("float16", "bfloat16"), ("float32", "float64")):
            pick = [d for d in pair if d in c.dtypes]
            if pick and "long_row" in c.tags:
                want.update(pick)
            elif pick:
                h = int(hashlib.sha256(f"eager dtype {'/'.join(pair)} {c.id}".encode()).hexdigest()[:16], 16)
                want.add(pick[h % len(pick)])
        assert eager_dts[c.id] == want, c.id
    assert eager_dts["extreme/long_row"] == {"float16", "bfloat16", "float32", "float64"}
    shares = collections.Counter(d for cid, ds in eager_dts.items() for d in ds if cid != "extreme/long_row")
    for a, b in (("float16", "bfloat16"), ("float32", "float64")):
        assert 0.35 < shares[a] / (shares[a] + shares[b]) < 0.65, shares
    every = [i for i in items({"suite": "quick", "dtype": ["float16", "bfloat16", "float32", "float64"]})
             if i.mode == "eager"]
    for key in (lambda i: (i.op, i.check, i.dtype), lambda i: (i.op, i.check, i.variant)):
        # every op and check eager in every dtype, and with every variant (a variant of a few
        # cases, `masked` say, in some of the dtypes only)
        assert {key(i) for i in quick if i.mode == "eager"} == {key(i) for i in every}
    assert {i.id for i in quick if i.mode == "eager" and i.check not in jit_checks} == \
        {i.id for i in every if i.check not in jit_checks}  # grad2 and invariance in all four
    assert len([i for i in quick if i.mode == "eager"]) < 0.6 * len(every)
    assert {i.dtype for i in items({"suite": "quick", "dtype": ["float16"]}) if i.mode == "jit"} == {"float16"}
    seed = items({"suite": "default", "case_filter": "seed/*"})
    assert {(i.case.id, i.dtype) for i in seed if i.mode == "jit"} == \
        {(i.case.id, i.dtype) for i in seed if i.mode == "eager" and i.check != "eager_vs_jit"}


def test_the_quick_suite_thins_the_modes_that_compile_per_shape():
    """Adapter.quick_thinning (runner.thinned): torch's jit (1.6 s per program and class
    count) compiles forward and grad of the cases whose digest of "thinning <id>" is even, each in
    its compiled dtype; JAX's eager (and Keras on JAX, which inherits it) runs a case's forward and
    grad in one of the two dtypes the pairs give it (ceil(m / 2) of m: two of the long row's four).
    Every op, check, dtype and variant stays in both; grad2 and the invariance checks are not
    thinned; an explicit --dtype or another suite thins nothing."""
    import collections
    import hashlib

    from harness import dtypes as D

    def digest(cid):
        return int(hashlib.sha256(f"thinning {cid}".encode()).hexdigest()[:16], 16)

    fc = ("forward", "grad")
    for fw, mode, other in (("torch", "jit", "tensorflow"), ("jax", "eager", "tensorflow"),
                            ("keras-jax", "eager", "keras-tensorflow")):
        thin, full = _items({"suite": "quick"}, fw), _items({"suite": "quick"}, other)
        got, unthinned = collections.defaultdict(set), collections.defaultdict(set)
        for i in thin:
            if i.mode == mode and i.check in fc:
                got[i.case.id].add(i.dtype)
        for i in full:  # the same dtype sample, unthinned
            if i.mode == mode and i.check in fc:
                unthinned[i.case.id].add(i.dtype)
        assert unthinned
        for cid, dts in unthinned.items():
            if mode == "jit":
                assert got.get(cid, set()) == (dts if digest(cid) % 2 == 0 else set()), (fw, cid)
            else:
                order = sorted(dts, key=D.DTYPE_NAMES.index)
                want = {order[(digest(cid) + j) % len(order)] for j in range(-(-len(order) // 2))}
                assert got[cid] == want, (fw, cid, dts)
        n_thin, n_full = sum(map(len, got.values())), sum(map(len, unthinned.values()))
        assert 0.4 < n_thin / n_full < 0.6 if mode == "jit" else 0.5 <= n_thin / n_full < 0.6, (fw, n_thin, n_full)
        if mode == "eager":
            assert got["extreme/long_row"] <= unthinned["extreme/long_row"] and len(got["extreme/long_row"]) == 2
        every = _items({"suite": "quick", "dtype": ["float16", "bfloat16", "float32", "float64"]}, fw)
        for key in (lambda i: (i.op, i.check, i.dtype), lambda i: (i.op, i.check, i.variant)):
            assert {key(i) for i in thin if i.mode == mode} == {key(i) for i in every if i.mode == mode
                                                              and (mode == "eager" or i.dtype in ("bfloat16", "float32"))}
        def rest(its):  # grad2 and the invariance checks, API variants apart
            return {(i.case.id, i.op, i.check, i.dtype) for i in its
                    if i.mode == mode and i.check not in fc and i.variant == "default"}
        assert rest(thin) and rest(thin) == rest(full), fw
    # Nothing thinned where the dtypes are given, or in another suite.
    seed = _items({"suite": "default", "case_filter": "seed/*"}, "torch")
    assert {(i.case.id, i.dtype) for i in seed if i.mode == "jit"} == \
        {(i.case.id, i.dtype) for i in seed if i.mode == "eager" and i.check != "eager_vs_jit"}
    def forward(fw):
        return {(i.case.id, i.op) for i in _items({"suite": "quick", "dtype": ["float32"]}, fw)
                if i.mode == "eager" and i.check == "forward" and i.variant == "default"}
    assert forward("jax") == forward("tensorflow")


def test_two_cases_of_one_name_each_get_their_own_inputs(tmp_path):
    """Session.inputs memoises the cast inputs by source and id: a second case of the same name
    (cases made in code) must still run on its own logits. Before the memo compared the cases, the
    (2, 3, 8) case below ran on the (4, 8) case's logits and passed, judged against them. A copy
    of a case (what isolation sends) still finds the memo."""
    import copy
    import pickle

    session = Session(load_policy("standard"), Cache(tmp_path / "c"), [], None, timing_reps=0)
    recs, cases = [], []
    for shape in ((4, 8), (2, 3, 8)):
        x = np.arange(np.prod(shape), dtype=np.float64).reshape(shape) / 7
        cases.append(K.Case("same/name", ["log_softmax"], x, None, -1, ["float32"], True, source="<test>"))
        recs.append(session.run(Item(cases[-1], "log_softmax", "forward", "default", "numpy", "cpu", "float32",
                                     "eager", None)))
    assert [r["out_shape"]["out"] for r in recs] == [[4, 8], [2, 3, 8]]
    assert all(r["status"] == "pass" for r in recs)
    dt = D.get("float32")
    first = session.inputs(cases[1], dt)[0]
    assert session.inputs(pickle.loads(pickle.dumps(cases[1])), dt)[0] is first
    listed = K.Case("same/name", ["softmax"], [[1.0, "max"], [0.5, 2.0]], None, -1, ["float32"], True, source="<test>")
    assert session.inputs(listed, dt)[0].shape == (2, 2)
    assert session.inputs(copy.deepcopy(listed), dt)[0] is session.inputs(listed, dt)[0]


def test_a_sampled_mode_runs_one_case_in_n_and_every_case_when_named():
    """Adapter.sampled_modes: torch's jit_static runs on the cases whose id's digest is 0 modulo 8,
    for the value checks only; the same cases in every selection and shard; every case once
    `--mode` names it; not in the quick suite unless `--mode` names it. Without the sampling it
    would run on every case and check, with a sample by position it would move when cases are
    added."""
    import collections
    import hashlib

    from harness.runner import in_sample

    def items(values):
        return _items(values, "torch")

    assert not [i for i in items({"suite": "quick"}) if i.mode == "jit_static"]
    default = {"suite": "default", "dtype": ["bfloat16", "float32"]}
    chosen = items(default)
    jit = [i for i in chosen if i.mode == "jit"]
    static = [i for i in chosen if i.mode == "jit_static"]
    sampled = {i.case.id for i in static}
    every = {i.case.id for i in jit}
    # The digest rule, written out: the first 8 bytes of sha256(id), big-endian, modulo 8.
    assert sampled == {c for c in every if int(hashlib.sha256(c.encode()).hexdigest()[:16], 16) % 8 == 0}
    assert 0.06 < len(sampled) / len(every) < 0.2, (len(sampled), len(every))
    assert {i.check for i in static} <= {"forward", "grad", "grad2"} and {i.check for i in jit} - {"forward", "grad", "grad2"}
    assert {i.dtype for i in static} == {"bfloat16", "float32"} and {i.mode for i in chosen} == {"eager", "jit", "jit_static"}
    # Per case, the sampled mode runs what jit runs of the value checks.
    key = lambda i: (i.case.id, i.op, i.check, i.variant, i.dtype, i.cotangent)  # noqa: E731
    assert collections.Counter(map(key, static)) == collections.Counter(
        key(i) for i in jit if i.case.id in sampled and i.check in ("forward", "grad", "grad2"))
    # No other framework has the mode; a case keeps its place whatever else is selected.
    assert not [i for i in _items(default, "jax")
                if i.mode == "jit_static"]
    one = sorted(sampled)[0]
    assert {i.case.id for i in items({**default, "case_filter": one}) if i.mode == "jit_static"} == {one}
    assert all(in_sample(c, 8) for c in sampled)
    # Named: every case of the selection, every check it has in jit; in the quick suite too (every
    # case a compiled mode runs there before the thinning of torch's jit: TensorFlow's jit's).
    assert {i.case.id for i in items({"suite": "quick", "mode": ["jit_static"]})} == \
        {i.case.id for i in _items({"suite": "quick"}, "tensorflow") if i.mode == "jit"}
    named = items({**default, "mode": ["jit_static"]})
    assert {i.mode for i in named} == {"jit_static"} and {i.case.id for i in named} == every
    assert len(named) == len([i for i in jit if i.check != "eager_vs_jit"])


def test_the_quick_suite_times_one_call_unless_repetitions_are_given(tmp_path, registered):
    """vocab.QUICK_TIMING_REPS: the quick suite makes one timed call after the judged one; the
    default suite three; --timing-reps wins in either. The session makes 1 + reps calls."""
    from harness.adapters.numpy import NumpyAdapter
    from harness.options import from_values, load_cases
    from harness.runner import Selection, expand

    assert from_values({"suite": "quick"}).timing_reps == 1
    assert from_values({"suite": "default"}).timing_reps == 3
    assert from_values({}).timing_reps == 3
    assert from_values({"suite": "quick", "timing_reps": 0}).timing_reps == 0
    assert from_values({"suite": "quick", "timing_reps": 5}).timing_reps == 5

    calls = []

    class Counting(NumpyAdapter):
        name = "counting-numpy"

        def run(self, call):
            calls.append(call.op)
            return super().run(call)

    fw = registered(Counting)
    case = next(c for c in load_cases(from_values({"suite": "quick"})) if c.id == "seed/softmax_classic")
    item = next(i for i in expand([case], Selection(frameworks=[fw], ops=["softmax"], dtypes=["float64"],
                                                     checks=["forward"]), [fw]))
    for reps in (1, 3, 0):
        calls.clear()
        rec = Session(load_policy("standard"), Cache(tmp_path / "c"), [], None, timing_reps=reps).run(item)
        assert rec["status"] == "pass" and len(calls) == 1 + reps, (reps, calls)


def test_a_framework_message_names_no_path_of_this_clone_or_job(monkeypatch, tmp_path):
    """torch.compile's errors name the generated kernel's file in the compile cache: the record
    says `<compile cache>/torch/...`, so two clones' or jobs' records are equal (a scratch
    directory likewise)."""
    from harness.adapters.base import compile_cache_dir, scratch_dir
    from tests.plugins.mutants import Careful

    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)  # the job is then HARNESS_JOB's
    monkeypatch.setenv("HARNESS_JOB", "3")
    session = Session(load_policy("standard"), Cache(str(tmp_path / "cache")), [], None, 0)
    # After the session (which exports its cache's, unless a compile cache was set when harness.cache
    # was imported, as under the plugin's run): the one the adapters would use now.
    monkeypatch.setenv("HARNESS_COMPILE_CACHE", str(tmp_path / "cc"))
    where = f"{compile_cache_dir('torch')}/h4/ch4d.main.cpp:72, {scratch_dir('torch')}/k.so"
    assert str(tmp_path) in where and "/3/" in where

    class Raising(Careful):
        name = "raising"

        def run(self, call):
            raise RuntimeError(f"kernel, {where}, index out of bounds: 0 <= tmp21 < 5L")

    with A.registered("raising", Raising):
        rec = session.run(Item(_case("t/c", [[1.0, 2.0, 3.0]]), "softmax", "forward", "default", "raising", "cpu",
                               "float32", "eager", None))
    assert rec["status"] == "error" and rec["message"] == (
        "the framework raised RuntimeError on a valid input: kernel, <compile cache>/torch/h4/ch4d.main.cpp:72, "
        "<scratch>/torch/k.so, index out of bounds: 0 <= tmp21 < 5L")
