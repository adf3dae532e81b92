"""Bad input: a clear message naming the file, case and field, exit 2, nothing written over.

One row per bad input (the table in docs/bad-inputs.md lists the same rows, checked below).
Each row writes its bad files into tmp_path, runs the CLI, and checks:

- exit code 2;
- stderr holds "error:" and every expected fragment (the file, the case id and the field
  where they apply, and the valid names for an unknown one), and no "Traceback";
- a results file that existed before the run (sentinel content) is byte-identical after it
  (for `report`, the existing HTML output is left alone).

Most rows call `harness.cli.main([...])` in-process (fast); the rows marked `sub` run
`python -m harness ...` as a real subprocess, so the real entry point, its stderr and its exit
status are covered too. Rows marked `bug` describe how the harness *should* behave and are
strict expected failures until the harness is fixed (the reason says where).
"""

from __future__ import annotations

from harness import adapters as _adapters
from harness import cases as _cases
from harness import dtypes as _dtypes
from harness import ops as _ops
from harness import policy as _policy
from harness import vocab as _vocab

import contextlib
import io
import json
import os
import re
import signal
import subprocess
import sys
import traceback
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "bad-inputs.md"
SENTINEL = b'{"kind": "sentinel", "note": "an earlier run; must survive a run on bad input"}\n'

# The valid names a message lists, from the registries that define them (not restated here).
OPS = ", ".join(_vocab.OP_NAMES)
DTYPES = ", ".join(_dtypes.DTYPE_NAMES)
CASE_KEYS = ", ".join(sorted(_cases.CASE_KEYS))
BUDGET_KEYS = "accumulate, check, cond, dtype, framework, op, reason, summation, ulp"
TOKENS_HINT = '"inf", "-inf", "nan"'
INVARIANCE = ", ".join(_vocab.INVARIANCE_CHECKS)
VALUE_CHECKS = ", ".join(_vocab.VALUE_CHECKS)
RULES = ", ".join(_policy.INVARIANCE_RULES)
INVARIANCE_KEYS = ", ".join(sorted(_policy.INVARIANCE_KEYS))
POLICY_KEYS = ", ".join(sorted(_policy.TOP_KEYS))
#: Cuts a run that wrongly gets past validation down to one result (softmax forward, float64).
ONE = ["--op", "softmax", "--dtype", "float64", "--check", "forward"]


