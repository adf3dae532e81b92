"""Cross-framework disagreement: how far apart the frameworks are from each other.

Results of the value checks (not the invariance checks, whose records hold one variant's outputs)
are grouped by (case_id, op, check, cotangent, dtype, device, mode); inside a group each
implementation (`framework`, or `framework:variant` for an API variant other than "default")
is one column. For every pair of implementations the largest disagreement is measured in ULPs
of the dtype at the exact value (`harness.dtypes.ulp` of the reference hi/lo):

- from the stored outputs, when both records carry `output` arrays of the same shapes and a
  `reference` for them (small cases): max_i |a_i - b_i| / ULP(exact_i). Two NaNs, or two
  infinities of the same sign, agree (0); any other non-finite difference is a special-value
  mismatch and counts as an infinite disagreement;
- otherwise as a bound, max_ulp_a + max_ulp_b (the triangle inequality through the exact value),
  or an infinite one (a special-value mismatch) when the two records' `special` classes differ.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from .. import dtypes as D
from ..cause import PEER_FIELDS, impl_label  # noqa: F401 - impl_label: the report's label too
from ..vocab import INVARIANCE_CHECKS
from .numbers import measure, nums

#: The same input run by several implementations: harness/cause.py's peers, one definition.
GROUP_FIELDS = PEER_FIELDS


def to_array(v: Any) -> np.ndarray | None:
    """A stored array (numbers or the strings "inf", "-inf", "nan") as float64, or None."""
    if v is None:
        return None
    try:
        return np.asarray(v, dtype=np.float64)  # numpy parses "inf", "-inf", "nan" itself
    except (TypeError, ValueError):
        pass
    try:
        return np.asarray(nums(v), dtype=np.float64)
    except (TypeError, ValueError):  # ragged: not an array
        return None


def disagreement_ulp(a: np.ndarray, b: np.ndarray, u: np.ndarray, finite: bool = False) -> float:
    """max |a - b| in ULPs `u` (D.ulp of the exact values); inf for a special-value mismatch.
    `finite`: the caller knows every element of a and b is finite."""
    if a.size == 0:
        return 0.0
    if finite:
        with np.errstate(over="ignore"):
            return float(np.max(np.abs(a - b) / u))
    fa, fb = np.isfinite(a), np.isfinite(b)
    both = fa & fb
    same_special = (np.isnan(a) & np.isnan(b)) | (np.isinf(a) & np.isinf(b) & (a == b))
    if np.any(~both & ~same_special):
        return math.inf
    if not np.any(both):
        return 0.0
    with np.errstate(invalid="ignore", over="ignore"):
        d = np.abs(a[both] - b[both]) / u[both]
    return float(np.max(d))


class _Impl:
    """One record's arrays, converted once."""

    def __init__(self, rec: dict[str, Any]):
        self.rec = rec
        self.max_ulp = measure(rec.get("max_ulp"))
        self.outputs: dict[str, np.ndarray] = {}
        self.refs: dict[str, tuple[np.ndarray, np.ndarray | None]] = {}
        out, ref = rec.get("output"), rec.get("reference")
        if isinstance(out, dict):
            for name, v in out.items():
                a = to_array(v)
                if a is not None:
                    self.outputs[name] = a
        if isinstance(ref, dict):
            for name, r in ref.items():
                if isinstance(r, dict) and r.get("hi") is not None:
                    hi = to_array(r["hi"])
                    lo = to_array(r.get("lo")) if r.get("lo") is not None else None
                    if hi is not None and (lo is None or lo.shape == hi.shape):
                        self.refs[name] = (hi, lo)
        self._ulps: dict[str, np.ndarray] = {}
        self.finite = {name: bool(np.isfinite(a).all()) for name, a in self.outputs.items()}

    def ulp(self, name: str, dt: D.DType) -> np.ndarray:
        """The ULPs of dt at this record's exact values of output `name`: once per record, not
        once per pair it is in (the dtype is the group's)."""
        if name not in self._ulps:
            self._ulps[name] = D.ulp(*self.refs[name], dt)
        return self._ulps[name]


