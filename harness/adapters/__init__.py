"""Adapter registry: the built-in adapters by name, plus any registered by other packages
under the entry point group ``harness.adapters`` (name = "module:Class"), plus any named in
the environment variable HARNESS_EXTRA_ADAPTERS ("name=module:Class,..."), which reaches
isolated worker processes too. A malformed HARNESS_EXTRA_ADAPTERS entry, or one that cannot be
imported, is bad input (exit 2) naming the variable, the entry and the valid form.

Every adapter `get` hands out has its `run` checked (base.check_output): an answer that is not
an Output of arrays of numbers is an AdapterOutputError, recorded as that adapter's defect."""

from __future__ import annotations

import contextlib
import functools
import os
import re
from importlib import import_module
from importlib.metadata import entry_points
from typing import Any, Callable, Iterator

from ..errors import HarnessInputError
from .base import Adapter, AdapterOutputError, Call, Output, Unsupported, check_output, portable_text

BUILTIN: dict[str, str] = {
    "torch": "harness.adapters.torch:TorchAdapter",
    "jax": "harness.adapters.jax:JaxAdapter",
    "tensorflow": "harness.adapters.tensorflow:TensorFlowAdapter",
    "numpy": "harness.adapters.numpy:NumpyAdapter",
    "scipy": "harness.adapters.scipy:ScipyAdapter",
    "onnxruntime": "harness.adapters.onnxruntime:OnnxRuntimeAdapter",
    "keras-tensorflow": "harness.adapters.keras:KerasTensorFlowAdapter",
    "keras-jax": "harness.adapters.keras:KerasJaxAdapter",
    "keras-torch": "harness.adapters.keras:KerasTorchAdapter",
}
#: The frameworks a run covers when none is named: the real ones (numpy is a yardstick); one that
#: is not installed is a skip with its reason (the run header's skipped_frameworks).
DEFAULT_FRAMEWORKS = ["tensorflow", "torch", "jax", "scipy", "onnxruntime", "keras-tensorflow", "keras-jax",
                      "keras-torch"]

_extra: dict[str, Callable[[], Adapter]] = {}
_cache: dict[str, Adapter] = {}


def register(name: str, factory: Callable[[], Adapter]) -> None:
    """Register an adapter factory at run time (tests, notebooks)."""
    _extra[name] = factory
    _cache.pop(name, None)


def unregister(name: str) -> None:
    """Forget an adapter registered at run time (harness.assert_conforms's, after its call); its
    instance, where one was made, is closed first (a Keras adapter's child process ends)."""
    _extra.pop(name, None)
    _close(_cache.pop(name, None))


def _close(adapter: Any) -> None:
    """End what an adapter instance started (a Keras adapter's child process). Adapters need not
    subclass Adapter (entry points, HARNESS_ADAPTERS): one without `close` has nothing to end."""
    close = getattr(adapter, "close", None)  # (not `callable`: the submodule harness.adapters.callable has its name here)
    if close is not None:
        close()


@contextlib.contextmanager
def registered(name: str, factory: Callable[[], Adapter]) -> Iterator[str]:
    """`name` registered for the block (register, then unregister however it ends)."""
    register(name, factory)
    try:
        yield name
    finally:
        unregister(name)


def _entry_points() -> dict[str, object]:
    return {ep.name: ep for ep in entry_points(group="harness.adapters")}


#: The environment variable naming extra adapters, and the form of its value.
ENV = "HARNESS_EXTRA_ADAPTERS"
ENV_FORM = "name=module:Class[,name2=module2:Class2]"
_DOTTED = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


def _env_error(entry: str, why: str) -> HarnessInputError:
    return HarnessInputError(f"the environment variable {ENV}: entry {entry!r} {why}", choices=[ENV_FORM])


def parse_target(target: str, entry: str | None = None) -> tuple[str, str]:
    """(module, attribute) of a "module:Class" target, or HarnessInputError naming `entry` (the
    HARNESS_EXTRA_ADAPTERS entry it came from; the target itself if None) and the valid form."""
    entry = target if entry is None else entry
    mod, sep, attr = target.partition(":")
    if not sep:
        raise _env_error(entry, "has no ':Class' after the module")
    if not _DOTTED.fullmatch(mod.strip()) or not _DOTTED.fullmatch(attr.strip()):
        raise _env_error(entry, f"names no module:Class ({target!r})")
    return mod.strip(), attr.strip()


