"""Test your own kernel: seconds of one `assert_conforms` over the quick cases of one op in one
dtype (forward and grad, eager), cold (empty reference cache) then warm.

Run by hand:  python benchmarks/own_kernel.py [--framework torch|jax|tensorflow] [--dtype float32]
Prints figures; asserts nothing. Target (issue 15): seconds with warm references.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

KERNELS = {
    "torch": "lambda x, dim=-1: torch.softmax(x, dim=dim)",
    "jax": "lambda x, axis=-1: jax.nn.softmax(x, axis=axis)",
    "tensorflow": "lambda x, axis=-1: tf.nn.softmax(x, axis=axis)",
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--framework", default="torch", choices=sorted(KERNELS))
    ap.add_argument("--dtype", default="float32")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        os.environ["HARNESS_CACHE_DIR"] = d  # cold: an empty reference cache, then warm
        import importlib

        from harness import Failure, assert_conforms

        ns = {"torch": "torch", "jax": "jax", "tf": "tensorflow"}
        ns = {k: importlib.import_module(m) for k, m in ns.items() if m == args.framework}
        if args.framework == "jax":
            import jax.nn  # noqa: F401
        fn = eval(KERNELS[args.framework], ns)  # noqa: S307 - our own source
        for run in ("cold", "warm"):
            t0 = time.perf_counter()
            try:
                recs = assert_conforms(fn, "softmax", framework=args.framework, dtypes=[args.dtype])
            except Failure as e:  # the frameworks' own softmax deviates at +inf logits: still timed
                recs = e.records
            dt = time.perf_counter() - t0
            n = sum(r["status"] != "skip" for r in recs)
            print(f"{args.framework} softmax {args.dtype}, quick cases, forward + grad, {run}: {dt:6.2f} s "
                  f"({n} results)")


if __name__ == "__main__":
    main()
