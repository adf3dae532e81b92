"""pytest plugin: glue only. Options, parametrization of `test_conformance`, record writing,
and the pass / fail / xfail / skip outcome of each result. The logic lives in runner.py.

The plugin loads into every pytest run of every environment the package is installed in (the
`pytest11` entry point), most of which test something else. So it stays out of their way:

- its options all carry the prefix `--harness-` (harness.flags), leaving `--device`, `--dtype`,
  `--timeout` and the rest to the project's own conftest and to other plugins;
- its pytest-xdist hooks are optional: without xdist they are never called, never validated;
- it imports nothing beyond harness.flags, reads no file, writes no file and sets no
  environment variable until a test asks for a conformance item (the `conformance_item`
  fixture of tests/test_conformance.py), or a `--harness-*` option is given, which is checked
  at start-up so that a bad value is a usage error before anything runs.
"""

from __future__ import annotations

import os
import re
import uuid
from dataclasses import dataclass
from typing import Any

import pytest

from . import flags


def pytest_addoption(parser: pytest.Parser) -> None:
    flags.add_to_pytest(parser.getgroup("harness", "softmax-family conformance harness (harness.flags)"))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "conformance: a softmax-family conformance result")
    plugin = HarnessPlugin(config)
    config.pluginmanager.register(plugin, "harness_session")
    if plugin.given:
        plugin.state  # noqa: B018 - validate the options the user gave, before anything runs


#: The unit of a conformance test's node id: its framework, device, dtype and mode (records.test_id);
#: group 2 is the framework.
_UNIT = re.compile(r"::test_conformance\[((.+?)-(?:cpu|gpu)-[a-z0-9]+-[a-z_]+)-")


def unit_order(queue: dict[str, Any]) -> list[str]:
    """xdist_scheduler's order of the scopes of `queue` (scope -> its tests, largest first): the
    modules, then the conformance units framework by framework, the framework with the most
    tests first, each in the queue's order."""
    modules: list[str] = []
    size: dict[str, int] = {}
    units: dict[str, list[str]] = {}
    for s, ids in queue.items():
        m = _UNIT.search(next(iter(ids)))
        if m is None:
            modules.append(s)
        else:
            size[m.group(2)] = size.get(m.group(2), 0) + len(ids)
            units.setdefault(m.group(2), []).append(s)
    return modules + [s for fw in sorted(units, key=lambda f: -size[f]) for s in units[fw]]


def xdist_scheduler(config: pytest.Config, log: Any) -> Any:
    """A pytest-xdist scheduler for `-n N` with its default distribution (`load`), or None for any
    other `--dist`: each worker gets whole units of the conformance tests, one framework, device,
    dtype and mode each, and every other test with the rest of its module.

    A framework compiles, traces or dispatches each program once per process and dtype (torch.compile,
    jax.jit, tf.function, JAX's eager primitives): dealt out one by one, as `load` does, the tests of
    one program went to both workers and most programs were compiled twice. The harness's CLI
    groups its jobs' items likewise. A module's tests share its module-scoped fixtures (a run of
    records to replay, a Keras child per backend), which a worker builds once.

    The order, for an even finish (the longest first, the shortest last, without durations):
    the modules first, whose tests are few but long (compiles, subprocesses, mpmath); then the
    conformance units framework by framework (the largest framework first), each framework's
    units by number of tests, the largest first, so that the last ones dealt out are small. By
    framework, because each framework runs in a worker process of its own and a worker keeps
    few of them alive (isolation.Executor): a worker that kept coming back to a framework would
    start it again. Opt in from a conftest.py (this repository's does):

        @pytest.hookimpl(tryfirst=True, optionalhook=True)
        def pytest_xdist_make_scheduler(config, log):
            return harness.plugin.xdist_scheduler(config, log)
    """
    if config.getvalue("dist") != "load":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ByUnit(LoadScopeScheduling):
        _ordered = False

        def _split_scope(self, nodeid: str) -> str:
            m = _UNIT.search(nodeid)
            return m.group(1) if m else nodeid.split("::", 1)[0]

        def _assign_work_unit(self, node: Any) -> None:
            if not self._ordered:  # the first assignment: the queue is whole, by size (loadscope)
                self._ordered = True
                for scope in unit_order(self.workqueue):
                    self.workqueue.move_to_end(scope)
            super()._assign_work_unit(node)

    return ByUnit(config, log)


