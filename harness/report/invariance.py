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

The section's markup, style and script live here and are spliced into the rendered page by
`splice` (only when the results hold invariance records, so a report without them is unchanged).
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
class InvCell:
    counts: dict[str, int] = field(default_factory=lambda: {k: 0 for k in T.OUTCOMES})
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
            return "differ" if self.differ else "green"
        return "grey"

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
# Markup, style and script

SECTION = """\
<section id="invariance">
  <h2>Invariance</h2>
  <p class="lead">Each invariance check (harness/invariance.py) runs an op's forward call in variants that should give the same answer (a row alone and in batches; repeated calls and thread counts; eager and compiled; the classes permuted), compares each with its base bit for bit and judges each against the exact reference. Per framework, device and dtype (rows) and check and mode (columns): passed / total and the other outcomes, then <i>bitwise equal</i> (every variant of every result equals its base) or <i>n differ, max u ULPs</i> (n results have a variant that differs, at most u ULPs from its base). {% for r in inv.rules %}Rule <b>{{ r }}</b>: {{ inv.rule_text[r] or "" }}. {% endfor %}<span class="sw green"></span> all pass, bitwise equal <span class="sw differ"></span> all pass, some differ <span class="sw amber"></span> only known discrepancies <span class="sw red"></span> new failures or errors <span class="sw grey"></span> skipped. Click a cell to list its results that differ or fail, with their variants.</p>
  <div class="scroll">
  <table class="matrix" id="inv-matrix" data-results="{{ mx.n }}">
    <thead>
      <tr><th rowspan="2">framework</th><th rowspan="2">device</th><th rowspan="2">dtype</th>
      {% for chk, n in mx.spans %}<th class="op" colspan="{{ n }}">{{ chk }}</th>{% endfor %}
      <th rowspan="2" class="tot">all</th></tr>
      <tr>{% for chk, mode in mx.cols %}<th class="chk">{{ mode }}</th>{% endfor %}</tr>
    </thead>
    <tbody>
    {% set prev = namespace(fw=none) %}
    {% for rk in mx.rows %}
      {% set fw, dev, dt = rk %}
      <tr class="{{ 'first' if fw != prev.fw }}">
        <th class="rh{{ ' rep' if fw == prev.fw }}">{{ fw }}</th><th class="rh">{{ dev }}</th><th class="rh">{{ dt }}</th>
        {% for ck in mx.cols %}
          {% set c = mx.cells.get((rk, ck)) %}
          {% if c %}
          <td class="cell {{ c.cls }}" title="{{ c.title() }}" data-pass="{{ c.counts.pass }}" data-fail="{{ c.counts.fail }}" data-error="{{ c.counts.error }}" data-known="{{ c.counts.known }}" data-skip="{{ c.counts.skip }}" data-differ="{{ c.differ }}" data-disc="{{ c.discrepancies }}"
              data-key="{{ [fw, dev, dt, ck[0], ck[1]] | tojson | forceescape }}">
            {% if c.total == c.counts.skip %}<span class="cnt">skip {{ c.counts.skip }}</span>
            {% else %}<span class="cnt"><b>{{ c.counts.pass }}</b>/{{ c.total - c.counts.skip }}</span>{% endif %}
            <span class="tags">{% if c.counts.fail %}<i class="t fail">{{ c.counts.fail }} fail</i>{% endif %}{% if c.counts.error %}<i class="t error">{{ c.counts.error }} err</i>{% endif %}{% if c.counts.known %}<i class="t known">{{ c.counts.known }} known</i>{% endif %}{% if c.counts.skip and c.total != c.counts.skip %}<i class="t skip">{{ c.counts.skip }} skip</i>{% endif %}</span>
            {% if c.inv_text %}<span class="inv">{{ c.inv_text }}</span>{% endif %}
          </td>
          {% else %}<td class="cell none">·</td>{% endif %}
        {% endfor %}
        {% set t = mx.totals[rk] %}
        <td class="cell tot" title="{{ t.title() }}"><span class="cnt"><b>{{ t.counts.pass }}</b>/{{ t.total - t.counts.skip }}</span><span class="tags">{% if t.counts.fail %}<i class="t fail">{{ t.counts.fail }} fail</i>{% endif %}{% if t.counts.error %}<i class="t error">{{ t.counts.error }} err</i>{% endif %}{% if t.counts.known %}<i class="t known">{{ t.counts.known }} known</i>{% endif %}{% if t.counts.skip %}<i class="t skip">{{ t.counts.skip }} skip</i>{% endif %}</span>{% if t.inv_text %}<span class="inv">{{ t.inv_text }}</span>{% endif %}</td>
      </tr>
      {% set prev.fw = fw %}
    {% endfor %}
    </tbody>
  </table>
  </div>
  <div id="inv-panel" hidden>
    <h3 id="inv-panel-title"></h3>
    <p class="muted small" id="inv-panel-count"></p>
    <button type="button" id="inv-filter" hidden></button>
    <div id="inv-panel-list"></div>
  </div>
  <noscript><p class="empty">The lists behind the cells need JavaScript; the results files hold every variant.</p></noscript>
</section>
"""

