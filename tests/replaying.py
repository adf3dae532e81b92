"""Adapters' repro snippets replayed the way `harness repro` replays them (harness.repro.check: one
fresh interpreter per framework, printed outputs compared with the adapter's own, bit for bit)."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from harness import repro


def assert_replays(ad: Any, calls: Sequence[Any], timeout: float = 600) -> list[str]:
    """Run each call in `ad`, replay its snippet, fail naming every snippet whose printout differs
    (or that raised); the snippets, for assertions on their text."""
    recs = []
    for i, call in enumerate(calls):
        out = ad.run(call)
        recs.append({"kind": "result", "status": "fail", "test_id": f"replay/{ad.name}/{call.op}/{i}",
                     "framework": ad.name, "repro": ad.repro(call), "output": dict(out.arrays),
                     "out_shape": {k: list(np.shape(a)) for k, a in out.arrays.items()}})
    n, bad = repro.check(recs, timeout=timeout)
    assert not bad, "\n\n".join(f"{m.test_id}: {m.why}\n{m.repro}" for m in bad)
    assert n == len(calls)
    return [r["repro"] for r in recs]
