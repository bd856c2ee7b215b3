"""Integer reference kernels: the exact semantics of quantized ops (docs/semantics.md).

Integer convolutions and matmuls run through float64 BLAS: every product and
partial sum is an integer below 2^53 in magnitude (the verifier bounds
accumulators far lower), so the float64 result is exact whatever the
summation order, and converting it back to int64 loses nothing.
"""

from __future__ import annotations

import numpy as np

from micoc.analysis.requant import (
    activation_bounds,
    clip_bounds,
    layer_multipliers,
    product_multiplier,
    rescale_multiplier,
    scales,
)
from micoc.interp.kernels import avgpool_divisor, conv2d_nchw, reduce_windows
from micoc.ir.graph import Op
from micoc.ir.types import TensorType
from micoc.ir.verifier import accumulator_bound
from micoc.numerics import (
    avg_divide,
    dequantize,
    quantize_input,
    quantize_multipliers_common,
    requantize,
    rescale,
)

QKERNELS = {}


def qkernel(*names: str):  # type: ignore[no-untyped-def]
    def register(fn):  # type: ignore[no-untyped-def]
        for n in names:
            QKERNELS[n] = fn
        return fn

    return register


def _exact_int(y: np.ndarray) -> np.ndarray:
    return np.rint(y).astype(np.int64)


def _gemm_dtype(op: Op) -> type:
    """float32 BLAS is exact while every partial sum stays below 2^24; else float64 (2^53)."""
    return np.float32 if accumulator_bound(op, [v.type for v in op.operands]) < 2**24 else np.float64


def _to_result(op: Op, acc: np.ndarray, m: np.ndarray, shift: np.ndarray, axis: int) -> np.ndarray:
    t = op.result.type
    lo, hi = activation_bounds(op) if "act" in op.attrs else t.qrange
    return requantize(acc, m, shift, 0, lo, hi, binary=t.elem == "qi1", axis=axis)


@qkernel("quantize")
def _quantize(op: Op, args: list[np.ndarray]) -> np.ndarray:
    t = op.result.type
    return quantize_input(args[0], scales(t)[0], 0, t.qrange)


@qkernel("dequantize")
def _dequantize(op: Op, args: list[np.ndarray]) -> np.ndarray:
    return dequantize(args[0], scales(op.operands[0].type)[0], 0)


@qkernel("requantize")
def _requantize(op: Op, args: list[np.ndarray]) -> np.ndarray:
    m, s = rescale_multiplier(op.operands[0].type, op.result.type)
    t = op.result.type
    lo, hi = t.qrange
    return requantize(args[0], m, s, 0, lo, hi, binary=t.elem == "qi1")


@qkernel("conv2d")
def _conv2d(op: Op, args: list[np.ndarray]) -> np.ndarray:
    a = op.attrs
    dt = _gemm_dtype(op)
    x = args[0].astype(dt)
    w = args[1].astype(dt)
    acc = _exact_int(conv2d_nchw(x, w, a["stride"], a["pad"], a["dilation"], a["groups"]))
    if len(args) > 2:
        acc += args[2].astype(np.int64).reshape(1, -1, 1, 1)
    m, s = layer_multipliers(op)
    return _to_result(op, acc, m, s, axis=1)


@qkernel("linear")
def _linear(op: Op, args: list[np.ndarray]) -> np.ndarray:
    dt = _gemm_dtype(op)
    acc = _exact_int(args[0].astype(dt) @ args[1].astype(dt).T)
    if len(args) > 2:
        acc += args[2].astype(np.int64)
    m, s = layer_multipliers(op)
    return _to_result(op, acc, m, s, axis=-1)


@qkernel("matmul")
def _matmul(op: Op, args: list[np.ndarray]) -> np.ndarray:
    dt = _gemm_dtype(op)
    acc = _exact_int(np.matmul(args[0].astype(dt), args[1].astype(dt)))
    m, s = layer_multipliers(op)
    return _to_result(op, acc, m, s, axis=-1)


