"""Property tests for micoc.numerics: every rounding step against exact rational arithmetic."""

from __future__ import annotations

import ctypes
import ctypes.util
import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from micoc import numerics as nm
from micoc.ir.types import QuantParams, TensorType

SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
BITS = st.integers(1, 8)


# -- oracles -------------------------------------------------------------------


def frac_round(fr: Fraction) -> int:
    """Round half away from zero, exactly."""
    n = math.floor(abs(fr) + Fraction(1, 2))
    return -n if fr < 0 else n


def _libm():
    name = ctypes.util.find_library("m")
    if name is None:
        return None
    lib = ctypes.CDLL(name)
    lib.roundf.restype = ctypes.c_float
    lib.roundf.argtypes = [ctypes.c_float]
    lib.round.restype = ctypes.c_double
    lib.round.argtypes = [ctypes.c_double]
    return lib


LIBM = _libm()
needs_libm = pytest.mark.skipif(LIBM is None, reason="C libm not found via ctypes")


def same_float(a: float, b: float) -> bool:
    """Equal including the sign of zero and nan == nan."""
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)


# -- round_half_away -----------------------------------------------------------

SPECIAL_F32 = [
    0.49999997, -0.49999997, 0.5, -0.5, 1.5, -1.5, 2.5, -2.5, 0.0, -0.0, -0.4, 0.4,
    8388607.5, -8388607.5, 8388608.0, 16777215.0, 3.4e38, -3.4e38, 1e-45, -1e-45,
    np.nextafter(np.float32(0.5), np.float32(0)), np.nextafter(np.float32(1.5), np.float32(2)),
]


def test_round_half_away_special_values_match_fraction_oracle():
    x = np.array(SPECIAL_F32, dtype=np.float32)
    r = nm.round_half_away(x)
    assert r.dtype == np.float32
    for xi, ri in zip(x, r, strict=True):
        assert float(ri) == frac_round(Fraction(float(xi))), xi
    # the classic trap: floor(x + 0.5) rounds 0.49999997f to 1
    trap = np.float32(0.49999997)
    assert np.floor(trap + np.float32(0.5)) == 1.0
    assert nm.round_half_away(trap) == 0.0


def test_round_half_away_non_finite_and_ints():
    x = np.array([np.inf, -np.inf, np.nan], dtype=np.float32)
    r = nm.round_half_away(x)
    assert r[0] == np.inf and r[1] == -np.inf and np.isnan(r[2])
    ints = np.array([3, -4], dtype=np.int32)
    assert np.array_equal(nm.round_half_away(ints), ints)


@SETTINGS
@given(st.floats(width=32, allow_nan=False, allow_infinity=False))
def test_round_half_away_float32_matches_fraction(v):
    r = nm.round_half_away(np.array([v], dtype=np.float32))[0]
    assert float(r) == frac_round(Fraction(v))


@SETTINGS
@given(st.floats(allow_nan=False, allow_infinity=False))
def test_round_half_away_float64_matches_fraction(v):
    r = nm.round_half_away(np.array([v], dtype=np.float64))[0]
    assert float(r) == frac_round(Fraction(v))


@needs_libm
def test_round_half_away_matches_c_roundf_bitwise():
    rng = np.random.default_rng(0)
    bits = rng.integers(0, 2**32, size=20000, dtype=np.uint64).astype(np.uint32)
    x = np.concatenate([bits.view(np.float32), np.array(SPECIAL_F32 + [np.inf, -np.inf], np.float32)])
    # plus dense coverage around ties and the 2^23 boundary
    x = np.concatenate([x, (np.arange(-4000, 4000) / 8).astype(np.float32),
                        np.float32(2**23) + np.arange(-64, 64, dtype=np.float32) / 2])
    r = nm.round_half_away(x)
    for xi, ri in zip(x.tolist(), r.tolist(), strict=True):
        assert same_float(ri, LIBM.roundf(xi)), xi


@needs_libm
@SETTINGS
@given(st.floats(allow_nan=True, allow_infinity=True))
def test_round_half_away_matches_c_round_float64(v):
    assert same_float(float(nm.round_half_away(np.array([v]))[0]), LIBM.round(v))


# -- ranges --------------------------------------------------------------------


@pytest.mark.parametrize("bits", range(1, 9))
@pytest.mark.parametrize("unsigned", [False, True])
def test_elem_range_matches_tensor_type(bits, unsigned):
    elem = f"{'qu' if unsigned else 'qi'}{bits}"
    t = TensorType((2,), elem, QuantParams.per_tensor(0.5))
    assert nm.elem_range(bits, unsigned) == t.qrange
    assert nm.container_bits(bits) in (1, 2, 4, 8) and nm.container_bits(bits) >= bits