def load_target(target: str, entry: str | None = None) -> Callable[[], Adapter]:
    """The class (factory) a "module:Class" target names, imported; HarnessInputError naming
    `entry` when the module cannot be imported or lacks the attribute. The isolated worker
    process loads the parent's run-time registrations with it too."""
    entry = target if entry is None else entry
    mod, attr = parse_target(target, entry)
    try:
        module = import_module(mod)
    except Exception as e:  # noqa: BLE001 - ImportError, or whatever the module raised on import
        raise _env_error(entry, f"cannot be imported: {type(e).__name__}: {e}") from None
    factory = module
    for part in attr.split("."):
        if not hasattr(factory, part):
            raise _env_error(entry, f"cannot be loaded: module {mod!r} has no attribute {attr!r}")
        factory = getattr(factory, part)
    return factory  # type: ignore[return-value]


def env_adapters() -> dict[str, str]:
    """name -> "module:Class" from HARNESS_EXTRA_ADAPTERS ("name=module:Class,..."; blank entries
    are skipped). A malformed entry, or one that takes a built-in name, is a HarnessInputError that
    names the variable, the entry and the valid form."""
    out: dict[str, str] = {}
    for part in os.environ.get(ENV, "").split(","):
        entry = part.strip()
        if not entry:
            continue
        name, sep, target = entry.partition("=")
        name, target = name.strip(), target.strip()
        if not sep:
            raise _env_error(entry, "has no 'name=' before the module:Class")
        if not _NAME.fullmatch(name):
            raise _env_error(entry, f"has no valid framework name before '=' ({name!r})")
        if name in BUILTIN:
            raise _env_error(entry, f"takes the name of the built-in framework {name!r}")
        if name in out:
            raise _env_error(entry, f"names the framework {name!r} a second time")
        parse_target(target, entry)
        out[name] = target
    return out


def is_callable_target(name: str) -> bool:
    """`module:function` (or `framework:module:function`): a callable under test, not a name."""
    return ":" in name and name not in _extra


def valid(name: str) -> bool:
    """A framework name the registries know, or a callable target (loaded when first used)."""
    return name in names() or is_callable_target(name)


def names() -> list[str]:
    return list(dict.fromkeys([*BUILTIN, *_entry_points(), *env_adapters(), *_extra]))


def get(name: str) -> Adapter:
    if name in _cache:
        return _cache[name]
    if name in _extra:
        adapter = _extra[name]()
    elif name in BUILTIN:
        mod, cls = BUILTIN[name].split(":")
        adapter = getattr(import_module(mod), cls)()
    elif name in (env := env_adapters()):
        adapter = load_target(env[name], f"{name}={env[name]}")()
    elif is_callable_target(name):  # --framework module:function: a user's kernel under test
        from .callable import from_target

        adapter = from_target(name)()
    else:
        eps = _entry_points()
        if name not in eps:
            raise HarnessInputError(f"unknown framework {name!r}", field="framework", choices=names())
        adapter = eps[name].load()()  # type: ignore[attr-defined]
    _cache[name] = _checked(adapter)
    return adapter


def meta(name: str) -> dict[str, Any]:
    """What the run header says of framework `name`: its versions, devices and the determinism
    settings in force (harness.invariance); an error string where the adapter fails to say."""
    adapter = get(name)
    try:
        m: dict[str, Any] = {"versions": adapter.versions(), "devices": adapter.devices(),
                             "modes": list(adapter.modes), "checks": list(adapter.checks) if adapter.checks else None}
    except Exception as e:  # noqa: BLE001 - a broken query must not stop the run
        return {"error": str(e)}
    try:
        m["determinism"] = adapter.determinism_flags()
    except Exception as e:  # noqa: BLE001
        m["determinism"] = {"error": str(e)}
    # The header is asked for in the run's main process, which (isolated) never runs a call: a
    # helper process the questions started (a Keras child, 1-3 GB) is not kept for the run.
    _close(adapter)
    return m


def _checked(adapter: Adapter) -> Adapter:
    """The adapter with its `run` checked: what it returns is read by base.check_output (an
    Output of arrays of numbers), else AdapterOutputError says what came back. Whoever registered
    the adapter, it is the one place the harness takes an adapter's answer from."""
    run = adapter.run
    if getattr(run, "_harness_checked", False):
        return adapter

    @functools.wraps(run)
    def checked_run(call: Call) -> Output:
        return check_output(run(call))

    checked_run._harness_checked = True  # type: ignore[attr-defined]
    adapter.run = checked_run  # type: ignore[method-assign]
    return adapter


__all__ = ["Adapter", "AdapterOutputError", "Call", "Output", "Unsupported", "get", "meta", "names", "register", "unregister",
           "env_adapters", "load_target", "parse_target", "portable_text", "DEFAULT_FRAMEWORKS"]