class Unpickled:
    """Pickled into an object array: unpickling it would create the directory `marker`. The
    harness must refuse such files without loading them, so the marker must never appear."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def _pickled_npy(p: Path) -> None:
    np.save(p, np.array([Unpickled(str(p.parent / "UNPICKLED")), 1.0], dtype=object), allow_pickle=True)


def _pickled_npz(p: Path) -> None:
    np.savez(p, logits=np.array([Unpickled(str(p.parent / "UNPICKLED")), 1.0], dtype=object))


def _npy_header(shape: tuple[int, ...], descr: str = "<f8", body: bytes = b"") -> Any:
    """An .npy file holding only a header that declares `shape` (and `body`): no data behind it."""
    def make(p: Path) -> None:
        buf = io.BytesIO()
        np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False, "shape": shape})
        p.write_bytes(buf.getvalue() + body)
    return make


def _npz_header(key: str, shape: tuple[int, ...], descr: str = "<f8") -> Any:
    """An .npz whose member `key` is an .npy header declaring `shape`, with no data behind it."""
    def make(p: Path) -> None:
        buf = io.BytesIO()
        np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False, "shape": shape})
        with zipfile.ZipFile(p, "w") as z:
            z.writestr(f"{key}.npy", buf.getvalue())
    return make


def _nested(depth: int) -> str:
    """Logits nested `depth` lists deep around one number, as JSON text."""
    return "[" * depth + "0.0" + "]" * depth


def _result(**kw: Any) -> str:
    """One result record (JSON Lines) with every key field set; `kw` overrides."""
    rec = {"kind": "result", "case_id": "fam/c1", "op": "softmax", "check": "forward", "cotangent": None,
           "variant": "default", "framework": "numpy", "device": "cpu", "dtype": "float64", "mode": "eager",
           "status": "fail", "special": "match", "max_ulp": 3.0, "test_id": "t", "message": ""}
    rec.update(kw)
    return json.dumps(rec) + "\n"


def _case_file(case: dict | None = None, **top: Any) -> str:
    """A case file `bad.json` holding one case (id "c1" -> "bad/c1") over logits [[1, 2, 3]]."""
    c = {"id": "c1", "logits": [[1.0, 2.0, 3.0]]}
    c.update(case or {})
    return json.dumps({"cases": [c], **top})


GOOD = json.dumps({"cases": [{"id": "ok", "op": "softmax", "logits": [[1.0, 2.0, 3.0]], "dtypes": ["float64"]}]})

FILE = "{tmp}/bad.json"
CASE = "case 'bad/c1'"
CASES = ["--cases", FILE]

# `search`: the cheapest search (a row that wrongly gets past validation stops at once), its case
# file in tmp_path (an earlier one there must survive). A flag given again later wins (argparse).
FRAMEWORKS = ", ".join(_adapters.names())
SEARCH = ["--op", "softmax", "--dtype", "float64", "--budget", "3", "--shrink-budget", "0", "--classes", "2"]
NUMPY = ["--framework", "numpy"]
OUT = ["-o", "{tmp}/found.json"]
FOUND = {"found.json": '{"cases": [], "description": "an earlier search"}\n'}
POLICY = 'name = "p"\n[[budget]]\nulp = 1.0\nreason = "r"\n'


@dataclass
class Row:
    id: str
    input: str  # what is bad, for the docs table
    args: list[str]  # after the command; "{tmp}" is the test's tmp_path
    fragments: list[str]  # must all be in stderr ("{tmp}" substituted)
    files: dict[str, Any] = field(default_factory=dict)  # name -> str | bytes | callable(path)
    command: str = "run"
    absent: list[str] = field(default_factory=list)  # must not be in stderr
    sub: bool = False  # run as a real subprocess (a row that would hang in-process before its fix)
    env: dict[str, str] = field(default_factory=dict)  # environment variables set for the run
    bug: str | None = None  # strict xfail: how the harness misbehaves today, where the fix goes


ROWS: list[Row] = [
    # ---------------------------------------------------------------- case files: the file
    Row("case-malformed-json", "case file that is not valid JSON (`{\"cases\": [ {\"id\": \"c1\",`)",
        CASES, [FILE, "not valid JSON", "line 1"], {"bad.json": '{"cases": [ {"id": "c1",'}, sub=True),
    Row("case-malformed-toml", "case file `.toml` that is not valid TOML (unclosed inline table)",
        ["--cases", "{tmp}/bad.toml"], ["{tmp}/bad.toml", "not valid TOML"],
        {"bad.toml": 'cases = [ {id = "c1", logits = [[1.0, 2.0]]'}),
    Row("case-top-level-list", "case file whose top level is a list, not an object",
        CASES, [FILE, "field 'cases'", 'expected an object with a list "cases"'], {"bad.json": "[1, 2]"}),
    Row("case-missing-cases", 'case file without a "cases" list', CASES,
        [FILE, "field 'cases'", 'expected an object with a list "cases"'], {"bad.json": '{"family": "x"}'}),
    Row("case-family-not-string", 'a family that is not a string (`"family": 5`: case ids became `5/c1`)', CASES,
        [FILE, "field 'family'", "family must be a non-empty string", "not 5"], {"bad.json": _case_file(family=5)}),
    Row("case-description-not-string", 'a file description that is not a string (`"description": ["x"]`)', CASES,
        [FILE, "field 'description'", "must be a string"], {"bad.json": _case_file(description=["x"])}),
    Row("case-why-not-string", 'a case\'s why that is not a string (`"why": 5`)', CASES,
        [FILE, CASE, "field 'why'", "why must be a string"], {"bad.json": _case_file({"why": 5})}),
    Row("case-unknown-top-key", 'unknown top-level key (`"famly"`)', CASES,
        [FILE, "'famly'", "valid: cases, description, family"], {"bad.json": _case_file(famly="x")}),
    Row("case-not-object", "a case that is not an object (`\"cases\": [5]`)", CASES,
        [FILE, "case #0 is not an object"], {"bad.json": '{"cases": [5]}'}),
    Row("case-without-id", "case without an id", CASES, [FILE, "field 'id'", "case #0 has no string id"],
        {"bad.json": json.dumps({"cases": [{"logits": [[1.0, 2.0]]}]})}),
    Row("case-duplicate-id", "two cases with the same id", CASES, [FILE, CASE, "field 'id'", "duplicate case id"],
        {"bad.json": json.dumps({"cases": [{"id": "c1", "logits": [[1, 2]]}, {"id": "c1", "logits": [[3, 4]]}]})}),
    Row("case-unknown-key", 'unknown case key (`"lables"`)', CASES,
        [FILE, CASE, "field 'lables'", f"valid: {CASE_KEYS}"], {"bad.json": _case_file({"lables": [2]})}),
    # ---------------------------------------------------------------- case files: options
    Row("case-option-not-taken", "an option the op does not take (`label_smoothing` on `softmax`)", CASES,
        [FILE, CASE, "field 'label_smoothing'", "op 'softmax' takes no option 'label_smoothing'", "valid: " + ", ".join(_ops.OPS["softmax"].params)],
        {"bad.json": _case_file({"op": "softmax", "label_smoothing": 0.1})}),
    Row("case-option-out-of-range", "`label_smoothing` outside [0, 1] (`1.5`)", CASES,
        [FILE, CASE, "field 'label_smoothing'", "label_smoothing must lie in [0, 1], not 1.5"],
        {"bad.json": _case_file({"op": "sparse_softmax_cross_entropy", "labels": [1], "label_smoothing": 1.5})}),
    Row("case-option-not-a-number", '`label_smoothing` that is a string (`"0.1"`)', CASES,
        [FILE, CASE, "field 'label_smoothing'", "label_smoothing must be a finite number, not '0.1'"],
        {"bad.json": _case_file({"op": "sparse_softmax_cross_entropy", "labels": [1], "label_smoothing": "0.1"})}),
    Row("case-option-no-op-takes-it", "an option no op of the case's labels takes (`label_smoothing`, no labels, no `op`)",
        CASES, [FILE, CASE, "field 'label_smoothing'", "no op with none labels takes the option(s) ['label_smoothing']"],
        {"bad.json": _case_file({"label_smoothing": 0.1})}),
    Row("case-weights-wrong-length", "`weights` with 2 entries for 3 classes", CASES,
        [FILE, CASE, "field 'weights'", "weights has 2 entries for 3 classes"],
        {"bad.json": _case_file({"op": "sparse_softmax_cross_entropy", "labels": [1], "weights": [1.0, 2.0]})}),
    Row("case-ignore-index-not-integer", "`ignore_index` that is not an integer (`-100.5`)", CASES,
        [FILE, CASE, "field 'ignore_index'", "ignore_index must be an integer, not -100.5"],
        {"bad.json": _case_file({"op": "sparse_softmax_cross_entropy", "labels": [1], "ignore_index": -100.5})}),
    Row("case-weights-on-dense-op", "`weights` on the dense cross-entropy (sparse only)", CASES,
        [FILE, CASE, "field 'weights'", "op 'softmax_cross_entropy' takes no option 'weights'",
         "valid: " + ", ".join(_ops.OPS["softmax_cross_entropy"].params)],
        {"bad.json": _case_file({"op": "softmax_cross_entropy", "labels": [[0, 1, 0]], "weights": [1, 2, 3]})}),
    Row("case-reduction-unknown", '`reduction` that is not a choice (`"average"`)', CASES,
        [FILE, CASE, "field 'reduction'", "reduction must be one of none, sum, mean, not 'average'"],
        {"bad.json": _case_file({"op": "sparse_softmax_cross_entropy", "labels": [1], "reduction": "average"})}),
    Row("case-where-wrong-shape", "`where` of shape [1, 2] for logits of shape [1, 3]", CASES,
        [FILE, CASE, "field 'where'", "where of shape [1, 2] does not match the logits [1, 3]"],
        {"bad.json": _case_file({"op": "softmax", "where": [[True, False]]})}),
    Row("case-b-wrong-shape", "`b` of shape [3] for logits of shape [1, 3]", CASES,
        [FILE, CASE, "field 'b'", "b of shape [3] does not match the logits [1, 3]"],
        {"bad.json": _case_file({"op": "logsumexp", "b": [1.0, 2.0, 3.0]})}),
    Row("case-b-not-finite", '`b` holding `"inf"`', CASES,
        [FILE, CASE, "field 'b'", "b must be a nested list of finite numbers"],
        {"bad.json": _case_file({"op": "logsumexp", "b": [[1.0, "inf", 3.0]]})}),
    Row("case-return-sign-without-b", "`return_sign` without `b`", CASES,
        [FILE, CASE, "field 'return_sign'", "return_sign needs b"],
        {"bad.json": _case_file({"op": "logsumexp", "return_sign": True})}),
    Row("case-scale-not-finite", '`scale` that is not a finite number (`"inf"`)', CASES,
        [FILE, CASE, "field 'scale'", "scale must be a finite number, not 'inf'"],
        {"bad.json": _case_file({"op": "softmax", "scale": "inf"})}),
    Row("case-b-on-softmax", "`b` on softmax (logsumexp only)", CASES,
        [FILE, CASE, "field 'b'", "op 'softmax' takes no option 'b'", "valid: " + ", ".join(_ops.OPS["softmax"].params)],
        {"bad.json": _case_file({"op": "softmax", "b": [[1.0, 1.0, 1.0]]})}),
    # ---------------------------------------------------------------- case files: op and labels
    Row("case-unknown-op", 'unknown op (`"op": "softmaxx"`)', CASES,
        [FILE, CASE, "field 'op'", "unknown op 'softmaxx'", f"valid: {OPS}"], {"bad.json": _case_file({"op": "softmaxx"})}),
    Row("case-op-needs-labels", "op that needs labels (`sparse_softmax_cross_entropy`), case without labels",
        CASES, [FILE, CASE, "field 'labels'", "needs sparse labels"],
        {"bad.json": _case_file({"op": "sparse_softmax_cross_entropy"})}),
    Row("case-mismatched-labels", "labels of shape [1, 2] for logits of shape [1, 3]", CASES,
        [FILE, CASE, "field 'labels'", "[1, 2]", "[1, 3]"], {"bad.json": _case_file({"labels": [[0.5, 0.5]]})}),
    Row("case-non-integer-sparse-labels", "sparse labels that are not integers (`[1.5]`)", CASES,
        [FILE, CASE, "field 'labels'", "must be integers"], {"bad.json": _case_file({"labels": [1.5]})}),
    Row("case-sparse-labels-inf", 'sparse labels holding `"inf"`', CASES,
        [FILE, CASE, "field 'labels'", "must be integers"], {"bad.json": _case_file({"labels": ["inf"]})}),
    # ---------------------------------------------------------------- case files: values
    Row("case-ragged-list", "ragged logits `[[1, 2, 3], [1, 2]]`", CASES,
        [FILE, CASE, "field 'logits'", "ragged nested list"], {"bad.json": _case_file({"logits": [[1, 2, 3], [1, 2]]})}),
    Row("case-string-infinity", 'the string `"infinity"` as a value', CASES,
        [FILE, CASE, "field 'logits'", "'infinity'", TOKENS_HINT], {"bad.json": _case_file({"logits": [[1, "infinity", 3]]})}),
    Row("case-string-1e5x", 'the string `"1e5x"` as a value', CASES,
        [FILE, CASE, "field 'logits'", "'1e5x'", TOKENS_HINT], {"bad.json": _case_file({"logits": [[1, "1e5x", 3]]})}),
    Row("case-boolean-value", "a boolean (`true`) as a value", CASES,
        [FILE, CASE, "field 'logits'", "[0][1] is True", TOKENS_HINT], {"bad.json": _case_file({"logits": [[1, True, 3]]})}),
    Row("case-null-value", "`null` as a value", CASES,
        [FILE, CASE, "field 'logits'", "[0][1] is None"], {"bad.json": _case_file({"logits": [[1, None, 3]]})}),
    Row("case-dense-labels-string", 'dense labels holding the string `"half"`', CASES,
        [FILE, CASE, "field 'labels'", "'half'"], {"bad.json": _case_file({"labels": [[0.5, "half", 0.0]]})}),
    # ---------------------------------------------------------------- case files: arrays on disk
    Row("case-npy-missing", "logits from an .npy path that does not exist", CASES,
        [FILE, CASE, "field 'logits'", "nothere.npy", "does not exist"], {"bad.json": _case_file({"logits": "nothere.npy"})}),
    Row("case-npy-pickled", ".npy holding a pickled object array (refused, never unpickled)", CASES,
        [FILE, CASE, "field 'logits'", "obj.npy", "only numeric arrays"],
        {"obj.npy": _pickled_npy, "bad.json": _case_file({"logits": "obj.npy"})}, sub=True),
    Row("case-npz-pickled", ".npz whose array is a pickled object array (refused, never unpickled)", CASES,
        [FILE, CASE, "field 'logits'", "obj.npz", "only numeric arrays"],
        {"obj.npz": _pickled_npz, "bad.json": _case_file({"logits": "obj.npz"})}),
    Row("case-npz-missing-key", '.npz without the key asked for (`{"path": "a.npz", "key": "logits"}`, file holds `x`)',
        CASES, [FILE, CASE, "field 'logits'", "a.npz", "has no array 'logits'", "valid: x"],
        {"a.npz": lambda p: np.savez(p, x=np.ones((2, 3))),
         "bad.json": _case_file({"logits": {"path": "a.npz", "key": "logits"}})},
        absent=["unpickling"]),
    Row("case-npy-strings", "non-numeric .npy (a string array, dtype `<U3`)", CASES,
        [FILE, CASE, "field 'logits'", "s.npy", "<U3", "not numbers"],
        {"s.npy": lambda p: np.save(p, np.array(["abc", "def"])), "bad.json": _case_file({"logits": "s.npy"})}),
    Row("case-npy-complex", "non-real .npy (complex128)", CASES,
        [FILE, CASE, "field 'logits'", "c.npy", "complex128", "not numbers"],
        {"c.npy": lambda p: np.save(p, np.ones((1, 3), dtype=complex)), "bad.json": _case_file({"logits": "c.npy"})}),
    Row("case-npy-garbage", "an .npy path holding bytes that are not an .npy file", CASES,
        [FILE, CASE, "field 'logits'", "g.npy", "cannot load"],
        {"g.npy": b"this is not an npy file", "bad.json": _case_file({"logits": "g.npy"})}),
    Row("case-array-object-without-path", 'array object with neither "path" nor "random"', CASES,
        [FILE, CASE, "field 'logits'", '"path"'], {"bad.json": _case_file({"logits": {"file": "x.npy"}})}),
    Row("case-unknown-random-kind", 'generator `{"random": "gauss"}`', CASES,
        [FILE, CASE, "field 'logits'", "'gauss'", "valid: normal, uniform, simplex, onehot, integers"],
        {"bad.json": _case_file({"logits": {"random": "gauss", "shape": [2, 3]}})}),
    Row("case-random-without-shape", 'generator without a shape', CASES,
        [FILE, CASE, "field 'logits'", "shape"], {"bad.json": _case_file({"logits": {"random": "normal"}})}),
    # ---------------------------------------------------------------- case files: other fields
    Row("case-axis-out-of-range", "axis 2 for 2-D logits", CASES,
        [FILE, CASE, "field 'axis'", "axis 2 is out of range", "[1, 3]"], {"bad.json": _case_file({"axis": 2})}),
    Row("case-axis-not-int", 'axis `"last"`', CASES,
        [FILE, CASE, "field 'axis'", "'last'"], {"bad.json": _case_file({"axis": "last"})}),
    Row("case-scalar-logits", "0-d logits (`5`)", CASES,
        [FILE, CASE, "field 'logits'", "at least one dimension"], {"bad.json": _case_file({"logits": 5})}),
    Row("case-empty-class-axis", "empty class axis (`[[], []]`)", CASES,
        [FILE, CASE, "field 'logits'", "class axis is empty"], {"bad.json": _case_file({"logits": [[], []]})}),
    Row("case-bad-dtype", 'unknown dtype in "dtypes" (`"float33"`)', CASES,
        [FILE, CASE, "field 'dtypes'", "'float33'", f"valid: {DTYPES}"], {"bad.json": _case_file({"dtypes": ["float33"]})}),
    Row("case-grad-not-bool", 'non-boolean grad (`"yes"`)', CASES,
        [FILE, CASE, "field 'grad'", "true or false"], {"bad.json": _case_file({"grad": "yes"})}),
    Row("case-tolerance-without-reason", 'tolerance without a reason (`{"ulp": 4}`)', CASES,
        [FILE, CASE, "field 'reason'", "written reason"], {"bad.json": _case_file({"tolerance": {"ulp": 4}})}),
    Row("case-tolerance-empty-reason", 'tolerance with an empty reason (`"reason": ""`)', CASES + ONE,
        [FILE, CASE, "field 'reason'"], {"bad.json": _case_file({"tolerance": {"ulp": 4, "reason": ""}})}),
    Row("case-tolerance-unknown-key", 'tolerance with an unknown key (`"ulpp": 4`)', CASES + ONE,
        [FILE, CASE, "field 'ulpp'", f"valid: {BUDGET_KEYS}"],
        {"bad.json": _case_file({"tolerance": {"ulpp": 4, "reason": "r"}})}),
    Row("case-tolerance-bad-ulp", 'tolerance with a non-numeric ulp (`"ulp": "x"`)', CASES + ONE,
        [FILE, CASE, "field 'ulp'"], {"bad.json": _case_file({"tolerance": {"ulp": "x", "reason": "r"}})}),
    Row("case-tags-not-list", 'tags that are not a list (`"tags": 5`)', CASES,
        [FILE, CASE, "field 'tags'"], {"bad.json": _case_file({"tags": 5})}),
    Row("case-cotangent-unknown", 'an unknown cotangent name (`"cotangent": "zeros"`)', CASES,
        [FILE, CASE, "field 'cotangent'", "unknown cotangent 'zeros'", "valid: ones, pattern, mean"],
        {"bad.json": _case_file({"cotangent": "zeros"})}),
    Row("case-cotangent-wrong-shape", 'an explicit cotangent of the wrong shape (`"cotangent": [[1, 2]]`)', CASES,
        [FILE, CASE, "field 'cotangent'", "must have the shape of softmax's output [1, 3]"],
        {"bad.json": _case_file({"cotangent": [[1.0, 2.0]]})}),
    Row("case-cotangent-not-finite", 'an explicit cotangent holding NaN (`{"values": [["nan", 1, 2]]}`)', CASES,
        [FILE, CASE, "field 'cotangent'", "must be finite"],
        {"bad.json": _case_file({"op": "softmax", "cotangent": {"values": [["nan", 1.0, 2.0]]}})}),
    Row("case-op-nested-list", 'op list holding a list (`"op": [["softmax"]]`)', CASES,
        [FILE, CASE, "field 'op'", f"valid: {OPS}"], {"bad.json": _case_file({"op": [["softmax"]]})}),
    Row("case-dtypes-nested-list", 'dtypes list holding a list (`"dtypes": [["float32"]]`)', CASES,
        [FILE, CASE, "field 'dtypes'", f"valid: {DTYPES}"], {"bad.json": _case_file({"dtypes": [["float32"]]})}),
    Row("case-integer-too-large", "an integer logit too large for float64 (400 digits)", CASES,
        [FILE, CASE, "field 'logits'"],
        {"bad.json": '{"cases": [{"id": "c1", "logits": [[1, ' + "9" * 400 + "]]}]}"}),
    Row("case-random-bad-seed", 'generator with a non-integer seed (`"seed": "x"`)', CASES,
        [FILE, CASE, "field 'logits'", "seed"],
        {"bad.json": _case_file({"logits": {"random": "normal", "shape": [2, 3], "seed": "x"}})}),
    Row("case-random-integers-without-high", 'generator `"integers"` without "high"', CASES,
        [FILE, CASE, "field 'labels'", "high"],
        {"bad.json": _case_file({"labels": {"random": "integers", "shape": [1]}})}),
    Row("case-array-path-not-string", 'array object whose path is a number (`{"path": 5}`)', CASES,
        [FILE, CASE, "field 'logits'", "path"], {"bad.json": _case_file({"logits": {"path": 5}})}),
    # ---------------------------------------------------------------- case files: shape and size (issue 21)
    Row("case-nested-too-deep-for-json", "logits nested 100,000 lists deep (deeper than the JSON parser recurses)",
        CASES, [FILE, "not valid JSON", "nested too deeply"],
        {"bad.json": '{"cases": [{"id": "c1", "logits": ' + _nested(100_000) + "}]}"}),
    Row("case-nested-too-deep", "logits nested 40 lists deep (more dimensions than a case array has)", CASES,
        [FILE, CASE, "field 'logits'", "nested deeper than 32 levels"],
        {"bad.json": '{"cases": [{"id": "c1", "logits": ' + _nested(40) + "}]}"}),
    Row("case-random-too-many-dims", 'generator with 40 dimensions (`"shape": [1, 1, ...]`)', CASES,
        [FILE, CASE, "field 'logits'", "40 dimensions", "at most 32"],
        {"bad.json": _case_file({"logits": {"random": "normal", "shape": [1] * 40}})}),
    Row("case-npy-too-large", ".npy whose header declares 2**31 float64 elements (no data behind it)", CASES,
        [FILE, CASE, "field 'logits'", "big.npy", "declares 2147483648 elements", "HARNESS_MAX_ELEMENTS"],
        {"big.npy": _npy_header((2**31,)), "bad.json": _case_file({"logits": "big.npy"})}, absent=["unpickling"]),
    Row("case-npy-int8-too-large", ".npy whose header declares 2**31 int8 elements (no data behind it)", CASES,
        [FILE, CASE, "field 'labels'", "big8.npy", "declares 2147483648 elements", "HARNESS_MAX_ELEMENTS"],
        {"big8.npy": _npy_header((2**31,), "|i1"), "bad.json": _case_file({"labels": "big8.npy"})},
        absent=["unpickling"]),
    Row("case-npy-truncated", ".npy whose header declares 1000 float64 elements, with 16 bytes of data", CASES,
        [FILE, CASE, "field 'logits'", "short.npy", "truncated: header declares 8000 bytes, file holds 16"],
        {"short.npy": _npy_header((1, 1000), body=bytes(16)), "bad.json": _case_file({"logits": "short.npy"})},
        absent=["unpickling"]),
    Row("case-npz-too-large", ".npz whose member's header declares 2**31 float64 elements", CASES,
        [FILE, CASE, "field 'logits'", "big.npz", "declares 2147483648 elements", "HARNESS_MAX_ELEMENTS"],
        {"big.npz": _npz_header("logits", (2**31,)), "bad.json": _case_file({"logits": "big.npz"})},
        absent=["unpickling"]),
    Row("case-random-too-large", 'generator of 2**32 elements (`"shape": [65536, 65536]`)', CASES,
        [FILE, CASE, "field 'logits'", "4294967296 elements", "HARNESS_MAX_ELEMENTS"],
        {"bad.json": _case_file({"logits": {"random": "normal", "shape": [65536, 65536]}})}),
    Row("case-list-too-large", "nested list of 6 numbers with `HARNESS_MAX_ELEMENTS=4`", CASES,
        [FILE, CASE, "field 'logits'", "6 elements", "HARNESS_MAX_ELEMENTS"],
        {"bad.json": _case_file({"logits": [[1, 2, 3], [4, 5, 6]]})}, env={"HARNESS_MAX_ELEMENTS": "4"}),
    Row("env-max-elements-invalid", "`HARNESS_MAX_ELEMENTS=lots`", CASES,
        ["HARNESS_MAX_ELEMENTS", "'lots'", "positive integer"],
        {"bad.json": _case_file()}, env={"HARNESS_MAX_ELEMENTS": "lots"}),
    # ---------------------------------------------------------------- case files: labels and axis (issue 21)
    Row("case-sparse-labels-too-large", "sparse labels beyond int64 (`[1e20]`)", CASES,
        [FILE, CASE, "field 'labels'", "must be integers", "1e+20"], {"bad.json": _case_file({"labels": [1e20]})}),
    Row("case-sparse-labels-token", 'sparse labels holding the token `"max"`', CASES,
        [FILE, CASE, "field 'labels'", "must be integers", "'max'"], {"bad.json": _case_file({"labels": ["max"]})}),
    Row("case-sparse-labels-uint64", "sparse labels from a uint64 .npy holding 2**64 - 1", CASES,
        [FILE, CASE, "field 'labels'", "must be integers", "18446744073709551615"],
        {"u.npy": lambda p: np.save(p, np.array([2**64 - 1], dtype=np.uint64)),
         "bad.json": _case_file({"labels": "u.npy"})}),
    Row("case-axis-float", "axis `1.0`", CASES,
        [FILE, CASE, "field 'axis'", "axis 1.0 is not an integer"], {"bad.json": _case_file({"axis": 1.0})}),
    Row("case-axis-bool", "axis `true`", CASES,
        [FILE, CASE, "field 'axis'", "axis True is not an integer"], {"bad.json": _case_file({"axis": True})}),
    Row("case-tolerance-ulp-nan", 'tolerance with `"ulp": NaN`', CASES,
        [FILE, CASE, "field 'ulp'", "finite non-negative number"],
        {"bad.json": '{"cases": [{"id": "c1", "logits": [[1, 2, 3]], "tolerance": {"ulp": NaN, "reason": "r"}}]}'}),
    # ---------------------------------------------------------------- files that are not regular files (issue 21)
    Row("cases-fifo", "`--cases` naming a named pipe (FIFO)", ["--cases", "{tmp}/fifo.json"],
        ["{tmp}/fifo.json", "field 'cases'", "not a regular file", "named pipe"],
        {"fifo.json": os.mkfifo}, sub=True),
    Row("cases-dev-zero", "`--cases /dev/zero`", ["--cases", "/dev/zero"],
        ["/dev/zero", "field 'cases'", "not a regular file", "character device"]),
    Row("cases-directory-with-fifo", "`--cases` naming a directory that holds a named pipe `x.json`",
        ["--cases", "{tmp}/cdir"], ["{tmp}/cdir/x.json", "not a regular file"],
        {"cdir": lambda p: (p.mkdir(), os.mkfifo(p / "x.json"))}, sub=True),
    Row("case-npy-fifo", "logits from an .npy path that is a named pipe", CASES,
        [FILE, CASE, "field 'logits'", "p.npy", "not a regular file"],
        {"p.npy": os.mkfifo, "bad.json": _case_file({"logits": "p.npy"})}),
    Row("cases-missing-file", "`--cases` naming a file that does not exist", ["--cases", "{tmp}/nope.json"],
        ["{tmp}/nope.json", "no such case file"]),
    Row("cases-empty-directory", "`--cases` naming a directory with no .json/.toml file", ["--cases", "{tmp}/emptydir"],
        ["{tmp}/emptydir"], {"emptydir": lambda p: p.mkdir()}),
    # ---------------------------------------------------------------- CLI flags
    Row("flag-unknown-framework", "`--framework nope`", ["--framework", "nope"],
        ["field 'framework'", "unknown framework 'nope'", "valid: ", "numpy", "torch", "jax", "tensorflow"], sub=True),
    Row("flag-unknown-device", "`--device tpu`", ["--device", "tpu"],
        ["field 'device'", "unknown device 'tpu'", "valid: cpu, gpu"]),
    Row("flag-unknown-dtype", "`--dtype float32,float33`", ["--dtype", "float32,float33"],
        ["field 'dtype'", "unknown dtype 'float33'", f"valid: {DTYPES}"]),
    Row("flag-unknown-mode", "`--mode graph`", ["--mode", "graph"],
        ["field 'mode'", "unknown mode 'graph'", "valid: eager, jit, jit_static"]),
    Row("flag-unknown-op", "`--op softmaxx`", ["--op", "softmaxx"],
        ["field 'op'", "unknown op 'softmaxx'", f"valid: {OPS}"]),
    Row("flag-unknown-check", "`--check backward`", ["--check", "backward"],
        ["field 'check'", "unknown check 'backward'", "valid: " + ", ".join(_vocab.CHECKS)]),
    Row("flag-unknown-policy", "`--policy lenient` (no such built-in, no such file)", ["--policy", "lenient"],
        ["field 'policy'", "'lenient'", "valid: standard, strict"]),
    Row("flag-timeout-not-a-number", "`--timeout abc`", ["--timeout", "abc"],
        ["--timeout", "invalid float value: 'abc'"], sub=True),
    Row("flag-timeout-zero", "`--timeout 0`", ["--timeout", "0"], ["field 'timeout'", "positive number of seconds"]),
    Row("flag-timeout-nan", "`--timeout nan`", ["--timeout", "nan", *ONE], ["field 'timeout'"]),
    Row("flag-timing-reps-negative", "`--timing-reps -1`", ["--timing-reps", "-1"], ["field 'timing-reps'", ">= 0"]),
    Row("flag-baseline-missing", "`--baseline` naming a file that does not exist", ["--baseline", "{tmp}/nobase.jsonl"],
        ["{tmp}/nobase.jsonl", "field 'baseline'", "no such baseline file"], sub=True),
    Row("flag-known-missing", "`--known` naming a file that does not exist", ["--known", "{tmp}/noknown.toml"],
        ["{tmp}/noknown.toml", "no such known-discrepancies file"]),
    Row("flag-results-is-directory", "`--results` naming a directory", ["--results", "{tmp}/rdir", *ONE],
        ["{tmp}/rdir", "field 'results'"], {"rdir": lambda p: p.mkdir()}),
    Row("flag-cache-dir-is-a-file", "`--cache-dir` naming a regular file", ["--cache-dir", "{tmp}/afile"],
        ["{tmp}/afile", "field 'cache-dir'", "cannot be used as the reference cache"], {"afile": "x"}),
    Row("env-extra-adapters-missing-module", "`HARNESS_EXTRA_ADAPTERS=x=nosuch.mod:Cls` (no such module)",
        ["--framework", "x"], ["HARNESS_EXTRA_ADAPTERS", "'x=nosuch.mod:Cls'", "No module named 'nosuch'",
                               "valid: name=module:Class"], env={"HARNESS_EXTRA_ADAPTERS": "x=nosuch.mod:Cls"}),
    Row("env-extra-adapters-missing-class", "`HARNESS_EXTRA_ADAPTERS=x=harness.adapters.numpy:Nope` (no such class)",
        ["--framework", "x"], ["HARNESS_EXTRA_ADAPTERS", "'x=harness.adapters.numpy:Nope'", "has no attribute 'Nope'"],
        env={"HARNESS_EXTRA_ADAPTERS": "x=harness.adapters.numpy:Nope"}),
    Row("env-extra-adapters-no-colon", "`HARNESS_EXTRA_ADAPTERS=x=nosuch` (no `:Class`)", ["--framework", "x"],
        ["HARNESS_EXTRA_ADAPTERS", "'x=nosuch'", "valid: name=module:Class"],
        env={"HARNESS_EXTRA_ADAPTERS": "x=nosuch"}, sub=True),
    Row("env-extra-adapters-no-equals", "`HARNESS_EXTRA_ADAPTERS=nosuch` (no `name=`)", [],
        ["HARNESS_EXTRA_ADAPTERS", "'nosuch'", "valid: name=module:Class"], env={"HARNESS_EXTRA_ADAPTERS": "nosuch"}),
    Row("flag-baseline-directory", "`--baseline` naming a directory", ["--baseline", "{tmp}/bdir"],
        ["{tmp}/bdir", "field 'baseline'", "not a regular file"], {"bdir": lambda p: p.mkdir()}),
    Row("flag-baseline-garbage", "`--baseline` naming a file that is not JSON Lines", ["--baseline", "{tmp}/g.jsonl"],
        ["{tmp}/g.jsonl", "field 'baseline'", "holds no result record", "malformed line"],
        {"g.jsonl": "hello\nworld\n"}),
    Row("flag-baseline-empty", "`--baseline` naming an empty file", ["--baseline", "{tmp}/e.jsonl"],
        ["{tmp}/e.jsonl", "field 'baseline'", "holds no result record"], {"e.jsonl": ""}),
    Row("flag-baseline-key-not-string", '`--baseline` whose one record has `"case_id": {"a": 1}`',
        ["--baseline", "{tmp}/bk.jsonl"],
        ["{tmp}/bk.jsonl", "field 'baseline'", "holds no result record", "field 'case_id' is not a string"],
        {"bk.jsonl": _result(case_id={"a": 1})}),
    Row("flag-baseline-fifo", "`--baseline` naming a named pipe", ["--baseline", "{tmp}/b.jsonl"],
        ["{tmp}/b.jsonl", "field 'baseline'", "not a regular file"], {"b.jsonl": os.mkfifo}, sub=True),
    # ---------------------------------------------------------------- policy and known files
    Row("policy-unknown-top-key", "policy file with an unknown top-level key (`budgets = 1`)",
        ["--policy", "{tmp}/p.toml"], ["{tmp}/p.toml", "field 'budgets'", f"valid: {POLICY_KEYS}"],
        {"p.toml": 'name = "p"\nbudgets = 1\n[[budget]]\nulp = 1.0\nreason = "r"\n'}, sub=True),
    Row("policy-budget-unknown-key", "policy budget with an unknown key (`ulps`)", ["--policy", "{tmp}/p.toml"],
        ["{tmp}/p.toml", "field 'ulps'", f"valid: {BUDGET_KEYS}"],
        {"p.toml": 'name = "p"\n[[budget]]\nulps = 1.0\nreason = "r"\n'}),
    Row("policy-budget-without-reason", "policy budget without a reason", ["--policy", "{tmp}/p.toml"],
        ["{tmp}/p.toml", "field 'reason'", "written reason"], {"p.toml": 'name = "p"\n[[budget]]\nulp = 1.0\n'}),
    Row("policy-budget-bad-summation", 'policy budget with `summation = "cubic"`', ["--policy", "{tmp}/p.toml"],
        ["{tmp}/p.toml", "field 'summation'", "valid: log2, sqrt, linear"],
        {"p.toml": 'name = "p"\n[[budget]]\nulp = 1.0\nsummation = "cubic"\nreason = "r"\n'}),
    Row("policy-budget-bad-accumulate", 'policy budget with `accumulate = "float128"`', ["--policy", "{tmp}/p.toml"],
        ["{tmp}/p.toml", "field 'accumulate'", "'float128'", "valid: float16, bfloat16, float32, float64"],
        {"p.toml": 'name = "p"\n[[budget]]\nulp = 1.0\naccumulate = "float128"\nreason = "r"\n'}),
    Row("policy-no-budget", "policy file without any [[budget]]", ["--policy", "{tmp}/p.toml"],
        ["{tmp}/p.toml", "field 'budget'"], {"p.toml": 'name = "p"\n'}),
    Row("policy-malformed-toml", "policy file that is not valid TOML", ["--policy", "{tmp}/p.toml"],
        ["{tmp}/p.toml", "not valid TOML"], {"p.toml": 'name = "p\n'}),
    Row("policy-budget-unknown-dtype", 'policy budget filtering on an unknown dtype (`dtype = "float33"`)',
        ["--policy", "{tmp}/p.toml", "--cases", "{tmp}/good.json", *ONE],
        ["{tmp}/p.toml", "field 'dtype'", "'float33'", f"valid: {DTYPES}"],
        {"p.toml": 'name = "p"\n[[budget]]\ndtype = "float33"\nulp = 1.0\nreason = "r"\n'}),
    Row("policy-is-directory", "`--policy` naming a directory called `d.toml`", ["--policy", "{tmp}/d.toml"],
        ["{tmp}/d.toml", "policy"], {"d.toml": lambda p: p.mkdir()}),
    Row("known-unknown-key", "known-discrepancies file with an unknown key (`opz`)", ["--known", "{tmp}/k.toml"],
        ["{tmp}/k.toml", "field 'opz'", "valid: cases, checks"],
        {"k.toml": '[[known]]\nid = "a"\ndescription = "d"\nframework = "numpy"\nopz = ["softmax"]\n'}),
    Row("known-unknown-framework", 'known-discrepancies entry for an unknown framework (`"nump"`)',
        ["--known", "{tmp}/k.toml", *ONE], ["{tmp}/k.toml", "field 'framework'", "'nump'", "valid: "],
        {"k.toml": '[[known]]\nid = "a"\ndescription = "d"\nframework = "nump"\n'}),
    Row("policy-ulp-nan", "policy budget with `ulp = nan`", ["--policy", "{tmp}/p.toml"],
        ["{tmp}/p.toml", "field 'ulp'", "finite non-negative number", "nan"],
        {"p.toml": 'name = "p"\n[[budget]]\nulp = nan\nreason = "r"\n'}),
    Row("policy-cond-inf", "policy budget with `cond = inf`", ["--policy", "{tmp}/p.toml"],
        ["{tmp}/p.toml", "field 'cond'", "finite non-negative number", "inf"],
        {"p.toml": 'name = "p"\n[[budget]]\ncond = inf\nreason = "r"\n'}),
    Row("policy-ulp-bool", "policy budget with `ulp = true`", ["--policy", "{tmp}/p.toml"],
        ["{tmp}/p.toml", "field 'ulp'", "finite non-negative number"],
        {"p.toml": 'name = "p"\n[[budget]]\nulp = true\nreason = "r"\n'}),
    Row("policy-fifo", "`--policy` naming a named pipe `p.toml`", ["--policy", "{tmp}/p.toml"],
        ["{tmp}/p.toml", "field 'policy'", "not a regular file"], {"p.toml": os.mkfifo}, sub=True),
    Row("known-not-a-list", "known-discrepancies file holding `known = 5`", ["--known", "{tmp}/k.toml"],
        ["{tmp}/k.toml", "field 'known'", "a list of [[known]] tables"], {"k.toml": "known = 5\n"}),
    Row("known-entry-not-table", 'known-discrepancies file holding `known = ["x"]`', ["--known", "{tmp}/k.toml"],
        ["{tmp}/k.toml", "field 'known'", "known[0] is not a table"], {"k.toml": 'known = ["x"]\n'}),
    Row("known-field-wrong-type", "known-discrepancies entry with `ops = 5`", ["--known", "{tmp}/k.toml"],
        ["{tmp}/k.toml", "field 'ops'", "a string or a list of strings"],
        {"k.toml": '[[known]]\nid = "a"\ndescription = "d"\nframework = "numpy"\nops = 5\n'}),
    Row("known-description-not-string", "known-discrepancies entry with `description = 5`", ["--known", "{tmp}/k.toml"],
        ["{tmp}/k.toml", "field 'description'", "must be a string"],
        {"k.toml": '[[known]]\nid = "a"\ndescription = 5\nframework = "numpy"\n'}),
    Row("known-unknown-top-key", "known-discrepancies file with a misspelt table (`[[knwon]]`)", ["--known", "{tmp}/k.toml"],
        ["{tmp}/k.toml", "field 'knwon'", "valid: known"],
        {"k.toml": '[[knwon]]\nid = "a"\ndescription = "d"\nframework = "numpy"\n'}),
    Row("known-directory", "`--known` naming a directory", ["--known", "{tmp}/kdir"],
        ["{tmp}/kdir", "field 'known'", "not a regular file"], {"kdir": lambda p: p.mkdir()}),
    Row("known-fifo", "`--known` naming a named pipe", ["--known", "{tmp}/k.toml"],
        ["{tmp}/k.toml", "field 'known'", "not a regular file"], {"k.toml": os.mkfifo}, sub=True),
    # ---------------------------------------------------------------- report and diff
    Row("report-missing-results", "`report` of a results file that does not exist",
        ["{tmp}/nores.jsonl", "-o", "{tmp}/index.html"], ["{tmp}/nores.jsonl", "field 'results'", "no such results file"],
        {"index.html": "<p>an earlier report</p>"}, command="report", sub=True),
    Row("diff-missing-file", "`diff` with a new results file that does not exist",
        ["{tmp}/old.jsonl", "{tmp}/nores.jsonl"], ["{tmp}/nores.jsonl", "field 'new'", "no such results file"],
        {"old.jsonl": ""}, command="diff", sub=True),
    Row("report-compare-missing", "`report --compare` naming a file that does not exist",
        ["{tmp}/old.jsonl", "--compare", "{tmp}/nores.jsonl", "-o", "{tmp}/index.html"],
        ["{tmp}/nores.jsonl", "field 'compare'", "no such results file"],
        {"old.jsonl": "", "index.html": "<p>an earlier report</p>"}, command="report"),
    Row("diff-key-not-string", '`diff` whose new file\'s one record has `"framework": ["numpy"]`',
        ["{tmp}/old.jsonl", "{tmp}/new.jsonl"],
        ["{tmp}/new.jsonl", "holds no result record", "field 'framework' is not a string"],
        {"old.jsonl": _result(), "new.jsonl": _result(framework=["numpy"])}, command="diff"),
    Row("baseline-key-not-string", '`baseline` of a file whose one record has `"case_id": {"a": 1}`',
        ["{tmp}/bk.jsonl", "-o", "{tmp}/out.jsonl"], ["{tmp}/bk.jsonl", "holds no result record"],
        {"bk.jsonl": _result(case_id={"a": 1}), "out.jsonl": "an earlier baseline\n"}, command="baseline"),
    Row("repro-sample-not-positive", "`repro --sample 0`", ["{tmp}/old.jsonl", "--sample", "0"],
        ["field '--sample'", "must be a positive number of results"], {"old.jsonl": ""}, command="repro"),
    Row("repro-missing-results", "`repro` of a results file that does not exist", ["{tmp}/nores.jsonl"],
        ["{tmp}/nores.jsonl", "field 'results'", "no such results file"], command="repro"),
    Row("repro-not-results", "`repro` of a file that holds no results record (a case file: it replayed 0 and passed)",
        ["{tmp}/c.json"], ["{tmp}/c.json", "field 'results'", "holds no results records", "malformed line"],
        {"c.json": '{"cases": [\n{"id": "c1", "logits": [[1, 2]]}]}\n'}, command="repro"),
    Row("repro-empty-file", "`repro` of an empty file", ["{tmp}/e.jsonl"],
        ["{tmp}/e.jsonl", "field 'results'", "holds no results records", "the file is empty"], {"e.jsonl": ""},
        command="repro"),
    Row("repro-empty-path", "`repro ''` (an empty path, not the working directory)", [""],
        ["field 'results'", "no such results file"], command="repro"),
    Row("report-empty-path", "`report ''` (an empty path: it rendered a report of nothing)",
        ["", "-o", "{tmp}/index.html"], ["field 'results'", "no such results file"],
        {"index.html": "<p>an earlier report</p>"}, command="report"),
    # ---------------------------------------------------------------- outputs: checked before the run (issue 21)
    Row("report-is-results", "`--report` the same file as `--results` (the HTML would overwrite the results)",
        ["--report", "{tmp}/results.jsonl", *ONE], ["{tmp}/results.jsonl", "field 'report'", "is also the results output"]),
    Row("results-is-case-file", "`--results` the case file the run reads (`--cases good.json --results good.json`)",
        ["--cases", "{tmp}/good.json", "--results", "{tmp}/good.json"],
        ["{tmp}/good.json", "field 'results'", "is also the cases file this run reads"], {"good.json": GOOD}),
    Row("results-is-builtin-case-file", "`--results cases/seed.json` (a file of the built-in library)",
        ["--results", str(ROOT / "cases" / "seed.json"), *ONE],
        [str(ROOT / "cases" / "seed.json"), "field 'results'", "is also the cases file"]),
    Row("results-is-known-file", "`--results` the `--known` file the run reads", ["--known", "{tmp}/k.toml",
        "--results", "{tmp}/k.toml", *ONE], ["{tmp}/k.toml", "field 'results'", "is also the known file"],
        {"k.toml": '[[known]]\nid = "a"\ndescription = "d"\nframework = "numpy"\n'}),
    Row("results-under-a-file", "`--results` under a path whose parent is a file", ["--results", "{tmp}/f.txt/r.jsonl", *ONE],
        ["{tmp}/f.txt/r.jsonl", "field 'results'", "is a file, not a directory"], {"f.txt": "a file"}),
    Row("results-on-proc", "`--results` on /proc (a directory nothing can be created in)",
        ["--results", "/proc/harness-results.jsonl", *ONE],
        ["/proc/harness-results.jsonl", "field 'results'", "cannot be written"]),
    Row("report-on-proc", "`--report` on /proc: refused before the run, not after it",
        ["--report", "/proc/harness-index.html", *ONE], ["/proc/harness-index.html", "field 'report'", "cannot be written"]),
    Row("results-fifo", "`--results` naming a named pipe (writing would block)", ["--results", "{tmp}/r.fifo", *ONE],
        ["{tmp}/r.fifo", "field 'results'", "not a regular file"], {"r.fifo": os.mkfifo}, sub=True),
    Row("report-output-is-input", "`report R.jsonl -o R.jsonl` (the page over the results it renders)",
        ["{tmp}/old.jsonl", "-o", "{tmp}/old.jsonl"], ["{tmp}/old.jsonl", "field 'output'", "is also the results file"],
        {"old.jsonl": _result()}, command="report"),
    Row("baseline-output-is-input", "`baseline R.jsonl -o R.jsonl`", ["{tmp}/old.jsonl", "-o", "{tmp}/old.jsonl"],
        ["{tmp}/old.jsonl", "field 'output'", "is also the results file"], {"old.jsonl": _result()},
        command="baseline"),
    # ---------------------------------------------------------------- search
    Row("search-unknown-objective", "`search --objective worst`", [*SEARCH, *NUMPY, "--objective", "worst", *OUT],
        ["field 'objective'", "'worst'", "valid: utilisation, ulp, differential"], FOUND, command="search", sub=True),
    Row("search-no-framework", "`search` with neither `--framework` nor `--frameworks`", [*SEARCH, *OUT],
        ["field 'framework'", "--framework", "--frameworks", f"valid: {FRAMEWORKS}"], FOUND, command="search"),
    Row("search-framework-and-frameworks", "`search --framework numpy --frameworks torch` (both)",
        [*SEARCH, *NUMPY, "--frameworks", "torch", *OUT],
        ["field 'framework'", "--framework", "--frameworks", f"valid: {FRAMEWORKS}"], FOUND, command="search"),
    Row("search-unknown-framework-in-list", "`search --frameworks torch,tensorflw`",
        [*SEARCH, "--frameworks", "torch,tensorflw", *OUT],
        ["field 'framework'", "'tensorflw'", f"valid: {FRAMEWORKS}"], FOUND, command="search"),
    Row("search-unknown-framework", "`search --framework nump`", [*SEARCH, "--framework", "nump", *OUT],
        ["field 'framework'", "'nump'", f"valid: {FRAMEWORKS}"], FOUND, command="search"),
    Row("search-frameworks-empty", "`search --frameworks ,` (a list that names no framework)",
        [*SEARCH, "--frameworks", ",", *OUT], ["field 'frameworks'", f"valid: {FRAMEWORKS}"], FOUND,
        command="search"),
    Row("search-near-unknown-case", "`search --cases good.json --near good/nosuch` (no such case)",
        [*SEARCH, *NUMPY, "--cases", "{tmp}/good.json", "--near", "good/nosuch", *OUT],
        ["field 'near'", "'good/nosuch'", "valid: good/ok"], FOUND, command="search"),
    Row("search-near-op-not-run", "`search --op softmax --near bad/c1`, a case whose op is `logsumexp`",
        [*SEARCH, *NUMPY, *CASES, "--near", "bad/c1", *OUT],
        [CASE, "field 'near'", "does not run op 'softmax'", "logsumexp"],
        {"bad.json": _case_file({"op": "logsumexp"}), **FOUND}, command="search"),
    Row("search-near-classes-not-last", "`search --near bad/c1`, a case of shape [1, 1, 3] with the classes on axis 0",
        [*SEARCH, *NUMPY, *CASES, "--near", "bad/c1", *OUT], [CASE, "field 'near'", "classes on axis 0"],
        {"bad.json": _case_file({"op": "softmax", "axis": 0, "logits": [[[1.0, 2.0, 3.0]]]}), **FOUND},
        command="search"),
    Row("search-near-cases-missing", "`search --cases nope.json --near nope/c1` (no such case file)",
        [*SEARCH, *NUMPY, "--cases", "{tmp}/nope.json", "--near", "nope/c1", *OUT],
        ["{tmp}/nope.json", "no such case file"], FOUND, command="search"),
    Row("search-near-cases-malformed", "`search --cases bad.json --near bad/c1`, a case file that is not valid JSON",
        [*SEARCH, *NUMPY, *CASES, "--near", "bad/c1", *OUT], [FILE, "not valid JSON"],
        {"bad.json": '{"cases": [ {"id": "c1",', **FOUND}, command="search"),
    Row("search-cases-without-near", "`search --cases nope.json` without `--near` (no such case file)",
        [*SEARCH, *NUMPY, "--cases", "{tmp}/nope.json", *OUT], ["{tmp}/nope.json", "no such case file"], FOUND,
        command="search"),
    Row("search-classes-zero", "`search --classes 0`", [*SEARCH, *NUMPY, "--classes", "0", *OUT],
        ["field 'classes'", "not 0"], FOUND, command="search"),
    Row("search-classes-too-large", "`search --classes 4611686018427387904` (2**62: no array that large can exist)",
        [*SEARCH, *NUMPY, "--budget", "3", "--classes", "4611686018427387904", *OUT],
        ["field 'classes'", "4611686018427387904"], FOUND, command="search"),
    Row("search-max-classes-zero", "`search --max-classes 0`", [*SEARCH, *NUMPY, "--max-classes", "0", *OUT],
        ["field 'max-classes'", "not 0"], FOUND, command="search"),
    Row("search-budget-one", "`search --budget 1`", [*SEARCH, *NUMPY, "--budget", "1", *OUT],
        ["field 'budget'", "not 1"], FOUND, command="search"),
    Row("search-shrink-budget-negative", "`search --shrink-budget -1`",
        [*SEARCH, *NUMPY, "--shrink-budget", "-1", *OUT], ["field 'shrink-budget'", "not -1"], FOUND, command="search"),
    Row("search-seed-negative", "`search --seed -1`", [*SEARCH, *NUMPY, "--seed", "-1", *OUT],
        ["field 'seed'", "not -1"], FOUND, command="search"),
    Row("search-output-is-directory", "`search -o outdir`, a directory", [*SEARCH, *NUMPY, "-o", "{tmp}/outdir"],
        ["{tmp}/outdir", "field 'output'", "is a directory"], {"outdir": lambda p: p.mkdir()}, command="search"),
    Row("search-output-is-case-file", "`search --cases good.json --near good/ok -o good.json` (output = input)",
        [*SEARCH, *NUMPY, "--cases", "{tmp}/good.json", "--near", "good/ok", "-o", "{tmp}/good.json"],
        ["{tmp}/good.json", "field 'output'", "is also the cases file"], command="search"),
    Row("search-output-in-cases-directory",
        "`search --cases cdir -o cdir/fam.json` (a case file of the directory read; `--near nosuch/case` stops a "
        "search that gets past the check before it writes)",
        [*SEARCH, *NUMPY, "--cases", "{tmp}/cdir", "--near", "nosuch/case", "-o", "{tmp}/cdir/fam.json"],
        ["{tmp}/cdir/fam.json", "field 'output'", "is also the cases file"],
        {"cdir": lambda p: (p.mkdir(), (p / "fam.json").write_text(_case_file({"op": "softmax"})))},
        command="search"),
    Row("search-output-is-builtin-case-file",
        "`search -o cases/seed.json` (a file of the built-in library, which `--near` reads; `--near nosuch/case` "
        "stops a search that gets past the check before it writes)",
        [*SEARCH, *NUMPY, "--near", "nosuch/case", "-o", str(ROOT / "cases" / "seed.json")],
        [str(ROOT / "cases" / "seed.json"), "field 'output'", "is also the cases file"], command="search"),
    Row("search-output-is-policy-file",
        "`search --policy p.toml -o p.toml` (`--near nosuch/case` stops a search that gets past the check before "
        "it writes)",
        [*SEARCH, *NUMPY, "--policy", "{tmp}/p.toml", "--near", "nosuch/case", "-o", "{tmp}/p.toml"],
        ["{tmp}/p.toml", "field 'output'", "is also the policy file"], {"p.toml": POLICY}, command="search"),
    Row("search-output-on-proc", "`search -o` on /proc (a directory nothing can be created in)",
        [*SEARCH, *NUMPY, "-o", "/proc/harness-search.json"],
        ["/proc/harness-search.json", "field 'output'", "cannot be written"], command="search"),
    Row("search-unknown-policy", "`search --policy lenient` (no such built-in, no such file)",
        [*SEARCH, *NUMPY, "--policy", "lenient", *OUT], ["field 'policy'", "'lenient'", "valid: standard, strict"],
        FOUND, command="search"),
    # ---------------------------------------------------------------- --shard K/N
    Row("shard-beyond-count", "`--shard 3/2` (a part beyond the count)", [*ONE, "--shard", "3/2"],
        ["field 'shard'", "'3/2'", "between 1 and N"]),
    Row("shard-malformed", "`--shard half`", [*ONE, "--shard", "half"], ["field 'shard'", "'half'", "is not K/N"]),
    Row("shard-durations-missing", "`--shard 1/2 --shard-durations nope.jsonl` (no such file)",
        [*ONE, "--shard", "1/2", "--shard-durations", "{tmp}/nope.jsonl"],
        ["{tmp}/nope.jsonl", "field 'shard-durations'", "no such results file"]),
    Row("shard-durations-not-results", "`--shard 1/2 --shard-durations` of a file of no results records (ignored before)",
        [*ONE, "--shard", "1/2", "--shard-durations", "{tmp}/g.jsonl"],
        ["{tmp}/g.jsonl", "field 'shard-durations'", "holds no results records"], {"g.jsonl": "this is not json\n"}),
    Row("shard-durations-without-shard", "`--shard-durations r.jsonl` without `--shard`",
        [*ONE, "--shard-durations", "{tmp}/r.jsonl"], ["field 'shard-durations'", "give --shard too"],
        {"r.jsonl": '{"kind": "run_start", "run_id": "r"}\n'}),
    # ---------------------------------------------------------------- invariance checks (eaabc35)
    Row("case-invariance-string", '`"invariance": "yes"` (neither a boolean nor a list)', CASES,
        [FILE, CASE, "field 'invariance'", "not 'yes'", f"valid: {INVARIANCE}"],
        {"bad.json": _case_file({"invariance": "yes"})}, sub=True),
    Row("case-invariance-number", '`"invariance": 1` (a number, not true)', CASES,
        [FILE, CASE, "field 'invariance'", "not 1", f"valid: {INVARIANCE}"],
        {"bad.json": _case_file({"invariance": 1})}),
    Row("case-invariance-unknown-name", '`"invariance": ["batch"]` (not the name of an invariance check)', CASES,
        [FILE, CASE, "field 'invariance'", "not ['batch']", f"valid: {INVARIANCE}"],
        {"bad.json": _case_file({"invariance": ["batch"]})}),
    Row("case-invariance-value-check", '`"invariance": ["forward"]` (a check, but not an invariance check)', CASES,
        [FILE, CASE, "field 'invariance'", "not ['forward']", f"valid: {INVARIANCE}"],
        {"bad.json": _case_file({"invariance": ["forward"]})}),
    Row("case-invariance-object", '`"invariance": {}` (an object)', CASES,
        [FILE, CASE, "field 'invariance'", "not {}", f"valid: {INVARIANCE}"],
        {"bad.json": _case_file({"invariance": {}})}),
    Row("case-invariance-null", '`"invariance": null`', CASES,
        [FILE, CASE, "field 'invariance'", "not None", f"valid: {INVARIANCE}"],
        {"bad.json": _case_file({"invariance": None})}),
    Row("case-tolerance-invariance-check", 'tolerance filtering on an invariance check (`"check": "determinism"`)',
        CASES, [FILE, CASE, "field 'check'", "'determinism'", "judged by the forward budget", f"valid: {VALUE_CHECKS}"],
        {"bad.json": _case_file({"invariance": True, "tolerance": {"check": "determinism", "ulp": 4, "reason": "r"}})}),
    Row("policy-invariance-unknown-rule", 'policy `[invariance]` with `rule = "exact"`', ["--policy", "{tmp}/p.toml"],
        ["{tmp}/p.toml", "field 'rule'", "'exact'", f"valid: {RULES}"],
        {"p.toml": POLICY + '[invariance]\nrule = "exact"\nreason = "r"\n'}, sub=True),
    Row("policy-invariance-rule-missing", "policy `[invariance]` without a rule", ["--policy", "{tmp}/p.toml"],
        ["{tmp}/p.toml", "field 'rule'", f"valid: {RULES}"], {"p.toml": POLICY + '[invariance]\nreason = "r"\n'}),
    Row("policy-invariance-reason-missing", "policy `[invariance]` without a reason", ["--policy", "{tmp}/p.toml"],
        ["{tmp}/p.toml", "field 'reason'", "written reason"], {"p.toml": POLICY + '[invariance]\nrule = "bitwise"\n'}),
    Row("policy-invariance-reason-blank", 'policy `[invariance]` with a blank reason (`reason = "  "`)',
        ["--policy", "{tmp}/p.toml"], ["{tmp}/p.toml", "field 'reason'", "written reason"],
        {"p.toml": POLICY + '[invariance]\nrule = "bitwise"\nreason = "  "\n'}),
    Row("policy-invariance-unknown-key", "policy `[invariance]` with an unknown key (`rules`)",
        ["--policy", "{tmp}/p.toml"], ["{tmp}/p.toml", "field 'rules'", f"valid: {INVARIANCE_KEYS}"],
        {"p.toml": POLICY + '[invariance]\nrule = "bitwise"\nrules = "budget"\nreason = "r"\n'}),
    Row("policy-invariance-not-table", "policy holding `invariance = 3` (not a table)", ["--policy", "{tmp}/p.toml"],
        ["{tmp}/p.toml", "field 'invariance'", "not 3", f"valid: {INVARIANCE_KEYS}"],
        {"p.toml": 'name = "p"\ninvariance = 3\n[[budget]]\nulp = 1.0\nreason = "r"\n'}),
    Row("policy-budget-invariance-check", 'policy budget filtering on an invariance check (`check = "permutation"`)',
        ["--policy", "{tmp}/p.toml"],
        ["{tmp}/p.toml", "field 'check'", "'permutation'", "judged by the forward budget", f"valid: {VALUE_CHECKS}"],
        {"p.toml": 'name = "p"\n[[budget]]\ncheck = "permutation"\nulp = 1.0\nreason = "r"\n'}),
    Row("search-check-invariance", "`search --check permutation` (an invariance check: nothing to search for)",
        [*SEARCH, *NUMPY, "--check", "permutation", *OUT], ["field 'check'", "'permutation'", f"valid: {VALUE_CHECKS}"],
        FOUND, command="search", sub=True),
]


def _env(tmp: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["HARNESS_CACHE_DIR"] = str(tmp / "cache")
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    return env


def _argv(row: Row, tmp: Path) -> list[str]:
    args = [a.replace("{tmp}", str(tmp)) for a in row.args]
    if row.command != "run":
        return [row.command, *args]
    # Fast and contained: the numpy adapter in this process, eager only, the tmp results file,
    # a one-case file unless the row names its own cases.
    base = ["run"]
    if "--framework" not in args:
        base += ["--framework", "numpy"]
    if "--mode" not in args:
        base += ["--mode", "eager"]
    if "--cases" not in args:
        base += ["--cases", str(tmp / "good.json")]
    if "--results" not in args:
        base += ["--results", str(tmp / "results.jsonl")]
    return [*base, *args, "--no-isolate", "-q"]


def run_cli(argv: list[str], tmp: Path, sub: bool, monkeypatch: pytest.MonkeyPatch,
            env: dict[str, str] | None = None) -> tuple[int | None, str]:
    """(exit code, stderr). In-process, an exception escaping main() is a crash: exit None and
    the traceback in stderr, as the real entry point would print it."""
    if sub:
        p = subprocess.run([sys.executable, "-m", "harness", *argv], cwd=ROOT, env={**_env(tmp), **(env or {})},
                           capture_output=True, text=True, timeout=120, check=False)
        return p.returncode, p.stderr
    from harness.cli import main

    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp / "cache"))
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "3")
    for k, v in (env or {}).items():
        monkeypatch.setenv(k, v)
    term = signal.getsignal(signal.SIGTERM)  # cmd_run installs its own once past validation
    err, out = io.StringIO(), io.StringIO()
    rc: int | None
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            try:
                rc = main(argv)
            except SystemExit as e:  # argparse's usage errors
                rc = e.code if isinstance(e.code, int) else 1
            except Exception:  # noqa: BLE001
                rc = None
                traceback.print_exc()
    finally:
        signal.signal(signal.SIGTERM, term)
    return rc, err.getvalue()


def _marks(row: Row) -> list[Any]:
    if row.bug is None:
        return []
    return [pytest.mark.xfail(strict=True, reason=f"harness bug: {row.bug}")]


@pytest.mark.parametrize("row", [pytest.param(r, id=r.id, marks=_marks(r)) for r in ROWS])
def test_bad_input(row: Row, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "good.json").write_text(GOOD)
    for name, content in row.files.items():
        p = tmp_path / name
        if callable(content):
            content(p)
        elif isinstance(content, bytes):
            p.write_bytes(content)
        else:
            p.write_text(content)
    # An earlier run's results (and, for `report -o`, its page): a run on bad input must not touch them.
    results = tmp_path / "results.jsonl"
    results.write_bytes(SENTINEL)
    before = {p: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}

    argv = _argv(row, tmp_path)
    rc, stderr = run_cli(argv, tmp_path, row.sub, monkeypatch, row.env)
    shown = f"argv: {argv}\nexit: {rc}\nstderr:\n{stderr}"

    assert "Traceback" not in stderr, shown
    assert rc == 2, shown
    assert "error:" in stderr, shown
    for frag in row.fragments:
        assert frag.replace("{tmp}", str(tmp_path)) in stderr, f"missing {frag!r}\n{shown}"
    for frag in row.absent:
        assert frag not in stderr, f"unexpected {frag!r}\n{shown}"
    for p, content in before.items():
        assert p.read_bytes() == content, f"{p} was written over\n{shown}"
    assert not (tmp_path / "UNPICKLED").exists(), "a pickled object was unpickled"


def test_wrong_typed_key_fields_are_problems_not_crashes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A results file whose records carry key fields (records.KEY_FIELDS) of the wrong type: each
    such record is a problem line, ignored, like a malformed line; the rest is read. `report`,
    `diff`, `baseline` and `run --baseline` go on with the good records, never a traceback."""
    res = tmp_path / "mixed.jsonl"
    res.write_text(_result() + _result(case_id={"a": 1}) + _result(case_id="fam/c2", framework=["numpy"])
                   + _result(case_id="fam/c3", cotangent=5) + _result(case_id="fam/c4", run_id=[1]))
    from harness import records

    loaded = records.read([res])
    assert [r["case_id"] for r in loaded.results] == ["fam/c1"]
    assert loaded.problems == [f"{res}:2: field 'case_id' is not a string; record ignored",
                               f"{res}:3: field 'framework' is not a string; record ignored",
                               f"{res}:4: field 'cotangent' is not a string; record ignored",
                               f"{res}:5: field 'run_id' is not a string; record ignored"]
    for argv, codes in ((["report", str(res), "-o", str(tmp_path / "r.html")], (0,)),
                        (["diff", str(res), str(res)], (0,)),
                        (["baseline", str(res), "-o", str(tmp_path / "b.jsonl")], (0,)),
                        (["run", "--framework", "numpy", "--mode", "eager", "--cases", str(tmp_path / "good.json"),
                          "--results", str(tmp_path / "results.jsonl"), "--baseline", str(res), *ONE,
                          "--no-isolate", "-q"], (0, 1))):
        (tmp_path / "good.json").write_text(GOOD)
        rc, stderr = run_cli(argv, tmp_path, False, monkeypatch)
        assert "Traceback" not in stderr and rc in codes, f"{argv}\nexit {rc}\n{stderr}"
    assert "field &#39;case_id&#39; is not a string" in (tmp_path / "r.html").read_text() or \
        "field 'case_id' is not a string" in (tmp_path / "r.html").read_text()


