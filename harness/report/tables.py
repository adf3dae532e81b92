"""The report's tables, computed from result records alone (no HTML here).

Outcome of a record, used everywhere in the report: `pass`, `fail` and `error` (new: not
covered), `known` (a fail or error with a non-null `known` field), `skip`.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .. import dtypes as D
from .. import ops as O
from ..records import jsonable, test_id
from ..vocab import INVARIANCE_CHECKS
from .crossfw import impl_label
from .numbers import num

OUTCOMES = ("pass", "fail", "error", "known", "skip")


def outcome(rec: dict[str, Any]) -> str:
    st = rec.get("status")
    if st in ("fail", "error"):
        return "known" if rec.get("known") else st
    if st in ("pass", "skip"):
        return st
    return "error"  # a record without a valid status is a harness problem: never hide it


def counts(results: Iterable[dict[str, Any]]) -> dict[str, int]:
    c = {k: 0 for k in OUTCOMES}
    n = 0
    for r in results:
        c[outcome(r)] += 1
        n += 1
    c["total"] = n
    return c


def is_invariance(rec: dict[str, Any]) -> bool:
    """A result of an invariance check (harness/invariance.py): variants of the forward call
    compared with each other; the report shows them in a matrix of their own (invariance.py)."""
    return rec.get("check") in INVARIANCE_CHECKS


def _order(values: Iterable[Any], preferred: list[str]) -> list[Any]:
    vals = set(values)
    first = [v for v in preferred if v in vals]
    return first + sorted((v for v in vals if v not in preferred), key=lambda v: str(v))


# ---------------------------------------------------------------------------------------------
# Summary matrix

@dataclass
class Cell:
    counts: dict[str, int] = field(default_factory=lambda: {k: 0 for k in OUTCOMES})
    worst_ulp: float | None = None
    util: float | None = None  # the largest error / budget among the cell's passing results
    variants: set[str] = field(default_factory=set)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def cls(self) -> str:
        c = self.counts
        if c["fail"] or c["error"]:
            return "red"
        if c["known"]:
            return "amber"
        if c["pass"]:
            return "green"
        return "grey"

    def title(self) -> str:
        parts = [f"{k}: {v}" for k, v in self.counts.items() if v]
        if self.util is not None:
            parts.append(f"budget utilisation of the passing results: {fmt_num(100 * self.util)}%")
        if self.worst_ulp is not None:
            parts.append(f"worst max_ulp: {fmt_num(self.worst_ulp)}")
        if self.variants - {"default"}:
            parts.append("variants: " + ", ".join(sorted(self.variants)))
        return "; ".join(parts)


def summary_matrix(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Rows (framework, device, dtype, mode), columns (op, check) of the value checks; the
    invariance checks have a matrix of their own (invariance.matrix)."""
    cells: dict[tuple, Cell] = {}
    for r in results:
        if is_invariance(r):
            continue
        rk = (r.get("framework"), r.get("device"), r.get("dtype"), r.get("mode"))
        ck = (r.get("op"), r.get("check"))
        c = cells.setdefault((rk, ck), Cell())
        c.counts[outcome(r)] += 1
        c.variants.add(str(r.get("variant")))
        u = num(r.get("max_ulp"))
        if u is not None and r.get("status") != "skip" and not math.isnan(u):
            c.worst_ulp = u if c.worst_ulp is None else max(c.worst_ulp, u)
        x = num(r.get("excess"))
        if r.get("status") == "pass" and x is not None and not math.isnan(x):
            c.util = x if c.util is None else max(c.util, x)
    fws = _order({k[0][0] for k in cells}, [])
    devs = _order({k[0][1] for k in cells}, O.DEVICES)
    dts = _order({k[0][2] for k in cells}, D.DTYPE_NAMES)
    modes = _order({k[0][3] for k in cells}, O.MODES)
    present_rows, present_cols = {k[0] for k in cells}, {k[1] for k in cells}
    rows = [(f, d, t, m) for f in fws for d in devs for t in dts for m in modes if (f, d, t, m) in present_rows]
    ops = _order({k[1][0] for k in cells}, O.OP_NAMES)
    checks = _order({k[1][1] for k in cells}, O.CHECKS)
    cols = [(o, c) for o in ops for c in checks if (o, c) in present_cols]
    spans = [(o, sum(1 for c in cols if c[0] == o)) for o in ops]
    return {"rows": rows, "cols": cols, "cells": cells, "ops": [s for s in spans if s[1]]}


