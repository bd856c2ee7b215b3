"""An example user pass living outside micoc.

`strip-fused-relu{layer=NAME}` turns the fused relu of one conv2d/linear (or of
all of them when `layer` is empty) back into a separate relu op. It shows the
whole pass API: options as dataclass fields, `run` returning whether the
graph changed, the builder to make ops, and the verifier run by the manager.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from micoc.ir import Graph, make_op
from micoc.passes import Pass, PassContext


@dataclass(frozen=True)
class StripFusedRelu(Pass):
    name: ClassVar[str] = "strip-fused-relu"
    summary: ClassVar[str] = "example plugin: unfuse relu from conv2d/linear"

    layer: str = ""

    def run(self, graph: Graph, ctx: PassContext) -> bool:
        changed = False
        for op in list(graph.ops):
            if op.layer is None or op.attrs.get("act") != "relu":
                continue
            if self.layer and op.layer != self.layer:
                continue
            plain = make_op(op.opname, op.operands, {**op.attrs, "act": "none"}, loc=op.loc, layer=op.layer)
            relu = make_op("relu", [plain.result], loc=op.loc)
            i = graph.ops.index(op)
            graph.ops[i : i + 1] = [plain, relu]
            graph.replace_all_uses(op.result, relu.result)
            changed = True
        return changed
