"""Command line: `python -m harness run|report|diff|cases|cache`.

Exit codes: 0 every result passed or is covered (known discrepancy or baseline);
1 a conformance failure (or, for diff, a new failure); 2 bad usage or bad input; 3 the run
stopped short for a fault of the harness (results so far kept, marked incomplete); 130
interrupted by SIGINT or SIGTERM. Bad input, unwritable outputs and outputs that are inputs are
found before anything is written, so no earlier results are overwritten.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import threading
import sys
import uuid
from pathlib import Path
from typing import Any, Iterator

from . import __version__, cause, flags, records, shards
from .errors import HarnessInputError, HarnessStopped, Stopped
from .options import check_outputs, executor, from_values, input_files, input_paths, load_cases, run_start
from .progress import Progress, kind_of

EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_STOPPED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse's own usage errors: exit 2 as well
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m harness", description=(
        "Cross-framework numerical conformance harness for softmax, log_softmax, logsumexp and "
        "(sparse) softmax cross-entropy: every result against an exact mpmath reference."))
    p.add_argument("--version", action="version", version=f"harness {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    r = sub.add_parser("run", help="run the conformance suite, write results (and a report)")
    flags.add_to_cli(r)

    rep = sub.add_parser("report", help="render results files (CI shards are merged) into one HTML page")
    rep.add_argument("results", nargs="+", help="JSON Lines results files")
    rep.add_argument("-o", "--output", default="reports/index.html", help="HTML file (default %(default)s)")
    rep.add_argument("--compare", action="append", help="older results to diff against (a diff section)")

    d = sub.add_parser("diff", help="compare two runs: new failures, fixed ones, error changes")
    d.add_argument("old", help="results of the old run (comma-separated for several shards)")
    d.add_argument("new", help="results of the new run (comma-separated for several shards)")
    d.add_argument("--threshold", type=float, default=1.0, help="ULP change worth reporting (default 1)")

    b = sub.add_parser("baseline", help="keep the results that did not pass (failures, errors, known "
                       "discrepancies), slimmed, as a baseline to commit and diff against")
    b.add_argument("results", nargs="+", help="JSON Lines results files (CI shards)")
    b.add_argument("-o", "--output", default="reports/baseline.jsonl", help="baseline file (default %(default)s)")

    c = sub.add_parser("cases", help="list the case ids (and why each exists)")
    c.add_argument("--cases", action="append", help="case files or directories (default: built-in)")
    c.add_argument("--case-filter", help="substring or glob")
    c.add_argument("-v", "--verbose", action="store_true", help="also print why each case exists")

    s = sub.add_parser("search", help="search for inputs a framework gets wrong (by its budget, in ULPs, or against "
                       "its peers); shrink each finding and write them as a case file that replays with --cases")
    flags.add_single(s, "framework")  # declared once, in harness/flags.py, for run, the plugin and search
    s.add_argument("--frameworks", nargs="?", const="all", default=None,
                   help="search each of these frameworks (comma-separated; no value: every installed one) in one go, "
                        "one case file each; the objective defaults to differential")
    for name in ("op", "dtype"):
        flags.add_single(s, name, required=True)
    for name, default in (("check", "forward"), ("mode", "eager"), ("device", "cpu")):
        flags.add_single(s, name, default=default)
    s.add_argument("--objective", default=None,
                   help="what to maximise [valid: utilisation, ulp, differential]: error / budget under --policy "
                        "(default), error in ULPs, or the error against the best of the other installed frameworks "
                        "on the same input (default with --frameworks)")
    s.add_argument("--classes", type=int, default=None, help="classes per row (default: searched, up to --max-classes)")
    s.add_argument("--max-classes", type=int, default=131072, help="largest class count drawn (default %(default)s)")
    s.add_argument("--budget", type=int, default=300,
                   help="candidates evaluated per framework, before shrinking (default %(default)s)")
    s.add_argument("--shrink-budget", type=int, default=150,
                   help="candidates evaluated to shrink each finding (default %(default)s)")
    s.add_argument("--near", action="append", default=None,
                   help="start from these cases' inputs (ids of the built-in library or of --cases; repeatable)")
    s.add_argument("--cases", action="append", help="case files or directories for --near (default: built-in)")
    s.add_argument("--seed", type=int, default=0, help="search seed (default %(default)s)")
    flags.add_single(s, "policy", default="standard")
    s.add_argument("-o", "--output", default=None,
                   help="case file to write (default reports/search-cases.json; with --frameworks, "
                        "reports/search-{framework}.json: a {framework} in the name is replaced, else the framework "
                        "is added before the suffix)")

    rp = sub.add_parser("repro", help="run the repro snippet of every failing result in a fresh interpreter (one "
                        "per framework) and compare what it prints with the recorded output, bit for bit; exit 1 "
                        "on a difference, except in a mode whose output depends on the calls compiled before "
                        "it (torch.compile), which is listed as HISTORY")
    rp.add_argument("results", nargs="+", help="JSON Lines results files")
    rp.add_argument("--sample", type=int, metavar="N", help="replay only the first N failing results of each "
                    "framework, mode, check, op, variant, dtype and cotangent, and every one with another class "
                    "axis than the last (default: all)")

    k = sub.add_parser("cache", help="the reference cache: info or clear")
    k.add_argument("action", choices=["info", "clear"])
    k.add_argument("--cache-dir", help="cache directory (default ~/.cache/softmax-harness)")
    return p


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """SIGINT and SIGTERM end the command as an interrupt (exit 130; what was written stays,
    marked incomplete), whatever dispositions the parent process left: a process started with
    SIGINT ignored (as some process managers and CI runners do) inherits that, and Python then
    leaves it ignored. The previous handlers come back afterwards (the CLI may run in-process)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    try:
        with interruptible():
            return {"run": cmd_run, "report": cmd_report, "diff": cmd_diff, "baseline": cmd_baseline, "cases": cmd_cases,
                    "cache": cmd_cache, "search": cmd_search, "repro": cmd_repro}[args.command](args, argv)
    except HarnessInputError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except HarnessStopped as e:
        print(f"error: internal error of the harness: {e}", file=sys.stderr)
        return EXIT_STOPPED
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


