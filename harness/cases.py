"""Cases as data: loading, validation, and expansion to per-dtype inputs.

A case file is JSON (or TOML) of the form documented in the README:

    {"family": "extreme", "description": "...",
     "cases": [{"id": "extreme/neg_inf_row", "why": "...", "op": "softmax",
                "logits": [["-inf", 0, 1]], "labels": null, "axis": -1,
                "dtypes": ["float32"], "grad": true}]}

`logits` and `labels` are nested lists of numbers and the strings "inf", "-inf", "nan" (and
the dtype-relative tokens of TOKENS), or a path to a .npy file, or {"path": "x.npz", "key":
"logits"}, or a generator {"random": "normal", "shape": [4, 16], "scale": 1.0, "seed": 0}.
`op` may be omitted (all ops the labels fit), a name, or a list of names.
"""

from __future__ import annotations

import fnmatch
import json
import math
import os
import stat
import tomllib
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import dtypes as D
from . import ops as O
from .errors import HarnessInputError

#: The built-in library: cases/ at the top of the repository, which harness/library links to and
#: which the wheel ships as harness/library (resolved: the same paths as cases/ in a checkout).
CASES_DIR = (Path(__file__).resolve().parent / "library").resolve()
#: Above this many logits elements the verdict checks a deterministic sample of rows (plus
#: every row holding a non-finite value). The record says how many rows were checked.
ELEMENT_BUDGET = 1 << 18

#: Value tokens that depend on the tested dtype; resolved before the cast.
TOKENS = {
    "max": lambda dt: dt.max,
    "tiny": lambda dt: dt.tiny,
    "min_sub": lambda dt: dt.min_sub,
    "exp_overflow": lambda dt: math.log(dt.max),  # the largest x with exp(x) finite in dt
}
SPECIAL = {"inf": math.inf, "+inf": math.inf, "-inf": -math.inf, "nan": math.nan}
#: The case keys; the options of the op registry (ops.PARAMS: label_smoothing, ...) besides.
CASE_KEYS = ({"id", "why", "op", "logits", "labels", "axis", "dtypes", "grad", "grad2", "invariance", "tags", "tolerance",
              "cotangent"}
             | set(O.PARAMS))
FILE_KEYS = {"family", "description", "cases"}
#: The most dimensions an array of a case has (numpy's own limit is 64): a nested list deeper than
#: this, or an array file or generator shape with more, is refused (docs/bad-inputs.md).
MAX_DIMS = 32
#: The most elements an array of a case (inline, generated, or read from an .npy/.npz file) may
#: have, checked before anything is allocated: 2**27 (1 GiB as float64). The environment
#: variable MAX_ELEMENTS_ENV overrides it.
MAX_ELEMENTS = 1 << 27
MAX_ELEMENTS_ENV = "HARNESS_MAX_ELEMENTS"
#: Sparse labels are int64 class indices: a value must be an integer in [INT64_MIN, INT64_END).
INT64_MIN, INT64_END = -(2 ** 63), 2 ** 63


def max_elements() -> int:
    """The element cap of case arrays: MAX_ELEMENTS, or the environment's MAX_ELEMENTS_ENV."""
    raw = os.environ.get(MAX_ELEMENTS_ENV, "").strip()
    if not raw:
        return MAX_ELEMENTS
    try:
        n = int(raw)
    except ValueError:
        n = 0
    if n < 1:
        raise HarnessInputError(f"the environment variable {MAX_ELEMENTS_ENV} is {raw!r}, not a positive integer "
                                f"(the most elements an array of a case may have; default {MAX_ELEMENTS})")
    return n


def file_kind(path: str | Path) -> str | None:
    """What `path` is when it exists but is not a regular file ("a directory", "a named pipe
    (FIFO)", ...), else None (a regular file, or nothing there). Asked before a file is opened:
    reading a named pipe blocks until a writer comes, /dev/zero never ends."""
    try:
        mode = os.stat(path).st_mode
    except OSError:  # missing (or unreachable): the caller says so in its own words
        return None
    if stat.S_ISREG(mode):
        return None
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a named pipe (FIFO)"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a file"


def require_regular_file(path: str | Path, what: str, field: str | None = None) -> None:
    """Refuse a path that exists but is not a regular file (see file_kind), naming it and `field`."""
    kind = file_kind(path)
    if kind is not None:
        raise HarnessInputError(f"is {kind}, not a regular file (a {what} must be one)", file=str(path), field=field)


