"""ONNX Runtime adapter: ONNX graphs built with onnx.helper and run by onnxruntime.InferenceSession.

The ops as users of ONNX spell them (GRAPHS): Softmax and LogSoftmax (opset 13, per-axis), and as
variant `opset11` the opset-11 kernels (which flatten the input to 2-D at `axis`) applied to the
class axis moved last with a Transpose first, as a user who wants a per-axis softmax applies them;
ReduceLogSumExp (opset 18: the axes an input); the dense cross-entropy composed,
-ReduceSum(labels * LogSoftmax(x)) (ONNX has no soft-label loss); the sparse one as
SoftmaxCrossEntropyLoss (opset 13), and as variant `nll` NegativeLogLikelihoodLoss over
LogSoftmax. Class weights, ignore_index and the reduction are the losses' own inputs and
attributes (the reduction always written: ONNX's default is "mean", the harness's "none"); a mask
(`where`) is the Where(mask, x, -inf) fill users write (variant `masked`); a scale is Mul(x, s)
with s a runtime input. ONNX has no spelling of label smoothing, of logsumexp's scale weights or
of its sign: those cases are skips with the reason.

Modes: `eager` is the session with graph optimizations off (ORT_DISABLE_ALL), `jit` the session
users get by default (ORT_ENABLE_ALL: fusions and rewrites may change results). Forward only: an
inference runtime has no autodiff. The graphs have symbolic dimensions (one session per op,
variant, options, rank, dtype and mode serves every shape). bfloat16, which numpy lacks, goes in
and out as its bits (an OrtValue of uint16 data typed BFLOAT16). A node ORT has no kernel for in
a dtype (NOT_IMPLEMENTED) or whose schema refuses it (a type error of the graph) is a skip that
quotes ORT. Every call is the source its repro snippet prints (base.SourceAdapter)."""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from ..vocab import INVARIANCE_CHECKS
from .base import Call, SourceAdapter, Unsupported, empty_shape, literal

#: The ONNX element type of each dtype.
ONNX_TYPES = {"float16": "FLOAT16", "bfloat16": "BFLOAT16", "float32": "FLOAT", "float64": "DOUBLE"}
#: numpy's (ml_dtypes') spelling of each dtype in a snippet.
NP_TYPES = {"float16": "np.float16", "bfloat16": "ml_dtypes.bfloat16", "float32": "np.float32", "float64": "np.float64"}
#: Our dtype name of each ONNX tensor type string (OrtValue.data_type()).
DTYPE_NAMES = {"tensor(float16)": "float16", "tensor(bfloat16)": "bfloat16", "tensor(float)": "float32",
               "tensor(double)": "float64"}

#: The opset of each (op, variant)'s model.
OPSETS = {
    ("softmax", "default"): 13, ("softmax", "opset11"): 11, ("softmax", "masked"): 13,
    ("log_softmax", "default"): 13, ("log_softmax", "opset11"): 11, ("log_softmax", "masked"): 13,
    ("logsumexp", "default"): 18, ("logsumexp", "masked"): 18,
    ("softmax_cross_entropy", "default"): 13, ("softmax_cross_entropy", "masked"): 13,
    ("sparse_softmax_cross_entropy", "default"): 13, ("sparse_softmax_cross_entropy", "nll"): 13,
    ("sparse_softmax_cross_entropy", "masked"): 13,
}
#: The options each (op, variant) takes (base.SourceAdapter.unsupported reads the keys; the graph
#: is built by OnnxRuntimeAdapter.nodes). A mask only in variant `masked`.
OPTIONS: dict[tuple[str, str], dict[str, Any]] = {}
for _key in OPSETS:
    _t: dict[str, Any] = {"scale": "Mul(x, s)"}
    if _key[1] == "masked":
        _t["where"] = "Where(mask, x, -inf)"
    if _key[0] == "softmax_cross_entropy":
        _t["reduction"] = "ReduceSum / ReduceMean of the rows"
    if _key[0] == "sparse_softmax_cross_entropy":
        _t.update(reduction="reduction attribute", weights="weights input", ignore_index="ignore_index attribute")
    OPTIONS[_key] = _t