# -- weights -------------------------------------------------------------------

weight_mats = hnp.arrays(
    np.float32,
    st.tuples(st.integers(1, 6), st.integers(1, 40)),
    elements=st.floats(-8, 8, width=32),
)


@SETTINGS
@given(weight_mats, BITS, st.booleans())
def test_quantize_weights_maxabs_bounds(w, bits, per_channel):
    q, s = nm.quantize_weights(w, bits, per_channel=per_channel)
    assert q.dtype == np.int8 and q.shape == w.shape
    assert s.dtype == np.float32 and s.shape == ((w.shape[0],) if per_channel else (1,))
    assert np.all(s > 0) and np.all(np.isfinite(s))
    srow = s[:, None] if per_channel else s[None, :]
    if bits == 1:
        assert set(np.unique(q)) <= {-1, 1}
        assert np.array_equal(q, np.where(w >= 0, 1, -1))
        m = np.abs(w.astype(np.float64)).mean(axis=1 if per_channel else None)
        live = np.atleast_1d(m) >= np.finfo(np.float32).tiny  # else the dead-channel guard
        np.testing.assert_allclose(np.atleast_1d(s)[live], np.atleast_1d(m)[live], rtol=1e-6)
    else:
        qmax = 2 ** (bits - 1) - 1
        assert q.min() >= -qmax and q.max() <= qmax
        err = np.abs(w.astype(np.float64) - q * srow.astype(np.float64))
        assert np.all(err <= srow / 2 * (1 + 1e-6) + 1e-12)


@settings(max_examples=40, deadline=None)
@given(weight_mats, st.integers(2, 8))
def test_quantize_weights_mse_never_worse_than_maxabs(w, bits):
    qa, sa = nm.quantize_weights(w, bits, method="mse")
    qb, sb = nm.quantize_weights(w, bits, method="maxabs")
    w64 = w.astype(np.float64)
    ea = ((w64 - qa * sa[:, None].astype(np.float64)) ** 2).sum(axis=1)
    eb = ((w64 - qb * sb[:, None].astype(np.float64)) ** 2).sum(axis=1)
    assert np.all(ea <= eb * (1 + 1e-9) + 1e-30)
    assert np.all(sa <= sb)
    assert qa.min() >= -(2 ** (bits - 1) - 1) and qa.max() <= 2 ** (bits - 1) - 1


def test_quantize_weights_dead_channel_guard_and_axis():
    w = np.zeros((3, 2, 3, 3), np.float32)
    w[0] = 0.5
    w[2, 0, 0, 0] = -2.0
    q, s = nm.quantize_weights(w, 4)
    assert np.all(q[1] == 0)
    assert s[1] == np.float32(2.0 / 7)  # dead channel takes the per-tensor scale
    assert s[0] == np.float32(0.5 / 7) and q[2, 0, 0, 0] == -7
    q0, s0 = nm.quantize_weights(np.zeros((2, 5)), 8)
    assert np.all(q0 == 0) and np.all(s0 == 1.0)
    qb, sb = nm.quantize_weights(np.zeros((2, 5)), 1)
    assert np.all(qb == 1) and np.all(sb == 1.0)  # binary has no zero code (documented)
    # per-channel along another axis (e.g. [in, out] matrices)
    wt = np.array([[1.0, -0.1], [0.5, 0.2]], np.float32)
    q1, s1 = nm.quantize_weights(wt, 8, axis=1)
    assert s1.shape == (2,) and s1[0] == np.float32(1.0 / 127) and s1[1] == np.float32(0.2 / 127)
    assert q1[0, 0] == 127 and q1[1, 1] == 127
    with pytest.raises(ValueError):
        nm.quantize_weights(np.array([np.inf]), 4)
    with pytest.raises(ValueError):
        nm.quantize_weights(wt, 9)


# -- activations ---------------------------------------------------------------


