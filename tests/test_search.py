"""The worst-case search: within its default budget it finds an input with a larger error than
the worst built-in random case, and the case file it writes replays to the same error."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness import adapters as A
from harness import cases as K
from harness.cache import Cache
from harness.policy import load as load_policy
from harness.runner import Item, Session
from harness.search import DEFAULT_BUDGET, search, write_cases

ROOT = Path(__file__).resolve().parent.parent
FW = next(f for f in ("torch", "jax", "tensorflow", "numpy") if A.get(f).available()[0])


def test_search_beats_the_random_family_and_replays(tmp_path):
    op, dtype = "log_softmax", "float32"
    session = Session(load_policy("standard"), Cache(tmp_path / "cache"), [], None, 0)
    random_cases = [c for c in K.load() if c.family == "random" and op in c.ops and dtype in c.dtypes]
    assert random_cases
    worst_random = max(session.run(Item(c, op, "forward", "default", FW, "cpu", dtype, "eager"))["max_ulp"] or 0.0
                       for c in random_cases)
    found = search(session, FW, op, dtype, budget=DEFAULT_BUDGET, seed=0)
    assert found and found[0].max_ulp > worst_random, (found[0].max_ulp, worst_random)
    out = tmp_path / "worst.json"
    write_cases(found, out, FW, op, dtype, "forward", "eager")
    data = json.loads(out.read_text())
    assert [c["id"] for c in data["cases"]] == [f"search/{FW}_{op}_{dtype}_forward_{k}" for k in range(len(found))]
    results = tmp_path / "replay.jsonl"
    p = subprocess.run([sys.executable, "-m", "harness", "run", "--cases", str(out), "--framework", FW,
                        "--dtype", dtype, "--op", op, "--mode", "eager", "--check", "forward", "--no-isolate",
                        "--results", str(results), "--cache-dir", str(tmp_path / "cache")],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode in (0, 1), p.stderr
    replay = {r["case_id"]: r for r in map(json.loads, results.read_text().splitlines()) if r["kind"] == "result"}
    for k, f in enumerate(found):
        assert replay[f"search/{FW}_{op}_{dtype}_forward_{k}"]["max_ulp"] == pytest.approx(f.max_ulp, rel=1e-12)


def test_search_command_rejects_unknown_names(tmp_path):
    p = subprocess.run([sys.executable, "-m", "harness", "search", "--framework", FW, "--op", "softmaks",
                        "--dtype", "float32", "-o", str(tmp_path / "x.json")], cwd=ROOT, capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 2 and "softmaks" in p.stderr and "log_softmax" in p.stderr
    assert not (tmp_path / "x.json").exists()
