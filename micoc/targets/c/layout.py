"""Memory layout of the C runtime: tensor descriptors and weight formats.

Activations (docs/semantics.md "Memory layout of the C runtime"): a tensor of
shape [1, C, H, W] (or [1, K], viewed as C = K, H = W = 1) is stored as H*W
pixels in row-major order; each pixel holds its C channels packed LSB first
in containers of 1/2/4/8 bits and is padded with zero bits to a whole
32-bit word. A conv tap is then a word-aligned run of codes.

Conv/linear weights are laid out along the reduction dimension in tap-major
order (kh, kw, cin): one packed row per output channel (PACKED, 8-bit
containers and activations wider than 4 bits, or fewer than 4 input channels per
tap: any weight bits as signed bytes), two output channels interleaved
in 16-bit lanes (PAIRS, the other layers) or, for the bit-serial kernel, one bit-plane per weight bit per
output channel (PLANES).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from micoc.errors import UnsupportedError
from micoc.ir.graph import Op
from micoc.ir.types import TensorType
from micoc.numerics import container_bits, pack

KIND_UNSIGNED, KIND_SIGNED, KIND_BINARY = 0, 1, 2
WF_PACKED, WF_PLANES, WF_PAIRS = 0, 1, 2


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


def short_taps(op: Op) -> bool:
    """Whether a conv/linear with very short taps runs the patch kernel against 8-bit
    weights (format PACKED) whatever its weight bits: groups == 1 and activations of 2+
    bits, with one input channel per tap, or 2-3 in place of the two-plane bit-serial
    kernel (a = 2, w <= 2). There the per-pixel work (kh*kw taps; for the bit-serial
    kernel a plane stream per activation bit) dominates the few MACs, and the byte
    kernel has the least per-output overhead (measured on RV32IM: LeNet-5's conv1,
    1 -> 6 channels 5x5, 2.46M instructions at w4a4 and 2.98M at w2a2 before, 2.02M
    and 2.09M in this format; 1.85M at w8a8). 1-bit activations keep their kernel
    (the one-plane bit-serial kernel is cheaper)."""
    w = op.operands[1].type
    cin_g, a = w.shape[1], op.operands[0].type.bits
    if op.attrs.get("groups", 1) != 1 or a == 1 or cin_g >= 4:
        return False
    return cin_g == 1 or (a <= 2 and w.bits <= 2)


def use_planes(op: Op) -> bool:
    """Whether a conv/linear runs bit-serial (AND + popcount over bit-planes)
    instead of a patch kernel: groups == 1 and both operands of at most 2 bits
    (1 to 4 plane pairs per 32 MACs). Wider pairs cost more popcounts than the
    patch kernels' unpacking (measured on RV32IM, bench/c_rv32_kernels.py: w1a4
    2.85 bit-serial vs 2.8 patch on the linear layer)."""
    groups = op.attrs.get("groups", 1)
    a, w = op.operands[0].type.bits, op.operands[1].type.bits
    return groups == 1 and a <= 2 and w <= 2 and not short_taps(op)


def weight_format(op: Op) -> int:
    """PLANES (bit-serial); PACKED (read as int8) for 8-bit weight containers with
    activations of more than 4 bits (a lane of 16 bits can't hold x * u) and for short
    taps (`short_taps`, any weight bits, held in 8-bit containers); else PAIRS."""
    if use_planes(op):
        return WF_PLANES
    if short_taps(op):
        return WF_PACKED
    wide = container_bits(op.operands[1].type.bits) == 8 and op.operands[0].type.bits > 4
    return WF_PACKED if wide else WF_PAIRS


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
    """(uint32 words, format, words per row, per plane or per channel pair) of a conv/linear weight.

    Every format orders a row's K = kh*kw*cin_g codes (kh, kw, cin).
    PACKED: one row per output channel packed as in numerics.pack in 8-bit
    containers (row padded to a word). PLANES: per output channel, one plane of ceil(K/32) words per
    weight bit (bit q of each code's two's complement; binary: bit 1 = +1).
    PAIRS (containers c of 1, 2, 4, 8 bits): output channels in pairs (2m, 2m+1);
    word j of a pair holds n = 16/c codes k in [j n, (j+1) n) of channel 2m in
    its low half and of channel 2m+1 in its high half, as u = w + 2^(c-1)
    (binary: u = the bit, w = 2u - 1), LSB first; a missing channel 2m+1 is 0."""
    wt = op.operands[1].type
    codes, cout, taps, cin = conv_weight_rows(op)
    rows = codes.reshape(cout, taps * cin)
    fmt = weight_format(op)
    if fmt == WF_PLANES:
        if wt.elem == "qi1":
            planes = [(rows > 0).astype(np.int64)]
        else:
            u = rows & 0xFF  # two's complement; planes above bits-1 are sign copies
            planes = [(u >> q) & 1 for q in range(wt.bits)]
        packed = np.stack([pack(p, 1, signed=False) for p in planes], axis=1)  # [cout, planes, wpt]
        return packed.reshape(-1).astype(np.uint32), WF_PLANES, packed.shape[2]
    if fmt == WF_PACKED:  # one row per cout, signed bytes (any weight bits; binary: -1, +1)
        vals = np.where(rows > 0, 1, -1) if wt.elem == "qi1" else rows
        packed = pack(vals, 8, signed=True)
        return packed.reshape(-1).astype(np.uint32), WF_PACKED, packed.shape[1]
    c = container_bits(wt.bits)
    n = 16 // c
    u = (rows > 0).astype(np.int64) if wt.elem == "qi1" else rows + (1 << (c - 1))
    k = rows.shape[1]
    nw = -(-k // n)
    half = np.zeros((2 * (-(-cout // 2)), nw * n), dtype=np.uint64)
    half[:cout, :k] = u
    shifts = np.arange(n, dtype=np.uint64) * np.uint64(c)
    lanes = (half.reshape(-1, nw, n) << shifts).sum(axis=2)  # [2 * pairs, nw], 16-bit lanes
    words = lanes[0::2] | (lanes[1::2] << np.uint64(16))
    return words.reshape(-1).astype(np.uint32), WF_PAIRS, nw


def conv_scratch_words(op: Op, wpt: int) -> int:
    """Scratch of a conv/linear (mirrors mico_conv_scratch_words). Bit-serial: the
    bit-planes of the layer input (none for 1-bit inputs), the planes of one output
    pixel's patch (abits + 2 planes of wpt + 1 words) and cout row sums. Patch kernels:
    one output pixel's unpacked patch (the weight row's capacity of int32)."""
    x = tensor_layout(op.operands[0].type)
    fmt = weight_format(op)
    if fmt == WF_PACKED:  # + 4: the last tap is unpacked four codes at a time
        return wpt * 4 + 4
    if fmt == WF_PAIRS:
        return wpt * (16 // container_bits(op.operands[1].type.bits)) + 4
    inp = 0 if x.cbits == 1 else x.h * x.w * x.bits * (-(-x.c // 32))
    return inp + (x.bits + 2) * (wpt + 1) + op.operands[1].type.shape[0]
