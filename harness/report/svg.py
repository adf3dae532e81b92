"""Small inline SVG plots, generated as text (no plotting library, no network).

Every label that comes from the records goes through `esc`: the SVG is embedded as markup.
"""

from __future__ import annotations

import math
from html import escape
from typing import Any

PALETTE = ["#4e79a7", "#e15759", "#f28e2b", "#59a14f", "#b07aa1", "#76b7b2", "#edc948", "#9c755f", "#ff9da7",
           "#bab0ac", "#1b9e77", "#7570b3", "#d95f02", "#666666"]
FIXED = {"jax": "#4e79a7", "torch": "#e15759", "tensorflow": "#f28e2b", "numpy": "#59a14f", "scipy": "#b07aa1",
         "onnxruntime": "#76b7b2", "keras-tensorflow": "#edc948", "keras-jax": "#9c755f", "keras-torch": "#ff9da7"}

W, H = 340, 210
ML, MR, MT, MB = 42, 12, 24, 34  # margins


def esc(s: Any) -> str:
    return escape(str(s), quote=True)


def colors(names: list[str]) -> dict[str, str]:
    out, free = {}, [c for c in PALETTE if c not in FIXED.values()]
    for i, n in enumerate(sorted(names)):
        out[n] = FIXED.get(n) or free[i % len(free)]
    return out


def _decades(lo: float, hi: float, most: int) -> list[tuple[int, bool]]:
    """The integer decades in [lo, hi], each with whether it gets a label: every step-th one,
    so that at most about `most` are labelled."""
    step = max(1, math.ceil((hi - lo) / most))
    first = math.ceil(lo)
    return [(k, (k - first) % step == 0) for k in range(first, math.floor(hi) + 1)]


def _pow10_label(k: int) -> str:
    return {-2: "0.01", -1: "0.1", 0: "1", 1: "10", 2: "100"}.get(k, f"1e{k}")


def _frame(title: str, x0: float, x1: float, y1: float, xlabel: str, ylabel: str, ylog: bool = False,
           y0: float = 0.0, xticks: list[tuple[float, str]] | None = None) -> tuple[list[str], Any, Any]:
    pw, ph = W - ML - MR, H - MT - MB

    def sx(x: float) -> float:
        return ML + (x - x0) / (x1 - x0 or 1) * pw

    def sy(y: float) -> float:
        return MT + ph - (y - y0) / (y1 - y0 or 1) * ph

    p = [(f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" width="{W}" height="{H}" '
          f'role="img" aria-label="{esc(title)}" class="plot">'),
         f'<text x="{ML}" y="14" class="pt">{esc(title)}</text>',
         f'<rect x="{ML}" y="{MT}" width="{pw}" height="{ph}" class="pbg"/>']
    ticks = xticks if xticks is not None else [(k, _pow10_label(k) if labelled else "")
                                               for k, labelled in _decades(x0, x1, 7)]  # ~7 labels at most
    for k, label in ticks:
        x = sx(k)
        p.append(f'<line x1="{x:.1f}" y1="{MT}" x2="{x:.1f}" y2="{MT + ph}" class="grid"/>')
        if label:
            p.append(f'<text x="{x:.1f}" y="{MT + ph + 12}" class="tick" text-anchor="middle">'
                     f'{esc(label)}</text>')
    if ylog:
        for k, labelled in _decades(y0, y1, 6):
            y = sy(k)
            p.append(f'<line x1="{ML}" y1="{y:.1f}" x2="{ML + pw}" y2="{y:.1f}" class="grid"/>')
            if labelled:
                p.append(f'<text x="{ML - 4}" y="{y + 3:.1f}" class="tick" text-anchor="end">'
                         f'{esc(_pow10_label(k))}</text>')
    else:
        step = _nice_step(y1)
        v = 0.0
        while v <= y1 + 1e-9:
            y = sy(v)
            p.append(f'<line x1="{ML}" y1="{y:.1f}" x2="{ML + pw}" y2="{y:.1f}" class="grid"/>')
            p.append(f'<text x="{ML - 4}" y="{y + 3:.1f}" class="tick" text-anchor="end">{v:g}</text>')
            v += step
    p.append(f'<text x="{ML + pw / 2:.1f}" y="{H - 4}" class="axl" text-anchor="middle">{esc(xlabel)}</text>')
    p.append(f'<text x="10" y="{MT + ph / 2:.1f}" class="axl" text-anchor="middle" '
             f'transform="rotate(-90 10 {MT + ph / 2:.1f})">{esc(ylabel)}</text>')
    return p, sx, sy


def _nice_step(top: float) -> float:
    if top <= 0:
        return 1.0
    raw = top / 4
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 5, 10):
        if raw <= m * mag:
            return max(1.0, m * mag)
    return max(1.0, 10 * mag)


#: The ULP histogram's readable range, log10: 1e-3 to 1e4 ULP; below goes to the first bin, above
#: to an overflow bin of its own (an axis up to 1e267 put every bar in the first pixel).
ULP_RANGE = (-3.0, 4.0)


