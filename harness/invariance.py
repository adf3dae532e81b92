"""The invariance checks (issue 16; docs/tolerance.md "Invariance and determinism").

Each check runs an op's forward call in several *variants* that should give the same answer,
compares them bit for bit with a *base* variant, and judges every variant against the exact
reference of the case (the forward budget of the policy):

- `batch_invariance`: the first and last rows of the case (MAX_ROWS) computed alone, a batch of
  one, is the base; the same row inside batches of BATCH_SIZES rows, at the first, middle and
  last position, the other rows random (normal, at the case's scale) or padding (zeros; label 0
  or the ignore_index) are the variants. A request's answer must not depend on what else
  shares its batch.
- `determinism`: the same call REPEATS times in one process, and in processes of their own with
  one CPU thread and with as many as the machine has (harness.threads); on a GPU, on other
  streams where the framework exposes them. The first call is the base.
- `eager_vs_jit`: the eager call is the base, the compiled one the variant (recorded with mode
  jit).
- `permutation`: the classes reversed and shuffled (a seeded permutation; labels, class weights
  and option arrays permuted alike, an ignore_index class kept in place), the outputs permuted
  back: softmax(P x) = P softmax(x), the losses unchanged.

The record holds, beside the usual fields of the worst variant, `invariance`: the rule of the
policy, the base, the number of variants, how many differ bit for bit and in how many elements,
the largest ULP distance between a variant and its base, and each variant's verdict. Under a
policy whose invariance rule is `bitwise` (strict) any difference fails; under `budget`
(standard) a difference is reported and the check fails only where a variant fails its budget.

The repro snippet of a result with a difference runs the base and the most different variant
(each the adapter's own snippet, derived inputs rebuilt by `variant_array`) and prints them side
by side, then both as exact lists (what `harness repro` compares with the record's `pair`).
"""

from __future__ import annotations

import contextlib
import os
import zlib
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from . import adapters as A
from . import dtypes as D
from . import ops as O
from .vocab import INVARIANCE_CHECKS

CHECKS = INVARIANCE_CHECKS
#: The batch sizes a row is computed in (batch_invariance), each at the first, middle and last row.
BATCH_SIZES = (1, 2, 7, 64, 1024)
#: A batch of more elements than this is not built (the record says which): 2^20, 1024 rows of up
#: to 1024 classes. A 1024-row batch of a 4099-class row (4.2M elements) costs a second per call
#: in every framework on a 2-core machine, six calls per row, dtype, mode and op: an hour of the
#: default run for batches whose rows are already split across lanes at 64 rows.
MAX_BATCH_ELEMENTS = 1 << 20
#: The rows of a case checked alone and in batches: the first and the last (23 calls each: a
#: batch of 1024 rows is most of a check's time, and another row is another input, not another
#: batch).
MAX_ROWS = 2
#: The determinism check's calls in one process.
REPEATS = 5
FILLERS = ("random", "padding")
#: Options holding an array of the logits' shape: a batch would need a filler for them.
SHAPED_OPTIONS = ("where", "b")


def is_invariance(check: str | None) -> bool:
    return check in CHECKS


def modes_for(check: str, modes: list[str]) -> list[str]:
    """The modes an item of `check` is expanded in: eager_vs_jit is one item, recorded as jit."""
    if check == "eager_vs_jit":
        return [m for m in modes if m == "jit"]
    return modes


# --------------------------------------------------------------------------------------------
# Layout: the class axis last, the other axes flattened to rows.

def to_rows(a: np.ndarray, ax: int) -> np.ndarray:
    return np.moveaxis(a, ax, -1).reshape(-1, a.shape[ax])


def from_rows(a2: np.ndarray, shape: tuple[int, ...], ax: int) -> np.ndarray:
    batch = tuple(n for i, n in enumerate(shape) if i != ax)
    return np.moveaxis(a2.reshape(batch + (shape[ax],)), -1, ax)


def checked_rows(n_rows: int) -> list[int]:
    """The rows of a case checked alone and in batches (at most MAX_ROWS, first and last kept,
    evenly between)."""
    if n_rows <= MAX_ROWS:
        return list(range(n_rows))
    return sorted(set(np.linspace(0, n_rows - 1, MAX_ROWS).round().astype(int).tolist()))


