"""The reference cache: content-addressed keys, checksums, atomic writes, parallel writers,
engine-version misses, and the `cache` command."""

import json
import logging
import os
import re
import multiprocessing as mp
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from harness import dtypes as D
from harness import reference as R
from harness.cache import Cache, cache_key
from harness.cases import parse_case
from harness.policy import load as load_policy
from harness.runner import Item, Session

ROOT = Path(__file__).resolve().parent.parent
F32 = D.get("float32")


def _ref(x):
    return R.compute("log_softmax", "forward", x, None, -1, F32)


def _key(x, **kw):
    args = dict(op="log_softmax", check="forward", dtype="float32", axis=-1, logits=x, labels=None, rows=None,
                claim=R.claim_bits(F32))
    args.update(kw)
    return cache_key(**args)


def test_round_trip_and_keys(tmp_path):
    x = D.cast_exact(np.array([[1.0, 2.0, 3.0], [0.0, -1.0, 5.0]]), F32)
    c = Cache(tmp_path)
    k = _key(x)
    assert c.get(k) is None
    ref = _ref(x)
    c.put(k, ref)
    got = c.get(k)
    assert np.array_equal(got.outputs["out"].hi, ref.outputs["out"].hi)
    assert np.array_equal(got.outputs["out"].lo, ref.outputs["out"].lo)
    assert got.claim_bits == ref.claim_bits and got.backend == ref.backend
    # Everything in the key matters.
    assert _key(x) != _key(x, dtype="float64")
    assert _key(x) != _key(x, check="grad")
    assert _key(x) != _key(np.ascontiguousarray(x[:, ::-1]))
    assert _key(x) != _key(x, rows=np.array([0]))


def test_engine_version_change_misses(tmp_path, monkeypatch):
    x = D.cast_exact(np.array([1.0, 2.0]), F32)
    c = Cache(tmp_path)
    c.put(_key(x), _ref(x))
    monkeypatch.setattr(R, "ENGINE_VERSION", R.ENGINE_VERSION + "-changed")
    assert c.get(_key(x)) is None


