"""The HTML report, merge and diff, on small synthetic results files built here."""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

import pytest

from harness.report import cross_framework, diff, merge, render
from harness.report.tables import semantics

XSS = "<script>alert(1)</script>"


# ---------------------------------------------------------------------------------------------
# Synthetic records

def rec(case_id="fam/c1", op="softmax", check="forward", framework="torch", dtype="float32", mode="eager",
        device="cpu", variant="default", status="pass", special="match", max_ulp=0.5, known=None, message="",
        version=None, **kw):
    r = {"kind": "result", "case_id": case_id, "family": case_id.split("/")[0], "op": op, "check": check,
         "variant": variant, "framework": framework,
         "framework_version": version or {"torch": "2.13.0", "jax": "0.10.2", "tensorflow": "2.21.0"}.get(framework, "1.0"),
         "device": device, "dtype": dtype, "mode": mode, "status": status,
         "special": None if status == "skip" else special, "max_ulp": None if status in ("skip", "error") else max_ulp,
         "excess": None if max_ulp is None or status in ("skip", "error") else max_ulp / 2.0,
         "message": message, "known": known, "invalid_input": False,
         "time_framework_s": None if status in ("skip", "error") else 1e-4, "time_reference_s": 2e-3,
         "time_verdict_s": 1e-3}
    r.update(kw)
    return r


def run_start(run_id="r1", frameworks=None):
    fws = frameworks or {"torch": "2.13.0", "jax": "0.10.2", "tensorflow": "2.21.0"}
    return {"kind": "run_start", "schema": 1, "run_id": run_id, "harness_version": "0.1.0",
            "started": "2026-01-01T00:00:00+00:00", "git_commit": "0123456789abcdef", "policy": "standard",
            "machine": {"hostname": "ci-host", "platform": "Linux", "python": "3.11", "cpus": 4,
                        "cpu": {"model": "Example CPU 9000", "features": ["avx2", "avx512_fp16"]}},
            "frameworks": {fw: {"versions": {fw: v}, "devices": {"cpu": "cpu"}} for fw, v in fws.items()},
            "argv": ["test"], "worker": None}


def write(path: Path, results, *, start=True, end=True, run_id="r1", frameworks=None, tail: str = "") -> str:
    lines = []
    if start:
        lines.append(json.dumps(run_start(run_id, frameworks)))
    lines += [json.dumps(r) for r in results]
    if end:
        lines.append(json.dumps({"kind": "run_end", "run_id": run_id, "finished": "2026-01-01T00:01:00+00:00",
                                 "complete": True}))
    path.write_text("\n".join(lines) + "\n" + tail, encoding="utf-8")
    return str(path)


KNOWN = {"id": "tf-keras-floatx", "description": "Keras computes in float32", "link": "https://example.org/issue/1",
         "source": "known"}


def mixed_records():
    """Every outcome, three frameworks, two dtypes, two modes, a known discrepancy and an
    error; counts are computed from this list in the tests, never typed in."""
    out = []
    for fw in ("torch", "jax", "tensorflow"):
        for dt in ("float32", "float16"):
            for mode in ("eager", "jit"):
                for op in ("softmax", "log_softmax"):
                    out.append(rec(f"fam/{op}_a", op, framework=fw, dtype=dt, mode=mode, max_ulp=0.4))
                out.append(rec("fam/grad_a", "softmax", "grad", framework=fw, dtype=dt, mode=mode, max_ulp=1.5))
    out.append(rec("fam/bad1", "softmax", framework="torch", status="fail", max_ulp=12.0, message="Bad results (1 of 3)",
                   worst={"output": "out", "index": [1], "got": 0.25, "exact": 0.2, "rounded": 0.2, "ulp": 12.0,
                          "budget_ulp": 2.0, "ratio": 6.0},
                   bad=[{"output": "out", "index": [1], "got": 0.25, "exact": 0.2, "ulp": 12.0}],
                   input={"logits": [1.0, 2.0, 3.0], "labels": None, "axis": -1},
                   output={"out": [0.1, 0.25, 0.65]}, reference={"out": {"hi": [0.1, 0.2, 0.7], "lo": [0, 0, 0],
                                                                         "rounded": [0.1, 0.2, 0.7]}},
                   repro="import torch\nprint(torch.softmax(torch.tensor([1., 2., 3.]), -1))"))
    out.append(rec("fam/bad1", "softmax", framework="jax", status="error", special="raised", message="ValueError: boom",
                   error_type="ValueError"))
    out.append(rec("fam/ce", "softmax_cross_entropy", framework="tensorflow", variant="keras", status="fail",
                   max_ulp=1e8, known=KNOWN, message="dtype float32 != float64"))
    out.append(rec("fam/ce", "softmax_cross_entropy", framework="tensorflow", variant="keras", dtype="float16",
                   status="fail", max_ulp=3.0, known=KNOWN))
    out.append(rec("fam/ce", "softmax_cross_entropy", framework="torch", mode="jit", status="skip", message="no jit"))
    out.append(rec("special/posinf", "softmax", framework="tensorflow", status="fail", special="nan_expected_finite",
                   max_ulp=0.0, input={"logits": ["inf", 0.0, 1.0], "labels": None, "axis": -1},
                   output={"out": ["nan", 0.0, 0.0]},
                   reference={"out": {"hi": [1.0, 0.0, 0.0], "lo": [0.0, 0.0, 0.0], "rounded": [1.0, 0.0, 0.0]}}))
    for fw in ("torch", "jax"):
        out.append(rec("special/posinf", "softmax", framework=fw, status="fail", special="nan_expected_finite",
                       max_ulp=None, input={"logits": ["inf", 0.0, 1.0], "labels": None, "axis": -1},
                       output={"out": ["nan", "nan", "nan"]},
                       reference={"out": {"hi": [1.0, 0.0, 0.0], "lo": [0.0, 0.0, 0.0], "rounded": [1.0, 0.0, 0.0]}}))
    out.append(rec("special/oor", "sparse_softmax_cross_entropy", framework="jax", status="pass", special="match",
                   max_ulp=None, invalid_input=True, invalid_handling="nan", output={"out": ["nan"]},
                   input={"logits": [[1.0, 2.0, 3.0]], "labels": [3], "axis": -1}))
    return out


def outcome(r):
    if r["status"] in ("fail", "error"):
        return "known" if r.get("known") else r["status"]
    return r["status"]


def expected_counts(records):
    c = Counter(outcome(r) for r in records)
    return {k: c.get(k, 0) for k in ("pass", "fail", "error", "known", "skip")}


def is_discrepancy(r):
    return r["status"] != "skip" and (r["status"] in ("fail", "error") or r.get("special") not in (None, "match")
                                      or bool(r.get("invalid_input")))


class Cells(HTMLParser):
    """The summary matrix's cells (their data-* counts), the KPI numbers and the element ids."""

    def __init__(self):
        super().__init__()
        self.cells, self.kpi, self.ids, self._kpi = [], {}, set(), None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if a.get("id"):
            self.ids.add(a["id"])
        if tag == "td" and "data-filter" in a:  # the summary matrix's (the Invariance one's have data-key)
            cell = {k[5:]: (v if k == "data-filter" else int(v)) for k, v in a.items() if k.startswith("data-")}
            cell["cls"] = a.get("class", "").split()[-1]
            self.cells.append(cell)
        if a.get("id", "").startswith("kpi-"):
            self._kpi = a["id"][4:]

    def handle_data(self, data):
        if self._kpi and data.strip():
            self.kpi[self._kpi] = int(data.strip())
            self._kpi = None


