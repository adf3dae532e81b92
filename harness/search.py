"""Worst-case search: for one framework, op and dtype, look for logits that maximise the error
in ULPs, and write the worst as a case file that replays with `--cases`.

Two stages, both deterministic for a seed:
1. hypothesis explores (targeted property-based testing: `hypothesis.target` steers its
   generation towards larger errors) over rows of logits at scales from 1e-3 to 1e4;
2. a hill-climb starts from the worst rows hypothesis found and mutates one element at a time
   (scale it, shift it, move it next to another element), keeping a mutation when the error
   grows.
Each candidate is judged by the same runner as the suite (Session.run): reference, adapter,
verdict, so a found input means exactly what a failing case means.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import dtypes as D
from . import ops as O
from .cases import Case
from .errors import HarnessInputError
from .runner import Item, Session

DEFAULT_BUDGET = 300  # framework calls in all (hypothesis + hill-climb)


@dataclass
class Found:
    logits: np.ndarray
    labels: Any
    max_ulp: float
    record: dict[str, Any]


def _score(rec: dict[str, Any]) -> float:
    if rec.get("status") == "skip":
        return -1.0
    u = rec.get("max_ulp")
    return float(u) if u is not None and math.isfinite(u) else -1.0


def search(session: Session, framework: str, op: str, dtype: str, *, check: str = "forward",
           mode: str = "eager", device: str = "cpu", classes: int = 8, budget: int = DEFAULT_BUDGET,
           seed: int = 0, keep: int = 3) -> list[Found]:
    dt = D.get(dtype)
    rng = np.random.default_rng(seed)
    evaluated: list[Found] = []

    def evaluate(x: np.ndarray, labels: Any) -> float:
        x = D.cast_exact(x, dt)
        if not np.all(np.isfinite(x)):
            return -1.0
        # A fresh id per candidate: the session caches cast inputs by (source, id, dtype).
        case = Case(f"search/{framework}_{op}_{dtype}_candidate{len(evaluated)}", [op], x.reshape(1, -1),
                    labels, -1, [dtype], check == "grad", source="<search>", grad2=check == "grad2")
        rec = session.run(Item(case, op, check, "default", framework, device, dtype, mode,
                               "pattern" if check != "forward" else None))
        if rec.get("status") == "skip":
            raise HarnessInputError(f"cannot search: {rec.get('message')}", field="framework")
        s = _score(rec)
        evaluated.append(Found(x.copy(), labels, s, rec))
        return s

    label_kind = O.get(op).labels

    def labels_for(x: np.ndarray, k: int) -> Any:
        if label_kind == "sparse":
            return [int(k) % classes]
        if label_kind == "dense":
            y = np.zeros(classes)
            y[int(k) % classes] = 1.0
            return y.reshape(1, -1).tolist()
        return None

    # Stage 1: hypothesis, targeted at the error.
    n_hyp = max(1, budget // 2)
    from hypothesis import HealthCheck, given, settings, target
    from hypothesis import seed as hyp_seed
    from hypothesis import strategies as st

    lim = min(1e4, dt.max / 4)
    elems = st.floats(min_value=-lim, max_value=lim, allow_nan=False, allow_infinity=False, width=64)

    @hyp_seed(seed)
    @settings(max_examples=n_hyp, database=None, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.lists(elems, min_size=classes, max_size=classes), st.integers(0, classes - 1),
           st.sampled_from([1e-3, 1e-1, 1.0, 10.0, 1e2, 1e3, 1e4]))
    def explore(xs: list[float], k: int, scale: float) -> None:
        x = np.clip(np.asarray(xs) * (scale / max(1.0, lim / 10)), -lim, lim)
        target(evaluate(x, labels_for(x, k)))

    explore()

    # Stage 2: hill-climb from the best found so far.
    best = max(evaluated, key=lambda f: f.max_ulp)
    x, lab, score = best.logits.ravel().copy(), best.labels, best.max_ulp
    for _ in range(budget - len(evaluated)):
        cand = x.copy()
        i = int(rng.integers(classes))
        kind = rng.integers(4)
        if kind == 0:
            cand[i] *= float(rng.choice([0.5, 2.0, -1.0, 1.0 + 2.0 ** -int(rng.integers(1, dt.p))]))
        elif kind == 1:
            cand[i] += float(rng.normal()) * (abs(cand[i]) + 1.0) * 0.1
        elif kind == 2:
            j = int(rng.integers(classes))
            cand[i] = cand[j] + float(rng.normal()) * dt.eps * (abs(cand[j]) + 1e-30)  # near tie
        else:
            cand += float(rng.normal()) * 10.0 ** float(rng.integers(-2, 4))  # shift the row
        cand = np.clip(cand, -lim, lim)
        s = evaluate(cand, lab)
        if s > score:
            x, score = D.cast_exact(cand, dt), s
    # The distinct worst rows.
    out: list[Found] = []
    for f in sorted(evaluated, key=lambda f: -f.max_ulp):
        if len(out) >= keep:
            break
        if all(not np.array_equal(f.logits, g.logits) for g in out):
            out.append(f)
    return out


def write_cases(found: list[Found], path: str | Path, framework: str, op: str, dtype: str, check: str,
                mode: str) -> None:
    cases = []
    for k, f in enumerate(found):
        x = f.logits.reshape(1, -1)
        case: dict[str, Any] = {
            "id": f"search/{framework}_{op}_{dtype}_{check}_{k}",
            "why": (f"Found by `python -m harness search`: {f.max_ulp:.6g} ULP on {framework} {op} {check} "
                    f"{dtype} {mode} (reference {f.record.get('worst', {}) and f.record['worst'].get('exact')})."),
            "op": op, "dtypes": [dtype], "grad": check == "grad", **({"grad2": True} if check == "grad2" else {}),
            "logits": [[repr(float(v)) if not math.isfinite(v) else float(v) for v in x[0]]],
        }
        if f.labels is not None:
            case["labels"] = f.labels
        cases.append(case)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps({"family": "search", "description":
                                      "Worst inputs found by the search command; replay with --cases.",
                                      "cases": cases}, indent=1) + "\n")
