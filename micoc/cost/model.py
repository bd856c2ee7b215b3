"""Model-level latency: per-layer predictions summed over a graph, for one target.

A `LatencyModel` is bound to one graph. It prices a bit scheme three ways:

* `estimate(scheme)`: a per-op table (layers and the non-GEMM ops it prices)
  with totals, for reports and `micoc estimate`;
* `predict(scheme)`: one number (total cycles);
* `predict_batch(schemes[n, L, 2])`: totals for many candidates at once, for
  the search. Every target here prices a layer from its own shape and its own
  bits only, and bits take few values (1..8), so each model keeps a table
  ``cycles[layer, wbits, abits]`` and a batch is one gather and a sum.

Targets (`make_model(target, graph, ...)`):

``vexii`` (``config`` small | high | cacheless, default high)
    The shipped fitted proxies of micoc.cost.proxies (default ``cbops+shape``).
    Which profile kind prices a layer: a layer of a compiled network is a
    whole layer call, so conv2d uses the ``conv2d`` proxy (fitted on
    bitconv2d: im2col + activation quantization/packing + matmul) and linear
    and matmul use the ``linear`` proxy (bitlinear: activation
    quantization/packing + matmul). The bare ``matmul`` profile times the
    kernel on activations that are already packed, which no layer of a
    network gets for free: each layer's input must be packed (and, for
    conv, unfolded) at its own abits, which is per-element work like the
    float quantization the whole-layer profiles include (micoc requantizes
    integers instead of quantizing floats, a similar loop). Measured: the
    bare-matmul proxy applied to the bitlinear rows is off by 54-57 % MAPE
    (whole-layer time / bare prediction, median 2.3x on all three configs),
    and to the bitconv2d rows as their im2col matmul by 80-86 % (median
    5.3-7.5x; Spearman only 0.82-0.92), while the whole-layer proxies fit
    those rows to 0.6-2.4 % (linear). ``gemm_kind="bare"``
    selects the bare-matmul proxy (conv as its im2col matmul) for
    comparison. Bits are rounded up to the kernel containers {1,2,4,8}
    (DESIGN §6: 3, 5, 6, 7 bits run in the next container).
    Geometry mapping: padding is applied to the input (H+pt+pb, W+pl+pr):
    im2col over the zero-padded input is exactly the unpadded kernel on a
    larger image; ``groups`` > 1 is ``groups`` calls of C/g -> K/g; batch N
    is N calls. Non-square kernels/strides and dilation are approximated
    (see `_vexii_conv_features`).
    Non-GEMM ops: maxpool/avgpool/global_avgpool via the ``pool`` proxy
    (fitted on float pooling kernels; micoc pools integers, a similar loop
    that is cheaper if anything); every other op (add, concat, relu,
    reshape, requantize, quantize/dequantize) is priced 0: its cost is
    folded into the whole-layer proxies or small next to the layers.

``bitfusion``
    The cycle-exact BitFusion model (micoc.cost.bitfusion): conv2d with
    im2col (as the profiled simulator does), linear as an FC layer (a 1x1
    conv on a 1x1 image, rows = batch), matmul as ``count`` FC layers with
    n rows. Batch is the graph's batch dimension (1 for micoc models)
    unless `batch` is given. Padding is exact (the model only sees the
    output size); groups > 1 is ``groups`` convolutions of C/g -> K/g.
    Non-GEMM ops cost 0 here: BitFusion executes conv/FC layers only,
    pooling and element-wise ops run elsewhere (host or a vector unit)
    and are not part of the accelerator model.

``host`` and ``rv32``
    micoc's own C runtime kernels, priced by a proxy fitted on profiles of
    those kernels (`micoc profile run`, micoc.cost.profile_run): host in ns
    of wall time, rv32 in exact retired RV32IM instructions under QEMU.
    The default proxy is ``micoc-rt`` (counts of what the patch and
    bit-serial kernels execute, proxies.RuntimeProxy). Parameters: rv32's
    ship in cost/params/ (instruction counts are deterministic); host's are
    machine-specific: ``params`` (a directory of ``host_<kind>.json``
    bundles or one bundle file), else $MICOC_PARAMS_DIR, else
    ~/.config/micoc/params. Layers are mapped as for vexii (padding into the
    input, groups as separate calls, non-square as the im2col 1x1 conv).
    Non-GEMM ops are priced 0 (they depend little on bits).

``bops``
    The baseline: "cycles" are BOPs (MACs*wbits*abits) and the unit says so.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from micoc.analysis import (
    BIT_RANGE,
    DEFAULT_BITS,
    ConvGeometry,
    GemmGeometry,
    LayerInfo,
    LayerTable,
    PoolInfo,
    check_schemes,
    layer_table,
    scheme_array,
)
from micoc.cost import bitfusion
from micoc.cost.profiles import (
    LayerFeatures,
    Profile,
    conv2d_features,
    matmul_features,
    pool_features,
    read_profiles,
)
from micoc.cost.proxies import (
    DEFAULT_PROXY,
    PARAMS_DIR,
    TARGET_PROXIES,
    FittedProxy,
    load_bundle,
    shipped_proxy,
)
from micoc.errors import InputError, UsageError
from micoc.ir.graph import Graph

__all__ = [
    "TARGETS",
    "VEXII_CONFIGS",
    "BitFusionLatency",
    "BopsLatency",
    "Estimate",
    "LatencyModel",
    "OpEstimate",
    "RUNTIME_TARGETS",
    "RuntimeLatency",
    "VexiiLatency",
    "check_profile",
    "make_model",
]

TARGETS: tuple[str, ...] = ("vexii", "bitfusion", "bops", "host", "rv32")
RUNTIME_TARGETS: tuple[str, ...] = ("host", "rv32")  # micoc's C runtime, proxies from `micoc profile run`
RUNTIME_UNITS = {"host": "ns", "rv32": "instructions"}
VEXII_CONFIGS: tuple[str, ...] = ("small", "high", "cacheless")
DEFAULT_VEXII_CONFIG = "high"

_NB = BIT_RANGE[1] + 1  # table index = bits (index 0 unused)

BitPair = tuple[int, int]


# ---------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class OpEstimate:
    """One row of an estimate: a quantizable layer or a priced non-GEMM op."""

    name: str
    op: str
    shape: str  # compact shape text for tables
    macs: int
    bops: int
    wbits: int | None
    abits: int | None
    cycles: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "op": self.op, "shape": self.shape, "macs": self.macs,
            "bops": self.bops, "wbits": self.wbits, "abits": self.abits, "cycles": self.cycles,
        }  # fmt: skip


@dataclass(frozen=True)
class Estimate:
    target: str
    config: str | None
    unit: str  # "cycles" or "BOPs"
    rows: tuple[OpEstimate, ...]

    @property
    def total_cycles(self) -> float:
        return float(sum(r.cycles for r in self.rows))

    @property
    def total_macs(self) -> int:
        return sum(r.macs for r in self.rows)

    @property
    def total_bops(self) -> int:
        return sum(r.bops for r in self.rows)

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "config": self.config,
            "unit": self.unit,
            "rows": [r.to_dict() for r in self.rows],
            "total": {"macs": self.total_macs, "bops": self.total_bops, "cycles": self.total_cycles},
        }


# ---------------------------------------------------------------------------
# The protocol and a table-driven base


@runtime_checkable
class LatencyModel(Protocol):
    """Latency of one graph on one target as a function of its bit scheme."""

    target: str
    config: str | None
    unit: str

    @property
    def layer_names(self) -> tuple[str, ...]: ...

    def estimate(self, scheme: Mapping[str, BitPair] | None = None, default: BitPair = DEFAULT_BITS) -> Estimate: ...

    def predict(self, scheme: Mapping[str, BitPair] | None = None, default: BitPair = DEFAULT_BITS) -> float: ...

    def predict_batch(self, schemes: np.ndarray) -> np.ndarray: ...


@dataclass(eq=False)
class _TableModel(ABC):
    """A model whose layer cost depends only on (layer, wbits, abits).

    ``_cycles[l, w, a]`` is filled lazily (NaN = not yet computed) for the
    bit pairs a batch actually uses; `_fixed` is the bit-independent cost of
    the non-GEMM ops.
    """

    graph: Graph
    target: str = field(init=False, default="")
    config: str | None = field(init=False, default=None)
    unit: str = field(init=False, default="cycles")
    table: LayerTable = field(init=False, repr=False)
    _cycles: np.ndarray = field(init=False, repr=False)
    _pool_cycles: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.table = layer_table(self.graph)
        self._cycles = np.full((len(self.table), _NB, _NB), np.nan)
        self._pool_cycles = np.array([self._pool_cost(p) for p in self.table.pools], dtype=np.float64)

    # -- what a target provides ---------------------------------------------
    @abstractmethod
    def _layer_cost(self, info: LayerInfo, wbits: np.ndarray, abits: np.ndarray) -> np.ndarray:
        """Cycles of one layer for arrays of bit pairs (vectorized if the target can)."""

    def _pool_cost(self, pool: PoolInfo) -> float:
        return 0.0

    # -- the API -------------------------------------------------------------
    @property
    def layer_names(self) -> tuple[str, ...]:
        return self.table.names

    @property
    def fixed_cycles(self) -> float:
        """Cost of the non-GEMM ops (independent of the scheme)."""
        return float(self._pool_cycles.sum())

    def layer_cycles_table(self, bits: tuple[int, ...] | None = None) -> np.ndarray:
        """``[L, 9, 9]`` cycles indexed by (layer, wbits, abits), filled for `bits` (default all 1..8)."""
        vals = np.arange(BIT_RANGE[0], BIT_RANGE[1] + 1) if bits is None else np.asarray(bits)
        w, a = np.meshgrid(vals, vals, indexing="ij")
        pairs = np.stack([w.ravel(), a.ravel()], axis=1)
        self._fill(np.broadcast_to(pairs[:, None, :], (pairs.shape[0], len(self.table), 2)))
        return self._cycles.copy()

    def _fill(self, s: np.ndarray) -> None:
        """Compute the table entries the schemes `s` [n, L, 2] need and do not have yet."""
        for li, info in enumerate(self.table.layers):
            # Encode a pair as one small int so np.unique is fast.
            codes = np.unique(s[:, li, 0] * _NB + s[:, li, 1])
            w, a = codes // _NB, codes % _NB
            missing = np.isnan(self._cycles[li, w, a])
            if missing.any():
                self._cycles[li, w[missing], a[missing]] = self._layer_cost(
                    info, w[missing], a[missing]
                )

    def predict_batch(self, schemes: np.ndarray) -> np.ndarray:
        """Total cycles [n] of schemes [n, L, 2] (wbits, abits per layer, table order)."""
        s = check_schemes(self.table, schemes)
        self._fill(s)
        li = np.arange(len(self.table))
        per_layer = self._cycles[li[None, :], s[..., 0], s[..., 1]]
        return per_layer.sum(axis=1) + self.fixed_cycles

    def predict(self, scheme: Mapping[str, BitPair] | None = None, default: BitPair = DEFAULT_BITS) -> float:
        return float(self.predict_batch(scheme_array(self.table, scheme, default)[None])[0])

    def estimate(self, scheme: Mapping[str, BitPair] | None = None, default: BitPair = DEFAULT_BITS) -> Estimate:
        bits = scheme_array(self.table, scheme, default)
        self._fill(bits[None])
        rows: list[tuple[int, OpEstimate]] = []
        for li, (info, (w, a)) in enumerate(zip(self.table.layers, bits, strict=True)):
            rows.append((info.index, OpEstimate(
                name=info.name, op=info.op, shape=_layer_shape(info), macs=info.macs,
                bops=info.macs * int(w) * int(a), wbits=int(w), abits=int(a),
                cycles=float(self._cycles[li, w, a]),
            )))  # fmt: skip
        for pool, cyc in zip(self.table.pools, self._pool_cycles, strict=True):
            if cyc:
                rows.append((pool.index, OpEstimate(
                    name=pool.name, op=pool.op, shape=_dims(pool.in_shape), macs=0, bops=0,
                    wbits=None, abits=None, cycles=float(cyc),
                )))  # fmt: skip
        rows.sort(key=lambda r: r[0])  # graph order
        return Estimate(self.target, self.config, self.unit, tuple(r for _, r in rows))


def _dims(shape: tuple[int, ...]) -> str:
    return "x".join(str(d) for d in shape)


def _layer_shape(info: LayerInfo) -> str:
    """Input * weight shapes, plus conv stride/pad/groups when not trivial."""
    text = f"{_dims(info.in_shape)} * {_dims(info.w_shape)}"
    g = info.geometry
    if isinstance(g, ConvGeometry):
        extra = []
        if g.stride != (1, 1):
            extra.append(f"s{g.stride[0]}" if g.stride[0] == g.stride[1] else f"s{g.stride[0]},{g.stride[1]}")
        if any(g.pad):
            extra.append(f"p{g.pad[0]}" if len(set(g.pad)) == 1 else "p" + ",".join(map(str, g.pad)))
        if g.groups != 1:
            extra.append(f"g{g.groups}")
        if g.dilation != (1, 1):
            extra.append(f"d{g.dilation[0]}")
        if extra:
            text += " " + " ".join(extra)
    return text


# ---------------------------------------------------------------------------
# bops


@dataclass(eq=False)
class BopsLatency(_TableModel):
    """The MiCo baseline: cost = BOPs."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.target, self.unit = "bops", "BOPs"

    def _layer_cost(self, info: LayerInfo, wbits: np.ndarray, abits: np.ndarray) -> np.ndarray:
        return float(info.macs) * wbits.astype(np.float64) * abits