def histograms(values: dict[str, dict[str, list[float]]], dtypes: list[str], frameworks: list[str],
               colormap: dict[str, str], bin_width: float = 0.5, lo: float = ULP_RANGE[0],
               hi: float = ULP_RANGE[1], log: bool = True, xlabel: str = "max error (ULP, log scale)",
               over_label: str | None = None) -> list[str]:
    """One panel per dtype: the distribution of the values per framework (step outlines) on a
    fixed axis [lo, hi] (log10 of the values when `log`), values below lo in the first bin and
    values above hi in an overflow bin drawn past the axis, labelled `over_label`.

    values[dtype][framework] = values (>= 0)."""
    nb = max(1, round((hi - lo) / bin_width))
    over = over_label or (f"> {_pow10_label(int(hi))}" if log else f"> {hi:g}")
    x_end = lo + (nb + 1) * bin_width  # the overflow bin
    if log:
        ticks = [(k, _pow10_label(k) if lab else "") for k, lab in _decades(lo, hi, 7)]
    else:
        step = (hi - lo) / 4
        ticks = [(lo + k * step, f"{lo + k * step:g}") for k in range(5)]
    ticks.append((lo + (nb + 0.5) * bin_width, over))
    panels = []
    for dt in dtypes:
        series = {}
        top = 0
        for fw in frameworks:
            vs = values.get(dt, {}).get(fw, [])
            if not vs:
                continue
            h = [0] * (nb + 1)
            for v in vs:
                x = (math.log10(v) if v > 0 else -math.inf) if log else v
                i = nb if x > hi else min(nb - 1, max(0, int((x - lo) / bin_width))) if x > -math.inf else 0
                h[i] += 1
            series[fw] = h
            top = max(top, max(h))
        if not series:
            continue
        p, sx, sy = _frame(dt, lo, x_end, top * 1.08 or 1, xlabel, "results", xticks=ticks)
        p.append(f'<line x1="{sx(lo + nb * bin_width):.1f}" y1="{MT}" x2="{sx(lo + nb * bin_width):.1f}" '
                 f'y2="{H - MB}" class="grid"/>')
        one = 0.0 if log else 1.0
        if lo <= one <= hi:
            p.append(f'<line x1="{sx(one):.1f}" y1="{MT}" x2="{sx(one):.1f}" y2="{H - MB}" class="one"/>')
        for fw, h in series.items():
            pts = [f"{sx(lo):.1f},{sy(0):.1f}"]
            for i, c in enumerate(h):
                xa, xb = lo + i * bin_width, lo + (i + 1) * bin_width
                pts.append(f"{sx(xa):.1f},{sy(c):.1f}")
                pts.append(f"{sx(xb):.1f},{sy(c):.1f}")
            pts.append(f"{sx(x_end):.1f},{sy(0):.1f}")
            col = colormap.get(fw, "#888")
            p.append(f'<polygon points="{" ".join(pts)}" fill="{col}" fill-opacity="0.12" stroke="{col}" '
                     f'stroke-width="1.5"><title>{esc(fw)} {esc(dt)}: {sum(h)} results, {h[-1]} {esc(over)}'
                     f'</title></polygon>')
        p.append("</svg>")
        panels.append("".join(p))
    return panels


def vocab_plot(points: list[dict[str, Any]], dtypes: list[str], colormap: dict[str, str]) -> list[str]:
    """One panel per dtype: worst max_ulp (log) against the class count (log), a line per framework."""
    if not points:
        return []
    xs = [math.log10(p["classes"]) for p in points if p["classes"] > 0]
    ys = [math.log10(max(p["max_ulp"], 1e-2)) for p in points]
    x0, x1 = math.floor(min(xs)), math.ceil(max(xs))
    y0, y1 = math.floor(min(ys)), math.ceil(max(ys))
    if x1 - x0 < 1:
        x0, x1 = x0 - 1, x1 + 1
    if y1 - y0 < 2:
        y1 = y0 + 2
    panels = []
    for dt in dtypes:
        pts = [p for p in points if p["dtype"] == dt and p["classes"] > 0]
        if not pts:
            continue
        p, sx, sy = _frame(dt, x0, x1, y1, "classes (log scale)", "worst max_ulp", ylog=True, y0=y0)
        if y0 <= 0 <= y1:
            p.append(f'<line x1="{ML}" y1="{sy(0):.1f}" x2="{W - MR}" y2="{sy(0):.1f}" class="one"/>')
        for fw in sorted({q["framework"] for q in pts}):
            ser = sorted((q for q in pts if q["framework"] == fw), key=lambda q: q["classes"])
            col = colormap.get(fw, "#888")
            coords = [(sx(math.log10(q["classes"])), sy(math.log10(max(q["max_ulp"], 1e-2))), q) for q in ser]
            if len(coords) > 1:
                d = " ".join(f"{x:.1f},{y:.1f}" for x, y, _ in coords)
                p.append(f'<polyline points="{d}" fill="none" stroke="{col}" stroke-width="1.5"/>')
            for x, y, q in coords:
                p.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{col}"><title>{esc(fw)} {esc(dt)}, '
                         f'{q["classes"]} classes: {q["max_ulp"]:.4g} ULP</title></circle>')
        p.append("</svg>")
        panels.append("".join(p))
    return panels