NOTE = ('<p class="muted small" id="summary-invariance-note">The {n} results of the invariance checks '
        '({checks}) are not in this matrix: they have their own, <a href="#invariance">Invariance</a>.</p>\n')

CSS = """
/* invariance */
td.cell.differ { background: var(--info-bg); }
.sw.differ { background: var(--info-bg); }
td.cell .inv { display: block; color: #57606a; font-size: 11px; white-space: nowrap; }
#inv-matrix td.cell.sel { outline: 2px solid var(--accent); outline-offset: -2px; }
#inv-panel { margin-top: 12px; }
#inv-panel h3 { margin-top: 8px; }
#inv-filter { font: inherit; font-size: 13px; padding: 3px 12px; border: 1px solid var(--line); border-radius: 6px; background: #fff; cursor: pointer; margin-bottom: 6px; }
.inv-entry { border: 1px solid var(--line); border-radius: 6px; padding: 8px 12px; margin: 8px 0; background: #fbfcfd; }
.inv-entry .head { margin-bottom: 4px; }
.inv-body { display: flex; flex-wrap: wrap; gap: 8px 28px; align-items: flex-start; }
.inv-body > div { min-width: 0; max-width: 100%; overflow-x: auto; }
table.arr tr.differ td { background: var(--info-bg); }
"""

