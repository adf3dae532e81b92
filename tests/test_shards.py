"""--shard K/N (harness/shards.py): a deterministic split into whole compile units, balanced,
whose parts merge into the unsharded run's results, in the CLI and the plugin."""

import json
import re
import random
import subprocess
import sys
from pathlib import Path

import pytest

from harness import adapters as A
from harness import cases as K
from harness import records
from harness import shards
from harness.errors import HarnessInputError
from harness.options import from_values
from harness.report.merge import merge
from harness.runner import Selection, expand

ROOT = Path(__file__).resolve().parent.parent
RUNNABLE = [f for f in ("numpy", "torch", "jax") if A.get(f).available()[0]]


def _items(frameworks=("numpy", "torch", "jax", "tensorflow")):
    return expand(K.load(), Selection(), list(frameworks))


def test_parse():
    assert shards.parse("1/2") == (1, 2) and shards.parse("3/3") == (3, 3) and shards.parse(None) is None
    for bad in ("0/2", "3/2", "a/b", "1-2", "1/2/3", "-1/2"):
        with pytest.raises(HarnessInputError) as e:
            shards.parse(bad)
        assert e.value.field == "shard"


@pytest.mark.parametrize("n", [2, 3, 5])
def test_parts_partition_whole_units_whatever_the_order(n):
    items = _items()
    parts = shards.split(items, n)
    assert sum(len(p) for p in parts) == len(items)
    assert {i.id for p in parts for i in p} == {i.id for i in items}
    owner = {}
    for k, p in enumerate(parts):
        for it in p:
            assert owner.setdefault(shards.unit_of(it), k) == k  # a unit never straddles two parts
    shuffled = items[:]
    random.Random(7).shuffle(shuffled)
    again = shards.split(shuffled, n)
    assert [sorted(i.id for i in p) for p in again] == [sorted(i.id for i in p) for p in parts]
    # LPT on item counts: no part exceeds the mean by more than the largest unit.
    biggest = max(sum(1 for i in items if shards.unit_of(i) == u) for u in owner)
    assert max(len(p) for p in parts) <= len(items) / n + biggest


def test_durations_of_an_earlier_run_balance_the_parts(tmp_path):
    """One unit that took most of the earlier run's time gets a part to itself."""
    items = [i for i in _items(("numpy",)) if i.op in ("softmax", "log_softmax")]
    slow = shards.unit_of(next(i for i in items if i.op == "softmax" and i.dtype == "float64"))
    res = tmp_path / "earlier.jsonl"
    lines = [{"kind": "run_start", "run_id": "r"}]
    for n, it in enumerate(items):
        u = shards.unit_of(it)
        lines.append({"kind": "result", "run_id": "r", "case_id": it.case.id, "op": it.op, "check": it.check,
                      "cotangent": it.cotangent, "variant": it.variant, "framework": it.framework,
                      "device": it.device, "dtype": it.dtype, "mode": it.mode,
                      "time_first_call_s": 100.0 if u == slow else 0.01})
    res.write_text("".join(json.dumps(x) + "\n" for x in lines))
    w = shards.durations(records.read([str(res)]))
    assert w[tuple(map(str, slow))] == pytest.approx(100.0 * sum(shards.unit_of(i) == slow for i in items))
    parts = shards.split(items, 2, w)
    alone = next(p for p in parts if any(shards.unit_of(i) == slow for i in p))
    assert {shards.unit_of(i) for i in alone} == {slow}
    # The options read the file once, when they are checked, and hand these weights to select.
    reads = []
    real = records.read
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(records, "read", lambda paths, *a, **k: reads.append(list(paths)) or real(paths, *a, **k))
        opts = from_values({"shard": "1/2", "shard_durations": str(res)})
        assert opts.shard_weights == w and len(reads) == 1
        assert shards.select(items, (parts.index(alone) + 1, 2), opts.shard_weights) == alone
    # Without durations, the same items split by count: the slow unit shares its part.
    by_count = shards.split(items, 2)
    assert any(len({shards.unit_of(i) for i in p}) > 1 and slow in {shards.unit_of(i) for i in p} for p in by_count)


def test_spent_s_counts_what_each_kind_of_record_spent():
    """A value check's record: the first call, `timing_reps` timed calls of the median's length,
    the reference and the verdict. An invariance check's: its whole time, written in both framework
    fields, once (counted 4 times, its items weighed 4 times their cost in shards and the ETA)."""
    t = {"time_first_call_s": 2.0, "time_framework_s": 0.5, "time_reference_s": 0.25, "time_verdict_s": 0.125}
    assert records.spent_s({"check": "grad", **t}) == 2.0 + 3 * 0.5 + 0.25 + 0.125
    assert records.spent_s({"check": "grad", **t}, timing_reps=1) == 2.0 + 0.5 + 0.25 + 0.125
    assert records.spent_s({"check": "grad", **t}, timing_reps=0) == 2.0 + 0.25 + 0.125
    inv = {"time_first_call_s": 7.0, "time_framework_s": 7.0}
    for check in ("batch_invariance", "determinism", "eager_vs_jit", "permutation"):
        assert records.spent_s({"check": check, **inv}) == 7.0
    assert records.spent_s({"check": "forward", "time_first_call_s": float("nan"), "time_framework_s": -1}) == 0.0


