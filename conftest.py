"""Registers the harness's pytest plugin when the package is not installed with its
pytest11 entry point (a plain clone); installed, the entry point registers it."""

import os
from importlib.metadata import entry_points

_installed = any(ep.value == "harness.plugin" for ep in entry_points(group="pytest11"))
pytest_plugins = [] if _installed else ["harness.plugin"]

# Property tests: random examples on a developer's machine (new ones each run, failures kept in
# .hypothesis/), a fixed derandomized set in CI ($CI, which GitHub Actions and .ci/run set), so
# that a CI verdict is reproducible and a failure there replays anywhere with CI=1.
try:
    from hypothesis import settings as _settings
except ImportError:  # the test extra brings it; the harness's plugin does not need it
    pass
else:
    _settings.register_profile("ci", derandomize=True, print_blob=True)
    if os.environ.get("CI"):
        _settings.load_profile("ci")