def parse(html: str) -> Cells:
    p = Cells()
    p.feed(html)
    return p


# ---------------------------------------------------------------------------------------------

def test_summary_counts_equal_counts_from_records(tmp_path):
    records = mixed_records()
    path = write(tmp_path / "r.jsonl", records)
    out = tmp_path / "report.html"
    summary = render([path], str(out))
    exp = expected_counts(records)
    assert {k: summary[k] for k in exp} == exp
    assert summary["results"] == len(records)
    assert summary["discrepancies"] == sum(1 for r in records if is_discrepancy(r))
    assert summary["incomplete"] == [] and summary["duplicates"] == 0
    html = out.read_text(encoding="utf-8")
    page = parse(html)
    assert page.kpi == {"total": len(records), "pass": exp["pass"], "fail": exp["fail"], "error": exp["error"],
                        "known": exp["known"], "skip": exp["skip"], "disc": summary["discrepancies"]}
    # The matrix cells add up to the same counts, and one cell holds exactly its records.
    for k in ("pass", "fail", "error", "known", "skip"):
        assert sum(c[k] for c in page.cells) == exp[k], k
    cell = next(c for c in page.cells if json.loads(c["filter"]) == {
        "framework": "torch", "device": "cpu", "dtype": "float32", "mode": "eager", "op": "softmax", "check": "forward"})
    mine = [r for r in records if (r["framework"], r["dtype"], r["mode"], r["op"], r["check"]) ==
            ("torch", "float32", "eager", "softmax", "forward")]
    assert (cell["pass"], cell["fail"], cell["error"]) == (sum(r["status"] == "pass" for r in mine),
                                                           sum(r["status"] == "fail" for r in mine), 0)
    assert cell["pass"] == 1 and cell["fail"] == 2  # fam/bad1 and special/posinf
    # Self-contained: no external resources.
    assert not re.search(r'(src|href)="(https?:)?//', html.replace('href="https://example.org/issue/1"', ""))
    assert "<link" not in html and "@import" not in html


def test_matrix_cell_colours(tmp_path):
    html = tmp_path / "o.html"
    render([write(tmp_path / "r.jsonl", mixed_records())], str(html))
    keys = ("framework", "device", "dtype", "mode", "op", "check")
    by = {tuple(json.loads(c["filter"])[k] for k in keys): c["cls"] for c in parse(html.read_text(encoding="utf-8")).cells}
    assert by[("torch", "cpu", "float32", "eager", "softmax", "forward")] == "red"  # a new failure
    assert by[("tensorflow", "cpu", "float32", "eager", "softmax_cross_entropy", "forward")] == "amber"  # known only
    assert by[("torch", "cpu", "float32", "jit", "softmax_cross_entropy", "forward")] == "grey"  # skipped only
    assert by[("jax", "cpu", "float16", "jit", "log_softmax", "forward")] == "green"


def test_xss_is_escaped(tmp_path):
    records = [rec(XSS, "softmax", framework="torch", status="fail", max_ulp=5.0, message=XSS, repro=XSS,
                   known={"id": XSS, "description": XSS, "link": "javascript:alert(1)", "source": "known"}),
               rec(XSS, "softmax", framework="jax", status="pass", max_ulp=0.5),
               rec("fam/ok", "softmax", framework=XSS, status="pass")]
    out = tmp_path / "x.html"
    render([write(tmp_path / "r.jsonl", records)], str(out))
    html = out.read_text(encoding="utf-8")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script>alert(1)" not in html
    assert "alert(1)</script>" not in html
    assert 'href="javascript:' not in html
    # Only the page's own two script elements exist.
    assert len(re.findall(r"<script\b", html)) == 2
    # The embedded JSON still holds the exact string.
    assert embedded(html, "disc-data")["rows"][0][7] == XSS


def test_merge_detects_duplicates_and_keeps_the_last(tmp_path):
    a = write(tmp_path / "a.jsonl", [rec("fam/x", status="fail", max_ulp=9.0), rec("fam/y")], run_id="a")
    b = write(tmp_path / "b.jsonl", [rec("fam/x", status="pass", max_ulp=0.5), rec("fam/z")], run_id="b")
    m = merge([a, b])
    assert len(m.results) == 3
    kept = next(r for r in m.results if r["case_id"] == "fam/x")
    assert kept["status"] == "pass" and kept["max_ulp"] == 0.5
    assert len(m.duplicates) == 1
    d = m.duplicates[0]
    assert d.key["case_id"] == "fam/x" and d.files == [a, b] and d.statuses == ["fail", "pass"]
    assert m.complete and len(m.runs) == 2
    out = tmp_path / "m.html"
    s = render([a, b], str(out))
    assert s["duplicates"] == 1 and s["files"] == 2 and s["results"] == 3 and s["fail"] == 0
    html = out.read_text(encoding="utf-8")
    assert 'id="banner-duplicates"' in html and "1 duplicate result" in html


def test_diff_new_failure_fixed_and_error_change(tmp_path):
    old = [rec("fam/a", status="pass", max_ulp=0.5), rec("fam/b", status="fail", max_ulp=30.0),
           rec("fam/c", status="pass", max_ulp=1.0), rec("fam/d", status="pass", max_ulp=1.0),
           rec("fam/k", status="pass", max_ulp=1.0)]
    new = [rec("fam/a", status="fail", max_ulp=8.0, message="Bad results"), rec("fam/b", status="pass", max_ulp=0.6),
           rec("fam/c", status="pass", max_ulp=10.0), rec("fam/d", status="pass", max_ulp=1.9),
           rec("fam/e", status="error", special="raised"), rec("fam/k", status="fail", max_ulp=1.0, known=KNOWN)]
    o = write(tmp_path / "old.jsonl", old, frameworks={"torch": "2.12.0"})
    n = write(tmp_path / "new.jsonl", [dict(r, framework_version="2.13.0") for r in new],
              frameworks={"torch": "2.13.0"})
    for r in old:
        r["framework_version"] = "2.12.0"
    o = write(tmp_path / "old.jsonl", old, frameworks={"torch": "2.12.0"})
    d = diff([o], [n], threshold_ulp=1.0)
    new_ids = {c.new["case_id"]: c.was for c in d.new_failures}
    assert new_ids == {"fam/a": "pass", "fam/e": "absent", "fam/k": "pass"}
    assert [c.new["case_id"] for c in d.new_results] == ["fam/e"]
    assert [c.new["case_id"] for c in d.fixed] == ["fam/b"]
    # a: 0.5 -> 8 (fail, and a change); b: 30 -> 0.6; c: 1 -> 10; d: 1 -> 1.9 is below the threshold.
    assert {c.new["case_id"] for c in d.error_changes} == {"fam/a", "fam/b", "fam/c"}
    assert d.version_changes == [{"framework": "torch", "old": ["2.12.0"], "new": ["2.13.0"]}]
    assert d.has_new_failures and d.added == 1 and d.removed == 0
    text = d.to_text()
    assert "new failures: 3" in text and "fixed: 1" in text and "[new result]" in text
    assert "fam/c" in text and "max_ulp 1 -> 10" in text and "2.12.0 -> 2.13.0" in text
    assert "(known: tf-keras-floatx)" in text
    # Only a known new failure: no new failures for the exit status.
    only_known = diff([o], [write(tmp_path / "n2.jsonl", [new[-1]] + [r for r in old if r["case_id"] != "fam/k"])])
    assert len(only_known.new_failures) == 1 and not only_known.has_new_failures
    # The report's diff section.
    out = tmp_path / "d.html"
    s = render([n], str(out), compare=[o])
    assert (s["new_failures"], s["fixed"], s["error_changes"]) == (3, 1, 3)
    page = parse(out.read_text(encoding="utf-8"))
    assert {"diff", "diff-new", "diff-fixed", "diff-err"} <= page.ids
    assert d.cpu_change is None and "diff-cpu" not in page.ids and "cpu:" not in text  # one CPU in both runs


