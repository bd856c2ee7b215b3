"""shape-infer: recompute every result shape from the operands.

Useful after editing a .mir by hand (e.g. a new input shape): each op's
result keeps its element type and quant params and takes the inferred shape.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from micoc.errors import VerificationError
from micoc.ir.graph import Graph
from micoc.ir.ops import get_op
from micoc.passes.manager import Pass, PassContext, register_pass


@register_pass
@dataclass(frozen=True)
class ShapeInfer(Pass):
    name: ClassVar[str] = "shape-infer"
    summary: ClassVar[str] = "recompute result shapes from operand shapes"

    def run(self, graph: Graph, ctx: PassContext) -> bool:
        changed = False
        for op in graph.ops:
            types = [v.type for v in op.operands]
            try:
                shape = get_op(op.opname).infer_shape(op.attrs, types)
            except VerificationError as e:
                raise VerificationError(e.message, op.where()) from None
            if shape != op.result.type.shape:
                op.result.type = op.result.type.with_shape(shape)
                changed = True
        return changed
