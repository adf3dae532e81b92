"""Known discrepancies (documented framework deviations, as data) and baselines (a previous
run's results file). Both turn a failing result into a known one; neither hides it: the record
keeps its status and measurements and gains a `known` field saying why it is expected.
"""

from __future__ import annotations

import fnmatch
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import records
from .cases import read_toml, require_regular_file
from .errors import HarnessInputError

KNOWN_FILE = Path(__file__).resolve().parent / "known.toml"
ENTRY_KEYS = {"id", "description", "framework", "versions", "ops", "checks", "cotangents", "cases", "dtypes",
              "devices", "modes", "variants", "special", "status", "link", "finding", "inputs", "policies", "model"}
LIST_KEYS = ("ops", "checks", "cotangents", "cases", "dtypes", "devices", "modes", "variants", "special", "status",
             "versions", "inputs", "policies")
#: What `inputs` names: a special value the result's logits hold (an entry with `inputs` matches
#: only results whose logits hold one of them: "NaN where a row holds +inf" must not also excuse
#: a NaN from an overflow of finite logits), or `beyond_float32`: a finite logit whose magnitude
#: exceeds float32's largest number, which a cast to float32 (Keras' floatx) makes +-inf.
INPUT_KINDS = {"pos_inf": "n_posinf", "neg_inf": "n_neginf", "nan": "n_nan", "beyond_float32": None}
FLOAT32_MAX = 3.4028234663852886e38
#: Keys whose value is one string.
STRING_KEYS = ("id", "description", "framework", "link")
#: The file's top-level keys: the [[known]] tables.
TOP_KEYS = {"known"}


def input_kinds(rec: dict[str, Any]) -> set[str]:
    """The INPUT_KINDS the logits of a result hold: from the input a small result carries (arrays
    in memory, or the strings "inf", "-inf", "nan" of a results file), else from its input
    summary (its counts of special values and the min and max of its finite ones)."""
    inp = rec.get("input")
    if isinstance(inp, dict) and inp.get("logits") is not None:
        tokens: set[str] = set()
        beyond = False
        todo = [records.jsonable(inp["logits"])]  # non-finite values as their strings
        while todo:
            v = todo.pop()
            if isinstance(v, list):
                todo.extend(v)
            elif isinstance(v, str):
                tokens.add(v)
            elif isinstance(v, (int, float)) and abs(v) > FLOAT32_MAX:
                beyond = True
        out = {k for k, t in (("pos_inf", "inf"), ("neg_inf", "-inf"), ("nan", "nan")) if t in tokens}
        return out | ({"beyond_float32"} if beyond else set())
    summ = rec.get("input_summary") if isinstance(rec.get("input_summary"), dict) else {}
    out = {k for k, f in INPUT_KINDS.items() if f and isinstance(summ.get(f), int) and summ[f] > 0}
    ends = [summ.get(k) for k in ("min", "max") if isinstance(summ.get(k), (int, float))]
    return out | ({"beyond_float32"} if any(abs(v) > FLOAT32_MAX for v in ends) else set())


#: What a model (`Model`) can round: the logits, the labels (dense ones, and integer class indices
#: through the dtype's floating point, as a loss that converts them to its dtype does), the grad
#: check's cotangent, the grad2 check's direction, and the options' arrays (class weights,
#: logsumexp's b) with the hyper-parameters (ops.PARAMS) the options cast.
MODEL_INPUTS = ("logits", "labels", "cotangent", "direction", "options")
MODEL_KEYS = {"dtype", "rounds"}