# ---------------------------------------------------------------------------------------------
# Budget utilisation

def check_label(rec: dict[str, Any]) -> str:
    """The check with its cotangent, as in the test ids: `forward`, `grad.ones`, `grad.pattern`."""
    cot = rec.get("cotangent")
    return str(rec.get("check")) if not cot else f"{rec.get('check')}.{cot}"


#: A budget below this utilisation on every framework is worth a look (docs/tolerance.md).
IDLE = 0.01


def utilisation(results: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """The largest error / budget (`excess`) among the passing results, per framework and dtype
    (rows) and op and check (columns), with the result that reached it; and the (op, check,
    dtype) whose budget no framework uses to IDLE. The invariance checks are left out: their
    variants are judged by the forward budget, whose column they would repeat."""
    cells: dict[tuple, tuple[float, str]] = {}
    for r in results:
        if r.get("status") != "pass" or is_invariance(r):  # those use the forward budget: its column
            continue
        x = num(r.get("excess"))
        if x is None or not math.isfinite(x):
            continue
        k = ((str(r.get("framework")), str(r.get("dtype"))), (str(r.get("op")), str(r.get("check"))))
        if k not in cells or x > cells[k][0]:
            cells[k] = (x, str(r.get("test_id") or r.get("case_id")))
    fws = _order({k[0][0] for k in cells}, [])
    dts = _order({k[0][1] for k in cells}, D.DTYPE_NAMES)
    rows = [(f, d) for f in fws for d in dts if any(k[0] == (f, d) for k in cells)]
    ops = _order({k[1][0] for k in cells}, O.OP_NAMES)
    checks = _order({k[1][1] for k in cells}, O.CHECKS)
    cols = [(o, c) for o in ops for c in checks if any(k[1] == (o, c) for k in cells)]
    idle = []
    for o, c in cols:
        for d in dts:
            vals = [v[0] for (rk, ck), v in cells.items() if ck == (o, c) and rk[1] == d]
            if vals and max(vals) < IDLE:
                idle.append({"op": o, "check": c, "dtype": d, "max": max(vals), "frameworks": len(vals)})
    return {"rows": rows, "cols": cols, "cells": cells, "idle": idle}


def utilisation_text(results: Iterable[dict[str, Any]]) -> str:
    """The utilisation table as plain text (the CLI's summary)."""
    u = utilisation(results)
    if not u["rows"]:
        return ""
    head = ["framework", "dtype"] + [f"{o} {c}".replace("sparse_softmax_cross_entropy", "sparse_ce")
                                     .replace("softmax_cross_entropy", "ce") for o, c in u["cols"]]
    lines = [head]
    for rk in u["rows"]:
        cells = [u["cells"].get((rk, ck)) for ck in u["cols"]]
        lines.append([rk[0], rk[1]] + [f"{c[0]:.0%}" if c and c[0] >= 0.01 else (f"{c[0]:.1%}" if c else "-")
                                       for c in cells])
    w = [max(len(r[i]) for r in lines) for i in range(len(head))]
    return "\n".join("  ".join(v.rjust(w[i]) if i > 1 else v.ljust(w[i]) for i, v in enumerate(r)) for r in lines)


# ---------------------------------------------------------------------------------------------
# Discrepancies

def is_discrepancy(rec: dict[str, Any]) -> bool:
    if rec.get("status") == "skip":
        return False
    return (outcome(rec) != "pass" or rec.get("special") not in (None, "match")  # a malformed status is an error
            or bool(rec.get("invalid_input")))


#: Column order of a discrepancy row in the page's JSON (the JS reads the same indices).
ROW_FIELDS = ("framework", "device", "dtype", "mode", "op", "variant", "check", "case_id", "status",
              "special", "max_ulp", "excess", "known", "outcome", "invalid_handling", "cotangent", "cause")

OUTCOME_RANK = {"fail": 0, "error": 1, "known": 2, "pass": 3, "skip": 4}


def discrepancy_row(rec: dict[str, Any]) -> list[Any]:
    known = (rec.get("known") or {}).get("id") if isinstance(rec.get("known"), dict) else None
    return [rec.get("framework"), rec.get("device"), rec.get("dtype"), rec.get("mode"), rec.get("op"),
            rec.get("variant") or "default", rec.get("check"), rec.get("case_id"), rec.get("status"),
            rec.get("special"), _json_num(rec.get("max_ulp")), _json_num(rec.get("excess")), known,
            outcome(rec), rec.get("invalid_handling"), rec.get("cotangent"), rec.get("cause")]


def _json_num(v: Any) -> Any:
    """Numbers as JSON-safe values: non-finite ones as their strings (records.jsonable)."""
    f = num(v)
    return None if f is None else jsonable(f)


def _shape(v: Any) -> list[int]:
    s = []
    while isinstance(v, list):
        s.append(len(v))
        v = v[0] if v else None
    return s


def _flatten(v: Any, out: list[Any], limit: int) -> int:
    """Appends up to `limit` leaves of v to out; returns the number of leaves."""
    if not isinstance(v, list):
        if len(out) < limit:
            out.append(v)
        return 1
    if not v or not isinstance(v[0], list):  # the innermost axis: a slice, not a loop
        if len(out) < limit:
            out.extend(v[:limit - len(out)])
        return len(v)
    n = 0
    for x in v:
        n += _flatten(x, out, limit)
    return n


def flat(v: Any, limit: int) -> dict[str, Any] | None:
    """A stored array as {s: shape, v: the first `limit` values in C order, n: total size}."""
    if v is None:
        return None
    if not isinstance(v, list):
        return {"s": [], "v": [v], "n": 1}
    vals: list[Any] = []
    n = _flatten(v, vals, limit)
    return {"s": _shape(v), "v": vals, "n": n}


def _cut(s: Any, n: int) -> str:
    s = "" if s is None else str(s)
    return s if len(s) <= n else s[:n] + f"\n... ({len(s) - n} more characters)"


DETAIL_META = ("test_id", "framework_version", "device_name", "family", "case_source", "tags", "p99_ulp",
               "max_abs_err", "max_rel_err", "n_bad", "n_checked", "rows_checked", "rows_total", "tolerance",
               "shape_ok", "dtype_ok", "expected_shape", "out_shape", "out_dtype", "out_device", "error_type",
               "error_origin", "invalid_input", "invalid_handling", "special_counts", "baseline",
               "reference_prec_bits", "reference_claim_bits", "framework_warnings")


def _model_text(kid: str, m: dict[str, Any]) -> str:
    """One line for a known entry's model judgment: what it rounds, to which dtype, and the
    largest error as a fraction of that dtype's budget."""
    mod = m.get("model") if isinstance(m.get("model"), dict) else {}
    rounds = ", ".join(str(r) for r in mod.get("rounds") or []) or "nothing"
    ex = m.get("excess")
    size = f"; largest error {ex:.3g} of its budget" if isinstance(ex, (int, float)) else ""
    return f"{kid}: model {'held' if m.get('holds') else 'did not hold'} ({rounds} rounded to {mod.get('dtype')}{size})"


def detail(rec: dict[str, Any], limit: int = 64, text: int = 4000) -> dict[str, Any]:
    """What the expanded row of a discrepancy shows, arrays cut to `limit` values."""
    d: dict[str, Any] = {"message": _cut(rec.get("message"), text), "repro": _cut(rec.get("repro"), text)}
    meta = {k: rec.get(k) for k in DETAIL_META if rec.get(k) not in (None, "", [], {})}
    if isinstance(meta.get("tolerance"), dict):
        meta["tolerance"] = {k: v for k, v in meta["tolerance"].items() if k != "reasons"}
    d["meta"] = meta
    if isinstance(rec.get("known"), dict):
        d["known"] = {k: rec["known"].get(k) for k in ("id", "description", "link", "source", "also")
                      if k != "also" or rec["known"].get("also")}
        models = rec["known"].get("models")
        if isinstance(models, dict) and models:  # the evidence that each entry's model held (known.Model)
            d["known"]["models"] = [_model_text(k, m) for k, m in models.items() if isinstance(m, dict)]
    if isinstance(rec.get("worst"), dict):
        d["worst"] = rec["worst"]
    if isinstance(rec.get("peers"), dict):  # harness/cause.py: the other implementations on this input
        d["peers"] = {str(k): {f: _json_num(v.get(f)) if f in ("max_ulp", "excess") else v.get(f)
                               for f in ("status", "special", "max_ulp", "excess")}
                      for k, v in rec["peers"].items() if isinstance(v, dict)}
    if isinstance(rec.get("bad"), list) and rec["bad"]:
        d["bad"] = rec["bad"][:8]
    inp = rec.get("input")
    if isinstance(inp, dict):
        d["input"] = {k: (flat(v, limit * 4) if isinstance(v, list) else v) for k, v in inp.items() if v is not None}
    if isinstance(rec.get("input_summary"), dict):
        d["input_summary"] = rec["input_summary"]
    out, ref = rec.get("output"), rec.get("reference")
    out, ref = (out if isinstance(out, dict) else None), (ref if isinstance(ref, dict) else None)
    if out is not None or ref is not None:
        names = list((ref or {}).keys()) + [n for n in (out or {}) if n not in (ref or {})]
        unanswered = _unanswered_rows(rec)
        cmp = {}
        for n in names:
            r = (ref or {}).get(n)
            r = r if isinstance(r, dict) else {}
            got = (out or {}).get(n)
            if unanswered and isinstance(got, list):  # shown as "–", not as a NaN the framework returned
                got = [(_blank(v) if i in unanswered else v) for i, v in enumerate(got)]
            cmp[n] = {"got": flat(got, limit), "hi": flat(r.get("hi"), limit),
                      "lo": flat(r.get("lo"), limit), "rounded": flat(r.get("rounded"), limit)}
        d["compare"] = cmp
        if unanswered:
            n_rows = len(next(iter(out.values()))) if out else 0
            answered = [i for i in range(n_rows) if i not in unanswered]
            d["meta"]["output_rows"] = (f"the output is the worst variant's, which answers row{'s' * (len(answered) != 1)} "
                                        f"{', '.join(map(str, answered))} only (the others shown as –)")
    return d


def _blank(v: Any) -> Any:
    """v with every element None (an array's shape kept)."""
    return [_blank(x) for x in v] if isinstance(v, list) else None


def _is_nan(v: Any) -> bool:
    f = num(v)
    return f is not None and math.isnan(f)


def _unanswered_rows(rec: dict[str, Any]) -> set[int] | None:
    """A batch_invariance record's `output` is its worst variant's answer in the case's layout,
    NaN in the rows that variant did not answer (it answers one row): those rows, all NaN in every
    output where the exact value is not; None for any other record."""
    out, ref = rec.get("output"), rec.get("reference")
    if rec.get("check") != "batch_invariance" or not isinstance(out, dict) or not out:
        return None
    rows: set[int] | None = None
    for name, v in out.items():
        r = (ref or {}).get(name) if isinstance(ref, dict) else None
        hi = r.get("hi") if isinstance(r, dict) else None
        if not isinstance(v, list) or not v:
            return None
        mine = set()
        for i, row in enumerate(v):
            vals = row if isinstance(row, list) else [row]
            exact = (hi[i] if isinstance(hi, list) and i < len(hi) else None)
            exact = exact if isinstance(exact, list) else [exact]
            if all(map(_is_nan, vals)) and not all(map(_is_nan, exact)):
                mine.add(i)
        rows = mine if rows is None else rows & mine
    return rows or None


# ---------------------------------------------------------------------------------------------
# Semantics matrix: what each framework returns on special inputs

def _has_nonfinite(v: Any) -> bool:
    if isinstance(v, list):
        return any(_has_nonfinite(x) for x in v)
    return isinstance(v, str) and v in ("inf", "-inf", "nan")


def has_special_input(rec: dict[str, Any]) -> bool:
    inp = rec.get("input")
    if isinstance(inp, dict) and _has_nonfinite(inp.get("logits")):
        return True
    s = rec.get("input_summary")
    if isinstance(s, dict) and any((s.get(k) or 0) > 0 for k in ("n_nan", "n_posinf", "n_neginf")):
        return True
    return bool(rec.get("invalid_input")) or rec.get("special") not in (None, "match")


def short_value(v: Any, n: int = 6) -> str:
    """[nan, 0, 0]: a few values, 4 significant digits."""
    if v is None:
        return ""
    f = flat(v, n)
    assert f is not None

    def one(x: Any) -> str:
        if isinstance(x, str):
            return x
        if isinstance(x, bool) or x is None:
            return str(x)
        if isinstance(x, int):
            return str(x)
        return f"{x:.4g}"

    body = ", ".join(one(x) for x in f["v"]) + (", ..." if f["n"] > len(f["v"]) else "")
    return body if not f["s"] else f"[{body}]"


def _text(v: Any) -> str | None:
    """A field that should hold a name (or null), as one: a damaged record's value shown as it is."""
    return v if v is None or isinstance(v, str) else str(v)


def _sem_cell(rec: dict[str, Any]) -> dict[str, Any]:
    st, sp = rec.get("status"), rec.get("special")
    sp = _text(sp)
    if st == "error" or sp == "raised" or rec.get("invalid_handling") == "raised":
        value = f"raised {rec.get('error_type') or ''}".strip()
    elif isinstance(rec.get("output"), dict) and "out" in rec["output"]:
        value = short_value(rec["output"]["out"])
    elif isinstance(rec.get("special_counts"), dict) and rec["special_counts"]:
        value = ", ".join(f"{k} ×{v}" for k, v in sorted(rec["special_counts"].items()))
    else:
        value = "finite"  # a large output without special values: its error is in the other views
    return {"special": sp or st, "status": st, "outcome": outcome(rec), "value": value,
            "invalid": _text(rec.get("invalid_handling")), "max_ulp": num(rec.get("max_ulp")),
            "known": ((rec.get("known") or {}).get("id") if isinstance(rec.get("known"), dict) else None)}


def _input_text(s: dict[str, Any]) -> str:
    parts = [f"shape {s.get('shape')}"]
    for k, name in (("n_nan", "nan"), ("n_posinf", "+inf"), ("n_neginf", "-inf")):
        if s.get(k):
            parts.append(f"{name} ×{s[k]}")
    return ", ".join(parts)


def semantics(results: list[dict[str, Any]], limit: int = 300) -> dict[str, Any]:
    """Rows (case, op, dtype, device, mode) of forward results where some implementation saw a
    special input (non-finite logits, invalid labels) or returned a special-value class other
    than `match`; one cell per implementation. Rows that differ only by mode and agree on every
    implementation they share are merged; rows where implementations disagree come first."""
    rows: dict[tuple, dict[str, Any]] = {}
    special_rows: set[tuple] = set()
    for r in results:
        if r.get("check") != "forward" or r.get("status") == "skip":
            continue
        k = (r.get("case_id"), r.get("op"), r.get("dtype"), r.get("device"), r.get("mode"))
        if has_special_input(r):
            special_rows.add(k)
        row = rows.setdefault(k, {"case_id": k[0], "op": k[1], "dtype": k[2], "device": k[3], "modes": [k[4]],
                                  "input": "", "labels": "", "exact": "", "cells": {}})
        row["cells"][impl_label(r)] = _sem_cell(r)
        inp = r.get("input")
        if isinstance(inp, dict) and not row["input"]:
            row["input"] = short_value(inp.get("logits"), 8)
            if inp.get("labels") is not None:
                row["labels"] = short_value(inp.get("labels"), 8)
        elif isinstance(r.get("input_summary"), dict) and not row["input"]:
            row["input"] = _input_text(r["input_summary"])
        if isinstance(r.get("options"), dict) and r["options"] and "options" not in row:  # the op's options change the exact function (S19)
            row["options"] = ", ".join(f"{k}={v}" for k, v in sorted(r["options"].items()))
            row["input"] += f" ({row['options']})"
        ref = r.get("reference")
        if isinstance(ref, dict) and isinstance(ref.get("out"), dict) and not row["exact"]:
            row["exact"] = short_value(ref["out"].get("rounded", ref["out"].get("hi")))

    def sig(c: dict[str, Any]) -> tuple:
        return (c["special"], c["outcome"], c["value"], c["invalid"])

    merged: list[dict[str, Any]] = []
    by_place: dict[tuple, list[dict[str, Any]]] = {}
    for k in sorted(special_rows, key=lambda k: tuple(str(x) for x in k)):
        row = rows[k]
        for other in by_place.setdefault(k[:4], []):
            common = set(other["cells"]) & set(row["cells"])
            if common and all(sig(other["cells"][lab]) == sig(row["cells"][lab]) for lab in common):
                other["modes"].extend(row["modes"])
                for lab, c in row["cells"].items():
                    other["cells"].setdefault(lab, c)
                break
        else:
            by_place[k[:4]].append(row)
            merged.append(row)
    impls: set[str] = set()
    for row in merged:
        impls.update(row["cells"])
        row["disagree"] = len({sig(c)[:3] for c in row["cells"].values()}) > 1
    dt_rank = {d: i for i, d in enumerate(D.DTYPE_NAMES)}
    merged.sort(key=lambda r: (not r["disagree"], str(r["case_id"]), str(r["op"]), dt_rank.get(r["dtype"], 9),
                               str(r["device"])))
    return {"rows": merged[:limit], "total": len(merged), "impls": sorted(impls)}


# ---------------------------------------------------------------------------------------------
# Timing

def timing(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in results:
        if r.get("status") == "skip":
            continue
        groups.setdefault((r.get("framework"), r.get("device"), r.get("dtype")), []).append(r)
    rank = {d: i for i, d in enumerate(D.DTYPE_NAMES)}
    out = []
    for (fw, dev, dt), rs in sorted(groups.items(), key=lambda kv: (str(kv[0][0]), str(kv[0][1]),
                                                                    rank.get(kv[0][2], 9), str(kv[0][2]))):
        tf = [x for x in (num(r.get("time_framework_s")) for r in rs) if x is not None and math.isfinite(x)]
        t1 = [x for x in (num(r.get("time_first_call_s")) for r in rs) if x is not None and math.isfinite(x)]
        tr = [x for x in (num(r.get("time_reference_s")) for r in rs) if x is not None and math.isfinite(x)]
        tv = [x for x in (num(r.get("time_verdict_s")) for r in rs) if x is not None and math.isfinite(x)]
        out.append({"framework": fw, "device": dev, "dtype": dt, "n": len(rs), "n_timed": len(tf),
                    "median_framework_s": statistics.median(tf) if tf else None,
                    "max_framework_s": max(tf) if tf else None,
                    "median_first_call_s": statistics.median(t1) if t1 else None,
                    "sum_reference_s": sum(tr) if tr else None, "sum_verdict_s": sum(tv) if tv else None})
    return out


# ---------------------------------------------------------------------------------------------
# Findings: the discrepancies grouped by what they are

FINDING_RESULTS = 30  # results listed under a finding (the worst first); the table has them all


def finding_key(rec: dict[str, Any]) -> tuple[str, ...]:
    """A known discrepancy's id, or for another its special-value class (or "over budget"),
    op and case: the same defect across frameworks, dtypes, modes and checks is one finding."""
    k = rec.get("known")
    if isinstance(k, dict):
        return ("known", str(k.get("id") or "?"))
    special = rec.get("special")
    what = "over budget" if special in (None, "match") else str(special)
    if what == "over budget" and not_bitwise_invariant(rec):
        what = "not_invariant"  # the class the runner gives such a result (records written before it: match)
    return (outcome(rec), what, str(rec.get("op")), str(rec.get("case_id")))


def not_bitwise_invariant(rec: dict[str, Any]) -> bool:
    """An invariance result that fails only because a variant differs from its base bit for bit
    (the bitwise rule) while every variant is within its budget."""
    inv = rec.get("invariance")
    if not is_invariance(rec) or rec.get("status") != "fail" or not isinstance(inv, dict):
        return False
    variants = inv.get("results")
    return bool(num(inv.get("differing"))) and isinstance(variants, list) and all(
        isinstance(v, dict) and v.get("status") == "pass" for v in variants)


def _ops_checks(recs: list[dict[str, Any]]) -> list[str]:
    """'op (check, check, ...)' per op, in the registry's order: one line per op, not per pair."""
    by_op: dict[str, set[str]] = {}
    for r in recs:
        by_op.setdefault(str(r.get("op")), set()).add(check_label(r))
    order = {o: i for i, o in enumerate(O.OP_NAMES)}
    return [f"{op} ({', '.join(sorted(cs))})" for op, cs in sorted(by_op.items(), key=lambda kv: (order.get(kv[0], 9), kv[0]))]


def result_label(rec: dict[str, Any]) -> str:
    """The result's test id, or the same made of its fields (a record written without one)."""
    if rec.get("test_id"):
        return str(rec["test_id"])
    return test_id(*(rec.get(k) for k in ("framework", "device", "dtype", "mode", "op", "variant", "check",
                                          "cotangent", "case_id")))


def _worst(rec: dict[str, Any]) -> float:
    if rec.get("special") not in (None, "match") or rec.get("status") == "error":
        return math.inf
    u = num(rec.get("max_ulp"))
    return -1.0 if u is None or math.isnan(u) else u


def findings(results: list[dict[str, Any]], text: int = 3000) -> list[dict[str, Any]]:
    """One entry per finding among the discrepancies: its results counted by outcome and cause,
    the implementations, ops and checks, dtypes and modes it spans, the worst results (at most
    FINDING_RESULTS) and the repro of the worst. New failures first, then by count."""
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for r in results:
        if is_discrepancy(r):
            groups.setdefault(finding_key(r), []).append(r)
    rank = {d: i for i, d in enumerate(D.DTYPE_NAMES)}
    out = []
    for key, recs in groups.items():
        recs.sort(key=lambda r: (-_worst(r), result_label(r)))
        known = key[1] if key[0] == "known" else None
        kd = recs[0].get("known") if known else None
        outcomes: dict[str, int] = {}
        causes: dict[str, int] = {}
        for r in recs:
            o = outcome(r)
            outcomes[o] = outcomes.get(o, 0) + 1
            if r.get("cause"):
                causes[str(r["cause"])] = causes.get(str(r["cause"]), 0) + 1
        worst = next((r for r in recs if r.get("repro")), recs[0])
        ulps = [u for u in (num(r.get("max_ulp")) for r in recs) if u is not None and not math.isnan(u)]
        out.append({
            "key": "/".join(key), "known": known,
            "title": known or " · ".join(key[1:]),
            "description": (kd or {}).get("description", "") if isinstance(kd, dict) else "",
            "new": any(o in ("fail", "error") for o in outcomes),
            "n": len(recs), "outcomes": outcomes, "causes": causes,
            "frameworks": sorted({impl_label(r) for r in recs}),
            "ops": _ops_checks(recs),
            "dtypes": sorted({str(r.get("dtype")) for r in recs}, key=lambda d: (rank.get(d, 9), d)),
            "modes": sorted({str(r.get("mode")) for r in recs}),
            "cases": sorted({str(r.get("case_id")) for r in recs}),
            "worst_ulp": max(ulps) if ulps else None,
            "results": [{"test_id": result_label(r), "outcome": outcome(r), "special": r.get("special"),
                         "max_ulp": num(r.get("max_ulp")), "excess": num(r.get("excess")), "cause": r.get("cause")}
                        for r in recs[:FINDING_RESULTS]],
            "repro": _cut(worst.get("repro"), text), "repro_of": result_label(worst),
        })
    out.sort(key=lambda f: (not f["new"], -f["n"], f["title"]))
    return out


# ---------------------------------------------------------------------------------------------
# Known discrepancies

def known_groups(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    groups: dict[str, dict[str, Any]] = {}
    for r in results:
        k = r.get("known")
        if not isinstance(k, dict):
            continue
        kid = str(k.get("id") or "?")
        g = groups.setdefault(kid, {"id": kid, "description": k.get("description") or "", "link": k.get("link") or "",
                                    "source": k.get("source") or "", "n": 0, "statuses": {}, "frameworks": set(),
                                    "ops": set(), "dtypes": set(), "devices": set(), "modes": set(), "cases": set(),
                                    "worst_ulp": None})
        g["n"] += 1
        st = str(r.get("status"))
        g["statuses"][st] = g["statuses"].get(st, 0) + 1
        g["frameworks"].add(impl_label(r))
        op = r.get("op") if r.get("variant") in (None, "default") else f"{r.get('op')}:{r.get('variant')}"
        g["ops"].add(f"{op} {check_label(r)}")
        for f, s in (("dtype", "dtypes"), ("device", "devices"), ("mode", "modes"), ("case_id", "cases")):
            g[s].add(str(r.get(f)))
        u = num(r.get("max_ulp"))
        if u is not None and not math.isnan(u):
            g["worst_ulp"] = u if g["worst_ulp"] is None else max(g["worst_ulp"], u)
    out = []
    rank = {d: i for i, d in enumerate(D.DTYPE_NAMES)}
    for g in sorted(groups.values(), key=lambda g: (-g["n"], g["id"])):
        for s in ("frameworks", "ops", "devices", "modes", "cases"):
            g[s] = sorted(g[s])
        g["dtypes"] = sorted(g["dtypes"], key=lambda d: (rank.get(d, 9), d))
        out.append(g)
    return out


# ---------------------------------------------------------------------------------------------
# Large vocabularies

def class_count(rec: dict[str, Any]) -> int | None:
    """Size of the class axis: from `input` (logits and axis) or `input_summary.shape` (whose axis
    is not recorded: the last one, the cases' default, is assumed)."""
    inp = rec.get("input")
    if isinstance(inp, dict) and isinstance(inp.get("logits"), list):
        shp = _shape(inp["logits"])
        if shp:
            ax = inp.get("axis", -1)
            try:
                return int(shp[int(ax)])
            except (IndexError, TypeError, ValueError):
                return int(shp[-1])
    s = rec.get("input_summary")
    if isinstance(s, dict) and isinstance(s.get("shape"), list) and s["shape"]:
        return int(s["shape"][-1])
    return None


def large_vocab(results: list[dict[str, Any]], family: str = "large_vocab") -> list[dict[str, Any]]:
    """Worst max_ulp per (framework, dtype, class count) over the family's results."""
    worst: dict[tuple, float] = {}
    for r in results:
        fam = r.get("family") or str(r.get("case_id", "")).split("/")[0]
        if fam != family or r.get("status") == "skip":
            continue
        u, c = num(r.get("max_ulp")), class_count(r)
        if u is None or c is None or math.isnan(u):
            continue
        k = (str(r.get("framework")), str(r.get("dtype")), c)
        worst[k] = max(worst.get(k, u), u)
    return [{"framework": k[0], "dtype": k[1], "classes": k[2], "max_ulp": v} for k, v in sorted(worst.items())]


# ---------------------------------------------------------------------------------------------

def fmt_num(v: Any) -> str:
    f = num(v)
    if f is None:
        return "–"
    if math.isnan(f):
        return "nan"
    if math.isinf(f):
        return "∞" if f > 0 else "−∞"
    if f == 0:
        return "0"
    a = abs(f)
    if a >= 1e5 or a < 1e-3:
        return f"{f:.2e}"
    if a >= 100:
        return f"{f:.0f}"
    return f"{f:.3g}"


def fmt_time(v: Any) -> str:
    f = num(v)
    if f is None:
        return "–"
    if f < 1e-3:
        return f"{f * 1e6:.0f} µs"
    if f < 1:
        return f"{f * 1e3:.1f} ms"
    return f"{f:.2f} s"

