"""PyTorch adapter: torch.softmax, F.log_softmax, torch.logsumexp, F.cross_entropy
(probability targets and class indices, reduction="none"); gradients with autograd;
`jit` mode is torch.compile(fullgraph=True)."""

from __future__ import annotations

import importlib.util
import os
import sys
from typing import Any, Callable

import numpy as np

from .base import (Adapter, Call, Output, Unsupported, compile_cache_dir, dtype_name, format_array,
                   scratch_dir, set_by_harness)


class TorchAdapter(Adapter):
    name = "torch"
    variants = {
        "softmax_cross_entropy": ("CrossEntropyLoss",),
        "sparse_softmax_cross_entropy": ("CrossEntropyLoss",),
    }

    def __init__(self) -> None:
        self._compiled: dict[tuple, Callable] = {}

    def available(self) -> tuple[bool, str]:
        if importlib.util.find_spec("torch") is None:
            return False, "torch is not installed (pip install -e '.[torch]')"
        return True, ""

    @property
    def torch(self) -> Any:
        # One inductor cache per job: two processes compiling the same kernel into one shared
        # cache raced here ("ImportError: ... .so: file too short"). Under the harness cache it
        # persists between runs (inductor's FX graph and AOTAutograd caches); with compile
        # caching off, a scratch directory and both caches disabled. The user's setting wins.
        given = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
        if "torch" not in sys.modules and (given is None or set_by_harness(given)):
            d = compile_cache_dir("torch")
            if d is None:
                os.environ.setdefault("TORCHINDUCTOR_FX_GRAPH_CACHE", "0")
                os.environ.setdefault("TORCHINDUCTOR_AUTOGRAD_CACHE", "0")
            os.environ["TORCHINDUCTOR_CACHE_DIR"] = d or scratch_dir("torchinductor")
        import torch

        return torch

    def versions(self) -> dict[str, str]:
        t = self.torch
        v = {"torch": t.__version__}
        if t.version.cuda:
            v["cuda"] = str(t.version.cuda)
        if t.backends.cudnn.is_available():
            v["cudnn"] = str(t.backends.cudnn.version())
        return v

    def devices(self) -> dict[str, str | None]:
        t = self.torch
        gpu = t.cuda.get_device_name(0) if t.cuda.is_available() else None
        return {"cpu": "cpu", "gpu": gpu}

    def device_reason(self, device: str) -> str:
        t = self.torch
        if device == "gpu" and not t.version.cuda:
            return f"torch {t.__version__} is a CPU-only build"
        return "torch sees no CUDA device"

    # -- the op as users write it ---------------------------------------------------------
    def fn(self, op: str, variant: str, axis: int, ndim: int) -> Callable:
        t = self.torch
        F = t.nn.functional

        def ce_input(x: Any) -> Any:
            # cross_entropy wants the class axis at dim 1 (or dim 0 for one unbatched row).
            ax = axis % ndim
            return x if ndim == 1 or ax == 1 else t.movedim(x, ax, 1)

        def ce_target(y: Any) -> Any:
            ax = axis % ndim
            return y if ndim == 1 or ax == 1 else t.movedim(y, ax, 1)

        def ce(x: Any, y: Any) -> Any:
            if variant == "CrossEntropyLoss":
                return t.nn.CrossEntropyLoss(reduction="none")(ce_input(x), y)
            return F.cross_entropy(ce_input(x), y, reduction="none")

        return {
            "softmax": lambda x, y: t.softmax(x, dim=axis),
            "log_softmax": lambda x, y: F.log_softmax(x, dim=axis),
            "logsumexp": lambda x, y: t.logsumexp(x, dim=axis),
            "softmax_cross_entropy": lambda x, y: ce(x, ce_target(y)),
            "sparse_softmax_cross_entropy": lambda x, y: ce(x, y),
        }[op]

    def _tensor(self, a: np.ndarray, dtype: str, device: str, grad: bool = False) -> Any:
        t = self.torch
        dev = "cuda" if device == "gpu" else "cpu"
        if a.dtype.kind in "iu":
            return t.tensor(a, dtype=t.int64, device=dev)
        # bfloat16 has no numpy interchange: go through float32, which holds it exactly.
        x = t.tensor(np.asarray(a, dtype=np.float32 if dtype == "bfloat16" else a.dtype), device=dev)
        x = x.to(getattr(t, dtype))
        return x.requires_grad_(grad)

    def run(self, call: Call) -> Output:
        t = self.torch
        if call.device == "gpu" and not t.cuda.is_available():
            raise Unsupported(self.device_reason("gpu"))
        f = self.fn(call.op, call.variant, call.axis, call.logits.ndim)
        dense = call.op == "softmax_cross_entropy"
        grad = call.check == "grad"
        x = self._tensor(call.logits, call.dtype, call.device, grad)
        y = None if call.labels is None else self._tensor(call.labels, call.dtype, call.device, grad and dense)
        if call.mode == "jit":
            # As users do: compile the forward; autograd runs the backward AOTAutograd compiled.
            key = (call.op, call.variant, call.axis, call.logits.ndim)
            if key not in self._compiled:
                import torch._dynamo

                # Never fall back to eager silently after too many recompilations.
                torch._dynamo.config.recompile_limit = 100000
                torch._dynamo.config.cache_size_limit = 100000
                # dynamic=True: one compiled graph per (op, rank, dtype), not one per shape; every
                # call still runs inductor-generated kernels, never the eager ones.
                self._compiled[key] = t.compile(f, fullgraph=True, dynamic=True)
            f = self._compiled[key]

        def step(x: Any, y: Any, g: Any) -> tuple:
            out = f(x, y)
            if not grad:
                return (out,)
            return t.autograd.grad(out, (x, y) if dense else (x,), grad_outputs=g)

        g = None
        if grad:
            g = self._tensor(call.cotangent, call.dtype, call.device)
        outs = step(x, y, g)
        names = ("out",) if not grad else (("d_logits", "d_labels") if dense else ("d_logits",))
        arrays, dts, devs = {}, {}, {}
        for n, o in zip(names, outs):
            dts[n] = dtype_name(o.dtype)
            devs[n] = "gpu" if o.device.type == "cuda" else o.device.type
            arrays[n] = o.detach().to(t.float64).cpu().numpy()
        return Output(arrays, dts, devs)

    def repro(self, call: Call) -> str:
        dev = "cuda" if call.device == "gpu" else "cpu"
        ax = call.axis
        lines = ["import torch", "import torch.nn.functional as F",
                 f"x = torch.tensor({format_array(call.logits, call.dtype, call)}, dtype=torch.float64)"
                 f".to(device={dev!r}, dtype=torch.{call.dtype})"]
        if call.labels is not None:
            if call.op == "sparse_softmax_cross_entropy":
                lines.append(f"y = torch.tensor({format_array(call.labels, call.dtype, call, 'labels') if np.size(call.labels) > 256 else repr(np.asarray(call.labels).tolist())}, device={dev!r})")
            else:
                lines.append(f"y = torch.tensor({format_array(call.labels, call.dtype, call, 'labels')}, dtype=torch.float64)"
                             f".to(device={dev!r}, dtype=torch.{call.dtype})")
        nd = call.logits.ndim
        mv = "" if nd == 1 or ax % nd == 1 else f".movedim({ax}, 1)"
        expr = {
            "softmax": f"torch.softmax(x, dim={ax})",
            "log_softmax": f"F.log_softmax(x, dim={ax})",
            "logsumexp": f"torch.logsumexp(x, dim={ax})",
            "softmax_cross_entropy": f"F.cross_entropy(x{mv}, y{mv}, reduction='none')",
            "sparse_softmax_cross_entropy": f"F.cross_entropy(x{mv}, y, reduction='none')",
        }[call.op]
        if call.mode == "jit":
            lines.append(f"f = torch.compile(lambda x{', y' if call.labels is not None else ''}: {expr}, fullgraph=True)")
            expr = "f(x, y)" if call.labels is not None else "f(x)"
        if call.check == "grad":
            lines[2] = lines[2] + ".requires_grad_()"
            lines.append(f"out = {expr}")
            lines.append(f"g = torch.tensor({format_array(call.cotangent, call.dtype, call, 'cotangent')}, dtype=torch.float64)"
                         f".to(device={dev!r}, dtype=torch.{call.dtype})")
            lines.append("out.backward(g)")
            lines.append("print(x.grad)")
        else:
            lines.append(f"print({expr})")
        return "\n".join(lines)
