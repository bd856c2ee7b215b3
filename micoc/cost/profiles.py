"""Hardware latency profiles (CSV) and the per-layer features the proxies use.

A profile is a table of layer shapes and measured times for one kind of
kernel call: `matmul` (bare integer matmul), `linear` (whole linear layer),
`conv2d` (whole conv layer: im2col + quantization + matmul) or `pool`
(float pooling). Column layouts follow ../shared/profiles/README.md.

Features are computed by plain functions (`matmul_features`, ...) so that a
compiler pass can price a layer that was never profiled, exactly the same
way the fitting code sees a CSV row.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike

from micoc.errors import InputError

__all__ = [
    "KINDS",
    "LayerFeatures",
    "Profile",
    "SIMD_WORD_BITS",
    "conv2d_features",
    "matmul_features",
    "pool_features",
    "read_profile",
    "read_profiles",
]

KINDS: tuple[str, ...] = ("matmul", "linear", "conv2d", "pool")

# The MiCo dot-product instructions consume one 32-bit register per operand,
# so a word holds 32/bits elements and a reduction of K elements is packed
# into ceil(K*bits/32) words.
SIMD_WORD_BITS = 32

# Bit widths the VexiiRiscv kernels exist for; other widths are accepted by
# the feature functions but the per-width coefficients only cover these.
BIT_WIDTHS: tuple[int, ...] = (1, 2, 4, 8)

# Float pooling has no quantized operands; treat its operands as 32-bit so
# that BOPs stays a (meaningless but finite) multiple of the work done.
FLOAT_BITS = 32

_SHAPE_COLUMNS: dict[str, tuple[str, ...]] = {
    "matmul": ("N", "M", "K", "QA", "QW"),
    "linear": ("N", "M", "K", "QA", "QW"),
    "conv2d": ("H", "W", "C", "K", "KS", "QA", "QW"),
    "pool": ("C", "H", "W", "K", "S"),
}
# Columns that may be absent, with the value the README gives them.
_OPTIONAL_COLUMNS: dict[str, dict[str, float]] = {
    "conv2d": {"S": 1.0},
}
TIME_COLUMN = "Time"


@dataclass(frozen=True)
class LayerFeatures:
    """Named per-row feature arrays (all float64, same length) for one kind of layer."""

    kind: str
    values: Mapping[str, np.ndarray]

    def __post_init__(self) -> None:
        lengths = {v.shape for v in self.values.values()}
        if len(lengths) > 1:
            raise ValueError(f"feature arrays differ in shape: {sorted(lengths)}")

    def __getitem__(self, name: str) -> np.ndarray:
        return self.values[name]

    def __contains__(self, name: object) -> bool:
        return name in self.values

    def __len__(self) -> int:
        return next(iter(self.values.values())).shape[0] if self.values else 0

    def names(self) -> list[str]:
        return list(self.values)

    def subset(self, index: np.ndarray) -> LayerFeatures:
        return LayerFeatures(self.kind, {k: v[index] for k, v in self.values.items()})


def _arr(x: ArrayLike) -> np.ndarray:
    return np.atleast_1d(np.asarray(x, dtype=np.float64))


def _words(elems: np.ndarray, bits: np.ndarray) -> np.ndarray:
    """32-bit words needed to hold `elems` packed values of `bits` bits."""
    return np.ceil(elems * bits / SIMD_WORD_BITS)


def _gemm_counts(
    n: np.ndarray, m: np.ndarray, k: np.ndarray, qa: np.ndarray, qw: np.ndarray
) -> dict[str, np.ndarray]:
    """Counts of what the MiCo vec x mat kernel does for an (n x k) @ (k x m) product.

    The kernel walks every (row, output) pair and reduces over K in blocks of
    32 elements; each block issues max(qa,qw) SIMD ops (32/max elements per op)
    and loads the packed words of both operands.
    """
    macs = n * m * k
    blocks = np.ceil(k / SIMD_WORD_BITS)  # 32-element blocks of the unrolled inner loop
    qmax = np.maximum(qa, qw)
    outputs = n * m
    return {
        "MACs": macs,
        "BOPs": macs * qa * qw,
        "BMACs": macs * qmax,
        "WLoads": macs * qw,
        "ALoads": macs * qa,
        "gemm_n": n,
        "gemm_m": m,
        "gemm_k": k,
        "gemm_outputs": outputs,
        "inner_iters": outputs * blocks,
        "simd_ops": outputs * blocks * qmax,
        "w_words": outputs * _words(k, qw),
        "a_words": outputs * _words(k, qa),
        # Packed footprints: what has to stay in the data cache for reuse.
        "w_bytes": m * _words(k, qw) * 4,
        "w_packed_words": m * _words(k, qw),
        "a_packed_words": n * _words(k, qa),
        "a_elems": n * k,
    }


def matmul_features(
    N: ArrayLike, M: ArrayLike, K: ArrayLike, QA: ArrayLike, QW: ArrayLike, kind: str = "matmul"
) -> LayerFeatures:
    """Features of an (N x K) @ (K x M) product: N rows, M outputs, K reduction (VexiiRiscv reading)."""
    n, m, k, qa, qw = np.broadcast_arrays(_arr(N), _arr(M), _arr(K), _arr(QA), _arr(QW))
    f = {"N": n, "M": m, "K": k, "QA": qa, "QW": qw}
    f.update(_gemm_counts(n, m, k, qa, qw))
    f["out_elems"] = f["gemm_outputs"]
    return LayerFeatures(kind, {key: np.array(v, dtype=np.float64) for key, v in f.items()})


def conv2d_features(
    H: ArrayLike,
    W: ArrayLike,
    C: ArrayLike,
    K: ArrayLike,
    KS: ArrayLike,
    S: ArrayLike,
    QA: ArrayLike,
    QW: ArrayLike,
) -> LayerFeatures:
    """Features of a padding-0 convolution lowered as im2col + matmul.

    The matmul has OH*OW rows, K outputs and a C*KS*KS reduction.
    """
    h, w, c, k, ks, s, qa, qw = np.broadcast_arrays(
        _arr(H), _arr(W), _arr(C), _arr(K), _arr(KS), _arr(S), _arr(QA), _arr(QW)
    )
    oh = np.floor((h - ks) / s) + 1
    ow = np.floor((w - ks) / s) + 1
    rows = oh * ow
    red = c * ks * ks
    f = {"H": h, "W": w, "C": c, "K": k, "KS": ks, "S": s, "QA": qa, "QW": qw, "OH": oh, "OW": ow}
    f.update(_gemm_counts(rows, k, red, qa, qw))
    f["out_elems"] = rows * k
    f["in_elems"] = h * w * c
    f["im2col_elems"] = rows * red
    f["im2col_words"] = rows * _words(red, qa)
    return LayerFeatures("conv2d", {key: np.array(v, dtype=np.float64) for key, v in f.items()})


def pool_features(
    C: ArrayLike, H: ArrayLike, W: ArrayLike, K: ArrayLike, S: ArrayLike, op: ArrayLike
) -> LayerFeatures:
    """Features of a KxK, stride-S, padding-0 float pooling; op is 0 for avg, 1 for max."""
    c, h, w, k, s, is_max = np.broadcast_arrays(
        _arr(C), _arr(H), _arr(W), _arr(K), _arr(S), _arr(op)
    )
    oh = np.floor((h - k) / s) + 1
    ow = np.floor((w - k) / s) + 1
    out = c * oh * ow
    window = out * k * k
    bits = np.full_like(c, float(FLOAT_BITS))
    f = {
        "C": c, "H": h, "W": w, "K": k, "S": s, "OH": oh, "OW": ow,
        "is_max": is_max,
        "QA": bits, "QW": bits,
        # A window element is the pooling analogue of a MAC.
        "MACs": window,
        "BOPs": window * bits * bits,
        "BMACs": window * bits,
        "WLoads": window * bits,
        "ALoads": window * bits,
        "out_elems": out,
        "window_elems": window,
        "window_rows": out * k,
        "out_rows": c * oh,
        "in_elems": c * h * w,
    }  # fmt: skip
    return LayerFeatures("pool", {key: np.array(v, dtype=np.float64) for key, v in f.items()})


@dataclass(frozen=True)
class Profile:
    """Measured rows of one kind of kernel call, possibly from several CSV files."""

    kind: str
    columns: Mapping[str, np.ndarray]  # raw shape columns, float64
    time: np.ndarray  # measured cycles
    sources: tuple[Path, ...]
    source_index: np.ndarray  # which source each row came from
    lines: np.ndarray  # 1-based line of each row in its source
    features: LayerFeatures = field(repr=False)

    def __len__(self) -> int:
        return int(self.time.shape[0])

    def where(self, row: int) -> str:
        """`file.csv:LINE` of a row, for error messages."""
        return f"{self.sources[int(self.source_index[row])].name}:{int(self.lines[row])}"

    def shape_groups(self) -> np.ndarray:
        """One integer per row identifying its layer shape with the bit widths left out.

        Cross-validation holds out whole groups, so a shape is never seen at
        any precision before it is predicted.
        """
        # For pooling, avg and max of one shape share a group: same layer shape.
        keys = [c for c in _SHAPE_COLUMNS[self.kind] + ("S",) if c not in ("QA", "QW")]
        keys = [c for c in dict.fromkeys(keys) if c in self.columns]
        table = np.stack([self.columns[c] for c in keys], axis=1)
        _, groups = np.unique(table, axis=0, return_inverse=True)
        return groups.ravel()

    def subset(self, index: np.ndarray) -> Profile:
        idx = np.asarray(index)
        return Profile(
            kind=self.kind,
            columns={k: v[idx] for k, v in self.columns.items()},
            time=self.time[idx],
            sources=self.sources,
            source_index=self.source_index[idx],
            lines=self.lines[idx],
            features=self.features.subset(idx),
        )


def _features_for(kind: str, cols: Mapping[str, np.ndarray]) -> LayerFeatures:
    if kind in ("matmul", "linear"):
        return matmul_features(cols["N"], cols["M"], cols["K"], cols["QA"], cols["QW"], kind=kind)
    if kind == "conv2d":
        return conv2d_features(
            cols["H"], cols["W"], cols["C"], cols["K"], cols["KS"], cols["S"], cols["QA"], cols["QW"]
        )
    return pool_features(cols["C"], cols["H"], cols["W"], cols["K"], cols["S"], cols["OP"])


def _pool_op_from_name(path: Path) -> float:
    name = path.name.lower()
    if "maxpool" in name:
        return 1.0
    if "avgpool" in name:
        return 0.0
    raise InputError(
        "cannot tell average from max pooling: put 'avgpool' or 'maxpool' in the file name",
        where=path.name,
    )


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise InputError(f"unknown profile kind {kind!r}; expected one of {', '.join(KINDS)}")


def _read_table(path: Path, kind: str) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Parse and validate one CSV; returns (shape columns, times, line numbers)."""
    name = path.name
    try:
        text = path.read_text(encoding="utf-8-sig")  # tolerate a BOM from spreadsheet exports
    except FileNotFoundError:
        raise InputError(f"profile file not found: {path}", where=name) from None
    except IsADirectoryError:
        raise InputError(f"profile path is a directory: {path}", where=name) from None
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read profile: {e}", where=name) from None

    rows = [(i + 1, r) for i, r in enumerate(csv.reader(text.splitlines()))]
    rows = [(ln, r) for ln, r in rows if any(cell.strip() for cell in r)]  # blank lines carry nothing
    if not rows:
        raise InputError("profile is empty (no header, no rows)", where=f"{name}:1")
    header_line, header = rows[0]
    header = [h.strip() for h in header]
    needed = _SHAPE_COLUMNS[kind] + (TIME_COLUMN,)
    optional = _OPTIONAL_COLUMNS.get(kind, {})
    missing = [c for c in needed if c not in header]
    if missing:
        raise InputError(
            f"{kind} profile lacks column(s) {', '.join(missing)}; "
            f"expected {','.join(needed)} (found {','.join(header)})",
            where=f"{name}:{header_line}",
        )
    dup = sorted({h for h in header if header.count(h) > 1})
    if dup:
        raise InputError(f"duplicate column(s) {', '.join(dup)}", where=f"{name}:{header_line}")
    body = rows[1:]
    if not body:
        raise InputError("profile has a header but no data rows", where=f"{name}:{header_line}")

    wanted = [c for c in needed + tuple(optional) if c in header]
    pos = {c: header.index(c) for c in wanted}
    data = {c: np.empty(len(body)) for c in wanted}
    lines = np.empty(len(body), dtype=np.int64)
    for i, (ln, r) in enumerate(body):
        if len(r) != len(header):
            raise InputError(
                f"row has {len(r)} cells, header has {len(header)}", where=f"{name}:{ln}"
            )
        lines[i] = ln
        for c in wanted:
            cell = r[pos[c]].strip()
            try:
                v = float(cell)
            except ValueError:
                raise InputError(
                    f"column {c}: {cell!r} is not a number", where=f"{name}:{ln}"
                ) from None
            if not math.isfinite(v):
                raise InputError(f"column {c}: {cell!r} is not finite", where=f"{name}:{ln}")
            if v <= 0:
                what = "time" if c == TIME_COLUMN else "size"
                raise InputError(
                    f"column {c}: {what} must be positive, got {cell}", where=f"{name}:{ln}"
                )
            data[c][i] = v
    for c, default in optional.items():
        if c not in data:
            data[c] = np.full(len(body), default)

    # A window larger than its input would give a negative output size.
    if kind in ("conv2d", "pool"):
        win = data["KS"] if kind == "conv2d" else data["K"]
        bad = np.flatnonzero((win > data["H"]) | (win > data["W"]))
        if bad.size:
            raise InputError(
                "kernel window is larger than the input (padding is 0)",
                where=f"{name}:{lines[bad[0]]}",
            )
    times = data.pop(TIME_COLUMN)
    return data, times, lines


def read_profile(path: str | Path, kind: str) -> Profile:
    """Read one profile CSV of the given kind (`matmul`, `linear`, `conv2d`, `pool`)."""
    return read_profiles([path], kind)


def read_profiles(paths: Sequence[str | Path], kind: str) -> Profile:
    """Read and concatenate several CSVs of one kind (e.g. avg and max pooling)."""
    _check_kind(kind)
    if not paths:
        raise InputError(f"no {kind} profile files given")
    cols: dict[str, list[np.ndarray]] = {}
    times, src, lines = [], [], []
    sources = tuple(Path(p) for p in paths)
    for i, p in enumerate(sources):
        data, t, ln = _read_table(p, kind)
        if kind == "pool":
            data["OP"] = np.full(t.shape, _pool_op_from_name(p))
        for c, v in data.items():
            cols.setdefault(c, []).append(v)
        times.append(t)
        src.append(np.full(t.shape, i, dtype=np.int64))
        lines.append(ln)
    columns = {c: np.concatenate(v) for c, v in cols.items()}
    return Profile(
        kind=kind,
        columns=columns,
        time=np.concatenate(times),
        sources=sources,
        source_index=np.concatenate(src),
        lines=np.concatenate(lines),
        features=_features_for(kind, columns),
    )
