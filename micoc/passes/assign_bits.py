"""assign-bits: give every quantizable layer its (wbits, abits).

Sources, in order: the `scheme` option (a JSON file), the `bits` option
(`w4a8`, uniform), or a scheme placed in `ctx.data["scheme"]` by a driver
such as the search.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from micoc.errors import UsageError
from micoc.ir.graph import Graph
from micoc.passes.manager import Pass, PassContext, register_pass
from micoc.scheme import check_scheme, load_scheme, parse_bits, uniform


@register_pass
@dataclass(frozen=True)
class AssignBits(Pass):
    name: ClassVar[str] = "assign-bits"
    summary: ClassVar[str] = "set each layer's weight/activation bits from a scheme file or w<W>a<A>"

    scheme: Path | None = None
    bits: str = ""

    def run(self, graph: Graph, ctx: PassContext) -> bool:
        names = [op.layer for op in graph.layers() if op.layer is not None]
        if self.scheme is not None and self.bits:
            raise UsageError("assign-bits: give either scheme= or bits=, not both")
        if self.scheme is not None:
            scheme, where = load_scheme(self.scheme), str(self.scheme)
        elif self.bits:
            scheme, where = uniform(names, *parse_bits(self.bits)), "--bits"
        elif "scheme" in ctx.data:
            scheme, where = dict(ctx.data["scheme"]), "scheme"
        else:
            raise UsageError("assign-bits needs a scheme: scheme=FILE.json or bits=w<W>a<A>")
        check_scheme(scheme, names, where)
        changed = False
        for op in graph.layers():
            w, a = scheme[op.layer]  # type: ignore[index]
            if (op.attrs["wbits"], op.attrs["abits"]) != (w, a):
                op.attrs = {**op.attrs, "wbits": w, "abits": a}
                changed = True
        return changed
