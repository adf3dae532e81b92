"""The harness's own mutation score: one correct implementation, and deliberately wrong ones.

`Careful` computes every op and gradient in float64 with the max-shifted algorithm (d = x - max,
log S, each row on its own) and rounds the result to the tested dtype once: for float16,
bfloat16 and float32 far more accurate than the budget asks, for float64 the algorithm whose
errors the `standard` budgets are derived from. It must pass every result of the quick suite
whose inputs are finite (tests/test_mutants.py).

Each mutant changes one thing, a bug class that real kernels have shipped, and the quick suite
under `standard` must fail at least one of its results. They are adapters like any other (the
numpy adapter's interface), so they run through the same runner, references and verdicts.
"""

from __future__ import annotations

import numpy as np

from harness import dtypes as D
from harness.adapters.base import Adapter, Call, Output, Unsupported


class Careful(Adapter):
    """The reference-quality implementation (float64 compute, one rounding to the dtype)."""

    name = "careful"
    modes = ("eager",)
    takes = ("reduction", "label_smoothing", "weights", "ignore_index", "where", "b", "return_sign", "scale")
    #: Overridden by mutants: the dtype computed in (None: float64) ...
    compute_dtype: str | None = None

    # -- the pieces a mutant replaces ----------------------------------------------------------
    def shift(self, x: np.ndarray, ax: int) -> np.ndarray:
        """The max each row is shifted by (0 for a row with no finite max: its outputs are NaN or
        limits, which this implementation does not claim to get right)."""
        m = np.max(x, axis=ax, keepdims=True)
        return np.where(np.isfinite(m), m, 0.0)

    def total(self, e: np.ndarray, ax: int) -> np.ndarray:
        """sum_j e_j along the class axis."""
        return np.sum(e, axis=ax, keepdims=True)

    def log_softmax(self, d: np.ndarray, L: np.ndarray, s: np.ndarray, m: np.ndarray) -> np.ndarray:
        return d - L

    def labels_of(self, call: Call, ax: int, C: int) -> np.ndarray:
        lab = np.asarray(call.labels)
        lab = np.where(self.ignored_rows(call), 0, lab)
        if np.any((lab < 0) | (lab >= C)):
            raise IndexError("label out of range")
        return np.moveaxis((np.arange(C) == lab[..., None]).astype(np.float64), -1, ax)

    def ignored_rows(self, call: Call) -> np.ndarray:
        """The rows whose label is the ignore_index (docs/semantics.md S20)."""
        lab = np.asarray(call.labels)
        ign = call.options.get("ignore_index")
        return np.zeros(lab.shape, dtype=bool) if ign is None else lab == ign

    def weigh(self, y: np.ndarray, call: Call, ax: int) -> np.ndarray:
        """Class weights times the (smoothed) labels; ignored rows zero."""
        return np.where(np.expand_dims(self.ignored_rows(call), ax), 0.0, self.class_weighted(y, call, ax))

    def class_weighted(self, y: np.ndarray, call: Call, ax: int) -> np.ndarray:
        w = call.options.get("weights")
        if w is None:
            return y
        shape = [1] * y.ndim
        shape[ax] = len(w)
        return y * np.asarray(w, dtype=np.float64).reshape(shape)

    def upstream(self, g: np.ndarray) -> np.ndarray:
        """The cotangent as the backward pass uses it."""
        return g

    def softmax_vjp(self, s: np.ndarray, g: np.ndarray, ax: int) -> np.ndarray:
        return s * (g - np.sum(g * s, axis=ax, keepdims=True))

    def ce_vjp(self, s: np.ndarray, y: np.ndarray, ax: int) -> np.ndarray:
        return s * np.sum(y, axis=ax, keepdims=True) - y

    def smooth(self, y: np.ndarray, eps: float, ax: int) -> np.ndarray:
        """Label smoothing (docs/semantics.md S19): (1 - eps) y + eps / C over the class axis."""
        return (1 - eps) * y + eps / y.shape[ax]

    def ce_loss(self, y: np.ndarray, ls: np.ndarray, ax: int, eps: float) -> np.ndarray:
        """-sum y_i log_softmax_i of the (smoothed) labels; zero labels contribute 0, also at -inf (S3)."""
        return -np.sum(np.where(y != 0, y * ls, 0.0), axis=ax)

    def labels_grad(self, ls: np.ndarray, eps: float) -> np.ndarray:
        """d loss / d y = -(1 - eps) log_softmax (0 at eps = 1, where y does not matter)."""
        return np.zeros_like(ls) if eps == 1 else -(1 - eps) * ls

    def row_weights(self, call: Call, C: int) -> np.ndarray:
        """Each row's weight in a mean (docs/semantics.md S21): w[label], 0 where ignored."""
        nd = np.ndim(call.logits)
        ax = call.axis % nd
        batch = np.shape(call.logits)[:ax] + np.shape(call.logits)[ax + 1:]
        if call.op != "sparse_softmax_cross_entropy":
            return np.ones(batch)
        lab = np.asarray(call.labels)
        w = np.asarray(call.options.get("weights", np.ones(C)), dtype=np.float64)
        r = np.where((lab >= 0) & (lab < C), w[np.clip(lab, 0, C - 1)], 1.0)
        return np.where(self.ignored_rows(call), 0.0, r)

    def reduce(self, out: np.ndarray, call: Call, C: int) -> np.ndarray:
        red = call.options.get("reduction", "none")
        if red == "none":
            return out
        total = np.sum(out)
        return total / np.sum(self.row_weights(call, C)) if red == "mean" else total

    def weight_shift(self, x: np.ndarray, b: np.ndarray, ax: int) -> np.ndarray:
        """The shift of logsumexp with weights: the max over the entries that take part (b != 0)."""
        return self.shift(np.where(b != 0, x, -np.inf), ax)

    def weight_terms(self, e: np.ndarray, b: np.ndarray) -> np.ndarray:
        """b_i e_i where b_i != 0 (an entry of weight 0 takes no part, even at +inf), else 0."""
        return np.where(b != 0, b * e, 0.0)

    def weights_grad(self, e: np.ndarray, S: np.ndarray, b: np.ndarray, x: np.ndarray) -> np.ndarray:
        """d log|S| / d b_i = e_i / S for every entry, those of weight 0 too (0 at a -inf logit)."""
        return np.where(x == -np.inf, 0.0, e / S)

    def signed_log(self, S: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(log |S|, sign S) of the weighted sum."""
        return np.log(np.abs(S)), np.sign(S)

    def weighted_lse(self, call: Call, x: np.ndarray, ax: int) -> dict[str, np.ndarray]:
        """logsumexp with weights b and return_sign (docs/semantics.md S23), scipy's algorithm in
        float64 with every weight's gradient kept."""
        b = np.asarray(call.options["b"], dtype=np.float64)
        rs = bool(call.options.get("return_sign"))
        m = self.weight_shift(x, b, ax)
        e = np.exp(x - m)
        S = np.sum(self.weight_terms(e, b), axis=ax, keepdims=True)
        L, sg = self.signed_log(S)
        bad = (S < 0) & (not rs)  # the log of a negative number: NaN throughout
        if call.check == "forward":
            out = {"out": np.squeeze(np.where(bad, np.nan, L + m), ax)}
            if rs:
                out["sign"] = np.squeeze(sg, ax)
            return out
        g = np.expand_dims(self.upstream(np.asarray(call.cotangent, dtype=np.float64)), ax)
        takes_part = (b != 0) & (x > -np.inf)
        dl = np.where(takes_part, g * self.weight_terms(e, b) / S, 0.0)
        db = g * self.weights_grad(e, S, b, x)
        zero = S == 0  # no gradient where an entry takes part; none with respect to any weight
        dl = np.where(bad | (zero & takes_part), np.nan, dl)
        db = np.where(bad | (zero & (x > -np.inf)), np.nan, db)
        return {"d_logits": dl, "d_b": db}

    def softmax_hvp(self, s: np.ndarray, c: np.ndarray, g: np.ndarray, ax: int) -> np.ndarray:
        """softmax's H v: c_i (g_i - G) - s_i sum_j g_j c_j, c_i = s_i (v_i - V) (docs/semantics.md S25)."""
        G = np.sum(g * s, axis=ax, keepdims=True)
        return c * (g - G) - s * np.sum(g * c, axis=ax, keepdims=True)

    def mixed_labels(self, c: np.ndarray, v: np.ndarray, V: np.ndarray, gg: np.ndarray, eps: float) -> np.ndarray:
        """The dense cross-entropy's d/dy <d_logits, v> = (1 - eps) g (V - v_j)."""
        return (1 - eps) * gg * (V - v)

    def labels_sum(self, y: np.ndarray, ax: int) -> np.ndarray:
        return np.sum(y, axis=ax, keepdims=True)

    def exp(self, d: np.ndarray) -> np.ndarray:
        """The row's exponentials exp(x - m)."""
        return np.exp(d)

    def jvp_centre(self, s: np.ndarray, v: np.ndarray, V: np.ndarray) -> np.ndarray:
        """softmax's tangent along v: s (v - <s, v>)."""
        return s * (v - V)

    def second_order(self, call: Call, x: np.ndarray, s: np.ndarray, y: np.ndarray | None, eps: float, ax: int,
                     C: int) -> dict[str, np.ndarray]:
        """The grad2 check in float64 (docs/semantics.md S25): H v of <g, op(x)>, and the dense
        cross-entropy's mixed derivative."""
        v = np.asarray(call.direction, dtype=np.float64)
        g = np.asarray(call.cotangent, dtype=np.float64)
        if call.op == "logsumexp" and "b" in call.options:  # the weighted softmax t replaces s (S23)
            b = np.asarray(call.options["b"], dtype=np.float64)
            m = self.weight_shift(x, b, ax)
            t = self.weight_terms(np.exp(x - m), b)
            s = t / np.sum(t, axis=ax, keepdims=True)
        V = np.sum(s * v, axis=ax, keepdims=True)
        c = self.jvp_centre(s, v, V)
        if call.op == "softmax":
            return {"d2_logits": self.softmax_hvp(s, c, g, ax)}
        if call.op == "log_softmax":
            return {"d2_logits": -np.sum(g, axis=ax, keepdims=True) * c}
        red = call.options.get("reduction", "none")
        if red != "none":
            W = np.sum(self.row_weights(call, C)) if red == "mean" else 1.0
            g = np.full(self.row_weights(call, C).shape, float(g) / W if W else 0.0)
        gg = np.expand_dims(self.upstream(g), ax)
        if call.op == "logsumexp":
            return {"d2_logits": gg * c}
        out = {"d2_logits": gg * self.labels_sum(y, ax) * c}
        if call.op == "softmax_cross_entropy":
            out["d2_labels"] = self.mixed_labels(c, v, V, gg, eps)
        return out

    def finish(self, a: np.ndarray, dt: D.DType) -> tuple[np.ndarray, str]:
        """Round the float64 result to the tested dtype: (exact values as float64, dtype name)."""
        with np.errstate(over="ignore", invalid="ignore"):
            return np.asarray(a, dtype=np.float64).astype(dt.np).astype(np.float64), dt.name

    def scaled(self, x: np.ndarray, s: float, dt: D.DType) -> np.ndarray:
        """The logits of the op under `scale` (docs/semantics.md S24): x * s rounded to the dtype."""
        with np.errstate(all="ignore"):
            return D.cast_exact(x * s, dt)

    def grad_scale(self, s: float) -> float:
        """The factor of the gradient with respect to the logits: d/dx op(x s) = s op'(x s)."""
        return s

    # -- the repro snippet ---------------------------------------------------------------------
    def repro(self, call: Call) -> str:
        """A snippet that runs this adapter on the call and prints its outputs as exact float64
        lists (what `harness repro` compares): the class imported from its module (this file, from
        the repository root), the inputs as literals, `array_of(...)` of the case, or an invariance
        variant's `variant_array(...)` (Call.literals). Definitions first, the inputs from the first
        line that starts with `x = ` (harness.repro.split): a determinism variant's k-th call repeats
        that part k times on one instance."""
        from harness.adapters.base import literal

        cls = type(self)
        head = ["import numpy as np", "from harness import dtypes as D", "from harness.adapters.base import Call",
                f"from {cls.__module__} import {cls.__qualname__}", f"impl = {cls.__qualname__}()"]
        dt = f"D.get({call.dtype!r}).np"
        body = [f"x = np.asarray({literal(call.logits, call, 'x')}, dtype=np.float64).astype({dt})"]
        for name, a in (("y", call.labels), ("g", call.cotangent), ("v", call.direction)):
            if a is None:
                body.append(f"{name} = None")
            elif np.asarray(a).dtype.kind in "iu":
                body.append(f"{name} = np.asarray({literal(a, call, name)}, dtype=np.int64)")
            else:
                body.append(f"{name} = np.asarray({literal(a, call, name)}, dtype=np.float64).astype({dt})")
        body += [f"out = impl.run(Call({call.op!r}, {call.check!r}, {call.variant!r}, x, y, {call.axis!r}, g, "
                 f"{call.dtype!r}, {call.device!r}, {call.mode!r}, {call.source!r}, {call.case_id!r}, "
                 f"{call.cotangent_name!r}, {call.options!r}, v))",
                 "print([np.asarray(a, dtype=np.float64).tolist() for a in out.arrays.values()])"]
        if any("array_of(" in b for b in body):
            head.insert(2, "from harness.cases import array_of")
        return "\n".join(head + body)

    # -- the computation -----------------------------------------------------------------------
    def run(self, call: Call) -> Output:
        self._scale = None
        if "scale" in call.options:  # the logits become the rounded product; the gradient scales
            s = float(call.options["scale"])
            dt = D.get(call.dtype)
            x0 = np.asarray(call.logits, dtype=np.float64)
            self._scale, self._x0 = s, x0
            call = Call(**{**call.__dict__, "logits": self.scaled(x0, s, dt).astype(dt.np),
                           "options": {k: v for k, v in call.options.items() if k != "scale"}})
        if "where" in call.options:
            return self.masked(call)
        return self.compute(call)

    def masked(self, call: Call) -> Output:
        """The op over the kept entries (docs/semantics.md S22): masked logits -inf, the masked
        outputs' cotangents dropped, masked gradients 0, an empty row's outputs the constants, a
        label on a masked class refused."""
        mask = np.asarray(call.options["where"], dtype=bool)
        keep = np.moveaxis(mask, call.axis % mask.ndim, -1)
        out = self.compute(self.masked_call(call, -np.inf))
        empty = ~np.any(keep, axis=-1)
        for k, v in out.arrays.items():
            if v.shape == mask.shape:
                const = -np.inf if (k == "out" and call.op == "log_softmax") else 0.0
                out.arrays[k] = np.where(mask, v, const)
            elif v.shape == empty.shape:
                out.arrays[k] = np.where(empty, -np.inf if (call.op == "logsumexp" and k == "out") else 0.0, v)
        return out

    def masked_call(self, call: Call, fill: float) -> Call:
        """The call without its mask: masked logits `fill`, the masked outputs' cotangents and the
        direction's masked entries 0 (no derivative along a masked logit: S22, S25); a label on a
        masked class refused."""
        mask = np.asarray(call.options["where"], dtype=bool)
        ax = call.axis % mask.ndim
        keep = np.moveaxis(mask, ax, -1)
        if call.labels is not None and call.op.endswith("cross_entropy"):  # logsumexp's y is its b (S23)
            lab = np.asarray(call.labels)
            if call.op == "sparse_softmax_cross_entropy":
                C = keep.shape[-1]
                ok = (lab >= 0) & (lab < C)
                if np.any(ok & ~np.take_along_axis(keep, np.clip(lab, 0, C - 1)[..., None], -1)[..., 0]):
                    raise ValueError("a label on a masked class")
            elif np.any((np.moveaxis(np.asarray(lab, dtype=np.float64), ax, -1) != 0) & ~keep):
                raise ValueError("a label on a masked class")
        x = np.where(mask, np.asarray(call.logits, dtype=np.float64), fill).astype(call.logits.dtype)
        g = call.cotangent
        if call.check != "forward" and call.op in ("softmax", "log_softmax"):
            g = np.where(mask, np.asarray(g, dtype=np.float64), 0.0).astype(g.dtype)
        vd = call.direction
        if vd is not None:
            vd = np.where(mask, np.asarray(vd, dtype=np.float64), 0.0)
        opts = {k: v for k, v in call.options.items() if k != "where"}
        return Call(**{**call.__dict__, "logits": x, "cotangent": g, "options": opts, "direction": vd})

    def compute(self, call: Call) -> Output:
        if call.device != "cpu" or call.mode != "eager":
            raise Unsupported("mutant adapters run eager on the CPU")
        dt = D.get(call.dtype)
        self._dtype = call.dtype  # the tested dtype, for the mutants that round to it mid-way
        work = np.float64 if self.compute_dtype is None else D.get(self.compute_dtype).np
        x = np.asarray(call.logits, dtype=np.float64).astype(work).astype(np.float64)
        ax = call.axis % x.ndim
        C = x.shape[ax]
        with np.errstate(all="ignore"):
            m = self.shift(x, ax)
            d = x - m
            e = self.exp(d)
            S = self.total(e, ax)
            L = np.log(S)
            s = e / S
            ls = self.log_softmax(d, L, s, m)
            y = None
            if call.op == "sparse_softmax_cross_entropy":
                y = self.labels_of(call, ax, C)
            elif call.op == "softmax_cross_entropy":
                y = np.asarray(call.labels, dtype=np.float64)
            eps = float(call.options.get("label_smoothing", 0.0))
            if y is not None and eps:
                y = self.smooth(y, eps, ax)
            if call.op == "sparse_softmax_cross_entropy":
                y = self.weigh(y, call, ax)
            if call.check == "grad2":
                arrays = self.second_order(call, x, s, y, eps, ax, C)
            elif call.op == "logsumexp" and "b" in call.options:
                arrays = self.weighted_lse(call, x, ax)
            elif call.check == "forward":
                if call.op == "softmax":
                    out = s
                elif call.op == "log_softmax":
                    out = ls
                elif call.op == "logsumexp":
                    out = np.squeeze(m + L, ax)
                else:
                    out = self.reduce(self.ce_loss(y, ls, ax, eps), call, C)
                arrays = {"out": out}
            else:
                g = np.asarray(call.cotangent, dtype=np.float64)
                if call.op == "softmax":
                    arrays = {"d_logits": self.softmax_vjp(s, g, ax)}
                elif call.op == "log_softmax":
                    arrays = {"d_logits": g - s * np.sum(g, axis=ax, keepdims=True)}
                else:
                    red = call.options.get("reduction", "none")
                    if red != "none":  # one cotangent for the whole loss: each row gets g (sum) or g / W
                        W = np.sum(self.row_weights(call, C)) if red == "mean" else 1.0
                        g = np.full(self.row_weights(call, C).shape, float(g) / W if W else 0.0)
                    gg = np.expand_dims(self.upstream(g), ax)
                    if call.op == "logsumexp":
                        arrays = {"d_logits": gg * s}
                    else:
                        arrays = {"d_logits": gg * self.ce_vjp(s, y, ax)}
                        if call.op == "softmax_cross_entropy":
                            arrays["d_labels"] = gg * self.labels_grad(ls, eps)
        if getattr(self, "_scale", None) is not None:  # s for each derivative along x (S24, S25)
            with np.errstate(all="ignore"):
                f = self.grad_scale(self._scale)
                for k, p in (("d_logits", 1), ("d2_logits", 2), ("d2_labels", 1)):
                    if k in arrays:
                        arrays[k] = arrays[k] * f ** p
        vals, dts = {}, {}
        for k, a in arrays.items():
            vals[k], dts[k] = self.finish(a, dt)
        return Output(vals, dts, {k: "cpu" for k in vals})


# ------------------------------------------------------------------------------------------------
# The mutants: each one bug class.


class IgnoresCotangent(Careful):
    """The backward pass of a loss or logsumexp drops grad_output (uses 1 for every row)."""

    name = "mutant_ignores_cotangent"

    def upstream(self, g: np.ndarray) -> np.ndarray:
        return np.ones_like(g)


class RoundsLseThenSubtracts(Careful):
    """log_softmax and the losses as x_i - round(max + log S): the logsumexp rounded to the tested
    dtype before the subtraction, an error that grows with a common offset of the logits."""

    name = "mutant_rounds_lse"

    def log_softmax(self, d: np.ndarray, L: np.ndarray, s: np.ndarray, m: np.ndarray) -> np.ndarray:
        dt = D.get(self._dtype)
        lse = (m + L).astype(dt.np).astype(np.float64)
        return (d + m) - lse


class NoMaxShift(Careful):
    """exp(x) without subtracting the row max: overflows to inf for large logits."""

    name = "mutant_no_max_shift"

    def shift(self, x: np.ndarray, ax: int) -> np.ndarray:
        return np.zeros_like(np.max(x, axis=ax, keepdims=True))


class LogOfSoftmax(Careful):
    """log_softmax as log(softmax(x)): -inf where softmax underflows, and its rounding."""

    name = "mutant_log_of_softmax"

    def log_softmax(self, d: np.ndarray, L: np.ndarray, s: np.ndarray, m: np.ndarray) -> np.ndarray:
        dt = D.get(self._dtype)
        return np.log(s.astype(dt.np).astype(np.float64))


class RecursiveLowPrecisionSum(Careful):
    """The row sums accumulated one term at a time in the tested dtype (float16 stalls at 2048)."""

    name = "mutant_recursive_sum"

    def total(self, e: np.ndarray, ax: int) -> np.ndarray:
        dt = D.get(self._dtype)
        em = np.moveaxis(e, ax, -1).astype(dt.np)
        acc = np.zeros(em.shape[:-1], dtype=dt.np)
        with np.errstate(all="ignore"):
            for j in range(em.shape[-1]):
                acc = (acc + em[..., j]).astype(dt.np)
        return np.expand_dims(acc.astype(np.float64), ax)


class LabelOffByOne(Careful):
    """Integer labels shifted by one class (an off-by-one in an index computation)."""

    name = "mutant_label_off_by_one"

    def labels_of(self, call: Call, ax: int, C: int) -> np.ndarray:
        lab = np.asarray(call.labels)
        if np.any((lab < 0) | (lab >= C)):
            raise IndexError("label out of range")
        return np.moveaxis((np.arange(C) == ((lab + 1) % C)[..., None]).astype(np.float64), -1, ax)


class SoftmaxVjpWithoutCentering(Careful):
    """softmax's VJP as s * g, without - sum(g s)."""

    name = "mutant_softmax_vjp_uncentered"

    def softmax_vjp(self, s: np.ndarray, g: np.ndarray, ax: int) -> np.ndarray:
        return s * g


class CeGradAssumesNormalisedLabels(Careful):
    """The dense cross-entropy gradient as softmax - y, right only where the labels sum to 1."""

    name = "mutant_ce_grad_normalised"

    def ce_vjp(self, s: np.ndarray, y: np.ndarray, ax: int) -> np.ndarray:
        return s - y


class Float64InFloat32(Careful):
    """float64 inputs computed in float32 (a kernel with no double path)."""

    name = "mutant_float64_in_float32"
    compute_dtype = "float32"

    def run(self, call: Call) -> Output:
        out = super().run(call)
        if call.dtype == "float64":  # the arithmetic in float32 too
            out.arrays = {k: v.astype(np.float32).astype(np.float64) for k, v in out.arrays.items()}
        return out


class FlushesSubnormals(Careful):
    """Results below the dtype's smallest normal number flushed to zero (FTZ)."""

    name = "mutant_flush_to_zero"

    def finish(self, a: np.ndarray, dt: D.DType) -> tuple[np.ndarray, str]:
        v, n = super().finish(a, dt)
        return np.where(np.abs(v) < dt.tiny, 0.0, v), n


class WrongClassAxis(Careful):
    """The class axis taken as the last one, whatever the caller said."""

    name = "mutant_wrong_axis"

    def run(self, call: Call) -> Output:
        nd = np.ndim(call.logits)
        if call.axis % nd == nd - 1:
            return super().run(call)
        moved = Call(**{**call.__dict__, "axis": -1})
        out = super().run(moved)
        # The shapes are what the caller expects (a reduction over the wrong axis has another
        # shape: reshape it to pass the shape check, as a kernel writing into a given buffer would).
        want = {k: np.shape(v) for k, v in super().run(call).arrays.items()}
        out.arrays = {k: np.resize(v, want[k]) for k, v in out.arrays.items()}
        return out


class GlobalMax(Careful):
    """One max over the whole batch instead of one per row."""

    name = "mutant_global_max"

    def shift(self, x: np.ndarray, ax: int) -> np.ndarray:
        f = x[np.isfinite(x)]
        return np.full_like(np.max(x, axis=ax, keepdims=True), f.max() if f.size else 0.0)


class HalfResultForFloat32(Careful):
    """A float32 input answered in float16 (an autocast left on)."""

    name = "mutant_float16_result"

    def finish(self, a: np.ndarray, dt: D.DType) -> tuple[np.ndarray, str]:
        if dt.name == "float32":
            return super().finish(a, D.DTYPES["float16"])
        return super().finish(a, dt)


class IgnoreIndexSilent(Careful):
    """An out-of-range label treated as "ignore": loss and gradient 0, no error."""

    name = "mutant_ignore_index"

    def labels_of(self, call: Call, ax: int, C: int) -> np.ndarray:
        lab = np.asarray(call.labels)
        return np.moveaxis((np.arange(C) == lab[..., None]).astype(np.float64), -1, ax)

    def run(self, call: Call) -> Output:
        out = super().run(call)
        if call.op == "sparse_softmax_cross_entropy":
            bad = (np.asarray(call.labels) < 0) | (np.asarray(call.labels) >= np.shape(call.logits)[call.axis])
            for k, v in out.arrays.items():
                mask = bad if v.shape == bad.shape else np.expand_dims(bad, call.axis % v.ndim)
                out.arrays[k] = np.where(mask, 0.0, v)
        return out


class NanNotPropagated(Careful):
    """A NaN logit treated as -inf (masked) instead of making its row NaN."""

    name = "mutant_nan_masked"

    def run(self, call: Call) -> Output:
        x = np.asarray(call.logits, dtype=np.float64)
        return super().run(Call(**{**call.__dict__, "logits": np.where(np.isnan(x), -np.inf, x).astype(call.logits.dtype)}))


class LabelsGradientDropped(Careful):
    """The gradient with respect to the dense labels returned as 0 (treated as constants)."""

    name = "mutant_labels_grad_dropped"

    def run(self, call: Call) -> Output:
        out = super().run(call)
        if "d_labels" in out.arrays:
            out.arrays["d_labels"] = np.zeros_like(out.arrays["d_labels"])
        return out


class SmoothingOverOtherClasses(Careful):
    """Label smoothing spread over the C - 1 other classes (fairseq's label_smoothed_nll_loss
    convention: eps / (C - 1) off the target), not eps / C over all: a different loss under the
    same name."""

    name = "mutant_smoothing_c_minus_1"

    def smooth(self, y: np.ndarray, eps: float, ax: int) -> np.ndarray:
        C = y.shape[ax]
        return (1 - eps) * y + eps / max(C - 1, 1) * (1 - y)


class SmoothingOverLastAxis(Careful):
    """eps / C with C the length of the last axis, whatever the class axis (Keras' bug)."""

    name = "mutant_smoothing_last_axis"

    def smooth(self, y: np.ndarray, eps: float, ax: int) -> np.ndarray:
        return (1 - eps) * y + eps / y.shape[-1]


class SmoothingSumInOutputDtype(Careful):
    """The smoothed loss as (1 - eps) nll + eps / C sum_i (-log_softmax_i), the sum formed in the
    tested dtype (torch's: it overflows float16 over a vocabulary)."""

    name = "mutant_smoothing_sum_in_dtype"

    def ce_loss(self, y: np.ndarray, ls: np.ndarray, ax: int, eps: float) -> np.ndarray:
        if not eps:
            return super().ce_loss(y, ls, ax, eps)
        dt = D.get(self._dtype)
        C = y.shape[ax]
        y0 = (y - eps / C) / (1 - eps) if eps < 1 else np.zeros_like(y)
        with np.errstate(all="ignore"):
            total = np.sum(-ls, axis=ax).astype(dt.np).astype(np.float64)
            return (1 - eps) * super().ce_loss(y0, ls, ax, 0.0) + eps / C * total


class SmoothingLabelsGradUnscaled(Careful):
    """d loss / d y without the smoothing's factor 1 - eps (the gradient of the unsmoothed loss)."""

    name = "mutant_smoothing_labels_grad"

    def labels_grad(self, ls: np.ndarray, eps: float) -> np.ndarray:
        return -ls


class IgnoreIndexNotMasked(Careful):
    """The ignore_index row computed as a row of class 0 (a mask applied to the labels only)."""

    name = "mutant_ignore_index_not_masked"

    def weigh(self, y: np.ndarray, call: Call, ax: int) -> np.ndarray:
        return self.class_weighted(y, call, ax)


class WeightsDroppedInBackward(Careful):
    """Class weights in the loss but not in its gradient (a custom backward that forgot them)."""

    name = "mutant_weights_dropped_in_grad"

    def run(self, call: Call) -> Output:
        out = super().run(call)
        if call.check == "grad" and "weights" in call.options:
            return super().run(Call(**{**call.__dict__, "options": {k: v for k, v in call.options.items()
                                                                     if k != "weights"}}))
        return out


class MeanCountsIgnoredRows(Careful):
    """A mean divided by the number of rows, ignored rows included (a mask applied to the sum only)."""

    name = "mutant_mean_counts_ignored"

    def row_weights(self, call: Call, C: int) -> np.ndarray:
        return np.ones(np.shape(np.asarray(call.labels)) if call.op == "sparse_softmax_cross_entropy"
                       else super().row_weights(call, C).shape)


class MeanGradWithoutDivisor(Careful):
    """The backward pass of a mean as that of the sum (the 1 / W dropped)."""

    name = "mutant_mean_grad_without_divisor"

    def run(self, call: Call) -> Output:
        if call.check == "grad" and call.options.get("reduction") == "mean":
            return super().run(Call(**{**call.__dict__, "options": {**call.options, "reduction": "sum"}}))
        return super().run(call)


class MaskIgnored(Careful):
    """A where mask accepted and not applied (an argument dropped on the way to the kernel)."""

    name = "mutant_mask_ignored"

    def run(self, call: Call) -> Output:
        return self.compute(Call(**{**call.__dict__, "options": {k: v for k, v in call.options.items()
                                                                  if k != "where"}}))


class MaskedCotangentsFlow(Careful):
    """A mask as a -inf fill: the masked outputs' cotangents flow into log_softmax's sum (the
    chain rule through -inf - lse), where S22 leaves them out."""

    name = "mutant_masked_cotangents_flow"

    def masked(self, call: Call) -> Output:
        if call.check == "grad" and call.op == "log_softmax":
            mask = np.asarray(call.options["where"], dtype=bool)
            x = np.where(mask, np.asarray(call.logits, dtype=np.float64), -np.inf).astype(call.logits.dtype)
            out = self.compute(Call(**{**call.__dict__, "logits": x, "options": {}}))
            out.arrays["d_logits"] = np.where(mask, out.arrays["d_logits"], 0.0)
            return out
        return super().masked(call)


class ZeroWeightGradientDropped(Careful):
    """logsumexp's weights of 0 dropped by setting their logits to -inf first (scipy's algorithm,
    jax#22398): the gradient with respect to such a weight becomes 0."""

    name = "mutant_lse_zero_weight_grad"

    def weights_grad(self, e: np.ndarray, S: np.ndarray, b: np.ndarray, x: np.ndarray) -> np.ndarray:
        return np.where(b != 0, super().weights_grad(e, S, b, x), 0.0)


class WeightedSignDropped(Careful):
    """return_sign answered with log |S| and sign +1 (the sign of a negative sum lost)."""

    name = "mutant_lse_sign_dropped"

    def signed_log(self, S: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        L, _ = super().signed_log(S)
        return L, np.ones_like(S)


class WeightedShiftOverAll(Careful):
    """The shift of a weighted logsumexp taken over every logit, weight 0 or not (jax#5370): the
    entries that take part underflow beside a large excluded one."""

    name = "mutant_lse_shift_over_all"

    def weight_shift(self, x: np.ndarray, b: np.ndarray, ax: int) -> np.ndarray:
        return self.shift(x, ax)


class WeightsFoldedAsLog(Careful):
    """Weights folded into the logits as x + log b, then the plain logsumexp (right for positive
    weights only: NaN for a negative one)."""

    name = "mutant_lse_log_weights"

    def weight_terms(self, e: np.ndarray, b: np.ndarray) -> np.ndarray:
        with np.errstate(all="ignore"):
            return np.where(b != 0, np.exp(np.log(e) + np.log(b)), 0.0)


class ScaleShiftByScaledMax(Careful):
    """softmax(x * s) shifted by s * max(x), the max of the unscaled logits moved through the
    product (a compiler's rewrite): for a negative s that is the row's min, and exp overflows."""

    name = "mutant_scale_shift_by_scaled_max"

    def shift(self, x: np.ndarray, ax: int) -> np.ndarray:
        if getattr(self, "_scale", None) is None:
            return super().shift(x, ax)
        m = self._scale * np.max(self._x0, axis=ax, keepdims=True)
        return np.where(np.isfinite(m), m, 0.0)


class ScaleGradDropped(Careful):
    """The gradient of softmax(x * s) with respect to x without the factor s (the chain rule
    through the product dropped: the gradient with respect to x * s returned)."""

    name = "mutant_scale_grad_dropped"

    def grad_scale(self, s: float) -> float:
        return 1.0


class HvpWithoutCrossTerm(Careful):
    """softmax's Hessian-vector product without - s_i sum_j g_j s_j (v_j - V): the derivative of
    G = sum g_j s_j along v dropped (a hand-written double backward that treats G as constant)."""

    name = "mutant_hvp_without_cross_term"

    def softmax_hvp(self, s: np.ndarray, c: np.ndarray, g: np.ndarray, ax: int) -> np.ndarray:
        return c * (g - np.sum(g * s, axis=ax, keepdims=True))


class MixedLabelsDerivativeDropped(Careful):
    """The dense cross-entropy's second derivative through the labels returned as 0 (the labels'
    side of the gradient treated as constant: TensorFlow's registered second-order gradient)."""

    name = "mutant_mixed_labels_dropped"

    def mixed_labels(self, c: np.ndarray, v: np.ndarray, V: np.ndarray, gg: np.ndarray, eps: float) -> np.ndarray:
        return np.zeros_like(v * gg)


class HvpAssumesNormalisedLabels(Careful):
    """The dense cross-entropy's H v as g s_i (v_i - V), right only where the labels sum to 1."""

    name = "mutant_hvp_normalised_labels"

    def labels_sum(self, y: np.ndarray, ax: int) -> np.ndarray:
        return np.ones_like(np.sum(y, axis=ax, keepdims=True))


class ScaledRoundsLse(Careful):
    """Under a runtime scale, log_softmax and the losses as x'_i - round(lse(x')): the logsumexp of
    the scaled logits rounded to the dtype before the subtraction (optax's integer-label loss on
    logits * s). The scale budget used to be half an ULP of each x' = fl(x s) whether the product
    rounded or not, which let this pass at large logits; `harness search` found the hole."""

    name = "mutant_scaled_rounds_lse"

    def log_softmax(self, d: np.ndarray, L: np.ndarray, s: np.ndarray, m: np.ndarray) -> np.ndarray:
        if getattr(self, "_scale", None) is None:
            return super().log_softmax(d, L, s, m)
        return RoundsLseThenSubtracts.log_softmax(self, d, L, s, m)



# ------------------------------------------------------------------------------------------------
# Mutants that only the invariance checks catch (harness.invariance): each answers the case's own
# call within its budget, and a variant of that call (another batch, a repeat, the compiled mode,
# the classes permuted) outside it.


def narrow_sum(e: np.ndarray, ax: int) -> np.ndarray:
    """sum_j e_j accumulated one term at a time in float16 (terms rounded to float16 first): a
    narrow accumulator, about 2^-11 relative error per addition."""
    with np.errstate(all="ignore"):
        acc = np.add.accumulate(np.asarray(e, dtype=np.float64).astype(np.float16), axis=ax, dtype=np.float16)
        last = np.take(acc, [acc.shape[ax] - 1], axis=ax) if acc.shape[ax] else np.zeros_like(acc)
    return last.astype(np.float64)


def rows_of(a: np.ndarray, ax: int) -> int:
    """The rows of a call: the product of its batch dims (every axis but the class axis)."""
    return int(np.prod([n for i, n in enumerate(np.shape(a)) if i != ax % max(np.ndim(a), 1)], dtype=np.int64))


class BatchDependentSum(Careful):
    """A batched kernel path with a narrow accumulator: a call of 7 or more rows (the product of
    the batch dims) sums each row's exp terms in float16, fewer rows take the careful float64 path.
    Every case of fewer than 7 rows passes forward; the same row inside a batch of 7, 64 or 1024
    (batch_invariance) fails the float32 budget by ~2^-11 relative."""

    name = "mutant_batch_dependent_sum"
    #: The batch size from which the narrow path is taken.
    ROWS = 7

    def total(self, e: np.ndarray, ax: int) -> np.ndarray:
        if rows_of(e, ax) >= self.ROWS:
            return narrow_sum(e, ax)
        return super().total(e, ax)


class BatchKeepsDims(Careful):
    """A batched kernel path that keeps the reduced class axis: a call of 7 or more rows answers
    its per-row outputs (logsumexp, the cross-entropies) with shape (B, 1) instead of (B,). Every
    case of fewer than 7 rows passes forward; only the rows inside batches of 7, 64 and 1024
    (batch_invariance) break the output contract."""

    name = "mutant_batch_keeps_dims"
    ROWS = 7

    def run(self, call: Call) -> Output:
        out = super().run(call)
        nd = np.ndim(call.logits)
        if call.check == "forward" and rows_of(call.logits, call.axis) >= self.ROWS:
            out.arrays = {k: (v[..., None] if np.ndim(v) == nd - 1 else v) for k, v in out.arrays.items()}
        return out


class NonDeterministic(Careful):
    """A stale or racy path that shows on repeats: the first and second call on given inputs are
    right, from the third call on the same inputs (op, check, dtype, mode, axis, options and the
    input bytes) in this process the row sums are accumulated in float16. A forward check calls
    once; the determinism check's 5 calls in one process catch it (a fresh worker process with 1 or
    N threads starts counting again: its one call is right)."""

    name = "mutant_nondeterministic"

    def __init__(self) -> None:
        super().__init__()
        self._calls: dict[str, int] = {}
        self._narrow = False

    @staticmethod
    def call_key(call: Call) -> str:
        import hashlib

        h = hashlib.sha256(repr((call.op, call.check, call.variant, call.dtype, call.mode, call.axis,
                                 sorted(call.options.items(), key=lambda kv: kv[0]))).encode())
        for a in (call.logits, call.labels, call.cotangent, call.direction):
            if a is not None:
                arr = np.ascontiguousarray(a)
                h.update(f"{arr.dtype}{arr.shape}".encode() + arr.tobytes())
        return h.hexdigest()

    def run(self, call: Call) -> Output:
        k = self.call_key(call)
        n = self._calls[k] = self._calls.get(k, 0) + 1
        self._narrow = n >= 3
        return super().run(call)

    def total(self, e: np.ndarray, ax: int) -> np.ndarray:
        return narrow_sum(e, ax) if self._narrow else super().total(e, ax)


class JitDiffers(Careful):
    """A compiled path with its own kernel: mode jit sums each row's exp terms in float16 (a
    fused reduction with a narrow accumulator), eager is the careful float64 one. eager_vs_jit
    catches it (the jit variant fails the float32 budget); so does the forward check in jit mode
    (a jit-mode forward result is the same call as the check's variant)."""

    name = "mutant_jit_differs"
    modes = ("eager", "jit")

    def run(self, call: Call) -> Output:
        self._jit = call.mode == "jit"
        return super().run(Call(**{**call.__dict__, "mode": "eager"}) if self._jit else call)

    def total(self, e: np.ndarray, ax: int) -> np.ndarray:
        return narrow_sum(e, ax) if getattr(self, "_jit", False) else super().total(e, ax)


class TailMaxNotRescaled(Careful):
    """An online softmax (one pass: running max m, running sum S of exp(x - m)) whose vector loop
    takes the classes in blocks of 8, rescaling S by exp(m_old - m_new) where a block raises the
    max, and whose scalar tail (the last C mod 8 classes) raises m without rescaling the S summed so
    far (a pattern of hand-written kernels). Right wherever the row max is not in the tail: each
    term then is exp(x_j - max). Where it is, the terms before it stay relative to the smaller max
    and S is too large by up to exp(max - m_old). invariance/rows_sparse (37 classes, tail 32..36,
    maxima at 27, 2, 12, 12) passes forward; reversing its classes moves row 1's max to class 34
    (permutation)."""

    name = "mutant_tail_max_not_rescaled"
    BLOCK = 8

    def shift(self, x: np.ndarray, ax: int) -> np.ndarray:
        self._x = x  # the logits the sum is taken over (total sees only the shifted terms)
        return super().shift(x, ax)

    def total(self, e: np.ndarray, ax: int) -> np.ndarray:
        x = getattr(self, "_x", None)
        if x is None or np.shape(x) != np.shape(e):
            return super().total(e, ax)
        C = e.shape[ax]
        n = C - C % self.BLOCK
        if n == C:
            return super().total(e, ax)
        xm = np.moveaxis(x, ax, -1)
        with np.errstate(all="ignore"):
            head_max = np.max(xm[..., :n], axis=-1) if n else np.full(xm.shape[:-1], -np.inf)
            m = np.max(xm, axis=-1)
            # The vector loop: every head term relative to the head's max (rescaled block by block).
            safe = np.where(np.isfinite(head_max), head_max, 0.0)
            S = np.sum(np.exp(xm[..., :n] - safe[..., None]), axis=-1) if n else np.zeros(xm.shape[:-1])
            # The scalar tail: the running max rises, S is not rescaled; each term relative to the
            # running max at its turn.
            r = head_max
            for j in range(n, C):
                r = np.maximum(r, xm[..., j])
                rs = np.where(np.isfinite(r), r, 0.0)
                S = S + np.exp(xm[..., j] - rs)
            bug = np.expand_dims(S, ax)
        in_head = np.expand_dims(head_max >= m, ax)
        return np.where(in_head, super().total(e, ax), bug)


class BlockCombineNotRescaled(Careful):
    """A split-row softmax for float16 and bfloat16 rows of more than 1024 classes: blocks of 1024
    classes each compute their max m_b and sum S_b = sum exp(x - m_b), and the combine takes
    S = sum_b S_b without rescaling by exp(m_b - M) (the flash-decoding combine bug). Every block
    holding a logit near the row's max, S is off by a few percent only: within the bfloat16 budget
    while that summed the row in bfloat16 (sqrt(4100) u = 0.25), caught since its sums are float32's
    (docs/tolerance.md): extreme/long_row, bfloat16, 2.3 times its budget."""

    name = "mutant_block_combine_not_rescaled"
    BLOCK = 1024

    def shift(self, x: np.ndarray, ax: int) -> np.ndarray:
        self._x = x  # the logits the blocks' own maxima come from (total sees only the shifted terms)
        return super().shift(x, ax)

    def total(self, e: np.ndarray, ax: int) -> np.ndarray:
        x = getattr(self, "_x", None)
        C = e.shape[ax]
        if self._dtype not in ("float16", "bfloat16") or C <= self.BLOCK or x is None or x.shape != e.shape:
            return super().total(e, ax)
        xm = np.moveaxis(x, ax, -1)
        S = np.zeros(xm.shape[:-1])
        with np.errstate(all="ignore"):
            for b0 in range(0, C, self.BLOCK):
                blk = xm[..., b0:b0 + self.BLOCK]
                mb = np.max(blk, axis=-1, keepdims=True)
                S = S + np.sum(np.exp(blk - np.where(np.isfinite(mb), mb, 0.0)), axis=-1)
        return np.expand_dims(S, ax)


class ReductionSumInDtype(Careful):
    """A sum or mean over the rows accumulated one row loss at a time in the tested dtype (an
    atomicAdd into a buffer of the input dtype): bfloat16 stalls at a few hundred, float16 at 2048.
    reduction/batch_70k_half_mean passed in bfloat16 while the budget summed its 70000 losses in
    bfloat16 (sqrt(70000) u = 1.03); its sums are float32's now: 8.8 times its budget."""

    name = "mutant_reduction_sum_in_dtype"

    def reduce(self, out: np.ndarray, call: Call, C: int) -> np.ndarray:
        red = call.options.get("reduction", "none")
        if red == "none":
            return out
        dt = D.get(self._dtype)
        acc = 0.0
        with np.errstate(all="ignore"):
            for v in np.ravel(out):
                acc = float(D.cast_exact(np.asarray(acc + v), dt))
        return acc / np.sum(self.row_weights(call, C)) if red == "mean" else acc


class SmoothingLeaksIntoIgnoredRows(Careful):
    """Sparse cross-entropy with label_smoothing and ignore_index: the NLL term is masked at ignored
    rows, the smoothing term eps / C sum_i (lse - x_i) is not (PyTorch 1.10's label_smoothing with
    ignore_index, pytorch/pytorch#73205). Only the default suite caught it until the quick suite
    took reduction/mean_smoothing_ignored (the masked-LM loss: smoothing, ignored rows, a mean)."""

    name = "mutant_smoothing_ignored_rows"

    def weigh(self, y: np.ndarray, call: Call, ax: int) -> np.ndarray:
        eps = float(call.options.get("label_smoothing", 0.0))
        ign = np.expand_dims(self.ignored_rows(call), ax)
        leaked = self.class_weighted(eps / y.shape[ax] * np.ones_like(y), call, ax) if eps else 0.0
        return np.where(ign, leaked, self.class_weighted(y, call, ax))


class Float64LongRowSumInFloat32(Careful):
    """float64 rows of 1024 classes or more summed in float32 (a long-row path whose accumulator is
    float32 whatever the input). The quick suite sampled extreme/long_row in bfloat16 and float32
    only, so no float64 long row ran there until it took the long row in every dtype
    (vocab.QUICK_EVERY_DTYPE_TAG)."""

    name = "mutant_float64_long_row_float32_sum"

    def total(self, e: np.ndarray, ax: int) -> np.ndarray:
        if self._dtype == "float64" and e.shape[ax] >= 1024:
            return np.sum(e.astype(np.float32), axis=ax, keepdims=True, dtype=np.float32).astype(np.float64)
        return super().total(e, ax)


class BatchOrderOnly(Careful):
    """Not a bug: with 2 or more rows a float32 input's row sums are computed in float32 (numpy's
    pairwise sum) instead of float64. Within the standard budget everywhere, so batch_invariance
    passes under `standard` (the bits differ between a row alone and in a batch: reported) and
    fails under a policy with [invariance] rule = "bitwise". Not in MUTANTS."""

    name = "batch_order_only"

    def total(self, e: np.ndarray, ax: int) -> np.ndarray:
        if rows_of(e, ax) >= 2 and getattr(self, "_dtype", None) == "float32":
            return np.sum(e.astype(np.float32), axis=ax, keepdims=True, dtype=np.float32).astype(np.float64)
        return super().total(e, ax)


# Bug classes of a mutation hunt beyond the first 41 (each one the quick suite catches, a
# result the careful implementation passes): weights, ignored rows, smoothing, labels, all -inf
# rows, a backward from the rounded output, probabilities clipped, 0 * -inf, a large-vocabulary
# path dropping an option, masks that keep nothing.

class WeightedMeanByNTimesMeanW(Careful):
    """A weighted mean divided by N * mean(weights) (the rows that take part times the class
    weights' average) instead of sum_r w[label_r]."""

    name = "mutant_weighted_mean_n_mean_w"

    def row_weights(self, call, C):
        r = super().row_weights(call, C)
        if call.op != "sparse_softmax_cross_entropy" or "weights" not in call.options:
            return r
        w = np.asarray(call.options["weights"], dtype=np.float64)
        return np.where(r != 0, np.mean(w), 0.0) if np.any(r != 0) else r


class IgnoredRowGradNotZero(Careful):
    """ignore_index masked in the forward loss only: the backward pass of an ignored row is that of
    a row of class 0 (softmax - onehot(0)) instead of 0."""

    name = "mutant_ignore_grad_leak"

    def weigh(self, y, call, ax):
        if call.check != "forward":
            return self.class_weighted(y, call, ax)
        return super().weigh(y, call, ax)


class SmoothingTrueClassOnly(Careful):
    """Label smoothing's eps / C added to the target class only: y' = (1 - eps + eps / C) y."""

    name = "mutant_smoothing_true_class_only"

    def smooth(self, y, eps, ax):
        return (1 - eps) * y + eps / y.shape[ax] * y


class OutOfRangeLabelsClamped(Careful):
    """Out-of-range class indices clamped into 0..C-1 (a gather that clamps, as XLA's does)
    instead of an error or NaN (S12)."""

    name = "mutant_labels_clamped"

    def labels_of(self, call, ax, C):
        lab = np.asarray(call.labels)
        lab = np.where(self.ignored_rows(call), 0, np.clip(lab, 0, C - 1))
        return np.moveaxis((np.arange(C) == lab[..., None]).astype(np.float64), -1, ax)

    def row_weights(self, call, C):
        r = super().row_weights(call, C)
        if call.op != "sparse_softmax_cross_entropy":
            return r
        lab = np.clip(np.asarray(call.labels), 0, C - 1)
        w = np.asarray(call.options.get("weights", np.ones(C)), dtype=np.float64)
        return np.where(self.ignored_rows(call), 0.0, w[lab])

    def masked(self, call):
        if call.op == "sparse_softmax_cross_entropy":
            C = np.shape(call.logits)[call.axis % np.ndim(call.logits)]
            lab = np.asarray(call.labels)
            ign = self.ignored_rows(call)
            call = Call(**{**call.__dict__, "labels": np.where(ign, lab, np.clip(lab, 0, C - 1))})
        return super().masked(call)


class AllNegInfRowsZero(Careful):
    """A row of only -inf logits answered with the constants of an empty mask (softmax 0,
    log_softmax -inf, logsumexp -inf, losses 0, gradients 0: FlashAttention's fully-masked row)
    instead of NaN (S9)."""

    name = "mutant_all_neginf_rows_zero"

    def run(self, call):
        x = np.asarray(call.logits, dtype=np.float64)
        if "where" in call.options or "scale" in call.options or x.size == 0:
            return super().run(call)
        ax = call.axis % x.ndim
        allneg = np.all(x == -np.inf, axis=ax, keepdims=True)
        if not np.any(allneg):
            return super().run(call)
        out = super().run(call)
        const_lsm = -np.inf if (call.op == "log_softmax" and call.check == "forward") else 0.0
        for k, v in out.arrays.items():
            if v.shape == x.shape:
                out.arrays[k] = np.where(allneg, const_lsm, v)
            else:
                rowmask = np.squeeze(allneg, ax)
                c = -np.inf if (call.op == "logsumexp" and k == "out") else 0.0
                if v.shape == rowmask.shape:
                    out.arrays[k] = np.where(rowmask, c, v)
        return out


class LseGradFromRoundedOutput(Careful):
    """logsumexp's backward g exp(x - out) from the rounded forward output (the README finding
    torch-logsumexp-grad-uses-rounded-output)."""

    name = "mutant_lse_grad_rounded_output"

    def compute(self, call):
        if call.op == "logsumexp" and call.check == "grad" and "b" not in call.options:
            x = np.asarray(call.logits, dtype=np.float64)
            ax = call.axis % x.ndim
            fw = super().compute(Call(**{**call.__dict__, "check": "forward"})).arrays["out"]
            g = np.asarray(call.cotangent, dtype=np.float64)
            with np.errstate(all="ignore"):
                dl = np.expand_dims(g, ax) * np.exp(x - np.expand_dims(fw, ax))
                if getattr(self, "_scale", None) is not None:
                    dl = dl * self.grad_scale(self._scale)
            v, n = self.finish(dl, D.get(call.dtype))
            return Output({"d_logits": v}, {"d_logits": n}, {"d_logits": "cpu"})
        return super().compute(call)


class ClippedProbabilities(Careful):
    """The cross-entropies as -sum y log(clip(softmax, 1e-7, 1 - 1e-7)) (Keras' from_logits=False
    path, epsilon 1e-7)."""

    name = "mutant_clipped_probabilities"

    def log_softmax(self, d, L, s, m):
        if getattr(self, "_op", "").endswith("cross_entropy"):
            with np.errstate(all="ignore"):
                return np.log(np.clip(s, 1e-7, 1 - 1e-7))
        return super().log_softmax(d, L, s, m)

    def compute(self, call):
        self._op = call.op
        return super().compute(call)


class ZeroLabelTimesNegInf(Careful):
    """The dense cross-entropy as -sum(y * log_softmax) with no special case for y_i = 0: a zero
    label at a -inf logit gives 0 * -inf = NaN (S3 says 0)."""

    name = "mutant_zero_label_times_neginf"

    def ce_loss(self, y, ls, ax, eps):
        with np.errstate(all="ignore"):
            return -np.sum(y * ls, axis=ax)


class LargeVocabSmoothingDropped(Careful):
    """A fused large-vocabulary cross-entropy path (C >= 8192) that ignores label_smoothing (the
    option accepted and not passed to the kernel)."""

    name = "mutant_large_vocab_smoothing_dropped"

    def run(self, call):
        C = np.shape(call.logits)[call.axis % np.ndim(call.logits)] if np.ndim(call.logits) else 0
        if C >= 8192 and "label_smoothing" in call.options:
            call = Call(**{**call.__dict__, "options": {k: v for k, v in call.options.items()
                                                         if k != "label_smoothing"}})
        return super().run(call)


class IgnoredRowMaskMultiplied(Careful):
    """ignore_index applied by multiplying the row's loss and gradient by 0 (a mask product, not a
    select): an ignored padding row of NaN or -inf logits gives NaN, S20 says 0."""

    name = "mutant_ignored_row_mask_multiply"

    def weigh(self, y, call, ax):
        return self.class_weighted(y, call, ax)

    def compute(self, call):
        if call.op != "sparse_softmax_cross_entropy" or call.options.get("ignore_index") is None:
            return super().compute(call)
        ign = self.ignored_rows(call)
        red = call.options.get("reduction", "none")
        opts = {**call.options, "reduction": "none"}
        # rows' values with the ignored ones computed as class 0, then multiplied by the mask
        x = np.asarray(call.logits)
        ax = call.axis % x.ndim
        g = call.cotangent
        if red != "none" and call.check != "forward":
            w = self.row_weights(call, x.shape[ax])
            W = np.sum(w) if red == "mean" else 1.0
            g = np.full(ign.shape, float(np.asarray(g, dtype=np.float64)) / W if W else 0.0)
        out = super().compute(Call(**{**call.__dict__, "options": opts, "cotangent": g}))
        keep = (~ign).astype(np.float64)
        with np.errstate(all="ignore"):
            for k, v in out.arrays.items():
                mk = keep if v.shape == keep.shape else np.expand_dims(keep, ax)
                v = v * mk
                if k == "out" and red != "none":
                    tot = np.sum(v)
                    v = tot / np.sum(self.row_weights(call, x.shape[ax])) if red == "mean" else tot
                out.arrays[k] = self.finish(v, D.get(call.dtype))[0]
        return out


class EmptyMaskRowUnmasked(Careful):
    """A where mask that keeps nothing in a row is dropped for that row (a NaN guard: `mask |=
    ~mask.any(-1)`), so the row is computed over all its logits instead of being the empty row
    of S22 (softmax 0, losses 0)."""

    name = "mutant_empty_mask_row_unmasked"

    def run(self, call):
        if "where" in call.options:
            mask = np.asarray(call.options["where"], dtype=bool)
            ax = call.axis % mask.ndim
            mask = mask | ~np.any(mask, axis=ax, keepdims=True)
            call = Call(**{**call.__dict__, "options": {**call.options, "where": mask}})
        return super().run(call)


class MaskedReductionNaN(Careful):
    """A where mask applied as a -inf fill before a reduced loss: -sum(y * log_softmax) over a row
    with nothing kept is 0 * NaN, so the summed/mean loss is NaN (S22 says the empty row is 0)."""

    name = "mutant_masked_reduction_nan"

    def run(self, call):
        out = super().run(call)
        if "where" in call.options and call.options.get("reduction", "none") != "none" and call.check == "forward":
            mask = np.asarray(call.options["where"], dtype=bool)
            if np.any(~np.any(mask, axis=call.axis % mask.ndim)):
                out.arrays["out"] = np.full_like(out.arrays["out"], np.nan)
        return out



# The second hunt (2026-12-02): bug classes the quick suite did not yet stand for.

LOG2E = 1.4426950408889634


class Exp2Log2eFloat32(Careful):
    """exp(d) as exp2(d * LOG2E) with log2(e) a float32 constant (1.44269502f, a fused kernel's
    constexpr) in every dtype: float64 rows lose 1.3e-8 |d| relative in each exponential."""

    name = "mutant_exp2_log2e_f32"

    def exp(self, d):
        return np.exp2(d * float(np.float32(LOG2E)))


class MaskFillFinfoMin(Careful):
    """A where mask applied as masked_fill(~mask, finfo(dtype).min) (Hugging Face attention's
    convention) instead of -inf with S22's constants: log_softmax is finite at masked classes and
    a row with nothing kept is uniform."""

    name = "mutant_mask_fill_finfo_min"

    def masked(self, call):
        return self.compute(self.masked_call(call, -float(D.get(call.dtype).max)))


class ClampNegInfToMin(Careful):
    """-inf logits clamped to finfo(dtype).min before the op (logits.clamp(min=finfo.min), a guard
    against NaN): a masked class gets log_softmax -max - lse (finite) and an all -inf row is uniform."""

    name = "mutant_clamp_neg_inf_to_min"

    def compute(self, call):
        x = np.asarray(call.logits, dtype=np.float64)
        lo = -float(D.get(call.dtype).max)
        x = np.where(x == -np.inf, lo, x).astype(call.logits.dtype)
        return super().compute(Call(**{**call.__dict__, "logits": x}))


class ShiftFloorZero(Careful):
    """The running max of an online softmax initialised to 0 instead of -inf: the shift is
    max(0, max_j x_j), so a row of very negative logits underflows (S = 0: NaN, -inf, +inf)."""

    name = "mutant_shift_floor_zero"

    def shift(self, x, ax):
        return np.maximum(super().shift(x, ax), 0.0)


class SmoothingRowWeighted(Careful):
    """Class weights with label smoothing as a per-row weight w[label] of the whole smoothed loss
    (Keras' class_weight -> sample_weight) instead of each class's own weight w_i on its term
    (torch's definition, S21)."""

    name = "mutant_smoothing_row_weighted"

    def class_weighted(self, y, call, ax):
        w = call.options.get("weights")
        eps = float(call.options.get("label_smoothing", 0.0))
        if w is None or not eps or call.op != "sparse_softmax_cross_entropy":
            return super().class_weighted(y, call, ax)
        w = np.asarray(w, dtype=np.float64)
        lab = np.clip(np.asarray(call.labels), 0, len(w) - 1)
        return y * np.expand_dims(w[lab], ax)


class WeightedMeanByCount(Careful):
    """A class-weighted mean divided by the number of rows that take part (sum w_r l_r / N, the
    mean of the weighted losses) instead of by sum_r w_r (torch's weighted mean)."""

    name = "mutant_weighted_mean_by_count"

    def row_weights(self, call, C):
        r = super().row_weights(call, C)
        if call.op != "sparse_softmax_cross_entropy" or "weights" not in call.options:
            return r
        return np.where(self.ignored_rows(call), 0.0, 1.0)


class LseWeightsGradAbsS(Careful):
    """logsumexp with b: the gradient with respect to the weights as e_i / |S| (the derivative of
    log|S| taken through |S| as if S > 0): its sign is wrong where the weighted sum is negative."""

    name = "mutant_lse_weights_grad_abs_s"

    def weights_grad(self, e, S, b, x):
        return np.where(x == -np.inf, 0.0, e / np.abs(S))


class LseNegativeSumAbs(Careful):
    """logsumexp with b and no return_sign answers log|S| for a negative weighted sum (the sign
    dropped) instead of NaN (S23: outside the op's domain)."""

    name = "mutant_lse_negative_sum_abs"

    def weighted_lse(self, call, x, ax):
        if call.options.get("return_sign"):
            return super().weighted_lse(call, x, ax)
        out = super().weighted_lse(Call(**{**call.__dict__, "options": {**call.options, "return_sign": True}}), x, ax)
        out.pop("sign", None)
        return out


class LseSignOfZeroIsOne(Careful):
    """return_sign's sign of an exactly zero weighted sum answered +1 (copysign(1, S) or
    S >= 0 ? 1 : -1) instead of 0."""

    name = "mutant_lse_sign_zero_is_one"

    def signed_log(self, S):
        L, sg = super().signed_log(S)
        return L, np.where(S == 0, 1.0, sg)


class JvpUncentered(Careful):
    """The tangent of softmax along v as s * v, without - s <s, v> (a custom JVP rule that forgets
    the centering): every Hessian-vector product built by forward-over-reverse is off."""

    name = "mutant_jvp_uncentered"

    def jvp_centre(self, s, v, V):
        return s * v


class MeanHvpWithoutDivisor(Careful):
    """The double backward of a mean-reduced loss as that of the sum (the 1 / W dropped in the
    second-order pass, the first-order one right)."""

    name = "mutant_mean_hvp_without_divisor"

    def run(self, call):
        if call.check == "grad2" and call.options.get("reduction") == "mean":
            return super().run(Call(**{**call.__dict__, "options": {**call.options, "reduction": "sum"}}))
        return super().run(call)


class IgnoredRowHvpLeaks(Careful):
    """ignore_index masked in the loss and its gradient but not in the double backward: an ignored
    row's H v is that of a row of class 0."""

    name = "mutant_ignored_row_hvp_leaks"

    def weigh(self, y, call, ax):
        if call.check == "grad2":
            return self.class_weighted(y, call, ax)
        return super().weigh(y, call, ax)


class SmoothingDroppedInBackward(Careful):
    """Label smoothing in the loss but not in its gradient with respect to the logits (a fused
    backward that takes the hard labels: s - y instead of s sum y' - y')."""

    name = "mutant_smoothing_dropped_in_grad"

    def run(self, call):
        self._check = call.check
        return super().run(call)

    def smooth(self, y, eps, ax):
        if getattr(self, "_check", None) == "grad":
            return y
        return super().smooth(y, eps, ax)


class DefaultIgnoreMinus100(Careful):
    """Label -100 ignored when no ignore_index is given (torch's default ignore_index=-100 left in
    place by a wrapper that means "none"): loss and gradient 0 instead of an invalid label (S12)."""

    name = "mutant_default_ignore_minus_100"

    def ignored_rows(self, call):
        lab = np.asarray(call.labels)
        if call.options.get("ignore_index") is None:
            return lab == -100
        return super().ignored_rows(call)


class WeightsByRowIndex(Careful):
    """Class weights gathered by the row's index (w[r mod C]) instead of by its label (w[y_r]): a
    gather on the wrong index tensor."""

    name = "mutant_weights_by_row_index"

    def _roww(self, call, shape):
        w = np.asarray(call.options["weights"], dtype=np.float64)
        return w[np.arange(int(np.prod(shape, dtype=np.int64))).reshape(shape) % len(w)]

    def class_weighted(self, y, call, ax):
        if call.options.get("weights") is None or call.op != "sparse_softmax_cross_entropy":
            return super().class_weighted(y, call, ax)
        return y * np.expand_dims(self._roww(call, np.shape(call.labels)), ax)

    def row_weights(self, call, C):
        if call.op != "sparse_softmax_cross_entropy" or "weights" not in call.options:
            return super().row_weights(call, C)
        return np.where(self.ignored_rows(call), 0.0, self._roww(call, np.shape(call.labels)))


class Float16SumOverflows(Careful):
    """float16 rows' sum S = sum exp(x - max) held in float16 where it overflows: S > 65504 (a flat
    row of more than 65504 classes) is +inf, softmax 0 and logsumexp +inf."""

    name = "mutant_f16_sum_overflows"

    def total(self, e, ax):
        S = super().total(e, ax)
        if getattr(self, "_dtype", None) == "float16":
            return np.where(S > 65504.0, np.inf, S)
        return S


class MeanOverElements(Careful):
    """A mean over every element of the (rows x classes) loss tensor, W C instead of W (torch's
    KLDivLoss reduction='mean' versus 'batchmean'; a soft-target loss written as
    (-y * log_softmax).mean())."""

    name = "mutant_mean_over_elements"

    def row_weights(self, call, C):
        r = super().row_weights(call, C)
        return r * C if call.options.get("reduction") == "mean" else r


class WeightedLseHvpIgnoresWeights(Careful):
    """The double backward of logsumexp with b taken as that of the plain logsumexp (H v with
    softmax s instead of the weighted t_i = b_i e_i / S): b dropped on the second-order pass."""

    name = "mutant_weighted_lse_hvp_ignores_b"

    def run(self, call):
        if call.check == "grad2" and call.op == "logsumexp" and "b" in call.options:
            opts = {k: v for k, v in call.options.items() if k not in ("b", "return_sign")}
            return super().run(Call(**{**call.__dict__, "options": opts}))
        return super().run(call)


class ZeroSumGradZero(Careful):
    """logsumexp with b: an exactly zero weighted sum's gradients answered 0 (a guard S == 0 ? 0)
    instead of NaN where an entry takes part (S23: no derivative there)."""

    name = "mutant_lse_zero_sum_grad_zero"

    def weighted_lse(self, call, x, ax):
        out = super().weighted_lse(call, x, ax)
        if call.check != "forward":
            b = np.asarray(call.options["b"], dtype=np.float64)
            m = self.weight_shift(x, b, ax)
            with np.errstate(all="ignore"):
                S = np.sum(self.weight_terms(np.exp(x - m), b), axis=ax, keepdims=True)
            zero = np.broadcast_to(S == 0, x.shape)
            out = {k: np.where(zero, 0.0, v) for k, v in out.items()}
        return out


class IgnoreIndexAfterWrap(Careful):
    """Negative labels wrapped into 0..C-1 (Python-style, label % C) before the comparison with
    ignore_index: a padding row labelled -100 is no longer ignored but computed as class -100 % C."""

    name = "mutant_ignore_index_after_wrap"

    def _wrapped(self, call):
        lab = np.asarray(call.labels)
        C = np.shape(call.logits)[call.axis % np.ndim(call.logits)]
        return np.where(lab < 0, lab % C, lab) if C else lab

    def ignored_rows(self, call):
        ign = call.options.get("ignore_index")
        lab = self._wrapped(call)
        return np.zeros(lab.shape, dtype=bool) if ign is None else lab == ign

    def labels_of(self, call, ax, C):
        return super().labels_of(Call(**{**call.__dict__, "labels": self._wrapped(call)}), ax, C)

    def row_weights(self, call, C):
        if call.op != "sparse_softmax_cross_entropy":
            return super().row_weights(call, C)
        return super().row_weights(Call(**{**call.__dict__, "labels": self._wrapped(call)}), C)


MUTANTS = [IgnoresCotangent, RoundsLseThenSubtracts, NoMaxShift, LogOfSoftmax, RecursiveLowPrecisionSum,
           LabelOffByOne, SoftmaxVjpWithoutCentering, CeGradAssumesNormalisedLabels, Float64InFloat32,
           FlushesSubnormals, WrongClassAxis, GlobalMax, HalfResultForFloat32, IgnoreIndexSilent, NanNotPropagated,
           LabelsGradientDropped, SmoothingOverOtherClasses, SmoothingOverLastAxis, SmoothingSumInOutputDtype,
           SmoothingLabelsGradUnscaled, IgnoreIndexNotMasked, WeightsDroppedInBackward, MeanCountsIgnoredRows,
           MeanGradWithoutDivisor, MaskIgnored, MaskedCotangentsFlow, ZeroWeightGradientDropped, WeightedSignDropped,
           WeightedShiftOverAll, WeightsFoldedAsLog, ScaleShiftByScaledMax, ScaleGradDropped, HvpWithoutCrossTerm,
           MixedLabelsDerivativeDropped, HvpAssumesNormalisedLabels, ScaledRoundsLse,
           BatchDependentSum, BatchKeepsDims, NonDeterministic, JitDiffers, TailMaxNotRescaled,
           WeightedMeanByNTimesMeanW, IgnoredRowGradNotZero, SmoothingTrueClassOnly, OutOfRangeLabelsClamped,
           AllNegInfRowsZero, LseGradFromRoundedOutput, ClippedProbabilities, ZeroLabelTimesNegInf,
           LargeVocabSmoothingDropped, IgnoredRowMaskMultiplied, EmptyMaskRowUnmasked, MaskedReductionNaN,
           BlockCombineNotRescaled, ReductionSumInDtype, SmoothingLeaksIntoIgnoredRows, Float64LongRowSumInFloat32,
           Exp2Log2eFloat32, MaskFillFinfoMin, ClampNegInfToMin, ShiftFloorZero, SmoothingRowWeighted,
           WeightedMeanByCount, LseWeightsGradAbsS, LseNegativeSumAbs, LseSignOfZeroIsOne, JvpUncentered,
           MeanHvpWithoutDivisor, IgnoredRowHvpLeaks, SmoothingDroppedInBackward, DefaultIgnoreMinus100,
           WeightsByRowIndex, Float16SumOverflows, MeanOverElements, WeightedLseHvpIgnoresWeights, ZeroSumGradZero,
           IgnoreIndexAfterWrap]
