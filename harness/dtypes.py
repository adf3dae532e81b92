"""The four tested floating-point formats, and the ULP arithmetic on them.

Every value of float16, bfloat16 and float32 is exactly representable in float64, and so is
every midpoint between two neighbours of those formats. The harness therefore carries all
inputs and outputs as float64 arrays holding exact values, and does the rounding and ULP
arithmetic of the smaller formats in float64 without any loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import ml_dtypes
import numpy as np

from .errors import HarnessInputError
from .vocab import DTYPE_NAMES


@dataclass(frozen=True)
class DType:
    name: str
    np: np.dtype
    p: int  # precision in bits, the implicit bit included
    emin: int  # exponent of the smallest normal number
    emax: int  # exponent of the largest finite number

    @property
    def u(self) -> float:
        """Unit roundoff: half the distance from 1 to the next number."""
        return 2.0 ** -self.p

    @property
    def eps(self) -> float:
        return 2.0 ** (1 - self.p)

    @property
    def max(self) -> float:
        return float((2.0 - 2.0 ** (1 - self.p)) * 2.0 ** self.emax)

    @property
    def tiny(self) -> float:
        """Smallest positive normal number."""
        return 2.0 ** self.emin

    @property
    def min_sub(self) -> float:
        """Smallest positive subnormal number: the ULP of zero."""
        return float(np.ldexp(1.0, self.emin - self.p + 1))


DTYPES: dict[str, DType] = {
    "float16": DType("float16", np.dtype(np.float16), 11, -14, 15),
    "bfloat16": DType("bfloat16", np.dtype(ml_dtypes.bfloat16), 8, -126, 127),
    "float32": DType("float32", np.dtype(np.float32), 24, -126, 127),
    "float64": DType("float64", np.dtype(np.float64), 53, -1022, 1023),
}
__all__ = ["DTYPE_NAMES", "DTYPES", "DType", "get", "cast_exact", "ulp", "round_to", "neighbours", "is_midpoint",
           "ulp_error", "abs_error", "STICKY"]


def get(name: str) -> DType:
    try:
        return DTYPES[name]
    except KeyError:
        raise HarnessInputError(f"unknown dtype {name!r}", field="dtype", choices=DTYPE_NAMES) from None


def cast_exact(values: np.ndarray, dt: DType) -> np.ndarray:
    """Cast to the test dtype (round to nearest even), returned as float64 holding the exact
    values of the cast numbers. This is what the reference sees: never the uncast input."""
    a = np.asarray(values, dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        return round_to(a, np.zeros_like(a), dt)


def ulp(hi: np.ndarray, lo: np.ndarray | None, dt: DType) -> np.ndarray:
    """ULP in format `dt` of the exact value hi + lo: the spacing of dt's numbers at that
    value (binade of |x|, subnormal spacing below the normal range, the ULP of max above it).

    `lo` disambiguates values just below a power of two whose float64 `hi` rounded up onto it.
    """
    hi = np.asarray(hi, dtype=np.float64)
    a = np.abs(hi)
    finite = np.isfinite(a) & (a > 0)
    mant, exp = np.frexp(np.where(finite, a, 1.0))
    e = exp.astype(np.int64) - 1  # a = m * 2**e with m in [1, 2)
    if lo is not None:
        lo = np.asarray(lo, dtype=np.float64)
        below = finite & (mant == 0.5) & (np.sign(lo) == -np.sign(hi)) & (lo != 0)
        e = np.where(below, e - 1, e)
    e = np.clip(e, dt.emin, dt.emax)
    out = np.ldexp(1.0, e - dt.p + 1)
    out = np.where(finite, out, np.where(a == 0, dt.min_sub, np.ldexp(1.0, dt.emax - dt.p + 1)))
    return out


def round_to(hi: np.ndarray, lo: np.ndarray, dt: DType) -> np.ndarray:
    """Round the exact value hi + lo (a double-double) to `dt` with round-to-nearest-even,
    overflow to +-inf and gradual underflow, returned as exact float64 values.

    The cast of `hi` alone can be wrong in two ways: `hi` can sit exactly on a midpoint of dt
    that `lo` moves off, and a library cast may round twice (float64 -> float32 -> bfloat16).
    Both are settled by comparing the two neighbours of `hi` in dt exactly.
    """
    hi = np.asarray(hi, dtype=np.float64)
    lo = np.asarray(lo, dtype=np.float64)
    if dt.name == "float64":
        # hi is float64's round-to-nearest of hi + lo when the pair is normalised.
        return hi.copy()
    with np.errstate(over="ignore", invalid="ignore"):
        # Clip first: a library cast of a value just below the overflow threshold can round
        # twice (bfloat16 through float32) onto inf; the overflow is decided below, exactly.
        r = np.clip(hi, -dt.max, dt.max).astype(dt.np).astype(np.float64)
        finite = np.isfinite(hi)
        down, up = neighbours(hi, r, dt)
        # hi + lo is nearer to down than to up  <=>  (hi - down) + lo < (up - hi) - lo
        #                                      <=>  2 lo < delta, with delta exact.
        delta = (up - hi) - (hi - down)
        two_lo = 2.0 * lo
        tie = two_lo == delta
        even_down = _is_even(down, dt)
        pick = np.where(tie, np.where(even_down, down, up), np.where(two_lo < delta, down, up))
        out = np.where(finite, pick, hi)
        # Overflow: round-to-nearest goes to inf from T = max + half an ULP of max (a tie
        # at T goes to inf too: max is odd).
        T = dt.max + 0.5 * 2.0 ** (dt.emax - dt.p + 1)
        a = np.abs(hi)
        big = finite & ((a > T) | ((a == T) & (np.sign(hi) * lo >= 0)))
        out = np.where(big, np.copysign(np.inf, hi), out)
    return out


def neighbours(hi: np.ndarray, r: np.ndarray, dt: DType) -> tuple[np.ndarray, np.ndarray]:
    """The two numbers of dt around hi (down <= hi <= up), given r, a number of dt next to hi."""
    step = ulp(r, None, dt)
    down = np.where(r <= hi, r, r - np.where(r > 0, _toward_zero_step(r, dt), step))
    up = np.where(r >= hi, r, r + np.where(r < 0, _toward_zero_step(r, dt), step))
    return down, up


def is_midpoint(hi: np.ndarray, dt: DType) -> np.ndarray:
    """True where hi lies exactly halfway between two neighbours in dt (or on the overflow
    threshold): there the rounding of hi + lo depends on the sign of lo."""
    hi = np.asarray(hi, dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        r = np.clip(hi, -dt.max, dt.max).astype(dt.np).astype(np.float64)
        down, up = neighbours(hi, r, dt)
        T = dt.max + 0.5 * 2.0 ** (dt.emax - dt.p + 1)
        return np.isfinite(hi) & (((hi - down) == (up - hi)) & (down != up) | (np.abs(hi) == T))


def _toward_zero_step(r: np.ndarray, dt: DType) -> np.ndarray:
    """Distance from r to its neighbour toward zero: half an ULP below a power of two in the
    normal range (the binade changes there), one ULP elsewhere."""
    s = ulp(r, None, dt)
    a = np.abs(r)
    mant, _ = np.frexp(np.where(a > 0, a, 1.0))
    pow2 = (mant == 0.5) & (a > dt.tiny)
    return np.where(pow2, s / 2, s)


def _is_even(v: np.ndarray, dt: DType) -> np.ndarray:
    """True where v's last significand bit in dt is 0."""
    with np.errstate(invalid="ignore"):
        q = np.where(np.isfinite(v), v / ulp(v, None, dt), 0.0)
    return np.mod(q, 2.0) == 0.0


def ulp_error(out: np.ndarray, hi: np.ndarray, lo: np.ndarray, dt: DType) -> np.ndarray:
    """|out - (hi + lo)| in ULPs of dt at the exact value. Only meaningful where both finite."""
    return abs_error(out, hi, lo) / ulp(hi, lo, dt)


#: The lo word of a double-double whose remainder is nonzero but below float64's range: it keeps
#: the remainder's sign (which decides a rounding or a binade at hi, docs/semantics.md S18) and
#: stands for a magnitude below 2^-1074, which an error measurement takes as 0.
STICKY = 5e-324


def abs_error(out: np.ndarray, hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
    out = np.asarray(out, dtype=np.float64)
    lo = np.asarray(lo, dtype=np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        lo = np.where((np.abs(lo) == STICKY) & (np.abs(hi) >= 2.0 ** -1022), 0.0, lo)
        # out - hi is exact when both are close (Sterbenz); when they are not, lo is negligible.
        return np.abs((out - hi) - lo)
