"""harness/cause.py: the cause of each failing result, told by its peers (the other
implementations that ran the same input), in memory (`assign`), in a results file
(`annotate_file`), after a CLI run, over merged shards (`harness report`) and in the HTML report.

The unit tests keep their assertions in `_expect_*` functions, so that the mutant tests can run
the very same assertions against deliberately wrong versions of the module and see them fail.
The end-to-end tests share one set of CLI runs (a module fixture, run once per pytest session
even under xdist): torch's logsumexp gradient in bfloat16 of logits [[64, 64]] is 27 ULP off
(a failure under the standard policy) while jax and tensorflow pass.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness import cause
from harness.report.merge import merge
from harness.report.crossfw import GROUP_FIELDS

ROOT = Path(__file__).resolve().parent.parent

BASE = {"kind": "result", "run_id": "r1", "case_id": "fam/x", "op": "softmax", "check": "forward",
        "cotangent": None, "dtype": "float32", "device": "cpu", "mode": "eager"}


def R(fw: str, status: str = "fail", special: str = "match", max_ulp: float | None = 30.0,
      excess: float | None = 3.0, variant: str | None = "default", **kw):
    rec = dict(BASE, framework=fw, variant=variant, status=status, special=special, max_ulp=max_ulp, excess=excess)
    if status == "pass":
        rec.update(max_ulp=0.5 if max_ulp == 30.0 else max_ulp, excess=0.25 if excess == 3.0 else excess)
    rec.update(kw)
    return rec


def summary(rec):
    return {k: rec.get(k) for k in ("status", "special", "max_ulp", "excess")}


# ---------------------------------------------------------------------------------------------
# Unit: the four causes, who is a peer and who gets a cause. Each _expect_* asserts; the tests
# call them, and the mutant tests below expect them to raise against wrong implementations.

def _expect_framework_when_a_peer_passes():
    torch, jax, tf = R("torch"), R("jax", "pass"), R("tensorflow", max_ulp=12.0, excess=1.5)
    rs = [torch, jax, tf]
    cause.assign(rs)
    assert torch["cause"] == "framework"
    assert torch["peers"] == {"jax": summary(jax), "tensorflow": summary(tf)}
    assert list(torch["peers"]) == ["jax", "tensorflow"]  # sorted by label
    assert tf["cause"] == "framework" and set(tf["peers"]) == {"jax", "torch"}
    assert "cause" not in jax and "peers" not in jax


def _expect_shared_when_every_peer_fails_numerically():
    rs = [R("torch"), R("jax", max_ulp=9.0, excess=2.0), R("tensorflow", "error", special="raised", max_ulp=None,
                                                             excess=None)]
    cause.assign(rs)
    assert rs[0]["cause"] == "shared" and rs[1]["cause"] == "shared"
    # tensorflow's own failure is a raised error: a special class, its peers fail too.
    assert rs[2]["cause"] == "special"
    assert rs[0]["peers"]["tensorflow"] == {"status": "error", "special": "raised", "max_ulp": None, "excess": None}
    assert rs[0]["peers"]["jax"] == {"status": "fail", "special": "match", "max_ulp": 9.0, "excess": 2.0}


def _expect_special_when_every_peer_fails_and_this_is_special():
    t = R("torch", special="nan_expected_finite", max_ulp="inf", excess="inf")
    j = R("jax", special="nan_expected_finite", max_ulp="inf", excess="inf")
    f = R("tensorflow")  # a numeric failure on the same input: shared, while the other two are special
    rs = [t, j, f]
    cause.assign(rs)
    assert (t["cause"], j["cause"], f["cause"]) == ("special", "special", "shared")
    assert t["peers"]["jax"]["special"] == "nan_expected_finite"


def _expect_alone_without_peers():
    t = R("torch")
    cause.assign([t])
    assert t["cause"] == "alone" and t["peers"] == {}


def _expect_a_variant_is_a_peer():
    t = R("torch")
    composed = R("torch", "pass", variant="composed")
    rs = [t, composed]
    cause.assign(rs)
    assert t["cause"] == "framework"
    assert t["peers"] == {"torch:composed": summary(composed)}
    assert "cause" not in composed
    # ... and the other way round: the default implementation is the variant's peer.
    rs = [R("torch", "pass"), R("torch", variant="composed")]
    cause.assign(rs)
    assert rs[1]["cause"] == "framework" and list(rs[1]["peers"]) == ["torch"]


def _expect_skips_and_harness_errors_are_not_peers():
    t = R("torch")
    skip = R("jax", "skip", special=None, max_ulp=None, excess=None)
    herr = R("tensorflow", "error", special="harness_error", max_ulp=None, excess=None)
    rs = [t, skip, herr]
    cause.assign(rs)
    assert t["cause"] == "alone" and t["peers"] == {}
    assert "cause" not in herr and "peers" not in herr  # a harness error is nobody's failure
    assert "cause" not in skip


def _expect_a_harness_error_gets_no_cause():
    herr = R("torch", "error", special="harness_error", max_ulp=None, excess=None, cause="shared", peers={})
    jax = R("jax", "pass")
    cause.assign([herr, jax])
    assert "cause" not in herr and "peers" not in herr


def _expect_stale_cause_removed_from_passing():
    p = R("torch", "pass", cause="framework", peers={"jax": {"status": "pass"}})
    f = R("jax", cause="alone", peers={})  # a stale cause on a failing result is recomputed
    rs = [p, f]
    cause.assign(rs)
    assert "cause" not in p and "peers" not in p
    assert f["cause"] == "framework" and f["peers"] == {"torch": summary(p)}


def _expect_known_failing_peer_counts_as_failing():
    known = {"id": "torch-lse-grad", "description": "known"}
    t = R("torch", known=known)  # a known discrepancy keeps status fail: it gets a cause too
    j = R("jax", known={"id": "jax-x", "description": "known"})
    rs = [t, j]
    cause.assign(rs)
    assert t["cause"] == "shared" and j["cause"] == "shared"
    assert t["peers"]["jax"]["status"] == "fail"


def _expect_not_a_peer(field: str, other):
    t = R("torch")
    p = R("jax", "pass", **{field: other})
    rs = [t, p]
    cause.assign(rs)
    assert t["cause"] == "alone", f"a result differing in {field} was taken as a peer"
    assert t["peers"] == {}


def _expect_dtype_differs_not_a_peer():
    _expect_not_a_peer("dtype", "float16")


def test_framework_when_a_peer_passes():
    _expect_framework_when_a_peer_passes()


def test_shared_when_every_peer_fails_numerically():
    _expect_shared_when_every_peer_fails_numerically()


def test_special_when_every_peer_fails_and_this_is_special():
    _expect_special_when_every_peer_fails_and_this_is_special()


def test_alone_without_peers():
    _expect_alone_without_peers()


def test_a_variant_of_the_same_framework_is_a_peer():
    assert cause.impl_label(R("torch", variant="composed")) == "torch:composed"
    assert cause.impl_label(R("torch", variant=None)) == cause.impl_label(R("torch")) == "torch"
    _expect_a_variant_is_a_peer()


def test_skips_and_harness_errors_are_not_peers():
    _expect_skips_and_harness_errors_are_not_peers()


def test_a_harness_error_gets_no_cause():
    _expect_a_harness_error_gets_no_cause()


def test_passing_results_get_no_cause_and_a_stale_one_is_removed():
    _expect_stale_cause_removed_from_passing()


def test_known_failing_peers_count_as_failing():
    _expect_known_failing_peer_counts_as_failing()


@pytest.mark.parametrize("field,other", [("dtype", "float16"), ("mode", "compile"), ("cotangent", "random"),
                                         ("device", "cuda"), ("case_id", "fam/y"), ("op", "log_softmax"),
                                         ("check", "grad")])
def test_a_different_input_is_not_a_peer(field, other):
    _expect_not_a_peer(field, other)


def test_fields_outside_the_input_do_not_separate_peers():
    t = R("torch", framework_version="2.0", run_id="a", test_id="t1")
    j = R("jax", "pass", framework_version="0.4", run_id="b", test_id="t2")
    cause.assign([t, j])
    assert t["cause"] == "framework"


def test_peer_fields_are_the_cross_framework_group_fields():
    assert cause.PEER_FIELDS == GROUP_FIELDS  # the module's comment promises this test


def test_causes_indexes_only_failing_results_and_classify_directly():
    rs = [R("torch", "pass"), R("jax"), R("tensorflow", "skip"), R("torch", variant="composed")]
    found = cause.causes(rs)
    assert sorted(found) == [1, 3]
    assert found[1][0] == "framework" and set(found[1][1]) == {"torch", "torch:composed"}
    assert cause.classify(R("torch"), {}) == "alone"
    assert cause.classify(R("torch"), {"jax": {"status": "fail"}, "tf": {"status": "pass"}}) == "framework"
    assert cause.classify(R("torch", special="subnormal_flushed"), {"jax": {"status": "fail"}}) == "special"
    assert cause.classify(R("torch"), {"jax": {"status": "error", "special": "raised"}}) == "shared"


# ---------------------------------------------------------------------------------------------
# Mutants: wrong versions of the module make the assertions above fail.

def _classify_ignoring_peers(rec, peers):
    return "shared" if rec.get("special") in (None, "match") else "special"


def _label_ignoring_variant(rec):
    return str(rec.get("framework"))


MUTANTS = {
    "PEER_FIELDS without dtype": ("PEER_FIELDS", tuple(f for f in cause.PEER_FIELDS if f != "dtype"),
                                  _expect_dtype_differs_not_a_peer),
    "classify ignoring peers": ("classify", _classify_ignoring_peers, _expect_framework_when_a_peer_passes),
    "impl_label ignoring the variant": ("impl_label", _label_ignoring_variant, _expect_a_variant_is_a_peer),
    "skips counted as peers": ("ran", lambda rec: rec.get("status") in ("pass", "fail", "error", "skip")
                               and rec.get("special") != "harness_error",
                               _expect_skips_and_harness_errors_are_not_peers),
    "harness errors get a cause": ("failing", lambda rec: rec.get("status") in ("fail", "error"),
                                   _expect_a_harness_error_gets_no_cause),
    "known failures read as passing": ("classify", lambda rec, peers: "framework" if peers else "alone",
                                       _expect_known_failing_peer_counts_as_failing),
    "no special cause": ("classify", lambda rec, peers: "alone" if not peers else "framework" if any(
        p.get("status") == "pass" for p in peers.values()) else "shared",
        _expect_special_when_every_peer_fails_and_this_is_special),
}


@pytest.mark.parametrize("name", list(MUTANTS))
def test_a_wrong_implementation_fails_the_tests(monkeypatch, name):
    attr, wrong, check = MUTANTS[name]
    check()  # the real module passes
    monkeypatch.setattr(cause, attr, wrong)
    with pytest.raises(AssertionError):
        check()


def test_dropping_dtype_from_peer_fields_changes_the_answer(monkeypatch):
    rs = [R("torch", dtype="bfloat16"), R("jax", "pass", dtype="float32")]
    right = cause.causes(rs)[0][0]
    monkeypatch.setattr(cause, "PEER_FIELDS", tuple(f for f in cause.PEER_FIELDS if f != "dtype"))
    wrong = cause.causes(rs)[0][0]
    assert (right, wrong) == ("alone", "framework")


# ---------------------------------------------------------------------------------------------
# annotate_file

RUN_A, RUN_B = "aaaa1111cafe", "bbbb2222beef"


def _line(rec, style=0):
    if style == 1:  # compact: a rewrite by json.dumps would not keep these bytes
        return json.dumps(rec, separators=(",", ":")) + "\n"
    if style == 2:
        return json.dumps(rec, sort_keys=True, indent=None, ensure_ascii=True) + "\n"
    return json.dumps(rec, ensure_ascii=False) + "\n"


def _results_file(path: Path):
    """Two runs in one file. Run A: g1 (torch and jax fail; run B's tensorflow passes g1 but is no
    peer), g2 (float16: torch fails, tensorflow passes), g3 (bfloat16: jax fails, torch skipped),
    a harness error; plus a malformed line and a truncated last line that name run A."""
    g2, g3 = {"dtype": "float16"}, {"dtype": "bfloat16"}
    lines = [
        (_line({"kind": "run_start", "run_id": RUN_B, "policy": "standard"}), None),
        (_line(R("tensorflow", "pass", run_id=RUN_B), 1), None),
        (_line(R("torch", run_id=RUN_B, message=f'mentions "{RUN_A}" in a message'), 2), None),
        (_line({"kind": "run_end", "run_id": RUN_B, "complete": True}), None),
        (_line({"kind": "run_start", "run_id": RUN_A, "policy": "standard"}), None),
        (_line(R("torch", run_id=RUN_A, message="worst × 30 ulp — exp"), 1), ("shared", {"jax"})),
        (_line(R("jax", run_id=RUN_A, max_ulp=40.0, excess=4.0)), ("shared", {"torch"})),
        (_line(R("torch", run_id=RUN_A, **g2), 2), ("framework", {"tensorflow", "jax"})),
        (_line(R("tensorflow", "pass", run_id=RUN_A, **g2), 1), None),
        (_line(R("jax", "pass", run_id=RUN_A, **g2)), None),
        (_line(R("torch", "skip", special=None, max_ulp=None, excess=None, run_id=RUN_A, **g3)), None),
        (_line(R("jax", run_id=RUN_A, **g3), 1), ("alone", set())),
        (_line(R("torch", "error", special="harness_error", max_ulp=None, excess=None, run_id=RUN_A,
                 case_id="fam/h")), None),
        (f'{{"kind": "result", "run_id": "{RUN_A}", "framework": "torch", "status": "fail"\n', None),
        (f'{{"kind": "result", "run_id": "{RUN_A}", "framework": "tensorflow", "status": "pa', None),
    ]
    path.write_bytes("".join(s for s, _ in lines).encode("utf-8"))
    return lines


def test_annotate_file_annotates_one_run_and_keeps_every_other_line(tmp_path):
    _expect_annotate_one_run(tmp_path)


def test_annotate_file_reading_every_run_fails_the_test(tmp_path, monkeypatch):
    """A wrong annotate_file that takes another run's results in (as peers, and annotated)."""
    right = cause._result_of_run
    monkeypatch.setattr(cause, "_result_of_run", lambda line, run_id: right(line, RUN_B) or right(line, run_id))
    with pytest.raises(AssertionError):
        _expect_annotate_one_run(tmp_path)


