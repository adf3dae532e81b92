"""ULP arithmetic and rounding of harness/dtypes.py at the edges of every format.

Oracles: numpy's own casts, `np.spacing` and `np.nextafter` for float16/32/64; ml_dtypes'
`finfo` and the bits of the uint16 view for bfloat16 (ml_dtypes casts float64 -> bfloat16
through float32, a double rounding, so its cast is an oracle only for float32 inputs); and an
exact rounding in rational arithmetic (`fractions`) for the double-double inputs.
"""

from __future__ import annotations

import math
from fractions import Fraction

import ml_dtypes
import numpy as np
import pytest

from harness import dtypes as D

NAMES = D.DTYPE_NAMES
SMALL = ["float16", "bfloat16", "float32"]
INF = math.inf
BF16 = ml_dtypes.bfloat16


# --------------------------------------------------------------------------------------------
# oracles


def finfo(dt: D.DType):
    return ml_dtypes.finfo(BF16) if dt.name == "bfloat16" else np.finfo(dt.np)


def next_up(v: float, dt: D.DType) -> float:
    """The next number of `dt` above the `dt` number v (toward +inf)."""
    if dt.name == "bfloat16":
        if v == 0:
            return float(np.uint16(1).view(BF16))
        b = np.array([v]).astype(BF16).view(np.uint16)[0]
        b = b + 1 if v > 0 else b - 1  # the magnitude grows for v > 0, shrinks for v < 0
        return float(np.array([b], dtype=np.uint16).view(BF16).astype(np.float64)[0])
    t = dt.np.type
    with np.errstate(over="ignore"):
        return float(np.nextafter(t(v), t(INF)))


def next_down(v: float, dt: D.DType) -> float:
    return -next_up(-v, dt)


def spacing(v: float, dt: D.DType) -> float:
    """Distance from |v| to the next number of larger magnitude (np.spacing for the numpy
    formats, the uint16 bits for bfloat16)."""
    a = abs(v)
    if dt.name == "bfloat16":
        return next_up(a, dt) - a
    with np.errstate(over="ignore"):
        return float(abs(np.spacing(dt.np.type(a))))


def exact_round(hi: float, lo: float, dt: D.DType) -> float:
    """hi + lo rounded to dt to nearest, ties to even, in exact rational arithmetic."""
    if not math.isfinite(hi):
        return hi
    v = Fraction(hi) + Fraction(lo)
    if v == 0:
        return hi
    a = abs(v)
    threshold = Fraction(dt.max) + Fraction(2) ** (dt.emax - dt.p + 1) / 2
    if a >= threshold:  # at the threshold the tie goes to the even neighbour, 2^(emax+1): inf
        return math.copysign(INF, v)
    e = math.frexp(float(a))[1] - 1
    while Fraction(2) ** e > a:
        e -= 1
    while Fraction(2) ** (e + 1) <= a:
        e += 1
    step = Fraction(2) ** (max(e, dt.emin) - dt.p + 1)
    n = round(a / step)  # Fraction.__round__ rounds half to even
    return math.copysign(float(n * step), v)


def dt_values(dt: D.DType, n: int, rng: np.random.Generator) -> np.ndarray:
    """Random numbers of dt over its whole exponent range (subnormals included), both signs."""
    e = rng.integers(dt.emin - dt.p, dt.emax + 1, size=n)
    m = rng.uniform(1.0, 2.0, size=n)
    x = np.ldexp(m, e) * rng.choice([-1.0, 1.0], size=n)
    return D.cast_exact(x, dt)


def edge_values(dt: D.DType) -> list[float]:
    """Zero, subnormals, the normal boundary, every power of two, max."""
    vals = [0.0, dt.min_sub, 2 * dt.min_sub, 3 * dt.min_sub, dt.tiny - dt.min_sub, dt.tiny,
            dt.tiny + dt.min_sub, 1.0, dt.max, next_down(dt.max, dt)]
    for e in range(dt.emin - dt.p + 1, dt.emax + 1):
        p2 = math.ldexp(1.0, e)
        vals += [p2, next_down(p2, dt)]
    return vals


