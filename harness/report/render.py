"""Rendering merged results into one self-contained HTML page (CSS, JS, data and SVG inline).

The page is a function of the records alone. Aggregates (summary matrix, cross-framework view,
semantics, timing, known discrepancies; the invariance checks' matrix, invariance.py, where there
are such results) are rendered in Python through jinja2 templates with autoescaping; the
discrepancy table, which can hold thousands of rows, and the invariance cells' lists are embedded
as compact JSON in <script type="application/json"> blocks and rendered (sorted, filtered,
expanded) by small vanilla scripts that only ever set textContent.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from .. import __version__, records
from . import invariance as INV
from . import svg
from . import tables as T
from .crossfw import cross_framework, impl_label
from .diffing import Diff, diff_merged
from .merge import FileInfo, Merged, cpu_text, merge

#: The report must stay under 10 MB; the expanded-row details give way first (bytes).
SIZE_BUDGET = 9_300_000
#: Stands in for the discrepancy JSON while the rest of the page is measured.
_SLOT = "\x00DISCREPANCY-DATA\x00"
CROSS_LIMIT = 200
LIST_LIMIT = 500

_ENV: jinja2.Environment | None = None


def env() -> jinja2.Environment:
    global _ENV
    if _ENV is None:
        e = jinja2.Environment(loader=jinja2.PackageLoader("harness.report", "templates"), autoescape=True,
                               trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined,
                               finalize=lambda v: "–" if v is None else v)  # a missing field reads as a dash
        e.filters["num"] = T.fmt_num
        e.filters["secs"] = T.fmt_time
        e.filters["safe_url"] = safe_url
        e.globals["impl_label"] = impl_label
        _ENV = e
    return _ENV


def _asset(name: str) -> Markup:
    """A CSS or JS file of the templates folder, inlined verbatim (it is ours, not data)."""
    src, _, _ = env().loader.get_source(env(), name)  # type: ignore[union-attr]
    return Markup(src)


def safe_url(u: Any) -> str:
    """Only http(s) links become links; anything else (javascript:, data:) stays text."""
    s = str(u or "").strip()
    return s if s.lower().startswith(("https://", "http://")) else ""


def dumps(data: Any) -> str:
    """Compact strict JSON; non-finite floats (only in hand-made files) become their strings."""
    try:
        return json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except (ValueError, TypeError):
        return json.dumps(records.jsonable(data), ensure_ascii=False, allow_nan=False, separators=(",", ":"),
                          default=str)


def script_json(data: Any) -> Markup:
    """JSON that is safe inside <script type="application/json">: no '<', '>', '&' and no
    line separators survive literally, so no string in it can close the script element."""
    s = dumps(data)
    s = (s.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")
         .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))
    return Markup(s)


# ---------------------------------------------------------------------------------------------

def _fw_versions_of_run(run: dict[str, Any]) -> list[str]:
    out = []
    for fw, meta in sorted((run.get("frameworks") or {}).items()):
        vs = (meta or {}).get("versions") if isinstance(meta, dict) else None
        if isinstance(vs, dict) and vs:
            main = vs.get(fw)
            rest = ", ".join(f"{k} {v}" for k, v in vs.items() if k != fw and v)
            out.append(f"{fw} {main or ''}".strip() + (f" ({rest})" if rest else ""))
        else:
            out.append(str(fw))
    return out


def _file_rows(m: Merged) -> list[dict[str, Any]]:
    rows = []
    for f in m.files:
        runs = f.runs or [{}]
        for i, run in enumerate(runs):
            mach = run.get("machine") or {}
            end = next((e for e in f.ends if e.get("run_id") == run.get("run_id")), None) or \
                (f.ends[i] if i < len(f.ends) else None)
            fws = _fw_versions_of_run(run) or [f"{fw} {', '.join(sorted(v))}" for fw, v in sorted(f.versions.items())]
            rows.append({"path": f.path, "name": Path(f.path).name, "run_id": run.get("run_id"),
                         "started": run.get("started"), "finished": (end or {}).get("finished"),
                         "harness_version": run.get("harness_version"), "git_commit": run.get("git_commit"),
                         "policy": run.get("policy"), "worker": run.get("worker"),
                         "machine": " · ".join(str(mach[k]) for k in ("hostname", "platform", "python") if mach.get(k)),
                         "cpus": mach.get("cpus"), "cpu": cpu_text(mach.get("cpu")), "frameworks": fws,
                         "skipped": run.get("skipped_frameworks") or {},
                         "n_results": f.n_results, "complete": f.complete,
                         "incomplete_reason": f.incomplete_reason})
    return rows


def _overview(m: Merged) -> dict[str, Any]:
    runs = m.runs

    def vals(key: str) -> list[str]:
        return sorted({str(r.get(key)) for r in runs if r.get(key)})

    dates = sorted(str(r.get("started")) for r in runs if r.get("started"))
    machines = sorted({str((r.get("machine") or {}).get("hostname")) for r in runs if (r.get("machine") or {}).get("hostname")})
    return {"harness_versions": vals("harness_version"), "git_commits": vals("git_commit"), "policies": vals("policy"),
            "date": (dates[0] if dates else "") + (f" – {dates[-1]}" if len(dates) > 1 and dates[-1] != dates[0] else ""),
            "machines": machines, "frameworks": m.framework_versions(), "n_files": len(m.files), "n_runs": len(runs),
            "schema": sorted({str(r.get("schema")) for r in runs if r.get("schema") is not None})}


def discrepancy_records(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The discrepancy table's records in its order (its rows' indices, which the Invariance
    section's data refers to)."""
    recs = [r for r in results if T.is_discrepancy(r)]
    recs.sort(key=lambda r: (T.OUTCOME_RANK.get(T.outcome(r), 9), str(r.get("framework")), str(r.get("op")),
                             str(r.get("dtype")), str(r.get("case_id"))))
    return recs


