"""Latency proxies: models that map layer features to cycles, fitted from profiles.

Three proxies are registered:

- `bops`: cycles = c * BOPs (+ intercept), the MiCo baseline;
- `cbops`: non-negative combination of BMACs, WLoads, ALoads (+ intercept);
- `cbops+shape`: counts of what the VexiiRiscv-MiCo kernels actually execute,
  per kind: SIMD dot-product ops (max(qa,qw) per 32-element block, i.e. BMACs
  at packing granularity), packed weight/activation words loaded (WLoads,
  ALoads at packing granularity), loop blocks, outputs, rows, activation
  quantization per bit width, im2col traffic, and the words missed once the
  re-read packed weights or the outputs overflow the data cache.

All are linear in count features and fitted by NNLS in a relative-error
sense (each row weighted by 1/time, so the loss is a squared percentage
error). Linearity is deliberate: the profiles only cover small layers, and
a model linear in counts extrapolates to 512-channel layers the way the
hardware does, where a tree model would saturate at the largest profiled
time. Non-negativity keeps every count from being "paid back". The only
non-linear parameters, the cache capacities of the overflow terms, are
picked from a short list by an inner group cross-validation.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from scipy.optimize import nnls

from micoc.cost import metrics
from micoc.cost.profiles import (
    BIT_WIDTHS,
    KINDS,
    SIMD_WORD_BITS,
    LayerFeatures,
    Profile,
    read_profiles,
)
from micoc.errors import InputError

__all__ = [
    "BUNDLE_FORMAT",
    "DEFAULT_PROXY",
    "PARAMS_DIR",
    "PROXIES",
    "TARGET_PROXIES",
    "CVResult",
    "FittedProxy",
    "Proxy",
    "RuntimeProxy",
    "cross_validate",
    "fit_proxy",
    "get_proxy",
    "group_folds",
    "load_bundle",
    "save_bundle",
    "shipped_params_path",
    "shipped_proxy",
]

DEFAULT_PROXY = "cbops+shape"
BUNDLE_FORMAT = "micoc-latency-proxies/1"
PARAMS_DIR = Path(__file__).resolve().parent / "params"

# Candidate data-cache capacities (bytes) for the overflow terms.
# None means "never overflows" (and is what a cacheless core picks).
_CACHE_CANDIDATES: tuple[int | None, ...] = (None,) + tuple(2**k for k in range(10, 17))
# Held-out losses within this fraction of the best count as ties, and the
# simplest hyper-parameters among the tied win.
_TIE_TOLERANCE = 0.02


_POOL_OPS = ("avg", "max")  # index = the is_max feature


def _bucket(bits: np.ndarray) -> np.ndarray:
    """Kernel width a bit width runs at: the next supported width up (3 -> 4, 9+ -> 8)."""
    widths = np.asarray(BIT_WIDTHS, dtype=np.float64)
    idx = np.searchsorted(widths, bits, side="left")
    return widths[np.minimum(idx, widths.size - 1)]


def _wnnls(x: np.ndarray, t: np.ndarray, relative: bool) -> tuple[np.ndarray, float]:
    """Non-negative least squares, optionally on relative errors; returns (coef, loss).

    Columns are rescaled to unit norm first: raw counts span ten orders of
    magnitude and Lawson-Hanson stalls on badly scaled columns.
    """
    w = 1.0 / t if relative else np.ones_like(t)
    a = x * w[:, None]
    b = t * w
    norms = np.linalg.norm(a, axis=0)
    live = norms > 0  # all-zero columns (e.g. an absent bit width) get coefficient 0
    coef = np.zeros(x.shape[1])
    if live.any():
        sol, _ = nnls(a[:, live] / norms[live], b, maxiter=50 * x.shape[1] + 1000)
        coef[live] = sol / norms[live]
    resid = a @ coef - b
    return coef, float(np.mean(resid**2))


def group_folds(groups: np.ndarray, k: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Deterministic group K-fold: (train, test) row indices, no group split across folds.

    Groups go, largest first, to the fold with the fewest rows so far, so
    folds are balanced in rows (ties broken by group id for reproducibility).
    Written here rather than taken from scikit-learn to keep this module's
    import cheap for the compiler.
    """
    ids, counts = np.unique(groups, return_counts=True)
    k = min(k, ids.size)
    if k < 2:
        raise ValueError("group K-fold needs at least two groups")
    fold_rows = np.zeros(k, dtype=np.int64)
    fold_of = np.empty(ids.size, dtype=np.int64)
    for gi in sorted(range(ids.size), key=lambda i: (-counts[i], i)):
        f = int(np.argmin(fold_rows))
        fold_of[gi] = f
        fold_rows[f] += counts[gi]
    row_fold = fold_of[np.searchsorted(ids, groups)]
    rows = np.arange(groups.size)
    return [(rows[row_fold != f], rows[row_fold == f]) for f in range(k)]


