"""TensorFlow adapter: tf.nn.softmax, tf.nn.log_softmax, tf.math.reduce_logsumexp,
tf.nn.softmax_cross_entropy_with_logits, tf.nn.sparse_softmax_cross_entropy_with_logits;
gradients with tf.GradientTape; `jit` mode is tf.function(jit_compile=True) (XLA) around the
whole step. Every call is the source its repro snippet prints (base.SourceAdapter)."""

from __future__ import annotations

import os
import sys
from typing import Any

import numpy as np

from .base import (Call, SourceAdapter, Unsupported, compile_cache_dir, dtype_name, literal, set_by_harness,
                   with_scale)

#: The op as users write it, by (op, variant): `{axis}` is the class axis; `{last}` is the logits
#: with the class axis moved last (the sparse op has no axis argument: its users transpose); `{C}`
#: the number of classes; `{y}` the labels and `{kw}` the options' keyword arguments (OPTIONS).
API = {
    ("softmax", "default"): "tf.nn.softmax(x, axis={axis})",
    ("log_softmax", "default"): "tf.nn.log_softmax(x, axis={axis})",
    ("logsumexp", "default"): "tf.math.reduce_logsumexp(x, axis={axis})",
    ("softmax_cross_entropy", "default"): "tf.nn.softmax_cross_entropy_with_logits(labels={y}, logits=x, axis={axis})",
    ("softmax_cross_entropy", "keras"):
        "tf.keras.losses.CategoricalCrossentropy(from_logits=True, axis={axis}{kw})({y}, x)",
    # tf.nn's losses have no reduction: users reduce the rows (OPTIONS).
    ("softmax_cross_entropy", "composed"): "tf.nn.softmax_cross_entropy_with_logits(labels={y}, logits=x, axis={axis})",
    ("sparse_softmax_cross_entropy", "default"): "tf.nn.sparse_softmax_cross_entropy_with_logits(labels={y}, logits={last})",
    # tf.nn's sparse op takes no class weights or ignored label: users gather the weights and mask
    # (OPTIONS), the labels of ignored rows made valid first.
    ("sparse_softmax_cross_entropy", "composed"): "tf.nn.sparse_softmax_cross_entropy_with_logits(labels={y}, logits={last})",
    # Keras' sparse loss has no label smoothing: users one-hot the labels for the dense one.
    ("sparse_softmax_cross_entropy", "keras_onehot"):
        "tf.keras.losses.CategoricalCrossentropy(from_logits=True{kw})"
        "(tf.one_hot({y}, {C}, dtype=x.dtype), {last})",
}
# tf.math.reduce_logsumexp takes no scale weights: users transcribe scipy.special.logsumexp (S23).
API[("logsumexp", "composed")] = (
    "def f(x, y):\n"
    "    x = tf.where(y != 0, x, tf.constant(float('-inf'), x.dtype))  # scipy: an entry with b = 0 takes no part\n"
    "    m = tf.stop_gradient(tf.reduce_max(x, axis={axis}, keepdims=True))\n"
    "    m = tf.where(tf.math.is_finite(m), m, tf.zeros_like(m))\n"
    "    s = tf.reduce_sum(y * tf.exp(x - m), axis={axis})\n"
    "    return {ret}")
#: How each call takes the options (base.SourceAdapter.render); tf.nn's ops take none.
# No tf.nn op takes a mask: users fill the masked logits with -inf first (variant masked).
for (_op, _v), _t in list(API.items()):
    if _v == "default":
        API[(_op, "masked")] = _t
_MASK = {"where": {"x": "tf.where(tf.constant({v}), {x}, tf.constant(float('-inf'), x.dtype))"}}
_KERAS_REDUCTION = {"by_value": {"none": {"kw": "reduction=None"}, "sum": {"kw": "reduction='sum'"},
                                   "mean": {"kw": "reduction='sum_over_batch_size'"}}}
