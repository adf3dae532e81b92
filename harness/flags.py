"""Every option of a run, declared once for both front ends.

`python -m harness run` takes each as `--NAME`; the pytest plugin takes the same option as
`--harness-NAME`. The plugin loads into every pytest run of an environment the package is
installed in (its `pytest11` entry point), so its options carry one prefix that no other plugin
or project uses: `--device`, `--dtype` or `--timeout` stay free for the project's own conftest
and for pytest-timeout. This module imports nothing heavy, for the same reason.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

from . import vocab as V

#: The prefix of every option the pytest plugin adds.
PLUGIN_PREFIX = "--harness-"

CLI_RESULTS = "reports/results.jsonl"
PLUGIN_RESULTS = "reports/pytest-results.jsonl"


@dataclass(frozen=True)
class Flag:
    name: str  # the CLI's long name without its dashes
    help: str
    kind: str = "list"  # list (repeatable, comma-separated), str, int, float, or bool (a switch)
    choices: tuple[str, ...] | None = None  # listed in the help; validated by harness.options
    default: Any = None
    plugin_default: Any = None  # where the plugin's default differs (None: the same)
    cli_only: bool = False
    short: str | None = None  # the CLI's short form
    one: str = ""  # the help where a subcommand takes a single value (`harness search`)
    one_choices: tuple[str, ...] | None = None  # its valid values there (None: `choices`)

    @property
    def dest(self) -> str:
        return self.name.replace("-", "_")

    def help_text(self) -> str:
        text = self.help
        if self.choices:
            text += f" [valid: {', '.join(self.choices)}]"
        if self.kind == "list":
            text += " (repeatable, comma-separated)"
        return text

    def kwargs(self, plugin: bool) -> dict[str, Any]:
        kw: dict[str, Any] = {"help": self.help_text()}
        default = self.plugin_default if plugin and self.plugin_default is not None else self.default
        if self.kind == "list":
            kw.update(action="append", default=None)
        elif self.kind == "bool":
            kw.update(action="store_true")
        else:
            kw["default"] = default
            if self.kind in ("int", "float"):
                kw["type"] = int if self.kind == "int" else float
        return kw


FLAGS: list[Flag] = [
    Flag("framework", "frameworks to run (default: every installed one of tensorflow, torch, jax, scipy, onnxruntime, "
         "keras-tensorflow, keras-jax, keras-torch; also numpy, any adapter registered "
         "under the harness.adapters entry point group, and module:function, a function of torch, JAX or TF "
         "tensors under test, with the one op it implements)", one="one framework"),
    Flag("device", "devices (default: cpu)", choices=tuple(V.DEVICES), one="one device"),
    Flag("dtype", "dtypes (default: all four)", choices=tuple(V.DTYPE_NAMES), one="one dtype"),
    Flag("op", "ops (default: all five)", choices=tuple(V.OP_NAMES), one="one op"),
    Flag("mode", "modes (default: every mode of each framework: eager, jit, and torch's jit_static, "
                 "torch.compile(dynamic=False), on one case in 8 with the value checks only, and not "
                 "in the quick suite, unless modes are given)", choices=tuple(V.MODES), one="one mode"),
    Flag("check", "checks (default: every check a case asks for: forward, grad unless \"grad\": false, grad2 where "
                  "\"grad2\": true, the invariance checks batch_invariance, determinism, eager_vs_jit and permutation "
                  "where \"invariance\": true)", choices=tuple(V.CHECKS),
         one="one check", one_choices=tuple(V.VALUE_CHECKS)),
    Flag("cases", "case files or directories (default: the built-in library in cases/)"),
    Flag("baseline", "results file(s) of an earlier run: the same failures are known (exit 0)"),
    Flag("case-filter", "select case ids by substring or glob (comma-separated)", kind="str"),
    Flag("suite", "built-in case selection: " + "; ".join(f"{k}: {v}" for k, v in V.SUITES.items())
         + " (default %(default)s; ignored when case files are given)", kind="str", default="default"),
    Flag("policy", "tolerance policy: strict, standard (default), or a .toml file", kind="str", default="standard",
         one="tolerance policy for the verdicts: strict, standard or a .toml file"),
    Flag("results", "JSON Lines results file (default %(default)s)", kind="str", default=CLI_RESULTS,
         plugin_default=PLUGIN_RESULTS),
    Flag("known", "known-discrepancies TOML (default: harness/known.toml)", kind="str"),
    Flag("no-variants", "run only the default API of each op (no Keras, CrossEntropyLoss, ... variants)",
         kind="bool"),
    Flag("timing-reps", "timed repetitions per call after the first (default 3, 1 in the quick suite; 0: time the first call)",
         kind="int"),
    Flag("cache-dir", "reference cache directory (default ~/.cache/softmax-harness or $HARNESS_CACHE_DIR)",
         kind="str"),
    Flag("no-cache", "do not use the reference cache, nor the frameworks' compilation caches kept beside it "
         "(a cold run)", kind="bool"),
    Flag("no-isolate", "run the frameworks in this process (faster start; a crash ends the run)", kind="bool"),
    Flag("timeout", "seconds per result before its worker is killed and the result is an error (default 300; "
         "compilation included)", kind="float"),
    Flag("shard", "K/N: run only the K-th of N deterministic parts of the selection (whole (framework, op, variant, "
         "dtype, mode) units, balanced); `harness report` merges the parts' results files", kind="str"),
    Flag("shard-durations", "results file(s) of an earlier run whose timings balance the shard's parts (default: "
         "item counts)"),
    Flag("report", "also write the HTML report here (e.g. reports/index.html)", kind="str", cli_only=True),
    Flag("jobs", "isolated worker processes running at once (default: the CPU count; 1 with --no-isolate)",
         kind="int", cli_only=True, short="-j"),
    Flag("quiet", "print only the summary", kind="bool", cli_only=True, short="-q"),
]
BY_NAME = {f.name: f for f in FLAGS}


def add_single(parser: argparse.ArgumentParser, name: str, *, required: bool = False, default: Any = None) -> None:
    """Declare flag `name` of FLAGS on a subcommand that takes one value of it (`harness search`):
    the same name and valid choices as `run` and the plugin, one value, the flag's `one` help."""
    f = BY_NAME[name]
    choices = f.one_choices or f.choices
    text = f.one + (f" [valid: {', '.join(choices)}]" if choices else "")
    if default is not None:
        text += f" (default {default})"
    parser.add_argument(f"--{f.name}", dest=f.dest, required=required, default=default, help=text)


