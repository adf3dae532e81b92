"""Worst-case search: for one framework, op, check and dtype, look for inputs on which the
framework does worst, shrink each finding to a minimal input that still fails, and write it as
a case file that replays with `--cases`.

What "worst" means is the objective (`--objective`):
- `utilisation` (the default): the largest error / budget under the chosen policy, the record's
  `excess`: the error the problem's conditioning explains is already in the budget, so the
  search climbs towards what the policy calls a defect, not towards ill-conditioned inputs;
- `ulp`: the largest error in ULPs (what every max-shifted implementation shares ranks high);
- `differential`: this framework's error against the best of its peers (the other installed
  frameworks) on the same input, both against the exact reference: log2(1 + ulp) - log2(1 +
  best peer's ulp). A finding is an input this framework fails and a peer passes.
A special-value failure (NaN for a finite value, a silent invalid label, a raise on a valid
input) counts as an error beyond every number (2^1000).

The search space (`Space`) is where defects live, each candidate built from a few parameters
(a genome): the class count (up to the large-vocabulary sizes), rows, a row pattern (random,
ramp, one confident logit, near ties, huge spreads, small integers), a magnitude and a common
offset anywhere in the dtype's range, masked (-inf) entries, rarely +inf or NaN, the label's
place (at the max, the min, a masked class, out of range), soft labels that do not sum to 1,
every option the op registry gives the op (ops.PARAMS: smoothing, weights, ignore_index,
reduction, where, b, return_sign, scale) and the grad checks' cotangents. Everything is drawn
from one seeded generator: a search is reproducible.

Stages: explore (random genomes, and the given starting points), climb (mutate one parameter
of a good genome, keep what scores at least as well; restart from another good one when
stuck), then shrink each distinct finding (drop options, rows and classes; replace each value
by the simplest number, fewest significant bits first, that still fails). Each candidate is
judged by the same runner as the suite (Session.run): reference, adapter, verdict, so a found
input means exactly what a failing case means, and the case file written holds the shrunk
input's exact values.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import adapters as A
from . import cause as CAUSE
from . import cases as K
from . import dtypes as D
from . import ops as O
from . import records
from .errors import HarnessInputError
from .runner import Item, Session

OBJECTIVES = ("utilisation", "ulp", "differential")
DEFAULT_BUDGET = 300  # candidates evaluated (each one call per framework involved), before shrinking
SHRINK_BUDGET = 150  # candidates evaluated to shrink one finding
#: The class counts the space draws from: small rows mostly, the large-vocabulary sizes rarely.
CLASS_COUNTS = (1, 2, 3, 4, 5, 8, 16, 33, 100, 1000, 4096, 32000, 131072)
CLASS_WEIGHTS = (1, 6, 6, 4, 3, 5, 3, 2, 2, 1, 0.6, 0.4, 0.3)
PATTERNS = ("normal", "ramp", "confident", "tie", "spread", "integers")
BIG = 2.0 ** 1000  # the error of a special-value failure: beyond every number


@dataclass
class Point:
    """One input, as a case file holds it: logits (rows, classes) of exact dtype values, labels,
    the op's options and the grad checks' cotangent."""

    x: np.ndarray
    labels: Any = None  # None, int array (rows,), or float array (rows, classes)
    options: dict[str, Any] = field(default_factory=dict)
    cotangent: str | None = None
    genome: dict[str, Any] | None = None

    def raw(self, op: str, dtype: str, check: str, cid: str, why: str = "") -> dict[str, Any]:
        """The case-file entry of this input (what cases.parse_case reads back)."""
        raw: dict[str, Any] = {"id": cid, "why": why or "search candidate", "op": op, "dtypes": [dtype],
                               "logits": records.jsonable(self.x)}
        if check in ("grad", "grad2"):
            raw["grad"] = True
            raw["cotangent"] = [self.cotangent or "ones"]
        if check == "grad2":
            raw["grad2"] = True
        if self.labels is not None:
            raw["labels"] = records.jsonable(np.asarray(self.labels))
        for k, v in self.options.items():
            raw[k] = records.jsonable(v)
        return raw

    @property
    def shape(self) -> tuple[int, int]:
        return self.x.shape  # type: ignore[return-value]


@dataclass
class Eval:
    point: Point
    rec: dict[str, Any]
    peers: dict[str, dict[str, Any]]  # peer framework -> its record on the same input
    score: tuple[int, float]  # (is a finding, value): compared as a tuple

    @property
    def finding(self) -> bool:
        return bool(self.score[0])


@dataclass
class Found:
    """A finding (or, when nothing failed, one of the worst inputs), shrunk."""

    point: Point
    rec: dict[str, Any]
    peers: dict[str, dict[str, Any]]
    cause: str | None
    finding: bool
    value: float
    shrunk_from: tuple[int, int]


def special_failure(rec: dict[str, Any]) -> bool:
    return rec.get("status") == "error" or (rec.get("status") == "fail" and rec.get("special") not in (None, "match"))


def error_of(rec: dict[str, Any], measure: str) -> float:
    """The error a record shows: `ulp` (max_ulp) or `utilisation` (excess); BIG for a
    special-value failure, 0 where nothing was measured."""
    if special_failure(rec):
        return BIG
    v = rec.get("max_ulp" if measure == "ulp" else "excess")
    try:
        f = float(v) if v is not None else 0.0
    except (TypeError, ValueError):
        return 0.0
    return min(f, BIG) if not math.isnan(f) else BIG


def score(objective: str, rec: dict[str, Any], peers: dict[str, dict[str, Any]]) -> tuple[int, float]:
    if objective == "differential":
        best = min((error_of(p, "ulp") for p in peers.values() if p.get("status") != "skip"), default=None)
        if best is None:
            return (0, -1.0)
        value = math.log2(1.0 + error_of(rec, "ulp")) - math.log2(1.0 + best)
        return (int(CAUSE.failing(rec) and any(p.get("status") == "pass" for p in peers.values())), value)
    return (int(CAUSE.failing(rec)), error_of(rec, objective))


# ---------------------------------------------------------------------------------------------
# The search space


class Space:
    """Genomes (a few parameters each) and the inputs they build, for one op, check and dtype."""

    def __init__(self, op: str, check: str, dtype: str, max_classes: int = 131072, classes: int | None = None):
        self.op, self.check, self.dt = op, check, D.get(dtype)
        self.spec = O.get(op)
        self.max_classes = max_classes
        self.classes = classes
        # Exponents of the magnitudes and offsets: the whole normal range of the dtype, with the
        # values near 1 (where most logits live) drawn more often.
        self.emax = self.dt.emax - 1
        self.emin = max(self.dt.emin, -60)

    # -- drawing --------------------------------------------------------------------------
    def _exponent(self, rng: np.random.Generator) -> int:
        if rng.random() < 0.6:
            return int(rng.integers(-4, min(14, self.emax) + 1))
        return int(rng.integers(self.emin, self.emax + 1))

    def sample(self, rng: np.random.Generator) -> dict[str, Any]:
        counts = [c for c in CLASS_COUNTS if c <= self.max_classes]
        w = np.asarray(CLASS_WEIGHTS[:len(counts)], dtype=float)
        C = self.classes or int(rng.choice(counts, p=w / w.sum()))
        R = 1 if C > 4096 or rng.random() < 0.6 else int(rng.choice([2, 3, 4]))
        g: dict[str, Any] = {
            "C": C, "R": R, "pattern": str(rng.choice(PATTERNS)), "seed": int(rng.integers(2 ** 31)),
            "e_mag": self._exponent(rng) if rng.random() < 0.8 else 0,
            "e_off": self._exponent(rng) if rng.random() < 0.35 else None,
            "off_sign": float(rng.choice([1.0, -1.0])),
            "masked": int(rng.choice([0, 0, 0, 1, 2])) if rng.random() < 0.3 else 0,
            "special": str(rng.choice(["posinf", "nan"])) if rng.random() < 0.05 else None,
            "label": str(rng.choice(["argmax", "argmin", "random", "random", "masked", "invalid"],
                                    p=[0.3, 0.15, 0.3, 0.15, 0.05, 0.05])),
            "soft": str(rng.choice(["onehot", "soft", "sum_half", "sum_two"], p=[0.4, 0.3, 0.15, 0.15])),
            "cotangent": str(rng.choice(O.COTANGENTS)) if self.check != "forward" else None,
            "options": {},
        }
        for name in self.spec.params:
            if rng.random() < 0.25:
                g["options"][name] = self._option(name, rng)
        return g

    def _option(self, name: str, rng: np.random.Generator) -> Any:
        """A drawn value (or a recipe, for the options shaped like the logits) of an option."""
        if name == "reduction":
            return str(rng.choice(["sum", "mean"]))
        if name == "label_smoothing":
            return float(rng.choice([0.1, 0.25, 0.5, 1.0, 0.05, 2.0 ** -int(rng.integers(1, 12))]))
        if name == "scale":
            return float(rng.choice([1.0, -1.0])) * float(rng.choice([0.125, 0.5, 2.0, 8.0, 0.0883883476, 1.7,
                                                                      2.0 ** int(rng.integers(-8, 9))]))
        if name == "ignore_index":
            return str(rng.choice(["minus100", "a_label"]))
        if name in ("weights", "where", "b", "return_sign"):
            return int(rng.integers(2 ** 31))  # the seed of the array built for the row's shape
        raise AssertionError(name)

    # -- building -------------------------------------------------------------------------
    def build(self, g: dict[str, Any]) -> Point:
        dt, rng = self.dt, np.random.default_rng(g["seed"])
        C, R = int(g["C"]), int(g["R"])
        if "base" in g:  # a given starting point: its values, scaled and shifted like any pattern
            base = np.asarray(g["base"], dtype=np.float64).reshape(R, C)
        else:
            base = _pattern(g["pattern"], rng, R, C)
        x = base * 2.0 ** g["e_mag"]
        if g["e_off"] is not None:
            x = x + g["off_sign"] * 2.0 ** g["e_off"]
        x = np.clip(D.cast_exact(np.clip(x, -dt.max, dt.max), dt), -dt.max, dt.max)
        masked = np.zeros_like(x, dtype=bool)
        if g["masked"] and C > 1:
            for r in range(R):
                k = min(g["masked"], C - 1)
                masked[r, rng.choice(C, size=k, replace=False)] = True
            x[masked] = -math.inf
        if g["special"] and C > 1:
            x[0, int(rng.integers(C))] = math.inf if g["special"] == "posinf" else math.nan
        labels = self._labels(g, x, masked, rng)
        if g.get("given_labels") is not None and g["label"] == "given":
            labels = np.asarray(g["given_labels"])
            labels = labels.astype(np.int64) if self.spec.labels == "sparse" else D.cast_exact(labels, dt)
        opts = {**g.get("given_options", {}), **self._options(g, x, labels)}
        if "ignore_index" in opts and opts["ignore_index"] == -100 and labels is not None and R > 1:
            labels = labels.copy()
            labels[int(rng.integers(R))] = -100
        return Point(x, labels, opts, g["cotangent"], genome=g)

    def _labels(self, g: dict[str, Any], x: np.ndarray, masked: np.ndarray, rng: np.random.Generator) -> Any:
        kind = self.spec.labels
        if kind == "none":
            return None
        R, C = x.shape
        finite = np.where(np.isfinite(x), x, -np.inf)
        idx = []
        for r in range(R):
            place = g["label"]
            if place == "argmax":
                k = int(np.argmax(finite[r]))
            elif place == "argmin":
                k = int(np.argmin(np.where(np.isfinite(x[r]), x[r], np.inf)))
            elif place == "masked" and masked[r].any():
                k = int(np.flatnonzero(masked[r])[0])
            elif place == "invalid" and kind == "sparse":
                k = int(rng.choice([C, -1]))
            else:
                k = int(rng.integers(C))
            idx.append(k)
        if kind == "sparse":
            return np.asarray(idx, dtype=np.int64)
        y = np.zeros((R, C))
        for r, k in enumerate(idx):
            if g["soft"] == "onehot":
                y[r, k % C] = 1.0
            else:
                y[r] = rng.dirichlet(np.ones(C)) * {"soft": 1.0, "sum_half": 0.5, "sum_two": 2.0}[g["soft"]]
        return D.cast_exact(y, self.dt)

    def _options(self, g: dict[str, Any], x: np.ndarray, labels: Any) -> dict[str, Any]:
        R, C = x.shape
        out: dict[str, Any] = {}
        for name, v in g["options"].items():
            rng = np.random.default_rng(v) if isinstance(v, int) else None
            if name == "weights":
                w = rng.choice([0.0, 0.5, 1.0, 2.0, 3.0, -1.0, float(rng.random() * 4)], size=C)
                out[name] = [float(a) for a in D.cast_exact(w, self.dt)]
            elif name == "where":
                m = rng.random((R, C)) < 0.7
                m[np.arange(R), rng.integers(C, size=R)] = True
                out[name] = m.tolist()
            elif name == "b":
                b = rng.choice([1.0, 1.0, 0.5, 2.0, 0.0, -1.0, float(rng.random() * 3)], size=(R, C))
                out[name] = D.cast_exact(b, self.dt).tolist()
            elif name == "return_sign":
                if "b" in g["options"]:
                    out[name] = True
            elif name == "ignore_index":
                if labels is None:
                    continue
                out[name] = -100 if v == "minus100" else int(np.asarray(labels).ravel()[0]) \
                    if np.asarray(labels).dtype.kind in "iu" else -100
            else:
                out[name] = v
        return out

    # -- mutating -------------------------------------------------------------------------
    def mutate(self, g: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        g = {**g, "options": dict(g["options"])}
        fresh = self.sample(rng)
        what = str(rng.choice(["e_mag", "e_off", "e_off", "nudge", "seed", "C", "R", "pattern", "masked",
                               "label", "soft", "option", "cotangent", "special"]))
        if what == "e_mag":
            g["e_mag"] = int(np.clip(g["e_mag"] + int(rng.choice([-4, -2, -1, 1, 2, 4])), self.emin, self.emax))
        elif what == "e_off":
            if g["e_off"] is None or rng.random() < 0.2:
                g["e_off"] = fresh["e_off"] if fresh["e_off"] is not None else self._exponent(rng)
            else:
                g["e_off"] = int(np.clip(g["e_off"] + int(rng.choice([-3, -1, 1, 3])), self.emin, self.emax))
            if rng.random() < 0.2:
                g["off_sign"] = -g["off_sign"]
        elif what == "nudge" and "base" in g:
            base = np.asarray(g["base"], dtype=np.float64).copy().ravel()
            i = int(rng.integers(base.size))
            base[i] = base[i] * float(rng.choice([0.5, 2.0, -1.0])) + float(rng.normal())
            g["base"] = base.tolist()
        elif what in ("C", "R", "pattern") and "base" in g:
            g["seed"] = fresh["seed"]  # a given point keeps its shape
        elif what in ("C", "R", "pattern", "seed", "masked", "label", "soft", "cotangent", "special"):
            g[what] = fresh[what]
            if what == "C" and g["C"] > 4096:
                g["R"] = 1
        elif what == "option" and self.spec.params:
            name = str(rng.choice(list(self.spec.params)))
            if name in g["options"] and rng.random() < 0.5:
                del g["options"][name]
            else:
                g["options"][name] = self._option(name, rng)
        return g


def _pattern(kind: str, rng: np.random.Generator, R: int, C: int) -> np.ndarray:
    if kind == "ramp":
        step = float(rng.choice([1.0, 0.5, 0.25, 2.0, 1.0 / 3.0]))
        return np.tile(np.arange(C) * step - C * step / 2, (R, 1)) + rng.integers(-2, 3, size=(R, 1))
    if kind == "confident":
        x = rng.normal(size=(R, C)) * 0.5
        x[np.arange(R), rng.integers(C, size=R)] += float(rng.choice([8.0, 16.0, 30.0, 90.0]))
        return x
    if kind == "tie":
        x = np.full((R, C), float(rng.normal()))
        x += rng.integers(-2, 3, size=(R, C)) * 2.0 ** -float(rng.integers(1, 24)) * (rng.random((R, C)) < 0.5)
        return x
    if kind == "spread":
        return rng.choice([-1.0, 1.0], size=(R, C)) * 2.0 ** rng.uniform(-20, 20, size=(R, C))
    if kind == "integers":
        return rng.integers(-8, 9, size=(R, C)).astype(np.float64)
    return rng.normal(size=(R, C)) * float(rng.choice([0.5, 1.0, 3.0]))


# ---------------------------------------------------------------------------------------------
# The search


class Searcher:
    """Evaluates candidates for one framework (and its peers), counting the calls."""

    def __init__(self, session: Session, framework: str, op: str, dtype: str, check: str, mode: str, device: str,
                 objective: str, peers: list[str]):
        if objective not in OBJECTIVES:
            raise HarnessInputError(f"unknown objective {objective!r}", field="objective", choices=list(OBJECTIVES))
        self.session, self.fw, self.op, self.dtype = session, framework, op, dtype
        self.check, self.mode, self.device, self.objective = check, mode, device, objective
        self.peers = [p for p in peers if p != framework]
        self.calls = 0
        self.n = 0
        self.last_skip: str | None = None

    def case(self, p: Point) -> K.Case:
        self.n += 1
        cid = f"search/{self.fw}_{self.op}_{self.dtype}_candidate{self.n}"
        return K.parse_case(p.raw(self.op, self.dtype, self.check, cid), file="<search>", index=0, family="search",
                            base=Path("."))

    def run(self, fw: str, case: K.Case, p: Point, variant: str = "default") -> dict[str, Any]:
        self.calls += 1
        cot = (p.cotangent or "ones") if self.check != "forward" else None
        return self.session.run(Item(case, self.op, self.check, variant, fw, self.device, self.dtype, self.mode,
                                     cot))

    def run_peer(self, fw: str, case: K.Case, p: Point) -> tuple[str, dict[str, Any]]:
        """A peer's answer: its default call, or where that skips the input (an option its call
        lacks: torch's logsumexp has no b), its first API variant that runs it (`composed`), as a
        run's peers include every variant (harness/cause.py)."""
        rec = self.run(fw, case, p)
        if rec.get("status") == "skip":
            for v in A.get(fw).variants_for(self.op, case.options)[1:]:
                r = self.run(fw, case, p, v)
                if r.get("status") != "skip":
                    return f"{fw}:{v}", r
        return fw, rec

    def evaluate(self, p: Point, with_peers: bool | None = None) -> Eval | None:
        """The point judged (None when it is no valid input of the op: the space drew an option
        the row cannot take)."""
        try:
            case = self.case(p)
        except HarnessInputError as e:
            self.last_skip = str(e)
            return None
        rec = self.run(self.fw, case, p)
        if rec.get("status") == "skip":
            self.last_skip = rec.get("message")
            return None
        if rec.get("special") == "harness_error":
            raise HarnessInputError(f"the harness failed on a search candidate: {rec.get('message')}",
                                    field="search")
        peers: dict[str, dict[str, Any]] = {}
        if with_peers or (with_peers is None and self.objective == "differential"):
            for fw in self.peers:
                label, r = self.run_peer(fw, case, p)
                peers[label] = r
        return Eval(p, rec, peers, score(self.objective, rec, peers))

    def still(self, e: Eval | None) -> bool:
        return e is not None and e.finding


