"""TensorFlow adapter: tf.nn.softmax, tf.nn.log_softmax, tf.math.reduce_logsumexp,
tf.nn.softmax_cross_entropy_with_logits, tf.nn.sparse_softmax_cross_entropy_with_logits;
gradients with tf.GradientTape; `jit` mode is tf.function(jit_compile=True) (XLA)."""

from __future__ import annotations

import importlib.util
import os
import sys
from typing import Any, Callable

import numpy as np

from .base import (Adapter, Call, Output, Unsupported, compile_cache_dir, dtype_name, format_array,
                   set_by_harness)


class TensorFlowAdapter(Adapter):
    name = "tensorflow"
    variants = {"softmax_cross_entropy": ("keras",)}

    def __init__(self) -> None:
        self._compiled: dict[tuple, Callable] = {}

    def available(self) -> tuple[bool, str]:
        if importlib.util.find_spec("tensorflow") is None:
            return False, "tensorflow is not installed (pip install -e '.[tensorflow]')"
        return True, ""

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

    def devices(self) -> dict[str, str | None]:
        tf = self.tf
        gpus = tf.config.list_physical_devices("GPU")
        return {"cpu": "cpu", "gpu": gpus[0].name if gpus else None}

    def device_reason(self, device: str) -> str:
        tf = self.tf
        if not tf.test.is_built_with_cuda():
            return f"tensorflow {tf.__version__} is built without CUDA (tensorflow-cpu)"
        return "tensorflow sees no GPU"

    def fn(self, op: str, variant: str, axis: int, ndim: int) -> Callable:
        tf = self.tf

        def last(a: Any) -> Any:
            # The sparse op has no axis argument: its users move the class axis last.
            ax = axis % ndim
            if ax == ndim - 1:
                return a
            perm = [i for i in range(ndim) if i != ax] + [ax]
            return tf.transpose(a, perm)

        def dense(x: Any, y: Any) -> Any:
            if variant == "keras":
                loss = tf.keras.losses.CategoricalCrossentropy(from_logits=True, axis=axis, reduction=None)
                return loss(y, x)
            return tf.nn.softmax_cross_entropy_with_logits(labels=y, logits=x, axis=axis)

        return {
            "softmax": lambda x, y: tf.nn.softmax(x, axis=axis),
            "log_softmax": lambda x, y: tf.nn.log_softmax(x, axis=axis),
            "logsumexp": lambda x, y: tf.math.reduce_logsumexp(x, axis=axis),
            "softmax_cross_entropy": dense,
            "sparse_softmax_cross_entropy":
                lambda x, y: tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=last(x)),
        }[op]

    def run(self, call: Call) -> Output:
        tf = self.tf
        if call.device == "gpu" and not tf.config.list_physical_devices("GPU"):
            raise Unsupported(self.device_reason("gpu"))
        f = self.fn(call.op, call.variant, call.axis, call.logits.ndim)
        dense = call.op == "softmax_cross_entropy"
        name = "/GPU:0" if call.device == "gpu" else "/CPU:0"

        def const(a: np.ndarray | None) -> Any:
            if a is None:
                return None
            if a.dtype.kind in "iu":
                return tf.constant(a, dtype=tf.int64)
            # via float64, which holds every value of the smaller formats exactly
            return tf.cast(tf.constant(np.asarray(a, dtype=np.float64)), getattr(tf, call.dtype))

        if call.check == "grad":
            def step(x: Any, y: Any, g: Any) -> tuple:
                with tf.GradientTape() as tape:
                    tape.watch(x)
                    if dense:
                        tape.watch(y)
                    out = f(x, y)
                # A variant may return another dtype than its input (Keras computes in
                # floatx): the cotangent takes the output's dtype, its values are exact in all.
                return tuple(tape.gradient(out, [x, y] if dense else [x], output_gradients=tf.cast(g, out.dtype)))
        else:
            def step(x: Any, y: Any, g: Any) -> tuple:
                return (f(x, y),)
        with tf.device(name):
            x, y = const(call.logits), const(call.labels)
            g = const(call.cotangent) if call.check == "grad" else None
            if call.mode == "jit":
                key = (call.op, call.variant, call.check, call.axis, call.logits.ndim)
                step = self._compiled.setdefault(key, tf.function(step, jit_compile=True))
            outs = step(x, y, g)
        names = ("out",) if call.check == "forward" else (("d_logits", "d_labels") if dense else ("d_logits",))
        arrays, dts, devs = {}, {}, {}
        for n, o in zip(names, outs):
            if o is None:
                raise RuntimeError(f"tf.GradientTape returned no gradient for {n}")
            dts[n] = dtype_name(o.dtype.name)
            devs[n] = "gpu" if "GPU" in o.device.upper() else "cpu"
            arrays[n] = tf.cast(o, tf.float64).numpy()
        return Output(arrays, dts, devs)

    def repro(self, call: Call) -> str:
        ax = call.axis
        dev = "/GPU:0" if call.device == "gpu" else "/CPU:0"
        lines = ["import tensorflow as tf",
                 f"x = tf.cast(tf.constant({format_array(call.logits, call.dtype, call)}, dtype=tf.float64), tf.{call.dtype})"]
        if call.labels is not None:
            if call.op == "sparse_softmax_cross_entropy":
                lines.append(f"y = tf.constant({format_array(call.labels, call.dtype, call, 'labels') if np.size(call.labels) > 256 else repr(np.asarray(call.labels).tolist())}, dtype=tf.int64)")
            else:
                lines.append(f"y = tf.cast(tf.constant({format_array(call.labels, call.dtype, call, 'labels')}, dtype=tf.float64), tf.{call.dtype})")
        body = {
            "softmax": f"tf.nn.softmax(x, axis={ax})",
            "log_softmax": f"tf.nn.log_softmax(x, axis={ax})",
            "logsumexp": f"tf.math.reduce_logsumexp(x, axis={ax})",
            "softmax_cross_entropy": f"tf.nn.softmax_cross_entropy_with_logits(labels=y, logits=x, axis={ax})",
            "sparse_softmax_cross_entropy": "tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=x)",
        }[call.op]
        lines.append(f"f = tf.function(lambda x: {body}, jit_compile={call.mode == 'jit'})")
        lines.append(f"with tf.device({dev!r}):")
        if call.check == "grad":
            lines.append(f"    g = tf.cast(tf.constant({format_array(call.cotangent, call.dtype, call, 'cotangent')}, dtype=tf.float64), tf.{call.dtype})")
            lines.append("    with tf.GradientTape() as tape:")
            lines.append("        tape.watch(x)")
            lines.append("        out = f(x)")
            lines.append("    print(tape.gradient(out, x, output_gradients=g))")
        else:
            lines.append("    print(f(x))")
        return "\n".join(lines)