def _sum_rescaled(op: Op, args: list[np.ndarray], signs: tuple[int, ...]) -> np.ndarray:
    t = op.result.type
    reals = [float(scales(v.type)[0] / scales(t)[0]) for v in op.operands]
    ms, shift = quantize_multipliers_common(reals)
    qs = [sign * np.asarray(q, dtype=np.int64) for q, sign in zip(args, signs, strict=True)]
    if t.elem == "qi1":  # binary result: the sign of the exact sum
        total = sum(q * int(mm) for q, mm in zip(qs, ms, strict=True))
        return np.where(np.asarray(total) >= 0, 1, -1).astype(np.int32)
    lo, hi = t.qrange
    return rescale(qs, ms, shift, [0] * len(qs), 0, lo, hi)


@qkernel("add")
def _add(op: Op, args: list[np.ndarray]) -> np.ndarray:
    return _sum_rescaled(op, args, (1, 1))


@qkernel("sub")
def _sub(op: Op, args: list[np.ndarray]) -> np.ndarray:
    return _sum_rescaled(op, args, (1, -1))


@qkernel("mul")
def _mul(op: Op, args: list[np.ndarray]) -> np.ndarray:
    prod = np.asarray(args[0], dtype=np.int64) * np.asarray(args[1], dtype=np.int64)
    m, s = product_multiplier(op)
    t = op.result.type
    lo, hi = t.qrange
    return requantize(prod, m, s, 0, lo, hi, binary=t.elem == "qi1")


@qkernel("concat")
def _concat(op: Op, args: list[np.ndarray]) -> np.ndarray:
    t = op.result.type
    parts = []
    for v, q in zip(op.operands, args, strict=True):
        if v.type.quant == t.quant and v.type.elem == t.elem:
            parts.append(np.asarray(q, dtype=np.int32))
        else:
            parts.append(_requantize_to(q, v.type, t))
    return np.concatenate(parts, axis=op.attrs["axis"])


def _requantize_to(q: np.ndarray, src: TensorType, dst: TensorType) -> np.ndarray:
    m, s = rescale_multiplier(src, dst)
    lo, hi = dst.qrange
    return requantize(q, m, s, 0, lo, hi, binary=dst.elem == "qi1")


@qkernel("maxpool")
def _maxpool(op: Op, args: list[np.ndarray]) -> np.ndarray:
    a = op.attrs
    fill = np.iinfo(np.int32).min  # padding never wins the max
    x = args[0].astype(np.int32)
    return reduce_windows(x, np.maximum, a["kernel"], a["stride"], a["pad"], a["dilation"], a["ceil_mode"], fill)


@qkernel("avgpool")
def _avgpool(op: Op, args: list[np.ndarray]) -> np.ndarray:
    a = op.attrs
    x = args[0].astype(np.int64)
    total = reduce_windows(x, np.add, a["kernel"], a["stride"], a["pad"], (1, 1), a["ceil_mode"], 0)
    return avg_divide(total, avgpool_divisor(op, x.shape[2], x.shape[3]))


@qkernel("global_avgpool")
def _gap(op: Op, args: list[np.ndarray]) -> np.ndarray:
    x = args[0].astype(np.int64)
    return avg_divide(x.sum(axis=(2, 3), keepdims=True), x.shape[2] * x.shape[3])


@qkernel("relu")
def _relu(op: Op, args: list[np.ndarray]) -> np.ndarray:
    return np.maximum(args[0], 0).astype(np.int32)


@qkernel("clip")
def _clip(op: Op, args: list[np.ndarray]) -> np.ndarray:
    t = op.result.type
    lo, hi = clip_bounds(op.attrs["min"], op.attrs["max"], scales(t)[0], t.qrange)
    return np.clip(args[0], lo, hi).astype(np.int32)


@qkernel("lut")
def _lut(op: Op, args: list[np.ndarray]) -> np.ndarray:
    lo, _ = op.operands[0].type.qrange
    return args[1][np.asarray(args[0], dtype=np.int64) - lo]
