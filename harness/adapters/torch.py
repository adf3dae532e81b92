"""PyTorch adapter: torch.softmax, F.log_softmax, torch.logsumexp, F.cross_entropy
(probability targets and class indices, reduction="none"); gradients with autograd;
`jit` mode is torch.compile(fullgraph=True), its default, with the batch dims dynamic (see
function_source). Every call is the source its repro snippet prints (base.SourceAdapter)."""

from __future__ import annotations

import os
import sys
import warnings
from typing import Any

import numpy as np

from .base import (Call, SourceAdapter, Unsupported, compile_cache_dir, dtype_name, empty_shape, literal,
                   scratch_dir, set_by_harness, with_scale)

#: The op as users write it, by (op, variant): `{axis}` is the class axis; `{to1}` moves it to
#: dim 1, where F.cross_entropy wants the classes ("" where it is there already); `{y}` the labels
#: and `{kw}` the options' keyword arguments (OPTIONS).
API = {
    ("softmax", "default"): "torch.softmax(x, dim={axis})",
    ("log_softmax", "default"): "F.log_softmax(x, dim={axis})",
    ("logsumexp", "default"): "torch.logsumexp(x, dim={axis})",
    ("softmax_cross_entropy", "default"): "F.cross_entropy(x{to1}, {y}{to1}{kw})",
    ("softmax_cross_entropy", "CrossEntropyLoss"): "torch.nn.CrossEntropyLoss({args})(x{to1}, {y}{to1})",
    ("sparse_softmax_cross_entropy", "default"): "F.cross_entropy(x{to1}, {y}{kw})",
    ("sparse_softmax_cross_entropy", "CrossEntropyLoss"): "torch.nn.CrossEntropyLoss({args})(x{to1}, {y})",
}
# torch.logsumexp takes no scale weights: users transcribe scipy.special.logsumexp (S23).
API[("logsumexp", "composed")] = (
    "def f(x, y):\n"
    "    x = torch.where(y != 0, x, float('-inf'))  # scipy: an entry with b = 0 takes no part\n"
    "    m = torch.amax(x, dim={axis}, keepdim=True).detach()\n"
    "    m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))\n"
    "    s = torch.sum(y * torch.exp(x - m), dim={axis})\n"
    "    return {ret}")
#: How each call takes the options (base.SourceAdapter.render).
OPTIONS = {(op, v): {"reduction": "reduction={v}", "label_smoothing": "label_smoothing={v}"}
           for op in ("softmax_cross_entropy", "sparse_softmax_cross_entropy") for v in ("default", "CrossEntropyLoss")}
for _v in ("default", "CrossEntropyLoss"):
    OPTIONS[("sparse_softmax_cross_entropy", _v)].update(
        weights="weight=torch.tensor({v}, dtype=x.dtype, device=x.device)", ignore_index="ignore_index={v}")
# No torch op takes a mask: users fill the masked logits with -inf first (variant masked).
for (_op, _v), _t in list(API.items()):
    if _v == "default":
        API[(_op, "masked")] = _t
        OPTIONS[(_op, "masked")] = {
            **({"reduction": "reduction={v}"} if "{kw}" in _t else {}),
            "where": {"x": "{x}.masked_fill(~torch.tensor({v}, device=x.device), float('-inf'))"}}
OPTIONS[("logsumexp", "composed")] = {
    "b": {}, "where": OPTIONS[("logsumexp", "masked")]["where"],
    "return_sign": {"by_value": {False: {"ret": "torch.log(s) + m.squeeze({axis})"},
                                 True: {"ret": "torch.log(torch.abs(s)) + m.squeeze({axis}), torch.sign(s)"}}}}


with_scale(API, OPTIONS)