def plugin_flags() -> list[Flag]:
    return [f for f in FLAGS if not f.cli_only]


def add_to_cli(parser: argparse.ArgumentParser) -> None:
    for f in FLAGS:
        names = ([f.short] if f.short else []) + [f"--{f.name}"]
        parser.add_argument(*names, dest=f.dest, **f.kwargs(plugin=False))


def add_to_pytest(group: Any) -> None:
    """Add the plugin's options to a pytest option group; their dests carry `harness_`."""
    for f in plugin_flags():
        group.addoption(PLUGIN_PREFIX + f.name, dest="harness_" + f.dest, **f.kwargs(plugin=True))


def given_in_pytest(option: Any) -> dict[str, Any]:
    """The plugin's option values of a pytest config (`config.option`), by dest without the prefix."""
    return {f.dest: getattr(option, "harness_" + f.dest, None) for f in plugin_flags()}


def explicitly_given(values: dict[str, Any], plugin: bool = True) -> list[str]:
    """The options whose value differs from their default: what the user asked for."""
    out = []
    for f in (plugin_flags() if plugin else FLAGS):
        v = values.get(f.dest)
        default = f.plugin_default if plugin and f.plugin_default is not None else f.default
        if f.kind in ("list", "bool"):
            if v:
                out.append(f.name)
        elif v is not None and v != default:
            out.append(f.name)
    return out