@SETTINGS
@given(
    BITS,
    st.booleans(),
    st.floats(1e-3, 1e3),
    st.floats(0.0, 1.0),
    hnp.arrays(np.float64, st.integers(1, 64), elements=st.floats(-1.5, 1.5)),
)
def test_activation_quantize_dequantize_bounds(bits, unsigned, m, lo_frac, u):
    lo, hi = (0.0, m) if unsigned else (-m * lo_frac, m)
    s, zp = nm.activation_params(lo, hi, bits, unsigned)
    assert zp == 0 and s > 0 and float(np.float32(s)) == s
    rng = nm.elem_range(bits, unsigned)
    x = (u * m).astype(np.float32)  # includes values beyond the range
    q = nm.quantize_input(x, s, zp, rng)
    assert q.dtype == np.int32
    assert q.min() >= rng[0] and q.max() <= rng[1]
    d = nm.dequantize(q, s, zp)
    assert d.dtype == np.float32
    if bits == 1 and not unsigned:
        assert set(np.unique(q)) <= {-1, 1}
        assert np.array_equal(q, np.where(x >= 0, 1, -1))
        assert np.array_equal(d, np.where(x >= 0, np.float32(s), -np.float32(s)))
        return
    qmax = (2**bits - 1) if unsigned else 2 ** (bits - 1) - 1
    top = qmax * s
    inside = (x >= (0 if unsigned else -top)) & (x <= top)
    err = np.abs(d.astype(np.float64) - x.astype(np.float64))[inside]
    # s/2, plus the float32 rounding of x * (1/s) and of q * s
    assert np.all(err <= s / 2 + np.abs(x[inside]) * 2.0**-21 + s * 2.0**-20)


@pytest.mark.parametrize("bits", range(1, 9))
@pytest.mark.parametrize("unsigned", [False, True])
def test_every_bitwidth_quantize_dequantize_grid(bits, unsigned):
    """Deterministic sweep of every width and signedness (hypothesis samples these too)."""
    lo, hi = (0.0, 3.0) if unsigned else (-3.0, 2.0)
    s, zp = nm.activation_params(lo, hi, bits, unsigned)
    rng = nm.elem_range(bits, unsigned)
    x = np.linspace(-10.0, 10.0, 40001).astype(np.float32)
    q = nm.quantize_input(x, s, zp, rng)
    assert q.min() == rng[0] and q.max() == rng[1]  # both ends reached, nothing beyond
    d = nm.dequantize(q, s, zp)
    if bits == 1 and not unsigned:
        assert set(np.unique(q)) == {-1, 1} and s == 1.5
        return
    top = s * ((2**bits - 1) if unsigned else 2 ** (bits - 1) - 1)
    inside = (x >= (0 if unsigned else -top)) & (x <= top)
    err = np.abs(d[inside].astype(np.float64) - x[inside])
    # s/2 up to the float32 rounding of x * (1/s) and of q * s
    assert np.all(err <= s / 2 + np.abs(x[inside]) * 2.0**-21 + s * 2.0**-20)
    # codes are monotone in x (one rounding, no double rounding glitches)
    assert np.all(np.diff(q) >= 0)
    # weights at the same width: narrow symmetric range, error <= s/2
    w = np.linspace(-1, 1, 257, dtype=np.float32).reshape(1, -1)
    qw, sw = nm.quantize_weights(w, bits)
    qmax = 1 if bits == 1 else 2 ** (bits - 1) - 1
    assert qw.min() == -qmax and qw.max() == qmax
    if bits > 1:
        assert np.all(np.abs(qw * sw[0].astype(np.float64) - w) <= sw[0] / 2 * (1 + 1e-6))


def test_activation_params_formulas():
    assert nm.activation_params(0.0, 6.0, 8, True) == (float(np.float32(6.0 / 255)), 0)
    assert nm.activation_params(-3.0, 2.0, 4, False) == (float(np.float32(3.0 / 7)), 0)
    assert nm.activation_params(-3.0, 2.0, 1, False) == (1.5, 0)
    assert nm.activation_params(0.0, 0.0, 8, True) == (float(np.float32(1 / 255)), 0)
    with pytest.raises(ValueError):
        nm.activation_params(1.0, -1.0, 8, False)


@needs_libm
@SETTINGS
@given(
    st.floats(2.0**-20, 1024.0, width=32),
    st.lists(st.floats(width=32, allow_nan=False), min_size=1, max_size=20),
    st.sampled_from([(0, 255), (-128, 127), (0, 15), (-8, 7), (-2, 1)]),
)
def test_quantize_input_matches_scalar_c_emulation(scale, xs, rng):
    """Element by element, the way the C runtime computes it in float32."""
    q = nm.quantize_input(np.array(xs, np.float32), scale, 0, rng)
    inv = np.float32(1.0) / np.float32(scale)
    for xi, qi in zip(xs, q.tolist(), strict=True):
        with np.errstate(over="ignore"):
            v = LIBM.roundf(float(np.float32(xi) * inv))
        v = min(max(v, rng[0]), rng[1])
        assert qi == int(v)