# ---------------------------------------------------------------------------
# vexii


def _container_bits(bits: np.ndarray) -> np.ndarray:
    """The kernel width a bit width runs at: 1, 2, 4 or 8 (3 -> 4, 5..7 -> 8)."""
    b = np.asarray(bits, dtype=np.float64)
    return np.where(b <= 1, 1.0, np.where(b <= 2, 2.0, np.where(b <= 4, 4.0, 8.0)))


def _vexii_conv_features(g: ConvGeometry, qa: np.ndarray, qw: np.ndarray) -> LayerFeatures:
    """Features of ONE group of ONE image of a conv, as the bitconv2d proxy expects.

    The proxy's features depend on the geometry only through the im2col
    matmul (OH*OW rows, K/g outputs, (C/g)*KH*KW reduction) and the input
    size. Square kernel and stride, no dilation: the padded input is passed
    as is (exact). Otherwise the conv is passed as its im2col matmul in 1x1
    conv form (rows and reduction exact), with the input-element count put
    back to the real padded input.
    """
    c, k = g.c // g.groups, g.k // g.groups
    if g.kh == g.kw and g.stride[0] == g.stride[1] and g.dilation == (1, 1):
        return conv2d_features(g.padded_h, g.padded_w, c, k, g.kh, g.stride[0], qa, qw)
    f = conv2d_features(g.oh, g.ow, c * g.kh * g.kw, k, 1, 1, qa, qw)
    values = dict(f.values)
    values["in_elems"] = np.full_like(values["in_elems"], float(g.padded_h * g.padded_w * c))
    return LayerFeatures(f.kind, values)


