"""The textbook numpy adapter: the formulas as a textbook writes them, evaluated in the tested
dtype, with analytic gradients. Not a framework: a yardstick, so the report shows what the
fused kernels of the frameworks buy over the obvious composition (log of softmax, etc.)."""

from __future__ import annotations

import numpy as np

from .base import Adapter, Call, Output, Unsupported


class NumpyAdapter(Adapter):
    name = "numpy"
    modes = ("eager",)

    def versions(self) -> dict[str, str]:
        import ml_dtypes

        return {"numpy": np.__version__, "ml_dtypes": ml_dtypes.__version__}

    def run(self, call: Call) -> Output:
        if call.device != "cpu":
            raise Unsupported("numpy runs on the CPU only")
        if call.mode != "eager":
            raise Unsupported("numpy has no compiled mode")
        if call.check == "grad2":
            raise Unsupported("numpy has no autodiff: the textbook yardstick writes first derivatives only")
        x, ax = call.logits, call.axis
        dt = x.dtype
        with np.errstate(all="ignore"):
            m = np.max(x, axis=ax, keepdims=True)
            e = np.exp((x - m).astype(dt))
            S = np.sum(e, axis=ax, keepdims=True, dtype=dt)
            s = (e / S).astype(dt)
            ls = np.log(s).astype(dt)  # the textbook composition: log of softmax
            if call.op == "sparse_softmax_cross_entropy":
                lab = np.asarray(call.labels)
                if np.any((lab < 0) | (lab >= x.shape[ax])):
                    raise IndexError("label out of range")
                y = np.moveaxis((np.arange(x.shape[ax]) == lab[..., None]).astype(dt), -1, ax)
            else:
                y = call.labels
            if call.check == "forward":
                out = {
                    "softmax": lambda: s,
                    "log_softmax": lambda: ls,
                    "logsumexp": lambda: (np.squeeze(m, ax) + np.log(np.squeeze(S, ax))).astype(dt),
                    "softmax_cross_entropy": lambda: (-np.sum(y * ls, axis=ax, dtype=dt)).astype(dt),
                    "sparse_softmax_cross_entropy": lambda: (-np.sum(y * ls, axis=ax, dtype=dt)).astype(dt),
                }[call.op]()
                arrays = {"out": np.asarray(out)}
            else:
                g = call.cotangent
                if call.op == "softmax":
                    d = s * (g - np.sum(g * s, axis=ax, keepdims=True, dtype=dt))
                    arrays = {"d_logits": d}
                elif call.op == "log_softmax":
                    arrays = {"d_logits": g - s * np.sum(g, axis=ax, keepdims=True, dtype=dt)}
                elif call.op == "logsumexp":
                    arrays = {"d_logits": np.expand_dims(g, ax) * s}
                elif call.op == "softmax_cross_entropy":
                    gg = np.expand_dims(g, ax)  # the upstream gradient of each row's loss
                    arrays = {"d_logits": gg * (s * np.sum(y, axis=ax, keepdims=True, dtype=dt) - y),
                              "d_labels": gg * -ls}
                else:
                    arrays = {"d_logits": np.expand_dims(g, ax) * (s - y)}
        out_arrays = {k: np.asarray(v).astype(dt).astype(np.float64) for k, v in arrays.items()}
        return Output(out_arrays, {k: str(np.asarray(v).astype(dt).dtype) for k, v in arrays.items()},
                      {k: "cpu" for k in arrays})