def test_diff_names_a_change_of_cpu(tmp_path):
    """Two runs of the same versions on CPUs with other vector features: the diff says so (text,
    JSON and the report), since their results can differ by the CPU's kernels alone."""
    o = write(tmp_path / "old.jsonl", [rec("fam/a", max_ulp=0.5)])
    lines = Path(o).read_text().splitlines()
    head = json.loads(lines[0])
    head["machine"]["cpu"] = {"model": "Other CPU", "features": ["avx2"]}
    n = tmp_path / "new.jsonl"
    n.write_text("\n".join([json.dumps(head)] + lines[1:]) + "\n")
    d = diff([o], [str(n)])
    assert d.cpu_change == {"old": ["Example CPU 9000 (avx2 avx512_fp16)"], "new": ["Other CPU (avx2)"]}
    assert "  cpu: Example CPU 9000 (avx2 avx512_fp16) -> Other CPU (avx2)" in d.to_text().splitlines()
    assert d.to_json()["cpu_change"] == d.cpu_change and not d.has_new_failures
    out = tmp_path / "d.html"
    render([str(n)], str(out), compare=[o])
    assert "diff-cpu" in parse(out.read_text(encoding="utf-8")).ids


def test_diff_threshold_needs_both_absolute_and_ratio(tmp_path):
    o = write(tmp_path / "o.jsonl", [rec("fam/a", max_ulp=100.0), rec("fam/b", max_ulp=0.1)])
    n = write(tmp_path / "n.jsonl", [rec("fam/a", max_ulp=150.0), rec("fam/b", max_ulp=0.9)])
    d = diff([o], [n], threshold_ulp=1.0)
    assert d.error_changes == []  # a: x1.5 only; b: |delta| = 0.8 ULP only
    assert not d.has_new_failures and "no new failures" in d.to_text()


def test_incomplete_run_is_flagged(tmp_path):
    path = write(tmp_path / "cut.jsonl", [rec("fam/a"), rec("fam/b", status="fail", max_ulp=7.0)], end=False)
    m = merge([path])
    assert not m.complete and [f.path for f in m.incomplete] == [path]
    assert "no run_end" in m.incomplete[0].incomplete_reason
    out = tmp_path / "i.html"
    s = render([path], str(out))
    assert s["incomplete"] == [path] and s["results"] == 2
    html = out.read_text(encoding="utf-8")
    assert 'id="banner-incomplete"' in html and "Incomplete run." in html
    assert "<title>Softmax-family conformance report (incomplete)</title>" in html
    assert 'id="incomplete-pill"' in html
    # A complete file next to it does not hide it.
    ok = write(tmp_path / "ok.jsonl", [rec("fam/c")], run_id="r2")
    s2 = render([ok, path], str(out))
    assert s2["incomplete"] == [path] and s2["results"] == 3
    s3 = render([ok], str(out))
    assert s3["incomplete"] == [] and 'id="banner-incomplete"' not in out.read_text(encoding="utf-8")


def test_truncated_last_line_is_tolerated_and_reported(tmp_path):
    path = write(tmp_path / "t.jsonl", [rec("fam/a"), rec("fam/b", status="fail", max_ulp=3.0)], end=False,
                 tail='{"kind": "result", "case_id": "fam/c", "op": "soft')
    m = merge([path])
    assert len(m.results) == 2
    assert any("truncated last line" in p for p in m.problems)
    out = tmp_path / "t.html"
    s = render([path], str(out))
    assert s["results"] == 2 and s["fail"] == 1 and s["problems"] == 1 and s["incomplete"] == [path]
    html = out.read_text(encoding="utf-8")
    assert 'id="banner-problems"' in html and "truncated last line" in html


def test_cross_framework_disagreement_in_ulps_from_outputs():
    # float32 ULP at 0.5 is 2**-24 and at 0.25 is 2**-25.
    ref = {"out": {"hi": [0.5, 0.25], "lo": [0.0, 0.0], "rounded": [0.5, 0.25]}}
    common = {"case_id": "fam/x", "op": "softmax", "dtype": "float32", "reference": ref}
    a = rec(framework="torch", max_ulp=1.0, output={"out": [0.5 + 2 ** -24, 0.25]}, **common)
    b = rec(framework="tensorflow", max_ulp=3.0, output={"out": [0.5 - 2 ** -25, 0.25 + 3 * 2 ** -25]}, **common)
    c = rec(framework="jax", max_ulp=0.7, input_summary={"shape": [2]}, **common)  # no stored outputs
    c.pop("reference")
    n1 = rec(case_id="fam/nan", framework="torch", max_ulp=None, output={"out": ["nan", 1.0]},
             reference={"out": {"hi": [1.0, 1.0], "lo": [0.0, 0.0]}})
    n2 = rec(case_id="fam/nan", framework="jax", max_ulp=None, output={"out": [1.0, 1.0]},
             reference={"out": {"hi": [1.0, 1.0], "lo": [0.0, 0.0]}})
    s1 = rec(case_id="fam/same", framework="torch", output={"out": ["nan", "-inf"]},
             reference={"out": {"hi": [1.0, 1.0], "lo": [0.0, 0.0]}})
    s2 = rec(case_id="fam/same", framework="jax", output={"out": ["nan", "-inf"]},
             reference={"out": {"hi": [1.0, 1.0], "lo": [0.0, 0.0]}})
    lone = rec(case_id="fam/lone", framework="torch")
    big1 = rec(case_id="fam/big", framework="torch", special="inf_mismatch", max_ulp=3.0, input_summary={"shape": [9]})
    big2 = rec(case_id="fam/big", framework="jax", max_ulp=1.0, input_summary={"shape": [9]})
    entries = cross_framework([a, b, c, n1, n2, s1, s2, lone, big1, big2,
                               rec(case_id="fam/x", framework="numpy", status="skip")])
    assert [e["case_id"] for e in entries] == ["fam/big", "fam/nan", "fam/x", "fam/same"]  # no single-framework group
    assert entries[0]["worst"] == {"a": "jax", "b": "torch", "ulp": float("inf"), "kind": "bound", "special_mismatch": True}
    entries = entries[1:]
    nan = entries[0]
    assert nan["worst"]["special_mismatch"] and nan["worst"]["ulp"] == float("inf")
    x = entries[1]
    pairs = {(p["a"], p["b"]): p for p in x["pairs"]}
    # element 0: (2**-24 + 2**-25) / 2**-24 = 1.5; element 1: 3 * 2**-25 / 2**-25 = 3
    assert pairs[("tensorflow", "torch")] == {"a": "tensorflow", "b": "torch", "ulp": 3.0, "kind": "outputs",
                                              "special_mismatch": False}
    assert pairs[("jax", "torch")]["kind"] == "bound" and pairs[("jax", "torch")]["ulp"] == pytest.approx(1.7)
    assert pairs[("jax", "tensorflow")]["ulp"] == pytest.approx(3.7)
    assert x["worst"]["a"] == "jax" and x["worst"]["b"] == "tensorflow"  # the bound 3.7 is the largest
    assert set(x["impls"]) == {"jax", "tensorflow", "torch"} and x["impls"]["torch"]["max_ulp"] == 1.0
    assert entries[2]["worst"]["ulp"] == 0.0  # same non-finite values agree


