"""Replay repro snippets: run the snippet of each failing result in a fresh interpreter (one per
framework) and compare what it prints with the output the record holds, bit for bit.

A snippet is the source the adapter ran (adapters.base.SourceAdapter): imports, the op's function
and step definitions, then the inputs as literals, the call, a print of the outputs' shapes
(compared with the record's out_shape: an empty output's values `[]` do not show it) and one of
their values as exact float64 lists. Snippets that share their definitions run them once in the fresh interpreter (a
compiled function then serves all, as it did in the run); each snippet's inputs and call run in
a namespace of their own.
"""

from __future__ import annotations

import concurrent.futures
import json
import math
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from typing import Any

import numpy as np

#: The program the fresh interpreter runs: snippets in, printed outputs (or the error) out.
_PROGRAM = r"""
import contextlib, io, json, sys, traceback
jobs = json.load(open(sys.argv[1]))
defined = {}
results = []
for job in jobs:
    lines = job["repro"].split("\n")
    cut = next((i for i, ln in enumerate(lines) if ln.startswith(("with ", "x = "))), 0)
    prefix, body = "\n".join(lines[:cut]), "\n".join(lines[cut:])
    buf = io.StringIO()
    try:
        if prefix not in defined:
            ns = {}
            exec(compile(prefix, "<repro>", "exec"), ns)
            defined[prefix] = ns
        with contextlib.redirect_stdout(buf):
            exec(compile(body, "<repro>", "exec"), dict(defined[prefix]))
        results.append({"printed": buf.getvalue()})
    except BaseException:
        results.append({"error": traceback.format_exc(limit=3)[-1500:]})
print("REPRO" + json.dumps(results))
"""


def split(snippet: str) -> tuple[str, str]:
    """(definitions, inputs and call) of an adapter's snippet: cut at its first line that starts the
    inputs (`x = ...`) or their context (`with ...:`), as the replay program above cuts it."""
    lines = snippet.split("\n")
    cut = next((i for i, ln in enumerate(lines) if ln.startswith(("with ", "x = "))), 0)
    return "\n".join(lines[:cut]), "\n".join(lines[cut:])


@dataclass
class Mismatch:
    test_id: str
    why: str
    repro: str
    #: Set where the record's framework and mode can give another output after other calls
    #: (Adapter.history_dependent): the reason. Empty for a defect of the snippet.
    history: str = ""


def _history_reason(rec: dict[str, Any]) -> str:
    from . import adapters as A
    from .errors import HarnessInputError

    if rec.get("check") == "determinism":
        return "a determinism result that differs shows a call that need not repeat: its replay may differ too"
    try:
        adapter = A.get(str(rec.get("framework")))
    except (HarnessInputError, ImportError, AttributeError):
        return ""
    return adapter.history_dependent.get(str(rec.get("mode")), "")


def _values(printed: str) -> list[np.ndarray]:
    """The outputs a snippet printed: a Python list of (nested) float lists, nan and inf bare."""
    last = [ln for ln in printed.strip().splitlines() if ln.strip()][-1]
    vals = eval(last, {"__builtins__": {}}, {"nan": math.nan, "inf": math.inf})  # noqa: S307 - numbers only
    return [np.asarray(v, dtype=np.float64) for v in vals]


def _shapes(printed: str) -> list[list[int]] | None:
    """The outputs' shapes a snippet printed on the line before its values (adapters'
    shapes_source), or None for a snippet without that line (records of before it)."""
    lines = [ln for ln in printed.strip().splitlines() if ln.strip()]
    if len(lines) < 2:
        return None
    try:
        v = eval(lines[-2], {"__builtins__": {}}, {})  # noqa: S307 - a list of lists of ints, or not ours
    except Exception:  # noqa: BLE001 - not a shapes line
        return None
    if isinstance(v, list) and all(isinstance(s, list) and all(type(n) is int for n in s) for s in v):
        return v
    return None