JS = r"""/* The Invariance section: a cell lists its results that differ or fail (from the embedded JSON);
   the discrepancy table's expanded rows get the same panel. Data only reaches the page through
   textContent and attribute values. */
(function () {
  "use strict";
  var dataEl = document.getElementById("inv-data");
  if (!dataEl) { return; }
  var data = JSON.parse(dataEl.textContent);
  var V = {};
  data.cols.forEach(function (c, i) { V[c] = i; });

  function num(v) {
    if (v === null || v === undefined) { return null; }
    if (typeof v === "number") { return v; }
    if (v === "inf") { return Infinity; }
    if (v === "-inf") { return -Infinity; }
    if (v === "nan") { return NaN; }
    var f = parseFloat(v);
    return isNaN(f) ? null : f;
  }
  function fmt(v) {
    var f = num(v);
    if (f === null) { return typeof v === "string" ? v : "–"; }
    if (isNaN(f)) { return "nan"; }
    if (!isFinite(f)) { return f > 0 ? "∞" : "−∞"; }
    if (f === 0) { return "0"; }
    var a = Math.abs(f);
    if (a >= 1e5 || a < 1e-3) { return f.toExponential(2); }
    if (a >= 100) { return f.toFixed(0); }
    return String(Number(f.toPrecision(3)));
  }
  function full(v) {
    if (v === null || v === undefined) { return "–"; }
    if (typeof v === "object") { return JSON.stringify(v); }
    return String(v);
  }
  function h(tag, attrs, kids) {
    var e = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (k) {
        if (k === "text") { e.textContent = attrs[k]; }
        else if (k === "cls") { e.className = attrs[k]; }
        else { e.setAttribute(k, attrs[k]); }
      });
    }
    (kids || []).forEach(function (k) {
      if (k === null || k === undefined) { return; }
      e.appendChild(typeof k === "string" ? document.createTextNode(k) : k);
    });
    return e;
  }
  function plural(n, one, many) { return n + " " + (n === 1 ? one : many); }

  function summaryTable(s) {
    var t = h("table", { cls: "kvt inv-summary" });
    [["rule", s.rule], ["base", s.base], ["variants", s.variants], ["differing", s.differing],
     ["bitwise differences", s.bitwise_differences], ["max ULP between", fmt(s.max_ulp_between)],
     ["worst", s.worst === null || s.worst === undefined ? "–" : s.worst]].forEach(function (kv) {
      t.appendChild(h("tr", null, [h("th", { text: kv[0] }), h("td", { text: full(kv[1]) })]));
    });
    return t;
  }

  function variantTable(e) {
    var cols = ["variant", "base", "status", "class", "max ulp", "excess", "elements differing", "ULPs from base"];
    var t = h("table", { cls: "arr inv-variants" }, [h("tr", null, cols.map(function (c) { return h("th", { text: c }); }))]);
    e.rows.forEach(function (r) {
      var st = r[V.status], nd = r[V.n_diff];
      t.appendChild(h("tr", { cls: st !== "pass" ? "bad" : (nd ? "differ" : "") }, [
        h("td", { text: full(r[V.variant]) + (r[V.equal] ? " and " + plural(r[V.equal], "equal variant", "equal variants") : "") }),
        h("td", { text: r[V.base] === null ? "(base)" : full(r[V.base]) }),
        h("td", { text: full(st) }), h("td", { text: full(r[V.special]) }),
        h("td", { text: fmt(r[V.max_ulp]), title: full(r[V.max_ulp]) }), h("td", { text: fmt(r[V.excess]), title: full(r[V.excess]) }),
        h("td", { text: full(nd) }), h("td", { text: fmt(r[V.ulp_between]), title: full(r[V.ulp_between]) })]));
    });
    return t;
  }

  function pairTable(p) {
    var a = p.variants[0] || "a", b = p.variants[1] || "b";
    var t = h("table", { cls: "arr inv-pair" }, [h("tr", null, ["output", "index", a, b, "ULPs apart"].map(function (c) { return h("th", { text: c }); }))]);
    p.diff.forEach(function (d) {
      t.appendChild(h("tr", null, [h("td", { text: full(d[0]) }), h("td", { text: "[" + d[1].join(", ") + "]" }),
        h("td", { text: full(d[2]) }), h("td", { text: full(d[3]) }), h("td", { text: fmt(d[4]) })]));
    });
    return t;
  }

  function entryView(e, withHead) {
    var box = h("div", { cls: "inv-entry", "data-id": e.id });
    if (withHead) {
      var o = e.outcome, st = o === "known" ? "known " + e.status : o;
      box.appendChild(h("div", { cls: "head" }, [h("i", { cls: "t " + o, text: st }), " ",
        h("span", { cls: "mono strong", text: e.id }),
        e.known ? h("span", { cls: "muted", text: " known: " + e.known }) : null]));
      if (e.message) { box.appendChild(h("div", { cls: "muted small", text: e.message })); }
    }
    var body = h("div", { cls: "inv-body" });
    if (e.inv) { body.appendChild(h("div", null, [h("div", { cls: "muted small", text: "invariance" }), summaryTable(e.inv)])); }
    var vbox = h("div");
    if (e.rows.length) {
      vbox.appendChild(h("div", { cls: "muted small", text: "variants that differ from their base, and those that fail (one row for the variants equal to a base and judged alike)" }));
      vbox.appendChild(variantTable(e));
      if (e.more) {
        vbox.appendChild(h("div", { cls: "muted small inv-more", text: "and " + plural(e.more.n, "more variant", "more variants") +
          " (" + e.more.differ + " differ, " + e.more.fail + " fail); the results file has every one" }));
      }
    } else if (e.inv && !e.inv.differing) {
      vbox.appendChild(h("div", { cls: "muted small inv-none", text: "every variant equals its base bit for bit and passes its budget" }));
    }
    body.appendChild(vbox);
    if (e.pair && e.pair.diff.length) {
      body.appendChild(h("div", null, [h("div", { cls: "muted small", text: "the repro's two variants where they differ (" +
        plural(e.pair.n, "element", "elements") + (e.pair.n > e.pair.diff.length ? ", the first " + e.pair.diff.length + " shown" : "") + ")" }),
        pairTable(e.pair)]));
    }
    if (e.threads) {
      var tt = h("table", { cls: "kvt" });
      Object.keys(e.threads).forEach(function (k) { tt.appendChild(h("tr", null, [h("th", { text: k }), h("td", { text: full(e.threads[k]) })])); });
      body.appendChild(h("div", null, [h("div", { cls: "muted small", text: "thread settings in force" }), tt]));
    }
    if (e.not_run) {
      body.appendChild(h("div", null, [h("div", { cls: "muted small", text: "not run" }),
        h("ul", { cls: "small" }, e.not_run.map(function (s) { return h("li", { text: s }); }))]));
    }
    box.appendChild(body);
    return box;
  }

  /* ---- a cell lists its results ---- */
  var panel = document.getElementById("inv-panel");
  var list = document.getElementById("inv-panel-list");
  var filterBtn = document.getElementById("inv-filter");
  var current = null;
  function same(a, b) { return a.length === b.length && a.every(function (x, i) { return x === b[i]; }); }
  function showCell(td) {
    var key = JSON.parse(td.getAttribute("data-key"));
    Array.prototype.forEach.call(document.querySelectorAll("#inv-matrix td.cell.sel"), function (c) { c.classList.remove("sel"); });
    td.classList.add("sel");
    current = key;
    var mine = data.entries.filter(function (e) { return same(e.key, key); });
    var total = 0;
    ["pass", "fail", "error", "known", "skip"].forEach(function (k) { total += +td.getAttribute("data-" + k); });
    document.getElementById("inv-panel-title").textContent = key[0] + " · " + key[1] + " · " + key[2] + " · " + key[3] + " (" + key[4] + ")";
    var listed = mine.length;
    var text = plural(total, "result", "results") + "; " + plural(listed, "differs or fails", "differ or fail") + " (listed)";
    var rest = total - listed - (+td.getAttribute("data-skip"));
    if (rest > 0) { text += "; " + rest + " bitwise equal and passing (not listed)"; }
    if (data.omitted) { text += "; the lists of " + data.omitted + " results of the report were left out to keep the page small"; }
    document.getElementById("inv-panel-count").textContent = text;
    var nd = +td.getAttribute("data-disc");
    filterBtn.hidden = nd === 0;
    filterBtn.textContent = "Show the " + plural(nd, "discrepancy", "discrepancies") + " in the table";
    list.textContent = "";
    mine.forEach(function (e) { list.appendChild(entryView(e, true)); });
    panel.hidden = false;
  }
  Array.prototype.forEach.call(document.querySelectorAll("#inv-matrix td.cell[data-key]"), function (td) {
    td.addEventListener("click", function () { showCell(td); });
  });

  /* ---- the discrepancy table filtered to the cell (its selects, as the summary matrix does) ---- */
  filterBtn.addEventListener("click", function () {
    if (!current) { return; }
    var f = { framework: current[0], device: current[1], dtype: current[2], check: current[3], mode: current[4] };
    var selects = Array.prototype.slice.call(document.querySelectorAll("#filters select"));
    selects.forEach(function (s) {
      var k = s.getAttribute("data-field"), v = f[k] === undefined || f[k] === null ? "" : String(f[k]);
      var ok = Array.prototype.some.call(s.options, function (o) { return o.value === v; });
      if (!ok && v !== "") { s.appendChild(h("option", { value: v, text: v + " (0)" })); }
      s.value = v;
    });
    var text = document.getElementById("f-text");
    if (text) { text.value = ""; }
    if (selects.length) { selects[0].dispatchEvent(new Event("change")); }
    var d = document.getElementById("discrepancies");
    if (d) { d.scrollIntoView(); }
  });

  /* ---- the discrepancy table's expanded rows ---- */
  function decorate(tr) {
    var j = data.disc[tr.getAttribute("data-i")];
    var grid = tr.querySelector(".dgrid");
    if (!grid || tr.querySelector(".inv-detail")) { return; }
    var content;
    if (j !== undefined) { content = entryView(data.entries[j], false); }
    else {  // an invariance row whose entry was left out to keep the page small
      var main = tr.previousSibling, chk = main && main.children && main.children[6] ? main.children[6].textContent : "";
      if (!data.omitted || data.checks.indexOf(chk) < 0) { return; }
      content = h("p", { cls: "muted", text: "The variants of this result were left out to keep the page small; the results file has them." });
    }
    var p = h("div", { cls: "panel wide inv-detail" }, [h("h4", { text: "invariance" }), content]);
    var msg = Array.prototype.filter.call(grid.children, function (c) {
      var t = c.querySelector && c.querySelector("h4"); return t && t.textContent === "message"; })[0];
    grid.insertBefore(p, msg ? msg.nextSibling : grid.firstChild);
    // A batch_invariance output's rows its worst variant did not answer are "–": no verdict beside them.
    Array.prototype.forEach.call(grid.querySelectorAll("table.arr tr"), function (row) {
      var c = row.children;
      if (c.length === 6 && c[1].tagName === "TD" && c[1].textContent === "–") { c[5].textContent = ""; }
    });
  }
  var tbody = document.getElementById("disc-body");
  if (tbody && window.MutationObserver) {
    new MutationObserver(function (muts) {
      muts.forEach(function (m) {
        Array.prototype.forEach.call(m.addedNodes, function (n) {
          if (n.nodeType === 1 && n.classList.contains("detail")) { decorate(n); }
        });
      });
    }).observe(tbody, { childList: true });
    Array.prototype.forEach.call(tbody.querySelectorAll("tr.detail"), decorate);
  }
  document.documentElement.setAttribute("data-inv-ready", "1");
})();
"""


