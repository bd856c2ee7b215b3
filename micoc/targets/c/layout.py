"""Memory layout of the C runtime: tensor descriptors and weight formats.

Activations (docs/semantics.md "Memory layout of the C runtime"): a tensor of
shape [1, C, H, W] (or [1, K], viewed as C = K, H = W = 1) is stored as H*W
pixels in row-major order; each pixel holds its C channels packed LSB first
in containers of 1/2/4/8 bits and is padded with zero bits to a whole
32-bit word. A conv tap is then a word-aligned run of codes.

Conv/linear weights are packed along the reduction dimension in tap-major
order (kh, kw, cin): one row per output channel, padded to a word (PACKED),
or, for the bit-serial kernels, per (cout, tap) one bit-plane per weight bit
(PLANES).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from micoc.errors import UnsupportedError
from micoc.ir.graph import Op
from micoc.ir.types import TensorType
from micoc.numerics import container_bits, pack

KIND_UNSIGNED, KIND_SIGNED, KIND_BINARY = 0, 1, 2
WF_PACKED, WF_PLANES = 0, 1


@dataclass(frozen=True)
class TensorLayout:
    c: int
    h: int
    w: int
    cbits: int
    bits: int
    kind: int

    @property
    def wpp(self) -> int:
        return -(-self.c * self.cbits // 32)

    @property
    def words(self) -> int:
        return self.h * self.w * self.wpp

    @property
    def lb(self) -> int:
        return {1: 0, 2: 1, 4: 2, 8: 3}[self.cbits]


def kind_of(t: TensorType) -> int:
    if t.elem == "qi1":
        return KIND_BINARY
    return KIND_SIGNED if t.signed else KIND_UNSIGNED


def chw(shape: tuple[int, ...]) -> tuple[int, int, int] | None:
    """The [C, H, W] view of a batch-1 activation shape, or None if the runtime can't hold it."""
    if len(shape) == 4 and shape[0] == 1:
        return shape[1], shape[2], shape[3]
    if len(shape) == 2 and shape[0] == 1:
        return shape[1], 1, 1
    return None


def tensor_layout(t: TensorType) -> TensorLayout:
    v = chw(t.shape)
    if v is None or not t.is_quantized:
        raise UnsupportedError(f"the C runtime holds quantized [1,C,H,W] or [1,K] tensors, not {t}")
    return TensorLayout(v[0], v[1], v[2], container_bits(t.bits), t.bits, kind_of(t))


def use_planes(op: Op) -> bool:
    """Whether a conv/linear runs bit-serial (AND + popcount over bit-planes)
    instead of the patch kernel. Measured on RV32IM (bench/c_rv32_kernels.py,
    BENCHMARKS.md): bit-serial wins for a*w <= 2 (1.4-4.3 instructions per MAC
    on a 3x3 conv vs ~5.5 for the patch kernel) and for 2x2 bits on kernels
    with a long reduction (K = kh*kw*cin >= 128: 3.99 vs 5.58 on a 512-input
    linear, but 8.45 vs 7.15 on a 64-input 1x1 conv, where the per-output
    work dominates). Otherwise the popcounts (a*w + corrections per 32 MACs)
    cost more than unpacking (e.g. w1a4: 8.0 bit-serial vs 5.5 patch). Needs
    groups == 1 and enough channels to fill the plane words: cin >= 16 for
    a*w <= 2, cin >= 32 for the others (ResNet-8 at 2x2 bits with 16-channel
    layers ran 11.7 instructions/MAC bit-serial)."""
    groups = op.attrs.get("groups", 1)
    a, w = op.operands[0].type.bits, op.operands[1].type.bits
    cin = op.operands[1].type.shape[1]
    taps = op.operands[1].type.shape[2] * op.operands[1].type.shape[3] if op.opname == "conv2d" else 1
    return groups == 1 and ((cin >= 16 and a * w <= 2) or (cin >= 32 and a == w == 2 and taps * cin >= 128))


def conv_weight_rows(op: Op) -> tuple[np.ndarray, int, int, int]:
    """Weights as [cout, kh, kw, cin_g] codes (linear: kh = kw = 1); returns (codes, cout, kh*kw, cin_g)."""
    w = np.asarray(op.operands[1].data, dtype=np.int64)
    if op.opname == "linear":
        w = w[:, None, None, :]
    else:
        w = w.transpose(0, 2, 3, 1)
    cout, kh, kw, cin = w.shape
    return w, cout, kh * kw, cin


def pack_conv_weights(op: Op) -> tuple[np.ndarray, int, int]:
    """(uint32 words, format, words per row or per tap plane) of a conv/linear weight.

    PACKED: one row per output channel, its kh*kw*cin_g codes in (kh, kw, cin)
    order packed as in numerics.pack (row padded to a word). PLANES: per
    (cout, tap), one plane of ceil(cin_g/32) words per weight bit."""
    wt = op.operands[1].type
    codes, cout, taps, cin = conv_weight_rows(op)
    rows = codes.reshape(cout * taps, cin)
    if use_planes(op):
        if wt.elem == "qi1":
            planes = [(rows > 0).astype(np.int64)]
        else:
            u = rows & 0xFF  # two's complement; planes above bits-1 are sign copies
            planes = [(u >> q) & 1 for q in range(wt.bits)]
        packed = np.stack([pack(p, 1, signed=False) for p in planes], axis=1)  # [rows, planes, ppw]
        return packed.reshape(-1).astype(np.uint32), WF_PLANES, packed.shape[2]
    packed = pack(codes.reshape(cout, taps * cin), wt.bits, signed=True)  # one row per cout
    return packed.reshape(-1).astype(np.uint32), WF_PACKED, packed.shape[1]


def conv_scratch_words(op: Op, wpt: int) -> int:
    """Scratch of a conv/linear (mirrors mico_conv_scratch_words): the bit-planes of the
    layer input (none for 1-bit inputs), or one output pixel's unpacked patch."""
    x = tensor_layout(op.operands[0].type)
    if not use_planes(op):
        return wpt * (32 // container_bits(op.operands[1].type.bits))
    if x.cbits == 1:
        return 0
    return x.h * x.w * x.bits * (-(-x.c // 32))