class Groups:
    """The items of a run in groups, taken by the jobs one group at a time.

    Items that share a framework and an input rank and axis form a group, run by one job: the
    frameworks trace and compile per shape (torch.compile per rank and class count) once per
    process, so spreading them over jobs would compile each in every job (a warm default run:
    7 min -> 4.5 min on 2 jobs). A job takes the largest group left of the framework it ran last
    (its worker is warm, isolation.Executor), else the largest group left: the jobs finish
    together, and each job changes framework about once per framework."""

    def __init__(self, items: list[Any]):
        groups: dict[tuple, list[Any]] = {}
        for item in items:
            groups.setdefault((item.framework, len(item.case.shape), item.case.axis), []).append(item)
        self._left = sorted(groups.values(), key=len, reverse=True)
        self._lock = threading.Lock()

    def take(self, framework: str | None = None) -> list[Any] | None:
        with self._lock:
            if not self._left:
                return None
            i = next((k for k, g in enumerate(self._left) if g[0].framework == framework), 0)
            return self._left.pop(i)


def cmd_run(args: argparse.Namespace, argv: list[str]) -> int:
    from .cache import Cache
    from .known import Baseline, load_known
    from .policy import load as load_policy
    from .isolation import threads_for
    from .runner import Session, exit_code, expand, resolve_frameworks

    # Everything that can be wrong with the input is checked before the results file is opened.
    opts = from_values(vars(args))
    policy = load_policy(opts.policy)
    cases = load_cases(opts)
    known = load_known(opts.known)
    baseline = Baseline(opts.baseline) if opts.baseline else None
    if args.jobs is not None and args.jobs < 1:
        raise HarnessInputError(f"{args.jobs} is not a positive number of jobs", field="jobs")
    frameworks, skipped = resolve_frameworks(opts.frameworks)
    for fw, why in skipped.items():
        print(f"harness: {fw} skipped for the whole run: {why}", file=sys.stderr)
    every = expand(cases, opts.selection(), frameworks)
    items = shards.select(every, opts.shard, opts.shard_weights)
    if not every:
        print("harness: nothing to run (no framework available, or the selection is empty)", file=sys.stderr)
        return EXIT_USAGE
    if not items:  # a valid part of a split with fewer units than parts: its results file says so
        print("harness: shard {}/{} has nothing to run: the selection's units all went to the other parts".format(
            *opts.shard), file=sys.stderr)
    cache = Cache(opts.cache_dir, enabled=not opts.no_cache)
    cache.check()
    check_outputs([("results", args.results), ("report", args.report)], input_paths(opts))
    session = Session(policy, cache, known, baseline, opts.timing_reps)

    from . import adapters as A

    meta_fw = {fw: A.meta(fw) for fw in frameworks}
    run_id = uuid.uuid4().hex[:12]
    writer = records.Writer(args.results, "w")
    jobs = max(1, args.jobs if args.jobs is not None else (os.cpu_count() or 1)) if opts.isolate else 1
    n_jobs = min(jobs, len(items))
    meta = run_start(opts, policy, meta_fw, skipped, ["python", "-m", "harness", *argv], run_id,
                     threads=threads_for(n_jobs) if opts.isolate else None)
    writer.write(meta)

    results: list[dict[str, Any]] = []
    counts: dict[str, int] = {}
    interrupted = False
    runners = [executor(opts, session, job, n_jobs) for job in range(n_jobs)]
    todo = Groups(items)
    lock = threading.Lock()
    stop = threading.Event()  # no job takes another item
    interrupting = threading.Event()  # SIGINT/SIGTERM: what finishes from now on is not written
    failures: list[BaseException] = []  # what ended a job thread: the run stops (exit 3, or 2)

    def record(item: Any, rec: dict[str, Any]) -> None:
        with lock:
            if stop.is_set() and (interrupting.is_set() or failures):
                return  # the run is stopping: what finishes now may be the effect of the stop itself
            rec["run_id"] = run_id
            writer.write(rec)
            results.append(rec)
            st = "known" if rec.get("known") and rec["status"] in ("fail", "error") else rec["status"]
            counts[st] = counts.get(st, 0) + 1
            if not args.quiet and st in ("fail", "error"):
                progress.print(f"{st.upper():5} {item.id}: {rec.get('special')} {first_line(rec.get('message', ''))}")
            progress.update(len(results), counts, kind_of(item), records.spent_s(rec, opts.timing_reps))

    def work(runner: Any) -> None:
        # Anything that ends a job thread other than running out of groups stops the whole run, loudly:
        # a thread that died in silence would leave items unrun in a run that says complete.
        try:
            framework = None
            while not stop.is_set():
                group = todo.take(framework)
                if group is None:
                    return
                framework = group[0].framework
                for item in group:
                    if stop.is_set():
                        return
                    record(item, runner.run(item))
        except Stopped:  # the run is stopping: the item in flight is not recorded
            return
        except BaseException as e:  # noqa: BLE001 - handed to the main thread
            with lock:
                failures.append(e)
            stop.set()

    # One thread per job, each driving its own isolated worker process.
    threads = [threading.Thread(target=work, args=(r,), daemon=True) for r in runners]
    progress = Progress(len(items), quiet=args.quiet, kinds=[kind_of(it) for it in items])
    try:
        for t in threads:
            t.start()
        for t in threads:
            while t.is_alive():
                t.join(0.2)
    except KeyboardInterrupt:
        interrupted = True
        interrupting.set()
        stop.set()
        progress.close()
        print(f"interrupted after {len(results)} of {len(items)} results; {args.results} is marked incomplete",
              file=sys.stderr)
    finally:
        stop.set()
        progress.close()
        with contextlib.suppress(KeyboardInterrupt):  # a second Ctrl-C must not leave workers behind
            for r in runners:
                if r is not session:
                    r.close(now=interrupted or bool(failures))
    complete = not interrupted and not failures and len(results) == len(items)
    writer.close()
    if complete:
        # Each failing result's cause needs its peers (the other implementations on the same
        # input), so it is written once every result is in: harness/cause.py.
        cause.annotate_file(args.results, run_id)
        cause.assign(results)
        writer = records.Writer(args.results, "a")
        writer.write({"kind": "run_end", "run_id": run_id, "finished": records.now(), "complete": True,
                      "counts": counts})
        writer.close()
    if failures and not interrupted:
        err = failures[0]
        print(f"error: the run stopped after {len(results)} of {len(items)} results; {args.results} is marked "
              f"incomplete", file=sys.stderr)
        if isinstance(err, HarnessInputError):
            raise err
        raise HarnessStopped(f"{type(err).__name__}: {err}") from err
    if not complete and not interrupted:  # cannot happen; never claim a run complete that is not
        raise HarnessStopped(f"{len(items) - len(results)} items were not run")
    if not interrupted:  # a run of a whole library (its run_start's `library`) can call an entry stale
        from .known import stale, stale_text

        for k, suite in stale(session.known_use, [meta], opts.known):
            print(f"harness: warning: {stale_text(k, suite)}", file=sys.stderr)
    if baseline is not None:
        ran = {records.key(r) for r in results}
        baseline.warn_unmatched(ran)
        for r in baseline.fixed:
            print(f"fixed since the baseline: {r['test_id']}")
    print(f"harness: {len(results)} results {counts} -> {args.results}")
    by_cause: dict[str, int] = {}
    for r in results:
        if r.get("cause"):
            by_cause[r["cause"]] = by_cause.get(r["cause"], 0) + 1
    if by_cause:
        print("harness: causes of the failing results, known included (framework: a peer passes the same input; "
              "shared: every peer fails; special: a special-value convention every peer shares; alone: no peer "
              "ran it): " + ", ".join(f"{c} {by_cause[c]}" for c in cause.CAUSES if c in by_cause))
    from .report.tables import utilisation_text

    util = utilisation_text(results)
    if util:
        print("harness: budget utilisation, the largest error / budget among passing results (docs/tolerance.md):")
        print(util)
    if args.report:
        from .report import render

        render([args.results], args.report)
        print(f"harness: report -> {args.report}")
    if interrupted:
        return EXIT_INTERRUPTED
    return exit_code(results)


