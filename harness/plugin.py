"""pytest plugin: glue only. Options, parametrization of `test_conformance`, record writing,
and the pass / fail / xfail / skip outcome of each result. The logic lives in runner.py."""

from __future__ import annotations

import os
import uuid
from typing import Any

import pytest

from . import records
from .cache import Cache
from .errors import HarnessInputError
from .known import Baseline, load_known
from .options import LIST_OPTIONS, SUITES, RunOptions, executor, from_values, load_cases
from .policy import load as load_policy
from .runner import Item, Session, expand, is_covered, resolve_frameworks

DEFAULT_RESULTS = "reports/pytest-results.jsonl"


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("harness", "softmax-family conformance harness")
    for flag, dest, help_, valid in LIST_OPTIONS:
        extra = f" [valid: {', '.join(valid)}]" if valid else ""
        g.addoption(flag, dest=f"harness_{dest}", action="append", default=None, help=help_ + extra)
    g.addoption("--case-filter", dest="harness_case_filter", default=None,
                help="select case ids by substring or glob (comma-separated)")
    g.addoption("--suite", dest="harness_suite", default="default", help="built-in case selection: " + "; ".join(
        f"{k}: {v}" for k, v in SUITES.items()) + " (default: default; ignored with --cases)")
    g.addoption("--policy", dest="harness_policy", default="standard",
                help="tolerance policy: strict, standard, or a path to a .toml file")
    g.addoption("--results", dest="harness_results", default=DEFAULT_RESULTS,
                help=f"JSON Lines results file (default {DEFAULT_RESULTS})")
    g.addoption("--known", dest="harness_known", default=None,
                help="known-discrepancies TOML (default: harness/known.toml)")
    g.addoption("--no-variants", dest="harness_no_variants", action="store_true",
                help="run only the default API of each op (no Keras, CrossEntropyLoss, ... variants)")
    g.addoption("--timing-reps", dest="harness_timing_reps", default=None, type=int,
                help="timed repetitions per call after the first (default 3; 0: time the first call)")
    g.addoption("--cache-dir", dest="harness_cache_dir", default=None, help="reference cache directory")
    g.addoption("--no-cache", dest="harness_no_cache", action="store_true",
                help="do not use the reference cache, nor the compilation caches beside it")
    g.addoption("--no-isolate", dest="harness_no_isolate", action="store_true",
                help="run the frameworks in the test process (a crash ends the run)")
    g.addoption("--timeout", dest="harness_timeout", default=None, type=float,
                help="seconds per result before its worker is killed (default 300)")


