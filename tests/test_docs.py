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
            # A shared convention is one README row for every framework: its id without the suffix.
            stem = re.sub(r"-(tf|torch|jax|scipy|onnxruntime|keras-tensorflow|keras-jax|keras-torch|keras)$", "", k.id)
            assert stem in README, f"finding {k.id} is not in README's Findings"


def test_every_run_option_is_in_the_readme():
    run = build_parser()._subparsers._group_actions[0].choices["run"]
    for action in run._actions:
        for flag in action.option_strings:
            if flag.startswith("--") and flag not in ("--help",):
                assert f"`{flag}" in README, f"README does not document {flag}"


def test_every_plugin_option_is_the_prefixed_cli_option():
    """The plugin's options are the CLI's (harness.flags) with one prefix, which README states; the
    CLI-only ones are marked (CLI) in README's table."""
    from harness import flags

    assert f"`{flags.PLUGIN_PREFIX}`" in README and f"`{flags.PLUGIN_PREFIX}suite quick`" in README
    run = build_parser()._subparsers._group_actions[0].choices["run"]
    cli = {o for a in run._actions for o in a.option_strings}
    for f in flags.FLAGS:
        assert f"--{f.name}" in cli
        row = next(line for line in README.splitlines() if line.startswith("| ") and f"`--{f.name}" in line)
        assert ("(CLI)" in row) == f.cli_only, row


def test_vocabulary_names_the_definitions():
    from harness import dtypes, ops, vocab

    assert list(dtypes.DTYPES) == vocab.DTYPE_NAMES
    assert list(ops.OPS) == vocab.OP_NAMES


def test_policies_give_a_reason_for_every_budget():
    for name in builtin_names():
        pol = load(name)
        assert pol.description.strip()
        for b in pol.budgets:
            assert len(b["reason"].split()) >= 8, (name, b)


def _slug(heading: str) -> str:
    """GitHub's anchor of a Markdown heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_slug_is_githubs():
    assert _slug("Quick suite and the harness's tests") == "quick-suite-and-the-harnesss-tests"
    assert _slug("Default suite, 8 frameworks, cold (README command one)") == \
        "default-suite-8-frameworks-cold-readme-command-one"


def test_readme_links_exist():
    """Every link of the README into docs/ or reports/ names a file that exists, and an anchor a
    heading of that file."""
    links = re.findall(r"\]\(((?:docs|reports)/[^)]+)\)", README)
    assert any("#" in link for link in links)  # the anchors are checked below, not skipped
    for link in links:
        path, _, anchor = link.partition("#")
        assert (ROOT / path).exists(), link
        if anchor:
            headings = re.findall(r"^#+ (.+)$", (ROOT / path).read_text(), flags=re.M)
            assert anchor in {_slug(h) for h in headings}, (link, [_slug(h) for h in headings])