class TorchAdapter(SourceAdapter):
    name = "torch"
    requires = ("torch",)
    extra = "torch"
    variants = {
        "softmax": ("masked",), "log_softmax": ("masked",), "logsumexp": ("masked", "composed"),
        "softmax_cross_entropy": ("CrossEntropyLoss", "masked"),
        "sparse_softmax_cross_entropy": ("CrossEntropyLoss", "masked"),
    }
    option_variants = {"masked": ("where",), "composed": ("b",)}
    imports = "import torch\nimport torch.nn.functional as F"
    options = OPTIONS
    option_defaults = {"reduction": "none", "return_sign": False}

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

        if "torch.utils.mkldnn" not in sys.modules:
            # Inductor imports it on a process's first compile, and its class bodies warn
            # (DeprecationWarning: `torch.jit.script_method` is deprecated): the warning landed in
            # the framework_warnings of whichever compiled call came first in the process, so two
            # runs' records differed by their order. A warning of the process, not of a call.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                import torch.utils.mkldnn  # noqa: F401

        return torch

    #: jit_static: torch.compile(dynamic=False), the program of one shape, what a user's process
    #: runs while its sizes stay those of its first call. On the CPU its outputs equal jit's bit for
    #: bit (quick suite, forward and grad: 1743 of 1743; the class count is static in both, and
    #: dynamic=True's symbolic class count gave other bits on 208); a GPU's kernels choose their
    #: tiles from the static sizes. So it runs on a sample: one case in 8 (every case with `--mode`).
    modes = ("eager", "jit", "jit_static")
    sampled_modes = {"jit_static": 8}
    #: torch.compile's first call per op, options, dtype and class count: 1.6 s (inductor's C++
    #: kernels through g++), ten times JAX's or TF's jit: the quick suite compiles half its cases
    #: (Adapter.quick_thinning).
    quick_thinning = {"jit": 2}
    #: Why the output of a compiled call can differ from a fresh run of its snippet (repro.check).
    #: A kernel with symbolic sizes is generated on the first call that needs it and reused: with
    #: dynamic=True the first call's class count changed a later call's bits (tests/test_repro.py).
    #: jit keeps the class count static and that example no longer differs, but its batch sizes are
    #: symbolic; jit_static has no symbolic size.
    history_dependent = {
        "jit": "torch.compile generates a kernel for symbolic sizes on the first call of a compiled function "
               "and reuses it, in the process and through inductor's FX graph cache, and that kernel's output "
               "can depend on the first call: an output can depend on the calls before it (README, findings)",
    }

    def namespace(self) -> dict[str, Any]:
        t = self.torch
        return {"torch": t, "F": t.nn.functional}

    def forget_programs(self) -> None:
        super().forget_programs()
        self.torch._dynamo.reset()  # dynamo's guards and graphs, of every compiled function

    def versions(self) -> dict[str, str]:
        t = self.torch
        v = {"torch": t.__version__}
        if t.version.cuda:
            v["cuda"] = str(t.version.cuda)
        if t.backends.cudnn.is_available():
            v["cudnn"] = str(t.backends.cudnn.version())
        return v

    def set_threads(self, n: int) -> None:
        self.torch.set_num_threads(n)

    def threads_in_force(self) -> dict[str, Any]:
        t = self.torch
        return {"torch.get_num_threads": t.get_num_threads(), "torch.get_num_interop_threads": t.get_num_interop_threads()}

    def stream_context(self, k: int, device: str) -> Any:
        t = self.torch
        if device != "gpu" or not t.cuda.is_available():
            return None
        return t.cuda.stream(t.cuda.Stream())  # a fresh stream per variant: not the default one

    def determinism_flags(self) -> dict[str, Any]:
        t = self.torch
        return {"torch.are_deterministic_algorithms_enabled": t.are_deterministic_algorithms_enabled(),
                "torch.backends.cudnn.deterministic": bool(t.backends.cudnn.deterministic),
                "torch.backends.cudnn.benchmark": bool(t.backends.cudnn.benchmark),
                "CUBLAS_WORKSPACE_CONFIG": os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
                "torch.get_num_threads": t.get_num_threads()}

    def devices(self) -> dict[str, str | None]:
        t = self.torch
        gpu = t.cuda.get_device_name(0) if t.cuda.is_available() else None
        return {"cpu": "cpu", "gpu": gpu}

    def device_reason(self, device: str) -> str:
        t = self.torch
        if device == "gpu" and not t.version.cuda:
            return f"torch {t.__version__} is a CPU-only build"
        return "torch sees no CUDA device"

    def check_device(self, call: Call) -> None:
        if call.device == "gpu" and not self.torch.cuda.is_available():
            raise Unsupported(self.device_reason("gpu"))

    # -- the source --------------------------------------------------------------------------
    def expression(self, call: Call) -> str:
        nd = np.ndim(call.logits)
        ax = call.axis % nd
        to1 = "" if nd == 1 or ax == 1 else f".movedim({call.axis}, 1)"
        return self.render(API[(call.op, call.variant)], call, axis=call.axis, to1=to1)

    def function_source(self, call: Call) -> str:
        src = self.plain_function(call)
        # Never fall back to eager silently after too many recompilations (in the snippet too: a
        # replay of many snippets in one process would otherwise raise at the limit).
        limits = ("\nimport torch._dynamo\ntorch._dynamo.config.recompile_limit = 100000"
                  "\ntorch._dynamo.config.cache_size_limit = 100000")
        if call.mode == "jit":
            # As users do: compile the forward with torch.compile's default, and autograd runs the
            # AOT backward. The default specialises on every size until a size changes; then its
            # automatic dynamic shapes recompile with the changed dims symbolic. In training that
            # is the batch dims; the class count stays fixed. `step` marks the batch dims dynamic,
            # so every call runs that graph: what a user's process runs once its batch size has
            # changed, with the class count static, one graph per op, rank, class count and dtype.
            # Automatic marking is off: another case's class count must not make the class dim
            # symbolic, as it never does in one user's process (and a snippet could not replay it).
            src += (limits + "\n# Only the batch dims step marks are dynamic; nothing else becomes so by history."
                    "\ntorch._dynamo.config.automatic_dynamic_shapes = False"
                    "\n# The kernel is generated on the first call and reused: after other calls (or from"
                    "\n# inductor's FX graph cache) an output can differ in its last bits."
                    "\nf = torch.compile(f, fullgraph=True)")
        elif call.mode == "jit_static":
            # The program of this call's sizes alone: what a user's process runs while its sizes stay
            # those of its first call (torch.compile's default specialises on every size until one
            # changes); one graph per shape.
            src += limits + "\nf = torch.compile(f, fullgraph=True, dynamic=False)"
        return src

    def batch_dims(self, call: Call) -> list[tuple[str, tuple[int, ...]]]:
        """The dims of f's tensor inputs that vary between a user's batches: every dim of the
        logits but the class axis, and the same dims of the labels (all of them for class indices,
        which have no class axis). A size of 0 or 1 is still specialised, as dynamo does."""
        nd = np.ndim(call.logits)
        ax = call.axis % nd if nd else 0
        dims = [("x", tuple(d for d in range(nd) if d != ax))]
        if call.labels is not None and np.ndim(call.labels):
            ny = np.ndim(call.labels)
            dims.append(("y", tuple(d for d in range(ny) if d != ax) if ny == nd else tuple(range(ny))))
        return [(n, d) for n, d in dims if d]

    def step_source(self, call: Call) -> str:
        lines = [self.step_header(call)]
        if call.mode == "jit":
            lines += [f"    torch._dynamo.maybe_mark_dynamic({n}, {list(d)})  # the batch dims" for n, d in self.batch_dims(call)]
        wrt = "(x, y)" if self.wrt_y(call) else "(x,)"
        if call.check == "forward":
            lines.append("    " + self.forward_return(call))
        elif call.check == "grad2":  # the gradient's graph, differentiated again along v (S25)
            lines += [f"    d, = torch.autograd.grad({self.loss_source(call)}, (x,), grad_outputs=g, create_graph=True)",
                      f"    return torch.autograd.grad(d, {wrt}, grad_outputs=v)"]
        else:
            lines.append(f"    return torch.autograd.grad({self.loss_source(call)}, {wrt}, grad_outputs=g)")
        return "\n".join(lines)

    def _device(self, call: Call) -> str:
        return "cuda" if call.device == "gpu" else "cpu"

    def _requires_grad(self, name: str, call: Call) -> bool:
        return call.check != "forward" and (name == "x" or (name == "y" and self.wrt_y(call)))

    def input_source(self, name: str, a: np.ndarray, call: Call) -> str:
        dev = self._device(call)
        shape = empty_shape(a)  # `[]` alone is a float tensor of shape (0,)
        if np.asarray(a).dtype.kind in "iu":
            if shape:
                return f"torch.tensor([], dtype=torch.int64, device={dev!r}){shape}"
            return f"torch.tensor({literal(a, call, name)}, device={dev!r})"
        src = f"torch.tensor({literal(a, call, name)}, dtype=torch.float64){shape}.to({dev!r}, torch.{call.dtype})"
        return src + (".requires_grad_()" if self._requires_grad(name, call) else "")

    def make_input(self, name: str, a: np.ndarray, call: Call) -> Any:
        t = self.torch
        dev = self._device(call)
        if a.dtype.kind in "iu":
            return t.tensor(a, dtype=t.int64, device=dev)
        x = t.tensor(np.asarray(a, dtype=np.float64), dtype=t.float64).to(dev, getattr(t, call.dtype))
        return x.requires_grad_(self._requires_grad(name, call))

    def result_source(self) -> str:
        return "print([o.detach().double().cpu().tolist() for o in outs])"

    def convert(self, o: Any) -> tuple[np.ndarray, str, str]:
        t = self.torch
        dev = "gpu" if o.device.type == "cuda" else o.device.type
        return o.detach().to(t.float64).cpu().numpy(), dtype_name(o.dtype), dev