def _pair(a: _Impl, b: _Impl, dt: D.DType | None) -> dict[str, Any] | None:
    names = sorted(set(a.outputs) & set(b.outputs))
    if dt is not None and names and set(a.outputs) == set(b.outputs):
        worst, ok = 0.0, True
        for n in names:
            owner = a if n in a.refs else b if n in b.refs else None
            x, y = a.outputs[n], b.outputs[n]
            if owner is None or x.shape != y.shape or x.shape != owner.refs[n][0].shape:
                ok = False
                break
            worst = max(worst, disagreement_ulp(x, y, owner.ulp(n, dt), a.finite[n] and b.finite[n]))
        if ok:
            return {"ulp": worst, "kind": "outputs", "special_mismatch": math.isinf(worst)}
    sa, sb = a.rec.get("special"), b.rec.get("special")
    if sa and sb and sa != sb:
        # Different special-value classes: somewhere one returns a special value the other does not.
        return {"ulp": math.inf, "kind": "bound", "special_mismatch": True}
    if a.max_ulp is not None and b.max_ulp is not None:
        return {"ulp": float(a.max_ulp) + float(b.max_ulp), "kind": "bound", "special_mismatch": False}
    return None


def cross_framework(results: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per (case_id, op, check, cotangent, dtype, device, mode) run by two or more implementations:

    `impls`: label -> {framework, variant, status, special, max_ulp, kind ("outputs" when the
    record carries its outputs)}; `pairs`: [{a, b, ulp, kind ("outputs" | "bound"),
    special_mismatch}] for every pair that can be compared, largest first; `worst`: the first
    pair or None. Sorted by the worst disagreement, largest first (special mismatches, inf,
    first; groups with no comparable pair last).
    """
    groups: dict[tuple, dict[str, dict[str, Any]]] = {}
    for rec in results:
        if rec.get("status") == "skip" or rec.get("check") in INVARIANCE_CHECKS:
            continue  # an invariance result's outputs are one of its variants' (NaN where it answers no row)
        k = tuple(rec.get(f) for f in GROUP_FIELDS)
        groups.setdefault(k, {})[impl_label(rec)] = rec  # the last record of an implementation wins
    out = []
    for k, by_impl in groups.items():
        if len(by_impl) < 2:
            continue
        try:
            dt: D.DType | None = D.get(str(k[GROUP_FIELDS.index("dtype")]))
        except Exception:  # noqa: BLE001 - an unknown dtype: bounds only
            dt = None
        impls = {lab: _Impl(r) for lab, r in sorted(by_impl.items())}
        labels = list(impls)
        pairs = []
        for i, la in enumerate(labels):
            for lb in labels[i + 1:]:
                p = _pair(impls[la], impls[lb], dt)
                if p is not None:
                    pairs.append({"a": la, "b": lb, **p})
        pairs.sort(key=lambda p: (-p["ulp"], p["kind"] != "outputs", p["a"], p["b"]))
        entry = dict(zip(GROUP_FIELDS, k))
        entry["impls"] = {lab: {"framework": im.rec.get("framework"), "variant": im.rec.get("variant"),
                                "status": im.rec.get("status"), "special": im.rec.get("special"),
                                "max_ulp": im.max_ulp, "known": bool(im.rec.get("known")),
                                "has_output": bool(im.outputs)}
                          for lab, im in impls.items()}
        entry["pairs"] = pairs
        entry["worst"] = pairs[0] if pairs else None
        out.append(entry)
    out.sort(key=lambda e: (e["worst"] is None, -(e["worst"]["ulp"] if e["worst"] else 0.0),
                            tuple(str(e[f]) for f in GROUP_FIELDS)))
    return out
