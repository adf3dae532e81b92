"""Reference throughput: elements per second of the reference engine against a naive mpmath loop.

softmax, log_softmax and dense softmax cross-entropy (forward) on a (64, 1000) float32 case
(standard normal logits, seed 0; Dirichlet labels), computed by

- the engine cold: a direct `reference.compute` (no cache) with the default backend (arb when
  python-flint is installed; HARNESS_REF_BACKEND picks another), in one process
  (HARNESS_REF_WORKERS=1) and with the default worker pool; then the other backends, cold, in
  one process;
- the engine warm: through `harness.cache.Cache` in a temporary directory (put, then get);
- a naive loop in this process: mpmath at 50 digits, `mp.exp` of each element, `mp.fsum` per
  row, then a division (softmax) or a log (log_softmax, cross-entropy).

It prints the figures, the speedups, and the largest relative difference between the naive
values and the engine's stored values (hi + lo; for float32 outputs lo is kept only where hi
sits on a rounding midpoint, so hi is good to float64's 2^-53, the float64 run to 2^-claim).

Then, over every reference of the default library (each case, op, check and dtype, cold, in
one process), what deciding the correct rounding near boundaries costs (docs/semantics.md S18):
how many elements needed a decision, how many rows a raised precision, and the seconds that
took against the library's whole reference time.

Run by hand:  python benchmarks/reference_throughput.py [--rows 64] [--classes 1000] [--no-library]
Prints figures; asserts nothing. A few minutes.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import mpmath  # noqa: E402
import numpy as np  # noqa: E402

from harness import dtypes as D  # noqa: E402
from harness import reference as R  # noqa: E402
from harness.cache import Cache, cache_key  # noqa: E402

OPS = ("softmax", "log_softmax", "softmax_cross_entropy")
NAIVE_DPS = 50


def naive(op: str, x: np.ndarray, y: np.ndarray | None) -> list[list[mpmath.mpf]]:
    """The textbook formulas per element at 50 digits (no max shift: the logits are small)."""
    out = []
    with mpmath.workdps(NAIVE_DPS):
        for r in range(x.shape[0]):
            xs = [mpmath.mpf(v) for v in x[r].tolist()]
            es = [mpmath.exp(v) for v in xs]
            S = mpmath.fsum(es)
            if op == "softmax":
                out.append([e / S for e in es])
            elif op == "log_softmax":
                L = mpmath.log(S)
                out.append([v - L for v in xs])
            else:
                L = mpmath.log(S)
                out.append([mpmath.fsum(yi * (L - v) for yi, v in zip(y[r].tolist(), xs) if yi != 0)])
    return out


def max_rel_diff(vals: list[list[mpmath.mpf]], ref: R.RefArray) -> float:
    hi = ref.hi.reshape(len(vals), -1)
    lo = ref.lo.reshape(len(vals), -1)
    worst = mpmath.mpf(0)
    with mpmath.workdps(NAIVE_DPS):
        for r, row in enumerate(vals):
            for i, v in enumerate(row):
                d = abs(mpmath.mpf(hi[r, i]) + mpmath.mpf(lo[r, i]) - v)
                if v != 0:
                    worst = max(worst, d / abs(v))
    return float(worst)


def timed(fn, *a, **k):
    t0 = time.perf_counter()
    out = fn(*a, **k)
    return time.perf_counter() - t0, out


def engine(op: str, x: np.ndarray, y: np.ndarray | None, dt: D.DType, workers: str | None,
           backend: str | None = None) -> tuple[float, R.Reference]:
    old = os.environ.get("HARNESS_REF_WORKERS")
    if workers is None:
        os.environ.pop("HARNESS_REF_WORKERS", None)
    else:
        os.environ["HARNESS_REF_WORKERS"] = workers
    try:
        return timed(R.compute, op, "forward", x, y if op == "softmax_cross_entropy" else None, -1, dt,
                     backend_name=backend)
    finally:
        if old is None:
            os.environ.pop("HARNESS_REF_WORKERS", None)
        else:
            os.environ["HARNESS_REF_WORKERS"] = old


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=64)
    ap.add_argument("--classes", type=int, default=1000)
    ap.add_argument("--no-float64", action="store_true", help="skip the float64 accuracy run")
    ap.add_argument("--mpmath-backend", action="store_true", help="also time the (slow) mpmath backend")
    ap.add_argument("--no-library", action="store_true", help="skip the default library's rounding decisions")
    args = ap.parse_args()
    B, C = args.rows, args.classes
    n = B * C
    f32 = D.DTYPES["float32"]
    rng = np.random.default_rng(0)
    x = D.cast_exact(rng.standard_normal((B, C)), f32)
    y = D.cast_exact(rng.dirichlet(np.ones(C), size=B), f32)
    be = R.backend().name
    print(f"logits ({B}, {C}) float32, {n} elements; backend {be}; cpus {os.cpu_count()}; "
          f"pool workers {R._workers()} (parallel from {R.PARALLEL_MIN} elements)")

    # Start the worker pool outside the timings (a one-off cost per process).
    t_pool, _ = engine("softmax", x, y, f32, None)
    print(f"first parallel call (pool start + softmax): {t_pool:.2f} s\n")

    hdr = (f"{'op':22} {'cold 1 proc':>12} {'cold pool':>12} {'warm cache':>12} {'naive mp50':>12}"
           f" {'x 1 proc':>9} {'x pool':>8} {'x warm':>9} {'max rel diff':>13} {'prec':>5}")
    print("elements per second (higher is better); speedups over the naive loop")
    print(hdr)
    with tempfile.TemporaryDirectory() as tmp:
        cache = Cache(tmp)
        for op in OPS:
            t1, ref1 = engine(op, x, y, f32, "1")
            tp, refp = engine(op, x, y, f32, None)
            lab = y if op == "softmax_cross_entropy" else None
            key = cache_key(op, "forward", "float32", -1, x, lab, None, R.claim_bits(f32))
            cache.put(key, refp)
            tw, got = timed(cache.get, key)
            assert got is not None
            tn, vals = timed(naive, op, x, y)
            same = np.array_equal(ref1.outputs["out"].hi, refp.outputs["out"].hi, equal_nan=True)
            rd = max_rel_diff(vals, refp.outputs["out"])
            print(f"{op:22} {n / t1:12.3g} {n / tp:12.3g} {n / tw:12.3g} {n / tn:12.3g}"
                  f" {tn / t1:9.1f} {tn / tp:8.1f} {tn / tw:9.0f} {rd:13.2e} {refp.prec_bits:5d}"
                  + ("" if same else "  (1-proc and pool results differ!)"))
        print(f"\nmax rel diff bound for float32 outputs (hi only, lo kept at midpoints): 2^-53 = {2.0 ** -53:.2e}")
        others = [b for b in ("arb", "mpfr", "mpmath") if b != be and (b != "mpmath" or args.mpmath_backend)]
        others = [b for b in others if importlib.util.find_spec({"arb": "flint", "mpfr": "gmpy2"}.get(b, "mpmath"))]
        if others:
            print("\nthe other backends, cold, one process (x: speedup over the naive loop):")
            for op in OPS:
                tn, _ = timed(naive, op, x, y)
                row = []
                for b in others:
                    tb, _ = engine(op, x, y, f32, "1", b)
                    row.append(f"{b} {n / tb:10.3g} el/s x{tn / tb:5.1f}")
                print(f"  {op:22} " + "   ".join(row))
        if not args.no_float64:
            f64 = D.DTYPES["float64"]
            print(f"\nfloat64 outputs of the same inputs (hi + lo certified to {R.claim_bits(f64)} bits, "
                  f"2^-{R.claim_bits(f64)} = {2.0 ** -R.claim_bits(f64):.2e}):")
            for op in OPS:
                tp, refp = engine(op, x, y, f64, None)
                vals = naive(op, x, y)
                rd = max_rel_diff(vals, refp.outputs["out"])
                print(f"  {op:22} pool {n / tp:10.3g} el/s   max rel diff {rd:.2e}")
    R._reset_pool()
    if not args.no_library:
        library_rounding()


def library_rounding() -> None:
    """What the correct-rounding decisions (S18) cost over the default library's references."""
    from harness.options import RunOptions, load_cases
    from harness.runner import library_references

    os.environ["HARNESS_REF_WORKERS"] = "1"
    refs = decided = escalated = elements = 0
    total = deciding = 0.0
    for ri in library_references(load_cases(RunOptions())):
        t, ref = timed(R.compute, ri.op, ri.check, ri.logits, ri.labels, ri.case.axis, ri.dt, rows=ri.rows,
                       cotangent=ri.g)
        refs += 1
        total += t
        deciding += ref.deciding_s
        decided += ref.decided
        escalated += ref.escalated_rows
        elements += sum(int(np.size(r.hi)) for r in ref.outputs.values())
    print(f"\ncorrect rounding near boundaries (S18) over the default library: {refs} references, "
          f"{elements} elements, {total:.1f} s cold in one process")
    print(f"  elements decided from their exact part: {decided} ({decided / max(elements, 1):.2%}); rows whose "
          f"precision was raised to decide: {escalated}")
    print(f"  time deciding: {deciding:.2f} s ({deciding / max(total, 1e-9):.1%} of the reference time)")


if __name__ == "__main__":
    main()