COMPARED = ("status", "special", "max_ulp", "p99_ulp", "excess", "output", "known", "cause", "peers", "repro")


@pytest.mark.skipif(len(RUNNABLE) < 2, reason="needs numpy and one framework for causes across parts")
def test_two_parts_merge_into_the_unsharded_results(tmp_path):
    fw = ",".join(RUNNABLE[:2])
    base = [sys.executable, "-m", "harness", "run", "--framework", fw, "--case-filter", "seed/*", "--mode", "eager",
            "--no-isolate", "--timing-reps", "0", "--cache-dir", str(tmp_path / "cache"), "-q"]
    runs = {}
    for name, extra in (("all", []), ("p1", ["--shard", "1/2"]), ("p2", ["--shard", "2/2"])):
        out = tmp_path / f"{name}.jsonl"
        p = subprocess.run(base + ["--results", str(out)] + extra, cwd=ROOT, capture_output=True, text=True,
                           timeout=600)
        assert p.returncode in (0, 1), p.stderr[-2000:]
        runs[name] = out
    whole = {records.key(r): r for r in merge([runs["all"]]).results}
    parts = [{records.key(r) for r in records.read([runs[k]]).results} for k in ("p1", "p2")]
    assert parts[0] and parts[1] and not parts[0] & parts[1] and parts[0] | parts[1] == set(whole)
    merged = {records.key(r): r for r in merge([runs["p1"], runs["p2"]]).results}
    assert set(merged) == set(whole)
    for k, r in merged.items():
        assert {f: r.get(f) for f in COMPARED} == {f: whole[k].get(f) for f in COMPARED}, k
    assert any(r.get("cause") for r in merged.values())  # the causes are compared, not absent
    starts = [json.loads(runs[k].read_text().splitlines()[0]) for k in ("p1", "p2")]
    assert [s.get("shard") for s in starts] == ["1/2", "2/2"]