@dataclass(frozen=True)
class Model:
    """What an entry says the framework computes instead of the exact semantics, so that its
    result can be judged against that (jax2tf's limitations loosen a tolerance with a reason; a
    model says how far and why): the inputs `rounds` names are rounded to `dtype` (None: the
    result's own dtype), the exact reference is computed from those, and the result is judged
    by `dtype`'s budget. An entry with a model excuses the numeric symptoms of a result only
    where its model holds there: a float64 loss computed in float32 must be a correct float32
    loss of the float32-rounded inputs; a float64 result ten orders of magnitude further off,
    or one computed in bfloat16, is another defect, and the entry does not hide it."""

    dtype: str | None
    rounds: tuple[str, ...]

    def describe(self) -> str:
        dt = self.dtype or "the result's dtype"
        what = f"{', '.join(self.rounds)} rounded to {dt}" if self.rounds else "the exact inputs"
        return f"the exact result of {what}, within {dt}'s budget"

    def to_json(self) -> dict[str, Any]:
        return {"dtype": self.dtype, "rounds": list(self.rounds)}


#: What an entry's `special` can name besides the special-value classes (verdict.ALL_SPECIAL):
#: a result in another dtype than the input's, or of another shape than the op's.
SYMPTOM_EXTRA = ["wrong_dtype", "wrong_shape"]


def symptoms(rec: dict[str, Any]) -> set[str]:
    """What is wrong with a failing result, each a name a known entry's `special` excuses: every
    special-value class among its elements (`special_counts`, not only the worst one, `special`);
    `match` for elements out of budget where the special values are right (`n_bad` beyond the
    flushed subnormals, which count as bad too); `wrong_dtype` and `wrong_shape`. A result with
    none of these (an error, an invariance check failing on bits alone) has its `special`."""
    counts = rec.get("special_counts") if isinstance(rec.get("special_counts"), dict) else {}
    out = {c for c, n in counts.items() if c != "match" and isinstance(n, int) and n > 0}
    flushed = counts.get("subnormal_flushed") if isinstance(counts.get("subnormal_flushed"), int) else 0
    if isinstance(rec.get("n_bad"), int) and rec["n_bad"] > flushed:
        out.add("match")
    if rec.get("dtype_ok") is False:
        out.add("wrong_dtype")
    if rec.get("shape_ok") is False:
        out.add("wrong_shape")
    if rec.get("status") == "error" or not out:
        out.add(str(rec.get("special") or "match"))
    return out


@dataclass
class Known:
    id: str
    description: str
    framework: str
    match: dict[str, list[str]] = field(default_factory=dict)
    link: str = ""
    finding: bool = False  # a behaviour the harness reports as a finding (docs and report)
    model: Model | None = None

    @property
    def excuses(self) -> set[str] | None:
        """The symptoms (`symptoms`) the entry excuses: its `special`; None, every one, for an
        entry that names none (harness/known.toml names them in every entry: tests/test_known)."""
        return set(self.match["special"]) if "special" in self.match else None

    def excuses_for(self, held: dict[str, Any] | None) -> set[str] | None:
        """What the entry excuses of a result whose models were judged (`held`: entry id -> the
        model's verdict, harness.runner): an entry with a model that does not hold there excuses
        only a wrong dtype or shape, none of the values its model was to explain."""
        if self.model is None or (held or {}).get(self.id, {}).get("holds"):
            return self.excuses
        return (self.excuses if self.excuses is not None else set(SYMPTOM_EXTRA)) & set(SYMPTOM_EXTRA)

    def matches(self, rec: dict[str, Any]) -> bool:
        """Whether the result is in the entry's scope (everything but `special`, which says what
        in that scope it excuses: `excuses`)."""
        if rec.get("framework") != self.framework:
            return False
        fields = {"ops": "op", "checks": "check", "cotangents": "cotangent", "dtypes": "dtype", "devices": "device",
                  "modes": "mode", "variants": "variant", "status": "status"}
        for k, f in fields.items():
            if k in self.match and rec.get(f) not in self.match[k]:
                return False
        if "cases" in self.match and not any(fnmatch.fnmatchcase(rec.get("case_id", ""), p) for p in self.match["cases"]):
            return False
        if "inputs" in self.match and not input_kinds(rec) & set(self.match["inputs"]):
            return False
        if "policies" in self.match and not self.applies(_policy_of(rec)):
            return False
        if "versions" in self.match:
            v = str(rec.get("framework_version", ""))
            if not any(v.startswith(p) for p in self.match["versions"]):
                return False
        return True

    def applies(self, policy: str | None) -> bool:
        """Whether the entry can match results judged under `policy` (its `policies`, where it names
        some: a bitwise difference is a failure only under a policy whose invariance rule says so)."""
        return "policies" not in self.match or policy in self.match["policies"]

    def to_json(self, also: list[Known] | None = None, held: dict[str, Any] | None = None) -> dict[str, Any]:
        out = {"id": self.id, "description": self.description, "link": self.link, "source": "known"}
        if also:  # the other entries the result needed, one symptom each at least (`excuse`)
            out["also"] = [k.id for k in also]
        models = {k.id: held[k.id] for k in [self, *(also or [])] if k.model is not None and held and k.id in held}
        if models:  # the evidence that each model held: its judgment of the result
            out["models"] = models
        return out