def _expect_annotate_one_run(tmp_path):
    path = tmp_path / "results.jsonl"
    lines = _results_file(path)
    n = cause.annotate_file(path, RUN_A)
    assert n == sum(1 for _, e in lines if e) == 4
    after = path.read_bytes().decode("utf-8").splitlines(keepends=True)
    assert len(after) == len(lines)
    for (before, expected), got in zip(lines, after):
        if expected is None:
            assert got == before  # byte for byte (the text round-trips as UTF-8)
            continue
        old, new = json.loads(before), json.loads(got)
        assert new.pop("cause") == expected[0]
        peers = new.pop("peers")
        assert set(peers) == expected[1]
        assert new == old  # nothing else changed, the non-ASCII message included
        for p in peers.values():
            assert set(p) == {"status", "special", "max_ulp", "excess"}
    g2_torch = json.loads(after[7])
    assert g2_torch["peers"]["tensorflow"] == {"status": "pass", "special": "match", "max_ulp": 0.5, "excess": 0.25}
    g1_torch = json.loads(after[5])
    assert g1_torch["peers"] == {"jax": {"status": "fail", "special": "match", "max_ulp": 40.0, "excess": 4.0}}
    assert after[-1] == lines[-1][0] and not after[-1].endswith("\n")  # the truncated line stays as it was
    assert not list(tmp_path.glob("*.cause.tmp"))
    assert [p.name for p in tmp_path.iterdir()] == ["results.jsonl"]