def first_line(s: str) -> str:
    return s.splitlines()[0][:160] if s else ""


def cmd_report(args: argparse.Namespace, argv: list[str]) -> int:
    records.require_files(args.results, "results")
    records.require_files(args.compare or [], "compare")
    check_outputs([("output", args.output)], [("results", p) for p in args.results + (args.compare or [])])
    from .report import render

    summary = render(args.results, args.output, compare=args.compare)
    print(f"harness: report of {len(args.results)} file(s) -> {args.output}")
    for line in summary.get("stale_known") or []:
        print(f"harness: warning: {line}", file=sys.stderr)
    if summary:
        print(f"harness: {summary}")
    return EXIT_OK


def cmd_diff(args: argparse.Namespace, argv: list[str]) -> int:
    from .known import read_results

    old, new = args.old.split(","), args.new.split(",")
    records.require_files(old, "old")  # every file there first, then what each holds
    records.require_files(new, "new")
    for paths, what in ((old, "old"), (new, "new")):
        for p in paths:
            read_results(p, what)
    if not (args.threshold >= 0 and args.threshold < float("inf")):
        raise HarnessInputError(f"{args.threshold!r} is not a non-negative number of ULPs", field="threshold")
    from .report import diff

    d = diff(old, new, threshold_ulp=args.threshold)
    print(d.to_text())
    return EXIT_FAIL if d.has_new_failures else EXIT_OK


