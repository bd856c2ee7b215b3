"""Tensor types: shape, element type and (for quantized types) quantization params.

Quantization parameters are part of the type, as in MLIR's quant dialect, so
two tensors with the same integers but different scales have different types
and the verifier can catch a missing requantize.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from micoc.errors import VerificationError

_ELEM_RE = re.compile(r"^(f32|i32|i64|q[iu][1-8])$")


@dataclass(frozen=True)
class QuantParams:
    """Affine quantization: real = scale * (q - zero_point).

    `axis` is None for per-tensor params (one scale, one zero point), else the
    channel axis and one scale / zero point per channel.
    """

    scale: tuple[float, ...]
    zero_point: tuple[int, ...]
    axis: int | None = None

    def __post_init__(self) -> None:
        if len(self.scale) != len(self.zero_point):
            raise VerificationError("quant params: scale and zero_point lengths differ")
        if self.axis is None and len(self.scale) != 1:
            raise VerificationError("per-tensor quant params need exactly one scale")
        for s in self.scale:
            if not (s > 0 and math.isfinite(s)):
                raise VerificationError(f"quant params: scale must be positive and finite, got {s}")

    @staticmethod
    def per_tensor(scale: float, zero_point: int = 0) -> QuantParams:
        return QuantParams((float(scale),), (int(zero_point),), None)

    @property
    def is_per_channel(self) -> bool:
        return self.axis is not None


@dataclass(frozen=True)
class TensorType:
    """A ranked, static-shape tensor type, e.g. f32[1,3,32,32] or qu4[1,16,8,8]."""

    shape: tuple[int, ...]
    elem: str = "f32"
    quant: QuantParams | None = None

    def __post_init__(self) -> None:
        if not _ELEM_RE.match(self.elem):
            raise VerificationError(f"unknown element type '{self.elem}'")
        if any((not isinstance(d, int)) or d < 0 for d in self.shape):
            raise VerificationError(f"bad shape {list(self.shape)}: dims must be ints >= 0")
        if self.is_quantized != (self.quant is not None):
            raise VerificationError(
                f"type {self.elem}: quantized element types need quant params and others must not have them"
            )
        if self.quant is not None and self.quant.axis is not None:
            ax = self.quant.axis
            if not 0 <= ax < len(self.shape) or self.shape[ax] != len(self.quant.scale):
                raise VerificationError(
                    f"per-channel quant params: axis {ax} with {len(self.quant.scale)} scales "
                    f"does not match shape {list(self.shape)}"
                )

    # -- element-type facts -------------------------------------------------
    @property
    def is_quantized(self) -> bool:
        return self.elem.startswith("q")

    @property
    def is_float(self) -> bool:
        return self.elem == "f32"

    @property
    def bits(self) -> int:
        """Bit width of one element (32 for f32/i32)."""
        if self.is_quantized:
            return int(self.elem[2:])
        return 64 if self.elem == "i64" else 32

    @property
    def signed(self) -> bool:
        return self.elem != "f32" and not self.elem.startswith("qu")

    @property
    def qrange(self) -> tuple[int, int]:
        """Integer range of a quantized element type.

        qi1 is binary {-1, +1} (stored as one bit); qi<b> for b >= 2 is the full
        two's-complement range; qu<b> is [0, 2^b - 1].
        """
        b = self.bits
        if self.elem.startswith("qu"):
            return 0, (1 << b) - 1
        if self.elem.startswith("qi"):
            return (-1, 1) if b == 1 else (-(1 << (b - 1)), (1 << (b - 1)) - 1)
        raise VerificationError(f"{self.elem} is not a quantized type")

    # -- shape facts --------------------------------------------------------
    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    def with_shape(self, shape: tuple[int, ...]) -> TensorType:
        return TensorType(tuple(shape), self.elem, self.quant)

    def with_elem(self, elem: str, quant: QuantParams | None = None) -> TensorType:
        return TensorType(self.shape, elem, quant)

    def __str__(self) -> str:
        from micoc.ir.printer import format_type  # printing lives in one place

        return format_type(self)


def f32(*shape: int) -> TensorType:
    return TensorType(tuple(shape), "f32")


def numpy_dtype(t: TensorType):
    """The numpy dtype a value of type `t` is held in by the interpreter."""
    import numpy as np

    if t.elem == "f32":
        return np.float32
    if t.elem == "i64":
        return np.int64
    return np.int32