#: The snippet's first lines: the imports and two helpers, the inputs as ORT takes them and the
#: outputs' exact values (bfloat16 by its bits: numpy has no bfloat16 and OrtValue.numpy() refuses it).
IMPORTS = '''import ctypes
import ml_dtypes
import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper
ort.set_default_logger_severity(4)  # ORT logs each error it raises to stderr too
def ortvalue(a):
    a = np.asarray(a, order='C')
    if a.dtype == ml_dtypes.bfloat16:
        return ort.OrtValue.ortvalue_from_numpy_with_onnx_type(a.view(np.uint16), TensorProto.BFLOAT16)
    return ort.OrtValue.ortvalue_from_numpy(a)
def values(o):
    if o.data_type() == 'tensor(bfloat16)':
        n = int(np.prod(o.shape()))
        bits = ctypes.string_at(o.data_ptr(), 2 * n) if n else b''
        return np.frombuffer(bits, dtype=ml_dtypes.bfloat16).reshape(o.shape())
    return o.numpy()'''

#: ORT's refusals of a dtype: no kernel for a node, or a type the node's schema does not allow.
_REFUSED = (re.compile(r"Could not find an implementation for \S+ node with name '[^']*'"),
            re.compile(r"Type Error: Type '[^']*' of input parameter \([^)]*\) of operator \([^)]*\)[^.]*is invalid"))


def _node(op: str, ins: list[str], outs: list[str], **attrs: Any) -> str:
    kw = "".join(f", {k}={v!r}" for k, v in attrs.items())
    return f"helper.make_node({op!r}, {ins!r}, {outs!r}{kw})"


def _const(name: str, onnx_type: str, shape: list[int], vals: list[Any]) -> str:
    def fmt(v: Any) -> str:
        if isinstance(v, float) and not np.isfinite(v):
            return "float('nan')" if np.isnan(v) else ("float('inf')" if v > 0 else "-float('inf')")
        return repr(v)

    return (f"helper.make_node('Constant', [], [{name!r}], value=helper.make_tensor({name!r}, "
            f"TensorProto.{onnx_type}, {shape!r}, [{', '.join(fmt(v) for v in vals)}]))")