def _seed(*parts: Any) -> int:
    return zlib.crc32("|".join(map(str, parts)).encode())


# --------------------------------------------------------------------------------------------
# Derived inputs: what a variant's call takes, rebuilt alike by the run and the repro snippets.

def permutation(case: Any, order: str, C: int) -> np.ndarray:
    """sigma: the variant's class k is the case's class sigma[k]. An ignore_index that is a class
    stays in place (a label moved onto it would be ignored, one moved off it no longer)."""
    ign = case.options.get("ignore_index")
    fixed = ign if isinstance(ign, int) and 0 <= ign < C else None
    movable = np.array([k for k in range(C) if k != fixed], dtype=np.int64)
    if order == "reversed":
        moved = movable[::-1]
    elif order == "shuffled":
        moved = np.random.default_rng(_seed(case.id, "permutation", C)).permutation(movable)
    else:
        raise ValueError(f"unknown permutation {order!r}")
    sigma = np.arange(C, dtype=np.int64)
    sigma[movable] = moved
    return sigma


def derived(case: Any, op: str, dt: D.DType, spec: dict[str, Any]) -> dict[str, Any]:
    """The inputs of a variant: {"logits", "labels", "options", "axis"} from the case in dt.

    spec["kind"] == "batch": row `row` of the case (class axis last) at position `at` of a batch
    of `size` rows, the others `filler` rows; "permuted": the classes in `order`."""
    x = case.logits_for(dt)
    y = case.labels_for(dt) if O.OPS[op].labels != "none" else None
    opts = case.options_for(dt)
    ax = case.axis % x.ndim
    C = x.shape[ax]
    if spec["kind"] == "batch":
        r, B, p, filler = spec["row"], spec["size"], spec["at"], spec["filler"]
        x2 = to_rows(x, ax)
        rng = np.random.default_rng(_seed(case.id, "batch", r, B, p, filler))
        if filler == "random":
            fin = x2[np.isfinite(x2)]
            s = float(np.std(fin)) if fin.size else 1.0
            s = min(s if s > 0 else 1.0, dt.max / 64)
            xb = D.cast_exact(rng.standard_normal((B, C)) * s, dt)
        else:
            xb = np.zeros((B, C))
        xb[p] = x2[r]
        yb = None
        if y is not None:
            if O.OPS[op].labels == "sparse":
                ign = opts.get("ignore_index")
                yb = (rng.integers(0, C, B) if filler == "random"
                      else np.full(B, 0 if ign is None else ign)).astype(np.int64)
                yb[p] = np.asarray(y).reshape(-1)[r]
            else:
                y2 = to_rows(y, ax)
                yb = (np.eye(C)[rng.integers(0, C, B)] if filler == "random" else np.zeros((B, C)))
                yb = D.cast_exact(yb, dt)
                yb[p] = y2[r]
        return {"logits": xb, "labels": yb, "options": opts, "axis": -1}
    if spec["kind"] == "permuted":
        sigma = permutation(case, spec["order"], C)
        inv = np.argsort(sigma)
        xp = np.take(x, sigma, axis=ax)
        yp = y
        if y is not None:
            if O.OPS[op].labels == "sparse":
                yi = np.asarray(y, dtype=np.int64)
                ok = (yi >= 0) & (yi < C)
                ign = opts.get("ignore_index")
                if ign is not None:
                    ok &= yi != ign
                yp = np.where(ok, inv[np.clip(yi, 0, C - 1)], yi)
            else:
                yp = np.take(y, sigma, axis=ax)
        po = dict(opts)
        if "weights" in po:
            po["weights"] = np.asarray(po["weights"], dtype=np.float64)[sigma].tolist()
        for k in SHAPED_OPTIONS:
            if k in po and isinstance(po[k], list):
                arr = np.asarray(po[k])
                po[k] = np.take(arr, sigma, axis=ax).tolist()
        return {"logits": xp, "labels": yp, "options": po, "axis": case.axis, "inverse": inv}
    raise ValueError(f"unknown variant kind {spec['kind']!r}")


def variant_array(source: str, case_id: str, field: str, dtype: str, op: str, **spec: Any) -> np.ndarray:
    """One input of a variant (`logits` or `labels`), exact values as float64 (int64 for class
    indices): what a repro snippet of an invariance result loads for an input too large to write
    out (like cases.array_of for the case's own)."""
    from .cases import load
    from .errors import HarnessInputError

    case = next((c for c in load([source]) if c.id == case_id), None)
    if case is None:
        raise HarnessInputError("no such case", file=source, case=case_id)
    return derived(case, op, D.get(dtype), spec)[field]


