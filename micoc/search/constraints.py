"""Hardware budgets: `bops=0.3`, `latency=0.5`, `weights=20KB`, `latency=1.5e6cyc`,
`arena=0.5`, `arena=12KB`.

A plain number is a fraction of the all-8-bit scheme's value; a number with a
unit is absolute. Every check is vectorized over candidate batches [n, L, 2]
(the genetic sampler prices ~1000 candidates per iteration, the repair step
many more), through `batch_features`, the targets' `predict_batch` and
`ArenaModel` (the C runtime's static activation RAM, see there).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from micoc.analysis import batch_features, layer_table
from micoc.errors import UsageError
from micoc.ir.graph import Graph
from micoc.search.space import SearchSpace

__all__ = ["METRICS", "ArenaModel", "Constraint", "ConstraintSet", "parse_constraint", "repair"]

METRICS = ("bops", "latency", "weights", "arena")

_UNITS: dict[str, dict[str, float]] = {
    "weights": {"b": 1, "kb": 1e3, "kib": 1024, "mb": 1e6, "mib": 1024**2},
    "arena": {"b": 1, "kb": 1e3, "kib": 1024, "mb": 1e6, "mib": 1024**2},
    # In each target's own latency unit (micoc.cost.model: cycles for vexii and
    # bitfusion, instructions for rv32, ns for host); _LATENCY_UNIT_KIND says which.
    "latency": {"cyc": 1, "cycles": 1, "kcyc": 1e3, "mcyc": 1e6, "gcyc": 1e9,
                "instr": 1, "kinstr": 1e3, "minstr": 1e6, "ginstr": 1e9,
                "ns": 1, "us": 1e3, "ms": 1e6, "s": 1e9},
    "bops": {"bops": 1, "kbops": 1e3, "mbops": 1e6, "gbops": 1e9},
}
_LATENCY_UNIT_KIND = {u: ("cycles" if "cyc" in u else "instructions" if "instr" in u else "ns")
                      for u in _UNITS["latency"]}  # unit -> the target unit it scales
_TARGET_LATENCY_UNIT = {"vexii": "cycles", "bitfusion": "cycles", "rv32": "instructions", "host": "ns"}
_SPEC = re.compile(r"^\s*([a-z_]+)\s*(<=|=)\s*([0-9.eE+-]+)\s*([a-zA-Z%]*)\s*$")


@dataclass(frozen=True)
class Constraint:
    """One budget as parsed: metric, and either a fraction of INT8 or an absolute limit."""

    metric: str
    value: float
    absolute: bool
    text: str


def parse_constraint(text: str) -> Constraint:
    m = _SPEC.match(text)
    if not m:
        raise UsageError(f"bad constraint '{text}': expected METRIC=VALUE, e.g. bops=0.3, latency=0.5, "
                         "weights=20KB, latency=1.5e6cyc, arena=12KB")
    metric, _, num, unit = m.groups()
    if metric not in METRICS:
        raise UsageError(f"bad constraint '{text}': unknown metric '{metric}' (expected one of "
                         f"{', '.join(METRICS)})")
    try:
        value = float(num)
    except ValueError:
        raise UsageError(f"bad constraint '{text}': '{num}' is not a number") from None
    if not np.isfinite(value) or value <= 0:
        raise UsageError(f"bad constraint '{text}': the budget must be a positive number")
    if unit == "%":
        return Constraint(metric, value / 100.0, False, text)
    if not unit:
        return Constraint(metric, value, False, text)
    units = _UNITS[metric]
    if unit.lower() not in units:
        raise UsageError(f"bad constraint '{text}': unknown unit '{unit}' for {metric} "
                         f"(expected one of {', '.join(units)}, or no unit for a fraction of INT8)")
    return Constraint(metric, value * units[unit.lower()], True, text)


@dataclass(frozen=True)
class ConstraintSet:
    """Constraints bound to a graph and target. The first one is primary: the
    genetic sampler aims at a band just under its budget; all must hold."""

    graph: Graph
    target: str
    space: SearchSpace
    constraints: tuple[Constraint, ...]
    config: str | None = None
    _models: dict[str, object] = field(default_factory=dict, repr=False, compare=False)
    _ref: dict[str, float] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.constraints:
            raise UsageError("give at least one constraint, e.g. --constraint bops=0.3")
        for c in self.constraints:
            self.values(c.metric, self.space.uniform(8)[None])  # fail early (e.g. latency on host)

    @property
    def primary(self) -> Constraint:
        return self.constraints[0]

    def values(self, metric: str, schemes: np.ndarray, exact: bool = False) -> np.ndarray:
        """Absolute metric values [n] of schemes [n, L, 2]. `exact`: the arena
        plan-buffers actually places (one plan per scheme, ~1 ms each) instead
        of its vectorized lower bound; the two differ only when the planner's
        heuristics miss the bound (never on LeNet-5, 5.5% of random ResNet-8
        schemes, by up to 24%)."""
        s = np.asarray(schemes)
        if metric == "bops":
            return batch_features(layer_table(self.graph), s)["BOPs"].sum(axis=1)
        if metric == "weights":
            return batch_features(layer_table(self.graph), s)["weight_bytes"].sum(axis=1)
        if metric == "latency":
            if self.target not in ("vexii", "bitfusion", "host", "rv32"):
                raise UsageError(f"a latency constraint needs a target with a cost model (vexii, "
                                 f"bitfusion, host, rv32), not '{self.target}'; use bops or weights")
            if "latency" not in self._models:
                from micoc.cost.model import RUNTIME_TARGETS, make_model
                from micoc.errors import InputError

                try:
                    self._models["latency"] = make_model(self.target, self.graph, self.config)
                except InputError as e:
                    if self.target not in RUNTIME_TARGETS:
                        raise
                    # host: machine-specific parameters from `micoc profile run`, absent until then
                    raise UsageError(f"a latency constraint needs a target with a cost model: {e.message}") from None
            return self._models["latency"].predict_batch(s)  # type: ignore[attr-defined]
        if metric == "arena":
            if "arena" not in self._models:
                self._models["arena"] = ArenaModel(self.graph, self.space.layers)
            model = self._models["arena"]
            if exact:
                return np.array([model.planned(x) for x in s], dtype=np.float64)  # type: ignore[attr-defined]
            return model.bytes(s)  # type: ignore[attr-defined]
        raise UsageError(f"unknown metric '{metric}'")

    def reference(self, metric: str) -> float:
        """The metric at all-8-bit (every layer, pins ignored: the user's yardstick)."""
        if metric not in self._ref:
            ref = np.full((1, self.space.n_layers, 2), 8, dtype=np.int64)
            self._ref[metric] = float(self.values(metric, ref)[0])
        return self._ref[metric]

    def budget(self, c: Constraint) -> float:
        return c.value if c.absolute else c.value * self.reference(c.metric)

    def fractions(self, schemes: np.ndarray, exact: bool = False) -> np.ndarray:
        """[n, C]: each constraint's value as a fraction of its budget (<= 1 is feasible)."""
        s = np.asarray(schemes)
        if s.ndim == 2:
            s = s[None]
        cols = [self.values(c.metric, s, exact) / self.budget(c) for c in self.constraints]
        return np.stack(cols, axis=1)

    def feasible(self, schemes: np.ndarray, exact: bool = False) -> np.ndarray:
        """Whether each scheme meets every budget. Searchers screen thousands of
        candidates with the vectorized values; the engine judges each evaluated
        scheme with `exact=True` (an arena budget then holds for the compiled arena)."""
        # A hair of tolerance so the float sum of an exactly-on-budget scheme counts.
        return (self.fractions(schemes, exact) <= 1.0 + 1e-12).all(axis=1)

    def of_int8(self, schemes: np.ndarray) -> dict[str, np.ndarray]:
        """Each metric as a fraction of the all-8-bit value (reports, Pareto front)."""
        s = np.asarray(schemes)
        if s.ndim == 2:
            s = s[None]
        return {c.metric: self.values(c.metric, s) / self.reference(c.metric) for c in self.constraints}

    def check_achievable(self) -> None:
        """A clear error when not even the all-minimum scheme fits."""
        low = self.space.min_scheme()[None]
        frac = self.fractions(low)[0]
        bad = [(c, f) for c, f in zip(self.constraints, frac, strict=True) if f > 1.0 + 1e-12]
        if bad:
            parts = []
            for c, _ in bad:
                smallest = float(self.values(c.metric, low)[0]) / self.reference(c.metric)
                parts.append(f"'{c.text}': the smallest achievable {c.metric} is {smallest:.4g} of INT8 "
                             f"(all layers at {self.space.qtypes[0]} bits"
                             + (f", first/last pinned at {self.space.pin_first_last}" if self.space.pin_first_last
                                else "") + ")")
            raise UsageError("infeasible budget: " + "; ".join(parts))

    def describe(self) -> list[dict[str, object]]:
        return [{"text": c.text, "metric": c.metric, "budget": self.budget(c),
                 "reference_int8": self.reference(c.metric)} for c in self.constraints]


def repair(cs: ConstraintSet, schemes: np.ndarray, max_rounds: int = 256) -> np.ndarray:
    """Make infeasible schemes feasible by lowering, one qtype step at a time,
    the free gene whose lowering cuts the worst constraint ratio most (the
    most expensive layer). Feasible schemes are returned unchanged. Always
    terminates: each round lowers a gene or finds the scheme at the minimum."""
    space = cs.space
    out = space.normalize(schemes)
    genes = [tuple(g) for g in np.argwhere(space.free_mask)]
    for _ in range(max_rounds):
        frac = cs.fractions(out)
        bad = np.flatnonzero((frac > 1.0 + 1e-12).any(axis=1))
        if bad.size == 0 or not genes:
            break
        cur = out[bad]
        # Every one-step lowering of every bad scheme: [m, G, L, 2].
        nb = np.repeat(cur[:, None], len(genes), axis=1)
        for gi, (i, j) in enumerate(genes):
            nb[:, gi, i, j] = space.step(cur[:, i, j], -1)
            if space.tie_wa:
                nb[:, gi, i, 1] = nb[:, gi, i, 0]
        m, g = nb.shape[:2]
        nfrac = cs.fractions(nb.reshape(m * g, space.n_layers, 2)).reshape(m, g, -1)
        worst = np.maximum(nfrac, 0).max(axis=2)
        moved = (nb != cur[:, None]).any(axis=(2, 3))
        worst[~moved] = np.inf
        best = worst.argmin(axis=1)
        stuck = ~np.isfinite(worst[np.arange(m), best])
        out[bad[~stuck]] = nb[np.arange(m)[~stuck], best[~stuck]]
        if stuck.all():
            break
    return out


def _check_latency_unit(c: Constraint, target: str) -> None:
    """An absolute latency budget must be in the target's own unit (cycles,
    instructions or time): a cycle budget on the host would compare apples and ns."""
    m = _SPEC.match(c.text)
    unit = (m.group(4) if m else "").lower()
    if c.metric != "latency" or not c.absolute or target not in _TARGET_LATENCY_UNIT:
        return
    kind = _LATENCY_UNIT_KIND[unit]
    want = _TARGET_LATENCY_UNIT[target]
    if kind != want:
        examples = {"cycles": "1.5e6cyc, 800kcyc", "instructions": "2e6instr, 1.5minstr", "ns": "2ms, 500us"}
        raise UsageError(f"bad constraint '{c.text}': --target {target} prices latency in {want} "
                         f"(e.g. latency={examples[want].split(', ')[0]}, or a fraction of INT8 such as latency=0.5)")


def constraints_from_text(graph: Graph, target: str, space: SearchSpace, texts: Sequence[str],
                          config: str | None = None) -> ConstraintSet:
    cs = tuple(parse_constraint(t) for t in texts)
    for c in cs:
        _check_latency_unit(c, target)
    return ConstraintSet(graph, target, space, cs, config)


# ---------------------------------------------------------------------------
# arena: the C runtime's static activation RAM, vectorized over schemes
# ---------------------------------------------------------------------------

_CONTAINER = np.array([0, 1, 2, 4, 4, 8, 8, 8, 8], dtype=np.int64)  # container width of 0..8 bits


class ArenaModel:
    """Peak static activation RAM of a batch of schemes: the plan-buffers lower
    bound (the most bytes live at any program point) of the quantized graph
    `micoc compile` would build, with the C runtime's packed layout (batch-1
    activations, each pixel's channels packed at the container width and padded
    to a word; float values hold no arena bytes) and its views. plan-buffers
    reaches this bound on every example network, so it is the arena of the
    report too (tests/test_search.py checks both against `emit`).

    How, without quantizing per scheme:

    1. Bits. `plan_formats` (the quantization plan the quantize pass and the
       torch executor share) gives every activation the widest width any
       consumer asks, so each value's bits are max(c_v, max of a set S_v of
       genes); c_v and S_v are read off L*2+1 probes of the plan.
    2. Structure. What a scheme changes besides sizes: which layer operands
       get a requantize (value bits != the layer's gene), which of those
       share one (same value, same bits), and which element-wise ops may run
       in place (operand and result in one container width). Those flags
       form a key; schemes with one key have one op sequence, liveness and
       buffer grouping, built once per key (cached) by mirroring the quantize
       pass's op order on a weight-free graph and running `plan_buffers` on it
       (the target's `is_view` when the C emitter provides one).
    3. Bytes. Per key a live matrix [points x buffers] times the buffer sizes
       [buffers x schemes] (each buffer the largest of its members, sized from
       the members' bits), max over points.
    """

    def __init__(self, graph: Graph, layers: Sequence[str]) -> None:
        from micoc.analysis.quant_plan import layer_activation_operands, plan_formats

        g = graph.clone()
        by_name = {op.layer: op for op in g.ops if op.layer is not None}
        self.graph = g
        self.layer_ops = [by_name[n] for n in layers]
        self.n_genes = 2 * len(self.layer_ops)
        gene_of = {op: 2 * k for k, op in enumerate(self.layer_ops)}

        def formats(genes: np.ndarray):  # type: ignore[no-untyped-def]
            for op, (w, a) in zip(self.layer_ops, genes, strict=True):
                op.attrs = {**op.attrs, "wbits": int(w), "abits": int(a)}
            return plan_formats(g)

        base = np.ones((len(self.layer_ops), 2), dtype=np.int64)
        fmt0, _, self.tail = formats(base)
        self.values = list(fmt0)
        self.index = {v: i for i, v in enumerate(self.values)}
        self.const = np.array([fmt0[v].bits for v in self.values], dtype=np.int64)
        self.unsigned = [fmt0[v].unsigned for v in self.values]
        members: list[list[int]] = [[] for _ in self.values]
        for k in range(self.n_genes):
            probe = base.copy()
            probe.reshape(-1)[k] = 8
            f, _, _ = formats(probe)
            for i, v in enumerate(self.values):
                if f[v].bits > self.const[i]:
                    members[i].append(k)
        self.members = [np.array(m, dtype=np.int64) for m in members]
        # Requantize sites (value index, gene) in op order, and in-place candidates
        # (operand value index, result value index) of the element-wise ops.
        self.sites: list[tuple[int, int]] = []
        self.pairs: list[tuple[int, int]] = []
        for op in g.ops:
            if op in self.tail:
                continue
            if op in gene_of:
                for i, key in layer_activation_operands(op):
                    self.sites.append((self.index[op.operands[i]], gene_of[op] + (1 if key == "abits" else 0)))
            elif op.opname in ("relu", "clip", "sigmoid", "add", "sub", "mul"):
                for x in op.operands:
                    if not x.is_const and x.type.shape == op.result.type.shape:
                        self.pairs.append((self.index[x], self.index[op.result]))
        self._cache: dict[bytes, tuple[np.ndarray, list[list[tuple[int, int, int]]]]] = {}

    # -- bits ------------------------------------------------------------------
    def bits(self, schemes: np.ndarray) -> np.ndarray:
        """[n, V + 2L]: each float activation's bits, then the genes (flat scheme)."""
        flat = np.asarray(schemes, dtype=np.int64).reshape(len(schemes), self.n_genes)
        out = np.empty((len(flat), len(self.values)), dtype=np.int64)
        for i, m in enumerate(self.members):
            out[:, i] = self.const[i] if m.size == 0 else np.maximum(self.const[i], flat[:, m].max(axis=1))
        return np.concatenate([out, flat], axis=1)

    def keys(self, b: np.ndarray) -> np.ndarray:
        """[n, K]: the structure flags of step 2 (see the class doc)."""
        V = len(self.values)
        cols = []
        for k, (x, gene) in enumerate(self.sites):
            need = b[:, x] != b[:, V + gene]
            code = np.where(need, k, -1)
            for k2 in range(k - 1, -1, -1):  # share the earliest requantize of x to the same bits
                x2, gene2 = self.sites[k2]
                if x2 == x:
                    same = need & (b[:, x2] != b[:, V + gene2]) & (b[:, V + gene2] == b[:, V + gene])
                    code = np.where(same, k2, code)
            cols.append(code)
            cols.append(_CONTAINER[b[:, x]] == _CONTAINER[b[:, V + gene]])
        for x, r in self.pairs:
            cols.append(_CONTAINER[b[:, x]] == _CONTAINER[b[:, r]])
        if not cols:
            return np.zeros((len(b), 1), dtype=np.int64)
        return np.stack(cols, axis=1).astype(np.int64)

    # -- one structure ---------------------------------------------------------
    def structure(self, brow: np.ndarray, sized: bool = False):  # type: ignore[no-untyped-def]
        """For one scheme's bits row: the live matrix [points, buffers] and each
        buffer's members as (rows, row length, bits column or -1 for float);
        `sized`: the full `BufferPlan` of that scheme instead (placement included)."""
        from micoc.analysis.quant_plan import (
            COMBINE,
            LAYERS,
            LUT_OPS,
            PASS_THROUGH,
            layer_activation_operands,
        )
        from micoc.ir.graph import Op, Value
        from micoc.ir.types import QuantParams, TensorType
        from micoc.passes.plan_buffers import packed_activation_bytes, plan_buffers

        g, V = self.graph, len(self.values)
        gene_of = {op: 2 * k for k, op in enumerate(self.layer_ops)}
        src: dict[Value, int] = {}
        ops: list[Op] = []

        def qtype(shape: tuple[int, ...], bits: int, unsigned: bool) -> TensorType:
            return TensorType(shape, f"{'qu' if unsigned else 'qi'}{bits}", QuantParams.per_tensor(1.0, 0))

        def emit(opname: str, operands: list[Value], attrs: dict, t: TensorType, s: int,
                 layer: str | None = None) -> Value:
            r = Value(t)
            op = Op(opname, list(operands), dict(attrs), r, "", layer)
            r.producer = op
            ops.append(op)
            src[r] = s
            return r

        def value(v: Value) -> tuple[TensorType, int]:
            i = self.index[v]
            return qtype(v.type.shape, int(brow[i]), self.unsigned[i]), i

        vmap: dict[Value, Value] = {}
        deq: dict[Value, Value] = {}
        req: dict[tuple[Value, int], Value] = {}

        def dequantized(x: Value) -> Value:
            if not x.type.is_quantized:
                return x
            if x not in deq:
                deq[x] = emit("dequantize", [x], {}, TensorType(x.type.shape, "f32"), -1)
            return deq[x]

        inputs = []
        for v in g.inputs:
            lv = Value(v.type, v.name)
            src[lv] = -1
            inputs.append(lv)
            vmap[v] = emit("quantize", [lv], {}, *value(v))
        for op in g.ops:
            if op in self.tail:
                operands = [v if v.is_const else dequantized(vmap[v]) for v in op.operands]
                vmap[op.result] = emit(op.opname, operands, op.attrs, TensorType(op.result.type.shape, "f32"), -1)
            elif op.opname in LAYERS:
                operands = [v if v.is_const else vmap[v] for v in op.operands]
                for i, key in layer_activation_operands(op):
                    gene = gene_of[op] + (1 if key == "abits" else 0)
                    x, want = vmap[op.operands[i]], int(brow[V + gene])
                    if int(brow[self.index[op.operands[i]]]) != want:
                        if (x, want) not in req:
                            t = qtype(x.type.shape, want, self.unsigned[self.index[op.operands[i]]])
                            req[(x, want)] = emit("requantize", [x], {}, t, V + gene)
                        operands[i] = req[(x, want)]
                vmap[op.result] = emit(op.opname, operands, op.attrs, *value(op.result), layer=op.layer)
            elif op.opname in PASS_THROUGH | COMBINE | LUT_OPS:
                operands = [v if v.is_const else vmap[v] for v in op.operands]
                name = "lut" if op.opname in LUT_OPS else op.opname
                vmap[op.result] = emit(name, operands, op.attrs, *value(op.result))
        outputs = [dequantized(vmap[v]) for v in g.outputs]
        lg = Graph(g.name, inputs, outputs, {}, ops)
        lg.remove_dead()

        def size_of(v: Value) -> int:
            return packed_activation_bytes(v.type) if v.type.is_quantized else 0

        if sized:
            return plan_buffers(lg, size_of=size_of, is_view=_target_is_view())  # type: ignore[return-value]
        plan = plan_buffers(lg, size_of=size_of, is_view=_target_is_view(), strategy="greedy-by-size")
        n_points = len(lg.ops) + 2  # op indices -1 .. len(ops)
        pts = np.arange(-1, len(lg.ops) + 1)[:, None]
        starts = np.array([b.start for b in plan.buffers])
        ends = np.array([b.end for b in plan.buffers])
        live = ((pts >= starts[None]) & (pts <= ends[None])).astype(np.float64).reshape(n_points, len(plan.buffers))
        groups = []
        for buf in plan.buffers:
            mem = []
            for v in buf.values:
                shape = v.type.shape
                if len(shape) == 4:
                    rows, k = shape[0] * shape[2] * shape[3], shape[1]
                elif len(shape) == 0:
                    rows, k = 1, 1
                else:
                    rows, k = int(np.prod(shape[:-1])), shape[-1]
                mem.append((int(rows), int(k), src[v] if v.type.is_quantized else -1))
            groups.append(mem)
        return live, groups

    # -- bytes -------------------------------------------------------------------
    def planned(self, scheme: np.ndarray) -> int:
        """The arena plan-buffers actually places for one scheme [L, 2] (what
        `micoc compile` reports as arena_bytes): at least `bytes`, and equal
        whenever its heuristics reach the lower bound."""
        b = self.bits(np.asarray(scheme)[None])[0]
        return int(self.structure(b, sized=True).arena_bytes)

    def bytes(self, schemes: np.ndarray) -> np.ndarray:
        """[n] arena bytes (the plan-buffers lower bound) of schemes [n, L, 2]."""
        s = np.asarray(schemes, dtype=np.int64)
        if s.ndim == 2:
            s = s[None]
        b = self.bits(s)
        cont = _CONTAINER[b]
        keys = self.keys(b)
        uniq, inverse = np.unique(keys, axis=0, return_inverse=True)
        inverse = np.asarray(inverse).reshape(-1)
        out = np.zeros(len(s), dtype=np.float64)
        for u, key in enumerate(uniq):
            rows = np.flatnonzero(inverse == u)
            kb = key.tobytes()
            if kb not in self._cache:
                self._cache[kb] = self.structure(b[rows[0]])
            live, groups = self._cache[kb]
            sizes = np.zeros((len(groups), len(rows)), dtype=np.float64)
            for gi, mem in enumerate(groups):
                for r, k, col in mem:
                    if col >= 0:
                        nb = r * (-(-k * cont[rows, col] // 32)) * 4
                        sizes[gi] = np.maximum(sizes[gi], -(-nb // 4) * 4)
            out[rows] = (live @ sizes).max(axis=0) if len(groups) else 0.0
        return out


def _target_is_view():  # type: ignore[no-untyped-def]
    """The C emitter's `is_view` (which reshapes move no data in its layout), if it has one."""
    try:
        from micoc.targets.c import emitter
    except ImportError:  # pragma: no cover
        return None
    return getattr(emitter, "is_view", None)