def test_a_part_with_nothing_to_run_writes_a_complete_empty_file(tmp_path):
    """One unit split in 3: the empty parts are valid shards, not bad input. Each writes a results
    file of its run's header and a complete end (exit 0), so `report` merges the parts (it
    failed on the missing files: the empty parts exited 2 and wrote none)."""
    base = [sys.executable, "-m", "harness", "run", "--framework", "numpy", "--op", "softmax", "--dtype", "float64",
            "--check", "forward", "--case-filter", "seed/softmax_classic", "--no-isolate", "--timing-reps", "0",
            "--cache-dir", str(tmp_path / "cache"), "-q"]
    outs, empty = [], 0
    for k in (1, 2, 3):
        out = tmp_path / f"p{k}.jsonl"
        p = subprocess.run(base + ["--shard", f"{k}/3", "--results", str(out)], cwd=ROOT, capture_output=True,
                           text=True, timeout=300)
        assert p.returncode == 0, p.stderr[-2000:]
        loaded = records.read([out])
        assert loaded.complete and not loaded.problems
        if not loaded.results:
            empty += 1
            assert f"shard {k}/3 has nothing to run" in p.stderr
        outs.append(out)
    assert empty == 2
    assert len(merge(outs).results) == 1
    none = subprocess.run(base[:-8] + ["--case-filter", "no/such*", "--results", str(tmp_path / "n.jsonl"), "-q"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert none.returncode == 2 and "nothing to run" in none.stderr  # an empty selection still is


def test_plugin_collects_the_same_parts(tmp_path):
    # The results path is this test's own: a suite running this test writes reports/ itself.
    results = tmp_path / "r.jsonl"
    results.write_text("an earlier run\n")

    def collect(extra):
        p = subprocess.run([sys.executable, "-m", "pytest", "tests/test_conformance.py", "--collect-only", "-q",
                            "-p", "no:xdist", "--harness-framework", "numpy", "--harness-case-filter", "seed/*",
                            "--harness-results", str(results), *extra], cwd=ROOT, capture_output=True, text=True,
                           timeout=300)
        assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
        return {line for line in p.stdout.splitlines() if "test_conformance[" in line}

    every, one, two = collect([]), collect(["--harness-shard", "1/2"]), collect(["--harness-shard", "2/2"])
    assert one and two and not one & two and one | two == every
    # Collecting runs nothing: the results file of an earlier run is left as it was.
    assert results.read_text() == "an earlier run\n"


def test_xdist_workers_get_whole_units(tmp_path):
    """Under `-n 2` (pytest-xdist's `load`), this repository's conftest hands each conformance unit
    (framework, device, dtype, mode: what a framework compiles once per process) to one worker;
    dealt out test by test, as `load` does, both workers ran (and compiled) every unit."""
    pytest.importorskip("xdist")
    from harness.plugin import xdist_scheduler

    class Config:
        def __init__(self, dist):
            self.dist = dist

        def getvalue(self, name):
            return {"dist": self.dist, "tx": [], "numprocesses": 2}.get(name)

    assert xdist_scheduler(Config("loadfile"), None) is None
    results = tmp_path / "r.jsonl"
    p = subprocess.run([sys.executable, "-m", "pytest", "tests/test_conformance.py", "tests/test_registry.py", "-v",
                        "-n", "2", "--harness-framework", "numpy", "--harness-case-filter", "seed/*",
                        "--harness-dtype", "float32,float64", "--harness-timing-reps", "0", "--harness-results",
                        str(results)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert p.returncode in (0, 1), p.stdout[-2000:] + p.stderr[-2000:]
    workers: dict[tuple, set] = {}
    for r in records.read([results]).results:
        workers.setdefault((r["framework"], r["device"], r["dtype"], r["mode"]), set()).add(r["worker"])
    assert len(workers) >= 2 and all(len(w) == 1 for w in workers.values()), workers
    assert len(set().union(*workers.values())) == 2  # both workers had work
    # Another module's tests go to one worker together (they share its module-scoped fixtures),
    # and before that worker's conformance units (modules first: their tests are few but long).
    done = re.findall(r"^\[(gw\d+)\] \[ *\d+%\] \w+ (tests/\S+)", p.stdout, re.M)
    mine = {w for w, t in done if t.startswith("tests/test_registry.py")}
    assert len(mine) == 1 and len([t for _, t in done if t.startswith("tests/test_registry.py")]) > 5, done[:20]
    order = [t for w, t in done if w in mine]
    assert order[0].startswith("tests/test_registry.py") and any("test_conformance" in t for t in order), order[:20]
    last = max(i for i, t in enumerate(order) if t.startswith("tests/test_registry.py"))
    assert all(t.startswith("tests/test_registry.py") for t in order[:last + 1]), order[:last + 2]


def test_jobs_take_their_frameworks_groups_first():
    """The CLI's jobs (cli.Groups): every item is taken once, in whole (framework, rank, axis)
    groups; a job keeps to the framework it ran last while it has groups left, and otherwise
    takes the largest group left. Two jobs over four frameworks change framework about once per
    framework (each framework's worker is started again only when a job comes back to it)."""
    from harness.cli import Groups

    items = _items()
    groups, taken = Groups(items), []
    last = [None, None]
    switches = 0
    while True:
        for j in (0, 1):
            g = groups.take(last[j])
            if g is None:
                break
            assert len({(i.framework, len(i.case.shape), i.case.axis) for i in g}) == 1
            switches += g[0].framework != last[j]
            last[j] = g[0].framework
            taken.append(g)
        else:
            continue
        break
    assert sorted(i.id for g in taken for i in g) == sorted(i.id for i in items)
    assert switches <= 2 * 4, switches  # at most once per framework and job
    sizes = [len(g) for g in Groups(items)._left]
    assert len(Groups(items).take()) == max(sizes)  # a job with no framework yet: the largest group
    # Without the preference (the largest group left, whatever its framework), the jobs switch
    # framework at almost every group.
    loose = Groups(items)
    naive = [loose.take() for _ in range(len(sizes))]
    assert sum(a[0].framework != b[0].framework for a, b in zip(naive, naive[2:])) > 2 * switches


def test_xdist_units_are_dealt_framework_by_framework():
    from harness.plugin import unit_order

    def unit(fw, dtype, mode):
        return f"tests/test_conformance.py::test_conformance[{fw}-cpu-{dtype}-{mode}-softmax-forward-seed/x]"

    queue = {"tests/test_a.py": ["tests/test_a.py::t1"] * 3}  # loadscope's order: by size, largest first
    for fw, dtype, mode, n in [("torch", "float32", "jit", 50), ("keras-jax", "float32", "eager", 40),
                               ("torch", "float64", "eager", 30), ("keras-jax", "float64", "eager", 20),
                               ("torch", "float32", "jit_static", 5), ("numpy", "float64", "eager", 1)]:
        queue[f"{fw}-cpu-{dtype}-{mode}"] = [unit(fw, dtype, mode)] * n
    queue["tests/test_b.py"] = ["tests/test_b.py::t2"]
    assert unit_order(queue) == ["tests/test_a.py", "tests/test_b.py",
                                 "torch-cpu-float32-jit", "torch-cpu-float64-eager", "torch-cpu-float32-jit_static",
                                 "keras-jax-cpu-float32-eager", "keras-jax-cpu-float64-eager",
                                 "numpy-cpu-float64-eager"]
