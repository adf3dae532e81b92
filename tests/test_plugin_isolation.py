"""Installing the harness must not break anyone's pytest (issue 22).

The package's pytest11 entry point loads its plugin into every pytest run of the environment.
Each test here builds a throw-away project that has nothing to do with the harness, runs its
pytest in a subprocess of this environment (where the plugin is installed), and asserts that
the project's tests run and pass, that the plugin imported nothing heavy and wrote nothing,
with pytest-xdist present or disabled, with pytest-timeout owning `--timeout`, and with the
project's own conftest adding `--device`, `--dtype` and `--timeout`.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

INSTALLED = any(ep.value == "harness.plugin" for ep in entry_points(group="pytest11"))
pytestmark = pytest.mark.skipif(not INSTALLED, reason="the package is not installed (pip install -e .): "
                                "its plugin loads into other projects only through the entry point")

UNRELATED = '''
import os
import sys


def test_unrelated():
    assert sum(range(4)) == 6


def test_the_harness_plugin_loaded_and_did_nothing():
    assert "harness.plugin" in sys.modules  # the entry point did load it
    heavy = {"numpy", "ml_dtypes", "flint", "mpmath", "gmpy2", "jinja2", "torch", "tensorflow", "jax",
             "harness.runner", "harness.reference", "harness.cases", "harness.adapters"} & set(sys.modules)
    assert not heavy, heavy
    assert not [k for k in os.environ if k.startswith("HARNESS_")]
'''

OWN_OPTIONS_CONFTEST = '''
def pytest_addoption(parser):
    parser.addoption("--device", default="cpu", help="the project's own device option")
    parser.addoption("--dtype", default="float32", help="the project's own dtype option")
    parser.addoption("--timeout", default="10", help="the project's own timeout option")
'''

OWN_OPTIONS_TEST = '''
def test_own_options(request):
    assert request.config.getoption("--device") == "cuda:1"
    assert request.config.getoption("--dtype") == "bf16"
    assert request.config.getoption("--timeout") == "3"
'''

HAS_XDIST = importlib.util.find_spec("xdist") is not None
HAS_TIMEOUT = importlib.util.find_spec("pytest_timeout") is not None


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def _run(tmp_path: Path, args: list[str], conftest: str | None = None, extra_test: str | None = None,
         expect_passed: int = 2) -> str:
    proj = tmp_path / "project"
    proj.mkdir()
    (proj / "test_unrelated.py").write_text(UNRELATED)
    if conftest:
        (proj / "conftest.py").write_text(conftest)
    if extra_test:
        (proj / "test_own.py").write_text(extra_test)
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "HARNESS_", "COV_"))}
    env.update(HOME=str(home), XDG_CACHE_HOME=str(home / ".cache"), PYTHONDONTWRITEBYTECODE="1")
    before = _files(proj)
    p = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rA", *args], cwd=proj, env=env,
                       capture_output=True, text=True, timeout=300)
    out = p.stdout + p.stderr
    assert p.returncode == 0, out
    assert f"{expect_passed} passed" in out, out
    assert "INTERNALERROR" not in out and "Traceback" not in out, out
    assert _files(proj) == before, f"files written under the project: {_files(proj) - before}"
    assert not any(home.iterdir()), f"files written under HOME: {list(home.rglob('*'))}"
    return out


def test_plain_project_runs(tmp_path):
    _run(tmp_path, [])


def test_without_xdist(tmp_path):
    """The plugin's xdist hooks are optional: pytest validates hooks against the plugins that
    define them, and without xdist `pytest_configure_node` is unknown."""
    out = _run(tmp_path, ["-p", "no:xdist"])
    assert "PluginValidationError" not in out


@pytest.mark.skipif(not HAS_XDIST, reason="pytest-xdist not installed")
def test_under_xdist(tmp_path):
    _run(tmp_path, ["-n", "2"])


@pytest.mark.skipif(not HAS_TIMEOUT, reason="pytest-timeout not installed (the test extra brings it)")
def test_beside_pytest_timeout(tmp_path):
    out = _run(tmp_path, ["--timeout", "60"])
    assert "timeout: 60.0s" in out  # pytest-timeout owns --timeout and reports it in the header


def test_project_with_its_own_device_dtype_timeout_options(tmp_path):
    # pytest-timeout would claim --timeout itself (a conflict between it and this project, not
    # ours): disable it for this project, as such a project does.
    _run(tmp_path, ["-p", "no:timeout", "--device", "cuda:1", "--dtype", "bf16", "--timeout", "3"],
         conftest=OWN_OPTIONS_CONFTEST, extra_test=OWN_OPTIONS_TEST, expect_passed=3)


def test_the_plugin_options_carry_one_prefix(tmp_path):
    from harness import flags

    proj = tmp_path / "p"
    proj.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "HARNESS_"))}
    p = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--help"], cwd=proj, env=env,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    section = p.stdout.split("softmax-family conformance harness")[1].split("\n\n")[0]
    added = [w.split("=")[0] for w in section.split() if w.startswith("--")]
    assert added and all(a.startswith(flags.PLUGIN_PREFIX) for a in added), added
    assert sorted(set(added)) == sorted(flags.PLUGIN_PREFIX + f.name for f in flags.plugin_flags())