OPTIONS = {
    ("softmax_cross_entropy", "keras"): {"reduction": _KERAS_REDUCTION, "label_smoothing": "label_smoothing={v}"},
    ("sparse_softmax_cross_entropy", "keras_onehot"): {"reduction": _KERAS_REDUCTION,
                                                       "label_smoothing": "label_smoothing={v}"},
    ("softmax_cross_entropy", "composed"): {
        "reduction": {"by_value": {"sum": {"reduce": "tf.reduce_sum({out})"},
                                   "mean": {"reduce": "tf.reduce_mean({out})"}}}},
    ("sparse_softmax_cross_entropy", "composed"): {
        "reduction": {"by_value": {"sum": {"reduce": "tf.reduce_sum({out})"},
                                   "mean": {"reduce": "tf.reduce_sum({out}) / tf.reduce_sum({den})",
                                            "plain": "tf.reduce_mean({out})"}}},
        "weights": {"out": "tf.gather(tf.constant({v}, dtype=x.dtype), {y}) * {out}",
                    "den": "tf.gather(tf.constant({v}, dtype=x.dtype), {y})"},
        "ignore_index": {"y": "tf.where({y} == {v}, tf.zeros_like({y}), {y})",
                         "out": "tf.where(y == {v}, tf.zeros([], x.dtype), {out})",
                         "den": "tf.cast(y != {v}, x.dtype)"}},
    **{(op, "masked"): _MASK for op in ("softmax", "log_softmax", "logsumexp", "softmax_cross_entropy",
                                         "sparse_softmax_cross_entropy")},
    ("logsumexp", "composed"): {
        "b": {}, **_MASK,
        "return_sign": {"by_value": {False: {"ret": "tf.math.log(s) + tf.squeeze(m, {axis})"},
                                     True: {"ret": "tf.math.log(tf.abs(s)) + tf.squeeze(m, {axis}), tf.sign(s)"}}}},
}


with_scale(API, OPTIONS)