@pytest.mark.parametrize("damage", ["flip", "truncate", "garbage"])
def test_corrupt_entry_is_detected_recomputed_and_logged(tmp_path, caplog, damage):
    """A corrupted cache file: recomputed, same verdicts, a warning."""
    case = parse_case({"id": "t/c", "logits": [[0.5, 1.5, 0.1], [2.2, 1.3, 1.7]], "labels": [1, 2]},
                      file="<t>", index=0, family=None, base=ROOT)
    item = Item(case, "sparse_softmax_cross_entropy", "forward", "default", "numpy", "cpu", "float32", "eager")
    first = Session(load_policy("standard"), Cache(tmp_path), [], None, 0).run(item)
    (entry,) = list(tmp_path.glob("*/*.npz"))
    raw = bytearray(entry.read_bytes())
    if damage == "flip":
        # Flip a byte inside the stored hi array (find the float bytes of the first value).
        needle = np.float64(first["reference"]["out"]["hi"][0]).tobytes()
        i = bytes(raw).find(needle)
        assert i > 0
        raw[i] ^= 0x01
    elif damage == "truncate":
        raw = raw[: len(raw) // 2]
    else:
        raw = bytearray(b"not a zip file at all")
    entry.write_bytes(bytes(raw))
    caplog.set_level(logging.WARNING, logger="harness.cache")
    cache = Cache(tmp_path)
    again = Session(load_policy("standard"), cache, [], None, 0).run(item)
    assert cache.corrupt == 1 and not again["reference_cached"]
    assert any("corrupt" in r.message for r in caplog.records)
    for f in ("status", "max_ulp", "max_abs_err", "special"):
        assert again[f] == first[f]
    assert np.array_equal(again["reference"]["out"]["hi"], first["reference"]["out"]["hi"])
    # The recomputed entry was written back whole.
    assert Cache(tmp_path).get(next(iter(Cache(tmp_path).dir.glob("*/*.npz"))).stem) is not None


def test_an_entry_copied_over_another_key_is_refused_and_recomputed(tmp_path, caplog):
    """Issue 21: two intact entries, one copied over the other's file. Before entries carried
    their key, the copy was served for the other key: a reference of other logits, a wrong
    verdict. Now the entry says whose it is, is refused with a warning and recomputed."""
    case = parse_case({"id": "t/c", "logits": [[0.5, 1.5, 0.1]]}, file="<t>", index=0, family=None, base=ROOT)
    other = parse_case({"id": "t/d", "logits": [[9.0, -4.0, 0.25]]}, file="<t>", index=1, family=None, base=ROOT)
    items = [Item(c, "softmax", "forward", "default", "numpy", "cpu", "float64", "eager") for c in (case, other)]
    first = [Session(load_policy("standard"), Cache(tmp_path), [], None, 0).run(it) for it in items]
    assert [r["status"] for r in first] == ["pass", "pass"]
    entries = {}
    for it in items:
        x = D.cast_exact(np.array(it.case.logits_for(D.get("float64"))), D.get("float64"))
        entries[it.case.id] = Cache(tmp_path)._path(cache_key("softmax", "forward", "float64", -1, x, None, None,
                                                               R.claim_bits(D.get("float64"))))
    assert all(p.exists() for p in entries.values())
    entries["t/c"].write_bytes(entries["t/d"].read_bytes())  # intact, checksummed, but t/d's
    caplog.set_level(logging.WARNING, logger="harness.cache")
    cache = Cache(tmp_path)
    again = Session(load_policy("standard"), cache, [], None, 0).run(items[0])
    assert cache.corrupt == 1 and not again["reference_cached"]
    assert any("not of" in r.message for r in caplog.records)
    assert again["status"] == "pass" and again["max_ulp"] == first[0]["max_ulp"]
    assert np.array_equal(again["reference"]["out"]["hi"], first[0]["reference"]["out"]["hi"])
    # The exact softmax of [0.5, 1.5, 0.1]: e^0.5 / (e^0.5 + e^1.5 + e^0.1), as the reference holds it.
    e = np.exp([0.5, 1.5, 0.1])
    assert abs(float(again["reference"]["out"]["hi"][0][0]) - e[0] / e.sum()) < 1e-15


def _writer(args):
    d, n = args
    x = D.cast_exact(np.linspace(-3, 3, 64).reshape(4, 16), F32)
    c = Cache(d)
    for _ in range(n):
        c.put(_key(x), _ref(x))
    return c.get(_key(x)) is not None


def test_parallel_writers_of_the_same_entry(tmp_path):
    with mp.get_context("spawn").Pool(4) as pool:
        ok = pool.map(_writer, [(str(tmp_path), 5)] * 4)
    assert all(ok)
    assert len(list(tmp_path.glob("*/*.npz"))) == 1
    assert not list(tmp_path.glob("*/.tmp-*"))  # no temporary file left behind


def test_cache_command(tmp_path):
    x = D.cast_exact(np.array([1.0, 2.0]), F32)
    Cache(tmp_path).put(_key(x), _ref(x))
    info = subprocess.run([sys.executable, "-m", "harness", "cache", "info", "--cache-dir", str(tmp_path)],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert info.returncode == 0 and "1 entries" in info.stdout
    clear = subprocess.run([sys.executable, "-m", "harness", "cache", "clear", "--cache-dir", str(tmp_path)],
                           capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert clear.returncode == 0 and "removed 1 entries" in clear.stdout
    assert not list(tmp_path.glob("*/*.npz"))


def test_compile_cache_dir_follows_the_environment(tmp_path, monkeypatch):
    from harness.adapters.base import compile_cache_dir

    monkeypatch.setenv("HARNESS_COMPILE_CACHE", str(tmp_path / "cc"))
    monkeypatch.setenv("HARNESS_JOB", "3")
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    assert compile_cache_dir("jax") == str(tmp_path / "cc" / "jax" / "3")
    assert (tmp_path / "cc" / "jax" / "3").is_dir()
    for off in ("off", "0", ""):
        monkeypatch.setenv("HARNESS_COMPILE_CACHE", off)
        assert compile_cache_dir("jax") is None


def _compiled_run(cache: Path, results: Path, *extra: str, frameworks: tuple[str, ...] = ()) -> dict[str, tuple]:
    env = {k: v for k, v in os.environ.items() if k not in ("HARNESS_COMPILE_CACHE", "TORCHINDUCTOR_CACHE_DIR",
                                                             "TF_XLA_FLAGS", "PYTEST_XDIST_WORKER")}
    r = subprocess.run([sys.executable, "-m", "harness", "run", "-q", "--mode", "jit", "--dtype", "float32",
                        "--op", "softmax,sparse_softmax_cross_entropy", "--case-filter",
                        "seed/softmax_classic,seed/ce_sparse,seed/classic_axis0", "-j", "1",  # ranks 1-2, both axes
                        "--no-variants", "--cache-dir", str(cache), "--results", str(results), *extra,
                        *(["--framework", ",".join(frameworks)] if frameworks else [])],
                       capture_output=True, text=True, cwd=ROOT, timeout=900, env=env)
    assert r.returncode in (0, 1), r.stderr[-3000:]
    recs = [json.loads(line) for line in results.read_text().splitlines()]
    return {r["test_id"]: (r["status"], r["special"], r["max_ulp"]) for r in recs if r["kind"] == "result"}


@pytest.mark.parametrize("fw", ["jax", "tensorflow", "torch"])
def test_compile_caches_persist_beside_the_references_and_change_no_value(tmp_path, fw):
    """Each compiling framework's executables land in <cache>/compile/<framework>/<job>; the warm
    run loads them and gives the very same results; --no-cache writes none. (One framework per
    test: under pytest -n they run at once.)"""
    from harness.adapters import get

    ok, why = get(fw).available()
    if not ok:
        pytest.skip(why)
    cold = _compiled_run(tmp_path / "c", tmp_path / "cold.jsonl", frameworks=(fw,))
    files = [f for f in (tmp_path / "c" / "compile" / fw / "0").rglob("*") if f.is_file()]
    assert files, f"{fw} left no compiled executable in its cache"
    warm = _compiled_run(tmp_path / "c", tmp_path / "warm.jsonl", frameworks=(fw,))
    assert cold and warm == cold
    _compiled_run(tmp_path / "n", tmp_path / "none.jsonl", "--no-cache", "--op", "softmax", "--case-filter",
                  "seed/softmax_classic", frameworks=(fw,))
    assert not (tmp_path / "n" / "compile").exists() or not any(
        f.is_file() for f in (tmp_path / "n" / "compile").rglob("*"))
    info = subprocess.run([sys.executable, "-m", "harness", "cache", "info", "--cache-dir", str(tmp_path / "c")],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert info.returncode == 0 and "compiled executables" in info.stdout
    assert not re.search(r": 0 files", info.stdout), info.stdout