def _literal(call: A.Call, spec: dict[str, Any], arrays: dict[str, Any]) -> dict[str, str]:
    """The snippet's source for each large derived input: a variant_array(...) call."""
    from .adapters.base import REPRO_INLINE

    out = {}
    for fld in ("logits", "labels"):
        a = arrays.get(fld)
        if a is not None and np.size(a) > REPRO_INLINE:
            kw = "".join(f", {k}={v!r}" for k, v in spec.items())
            out[fld] = (f"variant_array({call.source!r}, {call.case_id!r}, {fld!r}, {call.dtype!r}, "
                        f"op={call.op!r}{kw})")
    return out


# --------------------------------------------------------------------------------------------
# Variants

@dataclass
class Variant:
    label: str
    call: A.Call
    #: The case's flat rows this variant answers for (None: the whole output).
    rows: list[int] | None = None
    #: The rows of the call's output that hold them (batch: [at]; alone: [0]).
    take: list[int] | None = None
    #: Inverse permutation of the classes (permutation: outputs permuted back).
    inverse: np.ndarray | None = None
    #: The variant it is compared with (its label), None for a base.
    base: str | None = None
    threads: int | None = None
    repeat: int = 1
    stream: int | None = None


@dataclass
class Ran:
    variant: Variant
    pieces: dict[str, np.ndarray] | None = None  # the compared part of each output (call layout)
    dtypes: dict[str, str] | None = None
    raised: BaseException | None = None
    not_run: str = ""  # why the variant could not run (a worker that did not start): not judged
    verdict: Any = None
    n_diff: int = 0
    ulp_between: float = 0.0
    in_force: dict[str, Any] | None = None
    pieces_case: dict[str, np.ndarray] | None = None  # the answer in the case's output shapes
    #: The outputs and the output shapes of the variant's own call, where they differ (judged as such).
    wrong_shape: tuple[dict[str, Any], dict[str, tuple[int, ...]]] | None = None


def _call(base: A.Call, **changes: Any) -> A.Call:
    return replace(base, **changes)


