"""The op registry: every op is declared once here.

An OpDef lists the op's operands, its attributes (kind + default), a shape
inference rule and optional extra checks. The builder, verifier, printer,
parser and interpreter all read this table, so adding an op is one
declaration plus an interpreter kernel.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from micoc.errors import VerificationError
from micoc.ir.types import TensorType

REQUIRED = object()
INF = float("inf")

# Attribute kinds and the Python types they accept.
ATTR_KINDS: dict[str, tuple[type, ...]] = {
    "int": (int,),
    "float": (float, int),
    "bool": (bool,),
    "str": (str,),
    "ints": (list, tuple),
    "floats": (list, tuple),
}


@dataclass(frozen=True)
class AttrSpec:
    kind: str
    default: Any = REQUIRED
    choices: tuple[str, ...] | None = None


ShapeFn = Callable[[dict[str, Any], list[TensorType]], tuple[int, ...]]
CheckFn = Callable[[dict[str, Any], list[TensorType]], list[str]]


@dataclass(frozen=True)
class OpDef:
    name: str
    operands: tuple[str, ...]  # names; a trailing '?' marks optional, '*' variadic
    attrs: dict[str, AttrSpec]
    infer_shape: ShapeFn
    check: CheckFn | None = None
    is_layer: bool = False  # quantizable (conv2d, linear, matmul): has a stable layer name
    doc: str = ""

    def arity_ok(self, n: int) -> bool:
        required = sum(1 for o in self.operands if not o.endswith(("?", "*")))
        variadic = any(o.endswith("*") for o in self.operands)
        return n >= required and (variadic or n <= len(self.operands))


OPS: dict[str, OpDef] = {}


def register_op(opdef: OpDef) -> OpDef:
    if opdef.name in OPS:
        raise ValueError(f"op {opdef.name} registered twice")
    OPS[opdef.name] = opdef
    return opdef


def get_op(name: str) -> OpDef:
    try:
        return OPS[name]
    except KeyError:
        raise VerificationError(f"unknown op '{name}'") from None


def normalize_attrs(opdef: OpDef, attrs: dict[str, Any]) -> dict[str, Any]:
    """Check attribute names/kinds, fill defaults, and canonicalize containers.

    Returns a new dict with every declared attribute present, in declaration
    order (which makes printing deterministic).
    """
    unknown = sorted(set(attrs) - set(opdef.attrs))
    if unknown:
        raise VerificationError(f"{opdef.name}: unknown attribute(s) {', '.join(unknown)}")
    out: dict[str, Any] = {}
    for name, spec in opdef.attrs.items():
        if name in attrs:
            val = attrs[name]
        elif spec.default is REQUIRED:
            raise VerificationError(f"{opdef.name}: missing attribute '{name}'")
        else:
            val = spec.default
        out[name] = _coerce(opdef.name, name, spec, val)
    return out


def _coerce(opname: str, name: str, spec: AttrSpec, val: Any) -> Any:
    ok = ATTR_KINDS[spec.kind]
    if isinstance(val, bool) and spec.kind in ("int", "float"):
        raise VerificationError(f"{opname}: attribute '{name}' must be {spec.kind}, got bool")
    if not isinstance(val, ok):
        raise VerificationError(f"{opname}: attribute '{name}' must be {spec.kind}, got {val!r}")
    if spec.kind == "float":
        return float(val)
    if spec.kind == "ints":
        if not all(isinstance(x, int) and not isinstance(x, bool) for x in val):
            raise VerificationError(f"{opname}: attribute '{name}' must be a list of ints, got {val!r}")
        return tuple(int(x) for x in val)
    if spec.kind == "floats":
        return tuple(float(x) for x in val)
    if spec.choices is not None and val not in spec.choices:
        raise VerificationError(
            f"{opname}: attribute '{name}' must be one of {', '.join(spec.choices)}, got {val!r}"
        )
    return val


# --------------------------------------------------------------------------
# Shape rules
# --------------------------------------------------------------------------


def _fail(msg: str) -> VerificationError:
    return VerificationError(msg)


def _need_rank(op: str, t: TensorType, rank: int, what: str = "input") -> None:
    if t.rank != rank:
        raise _fail(f"{op}: {what} must have rank {rank}, got {list(t.shape)}")


def broadcast_shapes(op: str, shapes: Sequence[tuple[int, ...]]) -> tuple[int, ...]:
    rank = max(len(s) for s in shapes)
    out = []
    for i in range(rank):
        dims = {s[len(s) - rank + i] for s in shapes if len(s) - rank + i >= 0} - {1}
        if len(dims) > 1:
            raise _fail(f"{op}: shapes {[list(s) for s in shapes]} do not broadcast")
        out.append(dims.pop() if dims else 1)
    return tuple(out)


def window_out(size: int, k: int, stride: int, pad0: int, pad1: int, dilation: int, ceil_mode: bool) -> int:
    """Output length of a sliding window (conv or pool), with ONNX/PyTorch ceil-mode rule."""
    span = size + pad0 + pad1 - dilation * (k - 1) - 1
    if span < 0:
        return 0
    if not ceil_mode:
        return span // stride + 1
    out = -(-span // stride) + 1
    # The last window must start inside the input or its left padding.
    if (out - 1) * stride >= size + pad0:
        out -= 1
    return out


ACT_CHOICES = ("none", "relu", "relu6", "clip")


def _bits_attrs() -> dict[str, AttrSpec]:
    """Per-layer bit widths (0 = not assigned yet) and the accumulator width.

    `wbits` are the weights' bits (for matmul: the second operand's), `abits`
    the bits of the layer's INPUT activations (DESIGN §6).
    """
    return {
        "wbits": AttrSpec("int", 0),
        "abits": AttrSpec("int", 0),
        "acc": AttrSpec("str", "i32", ("i32", "i64")),
    }


def _act_attrs() -> dict[str, AttrSpec]:
    return {
        "act": AttrSpec("str", "none", ACT_CHOICES),
        "clip_min": AttrSpec("float", -INF),
        "clip_max": AttrSpec("float", INF),
    }


def _conv_shape(a: dict[str, Any], t: list[TensorType]) -> tuple[int, ...]:
    x, w = t[0], t[1]
    _need_rank("conv2d", x, 4)
    _need_rank("conv2d", w, 4, "weight")
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    g = a["groups"]
    if g < 1 or c % g or o % g or cg * g != c:
        raise _fail(f"conv2d: {c} input channels, weight {list(w.shape)} and groups={g} disagree")
    if len(t) > 2 and t[2].shape != (o,):
        raise _fail(f"conv2d: bias shape {list(t[2].shape)} must be [{o}]")
    sh, sw = a["stride"]
    pt, pl, pb, pr = a["pad"]
    dh, dw = a["dilation"]
    oh = window_out(h, kh, sh, pt, pb, dh, False)
    ow = window_out(wd, kw, sw, pl, pr, dw, False)
    if oh <= 0 or ow <= 0:
        raise _fail(f"conv2d: kernel {kh}x{kw} does not fit input {h}x{wd} with the given padding")
    return (n, o, oh, ow)


_WINDOW_RULES = {  # attribute: (length, minimum, message)
    "kernel": (2, 1, "kernel must be 2 positive ints"),
    "stride": (2, 1, "stride must be 2 positive ints"),
    "pad": (4, 0, "pad must be 4 ints >= 0 [top, left, bottom, right]"),
    "dilation": (2, 1, "dilation must be 2 positive ints"),
}


def _window_check(*names: str) -> CheckFn:
    """Checks of the sliding-window attributes `names` (conv and pooling share them)."""

    def check(a: dict[str, Any], t: list[TensorType]) -> list[str]:
        return [msg for name in names for n, lo, msg in [_WINDOW_RULES[name]]
                if len(a[name]) != n or min(a[name]) < lo]

    return check


def _pool_shape(a: dict[str, Any], t: list[TensorType]) -> tuple[int, ...]:
    x = t[0]
    _need_rank("pool", x, 4)
    n, c, h, w = x.shape
    kh, kw = a["kernel"]
    sh, sw = a["stride"]
    pt, pl, pb, pr = a["pad"]
    dh, dw = a.get("dilation", (1, 1))
    oh = window_out(h, kh, sh, pt, pb, dh, a["ceil_mode"])
    ow = window_out(w, kw, sw, pl, pr, dw, a["ceil_mode"])
    if oh <= 0 or ow <= 0:
        raise _fail(f"pool: window {kh}x{kw} does not fit input {h}x{w}")
    return (n, c, oh, ow)


def _linear_shape(a: dict[str, Any], t: list[TensorType]) -> tuple[int, ...]:
    x, w = t[0], t[1]
    _need_rank("linear", w, 2, "weight")
    if x.rank < 1 or x.shape[-1] != w.shape[1]:
        raise _fail(f"linear: input {list(x.shape)} does not match weight [out, in] = {list(w.shape)}")
    if len(t) > 2 and t[2].shape != (w.shape[0],):
        raise _fail(f"linear: bias shape {list(t[2].shape)} must be [{w.shape[0]}]")
    return x.shape[:-1] + (w.shape[0],)


def _matmul_shape(a: dict[str, Any], t: list[TensorType]) -> tuple[int, ...]:
    x, y = t[0].shape, t[1].shape
    if len(x) < 2 or len(y) < 2:
        raise _fail(f"matmul: operands must have rank >= 2, got {list(x)} and {list(y)}")
    if x[-1] != y[-2]:
        raise _fail(f"matmul: inner dimensions differ: {list(x)} x {list(y)}")
    batch = broadcast_shapes("matmul", [x[:-2], y[:-2]])
    return batch + (x[-2], y[-1])


def _same_shape(a: dict[str, Any], t: list[TensorType]) -> tuple[int, ...]:
    return t[0].shape


def _broadcast(a: dict[str, Any], t: list[TensorType]) -> tuple[int, ...]:
    return broadcast_shapes("elementwise", [x.shape for x in t])


def _axis(op: str, axis: int, rank: int) -> int:
    if not -rank <= axis < rank:
        raise _fail(f"{op}: axis {axis} out of range for rank {rank}")
    return axis % rank


def _concat_shape(a: dict[str, Any], t: list[TensorType]) -> tuple[int, ...]:
    rank = t[0].rank
    ax = _axis("concat", a["axis"], rank)
    for x in t[1:]:
        if x.rank != rank or any(x.shape[i] != t[0].shape[i] for i in range(rank) if i != ax):
            raise _fail(f"concat: shapes {[list(x.shape) for x in t]} differ off axis {a['axis']}")
    return t[0].shape[:ax] + (sum(x.shape[ax] for x in t),) + t[0].shape[ax + 1 :]


def _gap_shape(a: dict[str, Any], t: list[TensorType]) -> tuple[int, ...]:
    _need_rank("global_avgpool", t[0], 4)
    return t[0].shape[:2] + (1, 1)


def _reshape_shape(a: dict[str, Any], t: list[TensorType]) -> tuple[int, ...]:
    shape = a["shape"]
    if any(d < 0 for d in shape) or math.prod(shape) != t[0].numel:
        raise _fail(f"reshape: cannot reshape {list(t[0].shape)} to {list(shape)}")
    return tuple(shape)


def _transpose_shape(a: dict[str, Any], t: list[TensorType]) -> tuple[int, ...]:
    perm = a["perm"]
    if sorted(perm) != list(range(t[0].rank)):
        raise _fail(f"transpose: perm {list(perm)} is not a permutation of rank {t[0].rank}")
    return tuple(t[0].shape[p] for p in perm)


def _slice_shape(a: dict[str, Any], t: list[TensorType]) -> tuple[int, ...]:
    shape = list(t[0].shape)
    starts, ends, axes, steps = a["starts"], a["ends"], a["axes"], a["steps"]
    if not len(starts) == len(ends) == len(axes) == len(steps):
        raise _fail("slice: starts, ends, axes and steps must have the same length")
    for s, e, ax, st in zip(starts, ends, axes, steps, strict=True):
        ax = _axis("slice", ax, len(shape))
        if st == 0:
            raise _fail("slice: step must not be 0")
        shape[ax] = len(range(*slice(s, e, st).indices(t[0].shape[ax])))
    return tuple(shape)


def _mean_shape(a: dict[str, Any], t: list[TensorType]) -> tuple[int, ...]:
    rank = t[0].rank
    axes = {_axis("mean", ax, rank) for ax in a["axes"]}
    if a["keepdims"]:
        return tuple(1 if i in axes else d for i, d in enumerate(t[0].shape))
    return tuple(d for i, d in enumerate(t[0].shape) if i not in axes)


def _softmax_shape(a: dict[str, Any], t: list[TensorType]) -> tuple[int, ...]:
    _axis("softmax", a["axis"], t[0].rank)
    return t[0].shape


def _bn_shape(a: dict[str, Any], t: list[TensorType]) -> tuple[int, ...]:
    x = t[0]
    if x.rank < 2:
        raise _fail(f"batch_norm: input must have rank >= 2, got {list(x.shape)}")
    for p in t[1:]:
        if p.shape != (x.shape[1],):
            raise _fail(f"batch_norm: parameter shape {list(p.shape)} must be [{x.shape[1]}]")
    return x.shape


def _quantize_check(a: dict[str, Any], t: list[TensorType]) -> list[str]:
    return [] if t[0].is_float else [f"quantize: input must be f32, got {t[0].elem}"]


def _dequantize_check(a: dict[str, Any], t: list[TensorType]) -> list[str]:
    return [] if t[0].is_quantized else [f"dequantize: input must be quantized, got {t[0].elem}"]


def _lut_check(a: dict[str, Any], t: list[TensorType]) -> list[str]:
    x, table = t
    if not x.is_quantized:
        return [f"lut: input must be quantized, got {x.elem}"]
    lo, hi = x.qrange
    n = hi - lo + 1  # indexed by q - lo (qi1 {-1,+1} leaves the middle entry unused)
    if table.shape != (n,) or table.elem != "i32":
        return [f"lut: table must be i32[{n}] for a {x.elem} input, got {table}"]
    return []


def _requantize_check(a: dict[str, Any], t: list[TensorType]) -> list[str]:
    return [] if t[0].is_quantized else [f"requantize: input must be quantized, got {t[0].elem}"]


# --------------------------------------------------------------------------
# The op set
# --------------------------------------------------------------------------

_WIN = {
    "stride": AttrSpec("ints", (1, 1)),
    "pad": AttrSpec("ints", (0, 0, 0, 0)),
    "dilation": AttrSpec("ints", (1, 1)),
}

register_op(OpDef(
    "conv2d", ("x", "w", "b?"),
    {**_WIN, "groups": AttrSpec("int", 1), **_act_attrs(), **_bits_attrs()},
    _conv_shape, _window_check("stride", "pad", "dilation"), is_layer=True,
    doc="2-D convolution, NCHW input, OIHW weight; pad is [top, left, bottom, right]; optional fused activation.",
))
register_op(OpDef(
    "linear", ("x", "w", "b?"), {**_act_attrs(), **_bits_attrs()}, _linear_shape, is_layer=True,
    doc="y = x @ w^T + b with weight [out, in]; optional fused activation.",
))
register_op(OpDef(
    "matmul", ("x", "y"), _bits_attrs(), _matmul_shape, is_layer=True,
    doc="Batched matrix product of two activations (numpy broadcasting on batch dims).",
))
for _name, _doc in (("add", "x + y"), ("sub", "x - y"), ("mul", "x * y"), ("div", "x / y")):
    register_op(OpDef(_name, ("x", "y"), {}, _broadcast, doc=f"Element-wise {_doc} with numpy broadcasting."))
register_op(OpDef("concat", ("xs*",), {"axis": AttrSpec("int")}, _concat_shape, doc="Concatenate along axis."))
register_op(OpDef(
    "maxpool", ("x",),
    {"kernel": AttrSpec("ints"), **_WIN, "ceil_mode": AttrSpec("bool", False)},
    _pool_shape, _window_check("kernel", "stride", "pad", "dilation"), doc="2-D max pooling (padding never wins the max).",
))
register_op(OpDef(
    "avgpool", ("x",),
    {"kernel": AttrSpec("ints"), "stride": _WIN["stride"], "pad": _WIN["pad"],
     "ceil_mode": AttrSpec("bool", False), "count_include_pad": AttrSpec("bool", False)},
    _pool_shape, _window_check("kernel", "stride", "pad"), doc="2-D average pooling.",
))
register_op(OpDef("global_avgpool", ("x",), {}, _gap_shape, doc="Mean over H and W, keeping them as 1x1."))
register_op(OpDef(
    "mean", ("x",), {"axes": AttrSpec("ints"), "keepdims": AttrSpec("bool", True)}, _mean_shape,
    doc="Mean over axes.",
))
register_op(OpDef("reshape", ("x",), {"shape": AttrSpec("ints")}, _reshape_shape, doc="Reshape to a static shape."))
register_op(OpDef("transpose", ("x",), {"perm": AttrSpec("ints")}, _transpose_shape, doc="Permute axes."))
register_op(OpDef(
    "slice", ("x",),
    {"starts": AttrSpec("ints"), "ends": AttrSpec("ints"), "axes": AttrSpec("ints"), "steps": AttrSpec("ints")},
    _slice_shape, doc="Static strided slice (Python slice semantics per axis).",
))
register_op(OpDef("relu", ("x",), {}, _same_shape, doc="max(x, 0)."))
register_op(OpDef(
    "clip", ("x",), {"min": AttrSpec("float", -INF), "max": AttrSpec("float", INF)}, _same_shape,
    doc="min(max(x, min), max); relu6 is clip{min=0, max=6}.",
))
register_op(OpDef("sigmoid", ("x",), {}, _same_shape, doc="1 / (1 + exp(-x))."))
register_op(OpDef("softmax", ("x",), {"axis": AttrSpec("int", -1)}, _softmax_shape, doc="Softmax along axis."))
register_op(OpDef(
    "batch_norm", ("x", "scale", "bias", "mean", "var"), {"epsilon": AttrSpec("float", 1e-5)}, _bn_shape,
    doc="Inference batch normalization over axis 1; canonicalize folds it away.",
))
register_op(OpDef(
    "quantize", ("x",), {}, _same_shape, _quantize_check,
    doc="f32 -> quantized type given by the result (round half away from zero, clamp).",
))
register_op(OpDef(
    "dequantize", ("x",), {}, _same_shape, _dequantize_check,
    doc="quantized -> f32: scale * (q - zero_point).",
))
register_op(OpDef(
    "lut", ("x", "table"), {}, _same_shape, _lut_check,
    doc="Element-wise table lookup on a quantized input: y = table[x - min(x's range)].",
))
register_op(OpDef(
    "requantize", ("x",), {}, _same_shape, _requantize_check,
    doc="Integer rescale to the result's quant params: round(q * M / 2^s) with one rounding step.",
))