def excuse(entries: list[Known], rec: dict[str, Any],
           held: dict[str, Any] | None = None) -> tuple[list[Known], set[str]]:
    """The entries that make a failing result known, and the symptoms none of them excuses (empty
    when it is known). Each symptom must be excused by an entry in whose scope the result is: a
    float64 Keras loss computed in float32 (`match`, `wrong_dtype`) with a NaN at its +inf logit
    (`nan_expected_finite`) needs both entries, and an entry for the one cannot excuse the other.
    An entry with a model excuses values only where `held` says its model holds (`Known.excuses_for`).
    The first entry is the one that excuses the worst class (`special`), the rest in file order."""
    scoped = [k for k in entries if k.matches(rec)]
    want = symptoms(rec)
    if not scoped:
        return [], want
    worst = str(rec.get("special") or "match")
    ex = {k.id: k.excuses_for(held) for k in scoped}
    first = next((k for k in scoped if ex[k.id] is None or worst in ex[k.id]), None)  # type: ignore[operator]
    used, left = [], set(want)
    for k in ([first] if first else []) + [k for k in scoped if k is not first]:
        e = ex[k.id] if ex[k.id] is not None else left
        if left & e:
            used.append(k)
            left -= e
        if not left:
            break
    return used, left


class Use:
    """Which entries results were in the scope of (`Known.matches`, excused or not) and which
    excused one. Fed a session's results as they are classified, or a results file's: every
    worker's, shard's and machine's results, so a stale entry is told one way wherever its
    results ran (`stale`)."""

    def __init__(self, entries: list[Known]):
        self.entries = entries
        self.by_framework: dict[str, list[Known]] = {}
        for k in entries:
            self.by_framework.setdefault(k.framework, []).append(k)
        #: Entries a result was in the scope of.
        self.in_scope: set[str] = set()
        #: Entries that excused a result (its record's `known`, and `known.also`).
        self.hits: set[str] = set()

    def observe(self, rec: dict[str, Any]) -> None:
        """Count a classified result. A skipped one did not run, and a harness error is no
        framework's result: neither is counted (a session classifies neither)."""
        if rec.get("status") == "skip" or rec.get("special") == "harness_error":
            return
        mine = self.by_framework.get(str(rec.get("framework")), [])
        self.in_scope.update(k.id for k in mine if k.id not in self.in_scope and k.matches(rec))
        kn = rec.get("known")
        if isinstance(kn, dict) and kn.get("source") == "known":
            self.hits.add(str(kn.get("id")))
            self.hits.update(str(a) for a in kn.get("also") or ())

    def unused(self, frameworks: list[str], policy: str | None, in_scope: bool = False) -> list[Known]:
        """Entries of `frameworks` that can match under `policy` and excused no result; with
        `in_scope`, only those a result was in the scope of."""
        return [k for k in self.entries if k.framework in frameworks and k.id not in self.hits
                and k.applies(policy) and (not in_scope or k.id in self.in_scope)]