def variants(check: str, item: Any, ad: A.Adapter, call: A.Call, x: np.ndarray, dt: D.DType,
             skipped: list[str]) -> list[Variant]:
    """The variants of `check` for the item whose own (forward) call is `call`; why any planned
    one is not built goes to `skipped`."""
    case = item.case
    ax = case.axis % x.ndim
    C = x.shape[ax]
    if check == "determinism":
        out = [Variant("call 1", call)]
        out += [Variant(f"call {k}", call, base="call 1", repeat=k) for k in range(2, REPEATS + 1)]
        for n in sorted({1, os.cpu_count() or 1}):
            if call.device == "cpu":
                out.append(Variant(f"{n} thread{'s' if n > 1 else ''}", call, base="call 1", threads=n))
        if call.device == "gpu":
            if ad.stream_context(1, call.device) is None:
                skipped.append(f"{ad.name} exposes no streams to run a call on")
            else:
                out += [Variant(f"stream {k}", call, base="call 1", stream=k) for k in (1, 2)]
        return out
    if check == "eager_vs_jit":
        return [Variant("eager", _call(call, mode="eager")), Variant("jit", _call(call, mode="jit"), base="eager")]
    if check == "permutation":
        out = [Variant("identity", call)]
        for order in ("reversed", "shuffled"):
            spec = {"kind": "permuted", "order": order}
            d = derived(case, item.op, dt, spec)
            c = _call(call, logits=d["logits"].astype(dt.np), options=d["options"],
                      labels=_labels(d["labels"], item.op, dt))
            c.literals = _literal(c, spec, d)
            out.append(Variant(f"classes {order}", c, inverse=d["inverse"], base="identity"))
        return out
    if check == "batch_invariance":
        out = []
        n_rows = x.size // C
        for r in checked_rows(n_rows):
            alone = None
            for B in BATCH_SIZES:
                if B * C > MAX_BATCH_ELEMENTS:
                    skipped.append(f"batches of {B} rows of {C} classes ({B * C} elements > {MAX_BATCH_ELEMENTS})")
                    continue
                for p in sorted({0, B // 2, B - 1}):
                    for filler in (FILLERS if B > 1 else FILLERS[:1]):
                        spec = {"kind": "batch", "row": r, "size": B, "at": p, "filler": filler}
                        d = derived(case, item.op, dt, spec)
                        c = _call(call, logits=d["logits"].astype(dt.np), labels=_labels(d["labels"], item.op, dt),
                                  axis=-1, options=d["options"])
                        c.literals = _literal(c, spec, d)
                        if B == 1:
                            alone = f"row {r} alone"
                            out.append(Variant(alone, c, rows=[r], take=[0]))
                        else:
                            out.append(Variant(f"row {r} in {B} at {p}, {filler}", c, rows=[r], take=[p], base=alone))
        return out
    raise ValueError(check)


def _labels(y: np.ndarray | None, op: str, dt: D.DType) -> np.ndarray | None:
    if y is None:
        return None
    return y if O.OPS[op].labels == "sparse" else y.astype(dt.np)


def _run_one(ad: A.Adapter, v: Variant) -> Ran:
    from . import threads as T

    ran = Ran(v)
    out = None
    try:
        if v.threads is not None:
            try:
                w = T.worker(ad.name, v.threads)
                out, raised = w.run(v.call)
                ran.in_force = w.in_force
            except T.WorkerError as e:
                ran.not_run = str(e)
                return ran
            if raised is not None:
                ran.raised = type(raised[0], (Exception,), {})(raised[1])
        else:
            cm = ad.stream_context(v.stream, v.call.device) if v.stream is not None else None
            with cm if cm is not None else contextlib.nullcontext():
                out = ad.run(v.call)
    except A.Unsupported as e:
        ran.not_run = str(e)
        return ran
    except Exception as e:  # noqa: BLE001 - the framework raised: its answer to this variant
        ran.raised = e
    if out is not None:
        ran.dtypes = out.dtypes
        c = v.call
        contract = O.output_shapes(c.op, "forward", np.shape(c.logits), c.axis % np.ndim(c.logits), c.options)
        if {n: tuple(np.shape(a)) for n, a in out.arrays.items()} != {n: tuple(s) for n, s in contract.items()}:
            # Judged as answered, against the contract of the variant's own call: cut to the case's
            # layout first, a wrong shape (a batch's (B, 1) for (B,)) passed the case's shape check.
            ran.wrong_shape = (dict(out.arrays), contract)
            return ran
        ran.pieces = {n: _piece(np.asarray(a, dtype=np.float64), v) for n, a in out.arrays.items()}
    return ran


def _piece(a: np.ndarray, v: Variant) -> np.ndarray:
    if v.take is not None and a.ndim >= 1:
        a = a[v.take]
    if v.inverse is not None and a.ndim == v.call.logits.ndim:
        a = np.take(a, v.inverse, axis=v.call.axis % a.ndim)
    return a


# --------------------------------------------------------------------------------------------
# Comparison

def ordinal(a: np.ndarray, dt: D.DType) -> np.ndarray:
    """Each value's place in the ordered floats of dt (float64 values exact in dt) as int64, +0 and
    -0 alike: consecutive floats are consecutive integers."""
    bits = np.asarray(a, dtype=np.float64).astype(dt.np)
    width = bits.dtype.itemsize * 8
    i = bits.view({16: np.int16, 32: np.int32, 64: np.int64}[width]).astype(np.int64)
    return np.where(i >= 0, i, -(i & np.int64((1 << (width - 1)) - 1)))


def ulp_distance(a: np.ndarray, b: np.ndarray, dt: D.DType) -> np.ndarray:
    """How many floats of dt lie from a to b (exact; as float64, which holds it exactly below 2^53
    and to its 16 digits beyond: only float64 values of opposite signs get that far apart)."""
    oa, ob = ordinal(a, dt), ordinal(b, dt)
    same = (oa >= 0) == (ob >= 0)
    with np.errstate(over="ignore"):
        exact = np.abs(np.where(same, oa - ob, 0)).astype(np.float64)
    return np.where(same, exact, np.abs(oa.astype(np.float64)) + np.abs(ob.astype(np.float64)))


def compare(a: np.ndarray, b: np.ndarray, dt: D.DType) -> tuple[int, float]:
    """(elements that differ bit for bit, the largest ULP distance in dt) between two answers
    (NaN equals NaN; +0 and -0 differ in bits, 0 ULPs apart; a NaN against a number is inf)."""
    from .repro import same_bits

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        return int(max(a.size, b.size)), float("inf")
    if same_bits(a, b):
        return 0, 0.0
    na, nb = np.isnan(a), np.isnan(b)
    diff = ~(na & nb) & (a.view(np.int64) != b.view(np.int64))
    with np.errstate(invalid="ignore"):
        dist = np.where(na | nb, np.where(na & nb, 0.0, np.inf), ulp_distance(a, b, dt))
    return int(diff.sum()), float(dist.max()) if dist.size else 0.0


def _differs(r: Ran, base: Ran, dt: D.DType) -> tuple[int, float]:
    if r.pieces is None or base.pieces is None:
        if (r.raised is None) == (base.raised is None) and type(r.raised).__name__ == type(base.raised).__name__:
            return 0, 0.0
        return 1, float("inf")  # one answered, the other raised (or raised otherwise)
    n, u = 0, 0.0
    for k in base.pieces:
        if k not in r.pieces:
            return 1, float("inf")
        dn, du = compare(r.pieces[k], base.pieces[k], dt)
        n, u = n + dn, max(u, du)
    return n, u


# --------------------------------------------------------------------------------------------
# The check

@dataclass
class Context:
    """What the runner computed for the item's case: the reference and how it judges."""

    ref: Any
    tol: Any
    cond: dict[str, np.ndarray]
    expected: dict[str, tuple[int, ...]]
    checked: dict[str, np.ndarray] | None
    x: np.ndarray
    rule: str
    skipped: list[str] = field(default_factory=list)


def run(item: Any, ad: A.Adapter, call: A.Call, dt: D.DType, ctx: Context) -> tuple[list[Ran], dict[str, Any]]:
    """Run the check's variants, judge each, compare each with its base; (the variants run, the
    record's `invariance` field)."""
    from .verdict import judge

    skipped = ctx.skipped
    vs = variants(item.check, item, ad, call, ctx.x, dt, skipped)
    done: dict[str, Ran] = {}
    for v in vs:
        done[v.label] = _run_one(ad, v)
    ax = item.case.axis % ctx.x.ndim
    for r in done.values():
        if r.not_run:
            continue
        if r.wrong_shape is not None:  # fails the shape check before anything else
            r.verdict = judge(item.op, "forward", r.wrong_shape[0], r.dtypes, None, ctx.ref, dt, ctx.tol, ctx.cond,
                              r.wrong_shape[1], None)
        else:
            arrays, checked = _in_case_layout(r, ctx, ax)
            r.pieces_case = arrays
            r.verdict = judge(item.op, "forward", arrays, r.dtypes, r.raised, ctx.ref, dt, ctx.tol, ctx.cond,
                              ctx.expected, checked)
        if r.variant.base is not None and done[r.variant.base].not_run == "":
            r.n_diff, r.ulp_between = _differs(r, done[r.variant.base], dt)
    ran = [r for r in done.values() if not r.not_run]
    for r in done.values():
        if r.not_run:
            skipped.append(f"{r.variant.label}: {r.not_run}")
    differing = [r for r in ran if r.n_diff]
    info: dict[str, Any] = {
        "rule": ctx.rule,
        "base": next((r.variant.label for r in ran if r.variant.base is None), None),
        "variants": len(ran),
        "differing": len(differing),
        "bitwise_differences": int(sum(r.n_diff for r in ran)),
        "max_ulp_between": max((r.ulp_between for r in ran), default=0.0),
        "worst": max(differing, key=lambda r: (r.ulp_between, r.n_diff)).variant.label if differing else None,
        "results": [{"variant": r.variant.label, "base": r.variant.base, "status": r.verdict.status,
                     "special": r.verdict.special, "max_ulp": r.verdict.max_ulp, "excess": r.verdict.excess,
                     "n_diff": r.n_diff, "ulp_between": r.ulp_between} for r in ran],
    }
    threads = {r.variant.label: r.in_force for r in ran if r.in_force is not None}
    if threads:
        info["threads"] = threads
    if skipped:
        info["not_run"] = list(dict.fromkeys(skipped))
    return ran, info


def _in_case_layout(r: Ran, ctx: Context, ax: int) -> tuple[dict[str, np.ndarray] | None, dict[str, np.ndarray] | None]:
    """A variant's answer as arrays of the case's output shapes (rows it does not answer for NaN)
    and the mask of the elements it answers for (within the runner's own sampled rows)."""
    v = r.variant
    if r.pieces is None:
        return None, ctx.checked
    if v.rows is None:
        return r.pieces, ctx.checked
    arrays, masks = {}, {}
    shape = ctx.x.shape
    for name, shp in ctx.expected.items():
        full = np.full(shp, np.nan)
        mask = np.zeros(shp, dtype=bool)
        piece = r.pieces.get(name)
        if piece is None:
            return r.pieces, ctx.checked  # judge names the missing output
        if len(shp) == len(shape):  # an output per class
            f2, m2 = to_rows(full, ax), to_rows(mask, ax)
            f2[v.rows] = piece.reshape(len(v.rows), -1)
            m2[v.rows] = True
            full, mask = from_rows(f2, shp, ax), from_rows(m2, shp, ax)
        else:  # an output per row
            full.reshape(-1)[v.rows] = piece.reshape(-1)
            mask.reshape(-1)[v.rows] = True
        if ctx.checked is not None and name in ctx.checked:
            mask &= ctx.checked[name]
        arrays[name], masks[name] = full, mask
    return arrays, masks


def batch_unsupported(options: dict[str, Any]) -> str | None:
    """Why a case's options leave no batch to build, or None."""
    from .ops import reduction

    if reduction(options) != "none":
        return (f"batch_invariance: the loss is reduced over the rows ({reduction(options)}): its value depends on "
                f"the batch by definition")
    shaped = [k for k in SHAPED_OPTIONS if k in options]
    if shaped:
        return (f"batch_invariance: {', '.join(shaped)} is an array of the logits' shape; batches with filler "
                f"rows for it are not built")
    return None


def pair(ran: list[Ran], worst: Ran) -> tuple[Ran, Ran | None]:
    """The two variants a repro shows: the most different one and its base; else the failing one
    and its base; else the base alone."""
    by = {r.variant.label: r for r in ran}
    differing = [r for r in ran if r.n_diff and r.variant.base in by]
    if differing:
        d = max(differing, key=lambda r: (r.ulp_between, r.n_diff))
        return by[d.variant.base], d  # type: ignore[index]
    if worst.variant.base in by:
        return by[worst.variant.base], worst  # type: ignore[index]
    return worst, None


def status(ran: list[Ran], rule: str) -> str:
    """fail where a variant fails its budget (or raised on a valid input); under `bitwise`, also
    where any variant differs from its base."""
    if any(r.verdict.status == "error" for r in ran) and not any(r.verdict.status == "fail" for r in ran):
        return "error"
    if any(r.verdict.status != "pass" for r in ran):
        return "fail"
    if rule == "bitwise" and any(r.n_diff for r in ran):
        return "fail"
    return "pass"


def message(ran: list[Ran], info: dict[str, Any]) -> str:
    n = info["variants"]
    parts = [f"{n} variants"]
    if info["differing"]:
        parts.append(f"{info['differing']} differ from their base bit for bit ({info['bitwise_differences']} "
                     f"elements, at most {info['max_ulp_between']:g} ULPs apart; most: {info['worst']})")
    else:
        parts.append("all equal bit for bit")
    bad = [r for r in ran if r.verdict.status != "pass"]
    if bad:
        w = bad[0]
        parts.append(f"{len(bad)} fail their budget (first: {w.variant.label}: {w.verdict.message})")
    else:
        parts.append("every variant within its budget")
    if info.get("not_run"):
        parts.append("not run: " + "; ".join(info["not_run"][:3]) + (" ..." if len(info["not_run"]) > 3 else ""))
    return "; ".join(parts)


# --------------------------------------------------------------------------------------------
# Repro: the base and the most different variant side by side

_RUNNER = '''import contextlib, io, os, subprocess, sys
import numpy as np


def run(src, env=None):
    """What a snippet prints last: its outputs as exact float64 lists."""
    if env is None:
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            exec(compile(src, "<part>", "exec"), {"__name__": "__part__"})
        out = buf.getvalue()
    else:  # a process of its own, with the thread settings the run used
        out = subprocess.run([sys.executable, "-c", src], env={**os.environ, **env}, capture_output=True,
                             text=True, check=True).stdout
    last = [ln for ln in out.splitlines() if ln.strip()][-1]
    return [np.asarray(o, dtype=np.float64) for o in eval(last, {"nan": float("nan"), "inf": float("inf")})]
'''


def _part_source(ad: A.Adapter, v: Variant) -> str:
    from .repro import split

    src = with_imports(ad.repro(v.call))
    if v.repeat > 1:  # the k-th call of one program in one process
        prefix, body = split(src)
        src = prefix + ("\n" + body) * v.repeat
    if v.stream is not None:
        raise ValueError("a stream's repro is not written")  # GPU-only; the caller falls back
    return src


#: The harness's loaders a snippet may call, and where each is imported from.
_LOADERS = {"array_of": "harness.cases", "variant_array": "harness.invariance"}


def with_imports(src: str) -> str:
    """A snippet with an import line first for each harness loader it calls and does not import."""
    for name, mod in _LOADERS.items():
        if f"{name}(" in src and f"import {name}" not in src:
            src = f"from {mod} import {name}\n" + src
    return src


def _post(v: Variant) -> str:
    if v.take is not None:
        return f"o[{v.take!r}]"
    if v.inverse is not None:
        return f"np.take(o, {v.inverse.tolist()!r}, axis={v.call.axis}) if o.ndim == {v.call.logits.ndim} else o"
    return "o"


#: The most places along an output's first axis a repro shows (those where the two variants differ).
PAIR_ROWS = 4


def selection(a: Ran, b: Ran) -> list[int] | None:
    """The places along the outputs' first axis a repro shows: where a and b differ (at most
    PAIR_ROWS), None for all (0-d outputs, or no difference: a failing variant shown whole)."""
    assert a.pieces is not None and b.pieces is not None
    rows: set[int] = set()
    for k, u in a.pieces.items():
        v = b.pieces.get(k)
        if v is None or u.ndim == 0 or u.shape != v.shape:
            return None
        same = (u == v) & (np.signbit(u) == np.signbit(v)) | (np.isnan(u) & np.isnan(v))
        rows.update(np.nonzero(~same.reshape(len(u), -1).all(axis=1))[0].tolist())
    return sorted(rows)[:PAIR_ROWS] or None


def shown(pieces: dict[str, np.ndarray], sel: list[int] | None) -> dict[str, np.ndarray]:
    return {k: (v[sel] if sel is not None and v.ndim else v) for k, v in pieces.items()}


def repro(ad: A.Adapter, shown: list[Variant], names: list[str], sel: list[int] | None = None) -> str:
    """A snippet printing two variants' outputs side by side, then [*a, *b] as exact lists (the
    places `sel` along their first axis only); or one variant's outputs."""
    lines = [_RUNNER]
    for tag, v in zip("ab", shown):
        lines.append(f"{tag.upper()} = {_part_source(ad, v)!r}")
    for tag, v in zip("ab", shown):
        env = ad.thread_env(v.threads) if v.threads is not None else None
        lines.append(f"{tag} = [{_post(v)} for o in run({tag.upper()}, {env!r})]  # {v.label}")
    if len(shown) == 1:
        return "\n".join(lines + ["print([o.tolist() for o in a])"])
    a, b = shown
    if sel is not None:
        lines += [f"a, b = [o[{sel!r}] if o.ndim else o for o in a], [o[{sel!r}] if o.ndim else o for o in b]"
                  "  # where they differ"]
    lines += [f"names, labels = {names!r}, {[a.label, b.label]!r}",
              "for name, u, v in zip(names, a, b):",
              "    diff = ~((u == v) | (np.isnan(u) & np.isnan(v))) | (np.signbit(u) != np.signbit(v))",
              "    print(f'{name}: {int(diff.sum())} of {u.size} differ ({labels[0]} | {labels[1]})')",
              "    for ix in list(zip(*np.nonzero(diff)))[:10]:",
              "        print('  ', tuple(int(i) for i in ix), repr(float(u[ix])), '|', repr(float(v[ix])))",
              "print([o.tolist() for o in a + b])"]
    return "\n".join(lines)
