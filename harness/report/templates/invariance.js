/* The Invariance section (harness/report/invariance.py): a cell lists its results that differ or
   fail (from the embedded JSON, #inv-data); the discrepancy table's expanded rows get the same
   panel. Inlined after report.js only in a report that has the section; without its data it does
   nothing. Data only reaches the page through textContent and attribute values. */
(function () {
  "use strict";
  var dataEl = document.getElementById("inv-data");
  if (!dataEl) { return; }
  var data = JSON.parse(dataEl.textContent);
  var V = {};
  data.cols.forEach(function (c, i) { V[c] = i; });

  var R = window.harnessReport;  // report.js's helpers
  var num = R.num, fmt = R.fmt, full = R.full, h = R.h;
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
