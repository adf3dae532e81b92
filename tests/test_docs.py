"""The README and the docs stay true to the code: every finding in harness/known.toml is in
the README, every CLI option is documented, every policy has a reason for every budget."""

import re
from pathlib import Path

from harness.cli import build_parser
from harness.known import load_known
from harness.policy import builtin_names, load

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_every_finding_is_in_the_readme():
    for k in load_known():
        if k.finding:
            stem = re.sub(r"-(tf|torch|jax)$", "", k.id)
            assert stem in README, f"finding {k.id} is not in README's Findings"


def test_every_run_option_is_in_the_readme():
    run = build_parser()._subparsers._group_actions[0].choices["run"]
    for action in run._actions:
        for flag in action.option_strings:
            if flag.startswith("--") and flag not in ("--help",):
                assert f"`{flag}" in README, f"README does not document {flag}"


def test_policies_give_a_reason_for_every_budget():
    for name in builtin_names():
        pol = load(name)
        assert pol.description.strip()
        for b in pol.budgets:
            assert len(b["reason"].split()) >= 8, (name, b)


def test_readme_links_exist():
    for link in re.findall(r"\]\(((?:docs|reports)/[^)]+)\)", README):
        assert (ROOT / link).exists(), link