def read_toml(path: str | Path, what: str, field: str, top_keys: set[str]) -> dict[str, Any]:
    """A TOML input file (a policy, a known-discrepancies file) read and parsed, its top-level
    keys checked against `top_keys`; every fault a HarnessInputError naming the file (and `field`
    where it is the file's): unreadable, not TOML, nested too deeply to parse, an unknown key."""
    f = str(path)
    try:
        data = tomllib.loads(Path(path).read_text())
    except OSError as e:
        raise HarnessInputError(f"cannot read the {what}: {e.strerror or e}", file=f, field=field) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise HarnessInputError(f"not valid TOML: {e}", file=f) from None
    except RecursionError:
        raise HarnessInputError("not valid TOML: arrays or tables nested too deeply to parse", file=f) from None
    unknown = set(data) - top_keys
    if unknown:
        raise HarnessInputError(f"unknown key(s) {sorted(unknown)}", file=f, field=sorted(unknown)[0],
                                choices=sorted(top_keys))
    return data


def _check_size(shape: tuple[int, ...], what: str, err: Any, fld: str) -> None:
    """Refuse an array of more than MAX_DIMS dimensions or more than max_elements() elements,
    before it is allocated. `what` names it ("'x.npy' declares", "the generator's shape ... has")."""
    if len(shape) > MAX_DIMS:
        raise err(f"{what} {len(shape)} dimensions: a case array has at most {MAX_DIMS}", fld)
    n, cap = math.prod(shape), max_elements()
    if n > cap:
        raise err(f"{what} {n} elements (shape {list(shape)}), more than the cap of {cap} elements (the "
                  f"environment variable {MAX_ELEMENTS_ENV} sets it)", fld)


@dataclass
class Case:
    id: str
    ops: list[str]
    logits: Any  # raw spec (nested lists with tokens) or an ndarray
    labels: Any
    axis: int
    dtypes: list[str]
    grad: bool
    why: str = ""
    tags: list[str] = field(default_factory=list)
    tolerance: dict[str, Any] | None = None
    source: str = ""
    #: The grad check's cotangents: (name, None) for a named kind of ops.COTANGENTS, (name,
    #: array spec) for the case's own arrays ("given", "given2", ...).
    cotangents: list[tuple[str, Any]] = field(default_factory=lambda: [(k, None) for k in O.DEFAULT_COTANGENTS])
    #: The op's options (ops.PARAMS) as the case gives them: every op of the case takes them.
    options: dict[str, Any] = field(default_factory=dict)
    #: Whether the grad2 check runs too (second derivatives, docs/semantics.md S25), with the grad
    #: check's cotangents and the fixed direction ops.direction.
    grad2: bool = False
    #: The invariance checks this case runs (harness.invariance): `"invariance": true` for all
    #: four, or a list of their names.
    invariance: list[str] = field(default_factory=list)

    def checks(self) -> list[str]:
        """The checks this case runs."""
        return (["forward"] + (["grad"] if self.grad else []) + (["grad2"] if self.grad2 else [])
                + list(self.invariance))

    @property
    def family(self) -> str:
        return self.id.split("/", 1)[0]

    def logits_for(self, dt: D.DType) -> np.ndarray:
        """The logits cast to dt, as float64 holding the exact cast values."""
        return D.cast_exact(_resolve(self.logits, dt), dt)

    def labels_for(self, dt: D.DType) -> np.ndarray | None:
        if self.labels is None:
            return None
        if self.label_kind == "sparse":
            return np.asarray(self.labels, dtype=np.int64)
        return D.cast_exact(_resolve(self.labels, dt), dt)

    def cotangent_for(self, name: str, op: str, dt: D.DType) -> np.ndarray:
        """The grad check's cotangent `name` for `op`, cast to dt, as float64 holding the exact
        cast values (what the framework and the reference both get)."""
        spec = dict(self.cotangents).get(name, None)
        shape = self.shape
        if spec is None:
            g = O.cotangent(name, op, shape, self.axis % len(shape), self.options)
        else:
            g = _resolve(spec, dt)
        with np.errstate(over="ignore"):
            return D.cast_exact(g, dt)

    def options_for(self, dt: D.DType) -> dict[str, Any]:
        """The options as the reference and the framework see them in dt: class weights cast to
        dt (exact float values), hyper-parameters as given (ops.PARAMS, `cast`)."""
        return O.cast_options(self.options, lambda a: D.cast_exact(a, dt))

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(np.shape(_resolve(self.logits, D.DTYPES["float64"])))

    @property
    def label_kind(self) -> str:
        if self.labels is None:
            return "none"
        return "dense" if np.shape(self.labels) == self.shape else "sparse"