#: What a baseline keeps of each result: enough for `diff`, `--baseline` and a reader.
BASELINE_FIELDS = records.KEY_FIELDS + ("test_id", "status", "special", "max_ulp", "excess", "error_type",
                                        "framework_version", "device_name", "message", "run_id")


def cmd_baseline(args: argparse.Namespace, argv: list[str]) -> int:
    records.require_files(args.results, "results")
    check_outputs([("output", args.output)], [("results", p) for p in args.results])
    loaded = records.read(args.results)
    if not loaded.results:
        raise HarnessInputError("holds no result record" + (f" ({loaded.problems[0]})" if loaded.problems else ""),
                                file=",".join(args.results), field="results")
    kept = []
    for r in loaded.results:
        if r.get("status") == "pass" or r.get("status") == "skip":
            continue
        slim = {k: r.get(k) for k in BASELINE_FIELDS if k in r}
        slim["kind"] = "result"
        if isinstance(r.get("known"), dict):
            slim["known"] = {"id": r["known"].get("id")}
        if isinstance(slim.get("message"), str):
            slim["message"] = slim["message"][:300]
        kept.append(slim)
    lines = [*loaded.runs, *kept, *loaded.ends]
    out = Path(args.output)
    tmp = out.with_name(f".{out.name}.tmp")
    writer = records.Writer(tmp)  # the one serialiser of records; then swapped in whole
    try:
        for x in lines:
            writer.write(x)
    finally:
        writer.close()
    os.replace(tmp, out)
    print(f"harness: {len(kept)} of {len(loaded.results)} results did not pass -> {out}")
    return EXIT_OK