def test_quantize_input_nan_inf_and_ties():
    q = nm.quantize_input(np.array([np.nan, np.inf, -np.inf, 0.5, -0.5, 1.5], np.float32), 1.0, 0, (-8, 7))
    assert q.tolist() == [0, 7, -8, 1, -1, 2]
    assert nm.quantize_input(np.array([-0.0, np.nan], np.float32), 1.0, 0, (-1, 1)).tolist() == [1, -1]


def test_dequantize_per_channel():
    q = np.array([[1, 2], [3, 4]])
    d = nm.dequantize(q, np.array([0.5, 0.25], np.float32), 0, axis=0)
    assert d.dtype == np.float32 and d.tolist() == [[0.5, 1.0], [0.75, 1.0]]


# -- quantize_multiplier ---------------------------------------------------------


@SETTINGS
@given(st.floats(2.0**-32, 1e6))
def test_quantize_multiplier_precision(real):
    m, s = nm.quantize_multiplier(real)
    m, s = int(m), int(s)
    assert 2**30 <= m <= 2**31 - 1 and 0 <= s <= 62
    approx = Fraction(m, 2**s)
    assert abs(approx - Fraction(real)) <= Fraction(real) * Fraction(1, 2**30)


@SETTINGS
@given(st.floats(1e-12, 2.0**-32, exclude_max=True))
def test_quantize_multiplier_tiny_reals_saturate_shift(real):
    m, s = nm.quantize_multiplier(real)
    assert int(s) == 62 and 0 <= int(m) <= 2**30
    assert abs(Fraction(int(m), 2**62) - Fraction(real)) <= Fraction(1, 2**63)
    # |acc| < 2^31 and M <= 2^30 at shift 62: |acc * M / 2^62| < 1/2 rounds to 0
    acc = np.array([2**31 - 1, -(2**31 - 1)], np.int64)
    assert nm.requantize(acc, m, s, 0, -128, 127).tolist() == [0, 0]


def test_quantize_multiplier_vector_edges_and_errors():
    m, s = nm.quantize_multiplier(np.array([1.0, 0.5, 2.0**31, 1e12, 0.75]))
    assert m.dtype == np.int32 and m.shape == (5,)
    assert (int(m[0]), int(s[0])) == (2**30, 30)
    assert (int(m[1]), int(s[1])) == (2**30, 31)
    assert (int(m[2]), int(s[2])) == (2**31 - 1, 0)  # saturated
    assert (int(m[3]), int(s[3])) == (2**31 - 1, 0)
    assert (int(m[4]), int(s[4])) == (3 * 2**29, 31)
    # rounding carries into the next power of two
    mc, sc = nm.quantize_multiplier(1.0 - 2.0**-40)
    assert (int(mc), int(sc)) == (2**30, 30)
    for bad in (0.0, -1.0, math.inf, math.nan):
        with pytest.raises(ValueError):
            nm.quantize_multiplier(bad)


# -- requantize ------------------------------------------------------------------

M_ST = st.integers(2**30, 2**31 - 1)
SHIFT_ST = st.integers(0, 62)


def _oracle_requant(a: int, m: int, s: int, zp: int, lo: int, hi: int) -> int:
    return min(max(frac_round(Fraction(a * m, 2**s)) + zp, lo), hi)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(-(2**31), 2**31 - 1), min_size=1, max_size=16),
    M_ST,
    SHIFT_ST,
    st.integers(-20, 20),
    st.integers(-(2**31), 2**31 - 1),
    st.integers(-(2**31), 2**31 - 1),
)
def test_requantize_equals_exact_rational_rounding(accs, m, s, zp, a, b):
    lo, hi = min(a, b), max(a, b)
    acc = np.array(accs, np.int32)
    y = nm.requantize(acc, m, s, zp, lo, hi)
    assert y.dtype == np.int32
    assert y.tolist() == [_oracle_requant(x, m, s, zp, lo, hi) for x in accs]


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.integers(-(2**31), 2**31 - 1), min_size=1, max_size=8),
    SHIFT_ST,
    st.sampled_from([(0, 255), (-128, 127), (0, 15), (-8, 7), (-(2**31), 2**31 - 1)]),
)
def test_requantize_ties_and_small_multipliers(accs, s, rng):
    """Shifts that make exact ties likely (acc * M a multiple of 2^(s-1))."""
    m = 2**30  # acc * 2^30 / 2^s: halves appear for s >= 31
    y = nm.requantize(np.array(accs, np.int64), m, s, 0, *rng)
    assert y.tolist() == [_oracle_requant(x, m, s, 0, *rng) for x in accs]
    for x in accs:  # and unnormalized M (denormalized tiny multipliers, M = 0)
        for mm in (0, 1, 3, 12345):
            assert int(nm.requantize(np.array([x]), mm, s, 0, *rng)[0]) == _oracle_requant(x, mm, s, 0, *rng)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.integers(-(2**63), 2**63 - 1), min_size=1, max_size=16),
    M_ST,
    SHIFT_ST,
    st.integers(-5, 5),
)
def test_requantize_int64_accumulators_exact(accs, m, s, zp):
    lo, hi = -(2**31), 2**31 - 1
    y = nm.requantize(np.array(accs, np.int64), m, s, zp, lo, hi)
    assert y.tolist() == [_oracle_requant(x, m, s, zp, lo, hi) for x in accs]


