"""Per-layer work counts of a graph: MACs, BOPs, CBOPs features, bytes, geometry.

Pure functions over the IR with no knowledge of any target. The search calls
`batch_features` on thousands of candidate bit schemes, so everything that
does not depend on the bits (MACs, element counts, geometry) is computed once
per graph by `layer_table` and cached; the bit-dependent part is a few numpy
broadcasts.

Conventions
-----------
* A scheme gives each quantizable layer a pair ``(wbits, abits)``: ``wbits``
  for the layer's weights, ``abits`` for its INPUT activations (DESIGN §6).
  Scheme arrays are integer arrays ``[..., n_layers, 2]`` in `LayerTable.names`
  order with ``[..., 0] = wbits`` and ``[..., 1] = abits``.
* Convolution MACs = ``N * OH * OW * K * (C / groups) * KH * KW``. Taps that
  fall on padding are counted: every output does all ``KH*KW`` taps, because
  the kernels (im2col, or a direct loop) really do multiply by the zero
  padding instead of skipping it. So a 3x3 "same" conv on 8x8 counts
  8*8*9 taps per channel pair, not the 7*7*9 + border remainder. Dilation
  changes which inputs are read, never how many taps there are.
* ``matmul`` of two activations: the second operand plays the weights' role
  (``wbits`` applies to it); it counts as parameters only when constant.
* Bytes: weights at ``wbits`` bits each, packed densely and rounded up to a
  whole byte per layer; bias as int32 (DESIGN §6). Row padding to 32-bit words
  and sub-byte containers are the backend's business and not counted here.
  Activation bytes are the layer's input tensor at ``abits`` bits.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from micoc.errors import InputError
from micoc.ir.graph import Graph, Op

__all__ = [
    "BIT_RANGE",
    "DEFAULT_BITS",
    "FEATURES",
    "ConvGeometry",
    "GemmGeometry",
    "LayerCost",
    "LayerInfo",
    "LayerTable",
    "PoolGeometry",
    "PoolInfo",
    "batch_features",
    "check_schemes",
    "layer_costs",
    "layer_table",
    "scheme_array",
    "totals",
]

BitPair = tuple[int, int]  # (wbits, abits)

#: Bit widths a layer may be assigned (DESIGN §4: qi1..qi8 / qu1..qu8).
BIT_RANGE: tuple[int, int] = (1, 8)
DEFAULT_BITS: BitPair = (8, 8)

#: Per-layer feature names `batch_features` returns (all shaped [n, L]).
FEATURES: tuple[str, ...] = (
    "MACs", "BOPs", "BMACs", "WLoads", "ALoads", "weight_bytes", "act_bytes",
)  # fmt: skip


@dataclass(frozen=True)
class ConvGeometry:
    """A conv2d as the cost models need it (NCHW input, OIHW weight)."""

    n: int
    h: int  # input height (unpadded)
    w: int
    c: int  # input channels
    k: int  # output channels
    kh: int
    kw: int
    stride: tuple[int, int]
    pad: tuple[int, int, int, int]  # top, left, bottom, right
    dilation: tuple[int, int]
    groups: int
    oh: int
    ow: int

    @property
    def padded_h(self) -> int:
        return self.h + self.pad[0] + self.pad[2]

    @property
    def padded_w(self) -> int:
        return self.w + self.pad[1] + self.pad[3]

    @property
    def reduction(self) -> int:
        """Length of one output's dot product: (C/groups)*KH*KW."""
        return (self.c // self.groups) * self.kh * self.kw


@dataclass(frozen=True)
class GemmGeometry:
    """``count`` independent (n x k) @ (k x m) products.

    linear: n = rows of the input (product of all but the last dim), m = out
    features, k = in features, count = 1. matmul: count = product of the
    broadcast batch dims.
    """

    count: int
    n: int
    m: int
    k: int


@dataclass(frozen=True)
class PoolGeometry:
    """A pooling op (maxpool, avgpool, global_avgpool), NCHW."""

    n: int
    c: int
    h: int
    w: int
    kh: int
    kw: int
    stride: tuple[int, int]
    pad: tuple[int, int, int, int]
    oh: int
    ow: int


@dataclass(frozen=True)
class LayerInfo:
    """Bit-independent facts of one quantizable layer."""

    name: str  # the stable layer name (scheme files, reports)
    op: str  # conv2d | linear | matmul
    index: int  # position in graph.ops
    loc: str
    in_shape: tuple[int, ...]
    w_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    macs: int
    weight_elems: int  # constant weight elements (0 for a matmul of two activations)
    bias_elems: int
    in_elems: int  # input activation elements
    out_elems: int
    geometry: ConvGeometry | GemmGeometry

    @property
    def params(self) -> int:
        return self.weight_elems + self.bias_elems

    def cost(self, wbits: int, abits: int) -> LayerCost:
        return LayerCost(
            info=self,
            wbits=wbits,
            abits=abits,
            bops=self.macs * wbits * abits,
            bmacs=self.macs * max(wbits, abits),
            wloads=self.macs * wbits,
            aloads=self.macs * abits,
            weight_bytes=_bytes(self.weight_elems, wbits) + 4 * self.bias_elems,
            act_bytes=_bytes(self.in_elems, abits),
        )


@dataclass(frozen=True)
class LayerCost:
    """A layer's counts at one bit-width pair."""

    info: LayerInfo
    wbits: int
    abits: int
    bops: int
    bmacs: int
    wloads: int
    aloads: int
    weight_bytes: int
    act_bytes: int

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def macs(self) -> int:
        return self.info.macs


@dataclass(frozen=True)
class PoolInfo:
    """A pooling op: not quantizable, but it costs time on a CPU."""

    name: str  # loc if present, else "<op>_<index>"
    op: str
    index: int
    loc: str
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    geometry: PoolGeometry


@dataclass(frozen=True)
class LayerTable:
    """Everything bit-independent about a graph's layers, plus numpy columns for batches."""

    graph_name: str
    layers: tuple[LayerInfo, ...]
    pools: tuple[PoolInfo, ...]
    # Per-layer columns as float64 arrays [L] (float: products overflow int64 in
    # big batches of BOPs otherwise, and the search wants floats anyway).
    macs: np.ndarray = field(repr=False)
    weight_elems: np.ndarray = field(repr=False)
    bias_elems: np.ndarray = field(repr=False)
    in_elems: np.ndarray = field(repr=False)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(info.name for info in self.layers)

    def __len__(self) -> int:
        return len(self.layers)

    def index(self, name: str) -> int:
        for i, info in enumerate(self.layers):
            if info.name == name:
                return i
        raise KeyError(name)


# ---------------------------------------------------------------------------
# Building the table (cached per graph)

# Keyed weakly by the Graph object; the stored signature detects a graph that
# was changed in place by a pass since it was analysed.
_CACHE: weakref.WeakKeyDictionary[Graph, tuple[tuple[Any, ...], LayerTable]] = (
    weakref.WeakKeyDictionary()
)


def _signature(graph: Graph) -> tuple[Any, ...]:
    return tuple(
        (
            id(op),
            op.opname,
            op.layer,
            op.loc,
            op.result.type.shape,
            tuple((v.type.shape, v.is_const) for v in op.operands),
            tuple(op.attrs.items()),
        )
        for op in graph.ops
    )


def layer_table(graph: Graph) -> LayerTable:
    """The graph's quantizable layers (graph order) and pooling ops, cached per graph."""
    sig = _signature(graph)
    hit = _CACHE.get(graph)
    if hit is not None and hit[0] == sig:
        return hit[1]
    table = _build_table(graph)
    _CACHE[graph] = (sig, table)
    return table


def _build_table(graph: Graph) -> LayerTable:
    layers: list[LayerInfo] = []
    pools: list[PoolInfo] = []
    for i, op in enumerate(graph.ops):
        if op.layer is not None:
            layers.append(_layer_info(op, i))
        elif op.opname in ("maxpool", "avgpool", "global_avgpool"):
            pools.append(_pool_info(op, i))
    seen: set[str] = set()
    for info in layers:
        if info.name in seen:
            raise InputError(f"two layers are named {info.name!r}; layer names must be unique")
        seen.add(info.name)

    def col(attr: str) -> np.ndarray:
        return np.array([getattr(info, attr) for info in layers], dtype=np.float64)

    return LayerTable(
        graph_name=graph.name,
        layers=tuple(layers),
        pools=tuple(pools),
        macs=col("macs"),
        weight_elems=col("weight_elems"),
        bias_elems=col("bias_elems"),
        in_elems=col("in_elems"),
    )


def _layer_info(op: Op, index: int) -> LayerInfo:
    assert op.layer is not None
    x = op.operands[0]
    y = op.operands[1]
    bias = op.operands[2] if len(op.operands) > 2 else None
    out_shape = op.result.type.shape
    geom: ConvGeometry | GemmGeometry
    if op.opname == "conv2d":
        n, c, h, w = x.type.shape
        k, cg, kh, kw = y.type.shape
        _, _, oh, ow = out_shape
        geom = ConvGeometry(
            n=n, h=h, w=w, c=c, k=k, kh=kh, kw=kw,
            stride=tuple(op.attrs["stride"]),  # type: ignore[arg-type]
            pad=tuple(op.attrs["pad"]),  # type: ignore[arg-type]
            dilation=tuple(op.attrs["dilation"]),  # type: ignore[arg-type]
            groups=int(op.attrs["groups"]),
            oh=oh, ow=ow,
        )  # fmt: skip
        # Padded taps are MACs too (see the module docstring).
        macs = n * oh * ow * k * cg * kh * kw
    elif op.opname == "linear":
        m, kk = y.type.shape
        rows = math.prod(x.type.shape[:-1])
        geom = GemmGeometry(count=1, n=rows, m=m, k=kk)
        macs = rows * m * kk
    elif op.opname == "matmul":
        xs, ys = x.type.shape, y.type.shape
        count = math.prod(out_shape[:-2])
        geom = GemmGeometry(count=count, n=xs[-2], m=ys[-1], k=xs[-1])
        macs = count * xs[-2] * ys[-1] * xs[-1]
    else:
        raise InputError(f"{op.where()}: layer op {op.opname!r} has no cost rule")
    return LayerInfo(
        name=op.layer,
        op=op.opname,
        index=index,
        loc=op.loc,
        in_shape=x.type.shape,
        w_shape=y.type.shape,
        out_shape=out_shape,
        macs=int(macs),
        weight_elems=y.type.numel if (y.is_const or op.opname != "matmul") else 0,
        bias_elems=bias.type.numel if bias is not None else 0,
        in_elems=x.type.numel,
        out_elems=op.result.type.numel,
        geometry=geom,
    )


def _pool_info(op: Op, index: int) -> PoolInfo:
    n, c, h, w = op.operands[0].type.shape
    _, _, oh, ow = op.result.type.shape
    if op.opname == "global_avgpool":
        geom = PoolGeometry(n, c, h, w, h, w, (1, 1), (0, 0, 0, 0), oh, ow)
    else:
        kh, kw = op.attrs["kernel"]
        geom = PoolGeometry(
            n, c, h, w, kh, kw, tuple(op.attrs["stride"]), tuple(op.attrs["pad"]), oh, ow  # type: ignore[arg-type]
        )
    return PoolInfo(
        name=op.loc or f"{op.opname}_{index}",
        op=op.opname,
        index=index,
        loc=op.loc,
        in_shape=op.operands[0].type.shape,
        out_shape=op.result.type.shape,
        geometry=geom,
    )


# ---------------------------------------------------------------------------
# Schemes


def _check_bits(pair: tuple[Any, Any], what: str) -> None:
    lo, hi = BIT_RANGE
    for label, b in zip(("w", "a"), pair, strict=True):
        if isinstance(b, bool) or not isinstance(b, (int, np.integer)) or not lo <= b <= hi:
            raise InputError(f"{what}: {label} bits must be an integer in {lo}..{hi}, got {b!r}")


def scheme_array(
    table: LayerTable,
    scheme: Mapping[str, BitPair] | None = None,
    default: BitPair = DEFAULT_BITS,
) -> np.ndarray:
    """A ``{layer: (wbits, abits)}`` mapping as an int array [L, 2] in table order.

    Layers the mapping does not name get `default`; names the graph does not
    have and out-of-range bits are InputErrors.
    """
    _check_bits(default, "default bits")
    out = np.empty((len(table), 2), dtype=np.int64)
    out[:] = default
    if scheme:
        pos = {name: i for i, name in enumerate(table.names)}
        unknown = sorted(set(scheme) - set(pos))
        if unknown:
            raise InputError(
                f"scheme names unknown layer(s) {', '.join(unknown)}; "
                f"the graph has {', '.join(table.names) or 'no layers'}"
            )
        for name, pair in scheme.items():
            if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                raise InputError(f"scheme entry for {name!r} must be (wbits, abits), got {pair!r}")
            _check_bits(tuple(pair), f"layer {name!r}")
            out[pos[name]] = pair
    return out


def check_schemes(table: LayerTable, schemes: np.ndarray) -> np.ndarray:
    """Validate a batch [n, L, 2] (or one scheme [L, 2]) of bit pairs; returns it as int64 [n, L, 2]."""
    s = np.asarray(schemes)
    if s.ndim == 2:
        s = s[None]
    if s.ndim != 3 or s.shape[1:] != (len(table), 2):
        raise InputError(
            f"schemes must have shape [n, {len(table)}, 2] (wbits, abits per layer), got {list(s.shape)}"
        )
    if not np.issubdtype(s.dtype, np.integer):
        if not np.all(np.mod(s, 1) == 0):
            raise InputError("scheme bits must be integers")
        s = s.astype(np.int64)
    lo, hi = BIT_RANGE
    if s.size and (s.min() < lo or s.max() > hi):
        raise InputError(f"scheme bits must be in {lo}..{hi}, got values {s.min()}..{s.max()}")
    return s.astype(np.int64, copy=False)


def _bytes(elems: int, bits: int) -> int:
    return -(-elems * bits // 8)


# ---------------------------------------------------------------------------
# Costs at given bits


def layer_costs(
    graph: Graph, scheme: Mapping[str, BitPair] | None = None, default: BitPair = DEFAULT_BITS
) -> list[LayerCost]:
    """Per-layer counts at the bits of `scheme` (layers not named get `default`)."""
    table = layer_table(graph)
    bits = scheme_array(table, scheme, default)
    return [info.cost(int(w), int(a)) for info, (w, a) in zip(table.layers, bits, strict=True)]


def totals(costs: list[LayerCost]) -> dict[str, int]:
    """Sums over layers of every count (JSON-ready ints)."""
    return {
        "layers": len(costs),
        "macs": sum(c.macs for c in costs),
        "params": sum(c.info.params for c in costs),
        "bops": sum(c.bops for c in costs),
        "bmacs": sum(c.bmacs for c in costs),
        "wloads": sum(c.wloads for c in costs),
        "aloads": sum(c.aloads for c in costs),
        "weight_bytes": sum(c.weight_bytes for c in costs),
        "act_bytes": sum(c.act_bytes for c in costs),
    }


def batch_features(table: LayerTable, schemes: np.ndarray) -> dict[str, np.ndarray]:
    """Counts for many candidate schemes at once.

    `schemes` is an integer array [n, L, 2] (wbits, abits) in table order.
    Returns float64 arrays [n, L] for each name in `FEATURES`; sum over axis 1
    for model totals. Bits are validated (1..8).
    """
    s = check_schemes(table, schemes)
    w = s[..., 0].astype(np.float64)
    a = s[..., 1].astype(np.float64)
    macs = table.macs[None, :]
    return {
        "MACs": np.broadcast_to(macs, w.shape),
        "BOPs": macs * w * a,
        "BMACs": macs * np.maximum(w, a),
        "WLoads": macs * w,
        "ALoads": macs * a,
        "weight_bytes": np.ceil(table.weight_elems * w / 8) + 4 * table.bias_elems,
        "act_bytes": np.ceil(table.in_elems * a / 8),
    }
