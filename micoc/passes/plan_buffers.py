"""plan-buffers: place every activation at a static offset in ONE arena.

A microcontroller has no heap to spare, so the emitter allocates a single
byte array (the arena) for all activations and needs, for each value, an
offset such that values alive at the same time never share bytes.

Steps:

1. Liveness (`micoc.analysis.liveness`): each activation's live interval in
   op indices (inputs from -1, outputs to ``len(ops)``).
2. Storage sharing. Values join a *buffer* (a set of values at one offset):
   - ``reshape`` is a pure alias (a view): its result IS its operand's
     bytes (zero extra bytes, same offset), whatever the operand's
     lifetime. A target whose layout makes some reshape a data movement
     (e.g. flattening channel-packed pixels) says which ops are views with
     `is_view(op)`, which may also accept a transpose or slice that moves
     nothing in its layout;
   - element-wise ops may overwrite an operand in place: unary ``relu``,
     ``clip``, ``sigmoid``, ``requantize``, ``lut`` (operand 0) and binary
     ``add``, ``sub``, ``mul``, ``div`` (either operand), when the operand
     has the result's shape and storage width (so element k sits in the
     same bits in both) and the operand's whole buffer dies at this op
     (nobody, aliases included, reads it later, and it is not an output).
   A buffer's lifetime is the union of its members' intervals; its size the
   largest member's (rounded up to `alignment`).
3. Offsets. Three classic heuristics for this NP-hard packing problem
   (Pisarchyk & Lee, "Efficient Memory Management for Deep Neural Net
   Inference", 2020; TFLite's greedy planner):
   - ``greedy-by-size``: buffers by size, largest first, each at the lowest
     offset not overlapping any already-placed buffer whose lifetime
     intersects its own;
   - ``best-fit``: same order, but each goes into the *smallest* gap that
     fits (keeps large gaps for large buffers), else on top;
   - ``greedy-by-breadth`` (same paper): op indices by the bytes live there,
     largest first, placing each one's unplaced buffers largest first (first
     fit); it packs the busiest moment first.
   ``auto`` (the default) runs all three and keeps the smallest arena (ties:
   the first listed). All three reach the lower bound on every example
   network; on random DAGs none dominates and the best of the three is
   within 3% of the bound on average (bench/arena.py).
4. Verification: every pair of values with intersecting lifetimes and
   intersecting bytes must be allowed by the rules of step 2; anything else
   is a planner bug and raises `BufferPlanError`.

The lower bound reported with the plan is the largest number of bytes that
must be live at once (buffer sizes summed per op index): no placement of
these buffers can use fewer. Per-op scratch (im2col rows, accumulators) is
reported apart; it is not part of the arena because the target decides
whether it lives in the arena, on the stack or in a separate static buffer.

The plan is kept out of the IR (the text form does not change): the pass
stores the `BufferPlan` in ``ctx.data["buffer_plan"]`` and a JSON-able dict
in the ``buffer_plan`` attribute of the graph object; emitters call
`plan_buffers(graph, size_of=..., is_view=...)` directly with their own
layout's sizes and views (the C backend: `micoc.targets.c.emitter.arena_plan`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from micoc.analysis.liveness import INPUT_START, LiveInterval, live_intervals
from micoc.errors import UsageError
from micoc.ir.graph import Graph, Op, Value
from micoc.ir.types import TensorType
from micoc.numerics import container_bits
from micoc.passes.manager import Pass, PassContext, register_pass

SizeFn = Callable[[Value], int]
ScratchFn = Callable[[Op], int]

STRATEGIES = ("greedy-by-size", "best-fit", "greedy-by-breadth")

# Ops whose result may take the bytes of an operand (step 2 of the module doc).
# View ops move no data when the target's layout of result and operand agree;
# by default only reshape is taken to be a view (`is_view` overrides).
VIEW_OPS = frozenset({"reshape", "transpose", "slice"})
INPLACE_UNARY = frozenset({"relu", "clip", "sigmoid", "requantize", "lut"})
INPLACE_BINARY = frozenset({"add", "sub", "mul", "div"})


class BufferPlanError(RuntimeError):
    """The planner produced an invalid plan: a bug, never a user error."""


# ---------------------------------------------------------------------------
# sizes
# ---------------------------------------------------------------------------


def storage_bits(t: TensorType) -> int:
    """Bits one element occupies in memory: the container width of a packed
    quantized type (1, 2, 4, 8), else 32 (f32, i32) or 64 (i64)."""
    return container_bits(t.bits) if t.is_quantized else t.bits


def packed_activation_bytes(t: TensorType) -> int:
    """Default arena bytes of an activation of type `t` (docs/semantics.md §12).

    Quantized values are packed at their container width, each packed row
    padded with zero bits to a whole 32-bit word:

    - rank 4 (NCHW) is stored channel-packed per pixel: N*H*W rows of
      ceil(C * c / 32) words, so a conv kernel reads one pixel's channels as
      whole words;
    - any other rank: the last dimension is the packed row, prod(other dims)
      rows of ceil(K * c / 32) words (rank 2 [N, K]: N rows of K);
    - f32 and i32 take 4 bytes an element, i64 8 (no packing).

    Emitters with another layout pass their own `size_of` to `plan_buffers`.
    """
    if not t.is_quantized:
        return t.numel * t.bits // 8
    c = container_bits(t.bits)
    if t.rank == 4:
        n, ch, h, w = t.shape
        rows, k = n * h * w, ch
    elif t.rank == 0:
        rows, k = 1, 1
    else:
        rows, k = t.numel // t.shape[-1] if t.shape[-1] else 0, t.shape[-1]
    return rows * (-(-k * c // 32)) * 4


def default_size_of(v: Value) -> int:
    return packed_activation_bytes(v.type)


def _no_scratch(op: Op) -> int:
    return 0


def _reshape_is_view(op: Op) -> bool:
    return op.opname == "reshape"


# ---------------------------------------------------------------------------
# the plan
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Buffer:
    """Values sharing one arena region: a defining value, then the values that
    alias it (reshape) or overwrite it in place, in definition order."""

    offset: int
    size: int  # bytes reserved: the largest member, rounded up to the alignment
    start: int  # union of the members' live intervals
    end: int
    values: tuple[Value, ...]


@dataclass(frozen=True)
class BufferPlan:
    """Where every activation lives in the arena.

    - `offsets[v]`: byte offset of value `v` (every activation has one);
    - `sizes[v]`: bytes `v` itself occupies (`size_of(v)`);
    - `intervals[v]`: its live interval (op indices, see analysis.liveness);
    - `alias_of[v]`: the operand whose bytes `v` took (a view, or an in-place
      op); absent for values that start a buffer; `views`: the values in
      `alias_of` that are views (their op moves no data; emit nothing);
    - `buffers`: the regions actually placed; `buffer_of[v]` indexes them;
    - `arena_bytes`: the arena's size; `lower_bound`: the most bytes live at
      any op (no placement of these buffers does better); `total_bytes`:
      every activation's size summed (what no reuse would cost);
    - `scratch[i]`: scratch bytes op i needs besides the arena
      (`scratch_bytes` is the most any op needs);
    - `strategy`: the heuristic whose placement this is; `candidates`: the
      arena each heuristic tried reached.
    """

    values: tuple[Value, ...]
    intervals: dict[Value, LiveInterval]
    sizes: dict[Value, int]
    offsets: dict[Value, int]
    alias_of: dict[Value, Value]
    views: frozenset[Value]
    buffers: tuple[Buffer, ...]
    buffer_of: dict[Value, int]
    arena_bytes: int
    lower_bound: int
    total_bytes: int
    scratch: tuple[int, ...]
    alignment: int
    strategy: str
    candidates: dict[str, int]
    signature: tuple[Any, ...] = field(repr=False, compare=False, default=())

    @property
    def scratch_bytes(self) -> int:
        return max(self.scratch, default=0)

    @property
    def ratio(self) -> float:
        """arena / lower bound (1.0 is optimal)."""
        return self.arena_bytes / self.lower_bound if self.lower_bound else 1.0

    def in_place(self, v: Value) -> bool:
        """Whether `v`'s producer writes it over one of its operands (`alias_of[v]`):
        the emitter passes the same address as input and output."""
        return v in self.alias_of and v not in self.views

    def is_current(self, graph: Graph) -> bool:
        """Whether `graph` still has the structure this plan was made for
        (a pass run since may have replaced or rewired ops)."""
        return self.signature == _signature(graph)

    def to_dict(self, graph: Graph) -> dict[str, Any]:
        """A JSON-able summary, values named as in the printed IR (`%x`, `%3`)."""
        names = value_names(graph)
        return {
            "arena_bytes": self.arena_bytes,
            "lower_bound": self.lower_bound,
            "total_bytes": self.total_bytes,
            "scratch_bytes": self.scratch_bytes,
            "scratch": list(self.scratch),
            "alignment": self.alignment,
            "strategy": self.strategy,
            "candidates": dict(self.candidates),
            "values": {
                names[v]: {
                    "offset": self.offsets[v],
                    "size": self.sizes[v],
                    "start": self.intervals[v].start,
                    "end": self.intervals[v].end,
                    "alias_of": names[self.alias_of[v]] if v in self.alias_of else None,
                    "view": v in self.views,
                }
                for v in self.values
            },
        }


def value_names(graph: Graph) -> dict[Value, str]:
    """How the printer refers to each activation: inputs by name, results `%<op index>`."""
    from micoc.ir.printer import format_name

    names = {v: format_name("%", v.name if v.name is not None else f"arg{i}") for i, v in enumerate(graph.inputs)}
    names.update({op.result: f"%{i}" for i, op in enumerate(graph.ops)})
    return names


def _signature(graph: Graph) -> tuple[Any, ...]:
    return (
        tuple(graph.inputs),
        tuple(graph.outputs),
        tuple((op, op.result, tuple(op.operands)) for op in graph.ops),
    )


# ---------------------------------------------------------------------------
# planning
# ---------------------------------------------------------------------------


@dataclass
class _Group:
    values: list[Value]
    start: int
    end: int
    size: int


def inplace_operand(op: Op, groups_end: Callable[[Value], int], index: int) -> Value | None:
    """The operand `op` (at op index `index`) may overwrite in place, if any.

    `groups_end(x)` is the last op index at which x's bytes are still needed
    (x's own interval joined with those of its aliases)."""
    if op.opname in INPLACE_UNARY:
        candidates = op.operands[:1]
    elif op.opname in INPLACE_BINARY:
        candidates = op.operands[:2]
    else:
        return None
    r = op.result.type
    for x in candidates:
        if x.is_const or x.type.shape != r.shape or storage_bits(x.type) != storage_bits(r):
            continue
        if groups_end(x) == index:
            return x
    return None


def plan_buffers(
    graph: Graph,
    size_of: SizeFn | None = None,
    scratch_of: ScratchFn | None = None,
    *,
    alignment: int = 4,
    strategy: str = "auto",
    inplace: bool = True,
    is_view: Callable[[Op], bool] | None = None,
) -> BufferPlan:
    """Plan the activation arena of `graph` (float or quantized).

    `size_of(value)` gives a value's bytes in the target's layout (default
    `packed_activation_bytes` of its type); `scratch_of(op)` an op's scratch
    bytes (default 0); `strategy` is ``auto`` (best of all) or one of
    `STRATEGIES`; `inplace=False` turns off in-place element-wise ops
    (views stay aliases: they move no data); `is_view(op)`, asked for every
    reshape, transpose and slice, says whether the op moves no data in the
    target's layout (default: reshapes only). Raises `BufferPlanError` if
    the plan it makes is invalid (a bug).
    """
    if strategy != "auto" and strategy not in STRATEGIES:
        raise UsageError(f"plan-buffers: strategy must be auto, {', '.join(STRATEGIES)}; got '{strategy}'")
    if alignment < 1 or alignment & (alignment - 1):
        raise UsageError(f"plan-buffers: alignment must be a power of two >= 1, got {alignment}")
    size_fn = size_of or default_size_of
    scratch_fn = scratch_of or _no_scratch
    view_fn = is_view or _reshape_is_view

    ivs = live_intervals(graph)
    values = tuple(ivs)
    sizes: dict[Value, int] = {}
    for v in values:
        s = int(size_fn(v))
        if s < 0:
            raise UsageError(f"plan-buffers: size_of gave {s} bytes for {v!r}")
        sizes[v] = s

    def aligned(n: int) -> int:
        return -(-n // alignment) * alignment

    # Step 2: group values that share bytes, walking ops in order so that a
    # buffer's lifetime is final by the time an op asks whether it ends here.
    group_of: dict[Value, _Group] = {}
    alias_of: dict[Value, Value] = {}
    views: set[Value] = set()
    groups: list[_Group] = []

    def new_group(v: Value) -> None:
        g = _Group([v], ivs[v].start, ivs[v].end, aligned(sizes[v]))
        groups.append(g)
        group_of[v] = g

    def join(v: Value, x: Value) -> None:
        g = group_of[x]
        g.values.append(v)
        g.end = max(g.end, ivs[v].end)
        g.size = max(g.size, aligned(sizes[v]))
        group_of[v] = g
        alias_of[v] = x

    for v in graph.inputs:
        if v in ivs and v not in group_of:
            new_group(v)
    for i, op in enumerate(graph.ops):
        r = op.result
        src: Value | None = None
        if op.opname in VIEW_OPS and op.operands[0] in group_of and view_fn(op):
            src = op.operands[0]
            views.add(r)
        elif inplace:
            src = inplace_operand(op, lambda x: group_of[x].end if x in group_of else -2, i)
        if src is not None:
            join(r, src)
        else:
            new_group(r)

    n = len(graph.ops)
    lower = _max_live(groups, n)
    placements: dict[str, list[int]] = {}
    for name in STRATEGIES if strategy == "auto" else (strategy,):
        order = _by_breadth(groups, n) if name == "greedy-by-breadth" else _by_size(groups)
        placements[name] = _place(groups, order, best_fit=name == "best-fit")
    candidates = {name: _arena(groups, offs) for name, offs in placements.items()}
    chosen = min(candidates, key=lambda k: (candidates[k], STRATEGIES.index(k)))
    offsets_g = placements[chosen]

    buffers = tuple(
        Buffer(off, g.size, g.start, g.end, tuple(g.values)) for g, off in zip(groups, offsets_g, strict=True)
    )
    buffer_of = {v: k for k, g in enumerate(groups) for v in g.values}
    plan = BufferPlan(
        values=values,
        intervals=ivs,
        sizes=sizes,
        offsets={v: buffers[buffer_of[v]].offset for v in values},
        alias_of=alias_of,
        views=frozenset(views),
        buffers=buffers,
        buffer_of=buffer_of,
        arena_bytes=candidates[chosen],
        lower_bound=lower,
        total_bytes=sum(sizes.values()),
        scratch=tuple(int(scratch_fn(op)) for op in graph.ops),
        alignment=alignment,
        strategy=chosen,
        candidates=candidates,
        signature=_signature(graph),
    )
    check_plan(graph, plan)
    return plan


def _max_live(groups: Iterable[_Group], n: int) -> int:
    """The most buffer bytes live at any op index in [-1, n] (a sweep over
    interval endpoints: +size at start, -size after end)."""
    delta: dict[int, int] = {}
    for g in groups:
        delta[g.start] = delta.get(g.start, 0) + g.size
        delta[g.end + 1] = delta.get(g.end + 1, 0) - g.size
    live = best = 0
    for t in sorted(delta):
        live += delta[t]
        best = max(best, live)
    return best


def _arena(groups: list[_Group], offsets: list[int]) -> int:
    return max((off + g.size for g, off in zip(groups, offsets, strict=True)), default=0)


def _by_size(groups: list[_Group]) -> list[int]:
    """Largest first; ties: longer-lived first (they constrain more), then
    program order, which keeps the result deterministic."""
    return sorted(
        range(len(groups)),
        key=lambda k: (-groups[k].size, -(groups[k].end - groups[k].start), groups[k].start, k),
    )


def _by_breadth(groups: list[_Group], n: int) -> list[int]:
    """Pisarchyk & Lee's greedy-by-breadth order: op indices by the bytes
    live there (largest first), and at each the buffers live there, largest
    first, that are not placed yet."""
    live: list[list[int]] = [[] for _ in range(n + 2)]  # op index -1 .. n
    for k, g in enumerate(groups):
        for t in range(g.start, g.end + 1):
            live[t + 1].append(k)
    size_order = {k: r for r, k in enumerate(_by_size(groups))}
    seen: set[int] = set()
    order: list[int] = []
    for t in sorted(range(len(live)), key=lambda t: (-sum(groups[k].size for k in live[t]), t)):
        for k in sorted(live[t], key=size_order.__getitem__):
            if k not in seen:
                seen.add(k)
                order.append(k)
    return order


def _place(groups: list[_Group], order: list[int], *, best_fit: bool) -> list[int]:
    """Offsets for `groups`, placed in `order`; each goes into the lowest
    (first fit) or the tightest (best fit) gap left by the already-placed
    groups whose lifetimes intersect its own, else on top of them."""
    offsets = [0] * len(groups)
    placed: list[int] = []
    for k in order:
        g = groups[k]
        if g.size == 0:
            placed.append(k)
            continue
        busy = sorted(
            (offsets[j], offsets[j] + groups[j].size)
            for j in placed
            if groups[j].size and groups[j].start <= g.end and g.start <= groups[j].end
        )
        best: tuple[int, int] | None = None  # (gap size, offset)
        top = 0
        for lo, hi in busy:
            gap = lo - top
            if gap >= g.size:
                if not best_fit:
                    best = (gap, top)
                    break
                if best is None or gap < best[0]:
                    best = (gap, top)
            top = max(top, hi)
        offsets[k] = best[1] if best is not None else top
        placed.append(k)
    return offsets


# ---------------------------------------------------------------------------
# verification
# ---------------------------------------------------------------------------


def _view_root(v: Value, plan: BufferPlan) -> Value:
    """The value whose bytes `v` is, following views only."""
    while v in plan.views:
        v = plan.alias_of[v]
    return v


def may_share(a: Value, b: Value, plan: BufferPlan, graph: Graph) -> bool:
    """Whether values `a` and `b`, live at the same time, may occupy
    intersecting bytes: they are the same bytes (reshape aliases of one
    value, or views of one), or they meet at exactly one op that writes one of them in place
    over the other (an allowed element-wise op reading the other)."""
    al = plan.alias_of
    if _view_root(a, plan) is _view_root(b, plan):
        return True
    ia, ib = plan.intervals[a], plan.intervals[b]
    lo, hi = max(ia.start, ib.start), min(ia.end, ib.end)
    if lo != hi or lo == INPUT_START or lo >= len(graph.ops):
        return False
    op = graph.ops[lo]
    for new, old in ((a, b), (b, a)):
        if op.result is not new or new not in al or not plan.in_place(new):
            continue
        x = al[new]
        if (
            old in op.operands
            and _view_root(x, plan) is _view_root(old, plan)
            and x in op.operands
            and ((op.opname in INPLACE_UNARY and x is op.operands[0]) or op.opname in INPLACE_BINARY)
            and x.type.shape == new.type.shape
            and storage_bits(x.type) == storage_bits(new.type)
            and plan.offsets[x] == plan.offsets[new]
        ):
            return True
    return False


def check_plan(graph: Graph, plan: BufferPlan) -> None:
    """Raise `BufferPlanError` unless every pair of activations that is live
    at the same op either uses disjoint bytes or `may_share` them, every
    value fits its buffer, and offsets respect the alignment and the arena."""
    for v in plan.values:
        buf = plan.buffers[plan.buffer_of[v]]
        if plan.offsets[v] != buf.offset or plan.sizes[v] > buf.size:
            raise BufferPlanError(f"plan-buffers: {v!r} does not fit its buffer")
        if buf.offset % plan.alignment or buf.offset + buf.size > plan.arena_bytes:
            raise BufferPlanError(f"plan-buffers: buffer of {v!r} misaligned or outside the arena")
    # Sweep in start order; only values starting before `a` ends can meet it.
    order = sorted(plan.values, key=lambda v: plan.intervals[v].start)
    for i, a in enumerate(order):
        ia, a0 = plan.intervals[a], plan.offsets[a]
        a1 = a0 + plan.sizes[a]
        for b in order[i + 1 :]:
            ib = plan.intervals[b]
            if ib.start > ia.end:
                break
            b0 = plan.offsets[b]
            if a0 < b0 + plan.sizes[b] and b0 < a1 and not may_share(a, b, plan, graph):
                raise BufferPlanError(
                    f"plan-buffers: {a!r} [{ia.start},{ia.end}] at {a0}+{plan.sizes[a]} and "
                    f"{b!r} [{ib.start},{ib.end}] at {b0}+{plan.sizes[b]} overlap"
                )


# ---------------------------------------------------------------------------
# the pass
# ---------------------------------------------------------------------------


@register_pass
@dataclass(frozen=True)
class PlanBuffers(Pass):
    """Plans the activation arena; does not change the IR.

    Sizes, scratch and views come from ``ctx.data["size_of"]``,
    ``ctx.data["scratch_of"]`` and ``ctx.data["is_view"]`` when a target put
    them there, else the packed defaults (reshapes are views). The result goes to
    ``ctx.data["buffer_plan"]`` (a `BufferPlan`) and ``graph.buffer_plan``
    (`BufferPlan.to_dict`, for reports; the printer ignores it).
    """

    name: ClassVar[str] = "plan-buffers"
    summary: ClassVar[str] = "assign static arena offsets to activations (liveness, in-place reuse)"

    alignment: int = 4
    strategy: str = "auto"
    inplace: bool = True

    def run(self, graph: Graph, ctx: PassContext) -> bool:
        plan = plan_buffers(
            graph,
            ctx.data.get("size_of"),
            ctx.data.get("scratch_of"),
            alignment=self.alignment,
            strategy=self.strategy,
            inplace=self.inplace,
            is_view=ctx.data.get("is_view"),
        )
        ctx.data["buffer_plan"] = plan
        # Not a dataclass field: the IR (and its text form) stays plan-free.
        object.__setattr__(graph, "buffer_plan", plan.to_dict(graph))
        return False