# --------------------------------------------------------------------------------------------
# the formats


@pytest.mark.parametrize("name", NAMES)
def test_constants_match_finfo(name):
    dt = D.DTYPES[name]
    fi = finfo(dt)
    assert dt.p == fi.nmant + 1
    assert dt.emin == fi.minexp and dt.emax == fi.maxexp - 1
    assert dt.max == float(fi.max)
    assert dt.tiny == float(fi.smallest_normal)
    assert dt.min_sub == float(fi.smallest_subnormal)
    assert dt.eps == float(fi.eps) and dt.u == float(fi.eps) / 2
    assert D.get(name) is dt
    assert next_up(dt.max, dt) == INF


def test_get_unknown_dtype_names_the_valid_ones():
    with pytest.raises(ValueError, match="float16, bfloat16, float32, float64"):
        D.get("float8")


# --------------------------------------------------------------------------------------------
# ulp


@pytest.mark.parametrize("name", NAMES)
def test_ulp_at_the_edges(name):
    """ulp(v) = the spacing of dt at v: the upper binade's at a power of two, min_sub at zero
    and through the subnormals, the ULP of max at max and beyond."""
    dt = D.DTYPES[name]
    vals = edge_values(dt)
    want = []
    for v in vals:
        want.append(dt.max - next_down(dt.max, dt) if v == dt.max else spacing(v, dt))
    for sign in (1.0, -1.0):
        got = D.ulp(sign * np.array(vals), None, dt)
        np.testing.assert_array_equal(got, want)
    ulp_max = dt.max - next_down(dt.max, dt)
    assert ulp_max == 2.0 ** (dt.emax - dt.p + 1)
    np.testing.assert_array_equal(D.ulp(np.array([INF, -INF, 0.0, -0.0]), None, dt),
                                  [ulp_max, ulp_max, dt.min_sub, dt.min_sub])
    if name != "float64":  # beyond max (representable in float64 only for the small formats)
        assert D.ulp(np.array([dt.max * 4]), None, dt)[0] == ulp_max


@pytest.mark.parametrize("name", NAMES)
def test_ulp_lo_picks_the_binade_below_a_power_of_two(name):
    dt = D.DTYPES[name]
    for e in (dt.emin + 1, -1, 0, 1, dt.emax):
        p2 = math.ldexp(1.0, e)
        below = p2 - next_down(p2, dt)
        above = spacing(p2, dt)
        assert below * 2 == above
        lo = max(p2 * 2.0 ** -60, 2.0 ** -1074)  # a normalised lo (float64 too) that does not underflow
        assert D.ulp(np.array([p2]), np.array([-lo]), dt)[0] == below
        assert D.ulp(np.array([-p2]), np.array([lo]), dt)[0] == below
        assert D.ulp(np.array([p2]), np.array([lo]), dt)[0] == above
        assert D.ulp(np.array([p2]), np.array([0.0]), dt)[0] == above
    # the smallest normal: the spacing below it is the subnormals', the same
    assert D.ulp(np.array([dt.tiny]), np.array([-max(dt.tiny * 2.0 ** -60, 2.0 ** -1074)]), dt)[0] == dt.min_sub


@pytest.mark.parametrize("name", NAMES)
def test_ulp_of_values_between_numbers(name):
    """Values that are not numbers of dt: the spacing of the binade they fall in."""
    dt = D.DTYPES[name]
    rng = np.random.default_rng(10)
    lo_e = dt.emin - dt.p + 1
    e = rng.integers(max(lo_e, -1074), dt.emax + 1, size=2000)
    x = np.ldexp(rng.uniform(1.0, 2.0, size=e.size), e)
    x = x[x <= dt.max]
    got = D.ulp(x, None, dt)
    for xi, gi in zip(x, got):
        r = exact_round(float(xi), 0.0, dt)
        down = r if r <= xi else next_down(r, dt)  # dt's number at or below x
        want = dt.max - next_down(dt.max, dt) if down == dt.max else spacing(down, dt)
        assert gi == want, (xi, gi, want)


