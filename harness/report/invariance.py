"""The report's Invariance section: the invariance checks' results (harness/invariance.py) as a
matrix of their own, and what a result's details show of its `invariance` and `pair` fields.

Rows are (framework, device, dtype), columns (check, mode) for the four checks (eager_vs_jit is
recorded in jit only). A cell counts its results by outcome like the summary matrix and says
whether every one is bitwise invariant ("bitwise equal") or how many have a variant that differs
from its base bit for bit, with the largest ULP distance between a variant and its base
("3 differ, max 4 ULPs"). Clicking a cell lists its results that differ or do not pass, each with
its `invariance` summary, the variants that differ or fail and the elements where the repro's two
variants differ (`pair`); the list is embedded as compact JSON (`data`) cut to INV_BUDGET bytes.
The same entry is added to the expanded row of the discrepancy table.

Only the data lives here (`section` is the template's context for it, None without invariance
results). The markup is the `{% if invariance %}` parts of templates/report.html.j2 (the section
after the summary, the summary's note, the top-bar link, the data block), the style and script are
templates/invariance.css and templates/invariance.js, inlined by the template only with the section,
so a report without invariance results is the page it was before the section existed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import dtypes as D
from .. import ops as O
from ..vocab import INVARIANCE_CHECKS
from . import tables as T
from .crossfw import to_array
from .numbers import num

CHECKS = tuple(INVARIANCE_CHECKS)
#: Bytes (JSON characters) the embedded entries may take; variant lists are cut first, then entries.
INV_BUDGET = 1_500_000
#: The variants of one result listed (those that differ or fail, the most different first).
VARIANT_LIMIT = 16
#: The elements of the repro's two variants listed where they differ.
PAIR_LIMIT = 8
#: Fields of a variant's row in an entry's `rows` (the JS reads the same order); `equal`: the
#: further variants, bitwise equal to this one's base and judged alike, that the row stands for.
VARIANT_FIELDS = ("variant", "base", "status", "special", "max_ulp", "excess", "n_diff", "ulp_between", "equal")
#: The policy's invariance rules (harness/policy.py), as the lead explains them.
RULES = {"bitwise": "any bitwise difference between a variant and its base fails",
         "budget": "a difference is reported; a result fails only where a variant fails its budget"}
SUMMARY_FIELDS = ("rule", "base", "variants", "differing", "bitwise_differences", "max_ulp_between", "worst")


is_invariance = T.is_invariance


def info(rec: dict[str, Any]) -> dict[str, Any] | None:
    """The record's `invariance` field when it is one (a damaged file may hold anything)."""
    v = rec.get("invariance")
    return v if isinstance(v, dict) else None


def _int(v: Any) -> int:
    f = num(v)
    return int(f) if f is not None and math.isfinite(f) else 0


def ulps_text(u: float | None) -> str:
    if u is None:
        return "? ULPs"
    return f"{T.fmt_num(u)} ULP{'' if u == 1 else 's'}"


# ---------------------------------------------------------------------------------------------
# The matrix