#: The discrepancy table's columns that repeat a few values (framework, case id, known id, ...):
#: each distinct value is stored once, in `values[column]`, and a row holds its index there
#: (report.js puts the values back). As strings, a default run's rows were 2.2 MB of its 9.2 MB.
CODED_FIELDS = tuple(c for c in T.ROW_FIELDS if c not in ("max_ulp", "excess"))


def _coded(rows: list[list[Any]]) -> tuple[list[list[Any]], dict[str, list[Any]]]:
    """rows with the CODED_FIELDS columns replaced by indices into the returned values."""
    at = [T.ROW_FIELDS.index(c) for c in CODED_FIELDS]
    values: dict[str, list[Any]] = {c: [] for c in CODED_FIELDS}
    index: list[dict[tuple[bool, str], int]] = [{} for _ in CODED_FIELDS]
    out = []
    for row in rows:
        row = list(row)
        for k, (c, i) in enumerate(zip(CODED_FIELDS, at)):
            v = row[i]
            key = (True, v) if isinstance(v, str) else (False, dumps(v))  # null and "null" stay apart
            j = index[k].get(key)
            if j is None:
                j = index[k][key] = len(values[c])
                values[c].append(row[i])
            row[i] = j
        out.append(row)
    return out, values


def decoded(data: dict[str, Any]) -> dict[str, Any]:
    """The discrepancy table's embedded data (`disc-data`) with its rows' values put back, as
    report.js reads it."""
    at = {c: data["cols"].index(c) for c in data.get("values", {})}
    rows = [list(r) for r in data["rows"]]
    for c, i in at.items():
        for r in rows:
            r[i] = data["values"][c][r[i]]
    return {**data, "rows": rows}