def test_ulp_error_and_abs_error():
    for name in NAMES:
        dt = D.DTYPES[name]
        for v in (1.0, dt.tiny, dt.min_sub * 5, next_down(dt.max, dt), 2.0 ** -3):
            up = next_up(v, dt)
            assert D.ulp_error(np.array([up]), np.array([v]), np.array([0.0]), dt)[0] == 1.0
            assert D.abs_error(np.array([up]), np.array([v]), np.array([0.0]))[0] == up - v
    f64 = D.DTYPES["float64"]
    # lo counts: the exact value 1 + 2^-60 is 2^-60 away from 1
    assert D.abs_error(np.array([1.0]), np.array([1.0]), np.array([2.0 ** -60]))[0] == 2.0 ** -60
    assert D.ulp_error(np.array([1.0]), np.array([1.0]), np.array([2.0 ** -54]), f64)[0] == 2.0 ** -54 / 2.0 ** -52


# --------------------------------------------------------------------------------------------
# round_to and cast_exact


@pytest.mark.parametrize("name", ["float16", "float32", "float64"])
def test_round_to_matches_numpy_cast(name):
    dt = D.DTYPES[name]
    rng = np.random.default_rng(11)
    e = rng.integers(max(dt.emin - dt.p - 2, -1074), min(dt.emax + 2, 1024), size=20000)
    x = np.ldexp(rng.uniform(1.0, 2.0, size=e.size), e) * rng.choice([-1.0, 1.0], size=e.size)
    x = x[np.isfinite(x)]
    with np.errstate(over="ignore"):
        want = x.astype(dt.np).astype(np.float64)
    got = D.round_to(x, np.zeros_like(x), dt)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(np.signbit(got), np.signbit(want))


def test_round_to_bfloat16_matches_ml_dtypes_from_float32():
    """From float32 values ml_dtypes rounds once: its cast is the oracle there."""
    dt = D.DTYPES["bfloat16"]
    rng = np.random.default_rng(12)
    bits = rng.integers(0, 2 ** 32, size=50000, dtype=np.uint64).astype(np.uint32)
    x32 = bits.view(np.float32)
    x32 = x32[np.isfinite(x32)]
    x = x32.astype(np.float64)
    want = x32.astype(BF16).astype(np.float64)
    got = D.round_to(x, np.zeros_like(x), dt)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(np.signbit(got), np.signbit(want))


@pytest.mark.parametrize("name", SMALL)
def test_round_to_matches_exact_rounding_of_double_doubles(name):
    dt = D.DTYPES[name]
    rng = np.random.default_rng(13)
    e = rng.integers(dt.emin - dt.p - 1, dt.emax + 1, size=3000)
    hi = np.ldexp(rng.uniform(1.0, 2.0, size=e.size), e) * rng.choice([-1.0, 1.0], size=e.size)
    lo = hi * 2.0 ** -54 * rng.uniform(-1.0, 1.0, size=e.size)
    got = D.round_to(hi, lo, dt)
    want = [exact_round(h, lo_, dt) for h, lo_ in zip(hi.tolist(), lo.tolist())]
    np.testing.assert_array_equal(got, want)


def test_round_to_bfloat16_avoids_the_double_rounding_of_the_library_cast():
    dt = D.DTYPES["bfloat16"]
    # 1 + 2^-8 + 2^-30: above the midpoint 1 + 2^-8, so it rounds up to 1 + 2^-7; float32 first
    # rounds it onto the midpoint, which then ties to even (1).
    v = 1.0 + 2.0 ** -8 + 2.0 ** -30
    # The hazard: through float32 (as ml_dtypes' float64 cast did before 0.7) it lands on 1.
    assert float(np.array([v]).astype(np.float32).astype(BF16).astype(np.float64)[0]) == 1.0
    assert D.round_to(np.array([v]), np.array([0.0]), dt)[0] == 1.0 + 2.0 ** -7
    assert D.round_to(np.array([-v]), np.array([0.0]), dt)[0] == -(1.0 + 2.0 ** -7)
    v = 1.0 + 2.0 ** -8 - 2.0 ** -40
    assert D.round_to(np.array([v]), np.array([0.0]), dt)[0] == 1.0