@dataclass(eq=False)
class VexiiLatency(_TableModel):
    """VexiiRiscv-MiCo via the shipped fitted proxies (see the module docstring)."""

    vexii_config: str = DEFAULT_VEXII_CONFIG
    proxy: str = DEFAULT_PROXY
    gemm_kind: str = "layer"  # "layer": bitconv2d/bitlinear proxies; "bare": the bare matmul proxy
    params: Mapping[str, FittedProxy] | None = None  # kind -> fitted proxy, overrides the shipped ones

    def __post_init__(self) -> None:
        if self.vexii_config not in VEXII_CONFIGS:
            raise InputError(
                f"unknown vexii config {self.vexii_config!r}; expected one of {', '.join(VEXII_CONFIGS)}"
            )
        if self.gemm_kind not in ("layer", "bare"):
            raise InputError(f"gemm_kind must be 'layer' or 'bare', got {self.gemm_kind!r}")
        self._proxies: dict[str, FittedProxy] = {}
        super().__post_init__()
        self.target, self.config = "vexii", self.vexii_config
        # Every layer over every bit pair is a handful of vectorized proxy calls:
        # fill the whole table now so the search never waits.
        self.layer_cycles_table()

    def _fitted(self, kind: str) -> FittedProxy:
        if kind not in self._proxies:
            given = (self.params or {}).get(kind)
            self._proxies[kind] = given or shipped_proxy(self.vexii_config, kind, self.proxy)
        return self._proxies[kind]

    def _layer_cost(self, info: LayerInfo, wbits: np.ndarray, abits: np.ndarray) -> np.ndarray:
        qw, qa = _container_bits(wbits), _container_bits(abits)
        g = info.geometry
        if isinstance(g, ConvGeometry):
            if self.gemm_kind == "bare":
                f = matmul_features(g.oh * g.ow, g.k // g.groups, g.reduction, qa, qw, kind="matmul")
            else:
                f = _vexii_conv_features(g, qa, qw)
            calls = g.n * g.groups
        else:
            assert isinstance(g, GemmGeometry)
            kind = "matmul" if self.gemm_kind == "bare" else "linear"
            f = matmul_features(g.n, g.m, g.k, qa, qw, kind=kind)
            calls = g.count
        return calls * self._fitted(f.kind).predict(f)

    def _pool_cost(self, pool: PoolInfo) -> float:
        g = pool.geometry
        # The pool proxy knows square windows and strides on unpadded input;
        # pass the padded input and the geometric mean of a non-square window.
        k = g.kh if g.kh == g.kw else max(1, round(math.sqrt(g.kh * g.kw)))
        s = g.stride[0] if g.stride[0] == g.stride[1] else max(1, round(math.sqrt(g.stride[0] * g.stride[1])))
        h, w = g.h + g.pad[0] + g.pad[2], g.w + g.pad[1] + g.pad[3]
        k = min(k, h, w)
        is_max = 1.0 if pool.op == "maxpool" else 0.0
        f = pool_features(g.c, h, w, k, s, is_max)
        return float(g.n * self._fitted("pool").predict(f)[0])


# ---------------------------------------------------------------------------
# host / rv32: micoc's own runtime kernels


def runtime_bundle_path(target: str, kind: str, params: str | Path | None = None) -> Path:
    """The parameter bundle of a runtime target and kind (see the module docstring)."""
    if params is not None:
        p = Path(params)
        return p / f"{target}_{kind}.json" if p.is_dir() else p
    if target == "rv32":
        return PARAMS_DIR / f"{target}_{kind}.json"
    from micoc.cost.profile_run import default_params_dir

    return default_params_dir() / f"{target}_{kind}.json"


def load_runtime_proxy(target: str, kind: str, params: str | Path | None = None,
                       proxy: str | None = None) -> FittedProxy:
    """The fitted proxy `proxy` (default: the target's) for one kind of layer."""
    path = runtime_bundle_path(target, kind, params)
    if not path.is_file():
        hint = (f"run `micoc profile run --target {target} -o DIR` and pass --params DIR/params"
                + (" (or copy its bundles there)" if params is None else ""))
        raise InputError(f"no {target} latency parameters for {kind} layers at {path}: {hint}")
    bundle = load_bundle(path)
    name = proxy or TARGET_PROXIES[target][0]
    if name not in bundle:
        raise InputError(f"no {name!r} proxy in the bundle; have {', '.join(bundle)}", where=str(path))
    fitted = bundle[name]
    if fitted.kind != kind:
        raise InputError(f"the bundle was fitted on {fitted.kind} profiles, not {kind}", where=str(path))
    return fitted


@dataclass(eq=False)
class RuntimeLatency(_TableModel):
    """micoc's C runtime on the host (ns) or rv32 (instructions), via fitted proxies."""

    runtime_target: str = "rv32"
    proxy: str | None = None
    params: str | Path | None = None  # a directory of <target>_<kind>.json bundles, or one bundle

    def __post_init__(self) -> None:
        if self.runtime_target not in RUNTIME_TARGETS:
            raise InputError(f"no runtime cost model for target {self.runtime_target!r}")
        self._proxies: dict[str, FittedProxy] = {}
        super().__post_init__()
        self.target, self.unit = self.runtime_target, RUNTIME_UNITS[self.runtime_target]
        self.layer_cycles_table()

    def _fitted(self, kind: str) -> FittedProxy:
        if kind not in self._proxies:
            self._proxies[kind] = load_runtime_proxy(self.runtime_target, kind, self.params, self.proxy)
        return self._proxies[kind]

    def _layer_cost(self, info: LayerInfo, wbits: np.ndarray, abits: np.ndarray) -> np.ndarray:
        w = np.asarray(wbits, dtype=np.float64)
        a = np.asarray(abits, dtype=np.float64)
        g = info.geometry
        if isinstance(g, ConvGeometry):
            c, k = g.c // g.groups, g.k // g.groups
            if g.kh == g.kw and g.stride[0] == g.stride[1] and g.dilation == (1, 1):
                f = conv2d_features(g.padded_h, g.padded_w, c, k, g.kh, g.stride[0], a, w)
            else:  # the im2col matmul as a 1x1 conv
                f = conv2d_features(g.oh, g.ow, c * g.kh * g.kw, k, 1, 1, a, w)
            calls = g.n * g.groups
        else:
            assert isinstance(g, GemmGeometry)
            f = matmul_features(g.n, g.m, g.k, a, w, kind="linear")
            calls = g.count
        return calls * np.maximum(self._fitted(f.kind).predict(f), 0.0)


# ---------------------------------------------------------------------------
# bitfusion


@dataclass(eq=False)
class BitFusionLatency(_TableModel):
    """BitFusion via the cycle-exact model (see the module docstring)."""

    batch: int | None = None  # None: the graph's batch dimension
    bf_config: bitfusion.BitFusionConfig = field(default_factory=bitfusion.BitFusionConfig)

    def __post_init__(self) -> None:
        if self.batch is not None and self.batch < 1:
            raise InputError(f"bitfusion batch must be >= 1, got {self.batch}")
        super().__post_init__()
        self.target = "bitfusion"
        self.config = None if self.batch is None else f"batch={self.batch}"

    def bf_layers(self, info: LayerInfo) -> tuple[bitfusion.BitFusionLayer, int]:
        """The accelerator layer for `info` and how many times it runs."""
        g = info.geometry
        if isinstance(g, ConvGeometry):
            batch = self.batch or g.n
            # The model depends on the input size only through the output size
            # (it takes the output as square, like the simulator): give it the
            # input that yields (OH, OW) with no padding. A non-square kernel
            # or stride is approximated by its height.
            kh = (g.kh - 1) * g.dilation[0] + 1
            in_h = (g.oh - 1) * g.stride[0] + kh
            in_w = (g.ow - 1) * g.stride[0] + kh
            layer = bitfusion.BitFusionLayer.conv(
                in_h, in_w, g.c // g.groups, g.k // g.groups, g.kh, g.stride[0],
                pad=0, batch=batch, im2col=True,
            )  # fmt: skip
            return layer, g.groups
        assert isinstance(g, GemmGeometry)
        rows = g.n
        if self.batch is not None and info.op == "linear" and len(info.in_shape) >= 2:
            rows = g.n // info.in_shape[0] * self.batch
        return bitfusion.BitFusionLayer.fc(g.k, g.m, batch=rows), g.count

    def _layer_cost(self, info: LayerInfo, wbits: np.ndarray, abits: np.ndarray) -> np.ndarray:
        layer, times = self.bf_layers(info)
        return np.array(
            [
                times * bitfusion.layer_cycles(layer, int(a), int(w), self.bf_config)
                for w, a in zip(wbits, abits, strict=True)
            ],
            dtype=np.float64,
        )


# ---------------------------------------------------------------------------
# Factory and scheme files


def make_model(
    target: str,
    graph: Graph,
    config: str | None = None,
    *,
    batch: int | None = None,
    proxy: str | None = None,
    gemm_kind: str = "layer",
    params: str | Path | None = None,
) -> _TableModel:
    """The latency model of `graph` on `target` (vexii, bitfusion, bops, host, rv32).

    `config` is the vexii CPU configuration (default high), optionally with the
    GEMM proxy kind after a colon (``high:bare``, default ``layer``); `batch` applies to
    bitfusion only; `params` (host, rv32) is a directory of fitted bundles
    from `micoc profile run` or one bundle file (default: shipped for rv32,
    the user's parameter directory for host).
    """
    if target == "vexii":
        if config is not None and ":" in config:  # "high:bare": configuration and GEMM proxy kind
            config, gemm_kind = config.split(":", 1)
        return VexiiLatency(graph, config or DEFAULT_VEXII_CONFIG, proxy=proxy or DEFAULT_PROXY,
                            gemm_kind=gemm_kind)
    if config is not None:
        raise InputError(f"target {target!r} has no configurations (got --config {config})")
    if target in RUNTIME_TARGETS:
        return RuntimeLatency(graph, runtime_target=target, proxy=proxy, params=params)
    if target == "bitfusion":
        return BitFusionLatency(graph, batch=batch)
    if target == "bops":
        return BopsLatency(graph)
    raise InputError(f"unknown cost target {target!r}; expected one of {', '.join(TARGETS)}")


def check_profile(
    target: str,
    kind: str,
    csv_paths: list[Path] | list[str],
    *,
    config: str | None = None,
    proxy: str | None = None,
    params: str | Path | None = None,
) -> tuple[np.ndarray, Profile, str]:
    """Predictions of a target's cost model for every row of profile CSVs.

    Returns (predicted cycles, the profile with measured times, a label of the
    model used). vexii: the shipped proxy of `config` (or the bundle `params`
    written by `micoc profile fit`); bitfusion: the exact model, matmul rows
    as FC layers, conv2d rows as im2col convolutions (batch 16, as profiled).
    Bad CSVs raise InputError naming the file and line.
    """
    if target == "vexii":
        cfg = config or DEFAULT_VEXII_CONFIG
        if cfg not in VEXII_CONFIGS:
            raise UsageError(f"unknown vexii config {cfg!r}; expected one of {', '.join(VEXII_CONFIGS)}")
        name = proxy or DEFAULT_PROXY
        if params is not None:
            bundle = load_bundle(params)
            if name not in bundle:
                raise InputError(f"no {name!r} proxy in the bundle; have {', '.join(bundle)}", where=str(params))
            fitted = bundle[name]
            if fitted.kind != kind:
                raise InputError(
                    f"the bundle was fitted on {fitted.kind} profiles, not {kind}", where=str(params)
                )
            label = f"vexii {name} ({Path(params).name})"
        else:
            fitted = shipped_proxy(cfg, kind, name)
            label = f"vexii/{cfg} {name}"
        prof = read_profiles(list(csv_paths), kind)
        return fitted.predict(prof.features), prof, label
    if target == "bitfusion":
        if kind not in ("matmul", "conv2d"):
            raise UsageError(f"bitfusion profiles are matmul or conv2d, not {kind}")
        if config is not None or proxy is not None or params is not None:
            raise UsageError("bitfusion is an exact model: --config, --proxy and --params do not apply")
        prof = read_profiles(list(csv_paths), kind)
        pred = np.empty(len(prof))
        for i in range(len(prof)):
            row = {c: int(v[i]) for c, v in prof.columns.items()}
            try:
                layer = bitfusion.layer_from_profile_row(row, kind)  # type: ignore[arg-type]
                pred[i] = bitfusion.layer_cycles(layer, row["QA"], row["QW"])
            except InputError as e:
                raise InputError(e.message, where=prof.where(i)) from None
        return pred, prof, "bitfusion exact model"
    if target in RUNTIME_TARGETS:
        if config is not None:
            raise UsageError(f"target {target!r} has no configurations")
        if kind not in ("linear", "conv2d"):
            raise UsageError(f"{target} profiles are linear or conv2d, not {kind}")
        fitted = load_runtime_proxy(target, kind, params, proxy)
        prof = read_profiles(list(csv_paths), kind)
        label = f"{target} {fitted.name} ({runtime_bundle_path(target, kind, params).name})"
        return fitted.predict(prof.features), prof, label
    raise UsageError(f"no profiles to check for target {target!r}")
