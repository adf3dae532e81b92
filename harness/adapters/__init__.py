"""Adapter registry: the built-in adapters by name, plus any registered by other packages
under the entry point group ``harness.adapters`` (name = "module:Class"), plus any named in
the environment variable HARNESS_EXTRA_ADAPTERS ("name=module:Class,..."), which reaches
isolated worker processes too."""

from __future__ import annotations

import os
from importlib import import_module
from importlib.metadata import entry_points
from typing import Callable

from ..errors import HarnessInputError
from .base import Adapter, Call, Output, Unsupported

BUILTIN: dict[str, str] = {
    "torch": "harness.adapters.torch:TorchAdapter",
    "jax": "harness.adapters.jax:JaxAdapter",
    "tensorflow": "harness.adapters.tensorflow:TensorFlowAdapter",
    "numpy": "harness.adapters.numpy:NumpyAdapter",
}
#: The frameworks a run covers when none is named: the real ones (numpy is a yardstick).
DEFAULT_FRAMEWORKS = ["tensorflow", "torch", "jax"]

_extra: dict[str, Callable[[], Adapter]] = {}
_cache: dict[str, Adapter] = {}


def register(name: str, factory: Callable[[], Adapter]) -> None:
    """Register an adapter factory at run time (tests, notebooks)."""
    _extra[name] = factory
    _cache.pop(name, None)


def _entry_points() -> dict[str, object]:
    return {ep.name: ep for ep in entry_points(group="harness.adapters")}


def _env_adapters() -> dict[str, str]:
    out = {}
    for part in os.environ.get("HARNESS_EXTRA_ADAPTERS", "").split(","):
        if "=" in part:
            name, target = part.split("=", 1)
            out[name.strip()] = target.strip()
    return out


def names() -> list[str]:
    return list(dict.fromkeys([*BUILTIN, *_entry_points(), *_env_adapters(), *_extra]))


def get(name: str) -> Adapter:
    if name in _cache:
        return _cache[name]
    if name in _extra:
        adapter = _extra[name]()
    elif name in BUILTIN or name in _env_adapters():
        mod, cls = (BUILTIN.get(name) or _env_adapters()[name]).split(":")
        adapter = getattr(import_module(mod), cls)()
    else:
        eps = _entry_points()
        if name not in eps:
            raise HarnessInputError(f"unknown framework {name!r}", field="framework", choices=names())
        adapter = eps[name].load()()  # type: ignore[attr-defined]
    _cache[name] = adapter
    return adapter


__all__ = ["Adapter", "Call", "Output", "Unsupported", "get", "names", "register", "DEFAULT_FRAMEWORKS"]