def _midpoints(dt: D.DType, rng: np.random.Generator) -> list[tuple[float, float]]:
    """Neighbour pairs (a, b) of dt, a < b: random ones, and at every kind of edge (but 0 and
    min_sub: the midpoint min_sub/2 is a power of two, tested on its own below)."""
    pairs = []
    for v in dt_values(dt, 300, rng).tolist() + [dt.min_sub, 2 * dt.min_sub, dt.tiny - dt.min_sub, dt.tiny, 1.0,
                                                  next_down(1.0, dt), next_down(dt.max, dt), 0.5]:
        if 0 < abs(v) < dt.max and next_up(v, dt) != 0:
            pairs.append((v, next_up(v, dt)))
    pairs += [(-b, -a) for a, b in pairs]
    return pairs


@pytest.mark.parametrize("name", SMALL)
def test_round_to_midpoints(name):
    """hi exactly on a midpoint: lo's sign decides; lo == 0 ties to even."""
    dt = D.DTYPES[name]
    rng = np.random.default_rng(14)
    for a, b in _midpoints(dt, rng):
        m = (a + b) / 2
        assert Fraction(m) == (Fraction(a) + Fraction(b)) / 2  # midpoints are float64 numbers
        eps = float(np.spacing(abs(m))) / 4 if m != 0 else 2.0 ** -1074
        even = a if D._is_even(np.array([a]), dt)[0] else b
        assert even == exact_round(m, 0.0, dt)
        got = D.round_to(np.array([m, m, m]), np.array([eps, -eps, 0.0]), dt)
        assert got.tolist() == [b, a, even], (a, b, m, got)
        if name != "bfloat16":
            assert float(np.array([m]).astype(dt.np)[0]) == even


def test_round_to_midpoint_with_a_tiny_lo():
    dt = D.DTYPES["float32"]
    m = 1.0 + 2.0 ** -24  # the midpoint between 1 and 1 + 2^-23
    got = D.round_to(np.array([m, m]), np.array([2.0 ** -80, -(2.0 ** -80)]), dt)
    assert got.tolist() == [1.0 + 2.0 ** -23, 1.0]


@pytest.mark.parametrize("name", SMALL)
def test_round_to_midpoint_between_zero_and_min_sub(name):
    dt = D.DTYPES[name]
    m = dt.min_sub / 2
    lo = float(np.spacing(m)) / 4
    got = D.round_to(np.array([m, m, -m, -m]), np.array([lo, -lo, -lo, lo]), dt)
    assert got.tolist() == [dt.min_sub, 0.0, -dt.min_sub, -0.0]


@pytest.mark.parametrize("name", SMALL)
def test_round_to_overflow_threshold(name):
    """Round to nearest overflows at max + ULP(max)/2 (the tie goes to the even 2^(emax+1))."""
    dt = D.DTYPES[name]
    T = dt.max + 2.0 ** (dt.emax - dt.p + 1) / 2
    below = float(np.nextafter(T, 0.0))
    tiny_lo = float(np.spacing(T)) / 4
    for s in (1.0, -1.0):
        got = D.round_to(np.array([s * T, s * T, s * dt.max, s * 2 * T, s * INF]),
                         np.array([0.0, s * tiny_lo, 0.0, 0.0, 0.0]), dt)
        assert got.tolist() == [s * INF, s * INF, s * dt.max, s * INF, s * INF], (s, got)
        assert exact_round(s * below, 0.0, dt) == s * dt.max
        assert D.round_to(np.array([s * below]), np.array([0.0]), dt)[0] == s * dt.max
        # far enough below the threshold that float32 does not round onto it: max
        below2 = s * (dt.max + T) / 2
        assert D.round_to(np.array([below2]), np.array([0.0]), dt)[0] == s * dt.max
    if name != "bfloat16":
        assert float(np.array([below]).astype(dt.np)[0]) == dt.max


