"""JAX adapter: jax.nn.softmax, jax.nn.log_softmax, jax.nn.logsumexp,
optax.softmax_cross_entropy and optax.softmax_cross_entropy_with_integer_labels; gradients
with jax.vjp; `jit` mode is jax.jit. 64-bit types are enabled only inside this adapter's
calls (jax.enable_x64 as a context manager), never globally."""

from __future__ import annotations

import importlib.util
from typing import Any, Callable

import numpy as np

from .base import Adapter, Call, Output, Unsupported, compile_cache_dir, dtype_name, format_array


class JaxAdapter(Adapter):
    name = "jax"
    variants = {"logsumexp": ("scipy",)}

    def __init__(self) -> None:
        self._jitted: dict[tuple, Callable] = {}
        self._configured = False

    def available(self) -> tuple[bool, str]:
        for mod in ("jax", "optax"):
            if importlib.util.find_spec(mod) is None:
                return False, f"{mod} is not installed (pip install -e '.[jax]')"
        return True, ""

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

    def device_reason(self, device: str) -> str:
        return "jax has no GPU backend here (install jax[cuda12] on a CUDA machine)"

    def fn(self, op: str, variant: str, axis: int) -> Callable:
        import jax
        import optax

        lse = jax.scipy.special.logsumexp if variant == "scipy" else jax.nn.logsumexp
        return {
            "softmax": lambda x, y: jax.nn.softmax(x, axis=axis),
            "log_softmax": lambda x, y: jax.nn.log_softmax(x, axis=axis),
            "logsumexp": lambda x, y: lse(x, axis=axis),
            "softmax_cross_entropy": lambda x, y: optax.softmax_cross_entropy(x, y, axis=axis),
            "sparse_softmax_cross_entropy":
                lambda x, y: optax.softmax_cross_entropy_with_integer_labels(x, y, axis=axis),
        }[op]

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

    def run(self, call: Call) -> Output:
        import jax
        import jax.numpy as jnp

        self._configure()
        with jax.enable_x64(True):
            devs = self._devices(call.device)
            if not devs:
                raise Unsupported(self.device_reason(call.device))
            dev = devs[0]
            f = self.fn(call.op, call.variant, call.axis)
            dense = call.op == "softmax_cross_entropy"

            def put(a: np.ndarray | None) -> Any:
                if a is None:
                    return None
                return jax.device_put(jnp.asarray(a, dtype=a.dtype), dev)

            x, y = put(call.logits), put(call.labels)
            if call.check == "grad":
                def step(x: Any, y: Any, g: Any) -> tuple:
                    if dense:
                        _, vjp = jax.vjp(f, x, y)
                        return vjp(g)
                    _, vjp = jax.vjp(lambda x: f(x, y), x)
                    return vjp(g)
            else:
                def step(x: Any, y: Any, g: Any) -> tuple:
                    return (f(x, y),)
            if call.mode == "jit":
                key = (call.op, call.variant, call.check, call.axis)
                step = self._jitted.setdefault(key, jax.jit(step))
            g = put(call.cotangent) if call.check == "grad" else None
            outs = step(x, y, g)
            names = ("out",) if call.check == "forward" else (("d_logits", "d_labels") if dense else ("d_logits",))
            arrays, dts, where = {}, {}, {}
            for n, o in zip(names, outs):
                o.block_until_ready()
                dts[n] = dtype_name(o.dtype)
                plat = next(iter(o.devices())).platform
                where[n] = "gpu" if plat in ("gpu", "cuda", "rocm") else plat
                arrays[n] = np.asarray(o.astype(jnp.float64))
        return Output(arrays, dts, where)

    def repro(self, call: Call) -> str:
        ax = call.axis
        lines = ["import jax, jax.numpy as jnp, optax", "jax.config.update('jax_enable_x64', True)",
                 f"x = jnp.asarray({format_array(call.logits, call.dtype, call)}, dtype=jnp.{call.dtype})"]
        if call.labels is not None:
            if call.op == "sparse_softmax_cross_entropy":
                lines.append(f"y = jnp.asarray({format_array(call.labels, call.dtype, call, 'labels') if np.size(call.labels) > 256 else repr(np.asarray(call.labels).tolist())})")
            else:
                lines.append(f"y = jnp.asarray({format_array(call.labels, call.dtype, call, 'labels')}, dtype=jnp.{call.dtype})")
        body = {
            "softmax": f"jax.nn.softmax(x, axis={ax})",
            "log_softmax": f"jax.nn.log_softmax(x, axis={ax})",
            "logsumexp": f"jax.nn.logsumexp(x, axis={ax})",
            "softmax_cross_entropy": f"optax.softmax_cross_entropy(x, y, axis={ax})",
            "sparse_softmax_cross_entropy": f"optax.softmax_cross_entropy_with_integer_labels(x, y, axis={ax})",
        }[call.op]
        lines.append(f"f = lambda x: {body}")
        if call.mode == "jit":
            lines.append("f = jax.jit(f)")
        if call.check == "grad":
            lines.append(f"g = jnp.asarray({format_array(call.cotangent, call.dtype, call, 'cotangent')}, dtype=jnp.{call.dtype})")
            lines.append("print(jax.vjp(f, x)[1](g)[0])")
        else:
            lines.append("print(f(x))")
        return "\n".join(lines)