def _xdist_workers() -> int:
    """How many pytest-xdist workers run at once (1 without xdist)."""
    try:
        return max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
    except ValueError:
        return 1


@dataclass
class _State:
    """What a session of conformance tests needs, built on first use."""

    opts: Any
    frameworks: list[str]
    skipped: dict[str, str]
    policy: Any
    baseline: Any
    session: Any
    items: list[Any]


class HarnessPlugin:
    def __init__(self, config: pytest.Config):
        self.config = config
        self.values = flags.given_in_pytest(config.option)
        self.given = flags.explicitly_given(self.values)
        # Workers must not truncate what the controller started: one absolute path for all.
        self.results_path = os.path.abspath(self.values.get("results") or flags.PLUGIN_RESULTS)
        self.worker = getattr(config, "workerinput", {}).get("workerid")
        self.run_id = getattr(config, "workerinput", {}).get("harness_run_id") or uuid.uuid4().hex[:12]
        self._state: _State | None = None
        self._executor: Any = None
        self.writer: Any = None
        self.ran: list[dict[str, Any]] = []
        self.started = False

    @property
    def state(self) -> _State:
        if self._state is None:
            self._state = self._build()
        return self._state

    def _build(self) -> _State:
        from .cache import Cache
        from .errors import HarnessInputError
        from .known import Baseline, load_known
        from .options import from_values, load_cases
        from .policy import load as load_policy
        from .runner import Session, expand, resolve_frameworks

        try:
            opts = from_values(self.values)
            frameworks, skipped = resolve_frameworks(opts.frameworks)
            cases = load_cases(opts)
            policy = load_policy(opts.policy)
            baseline = Baseline(opts.baseline) if opts.baseline else None
            session = Session(policy, Cache(opts.cache_dir, enabled=not opts.no_cache), load_known(opts.known),
                              baseline, opts.timing_reps)
        except HarnessInputError as e:
            raise pytest.UsageError(f"harness: {e}") from None
        from .shards import select

        items = select(expand(cases, opts.selection(), frameworks), opts.shard, opts.shard_weights)
        return _State(opts, frameworks, skipped, policy, baseline, session, items)

    # xdist: the controller writes run_start/run_end; workers append results to the same file.
    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        node.workerinput["harness_run_id"] = self.run_id

    def _open(self) -> Any:
        """The results file, opened on the first result of this process. The run metadata
        (framework versions need the frameworks imported) is written then, by each process
        that runs results, so a run of the unit tests alone imports no framework."""
        from . import records

        if self.writer is None:
            st = self.state
            from .isolation import threads_for
            from .options import run_start

            self.writer = records.Writer(self.results_path, "a")
            self.writer.write(run_start(st.opts, st.policy, self._framework_meta(), st.skipped,
                                        ["pytest", *self.config.invocation_params.args], self.run_id, self.worker,
                                        threads_for(_xdist_workers()) if st.opts.isolate else None))
        return self.writer

    def _framework_meta(self) -> dict[str, Any]:
        from . import adapters as A

        return {fw: A.meta(fw) for fw in self.state.frameworks}

    # The controller (or the only process) starts a fresh results file, but only once it knows
    # conformance tests will run: a run of the unit tests alone, or `--collect-only` (which runs
    # nothing), leaves the last results alone.
    def _start_file(self, ids: list[str]) -> None:
        if self.config.option.collectonly:
            return
        if self.worker is None and not self.started and any("test_conformance[" in i for i in ids):
            self._check_results_path()
            os.makedirs(os.path.dirname(self.results_path) or ".", exist_ok=True)
            open(self.results_path, "w").close()
            self.started = True

    def _check_results_path(self) -> None:
        """The results file must not be an input of the run nor unwritable (issue 21): refused
        before it is truncated."""
        from .errors import HarnessInputError
        from .options import check_outputs, from_values, input_paths

        try:
            check_outputs([("harness-results", self.results_path)], input_paths(from_values(self.values)))
        except HarnessInputError as e:
            raise pytest.UsageError(f"harness: {e}") from None

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self._start_file([it.nodeid for it in session.items])

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node: Any, ids: list[str]) -> None:
        self._start_file(ids)

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        if "conformance_item" in metafunc.fixturenames:
            items = self.state.items
            metafunc.parametrize("conformance_item", items, ids=[i.id for i in items])

    def check(self, item: Any, request: Any) -> None:
        from .options import executor
        from .runner import is_covered

        if self._executor is None:
            # pytest-xdist's workers each drive one isolating worker: they share the CPUs.
            self._executor = executor(self.state.opts, self.state.session, jobs=_xdist_workers())
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
            # pytest.xfail's own exception, as pytest raises it for a [NOTRUN] xfail: without the
            # traceback pytest would render and then drop (27 ms an xfail, 4000 in the quick suite).
            raise pytest.xfail.Exception(f"known: {rec['known']['id']}: {rec['known']['description'][:200]}",
                                         pytrace=False)
        pytest.fail(text, pytrace=False)

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.started and self.worker is None and not getattr(self, "stopped_short", True):
            for line in self._stale_known():
                terminalreporter.write_line(f"harness: warning: {line}", yellow=True)
        if self._state is None:
            return
        for fw, why in self._state.skipped.items():
            terminalreporter.write_line(f"harness: {fw} skipped for the whole run: {why}")
        if self.started:
            terminalreporter.write_line(f"harness: results in {self.results_path}")
        if self._state.baseline is not None:
            for r in self._state.baseline.fixed:
                terminalreporter.write_line(f"harness: fixed since the baseline: {r['test_id']}")

    def _stale_known(self) -> list[str]:
        """The stale known entries of a run of a whole library (known.stale), told from the results
        file, where every pytest-xdist worker's results are (the controller runs none); nothing
        is read after any other run (the README's quick suite), nor after one part of a split
        (`harness report` tells once every part is in)."""
        from . import records
        from .known import load_known, stale_in
        from .options import from_values

        opts = from_values(self.values)
        if not opts.whole_library():
            return []
        loaded = records.read([self.results_path])
        mine = [r for r in loaded.results if r.get("run_id") == self.run_id]
        runs = [r for r in loaded.runs if r.get("run_id") == self.run_id]
        return stale_in(load_known(opts.known), mine, runs, opts.known)

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        # Ctrl-C, -x or --maxfail: not every item ran, so the results file must not say complete.
        self.stopped_short = (exitstatus == pytest.ExitCode.INTERRUPTED or bool(session.shouldfail)
                              or bool(session.shouldstop))

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        if self._executor is not None and self._state is not None and self._executor is not self._state.session:
            self._executor.close()
        if self.writer is not None:
            self.writer.close()
        if (self.started and not getattr(self, "stopped_short", True) and os.path.exists(self.results_path)
                and os.path.getsize(self.results_path)):
            from . import cause, records

            cause.annotate_file(self.results_path, self.run_id)  # every worker's results are in
            end = records.Writer(self.results_path, "a")
            end.write({"kind": "run_end", "run_id": self.run_id, "finished": records.now(), "complete": True})
            end.close()


def format_failure(rec: dict[str, Any]) -> str:
    """The message of a failing result: what failed, the worst elements, a repro."""
    from . import records

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


@pytest.fixture
def conformance() -> Any:
    """`harness.assert_conforms` as a fixture of any project's tests (the plugin is installed with
    the package): `def test_mine(conformance): conformance(my_softmax, "softmax", framework="torch")`.
    A fixture of the same name in the project's own conftest takes precedence."""
    from .api import assert_conforms

    return assert_conforms


@pytest.fixture
def harness_session(request: Any) -> HarnessPlugin:
    return request.config.pluginmanager.get_plugin("harness_session")