class TensorFlowAdapter(SourceAdapter):
    name = "tensorflow"
    requires = ("tensorflow",)
    extra = "tensorflow"
    variants = {"softmax": ("masked",), "log_softmax": ("masked",), "logsumexp": ("masked", "composed"),
                "softmax_cross_entropy": ("keras", "composed", "masked"),
                "sparse_softmax_cross_entropy": ("keras_onehot", "composed", "masked")}
    option_variants = {"keras_onehot": ("label_smoothing",), "composed": ("weights", "ignore_index", "reduction", "b"),
                       "masked": ("where",)}
    options = OPTIONS
    option_defaults = {"reduction": "none", "return_sign": False}

    imports = "import tensorflow as tf"

    @property
    def tf(self) -> Any:
        # Silence TF's C++ logging before the first import; the user's setting wins.
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        # XLA's persistent cache for jit_compile functions, this job's own, set before TF reads
        # its flags; a cache directory the user gave in TF_XLA_FLAGS wins.
        opt = "--tf_xla_persistent_cache_directory="
        flags = os.environ.get("TF_XLA_FLAGS", "").split()
        given = [f for f in flags if f.startswith(opt)]
        if "tensorflow" not in sys.modules and all(set_by_harness(f[len(opt):]) for f in given):
            d = compile_cache_dir("tensorflow")
            flags = [f for f in flags if f not in given] + ([opt + d] if d else [])
            os.environ["TF_XLA_FLAGS"] = " ".join(flags)
        import tensorflow as tf

        tf.get_logger().setLevel("ERROR")  # retracing notices: one trace per shape is intended
        return tf

    def versions(self) -> dict[str, str]:
        tf = self.tf
        v = {"tensorflow": tf.__version__}
        try:  # oneDNN kernels change summation orders (TF says so at import): record which ran
            from tensorflow.python.util import _pywrap_util_port

            v["onednn"] = "on" if _pywrap_util_port.IsMklEnabled() else "off"
        except (ImportError, AttributeError):
            pass
        info = tf.sysconfig.get_build_info()
        for k in ("cuda_version", "cudnn_version"):
            if info.get(k):
                v[k.replace("_version", "")] = str(info[k])
        return v

    def thread_env(self, n: int) -> dict[str, str]:
        return {**super().thread_env(n), "TF_NUM_INTRAOP_THREADS": str(n), "TF_NUM_INTEROP_THREADS": str(n)}

    def set_threads(self, n: int) -> None:
        tf = self.tf  # before any op: TensorFlow fixes its thread pools at its first
        tf.config.threading.set_intra_op_parallelism_threads(n)
        tf.config.threading.set_inter_op_parallelism_threads(n)

    def threads_in_force(self) -> dict[str, Any]:
        tf = self.tf
        return {"intra_op_parallelism_threads": tf.config.threading.get_intra_op_parallelism_threads(),
                "inter_op_parallelism_threads": tf.config.threading.get_inter_op_parallelism_threads()}

    def determinism_flags(self) -> dict[str, Any]:
        tf = self.tf
        try:  # set by tf.config.experimental.enable_op_determinism(); its getter is not public
            from tensorflow.python.framework import config as tf_config

            op_det = bool(tf_config.is_op_determinism_enabled())
        except (ImportError, AttributeError):
            op_det = None
        return {"op_determinism": op_det,
                "TF_DETERMINISTIC_OPS": os.environ.get("TF_DETERMINISTIC_OPS"),
                "TF_ENABLE_ONEDNN_OPTS": os.environ.get("TF_ENABLE_ONEDNN_OPTS"),
                "intra_op_parallelism_threads": tf.config.threading.get_intra_op_parallelism_threads()}

    def devices(self) -> dict[str, str | None]:
        tf = self.tf
        gpus = tf.config.list_physical_devices("GPU")
        return {"cpu": "cpu", "gpu": gpus[0].name if gpus else None}

    def device_reason(self, device: str) -> str:
        tf = self.tf
        if not tf.test.is_built_with_cuda():
            return f"tensorflow {tf.__version__} is built without CUDA (tensorflow-cpu)"
        return "tensorflow sees no GPU"

    def namespace(self) -> dict[str, Any]:
        return {"tf": self.tf}

    def check_device(self, call: Call) -> None:
        if call.device == "gpu" and not self.tf.config.list_physical_devices("GPU"):
            raise Unsupported(self.device_reason("gpu"))

    # -- the source --------------------------------------------------------------------------
    def expression(self, call: Call) -> str:
        nd = np.ndim(call.logits)
        ax = call.axis % nd
        last = "x" if ax == nd - 1 else f"tf.transpose(x, {[i for i in range(nd) if i != ax] + [ax]})"
        return self.render(API[(call.op, call.variant)], call, axis=call.axis, last=last, C=np.shape(call.logits)[ax])

    def step_source(self, call: Call) -> str:
        if call.check == "forward":
            lines = [self.step_header(call), "    " + self.forward_return(call)]
        elif call.check == "grad2":  # nested tapes: the gradient, differentiated again along v (S25)
            wrt = "[x, y]" if self.wrt_y(call) else "[x]"
            lines = [self.step_header(call), "    with tf.GradientTape() as outer:", "        outer.watch(x)"]
            if self.wrt_y(call):
                lines.append("        outer.watch(y)")
            lines += ["        with tf.GradientTape() as inner:", "            inner.watch(x)",
                      f"            out = {self.loss_source(call)}",
                      "        d = inner.gradient(out, x, output_gradients=tf.cast(g, out.dtype))",
                      f"    return tuple(outer.gradient(d, {wrt}, output_gradients=tf.cast(v, d.dtype)))"]
        else:
            dense = self.wrt_y(call)
            lines = [self.step_header(call), "    with tf.GradientTape() as tape:", "        tape.watch(x)"]
            if dense:
                lines.append("        tape.watch(y)")
            # A variant may return another dtype than its input (Keras computes in floatx): the
            # cotangent takes the output's dtype, its values are exact in all.
            lines += [f"        out = {self.loss_source(call)}",
                      f"    return tuple(tape.gradient(out, {'[x, y]' if dense else '[x]'}, "
                      "output_gradients=tf.cast(g, out.dtype)))"]
        if call.mode == "jit":
            lines.append("step = tf.function(step, jit_compile=True)")
        return "\n".join(lines)

    def context_source(self, call: Call) -> str:
        return f"with tf.device({'/GPU:0' if call.device == 'gpu' else '/CPU:0'!r}):"

    def input_source(self, name: str, a: np.ndarray, call: Call) -> str:
        shape = np.shape(a) if np.size(a) == 0 else None  # `[]` alone has shape (0,)
        src = literal(a, call, name)
        if np.asarray(a).dtype.kind in "iu":
            return f"tf.constant({src}, dtype=tf.int64, shape={shape!r})" if shape else f"tf.constant({src}, dtype=tf.int64)"
        # via float64, which holds every value of the smaller formats exactly
        const = f"tf.constant({src}, dtype=tf.float64, shape={shape!r})" if shape else f"tf.constant({src}, dtype=tf.float64)"
        return f"tf.cast({const}, tf.{call.dtype})"

    def make_input(self, name: str, a: np.ndarray, call: Call) -> Any:
        tf = self.tf
        if a.dtype.kind in "iu":
            return tf.constant(a, dtype=tf.int64)
        return tf.cast(tf.constant(np.asarray(a, dtype=np.float64)), getattr(tf, call.dtype))

    def result_source(self) -> str:
        return "print([tf.cast(o, tf.float64).numpy().tolist() for o in outs])"

    def convert(self, o: Any) -> tuple[np.ndarray, str, str]:
        tf = self.tf
        return tf.cast(o, tf.float64).numpy(), dtype_name(o.dtype.name), "gpu" if "GPU" in o.device.upper() else "cpu"
