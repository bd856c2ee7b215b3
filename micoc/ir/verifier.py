"""Structural and type checks on a Graph.

The verifier checks what every graph must satisfy, whatever the target:
known ops with well-formed attributes, SSA order, result types that agree
with shape inference, and element-type rules. What a target can do is
checked by that target's `check-support` pass, not here.
"""

from __future__ import annotations

from micoc.errors import VerificationError
from micoc.ir.graph import Graph, Op, Value
from micoc.ir.ops import get_op, normalize_attrs
from micoc.ir.types import TensorType


def verify(graph: Graph) -> None:
    """Raise VerificationError (naming the op) on the first broken rule."""
    defined: set[Value] = set(graph.inputs)
    for name, c in graph.consts.items():
        if c.data is None:
            raise VerificationError(f"constant @{name} has no data")
        if c.name != name:
            raise VerificationError(f"constant @{name} is registered under a different name ({c.name})")
        if tuple(c.data.shape) != c.type.shape:
            raise VerificationError(
                f"constant @{name}: data shape {list(c.data.shape)} != type shape {list(c.type.shape)}"
            )
        defined.add(c)
    layer_names: set[str] = set()
    for op in graph.ops:
        _verify_op(op, defined)
        if op.layer is not None:
            if op.layer in layer_names:
                raise VerificationError(f"layer name '{op.layer}' is used twice", op.where())
            layer_names.add(op.layer)
        if op.result in defined:
            raise VerificationError("result value defined twice", op.where())
        defined.add(op.result)
    if not graph.outputs:
        raise VerificationError(f"graph @{graph.name} has no outputs")
    for v in graph.outputs:
        if v not in defined:
            raise VerificationError(f"graph @{graph.name} returns a value that is not defined")


def _verify_op(op: Op, defined: set[Value]) -> None:
    where = op.where()
    try:
        opdef = get_op(op.opname)
        if not opdef.arity_ok(len(op.operands)):
            raise VerificationError(f"{op.opname}: wrong number of operands ({len(op.operands)})")
        for i, v in enumerate(op.operands):
            if v not in defined:
                raise VerificationError(f"operand #{i} is used before it is defined")
        if normalize_attrs(opdef, op.attrs) != op.attrs:
            raise VerificationError(f"{op.opname}: attributes are not normalized (use the builder)")
        types = [v.type for v in op.operands]
        errs = opdef.check(op.attrs, types) if opdef.check else []
        if errs:
            raise VerificationError(f"{op.opname}: " + "; ".join(errs))
        shape = opdef.infer_shape(op.attrs, types)
        if shape != op.result.type.shape:
            raise VerificationError(
                f"{op.opname}: result shape {list(op.result.type.shape)} != inferred {list(shape)}"
            )
        _check_elem(op, types)
        if op.result.producer is not op:
            raise VerificationError("result value does not point back at its op")
        if (op.layer is not None) and not opdef.is_layer:
            raise VerificationError(f"{op.opname} is not a quantizable layer but has a layer name")
    except VerificationError as e:
        raise VerificationError(e.message, e.where or where) from None


def _check_elem(op: Op, types: list[TensorType]) -> None:
    res = op.result.type
    if op.opname in ("quantize", "requantize", "lut"):
        if not res.is_quantized:
            raise VerificationError(f"{op.opname}: result must be quantized, got {res.elem}")
        return
    if op.opname == "dequantize":
        if res.elem != "f32":
            raise VerificationError(f"dequantize: result must be f32, got {res.elem}")
        return
    is_layer = get_op(op.opname).is_layer
    activations = types[:1] if is_layer else types
    if all(t.is_float for t in activations) and not res.is_float:
        raise VerificationError(f"{op.opname}: float inputs must give an f32 result, got {res.elem}")
    if is_layer:
        _check_layer_bits(op, types)


def _check_layer_bits(op: Op, types: list[TensorType]) -> None:
    """Bit widths in range; a quantized layer reads operands of its assigned widths
    and its accumulator cannot overflow."""
    wbits, abits = op.attrs["wbits"], op.attrs["abits"]
    for name, b in (("wbits", wbits), ("abits", abits)):
        if not 0 <= b <= 8:
            raise VerificationError(f"{op.opname}: {name}={b} is outside 1..8")
    x, w = types[0], types[1]
    if not x.is_quantized:
        return
    if abits and x.bits != abits:
        raise VerificationError(f"{op.opname}: abits={abits} but the input is {x.elem}")
    if wbits and w.bits != wbits:
        raise VerificationError(f"{op.opname}: wbits={wbits} but the weights are {w.elem}")
    if op.attrs["acc"] == "i32":
        bound = accumulator_bound(op, types)
        if bound >= 2**31:
            raise VerificationError(
                f"{op.opname}: the int32 accumulator can overflow (|acc| up to {bound}); use acc=\"i64\""
            )


def accumulator_bound(op: Op, types: list[TensorType]) -> int:
    """Largest |accumulator| a quantized conv2d/linear/matmul can reach (bias included)."""
    x, w = types[0], types[1]
    k = reduction_size(op, types)
    qx = max(abs(v) for v in x.qrange)
    qw = max(abs(v) for v in w.qrange)
    bound = k * qx * qw
    if len(op.operands) > 2 and op.operands[2].data is not None:
        bound += int(abs(op.operands[2].data.astype("int64")).max(initial=0))
    return bound


def reduction_size(op: Op, types: list[TensorType]) -> int:
    """K: the number of products summed per output (Cin/groups*kh*kw for conv2d)."""
    w = types[1]
    if op.opname == "conv2d":
        return w.shape[1] * w.shape[2] * w.shape[3]
    if op.opname == "linear":
        return w.shape[1]
    return w.shape[-2]