def _recorded(rec: dict[str, Any]) -> list[np.ndarray]:
    from .report.numbers import nums

    def value(v: Any) -> np.ndarray:  # a record in memory holds arrays, one read from a file lists
        return np.asarray(v if isinstance(v, np.ndarray) else nums(v), dtype=np.float64)

    pair = rec.get("pair")
    if isinstance(pair, dict) and isinstance(pair.get("outputs"), list):  # an invariance result: both variants
        return [value(v) for outs in pair["outputs"] for v in outs.values()]
    return [value(v) for v in rec["output"].values()]


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal to the bit, NaN payloads aside (a NaN is a NaN), signed zeros told apart."""
    if a.shape != b.shape:
        return False
    nan = np.isnan(a) & np.isnan(b)
    return bool(np.all(nan | (a.view(np.int64) == b.view(np.int64))))


def replayable(rec: dict[str, Any]) -> bool:
    """A failing result whose snippet and outputs the record holds."""
    return (rec.get("kind", "result") == "result" and rec.get("status") in ("fail", "error")
            and bool(rec.get("repro")) and ((isinstance(rec.get("output"), dict) and bool(rec["output"]))
                                            or isinstance(rec.get("pair"), dict)))


#: The fields that make a sample of failing results representative: each framework, mode, check,
#: op, API variant, dtype and cotangent is replayed at least once (a snippet's source differs
#: along each of them, its input literals along the rest).
SAMPLE_KEY = ("framework", "mode", "check", "op", "variant", "dtype", "cotangent")


def sample(records: list[dict[str, Any]], per_group: int) -> list[dict[str, Any]]:
    """The first `per_group` replayable records (in file order) of each SAMPLE_KEY group, plus
    every one whose class axis is not the last (the snippets that move the axis)."""
    seen: dict[tuple[Any, ...], int] = {}
    out = []
    for r in records:
        if not replayable(r):
            continue
        key = tuple(str(r.get(k)) for k in SAMPLE_KEY)
        axis = (r.get("input") or {}).get("axis", -1) if isinstance(r.get("input"), dict) else -1
        if seen.get(key, 0) < per_group or axis not in (-1, None):
            seen[key] = seen.get(key, 0) + 1
            out.append(r)
    return out


def _replay(recs: list[dict[str, Any]], timeout: float) -> subprocess.CompletedProcess:
    """One fresh interpreter running the snippets of `recs` (one framework's) in order."""
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "jobs.json")
        with open(path, "w", encoding="utf-8") as f:
            json.dump([{"repro": r["repro"]} for r in recs], f)
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3"))
        return subprocess.run([sys.executable, "-c", _PROGRAM, path], capture_output=True, text=True,
                              timeout=timeout, env=env)


def check(records: list[dict[str, Any]], timeout: float = 3600, jobs: int | None = None) -> tuple[int, list[Mismatch]]:
    """Replay the snippets of the replayable records, one fresh interpreter per framework (`jobs`
    of them at once, default one per CPU); the number replayed, and the ones whose printout
    differs from the record (or that raised).

    A snippet that raised, printed another shape, or differs in a mode without compile history
    is a defect of the harness. A differing value in a history-dependent mode (Mismatch.history)
    is the framework's: the snippets replay in one process, after other snippets, as the run
    ran them after other calls, but not after the same ones."""
    by_fw: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        if replayable(r):
            by_fw.setdefault(str(r.get("framework")), []).append(r)
    mismatches: list[Mismatch] = []
    n = 0
    groups = sorted(by_fw.items(), key=lambda g: -len(g[1]))  # the longest first: they end together
    with concurrent.futures.ThreadPoolExecutor(max(1, min(len(groups), jobs or os.cpu_count() or 1))) as pool:
        done = list(pool.map(lambda g: _replay(g[1], timeout), groups))
    for (fw, recs), p in sorted(zip(groups, done), key=lambda t: t[0][0]):  # reported by framework
        line = next((ln for ln in p.stdout.splitlines() if ln.startswith("REPRO")), None)
        if line is None:
            mismatches += [Mismatch(r["test_id"], f"the {fw} interpreter failed: {p.stderr[-1500:]}", r["repro"])
                           for r in recs]
            continue
        for r, res in zip(recs, json.loads(line[len("REPRO"):])):
            n += 1
            if "error" in res:
                mismatches.append(Mismatch(r["test_id"], f"the snippet raised: {res['error']}", r["repro"]))
                continue
            try:
                got = _values(res["printed"])
            except Exception as e:  # noqa: BLE001 - anything unreadable is a mismatch
                mismatches.append(Mismatch(r["test_id"], f"unreadable printout ({e}): {res['printed'][-500:]}",
                                           r["repro"]))
                continue
            want = _recorded(r)
            printed, recorded = _shapes(res["printed"]), r.get("out_shape")
            if printed is not None and isinstance(recorded, dict) and "pair" not in r and printed != list(recorded.values()):
                # an empty output prints `[]` whatever its shape: the shapes line tells (0,) from (0, 5)
                mismatches.append(Mismatch(r["test_id"], f"printed shapes {printed}, recorded {list(recorded.values())}",
                                           r["repro"]))
                continue
            if len(got) != len(want) or not all(same_bits(a, b) for a, b in zip(got, want)):
                shapes = len(got) == len(want) and all(a.shape == b.shape for a, b in zip(got, want))
                mismatches.append(Mismatch(r["test_id"], f"printed {[a.tolist() for a in got]}, recorded "
                                           f"{[b.tolist() for b in want]}", r["repro"],
                                           _history_reason(r) if shapes else ""))
    return n, mismatches