@SETTINGS
@given(
    hnp.arrays(np.int32, st.tuples(st.integers(1, 3), st.integers(1, 4), st.integers(1, 3)),
               elements=st.integers(-(2**31), 2**31 - 1)),
    st.data(),
)
def test_requantize_per_channel_broadcast(acc, data):
    c = acc.shape[1]
    ms = data.draw(st.lists(M_ST, min_size=c, max_size=c))
    ss = data.draw(st.lists(SHIFT_ST, min_size=c, max_size=c))
    y = nm.requantize(acc, np.array(ms), np.array(ss), 3, -128, 127, axis=1)
    for idx in np.ndindex(acc.shape):
        ch = idx[1]
        assert int(y[idx]) == _oracle_requant(int(acc[idx]), ms[ch], ss[ch], 3, -128, 127)


def test_requantize_binary_output_and_validation():
    assert nm.requantize(7, 2**30, 31, 0, -128, 127) == 4  # 0-d in, 0-d out
    assert nm.requantize(np.array(-(2**40)), 2**30, 31, 0, -128, 127) == -128
    acc = np.array([5, 0, -1, -(2**31)], np.int32)
    assert nm.requantize(acc, 2**30, 40, 0, -1, 1, binary=True).tolist() == [1, 1, -1, -1]
    with pytest.raises(ValueError):
        nm.requantize(acc, 2**31, 3, 0, -128, 127)
    with pytest.raises(ValueError):
        nm.requantize(acc, 2**30, 63, 0, -128, 127)
    with pytest.raises(TypeError):
        nm.requantize(acc.astype(np.float32), 2**30, 3, 0, -128, 127)


@SETTINGS
@given(st.lists(st.integers(-(2**61), 2**61), min_size=1, max_size=10), SHIFT_ST)
def test_rounding_shift_exact(ps, s):
    assert nm.rounding_shift(np.array(ps), s).tolist() == [frac_round(Fraction(p, 2**s)) for p in ps]


# -- rescale (add / concat) and average pooling -------------------------------------


@SETTINGS
@given(
    st.lists(st.floats(1e-3, 1e2), min_size=1, max_size=3),
    st.data(),
    st.sampled_from([(0, 255), (-128, 127), (0, 15), (-8, 7)]),
)
def test_rescale_single_rounding_exact(reals, data, rng):
    ms, shift = nm.quantize_multipliers_common(reals)
    assert 0 <= shift <= 62 and int(ms.max()) >= 2**30 and int(ms.max()) <= 2**31 - 1
    n = 12
    qs = [np.array(data.draw(st.lists(st.integers(-128, 255), min_size=n, max_size=n))) for _ in reals]
    zps = [data.draw(st.integers(-3, 3)) for _ in reals]
    zo = data.draw(st.integers(-3, 3))
    y = nm.rescale(qs, ms, shift, zps, zo, *rng)
    for i in range(n):
        exact = sum(Fraction((int(q[i]) - z) * int(m), 2**shift) for q, m, z in zip(qs, ms, zps, strict=True))
        assert int(y[i]) == min(max(frac_round(exact) + zo, rng[0]), rng[1])
    for m, r in zip(ms, reals, strict=True):  # each multiplier close to its real
        assert abs(Fraction(int(m), 2**shift) - Fraction(r)) <= Fraction(1, 2 ** (shift + 1))


def test_rescale_identity_and_concat_equals_requantize():
    q = np.arange(-128, 128)
    ms, shift = nm.quantize_multipliers_common([1.0])
    assert np.array_equal(nm.rescale([q], ms, shift, [0], 0, -128, 127), q)
    ms, shift = nm.quantize_multipliers_common([0.37])
    a = nm.rescale([q], ms, shift, [0], 0, -128, 127)
    b = nm.requantize(q, int(ms[0]), shift, 0, -128, 127)
    assert np.array_equal(a, b)


