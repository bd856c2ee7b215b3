"""Integer requantization parameters of a quantized op, derived from its types.

The quant params in the types are the single source of truth: the reference
interpreter and every backend derive (multiplier, shift) pairs here, through
the one function `quantize_multiplier`, so they cannot disagree.
"""

from __future__ import annotations

import numpy as np

from micoc.ir.graph import Op
from micoc.ir.types import TensorType
from micoc.numerics import quantize_multiplier, round_half_away


def scales(t: TensorType) -> np.ndarray:
    assert t.quant is not None, t
    return np.asarray(t.quant.scale, dtype=np.float64)


def layer_multipliers(op: Op) -> tuple[np.ndarray, np.ndarray]:
    """conv2d/linear/matmul: acc (at scale s_x * s_w[c]) -> result; per output channel."""
    sx = scales(op.operands[0].type)[0]
    sw = scales(op.operands[1].type)
    so = scales(op.result.type)[0]
    return quantize_multiplier(sx * sw / so)


def rescale_multiplier(src: TensorType, dst: TensorType) -> tuple[np.ndarray, np.ndarray]:
    """requantize / concat inputs: q at src's scale -> dst's scale."""
    return quantize_multiplier(scales(src) / scales(dst)[0])


def product_multiplier(op: Op) -> tuple[np.ndarray, np.ndarray]:
    """mul: qa * qb (at scale s_a * s_b) -> result."""
    sa, sb = (scales(v.type)[0] for v in op.operands)
    return quantize_multiplier(np.array([sa * sb / scales(op.result.type)[0]]))


def activation_bounds(op: Op) -> tuple[int, int]:
    """Integer clamp bounds of a layer's result: its type's range narrowed by the fused activation."""
    t = op.result.type
    lo, hi = t.qrange
    s = scales(t)[0]
    act = op.attrs.get("act", "none")
    if act in ("relu", "relu6"):
        lo = max(lo, 0)
    if act == "relu6":
        hi = min(hi, int(round_half_away(np.array([6.0 / s]))[0]))
    if act == "clip":
        lo, hi = clip_bounds(op.attrs["clip_min"], op.attrs["clip_max"], s, (lo, hi))
    return lo, hi


def clip_bounds(cmin: float, cmax: float, scale: float, qrange: tuple[int, int]) -> tuple[int, int]:
    """Integer bounds of clip(x, cmin, cmax) on codes of the given scale and range."""
    lo, hi = qrange
    if np.isfinite(cmin):
        lo = max(lo, int(round_half_away(np.array([cmin / scale]))[0]))
    if np.isfinite(cmax):
        hi = min(hi, int(round_half_away(np.array([cmax / scale]))[0]))
    return lo, max(lo, hi)