def section_html(mx: dict[str, Any]) -> str:
    from .render import env

    rules = sorted({r for c in mx["cells"].values() for r in c.rules})
    return env().from_string(SECTION).render(mx=mx, inv={"rules": rules, "rule_text": RULES})


def splice(page: str, mx: dict[str, Any], payload: dict[str, Any]) -> str:
    """The page with the Invariance section after the summary, its link in the top bar, a note in
    the summary, its style and its data and script (after the page's own script)."""
    from .render import script_json

    section = section_html(mx)
    note = NOTE.format(n=mx["n"], checks=", ".join(c for c, _ in mx["spans"]))
    anchor = '<section id="utilisation">'
    i = page.find(anchor)
    if i < 0:  # another layout: the section goes last in <main>
        i = page.rfind("</main>")
    if i < 0:
        i = page.rfind("</body>")
    end_summary = page.rfind("</section>", 0, i) if page.find('<section id="summary">') >= 0 else -1
    if end_summary >= 0 and page.find('<section id="summary">') < end_summary:
        page = page[:end_summary] + note + page[end_summary:]
        i += len(note)
    page = page[:i] + section + "\n" + page[i:]
    link = '<a href="#summary">Summary</a>'
    if link in page:
        page = page.replace(link, link + '\n    <a href="#invariance">Invariance</a>', 1)
    if "</style>" in page:
        page = page.replace("</style>", CSS + "</style>", 1)
    else:
        page = page.replace("<body>", "<body>\n<style>" + CSS + "</style>", 1)
    scripts = (f'<script type="application/json" id="inv-data">{script_json(payload)}</script>\n'
               f"<script>\n{JS}</script>\n")
    j = page.rfind("</body>")
    return page[:j] + scripts + page[j:] if j >= 0 else page + scripts


__all__ = ["CHECKS", "InvCell", "data", "entry", "is_invariance", "matrix", "pair_diff", "splice"]
