"""The CI workflow: valid YAML, valid against GitHub's workflow schema (check-jsonschema's
vendored copy, offline), and every tox env it calls exists in tox.ini."""

import configparser
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml")
ROOT = Path(__file__).resolve().parent.parent
WF = ROOT / ".github" / "workflows" / "conformance.yml"


def _tox_envs():
    cp = configparser.ConfigParser(interpolation=None)
    cp.read(ROOT / "tox.ini")
    return {s.split(":", 1)[1] for s in cp.sections() if s.startswith("testenv:")}


def test_workflow_parses_and_names_existing_tox_envs():
    wf = yaml.safe_load(WF.read_text())
    assert {"unit", "conformance", "report"} <= set(wf["jobs"])
    matrix = wf["jobs"]["conformance"]["strategy"]["matrix"]["include"]
    envs_in_matrix = {m["env"] for m in matrix}
    from harness.adapters import DEFAULT_FRAMEWORKS

    # Every default framework has its CPU job (the Keras ones by backend), and the GPU jobs theirs.
    assert envs_in_matrix == {*DEFAULT_FRAMEWORKS, "torch-gpu", "jax-gpu", "tensorflow-gpu", "onnxruntime-gpu"}
    gpu_runners = [m["runner"] for m in matrix if m["env"].endswith("-gpu")]
    assert all("self-hosted" in r and "gpu" in r for r in gpu_runners)
    called = set(re.findall(r"tox -e ([\w-]+)", WF.read_text())) - {"$"}
    called |= envs_in_matrix
    missing = called - _tox_envs()
    assert not missing, f"the workflow calls tox envs that tox.ini lacks: {missing}"


# Beside this interpreter first: `.venv/bin/python -m pytest` runs without the venv on PATH.
_BESIDE = Path(sys.executable).parent / "check-jsonschema"
CHECK_JSONSCHEMA = str(_BESIDE) if _BESIDE.exists() else shutil.which("check-jsonschema")


@pytest.mark.skipif(CHECK_JSONSCHEMA is None, reason="check-jsonschema not installed")
def test_workflow_valid_against_the_github_schema():
    p = subprocess.run([CHECK_JSONSCHEMA, "--builtin-schema", "vendor.github-workflows", str(WF)],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr


def test_the_committed_baseline_the_report_job_diffs_against():
    """The report job runs `harness diff reports/baseline.jsonl <shards>`: the file must be in the
    repository, readable, and hold only results that did not pass (what a baseline is for)."""
    from harness import records

    assert "reports/baseline.jsonl" in WF.read_text()
    base = ROOT / "reports" / "baseline.jsonl"
    loaded = records.read([base])
    assert not loaded.problems and loaded.complete
    assert loaded.results and all(r["status"] not in ("pass", "skip") for r in loaded.results)
    assert {r["framework"] for r in loaded.results} == {"tensorflow", "torch", "jax"}
    tracked = subprocess.run(["git", "ls-files", "--error-unmatch", "reports/baseline.jsonl"], cwd=ROOT,
                             capture_output=True, text=True, timeout=30)
    if tracked.returncode != 0 and "not a git repository" not in tracked.stderr:
        pytest.fail("reports/baseline.jsonl is not committed")


def test_the_full_suite_runs_weekly_through_the_same_matrix():
    """No push runs the large cases (`--suite full`); the weekly schedule does, through the same
    jobs, shards and report (which can then call a known entry of the large cases stale)."""
    wf = yaml.safe_load(WF.read_text())
    on = wf.get("on", wf.get(True))  # YAML 1.1 reads the key `on` as true
    assert on["schedule"] and on["workflow_dispatch"]["inputs"]["suite"]["options"] == ["default", "full"]
    run = " ".join(s.get("run", "") for s in wf["jobs"]["conformance"]["steps"])
    assert "--harness-suite ${{ github.event_name == 'schedule' && 'full' || inputs.suite || 'default' }}" in run
