"""Content-addressed on-disk cache of references.

Key: sha256 of (op, check, dtype, axis, input bytes and shapes, rows, the grad check's
cotangent, claimed precision, engine version). Entry: an .npz file (read with allow_pickle=False) holding the arrays, a
sha256 checksum of their bytes and the entry's own key: an intact entry found under another key
(copied or renamed over it) is refused and recomputed, never served. Writes go to a temporary file in the same directory and are
renamed into place, so parallel workers never see a partial entry and the last rename wins with
identical content. A corrupt or truncated entry is detected, logged, removed and recomputed.

The cache directory also holds the frameworks' own compilation caches under `compile/`
(`compile/<framework>/<job>`: XLA executables of JAX and TensorFlow, inductor's graphs for
torch), so that a warm run loads what a cold run compiled. A run exports the location to its
workers in $HARNESS_COMPILE_CACHE ("off" with the reference cache disabled); a value the user
set beforehand wins.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from . import reference as R

log = logging.getLogger("harness.cache")

COMPILE_CACHE_ENV = "HARNESS_COMPILE_CACHE"
#: Whether the user chose the compile cache location (or "off") before the harness started.
_USER_COMPILE_CACHE = COMPILE_CACHE_ENV in os.environ


def compile_root() -> Path | None:
    """Where the frameworks' compilation caches go: $HARNESS_COMPILE_CACHE (set by the run, or by
    the user), else `compile/` in the default cache directory; None when it says off."""
    root = os.environ.get(COMPILE_CACHE_ENV)
    if root is None:
        return default_dir() / "compile"
    return None if root.lower() in ("", "0", "off", "false", "no") else Path(root)


def default_dir() -> Path:
    env = os.environ.get("HARNESS_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "softmax-harness"


def cache_key(op: str, check: str, dtype: str, axis: int, logits: np.ndarray, labels: np.ndarray | None,
              rows: np.ndarray | None, claim: int, cotangent: np.ndarray | None = None,
              options: dict[str, Any] | None = None, direction: np.ndarray | None = None) -> str:
    h = hashlib.sha256()
    for part in (op, check, dtype, str(axis), str(claim), R.ENGINE_VERSION):
        h.update(part.encode() + b"\0")
    if options:  # absent options keep the keys of the references computed before options existed
        h.update(json.dumps(options, sort_keys=True).encode() + b"\0")  # floats by repr: exact
    for a in (logits, labels, rows, cotangent) + ((direction,) if direction is not None else ()):
        if a is None:
            h.update(b"none\0")
        else:
            a = np.ascontiguousarray(a)
            h.update(f"{a.dtype.str}{a.shape}".encode() + b"\0" + a.tobytes())
    return h.hexdigest()


def _checksum(arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for k in sorted(arrays):
        a = np.ascontiguousarray(arrays[k])
        h.update(k.encode() + f"{a.dtype.str}{a.shape}".encode() + a.tobytes())
    return h.hexdigest()


class Cache:
    def __init__(self, directory: str | Path | None = None, enabled: bool = True):
        self.dir = Path(directory) if directory else default_dir()
        self.enabled = enabled
        self.hits = self.misses = self.corrupt = 0

    def check(self) -> None:
        """Refuse a cache directory that cannot be one (a regular file, a path under a file, a
        directory that cannot be written), before a run starts: otherwise every reference would
        fail alike and a run of errors would follow (issue 21)."""
        from .errors import HarnessInputError

        if not self.enabled:
            return
        if self.dir.exists() and not self.dir.is_dir():
            raise HarnessInputError("cannot be used as the reference cache: it is a file, not a directory",
                                    file=str(self.dir), field="cache-dir")
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise HarnessInputError(f"cannot be used as the reference cache: {e.strerror or e}", file=str(self.dir),
                                    field="cache-dir") from None
        if not self.dir.is_dir() or not os.access(self.dir, os.W_OK | os.X_OK):
            raise HarnessInputError("cannot be used as the reference cache: not a writable directory",
                                    file=str(self.dir), field="cache-dir")

    def _path(self, k: str) -> Path:
        return self.dir / k[:2] / f"{k}.npz"

    def get(self, k: str) -> R.Reference | None:
        if not self.enabled:
            return None
        p = self._path(k)
        if not p.exists():
            self.misses += 1
            return None
        try:
            with np.load(p, allow_pickle=False) as z:
                arrays = {n: z[n] for n in z.files}
            meta = str(arrays.pop("__meta__"))
            stored = str(arrays.pop("__checksum__"))
            own = str(arrays.pop("__key__")) if "__key__" in arrays else None
            if _checksum(arrays) != stored:
                raise ValueError("checksum mismatch")
            if own is None:  # written before entries carried their key: recomputed, quietly
                self.misses += 1
                return None
            if own != k:  # an intact entry of another key (copied, renamed): never served for this one
                raise ValueError(f"it holds the reference of key {own[:12]}..., not of {k[:12]}...")
        except Exception as e:  # any damage at all: recompute
            self.corrupt += 1
            log.warning("reference cache entry %s is corrupt (%s); recomputing", p, e)
            try:
                p.unlink()
            except OSError:
                pass
            return None
        self.hits += 1
        backend, prec, claim, decided, escalated = meta.split(",")
        names = sorted({n.split(".")[0] for n in arrays if n != "rows"})
        outs = {n: R.RefArray(arrays[f"{n}.hi"], arrays[f"{n}.lo"], arrays[f"{n}.rounded"], arrays[f"{n}.invalid"])
                for n in names}
        return R.Reference(outs, int(prec), int(claim), backend, arrays.get("rows"), int(decided), int(escalated))

    def put(self, k: str, ref: R.Reference) -> None:
        if not self.enabled:
            return
        arrays: dict[str, Any] = {}
        for n, r in ref.outputs.items():
            arrays.update({f"{n}.hi": r.hi, f"{n}.lo": r.lo, f"{n}.rounded": r.rounded, f"{n}.invalid": r.invalid})
        if ref.rows is not None:
            arrays["rows"] = ref.rows
        arrays["__checksum__"] = np.array(_checksum(arrays))
        arrays["__key__"] = np.array(k)  # an entry says whose it is: a file moved to another key is refused
        arrays["__meta__"] = np.array(f"{ref.backend},{ref.prec_bits},{ref.claim_bits},{ref.decided},{ref.escalated_rows}")
        p = self._path(k)
        p.parent.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=".tmp-", suffix=".npz")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(buf.getvalue())
            os.replace(tmp, p)  # atomic: readers see the old entry or the whole new one
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise

    @property
    def compile_dir(self) -> Path:
        return self.dir / "compile"

    def export_compile_cache(self) -> None:
        """Tell the adapters (in this process and the workers it starts) where to keep compiled
        executables: beside the references, or nowhere when this cache is disabled."""
        if not _USER_COMPILE_CACHE:
            os.environ[COMPILE_CACHE_ENV] = str(self.compile_dir) if self.enabled else "off"

    def info(self) -> dict[str, Any]:
        files = list(self.dir.glob("*/*.npz")) if self.dir.exists() else []
        compiled = [f for f in self.compile_dir.rglob("*") if f.is_file()] if self.compile_dir.exists() else []
        return {"dir": str(self.dir), "entries": len(files), "bytes": sum(f.stat().st_size for f in files),
                "compile_files": len(compiled), "compile_bytes": sum(f.stat().st_size for f in compiled)}

    def clear(self) -> dict[str, Any]:
        """Remove the whole cache, compiled executables included; returns what was there."""
        info = self.info()
        if self.dir.exists():
            shutil.rmtree(self.dir)
        return info
