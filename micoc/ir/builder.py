"""GraphBuilder: the one way frontends and passes create ops.

It fills attribute defaults, infers the result type and names layers, so
every op it makes already passes the verifier.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from micoc.errors import VerificationError
from micoc.ir.graph import Graph, Op, Value
from micoc.ir.ops import get_op, normalize_attrs
from micoc.ir.types import TensorType


def make_op(
    opname: str,
    operands: list[Value],
    attrs: dict[str, Any] | None = None,
    *,
    loc: str = "",
    layer: str | None = None,
    result_type: TensorType | None = None,
) -> Op:
    """Create an op (not yet inserted) with normalized attrs and an inferred result type."""
    opdef = get_op(opname)
    try:
        if not opdef.arity_ok(len(operands)):
            raise VerificationError(f"{opname}: wrong number of operands ({len(operands)})")
        norm = normalize_attrs(opdef, attrs or {})
        types = [v.type for v in operands]
        errs = opdef.check(norm, types) if opdef.check else []
        if errs:
            raise VerificationError(f"{opname}: " + "; ".join(errs))
        shape = opdef.infer_shape(norm, types)
    except VerificationError as e:
        raise VerificationError(e.message, e.where or loc or None) from None
    if result_type is None:
        result_type = TensorType(shape, "f32")
    elif result_type.shape != shape:
        result_type = result_type.with_shape(shape)
    result = Value(result_type)
    op = Op(opname, list(operands), norm, result, loc, layer)
    result.producer = op
    return op


class GraphBuilder:
    """Appends ops to a graph in order."""

    def __init__(self, graph: Graph | str) -> None:
        self.graph = graph if isinstance(graph, Graph) else Graph(graph)
        self._layer_counts: dict[str, int] = {}

    def input(self, name: str, type: TensorType) -> Value:
        v = Value(type, name)
        self.graph.inputs.append(v)
        return v

    def const(self, name: str, data: np.ndarray, type: TensorType | None = None) -> Value:
        return self.graph.add_const(name, data, type)

    def op(
        self,
        opname: str,
        operands: list[Value],
        attrs: dict[str, Any] | None = None,
        *,
        loc: str = "",
        layer: str | None = None,
        result_type: TensorType | None = None,
    ) -> Value:
        if layer is None and get_op(opname).is_layer:
            layer = self.fresh_layer_name(opname)
        op = make_op(opname, operands, attrs, loc=loc, layer=layer, result_type=result_type)
        self.graph.ops.append(op)
        return op.result

    def fresh_layer_name(self, opname: str) -> str:
        """`<op>_<n>` in graph order, skipping names already taken."""
        taken = {op.layer for op in self.graph.ops}
        n = self._layer_counts.get(opname, 0)
        while f"{opname}_{n}" in taken:
            n += 1
        self._layer_counts[opname] = n + 1
        return f"{opname}_{n}"

    def output(self, *values: Value) -> None:
        self.graph.outputs.extend(values)
