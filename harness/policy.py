"""Tolerance policies: data files under harness/policies/, merged by one function.

A policy is a TOML file:

    name = "standard"
    description = "..."
    [[budget]]            # applies where all of its filters match; later entries win
    check = "forward"     # filters (optional): op, check, dtype, framework
    ulp = 2.0             # budget in ULPs of the output dtype at the exact value
    cond = 4.0            # multiple of u * A_i, A_i the op's condition term (verdict.condition)
    summation = "sqrt"    # how the class count C enters A_i: "log2", "sqrt" or "linear"
    accumulate = "float32"  # optional: the dtype the sums accumulate in, where wider than the tested one
    reason = "..."        # required: why this budget

The budget for element i is  ulp * ULP(exact_i) + cond * u * A_i  (u the dtype's unit roundoff).
A case may add its own override (its "tolerance" object, with a reason).

    [invariance]          # optional: what a difference between variants of one call means to the
    rule = "budget"       # invariance checks (harness.invariance): "bitwise", any difference fails;
    reason = "..."        # "budget" (the default), reported, failing only where a variant fails its budget
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import dtypes as D
from . import ops as O
from .errors import HarnessInputError
from .vocab import INVARIANCE_CHECKS

POLICY_DIR = Path(__file__).resolve().parent / "policies"
BUDGET_KEYS = {"op", "check", "dtype", "framework", "ulp", "cond", "summation", "accumulate", "reason"}
FILTERS = ("op", "check", "dtype", "framework")
TOP_KEYS = {"name", "description", "budget", "invariance"}
INVARIANCE_KEYS = {"rule", "reason"}
INVARIANCE_RULES = ("bitwise", "budget")
#: The rule of a policy that states none.
DEFAULT_INVARIANCE = {"rule": "budget", "reason": "a policy without an [invariance] table: a difference between "
                      "variants is reported and fails only where a variant fails its budget"}
SUMMATIONS = ("log2", "sqrt", "linear")
#: The budget's numbers (the multiples of an ULP and of u * A_i): each a finite number >= 0.
NUMBERS = ("ulp", "cond")


@dataclass(frozen=True)
class Tolerance:
    ulp: float
    cond: float
    summation: str
    reasons: tuple[str, ...]
    #: The dtype the sums accumulate in (None: the tested dtype); only a wider one changes a budget.
    accumulate: str | None = None

    def sums(self, dt: D.DType) -> O.Summation:
        """The summation model of the tested dtype: sigma in units of its u, from an accumulator
        of `accumulate` where that is wider than the dtype (docs/tolerance.md)."""
        wide = D.get(self.accumulate).u / dt.u if self.accumulate else 1.0
        return O.Summation(self.summation, min(wide, 1.0))


@dataclass
class Policy:
    name: str
    description: str
    budgets: list[dict[str, Any]]
    path: str
    #: The invariance checks' rule and its reason (INVARIANCE_RULES).
    invariance: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_INVARIANCE))

    def tolerance(self, op: str, check: str, dtype: str, framework: str,
                  override: dict[str, Any] | None = None) -> Tolerance:
        """Merge the matching budgets (later wins), then the case's override."""
        t: dict[str, Any] = {"ulp": 0.0, "cond": 0.0, "summation": "sqrt", "accumulate": None}
        reasons: list[str] = []
        want = {"op": op, "check": check, "dtype": dtype, "framework": framework}
        for b in self.budgets + ([override] if override else []):
            if all(b.get(k) in (None, want[k]) or (isinstance(b.get(k), list) and want[k] in b[k])
                   for k in FILTERS):
                for k in ("ulp", "cond", "summation", "accumulate"):
                    if k in b:
                        t[k] = b[k]
                reasons.append(b["reason"])
        return Tolerance(float(t["ulp"]), float(t["cond"]), str(t["summation"]), tuple(reasons), t["accumulate"])


def builtin_names() -> list[str]:
    return sorted(p.stem for p in POLICY_DIR.glob("*.toml"))


