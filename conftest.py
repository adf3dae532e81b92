"""Registers the harness's pytest plugin when the package is not installed with its
pytest11 entry point (a plain clone); installed, the entry point registers it.

In this repository only, the plugin's options under their old names (`--suite`, `--framework`,
... before they carried the `--harness-` prefix) stop the run with a message naming the new
one. An old name that another plugin already owns (pytest-timeout's `--timeout`) is left to it.
"""

import os
from importlib.metadata import entry_points

import pytest

from harness import flags

_installed = any(ep.value == "harness.plugin" for ep in entry_points(group="pytest11"))
pytest_plugins = [] if _installed else ["harness.plugin"]


def _taken(parser: pytest.Parser) -> set[str]:
    """Option names other plugins (loaded before this conftest) have added."""
    names: set[str] = set()
    for group in [getattr(parser, "_anonymous", None), *getattr(parser, "_groups", [])]:
        for opt in getattr(group, "options", []):
            names.update(opt.names())
    return names


def pytest_addoption(parser: pytest.Parser) -> None:
    taken = _taken(parser)
    group = parser.getgroup("harness-renamed", "renamed: the harness's options now carry the --harness- prefix")
    for f in flags.plugin_flags():
        old = f"--{f.name}"
        if old not in taken:
            kw = {"action": "store_true"} if f.kind == "bool" else {"action": "append"}
            group.addoption(old, dest=f"harness_renamed_{f.dest}", default=None, help=f"renamed: {flags.PLUGIN_PREFIX}{f.name}",
                            **kw)


@pytest.hookimpl(tryfirst=True, optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """Under `-n N`, each conformance unit (framework, device, dtype, mode) to one worker: it compiles
    its programs once (harness.plugin.xdist_scheduler)."""
    from harness.plugin import xdist_scheduler

    return xdist_scheduler(config, log)


def pytest_configure(config: pytest.Config) -> None:
    used = [f for f in flags.plugin_flags() if getattr(config.option, f"harness_renamed_{f.dest}", None)]
    if used:
        raise pytest.UsageError(
            "the harness's pytest options carry the prefix --harness- (so that installing the harness leaves "
            "other projects' --device, --dtype or --timeout alone): "
            + ", ".join(f"--{f.name} is now {flags.PLUGIN_PREFIX}{f.name}" for f in used))


# Property tests: random examples on a developer's machine (new ones each run, failures kept in
# .hypothesis/), a fixed derandomized set in CI ($CI, which GitHub Actions and .ci/run set), so
# that a CI verdict is reproducible and a failure there replays anywhere with CI=1. No deadline
# in either: a time limit per example fails at random on a loaded machine (issue 23).
try:
    from hypothesis import settings as _settings
except ImportError:  # the test extra brings it; the harness's plugin does not need it
    pass
else:
    _settings.register_profile("ci", derandomize=True, print_blob=True, deadline=None)
    _settings.register_profile("dev", deadline=None)
    _settings.load_profile("ci" if os.environ.get("CI") else "dev")
