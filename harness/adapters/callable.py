"""Any callable as an adapter: a user's own kernel under test, with no class to write.

`callable_adapter(fn, framework)` makes an adapter class from a function that takes and returns
the framework's tensors (`fn(x)` for softmax, log_softmax and logsumexp; `fn(x, y)` for the two
cross-entropies, y the labels: probabilities, or class indices). It is the framework's own
adapter with one API entry per op, `user_fn(x, ...)`, so everything else is the framework's:
inputs made in the tested dtype on the device, gradients through the framework's autodiff (a
custom `torch.autograd.Function` or `jax.custom_vjp` inside `fn` is what gets differentiated),
the compiled mode as users compile, and a repro snippet that is the source that ran (it imports
`fn` from its module when it has one; a function defined in a notebook or a test body is named
and must be defined before the snippet is run).

What `fn` is called with follows its signature:
- the class axis: as `axis=` or `dim=` where `fn` takes one of them, else `fn` is run only on
  cases whose class axis is the last (the others are skips that say so);
- the op's options (ops.PARAMS: label_smoothing, weights, ignore_index, reduction, where, b,
  return_sign) as keywords of the same name where `fn` takes them; arrays (weights, where) as the
  framework's tensors, b as the step's second input. A case that sets an option `fn` does not
  take is a skip with the reason, never a call that silently ignores it. `scale` needs nothing
  from `fn`: the logits are multiplied by it before the call (S24), as for every adapter.
- losses return one loss per row (reduction "none"), unless `fn` takes `reduction`.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

from .. import ops as O
from .base import Adapter, Call, Unsupported, with_scale

#: The name the user's function has in the source that runs (and in the repro snippet).
FN = "user_fn"
#: The frameworks whose tensors a callable can take.
FRAMEWORKS = ("torch", "jax", "tensorflow")

#: How each framework builds an array option from its value's repr (weights, where).
_ARRAY = {
    "torch": ("torch.tensor({v}, dtype=x.dtype, device=x.device)", "torch.tensor({v}, device=x.device)"),
    "jax": ("jnp.asarray({v}, dtype=x.dtype)", "jnp.asarray({v})"),
    "tensorflow": ("tf.constant({v}, dtype=x.dtype)", "tf.constant({v})"),
}


def parameters(fn: Callable[..., Any]) -> tuple[set[str], bool]:
    """The keyword names `fn` takes, and whether it takes any (**kwargs)."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):  # a builtin or C function without a signature: positional only
        return set(), False
    names = {p.name for p in sig.parameters.values()
             if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    return names, any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values())


def import_line(fn: Callable[..., Any], target: str | None) -> str:
    """The snippet's line that binds `user_fn`: an import where `fn` lives in an importable
    module, else a comment that says what to define."""
    if target:
        mod, attr = target.split(":", 1)
        return f"from {mod} import {attr} as {FN}" if "." not in attr else f"import {mod}\n{FN} = {mod}.{attr}"
    mod, qual = getattr(fn, "__module__", None), getattr(fn, "__qualname__", repr(fn))
    if mod and mod != "__main__" and "<locals>" not in qual and "<lambda>" not in qual:
        return f"from {mod} import {qual} as {FN}" if "." not in qual else f"import {mod}\n{FN} = {mod}.{qual}"
    return f"# {FN} is {qual} (defined in {mod or 'an interactive session'}): define it before running this snippet"