def _resolve(spec: Any, dt: D.DType) -> np.ndarray:
    if isinstance(spec, np.ndarray):
        return spec.astype(np.float64) if spec.dtype.kind != "f" or spec.dtype != np.float64 else spec
    return np.asarray(_tokens(spec, dt), dtype=np.float64)


def _tokens(v: Any, dt: D.DType) -> Any:
    if isinstance(v, list):
        return [_tokens(x, dt) for x in v]
    if isinstance(v, str):
        s = v.strip().lower()
        if s in SPECIAL:
            return SPECIAL[s]
        sign = -1.0 if s.startswith("-") else 1.0
        return sign * TOKENS[s.lstrip("+-")](dt)
    return v


# --------------------------------------------------------------------------------------------
# Loading and validation


def load_file(path: str | Path) -> list[Case]:
    path = Path(path)
    f = str(path)
    if not path.exists():
        raise HarnessInputError("no such case file", file=f)
    require_regular_file(path, "case file", "cases")
    fmt = "TOML" if path.suffix == ".toml" else "JSON"
    try:
        text = path.read_text()
        data = tomllib.loads(text) if fmt == "TOML" else json.loads(text)
    except OSError as e:
        raise HarnessInputError(f"cannot read the case file: {e.strerror or e}", file=f, field="cases") from None
    except (json.JSONDecodeError, tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise HarnessInputError(f"not valid {fmt}: {e}", file=f) from None
    except RecursionError:  # both parsers recurse once per level of nesting
        raise HarnessInputError(f"not valid {fmt}: arrays or tables nested too deeply to parse (a case array "
                                f"has at most {MAX_DIMS} dimensions)", file=f) from None
    if not isinstance(data, dict) or not isinstance(data.get("cases"), list):
        raise HarnessInputError('expected an object with a list "cases"', file=f, field="cases")
    unknown = set(data) - FILE_KEYS
    if unknown:
        raise HarnessInputError(f"unknown key(s) {sorted(unknown)}", file=f, choices=sorted(FILE_KEYS))
    family = data.get("family")
    for key in ("family", "description"):  # names the report and the case ids carry: text, or absent
        if key in data and not (isinstance(data[key], str) and (key != "family" or data[key].strip())):
            raise HarnessInputError(f"{key} must be {'a non-empty string' if key == 'family' else 'a string'}, "
                                    f"not {data[key]!r}", file=f, field=key)
    cases = []
    seen: set[str] = set()
    for i, raw in enumerate(data["cases"]):
        c = parse_case(raw, file=f, index=i, family=family, base=path.parent)
        if c.id in seen:
            raise HarnessInputError("duplicate case id", file=f, case=c.id, field="id")
        seen.add(c.id)
        cases.append(c)
    return cases


def parse_case(raw: Any, *, file: str, index: int, family: str | None, base: Path) -> Case:
    if not isinstance(raw, dict):
        raise HarnessInputError(f"case #{index} is not an object", file=file)
    cid = raw.get("id")
    if not isinstance(cid, str) or not cid.strip():
        raise HarnessInputError(f"case #{index} has no string id", file=file, field="id")
    if "/" not in cid:
        cid = f"{family or Path(file).stem}/{cid}"
    if "why" in raw and not isinstance(raw["why"], str):  # shown as text by the report and the records
        raise HarnessInputError(f"why must be a string, not {raw['why']!r}", file=file, case=cid, field="why")

    def err(msg: str, fld: str, choices: list[str] | None = None) -> HarnessInputError:
        return HarnessInputError(msg, file=file, case=cid, field=fld, choices=choices)

    unknown = set(raw) - CASE_KEYS
    if unknown:
        raise err(f"unknown key(s) {sorted(unknown)}", sorted(unknown)[0], sorted(CASE_KEYS))
    if "logits" not in raw:
        raise err("missing", "logits")
    logits = _load_array(raw["logits"], base, err, "logits")
    labels = None if raw.get("labels") is None else _load_array(raw["labels"], base, err, "labels")
    shape = np.shape(_resolve(logits, D.DTYPES["float64"]))
    if len(shape) == 0:
        raise err("logits must have at least one dimension (the class axis)", "logits")
    axis = raw.get("axis", -1)
    if not isinstance(axis, int) or isinstance(axis, bool):
        raise err(f"axis {axis!r} is not an integer", "axis")
    if not -len(shape) <= axis < len(shape):
        raise err(f"axis {axis!r} is out of range for logits of shape {list(shape)}", "axis")
    if shape[axis] == 0:
        raise err("the class axis is empty (softmax over no classes is undefined here)", "logits")
    batch = tuple(n for i, n in enumerate(shape) if i != axis % len(shape))
    kind = "none"
    if labels is not None:
        lshape = np.shape(labels) if not isinstance(labels, np.ndarray) else labels.shape
        if tuple(lshape) == tuple(shape):
            kind = "dense"
        elif tuple(lshape) == batch:
            kind = "sparse"
            labels = _class_indices(labels, err)
        else:
            raise err(f"labels of shape {list(lshape)} fit neither the logits {list(shape)} (dense) "
                      f"nor the batch {list(batch)} (integer class indices)", "labels")
    options = {k: raw[k] for k in O.PARAMS if k in raw}
    op = raw.get("op")
    if op is None:  # the ops the labels fit that take every option the case names
        ops = [o for o in O.fits(kind) if all(k in O.OPS[o].params for k in options)]
        if not ops:
            raise err(f"no op with {kind} labels takes the option(s) {sorted(options)}", sorted(options)[0],
                      [o for o in O.OP_NAMES if O.OPS[o].params])
    else:
        ops = [op] if isinstance(op, str) else op
        if not isinstance(ops, list) or not ops:
            raise err("op must be a name or a list of names", "op", O.OP_NAMES)
        for o in ops:
            if not isinstance(o, str) or o not in O.OPS:
                raise err(f"unknown op {o!r}", "op", O.OP_NAMES)
            need = O.OPS[o].labels
            if need != "none" and need != kind:
                raise err(f"op {o!r} needs {need} labels, the case has "
                          f"{'none' if kind == 'none' else kind + ' labels'}", "labels")
    for k, v in options.items():  # an array option is checked recursively by its Param: bound its depth first
        at = _too_deep(v)
        if at is not None:
            raise err(f"nested deeper than {MAX_DIMS} levels at {at}: a case array has at most {MAX_DIMS} dimensions",
                      k)
    for o in ops:
        O.validate_options(o, options, shape[axis], shape, file=file, case=cid)
    dts = raw.get("dtypes", D.DTYPE_NAMES)
    if isinstance(dts, str):
        dts = [dts]
    if not isinstance(dts, list) or not dts or any(not isinstance(d, str) or d not in D.DTYPES for d in dts):
        raise err(f"bad dtypes {dts!r}", "dtypes", D.DTYPE_NAMES)
    grad = raw.get("grad", True)
    if not isinstance(grad, bool):
        raise err("grad must be true or false", "grad")
    grad2 = raw.get("grad2", False)
    if not isinstance(grad2, bool):
        raise err("grad2 must be true or false", "grad2")
    inv = raw.get("invariance", False)
    if inv is True:
        inv = list(O.INVARIANCE_CHECKS)
    elif inv is False:
        inv = []
    elif not isinstance(inv, list) or any(c not in O.INVARIANCE_CHECKS for c in inv):
        raise err(f"invariance must be true, false or a list of invariance checks, not {inv!r}", "invariance",
                  list(O.INVARIANCE_CHECKS))
    tol = raw.get("tolerance")
    if tol is not None:
        from .policy import validate_budget

        validate_budget(tol, file=file, case=cid, where="tolerance")
    tags = raw.get("tags", [])
    if not isinstance(tags, list) or any(not isinstance(t, str) for t in tags):
        raise err(f"tags must be a list of strings, not {tags!r}", "tags")
    cots = _parse_cotangents(raw["cotangent"], ops, shape, axis, base, err, options) if "cotangent" in raw else None
    # The source is absolute: a repro snippet of a large input loads it with array_of(source, ...),
    # from whatever directory it is run in (a relative path worked only from the run's own).
    case = Case(cid, ops, logits, labels, axis, dts, grad, str(raw.get("why", "")), list(tags), tol,
                str(Path(file).resolve()) if file else file)
    if cots is not None:
        case.cotangents = cots
    case.options = options
    case.grad2 = grad2
    case.invariance = [c for c in O.INVARIANCE_CHECKS if c in inv]
    return case


def _parse_cotangents(spec: Any, ops: list[str], shape: tuple[int, ...], axis: int, base: Path,
                      err: Any, options: dict[str, Any]) -> list[tuple[str, Any]]:
    """The case key "cotangent": a name of ops.COTANGENTS, an explicit array (a nested list of
    numbers, or {"values": ...}, {"path": ...}), or a list of those; each runs as its own grad
    check. An explicit array must have the forward output's shape of every op of the case."""
    names = list(O.COTANGENTS)
    is_array = isinstance(spec, list) and spec and all(not isinstance(v, (str, dict)) for v in spec)
    items = [spec] if isinstance(spec, (str, dict)) or is_array else spec
    if not isinstance(items, list) or not items:
        raise err(f"cotangent must be one of {names}, an array, or a list of those; not {spec!r}", "cotangent", names)
    out: list[tuple[str, Any]] = []
    n_given = 0
    for it in items:
        if isinstance(it, str):
            if it not in names:
                raise err(f"unknown cotangent {it!r}", "cotangent", names)
            name, arr = it, None
        else:
            if isinstance(it, dict) and "values" in it:
                if set(it) != {"values"}:
                    raise err('an explicit cotangent is {"values": [...]} or {"path": ...}', "cotangent")
                it = it["values"]
            arr = _load_array(it, base, err, "cotangent")
            got = tuple(np.shape(_resolve(arr, D.DTYPES["float64"])))
            for op in ops:
                want = O.output_shapes(op, "forward", shape, axis % len(shape), options)["out"]
                if got != tuple(want):
                    raise err(f"an explicit cotangent must have the shape of {op}'s output {list(want)}, not "
                              f"{list(got)} (restrict the case's op, or name a cotangent: {', '.join(names)})",
                              "cotangent")
            if not np.all(np.isfinite(_resolve(arr, D.DTYPES["float64"]))):
                raise err("an explicit cotangent must be finite", "cotangent")
            n_given += 1
            name = "given" if n_given == 1 else f"given{n_given}"
        if any(name == n for n, _ in out):
            raise err(f"cotangent {name!r} named twice", "cotangent")
        out.append((name, arr))
    return out


def _class_indices(labels: Any, err: Any) -> np.ndarray:
    """Sparse labels as int64 class indices. Each must be an integer, or a float with an exact
    integer value, that int64 holds; any other value (1.5, 1e20, "max", "inf") is refused, never
    cast. A class index out of range (7 for 3 classes, or negative) is valid input: what a
    framework does with it is part of what the harness tests (docs/semantics.md)."""
    def bad(idx: tuple[int, ...], v: Any) -> HarnessInputError:
        at = "".join(f"[{i}]" for i in idx) or "value"
        return err(f"integer (sparse) labels must be integers within the int64 range; {at} is {v!r}", "labels")

    if isinstance(labels, np.ndarray):
        a = labels
        if a.dtype.kind == "u":
            wrong = a > np.iinfo(np.int64).max
        elif a.dtype.kind == "i":
            wrong = np.zeros(a.shape, dtype=bool)
        else:  # float (an array file's)
            with np.errstate(invalid="ignore"):
                wrong = ~np.isfinite(a) | (a != np.round(a)) | (a < float(INT64_MIN)) | (a >= float(INT64_END))
        if np.any(wrong):
            idx = tuple(int(i) for i in np.argwhere(wrong)[0])
            raise bad(idx, a[idx].item())
        return a.astype(np.int64)
    values = np.asarray(labels, dtype=object)  # a rectangular nested list (checked by _check_nested)
    for idx, v in np.ndenumerate(values):
        if isinstance(v, int) or (isinstance(v, float) and math.isfinite(v) and v.is_integer()):
            if INT64_MIN <= v < INT64_END:
                continue
        raise bad(idx, v)
    return np.array([int(v) for v in values.ravel()], dtype=np.int64).reshape(values.shape)


def _load_array(spec: Any, base: Path, err: Any, fld: str) -> Any:
    """Inline nested lists (validated), an .npy/.npz path, or a random generator."""
    if isinstance(spec, str) and spec.strip().lower() not in SPECIAL and spec.strip().lower().lstrip("+-") not in TOKENS:
        spec = {"path": spec}
    if isinstance(spec, dict):
        if "random" in spec:
            return _generate(spec, err, fld)
        if "path" not in spec:
            raise err('an array object needs "path" (and "key" for .npz) or "random"', fld)
        if not isinstance(spec["path"], str) or not spec["path"]:
            raise err(f'"path" must be a file name, not {spec["path"]!r}', fld)
        p = Path(spec["path"])
        p = p if p.is_absolute() else base / p
        if not p.exists():
            raise err(f"array file {str(p)!r} does not exist", fld)
        kind = file_kind(p)
        if kind is not None:
            raise err(f"array file {str(p)!r} is {kind}, not a regular file", fld)
        key = spec.get("key", fld)
        if not isinstance(key, str):
            raise err(f'"key" must be the name of an array in the .npz, not {key!r}', fld)
        arr = _read_array_file(p, key, err, fld)
        if arr.dtype.kind == "b":
            arr = arr.astype(np.int64)
        return arr if arr.dtype.kind in "iu" else arr.astype(np.float64)
    return _check_nested(spec, err, fld)


def _read_array_file(p: Path, key: str, err: Any, fld: str) -> np.ndarray:
    """An .npy file, or the array `key` of an .npz, read within bounds: the .npy header first
    (format.read_magic, read_array_header_*), and the array refused before anything is allocated
    or unpickled when its dtype holds Python objects (pickled), is not numbers, declares more
    elements than max_elements() or more dimensions than MAX_DIMS, or needs more bytes than the
    file (the .npz member) holds."""
    name = repr(str(p))
    try:
        if p.suffix == ".npz":
            with zipfile.ZipFile(p) as z:
                members = {n[:-len(".npy")]: n for n in z.namelist() if n.endswith(".npy")}
                if key not in members:
                    raise err(f"{name} has no array {key!r}", fld, list(members))
                info = z.getinfo(members[key])
                with z.open(info) as f:
                    _check_npy_header(f, info.file_size, f"{name} (array {key!r})", err, fld)
                with z.open(info) as f:
                    return np.lib.format.read_array(f, allow_pickle=False)
        with open(p, "rb") as f:
            _check_npy_header(f, os.fstat(f.fileno()).st_size, name, err, fld)
            f.seek(0)
            return np.lib.format.read_array(f, allow_pickle=False)
    except (ValueError, EOFError, zlib.error) as e:
        if isinstance(e, HarnessInputError):
            raise
        raise err(f"cannot load {name}: {e}", fld) from None
    except (OSError, zipfile.BadZipFile) as e:
        raise err(f"cannot read {name}: {e}", fld) from None


def _check_npy_header(f: Any, size: int, name: str, err: Any, fld: str) -> None:
    """Read an .npy header from `f` (a file of `size` bytes) and refuse what _read_array_file
    refuses; ValueError for a file that is not .npy."""
    F = np.lib.format
    version = F.read_magic(f)
    if version == (1, 0):
        shape, _, dtype = F.read_array_header_1_0(f)
    elif version == (2, 0):
        shape, _, dtype = F.read_array_header_2_0(f)
    else:
        raise ValueError(f".npy format version {version[0]}.{version[1]} is not read here (1.0 and 2.0 are)")
    if dtype.hasobject:  # refused from the header: a pickled array is never unpickled
        raise err(f"{name} holds Python objects ({dtype}, pickled); only numeric arrays are accepted", fld)
    if dtype.kind not in "fiub":
        raise err(f"{name} holds {dtype}, not numbers", fld)
    _check_size(tuple(shape), f"{name} declares", err, fld)
    need, held = math.prod(shape) * dtype.itemsize, size - f.tell()
    if held < need:
        raise err(f"{name} is truncated: header declares {need} bytes, file holds {held}", fld)


def _check_nested(spec: Any, err: Any, fld: str) -> Any:
    """Validate a nested list: rectangular, at most MAX_DIMS deep and max_elements() numbers, of
    numbers or the known strings only. Iterative (an explicit stack), so that no nesting depth
    reaches Python's recursion limit."""
    if not isinstance(spec, list):
        _check_value(spec, "", err, fld)
        return spec
    # Depth-first, each list's elements in order: (list, its path, the shapes of the elements done).
    stack: list[tuple[list, str, list[tuple[int, ...]]]] = [(spec, "", [])]
    while True:
        v, path, shapes = stack[-1]
        if len(shapes) < len(v):
            i = len(shapes)
            x, at = v[i], f"{path}[{i}]"
            if isinstance(x, list):
                if len(stack) >= MAX_DIMS:
                    raise err(f"nested deeper than {MAX_DIMS} levels at {at}: a case array has at most {MAX_DIMS} "
                              f"dimensions", fld)
                stack.append((x, at, []))
            else:
                _check_value(x, at, err, fld)
                shapes.append(())
            continue
        if shapes and any(s != shapes[0] for s in shapes):
            raise err(f"ragged nested list at {path or 'top level'}: sub-lists of shapes "
                      f"{sorted(set(shapes))}", fld)
        shape = (len(v),) + (shapes[0] if shapes else ())
        stack.pop()
        if not stack:
            break
        stack[-1][2].append(shape)
    _check_size(shape, "the nested list holds", err, fld)
    return spec


def _too_deep(v: Any) -> str | None:
    """The path of the first list in `v` nested deeper than MAX_DIMS levels, or None. Iterative."""
    stack = [(v, "", 0)]
    while stack:
        x, path, depth = stack.pop()
        if isinstance(x, list):
            if depth >= MAX_DIMS:
                return path
            stack.extend((y, f"{path}[{i}]", depth + 1) for i, y in reversed(list(enumerate(x)))
                         if isinstance(y, list))
    return None


def _check_value(v: Any, path: str, err: Any, fld: str) -> None:
    """One value of a nested list: a number, or one of the strings SPECIAL and TOKENS."""
    if isinstance(v, bool) or not isinstance(v, (int, float, str)):
        raise err(f"{path or 'value'} is {v!r}: expected a number or one of "
                  f'"inf", "-inf", "nan", {", ".join(repr(t) for t in TOKENS)}', fld)
    if isinstance(v, int) and abs(v) > 2 ** 1024:
        raise err(f"{path or 'value'} is an integer too large for float64 ({str(v)[:20]}...)", fld)
    if isinstance(v, str):
        s = v.strip().lower()
        if s not in SPECIAL and s.lstrip("+-") not in TOKENS:
            raise err(f"{path or 'value'} is the string {v!r}: expected a number or one of "
                      f'"inf", "-inf", "nan", {", ".join(repr(t) for t in TOKENS)}', fld)


def _generate(spec: dict, err: Any, fld: str) -> np.ndarray:
    kind = spec["random"]
    shape = spec.get("shape")
    if not isinstance(shape, list) or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0
                                              for n in shape):
        raise err("random arrays need a shape: a list of non-negative integers", fld)
    _check_size(tuple(shape), "the generator's shape has", err, fld)
    unknown = set(spec) - {"random", "shape", "seed", "scale", "high"}
    if unknown:
        raise err(f"unknown generator key(s) {sorted(unknown)}", fld, ["random", "shape", "seed", "scale", "high"])
    seed, scale = spec.get("seed", 0), spec.get("scale", 1.0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise err(f"generator seed must be a non-negative integer, not {seed!r}", fld)
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale) or scale <= 0:
        raise err(f"generator scale must be a positive number, not {scale!r}", fld)
    if kind == "integers":
        high = spec.get("high")
        if isinstance(high, bool) or not isinstance(high, int) or high < 1:
            raise err(f'integer labels need "high" (the class count), a positive integer, not {high!r}', fld)
    rng = np.random.default_rng(seed)  # fixed per case, never global
    scale = float(scale)
    if kind == "normal":
        return rng.standard_normal(shape) * scale
    if kind == "uniform":
        return rng.uniform(-scale, scale, shape)
    if kind in ("simplex", "onehot"):
        # Labels on the last axis: probability vectors (Dirichlet) or one-hot rows.
        if kind == "onehot":
            k = rng.integers(0, shape[-1], shape[:-1])
            return (np.arange(shape[-1]) == k[..., None]).astype(np.float64)
        return rng.dirichlet(np.ones(shape[-1]), shape[:-1]) if shape[-1] else np.zeros(shape)
    if kind == "integers":
        return rng.integers(0, int(spec["high"]), shape).astype(np.int64)
    raise err(f"unknown random kind {kind!r}", fld, ["normal", "uniform", "simplex", "onehot", "integers"])