def test_annotate_file_without_failures_leaves_the_file_alone(tmp_path):
    path = tmp_path / "r.jsonl"
    body = _line({"kind": "run_start", "run_id": RUN_A}) + _line(R("torch", "pass", run_id=RUN_A), 1)
    path.write_text(body, encoding="utf-8")
    ino = path.stat().st_ino
    assert cause.annotate_file(path, RUN_A) == 0
    assert cause.annotate_file(path, "no-such-run") == 0
    assert path.read_text(encoding="utf-8") == body and path.stat().st_ino == ino  # not even rewritten
    assert not list(tmp_path.glob("*.cause.tmp"))


def test_annotate_file_of_another_run_id_annotates_that_run_only(tmp_path):
    path = tmp_path / "results.jsonl"
    lines = _results_file(path)
    assert cause.annotate_file(path, RUN_B) == 1  # run B's torch: its tensorflow passes g1
    after = path.read_text(encoding="utf-8").splitlines(keepends=True)
    assert json.loads(after[2])["cause"] == "framework"
    assert json.loads(after[2])["peers"] == {"tensorflow": {"status": "pass", "special": "match", "max_ulp": 0.5,
                                                            "excess": 0.25}}
    assert [a for i, a in enumerate(after) if i != 2] == [s for i, (s, _) in enumerate(lines) if i != 2]


