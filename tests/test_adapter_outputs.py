"""An adapter that hands back something other than an Output of arrays (None, a string, a dict,
an Output holding a string or None where an array belongs): a defect of that adapter, recorded
as an error result that says what came back (special `bad_output`), never a harness error with
an empty message, never exit 2 (issue 21).

The adapters are in tests/plugins/misbehaving.py; each returns something wrong in place of the
numpy adapter's own answer.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness import cases as K
from harness.cache import Cache
from harness.policy import load as load_policy
from harness.runner import Item, Session
from tests.plugins import misbehaving as M

ROOT = Path(__file__).resolve().parent.parent

#: adapter -> what the record's message must say
BAD = {
    M.NoneOutputAdapter: "the adapter returned None, not an Output of arrays",
    M.StringOutputAdapter: "the adapter returned str 'softmax', not an Output of arrays",
    M.DictOutputAdapter: "the adapter returned dict",
    M.StringArrayAdapter: "output 'out' is str '0.1 0.2 0.7', not an array of numbers",
    M.NoneArrayAdapter: "output 'out' is None, not an array of numbers",
    M.ObjectArrayAdapter: "output 'out' holds object, not numbers",
    M.BadDtypesAdapter: "Output.dtypes is str 'float64', not a dict",
}


def _run(fw: str, logits=((1.0, 2.0, 3.0),), labels=None, op="softmax", check="forward") -> dict:
    raw = {"id": "t/c1", "logits": [list(r) for r in logits]}
    if labels is not None:
        raw["labels"] = labels
    case = K.parse_case(raw, file="<test>", index=0, family=None, base=ROOT)
    s = Session(load_policy("standard"), Cache(None, enabled=False), [], None, timing_reps=0)
    cot = "ones" if check == "grad" else None
    return s.run(Item(case, op, check, "default", fw, "cpu", "float64", "eager", cot))


@pytest.mark.parametrize("cls", list(BAD), ids=lambda c: c.name)
def test_a_wrong_output_is_an_error_record_that_says_what_came_back(cls, registered):
    rec = _run(registered(cls))
    assert rec["status"] == "error", rec
    assert rec["special"] == "bad_output", rec
    assert BAD[cls] in rec["message"], rec["message"]
    assert "AssertionError" not in rec["message"] and "harness error" not in rec["message"]
    assert rec["error_type"] == "AdapterOutputError"
    json.dumps(rec, default=str)  # the record stays writable


def test_a_wrong_output_on_invalid_input_is_not_a_conforming_raise(registered):
    """On an invalid input (a NaN logit) a framework that raises conforms; an adapter that returns
    None has said nothing, which must not pass as a conforming raise."""
    rec = _run(registered(M.NoneOutputAdapter), logits=((float("nan"), 0.0, 1.0),))
    assert rec["status"] == "error" and rec["special"] == "bad_output", rec


def test_arrays_of_another_float_dtype_are_read_exactly(registered):
    rec = _run(registered(M.Float32OutputAdapter))
    assert rec["status"] in ("pass", "fail") and rec["special"] != "bad_output", rec


def test_the_cli_records_it_and_exits_1(tmp_path, registered, capsys):
    from harness.cli import main

    fw = registered(M.NoneOutputAdapter)
    cases = tmp_path / "c.json"
    cases.write_text(json.dumps({"cases": [{"id": "c1", "op": "softmax", "logits": [[1.0, 2.0, 3.0]],
                                            "dtypes": ["float64"]}]}))
    results = tmp_path / "r.jsonl"
    rc = main(["run", "--framework", fw, "--mode", "eager", "--cases", str(cases), "--results", str(results),
               "--check", "forward", "--no-isolate", "-q", "--timing-reps", "0", "--cache-dir", str(tmp_path / "k")])
    assert rc == 1
    recs = [json.loads(line) for line in results.read_text().splitlines()]
    res = [r for r in recs if r["kind"] == "result"]
    assert len(res) == 1 and res[0]["special"] == "bad_output"
    assert "the adapter returned None, not an Output of arrays" in res[0]["message"]