# -------------------------------------------------------------------- the pytest front end

PLUGIN_ROWS = [
    ("plugin-unknown-framework", ["--harness-framework", "nope"], ["unknown framework 'nope'", "valid: ", "numpy", "torch"]),
    ("plugin-unknown-dtype", ["--harness-dtype", "float33"], ["unknown dtype 'float33'", f"valid: {DTYPES}"]),
    ("plugin-renamed-option", ["--suite", "quick", "--dtype", "float32"],
     ["--suite is now --harness-suite", "--dtype is now --harness-dtype"]),
]


@pytest.mark.parametrize("args,fragments", [pytest.param(a, f, id=i) for i, a, f in PLUGIN_ROWS])
def test_plugin_rejects_unknown_names(args: list[str], fragments: list[str], tmp_path: Path) -> None:
    results = tmp_path / "pytest-results.jsonl"
    results.write_bytes(SENTINEL)
    p = subprocess.run([sys.executable, "-m", "pytest", "tests/test_conformance.py", *args, "-q",
                        "--harness-results", str(results), "-p", "no:cacheprovider"],
                       cwd=ROOT, env=_env(tmp_path), capture_output=True, text=True, timeout=120, check=False)
    out = p.stdout + p.stderr
    assert p.returncode != 0, out
    assert p.returncode == 4, out  # pytest's usage error
    for frag in fragments:
        assert frag in out, f"missing {frag!r}\n{out}"
    assert "Traceback" not in out, out
    assert results.read_bytes() == SENTINEL, "the pytest front end wrote over the results file"