class HarnessPlugin:
    def __init__(self, config: pytest.Config, opts: RunOptions, results: str):
        self.config = config
        self.opts = opts
        self.results_path = results
        self.frameworks, self.skipped = resolve_frameworks(opts.frameworks)
        self.cases = load_cases(opts)
        self.policy = load_policy(opts.policy)
        self.baseline = Baseline(opts.baseline) if opts.baseline else None
        self.session = Session(self.policy, Cache(opts.cache_dir, enabled=not opts.no_cache),
                               load_known(opts.known), self.baseline, opts.timing_reps)
        self.items = expand(self.cases, opts.selection(), self.frameworks)
        self._executor: Any = None
        self.writer: records.Writer | None = None
        self.worker = getattr(config, "workerinput", {}).get("workerid")
        self.run_id = getattr(config, "workerinput", {}).get("harness_run_id") or uuid.uuid4().hex[:12]
        self.ran: list[dict[str, Any]] = []
        self.started = False

    # xdist: the controller writes run_start/run_end; workers append results to the same file.
    def pytest_configure_node(self, node: Any) -> None:
        node.workerinput["harness_run_id"] = self.run_id

    def _open(self) -> records.Writer:
        """The results file, opened on the first result of this process. The run metadata
        (framework versions need the frameworks imported) is written then, by each process
        that runs results, so a run of the unit tests alone imports no framework."""
        if self.writer is None:
            self.writer = records.Writer(self.results_path, "a")
            meta = records.run_start(self.policy.name, self._framework_meta(),
                                     ["pytest", *self.config.invocation_params.args], self.run_id, self.worker)
            meta["policy_budgets"] = self.policy.budgets
            meta["skipped_frameworks"] = self.skipped
            self.writer.write(meta)
        return self.writer

    def _framework_meta(self) -> dict[str, Any]:
        from . import adapters as A

        meta = {}
        for fw in self.frameworks:
            ad = A.get(fw)
            try:
                meta[fw] = {"versions": ad.versions(), "devices": ad.devices()}
            except Exception as e:  # noqa: BLE001
                meta[fw] = {"error": str(e)}
        return meta

    # The controller (or the only process) starts a fresh results file, but only once it knows
    # conformance tests will run: a run of the unit tests alone leaves the last results alone.
    def _start_file(self, ids: list[str]) -> None:
        if self.worker is None and not self.started and any("test_conformance[" in i for i in ids):
            os.makedirs(os.path.dirname(self.results_path) or ".", exist_ok=True)
            open(self.results_path, "w").close()
            self.started = True

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self._start_file([it.nodeid for it in session.items])

    def pytest_xdist_node_collection_finished(self, node: Any, ids: list[str]) -> None:
        self._start_file(ids)

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        if "conformance_item" in metafunc.fixturenames:
            metafunc.parametrize("conformance_item", self.items, ids=[i.id for i in self.items])

    def check(self, item: Item, request: Any) -> None:
        if self._executor is None:
            self._executor = executor(self.opts, self.session)
        rec = self._executor.run(item)
        rec["run_id"] = self.run_id
        if self.worker:
            rec["worker"] = self.worker
        self._open().write(rec)
        self.ran.append(rec)
        for k in ("max_ulp", "excess", "special", "status"):
            request.node.user_properties.append((k, rec.get(k)))
        status = rec["status"]
        if status == "skip":
            pytest.skip(rec["message"])
        if status == "pass":
            return
        text = format_failure(rec)
        if is_covered(rec):
            pytest.xfail(f"known: {rec['known']['id']}: {rec['known']['description'][:200]}")
        pytest.fail(text, pytrace=False)

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        for fw, why in self.skipped.items():
            terminalreporter.write_line(f"harness: {fw} skipped for the whole run: {why}")
        if self.started:
            terminalreporter.write_line(f"harness: results in {self.results_path}")
        if self.baseline is not None:
            for r in self.baseline.fixed:
                terminalreporter.write_line(f"harness: fixed since the baseline: {r['test_id']}")

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        if self._executor is not None and self._executor is not self.session:
            self._executor.close()
        if self.writer is not None:
            self.writer.close()
        if self.started and os.path.exists(self.results_path) and os.path.getsize(self.results_path):
            end = records.Writer(self.results_path, "a")
            end.write({"kind": "run_end", "run_id": self.run_id, "finished": records.now(), "complete": True})
            end.close()


def format_failure(rec: dict[str, Any]) -> str:
    """The message of a failing result: what failed, the worst elements, a repro."""
    lines = [f"{rec['test_id']}: {rec['status']} ({rec.get('special')}): {rec.get('message', '')}"]
    if rec.get("max_ulp") is not None:
        lines.append(f"max error {rec['max_ulp']:.4g} ulp, {rec.get('excess') or 0:.3g} x budget "
                     f"(policy {rec['tolerance']['policy']})")
    for b in rec.get("bad") or []:
        lines.append(f"  {b['output']}{b['index']}: got {b['got']!r} != exact {b['exact']!r} "
                     f"({b['ulp']:.4g} ulp, budget {b['budget_ulp']:.4g} ulp)")
    inp = rec.get("input")
    if inp:
        lines.append(f"  input logits = {records.jsonable(inp['logits'])}")
        if inp.get("labels") is not None:
            lines.append(f"  labels = {records.jsonable(inp['labels'])}")
    if rec.get("repro"):
        lines.append("repro:\n" + rec["repro"])
    return "\n".join(lines)


def pytest_configure(config: pytest.Config) -> None:
    vals = {k[len("harness_"):]: v for k, v in vars(config.option).items() if k.startswith("harness_")}
    try:
        opts = from_values(vals)
        results = vals.get("results") or DEFAULT_RESULTS
        # Workers must not truncate what the controller started.
        plugin = HarnessPlugin(config, opts, os.path.abspath(results))
    except HarnessInputError as e:
        raise pytest.UsageError(f"harness: {e}") from None
    config.pluginmanager.register(plugin, "harness_session")
    config.addinivalue_line("markers", "conformance: a softmax-family conformance result")


@pytest.fixture
def harness_session(request: Any) -> HarnessPlugin:
    return request.config.pluginmanager.get_plugin("harness_session")
