"""The harness's own mutation score (issue 13): the quick suite under the `standard` policy fails
every deliberately wrong implementation of tests/plugins/mutants.py and passes the careful one.

A verdict that a wrong implementation survives is worth nothing; each mutant is a bug class
real kernels have shipped. README ("Verdicts and policies") states the score.
"""

from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np
import pytest

from harness import adapters as A
from harness import records
from harness.cache import Cache
from harness.options import from_values, load_cases
from harness.policy import load as load_policy
from harness.runner import Session, expand
from tests.plugins.mutants import MUTANTS, Careful

QUICK = from_values({"suite": "quick"})  # its cases and its sample of the dtypes (vocab.QUICK_*_DTYPES)


def _key(it) -> str:
    """The item without its framework and mode: the careful implementation is one computation in
    every mode, so its eager result stands for a mutant's compiled one (mutant_jit_differs)."""
    return records.test_id("", it.device, it.dtype, "", it.op, it.variant, it.check, it.cotangent, it.case.id)


def _interleaved(items: list) -> list:
    """The items, one of each case in turn (each case's own in their order): a mutant is caught by
    the first item of the first case that tells it, which comes after a few of every case's
    instead of after every item of the cases before it (the verdict, caught or not, is the same
    in any order; the time to it is about 4x less)."""
    by_case: dict[str, list] = {}
    for it in items:
        by_case.setdefault(it.case.id, []).append(it)
    rounds = itertools.zip_longest(*by_case.values())
    return [it for r in rounds for it in r if it is not None]


def _run(cls, stop_when=None):
    """(item, record) for every item of the quick suite (CPU, in the modes `cls` has: eager, and jit
    for mutant_jit_differs) on `cls`, interleaved by case, up to the first for which
    stop_when(item, record) holds."""
    with A.registered(cls.name, cls):
        sel = dataclasses.replace(QUICK.selection(), frameworks=[cls.name], modes=list(cls.modes))
        items = _interleaved(expand(load_cases(QUICK), sel, [cls.name]))
        session = Session(load_policy("standard"), Cache(), [], None, timing_reps=0)
        out = []
        for it in items:
            rec = session.run(it)
            out.append((it, rec))
            if stop_when is not None and stop_when(it, rec):
                break
        return out


@pytest.fixture(scope="module")
def careful() -> list:
    """(item, record) of the careful implementation on the whole quick suite, run once per module."""
    return _run(Careful)


@pytest.fixture(scope="module")
def careful_passes(careful) -> set[str]:
    return {_key(it) for it, r in careful if r["status"] == "pass"}


def _finite_inputs(item) -> bool:
    case = item.case
    from harness import dtypes as D

    dt = D.DTYPES[item.dtype]
    x = case.logits_for(dt)
    ok = bool(np.all(np.isfinite(x)))
    if case.label_kind == "dense" and item.op == "softmax_cross_entropy":
        ok = ok and bool(np.all(np.isfinite(case.labels_for(dt))))
    return ok


def test_the_careful_implementation_passes_every_finite_result_of_the_quick_suite(careful):
    finite = [(it, r) for it, r in careful if _finite_inputs(it)]
    assert len(finite) > 1000
    bad = [(it.id, r["status"], r.get("special"), r.get("max_ulp"), r.get("excess"), r.get("message", "")[:200])
           for it, r in finite if r["status"] != "pass"]
    assert not bad, f"{len(bad)} of {len(finite)} results fail:\n" + "\n".join(map(str, bad[:20]))
    # The budgets are not idle: the careful float64 implementation uses part of them somewhere.
    f64 = [r["excess"] for it, r in finite if it.dtype == "float64" and r.get("excess") is not None]
    assert max(f64) > 1e-3


@pytest.mark.parametrize("mutant", MUTANTS, ids=[m.name for m in MUTANTS])
def test_the_quick_suite_fails_the_mutant(mutant, careful_passes):
    """Each mutant fails a result that the careful implementation passes (a failure both share,
    a +inf row say, is no evidence against the mutant)."""
    recs = _run(mutant, lambda it, r: r["status"] in ("fail", "error") and _key(it) in careful_passes)
    it, rec = recs[-1]
    assert rec["status"] in ("fail", "error") and _key(it) in careful_passes, \
        f"{mutant.name} ({mutant.__doc__.strip()}) passed every result the careful implementation passes"
    assert rec.get("special") != "harness_error", rec.get("message")
    print(f"{mutant.name}: first caught by {it.id} ({rec['status']}, {rec.get('special')}, "
          f"{rec.get('max_ulp') if rec.get('max_ulp') is None or math.isfinite(rec['max_ulp']) else 'inf'} ulp)")


def test_at_least_twelve_mutants_of_distinct_bug_classes():
    assert len(MUTANTS) >= 12
    assert len({m.name for m in MUTANTS}) == len(MUTANTS)
    assert all(m.__doc__ and len(m.__doc__.split()) >= 6 for m in MUTANTS)
