"""Deterministic text form of the IR (".mir"); `parser.py` reads it back.

The output depends only on the graph's contents (never on Python ids or dict
insertion accidents): op results are renumbered `%0, %1, ...` in op order,
attributes print in registry declaration order and only when they differ from
the registry default, and floats print with `repr` so they read back exactly.
Constants with more than INLINE_LIMIT elements print as `dense<"DIGEST">`;
their data lives in a sidecar .npz keyed by constant name (see `save_mir`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import tempfile
import zipfile
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from micoc.ir.ops import OPS, REQUIRED, normalize_attrs
from micoc.ir.types import QuantParams, TensorType, numpy_dtype

if TYPE_CHECKING:
    from micoc.ir.graph import Graph, Op, Value

# Constants with at most this many elements are printed inline as a flat list.
INLINE_LIMIT = 8

# Names matching this print bare; anything else is a JSON string (`@"onnx::Conv_3"`).
IDENT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*\Z")


# --------------------------------------------------------------------------
# Scalars, names, types
# --------------------------------------------------------------------------


def format_float(x: float) -> str:
    """Shortest text that reads back to exactly the same double (`inf`, `nan` included)."""
    # float() first: repr(np.float32(1.5)) is 'np.float32(1.5)' under numpy 2.
    return repr(float(x))


def format_name(sigil: str, name: str) -> str:
    """`%x` / `@conv1.weight` for identifiers, `@"onnx::Conv_3"` for anything else."""
    return sigil + name if IDENT_RE.match(name) else sigil + json.dumps(name)


def format_quant(q: QuantParams) -> str:
    if q.axis is None:
        return f"<s={format_float(q.scale[0])}, zp={int(q.zero_point[0])}>"
    scales = ", ".join(format_float(s) for s in q.scale)
    zps = ", ".join(str(int(z)) for z in q.zero_point)
    return f"<axis={int(q.axis)}, s=[{scales}], zp=[{zps}]>"


def format_type(t: TensorType) -> str:
    """`f32[1,3,32,32]`, `qu8<s=0.5, zp=0>[1,6]`, `qi4<axis=0, s=[...], zp=[...]>[6,1,5,5]`."""
    quant = format_quant(t.quant) if t.quant is not None else ""
    return f"{t.elem}{quant}[{','.join(str(int(d)) for d in t.shape)}]"


def format_attr_value(v: Any) -> str:
    """An attribute value: int, float (repr), bool (true/false), string (JSON), list."""
    # bool before int: bool is a subclass of int.
    if isinstance(v, (bool, np.bool_)):
        return "true" if v else "false"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return format_float(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple, np.ndarray)):
        return "[" + ", ".join(format_attr_value(x) for x in v) + "]"
    # Not an attribute kind the registry knows; print something readable (the
    # parser will reject it, which is what we want for a malformed graph).
    return json.dumps(str(v))


@cache
def _default_texts(opname: str) -> dict[str, str]:
    """Printed form of each optional attribute's normalized default, per op.

    Comparing printed forms (not values) makes the "is it the default?" test
    immune to list-vs-tuple and int-vs-float differences in hand-made attrs.
    """
    opdef = OPS[opname]
    out: dict[str, str] = {}
    for name, spec in opdef.attrs.items():
        if spec.default is REQUIRED:
            continue
        # A one-attribute view of the op lets normalize_attrs coerce just this default.
        one = dataclasses.replace(opdef, attrs={name: spec})
        out[name] = format_attr_value(normalize_attrs(one, {})[name])
    return out


def format_attrs(op: Op) -> str:
    """` {pad = [2, 2, 2, 2], act = "relu"}` or "" when every attribute is the default."""
    if op.opname in OPS:
        defaults = _default_texts(op.opname)
        order = [n for n in OPS[op.opname].attrs if n in op.attrs]
        order += [n for n in op.attrs if n not in OPS[op.opname].attrs]
    else:
        defaults = {}
        order = list(op.attrs)
    parts = []
    for name in order:
        text = format_attr_value(op.attrs[name])
        if defaults.get(name) != text:
            parts.append(f"{name} = {text}")
    return " {" + ", ".join(parts) + "}" if parts else ""


def format_inline(data: np.ndarray, t: TensorType) -> str:
    """A small constant as a flat C-order list, in the dtype the parser will rebuild."""
    arr = np.asarray(data).astype(numpy_dtype(t), copy=False).ravel(order="C")
    # tolist() turns float32 into the exactly equal Python float, whose repr
    # reads back to the same float32.
    if arr.dtype.kind == "f":
        items = [format_float(x) for x in arr.tolist()]
    else:
        items = [str(int(x)) for x in arr.tolist()]
    return "[" + ", ".join(items) + "]"


_CANONICAL_NAN = np.array(np.nan, np.float32).view(np.uint32)


def is_inline(c: Value) -> bool:
    """Small constants print inline, unless the text could not reproduce their bits.

    The only such case is a float32 NaN with a sign bit or payload (`nan` reads
    back as the canonical NaN): those go to the sidecar so data stays bit-exact.
    """
    if c.data is None:
        return False
    arr = np.asarray(c.data)
    if arr.size > INLINE_LIMIT:
        return False
    if numpy_dtype(c.type) == np.float32:
        f = arr.astype(np.float32, copy=False)
        nans = f[np.isnan(f)]
        return bool(np.all(nans.view(np.uint32) == _CANONICAL_NAN))
    return True


# --------------------------------------------------------------------------
# Graphs
# --------------------------------------------------------------------------


def compute_digests(values: Iterable[Value]) -> None:
    """Fill the digest cache of constants, hashing big ones in parallel.

    Hashing the weights is nearly all the cost of printing or parsing a real
    network; hashlib releases the GIL on large buffers, so threads scale.
    """
    vals = sorted((v for v in values if v.data is not None), key=lambda v: -np.asarray(v.data).nbytes)
    total = sum(np.asarray(v.data).nbytes for v in vals)
    workers = min(8, os.cpu_count() or 1)
    if workers < 2 or len(vals) < 2 or total < (1 << 20):
        for v in vals:
            v.digest()
        return
    with ThreadPoolExecutor(max_workers=workers) as pool:
        # list(): surface any exception from a worker here.
        list(pool.map(lambda v: v.digest(), vals))


def print_graph(g: Graph, *, weights_file: str | None = None) -> str:
    """The .mir text of `g`; with `weights_file`, a `weights "FILE"` line comes first."""
    compute_digests(c for c in g.consts.values() if c.data is not None and not is_inline(c))
    refs: dict[Value, str] = {}
    for i, v in enumerate(g.inputs):
        refs[v] = format_name("%", v.name if v.name is not None else f"arg{i}")
    for name, c in g.consts.items():
        refs[c] = format_name("@", name)
    for i, op in enumerate(g.ops):
        refs[op.result] = f"%{i}"

    undefined: list[Value] = []

    def ref(v: Value) -> str:
        r = refs.get(v)
        if r is None:
            # A value the graph does not define (a broken graph being printed
            # for debugging): give it a stable placeholder the parser rejects.
            undefined.append(v)
            r = refs[v] = format_name("%", f"?undefined{len(undefined)}")
        return r

    lines: list[str] = []
    if weights_file is not None:
        lines.append(f"weights {json.dumps(weights_file)}")
    params = ", ".join(f"{ref(v)}: {format_type(v.type)}{format_range(v)}" for v in g.inputs)
    results = ", ".join(format_type(v.type) for v in g.outputs)
    lines.append(f"graph {format_name('@', g.name)}({params}) -> ({results}) {{")
    for name, c in g.consts.items():
        if c.data is None:
            init = 'dense<"">'  # broken graph: a constant without data
        elif is_inline(c):
            init = format_inline(c.data, c.type)
        else:
            init = f'dense<"{c.digest()}">'
        lines.append(f"  const {format_name('@', name)} : {format_type(c.type)} = {init}")
    for op in g.ops:
        args = ", ".join(ref(v) for v in op.operands)
        line = f"  {ref(op.result)} = {op.opname}({args}){format_attrs(op)} : {format_type(op.result.type)}"
        line += format_range(op.result)
        if op.layer is not None:
            line += f" layer({json.dumps(op.layer)})"
        if op.loc:
            line += f" loc({json.dumps(op.loc)})"
        lines.append(line)
    rets = ", ".join(ref(v) for v in g.outputs)
    lines.append(f"  return {rets}" if rets else "  return")
    lines.append("}")
    return "\n".join(lines) + "\n"


def format_range(v: Value) -> str:
    """` range(lo, hi)` for a calibrated activation, else ""."""
    if v.range is None:
        return ""
    return f" range({format_float(v.range[0])}, {format_float(v.range[1])})"


def dense_consts(g: Graph) -> dict[str, np.ndarray]:
    """The constants `print_graph` shows as `dense<...>`: what the sidecar .npz holds."""
    return {n: np.asarray(c.data) for n, c in g.consts.items() if c.data is not None and not is_inline(c)}


def write_npz(path: Path, arrays: Iterable[tuple[str, np.ndarray]]) -> None:
    """np.savez-compatible uncompressed archive.

    Written by hand because np.savez(**arrays) breaks on constants named
    `file` or `allow_pickle` (they collide with its keyword arguments).
    """
    with open(path, "wb") as raw:
        with zipfile.ZipFile(raw, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
            for name, arr in arrays:
                with zf.open(name + ".npy", "w", force_zip64=True) as f:
                    np.lib.format.write_array(f, np.asanyarray(arr), allow_pickle=False)
        raw.flush()
        os.fsync(raw.fileno())


def _temp_beside(path: Path) -> Path:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    return Path(tmp)


def save_mir(g: Graph, path: str | os.PathLike[str]) -> None:
    """Write `path` (.mir) and its sidecar `path.with_suffix(".npz")` atomically.

    Both files are written to temporaries in the same directory and then
    renamed, so a crash leaves either the old files or the new ones, never a
    truncated one. The sidecar is always written (possibly empty) so a .mir
    saved here always has its `weights` line and matching .npz.
    """
    path = Path(path)
    npz_path = path.with_suffix(".npz")
    text = print_graph(g, weights_file=npz_path.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_mir = _temp_beside(path)
    tmp_npz = _temp_beside(npz_path)
    try:
        write_npz(tmp_npz, dense_consts(g).items())
        with open(tmp_mir, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        # Weights first: a .mir never points at an older .npz than its own
        # (and if it does after a crash, the digests say so).
        os.replace(tmp_npz, npz_path)
        os.replace(tmp_mir, path)
    finally:
        for tmp in (tmp_mir, tmp_npz):
            if tmp.exists():
                tmp.unlink()