@SETTINGS
@given(st.lists(st.integers(-(2**40), 2**40), min_size=1, max_size=20), st.integers(1, 10**6))
def test_avg_divide_exact(totals, count):
    y = nm.avg_divide(np.array(totals), count) if max(map(abs, totals)) // count < 2**31 else None
    assume(y is not None)
    assert y.tolist() == [frac_round(Fraction(t, count)) for t in totals]


def test_avg_divide_ties_and_array_counts():
    assert nm.avg_divide(np.array([1, -1, 3, -3, 5, 2]), np.array([2, 2, 2, 2, 4, 4])).tolist() == [
        1, -1, 2, -2, 1, 1
    ]
    with pytest.raises(ValueError):
        nm.avg_divide(np.array([1]), 0)


# -- lookup tables --------------------------------------------------------------


def test_build_lut_sigmoid():
    s_in, _ = nm.activation_params(-8.0, 8.0, 8, False)
    s_out, _ = nm.activation_params(0.0, 1.0, 8, True)
    lut = nm.build_lut(lambda x: 1 / (1 + np.exp(-x)), s_in, 0, (-128, 127), s_out, 0, (0, 255))
    assert lut.shape == (256,) and lut.dtype == np.int32
    assert np.all(np.diff(lut) >= 0) and lut[0] == 0 and lut[-1] == 255
    codes = np.arange(-128, 128)
    x = nm.dequantize(codes, s_in).astype(np.float64)
    ref = nm.quantize_input((1 / (1 + np.exp(-x))).astype(np.float32), s_out, 0, (0, 255))
    assert np.array_equal(lut, ref)


