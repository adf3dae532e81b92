"""Large vocabulary: softmax, log_softmax and sparse CE on (8, 131072) logits, every framework
and dtype, forward and grad, cold (empty reference cache) then warm, with peak memory.

Run by hand:  python benchmarks/large_vocab.py [--framework torch] [--classes 131072]
Prints figures; asserts nothing. Target (issue: performance): one framework, four dtypes,
under 60 s cold; peak memory under 4 GiB.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from harness import adapters as A  # noqa: E402
from harness.cache import Cache  # noqa: E402
from harness.cases import parse_case  # noqa: E402
from harness.policy import load as load_policy  # noqa: E402
from harness.runner import Item, Session  # noqa: E402


def peak_mib() -> float:
    kb = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    return kb / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--framework", action="append", help="default: every installed framework")
    ap.add_argument("--classes", type=int, default=131072)
    ap.add_argument("--batch", type=int, default=8)
    args = ap.parse_args()
    fws = args.framework or [f for f in ("tensorflow", "torch", "jax") if A.get(f).available()[0]]
    C, B = args.classes, args.batch
    case = parse_case({"id": f"bench/vocab_{C}", "logits": {"random": "normal", "shape": [B, C], "scale": 4.0, "seed": 0},
                       "labels": {"random": "integers", "high": C, "shape": [B], "seed": 1},
                       "op": ["softmax", "log_softmax", "sparse_softmax_cross_entropy"]},
                      file="<bench>", index=0, family=None, base=Path("."))
    print(f"logits ({B}, {C}); rows checked per result: see the records; workers: "
          f"{os.environ.get('HARNESS_REF_WORKERS', os.cpu_count())}")
    print(f"{'framework':11} {'dtype':9} {'pass':>6} {'cold s':>8} {'warm s':>8} {'ref cold s':>10} {'fw s':>8} {'peak MiB':>9}")
    with tempfile.TemporaryDirectory() as tmp:
        for fw in fws:
            for dt in ("float16", "bfloat16", "float32", "float64"):
                timings = []
                for _ in ("cold", "warm"):
                    s = Session(load_policy("standard"), Cache(tmp), [], None, timing_reps=1)
                    t0 = time.perf_counter()
                    recs = [s.run(Item(case, op, ck, "default", fw, "cpu", dt, "eager"))
                            for op in case.ops for ck in ("forward", "grad")]
                    timings.append((time.perf_counter() - t0, recs))
                (cold, recs), (warm, _) = timings
                ok = sum(r["status"] == "pass" for r in recs)
                ref = sum(r.get("time_reference_s") or 0 for r in recs)
                fwt = sum(r.get("time_framework_s") or 0 for r in recs)
                print(f"{fw:11} {dt:9} {ok:>3}/{len(recs):<2} {cold:8.2f} {warm:8.2f} {ref:10.2f} {fwt:8.3f} {peak_mib():9.0f}",
                      flush=True)


if __name__ == "__main__":
    main()