@dataclass
class InvCell(T.Cell):
    with_info: int = 0  # results that carry `invariance` (not skipped, not broken)
    differ: int = 0  # results with a variant that differs from its base bit for bit
    variants: int = 0  # variants compared, over the results
    variants_differing: int = 0
    elements: int = 0  # elements that differ, over the results
    max_between: float | None = None  # the largest ULP distance between a variant and its base
    not_run: int = 0  # results with variants that could not run
    discrepancies: int = 0  # rows of the discrepancy table
    ops: dict[str, list[int]] = field(default_factory=dict)  # op -> [results, differ, not passing]
    rules: set[str] = field(default_factory=set)

    @property
    def cls(self) -> str:
        """The summary's colours, and "differ" (pale blue) for a passing cell whose bits differ."""
        c = super().cls
        return "differ" if c == "green" and self.differ else c

    @property
    def inv_text(self) -> str:
        """The cell's word on invariance: "bitwise equal", or "n differ, max u ULPs" (n results have
        a variant that differs from its base); "" when no result carries the comparison."""
        if not self.with_info:
            return ""
        if not self.differ:
            return "bitwise equal"
        zeros = " (±0)" if self.max_between == 0 else ""  # bits differ 0 ULPs apart: +0 against -0
        return f"{self.differ} differ, max {ulps_text(self.max_between)}{zeros}"

    def add(self, rec: dict[str, Any]) -> None:
        o = T.outcome(rec)
        self.counts[o] += 1
        if T.is_discrepancy(rec):
            self.discrepancies += 1
        op = str(rec.get("op"))
        per_op = self.ops.setdefault(op, [0, 0, 0])
        per_op[0] += 1
        if o not in ("pass", "skip"):
            per_op[2] += 1
        inv = info(rec)
        if inv is None or o == "skip":
            return
        self.with_info += 1
        if inv.get("rule"):
            self.rules.add(str(inv["rule"]))
        self.variants += _int(inv.get("variants"))
        d = _int(inv.get("differing"))
        between = num(inv.get("max_ulp_between"))
        if d:
            self.differ += 1
            per_op[1] += 1
            self.variants_differing += d
            self.elements += _int(inv.get("bitwise_differences"))
            u = math.inf if between is None or math.isnan(between) else between
            self.max_between = u if self.max_between is None else max(self.max_between, u)
        if inv.get("not_run"):
            self.not_run += 1

    def title(self) -> str:
        parts = [f"{k}: {v}" for k, v in self.counts.items() if v]
        if self.with_info:
            if self.differ:
                parts.append(f"{self.differ} of {self.with_info} results have a variant that differs from its base bit "
                             f"for bit ({self.variants_differing} of {self.variants} variants, {self.elements} elements; "
                             f"at most {ulps_text(self.max_between)} apart)")
            else:
                parts.append(f"every variant of the {self.with_info} results equals its base bit for bit "
                             f"({self.variants} variants)")
        if self.not_run:
            parts.append(f"{self.not_run} with variants not run")
        if self.rules:
            parts.append("rule: " + ", ".join(sorted(self.rules)))
        ops = [f"{op} {n}" + (f" ({d} differ)" if d else "") + (f" ({b} not passing)" if b else "")
               for op, (n, d, b) in sorted(self.ops.items(), key=lambda kv: _op_rank(kv[0]))]
        parts.append("ops: " + ", ".join(ops))
        return "; ".join(parts)


def _op_rank(op: str) -> tuple[int, str]:
    return (O.OP_NAMES.index(op) if op in O.OP_NAMES else 99, op)


def _order(values: set[Any], preferred: list[str] | tuple[str, ...]) -> list[Any]:
    first = [v for v in preferred if v in values]
    return first + sorted((v for v in values if v not in preferred), key=str)


