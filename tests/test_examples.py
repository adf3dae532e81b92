"""examples/ as a user runs them: the package built as a wheel and installed, the examples a test
suite outside the repository.

The repository's package is built into a wheel (no network: the environment's setuptools),
installed into a temporary directory, and the examples, copied elsewhere, run there by pytest in a
fresh process with only that installation on the path: `harness` and its case library come from
the wheel. Each example passes or fails as its docstring says (examples/test_examples.py asserts
the failures it expects). They run under pytest-xdist, as a project's suite would.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytest.importorskip("torch")
pytest.importorskip("setuptools")


def _install_wheel(tmp: Path) -> Path:
    src = tmp / "src"
    src.mkdir()
    for f in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / f, src / f)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "harness", src / "harness", symlinks=True, ignore=ignore)
    shutil.copytree(ROOT / "cases", src / "cases", ignore=ignore)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", str(src), "--no-deps", "--no-build-isolation", "--no-index", "-w", str(tmp / "wheel")],
                   check=True, capture_output=True, cwd=tmp)
    (wheel,) = (tmp / "wheel").glob("*.whl")
    site = tmp / "site"
    subprocess.run([*pip, "install", "--no-deps", "--no-index", "--target", str(site), str(wheel)], check=True,
                   capture_output=True, cwd=tmp)
    return site


def test_examples_pass_with_the_installed_wheel_outside_the_repository(tmp_path):
    site = _install_wheel(tmp_path)
    dst = tmp_path / "project"
    shutil.copytree(ROOT / "examples", dst, ignore=shutil.ignore_patterns("__pycache__"))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTEST_XDIST_WORKER")}
    env.update(PYTHONPATH=str(site), TF_CPP_MIN_LOG_LEVEL="3")
    where = subprocess.run([sys.executable, "-c", "import harness, harness.cases as K; print(harness.__file__); "
                            "print(len(K.builtin_files()))"], cwd=dst, env=env, capture_output=True, text=True)
    path, n_files = where.stdout.split()
    assert path.startswith(str(site)) and int(n_files) >= 10, where.stderr  # the wheel's package and library
    # Under pytest-xdist where it is installed (the API runs in each worker), else in one process.
    par = ["-n", "2"] if importlib.util.find_spec("xdist") else []
    p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *par, "."],
                       cwd=dst, env=env, capture_output=True, text=True, timeout=1200)
    out = p.stdout + p.stderr
    assert p.returncode == 0, out[-5000:]
    assert " passed" in out and "failed" not in out
