"""examples/ as a user runs them: the package installed, a test suite outside the repository.

The examples are copied into a temporary directory and run there by pytest in a fresh process
(no repository on sys.path: `harness` comes from the installed package); each example passes or
fails as its docstring says (examples/test_examples.py asserts the failures it expects).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytest.importorskip("torch")


def test_examples_pass_outside_the_repository(tmp_path):
    dst = tmp_path / "project"
    shutil.copytree(ROOT / "examples", dst, ignore=shutil.ignore_patterns("__pycache__"))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTEST_XDIST_WORKER")}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist", "."],
                       cwd=dst, env=env, capture_output=True, text=True, timeout=1200)
    out = p.stdout + p.stderr
    assert p.returncode == 0, out[-5000:]
    assert " passed" in out and "failed" not in out
    check = subprocess.run([sys.executable, "-c", "import harness; print(harness.__file__)"], cwd=dst, env=env,
                           capture_output=True, text=True)
    assert str(dst) not in check.stdout  # the installed package, not a copy beside the examples
