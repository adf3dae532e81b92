"""The run: expand cases into items, and turn one item into one result record.

Used alike by the pytest plugin and by `python -m harness run`.
"""

from __future__ import annotations

import os
import statistics
import sys
import threading
import time
import traceback
import warnings
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import numpy as np

from . import adapters as A
from . import cases as K
from . import dtypes as D
from . import invariance as INV
from . import ops as O
from . import records
from . import reference as R
from .cache import Cache, cache_key
from .errors import HarnessInputError
from .known import Baseline, Known, Model, Use, excuse, load_known
from .policy import Policy, Tolerance
from .verdict import Verdict, condition, judge
from .vocab import QUICK_EVERY_DTYPE_TAG


@dataclass(frozen=True)
class Item:
    case: K.Case
    op: str
    check: str
    variant: str
    framework: str
    device: str
    dtype: str
    mode: str
    cotangent: str | None = None  # the grad check's cotangent (ops.COTANGENTS, or a case's own)

    @property
    def id(self) -> str:
        return records.test_id(self.framework, self.device, self.dtype, self.mode, self.op, self.variant, self.check,
                               self.cotangent, self.case.id)


@dataclass
class Selection:
    frameworks: list[str] | None = None
    devices: list[str] = field(default_factory=lambda: ["cpu"])
    dtypes: list[str] = field(default_factory=lambda: list(D.DTYPE_NAMES))
    ops: list[str] = field(default_factory=lambda: list(O.OP_NAMES))
    modes: list[str] = field(default_factory=lambda: list(O.MODES))
    checks: list[str] = field(default_factory=lambda: list(O.CHECKS))
    variants: bool = True
    #: The dtypes the compiled modes run in where they run in fewer than `dtypes` (the quick
    #: suite's QUICK_JIT_DTYPES): forward and grad of each case in one of them, chosen by a digest
    #: of its id (compiled_dtype), grad2 and the invariance checks (a few cases each) in all; None:
    #: every dtype selected.
    jit_dtypes: list[str] | None = None
    #: The groups of dtypes eager runs forward and grad in where it runs in fewer than `dtypes`
    #: (the quick suite's QUICK_EAGER_DTYPES): each case in one dtype of each group, chosen by a
    #: digest of its id and the group (eager_dtypes); grad2 and the invariance checks in all;
    #: None: every dtype selected.
    eager_dtypes: list[list[str]] | None = None
    #: How a sampled mode (Adapter.sampled_modes) runs: "sample", on its sample of the cases and
    #: the value checks only; "all", on everything selected (the modes were given: --mode);
    #: "none", not at all (the quick suite, unless the modes are given).
    sampled: str = "sample"


def validate_choices(values: list[str], valid: list[str], what: str) -> list[str]:
    for v in values:
        if v not in valid:
            raise HarnessInputError(f"unknown {what} {v!r}", field=what, choices=valid)
    return values


def split_csv(values: list[str] | str | None) -> list[str]:
    if values is None:
        return []
    if isinstance(values, str):
        values = [values]
    return [v.strip() for s in values for v in s.split(",") if v.strip()]


def resolve_frameworks(names: list[str] | None) -> tuple[list[str], dict[str, str]]:
    """The available frameworks among `names` (default: the real ones), and the reason each
    missing one is skipped: one line per framework, never an ImportError."""
    wanted = names or list(A.DEFAULT_FRAMEWORKS)
    validate_choices([n for n in wanted if not A.is_callable_target(n)], A.names(), "framework")
    ok, skipped = [], {}
    for n in wanted:
        avail, why = A.get(n).available()
        if avail:
            ok.append(n)
        else:
            skipped[n] = why
    return ok, skipped


#: The checks that run in a sample of the dtypes per case (Selection.jit_dtypes, .eager_dtypes):
#: those of every case. grad2 and the invariance checks, on a few cases each, run in all.
SAMPLED_DTYPE_CHECKS = ("forward", "grad")


def _digest(text: str) -> int:
    import hashlib

    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def in_sample(case_id: str, every: int) -> bool:
    """Whether a case is in a sampled mode's sample, one case in `every`: by a digest of its id,
    so the sample is the same in every run, shard and process, and a case keeps its place in
    it when others are added."""
    return _digest(case_id) % every == 0


def _pick_dtype(group: Sequence[str], case: K.Case, sel: Selection, salt: str) -> str | None:
    """One dtype of `group` among the case's and the selected ones (None: none is), by a digest
    of `salt` and its id, so that each gets its share of the cases, in every run and shard alike."""
    pick = [d for d in group if d in case.dtypes and d in sel.dtypes]
    return pick[_digest(salt + case.id) % len(pick)] if pick else None