def test_cross_framework_labels_variants_apart():
    ref = {"out": {"hi": [1.0], "lo": [0.0]}}
    a = rec(op="softmax_cross_entropy", framework="tensorflow", output={"out": [1.0]}, reference=ref)
    b = rec(op="softmax_cross_entropy", framework="tensorflow", variant="keras", output={"out": [1.0 + 2 ** -22]},
            reference=ref)
    (e,) = cross_framework([a, b])
    assert set(e["impls"]) == {"tensorflow", "tensorflow:keras"}
    assert e["worst"]["ulp"] == 2.0  # float32 ULP at 1 is 2**-23


def test_semantics_matrix_shows_what_each_framework_returns():
    sem = semantics(mixed_records())
    row = next(r for r in sem["rows"] if r["case_id"] == "special/posinf")
    assert row["input"] == "[inf, 0, 1]" and row["exact"] == "[1, 0, 0]" and row["disagree"]
    assert row["cells"]["tensorflow"]["value"] == "[nan, 0, 0]"
    assert row["cells"]["torch"]["value"] == row["cells"]["jax"]["value"] == "[nan, nan, nan]"
    assert row["cells"]["torch"]["special"] == "nan_expected_finite"
    oor = next(r for r in sem["rows"] if r["case_id"] == "special/oor")
    assert oor["cells"]["jax"]["invalid"] == "nan" and oor["labels"] == "[3]"
    # Cases without special inputs or outcomes stay out.
    assert not any(r["case_id"] == "fam/softmax_a" for r in sem["rows"])


def test_large_vocab_plot_and_its_absence(tmp_path):
    out = tmp_path / "v.html"
    render([write(tmp_path / "a.jsonl", mixed_records())], str(out))
    html = out.read_text(encoding="utf-8")
    assert "no large-vocabulary results" in html and 'id="vocab-plots"' not in html
    assert html.count('class="plot"') == 4  # one utilisation and one ULP histogram per dtype
    lv = [rec(f"large_vocab/v{c}", "log_softmax", framework=fw, max_ulp=u, input_summary={"shape": [1, c]})
          for fw in ("torch", "jax") for c, u in ((1000, 1.0), (100000, 40.0))]
    render([write(tmp_path / "b.jsonl", lv)], str(out))
    html = out.read_text(encoding="utf-8")
    assert 'id="vocab-plots"' in html and "no large-vocabulary results" not in html
    assert "torch float32, 100000 classes: 40 ULP" in html


def test_known_section_and_timing(tmp_path):
    records = mixed_records()
    out = tmp_path / "k.html"
    render([write(tmp_path / "r.jsonl", records)], str(out))
    html = out.read_text(encoding="utf-8")
    assert 'id="known-tf-keras-floatx"' in html and "Keras computes in float32" in html
    assert 'href="https://example.org/issue/1"' in html
    assert "2 results" in html  # both keras records
    # Timing: errors and skips carry no framework time; the table still renders.
    assert 'id="timing-table"' in html and "100 µs" in html


