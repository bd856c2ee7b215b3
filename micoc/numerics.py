"""The numeric core of integer-only quantization (DESIGN.md §6).

Every function here is the executable definition of one piece of the numeric
contract; docs/semantics.md states the same rules in prose. The quantize
pass, the reference interpreter and the C runtime all follow these
definitions, and the C must match them bit for bit, so:

* integer steps are computed exactly with integer operations (never through
  a float that could round), and every rounding is round-half-away-from-zero;
* the only float steps at inference, input quantization and output
  dequantization, are float32 operations in a fixed order (no FMA);
* everything is vectorized over whole tensors.

This module sits below everything else in micoc: it imports numpy only, so
``ir``, ``interp`` and ``passes`` may all use it.

Integer ranges (``elem_range``) are those of ``TensorType.qrange``:
``qu<b>`` is [0, 2^b-1], ``qi<b>`` (b >= 2) is [-2^(b-1), 2^(b-1)-1] and
``qi1`` is binary {-1, +1} (reported as the range (-1, 1); code 0 is never
produced).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

__all__ = [
    "WEIGHT_MSE_GRID",
    "MSE_OBSERVER_GRID",
    "round_half_away",
    "elem_range",
    "container_bits",
    "quantize_weights",
    "activation_params",
    "quantize_input",
    "dequantize",
    "quantize_multiplier",
    "quantize_multipliers_common",
    "rounding_shift",
    "requantize",
    "rescale",
    "avg_divide",
    "build_lut",
    "binary_padding_correction",
    "pack",
    "unpack",
    "packed_bytes",
    "MinMaxObserver",
    "PercentileObserver",
    "MSEObserver",
    "make_observer",
    "accumulator_bits_needed",
    "needs_int64",
]

#: Clipping ratios tried by ``quantize_weights(method="mse")``: 1.00, 0.99, ..., 0.20.
WEIGHT_MSE_GRID: np.ndarray = np.arange(100, 19, -1, dtype=np.float64) / 100.0

#: Number of clipping candidates c_j = max|x| * j / N (j = 1..N) tried by MSEObserver.
MSE_OBSERVER_GRID: int = 512

_F32_TINY = float(np.finfo(np.float32).tiny)


# ---------------------------------------------------------------------------
# rounding
# ---------------------------------------------------------------------------


def round_half_away(x: np.ndarray) -> np.ndarray:
    """Round to the nearest integer, ties away from zero (C's ``roundf``/``round``).

    The fraction ``x - trunc(x)`` is computed exactly in the input's float
    type, so the tie test ``|frac| >= 0.5`` is exact. ``floor(x + 0.5)`` is
    not: for x = 0.49999997f the addition rounds up to 1.0. The result keeps
    the input dtype, and the sign of zero as ``roundf`` does (-0.4 -> -0.0);
    inf and nan pass through. Integer input is returned unchanged (copied).
    """
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        return x.copy()
    with np.errstate(invalid="ignore"):
        t = np.trunc(x)
        frac = x - t  # exact; nan for +-inf
        up = np.abs(frac) >= 0.5  # False for nan
    one = np.ones((), dtype=x.dtype)
    return np.where(up, t + np.copysign(one, x), t).astype(x.dtype, copy=False)


def _round_half_away_int_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """Exact round-half-away-from-zero of num / den for integers, den > 0."""
    mag = (np.abs(num) + den // 2) // den
    return np.where(num < 0, -mag, mag)


# ---------------------------------------------------------------------------
# ranges
# ---------------------------------------------------------------------------


def elem_range(bits: int, unsigned: bool) -> tuple[int, int]:
    """(qmin, qmax) of ``qu<bits>`` / ``qi<bits>``, exactly as ``TensorType.qrange``."""
    _check_bits(bits)
    if unsigned:
        return 0, (1 << bits) - 1
    if bits == 1:
        return -1, 1
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


def container_bits(bits: int) -> int:
    """Storage width of a packed element: the next of {1, 2, 4, 8} >= bits."""
    _check_bits(bits)
    for c in (1, 2, 4, 8):
        if c >= bits:
            return c
    raise AssertionError("unreachable")


def _check_bits(bits: int) -> None:
    if not (isinstance(bits, (int, np.integer)) and 1 <= bits <= 8):
        raise ValueError(f"bit width must be an int in 1..8, got {bits!r}")


def _is_binary(rng: tuple[int, int]) -> bool:
    return (int(rng[0]), int(rng[1])) == (-1, 1)


# ---------------------------------------------------------------------------
# weights
# ---------------------------------------------------------------------------


def quantize_weights(
    w: np.ndarray,
    bits: int,
    *,
    per_channel: bool = True,
    axis: int = 0,
    method: str = "maxabs",
) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric weight quantization; returns (q int8 like ``w``, scale float32).

    ``scale`` has one entry per slice along ``axis`` (the output channel) when
    ``per_channel``, else shape (1,).

    b >= 2: narrow symmetric range, q = clamp(round_half_away(w / s),
    -(2^(b-1)-1), 2^(b-1)-1). ``maxabs``: s = max|w| / (2^(b-1)-1), so no
    weight is clipped. ``mse``: s = a * max|w| / (2^(b-1)-1) for the ratio a
    in ``WEIGHT_MSE_GRID`` (1.00 down to 0.20 in steps of 0.01) with the
    least sum of squared errors sum (w - s q)^2 over the channel; ties keep
    the larger ratio. The narrow range (no -2^(b-1)) keeps the weights
    symmetric, so negating a weight negates its code.

    b = 1: q = +1 where w >= 0 (zero maps to +1), else -1; s = mean|w|
    (which is already the MSE-optimal binary scale, so ``method`` is ignored).

    Scales are float32 (what the C stores); q is computed in float64 from the
    float32 scale, so ``q * scale`` is exactly what the compiled model uses.

    Dead channels (all-zero, or so small that the float32 scale would not be
    a positive normal number) get the per-tensor scale of the whole tensor
    instead, or 1.0 if the whole tensor is dead. For b >= 2 their codes are
    exactly 0, so the scale only matters for the bias (int32 at sa*sw): the
    tensor scale keeps bias precision and requant multipliers in the same
    range as the live channels. For b = 1 there is no zero code: a dead binary
    channel becomes +1 * s and does NOT compute zero; the quantize pass must
    fold such a channel into its bias (its output is the bias alone).
    """
    _check_bits(bits)
    if method not in ("maxabs", "mse"):
        raise ValueError(f"unknown weight quantization method '{method}' (maxabs, mse)")
    # Work on float32/float64 weights as given (widening per chunk is exact and
    # gives the same float64 values as widening the whole tensor up front).
    src = np.asarray(w)
    if src.dtype not in (np.float32, np.float64):
        src = src.astype(np.float64)
    if not np.all(np.isfinite(src)):
        raise ValueError("weights must be finite")
    if per_channel:
        if src.ndim == 0:
            raise ValueError("per-channel quantization needs at least 1-D weights")
        ax = axis % src.ndim
        moved = np.moveaxis(src, ax, 0)
        mat = moved.reshape(moved.shape[0], -1)
    else:
        moved = src
        mat = src.reshape(1, -1)

    if bits == 1:
        absw = np.abs(mat.astype(np.float64))
        stat = absw.mean(axis=1) if mat.shape[1] else np.zeros(mat.shape[0])
        tensor_stat = float(absw.mean()) if absw.size else 0.0
        qmax = 1
    else:
        qmax = (1 << (bits - 1)) - 1
        # max|w| per row without an |w| temporary: max(max w, -min w), exact
        rowmax = np.maximum(mat.max(axis=1, initial=0.0), -mat.min(axis=1, initial=0.0)).astype(np.float64)
        stat = rowmax / qmax
        tensor_stat = float(rowmax.max(initial=0.0)) / qmax

    scale = stat.astype(np.float32)
    dead = ~(scale >= _F32_TINY) | ~np.isfinite(scale)
    fallback = np.float32(tensor_stat)
    if not (fallback >= _F32_TINY and np.isfinite(fallback)):
        fallback = np.float32(1.0)
    scale = np.where(dead, fallback, scale).astype(np.float32)

    if bits == 1:
        q = np.where(mat >= 0, 1, -1).astype(np.int8)
    elif method == "mse":
        mat64 = mat.astype(np.float64)
        scale = _mse_weight_scales(mat64, scale, dead, qmax)
        q = _quantize_sym(mat64, scale, qmax).astype(np.int8)
    else:
        q = _quantize_sym_int8(mat, scale, qmax)

    q = q.reshape(moved.shape)
    if per_channel:
        q = np.moveaxis(q, 0, ax)
    return q, scale


def _quantize_sym(mat: np.ndarray, scale: np.ndarray, qmax: int) -> np.ndarray:
    """Rows of ``mat`` by their float32 scale, narrow symmetric range, float64 math."""
    s = scale.astype(np.float64)[:, None]
    return np.clip(round_half_away(mat / s), -qmax, qmax)


_CHUNK = 1 << 15  # elements per block of _quantize_sym_int8 (temporaries stay in cache)


def _quantize_sym_int8(mat: np.ndarray, scale: np.ndarray, qmax: int) -> np.ndarray:
    """``_quantize_sym(mat, scale, qmax).astype(int8)`` computed block by block
    (same float64 quotient and exact round-half-away; no full-size float64
    temporaries, which made weight quantization memory-bound)."""
    rows, k = mat.shape
    out = np.empty((rows, k), dtype=np.int8)
    s = scale.astype(np.float64)
    if k == 0:
        return out
    rstep = max(1, _CHUNK // k)
    cstep = k if rstep > 1 else _CHUNK
    for r in range(0, rows, rstep):
        sr = s[r : r + rstep, None]
        for c in range(0, k, cstep):
            y = np.divide(mat[r : r + rstep, c : c + cstep], sr, dtype=np.float64)
            t = np.trunc(y)
            y -= t  # the exact fraction
            t += y >= 0.5  # |frac| >= 0.5: one step away from zero
            t -= y <= -0.5
            np.clip(t, -qmax, qmax, out=t)
            out[r : r + rstep, c : c + cstep] = t
    return out


def _mse_weight_scales(mat: np.ndarray, base: np.ndarray, dead: np.ndarray, qmax: int) -> np.ndarray:
    best_s = base.copy()
    best_err = np.full(mat.shape[0], np.inf)
    maxabs_over_q = base.astype(np.float64)
    for ratio in WEIGHT_MSE_GRID:
        s = (maxabs_over_q * ratio).astype(np.float32)
        s = np.where(s >= _F32_TINY, s, base).astype(np.float32)
        q = _quantize_sym(mat, s, qmax)
        err = np.sum((mat - q * s.astype(np.float64)[:, None]) ** 2, axis=1)
        better = (err < best_err) & ~dead
        best_err = np.where(better, err, best_err)
        best_s = np.where(better, s, best_s).astype(np.float32)
    return best_s


# ---------------------------------------------------------------------------
# activations
# ---------------------------------------------------------------------------


def activation_params(lo: float, hi: float, bits: int, unsigned: bool) -> tuple[float, int]:
    """(scale, zero_point=0) of an activation tensor calibrated to [lo, hi].

    * unsigned (producer ends in relu/relu6): codes [0, 2^b-1],
      s = hi / (2^b-1); ``lo`` is ignored (it is >= 0 for such tensors).
    * signed, b >= 2: codes [-2^(b-1), 2^(b-1)-1] (the full ``qi<b>`` range),
      s = max(|lo|, |hi|) / (2^(b-1)-1). The scale is symmetric, so
      -max maps to -(2^(b-1)-1); the extra code -2^(b-1) is kept in the
      range (not wasted: values just beyond -max still get a code instead of
      clipping, and the type's qrange stays the two's-complement range).
    * signed, b = 1: binary {-1,+1} x s with s = max(|lo|, |hi|) / 2. For
      data uniform on [-m, m] this is mean|x|, the MSE-optimal binary scale.
      The observers below go further: for (bits=1, signed) they return the
      range +-2 * mean|x| of the observed data, so this formula yields exactly
      s = mean|x|.

    The scale is returned as a Python float that is exactly a float32 value
    (the C stores float32). A degenerate range (max 0, e.g. a dead relu)
    gets the scale of the range [0, 1] (unsigned) or [-1, 1] (signed).
    """
    _check_bits(bits)
    lo, hi = float(lo), float(hi)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"activation range must be finite, got [{lo}, {hi}]")
    if lo > hi:
        raise ValueError(f"activation range is empty: lo {lo} > hi {hi}")
    if unsigned:
        m, qmax = hi, (1 << bits) - 1
    elif bits == 1:
        m, qmax = max(abs(lo), abs(hi)), 2
    else:
        m, qmax = max(abs(lo), abs(hi)), (1 << (bits - 1)) - 1
    s = np.float32(m / qmax) if m > 0 else np.float32(0.0)
    if not (s >= _F32_TINY and np.isfinite(s)):
        s = np.float32(1.0 / qmax)
    return float(s), 0


def quantize_input(
    x: np.ndarray, scale: float, zp: int, elem_range: tuple[int, int]
) -> np.ndarray:
    """Float32 -> integer codes (int32), exactly as the C runtime does it.

    q = clamp(round_half_away(x * inv_s) + zp, qmin, qmax) where
    inv_s = 1.0f / (float)scale is ONE float32 division (correctly rounded;
    equal to the float32 rounding of the float64 reciprocal) and x * inv_s
    is one float32 multiply (no FMA, -ffp-contract=off). NaN maps to zp (the
    C tests ``v != v``); +-inf clamp.

    Binary (elem_range == (-1, 1)): q = +1 if x >= 0 else -1 (so -0.0 -> +1,
    NaN -> -1, as ``x >= 0.0f ? 1 : -1`` in C); the scale is not used.
    """
    qmin, qmax = int(elem_range[0]), int(elem_range[1])
    x32 = np.asarray(x, dtype=np.float32)
    if _is_binary((qmin, qmax)):
        return np.where(x32 >= 0, 1, -1).astype(np.int32)
    inv = np.float32(1.0) / np.float32(scale)
    with np.errstate(over="ignore", invalid="ignore"):
        v = round_half_away(x32 * inv)
    v = np.where(np.isnan(v), np.float32(0.0), v)
    v = np.clip(v, np.float32(qmin - zp), np.float32(qmax - zp))
    return v.astype(np.int32) + np.int32(zp)


def dequantize(
    q: np.ndarray, scale: float | np.ndarray, zp: int | np.ndarray = 0, *, axis: int = 1
) -> np.ndarray:
    """Integer codes -> float32: float32(q - zp) * float32(s), one float32 multiply.

    ``q - zp`` is an exact integer (|q - zp| < 2^24, so its float32 is exact).
    A per-channel scale/zp (size > 1) broadcasts along ``axis``.
    """
    qi = np.asarray(q, dtype=np.int64)
    z = _bcast(np.asarray(zp, dtype=np.int64), qi.ndim, axis)
    s = _bcast(np.asarray(scale, dtype=np.float32), qi.ndim, axis)
    return (qi - z).astype(np.float32) * s


def _bcast(p: np.ndarray, ndim: int, axis: int) -> np.ndarray:
    """A per-tensor (size 1) or per-channel (1-D) parameter shaped to broadcast on ``axis``."""
    if p.size == 1:
        return p.reshape(())
    if p.ndim != 1:
        raise ValueError(f"per-channel parameters must be 1-D, got shape {p.shape}")
    if ndim == 0:
        raise ValueError("per-channel parameters need a tensor with at least one axis")
    shape = [1] * ndim
    shape[axis % ndim] = p.shape[0]
    return p.reshape(shape)


# ---------------------------------------------------------------------------
# requantization: the one rounding step
# ---------------------------------------------------------------------------

_M_LO = 1 << 30
_M_HI = (1 << 31) - 1
_SHIFT_MAX = 62


def quantize_multiplier(real: float | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """real ~= M / 2^shift with M in [2^30, 2^31-1] and 0 <= shift <= 62 (both int32 arrays).

    M is normalized for maximum precision: real = f * 2^e with f in [0.5, 1),
    M = round_half_away(f * 2^31), shift = 31 - e (if the rounding reaches
    2^31, M = 2^30 and shift - 1). Relative error <= 2^-31 for
    2^-32 <= real < 2^31 - 1/2.

    Out of that range the representation saturates (documented, not an error):
    * real >= 2^31 - 1/2: M = 2^31-1, shift = 0 (the multiplier is clamped;
      such a layer's outputs saturate anyway);
    * real < 2^-32: shift = 62 and M = round_half_away(real * 2^62) < 2^30
      (denormalized, possibly 0; absolute error <= 2^-63). With an int32
      accumulator |acc * real| < 2^31 * 2^-32 = 1/2, so the exact result is 0
      and so is the requantized one (M <= 2^30 here; the only exception is
      acc = -2^31 with M rounded up to exactly 2^30, a tie that rounds to -1,
      as real = 2^-32 itself would).
    ``real`` must be positive and finite.
    """
    r = np.asarray(real, dtype=np.float64)
    if not np.all(np.isfinite(r) & (r > 0)):
        raise ValueError("requantization multipliers must be positive and finite")
    f, e = np.frexp(r)
    m = round_half_away(np.ldexp(f, 31)).astype(np.int64)
    shift = 31 - e.astype(np.int64)
    carry = m == (1 << 31)
    m = np.where(carry, _M_LO, m)
    shift = np.where(carry, shift - 1, shift)
    huge = shift < 0
    m = np.where(huge, _M_HI, m)
    shift = np.where(huge, 0, shift)
    tiny = shift > _SHIFT_MAX
    m_tiny = round_half_away(np.ldexp(np.where(tiny, r, 0.0), _SHIFT_MAX)).astype(np.int64)
    m = np.where(tiny, m_tiny, m)
    shift = np.where(tiny, _SHIFT_MAX, shift)
    return m.astype(np.int32), shift.astype(np.int32)


def quantize_multipliers_common(reals: Sequence[float]) -> tuple[np.ndarray, int]:
    """Several reals over ONE shift: real_i ~= M_i / 2^shift (for ``rescale``).

    The largest real is normalized as in ``quantize_multiplier`` (its M in
    [2^30, 2^31-1]); the others use the same shift, M_i =
    round_half_away(real_i * 2^shift) (smaller, absolute error <= 2^-(shift+1)).
    A common shift is what lets an add sum its rescaled inputs exactly and
    round once.
    """
    r = np.asarray(reals, dtype=np.float64).reshape(-1)
    if r.size == 0:
        raise ValueError("need at least one multiplier")
    if not np.all(np.isfinite(r) & (r > 0)):
        raise ValueError("requantization multipliers must be positive and finite")
    _, sh = quantize_multiplier(float(r.max()))
    shift = int(sh)
    m = round_half_away(np.ldexp(r, shift)).astype(np.int64)
    m = np.minimum(m, _M_HI)
    return m.astype(np.int32), shift


def rounding_shift(p: np.ndarray, shift: int | np.ndarray) -> np.ndarray:
    """round_half_away(p / 2^shift) exactly, for int64 |p| < 2^62 and 0 <= shift <= 62.

    Integer only. The contract's formulation (and the C, which avoids
    shifting negative values) is: magnitude, add 2^(shift-1) (0 when shift
    is 0), shift right, restore the sign:
    ``u = p < 0 ? -p : p; u = (u + (((uint64_t)1 << s) >> 1)) >> s;``.
    numpy computes the identical value with one arithmetic shift and no
    select: for p < 0 and s >= 1, -floor((-p + h) / 2^s) = floor((p + h - 1) / 2^s)
    with h = 2^(s-1) (because 2^s - h = h), so
    y = (p + h - [p < 0 and s > 0]) >> s (tested against exact rationals).
    """
    p = np.asarray(p, dtype=np.int64)
    shape = np.broadcast_shapes(p.shape, np.shape(shift))
    return _rounding_shift_inplace(np.array(np.broadcast_to(p, shape)), shift)


def _rounding_shift_inplace(p: np.ndarray, shift: int | np.ndarray) -> np.ndarray:
    """``rounding_shift`` overwriting the int64 array ``p`` (which must broadcast-own the result)."""
    s = np.asarray(shift, dtype=np.int64)
    bias = (np.int64(1) << s) >> 1
    neg = p >> 63  # -1 where p < 0, else 0
    neg &= np.minimum(bias, 1)  # 1 where p < 0 and shift > 0
    p += bias
    p -= neg
    p >>= s
    return p


def _round_mul_shift(acc: np.ndarray, m: np.ndarray, s: np.ndarray) -> np.ndarray:
    """round_half_away(acc * m / 2^s) for int64 acc (any value), 0 <= m < 2^31, 0 <= s <= 62.

    Returns int64 saturated to [-2^62, 2^62] (callers clamp to far less).
    When |acc| <= 2^31 the int64 product is exact and ``rounding_shift``
    applies directly (the C int32-accumulator path). Otherwise the product
    (up to 2^94) is formed in 32-bit limbs: |acc| = u1 2^32 + u0,
    P + 2^(s-1) = (u1 m) 2^32 + (u0 m + 2^(s-1)), so no intermediate exceeds
    2^64 (the C int64-accumulator path does the same with uint64_t).
    """
    acc = np.asarray(acc, dtype=np.int64)
    m64 = np.asarray(m, dtype=np.int64)
    s64 = np.asarray(s, dtype=np.int64)
    if acc.size == 0 or (int(acc.min()) >= -(1 << 31) and int(acc.max()) <= (1 << 31)):
        return _rounding_shift_inplace(np.asarray(acc * m64), s64)  # |acc * m| < 2^62: exact
    au = acc.astype(np.uint64)  # two's complement wrap
    neg = acc < 0
    u = np.where(neg, np.uint64(0) - au, au)  # |acc| as uint64, exact even for -2^63
    mu = m64.astype(np.uint64)
    su = s64.astype(np.uint64)
    lo_mask = np.uint64(0xFFFFFFFF)
    u1 = u >> np.uint64(32)
    u0 = u & lo_mask
    bias = (np.uint64(1) << su) >> np.uint64(1)
    a = u1 * mu  # < 2^62
    b = u0 * mu + bias  # < 2^63 + 2^61
    c = a + (b >> np.uint64(32))  # < 2^62 + 2^32
    bl = b & lo_mask
    big = s64 >= 32
    r_big = c >> np.where(big, su - np.uint64(32), np.uint64(0))
    sm = np.where(big, np.uint64(0), su)
    c_sat = np.minimum(c, np.uint64(1 << 31))  # larger results clamp anyway
    r_small = (c_sat << (np.uint64(32) - sm)) | (bl >> sm)
    r = np.where(big, r_big, r_small)
    r = np.minimum(r, np.uint64(1 << 62)).astype(np.int64)
    return np.where(neg, -r, r)


def requantize(
    acc: np.ndarray,
    M: np.ndarray | int,
    shift: np.ndarray | int,
    zp_out: int,
    qmin: int,
    qmax: int,
    *,
    binary: bool = False,
    axis: int = 1,
) -> np.ndarray:
    """acc (int32/int64) -> output codes (int32): the ONE rounding step.

    y = clamp(round_half_away(acc * M / 2^shift) + zp_out, qmin, qmax),
    computed exactly in integers (see ``_round_mul_shift``). Per-channel M
    and shift (1-D, size > 1) broadcast along ``axis`` (1 = the channel axis
    of both NCHW conv outputs and [N, C] linear outputs); size-1 values are
    per-tensor.

    binary=True (a ``qi1`` output): y = +1 if acc * M >= 0 else -1, i.e.
    acc == 0 maps to +1 (the same sign(0) = +1 rule as weights and inputs);
    zp_out/qmin/qmax are ignored. M >= 0 always, so only the sign of acc
    matters (M == 0 gives +1 everywhere).
    """
    acc = np.asarray(acc)
    if not np.issubdtype(acc.dtype, np.integer):
        raise TypeError(f"requantize needs an integer accumulator, got {acc.dtype}")
    acc = acc.astype(np.int64, copy=False)
    m = _bcast(np.asarray(M, dtype=np.int64), acc.ndim, axis)
    s = _bcast(np.asarray(shift, dtype=np.int64), acc.ndim, axis)
    if np.any(m < 0) or np.any(m > _M_HI) or np.any(s < 0) or np.any(s > _SHIFT_MAX):
        raise ValueError("requantize: need 0 <= M <= 2^31-1 and 0 <= shift <= 62")
    if binary:
        return np.where((acc >= 0) | (m == 0), 1, -1).astype(np.int32)
    y = np.asarray(_round_mul_shift(acc, m, s))
    y += int(zp_out)
    np.clip(y, int(qmin), int(qmax), out=y)
    return y.astype(np.int32)


def rescale(
    qs: Sequence[np.ndarray],
    Ms: Sequence[int] | np.ndarray,
    shift: int,
    zp_in: Sequence[int],
    zp_out: int,
    qmin: int,
    qmax: int,
) -> np.ndarray:
    """Re-express one or more quantized tensors at an output scale, rounding once.

    y = clamp(round_half_away(sum_i (q_i - zp_i) * M_i / 2^shift) + zp_out, qmin, qmax)

    with (M_i, shift) from ``quantize_multipliers_common([s_i / s_out, ...])``.
    One input is a concat operand (or any requantize of a tensor); two are an
    add: the exact int64 sum of the rescaled operands is rounded once, so
    add(a, b) is the correctly rounded value of a*ra + b*rb, not the sum of
    two rounded halves. |q - zp| <= 2^9 and M < 2^31, so each term is below
    2^40 and the sum is exact in int64. A fused relu is qmin = zp_out.
    """
    if not (len(qs) == len(zp_in) == len(Ms)) or not qs:
        raise ValueError("rescale: need one M and one zero point per input")
    total: np.ndarray | int = 0
    for q, m, z in zip(qs, Ms, zp_in, strict=True):
        m = int(m)
        if not 0 <= m <= _M_HI:
            raise ValueError("rescale: need 0 <= M <= 2^31-1")
        total = total + (np.asarray(q, dtype=np.int64) - int(z)) * np.int64(m)
    if not 0 <= int(shift) <= _SHIFT_MAX:
        raise ValueError("rescale: need 0 <= shift <= 62")
    y = rounding_shift(np.asarray(total, dtype=np.int64), int(shift)) + int(zp_out)
    return np.clip(y, int(qmin), int(qmax)).astype(np.int32)


def avg_divide(total: np.ndarray, count: int | np.ndarray) -> np.ndarray:
    """round_half_away(total / count) exactly in integers (average pooling), int32.

    mag = (|total| + count // 2) // count, then the sign of ``total`` (ties
    can only occur for even counts, and then round away from zero). ``count``
    may be an array (count_include_pad=False windows differ at the border)
    and must be positive. The average of in-range codes is in range, so no
    clamp. The output keeps the input's scale; if the pooled output needs a
    different scale, fold 1/count into a requantize multiplier instead (one
    rounding, not two).
    """
    t = np.asarray(total, dtype=np.int64)
    c = np.asarray(count, dtype=np.int64)
    if np.any(c <= 0):
        raise ValueError("avg_divide: count must be positive")
    return _round_half_away_int_div(t, c).astype(np.int32)


# ---------------------------------------------------------------------------
# lookup tables for element-wise nonlinearities
# ---------------------------------------------------------------------------


def build_lut(
    fn: Callable[[np.ndarray], np.ndarray],
    in_scale: float,
    in_zp: int,
    in_range: tuple[int, int],
    out_scale: float,
    out_zp: int,
    out_range: tuple[int, int],
) -> np.ndarray:
    """Compile-time table for an element-wise op on <= 8-bit codes (int32).

    table[q - qmin_in] = quantize_input(float32(fn(float64(dequantize(q)))),
    out_scale, out_zp, out_range) for every input code q in [qmin_in,
    qmax_in]. The table is data, so the C only indexes it; for a binary
    input the entry of code 0 is computed but never used.
    """
    qmin, qmax = int(in_range[0]), int(in_range[1])
    if qmax - qmin > 255:
        raise ValueError("lookup tables are for inputs of at most 8 bits")
    codes = np.arange(qmin, qmax + 1, dtype=np.int64)
    x = dequantize(codes, in_scale, in_zp).astype(np.float64)
    y = np.asarray(fn(x), dtype=np.float64).astype(np.float32)
    return quantize_input(y, out_scale, out_zp, out_range)


# ---------------------------------------------------------------------------
# padding with binary activations
# ---------------------------------------------------------------------------


def binary_padding_correction(
    w: np.ndarray,
    in_hw: tuple[int, int],
    pad: tuple[int, int, int, int],
    stride: tuple[int, int] = (1, 1),
    dilation: tuple[int, int] = (1, 1),
    out_hw: tuple[int, int] | None = None,
    pad_value: int = 1,
) -> np.ndarray:
    """What padded taps add to a conv over binary {-1,+1} activations: int32 [Cout, OH, OW].

    Binary activations have no zero code, so a kernel that reads padded taps
    as ``pad_value`` (+1 = bit 1, or -1 = bit 0, e.g. an im2col buffer or
    packed word left zero-filled) accumulates ``pad_value * sum of the weights on padded taps``. Subtract
    this table from the raw accumulator to get the contract's value (padded
    taps contribute exactly zero):

        acc[co, oh, ow] = raw[co, oh, ow] - correction[co, oh, ow]

    It does not depend on the data, so it is computed at compile time (a
    per-position bias; non-zero only on the border). ``w`` is OIHW integer
    codes (any groups: the padding mask is the same for every input channel);
    ``pad`` is [top, left, bottom, right] as in the IR; any tap outside the
    input (including ceil-mode overhang past the bottom/right padding) counts
    as padded. ``out_hw`` defaults to the floor-mode output size. The
    reference interpreter instead simply skips padded taps.
    """
    if pad_value not in (-1, 1):
        raise ValueError("pad_value of a binary activation is -1 or +1")
    wq = np.asarray(w, dtype=np.int64)
    if wq.ndim != 4:
        raise ValueError("binary_padding_correction expects OIHW weights")
    cout, _, kh, kw = wq.shape
    h, wd = in_hw
    pt, pl, pb, pr = pad
    sh, sw = stride
    dh, dw = dilation
    if out_hw is None:
        oh = (h + pt + pb - dh * (kh - 1) - 1) // sh + 1
        ow = (wd + pl + pr - dw * (kw - 1) - 1) // sw + 1
    else:
        oh, ow = out_hw
    wsum = wq.sum(axis=1)  # [Cout, kh, kw]
    corr = np.zeros((cout, oh, ow), dtype=np.int64)
    oy = np.arange(oh) * sh - pt
    ox = np.arange(ow) * sw - pl
    for i in range(kh):
        rows = oy + i * dh
        row_out = (rows < 0) | (rows >= h)
        for j in range(kw):
            cols = ox + j * dw
            col_out = (cols < 0) | (cols >= wd)
            mask = row_out[:, None] | col_out[None, :]
            corr += wsum[:, i, j][:, None, None] * mask[None]
    return (corr * pad_value).astype(np.int32)


# ---------------------------------------------------------------------------
# packing
# ---------------------------------------------------------------------------


def pack(q: np.ndarray, bits: int, signed: bool) -> np.ndarray:
    """Pack integer codes [rows, K] into uint32 words [rows, ceil(K * c / 32)].

    c = ``container_bits(bits)``. Element k of a row occupies bits
    [k*c, (k+1)*c) of the row's bit stream; word j holds stream bits
    [32j, 32j+32) with stream bit 32j at the word's LSB. Stored as
    little-endian words this is: little-endian, LSB first within each byte,
    along the reduction dimension K. Each row is padded with zero bits to a
    whole word (c divides 32, so no element straddles words).
    Fields: binary (bits 1, signed) -> bit 1 = +1, bit 0 = -1; signed b >= 2
    -> two's complement in c bits; unsigned -> the value. Values must lie in
    ``elem_range(bits, not signed)`` (ValueError otherwise).
    """
    qa = np.asarray(q)
    if qa.ndim != 2:
        raise ValueError(f"pack expects a [rows, K] array, got shape {qa.shape}")
    if not np.issubdtype(qa.dtype, np.integer):
        raise TypeError(f"pack expects integer codes, got {qa.dtype}")
    lo, hi = elem_range(bits, not signed)
    binary = bits == 1 and signed
    if qa.size and (qa.min() < lo or qa.max() > hi or (binary and np.any(qa == 0))):
        raise ValueError(f"pack: values outside the range of {'qi' if signed else 'qu'}{bits}")
    c = container_bits(bits)
    per = 32 // c
    rows, k = qa.shape
    nwords = -(-k // per)
    # Fields (c <= 8 bits: two's complement or value) as bytes; 8 // c of them
    # share a byte LSB first; 4 bytes make a little-endian word.
    padded = np.zeros((rows, nwords * per), dtype=np.uint8)
    if binary:
        np.greater(qa, 0, out=padded[:, :k].view(np.bool_))
    else:
        padded[:, :k] = qa.astype(np.uint8, copy=False) & np.uint8((1 << c) - 1)
    epb = 8 // c
    fields = padded.reshape(rows, nwords * 4, epb)
    byte = fields[:, :, 0].copy()
    for e in range(1, epb):
        byte |= fields[:, :, e] << np.uint8(e * c)
    return byte.view("<u4").reshape(rows, nwords).astype(np.uint32)


def unpack(words: np.ndarray, bits: int, K: int, signed: bool) -> np.ndarray:
    """Inverse of ``pack``: uint32 [rows, W] -> int32 codes [rows, K] (padding ignored)."""
    wa = np.asarray(words, dtype=np.uint32)
    if wa.ndim != 2:
        raise ValueError(f"unpack expects a [rows, words] array, got shape {wa.shape}")
    c = container_bits(bits)
    per = 32 // c
    if wa.shape[1] * per < K:
        raise ValueError(f"unpack: {wa.shape[1]} words hold fewer than K={K} values")
    shifts = np.arange(per, dtype=np.uint32) * np.uint32(c)
    f = (wa[:, :, None] >> shifts) & np.uint32((1 << c) - 1)
    f = f.reshape(wa.shape[0], -1)[:, :K].astype(np.int32)
    if bits == 1 and signed:
        return np.where(f == 1, 1, -1).astype(np.int32)
    if signed:
        f = f - ((f >> (c - 1)) << c)  # sign-extend from the container width
    return f


def packed_bytes(rows: int, K: int, bits: int) -> int:
    """Bytes of a packed [rows, K] matrix: rows * ceil(K * c / 32) * 4."""
    c = container_bits(bits)
    return rows * (-(-K * c // 32)) * 4


# ---------------------------------------------------------------------------
# calibration observers
# ---------------------------------------------------------------------------


class MinMaxObserver:
    """Running min / max; ``range`` returns them exactly (for bits >= 2 or unsigned).

    Every observer also keeps sum|x| and the count: for a signed 1-bit
    (binary) activation ``range`` returns (-2 m, 2 m) with m = mean|x|, so
    that ``activation_params`` gives the MSE-optimal binary scale s = m
    (a binary quantizer does not clip, so the clipping range has no other use).
    """

    def __init__(self) -> None:
        self.min = math.inf
        self.max = -math.inf
        self.count = 0
        self.sum_abs = 0.0

    def update(self, x: np.ndarray) -> None:
        a = np.asarray(x)
        if a.dtype not in (np.float32, np.float64):
            a = a.astype(np.float64)
        a = a.reshape(-1)
        if a.size == 0:
            return
        # min/max of float32 data are exact in float64; a nan or inf shows in them
        lo, hi = float(a.min()), float(a.max())
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise ValueError("calibration data must be finite (found inf or nan)")
        self.min = min(self.min, lo)
        self.max = max(self.max, hi)
        self.count += a.size
        absx = np.abs(a, dtype=np.float64)  # |x| in float64, as the sum below has always used
        self.sum_abs += float(absx.sum())
        self._update_more(absx)

    def _update_more(self, absx: np.ndarray) -> None:
        pass

    def range(self, bits: int, unsigned: bool) -> tuple[float, float]:
        _check_bits(bits)
        if self.count == 0:
            raise ValueError("observer has seen no data")
        if bits == 1 and not unsigned:
            m = self.sum_abs / self.count
            return -2.0 * m, 2.0 * m
        return self._range(bits, unsigned)

    def _range(self, bits: int, unsigned: bool) -> tuple[float, float]:
        return self.min, self.max


class _HistogramObserver(MinMaxObserver):
    """A streaming histogram of |x| with power-of-two bin width.

    Bin k covers [k w, (k+1) w). The width is the smallest power of two with
    bins * w > max|x| seen so far; when a batch exceeds it the width doubles
    and adjacent bin pairs merge, which is exact (floor(|x|/2w) =
    floor(floor(|x|/w)/2)). So the histogram depends only on the data, not on
    how it was split into batches.
    """

    def __init__(self, bins: int = 2048) -> None:
        super().__init__()
        if bins < 2 or bins & (bins - 1):
            raise ValueError("histogram bins must be a power of two >= 2")
        self.bins = bins
        self.hist = np.zeros(bins, dtype=np.int64)
        self.width: float | None = None
        self._cache: dict[tuple[int, bool], float] = {}

    def _update_more(self, absx: np.ndarray) -> None:
        self._cache.clear()
        m = float(absx.max())
        if m > 0:
            if self.width is None:
                _, e = math.frexp(m / self.bins)  # m / bins < 2^e
                self.width = math.ldexp(1.0, e)
            while self.bins * self.width <= m:
                self.hist = np.concatenate(
                    [self.hist.reshape(-1, 2).sum(axis=1), np.zeros(self.bins // 2, np.int64)]
                )
                self.width *= 2.0
        if self.width is None:
            self.hist[0] += absx.size  # all zeros so far: bin 0 whatever the width
            return
        idx = np.minimum(np.floor(absx / self.width).astype(np.int64), self.bins - 1)
        self.hist += np.bincount(idx, minlength=self.bins)

    @property
    def max_abs(self) -> float:
        return max(abs(self.min), abs(self.max))

    def _clip_range(self, c: float, unsigned: bool) -> tuple[float, float]:
        """The observed range clipped to |x| <= c."""
        if unsigned:
            return max(self.min, 0.0), min(self.max, c)
        return max(self.min, -c), min(self.max, c)


class PercentileObserver(_HistogramObserver):
    """Clip at the given percentile of |x| (default 99.99), from the histogram.

    The percentile is interpolated linearly inside its bin, so it is exact to
    within one bin width (<= 2 max|x| / bins), and never exceeds max|x|.
    ``range`` returns the observed range clipped to [-p, p].
    """

    def __init__(self, percentile: float = 99.99, bins: int = 2048) -> None:
        super().__init__(bins)
        if not 0 < percentile <= 100:
            raise ValueError("percentile must be in (0, 100]")
        self.percentile = percentile

    def value(self) -> float:
        """The percentile of |x| over everything observed."""
        if self.width is None:
            return 0.0
        target = self.percentile / 100.0 * self.count
        cum = np.cumsum(self.hist)
        k = int(np.searchsorted(cum, target, side="left"))
        k = min(k, self.bins - 1)
        before = float(cum[k - 1]) if k > 0 else 0.0
        frac = (target - before) / float(self.hist[k]) if self.hist[k] else 1.0
        return min((k + min(max(frac, 0.0), 1.0)) * self.width, self.max_abs)

    def _range(self, bits: int, unsigned: bool) -> tuple[float, float]:
        return self._clip_range(self.value(), unsigned)


class MSEObserver(_HistogramObserver):
    """Clip at the c minimizing the expected quantization MSE for the bit width.

    Candidates c_j = max|x| * j / MSE_OBSERVER_GRID (j = 1..512). The error is
    evaluated on the |x| histogram assuming values uniform within each bin,
    in closed form: inside the range the rounding error is the sawtooth
    x - s round(x/s) (its square integrates exactly per bin), beyond the last
    level L = qmax s (from L + s/2 on) it is (x - L)^2. Levels are
    s * {0..2^b-1} for unsigned and s * {-(2^(b-1)-1)..2^(b-1)-1} for signed
    (the symmetric |x| model ignores the extra negative code). Ties keep the
    larger c.
    """

    def __init__(self, bins: int = 2048, grid: int = MSE_OBSERVER_GRID) -> None:
        super().__init__(bins)
        self.grid = grid

    def clip_value(self, bits: int, unsigned: bool) -> float:
        """The MSE-optimal clip for (bits, unsigned); cached until the next update."""
        key = (bits, unsigned)
        if key not in self._cache:
            self._cache[key] = self._clip_value(bits, unsigned)
        return self._cache[key]

    def _clip_value(self, bits: int, unsigned: bool) -> float:
        if self.width is None:
            return 0.0
        qmax = (1 << bits) - 1 if unsigned else max((1 << (bits - 1)) - 1, 1)
        used = int(np.nonzero(self.hist)[0].max()) + 1
        n = self.hist[:used].astype(np.float64)
        a = np.arange(used, dtype=np.float64) * self.width
        b = np.minimum(a + self.width, self.max_abs)
        b = np.maximum(b, a)  # the last bin ends at max|x|
        cands = self.max_abs * np.arange(1, self.grid + 1, dtype=np.float64) / self.grid
        s = (cands / qmax)[:, None]
        lvl = qmax * s
        t = lvl + s / 2

        def saw_int(x: np.ndarray) -> np.ndarray:  # integral_0^x (t - s round(t/s))^2 dt
            u = x / s + 0.5
            k = np.floor(u)
            phi = u - k
            return k * s**3 / 12 + ((phi - 0.5) ** 3 + 0.125) * s**3 / 3 - s**3 / 24

        def clip_int(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
            return ((hi - lvl) ** 3 - (lo - lvl) ** 3) / 3

        inside = saw_int(np.minimum(b, t)) - saw_int(np.minimum(a, t))
        outside = clip_int(np.maximum(a, t), np.maximum(b, t))
        wid = b - a
        per_bin = np.where(wid > 0, (inside + outside) / np.where(wid > 0, wid, 1.0), 0.0)
        # zero-width bin (all values at a single point a): error at the point
        point = np.where(
            a < t, (a - s * np.floor(a / s + 0.5)) ** 2, (a - lvl) ** 2
        )
        per_bin = np.where(wid > 0, per_bin, point)
        err = (per_bin * n).sum(axis=1)
        best = int(np.flatnonzero(err <= err.min())[-1])  # ties -> larger c
        return float(cands[best])

    def _range(self, bits: int, unsigned: bool) -> tuple[float, float]:
        return self._clip_range(self.clip_value(bits, unsigned), unsigned)


def make_observer(method: str, **options: float) -> MinMaxObserver:
    """An observer by name: ``minmax``, ``percentile`` (percentile=, bins=), ``mse`` (bins=)."""
    if method == "minmax":
        return MinMaxObserver(**options)  # type: ignore[arg-type]
    if method == "percentile":
        return PercentileObserver(**options)  # type: ignore[arg-type]
    if method == "mse":
        return MSEObserver(**options)  # type: ignore[arg-type]
    raise ValueError(f"unknown calibration method '{method}' (minmax, percentile, mse)")


# ---------------------------------------------------------------------------
# accumulator width
# ---------------------------------------------------------------------------


def _max_abs_code(bits: int, unsigned: bool, weight: bool) -> int:
    if bits == 1 and not unsigned:
        return 1
    if unsigned:
        return (1 << bits) - 1
    return (1 << (bits - 1)) - 1 if weight else 1 << (bits - 1)


def accumulator_bits_needed(k: int, wbits: int, abits: int, a_unsigned: bool) -> int:
    """Two's-complement bits that hold any sum of K products qw * qa (bias not included).

    Bound B = K * max|qw| * max|qa| with max|qw| = 2^(wb-1)-1 (narrow range;
    1 for binary) and max|qa| = 2^ab-1 (unsigned), 2^(ab-1) (signed: the full
    range includes -2^(ab-1)) or 1 (binary); bits = bit_length(B) + 1.
    """
    _check_bits(wbits)
    _check_bits(abits)
    if k < 0:
        raise ValueError("K must be >= 0")
    bound = k * _max_abs_code(wbits, False, True) * _max_abs_code(abits, a_unsigned, False)
    return bound.bit_length() + 1


def needs_int64(k: int, wbits: int, abits: int, a_unsigned: bool) -> bool:
    """DESIGN §6: accumulate in int64 when K * max|qw| * max|qa| >= 2^31."""
    return accumulator_bits_needed(k, wbits, abits, a_unsigned) > 32
