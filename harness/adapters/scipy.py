"""SciPy adapter: scipy.special.softmax, scipy.special.log_softmax and scipy.special.logsumexp
(with its scale weights `b=` and `return_sign=`) on numpy arrays of the tested dtype (bfloat16
through ml_dtypes), on the CPU, forward only: scipy has no autodiff and no compiled mode. SciPy
has no cross-entropy: the losses are skips with the reason. What scipy does with a dtype
(logsumexp returns float64 for bfloat16 input, which its array-API promotion does not know as a
floating dtype) is recorded as what it is: the verdict judges it. Every call is the source its
repro snippet prints (base.SourceAdapter)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..vocab import INVARIANCE_CHECKS
from .base import Call, SourceAdapter, Unsupported, dtype_name, empty_shape, literal, with_scale

#: The op as users write it, by (op, variant): `{axis}` is the class axis, `{y}` the second input
#: (logsumexp's b) and `{kw}` the options' keyword arguments (OPTIONS).
API = {
    ("softmax", "default"): "scipy.special.softmax(x, axis={axis})",
    ("log_softmax", "default"): "scipy.special.log_softmax(x, axis={axis})",
    ("logsumexp", "default"): "scipy.special.logsumexp(x, axis={axis}{kw})",
}
#: How each call takes the options (base.SourceAdapter.render): logsumexp's scale weights are the
#: step's second input (y), return_sign its keyword; `scale` is the logits times the runtime input s
#: (base.SCALE: `softmax(x * s)`, the product rounded in the dtype by numpy). No scipy.special
#: function takes a mask (`where`): a skip with the reason.
OPTIONS: dict[tuple[str, str], dict[str, Any]] = {
    ("logsumexp", "default"): {"b": "b={y}", "return_sign": "return_sign={v}"},
}
with_scale(API, OPTIONS)

#: The ops scipy has none of, with why (a skip).
NO_LOSS = ("scipy has no softmax cross-entropy (scipy.special offers softmax, log_softmax and logsumexp "
           "only); no composition is written for it")


def _no_autodiff(call: Call) -> str:
    return f"scipy has no autodiff: scipy.special.{call.op} has no {call.check} check, forward only"


class ScipyAdapter(SourceAdapter):
    name = "scipy"
    requires = ("scipy", "ml_dtypes")
    extra = "scipy"
    modes = ("eager",)
    checks = ("forward", *INVARIANCE_CHECKS)  # no autodiff
    options = OPTIONS
    imports = "import numpy as np\nimport ml_dtypes\nimport scipy.special"

    def versions(self) -> dict[str, str]:
        import ml_dtypes
        import scipy

        return {"scipy": scipy.__version__, "numpy": np.__version__, "ml_dtypes": ml_dtypes.__version__}

    def devices(self) -> dict[str, str | None]:
        return {"cpu": "cpu", "gpu": None}

    def device_reason(self, device: str) -> str:
        return f"scipy.special computes on numpy arrays, on the CPU only: no {device} device"

    def unsupported(self, op: str, variant: str, options: Any) -> str | None:
        if (op, variant) not in API:
            return NO_LOSS if op in ("softmax_cross_entropy", "sparse_softmax_cross_entropy") else \
                f"scipy has no {op} ({variant})"
        if "where" in options:
            return f"scipy.special.{op} takes no mask (where=)"
        return super().unsupported(op, variant, options)

    def namespace(self) -> dict[str, Any]:
        import ml_dtypes
        import scipy.special

        return {"np": np, "ml_dtypes": ml_dtypes, "scipy": scipy}

    def check_device(self, call: Call) -> None:
        if call.device != "cpu":
            raise Unsupported(self.device_reason(call.device))
        if call.mode not in self.modes:
            raise Unsupported(f"scipy has no {call.mode} mode: it runs eagerly only")
        if call.check != "forward":
            raise Unsupported(_no_autodiff(call))

    # -- the source --------------------------------------------------------------------------
    def expression(self, call: Call) -> str:
        return self.render(API[(call.op, call.variant)], call, axis=call.axis)

    def step_source(self, call: Call) -> str:
        if call.check != "forward":
            raise Unsupported(_no_autodiff(call))
        return "\n".join([self.step_header(call), "    " + self.forward_return(call)])

    @staticmethod
    def _np_dtype_source(dtype: str) -> str:
        return "ml_dtypes.bfloat16" if dtype == "bfloat16" else f"np.{dtype}"

    def input_source(self, name: str, a: np.ndarray, call: Call) -> str:
        arr = np.asarray(a)
        shape = empty_shape(arr)
        if arr.dtype.kind in "iu":
            return f"np.asarray({literal(a, call, name)}, dtype=np.int64){shape}"
        return (f"np.asarray({literal(a, call, name)}, dtype=np.float64){shape}"
                f".astype({self._np_dtype_source(call.dtype)})")

    def make_input(self, name: str, a: np.ndarray, call: Call) -> Any:
        import ml_dtypes

        arr = np.asarray(a)
        if arr.dtype.kind in "iu":
            return np.asarray(arr, dtype=np.int64)
        dt = ml_dtypes.bfloat16 if call.dtype == "bfloat16" else getattr(np, call.dtype)
        return np.asarray(arr, dtype=np.float64).astype(dt)

    def result_source(self) -> str:
        return "print([np.asarray(o, dtype=np.float64).tolist() for o in outs])"

    def convert(self, o: Any) -> tuple[np.ndarray, str, str]:
        arr = np.asarray(o)
        return np.asarray(arr, dtype=np.float64), dtype_name(arr.dtype), "cpu"