class OnnxRuntimeAdapter(SourceAdapter):
    name = "onnxruntime"
    requires = ("onnxruntime", "onnx")
    extra = "onnxruntime"
    checks = ("forward", *INVARIANCE_CHECKS)  # an inference runtime: no autodiff
    variants = {"softmax": ("opset11", "masked"), "log_softmax": ("opset11", "masked"), "logsumexp": ("masked",),
                "softmax_cross_entropy": ("masked",), "sparse_softmax_cross_entropy": ("nll", "masked")}
    option_variants = {"masked": ("where",)}
    options = OPTIONS
    imports = IMPORTS

    def __init__(self) -> None:
        super().__init__()
        self._ns: dict[str, Any] | None = None
        self._threads: int | None = None

    def versions(self) -> dict[str, str]:
        import onnx
        import onnxruntime as ort

        return {"onnxruntime": ort.__version__, "onnx": onnx.__version__, "provider": self._provider("cpu"),
                "providers": ", ".join(ort.get_available_providers())}

    def _provider(self, device: str) -> str:
        return "CUDAExecutionProvider" if device == "gpu" else "CPUExecutionProvider"

    def devices(self) -> dict[str, str | None]:
        import onnxruntime as ort

        gpu = "CUDAExecutionProvider" in ort.get_available_providers()
        return {"cpu": "cpu", "gpu": "CUDAExecutionProvider" if gpu else None}

    def device_reason(self, device: str) -> str:
        import onnxruntime as ort

        return (f"onnxruntime {ort.__version__} has no CUDAExecutionProvider here (providers: "
                f"{', '.join(ort.get_available_providers())}; onnxruntime-gpu on a CUDA machine has)")

    def check_device(self, call: Call) -> None:
        if not self.devices().get(call.device):
            raise Unsupported(self.device_reason(call.device))

    def set_threads(self, n: int) -> None:
        # ORT's intra-op pool is a session option (default: one thread per core), read by no
        # environment variable: the sessions of this process get `n` (written into their source).
        self._threads = n

    def threads_in_force(self) -> dict[str, Any]:
        return {"intra_op_num_threads": self._threads or "default (one per core)"}

    def namespace(self) -> dict[str, Any]:
        if self._ns is None:
            ns: dict[str, Any] = {}
            exec(compile(self.imports, f"<{self.name}>", "exec"), ns)  # noqa: S102 - the snippet's own imports
            self._ns = ns
        return dict(self._ns)

    # -- the graph ---------------------------------------------------------------------------
    def nodes(self, call: Call) -> tuple[list[str], list[tuple[str, str, list[str]]], int]:
        """The graph's nodes (source), its inputs (name, element type, dims) and its opset."""
        op, variant = call.op, call.variant
        why = self.unsupported(op, variant, call.options)
        if why is not None:
            raise Unsupported(why)
        T = ONNX_TYPES[call.dtype]
        nd = np.ndim(call.logits)
        ax = call.axis % nd
        dims = [f"d{i}" for i in range(nd)]
        ins = [("x", T, dims)]
        nodes: list[str] = []
        x = "x"
        if "scale" in call.options:  # the logits times the runtime input s (S24)
            ins.append(("s", T, []))
            nodes.append(_node("Mul", [x, "s"], ["xs"]))
            x = "xs"
        if "where" in call.options:  # the -inf fill users write (S22 is not its meaning: variant masked)
            mask = np.asarray(call.options["where"], dtype=bool)
            nodes += [_const("mask", "BOOL", list(mask.shape), [bool(v) for v in mask.ravel()]),
                      _const("ninf", T, [], [float("-inf")]),
                      _node("Where", ["mask", x, "ninf"], ["xm"])]
            x = "xm"
        last = nd - 1
        if op in ("softmax", "log_softmax"):
            kind = "Softmax" if op == "softmax" else "LogSoftmax"
            if variant != "opset11" or ax == last:
                nodes.append(_node(kind, [x], ["out"], axis=ax))
            else:  # opset 11 flattens to 2-D at axis: the class axis moved last first, and back
                perm = [i for i in range(nd) if i != ax] + [ax]
                back = [perm.index(i) for i in range(nd)]
                nodes += [_node("Transpose", [x], ["xt"], perm=perm), _node(kind, ["xt"], ["ot"], axis=last),
                          _node("Transpose", ["ot"], ["out"], perm=back)]
        elif op == "logsumexp":
            nodes += [_const("axes", "INT64", [1], [ax]),
                      _node("ReduceLogSumExp", [x, "axes"], ["out"], keepdims=0)]
        elif op == "softmax_cross_entropy":  # -sum_i y_i log_softmax(x)_i, as users compose it
            ins.append(("y", T, dims))
            red = call.options.get("reduction", "none")
            rows = "out" if red == "none" else "rows"
            nodes += [_node("LogSoftmax", [x], ["logp"], axis=ax), _node("Mul", ["y", "logp"], ["ylogp"]),
                      _const("axes", "INT64", [1], [ax]), _node("ReduceSum", ["ylogp", "axes"], ["sum"], keepdims=0),
                      _node("Neg", ["sum"], [rows])]
            if red != "none":
                nodes.append(_node("ReduceSum" if red == "sum" else "ReduceMean", [rows], ["out"], keepdims=0))
        else:  # sparse: SoftmaxCrossEntropyLoss / NegativeLogLikelihoodLoss want the classes at dim 1
            ldims = [d for i, d in enumerate(dims) if i != ax]
            ins.append(("y", "INT64", ldims))
            y = "y"
            red = call.options.get("reduction", "none")
            if nd == 1:  # one row: the losses want (N, C); users add the batch dimension and take it off
                nodes += [_const("zero", "INT64", [1], [0]), _node("Unsqueeze", [x, "zero"], ["x2"]),
                          _node("Unsqueeze", [y, "zero"], ["y2"])]
                x, y = "x2", "y2"
            elif ax != 1:
                perm = [0, ax] + [i for i in range(1, nd) if i != ax] if ax != 0 else [1, 0] + list(range(2, nd))
                nodes.append(_node("Transpose", [x], ["xt"], perm=perm))
                x = "xt"
            attrs: dict[str, Any] = {"reduction": red}
            if "ignore_index" in call.options:
                attrs["ignore_index"] = int(call.options["ignore_index"])
            args = [x, y]
            if "weights" in call.options:
                w = [float(v) for v in call.options["weights"]]
                nodes.append(_const("weights", T, [len(w)], w))
                args.append("weights")
            out = "loss" if nd == 1 and red == "none" else "out"
            if variant == "nll":
                nodes.append(_node("LogSoftmax", [x], ["logp"], axis=1))
                nodes.append(_node("NegativeLogLikelihoodLoss", ["logp"] + args[1:], [out], **attrs))
            else:
                nodes.append(_node("SoftmaxCrossEntropyLoss", args, [out], **attrs))
            if out == "loss":
                nodes.append(_node("Squeeze", ["loss", "zero"], ["out"]))
        return nodes, ins, OPSETS[(op, variant)]

    def expression(self, call: Call) -> str:
        raise NotImplementedError  # function_source builds the graph

    def function_source(self, call: Call) -> str:
        nodes, ins, opset = self.nodes(call)
        T = ONNX_TYPES[call.dtype]
        level = "ORT_DISABLE_ALL" if call.mode == "eager" else "ORT_ENABLE_ALL"
        feeds = ", ".join(f"{n!r}: {n}" for n, _, _ in ins)
        lines = ["graph = helper.make_graph(", "    ["]
        lines += [f"        {n}," for n in nodes]
        lines += ["    ],", f"    {call.op + '_' + call.variant!r},",
                  "    [" + ", ".join(f"helper.make_tensor_value_info({n!r}, TensorProto.{t}, {d!r})"
                                    for n, t, d in ins) + "],",
                  f"    [helper.make_tensor_value_info('out', TensorProto.{T}, None)])",
                  f"model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', {opset})])",
                  "options = ort.SessionOptions()",
                  f"options.graph_optimization_level = ort.GraphOptimizationLevel.{level}",
                  *([f"options.intra_op_num_threads = {self._threads}"] if self._threads else []),
                  f"sess = ort.InferenceSession(model.SerializeToString(), options, "
                  f"providers=[{self._provider(call.device)!r}])",
                  f"def f({self.fparams(call)}):",
                  f"    return sess.run_with_ort_values(['out'], {{{feeds}}})[0]"]
        return "\n".join(lines)

    def step_source(self, call: Call) -> str:
        if call.check != "forward":
            raise Unsupported(f"onnxruntime is an inference runtime: no autodiff, no {call.check} check")
        return "\n".join([self.step_header(call), "    " + self.forward_return(call)])

    def run(self, call: Call) -> Any:
        if call.check != "forward":
            raise Unsupported(f"onnxruntime is an inference runtime: no autodiff, no {call.check} check")
        return super().run(call)

    def refusal(self, e: Exception, call: Call) -> str | None:
        """ORT's refusal of a graph, raised while its session is built: no kernel for the dtype.
        The base remembers it by the graph's source, so it is not paid for again per call (a
        batch invariance item makes some 24 calls of one graph)."""
        kind = type(e).__name__
        if kind in ("NotImplemented", "InvalidGraph", "Fail"):
            for pat in _REFUSED:
                m = pat.search(str(e))
                if m:
                    return f"onnxruntime refuses {call.dtype} for {call.op} ({call.variant}): {kind}: {m.group(0)}"
        return None

    # -- inputs and outputs --------------------------------------------------------------------
    def input_source(self, name: str, a: np.ndarray, call: Call) -> str:
        shape = empty_shape(a)  # `[]` alone has shape (0,)
        if np.asarray(a).dtype.kind in "iu":
            return f"ortvalue(np.array({literal(a, call, name)}, dtype=np.int64){shape})"
        # via float64, which holds every value of the smaller formats exactly
        return f"ortvalue(np.array({literal(a, call, name)}, dtype=np.float64){shape}.astype({NP_TYPES[call.dtype]}))"

    def make_input(self, name: str, a: np.ndarray, call: Call) -> Any:
        ortvalue = self.namespace()["ortvalue"]
        if a.dtype.kind in "iu":
            return ortvalue(np.asarray(a, dtype=np.int64))
        import ml_dtypes

        dt = ml_dtypes.bfloat16 if call.dtype == "bfloat16" else np.dtype(call.dtype)
        return ortvalue(np.asarray(a, dtype=np.float64).astype(dt))

    def result_source(self) -> str:
        return "print([values(o).astype(np.float64).tolist() for o in outs])"

    def shapes_source(self) -> str:
        return "print([list(values(o).shape) for o in outs])"

    def convert(self, o: Any) -> tuple[np.ndarray, str, str]:
        vals = self.namespace()["values"](o)
        dev = o.device_name().lower()
        return (np.asarray(vals).astype(np.float64), DTYPE_NAMES.get(o.data_type(), o.data_type()),
                "gpu" if dev in ("cuda", "gpu") else dev)