def many_records(n: int = 20000, seed: int = 0) -> list[dict]:
    """n synthetic results of 4 frameworks, 4 dtypes, 5 ops, 2 modes and 2 checks, 30% failing
    with full details (inputs, outputs, reference, repro): the report's size budget must hold."""
    import random

    rnd = random.Random(seed)
    records = []
    from harness import vocab as V

    fws, dts, ops = ("torch", "jax", "tensorflow", "numpy"), V.DTYPE_NAMES, V.OP_NAMES
    i = 0
    while len(records) < n:
        fw, dt, op = fws[i % 4], dts[(i // 4) % 4], ops[(i // 16) % 5]
        mode, check = V.MODES[(i // 80) % 2], V.CHECKS[(i // 160) % 2]
        case = f"gen/case_{i // 320:04d}"
        i += 1
        k = rnd.choice((4, 16, 64))
        arr = [rnd.random() for _ in range(k)]
        bad = rnd.random() < 0.3  # a heavy failure rate: the size budget must hold anyway
        records.append(rec(case, op, check, framework=fw, dtype=dt, mode=mode,
                           status="fail" if bad else "pass", max_ulp=rnd.random() * (100 if bad else 2),
                           message=("Bad results (3 of 64): " + "x" * 300) if bad else "",
                           input={"logits": arr, "labels": None, "axis": -1},
                           output={"out": arr}, reference={"out": {"hi": arr, "lo": [1e-18] * k, "rounded": arr}},
                           worst={"output": "out", "index": [0], "got": arr[0], "exact": arr[0], "ulp": 1.0},
                           bad=[{"output": "out", "index": [j], "got": arr[j], "ulp": 3.0} for j in range(min(k, 5))],
                           repro=f"import torch\nx = torch.tensor({arr!r})\nprint(torch.softmax(x, -1))"))
    return records


def test_report_of_20000_records_stays_under_10_mb(tmp_path):
    records = many_records()
    path = write(tmp_path / "big.jsonl", records)
    out = tmp_path / "big.html"
    s = render([path], str(out))  # its time: benchmarks/report_and_cases.py
    assert s["results"] == 20000
    assert s["discrepancies"] == sum(1 for r in records if r["status"] == "fail")
    assert out.stat().st_size == s["bytes"] < 10_000_000
    assert s["details_omitted"] < s["discrepancies"]  # the size budget cuts details, never rows
    html = out.read_text(encoding="utf-8")
    data = embedded(html, "disc-data")
    assert len(data["rows"]) == s["discrepancies"] and data["omitted"] == s["details_omitted"]
    assert data["details"][0] is not None  # the first rows (new failures) keep theirs


def test_histograms_keep_a_readable_axis_with_an_overflow_bin():
    """The ULP axis is 1e-3..1e4 whatever the data (1e267 used to squeeze every bar into the
    first pixel): smaller values land in the first bin, larger ones in the overflow bin, and the
    counts add up; the utilisation histogram's overflow bin holds the failures (> 1)."""
    import re

    from harness.report import svg

    vals = {"float32": {"torch": [0.0, 1e-9, 0.5, 3.0, 1e267, float(2 ** 100)]}}
    (panel,) = svg.histograms(vals, ["float32"], ["torch"], {"torch": "#000"})
    assert "6 results, 2 &gt; 1e4" in panel
    ticks = re.findall(r'class="tick" text-anchor="middle">([^<]*)<', panel)
    assert ticks[0] == "1e-3" and ticks[-1] == "&gt; 1e4"
    (u,) = svg.histograms({"bf16": {"jax": [0.0, 0.3, 0.99, 1.0, 1.5, 7.0]}}, ["bf16"], ["jax"], {}, bin_width=0.05,
                          lo=0.0, hi=1.0, log=False, over_label="> 1 fails")
    assert "6 results, 2 &gt; 1 fails" in u


# ---------------------------------------------------------------------------------------------
# The invariance checks (harness/invariance.py): their own matrix, the cells' lists, the details

def batch_variants(n_rows=3):
    """The 69 variants of a 3-row case's batch_invariance check, labelled as the harness does."""
    out = []
    for r in range(n_rows):
        out.append((f"row {r} alone", None))
        for size in (2, 7, 64, 1024):
            for at in sorted({0, size // 2, size - 1}):
                for filler in ("random", "padding"):
                    out.append((f"row {r} in {size} at {at}, {filler}", f"row {r} alone"))
    return out


DETERMINISM = [("call 1", None)] + [(f"call {k}", "call 1") for k in range(2, 6)] + \
    [("1 thread", "call 1"), ("2 threads", "call 1")]
EAGER_VS_JIT = [("eager", None), ("jit", "eager")]
PERMUTATION = [("identity", None), ("classes reversed", "identity"), ("classes shuffled", "identity")]
INV_VARIANTS = {"batch_invariance": batch_variants, "determinism": lambda: DETERMINISM,
                "eager_vs_jit": lambda: EAGER_VS_JIT, "permutation": lambda: PERMUTATION}


def inv_rec(check, case_id="inv/rows", op="softmax", *, rule="budget", diff=None, fail=(), error=(), max_ulp=0.5,
            **kw):
    """An invariance result as harness/invariance.py writes it: `diff` {variant: (elements, ULPs
    from its base)}, `fail` the variants over their budget (2 ULPs), `error` those that raised;
    the summary, the status (the rule's) and the usual fields (the worst variant's) follow."""
    results = []
    for label, base in INV_VARIANTS[check]():
        nd, ub = (diff or {}).get(label, (0, 0.0))
        st = "error" if label in error else "fail" if label in fail else "pass"
        u = None if st == "error" else 5 * max_ulp if st == "fail" else max_ulp
        results.append({"variant": label, "base": base, "status": st, "special": "raised" if st == "error" else "match",
                        "max_ulp": u, "excess": None if u is None else u / 2.0, "n_diff": nd,
                        "ulp_between": "inf" if ub == math.inf else ub})
    differing = [v for v in results if v["n_diff"]]
    between = max((math.inf if v["ulp_between"] == "inf" else v["ulp_between"] for v in results), default=0.0)
    info = {"rule": rule, "base": results[0]["variant"], "variants": len(results), "differing": len(differing),
            "bitwise_differences": sum(v["n_diff"] for v in results),
            "max_ulp_between": "inf" if between == math.inf else between,
            "worst": max(differing, key=lambda v: (math.inf if v["ulp_between"] == "inf" else v["ulp_between"],
                                                   v["n_diff"]))["variant"] if differing else None,
            "results": results}
    if any(v["status"] == "error" for v in results) and not any(v["status"] == "fail" for v in results):
        status = "error"
    elif any(v["status"] != "pass" for v in results) or (rule == "bitwise" and differing):
        status = "fail"
    else:
        status = "pass"
    worst = max(results, key=lambda v: (v["status"] != "pass", v["excess"] or 0.0, v["n_diff"]))
    kw.setdefault("mode", "jit" if check == "eager_vs_jit" else "eager")
    r = rec(case_id, op, check, status=status, special=worst["special"], max_ulp=worst["max_ulp"],
            message=f"{len(results)} variants; {len(differing)} differ", invariance=info,
            test_id=None, **kw)
    r.pop("test_id")
    return r


#: The repro pair of the torch batch_invariance result: row 1 alone and in a batch of 1024, four
#: classes, float32: elements 0 and 3 differ, by 2 and 4 ULPs (the spacing is 2**-24 in [0.5, 1)
#: and 2**-26 in [0.125, 0.25)).
PAIR = {"variants": ["row 1 alone", "row 1 in 1024 at 0, random"], "rows": [1],
        "outputs": [{"out": [[0.5, 0.25, 0.125, 0.125]]}, {"out": [[0.5 + 2 ** -23, 0.25, 0.125, 0.125 + 2 ** -24]]}]}
TF_KNOWN = {"id": "tf-xla-bf16-jit", "description": "XLA computes bfloat16 softmax in float32", "link": "",
            "source": "known"}


def invariance_records():
    """Eleven invariance results (standard policy: torch and jax; strict: tensorflow) and a forward
    result beside each (framework, dtype, mode)."""
    b1024 = {f"row {r} in 1024 at {at}, {f}": (37, u) for r, u in ((1, 4.0), (2, 3.0)) for at in (0, 512, 1023)
             for f in ("random", "padding")}
    inv = [
        inv_rec("batch_invariance", diff=b1024, framework="torch", pair=PAIR),
        inv_rec("batch_invariance", op="log_softmax", framework="torch"),
        inv_rec("batch_invariance", framework="torch", mode="jit"),
        inv_rec("determinism", framework="torch", fail=[v for v, _ in DETERMINISM]),
        inv_rec("eager_vs_jit", framework="torch", diff={"jit": (34, 1.0)}),
        rec("inv/rows", "softmax", "determinism", framework="jax", status="skip",
            message="no variant could run: 1 thread: the worker did not start"),
        inv_rec("permutation", op="log_softmax", framework="jax", mode="jit", diff={"classes shuffled": (1, math.inf)},
                error=["classes shuffled"]),
        inv_rec("permutation", framework="jax", dtype="bfloat16"),
        inv_rec("permutation", framework="tensorflow", rule="bitwise", diff={"classes shuffled": (66, 4.0)}),
        inv_rec("eager_vs_jit", framework="tensorflow", dtype="bfloat16", rule="bitwise", diff={"jit": (85, 7.0)},
                fail=["jit"], known=TF_KNOWN),
        inv_rec("batch_invariance", framework="tensorflow", rule="bitwise",
                fail=[v for v, _ in batch_variants() if v.startswith("row 1 ")]),
    ]
    inv[3]["invariance"]["threads"] = {"1 thread": {"torch.get_num_threads": 1},
                                       "2 threads": {"torch.get_num_threads": 2}}
    places = {(r["framework"], r["dtype"], r["mode"]) for r in inv}
    return inv + [rec("inv/rows", "softmax", framework=f, dtype=d, mode=m) for f, d, m in sorted(places)]


class InvCells(HTMLParser):
    """The Invariance matrix: each cell's data-* attributes, class and texts (cnt, inv)."""

    def __init__(self):
        super().__init__()
        self.cells, self.heads, self.totals = {}, [], []
        self._cell = self._span = None
        self._in_matrix = self._th = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table" and a.get("id") == "inv-matrix":
            self._in_matrix = True
        if not self._in_matrix:
            return
        if tag == "td" and ("data-key" in a or "tot" in a.get("class", "")):
            self._cell = {"cls": a["class"].split()[1], "cnt": "", "inv": "", "tags": ""}
            self._cell.update({k[5:]: v for k, v in a.items() if k.startswith("data-")})
            if "data-key" in a:
                self.cells[tuple(json.loads(a["data-key"]))] = self._cell
            else:
                self.totals.append(self._cell)
        if tag == "span" and self._cell is not None:
            self._span = a.get("class")
        if tag == "i" and self._cell is not None and self._span == "tags":
            self._cell["tags"] += " "
        self._th = tag == "th" and "chk" in a.get("class", "") or tag == "th" and "op" in a.get("class", "")

    def handle_endtag(self, tag):
        if tag == "td":
            self._cell = None
        if tag == "span":
            self._span = None
        if tag == "table":
            self._in_matrix = False

    def handle_data(self, data):
        if self._cell is not None and self._span in ("cnt", "inv", "tags"):
            self._cell[self._span] += data
        elif self._th and self._in_matrix and data.strip():
            self.heads.append(data.strip())
            self._th = False


def inv_page(html):
    p = InvCells()
    p.feed(html)
    for c in list(p.cells.values()) + p.totals:
        c["cnt"], c["tags"], c["inv"] = (" ".join(c[k].split()) for k in ("cnt", "tags", "inv"))
    return p


def embedded(html, name):
    """A report's embedded JSON; the discrepancy table's with its rows' values put back."""
    from harness.report.render import decoded

    m = re.search(rf'<script type="application/json" id="{name}">(.*?)</script>', html, re.DOTALL)
    assert m, f"no {name} in the report"
    data = json.loads(m.group(1))
    return decoded(data) if name == "disc-data" else data


def test_invariance_matrix_cells_say_bitwise_equal_or_how_many_differ(tmp_path):
    records = invariance_records()
    inv = [r for r in records if r["check"] != "forward"]
    out = tmp_path / "inv.html"
    s = render([write(tmp_path / "r.jsonl", records)], str(out))
    assert s["invariance"] == len(inv) == 11 and s["invariance_omitted"] == 0
    html = out.read_text(encoding="utf-8")
    page = inv_page(html)
    # Columns: the checks in the registry's order, each in the modes it ran (eager_vs_jit: jit).
    assert page.heads == ["batch_invariance", "determinism", "eager_vs_jit", "permutation",
                          "eager", "jit", "eager", "jit", "eager", "jit"]
    got = {k: (c["cnt"], c["tags"], c["inv"], c["cls"]) for k, c in page.cells.items()}
    f32, bf16 = ("cpu", "float32"), ("cpu", "bfloat16")
    assert got == {
        ("jax", *bf16, "permutation", "eager"): ("1/1", "", "bitwise equal", "green"),
        ("jax", *f32, "determinism", "eager"): ("skip 1", "", "", "grey"),
        ("jax", *f32, "permutation", "jit"): ("0/1", "1 err", "1 differ, max ∞ ULPs", "red"),
        ("tensorflow", *bf16, "eager_vs_jit", "jit"): ("0/1", "1 known", "1 differ, max 7 ULPs", "amber"),
        ("tensorflow", *f32, "batch_invariance", "eager"): ("0/1", "1 fail", "bitwise equal", "red"),
        ("tensorflow", *f32, "permutation", "eager"): ("0/1", "1 fail", "1 differ, max 4 ULPs", "red"),
        ("torch", *f32, "batch_invariance", "eager"): ("2/2", "", "1 differ, max 4 ULPs", "differ"),
        ("torch", *f32, "batch_invariance", "jit"): ("1/1", "", "bitwise equal", "green"),
        ("torch", *f32, "determinism", "eager"): ("0/1", "1 fail", "bitwise equal", "red"),
        ("torch", *f32, "eager_vs_jit", "jit"): ("1/1", "", "1 differ, max 1 ULP", "differ"),
    }
    # Rows (framework, device, dtype) in order; the totals column sums each row.
    assert [(t["cnt"], t["tags"], t["inv"]) for t in page.totals] == [
        ("1/1", "", "bitwise equal"), ("0/1", "1 err 1 skip", "1 differ, max ∞ ULPs"),
        ("0/1", "1 known", "1 differ, max 7 ULPs"), ("0/2", "2 fail", "1 differ, max 4 ULPs"),
        ("4/5", "1 fail", "2 differ, max 4 ULPs")]
    # Every result is counted once: the summary matrix holds the value checks, this one the rest.
    summary_cells = parse(html).cells
    assert all(json.loads(c["filter"])["check"] == "forward" for c in summary_cells)
    exp = expected_counts(records)
    for k in ("pass", "fail", "error", "known", "skip"):
        assert sum(c[k] for c in summary_cells) + sum(int(c[k]) for c in page.cells.values()) == exp[k], k
    assert sum(int(c["differ"]) for c in page.cells.values()) == sum(
        1 for r in inv if r.get("invariance", {}).get("differing")) == 5
    assert sum(int(c["disc"]) for c in page.cells.values()) == s["discrepancies"] == 5
    # The section is linked from the top bar and from the summary, after which it comes.
    assert '<a href="#invariance">Invariance</a>' in html
    assert "The 11 results of the invariance checks (batch_invariance, determinism, eager_vs_jit, permutation)" in html
    assert html.index('id="summary"') < html.index('id="invariance"') < html.index('id="utilisation"')
    assert "Rule <b>bitwise</b>" in html and "Rule <b>budget</b>" in html
    assert len(re.findall(r"<script\b", html)) == 4  # the page's two, the section's data and script


def test_invariance_lists_what_differs_or_fails(tmp_path):
    records = invariance_records()
    out = tmp_path / "inv.html"
    render([write(tmp_path / "r.jsonl", records)], str(out))
    html = out.read_text(encoding="utf-8")
    data = embedded(html, "inv-data")
    cols = data["cols"]
    ids = [e["id"] for e in data["entries"]]
    # The results that differ or do not pass, new failures first, then errors, known, passing.
    assert ids == ["tensorflow-cpu-float32-eager-softmax-permutation-inv/rows",
                   "tensorflow-cpu-float32-eager-softmax-batch_invariance-inv/rows",
                   "torch-cpu-float32-eager-softmax-determinism-inv/rows",
                   "jax-cpu-float32-jit-log_softmax-permutation-inv/rows",
                   "tensorflow-cpu-bfloat16-jit-softmax-eager_vs_jit-inv/rows",
                   "torch-cpu-float32-eager-softmax-batch_invariance-inv/rows",
                   "torch-cpu-float32-jit-softmax-eager_vs_jit-inv/rows"]
    by = dict(zip(ids, data["entries"]))
    b = by["torch-cpu-float32-eager-softmax-batch_invariance-inv/rows"]
    assert b["inv"] == {"rule": "budget", "base": "row 0 alone", "variants": 69, "differing": 12,
                        "bitwise_differences": 444, "max_ulp_between": 4.0, "worst": "row 1 in 1024 at 0, random"}
    rows = [dict(zip(cols, r)) for r in b["rows"]]
    assert len(rows) == 12 and "more" not in b  # the twelve that differ, not all 69
    assert [r["variant"] for r in rows[:6]] == [f"row 1 in 1024 at {at}, {f}" for at in (0, 512, 1023)
                                                for f in ("random", "padding")]
    assert {(r["n_diff"], r["ulp_between"], r["status"], r["equal"]) for r in rows[6:]} == {(37, 3.0, "pass", 0)}
    assert b["pair"] == {"variants": PAIR["variants"], "rows": [1], "n": 2,
                         "diff": [["out", [1, 0], 0.5, 0.5 + 2 ** -23, 2.0], ["out", [1, 3], 0.125, 0.125 + 2 ** -24, 4.0]]}
    # All equal and all failing alike: one row for the base, standing for its equal variants.
    d = by["torch-cpu-float32-eager-softmax-determinism-inv/rows"]
    assert [(r[0], r[2], r[-1]) for r in d["rows"]] == [("call 1", "fail", 6)]
    assert d["threads"] == {"1 thread": {"torch.get_num_threads": 1}, "2 threads": {"torch.get_num_threads": 2}}
    t = by["tensorflow-cpu-float32-eager-softmax-batch_invariance-inv/rows"]
    assert [(r[0], r[2], r[-1]) for r in t["rows"]] == [("row 1 alone", "fail", 22)]
    assert by["jax-cpu-float32-jit-log_softmax-permutation-inv/rows"]["inv"]["max_ulp_between"] == "inf"
    assert by["tensorflow-cpu-bfloat16-jit-softmax-eager_vs_jit-inv/rows"]["known"] == "tf-xla-bf16-jit"
    # Each invariance row of the discrepancy table points at its entry.
    disc = embedded(html, "disc-data")
    dc = disc["cols"]
    inv_rows = {str(i): "-".join(str(r[dc.index(k)]) for k in ("framework", "device", "dtype", "mode", "op", "check",
                                                               "case_id"))
                for i, r in enumerate(disc["rows"]) if r[dc.index("check")] != "forward"}
    assert {i: ids[j] for i, j in data["disc"].items()} == inv_rows and len(inv_rows) == 5


def test_invariance_section_absent_without_invariance_results(tmp_path):
    out = tmp_path / "plain.html"
    s = render([write(tmp_path / "r.jsonl", mixed_records())], str(out))
    html = out.read_text(encoding="utf-8")
    assert s["invariance"] == 0
    for absent in ('id="invariance"', 'href="#invariance"', 'id="inv-data"', 'id="inv-matrix"',
                   "summary-invariance-note", "td.cell.differ"):
        assert absent not in html, absent
    assert len(re.findall(r"<script\b", html)) == 2


def test_invariance_results_stay_out_of_the_value_check_views(tmp_path):
    """The cross-framework view compares outputs: an invariance record holds one variant's (a batch
    variant's with NaN in the rows it did not answer), so it stays out; so does the utilisation
    table (the variants use the forward budget). A result failing only the bitwise rule is its own
    finding, not "over budget"."""
    from harness.report.tables import findings, utilisation, utilisation_text

    ref = {"out": {"hi": [[0.5, 0.5], [0.25, 0.75]], "lo": [[0, 0], [0, 0]], "rounded": [[0.5, 0.5], [0.25, 0.75]]}}
    a = inv_rec("batch_invariance", framework="torch", output={"out": [[0.5, 0.5], ["nan", "nan"]]}, reference=ref)
    b = inv_rec("batch_invariance", framework="jax", output={"out": [["nan", "nan"], [0.25, 0.75]]}, reference=ref)
    assert cross_framework([a, b]) == []
    assert len(cross_framework([dict(a, check="forward"), dict(b, check="forward")])) == 1
    recs = invariance_records()
    assert {c for _, c in utilisation(recs)["cols"]} == {"forward"}
    assert "batch_invariance" not in utilisation_text(recs) and "forward" in utilisation_text(recs)
    keys = {f["key"] for f in findings(recs)}
    assert "fail/not_invariant/softmax/inv/rows" in keys  # tensorflow's permutation, strict
    assert "fail/over budget/softmax/inv/rows" in keys  # the ones over their budget
    # The runner now classes such a result `not_invariant` itself: the same finding either way.
    (tf_perm,) = [r for r in recs if (r["framework"], r["check"]) == ("tensorflow", "permutation")]
    again = findings([dict(tf_perm, special="not_invariant")])
    assert [f["key"] for f in again] == ["fail/not_invariant/softmax/inv/rows"]


def test_batch_invariance_output_rows_not_answered_are_blank(tmp_path):
    from harness.report.tables import detail

    ref = {"out": {"hi": [[0.5, 0.5], [0.25, 0.75], [0.5, 0.5]], "lo": [[0, 0]] * 3, "rounded": [[0.5, 0.5], [0.25, 0.75], [0.5, 0.5]]}}
    r = inv_rec("batch_invariance", fail=["row 1 alone"], output={"out": [["nan", "nan"], [0.25, 0.75], ["nan", "nan"]]},
                reference=ref)
    d = detail(r)
    assert d["compare"]["out"]["got"] == {"s": [3, 2], "v": [None, None, 0.25, 0.75, None, None], "n": 6}
    assert d["meta"]["output_rows"] == "the output is the worst variant's, which answers row 1 only (the others shown as –)"
    # A forward result's NaN is the framework's answer: shown as it is.
    f = detail(dict(r, check="forward"))
    assert f["compare"]["out"]["got"]["v"][0] == "nan" and "output_rows" not in f["meta"]


def test_invariance_data_fits_its_budget(tmp_path):
    """Variant lists are shortened first, then whole entries left out (the worst kept)."""
    from harness.report import invariance as INV

    diff = {v: (3, float(k % 5 + 1)) for k, (v, _) in enumerate(batch_variants()) if "alone" not in v}
    recs = [inv_rec("batch_invariance", case_id=f"inv/c{i:03d}", diff=diff, framework="torch") for i in range(60)]
    full = INV.data(recs, [])
    assert full["variant_limit"] == INV.VARIANT_LIMIT and full["omitted"] == 0 and len(full["entries"]) == 60
    assert {e["more"]["n"] for e in full["entries"]} == {66 - INV.VARIANT_LIMIT}
    size = len(json.dumps(full["entries"], separators=(",", ":")))
    cut = INV.data(recs, [], budget=6 * size // 10)
    assert cut["variant_limit"] == 6 and cut["omitted"] == 0 and {len(e["rows"]) for e in cut["entries"]} == {6}
    tiny = INV.data(recs, [], budget=size // 30)
    assert tiny["variant_limit"] == 2 and 0 < len(tiny["entries"]) < 60 and tiny["omitted"] == 60 - len(tiny["entries"])
    assert len(json.dumps(tiny["entries"], separators=(",", ":"), ensure_ascii=False)) <= size // 30
    assert [e["case"] for e in tiny["entries"]] == [f"inv/c{i:03d}" for i in range(len(tiny["entries"]))]


def test_invariance_section_escapes_hostile_text(tmp_path):
    r = inv_rec("permutation", case_id=XSS, framework=XSS, rule="bitwise", diff={"classes shuffled": (1, 1.0)})
    r["invariance"]["results"][2]["variant"] = XSS
    r["invariance"]["worst"] = XSS
    out = tmp_path / "x.html"
    render([write(tmp_path / "r.jsonl", [r])], str(out))
    html = out.read_text(encoding="utf-8")
    assert "<script>alert(1)" not in html and "alert(1)</script>" not in html
    assert len(re.findall(r"<script\b", html)) == 4
    (cell,) = inv_page(html).cells
    assert cell[0] == XSS
    entry = embedded(html, "inv-data")["entries"][0]
    assert entry["case"] == XSS and entry["inv"]["worst"] == XSS and entry["rows"][0][0] == XSS


def test_invariance_cell_text_signed_zeros():
    """Variants whose bits differ 0 ULPs apart differ only in the sign of a zero: the cell says so."""
    from harness.report.invariance import InvCell

    c = InvCell()
    c.add(inv_rec("eager_vs_jit", dtype="float64", diff={"jit": (2, 0.0)}))
    assert (c.inv_text, c.cls) == ("1 differ, max 0 ULPs (±0)", "differ")
    c.add(inv_rec("eager_vs_jit", case_id="inv/b", dtype="float64", diff={"jit": (1, 1.0)}))
    assert c.inv_text == "2 differ, max 1 ULP"


def test_invariance_damaged_fields_do_not_break_the_report(tmp_path):
    """A hand-made or damaged file: `invariance` and `pair` of the wrong types render as far as
    they go (the cell counts the result; the comparison it lacks is not claimed)."""
    recs = [rec("inv/a", check="determinism", status="fail", invariance="not a dict", pair=[1, 2]),
            rec("inv/b", check="determinism", status="fail", max_ulp=3.0,
                invariance={"rule": "budget", "differing": "two", "max_ulp_between": "bad", "results": "x"},
                pair={"variants": ["a", "b"], "outputs": [{"out": [1.0, [2.0]]}, {"out": [1.0]}]}),
            rec("inv/c", check="permutation", status="fail", max_ulp=3.0,
                invariance={"differing": 1, "max_ulp_between": None, "results": [None, {"n_diff": "3"}]},
                pair={"variants": ["identity"], "rows": None, "outputs": [{"out": [0.5]}]})]
    out = tmp_path / "d.html"
    s = render([write(tmp_path / "r.jsonl", recs)], str(out))
    assert s["invariance"] == 3 and s["fail"] == 3
    html = out.read_text(encoding="utf-8")
    cells = inv_page(html).cells
    det = cells[("torch", "cpu", "float32", "determinism", "eager")]
    assert (det["cnt"], det["tags"], det["inv"]) == ("0/2", "2 fail", "bitwise equal")  # only inv/b compares
    perm = cells[("torch", "cpu", "float32", "permutation", "eager")]
    assert perm["inv"] == "1 differ, max ∞ ULPs"  # a difference of unknown size is not reported as none
    data = embedded(html, "inv-data")
    assert len(data["entries"]) == 3 and not any(e.get("pair", {}).get("diff") for e in data["entries"])
    (c,) = [e for e in data["entries"] if e["case"] == "inv/c"]
    assert [r[0] for r in c["rows"]] == [None] and c["rows"][0][6] == 3


def test_discrepancy_rows_hold_each_repeated_value_once():
    """The discrepancy table's columns of few distinct values are stored once each and indexed
    from the rows; decoding gives the rows back exactly, None apart from "null", arrays and markup
    included (report.js decodes the same way: the browser test reads the decoded cells)."""
    from harness.report import tables as T
    from harness.report.render import CODED_FIELDS, _coded, decoded

    rows = [T.discrepancy_row(r) for r in many_records(300, seed=3)]
    rows[0][T.ROW_FIELDS.index("case_id")] = "null"
    rows[1][T.ROW_FIELDS.index("cotangent")] = [1.0, "nan"]
    rows[2][T.ROW_FIELDS.index("case_id")] = XSS
    coded, values = _coded(rows)
    assert decoded({"cols": list(T.ROW_FIELDS), "values": values, "rows": coded})["rows"] == rows
    assert set(values) == set(CODED_FIELDS) and "max_ulp" not in values and "excess" not in values
    for c in CODED_FIELDS:
        i = T.ROW_FIELDS.index(c)
        assert sorted({r[i] for r in coded}) == list(range(len(values[c])))  # every value used, once
        assert len({json.dumps(v) for v in values[c]}) == len(values[c])
    assert None in values["cotangent"] and "null" in values["case_id"]
    assert len(values["framework"]) == 4 and len(json.dumps(coded)) < len(json.dumps(rows)) / 2


X86_CPUINFO = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu sse sse2 sse4_2 avx f16c fma avx2 avx512f avx512bw avx512vl avx512_bf16 avx512_fp16 amx_tile amx_bf16 rdrand
processor\t: 1
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu sse
"""
ARM_CPUINFO = """processor\t: 0
BogoMIPS\t: 243.75
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm bf16 i8mm sve sve2
CPU part\t: 0xd4f
"""


@pytest.mark.parametrize("text, model, features", [
    (X86_CPUINFO, "Intel(R) Xeon(R) Platinum 8480+",
     ["sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_bf16", "avx512_fp16",
      "amx_tile", "amx_bf16"]),
    (ARM_CPUINFO, None, ["asimd", "asimdhp", "fphp", "bf16", "i8mm", "sve", "sve2"]),
    (None, None, None),  # no /proc/cpuinfo (macOS, Windows): the platform's processor name only
])
def test_run_header_names_the_cpu_and_its_vector_features(monkeypatch, tmp_path, text, model, features):
    """The first CPU's model and features, in records.CPU_FEATURES' order, are in every run header; the
    report's runs table shows them (two runs of one harness can differ by the CPU alone)."""
    import builtins
    import platform

    from harness import records as R

    real_open = builtins.open

    def fake_open(path, *a, **k):
        if str(path) == "/proc/cpuinfo":
            if text is None:
                raise FileNotFoundError(path)
            f = tmp_path / "cpuinfo"
            f.write_text(text)
            return real_open(f, *a, **k)
        return real_open(path, *a, **k)

    monkeypatch.setattr(builtins, "open", fake_open)
    monkeypatch.setattr(platform, "processor", lambda: "")
    assert R.machine()["cpu"] == {"model": model, "features": features}
    monkeypatch.setattr(builtins, "open", real_open)
    path = write(tmp_path / "r.jsonl", mixed_records()[:3])
    html = (tmp_path / "report.html")
    render([path], str(html))
    assert "Example CPU 9000 (avx2 avx512_fp16)" in html.read_text(encoding="utf-8")
