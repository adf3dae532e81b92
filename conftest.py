"""Registers the harness's pytest plugin when the package is not installed with its
pytest11 entry point (a plain clone); installed, the entry point registers it."""

from importlib.metadata import entry_points

_installed = any(ep.value == "harness.plugin" for ep in entry_points(group="pytest11"))
pytest_plugins = [] if _installed else ["harness.plugin"]