def search(session: Session, framework: str, op: str, dtype: str, *, check: str = "forward",
           mode: str = "eager", device: str = "cpu", classes: int | None = None, budget: int = DEFAULT_BUDGET,
           seed: int = 0, keep: int = 3, objective: str = "utilisation", peers: list[str] | None = None,
           start: list[Point] | None = None, max_classes: int = 131072,
           shrink_budget: int = SHRINK_BUDGET) -> list[Found]:
    """The worst inputs found for `framework` (at most `keep`, distinct, shrunk when they fail),
    best first. `peers` (default: none) are the frameworks the differential objective compares
    against and every finding's cause is told by; `start` seeds the search with given inputs."""
    O.get(op)
    if check not in O.VALUE_CHECKS:  # an invariance check compares variants: nothing to climb
        raise HarnessInputError(O.value_check_error(check), field="check", choices=list(O.VALUE_CHECKS))
    if objective == "differential" and not peers:
        raise HarnessInputError("the differential objective needs at least one other installed framework "
                                "to compare against", field="objective")
    rng = np.random.default_rng(seed)
    space = Space(op, check, dtype, max_classes=max_classes, classes=classes)
    s = Searcher(session, framework, op, dtype, check, mode, device, objective, peers or [])
    pool: list[Eval] = []

    def consider(g: dict[str, Any]) -> Eval | None:
        e = s.evaluate(space.build(g))
        if e is not None:
            pool.append(e)
        return e

    starts = [_genome_of(p, space, rng) for p in (start or [])]
    n_explore = max(len(starts), budget // 3, 1)
    drawn = 0  # a drawn candidate the framework skips (an option its call lacks) is not counted
    while len(pool) < n_explore and drawn < 4 * n_explore + 20:
        consider(starts[drawn] if drawn < len(starts) else space.sample(rng))
        drawn += 1
    if not pool:
        raise HarnessInputError(f"cannot search: {framework} skipped all {drawn} candidates of {op} {check} {dtype} "
                                f"{mode} drawn (the last: {s.last_skip})", field="framework")
    # Climb: mutate one parameter of a good genome; sideways moves are kept (plateaus are wide:
    # a rounding error over budget often does not grow with one parameter alone).
    cur = max(pool, key=lambda e: e.score)
    stuck = 0
    while len(pool) < budget and s.n < 4 * budget:
        e = consider(space.mutate(cur.point.genome or {}, rng))
        if e is not None and e.score >= cur.score:
            stuck = 0 if e.score > cur.score else stuck + 1
            cur = e
        else:
            stuck += 1
        if stuck >= 12:  # restart from one of the best few
            best = sorted(pool, key=lambda e: e.score, reverse=True)[:5]
            cur = best[int(rng.integers(len(best)))]
            stuck = 0
    ranked = sorted(pool, key=lambda e: e.score, reverse=True)
    # The best of each kind first (a special-value class, or a rounding error; the options it
    # takes): one input per defect rather than the same defect three times.
    kinds: dict[tuple, Eval] = {}
    for e in ranked:
        kinds.setdefault((e.finding, e.rec.get("special"), tuple(sorted(e.point.options))), e)
    firsts = list(kinds.values())
    ranked = firsts + [e for e in ranked if all(e is not f for f in firsts)]
    out: list[Found] = []
    for e in ranked[:3 * keep]:  # distinct after shrinking: two findings often shrink to one input
        if len(out) >= keep:
            break
        if any(np.array_equal(e.point.x, f.point.x, equal_nan=True) for f in out):
            continue
        f = _finish(s, e, shrink_budget)
        if not any(_same_point(f.point, g.point) for g in out):
            out.append(f)
    return out


def _same_point(a: Point, b: Point) -> bool:
    return (a.x.shape == b.x.shape and np.array_equal(a.x, b.x, equal_nan=True) and a.cotangent == b.cotangent
            and json.dumps(records.jsonable(a.options), sort_keys=True)
            == json.dumps(records.jsonable(b.options), sort_keys=True)
            and (a.labels is None) == (b.labels is None)
            and (a.labels is None or np.array_equal(np.asarray(a.labels), np.asarray(b.labels))))


def _genome_of(p: Point, space: Space, rng: np.random.Generator) -> dict[str, Any]:
    """A genome that builds the given point (its values as the base) and mutates like any other."""
    g = space.sample(rng)
    R, C = p.x.shape
    g.update(C=C, R=R, base=np.asarray(p.x, dtype=np.float64).ravel().tolist(), e_mag=0, e_off=None,
             masked=0, special=None, cotangent=p.cotangent if space.check != "forward" else None, options={})
    g["given_labels"] = None if p.labels is None else np.asarray(p.labels).tolist()
    g["label"] = "given"  # until a mutation draws another placement
    g["given_options"] = dict(p.options)
    return g


def _finish(s: Searcher, e: Eval, shrink_budget: int) -> Found:
    shape = e.point.shape
    if e.finding:
        e = shrink(s, e, shrink_budget)
    if not e.peers and s.peers:  # the cause needs the peers' answers on the final input
        e = s.evaluate(e.point, with_peers=True) or e
    peers = {fw: CAUSE.summary(r) for fw, r in e.peers.items() if CAUSE.ran(r)}
    cause = CAUSE.classify(e.rec, peers) if CAUSE.failing(e.rec) else None
    e.rec["cause"], e.rec["peers"] = (cause, peers) if cause else (None, None)
    return Found(e.point, e.rec, peers, cause, e.finding, e.score[1], shape)


# ---------------------------------------------------------------------------------------------
# Shrinking


def shrink(s: Searcher, e: Eval, budget: int = SHRINK_BUDGET) -> Eval:
    """A minimal input that is still a finding: options dropped, one row, fewest classes, the
    simplest values (fewest significant bits; integers and short binary fractions)."""
    start = s.calls
    dt = D.get(s.dtype)
    best = e

    def left() -> bool:
        return s.calls - start < budget

    def attempt(p: Point) -> bool:
        nonlocal best
        if not left():
            return False
        p.genome = None
        t = s.evaluate(p)
        if s.still(t):
            best = t  # type: ignore[assignment]
            return True
        return False

    # 1. Options, one at a time (the simplest input takes none), and the cotangent `ones`.
    for name in list(best.point.options):
        if name in best.point.options:
            opts = {k: v for k, v in best.point.options.items() if k != name}
            if name == "b":
                opts.pop("return_sign", None)
            attempt(_with(best.point, options=opts))
    if best.point.cotangent not in (None, "ones"):
        attempt(_with(best.point, cotangent="ones"))
    # 2. One row.
    R = best.point.shape[0]
    if R > 1 and "reduction" not in best.point.options:
        for r in range(R):
            if attempt(_rows(best.point, [r])):
                break
    # 3. Fewest classes: remove chunks, halving their size (ddmin).
    C = best.point.shape[1]
    size = max(1, C // 2)
    while size >= 1 and best.point.shape[1] > 1 and left():
        removed = False
        start_i = 0
        while start_i < best.point.shape[1] and best.point.shape[1] > 1 and left():
            C = best.point.shape[1]
            drop = list(range(start_i, min(C, start_i + size)))
            keep = [i for i in range(C) if i not in drop]
            p = _classes(best.point, keep) if keep else None
            if p is not None and attempt(p):
                removed = True  # the same start index now names the next chunk
            else:
                start_i += size
        if not removed:
            size //= 2
    # 4. The smallest magnitude: the row scaled by a power of two (exact: the values keep their
    #    bits and ratios), its largest finite logit near 2^0, 2^1, 2^2, ... until it still fails.
    fin = np.isfinite(best.point.x) & (best.point.x != 0)
    if fin.any():
        top = int(np.frexp(np.max(np.abs(best.point.x[fin])))[1])
        tried: set[int] = set()
        for j in _ladder(top - 1):
            if j >= top or j in tried:
                continue
            tried.add(j)
            with np.errstate(over="ignore", under="ignore"):
                x = np.where(fin, D.cast_exact(np.ldexp(best.point.x, j - top), dt), best.point.x)
            if np.all(x[fin] != 0) and attempt(_with(best.point, x=x)):
                break
    # 5. The simplest values: each logit (each row at once for long rows), then the labels and
    #    the options' numbers, fewest significant bits first.
    n = best.point.x.size
    if n <= 64:
        for i in range(n):
            v = float(best.point.x.flat[i])
            for c in _simpler(v, dt):
                x = best.point.x.copy()
                x.flat[i] = c
                if attempt(_with(best.point, x=x)):
                    break
    else:
        for bits in range(1, dt.p):
            x = _round_bits(best.point.x, bits, dt)
            if not np.array_equal(x, best.point.x, equal_nan=True) and attempt(_with(best.point, x=x)):
                break
    lab = best.point.labels
    if lab is not None and np.asarray(lab).dtype.kind == "f" and np.asarray(lab).size <= 64:
        for i in range(np.asarray(lab).size):
            v = float(np.asarray(best.point.labels).flat[i])
            for c in _simpler(v, dt):
                y = np.asarray(best.point.labels, dtype=np.float64).copy()
                y.flat[i] = c
                if attempt(_with(best.point, labels=y)):
                    break
    for name in ("label_smoothing", "scale"):
        if name in best.point.options:
            for c in _simpler(float(best.point.options[name]), dt):
                if attempt(_with(best.point, options={**best.point.options, name: c})):
                    break
    return best


def _ladder(n: int) -> list[int]:
    """0, 1, 2, ..., n: every step up to 8, then steps growing by about a third."""
    out, j = [], 0
    while j <= n:
        out.append(j)
        j = j + 1 if j < 8 else j + max(1, j // 3)
    return out


def _with(p: Point, **kw: Any) -> Point:
    d = {"x": p.x, "labels": p.labels, "options": dict(p.options), "cotangent": p.cotangent}
    d.update(kw)
    return Point(d["x"], d["labels"], d["options"], d["cotangent"])


def _rows(p: Point, rows: list[int]) -> Point:
    opts = dict(p.options)
    for k in ("where", "b"):
        if k in opts:
            opts[k] = [opts[k][r] for r in rows]
    lab = None if p.labels is None else np.asarray(p.labels)[rows]
    return Point(p.x[rows], lab, opts, p.cotangent)


def _classes(p: Point, keep: list[int]) -> Point | None:
    """The point with only the classes `keep` (labels re-indexed); None when a sparse label's
    class would go (the label then names another class: a different input, not a smaller one)."""
    R, C = p.x.shape
    opts = dict(p.options)
    for k in ("where", "b"):
        if k in opts:
            opts[k] = [[row[i] for i in keep] for row in opts[k]]
    if "weights" in opts:
        opts["weights"] = [opts["weights"][i] for i in keep]
    lab = p.labels
    if lab is not None:
        a = np.asarray(lab)
        if a.dtype.kind in "iu":
            new = a.copy()
            ignore = opts.get("ignore_index")
            for r, k in enumerate(a):
                if ignore is not None and k == ignore:
                    continue
                if 0 <= k < C:
                    if k not in keep:
                        return None
                    new[r] = keep.index(int(k))
                elif k >= C:
                    new[r] = len(keep)  # still out of range
            if ignore is not None and 0 <= ignore < C:
                if ignore not in keep:
                    return None
                opts["ignore_index"] = keep.index(int(ignore))
                new = np.where(a == ignore, opts["ignore_index"], new)
            lab = new
        else:
            lab = a[:, keep]
    return Point(p.x[:, keep], lab, opts, p.cotangent)


def _bits(v: float) -> int:
    """Significant bits of a finite double."""
    if v == 0 or not math.isfinite(v):
        return 0
    m, _ = math.frexp(abs(v))
    n = 0
    while m != int(m):
        m *= 2
        n += 1
    return max(1, int(m).bit_length()) if n == 0 else n


def _simpler(v: float, dt: D.DType) -> list[float]:
    """Values simpler than v, simplest first: 0, then v rounded to 1, 2, ... significant bits
    (integers and short binary fractions among them), each a number of the dtype."""
    if not math.isfinite(v):
        return []
    out: list[float] = []
    for c in [0.0] + [float(_round_bits(np.asarray([v]), k, dt)[0]) for k in range(1, _bits(v))]:
        if c != v and c not in out and math.isfinite(c):
            out.append(c)
    return out


def _round_bits(x: np.ndarray, bits: int, dt: D.DType) -> np.ndarray:
    """x rounded to `bits` significant bits (non-finite values kept), then to the dtype."""
    x = np.asarray(x, dtype=np.float64)
    out = x.copy()
    fin = np.isfinite(x) & (x != 0)
    m, e = np.frexp(x[fin])
    out[fin] = np.ldexp(np.round(m * 2.0 ** bits), e - bits)
    return np.where(np.isfinite(x), D.cast_exact(out, dt), x)


# ---------------------------------------------------------------------------------------------
# Writing


def describe(f: Found, framework: str, op: str, dtype: str, check: str, mode: str, objective: str, seed: int) -> str:
    rec = f.rec
    what = f"{framework} {op} {check}{'.' + f.point.cotangent if f.point.cotangent and check != 'forward' else ''} " \
           f"{dtype} {mode}"
    err = (f"{rec.get('special')}" if special_failure(rec) else
           f"{float(rec.get('max_ulp') or 0):.6g} ULP, {float(rec.get('excess') or 0):.3g} x its budget")
    head = ("Found" if f.finding else "The worst input found (not a failure)") + \
        f" by `python -m harness search --objective {objective} --seed {seed}`: {what} " \
        f"{ {'pass': 'passes', 'fail': 'fails', 'error': 'raises'}.get(str(rec.get('status')), rec.get('status'))} with {err}"
    peers = "; ".join(f"{fw} {p.get('status')} ({p.get('special')}, {_fmt(p.get('max_ulp'))} ULP)"
                      for fw, p in f.peers.items())
    tail = f". Peers on this input: {peers}" if peers else ""
    cause = f". Cause: {f.cause}" if f.cause else ""
    R, C = f.point.shape
    shrunk = f". Shrunk from {f.shrunk_from[0]} x {f.shrunk_from[1]} to {R} x {C} logits" \
        if f.finding and f.shrunk_from != (R, C) else ""
    return head + tail + cause + shrunk + "."


def _fmt(v: Any) -> str:
    try:
        return f"{float(v):.4g}"
    except (TypeError, ValueError):
        return "-"


def write_cases(found: list[Found], path: str | Path, framework: str, op: str, dtype: str, check: str,
                mode: str, objective: str = "utilisation", seed: int = 0) -> None:
    cases = [f.point.raw(op, dtype, check, f"search/{framework}_{op}_{dtype}_{check}_{k}",
                         describe(f, framework, op, dtype, check, mode, objective, seed))
             for k, f in enumerate(found)]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps({"family": "search", "description":
                                      "Inputs found by the search command; replay with --cases.",
                                      "cases": cases}, indent=1) + "\n")


def start_points(cases: list[K.Case], ids: list[str], op: str, dtype: str) -> list[Point]:
    """The inputs of the named cases (their logits, labels and options cast to dtype, the class
    axis last) as starting points of a search of `op`."""
    dt = D.get(dtype)
    by_id = {c.id: c for c in cases}
    out = []
    for cid in ids:
        if cid not in by_id:
            raise HarnessInputError(f"no case {cid!r} to start near", field="near",
                                    choices=sorted(by_id)[:20] + (["..."] if len(by_id) > 20 else []))
        c = by_id[cid]
        if op not in c.ops:
            raise HarnessInputError(f"case {cid!r} does not run op {op!r} (its ops: {', '.join(c.ops)})",
                                    field="near", case=cid)
        x = c.logits_for(dt)
        if x.ndim > 2 or (x.ndim == 2 and c.axis % 2 != 1):
            raise HarnessInputError(f"case {cid!r} has logits of shape {list(x.shape)} with the classes on axis "
                                    f"{c.axis}: a search starts from rows of classes on the last axis",
                                    field="near", case=cid)
        x = x.reshape(-1, x.shape[-1])
        lab = c.labels_for(dt) if O.get(op).labels != "none" else None
        if lab is not None:
            lab = np.asarray(lab).reshape(x.shape[0], -1) if lab.ndim == x.ndim else np.asarray(lab).reshape(-1)
        cot = c.cotangents[0][0] if c.cotangents and c.cotangents[0][1] is None else None
        out.append(Point(x, lab, {k: v for k, v in c.options.items()}, cot))
    return out