# Defects: annotate_file reads and writes in text mode (universal newlines, errors="replace"),
# so lines it does not annotate are not kept byte for byte when they are not clean UTF-8 with
# "\n" endings; and it replaces the path with a new file (os.replace), so a symlink becomes a
# regular file (the target keeps the un-annotated results, with no run_end after a CLI run) and
# the file's mode becomes the default one.

def _undecodable_file(path: Path) -> bytes:
    body = (_line({"kind": "run_start", "run_id": RUN_A}).encode()
            + _line(R("torch", run_id=RUN_A)).encode()
            + _line(R("jax", "pass", run_id=RUN_A)).encode()
            + b'{"kind": "result", "run_id": "' + RUN_A.encode() + b'", damaged \xff\xfe bytes}\n'
            # a killed writer cut a non-ASCII message in the middle of a UTF-8 character
            + b'{"kind": "result", "run_id": "' + RUN_A.encode() + b'", "message": "worst \xc3')
    path.write_bytes(body)
    return body


def test_annotate_file_keeps_undecodable_lines_byte_for_byte(tmp_path):
    path = tmp_path / "r.jsonl"
    before = _undecodable_file(path).split(b"\n")
    assert cause.annotate_file(path, RUN_A) == 1
    after = path.read_bytes().split(b"\n")
    assert json.loads(after[1])["cause"] == "framework"
    # [3]: a malformed line with bytes that are not UTF-8; [4]: a truncated last line cut inside
    # a UTF-8 character. Both come back with U+FFFD (errors="replace") in place of their bytes.
    assert (after[3], after[4]) == (before[3], before[4]), "lines that are not UTF-8 were rewritten"