def callable_adapter(fn: Callable[..., Any], framework: str, *, name: str | None = None,
                     target: str | None = None) -> type[Adapter]:
    """An adapter class that tests `fn`, a function of `framework`'s tensors (module docstring).
    `target` ("module:function") is how a fresh process finds `fn` (the isolated workers, the
    repro snippet); without it, `fn` is found by its module and name where it has them."""
    from . import get

    if framework not in FRAMEWORKS:
        from ..errors import HarnessInputError

        raise HarnessInputError(f"a callable under test is a function of torch, jax or tensorflow tensors, not "
                                f"{framework!r}", field="framework", choices=list(FRAMEWORKS))
    base = type(get(framework))
    kws, any_kw = parameters(fn)
    takes = lambda k: any_kw or k in kws  # noqa: E731
    axis_kw = next((k for k in ("axis", "dim") if k in kws), "axis" if any_kw else None)
    label = name or f"{framework}:{getattr(fn, '__qualname__', 'fn')}"
    wrap, mask = _ARRAY[framework]

    api: dict[tuple[str, str], str] = {}
    options: dict[tuple[str, str], dict[str, Any]] = {}
    for op in O.OP_NAMES:
        spec = O.OPS[op]
        args = ["x"] + (["{y}"] if spec.labels != "none" else [])
        if axis_kw:
            args.append(f"{axis_kw}={{axis}}")
        api[(op, "default")] = f"{FN}({', '.join(args)}{{kw}})"
        table: dict[str, Any] = {}
        for k in spec.params:
            if not takes(k):
                continue
            kind = O.PARAMS[k].kind
            if k == spec.input_param:  # logsumexp's b rides as the step's second input
                table[k] = f"{k}={{y}}"
            elif kind == "mask":
                table[k] = f"{k}={mask}"
            elif kind == "per_class":
                table[k] = f"{k}={wrap}"
            else:
                table[k] = f"{k}={{v}}"
        options[(op, "default")] = table
    with_scale(api, options)

    class CallableAdapter(base):  # type: ignore[valid-type, misc]
        __doc__ = f"{label}: the callable {getattr(fn, '__qualname__', fn)!r} under test, on {framework}."
        variants: dict[str, tuple[str, ...]] = {}
        option_variants: dict[str, tuple[str, ...]] = {}
        option_defaults = {"reduction": "none"} if takes("reduction") else {}
        history_dependent = base.history_dependent

        def namespace(self) -> dict[str, Any]:
            return {**super().namespace(), FN: fn}

        def expression(self, call: Call) -> str:
            nd = call.logits.ndim
            if axis_kw is None and call.axis % nd != nd - 1:
                raise Unsupported(f"{label} takes no axis or dim keyword: it runs on cases whose class axis is the "
                                  f"last, not axis {call.axis} of {nd}")
            return self.render(api[(call.op, "default")], call, axis=call.axis)

    CallableAdapter.name = label
    CallableAdapter.imports = base.imports + "\n" + import_line(fn, target)
    CallableAdapter.options = options
    CallableAdapter.__name__ = CallableAdapter.__qualname__ = "CallableAdapter"
    return CallableAdapter




def detect_framework(fn: Callable[..., Any]) -> str | None:
    """The framework `fn` belongs to (its own module), else the one whose modules `fn`'s module
    imports (torch, jax or tensorflow), when exactly one of them; None when none or several."""
    import types

    own = (getattr(fn, "__module__", None) or "").split(".")[0]
    if own in FRAMEWORKS:  # a framework's own function (torch.softmax, jax.nn.softmax)
        return own
    found = set()
    for v in getattr(fn, "__globals__", {}).values():
        mod = v if isinstance(v, types.ModuleType) else None
        root = (mod.__name__ if mod else getattr(v, "__module__", "") or "").split(".")[0]
        if root in FRAMEWORKS:
            found.add(root)
    return found.pop() if len(found) == 1 else None


def from_target(target: str) -> type[Adapter]:
    """The adapter of `--framework module:function` (or `torch:module:function`, naming the
    framework where the module does not tell): the function imported and wrapped; a class there
    is taken as an adapter class. HarnessInputError naming the field and the valid forms."""
    from importlib import import_module

    from ..errors import HarnessInputError

    forms = ["module:function", "torch:module:function", "jax:module:function", "tensorflow:module:function"]
    parts = target.split(":")
    fw = parts[0] if len(parts) == 3 and parts[0] in FRAMEWORKS else None
    mod, attr = (parts[1], parts[2]) if fw else (parts[0], parts[1]) if len(parts) == 2 else ("", "")
    if not mod or not attr:
        raise HarnessInputError(f"{target!r} is not a framework name nor module:function", field="framework",
                                choices=forms)
    try:
        obj: Any = import_module(mod)
    except Exception as e:  # noqa: BLE001 - ImportError, or whatever the module raised on import
        raise HarnessInputError(f"{target!r}: module {mod!r} cannot be imported: {type(e).__name__}: {e}",
                                field="framework") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise HarnessInputError(f"{target!r}: module {mod!r} has no attribute {attr!r}", field="framework")
        obj = getattr(obj, part)
    if isinstance(obj, type) and issubclass(obj, Adapter):
        return obj
    if not callable(obj):
        raise HarnessInputError(f"{target!r} is a {type(obj).__name__}, not a function", field="framework")
    fw = fw or detect_framework(obj)
    if fw is None:
        raise HarnessInputError(f"{target!r}: cannot tell whose tensors it takes (its module imports none or several "
                                f"of {', '.join(FRAMEWORKS)}); name the framework", field="framework", choices=forms)
    return callable_adapter(obj, fw, name=target, target=f"{mod}:{attr}")