# -------------------------------------------------------------------- the Python API

#: (test id, function of `harness`, its keyword arguments, fragments of the HarnessInputError's
#: message). There is no file or case: the message names the field and the valid choices.
API_ROWS = [
    ("api-exact-invariance-check", "exact", {"op": "softmax", "logits": [[1.0, 2.0, 3.0]], "check": "determinism"},
     ["field 'check'", "'determinism'", f"valid: {VALUE_CHECKS}"]),
]


@pytest.mark.parametrize("name,kwargs,fragments", [pytest.param(n, k, f, id=i) for i, n, k, f in API_ROWS])
def test_api_bad_input(name: str, kwargs: dict[str, Any], fragments: list[str]) -> None:
    import harness
    from harness.errors import HarnessInputError

    with pytest.raises(HarnessInputError) as info:
        getattr(harness, name)(**kwargs)
    for frag in fragments:
        assert frag in str(info.value), f"missing {frag!r}\n{info.value}"


# -------------------------------------------------------------------- not bad input: a skip with its reason


def test_batch_invariance_of_unbatchable_options_is_a_skip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A case asking for the invariance checks whose options leave no batch to build (a loss
    reduced over the rows, or a `where`/`b` array of the logits' shape) is valid input: its
    batch_invariance result is a skip whose message says why (invariance.batch_unsupported), not
    an error and not exit 2; a case without such options runs the check."""
    logits = [[1.0, 2.0, 3.0], [0.5, 0.0, -1.0]]
    sparse = {"op": "sparse_softmax_cross_entropy", "labels": [0, 2]}
    reasons = {
        "inv/sum": ({**sparse, "reduction": "sum"}, "the loss is reduced over the rows (sum)"),
        "inv/mean": ({**sparse, "reduction": "mean"}, "the loss is reduced over the rows (mean)"),
        "inv/where": ({"op": "softmax", "where": [[True, True, False], [True, False, True]]},
                      "where is an array of the logits' shape"),
        "inv/b": ({"op": "logsumexp", "b": [[1.0, 2.0, 0.5], [1.0, 1.0, 1.0]]}, "b is an array of the logits' shape"),
    }
    cases = [{"id": cid.split("/")[1], "logits": logits, "dtypes": ["float64"], "invariance": True, **c}
             for cid, (c, _) in reasons.items()]
    cases.append({"id": "plain", "op": "softmax", "logits": logits, "dtypes": ["float64"], "invariance": True})
    (tmp_path / "inv.json").write_text(json.dumps({"cases": cases}))
    results = tmp_path / "results.jsonl"
    argv = ["run", "--framework", "numpy", "--mode", "eager", "--cases", str(tmp_path / "inv.json"),
            "--check", "batch_invariance", "--results", str(results), "--no-isolate", "-q"]
    rc, stderr = run_cli(argv, tmp_path, False, monkeypatch)
    assert "Traceback" not in stderr and "error:" not in stderr, stderr
    assert rc in (0, 1), f"exit {rc}\n{stderr}"  # a run, not bad input (the plain case may fail its budget)
    recs = {r["case_id"]: r for r in map(json.loads, results.read_text().splitlines()) if r.get("kind") == "result"}
    assert sorted(recs) == sorted([*reasons, "inv/plain"]), sorted(recs)
    assert all(r["check"] == "batch_invariance" for r in recs.values())
    for cid, (_, why) in reasons.items():
        r = recs[cid]
        assert r["status"] == "skip" and r["special"] != "harness_error", r
        assert r["message"].startswith("batch_invariance: ") and why in r["message"], r["message"]
    assert recs["inv/plain"]["status"] in ("pass", "fail"), recs["inv/plain"]  # the check ran
    assert "variants" in recs["inv/plain"]["message"], recs["inv/plain"]["message"]


# -------------------------------------------------------------------- the docs table


def _doc_rows() -> dict[str, tuple[str, str]]:
    """test id -> (expected fragment cell, exit code cell) from the table in docs/bad-inputs.md."""
    rows = {}
    for line in DOC.read_text(encoding="utf-8").splitlines():
        m = re.match(r"\|\s*\d+\s*\|\s*`([a-z0-9-]+)`\s*\|(.*)\|\s*$", line)
        if m:
            cells = [c.strip() for c in m.group(2).split(" | ")]
            rows[m.group(1)] = (cells[-3], cells[-2])
    return rows


def test_docs_table_lists_every_row() -> None:
    doc = _doc_rows()
    ids = [r.id for r in ROWS] + [i for i, _, _ in PLUGIN_ROWS] + [i for i, _, _, _ in API_ROWS]
    assert len(ids) == len(set(ids))
    assert sorted(doc) == sorted(ids), (sorted(set(ids) - set(doc)), sorted(set(doc) - set(ids)))
    assert len(doc) >= 24
    for r in ROWS:
        assert doc[r.id][1] == "2", r.id
        # the docs name at least the field (or the message) that the test checks
        assert any(f.replace("{tmp}/", "") in doc[r.id][0].replace("`", "") for f in r.fragments), r.id
    for i, _, _, fragments in API_ROWS:
        assert doc[i][1] == "HarnessInputError", i
        assert any(f in doc[i][0].replace("`", "") for f in fragments), i
