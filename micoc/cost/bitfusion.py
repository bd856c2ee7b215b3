"""Cycle-exact BitFusion performance model (Sharma et al., ISCA 2018).

This reproduces the cycle counts of the public BitFusion simulator (the one
that produced ``../shared/profiles/bitfusion_*.csv``), written from scratch
from its published formulas:

* Array: ``rows`` x ``cols`` fusion units (16 reduction rows x 32 output
  columns). A (a, w)-bit pair runs ``pf = (8 // max(a, 2)) * (8 // max(w, 2))``
  times faster than 8x8 bits.
* One tile of ``b`` images, ``oh x ow`` outputs (square), ``ic`` input and
  ``oc`` output channels costs
  ``b*oh*ow*ceil(oc/cols)*ceil(KS*KS*ic/(rows*pf))`` cycles with im2col and
  ``b*ceil(oc/cols)*oh*ow*KS*KS*ceil(ic/(rows*pf))`` without.
* Tiles are powers of two (clamped to the layer size); a tile whose weight,
  activation or output footprint exceeds the usable (half, double-buffered)
  SRAM is rejected.
* DRAM traffic comes from walking the five tile loops (B, OW, OH, IC, OC) from
  the innermost outwards: while a buffer still "fits", loops its data does not
  depend on are free (the data is reused), loops it depends on grow the
  resident block; once the block overflows, every loop further out multiplies
  the traffic.
* ``cycles = compute + max(0, ceil(middle/bw) - compute) + ceil(fill/bw) +
  ceil(drain/bw)``: ``fill`` is the largest resident block of each buffer
  (loaded before compute can start), ``drain`` the largest output block
  (stored after it ends), ``middle`` all other DRAM traffic, which overlaps
  with compute. The best (tiling, loop order) is the one with the fewest
  cycles.

Quirks of the reference that are kept on purpose, because they are what the
measured profiles contain:

* the output image is taken as square: only the output *height* is used;
* weight tiles are padded to a multiple of ``rows*pf`` along the reduction
  axis but not to ``cols`` along the outputs, while output tiles are padded to
  ``cols``;
* the output-channel tiles start at 1 with im2col and at ``cols`` without;
* a ragged last tile costs as much as a full one (tile counts are ceilings);
* outputs are 32-bit partial sums, read from and written back to DRAM;
* fully connected layers are a 1x1 convolution on a 1x1 image without im2col.

Speed: the reference tries all 120 orders x every tiling (~1 s per layer).
Here the tilings are ranked by a lower bound on their cycles that holds for
every order, and only those whose bound beats the best cycles found so far
get the full, numpy-vectorised walk over the distinct loop orders (OW and OH
are interchangeable; loops with a single tile do nothing). The result is the
exact minimum, typically in 1-3 ms (see BENCHMARKS.md).
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np

from micoc.errors import InputError

__all__ = [
    "LOOPS",
    "BitFusionConfig",
    "BitFusionCost",
    "BitFusionLayer",
    "BUFFERS",
    "clear_cache",
    "layer_cost",
    "layer_cycles",
    "layer_from_profile_row",
    "precision_factor",
    "schedule_cost",
]

#: The five tile loops, in the order used for tuples in this module.
LOOPS: tuple[str, ...] = ("B", "OW", "OH", "IC", "OC")
_OW, _OH = LOOPS.index("OW"), LOOPS.index("OH")

#: Buffers, in the order used for tuples in this module.
BUFFERS: tuple[str, ...] = ("wgt", "act", "out")
_WGT, _ACT, _OUT = range(3)

# Which loops index which buffer: a loop a buffer does not depend on can reuse
# the resident block instead of fetching it again.
_DEPENDS: tuple[tuple[bool, ...], ...] = (
    # B      OW     OH     IC     OC
    (False, False, False, True, True),  # wgt
    (True, True, True, True, False),  # act
    (True, True, True, False, True),  # out
)

LayerKind = Literal["conv", "conv_direct", "fc"]


@dataclass(frozen=True)
class BitFusionConfig:
    """Accelerator parameters; the defaults are the published BitFusion ones.

    SRAM sizes are in bytes (as in the reference's configuration file).
    """

    rows: int = 16  # fusion units along the reduction (input) axis
    cols: int = 32  # fusion units along the output-channel axis
    max_bits: int = 8  # precision of one fused unit
    min_bits: int = 2  # narrower operands gain nothing more
    wgt_sram_bytes: int = 64 * 1024
    act_sram_bytes: int = 32 * 1024
    out_sram_bytes: int = 16 * 1024
    acc_bits: int = 32  # partial sums held in the output buffer
    dram_bits_per_cycle: int = 128
    double_buffered: bool = True  # only half of each SRAM holds a tile

    def validate(self) -> None:
        """Raise InputError for a configuration the model cannot use."""
        for name in (
            "rows", "cols", "max_bits", "min_bits", "wgt_sram_bytes", "act_sram_bytes",
            "out_sram_bytes", "acc_bits", "dram_bits_per_cycle",
        ):  # fmt: skip
            if getattr(self, name) < 1:
                raise InputError(f"BitFusionConfig: {name} must be >= 1, got {getattr(self, name)}")
        if self.min_bits > self.max_bits:
            raise InputError("BitFusionConfig: min_bits must not exceed max_bits")

    def capacity_bits(self) -> tuple[int, int, int]:
        """Usable bits per buffer, in ``BUFFERS`` order."""
        div = 2 if self.double_buffered else 1
        return (
            self.wgt_sram_bytes * 8 // div,
            self.act_sram_bytes * 8 // div,
            self.out_sram_bytes * 8 // div,
        )


@dataclass(frozen=True)
class BitFusionLayer:
    """One conv or fully connected layer, NHWC, as the accelerator sees it.

    ``kind``: ``"conv"`` is lowered with im2col (as every conv row in the
    profiles), ``"conv_direct"`` without it, ``"fc"`` is a 1x1 convolution on
    a 1x1 image without im2col (``in_c`` = input features, ``out_c`` =
    output features, the spatial fields must be 1 and pad 0).

    Like the reference, the model takes the output as square and uses only
    ``out_h``; ``in_w`` (hence ``out_w``) does not change the cycles.
    """

    batch: int
    in_h: int
    in_w: int
    in_c: int
    out_c: int
    kernel: int = 1
    stride: int = 1
    pad: int = 0
    kind: LayerKind = "conv"

    @staticmethod
    def conv(
        in_h: int,
        in_w: int,
        in_c: int,
        out_c: int,
        kernel: int,
        stride: int = 1,
        pad: int = 0,
        batch: int = 16,
        im2col: bool = True,
    ) -> BitFusionLayer:
        """A convolution; batch 16 as in the profiles unless told."""
        kind: LayerKind = "conv" if im2col else "conv_direct"
        return BitFusionLayer(batch, in_h, in_w, in_c, out_c, kernel, stride, pad, kind)

    @staticmethod
    def fc(in_features: int, out_features: int, batch: int = 16) -> BitFusionLayer:
        """A fully connected layer; batch 16 as in the profiles unless told."""
        return BitFusionLayer(batch, 1, 1, in_features, out_features, 1, 1, 0, "fc")

    @property
    def out_h(self) -> int:
        return (self.in_h + 2 * self.pad - self.kernel) // self.stride + 1

    @property
    def out_w(self) -> int:
        return (self.in_w + 2 * self.pad - self.kernel) // self.stride + 1

    @property
    def im2col(self) -> bool:
        return self.kind == "conv"

    def validate(self) -> None:
        """Raise InputError when the layer cannot be simulated."""
        if self.kind not in ("conv", "conv_direct", "fc"):
            raise InputError(f"unknown BitFusion layer kind {self.kind!r}")
        for name in ("batch", "in_h", "in_w", "in_c", "out_c", "kernel", "stride"):
            if getattr(self, name) < 1:
                raise InputError(f"BitFusion layer: {name} must be >= 1, got {getattr(self, name)}")
        if self.pad < 0:
            raise InputError(f"BitFusion layer: pad must be >= 0, got {self.pad}")
        if self.kind == "fc" and (self.in_h, self.in_w, self.kernel, self.pad) != (1, 1, 1, 0):
            raise InputError("BitFusion fc layer: in_h, in_w, kernel must be 1 and pad 0")
        if self.out_h < 1 or self.out_w < 1:
            raise InputError(
                f"BitFusion layer: kernel {self.kernel} larger than the padded input "
                f"{self.in_h}x{self.in_w} (pad {self.pad})"
            )


@dataclass(frozen=True)
class BitFusionCost:
    """Cycles of one layer and how they arise (the optimal schedule).

    Traffic is in bits. ``dram_read_bits``/``peak_block_bits`` are in
    ``BUFFERS`` order (wgt, act, out); ``tile`` and ``num_tiles`` in ``LOOPS``
    order; ``order`` lists the loops outermost first. When several schedules
    tie on cycles the reference breaks the tie by energy, which is not
    modelled: ``cycles`` is exact, the schedule is one of the optimal ones.
    """

    cycles: int
    compute_cycles: int
    dram_cycles: int  # ceil(middle traffic / bandwidth), overlapped with compute
    stall_cycles: int  # max(0, dram_cycles - compute_cycles)
    fill_drain_cycles: int  # first loads + last store, never overlapped
    dram_read_bits: tuple[int, int, int]
    dram_write_bits: int  # outputs (partial sums) written back
    peak_block_bits: tuple[int, int, int]  # largest resident block per buffer
    tile: tuple[int, int, int, int, int]  # b, ow, oh, ic, oc
    num_tiles: tuple[int, int, int, int, int]
    order: tuple[str, ...]  # outermost loop first
    precision_factor: int

    @property
    def dram_bytes(self) -> int:
        """All DRAM traffic (reads and writes), rounded up to whole bytes."""
        return -(-(sum(self.dram_read_bits) + self.dram_write_bits) // 8)


def layer_from_profile_row(
    row: Mapping[str, int | str], kind: Literal["conv2d", "matmul"]
) -> BitFusionLayer:
    """The layer behind one row of ``bitfusion_{conv2d,matmul}_samples.csv``.

    conv2d rows: ``H,W,C,K,KS[,S]``, batch 16, no padding, im2col.
    matmul rows: ``N,M,K``; the simulator that made them takes M as the
    layer's *input* width and K as its *output* width (the other reading
    disagrees with the measured cycles on most rows).
    """
    r = {
        key: int(val)
        for key, val in row.items()
        if key in ("H", "W", "C", "K", "KS", "S", "N", "M")
    }
    try:
        if kind == "conv2d":
            return BitFusionLayer.conv(r["H"], r["W"], r["C"], r["K"], r["KS"], r.get("S", 1))
        if kind == "matmul":
            return BitFusionLayer.fc(r["M"], r["K"], batch=r["N"])
    except KeyError as e:
        raise InputError(f"BitFusion profile row lacks column {e}: {dict(row)}") from None
    raise InputError(f"unknown BitFusion profile kind {kind!r}")


def precision_factor(abits: int, wbits: int, config: BitFusionConfig | None = None) -> int:
    """Speed-up of an (abits, wbits) product over max_bits x max_bits.

    1-bit is treated as 2-bit; 3, 5, 6, 7 bits gain nothing over the next
    power of two up (e.g. 3 -> 8 // 3 == 2, same as 4 bits).
    """
    cfg = config or BitFusionConfig()
    for name, bits in (("abits", abits), ("wbits", wbits)):
        if not 1 <= bits <= cfg.max_bits:
            raise InputError(f"BitFusion: {name} must be in 1..{cfg.max_bits}, got {bits}")
    return (cfg.max_bits // max(abits, cfg.min_bits)) * (cfg.max_bits // max(wbits, cfg.min_bits))


def layer_cycles(
    layer: BitFusionLayer, abits: int, wbits: int, config: BitFusionConfig | None = None
) -> int:
    """Simulated cycles of ``layer`` at ``abits`` activations, ``wbits`` weights."""
    return layer_cost(layer, abits, wbits, config).cycles


def layer_cost(
    layer: BitFusionLayer, abits: int, wbits: int, config: BitFusionConfig | None = None
) -> BitFusionCost:
    """Cycles plus the breakdown of the optimal schedule (memoised)."""
    return _layer_cost_cached(layer, int(abits), int(wbits), config or BitFusionConfig())


def clear_cache() -> None:
    """Forget memoised results (for timing the search, or to free memory)."""
    _layer_cost_cached.cache_clear()


# ---------------------------------------------------------------------------
# implementation


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _pow2_tiles(n: int) -> list[int]:
    """1, 2, 4, ... up to the first power of two >= n, clamped to n."""
    return [min(1 << j, n) for j in range((n - 1).bit_length() + 1)]


@dataclass(frozen=True)
class _Shape:
    """The layer as the reference's search sees it (square output of side o)."""

    kernel: int
    o: int
    stride: int
    ic: int
    oc: int
    batch: int
    im2col: bool


def _shape(layer: BitFusionLayer) -> _Shape:
    # The reference reads only the output height and assumes a square image.
    return _Shape(
        layer.kernel, layer.out_h, layer.stride, layer.in_c, layer.out_c, layer.batch, layer.im2col
    )


@functools.lru_cache(maxsize=4096)
def _layer_cost_cached(
    layer: BitFusionLayer, abits: int, wbits: int, cfg: BitFusionConfig
) -> BitFusionCost:
    layer.validate()
    cfg.validate()
    pf = precision_factor(abits, wbits, cfg)
    s = _shape(layer)
    c = _candidates(s, abits, wbits, pf, cfg)
    if c is None:
        raise InputError(
            f"BitFusion: no tiling of {layer} fits the SRAMs "
            f"({cfg.wgt_sram_bytes}/{cfg.act_sram_bytes}/{cfg.out_sram_bytes} bytes)"
        )
    cap = cfg.capacity_bits()
    bw = cfg.dram_bits_per_cycle
    # A buffer's traffic is at most its block times the number of tiles; past
    # int64 the vectorised search would wrap around, so such (absurdly large)
    # layers take the exact but slow Python-integer path. Checked in floats.
    worst = c.blocks.sum(axis=1) * 2.0 * np.prod(c.ntiles.astype(np.float64), axis=1)
    if float(worst.max()) >= _INT64_SAFE:
        return _search_scalar(s, c.tiles, abits, wbits, pf, cfg)
    orders = _distinct_orders(tuple(bool((c.ntiles[:, i] > 1).any()) for i in range(5)))

    # Branch and bound: rank the tilings by a lower bound on their cycles
    # valid for every order, walk them exactly (all distinct orders at once)
    # in growing chunks, and drop those whose bound cannot beat the best so far.
    lower = np.maximum(c.lower, -(-_traffic_lower_bound(c.ntiles, c.whole, cap) // bw))
    rank = np.argsort(lower, kind="stable")
    best_cyc, best_t, best_o = -1, -1, -1
    chunk = 16
    while rank.size:
        part, rank = rank[:chunk], rank[chunk:]
        cyc, t, o = _best_schedule(
            c.ntiles[part], c.blocks[part], c.compute[part], orders, cap, cfg
        )
        if best_cyc < 0 or cyc < best_cyc:
            best_cyc, best_t, best_o = cyc, int(part[t]), o
        rank = rank[lower[rank] < best_cyc]
        chunk *= 2

    tile = tuple(int(x) for x in c.tiles[best_t])
    order = tuple(LOOPS[i] for i in orders[best_o])
    cost = _schedule_cost(s, tile, order, abits, wbits, pf, cfg)  # plain-int recomputation
    assert cost is not None and cost.cycles == best_cyc, "vectorised and scalar models disagree"
    return cost


@dataclass(frozen=True)
class _Candidates:
    """The tilings that fit, one row each (arrays of int64)."""

    tiles: np.ndarray  # (T, 5) tile size per loop
    ntiles: np.ndarray  # (T, 5) number of tiles per loop
    blocks: np.ndarray  # (T, 3) bits of one tile per buffer
    whole: np.ndarray  # (T, 3) bits of the whole tensor per buffer
    compute: np.ndarray  # (T,) compute cycles
    lower: np.ndarray  # (T,) compute + fill + drain lower bound on cycles


def _candidates(
    s: _Shape, abits: int, wbits: int, pf: int, cfg: BitFusionConfig
) -> _Candidates | None:
    """All tilings that fit (None if none does)."""
    b_v = _pow2_tiles(s.batch)
    o_v = _pow2_tiles(s.o)
    ic_v = _pow2_tiles(s.ic)
    if s.im2col:
        oc_v = _pow2_tiles(s.oc)
    else:
        # without im2col the output-channel tiles start at one array width
        oc_v = sorted({min(t * cfg.cols, s.oc) for t in _pow2_tiles(_cdiv(s.oc, cfg.cols))})
    grid = np.meshgrid(
        np.array(b_v, np.int64),
        np.array(o_v, np.int64),
        np.array(ic_v, np.int64),
        np.array(oc_v, np.int64),
        indexing="ij",
    )
    b, o, ic, oc = (g.ravel() for g in grid)
    k, red = s.kernel, cfg.rows * pf

    wgt = -(-(k * k * ic) // red) * red * oc * wbits
    if s.im2col:
        act = o * o * k * k * ic * b * abits
    else:
        side = k + (o - 1) * s.stride
        act = side * side * ic * b * abits
    oc_cols = -(-oc // cfg.cols)
    out = o * o * oc_cols * cfg.cols * b * cfg.acc_bits
    cap = cfg.capacity_bits()
    fit = (wgt <= cap[0]) & (act <= cap[1]) & (out <= cap[2])
    if not fit.any():
        return None
    b, o, ic, oc, wgt, act, out, oc_cols = (x[fit] for x in (b, o, ic, oc, wgt, act, out, oc_cols))

    nb, no = -(-s.batch // b), -(-s.o // o)
    nic, noc = -(-s.ic // ic), -(-s.oc // oc)
    if s.im2col:
        per_tile = b * o * o * oc_cols * -(-(k * k * ic) // red)
    else:
        per_tile = b * oc_cols * o * o * k * k * -(-ic // red)
    compute = per_tile * nb * no * no * nic * noc

    # cycles >= compute + fill + drain, and fill >= one block per buffer
    bw = cfg.dram_bits_per_cycle
    lower = compute + -(-(wgt + act + out) // bw) + -(-out // bw)

    tiles = np.stack([b, o, o, ic, oc], axis=1)
    ntiles = np.stack([nb, no, no, nic, noc], axis=1)
    blocks = np.stack([wgt, act, out], axis=1)
    # each buffer's whole tensor: its block times the tile counts of its loops
    whole = np.stack([wgt * nic * noc, act * nb * no * no * nic, out * nb * no * no * noc], axis=1)
    return _Candidates(tiles, ntiles, blocks, whole, compute, lower)


# Above this the vectorised int64 search could overflow.
_INT64_SAFE = float(1 << 61)

_DEP_ARRAY = np.array(_DEPENDS, dtype=bool)
_READ_WRITE = (1, 1, 2)  # outputs (partial sums) go both ways


def _traffic_lower_bound(
    ntiles: np.ndarray, whole: np.ndarray, cap: tuple[int, int, int]
) -> np.ndarray:
    """DRAM traffic (bits) that no loop order can go below, per tiling.

    Only loops with more than one tile ("real" loops) do anything. Whatever
    real loop is outermost re-fetches, once per tile, every tensor that does
    not depend on it and overflows its buffer as a whole; loops further in can
    only add traffic. So the cheapest choice of the outermost loop bounds every
    order. ``whole`` is (T, 3): each buffer's tensor in bits. (Bounding with
    the two outermost loops prunes a little more but costs as much as it saves.)
    """
    big = np.iinfo(np.int64).max // 4
    real = ntiles > 1
    moved = np.zeros(ntiles.shape, dtype=np.int64)  # (T, 5): traffic if loop L is outermost
    for buf in range(3):
        full = whole[:, buf : buf + 1]
        refetch = ~_DEP_ARRAY[buf] & (full > cap[buf])
        moved += _READ_WRITE[buf] * full * np.where(refetch, ntiles, 1)
    best = np.where(real, moved, big).min(axis=1)
    no_real = ~real.any(axis=1)  # a single tile: each tensor moves once
    return np.where(no_real, (whole * np.array(_READ_WRITE, dtype=np.int64)).sum(axis=1), best)


@functools.lru_cache(maxsize=64)
def _distinct_orders(active: tuple[bool, ...]) -> np.ndarray:
    """Loop orders (outermost first, as loop indices) that can differ.

    OW and OH always have the same tile count and dependencies, so swapping
    them changes nothing; loops with a single tile everywhere are no-ops and
    their position does not matter. One representative per class is kept.
    """
    seen: set[tuple[int, ...]] = set()
    keep: list[tuple[int, ...]] = []
    for perm in itertools.permutations(range(5)):
        key = tuple(_OW if i == _OH else i for i in perm if active[i])
        if key not in seen:
            seen.add(key)
            keep.append(perm)
    return np.array(keep, dtype=np.intp)


def _best_schedule(
    ntiles: np.ndarray,
    blocks: np.ndarray,
    compute: np.ndarray,
    orders: np.ndarray,
    cap: tuple[int, int, int],
    cfg: BitFusionConfig,
) -> tuple[int, int, int]:
    """Exact cycles for every (tiling, order); returns (cycles, tiling, order).

    The walk of ``_schedule_cost`` run on arrays (buffer, order, tiling) at
    once, updated in place: the search spends its time here.
    """
    inner_first = orders[:, ::-1]  # the walk goes from the innermost loop out
    by_loop = ntiles.T  # (5, T)
    free = ~_DEP_ARRAY[:, inner_first]  # (3, P, 5): loop k is reusable for the buffer
    size = np.repeat(blocks.T[:, None, :], orders.shape[0], axis=1)  # (3, P, T) bits
    top = size.copy()  # largest resident block so far
    fits = np.ones(size.shape, dtype=bool)  # block still resident
    grow = np.empty(size.shape, dtype=bool)
    capa = np.array(cap, dtype=np.int64).reshape(3, 1, 1)
    for k in range(5):
        n = by_loop[inner_first[:, k]]  # (P, T) tile count of the k-th loop
        np.logical_and(fits, free[:, :, k : k + 1], out=grow)
        np.logical_not(grow, out=grow)  # reused only while resident and free
        np.multiply(size, n, out=size, where=grow)
        np.logical_and(fits, (size <= capa) | free[:, :, k : k + 1], out=fits)
        np.copyto(top, size, where=fits)
    bw = cfg.dram_bits_per_cycle
    traffic = size[_WGT] + size[_ACT] + 2 * size[_OUT]  # outputs are read and written
    fill = top.sum(axis=0)
    drain = top[_OUT]
    middle = -(-(traffic - fill - drain) // bw)
    comp = compute[None, :]
    cycles = comp + np.maximum(0, middle - comp) + -(-fill // bw) + -(-drain // bw)
    p, t = np.unravel_index(int(np.argmin(cycles)), cycles.shape)
    return int(cycles[p, t]), int(t), int(p)


def _search_scalar(
    s: _Shape, tiles: np.ndarray, abits: int, wbits: int, pf: int, cfg: BitFusionConfig
) -> BitFusionCost:
    """Exhaustive search in Python integers (no overflow; slow, rarely needed)."""
    best: BitFusionCost | None = None
    for row in tiles:
        tile = tuple(int(x) for x in row)
        for order in itertools.permutations(LOOPS):
            cost = _schedule_cost(s, tile, order, abits, wbits, pf, cfg)  # type: ignore[arg-type]
            if cost is not None and (best is None or cost.cycles < best.cycles):
                best = cost
    assert best is not None  # every candidate tile fits
    return best


def schedule_cost(
    layer: BitFusionLayer,
    abits: int,
    wbits: int,
    tile: tuple[int, int, int, int, int],
    order: tuple[str, ...],
    config: BitFusionConfig | None = None,
) -> BitFusionCost | None:
    """Cost of one given schedule: ``tile`` = (b, ow, oh, ic, oc), ``order``
    a permutation of ``LOOPS``, outermost first. None if the tile does not fit.

    No search: useful to inspect or test a particular schedule.
    """
    cfg = config or BitFusionConfig()
    layer.validate()
    if sorted(order) != sorted(LOOPS):
        raise InputError(f"BitFusion: order must be a permutation of {LOOPS}, got {order}")
    pf = precision_factor(abits, wbits, cfg)
    return _schedule_cost(_shape(layer), tuple(tile), tuple(order), abits, wbits, pf, cfg)


def _schedule_cost(
    s: _Shape,
    tile: tuple[int, int, int, int, int],
    order: tuple[str, ...],
    abits: int,
    wbits: int,
    pf: int,
    cfg: BitFusionConfig,
) -> BitFusionCost | None:
    """The model for one tiling and loop order, in plain integers.

    This is the readable statement of the model; the search above is a
    vectorised version of it. Returns None when the tile does not fit.
    """
    b, ow, oh, ic, oc = tile
    k, red = s.kernel, cfg.rows * pf
    wgt = _cdiv(k * k * ic, red) * red * oc * wbits
    if s.im2col:
        act = ow * oh * k * k * ic * b * abits
    else:
        act = (k + (ow - 1) * s.stride) * (k + (oh - 1) * s.stride) * ic * b * abits
    out = ow * oh * _cdiv(oc, cfg.cols) * cfg.cols * b * cfg.acc_bits
    cap = cfg.capacity_bits()
    if wgt > cap[0] or act > cap[1] or out > cap[2]:
        return None
    counts = {
        "B": _cdiv(s.batch, b),
        "OW": _cdiv(s.o, ow),
        "OH": _cdiv(s.o, oh),
        "IC": _cdiv(s.ic, ic),
        "OC": _cdiv(s.oc, oc),
    }
    size = [wgt, act, out]
    top = list(size)
    resident = [True, True, True]
    for loop in reversed(order):
        li = LOOPS.index(loop)
        for buf in range(3):
            dep = _DEPENDS[buf][li]
            if resident[buf] and not dep:
                continue  # the resident block is reused across this loop
            size[buf] *= counts[loop]
            if resident[buf] and size[buf] > cap[buf]:
                resident[buf] = False
            if resident[buf]:
                top[buf] = size[buf]
    n_all = counts["B"] * counts["OW"] * counts["OH"] * counts["IC"] * counts["OC"]
    if s.im2col:
        per_tile = b * oh * ow * _cdiv(oc, cfg.cols) * _cdiv(k * k * ic, red)
    else:
        per_tile = b * _cdiv(oc, cfg.cols) * ow * oh * k * k * _cdiv(ic, red)
    compute = per_tile * n_all
    bw = cfg.dram_bits_per_cycle
    fill, drain = top[0] + top[1] + top[2], top[2]
    traffic = size[0] + size[1] + 2 * size[2]
    dram = _cdiv(traffic - fill - drain, bw)
    stall = max(0, dram - compute)
    fill_drain = _cdiv(fill, bw) + _cdiv(drain, bw)
    return BitFusionCost(
        cycles=compute + stall + fill_drain,
        compute_cycles=compute,
        dram_cycles=dram,
        stall_cycles=stall,
        fill_drain_cycles=fill_drain,
        dram_read_bits=(size[0], size[1], size[2]),
        dram_write_bits=size[2],
        peak_block_bits=(top[0], top[1], top[2]),
        tile=tile,
        num_tiles=tuple(counts[name] for name in LOOPS),  # type: ignore[arg-type]
        order=order,
        precision_factor=pf,
    )