def builtin_files() -> list[Path]:
    return sorted(CASES_DIR.glob("*.json")) + sorted(CASES_DIR.glob("*.toml"))


def load(paths: list[str] | None = None) -> list[Case]:
    """The built-in library (no paths) or the cases of the given files/directories."""
    files: list[Path] = []
    if not paths:
        files = builtin_files()
    else:
        for p in paths:
            q = Path(p)
            if q.is_dir():
                found = sorted(q.glob("*.json")) + sorted(q.glob("*.toml"))
                if not found:
                    raise HarnessInputError("the directory holds no .json or .toml case file", file=str(q),
                                            field="cases")
                files += found
            else:
                files.append(q)
    out: list[Case] = []
    seen: dict[str, str] = {}
    for f in files:
        for c in load_file(f):
            if c.id in seen:
                raise HarnessInputError(f"case id also defined in {seen[c.id]}", file=str(f), case=c.id, field="id")
            seen[c.id] = str(f)
            out.append(c)
    return out


def select(cases: list[Case], pattern: str | None) -> list[Case]:
    """--case-filter: a glob if it has glob characters, else a substring; comma-separated."""
    if not pattern:
        return cases
    pats = [p.strip() for p in pattern.split(",") if p.strip()]

    def hit(cid: str) -> bool:
        return any(fnmatch.fnmatchcase(cid, p) if any(ch in p for ch in "*?[") else p in cid for p in pats)

    return [c for c in cases if hit(c.id)]