def test_annotate_file_keeps_crlf_lines_byte_for_byte(tmp_path):
    path = tmp_path / "r.jsonl"
    run_start = _line({"kind": "run_start", "run_id": RUN_A}).encode().replace(b"\n", b"\r\n")
    passing = _line(R("jax", "pass", run_id=RUN_A)).encode().replace(b"\n", b"\r\n")
    path.write_bytes(run_start + _line(R("torch", run_id=RUN_A)).encode() + passing)
    assert cause.annotate_file(path, RUN_A) == 1
    data = path.read_bytes()
    assert data.startswith(run_start) and data.endswith(passing), "CRLF line endings were rewritten as LF"


def test_annotate_file_through_a_symlink_annotates_the_target(tmp_path):
    target = tmp_path / "run-1.jsonl"
    target.write_text(_line(R("torch", run_id=RUN_A)) + _line(R("jax", "pass", run_id=RUN_A)), encoding="utf-8")
    link = tmp_path / "latest.jsonl"
    link.symlink_to(target.name)
    assert cause.annotate_file(link, RUN_A) == 1
    assert link.is_symlink(), "the symlink was replaced by a regular file"
    assert json.loads(target.read_text(encoding="utf-8").splitlines()[0]).get("cause") == "framework"


def test_annotate_file_keeps_the_file_mode(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text(_line(R("torch", run_id=RUN_A)) + _line(R("jax", "pass", run_id=RUN_A)), encoding="utf-8")
    path.chmod(0o600)
    assert cause.annotate_file(path, RUN_A) == 1
    assert oct(path.stat().st_mode & 0o777) == oct(0o600)


# ---------------------------------------------------------------------------------------------
# End to end: CLI runs (shared, run once), merge of shards, the report.

CASE = {"cases": [{"id": "c/lse64", "op": "logsumexp", "dtypes": ["bfloat16"], "grad": True, "cotangent": ["ones"],
                   "logits": [[64.0, 64.0]]}]}


def _installed(name: str) -> bool:
    # find_spec, not importorskip: importing tensorflow here would cost seconds in this process
    # (the runs import the frameworks in their own processes).
    return importlib.util.find_spec(name) is not None


def _cli(d: Path, name: str, frameworks: list[str]) -> subprocess.Popen:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    cmd = [sys.executable, "-m", "harness", "run", "--cases", str(d / "cases.json"),
           "--framework", ",".join(frameworks), "--check", "grad", "--mode", "eager", "--no-isolate",
           "--results", str(d / f"{name}.jsonl"), "--cache-dir", str(d / f"cache-{name}")]
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One full run (torch, jax, tensorflow) and two shards (torch; the other framework), once
    per pytest session: xdist workers share the session's base temp directory and a lock."""
    from filelock import FileLock

    if not _installed("torch"):
        pytest.skip("torch is not installed: its failure is what the runs show")
    peers = [f for f in ("jax", "tensorflow") if _installed(f)]
    if not peers:
        pytest.skip("neither jax nor tensorflow is installed: torch has no peer")
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent
    d = base / "cause-cli-runs"
    with FileLock(str(base / "cause-cli-runs.lock")):
        done = d / "done.json"
        if not done.exists():
            d.mkdir(exist_ok=True)
            (d / "cases.json").write_text(json.dumps(CASE), encoding="utf-8")
            procs = {"full": _cli(d, "full", ["torch", *peers]), "torch": _cli(d, "torch", ["torch"]),
                     "peer": _cli(d, "peer", [peers[0]])}
            out = {}
            for name, p in procs.items():
                stdout, stderr = p.communicate(timeout=300)
                out[name] = {"rc": p.returncode, "stdout": stdout, "stderr": stderr[-3000:]}
            done.write_text(json.dumps({"peers": peers, "out": out}), encoding="utf-8")
    info = json.loads((d / "done.json").read_text(encoding="utf-8"))
    info["dir"] = d
    return info


def _read(path: Path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _torch(recs):
    (t,) = [r for r in recs if r.get("kind") == "result" and r.get("framework") == "torch"]
    return t


def test_cli_run_writes_causes_before_run_end(runs):
    d, out = runs["dir"], runs["out"]["full"]
    assert out["rc"] == 1, out["stderr"]  # torch's failure
    recs = _read(d / "full.jsonl")
    assert recs[0]["kind"] == "run_start" and recs[-1]["kind"] == "run_end"
    assert recs[-1]["run_id"] == recs[0]["run_id"] and recs[-1]["complete"] is True
    results = [r for r in recs if r.get("kind") == "result"]
    assert {r["framework"] for r in results} == {"torch", *runs["peers"]}
    t = _torch(recs)
    assert (t["status"], t["special"]) == ("fail", "match") and t["excess"] > 1 and t["max_ulp"] >= 2
    assert t["cause"] == "framework"
    others = [r for r in results if r is not t]
    assert others and all(r["status"] == "pass" for r in others)
    assert t["peers"] == {cause.impl_label(r): summary(r) for r in others}
    assert set(runs["peers"]) <= set(t["peers"])
    assert all(p["status"] == "pass" for p in t["peers"].values())
    assert all("cause" not in r and "peers" not in r for r in others)
    assert recs[-1]["counts"] == {"pass": len(others), "fail": 1}
    causes_line = [ln for ln in out["stdout"].splitlines() if ln.startswith("harness: causes of the failing results")]
    assert len(causes_line) == 1 and causes_line[0].endswith(": framework 1"), out["stdout"]


def test_cli_run_alone_in_each_shard_and_framework_when_merged(runs):
    d = runs["dir"]
    f_torch, f_peer = d / "torch.jsonl", d / "peer.jsonl"
    assert runs["out"]["torch"]["rc"] == 1 and runs["out"]["peer"]["rc"] == 0, runs["out"]
    # Each shard's own file (annotated by its run) knows no peer.
    t_alone = _torch(_read(f_torch))
    assert t_alone["cause"] == "alone" and t_alone["peers"] == {}
    assert _read(f_torch)[-1]["kind"] == "run_end"
    assert _torch(merge([f_torch]).results)["cause"] == "alone"
    assert not [r for r in merge([f_peer]).results if r.get("cause")]
    m = merge([f_torch, f_peer])
    assert m.complete and not m.problems
    t = _torch(m.results)
    assert t["cause"] == "framework"
    peer_recs = [r for r in m.results if r["framework"] == runs["peers"][0]]
    assert t["peers"] == {cause.impl_label(r): summary(r) for r in peer_recs}
    assert all(p["status"] == "pass" for p in t["peers"].values())
    # The file itself still says alone: merging recomputes in memory, writes nothing.
    assert _torch(_read(f_torch))["cause"] == "alone"


def _disc(html: str):
    from tests.test_report import embedded

    return embedded(html, "disc-data")


def test_report_shows_the_cause_and_the_peers(runs, tmp_path):
    from harness.report import render

    d = runs["dir"]
    out = tmp_path / "r.html"
    render([str(d / "torch.jsonl"), str(d / "peer.jsonl")], str(out))
    data = _disc(out.read_text(encoding="utf-8"))
    cols = data["cols"]
    assert "cause" in cols
    rows = [(i, r) for i, r in enumerate(data["rows"]) if r[cols.index("framework")] == "torch"]
    assert len(rows) == 1
    i, row = rows[0]
    assert row[cols.index("cause")] == "framework"
    assert row[cols.index("status")] == "fail"
    peers = data["details"][i]["peers"]
    assert runs["peers"][0] in peers and peers[runs["peers"][0]]["status"] == "pass"
    assert set(peers[runs["peers"][0]]) == {"status", "special", "max_ulp", "excess"}
    # The torch shard alone: the same row says alone, with no peer.
    render([str(d / "torch.jsonl")], str(out))
    data = _disc(out.read_text(encoding="utf-8"))
    (row,) = [r for r in data["rows"] if r[data["cols"].index("framework")] == "torch"]
    assert row[data["cols"].index("cause")] == "alone"
    assert data["details"][0]["peers"] == {}