def load(name_or_path: str) -> Policy:
    from .cases import require_regular_file

    p = Path(name_or_path)
    if name_or_path in builtin_names():
        p = POLICY_DIR / f"{name_or_path}.toml"
    elif p.suffix == ".toml" and p.exists():
        require_regular_file(p, "policy file", "policy")
    else:
        raise HarnessInputError(f"unknown policy {name_or_path!r}: neither a built-in name nor an "
                                f"existing .toml file", field="policy", choices=builtin_names())
    f = str(p)
    from .cases import read_toml

    data = read_toml(p, "policy file", "policy", TOP_KEYS)
    budgets = data.get("budget", [])
    if not isinstance(budgets, list) or not budgets:
        raise HarnessInputError("a policy needs at least one [[budget]]", file=f, field="budget")
    for i, b in enumerate(budgets):
        validate_budget(b, file=f, where=f"budget[{i}]")
    return Policy(str(data.get("name", p.stem)), str(data.get("description", "")), budgets, f,
                  validate_invariance(data.get("invariance", DEFAULT_INVARIANCE), f))


def validate_invariance(t: Any, f: str) -> dict[str, str]:
    if not isinstance(t, dict):
        # docs/bad-inputs.md B79: the message named neither the value nor the table's keys.
        raise HarnessInputError(f"[invariance] must be a table of rule and reason, not {t!r}", file=f,
                                field="invariance", choices=sorted(INVARIANCE_KEYS))
    unknown = set(t) - INVARIANCE_KEYS
    if unknown:
        raise HarnessInputError(f"[invariance]: unknown key(s) {sorted(unknown)}", file=f, field=sorted(unknown)[0],
                                choices=sorted(INVARIANCE_KEYS))
    if t.get("rule") not in INVARIANCE_RULES:
        raise HarnessInputError(f"[invariance]: rule must be one of {list(INVARIANCE_RULES)}, not {t.get('rule')!r}",
                                file=f, field="rule", choices=list(INVARIANCE_RULES))
    if not isinstance(t.get("reason"), str) or not t["reason"].strip():
        raise HarnessInputError("[invariance]: the rule needs a written reason", file=f, field="reason")
    return {"rule": t["rule"], "reason": t["reason"]}


def _filter_values() -> dict[str, list[str]]:
    from . import adapters as A
    from . import dtypes as D
    from . import ops as O

    # docs/bad-inputs.md B78, B80: a budget's check filter takes the checks judged by a budget of their own
    # (forward, grad, grad2). The invariance checks are judged by the forward budget (Session._invariance
    # asks for check "forward"), so a budget filtering on one matched nothing, silently.
    return {"op": O.OP_NAMES, "check": O.VALUE_CHECKS, "dtype": D.DTYPE_NAMES, "framework": A.names()}


def validate_budget(b: Any, *, file: str | None, where: str, case: str | None = None) -> None:
    if not isinstance(b, dict):
        raise HarnessInputError(f"{where} is not a table", file=file, case=case, field=where)
    unknown = set(b) - BUDGET_KEYS
    if unknown:
        raise HarnessInputError(f"{where}: unknown key(s) {sorted(unknown)}", file=file, case=case,
                                field=sorted(unknown)[0], choices=sorted(BUDGET_KEYS))
    if not isinstance(b.get("reason"), str) or not b["reason"].strip():
        raise HarnessInputError(f"{where}: every budget needs a written reason", file=file, case=case,
                                field="reason")
    for k in NUMBERS:
        if k in b and (isinstance(b[k], bool) or not isinstance(b[k], (int, float)) or not math.isfinite(b[k])
                       or b[k] < 0):
            raise HarnessInputError(f"{where}: {k} must be a finite non-negative number, not {b[k]!r}", file=file,
                                    case=case, field=k)
    valid = _filter_values()
    for k in FILTERS:
        if k in b:
            vals = b[k] if isinstance(b[k], list) else [b[k]]
            bad = [v for v in vals if v not in valid[k]]
            if bad:
                what = f"unknown {k} {bad[0]!r}"
                if k == "check" and bad[0] in INVARIANCE_CHECKS:  # B78, B80: a known check, but no budget's
                    what = (f"check {bad[0]!r} has no budget of its own: an invariance check is judged by the "
                            f"forward budget (check = \"forward\")")
                raise HarnessInputError(f"{where}: {what}", file=file, case=case, field=k, choices=valid[k])
    if "summation" in b and b["summation"] not in SUMMATIONS:
        raise HarnessInputError(f"{where}: bad summation {b['summation']!r}", file=file, case=case,
                                field="summation", choices=list(SUMMATIONS))
    if "accumulate" in b and b["accumulate"] not in D.DTYPE_NAMES:
        raise HarnessInputError(f"{where}: bad accumulate {b['accumulate']!r} (the dtype the sums accumulate in)",
                                file=file, case=case, field="accumulate", choices=list(D.DTYPE_NAMES))