def _inner_folds(profile: Profile, folds: int = 3) -> list[tuple[np.ndarray, np.ndarray]]:
    """Group folds by layer shape for choosing hyper-parameters (empty if too few shapes)."""
    groups = profile.shape_groups()
    k = min(folds, int(np.unique(groups).size))
    if k < 2:
        return []
    return group_folds(groups, k)


def _cv_loss(
    x: np.ndarray, t: np.ndarray, folds: list[tuple[np.ndarray, np.ndarray]], relative: bool
) -> float:
    """Out-of-fold mean squared (relative) error; in-sample loss if there are no folds."""
    if not folds:
        return _wnnls(x, t, relative)[1]
    err = np.empty_like(t)
    for train, test in folds:
        coef, _ = _wnnls(x[train], t[train], relative)
        r = x[test] @ coef - t[test]
        err[test] = r / t[test] if relative else r
    return float(np.mean(err**2))


def _complexity(hyper: Mapping[str, Any]) -> tuple[int, float]:
    """Sort key for hyper-parameters: fewer finite caches first, then larger caches."""
    caps = [v for v in hyper.values() if v is not None]
    return (len(caps), -float(sum(caps)))


def _over(footprint: np.ndarray, cache: int | None) -> np.ndarray:
    """Expected miss fraction of a buffer of `footprint` bytes swept through a `cache`-byte cache.

    About cache/footprint of the buffer can stay resident between sweeps, so
    the fraction is 1 - cache/footprint once the buffer no longer fits: 0 at
    the capacity, approaching 1 for the much larger layers of real networks,
    which is the regime the proxy must extrapolate to.
    """
    if cache is None:
        return np.zeros_like(footprint)
    return np.clip(1.0 - cache / np.maximum(footprint, 1.0), 0.0, 1.0)


class Proxy(ABC):
    """A latency model: `fit(profile) -> params`, then `predict(features) -> cycles`."""

    name: ClassVar[str]
    description: ClassVar[str]

    def __init__(self, params: Mapping[str, Any] | None = None) -> None:
        self.params: dict[str, Any] | None = dict(params) if params is not None else None

    @abstractmethod
    def fit(self, profile: Profile) -> dict[str, Any]:
        """Fit to a profile, remember and return JSON-serializable parameters."""

    @abstractmethod
    def predict(self, features: LayerFeatures) -> np.ndarray:
        """Predicted cycles per row (vectorized)."""

    def _need_params(self) -> dict[str, Any]:
        if self.params is None:
            raise RuntimeError(f"proxy {self.name!r} used before fit()")
        return self.params


