"""The public API: test your own kernel in one line of your own test suite.

    from harness import exact, assert_conforms

    exact("softmax", x)                      # the exact softmax of x's values, rounded to x's dtype
    assert_conforms(my_softmax, "softmax", framework="torch")   # the quick cases, or AssertionError

`exact` is the reference engine as a function; `assert_conforms` runs the case library through
any function of a framework's tensors (harness.adapters.callable) and judges every result against
the exact reference under a tolerance policy (docs/tolerance.md), as a run of the harness does.
Both run in this process: plain pytest, pytest-xdist workers and notebooks alike.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

__all__ = ["exact", "assert_conforms", "cases_for", "Failure"]


# -- inputs of any framework as exact numpy values -------------------------------------------------

def as_numpy(a: Any) -> np.ndarray:
    """An array of numpy, ml_dtypes, torch, JAX or TensorFlow (or a nested list) as a numpy array
    holding the same values in the same dtype (bfloat16 as ml_dtypes.bfloat16); no rounding."""
    mod = type(a).__module__.split(".")[0]
    if mod == "torch":
        import torch

        t = a.detach().cpu()
        if t.dtype == torch.bfloat16:  # numpy has no bfloat16: through float32, which holds it exactly
            import ml_dtypes

            return t.to(torch.float32).numpy().astype(ml_dtypes.bfloat16)
        return t.numpy()
    if mod in ("tensorflow", "keras") or hasattr(a, "numpy") and not isinstance(a, np.ndarray):
        return np.asarray(a.numpy())
    return np.asarray(a)


def _float_dtype(x: np.ndarray, what: str) -> str:
    from . import dtypes as D
    from .errors import HarnessInputError

    for name in D.DTYPE_NAMES:
        if x.dtype == D.get(name).np:
            return name
    if x.dtype.kind in "iub" or x.dtype == np.dtype(object):
        raise HarnessInputError(f"{what} must be an array of floats in one of the tested dtypes, not {x.dtype}",
                                field=what, choices=list(D.DTYPE_NAMES))
    raise HarnessInputError(f"{what} has dtype {x.dtype}, not a tested one", field=what, choices=list(D.DTYPE_NAMES))


def _case(op: str, x: np.ndarray, labels: Any, axis: int, dtypes: list[str], options: dict[str, Any],
          cotangent: Any = None, cid: str = "api/given") -> Any:
    """A case (harness.cases.Case) of exact float64 values, validated as a case file is."""
    from . import cases as K
    from .records import jsonable  # nested lists, non-finite values as the case files' "inf", "nan"

    def values(a: Any) -> Any:
        arr = as_numpy(a)
        return jsonable(arr if arr.dtype.kind in "iu" else arr.astype(np.float64))

    raw: dict[str, Any] = {"id": cid, "op": op, "logits": values(x), "axis": axis, "dtypes": dtypes, **options}
    if labels is not None:
        raw["labels"] = values(labels)
    if cotangent is not None:
        raw["cotangent"] = cotangent if isinstance(cotangent, str) else {"values": values(cotangent)}
    return K.parse_case(raw, file="<harness.api>", index=0, family=None, base=Path.cwd())


# -- exact ------------------------------------------------------------------------------------------

def exact(op: str, logits: Any, labels: Any = None, *, axis: int = -1, check: str = "forward",
          cotangent: Any = None, certified: bool = False, **options: Any) -> Any:
    """The exact result of `op` on the exact values of `logits` (and `labels`), rounded to
    their dtype (round to nearest, ties to even: the correctly rounded answer).

    - `op`: softmax, log_softmax, logsumexp, softmax_cross_entropy (dense labels, a probability
      row per row) or sparse_softmax_cross_entropy (integer class indices).
    - `logits`: numpy (ml_dtypes bfloat16 too), torch, JAX or TensorFlow array of float16,
      bfloat16, float32 or float64: its values are taken as exact; the answer comes in its dtype.
    - `check="grad"`: the gradient of <cotangent, op(logits)> with respect to the logits (and,
      for dense labels, the labels), `cotangent` an array of the output's shape or a name of
      ops.COTANGENTS ("ones" by default).
    - `options`: the op's options as in a case file (label_smoothing=0.1, weights=[...],
      ignore_index=..., reduction="mean", where=[...], b=[...], return_sign=True, scale=...).
    - `certified=True`: instead of the rounded value, the exact value as a double-double
      `(hi, lo)` of float64 arrays, certified to 93 bits (relative error below 2^-93;
      docs/reference.md).

    Returns a numpy array, or a dict of them by output name where the op has several outputs
    (the gradient of a dense cross-entropy: d_logits and d_labels; logsumexp with return_sign:
    out and sign). Invalid inputs (a label out of range) give NaN where docs/semantics.md says.
    """
    from . import dtypes as D
    from . import ops as O
    from . import reference as R
    from .errors import HarnessInputError
    from .runner import direction_for, reference_inputs

    if check not in O.VALUE_CHECKS:
        raise HarnessInputError(O.value_check_error(check), field="check", choices=list(O.VALUE_CHECKS))
    x = as_numpy(logits)
    name = _float_dtype(x, "logits")
    dt = D.get(name)
    cot = cotangent if cotangent is not None or check == "forward" else "ones"
    case = _case(op, x, labels, axis, [name], options, cot if check != "forward" else None, "api/exact")
    if case.ops != [op]:  # parse_case validates the op name; one op per call
        raise HarnessInputError(f"unknown op {op!r}", field="op", choices=list(O.OP_NAMES))
    cot_name = case.cotangents[0][0] if check != "forward" else None
    ri = reference_inputs(case, op, check, cot_name, dt)
    v = direction_for(check, ri.logits, case.axis % ri.logits.ndim, dt)
    opts = case.options_for(dt)
    # The certified value is the float64 target's (93 bits; a narrower dtype's reference keeps only
    # what decides its rounding): the same exact value, since the inputs are exact in float64. Only
    # `scale` makes the question depend on the dtype (x * s is rounded to it, S24).
    target = D.get("float64") if certified else dt
    if certified and "scale" in opts and dt.name != "float64":
        raise HarnessInputError("certified=True with scale is computed for float64 inputs only (x * s is rounded to "
                                "the inputs' dtype)", field="certified")
    ref = R.compute(op, check, ri.logits, ri.labels, case.axis, target, cotangent=ri.g, options=opts, direction=v)
    out: dict[str, Any] = {}
    for n, r in ref.outputs.items():
        if certified:
            out[n] = (np.asarray(r.hi, dtype=np.float64), np.asarray(r.lo, dtype=np.float64))
        else:
            with np.errstate(over="ignore", invalid="ignore"):
                out[n] = np.asarray(r.rounded, dtype=np.float64).astype(dt.np)
    return out[next(iter(out))] if len(out) == 1 else out


# -- assert_conforms ----------------------------------------------------------------------------------

class Failure(AssertionError):
    """What assert_conforms raises: an AssertionError whose message is the table of the failing
    results; `records` holds every record of the call (the failing ones have status fail/error)."""

    def __init__(self, message: str, records: list[dict[str, Any]]):
        super().__init__(message)
        self.records = records


def cases_for(op: str, cases: Any = "quick", case_filter: str | None = None) -> list[Any]:
    """The cases `assert_conforms` runs for `op`: a suite name of the built-in library (quick,
    default, full), a case file or directory, Case objects, or arrays of logits (each one case;
    for a cross-entropy, (logits, labels) pairs). Use it to parametrize your own tests, one test
    id per case: `@pytest.mark.parametrize("case", cases_for("softmax"), ids=lambda c: c.id)`,
    then `assert_conforms(fn, "softmax", framework=..., cases=[case])`. `case_filter` selects
    case ids as --case-filter does (a substring or a glob, comma-separated: "large_vocab/*")."""
    from . import cases as K
    from .errors import HarnessInputError
    from .options import select_suite
    from .vocab import SUITES

    if isinstance(cases, str) and cases in SUITES:
        found = select_suite(K.load(None), cases)
    elif isinstance(cases, (str, Path)):
        if not Path(cases).exists():
            raise HarnessInputError(f"neither a suite name nor an existing case file: {str(cases)!r}",
                                    field="cases", choices=list(SUITES))
        found = K.load([str(cases)])
    else:
        found = []
        for i, c in enumerate(cases):
            if isinstance(c, K.Case):
                found.append(c)
                continue
            x, y = (c if isinstance(c, tuple) else (c, None))
            arr = as_numpy(x)
            found.append(_case(op, arr, y, -1, [_float_dtype(arr, "logits")] if arr.dtype != np.float64 else
                               ["float64"], {}, None, f"given/{i}"))
    return [c for c in K.select(found, case_filter) if op in c.ops]


def assert_conforms(fn: Callable[..., Any], op: str, *, framework: str, dtypes: Sequence[str] | None = None,
                    cases: Any = "quick", case_filter: str | None = None,
                    checks: Iterable[str] = ("forward", "grad"), policy: str = "standard",
                    device: str = "cpu", modes: Iterable[str] = ("eager",), name: str | None = None,
                    known: Sequence[dict[str, Any]] = (), **options: Any) -> list[dict[str, Any]]:
    """Run `fn` (a function of `framework`'s tensors implementing `op`) on the cases and judge
    every result against the exact reference; raise `Failure` (an AssertionError) listing the
    results that fail their budget, else return the records (the JSON Lines records of a run).

    - `framework`: torch, jax or tensorflow: what `fn` takes and returns; the gradient check goes
      through its autodiff, so your custom backward is what gets checked.
    - `cases`, `case_filter`: see `cases_for` (default: the quick cases of `op`); `dtypes` (default: each case's
      own); `checks` (forward, grad, grad2); `policy` (standard, strict, or a .toml file).
    - `options`: op options applied to every case (label_smoothing=0.1, ...): `fn` gets each as a
      keyword of the same name; a case whose options `fn` does not take is skipped, never run
      with the option silently ignored (harness.adapters.callable).
    - `modes`: eager, and jit (the framework compiles `fn` as users compile: torch.compile,
      jax.jit, tf.function(jit_compile=True)); for torch also jit_static (torch.compile with
      dynamic=False), on every case given.
    - `known`: deviations you accept, each a dict with the keys of a [[known]] entry of
      harness/known.toml (id, description, what it matches: cases, dtypes, checks, status,
      inputs, ...; `framework` is this call's; and `special`, the symptoms it excuses, every one
      if none is given; `model`, {dtype, rounds}, where you know what `fn` computes instead: a
      float64 kernel that computes in float32 is {"dtype": "float32", "rounds": ["logits"]}, and
      its values are then excused only within float32's budget): a result each of whose
      symptoms an entry matching it excuses is recorded as known, not a failure. Say why in `description`; an entry that matches no result is reported with a
      UserWarning (a stale excuse, or one meant for other cases).
    Skips (an option `fn` does not take, a class axis it cannot be told) are not failures, but a
    call in which nothing at all was checked raises: a conformance claim needs evidence.
    """
    from . import adapters as A
    from . import ops as O
    from .adapters.callable import FRAMEWORKS, callable_adapter
    from .errors import HarnessInputError
    from .runner import validate_choices

    validate_choices([op], list(O.OP_NAMES), "op")
    checks = list(checks)
    validate_choices(checks, list(O.CHECKS), "check")
    modes = list(modes)
    validate_choices(modes, list(O.MODES), "mode")
    validate_choices([device], list(O.DEVICES), "device")
    if framework not in FRAMEWORKS:  # before asking the registry whether it is installed
        raise HarnessInputError(f"unknown framework {framework!r} for a callable", field="framework",
                                choices=list(FRAMEWORKS))
    ok, why = A.get(framework).available()
    if not ok:
        raise HarnessInputError(why, field="framework")
    label = name or f"{framework}:{getattr(fn, '__qualname__', 'fn')}"
    with A.registered(label, callable_adapter(fn, framework, name=label)):  # for this call only
        return _run_conforms(label, op, framework, dtypes, cases, case_filter, checks, policy, device, modes,
                             known, options)


def _run_conforms(label: str, op: str, framework: str, dtypes: Sequence[str] | None, cases: Any,
                  case_filter: str | None, checks: list[str], policy: str, device: str, modes: list[str],
                  known: Sequence[dict[str, Any]], options: dict[str, Any]) -> list[dict[str, Any]]:
    from . import dtypes as D
    from .cache import Cache
    from .known import parse_entries
    from .policy import load as load_policy
    from .runner import Selection, Session, expand, is_covered, validate_choices

    found = cases_for(op, cases, case_filter)
    if options:
        import dataclasses

        found = [dataclasses.replace(c, options={**c.options, **options}) for c in found]
    dts = list(D.DTYPE_NAMES) if dtypes is None else validate_choices(list(dtypes), list(D.DTYPE_NAMES), "dtype")
    sel = Selection(frameworks=[label], devices=[device], dtypes=dts, ops=[op], modes=modes, checks=checks,
                    variants=False, sampled="all")
    items = expand(found, sel, [label])
    for i, k in enumerate(known):
        if not isinstance(k, dict):
            from .errors import HarnessInputError

            raise HarnessInputError(f"known[{i}] is {type(k).__name__}, not a dict with the keys of a [[known]] entry",
                                    field="known")
    accepted = parse_entries([{**k, "framework": label} for k in known], "<assert_conforms known=>")
    session = Session(load_policy(policy), Cache(), accepted, None, timing_reps=0)
    recs = [session.run(it) for it in items]
    failing = [r for r in recs if r["status"] in ("fail", "error") and not is_covered(r)]
    if failing:
        raise Failure(failure_table(label, op, recs, failing), recs)
    stale = [k.id for k in session.unmatched_known([label])]
    if stale:  # reported, as pytest reports an xfail that passed: the excuse may be stale, or for other cases
        import warnings

        warnings.warn(f"{label} {op}: known= entries that matched no result: {', '.join(stale)}", UserWarning,
                      stacklevel=3)
    if not any(r["status"] == "pass" for r in recs):
        skips = sorted({r["message"] for r in recs if r["status"] == "skip"})
        raise Failure(f"{label} {op}: nothing was checked ({len(items)} results, none ran"
                      + (f"; skipped: {'; '.join(skips[:3])}" if skips else "; no case of the selection has this op")
                      + ")", recs)
    return recs


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.9g}"
    return str(v)


def _special_point(r: dict[str, Any]) -> dict[str, Any] | None:
    """The first element whose class is special (NaN or inf on one side only), from the values
    a record of a small input carries; None where it carries none or there is none."""
    if r.get("special") in (None, "match") or not r.get("output") or not r.get("reference"):
        return None
    for name, got in r["output"].items():
        ex = r["reference"].get(name)
        if ex is None:
            continue
        g = np.atleast_1d(np.asarray(got, dtype=np.float64))
        e = np.atleast_1d(np.asarray(ex["hi"], dtype=np.float64))
        if g.shape != e.shape:
            continue
        with np.errstate(invalid="ignore"):
            odd = (np.isnan(g) != np.isnan(e)) | ((np.isinf(g) | np.isinf(e)) & (g != e) & ~np.isnan(g) & ~np.isnan(e))
        if np.any(odd):
            ix = tuple(int(i) for i in np.argwhere(odd)[0])
            return {"output": name, "index": list(ix), "exact": float(e[ix]), "got": float(g[ix])}
    return None


def failure_table(label: str, op: str, recs: list[dict[str, Any]], failing: list[dict[str, Any]],
                  limit: int = 20) -> str:
    """The message of a failed assert_conforms: a count, a table of the failing results (case,
    dtype, check, mode, max ULP, budget, the worst element: exact against got), and one repro."""
    n_pass = sum(r["status"] == "pass" for r in recs)
    lines = [f"{label} does not conform on {op}: {len(failing)} of {len(recs)} results fail "
             f"({n_pass} pass; policy {failing[0].get('tolerance', {}) and failing[0]['tolerance'].get('policy')})",
             f"{'case':34} {'dtype':8} {'check':11} {'mode':5} {'max ulp':>10} {'budget':>8}  worst element"]
    for r in failing[:limit]:
        check = r["check"] + (f".{r['cotangent']}" if r.get("cotangent") else "")
        tol = r.get("tolerance") or {}
        # A special value where the exact one is not (NaN for a finite value, ...) first, else the
        # element furthest over its budget, else the worst.
        w = _special_point(r) or (r.get("bad") or [None])[0] or r.get("worst")
        if r["status"] != "error" and w:
            worst = f"{w['output']}{w['index']}: exact {_fmt(w['exact'])}, got {_fmt(w['got'])}"
            if r.get("special") not in (None, "match"):
                worst += f" ({r['special']}: {sum(r.get('special_counts', {}).values())})"
        else:
            worst = f"{r.get('special')}: {(r.get('message') or '').splitlines()[0][:90]}"
        mu = r.get("max_ulp")
        lines.append(f"{r['case_id'][:34]:34} {r['dtype']:8} {check:11} {r['mode']:5} "
                     f"{_fmt(mu) if mu is not None else '-':>10} {_fmt(tol.get('ulp', '-')):>8}  {worst}")
    if len(failing) > limit:
        lines.append(f"... and {len(failing) - limit} more (Failure.records holds them all)")
    rep = next((r.get("repro") for r in failing if r.get("repro")), None)
    if rep:
        lines += ["repro of the first:", rep]
    return "\n".join(lines)