def judged(runs: list[dict[str, Any]], known: str | None = None) -> dict[str, tuple[str, str | None]]:
    """framework -> (suite, policy) for each framework whose results in `runs` (the run_start
    records of complete runs: every pytest-xdist worker's, shard's and machine's) are those of a
    whole library under the known file `known` (None: the built-in one): every run of it says so
    (its `library`, RunOptions.library), all of one suite and policy, and of each split its runs
    were part of (`shard` K/N, per devices) every part ran. Only for those can an entry that
    excused nothing be called stale."""
    parts: dict[str, dict[tuple[Any, ...], set[str]]] = {}
    unjudged: set[str] = set()
    for run in runs:
        lib = run.get("library")
        for fw in run.get("frameworks") or {}:
            if not isinstance(lib, dict) or lib.get("known") != known:
                unjudged.add(fw)
                continue
            sig = (lib.get("suite"), run.get("policy"), tuple(lib.get("devices") or ()))
            parts.setdefault(fw, {}).setdefault(sig, set()).add(str(run.get("shard") or "1/1"))
    out: dict[str, tuple[str, str | None]] = {}
    for fw, by_sig in parts.items():
        kinds = {sig[:2] for sig in by_sig}
        if fw not in unjudged and len(kinds) == 1 and all(_every_part(p) for p in by_sig.values()):
            suite, policy = next(iter(kinds))
            out[fw] = (str(suite), policy)
    return out


def _every_part(parts: set[str]) -> bool:
    """Whether the parts ("K/N") hold every part of a split: 1/1, or 1/N to N/N."""
    by_n: dict[int, set[int]] = {}
    for p in parts:
        k, _, n = p.partition("/")
        if k.isdigit() and n.isdigit():
            by_n.setdefault(int(n), set()).add(int(k))
    return any(ks >= set(range(1, n + 1)) for n, ks in by_n.items())


def stale(use: Use, runs: list[dict[str, Any]], known: str | None = None) -> list[tuple[Known, str]]:
    """The stale entries, each with its suite: of each framework `judged` by `runs`, those that
    excused no result of `use` (fed those runs' results). A run of the full suite holds every
    case: an entry that excused nothing there is stale. The default suite leaves the large cases
    to the full one: there only an entry a result was in the scope of (results ran where it
    applies and none needed it) can be called stale."""
    out: list[tuple[Known, str]] = []
    for fw, (suite, policy) in sorted(judged(runs, known).items()):
        out += [(k, suite) for k in use.unused([fw], policy, in_scope=suite != "full")]
    return out


def stale_in(entries: list[Known], results: list[dict[str, Any]], runs: list[dict[str, Any]],
             known: str | None = None) -> list[str]:
    """The warnings (stale_text) for results read back from files, `runs` their complete runs'
    run_starts: the pytest plugin's controller (every xdist worker's records) and `harness
    report` (every part of a split). Nothing is counted unless the runs are judged."""
    fws = judged(runs, known)
    if not fws:  # the quick suite, a narrowed run or a missing part: nothing to tell
        return []
    use = Use(entries)
    for r in results:
        if r.get("framework") in fws:
            use.observe(r)
    return [stale_text(k, suite) for k, suite in stale(use, runs, known)]


def stale_text(k: Known, suite: str) -> str:
    """The warning for a stale entry (the CLI's, the pytest plugin's and the report's)."""
    return (f"known discrepancy {k.id!r} excused no result" + (" of its scope" if suite != "full" else "")
            + f" in a whole run of the {suite} suite: stale, or its scope is wider than what it excuses")


def _policy_of(rec: dict[str, Any]) -> str | None:
    tol = rec.get("tolerance")
    return tol.get("policy") if isinstance(tol, dict) else None


def load_known(path: str | Path | None = None) -> list[Known]:
    p = Path(path) if path else KNOWN_FILE
    f = str(p)
    if not p.exists():
        if path:
            raise HarnessInputError("no such known-discrepancies file", file=f)
        return []
    require_regular_file(p, "known-discrepancies file", "known")
    data = read_toml(p, "known-discrepancies file", "known", TOP_KEYS)
    entries = data.get("known", [])
    if not isinstance(entries, list):
        raise HarnessInputError(f"expected a list of [[known]] tables, not {_shown(entries)}", file=f, field="known")
    return parse_entries(entries, f)