class LinearCountProxy(Proxy):
    """Non-negative linear model over named count columns, fitted on relative error."""

    relative: ClassVar[bool] = True

    @abstractmethod
    def columns(self, f: LayerFeatures, hyper: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Design-matrix columns for the given features and hyper-parameters."""

    def hyper_grid(self, kind: str) -> list[dict[str, Any]]:
        return [{}]

    def fit(self, profile: Profile) -> dict[str, Any]:
        grid = self.hyper_grid(profile.kind)
        scored: list[tuple[float, dict[str, Any]]] = []
        if len(grid) > 1:
            folds = _inner_folds(profile)
            seen: dict[bytes, float] = {}  # many capacities give the same design matrix
            for hyper in grid:
                x = np.stack(list(self.columns(profile.features, hyper).values()), axis=1)
                key = hashlib.sha1(x.tobytes()).digest()
                if key not in seen:
                    seen[key] = _cv_loss(x, profile.time, folds, self.relative)
                scored.append((seen[key], hyper))
        else:
            scored.append((0.0, grid[0]))
        # A discrete choice made on small data: among the hyper-parameters whose
        # held-out loss is within _TIE_TOLERANCE of the best, take the simplest
        # (fewest overflow terms, then the largest capacities).
        floor = min(loss for loss, _ in scored) * (1.0 + _TIE_TOLERANCE)
        hyper = min((h for loss, h in scored if loss <= floor), key=_complexity)
        cols = self.columns(profile.features, hyper)
        coef, _ = _wnnls(np.stack(list(cols.values()), axis=1), profile.time, self.relative)
        self.params = {
            "kind": profile.kind,
            "hyper": dict(hyper),
            "coef": {n: float(c) for n, c in zip(cols, coef, strict=True)},
        }
        return self.params

    def predict(self, features: LayerFeatures) -> np.ndarray:
        p = self._need_params()
        if p["kind"] != features.kind:
            raise InputError(
                f"proxy fitted on {p['kind']} profiles cannot price {features.kind} layers"
            )
        cols = self.columns(features, p["hyper"])
        coef = p["coef"]
        if set(cols) != set(coef):
            raise InputError(
                f"proxy parameters do not match proxy {self.name!r} "
                f"(have {sorted(coef)}, need {sorted(cols)})"
            )
        out = np.zeros(len(features))
        for n, v in cols.items():
            out += coef[n] * v
        return out


class BopsProxy(LinearCountProxy):
    name = "bops"
    description = "c*BOPs + intercept (MiCo baseline)"

    def columns(self, f: LayerFeatures, hyper: Mapping[str, Any]) -> dict[str, np.ndarray]:
        return {"BOPs": f["BOPs"], "intercept": np.ones(len(f))}


class CbopsProxy(LinearCountProxy):
    name = "cbops"
    description = "NNLS on BMACs, WLoads, ALoads + intercept (MiCo CBOPs)"

    def columns(self, f: LayerFeatures, hyper: Mapping[str, Any]) -> dict[str, np.ndarray]:
        return {
            "BMACs": f["BMACs"],
            "WLoads": f["WLoads"],
            "ALoads": f["ALoads"],
            "intercept": np.ones(len(f)),
        }


class CbopsShapeProxy(LinearCountProxy):
    name = "cbops+shape"
    description = "NNLS on kernel execution counts (SIMD ops, packed loads, loop blocks, outputs, quantization, im2col, cache overflow)"

    def hyper_grid(self, kind: str) -> list[dict[str, Any]]:
        if kind == "pool":
            return [{}]
        # Weights (re-read per row) and outputs (written once) overflow at
        # different sizes because they share the cache with other buffers.
        return [
            {"w_cache_bytes": w, "out_cache_bytes": o}
            for w in _CACHE_CANDIDATES
            for o in _CACHE_CANDIDATES
        ]

    def fit(self, profile: Profile) -> dict[str, Any]:
        params = super().fit(profile)
        if profile.kind == "pool":
            # An op never profiled would be priced by all-zero coefficients: remember which were.
            seen = np.unique(profile.features["is_max"])
            params["pool_ops"] = [_POOL_OPS[int(v)] for v in seen]
        return params

    def predict(self, features: LayerFeatures) -> np.ndarray:
        p = self._need_params()
        if features.kind == "pool" and "pool_ops" in p:
            asked = {_POOL_OPS[int(v)] for v in np.unique(features["is_max"])}
            missing = asked - set(p["pool_ops"])
            if missing:
                raise InputError(
                    f"proxy was fitted without {', '.join(sorted(missing))} pooling profiles"
                )
        return super().predict(features)

    def columns(self, f: LayerFeatures, hyper: Mapping[str, Any]) -> dict[str, np.ndarray]:
        one = np.ones(len(f))
        if f.kind == "pool":
            cols: dict[str, np.ndarray] = {}
            # avg and max are different loops (add+scale vs compare), so each gets its own terms.
            for op, sel in (("avg", 1.0 - f["is_max"]), ("max", f["is_max"])):
                cols[f"{op}.out_elems"] = f["out_elems"] * sel
                cols[f"{op}.window_elems"] = f["window_elems"] * sel
                cols[f"{op}.window_rows"] = f["window_rows"] * sel
                cols[f"{op}.in_elems"] = f["in_elems"] * sel
                cols[f"{op}.intercept"] = one * sel
            return cols

        cols = {
            # the SIMD dot products: max(qa,qw) ops per 32-element block
            "simd_ops": f["simd_ops"],
            # packed operand words loaded in the inner loop
            "w_words": f["w_words"],
            "a_words": f["a_words"],
            # loop control per 32-element block and per output (accumulate, store, requant)
            "inner_iters": f["inner_iters"],
            "gemm_outputs": f["gemm_outputs"],
            # per-row setup of the vec x mat call
            "gemm_rows": f["gemm_n"],
            # touching the packed weights once (cold misses, packing)
            "w_packed_words": f["w_packed_words"],
        }
        qa = _bucket(f["QA"])
        if f.kind == "conv2d":
            # im2col copy + activation quantization/packing; the packing loop differs per width.
            for b in BIT_WIDTHS:
                cols[f"im2col_elems.a{b}"] = f["im2col_elems"] * (qa == b)
                cols[f"in_elems.a{b}"] = f["in_elems"] * (qa == b)
            cols["im2col_words"] = f["im2col_words"]
        else:
            # activation quantization + packing (zero for the bare matmul, where inputs are packed)
            for b in BIT_WIDTHS:
                cols[f"a_elems.a{b}"] = f["a_elems"] * (qa == b)
            cols["a_packed_words"] = f["a_packed_words"]
        # Every row re-reads all packed weights; the part of them that no longer
        # fits the data cache misses on every sweep.
        cols["w_words_missed"] = f["w_words"] * _over(f["w_bytes"], hyper.get("w_cache_bytes"))
        # Outputs written to a buffer that no longer stays cached between calls.
        cols["out_missed"] = f["out_elems"] * _over(f["out_elems"] * 4, hyper.get("out_cache_bytes"))
        cols["intercept"] = one
        return cols


class RuntimeProxy(LinearCountProxy):
    """What micoc's own C kernels (micoc/runtime/mico_rt.c) execute, for the host and rv32 targets.

    The runtime picks a kernel per layer by its bit pair (bit-serial AND +
    popcount over bit-planes for narrow pairs, unpack-and-multiply patch
    kernels per weight container otherwise), so the work per MAC gets one
    coefficient per (weight, activation) container pair, and so does the
    work per output (the kernel's row setup and output grouping,
    requantization, packing); the narrow pairs (<= 2 bits) get one per
    32-deep reduction block and per input element (splitting the input into
    planes) too; the rest is bit-pair-independent bookkeeping: unpacking (or
    splitting into planes) the input patch of every output pixel per
    activation container, one reduction block of 32 per output, taps, pixels
    and the input. The kernel-choice rule itself is not encoded,
    so the proxy survives a change of thresholds when refitted. A linear
    layer is the 1x1 conv of a 1x1 image (C = K inputs, K = M outputs, N rows).
    """

    name = "micoc-rt"
    description = (
        "NNLS on micoc's C runtime kernel counts: MACs and outputs per (weight, activation) container "
        "pair, unpacked patch elements per activation container, 32-blocks, taps, pixels, input"
    )

    def columns(self, f: LayerFeatures, hyper: Mapping[str, Any]) -> dict[str, np.ndarray]:
        one = np.ones(len(f))
        if f.kind == "pool":
            return {"out_elems": f["out_elems"], "window_elems": f["window_elems"], "intercept": one}
        if f.kind == "conv2d":
            pix, taps, cin, cout = f["OH"] * f["OW"], f["KS"] * f["KS"], f["C"], f["K"]
            in_elems = f["H"] * f["W"] * f["C"]
        else:
            pix, taps, cin, cout = f["N"], one, f["K"], f["M"]
            in_elems = f["N"] * f["K"]
        qa, qw = _bucket(f["QA"]), _bucket(f["QW"])
        red = taps * cin
        macs = pix * cout * red
        cols: dict[str, np.ndarray] = {}
        for w in BIT_WIDTHS:
            for a in BIT_WIDTHS:
                pair = (qw == w) & (qa == a)
                cols[f"macs.w{w}a{a}"] = macs * pair
                # per output: the kernel's row setup, its output grouping (4 outputs per
                # activation load, channel pairs, XNOR words), requantization and packing
                cols[f"outputs.w{w}a{a}"] = pix * cout * pair
        for a in BIT_WIDTHS:
            cols[f"patch_elems.a{a}"] = pix * red * (qa == a)
        blocks = pix * cout * np.ceil(red / SIMD_WORD_BITS)
        cols["blocks"] = blocks
        # Narrow pairs can run on 32-channel words of bit-planes, whose cost follows
        # the padded reduction (a 16-deep reduction still sweeps a whole word).
        # ... and split the whole input into planes first (every pixel, strided or not).
        for w in (1, 2):
            for a in (1, 2):
                narrow = (qw == w) & (qa == a)
                cols[f"blocks.w{w}a{a}"] = blocks * narrow
                cols[f"in_elems.w{w}a{a}"] = in_elems * narrow
        cols["taps"] = pix * taps
        cols["pixels"] = pix
        cols["in_elems"] = in_elems
        cols["intercept"] = one
        return cols

PROXIES: dict[str, type[LinearCountProxy]] = {
    p.name: p for p in (BopsProxy, CbopsProxy, CbopsShapeProxy, RuntimeProxy)
}
# The proxies fitted (and shipped) per target; the first listed is the default.
TARGET_PROXIES: dict[str, tuple[str, ...]] = {
    "vexii": ("cbops+shape", "bops", "cbops"),
    "host": ("micoc-rt", "bops", "cbops", "cbops+shape"),
    "rv32": ("micoc-rt", "bops", "cbops", "cbops+shape"),
}


def get_proxy(name: str, params: Mapping[str, Any] | None = None) -> Proxy:
    """A proxy instance by registry name, optionally with fitted parameters."""
    try:
        cls = PROXIES[name]
    except KeyError:
        raise InputError(
            f"unknown latency proxy {name!r}; expected one of {', '.join(PROXIES)}"
        ) from None
    return cls(params)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 16), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass(frozen=True)
class FittedProxy:
    """A proxy with its fitted parameters and where they came from."""

    kind: str
    name: str
    params: Mapping[str, Any]
    provenance: Mapping[str, Any] = field(default_factory=dict)

    def proxy(self) -> Proxy:
        return get_proxy(self.name, self.params)

    def predict(self, features: LayerFeatures) -> np.ndarray:
        return self.proxy().predict(features)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "params": self.params,
            "provenance": self.provenance,
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=False)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str | None = None) -> FittedProxy:
        try:
            kind, name, params = d["kind"], d["name"], d["params"]
        except (KeyError, TypeError):
            raise InputError(
                "fitted proxy needs 'kind', 'name' and 'params'", where=where
            ) from None
        if kind not in KINDS:
            raise InputError(f"unknown profile kind {kind!r}", where=where)
        if name not in PROXIES:
            raise InputError(f"unknown latency proxy {name!r}", where=where)
        if not isinstance(params, Mapping) or not isinstance(params.get("coef"), Mapping):
            raise InputError("proxy 'params' must hold a 'coef' mapping", where=where)
        return cls(kind, name, dict(params), dict(d.get("provenance", {})))

    @classmethod
    def from_json(cls, text: str, where: str | None = None) -> FittedProxy:
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise InputError(f"invalid JSON: {e.msg}", where=f"{where or '<json>'}:{e.lineno}") from None
        return cls.from_dict(d, where)


def fit_proxy(
    kind: str,
    name: str,
    csv_paths: Sequence[str | Path],
    profile: Profile | None = None,
) -> FittedProxy:
    """Fit proxy `name` on the profile CSVs of one kind; provenance records each file's sha256."""
    paths = [Path(p) for p in csv_paths]
    prof = profile if profile is not None else read_profiles(paths, kind)
    proxy = get_proxy(name)
    params = proxy.fit(prof)
    pred = proxy.predict(prof.features)
    provenance = {
        "sources": [
            {"file": p.name, "sha256": _sha256(p), "rows": int(np.sum(prof.source_index == i))}
            for i, p in enumerate(paths)
        ],
        "fitted_at": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "method": "non-negative least squares on relative error (row weight 1/time)",
        "description": PROXIES[name].description,
        "fit_metrics": metrics.summary(pred, prof.time),
    }
    return FittedProxy(kind, name, params, provenance)


@dataclass(frozen=True)
class CVResult:
    """Out-of-fold predictions of a group K-fold and their metrics."""

    name: str
    kind: str
    pred: np.ndarray
    true: np.ndarray
    folds: int
    metrics: Mapping[str, float]


def cross_validate(profile: Profile, name: str, folds: int = 5) -> CVResult:
    """Group K-fold by layer shape: every bit-width pair of a held-out shape is held out together."""
    groups = profile.shape_groups()
    k = min(folds, int(np.unique(groups).size))
    if k < 2:
        raise InputError("cross-validation needs at least two distinct layer shapes")
    pred = np.empty_like(profile.time)
    for train, test in group_folds(groups, k):
        proxy = get_proxy(name)
        proxy.fit(profile.subset(train))
        pred[test] = proxy.predict(profile.features.subset(test))
    return CVResult(name, profile.kind, pred, profile.time, k, metrics.summary(pred, profile.time))


def save_bundle(path: str | Path, proxies: Sequence[FittedProxy], default: str | None = None, **meta: Any) -> None:
    """Write several fitted proxies of one kind to one JSON file (the shipped format)."""
    kinds = {p.kind for p in proxies}
    if len(kinds) != 1:
        raise ValueError(f"a bundle holds one kind of profile, got {sorted(kinds)}")
    if default is None:
        default = DEFAULT_PROXY if any(p.name == DEFAULT_PROXY for p in proxies) else proxies[0].name
    doc = {
        "format": BUNDLE_FORMAT,
        **meta,
        "kind": kinds.pop(),
        "default": default,
        "proxies": [p.to_dict() for p in proxies],
    }
    Path(path).write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")


def load_bundle(path: str | Path) -> dict[str, FittedProxy]:
    """Read a bundle written by `save_bundle`: proxy name -> FittedProxy."""
    p = Path(path)
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"proxy parameter file not found: {p}", where=p.name) from None
    except json.JSONDecodeError as e:
        raise InputError(f"invalid JSON: {e.msg}", where=f"{p.name}:{e.lineno}") from None
    if not isinstance(doc, dict) or doc.get("format") != BUNDLE_FORMAT:
        raise InputError(f"not a {BUNDLE_FORMAT} file", where=p.name)
    out: dict[str, FittedProxy] = {}
    for d in doc.get("proxies", []):
        fp = FittedProxy.from_dict(d, where=p.name)
        out[fp.name] = fp
    return out


def shipped_params_path(config: str | None, kind: str, target: str = "vexii") -> Path:
    """Where the shipped parameters of a target configuration and kind live
    (``<target>_<config>_<kind>.json``; ``<target>_<kind>.json`` for a target without configurations)."""
    return PARAMS_DIR / (f"{target}_{kind}.json" if config is None else f"{target}_{config}_{kind}.json")


def shipped_proxy(
    config: str | None, kind: str, name: str = DEFAULT_PROXY, target: str = "vexii"
) -> FittedProxy:
    """The shipped fitted proxy, e.g. shipped_proxy("high", "conv2d")."""
    bundle = load_bundle(shipped_params_path(config, kind, target))
    try:
        return bundle[name]
    except KeyError:
        raise InputError(
            f"no {name!r} proxy shipped for {target}/{config}/{kind}; have {', '.join(bundle)}"
        ) from None