# -- packing -------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(BITS, st.booleans(), st.integers(1, 5), st.integers(0, 100), st.data())
def test_pack_unpack_round_trip(bits, signed, rows, k, data):
    lo, hi = nm.elem_range(bits, not signed)
    if bits == 1 and signed:
        q = np.array(data.draw(st.lists(st.sampled_from([-1, 1]), min_size=rows * k, max_size=rows * k)))
    else:
        q = np.array(data.draw(st.lists(st.integers(lo, hi), min_size=rows * k, max_size=rows * k)))
    q = q.reshape(rows, k).astype(np.int32)
    words = nm.pack(q, bits, signed)
    c = nm.container_bits(bits)
    assert words.dtype == np.uint32 and words.shape == (rows, -(-k * c // 32))
    assert words.nbytes == nm.packed_bytes(rows, k, bits)
    assert np.array_equal(nm.unpack(words, bits, k, signed), q)
    # row padding is zero: the bits past K*c in each row's last word
    used = k * c
    if used % 32:
        pad_mask = np.uint32(0xFFFFFFFF) << np.uint32(used % 32)
        assert np.all(words[:, -1] & pad_mask == 0)
    # element by element, the documented bit position
    for r in range(rows):
        for i in range(k):
            word, off = divmod(i * c, 32)
            field = (int(words[r, word]) >> off) & ((1 << c) - 1)
            v = int(q[r, i])
            expect = (1 if v == 1 else 0) if (bits == 1 and signed) else v & ((1 << c) - 1)
            assert field == expect


def test_pack_worked_examples():
    w = nm.pack(np.array([[1, -2, 3]]), 4, True)
    assert w.shape == (1, 1) and int(w[0, 0]) == 0x000003E1
    assert w.astype("<u4").tobytes() == bytes([0xE1, 0x03, 0x00, 0x00])
    # 3-bit values live in 4-bit containers, sign-extended from the container
    assert int(nm.pack(np.array([[-4, 3]]), 3, True)[0, 0]) == 0x3C
    # binary: bit 1 = +1, bit 0 = -1, LSB first
    assert int(nm.pack(np.array([[1, -1, -1, 1, 1]]), 1, True)[0, 0]) == 0b11001
    # 33 binary values need two words; 2-bit unsigned 17 values -> 34 bits -> two words
    assert nm.pack(np.ones((2, 33), int), 1, True).shape == (2, 2)
    assert nm.pack(np.ones((1, 17), int), 2, False).shape == (1, 2)
    assert nm.packed_bytes(16, 3 * 3 * 3, 5) == 16 * 7 * 4  # 27 bytes -> 7 words
    # 8-bit: bytes in order
    w8 = nm.pack(np.array([[1, 2, 3, 4, 5]]), 8, False)
    assert w8.astype("<u4").tobytes() == bytes([1, 2, 3, 4, 5, 0, 0, 0])


def test_pack_rejects_out_of_range():
    with pytest.raises(ValueError):
        nm.pack(np.array([[8]]), 4, True)
    with pytest.raises(ValueError):
        nm.pack(np.array([[0]]), 1, True)  # binary has no 0
    with pytest.raises(ValueError):
        nm.pack(np.array([[-1]]), 4, False)
    with pytest.raises(ValueError):
        nm.unpack(np.zeros((1, 1), np.uint32), 8, 5, False)


# -- observers -----------------------------------------------------------------


@SETTINGS
@given(st.lists(hnp.arrays(np.float32, st.integers(1, 50), elements=st.floats(-100, 100, width=32)),
                min_size=1, max_size=5))
def test_minmax_observer_exact(batches):
    o = nm.MinMaxObserver()
    for b in batches:
        o.update(b)
    allx = np.concatenate(batches)
    assert o.range(8, False) == (float(allx.min()), float(allx.max()))
    m = float(np.abs(allx.astype(np.float64)).mean())
    lo, hi = o.range(1, False)  # binary: +-2 mean|x| so the scale is mean|x|
    assert math.isclose(hi, 2 * m, rel_tol=1e-9, abs_tol=1e-12) and lo == -hi


@SETTINGS
@given(hnp.arrays(np.float32, st.integers(1, 400), elements=st.floats(-1e4, 1e4, width=32)),
       st.integers(1, 6))
def test_histogram_is_independent_of_batching(x, parts):
    a, b = nm.PercentileObserver(), nm.PercentileObserver()
    a.update(x)
    for chunk in np.array_split(x, parts):
        b.update(chunk)
    assert a.width == b.width and np.array_equal(a.hist, b.hist)
    assert a.range(8, False) == b.range(8, False)


def test_percentile_observer_known_distribution():
    rng = np.random.default_rng(1)
    o = nm.PercentileObserver(percentile=99.0)
    for _ in range(4):
        o.update(rng.uniform(0, 1, 50000))
    lo, hi = o.range(8, True)
    assert lo >= 0 and abs(hi - 0.99) < 0.005
    o2 = nm.PercentileObserver()  # 99.99 of |x| of a standard normal ~ 3.89
    o2.update(rng.standard_normal(400000))
    lo, hi = o2.range(8, False)
    assert 3.6 < hi < 4.2 and lo == -hi
    o3 = nm.PercentileObserver(percentile=100.0)
    o3.update(np.array([0.0, 0.0, 2.5]))
    assert o3.range(8, True) == (0.0, 2.5)


def test_mse_observer_known_distributions():
    rng = np.random.default_rng(2)
    x = rng.standard_normal(400000)
    o = nm.MSEObserver()
    for chunk in np.array_split(x, 4):
        o.update(chunk)
    # ternary (2-bit symmetric) optimum for N(0,1): levels +-1.224 (Lloyd-Max-like uniform)
    assert abs(o.range(2, False)[1] - 1.224) < 0.03
    # the chosen clip never quantizes worse than min/max, measured on the data itself
    for bits in (2, 3, 4, 6, 8):
        errs = []
        for lo, hi in (o.range(bits, False), (float(x.min()), float(x.max()))):
            s, zp = nm.activation_params(lo, hi, bits, False)
            q = nm.quantize_input(x.astype(np.float32), s, zp, nm.elem_range(bits, False))
            errs.append(float(np.mean((nm.dequantize(q, s) - x) ** 2)))
        assert errs[0] <= errs[1] * 1.001
    # uniform data: clipping only hurts at 8 bits
    u = nm.MSEObserver()
    u.update(rng.uniform(0, 1, 100000))
    assert u.range(8, True)[1] > 0.98
    assert nm.make_observer("mse").__class__ is nm.MSEObserver
    with pytest.raises(ValueError):
        nm.make_observer("kl")
    with pytest.raises(ValueError):
        nm.MinMaxObserver().range(8, False)


# -- accumulator width -----------------------------------------------------------


def test_accumulator_bounds():
    # w8 x a8 unsigned: 127 * 255 per tap; int32 holds K up to floor((2^31-1) / 32385)
    kmax = (2**31 - 1) // (127 * 255)
    assert not nm.needs_int64(kmax, 8, 8, True)
    assert nm.needs_int64(kmax + 1, 8, 8, True)
    assert nm.accumulator_bits_needed(kmax, 8, 8, True) == 32
    # signed activations reach -128
    assert nm.accumulator_bits_needed(1, 8, 8, False) == (127 * 128).bit_length() + 1
    assert nm.accumulator_bits_needed(1000, 1, 1, False) == 11  # binary: |sum| <= 1000
    assert nm.accumulator_bits_needed(0, 4, 4, True) == 1


@SETTINGS
@given(st.integers(1, 10**7), BITS, BITS, st.booleans())
def test_needs_int64_rule(k, wb, ab, au):
    mw = 1 if wb == 1 else 2 ** (wb - 1) - 1
    ma = (2**ab - 1) if au else (1 if ab == 1 else 2 ** (ab - 1))
    assert nm.needs_int64(k, wb, ab, au) == (k * mw * ma >= 2**31)
    n = nm.accumulator_bits_needed(k, wb, ab, au)
    assert k * mw * ma <= 2 ** (n - 1) - 1 and k * mw * ma > 2 ** (n - 2) - 1


# -- padding contributes zero at every bit width -----------------------------------


def _conv_skip_padding(x, w, pad, stride):
    """Reference: sum only over taps inside the input (what the interpreter does)."""
    cin, h, wd = x.shape
    cout, _, kh, kw = w.shape
    pt, pl, pb, pr = pad
    oh = (h + pt + pb - kh) // stride + 1
    ow = (wd + pl + pr - kw) // stride + 1
    out = np.zeros((cout, oh, ow), np.int64)
    for o in range(cout):
        for i in range(oh):
            for j in range(ow):
                acc = 0
                for a in range(kh):
                    for b in range(kw):
                        y, z = i * stride - pt + a, j * stride - pl + b
                        if 0 <= y < h and 0 <= z < wd:
                            acc += int(np.dot(w[o, :, a, b], x[:, y, z]))
                out[o, i, j] = acc
    return out


def _conv_padded(xp, w, stride, oh, ow):
    """A kernel that reads every tap of an explicitly padded input."""
    cout, _, kh, kw = w.shape
    out = np.zeros((cout, oh, ow), np.int64)
    for i in range(oh):
        for j in range(ow):
            patch = xp[:, i * stride:i * stride + kh, j * stride:j * stride + kw].astype(np.int64)
            out[:, i, j] = np.tensordot(w.astype(np.int64), patch, axes=([1, 2, 3], [0, 1, 2]))
    return out


@settings(max_examples=60, deadline=None)
@given(
    BITS, BITS, st.booleans(),
    st.integers(1, 3), st.integers(1, 3), st.integers(2, 5), st.integers(2, 5),
    st.integers(1, 3), st.integers(1, 3),
    st.tuples(*[st.integers(0, 2)] * 4), st.integers(1, 2), st.integers(0, 2**32 - 1),
)
def test_zero_padding_contributes_zero(abits, wbits, a_unsigned, cin, cout, h, wd, kh, kw, pad, stride, seed):
    assume(h + pad[0] + pad[2] >= kh and wd + pad[1] + pad[3] >= kw)
    rng = np.random.default_rng(seed)
    lo, hi = nm.elem_range(abits, a_unsigned)
    binary_act = abits == 1 and not a_unsigned
    x = rng.choice([-1, 1], (cin, h, wd)) if binary_act else rng.integers(lo, hi + 1, (cin, h, wd))
    wq = rng.standard_normal((cout, cin, kh, kw)).astype(np.float32)
    w, _ = nm.quantize_weights(wq, wbits)
    ref = _conv_skip_padding(x, w, pad, stride)
    oh, ow = ref.shape[1:]
    pt, pl, pb, pr = pad
    if not binary_act:
        zero_code = 0  # zero point 0: the code of real 0 is 0
        assert nm.dequantize(np.array([zero_code]), 0.1, 0)[0] == 0.0
        xp = np.pad(x, ((0, 0), (pt, pb), (pl, pr)), constant_values=zero_code)
        assert np.array_equal(_conv_padded(xp, w, stride, oh, ow), ref)
        return
    for pad_value in (1, -1):  # binary: no zero code; subtract the correction
        xp = np.pad(x, ((0, 0), (pt, pb), (pl, pr)), constant_values=pad_value)
        raw = _conv_padded(xp, w, stride, oh, ow)
        corr = nm.binary_padding_correction(w, (h, wd), pad, (stride, stride), pad_value=pad_value)
        assert corr.shape == ref.shape
        assert np.array_equal(raw - corr, ref)


def test_binary_padding_correction_ceil_mode_overhang():
    w = np.ones((1, 1, 2, 2), np.int8)
    # 3x3 input, no padding, stride 2, ceil mode gives a 2x2 output whose last
    # row/column of windows hang over the bottom/right edge
    corr = nm.binary_padding_correction(w, (3, 3), (0, 0, 0, 0), (2, 2), out_hw=(2, 2))
    assert corr[0].tolist() == [[0, 2], [2, 3]]
