/* The discrepancy table: rows from the embedded JSON, sorted, filtered and expanded here.
   Data only ever reaches the page through textContent and attribute values, never innerHTML. */
(function () {
  "use strict";
  var dataEl = document.getElementById("disc-data");
  if (!dataEl) { return; }
  var data = JSON.parse(dataEl.textContent);
  var C = {};
  data.cols.forEach(function (c, i) { C[c] = i; });
  // A column of few distinct values holds indices into data.values (render.py's CODED_FIELDS).
  Object.keys(data.values || {}).forEach(function (c) {
    var i = C[c], vs = data.values[c];
    data.rows.forEach(function (r) { r[i] = vs[r[i]]; });
  });
  var rows = data.rows.map(function (r, i) { return { i: i, r: r }; });
  var PAGE = 500;
  var state = { key: null, dir: 1, showAll: false, open: {} };
  var body = document.getElementById("disc-body");
  var countEl = document.getElementById("disc-count");
  var moreEl = document.getElementById("disc-more");
  var textEl = document.getElementById("f-text");
  var selects = Array.prototype.slice.call(document.querySelectorAll("#filters select"));
  var OUTCOME_TEXT = { fail: "fail (new)", error: "error (new)", known: "known discrepancy", pass: "pass", skip: "skip" };
  var OUTCOME_ORDER = ["fail", "error", "known", "pass", "skip"];

  function val(row, key) { return row.r[C[key]]; }

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

  function full(v) {  // a stored value exactly as recorded (17 digits), strings as they are
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

  /* ---- filters ---- */
  selects.forEach(function (s) {
    var f = s.getAttribute("data-field");
    var seen = {};
    rows.forEach(function (r) { var v = val(r, f); if (v !== null && v !== undefined) { seen[v] = (seen[v] || 0) + 1; } });
    var vals = Object.keys(seen);
    if (f === "outcome") { vals.sort(function (a, b) { return OUTCOME_ORDER.indexOf(a) - OUTCOME_ORDER.indexOf(b); }); }
    else { vals.sort(); }
    vals.forEach(function (v) {
      var label = (f === "outcome" ? (OUTCOME_TEXT[v] || v) : v) + " (" + seen[v] + ")";
      s.appendChild(h("option", { value: v, text: label }));
    });
    s.addEventListener("change", function () { state.showAll = false; render(); });
  });
  textEl.addEventListener("input", function () { state.showAll = false; render(); });
  document.getElementById("f-reset").addEventListener("click", function () {
    selects.forEach(function (s) { s.value = ""; });
    textEl.value = "";
    render();
  });

  function matches(row) {
    for (var k = 0; k < selects.length; k++) {
      var s = selects[k];
      if (s.value !== "" && String(val(row, s.getAttribute("data-field"))) !== s.value) { return false; }
    }
    var q = textEl.value.trim().toLowerCase();
    if (q) {
      var hay = [val(row, "case_id"), val(row, "known"), val(row, "variant"), val(row, "op"), val(row, "special")].join(" ").toLowerCase();
      if (hay.indexOf(q) < 0) { return false; }
    }
    return true;
  }

  /* ---- sorting ---- */
  var ths = Array.prototype.slice.call(document.querySelectorAll("#disc-table th[data-key]"));
  ths.forEach(function (th) {
    th.addEventListener("click", function () {
      var key = th.getAttribute("data-key");
      if (state.key === key) { state.dir = -state.dir; } else { state.key = key; state.dir = th.getAttribute("data-num") ? -1 : 1; }
      ths.forEach(function (o) { o.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", state.dir > 0 ? "ascending" : "descending");
      render();
    });
  });

  function compare(a, b) {
    var key = state.key, th = document.querySelector('#disc-table th[data-key="' + key + '"]');
    var va = val(a, key), vb = val(b, key);
    if (th && th.getAttribute("data-num")) {
      var x = num(va), y = num(vb);
      var nx = x === null || isNaN(x), ny = y === null || isNaN(y);
      if (nx || ny) { return nx && ny ? a.i - b.i : (nx ? 1 : -1); }  // missing values last either way
      return (x - y) * state.dir || a.i - b.i;
    }
    if (key === "outcome") { va = OUTCOME_ORDER.indexOf(va); vb = OUTCOME_ORDER.indexOf(vb); return (va - vb) * state.dir || a.i - b.i; }
    if (va === null || va === undefined) { return vb === null || vb === undefined ? a.i - b.i : 1; }
    if (vb === null || vb === undefined) { return -1; }
    return String(va).localeCompare(String(vb)) * state.dir || a.i - b.i;
  }

  /* ---- rows ---- */
  function statusCell(row) {
    var o = val(row, "outcome"), st = val(row, "status");
    var text = o === "known" ? "known " + st : o;
    var td = h("td", null, [h("i", { cls: "t " + o, text: text })]);
    var inv = val(row, "invalid_handling");
    if (inv) { td.appendChild(h("span", { cls: "muted small", text: " invalid→" + inv })); }
    return td;
  }

  function mainRow(row) {
    var op = val(row, "op"), variant = val(row, "variant");
    var det = h("details", { "data-i": String(row.i) }, [h("summary", { title: "details", "aria-label": "details" })]);
    var tr = h("tr", { cls: "main o-row-" + val(row, "outcome"), "data-i": String(row.i) }, [
      h("td", { cls: "x" }, [det]),
      h("td", { text: full(val(row, "framework")) }),
      h("td", { text: full(val(row, "device")) }),
      h("td", { text: full(val(row, "dtype")) }),
      h("td", { text: full(val(row, "mode")) }),
      h("td", { text: op + (variant && variant !== "default" ? ":" + variant : "") }),
      h("td", { text: full(val(row, "check")) + (val(row, "cotangent") ? "." + val(row, "cotangent") : "") }),
      h("td", { cls: "case", text: full(val(row, "case_id")) }),
      statusCell(row),
      h("td", { text: val(row, "special") || "–" }),
      h("td", { cls: "num", text: fmt(val(row, "max_ulp")), title: full(val(row, "max_ulp")) }),
      h("td", { cls: "num", text: fmt(val(row, "excess")), title: full(val(row, "excess")) }),
      h("td", { cls: "mono", text: val(row, "known") || "" }),
      h("td", { text: val(row, "cause") || "" })
    ]);
    det.addEventListener("toggle", function () {
      state.open[row.i] = det.open;
      var next = tr.nextSibling;
      if (det.open) {
        tr.classList.add("open");
        if (!next || !next.classList.contains("detail")) {
          var td = h("td", { colspan: "14" }, [detailContent(row.i)]);
          tr.parentNode.insertBefore(h("tr", { cls: "detail", "data-i": String(row.i) }, [td]), tr.nextSibling);
        }
      } else {
        tr.classList.remove("open");
        if (next && next.classList.contains("detail")) { next.parentNode.removeChild(next); }
      }
    });
    return tr;
  }

  function render() {
    var list = rows.filter(matches);
    if (state.key) { list.sort(compare); }
    var n = state.showAll ? list.length : Math.min(PAGE, list.length);
    var frag = document.createDocumentFragment();
    var opened = [];
    for (var k = 0; k < n; k++) {
      var tr = mainRow(list[k]);
      frag.appendChild(tr);
      if (state.open[list[k].i]) { opened.push(tr); }
    }
    body.textContent = "";
    body.appendChild(frag);
    opened.forEach(function (tr) { tr.querySelector("details").open = true; });
    countEl.textContent = (list.length === rows.length ? rows.length + " rows" : list.length + " of " + rows.length + " rows match") +
      (n < list.length ? "; showing the first " + n : "");
    countEl.setAttribute("data-shown", String(n));
    countEl.setAttribute("data-matching", String(list.length));
    moreEl.hidden = n >= list.length;
    document.getElementById("disc-more-btn").textContent = "Show all " + list.length + " rows";
    if (rows.length === 0) {
      body.appendChild(h("tr", null, [h("td", { colspan: "14", cls: "empty", text: "No discrepancies: every result passed with the exact special-value semantics." })]));
    }
  }
  document.getElementById("disc-more-btn").addEventListener("click", function () { state.showAll = true; render(); });

  /* ---- the expanded row ---- */
  function panel(title, content, wide) {
    return h("div", { cls: "panel" + (wide ? " wide" : "") }, [h("h4", { text: title }), content]);
  }

  function kvTable(obj, keys) {
    var t = h("table", { cls: "kvt" });
    (keys || Object.keys(obj)).forEach(function (k) {
      if (obj[k] === undefined || obj[k] === null) { return; }
      t.appendChild(h("tr", null, [h("th", { text: k }), h("td", { text: full(obj[k]) })]));
    });
    return t;
  }

  function unravel(i, shape) {
    var idx = [];
    for (var d = shape.length - 1; d >= 0; d--) { idx.unshift(i % shape[d]); i = Math.floor(i / shape[d]); }
    return idx;
  }

  function nested(f) {  // flat {s, v, n} back to bracketed text, one line per leading row
    if (!f) { return "–"; }
    if (!f.s.length) { return full(f.v[0]); }
    var last = f.s[f.s.length - 1] || 1, lines = [], line = [];
    f.v.forEach(function (x, i) {
      line.push(full(x));
      if ((i + 1) % last === 0) { lines.push("[" + line.join(", ") + "]"); line = []; }
    });
    if (line.length) { lines.push("[" + line.join(", ") + (f.n > f.v.length ? ", …" : "") + "]"); }
    var txt = lines.join(f.s.length > 1 ? ",\n" : "");
    if (f.n > f.v.length) { txt += "\n… " + (f.n - f.v.length) + " more of " + f.n + " values (shape [" + f.s.join(", ") + "])"; }
    else if (f.s.length > 1) { txt = "shape [" + f.s.join(", ") + "]\n" + txt; }
    return txt;
  }

  function elemTable(items) {
    var cols = ["output", "index", "got", "exact", "rounded", "ulp", "budget_ulp", "ratio"];
    var t = h("table", { cls: "arr" }, [h("tr", null, cols.map(function (c) { return h("th", { text: c }); }))]);
    items.forEach(function (b) {
      t.appendChild(h("tr", null, cols.map(function (c) {
        var v = b[c];
        return h("td", { text: c === "ulp" || c === "budget_ulp" || c === "ratio" ? fmt(v) : full(v), title: full(v) });
      })));
    });
    return t;
  }

  function isNonFinite(v) { return v === "nan" || v === "inf" || v === "-inf"; }

  function compareTable(name, c, badIdx) {
    var f = c.got || c.hi || c.rounded;
    var shape = f ? f.s : [];
    var n = Math.max(c.got ? c.got.v.length : 0, c.hi ? c.hi.v.length : 0, c.rounded ? c.rounded.v.length : 0);
    var t = h("table", { cls: "arr" }, [h("tr", null, ["index", "got", "exact (hi)", "lo", "exact rounded", ""].map(function (x) { return h("th", { text: x }); }))]);
    for (var i = 0; i < n; i++) {
      var g = c.got ? c.got.v[i] : undefined, r = c.rounded ? c.rounded.v[i] : undefined;
      var idx = shape.length ? "[" + unravel(i, shape).join(", ") + "]" : "";
      var same = g !== undefined && r !== undefined && String(g) === String(r);
      var tr = h("tr", { cls: badIdx[name + idx] ? "bad" : "" }, [
        h("td", { text: idx }),
        h("td", { cls: isNonFinite(g) ? "nf" : "", text: g === undefined ? "–" : full(g) }),
        h("td", { text: c.hi ? full(c.hi.v[i]) : "–" }),
        h("td", { cls: "muted", text: c.lo ? full(c.lo.v[i]) : "–" }),
        h("td", { cls: isNonFinite(r) ? "nf" : "", text: r === undefined ? "–" : full(r) }),
        h("td", { cls: same ? "o-pass" : "muted", text: g === undefined || r === undefined ? "" : (same ? "= rounded" : "≠") })
      ]);
      t.appendChild(tr);
    }
    var total = f ? f.n : 0;
    var wrap = h("div", null, [t]);
    if (total > n) { wrap.appendChild(h("div", { cls: "muted small", text: "first " + n + " of " + total + " elements" })); }
    return wrap;
  }

  function copyButton(text) {
    var b = h("button", { type: "button", cls: "copy", text: "copy" });
    b.addEventListener("click", function () {
      function done() { b.textContent = "copied"; setTimeout(function () { b.textContent = "copy"; }, 1200); }
      function fallback() {
        var ta = h("textarea", { style: "position:fixed;left:-9999px" });
        ta.value = text; document.body.appendChild(ta); ta.select();
        try { document.execCommand("copy"); done(); } catch (e) { b.textContent = "select and copy"; }
        document.body.removeChild(ta);
      }
      if (navigator.clipboard && navigator.clipboard.writeText) { navigator.clipboard.writeText(text).then(done, fallback); }
      else { fallback(); }
    });
    return b;
  }

  function detailContent(i) {
    var d = data.details[i];
    var grid = h("div", { cls: "dgrid" });
    if (!d) {
      grid.appendChild(h("p", { cls: "muted", text: "Details left out to keep the page small; the results file has the full record." }));
      return grid;
    }
    if (d.message) { grid.appendChild(panel("message", h("pre", { text: d.message }), true)); }
    if (d.known) {
      var kp = h("div", null, [h("div", { cls: "mono strong", text: d.known.id + (d.known.source ? " (" + d.known.source + ")" : "") }),
        h("div", { text: d.known.description || "" })]);
      var link = String(d.known.link || "");
      if (/^https?:\/\//i.test(link)) { kp.appendChild(h("a", { href: link, rel: "noopener noreferrer", text: link })); }
      else if (link) { kp.appendChild(h("div", { cls: "muted", text: link })); }
      if (Array.isArray(d.known.also) && d.known.also.length) {  // the other entries its symptoms needed
        kp.appendChild(h("div", { cls: "muted", text: "also: " + d.known.also.map(String).join(", ") }));
      }
      if (Array.isArray(d.known.models)) {  // each entry's model, judged on this result (harness.known.Model)
        d.known.models.forEach(function (t) { kp.appendChild(h("div", { cls: "muted", text: String(t) })); });
      }
      grid.appendChild(panel("known discrepancy", kp, true));
    }
    if (d.peers && Object.keys(d.peers).length) {
      var prow = Object.keys(d.peers).map(function (k) { var p = d.peers[k]; return h("tr", null, [
        h("td", { cls: "mono", text: k }), h("td", { text: p.status || "–" }), h("td", { text: p.special || "–" }),
        h("td", { cls: "num", text: fmt(p.max_ulp), title: full(p.max_ulp) }), h("td", { cls: "num", text: fmt(p.excess), title: full(p.excess) })]); });
      grid.appendChild(panel("peers on this input (cause: " + (data.rows[i][C.cause] || "–") + ")", h("table", { cls: "kv" }, [
        h("tr", null, [h("th", { text: "implementation" }), h("th", { text: "status" }), h("th", { text: "class" }), h("th", { text: "max ulp" }), h("th", { text: "excess" })])].concat(prow))));
    }
    if (d.worst) { grid.appendChild(panel("worst element", kvTable(d.worst, ["output", "index", "got", "exact", "exact_hi", "exact_lo", "rounded", "ulp", "budget_ulp", "ratio"]))); }
    var badIdx = {};
    if (d.bad && d.bad.length) {
      d.bad.forEach(function (b) { badIdx[b.output + "[" + (b.index || []).join(", ") + "]"] = true; });
      var bp = h("div", null, [elemTable(d.bad)]);
      if (d.meta && d.meta.n_bad > d.bad.length) { bp.appendChild(h("div", { cls: "muted small", text: d.bad.length + " of " + d.meta.n_bad + " elements over budget shown" })); }
      grid.appendChild(panel("elements over budget", bp, true));
    }
    if (d.input) {
      var ip = h("div");
      Object.keys(d.input).forEach(function (k) {
        var v = d.input[k];
        ip.appendChild(h("div", { cls: "muted small", text: k }));
        ip.appendChild(h("pre", { text: v && typeof v === "object" && "s" in v ? nested(v) : full(v) }));
      });
      grid.appendChild(panel("input", ip));
    } else if (d.input_summary) {
      grid.appendChild(panel("input (summary)", kvTable(d.input_summary)));
    }
    if (d.compare) {
      var cp = h("div");
      Object.keys(d.compare).forEach(function (name) {
        cp.appendChild(h("div", { cls: "muted small", text: name }));
        cp.appendChild(compareTable(name, d.compare[name], badIdx));
      });
      grid.appendChild(panel("output vs exact reference", cp));
    }
    if (d.repro) {
      var pre = h("pre", { cls: "repro", text: d.repro });
      grid.appendChild(panel("repro", h("div", null, [copyButton(d.repro), pre]), true));
    }
    if (d.meta) {
      var g = h("div", { cls: "kvgrid" });
      Object.keys(d.meta).forEach(function (k) { g.appendChild(h("div", null, [h("span", { cls: "k", text: k }), h("span", { cls: "v", text: full(d.meta[k]) })])); });
      grid.appendChild(panel("record", g, true));
    }
    return grid;
  }

  /* ---- the matrix's figure: utilisation, or the worst ULP ---- */
  var ulpBtn = document.getElementById("matrix-ulp"), matrixEl = document.getElementById("matrix");
  if (ulpBtn && matrixEl) {
    ulpBtn.addEventListener("click", function () {
      var on = matrixEl.classList.toggle("show-ulp");
      ulpBtn.textContent = on ? "show the budget utilisation" : "show the worst ULP";
    });
  }

  /* ---- summary matrix cells filter the table ---- */
  Array.prototype.forEach.call(document.querySelectorAll("#matrix td.cell[data-filter]"), function (td) {
    td.addEventListener("click", function () {
      var f = JSON.parse(td.getAttribute("data-filter"));
      selects.forEach(function (s) {
        var k = s.getAttribute("data-field"), v = f[k] === undefined ? "" : String(f[k]);
        var ok = Array.prototype.some.call(s.options, function (o) { return o.value === v; });
        if (!ok && v !== "") { s.appendChild(h("option", { value: v, text: v + " (0)" })); }
        s.value = v;
      });
      textEl.value = "";
      state.showAll = false;
      render();
      document.getElementById("discrepancies").scrollIntoView();
    });
  });

  if (data.omitted) {
    var om = document.getElementById("disc-omitted");
    om.textContent = "The details of " + data.omitted + " rows (those listed last by default) were left out to keep the page under 10 MB; the results files have them.";
    om.hidden = false;
  }
  render();
  window.harnessReport = {num: num, fmt: fmt, full: full, h: h};  // for invariance.js, inlined after this script
  document.documentElement.setAttribute("data-ready", "1");
})();
