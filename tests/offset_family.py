"""The `offset` case family (cases/offset.json), a metamorphic shift, built here.

softmax, log_softmax and both cross-entropies are invariant under adding one constant c to
every logit of a row, and a careful implementation keeps its error independent of c: it computes
d_i = x_i - max (exact when both are near each other) and then d_i - log S. Each case holds, for
several offsets c of one dtype, a base row q b (b small integers, q a power of two from 1/2 up)
and the same row shifted, c + q b, every value exactly representable: its exact outputs are
those of the base row (logsumexp's shifted by c), and an error that grows with c is the
implementation's. The offsets reach magnitudes where the dtype's
ULP exceeds 1 (1000 in bfloat16, 1e4 in float16, 1e7 in float32, 1e15 in float64), and the
logit ranges of language models in bfloat16 and float16 (tens to a few hundred) are among them.

Regenerate with:  python -m tests.offset_family > cases/offset.json
(tests/test_cases_library.py checks that the file is what this builds.)
"""

from __future__ import annotations

import json

import numpy as np

from harness import dtypes as D

#: Offsets per dtype: realistic language-model logits first, then up to where the ULP exceeds 1.
OFFSETS = {
    "bfloat16": [24.0, -60.0, 200.0, 1000.0],
    "float16": [30.0, -300.0, 2000.0, 10000.0],
    "float32": [300.0, -1e5, 1e7],
    "float64": [1e3, -1e10, 1e15],
}
SEED_ROW = [0, 1, 2, 3, 5, -2, 7, 4]  # the classic increasing row, with a gap and a dip
C = len(SEED_ROW)


def exact_in(r: np.ndarray, dt: D.DType) -> bool:
    return bool(np.array_equal(D.cast_exact(r, dt), r))


def rows_for(dt: D.DType, base: np.ndarray) -> tuple[list[list[float]], list[str]]:
    """The base row scaled by q and shifted by c, for each offset c of dt: (rows, what each is).
    q is the smallest power of two from 1/2 up (a realistic spread of logits) for which every
    value of c + q b, c a multiple of q, is exactly representable in dt."""
    rows, what = [], []
    for c0 in OFFSETS[dt.name]:
        q = 0.5
        while True:
            c = round(c0 / q) * q
            r0, r1 = q * base, c + q * base
            if exact_in(r0, dt) and exact_in(r1, dt) and exact_in(np.array([c]), dt):
                break
            q *= 2
        rows += [r0.tolist(), r1.tolist()]
        what += [f"{q:g} b", f"{c:g} + {q:g} b"]
    return rows, what


def build() -> dict:
    rng = np.random.default_rng(4242)
    cases = []
    for name in D.DTYPE_NAMES:
        dt = D.DTYPES[name]
        # Sparse labels (all five ops but dense CE): the seed row, labels on the max, on a
        # middle class and on the smallest logit (the largest loss, where rounding m + log S
        # before subtracting x_label costs most).
        rows, what = rows_for(dt, np.asarray(SEED_ROW, dtype=np.float64))
        labels = [[6, 3, 5][(i // 2) % 3] for i in range(len(rows))]  # a twin shares its base row's label
        cases.append({
            "id": f"offset/seed_{name}", "dtypes": [name],
            "why": (f"The seed row b = {SEED_ROW} at spacing q (exact in {name} once shifted) and by c, for "
                    f"c in {OFFSETS[name]}: rows {'; '.join(f'{i}: {w}' for i, w in enumerate(what))}. Every "
                    "odd row's exact outputs equal the row above's (logsumexp's plus c): an error that grows "
                    "with c is the implementation's (an m + log S rounded before the subtraction)."),
            "logits": rows, "labels": labels})
        # Dense soft labels (all ops but sparse CE): a random integer row b.
        b = np.clip(np.round(rng.standard_normal(C) * 3), -8, 8)
        rows, what = rows_for(dt, b)
        y = np.repeat(D.cast_exact(rng.dirichlet(np.ones(C), size=len(rows) // 2), dt), 2, axis=0)
        cases.append({
            "id": f"offset/soft_{name}", "dtypes": [name],
            "why": (f"A random row b = {b.astype(int).tolist()} at spacing q and shifted by c, for c in "
                    f"{OFFSETS[name]}, with soft (Dirichlet) labels: rows "
                    f"{'; '.join(f'{i}: {w}' for i, w in enumerate(what))}. Shifted and base rows have the same "
                    "exact loss and gradients."),
            "logits": rows, "labels": y.tolist()})
    return {"family": "offset",
            "description": ("A metamorphic shift: rows of the seed, random and soft-label kinds with every logit "
                            "shifted by one exactly representable constant, per dtype up to magnitudes where its "
                            "ULP exceeds 1. The exact outputs do not move (logsumexp's move by the constant), so "
                            "neither may a careful implementation's error. Built by tests/offset_family.py."),
            "cases": cases}


def dumps(data: dict) -> str:
    """One case per line group, as the other family files are written."""
    head = {k: v for k, v in data.items() if k != "cases"}
    lines = ["{"] + [f"  {json.dumps(k)}: {json.dumps(v)}," for k, v in head.items()] + ['  "cases": [']
    for i, c in enumerate(data["cases"]):
        lines.append("    " + json.dumps(c) + ("," if i < len(data["cases"]) - 1 else ""))
    lines += ["  ]", "}"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(dumps(build()), end="")