def parse_entries(entries: list[Any], f: str) -> list[Known]:
    """Known entries from their tables (a known.toml's [[known]], or dicts of the same keys given
    to harness.assert_conforms), validated alike; `f` names where they came from."""
    from . import adapters as A

    out = []
    frameworks = A.names()  # once: each call reads the installed entry points (about 10 ms)
    for i, e in enumerate(entries):
        if not isinstance(e, dict):
            raise HarnessInputError(f"known[{i}] is not a table but {_shown(e)}: expected a list of [[known]] tables",
                                    file=f, field="known")
        unknown = set(e) - ENTRY_KEYS
        if unknown:
            raise HarnessInputError(f"known[{i}]: unknown key(s) {sorted(unknown)}", file=f,
                                    field=sorted(unknown)[0], choices=sorted(ENTRY_KEYS))
        for k in STRING_KEYS:
            if k in e and not isinstance(e[k], str):
                raise HarnessInputError(f"known[{i}]: {k} must be a string, not {_shown(e[k])}", file=f, field=k)
        for req in ("id", "description", "framework"):
            if not e.get(req, "").strip():
                raise HarnessInputError(f"known[{i}] needs {req!r}", file=f, field=req)
        if not isinstance(e.get("finding", False), bool):
            raise HarnessInputError(f"known[{i}]: finding must be true or false, not {_shown(e['finding'])}", file=f,
                                    field="finding")
        match = {}
        for k in LIST_KEYS:
            if k in e:
                v = e[k]
                if not (isinstance(v, str) or isinstance(v, list) and all(isinstance(x, str) for x in v)):
                    raise HarnessInputError(f"known[{i}]: {k} must be a string or a list of strings, not {_shown(v)}",
                                            file=f, field=k)
                match[k] = [v] if isinstance(v, str) else list(v)
        _validate_entry(e, match, f, i, frameworks)
        out.append(Known(e["id"], e["description"].strip(), e["framework"], match, e.get("link", ""),
                         e.get("finding", False), _model(e, f, i)))
    return out


def _model(e: dict[str, Any], f: str, i: int) -> Model | None:
    """The entry's `model` table ({dtype, rounds}), checked: unknown keys, dtypes and inputs fail
    with the valid names."""
    from . import dtypes as D

    if "model" not in e:
        return None
    m = e["model"]
    if not isinstance(m, dict):
        raise HarnessInputError(f"known[{i}]: model must be a table {{dtype, rounds}}, not {_shown(m)}", file=f,
                                field="model")
    unknown = set(m) - MODEL_KEYS
    if unknown:
        raise HarnessInputError(f"known[{i}]: unknown model key(s) {sorted(unknown)}", file=f,
                                field=f"model.{sorted(unknown)[0]}", choices=sorted(MODEL_KEYS))
    dt = m.get("dtype")
    if dt is not None and dt not in D.DTYPE_NAMES:
        raise HarnessInputError(f"known[{i}]: unknown model dtype {dt!r}", file=f, field="model.dtype",
                                choices=D.DTYPE_NAMES)
    rounds = m.get("rounds", [])
    if not (isinstance(rounds, list) and all(isinstance(r, str) for r in rounds)):
        raise HarnessInputError(f"known[{i}]: model.rounds must be a list of strings, not {_shown(rounds)}", file=f,
                                field="model.rounds")
    bad = [r for r in rounds if r not in MODEL_INPUTS]
    if bad:
        raise HarnessInputError(f"known[{i}]: unknown model input {bad[0]!r}", file=f, field="model.rounds",
                                choices=list(MODEL_INPUTS))
    if dt is None and not rounds:
        raise HarnessInputError(f"known[{i}]: a model that rounds nothing to the result's own dtype is the exact "
                                "semantics: give model.dtype or model.rounds", file=f, field="model")
    return Model(dt, tuple(dict.fromkeys(rounds)))


