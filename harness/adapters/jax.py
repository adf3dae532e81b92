"""JAX adapter: jax.nn.softmax, jax.nn.log_softmax, jax.nn.logsumexp,
optax.softmax_cross_entropy and optax.softmax_cross_entropy_with_integer_labels; gradients
with jax.vjp; `jit` mode is jax.jit around the whole step. 64-bit types are enabled only inside
this adapter's calls (`with jax.enable_x64(True)`, in the repro snippet too), never globally.
Every call is the source its repro snippet prints (base.SourceAdapter)."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from .base import Call, SourceAdapter, Unsupported, compile_cache_dir, dtype_name, empty_shape, literal, with_scale

#: The op as users write it, by (op, variant): `{axis}` is the class axis, `{last}` the logits with
#: it moved last, `{C}` the number of classes; `{y}` the labels and `{kw}` the options' keyword
#: arguments (OPTIONS).
API = {
    ("softmax", "default"): "jax.nn.softmax(x, axis={axis}{kw})",
    ("log_softmax", "default"): "jax.nn.log_softmax(x, axis={axis}{kw})",
    ("logsumexp", "default"): "jax.nn.logsumexp(x, axis={axis}{kw})",
    ("logsumexp", "scipy"): "jax.scipy.special.logsumexp(x, axis={axis}{kw})",
    ("softmax_cross_entropy", "default"): "optax.softmax_cross_entropy(x, {y}, axis={axis}{kw})",
    ("sparse_softmax_cross_entropy", "default"): "optax.softmax_cross_entropy_with_integer_labels(x, {y}, axis={axis}{kw})",
    # optax's losses take no smoothing: users smooth the labels with optax.smooth_labels (over the
    # last axis: moved there and back for another class axis), one-hot first for integer labels.
    ("softmax_cross_entropy", "smooth_labels"): "optax.softmax_cross_entropy(x, {y}, axis={axis})",
    ("sparse_softmax_cross_entropy", "smooth_labels"): "optax.softmax_cross_entropy({last}, {y})",
    # ... and no class weights, ignored label or reduction: users index the weights, mask and
    # reduce (OPTIONS).
    ("softmax_cross_entropy", "composed"): "optax.softmax_cross_entropy(x, {y}, axis={axis})",
    ("sparse_softmax_cross_entropy", "composed"): "optax.softmax_cross_entropy_with_integer_labels(x, {y}, axis={axis})",
}
#: How each call takes the options (base.SourceAdapter.render).
# jax.nn's ops and optax's losses take a mask (where=): masked entries left out (S22).
_WHERE = {"where": "where=jnp.asarray({v})"}
_REDUCE = {"by_value": {"sum": {"reduce": "jnp.sum({out})"}, "mean": {"reduce": "jnp.mean({out})"}}}
OPTIONS = {
    ("softmax_cross_entropy", "smooth_labels"): {
        "reduction": _REDUCE,
        "label_smoothing": {"y": "{from_last}optax.smooth_labels({to_last}{y}{to_last_end}, {v}){from_last_end}"}},
    ("sparse_softmax_cross_entropy", "smooth_labels"): {
        "reduction": _REDUCE,
        "label_smoothing": {"y": "optax.smooth_labels(jax.nn.one_hot({y}, {C}, dtype=x.dtype), {v})"}},
    ("softmax_cross_entropy", "composed"): {"reduction": _REDUCE},
    **{(op, "default"): _WHERE for op in ("softmax", "log_softmax", "softmax_cross_entropy",
                                           "sparse_softmax_cross_entropy")},
    # jax.nn.logsumexp and jax.scipy.special.logsumexp take scale weights and return the sign (S23);
    # b is the step's second input (y).
    ("logsumexp", "default"): {**_WHERE, "b": "b={y}", "return_sign": "return_sign={v}"},
    ("logsumexp", "scipy"): {"b": "b={y}", "return_sign": "return_sign={v}"},
    ("sparse_softmax_cross_entropy", "composed"): {
        "reduction": {"by_value": {"sum": {"reduce": "jnp.sum({out})"},
                                   "mean": {"reduce": "jnp.sum({out}) / jnp.sum({den})",
                                            "plain": "jnp.mean({out})"}}},
        "weights": {"out": "jnp.asarray({v}, dtype=x.dtype)[{y}] * {out}",
                    "den": "jnp.asarray({v}, dtype=x.dtype)[{y}]"},
        "ignore_index": {"y": "jnp.where({y} == {v}, 0, {y})",
                         "out": "jnp.where(y == {v}, jnp.zeros((), x.dtype), {out})",
                         "den": "(y != {v}).astype(x.dtype)"}},
}


with_scale(API, OPTIONS)


class JaxAdapter(SourceAdapter):
    name = "jax"
    requires = ("jax", "optax")
    extra = "jax"
    variants = {"logsumexp": ("scipy",), "softmax_cross_entropy": ("smooth_labels", "composed"),
                "sparse_softmax_cross_entropy": ("smooth_labels", "composed")}
    option_variants = {"smooth_labels": ("label_smoothing",), "composed": ("weights", "ignore_index", "reduction")}
    options = OPTIONS
    #: Eager dispatch compiles each primitive per shape and dtype (about 15 of them, 36 ms each, for a
    #: softmax gradient): the quick suite runs each case's eager forward and grad in one dtype, not
    #: one of each pair (Adapter.quick_thinning). Keras on JAX inherits it.
    quick_thinning = {"eager": 2}

    imports = "import jax\nimport jax.numpy as jnp\nimport jax.scipy.special\nimport numpy as np\nimport optax"

    def __init__(self) -> None:
        super().__init__()
        self._configured = False

    def versions(self) -> dict[str, str]:
        import jax
        import jaxlib
        import optax

        v = {"jax": jax.__version__, "jaxlib": jaxlib.__version__, "optax": optax.__version__}
        try:
            v["backend"] = jax.default_backend()
        except RuntimeError:
            pass
        return v

    def _devices(self, kind: str) -> list:
        import jax

        try:
            return jax.devices("gpu" if kind == "gpu" else "cpu")
        except RuntimeError:
            return []

    def devices(self) -> dict[str, str | None]:
        gpus = self._devices("gpu")
        return {"cpu": "cpu", "gpu": (getattr(gpus[0], "device_kind", "gpu") if gpus else None)}

    def thread_env(self, n: int) -> dict[str, str]:
        # XLA:CPU reads its thread pool's size from XLA_FLAGS when the backend starts.
        flags = [f for f in os.environ.get("XLA_FLAGS", "").split()
                 if not f.startswith(("--xla_cpu_multi_thread_eigen", "intra_op_parallelism_threads"))]
        flags += ["--xla_cpu_multi_thread_eigen=" + ("false" if n == 1 else "true"), f"intra_op_parallelism_threads={n}"]
        return {**super().thread_env(n), "XLA_FLAGS": " ".join(flags)}

    def threads_in_force(self) -> dict[str, Any]:
        return {"XLA_FLAGS": os.environ.get("XLA_FLAGS", "")}

    def determinism_flags(self) -> dict[str, Any]:
        # --xla_gpu_deterministic_ops (GPU) and the CPU thread settings travel in XLA_FLAGS.
        return {"XLA_FLAGS": os.environ.get("XLA_FLAGS", ""), "jax_default_matmul_precision":
                str(__import__("jax").config.jax_default_matmul_precision)}

    def device_reason(self, device: str) -> str:
        return "jax has no GPU backend here (install jax[cuda12] on a CUDA machine)"

    def _configure(self) -> None:
        """JAX's persistent compilation cache, for every executable however small (eager
        dispatch compiles each primitive per shape and dtype: most of a cold run's time).
        A cache directory the user configured wins."""
        import jax

        if self._configured:
            return
        self._configured = True
        d = compile_cache_dir("jax")
        if d is not None and not jax.config.jax_compilation_cache_dir:
            jax.config.update("jax_compilation_cache_dir", d)
            jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
            jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)

    def namespace(self) -> dict[str, Any]:
        import jax
        import jax.numpy as jnp
        import jax.scipy.special  # noqa: F401 - jax.scipy.special.logsumexp
        import optax

        self._configure()
        return {"jax": jax, "jnp": jnp, "np": np, "optax": optax}

    def forget_programs(self) -> None:
        super().forget_programs()
        import jax

        jax.clear_caches()  # the eager primitives' executables, per shape and dtype, too

    def check_device(self, call: Call) -> None:
        import jax

        with jax.enable_x64(True):
            if not self._devices(call.device):
                raise Unsupported(self.device_reason(call.device))

    # -- the source --------------------------------------------------------------------------
    def expression(self, call: Call) -> str:
        nd = np.ndim(call.logits)
        ax = call.axis % nd
        moved = ax != nd - 1
        return self.render(API[(call.op, call.variant)], call, axis=call.axis, C=np.shape(call.logits)[ax],
                           last=f"jnp.moveaxis(x, {call.axis}, -1)" if moved else "x",
                           to_last="jnp.moveaxis(" if moved else "", to_last_end=f", {call.axis}, -1)" if moved else "",
                           from_last="jnp.moveaxis(" if moved else "", from_last_end=f", -1, {call.axis})" if moved else "")

    def step_source(self, call: Call) -> str:
        if call.check == "forward":
            lines = [self.step_header(call), "    " + self.forward_return(call)]
        elif call.check == "grad2":  # the VJP of the VJP, along v (S25)
            lines = [self.step_header(call),
                     f"    d = lambda x, y: jax.vjp(lambda x: {self.loss_source(call)}, x)[1](g)[0]",
                     "    return jax.vjp(d, x, y)[1](v)" if self.wrt_y(call) else
                     "    return jax.vjp(lambda x: d(x, y), x)[1](v)"]
        elif self.wrt_y(call):
            lines = [self.step_header(call), f"    return jax.vjp(lambda x, y: {self.loss_source(call)}, x, y)[1](g)"
                     if self.loss_source(call) != "f(x, y)" else "    return jax.vjp(f, x, y)[1](g)"]
        else:
            lines = [self.step_header(call), f"    return jax.vjp(lambda x: {self.loss_source(call)}, x)[1](g)"]
        if call.mode == "jit":
            lines.append("step = jax.jit(step)")
        return "\n".join(lines)

    def context_source(self, call: Call) -> str:
        return "with jax.enable_x64(True):"

    def _device_source(self, call: Call) -> str:
        return f"jax.devices({'gpu' if call.device == 'gpu' else 'cpu'!r})[0]"

    def input_source(self, name: str, a: np.ndarray, call: Call) -> str:
        dt = "jnp.int64" if np.asarray(a).dtype.kind in "iu" else f"jnp.{call.dtype}"
        return (f"jax.device_put(jnp.asarray({literal(a, call, name)}, dtype={dt}){empty_shape(a)}, "
                f"{self._device_source(call)})")

    def make_input(self, name: str, a: np.ndarray, call: Call) -> Any:
        import jax
        import jax.numpy as jnp

        dev = self._devices(call.device)[0]
        return jax.device_put(jnp.asarray(a, dtype=jnp.int64 if a.dtype.kind in "iu" else a.dtype), dev)

    def result_source(self) -> str:
        return "print([np.asarray(o, dtype=np.float64).tolist() for o in outs])"

    def convert(self, o: Any) -> tuple[np.ndarray, str, str]:
        o.block_until_ready()
        plat = next(iter(o.devices())).platform
        return (np.asarray(o, dtype=np.float64), dtype_name(o.dtype),
                "gpu" if plat in ("gpu", "cuda", "rocm") else plat)