def sample_rows(x: np.ndarray, axis: int, budget: int = ELEMENT_BUDGET, labels: np.ndarray | None = None,
                options: dict[str, Any] | None = None) -> np.ndarray | None:
    """Rows (flat batch indices) to check for a large input, or None to check them all: evenly
    spaced ones, and every row of the semantics' own rules (docs/semantics.md), whose answers a
    sample would otherwise miss: a non-finite logit (S4-S10), an invalid label (S11, S12: NaN or
    +-inf dense labels, a class index outside 0..C-1), an ignored row (S20) and a row whose `where`
    keeps no entry (S22)."""
    if x.size <= budget:
        return None
    xm = np.moveaxis(x, axis, -1)
    C = xm.shape[-1]
    n = xm.size // C
    k = max(2, budget // C)
    picked = set(np.linspace(0, n - 1, num=min(k, n)).round().astype(int).tolist())
    special = ~np.all(np.isfinite(xm.reshape(n, C)), axis=1)
    if labels is not None:
        y = np.asarray(labels)
        if y.size == n:  # class indices, one per row
            yi = y.reshape(n)
            special |= (yi < 0) | (yi >= C)
            if options and options.get("ignore_index") is not None:
                special |= yi == options["ignore_index"]
        elif y.shape == x.shape:  # dense labels of the logits' shape
            special |= ~np.all(np.isfinite(np.moveaxis(y, axis, -1).reshape(n, C)), axis=1)
    if options and options.get("where") is not None and np.shape(options["where"]) == x.shape:
        special |= ~np.any(np.moveaxis(np.asarray(options["where"], dtype=bool), axis, -1).reshape(n, C), axis=1)
    picked.update(np.nonzero(special)[0].tolist())
    return np.array(sorted(picked), dtype=np.int64)


def array_of(source: str, case_id: str, field: str, dtype: str, op: str | None = None,
             cotangent: str | None = None) -> np.ndarray:
    """The exact array of a case (`logits`, `labels`, an option's array or the grad check's `cotangent`) in the
    tested dtype's values, as float64 (int64 for class indices): used by repro snippets of
    inputs too large to write out."""
    case = next((c for c in load([source]) if c.id == case_id), None)
    if case is None:
        raise HarnessInputError("no such case", file=source, case=case_id)
    dt = D.get(dtype)
    if field == "logits":
        return case.logits_for(dt)
    if field == "labels":
        return case.labels_for(dt)  # type: ignore[return-value]
    if field in O.PARAMS:  # an option's array (logsumexp's b), cast like the logits
        return np.asarray(case.options_for(dt)[field], dtype=np.float64)
    if field == "direction":  # the grad2 check's (S25), cast like the logits
        return D.cast_exact(O.direction(case.shape, case.axis), dt)
    return case.cotangent_for(cotangent or case.cotangents[0][0], op or case.ops[0], dt)