def _discrepancy_data(results: list[dict[str, Any]], budget: int,
                      recs: list[dict[str, Any]] | None = None) -> tuple[dict[str, Any], int]:
    """Rows and details of the discrepancy table, details cut to fit `budget` bytes (about:
    JSON characters are counted, and the data is nearly all ASCII)."""
    recs = discrepancy_records(results) if recs is None else recs
    rows, values = _coded([T.discrepancy_row(r) for r in recs])
    rows_size = len(dumps(rows)) + len(dumps(values))
    left = max(200_000, int(0.97 * (budget - rows_size)))
    details: list[Any] = [None] * len(recs)
    omitted = 0
    levels = [(64, 4000), (16, 1500), (8, 600)]
    while levels:
        limit, text = levels.pop(0)
        ds = [T.detail(r, limit, text) for r in recs]
        sizes = [len(dumps(d)) for d in ds]
        if limit == 64 and sum(sizes) > 3 * left:
            levels = levels[1:]  # far too big: straight to the smallest details
        if sum(sizes) <= left or not levels:
            used = 0
            for i, (d, s) in enumerate(zip(ds, sizes)):  # recs are sorted: new failures keep their details first
                if used + s > left:
                    omitted += 1
                    continue
                details[i] = d
                used += s
            break
    return {"cols": list(T.ROW_FIELDS), "values": values, "rows": rows, "details": details, "omitted": omitted}, len(recs)


def _cross_context(results: list[dict[str, Any]]) -> dict[str, Any]:
    entries = cross_framework(results)  # the invariance checks left out: their outputs are a variant's
    shown = [e for e in entries if e["worst"] is not None][:CROSS_LIMIT]
    impls = sorted({lab for e in shown for lab in e["impls"]})
    n_outputs = sum(1 for e in entries if e["worst"] is not None and e["worst"]["kind"] == "outputs")
    return {"entries": shown, "impls": impls, "total": len(entries),
            "comparable": sum(1 for e in entries if e["worst"] is not None), "from_outputs": n_outputs}


def _plots(results: list[dict[str, Any]]) -> dict[str, Any]:
    vals: dict[str, dict[str, list[float]]] = {}
    util: dict[str, dict[str, list[float]]] = {}
    for r in results:
        if r.get("status") == "skip":
            continue
        x = T.num(r.get("excess"))
        if x is not None and not math.isnan(x):
            util.setdefault(str(r.get("dtype")), {}).setdefault(str(r.get("framework")), []).append(x)
        u = T.num(r.get("max_ulp"))
        if u is None or not math.isfinite(u):
            continue
        vals.setdefault(str(r.get("dtype")), {}).setdefault(str(r.get("framework")), []).append(u)
    rank = {d: i for i, d in enumerate(["float16", "bfloat16", "float32", "float64"])}
    dtypes = sorted(vals, key=lambda d: (rank.get(d, 9), d))
    fws = sorted({fw for d in vals.values() for fw in d})
    lv = T.large_vocab(results)
    lv_fws = sorted({p["framework"] for p in lv})
    cmap = svg.colors(sorted(set(fws) | set(lv_fws)))
    lv_dtypes = sorted({p["dtype"] for p in lv}, key=lambda d: (rank.get(d, 9), d))
    util_dtypes = sorted(util, key=lambda d: (rank.get(d, 9), d))
    return {"hist": [Markup(s) for s in svg.histograms(vals, dtypes, fws, cmap)],
            "util": [Markup(s) for s in svg.histograms(util, util_dtypes, fws, cmap, bin_width=0.05, lo=0.0, hi=1.0,
                                                       log=False, xlabel="error / budget (utilisation)",
                                                       over_label="> 1 fails")],
            "vocab": [Markup(s) for s in svg.vocab_plot(lv, lv_dtypes, cmap)],
            "vocab_points": lv, "colors": cmap, "frameworks": fws, "vocab_frameworks": lv_fws}


