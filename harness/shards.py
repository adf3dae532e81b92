"""`--shard K/N`: the K-th of N parts of a run's items, so that a CI matrix or several machines
share one suite and `harness report` merges their results files.

The split is deterministic: the same items (and the same durations file) give every machine the
same parts, whatever order it expands them in. Its unit is what a framework compiles once and
reuses, (framework, op, variant, dtype, mode): a part holds whole units, so sharding costs no
compilation twice. Units are dealt out longest first to the part with the least work so far
(LPT, within 4/3 of the best split), their weights the seconds an earlier run's results spent
on them (`--shard-durations`: the results files of that run; first call, timed calls,
reference and verdict), or, without one or for a unit it did not run, its item count times the
mean seconds per item of the units it did (1 without any).
"""

from __future__ import annotations

from typing import Any

from . import records
from .errors import HarnessInputError
from .runner import Item


def parse(spec: str | None) -> tuple[int, int] | None:
    """"K/N" -> (K, N), 1 <= K <= N; None for no sharding."""
    if spec is None or spec == "":
        return None
    try:
        k_text, n_text = str(spec).split("/")
        k, n = int(k_text), int(n_text)
    except ValueError:
        raise HarnessInputError(f"{spec!r} is not K/N (two whole numbers: the part, of how many; 1/2 and 2/2 "
                                f"run the two halves)", field="shard") from None
    if not 1 <= k <= n:
        raise HarnessInputError(f"{spec!r}: the part K of K/N must be between 1 and N", field="shard")
    return k, n


def unit_of(item: Item) -> tuple[str, str, str, str, str]:
    return (item.framework, item.op, item.variant, item.dtype, item.mode)


def _unit_of_record(rec: dict[str, Any]) -> tuple[str, ...]:
    return tuple(str(rec.get(k)) for k in ("framework", "op", "variant", "dtype", "mode"))


def durations(loaded: records.Loaded) -> dict[tuple[str, ...], float]:
    """Seconds per unit in the records of earlier results files (the last record of a key wins)."""
    by_key = {records.key(r): r for r in loaded.results}
    out: dict[tuple[str, ...], float] = {}
    for r in by_key.values():
        u = _unit_of_record(r)
        out[u] = out.get(u, 0.0) + records.spent_s(r)
    return out


def split(items: list[Item], n: int, weights: dict[tuple[str, ...], float] | None = None) -> list[list[Item]]:
    """The items in N parts, whole units each, balanced by weight (LPT), deterministic."""
    units: dict[tuple[str, ...], list[Item]] = {}
    for it in items:
        units.setdefault(unit_of(it), []).append(it)
    weights = weights or {}
    known = [(len(units[u]), weights[u]) for u in units if u in weights]
    per_item = (sum(w for _, w in known) / max(1, sum(c for c, _ in known))) if known else 1.0
    w = {u: weights.get(u, len(its) * per_item) for u, its in units.items()}
    load = [0.0] * n
    parts: list[list[tuple[str, ...]]] = [[] for _ in range(n)]
    for u in sorted(units, key=lambda u: (-w[u], u)):
        k = min(range(n), key=lambda i: (load[i], i))
        parts[k].append(u)
        load[k] += w[u]
    # Each part keeps the items in the order they were expanded (the runner groups them again).
    member = {u: k for k, us in enumerate(parts) for u in us}
    out: list[list[Item]] = [[] for _ in range(n)]
    for it in items:
        out[member[unit_of(it)]].append(it)
    return out


def select(items: list[Item], shard: tuple[int, int] | None,
           weights: dict[tuple[str, ...], float] | None = None) -> list[Item]:
    """The items of part K of N (all of them without sharding), balanced by `weights` (durations
    of an earlier run, as options.RunOptions.shard_weights holds them) when given."""
    if shard is None:
        return items
    k, n = shard
    return split(items, n, weights)[k - 1]