@pytest.mark.parametrize("name", SMALL)
def test_round_to_overflow_threshold_with_negative_lo(name):
    dt = D.DTYPES[name]
    T = dt.max + 2.0 ** (dt.emax - dt.p + 1) / 2
    lo = float(np.spacing(T)) / 4
    assert exact_round(T, -lo, dt) == dt.max
    assert D.round_to(np.array([T]), np.array([-lo]), dt)[0] == dt.max


def test_round_to_bfloat16_just_below_the_overflow_threshold():
    dt = D.DTYPES["bfloat16"]
    T = dt.max + 2.0 ** (dt.emax - dt.p + 1) / 2
    below = float(np.nextafter(T, 0.0))
    assert exact_round(below, 0.0, dt) == dt.max
    assert D.round_to(np.array([below]), np.array([0.0]), dt)[0] == dt.max


@pytest.mark.parametrize("name", SMALL)
def test_round_to_subnormals_and_zero(name):
    dt = D.DTYPES[name]
    s = dt.min_sub
    k = np.arange(0, 41)
    x = k * (s / 2)  # multiples of half the subnormal spacing: every other one a midpoint
    got = D.round_to(x, np.zeros_like(x), dt)
    want = [exact_round(v, 0.0, dt) for v in x.tolist()]
    np.testing.assert_array_equal(got, want)
    assert got[1] == 0.0 and got[3] == 2 * s and got[5] == 2 * s and got[7] == 4 * s  # ties to even
    # off the midpoints by lo
    np.testing.assert_array_equal(D.round_to(np.array([s / 2, s / 2]), np.array([s * 2.0 ** -30, -s * 2.0 ** -30]), dt),
                                  [s, 0.0])
    # gradual underflow keeps the sign of zero, like the library casts
    tiny = np.array([s / 4, -s / 4, 0.0, -0.0, s * 0.75, -s * 0.75])
    got = D.round_to(tiny, np.zeros_like(tiny), dt)
    np.testing.assert_array_equal(got, [0.0, -0.0, 0.0, -0.0, s, -s])
    np.testing.assert_array_equal(np.signbit(got), [False, True, False, True, False, True])
    if name != "bfloat16":
        np.testing.assert_array_equal(got, tiny.astype(dt.np).astype(np.float64))
    # the normal boundary: tiny - s/2 is a midpoint between tiny - s (odd) and tiny (even)
    assert D.round_to(np.array([dt.tiny - s / 2]), np.array([0.0]), dt)[0] == dt.tiny


def test_round_to_float64_is_the_identity_on_normalised_pairs():
    dt = D.DTYPES["float64"]
    hi = np.array([1.0, -3.5, 5e-324, np.finfo(np.float64).max, INF, -0.0])
    lo = np.array([2.0 ** -54, -(2.0 ** -60), 0.0, 1e290, 0.0, 0.0])
    np.testing.assert_array_equal(D.round_to(hi, lo, dt), hi)


@pytest.mark.parametrize("name", NAMES)
def test_cast_exact_equals_the_dtype_cast(name):
    dt = D.DTYPES[name]
    rng = np.random.default_rng(15)
    x = np.concatenate([rng.normal(size=3000) * 10.0 ** rng.integers(-40, 40, size=3000),
                        [np.nan, INF, -INF, 0.0, -0.0, dt.max, -dt.max, dt.min_sub, dt.tiny, 1e300, -1e300]])
    if name == "bfloat16":
        with np.errstate(over="ignore"):
            x32 = x.astype(np.float32)  # single rounding from float32 values
            want = x32.astype(BF16).astype(np.float64)
        got = D.cast_exact(x32.astype(np.float64), dt)
        # and from float64, the exact rounding
        got64 = D.cast_exact(x, dt)
        want64 = [exact_round(v, 0.0, dt) if math.isfinite(v) else v for v in x.tolist()]
        np.testing.assert_array_equal(got64, want64)
    else:
        with np.errstate(over="ignore"):
            want = x.astype(dt.np).astype(np.float64)
        got = D.cast_exact(x, dt)
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(np.signbit(got), np.signbit(want))
    # cast_exact is idempotent: its values are numbers of dt
    np.testing.assert_array_equal(D.cast_exact(got, dt), got)