def _invariance_context(results: list[dict[str, Any]], recs: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The Invariance section's context (invariance.section) with its data as `json`; None
    without invariance results: the template then leaves out the section, its link, its note in
    the summary, its style, data and script."""
    sec = INV.section(results, recs)
    if sec is not None:
        sec["json"] = script_json(sec["data"])
    return sec


def context(m: Merged, compare: Diff | None = None, recs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The template's context; `recs`: the discrepancy table's records (discrepancy_records)."""
    results = m.results
    recs = discrepancy_records(results) if recs is None else recs
    counts = T.counts(results)
    skipped = {}
    for run in m.runs:
        skipped.update(run.get("skipped_frameworks") or {})
    return {
        "title": "Softmax-family conformance report",
        "generated": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "report_version": __version__,
        "overview": _overview(m), "files": _file_rows(m),
        "incomplete": [{"path": f.path, "reason": f.incomplete_reason} for f in m.incomplete],
        "problems": m.problems, "duplicates": m.duplicates[:LIST_LIMIT], "n_duplicates": len(m.duplicates),
        "skipped_frameworks": skipped,
        "counts": counts, "n_discrepancies": sum(1 for r in results if T.is_discrepancy(r)),
        "matrix": T.summary_matrix(results),
        "invariance": _invariance_context(results, recs),
        "utilisation": T.utilisation(results),
        "disc_json": Markup(_SLOT),
        "cross": _cross_context(results),
        "semantics": T.semantics(results),
        "plots": _plots(results),
        "timing": T.timing(results),
        "known": T.known_groups(results), "stale_known": m.stale_known(),
        "findings": T.findings(results),
        "diff": compare, "list_limit": LIST_LIMIT, "finding_results": T.FINDING_RESULTS,
        "css": _asset("report.css"), "js": _asset("report.js"),
        "inv_css": _asset("invariance.css"), "inv_js": _asset("invariance.js"),
    }


def render_merged(m: Merged, out_path: str | Path, compare: Diff | None = None) -> dict[str, Any]:
    recs = discrepancy_records(m.results)
    ctx = context(m, compare, recs)
    page = env().get_template("report.html.j2").render(**ctx)
    inv = ctx["invariance"]
    # The discrepancy details get whatever the rest of the page leaves of the size budget.
    budget = SIZE_BUDGET - len(page.encode("utf-8"))
    for _ in range(3):
        disc, _ = _discrepancy_data(m.results, budget, recs)
        html = page.replace(_SLOT, str(script_json(disc)), 1)
        over = len(html.encode("utf-8")) - SIZE_BUDGET
        if over <= 0:
            break
        budget -= int(1.2 * over)  # multi-byte characters: measured in bytes, try again smaller
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    try:
        tmp.write_text(html, encoding="utf-8")
        tmp.replace(out)  # a reader never sees half a report
    except BaseException:  # interrupted or failed: the earlier report stays, no half file is left
        tmp.unlink(missing_ok=True)
        raise
    c = ctx["counts"]
    summary: dict[str, Any] = {
        "results": c["total"], "pass": c["pass"], "fail": c["fail"], "error": c["error"], "known": c["known"],
        "skip": c["skip"], "discrepancies": ctx["n_discrepancies"], "details_omitted": disc["omitted"],
        "duplicates": len(m.duplicates), "files": len(m.files), "incomplete": [f.path for f in m.incomplete],
        "problems": len(m.problems), "stale_known": ctx["stale_known"],
        "invariance": inv["matrix"]["n"] if inv else 0,
        "invariance_omitted": inv["data"]["omitted"] if inv else 0,
        "bytes": len(html.encode("utf-8")), "path": str(out)}
    if compare is not None:
        summary.update(new_failures=len(compare.new_failures), fixed=len(compare.fixed),
                       error_changes=len(compare.error_changes))
    return summary


def render(results_paths: list[str], out_path: str, compare: list[str] | None = None) -> dict[str, Any]:
    """Merge the results files, render one self-contained HTML page to `out_path` and return a
    summary: counts per outcome (pass, fail, error: new; known; skip), discrepancies,
    duplicates, incomplete files, problems, the page's size, and with `compare` (older results
    files) the diff's counts."""
    paths = [str(p) for p in results_paths]
    m = merge(paths)
    d = None
    if compare:
        old = merge([str(p) for p in compare])
        d = diff_merged(old, m, [str(p) for p in compare], paths)
    return render_merged(m, out_path, d)


__all__ = ["FileInfo", "context", "decoded", "render", "render_merged"]