def cmd_cases(args: argparse.Namespace, argv: list[str]) -> int:
    from . import cases as K

    cs = K.select(K.load(args.cases), args.case_filter)
    for c in cs:
        tags = f" [{', '.join(c.tags)}]" if c.tags else ""
        print(f"{c.id}  ({', '.join(c.ops)}; shape {list(c.shape)}){tags}")
        if args.verbose and c.why:
            print(f"    {c.why}")
    print(f"{len(cs)} cases", file=sys.stderr)
    return EXIT_OK


def cmd_search(args: argparse.Namespace, argv: list[str]) -> int:
    from . import adapters as A
    from . import cases as K
    from . import dtypes as D
    from . import ops as O
    from .cache import Cache
    from .policy import load as load_policy
    from .runner import Session, resolve_frameworks, split_csv, validate_choices
    from .search import OBJECTIVES, search, start_points, write_cases

    if (args.framework is None) == (args.frameworks is None):
        raise HarnessInputError("name one framework (--framework NAME) or several (--frameworks [NAMES])",
                                field="framework", choices=A.names())
    validate_choices([args.op], O.OP_NAMES, "op")
    validate_choices([args.dtype], D.DTYPE_NAMES, "dtype")
    if args.check not in O.VALUE_CHECKS:
        raise HarnessInputError(O.value_check_error(args.check), field="check", choices=list(O.VALUE_CHECKS))
    validate_choices([args.mode], O.MODES, "mode")
    validate_choices([args.device], O.DEVICES, "device")
    objective = args.objective or ("differential" if args.frameworks is not None else "utilisation")
    validate_choices([objective], list(OBJECTIVES), "objective")
    cap = K.max_elements()
    for name, value, low in (("classes", args.classes, 1), ("max-classes", args.max_classes, 1),
                             ("budget", args.budget, 3), ("shrink-budget", args.shrink_budget, 0),
                             ("seed", args.seed, 0)):
        if value is not None and value < low:
            raise HarnessInputError(f"--{name} must be at least {low}, not {value}", field=name)
        if name in ("classes", "max-classes") and value is not None and value > cap:
            raise HarnessInputError(f"--{name} {value} is more elements than a case array may have ({cap}; the "
                                    f"environment variable {K.MAX_ELEMENTS_ENV} sets it)", field=name)
    library = K.load(args.cases) if args.cases else None  # every --cases path checked, --near or not
    if args.cases and not args.near:
        raise HarnessInputError("--cases gives the case files that --near names cases of; name them with --near",
                                field="cases")
    if args.frameworks is not None:
        wanted = None if args.frameworks == "all" else list(dict.fromkeys(split_csv(args.frameworks)))
        if wanted == []:
            raise HarnessInputError(f"--frameworks {args.frameworks!r} names no framework (give none for every "
                                    f"installed one)", field="frameworks", choices=A.names())
        targets, skipped = resolve_frameworks(wanted)
        for fw, why in skipped.items():
            print(f"harness: {fw} skipped: {why}", file=sys.stderr)
        if not targets:
            raise HarnessInputError("no framework to search is installed", field="frameworks")
    else:  # a framework's name, or a callable of your own (module:function, docs: README)
        targets, skipped = resolve_frameworks([args.framework])
        if skipped:
            raise HarnessInputError(skipped[args.framework], field="framework")
    installed, _ = resolve_frameworks(None)
    peers = sorted(set(installed) | set(targets))
    outputs = {fw: _search_output(args.output, fw, args.frameworks is not None) for fw in targets}
    check_outputs([("output", o) for o in outputs.values()], input_files(args.cases or [], args.policy))
    start = start_points(library or K.load(), args.near, args.op, args.dtype) if args.near else None
    session = Session(load_policy(args.policy), Cache(), [], None, timing_reps=0)
    found_any = False
    for fw in targets:
        found = search(session, fw, args.op, args.dtype, check=args.check, mode=args.mode, device=args.device,
                       classes=args.classes, budget=args.budget, seed=args.seed, objective=objective,
                       peers=[p for p in peers if p != fw], start=start, max_classes=args.max_classes,
                       shrink_budget=args.shrink_budget)
        write_cases(found, outputs[fw], fw, args.op, args.dtype, args.check, args.mode, objective, args.seed)
        for f in found:
            found_any |= f.finding
            R, C = f.point.shape
            what = f.rec.get("special") if f.rec.get("special") not in (None, "match") else \
                f"{float(f.rec.get('max_ulp') or 0):.6g} ulp, {float(f.rec.get('excess') or 0):.3g} x budget"
            peer_text = ", ".join(f"{p} {s.get('status')} {float(s.get('max_ulp') or 0):.4g} ulp"
                                  for p, s in f.peers.items())
            print(f"{fw}: {'FINDING' if f.finding else 'worst  '} {f.rec.get('status')} ({what}) cause "
                  f"{f.cause or '-'}; {R} x {C} logits {_short(f.point.x)}" + (f"; peers: {peer_text}" if peer_text else ""))
        print(f"harness: {fw}: {sum(f.finding for f in found)} finding(s) of {len(found)} inputs -> {outputs[fw]} "
              f"(replay: python -m harness run --cases {outputs[fw]} --framework {fw} --op {args.op} "
              f"--dtype {args.dtype} --mode {args.mode} --check {args.check})")
    return EXIT_OK


