"""Liveness of activation values: when each one must be held in memory.

Time is measured in op indices of the graph's topological order. A value's
live interval is the closed range ``[start, end]`` of op indices during
which it must be intact:

- ``start`` is the index of the op that defines it; graph inputs are
  defined before the first op, at ``INPUT_START = -1``;
- ``end`` is the index of the last op that reads it; graph outputs must
  survive every op, so their ``end`` is ``len(graph.ops)`` (one past the
  last op: the "return"). That keeps an output from ever looking dead at
  its last reader, which would let a planner overwrite it in place;
- a value nobody reads (dead code) lives only at its own definition.

Two values whose intervals intersect are both needed at some op (a result
is being written while its operands are read, so an op's operands and its
result are live together), and so need disjoint memory unless the op may
run in place. Constants are not activations: they live in read-only memory
and never appear here.

Pure functions over the IR; nothing here knows about targets or sizes.
"""

from __future__ import annotations

from dataclasses import dataclass

from micoc.ir.graph import Graph, Value

INPUT_START = -1


@dataclass(frozen=True)
class LiveInterval:
    """The closed op-index range ``[start, end]`` during which `value` is live."""

    value: Value
    start: int
    end: int

    def overlaps(self, other: LiveInterval) -> bool:
        return self.start <= other.end and other.start <= self.end

    def __contains__(self, index: int) -> bool:
        return self.start <= index <= self.end


def activation_values(graph: Graph) -> list[Value]:
    """Graph inputs then op results, in definition order (constants excluded)."""
    seen: set[Value] = set()
    out: list[Value] = []
    for v in [*graph.inputs, *(op.result for op in graph.ops)]:
        if v not in seen and not v.is_const:
            seen.add(v)
            out.append(v)
    return out


def live_intervals(graph: Graph) -> dict[Value, LiveInterval]:
    """The live interval of every activation value, in definition order."""
    n = len(graph.ops)
    start: dict[Value, int] = {}
    for v in graph.inputs:
        if not v.is_const:
            start.setdefault(v, INPUT_START)
    for i, op in enumerate(graph.ops):
        start[op.result] = i
    end = dict(start)  # unread values die where they are born
    for i, op in enumerate(graph.ops):
        for v in op.operands:
            if v in start:  # constants (and anything not defined here) are not activations
                end[v] = max(end[v], i)
    for v in graph.outputs:
        if v in start:
            end[v] = n
    return {v: LiveInterval(v, start[v], end[v]) for v in activation_values(graph)}


def live_at(graph: Graph, intervals: dict[Value, LiveInterval] | None = None) -> list[list[Value]]:
    """Per op index, the activation values live while that op runs: its
    activation operands, its result, and everything defined earlier that a
    later op (or the caller, for outputs) still reads. In definition order."""
    ivs = live_intervals(graph) if intervals is None else intervals
    n = len(graph.ops)
    live: list[list[Value]] = [[] for _ in range(n)]
    for iv in ivs.values():
        for i in range(max(iv.start, 0), min(iv.end, n - 1) + 1):
            live[i].append(iv.value)
    return live


def live_across(graph: Graph, intervals: dict[Value, LiveInterval] | None = None) -> list[list[Value]]:
    """Per op index, the values live across the op without taking part in it:
    defined before it and still needed after it, but neither read nor written
    by it (e.g. the skip branch of a residual block while the main branch
    runs). `live_at` minus the op's own operands and result."""
    ivs = live_intervals(graph) if intervals is None else intervals
    out: list[list[Value]] = []
    for i, (op, live) in enumerate(zip(graph.ops, live_at(graph, ivs), strict=True)):
        own = {op.result, *op.operands}
        out.append([v for v in live if v not in own and ivs[v].start < i < ivs[v].end])
    return out
