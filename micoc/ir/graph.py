"""SSA values, ops and graphs.

A Graph holds its inputs, named constants (weights), and ops in topological
order; every op produces exactly one Value. Use lists are derived on demand
(`Graph.users`) rather than maintained, which keeps passes simple and the
structure impossible to get out of sync.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from micoc.ir.types import TensorType


class Value:
    """An SSA value: a graph input, a constant (`data` set) or an op result."""

    __slots__ = ("type", "name", "producer", "data", "range", "_digest")

    def __init__(
        self,
        type: TensorType,
        name: str | None = None,
        producer: Op | None = None,
        data: np.ndarray | None = None,
    ) -> None:
        self.type = type
        self.name = name
        self.producer = producer
        self.data = data
        # Calibrated (min, max) of an activation, set by the calibrate pass.
        self.range: tuple[float, float] | None = None
        self._digest: str | None = None

    @property
    def is_const(self) -> bool:
        return self.data is not None

    def digest(self) -> str:
        """A short content hash of a constant (dtype, shape and bytes)."""
        assert self.data is not None
        if self._digest is None:
            h = hashlib.sha256()
            arr = np.ascontiguousarray(self.data)
            h.update(f"{arr.dtype.str}{arr.shape}".encode())
            h.update(memoryview(arr).cast("B"))
            self._digest = h.hexdigest()[:16]
        return self._digest

    def __repr__(self) -> str:
        kind = "const" if self.is_const else ("result" if self.producer else "input")
        return f"<Value {kind} {self.name or ''}: {self.type}>"


@dataclass(eq=False)
class Op:
    """One operation. `layer` is the stable name of a quantizable layer (conv2d,
    linear, matmul) used by scheme files and reports; `loc` says where the op came
    from (ONNX node name, fx node) and is quoted in errors."""

    opname: str
    operands: list[Value]
    attrs: dict[str, Any]
    result: Value
    loc: str = ""
    layer: str | None = None

    def where(self) -> str:
        label = self.layer or self.loc or ""
        return f"{self.opname} '{label}'" if label else self.opname

    def __repr__(self) -> str:
        return f"<Op {self.opname} {self.layer or self.loc}>"


@dataclass(eq=False)
class Graph:
    name: str
    inputs: list[Value] = field(default_factory=list)
    outputs: list[Value] = field(default_factory=list)
    consts: dict[str, Value] = field(default_factory=dict)
    ops: list[Op] = field(default_factory=list)

    # -- queries -------------------------------------------------------------
    def users(self) -> dict[Value, list[Op]]:
        """Map each value to the ops that read it (in graph order)."""
        uses: dict[Value, list[Op]] = {}
        for op in self.ops:
            for v in op.operands:
                uses.setdefault(v, []).append(op)
        return uses

    def layers(self) -> list[Op]:
        """Quantizable layers (ops with a stable layer name), in graph order."""
        return [op for op in self.ops if op.layer is not None]

    def layer(self, name: str) -> Op:
        for op in self.ops:
            if op.layer == name:
                return op
        raise KeyError(name)

    def walk(self) -> Iterator[Op]:
        yield from list(self.ops)

    # -- mutation --------------------------------------------------------------
    def add_const(self, name: str, data: np.ndarray, type: TensorType | None = None) -> Value:
        """Add a constant under a unique name derived from `name`."""
        unique = self.unique_const_name(name)
        if type is None:
            type = TensorType(tuple(int(d) for d in data.shape), _elem_of(data))
        v = Value(type, unique, None, data)
        self.consts[unique] = v
        return v

    def unique_const_name(self, name: str) -> str:
        if name not in self.consts:
            return name
        i = 1
        while f"{name}_{i}" in self.consts:
            i += 1
        return f"{name}_{i}"

    def replace_all_uses(self, old: Value, new: Value) -> None:
        for op in self.ops:
            op.operands = [new if v is old else v for v in op.operands]
        self.outputs = [new if v is old else v for v in self.outputs]

    def remove_dead(self) -> bool:
        """Drop ops whose results nobody reads and constants nobody uses."""
        live: set[Value] = set(self.outputs)
        kept: list[Op] = []
        for op in reversed(self.ops):
            if op.result in live:
                kept.append(op)
                live.update(op.operands)
        changed = len(kept) != len(self.ops)
        self.ops = kept[::-1]
        dead_consts = [n for n, c in self.consts.items() if c not in live]
        for n in dead_consts:
            del self.consts[n]
        return changed or bool(dead_consts)

    def clone(self) -> Graph:
        """A structural copy; constant arrays are shared (passes replace, never mutate them)."""
        vmap: dict[Value, Value] = {}

        def cp(v: Value) -> Value:
            if v not in vmap:
                nv = Value(v.type, v.name, None, v.data)
                nv.range = v.range
                nv._digest = v._digest
                vmap[v] = nv
            return vmap[v]

        g = Graph(self.name)
        g.inputs = [cp(v) for v in self.inputs]
        g.consts = {n: cp(c) for n, c in self.consts.items()}
        for op in self.ops:
            new = Op(op.opname, [cp(v) for v in op.operands], dict(op.attrs), cp(op.result), op.loc, op.layer)
            new.result.producer = new
            g.ops.append(new)
        g.outputs = [cp(v) for v in self.outputs]
        return g

    def __str__(self) -> str:
        from micoc.ir.printer import print_graph

        return print_graph(self)


def _elem_of(data: np.ndarray) -> str:
    if data.dtype == np.float32:
        return "f32"
    if data.dtype == np.int64:
        return "i64"
    if data.dtype == np.int32:
        return "i32"
    raise TypeError(f"constants must be float32, int32 or int64 arrays, got {data.dtype}")