def _search_output(output: str | None, fw: str, several: bool) -> str:
    if not several:
        return output or "reports/search-cases.json"
    output = output or "reports/search-{framework}.json"
    if "{framework}" in output:
        return output.replace("{framework}", fw)
    p = Path(output)
    return str(p.with_name(f"{p.stem}-{fw}{p.suffix}"))


def _short(x: Any, n: int = 8) -> str:
    import numpy as np

    flat = np.asarray(x).ravel()
    vals = ", ".join(repr(float(v)) for v in flat[:n])
    return f"[{vals}{', ...' if flat.size > n else ''}]"


def cmd_repro(args: argparse.Namespace, argv: list[str]) -> int:
    from .repro import check, replayable, sample

    records.require_files(args.results, "results")
    if args.sample is not None and args.sample < 1:
        raise HarnessInputError(f"--sample must be a positive number of results, not {args.sample}",
                                field="--sample")
    loaded = records.read_inputs(args.results, "results")
    for problem in loaded.problems:  # a killed run's cut last line, or worse: said, not swallowed
        print(f"harness: {problem}", file=sys.stderr)
    chosen = loaded.results if args.sample is None else sample(loaded.results, args.sample)
    n, found = check(chosen)
    bad = [m for m in found if not m.history]
    history = [m for m in found if m.history]
    for m in history:
        print(f"HISTORY {m.test_id}: {m.why}")
    for m in bad:
        print(f"MISMATCH {m.test_id}: {m.why}")
    for reason in sorted({m.history for m in history}):
        print(f"harness: {sum(m.history == reason for m in history)} replays differ in a mode with compile "
              f"history: {reason}")
    skipped = sum(1 for r in loaded.results if r.get("status") in ("fail", "error") and not replayable(r))
    of = f" (a sample of {sum(map(replayable, loaded.results))})" if args.sample is not None else ""
    print(f"harness: {n} repro snippets replayed{of}, {len(bad)} differ from their records"
          + (f" ({len(history)} more after other compiled calls)" if history else "")
          + (f"; {skipped} failing results hold no snippet or output to compare" if skipped else ""))
    return EXIT_FAIL if bad else EXIT_OK


def cmd_cache(args: argparse.Namespace, argv: list[str]) -> int:
    from .cache import Cache

    cache = Cache(args.cache_dir)
    if args.action == "info":
        info = cache.info()
        print(f"{info['dir']}: {info['entries']} entries, {info['bytes'] / 1e6:.1f} MB; compiled executables "
              f"in {cache.compile_dir}: {info['compile_files']} files, {info['compile_bytes'] / 1e6:.1f} MB")
    else:
        info = cache.clear()
        print(f"removed {info['entries']} entries and {info['compile_files']} compiled executables from {cache.dir}")
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