def compiled_dtype(case: K.Case, sel: Selection) -> str | None:
    """The one dtype of `sel.jit_dtypes` a case runs the compiled modes' forward and grad in."""
    return _pick_dtype(sel.jit_dtypes or (), case, sel, "compiled dtype ")


def eager_dtypes(case: K.Case, sel: Selection) -> set[str]:
    """The dtypes eager runs a case's forward and grad in under `sel.eager_dtypes`: one of each group;
    every one of a case tagged vocab.QUICK_EVERY_DTYPE_TAG (the long row)."""
    if QUICK_EVERY_DTYPE_TAG in case.tags:
        return {d for g in sel.eager_dtypes or () for d in g if d in case.dtypes and d in sel.dtypes}
    picks = (_pick_dtype(g, case, sel, f"eager dtype {'/'.join(g)} ") for g in sel.eager_dtypes or ())
    return {d for d in picks if d is not None}


def thinned(ad: A.Adapter, mode: str, c: K.Case, dt: str, picks: set[str]) -> bool:
    """Whether the quick suite leaves (case, dt) out of a mode with quick thinning
    (Adapter.quick_thinning, N), `picks` being the case's dtypes its dtype sample gives the mode:
    eager keeps ceil(m / N) of a case's m (one of its two for N = 2; every case keeps one), those
    from a place in DTYPE_NAMES order chosen by a digest of its id; a compiled mode, whose sample
    is one dtype per case already, runs 1 case in N."""
    every = ad.quick_thinning.get(mode)
    if not every:
        return False
    d = _digest("thinning " + c.id)
    if mode != "eager":
        return d % every != 0
    order = sorted(picks, key=D.DTYPE_NAMES.index)
    m = len(order)
    keep = {order[(d + j) % m] for j in range(-(-m // every))}
    return dt not in keep


def _selected(ad: A.Adapter, sel: Selection, c: K.Case, check: str, mode: str, dt: str) -> bool:
    """Whether a mode runs this case, check and dtype: the quick suite's dtype samples
    (Selection.jit_dtypes, Selection.eager_dtypes) and their thinning for a mode whose first calls
    compile per shape (thinned), and a sampled mode's sample (Selection.sampled)."""
    if mode == "eager":
        if sel.eager_dtypes is not None and check in SAMPLED_DTYPE_CHECKS:
            picks = eager_dtypes(c, sel)
            if dt not in picks or thinned(ad, mode, c, dt, picks):
                return False
    elif sel.jit_dtypes is not None:
        if check not in SAMPLED_DTYPE_CHECKS:
            if dt not in sel.jit_dtypes:
                return False
        elif dt != compiled_dtype(c, sel) or thinned(ad, mode, c, dt, {dt}):
            return False
    every = ad.sampled_modes.get(mode)
    if not every or sel.sampled == "all":
        return True
    return sel.sampled != "none" and check in O.VALUE_CHECKS and in_sample(c.id, every)


def _same_spec(u: Any, v: Any) -> bool:
    """Whether two cases' logits (or labels) specs are the same: arrays bit for bit, lists of
    values and tokens by equality (a NaN in a list compares unequal: then the inputs are just
    computed again)."""
    if isinstance(u, np.ndarray) or isinstance(v, np.ndarray):
        return (isinstance(u, np.ndarray) and isinstance(v, np.ndarray) and u.dtype == v.dtype
                and u.shape == v.shape and u.tobytes() == v.tobytes())
    return bool(u == v)


def expand(cases: list[K.Case], sel: Selection, frameworks: list[str]) -> list[Item]:
    items = []
    for fw in frameworks:
        ad = A.get(fw)
        # A mode or check the framework does not have (SciPy and Keras run eagerly only, SciPy and
        # ONNX Runtime have no autodiff) is left out: thousands of identical skips would say nothing
        # (the run header lists each framework's modes and checks). Asked for by name, with the
        # framework named too, it is a skip with the reason (Session.run).
        named = fw in (sel.frameworks or [])
        modes = sel.modes if named and set(sel.modes) != set(O.MODES) else [m for m in sel.modes if m in ad.modes]
        lacks = set() if ad.checks is None or (named and set(sel.checks) != set(O.CHECKS)) else \
            set(O.CHECKS) - set(ad.checks)
        for c in cases:
            for op in c.ops:
                if op not in sel.ops:
                    continue
                variants = ad.variants_for(op, c.options) if sel.variants else ("default",)
                for check in sel.checks:
                    if check not in c.checks() or check in lacks:
                        continue
                    cots = [name for name, _ in c.cotangents] if check in ("grad", "grad2") else [None]
                    for dt in c.dtypes:
                        if dt not in sel.dtypes:
                            continue
                        for dev in sel.devices:
                            for mode in INV.modes_for(check, modes):
                                if not _selected(ad, sel, c, check, mode, dt):
                                    continue
                                for var in variants:
                                    for cot in cots:
                                        items.append(Item(c, op, check, var, fw, dev, dt, mode, cot))
    return items


@dataclass(frozen=True)
class RefInputs:
    """What the reference of one (case, op, check, cotangent, dtype) is computed from."""

    case: K.Case
    op: str
    check: str
    cotangent: str | None
    dt: D.DType
    logits: np.ndarray
    labels: np.ndarray | None
    g: np.ndarray | None
    rows: np.ndarray | None


def direction_for(check: str, x: np.ndarray, axis: int, dt: D.DType) -> np.ndarray | None:
    """The grad2 check's direction for logits x (ops.direction, exact in every dtype), else None."""
    return D.cast_exact(O.direction(x.shape, axis), dt) if check == "grad2" else None


def reference_inputs(case: K.Case, op: str, check: str, cotangent: str | None, dt: D.DType,
                     x: np.ndarray | None = None, y: np.ndarray | None = None) -> RefInputs:
    """The exact inputs of an item's reference: the logits (and the labels its op takes) cast to
    dt, the grad check's cotangent cast alike, and the rows checked of a large input."""
    if INV.is_invariance(check):  # variants of the forward call, judged by its reference
        check = "forward"
    x = case.logits_for(dt) if x is None else x
    y = (case.labels_for(dt) if y is None else y) if O.OPS[op].labels != "none" else None
    g = case.cotangent_for(cotangent, op, dt) if check != "forward" else None
    # A sum or mean over the rows takes every row: a reduction is never sampled (S21).
    rows = (K.sample_rows(x, case.axis % x.ndim, labels=y, options=case.options)
            if O.reduction(case.options) == "none" else None)
    return RefInputs(case, op, check, cotangent, dt, x, y, g, rows)


def library_references(cases: list[K.Case]) -> Iterator[RefInputs]:
    """Every reference a run of these cases computes (each op, check, cotangent and dtype)."""
    for case in cases:
        for op in case.ops:
            for check in case.checks():
                for cot in [name for name, _ in case.cotangents] if check in ("grad", "grad2") else [None]:
                    for name in case.dtypes:
                        yield reference_inputs(case, op, check, cot, D.DTYPES[name])


class Session:
    """State shared by the items of one run: policy, reference cache, known discrepancies."""

    def __init__(self, policy: Policy, cache: Cache | None = None, known: list[Known] | None = None,
                 baseline: Baseline | None = None, timing_reps: int = 3, backend: str | None = None):
        self.policy = policy
        self.cache = cache or Cache()
        self.cache.export_compile_cache()
        self.known = load_known() if known is None else known
        self.baseline = baseline
        self.timing_reps = timing_reps
        self.backend = backend
        self._refs: dict[str, R.Reference] = {}
        self._inputs: dict[tuple[str, str, str], tuple[K.Case, np.ndarray, np.ndarray | None]] = {}
        #: Which entries this session's results were in the scope of, and which excused one.
        self.known_use = Use(self.known)
        self._lock = threading.Lock()

    def inputs(self, case: K.Case, dt: D.DType) -> tuple[np.ndarray, np.ndarray | None]:
        """The case's logits and labels cast to dt, computed once per case and dtype. Looked up by
        (source file, id), which a case library keeps unique, and served only to a case with the
        same logits and labels: another case of the same name (cases made in code) gets its own
        inputs, never the first one's. (Under isolation each item brings its own copy of the case,
        so the check compares contents, not identity.)"""
        key = (case.source, case.id, dt.name)
        hit = self._inputs.get(key)
        if hit is None or not (hit[0] is case or (_same_spec(hit[0].logits, case.logits)
                                                  and _same_spec(hit[0].labels, case.labels))):
            if len(self._inputs) > 64:
                self._inputs.clear()
            hit = self._inputs[key] = (case, case.logits_for(dt), case.labels_for(dt))
        return hit[1], hit[2]

    def reference(self, item: Item, x: np.ndarray, y: np.ndarray | None, dt: D.DType,
                  rows: np.ndarray | None, g: np.ndarray | None = None,
                  opts: dict[str, Any] | None = None, v: np.ndarray | None = None) -> tuple[R.Reference, bool]:
        opts = item.case.options_for(dt) if opts is None else opts
        check = "forward" if INV.is_invariance(item.check) else item.check  # the forward call's reference
        k = cache_key(item.op, check, dt.name, item.case.axis, x, y, rows, R.claim_bits(dt), g, opts, v)
        if k in self._refs:
            return self._refs[k], True
        ref = self.cache.get(k)
        hit = ref is not None
        if ref is None:
            ref = R.compute(item.op, check, x, y, item.case.axis, dt, rows=rows, backend_name=self.backend,
                            cotangent=g, options=opts, direction=v)
            self.cache.put(k, ref)
        self._refs[k] = ref
        if len(self._refs) > 256:
            self._refs.pop(next(iter(self._refs)))
        return ref, hit

    def run(self, item: Item) -> dict[str, Any]:
        """One record for one item. Never raises for a framework's behaviour."""
        rec = base_record(item)
        ad = A.get(item.framework)
        rec["framework_version"] = _fw_version(ad)
        try:
            rec = self._run(item, ad, rec)
            if rec.get("message"):  # the same in every clone and job (a compiled kernel's path)
                rec["message"] = A.portable_text(rec["message"])
            return rec
        except HarnessInputError:
            raise
        except Exception as e:  # a bug of the harness itself: recorded, never lost
            rec.update(status="error", special="harness_error",
                       message=f"harness error: {type(e).__name__}: {e}\n{traceback.format_exc(limit=6)}")
            return rec

    def _run(self, item: Item, ad: A.Adapter, rec: dict[str, Any]) -> dict[str, Any]:
        if item.mode not in ad.modes:
            return _skip(rec, f"{item.framework} has no {item.mode} mode")
        if item.check == "eager_vs_jit" and not {"eager", "jit"} <= set(ad.modes):
            return _skip(rec, f"{item.framework} has no {'eager' if 'eager' not in ad.modes else 'jit'} mode to compare")
        if item.check == "batch_invariance":
            why = INV.batch_unsupported(item.case.options)
            if why:
                return _skip(rec, why)
        devs = ad.devices()
        if not devs.get(item.device):
            return _skip(rec, ad.device_reason(item.device))
        rec["device_name"] = devs[item.device]
        why = ad.unsupported(item.op, item.variant, item.case.options)
        if why is not None:
            return _skip(rec, why)
        dt = D.get(item.dtype)
        case = item.case
        spec = O.OPS[item.op]
        x, y = self.inputs(case, dt)
        ri = reference_inputs(case, item.op, item.check, item.cotangent, dt, x, y)
        y, g, rows = ri.labels, ri.g, ri.rows  # label-free ops ignore the case's labels
        ax = case.axis % x.ndim
        n_rows = x.size // x.shape[ax]
        rec["rows_total"] = n_rows
        rec["rows_checked"] = n_rows if rows is None else int(len(rows))
        t0 = time.perf_counter()
        opts = case.options_for(dt)  # the options as the reference and the framework see them (S1)
        v = direction_for(item.check, x, ax, dt)  # the grad2 check's direction (S25), else None
        ref, hit = self.reference(item, x, y, dt, rows, g, opts, v)
        rec["time_reference_s"] = time.perf_counter() - t0
        rec["reference_cached"] = hit
        rec["reference_prec_bits"] = ref.prec_bits
        rec["reference_claim_bits"] = ref.claim_bits
        yc = y  # the step's second input: the labels, or a label-free op's option array (logsumexp's b, S23)
        if yc is None and spec.input_param in opts:
            yc = np.asarray(opts[spec.input_param], dtype=np.float64)
        call = A.Call(item.op, item.check, item.variant, x.astype(dt.np),
                      None if yc is None else (yc if spec.labels == "sparse" else yc.astype(dt.np)),
                      case.axis, None if g is None else g.astype(dt.np), item.dtype, item.device, item.mode,
                      case.source, case.id, item.cotangent, opts, None if v is None else v.astype(dt.np))
        if INV.is_invariance(item.check):
            call.check = "forward"  # the variants are forward calls
            return self._invariance(item, ad, rec, call, x, y, dt, opts, ref, ax, rows)
        raised: BaseException | None = None
        out: A.Output | None = None
        t0 = time.perf_counter()
        with warnings.catch_warnings(record=True) as warned:
            warnings.simplefilter("always")
            try:
                out = ad.run(call)
            except A.Unsupported as e:
                return _skip(rec, str(e))
            except Exception as e:  # the framework raised: recorded as what it is
                raised = e
            except (SystemExit, KeyboardInterrupt) as e:
                if not framework_raised(e):
                    raise  # the user's Ctrl-C: the run stops, nothing is invented for this item
                raised = e  # a library that calls sys.exit() or raises KeyboardInterrupt itself
        first = time.perf_counter() - t0
        # What the framework warned about on this call is part of its answer (Keras on C = 1).
        rec["framework_warnings"] = sorted({f"{w.category.__name__}: {w.message}"[:500] for w in warned})
        if out is not None:
            times = [first]
            if self.timing_reps > 0:
                times = []
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # recorded once, above
                    for _ in range(self.timing_reps):
                        t1 = time.perf_counter()
                        try:
                            ad.run(call)
                        except (SystemExit, KeyboardInterrupt) as e:
                            if not framework_raised(e):
                                raise
                            break  # timed once fewer; the answer above is what is judged
                        times.append(time.perf_counter() - t1)
                    times = times or [first]
            rec["time_framework_s"] = statistics.median(times)
            rec["time_first_call_s"] = first
        t0 = time.perf_counter()
        tol = self.policy.tolerance(item.op, item.check, item.dtype, item.framework, case.tolerance)
        expected = O.output_shapes(item.op, item.check, x.shape, ax, case.options)
        cond = condition(item.op, item.check, x, y, g, ax, tol.sums(dt), opts, dt, v) if out is not None else {}
        checked = _checked_masks(ref, expected, rows, ax, item, x.shape) if rows is not None else None
        verdict = judge(item.op, item.check, None if out is None else out.arrays,
                        None if out is None else out.dtypes, raised, ref, dt, tol, cond, expected, checked)
        rec["time_verdict_s"] = time.perf_counter() - t0
        # The budgets' written reasons live once in the run metadata (run_start.policy_budgets).
        rec["tolerance"] = _tolerance_record(self.policy.name, tol)
        _fill(rec, verdict, out, raised, ref, x, y, g, expected, item)
        if out is not None and out.devices and any(d != item.device for d in out.devices.values()):
            rec["status"] = "fail"
            rec["message"] = (rec["message"] + "; " if rec["message"] else "") + \
                f"output on {out.devices}, expected {item.device}"
        repro = ad.repro(call)
        rec["repro"] = INV.with_imports(repro)  # array_of's import, once (the adapter's snippet may hold it)
        held = self.judge_models(item, rec, out, ModelInputs(x, y, g, v, dt, rows, ax, expected))
        self.classify_known(rec, held)
        return rec

    def _invariance(self, item: Item, ad: A.Adapter, rec: dict[str, Any], call: A.Call, x: np.ndarray,
                    y: np.ndarray | None, dt: D.DType, opts: dict[str, Any], ref: R.Reference, ax: int,
                    rows: np.ndarray | None) -> dict[str, Any]:
        """An invariance check (harness.invariance): the forward call's variants, each judged by the
        forward budget against the reference, compared bit for bit with its base."""
        case = item.case
        tol = self.policy.tolerance(item.op, "forward", item.dtype, item.framework, case.tolerance)
        expected = O.output_shapes(item.op, "forward", x.shape, ax, case.options)
        cond = condition(item.op, "forward", x, y, None, ax, tol.sums(dt), opts, dt, None)
        checked = _checked_masks(ref, expected, rows, ax, item, x.shape) if rows is not None else None
        ctx = INV.Context(ref, tol, cond, expected, checked, x, self.policy.invariance["rule"])
        t0 = time.perf_counter()
        with warnings.catch_warnings(record=True) as warned:
            warnings.simplefilter("always")
            ran, info = INV.run(item, ad, call, dt, ctx)
        rec["time_framework_s"] = rec["time_first_call_s"] = time.perf_counter() - t0
        rec["framework_warnings"] = sorted({f"{w.category.__name__}: {w.message}"[:500] for w in warned})
        rec["tolerance"] = _tolerance_record(self.policy.name, tol)
        if not ran:
            return _skip(rec, "no variant could run: " + "; ".join(info.get("not_run", [])))
        rec["invariance"] = info
        worst = max(ran, key=lambda r: (r.verdict.status != "pass", r.verdict.excess or 0.0, r.n_diff))
        pair = INV.pair(ran, worst)
        out = (A.Output(worst.pieces_case or {}, worst.dtypes or {}) if worst.pieces is not None else
               A.Output(worst.wrong_shape[0], worst.dtypes or {}) if worst.wrong_shape is not None else None)
        _fill(rec, worst.verdict, out, worst.raised, ref, x, y, None, expected, item)
        rec["status"] = INV.status(ran, ctx.rule)
        if rec["status"] == "fail" and all(r.verdict.status == "pass" for r in ran):
            rec["special"] = "not_invariant"  # every variant within its budget, the bits differ (rule bitwise)
        rec["message"] = INV.message(ran, info)
        rec["repro"] = ad.repro(pair[0].variant.call)
        shown = [r for r in pair if r is not None and r.pieces is not None]
        if shown:  # the snippet prints what `pair` holds: one variant, or two side by side
            sel = INV.selection(shown[0], shown[1]) if len(shown) == 2 else None
            try:
                rec["repro"] = INV.repro(ad, [r.variant for r in shown], list(shown[0].pieces), sel)
                rec["pair"] = {"variants": [r.variant.label for r in shown], "rows": sel,
                               "outputs": [INV.shown(r.pieces, sel) for r in shown]}  # type: ignore[arg-type]
            except ValueError:  # a variant without a snippet (a GPU stream): the base's alone
                pass
        rec["repro"] = INV.with_imports(rec["repro"])
        held = self.judge_models(item, rec, out, ModelInputs(x, y, None, None, dt, rows, ax, expected))
        self.classify_known(rec, held)
        return rec

    def judge_models(self, item: Item, rec: dict[str, Any], out: A.Output | None,
                     mi: ModelInputs) -> dict[str, dict[str, Any]]:
        """entry id -> the judgment of its model (known.Model) of a failing result, for each entry
        with a model in whose scope the result is: whether the result conforms to what the entry
        says the framework computes, so that the entry excuses no other defect (Known.excuses_for)."""
        if rec.get("status") not in ("fail", "error") or rec.get("special") == "harness_error":
            return {}
        mine = self.known_use.by_framework.get(item.framework, [])
        scoped = [k for k in mine if k.matches(rec)]
        excused = set().union(*(k.excuses or set() for k in scoped))
        return {k.id: self._model_verdict(k.model, item, out, mi, excused) for k in scoped if k.model is not None}

    def _model_verdict(self, model: Model, item: Item, out: A.Output | None, mi: ModelInputs,
                       excused: set[str]) -> dict[str, Any]:
        """The result judged against the model: the exact reference of the inputs the model
        rounds, by the budget of its dtype, on the elements the framework gave finite (a
        non-finite one is a special-value symptom, which an entry's `special` names). It holds
        when no element is out of that budget and any special-value class left among them is one
        an entry of the result's scope excuses (float32's own flushed subnormals, say)."""
        mdt = D.get(model.dtype or item.dtype)
        about = {"model": model.to_json() | {"dtype": mdt.name}}
        if out is None:
            return about | {"holds": False, "why": "the framework gave no output"}
        r = set(model.rounds)

        def rounded(a: np.ndarray | None, what: str) -> np.ndarray | None:
            return a if a is None or what not in r else D.cast_exact(a, mdt)

        y = mi.y
        if y is not None and "labels" in r:
            if y.dtype.kind in "iu":  # class indices through the dtype's floating point and back
                yf = D.cast_exact(y.astype(np.float64), mdt)
                if not np.all(np.isfinite(yf)):
                    return about | {"holds": False, "why": f"a label beyond {mdt.name}'s range"}
                y = yf.astype(np.int64)
            else:
                y = D.cast_exact(y, mdt)
        x, g, v = rounded(mi.x, "logits"), rounded(mi.g, "cotangent"), rounded(mi.v, "direction")
        opts = item.case.options_for(mdt if "options" in r else mi.dt)
        check = "forward" if INV.is_invariance(item.check) else item.check
        tol = self.policy.tolerance(item.op, check, mdt.name, item.framework, item.case.tolerance)
        ref, _ = self.reference(item, x, y, mdt, mi.rows, g, opts, v)
        cond = condition(item.op, check, x, y, g, mi.ax, tol.sums(mdt), opts, mdt, v)
        rows = _checked_masks(ref, mi.expected, mi.rows, mi.ax, item, x.shape) if mi.rows is not None else None
        finite = {n: np.isfinite(np.asarray(a, dtype=np.float64)) & (True if rows is None else rows[n])
                  for n, a in out.arrays.items() if n in mi.expected and np.shape(a) == mi.expected[n]}
        vm = judge(item.op, check, out.arrays, out.dtypes, None, ref, mdt, tol, cond, mi.expected,
                   finite if len(finite) == len(mi.expected) else None)
        counts = vm.special_counts or {}
        over = vm.n_bad - counts.get("subnormal_flushed", 0)
        left = sorted({c for c, n in counts.items() if n and c != "match"} - excused)
        holds = vm.shape_ok and over == 0 and not left
        return about | {"holds": bool(holds), "excess": vm.excess, "max_ulp": vm.max_ulp, "n_bad": over,
                        "n_checked": vm.n_checked, "unexcused": left, "worst": (vm.bad or [vm.worst])[0]}

    def classify_known(self, rec: dict[str, Any], held: dict[str, dict[str, Any]] | None = None) -> None:
        with self._lock:  # the CLI's job threads share the session
            self._classify_known(rec, held or {})

    def _classify_known(self, rec: dict[str, Any], held: dict[str, dict[str, Any]]) -> None:
        if rec.get("special") == "harness_error":  # a defect of the harness is never a framework's known
            return  # deviation, nor an earlier run's failure: it stays an error (issue 21)
        mine = self.known_use.by_framework.get(str(rec.get("framework")), [])
        if rec["status"] in ("fail", "error"):
            used, left = excuse(mine, rec, held)
            if used and not left:
                rec["known"] = used[0].to_json(used[1:], held)
            else:
                scoped = [k for k in mine if k.matches(rec)]
                if scoped:  # in the scope of entries that excuse other symptoms: say which
                    rec["message"] = (rec.get("message") or "") + (
                        f"; not a known discrepancy: {', '.join(sorted(left))} excused by no entry of its scope ("
                        + "; ".join(_excuse_text(k, held) for k in scoped) + ")")
        self.known_use.observe(rec)
        if self.baseline is not None:
            self.baseline.apply(rec)

    def unmatched_known(self, frameworks: list[str], in_scope: bool = False) -> list[Known]:
        """Known discrepancies of the frameworks that ran which excused no result: stale entries,
        or a selection that did not reach them. With `in_scope`, only those a result was in the
        scope of (known.Use.unused; known.stale says when a run can call them stale)."""
        return self.known_use.unused(frameworks, self.policy.name, in_scope)



@dataclass(frozen=True)
class ModelInputs:
    """What a model's judgment of a result needs besides the result (Session.judge_models): the
    inputs in the tested dtype `dt`, as exact float64 values (labels as the reference takes
    them), the sampled rows, the class axis and the outputs' shapes."""

    x: np.ndarray
    y: np.ndarray | None
    g: np.ndarray | None
    v: np.ndarray | None
    dt: D.DType
    rows: np.ndarray | None
    ax: int
    expected: dict[str, tuple[int, ...]]


def _excuse_text(k: Known, held: dict[str, dict[str, Any]]) -> str:
    """What an entry of a failing result's scope excuses, for its message; for an entry whose
    model does not hold there, why (known.Model)."""
    text = f"{k.id}: {', '.join(sorted(k.excuses or ()))}"
    m = held.get(k.id)
    if k.model is None or m is None or m.get("holds"):
        return text
    if m.get("why"):
        why = m["why"]
    elif m.get("n_bad"):
        w = m.get("worst") or {}
        why = (f"{m['n_bad']} of {m['n_checked']} elements out of its budget, up to {m['excess']:.3g} times it"
               + (f" ({w['output']}{w['index']}: got {w['got']!r}, model {w['exact']!r})" if w.get("output") else ""))
    else:
        why = f"special values {', '.join(m.get('unexcused') or ())} that no entry excuses"
    return (f"{text}, but its model ({k.model.describe()}) does not hold: {why}; "
            f"so it excuses only {', '.join(sorted(k.excuses_for(held) or ())) or 'nothing'}")


def base_record(item: Item) -> dict[str, Any]:
    return {"kind": "result", "case_id": item.case.id, "family": item.case.family, "op": item.op,
            "check": item.check, "cotangent": item.cotangent, "variant": item.variant, "framework": item.framework,
            "framework_version": None, "device": item.device, "device_name": None, "dtype": item.dtype,
            "mode": item.mode, "status": None, "special": None, "max_ulp": None, "p99_ulp": None,
            "max_abs_err": None, "max_rel_err": None, "excess": None, "tolerance": None,
            "shape_ok": None, "dtype_ok": None, "message": "", "known": None, "test_id": item.id,
            "case_source": item.case.source, "tags": item.case.tags, "options": dict(item.case.options)}


def framework_raised(e: BaseException) -> bool:
    """Whether a SystemExit or KeyboardInterrupt raised inside a framework call is the
    framework's own doing (recorded as its answer) rather than the user's interrupt (which
    stops the run). Python delivers signals to the main thread only, so a KeyboardInterrupt
    in any other thread (the CLI's job threads), or in a worker process (whose SIGINT is
    ignored: the parent decides), was raised by the code under test; SystemExit always was."""
    if isinstance(e, SystemExit):
        return True
    return threading.current_thread() is not threading.main_thread() or os.environ.get(WORKER_ENV) == "1"


#: Set in an isolating worker process (harness.isolation), whose SIGINT is ignored.
WORKER_ENV = "HARNESS_WORKER"


def _tolerance_record(policy: str, tol: Tolerance) -> dict[str, Any]:
    """What a result's budget was (its reasons live once in the run metadata)."""
    rec = {"policy": policy, "ulp": tol.ulp, "cond": tol.cond, "summation": tol.summation}
    if tol.accumulate:
        rec["accumulate"] = tol.accumulate
    return rec


def _skip(rec: dict[str, Any], why: str) -> dict[str, Any]:
    rec.update(status="skip", message=why)
    return rec


_VERSIONS: dict[str, str] = {}


def _fw_version(ad: A.Adapter) -> str:
    if ad.name not in _VERSIONS:
        try:
            v = ad.versions()
            _VERSIONS[ad.name] = next(iter(v.values()), "") if v else ""
        except Exception:  # noqa: BLE001 - a broken version query must not stop the run
            _VERSIONS[ad.name] = "unknown"
    return _VERSIONS[ad.name]


def _checked_masks(ref: R.Reference, expected: dict[str, tuple[int, ...]], rows: np.ndarray, ax: int,
                   item: Item, shape: tuple[int, ...]) -> dict[str, np.ndarray]:
    batch = tuple(n for i, n in enumerate(shape) if i != ax)
    flat = np.zeros(int(np.prod(batch, dtype=np.int64)), dtype=bool)
    flat[rows] = True
    rowmask = flat.reshape(batch)
    out = {}
    for name, shp in expected.items():
        if len(shp) == len(batch):
            out[name] = rowmask
        else:
            out[name] = np.moveaxis(np.broadcast_to(rowmask[..., None], batch + (shape[ax],)), -1, ax)
    return out


def _fill(rec: dict[str, Any], v: Verdict, out: A.Output | None, raised: BaseException | None,
          ref: R.Reference, x: np.ndarray, y: np.ndarray | None, g: np.ndarray | None,
          expected: dict[str, tuple[int, ...]], item: Item) -> None:
    rec.update(status=v.status, special=v.special, special_counts=v.special_counts,
               invalid_input=v.invalid_input, invalid_handling=v.invalid_handling,
               max_ulp=v.max_ulp, p99_ulp=v.p99_ulp, max_abs_err=v.max_abs_err, max_rel_err=v.max_rel_err,
               excess=v.excess, worst=v.worst, bad=v.bad, n_bad=v.n_bad, n_checked=v.n_checked,
               shape_ok=v.shape_ok, dtype_ok=v.dtype_ok, message=v.message,
               expected_shape={k: list(s) for k, s in expected.items()})
    if raised is not None:
        rec["error_type"] = type(raised).__name__
        if isinstance(raised, A.AdapterOutputError):  # the adapter's answer was no Output: its defect
            rec["error_origin"] = "adapter"
        else:
            rec["error_origin"] = "framework"
            if v.invalid_input:
                rec["invalid_handling"] = "raised"
    if out is not None:
        if out.program:  # which compiled (or traced) program served the call (issue 19)
            rec["program"], rec["program_new"] = out.program, out.program_new
        rec["out_dtype"] = out.dtypes
        rec["out_shape"] = {k: list(np.shape(a)) for k, a in out.arrays.items()}
        rec["out_device"] = out.devices
    n_out = sum(int(np.prod(s, dtype=np.int64)) for s in expected.values())
    if n_out <= records.SMALL and x.size <= 4 * records.SMALL:
        rec["input"] = {"logits": x, "labels": y, "axis": item.case.axis}
        if g is not None:
            rec["input"]["cotangent"] = g
        rec["reference"] = {n: {"hi": r.hi, "lo": r.lo, "rounded": r.rounded} for n, r in ref.outputs.items()}
        if out is not None:
            rec["output"] = out.arrays
    else:
        rec["input_summary"] = summarize(x, item.case.axis)


def summarize(x: np.ndarray, axis: int = -1) -> dict[str, Any]:
    f = x[np.isfinite(x)]
    return {"shape": list(x.shape), "axis": axis, "min": float(f.min()) if f.size else None,
            "max": float(f.max()) if f.size else None, "n_nan": int(np.isnan(x).sum()),
            "n_posinf": int(np.isposinf(x).sum()), "n_neginf": int(np.isneginf(x).sum())}


def is_covered(rec: dict[str, Any]) -> bool:
    """True when a failing record is expected (known discrepancy or same failure in the baseline)."""
    return rec.get("status") in ("fail", "error") and bool(rec.get("known"))


def exit_code(results: list[dict[str, Any]]) -> int:
    bad = [r for r in results if r.get("status") in ("fail", "error") and not is_covered(r)]
    return 1 if bad else 0


def eprint(*a: Any) -> None:
    print(*a, file=sys.stderr)