def matrix(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Rows (framework, device, dtype), columns (check, mode), an InvCell each; `spans`: each
    check's columns; `totals`: an InvCell per row; `n`: the invariance results."""
    cells: dict[tuple, InvCell] = {}
    totals: dict[tuple, InvCell] = {}
    n = 0
    for r in results:
        if not is_invariance(r):
            continue
        n += 1
        rk = (r.get("framework"), r.get("device"), r.get("dtype"))
        ck = (r.get("check"), r.get("mode"))
        cells.setdefault((rk, ck), InvCell()).add(r)
        totals.setdefault(rk, InvCell()).add(r)
    rks, cks = {k[0] for k in cells}, {k[1] for k in cells}
    rows = [(f, d, t) for f in _order({k[0] for k in rks}, []) for d in _order({k[1] for k in rks}, O.DEVICES)
            for t in _order({k[2] for k in rks}, D.DTYPE_NAMES) if (f, d, t) in rks]
    checks = _order({k[0] for k in cks}, CHECKS)
    modes = _order({k[1] for k in cks}, O.MODES)
    cols = [(c, m) for c in checks for m in modes if (c, m) in cks]
    spans = [(c, sum(1 for k in cols if k[0] == c)) for c in checks]
    return {"rows": rows, "cols": cols, "cells": cells, "totals": totals, "spans": spans, "n": n}


# ---------------------------------------------------------------------------------------------
# Entries: what a result's details show of its invariance

def _jnum(v: Any) -> Any:
    return T._json_num(v)


def summary(inv: dict[str, Any]) -> dict[str, Any]:
    """The `invariance` summary a detail panel shows (no per-variant rows)."""
    out = {k: inv.get(k) for k in SUMMARY_FIELDS}
    out["max_ulp_between"] = _jnum(inv.get("max_ulp_between"))
    return out


def _n(v: dict[str, Any], k: str, missing: float) -> float:
    f = num(v.get(k))
    return missing if f is None or math.isnan(f) else f


def notable(results: Any) -> list[dict[str, Any]]:
    """The variants to list: each one that differs from its base bit for bit (the most different
    first), then the ones that fail (do not pass) while equal to their base, one row per base and
    verdict with `equal`, how many more variants that row stands for (a batch_invariance base that
    fails fails alike in its 17 batches: one row, not 18)."""
    rows = [v for v in (results if isinstance(results, list) else []) if isinstance(v, dict)]
    differ = sorted((v for v in rows if _int(v.get("n_diff"))),
                    key=lambda v: (-_n(v, "ulp_between", math.inf), -_int(v.get("n_diff")), v.get("status") == "pass",
                                   -_n(v, "excess", math.inf)))
    groups: dict[tuple, dict[str, Any]] = {}
    for v in rows:
        if _int(v.get("n_diff")) or v.get("status") == "pass":
            continue
        root = v.get("base") if v.get("base") is not None else v.get("variant")
        k = (str(root), str(v.get("status")), str(v.get("special")), str(v.get("max_ulp")), str(v.get("excess")))
        g = groups.get(k)
        if g is None:
            groups[k] = dict(v, equal=0)
        else:
            g["equal"] += 1
            if v.get("variant") == root:  # the base itself stands for the others
                groups[k] = dict(v, equal=g["equal"])
    failing = sorted(groups.values(), key=lambda v: (-_n(v, "excess", math.inf), str(v.get("variant"))))
    return [dict(v, equal=0) for v in differ] + failing


def _ordinal(a: np.ndarray, dt: D.DType) -> np.ndarray:
    """Each value's place among dt's floats (the values exact in dt), +0 and -0 alike."""
    bits = a.astype(dt.np)
    width = bits.dtype.itemsize * 8
    i = bits.view({16: np.int16, 32: np.int32, 64: np.int64}[width]).astype(np.int64)
    return np.where(i >= 0, i, -(i & np.int64((1 << (width - 1)) - 1)))


def pair_diff(rec: dict[str, Any], limit: int = PAIR_LIMIT) -> dict[str, Any] | None:
    """The repro's two variants (`pair`) where they differ: {variants, rows, n (elements that
    differ), diff: [[output, index, value a, value b, ULPs apart]...] (at most `limit`)}. Indices
    are the case's: the first axis through `rows`. None without two variants to compare."""
    p = rec.get("pair")
    if not isinstance(p, dict) or not isinstance(p.get("outputs"), list) or len(p["outputs"]) != 2:
        return None
    a_out, b_out = p["outputs"]
    if not isinstance(a_out, dict) or not isinstance(b_out, dict):
        return None
    try:
        dt: D.DType | None = D.get(str(rec.get("dtype")))
    except Exception:  # noqa: BLE001 - an unknown dtype: no ULP distance
        dt = None
    rows = p.get("rows") if isinstance(p.get("rows"), list) else None
    diff: list[list[Any]] = []
    n = 0
    for name in a_out:
        if name not in b_out:
            continue
        a, b = to_array(a_out[name]), to_array(b_out[name])
        if a is None or b is None or a.shape != b.shape:
            continue
        same = (np.isnan(a) & np.isnan(b)) | (a.view(np.int64) == b.view(np.int64))
        where = np.argwhere(~same)
        n += len(where)
        for idx in where[:max(0, limit - len(diff))]:
            ix = [int(i) for i in idx]
            if rows is not None and ix and ix[0] < len(rows):
                ix[0] = int(rows[ix[0]])
            x, y = float(a[tuple(idx)]), float(b[tuple(idx)])
            u: float | None = None
            if dt is not None and math.isfinite(x) and math.isfinite(y):
                ox, oy = _ordinal(np.array([x]), dt), _ordinal(np.array([y]), dt)
                u = float(abs(int(ox[0]) - int(oy[0])))
            diff.append([name, ix, _jnum(x), _jnum(y), u])
    labels = p.get("variants") if isinstance(p.get("variants"), list) else []
    return {"variants": [str(v) for v in labels], "rows": rows, "n": n, "diff": diff}


def entry(rec: dict[str, Any], disc: int | None, limit: int = VARIANT_LIMIT) -> dict[str, Any]:
    """What a detail panel shows of one invariance result."""
    inv = info(rec) or {}
    picked = notable(inv.get("results"))
    shown = picked[:limit]
    left = picked[limit:]
    e: dict[str, Any] = {
        "key": [rec.get("framework"), rec.get("device"), rec.get("dtype"), rec.get("check"), rec.get("mode")],
        "id": T.result_label(rec),
        "op": rec.get("op") if rec.get("variant") in (None, "default") else f"{rec.get('op')}:{rec.get('variant')}",
        "case": rec.get("case_id"), "outcome": T.outcome(rec), "status": rec.get("status"),
        "special": rec.get("special"), "max_ulp": _jnum(rec.get("max_ulp")), "excess": _jnum(rec.get("excess")),
        "known": (rec.get("known") or {}).get("id") if isinstance(rec.get("known"), dict) else None,
        "message": T._cut(rec.get("message"), 400), "disc": disc,
        "inv": summary(inv) if inv else None,
        "rows": [[v.get("variant"), v.get("base"), v.get("status"), v.get("special"), _jnum(v.get("max_ulp")),
                  _jnum(v.get("excess")), _int(v.get("n_diff")), _jnum(v.get("ulp_between")), v["equal"]]
                 for v in shown],
    }
    if left:
        e["more"] = {"n": sum(1 + v["equal"] for v in left), "differ": sum(1 for v in left if _int(v.get("n_diff"))),
                     "fail": sum(1 + v["equal"] for v in left if v.get("status") != "pass")}
    if isinstance(inv.get("threads"), dict) and inv["threads"]:
        e["threads"] = inv["threads"]
    if isinstance(inv.get("not_run"), list) and inv["not_run"]:
        e["not_run"] = [str(s)[:300] for s in inv["not_run"][:5]]
        if len(inv["not_run"]) > 5:
            e["not_run"].append(f"... and {len(inv['not_run']) - 5} more")
    pd = pair_diff(rec)
    if pd is not None:
        e["pair"] = pd
    return e


def wanted(rec: dict[str, Any]) -> bool:
    """An invariance result a cell lists: one that differs, does not pass, or is a discrepancy."""
    if not is_invariance(rec) or rec.get("status") == "skip":
        return False
    inv = info(rec)
    return T.outcome(rec) != "pass" or T.is_discrepancy(rec) or (inv is not None and _int(inv.get("differing")) > 0)


def data(results: list[dict[str, Any]], disc_recs: list[dict[str, Any]], budget: int | None = None) -> dict[str, Any]:
    """The embedded entries, the worst first (new failures, then the most different): {"cols":
    VARIANT_FIELDS, "checks", "entries": [...], "disc": {discrepancy row index: entry index},
    "omitted": entries left out to fit `budget` (INV_BUDGET), "variant_limit": the variants
    listed per entry (VARIANT_LIMIT, fewer where the entries did not fit)}."""
    from .render import dumps

    budget = INV_BUDGET if budget is None else budget
    row_of = {id(r): i for i, r in enumerate(disc_recs)}
    recs = [r for r in results if wanted(r)]

    def rank(r: dict[str, Any]) -> tuple:
        u = num((info(r) or {}).get("max_ulp_between"))
        return (T.OUTCOME_RANK.get(T.outcome(r), 9), -(u if u is not None and not math.isnan(u) else math.inf),
                T.result_label(r))

    recs.sort(key=rank)
    entries: list[dict[str, Any]] = []
    sizes: list[int] = []
    for limit in (VARIANT_LIMIT, 6, 2):
        entries = [entry(r, row_of.get(id(r)), limit) for r in recs]
        sizes = [len(dumps(e)) for e in entries]
        if sum(sizes) <= budget:
            break
    kept, used = [], 0
    for e, s in zip(entries, sizes):
        if used + s > budget:
            continue
        kept.append(e)
        used += s
    disc = {str(e["disc"]): i for i, e in enumerate(kept) if e["disc"] is not None}
    return {"cols": list(VARIANT_FIELDS), "checks": list(CHECKS), "entries": kept, "disc": disc,
            "omitted": len(entries) - len(kept), "variant_limit": limit}


# ---------------------------------------------------------------------------------------------
# The section

def rules(mx: dict[str, Any]) -> list[str]:
    """The policy rules (RULES) the matrix's results were judged by."""
    return sorted({r for c in mx["cells"].values() for r in c.rules})


def section(results: list[dict[str, Any]], disc_recs: list[dict[str, Any]],
            budget: int | None = None) -> dict[str, Any] | None:
    """What the template's Invariance section, its note in the summary and its data block show:
    {"matrix": matrix(), "checks": the checks in the matrix, "rules", "rule_text": RULES,
    "data": data()}; None without invariance results (no section, link, note, style, script)."""
    mx = matrix(results)
    if not mx["n"]:
        return None
    return {"matrix": mx, "checks": [c for c, _ in mx["spans"]], "rules": rules(mx), "rule_text": RULES,
            "data": data(results, disc_recs, budget)}


__all__ = ["CHECKS", "InvCell", "data", "entry", "is_invariance", "matrix", "pair_diff", "section"]