def _shown(v: Any) -> str:
    """A value of the wrong type in a message: its type and (the start of) its repr."""
    r = repr(v)
    return f"{type(v).__name__} {r if len(r) <= 60 else r[:57] + '...'}"


def _validate_entry(e: dict[str, Any], match: dict[str, list[str]], file: str, i: int,
                    frameworks: list[str]) -> None:
    """Names must be real (`frameworks`: the adapters' names): a misspelt one would silently match
    nothing."""
    from . import dtypes as D
    from . import ops as O
    from .verdict import ALL_SPECIAL

    if e["framework"] not in frameworks:
        raise HarnessInputError(f"known[{i}]: unknown framework {e['framework']!r}", file=file, field="framework",
                                choices=frameworks)
    valid = {"ops": O.OP_NAMES, "checks": O.CHECKS, "cotangents": list(O.COTANGENTS) + ["given"],
             "dtypes": D.DTYPE_NAMES, "devices": O.DEVICES,
             "modes": O.MODES, "status": ["pass", "fail", "error", "skip"],
             "special": ALL_SPECIAL + SYMPTOM_EXTRA, "inputs": sorted(INPUT_KINDS)}
    for k, vals in match.items():
        bad = [v for v in vals if k in valid and v not in valid[k]]
        if bad:
            raise HarnessInputError(f"known[{i}]: unknown {k[:-1] if k.endswith('s') else k} {bad[0]!r}", file=file,
                                    field=k, choices=valid[k])


def read_results(path: str, field: str, what: str = "results") -> records.Loaded:
    """One results file a command relies on (a `--baseline`, `diff`'s old and new runs), read,
    or refused naming the file and `field`: missing ("no such <what> file"), not a regular file
    (a directory, a named pipe), or holding no record (empty, not JSON Lines, or every record
    ignored as a problem; the first problem is quoted). A report, by contrast, reads what it can."""
    if not Path(path).exists():
        raise HarnessInputError(f"no such {what} file", file=path, field=field)
    require_regular_file(path, f"{what} file", field)
    loaded = records.read([path])
    if not loaded.results and not loaded.runs:
        raise HarnessInputError("holds no result record" + (f" ({loaded.problems[0]})" if loaded.problems else ""),
                                file=path, field=field)
    return loaded


class Baseline:
    """Failures of a previous run. A result that failed there and fails the same way now
    (same status and symptoms: `symptoms`) is known; a new failure is not; one that passes now is
    listed as fixed."""

    def __init__(self, paths: list[str]):
        # Every file is checked, as `diff` checks its inputs, before any result is written.
        results = [r for p in paths for r in read_results(p, "baseline", what="baseline").results]
        self.paths = paths
        self.failed: dict[tuple, dict[str, Any]] = {}
        for r in results:
            if r.get("status") in ("fail", "error"):
                self.failed[records.key(r)] = r
        self.seen: set[tuple] = set()
        self.fixed: list[dict[str, Any]] = []

    def apply(self, rec: dict[str, Any]) -> None:
        k = records.key(rec)
        old = self.failed.get(k)
        if old is None:
            return
        self.seen.add(k)
        if rec["status"] not in ("fail", "error"):
            self.fixed.append(rec)
            rec["baseline"] = "fixed"
            return
        if old.get("status") == rec["status"] and symptoms(old) == symptoms(rec):
            rec["baseline"] = "known"
            if not rec.get("known"):
                rec["known"] = {"id": "baseline", "description": f"failed the same way in {', '.join(self.paths)}",
                                "link": "", "source": "baseline"}
        else:
            rec["baseline"] = "changed"

    def unmatched(self, ran: set[tuple]) -> list[tuple]:
        """Baseline failures whose key this run executed but never matched (should not happen)
        plus those this run did not execute at all: each gets a warning."""
        return [k for k in self.failed if k not in self.seen and k in ran]

    def warn_unmatched(self, ran: set[tuple]) -> None:
        for k in self.unmatched(ran):
            warnings.warn(f"baseline entry {dict(zip(records.KEY_FIELDS, k))} matched no result", stacklevel=2)
