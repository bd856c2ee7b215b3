"""The quantization plan: which integer type every activation gets.

One function decides, for a calibrated float graph whose layers carry
(wbits, abits), the bits, signedness and scale of every activation. The
`quantize` pass materializes the plan as integer IR, and the torch executor
simulates the very same plan with fake quantization, so the two agree by
construction.

Rules (DESIGN §6):
- a layer's `abits` is the width of its INPUT; where a value feeds layers
  asking for different widths, it is held at the widest and requantized
  down for the others;
- a value's width is the widest any consumer demands; pass-through ops
  (pooling, reshape, transpose, slice, relu, clip) keep their input's type;
  add/sub/mul/concat take the widest of their inputs; graph outputs demand 8;
- activations are unsigned when provably non-negative (relu/relu6 producers,
  sigmoid, non-negative inputs), else signed, always with zero point 0.
"""

from __future__ import annotations

from dataclasses import dataclass

from micoc.errors import UnsupportedError
from micoc.ir.graph import Graph, Op, Value
from micoc.ir.types import QuantParams, TensorType
from micoc.numerics import activation_params

PASS_THROUGH = frozenset({"maxpool", "avgpool", "global_avgpool", "reshape", "transpose", "slice", "relu", "clip"})
SHAPE_ONLY = frozenset({"reshape", "transpose", "slice"})
COMBINE = frozenset({"add", "sub", "mul", "concat"})
LUT_OPS = frozenset({"sigmoid"})
FLOAT_TAIL = frozenset({"softmax"})  # run in float after the output dequantize
LAYERS = frozenset({"conv2d", "linear", "matmul"})
OUTPUT_BITS = 8
CONST_BITS = 8


@dataclass(frozen=True)
class ActQuant:
    """How one activation is held: bits, signedness and per-tensor scale (zero point 0)."""

    bits: int
    unsigned: bool
    scale: float

    @property
    def elem(self) -> str:
        return f"{'qu' if self.unsigned else 'qi'}{self.bits}"

    def type(self, shape: tuple[int, ...]) -> TensorType:
        return TensorType(shape, self.elem, QuantParams.per_tensor(self.scale, 0))


@dataclass
class QuantPlan:
    values: dict[Value, ActQuant]  # every activation of the float graph
    # What a layer's activation operand must be requantized to, when it differs from values[v].
    layer_inputs: dict[tuple[Op, int], ActQuant]
    float_tail: set[Op]  # ops that run in float after dequantization

    def operand(self, op: Op, i: int) -> ActQuant:
        return self.layer_inputs.get((op, i)) or self.values[op.operands[i]]


def layer_activation_operands(op: Op) -> tuple[tuple[int, str], ...]:
    """(operand index, which scheme bits apply) for a layer's activation operands."""
    return ((0, "abits"), (1, "wbits")) if op.opname == "matmul" else ((0, "abits"),)


@dataclass(frozen=True)
class ActFormat:
    """Bits and signedness of an activation: what the plan decides before scales."""

    bits: int
    unsigned: bool


def plan_formats(graph: Graph) -> tuple[dict[Value, ActFormat], dict[tuple[Op, int], int], set[Op]]:
    """Bits and signedness of every activation, the widths layer operands are
    requantized to where they differ, and the float-tail ops. Needs no scales,
    only graph-input ranges (for their signedness); unassigned layers count as 8 bits."""
    _check_supported(graph, need_bits=False)
    float_tail = _float_tail(graph)
    demand = _demand(graph, float_tail)
    nonneg = _nonneg(graph)
    fmt: dict[Value, ActFormat] = {}

    def want(v: Value) -> int:
        return demand.get(v) or OUTPUT_BITS

    for v in graph.inputs:
        fmt[v] = ActFormat(want(v), nonneg[v])
    requant: dict[tuple[Op, int], int] = {}
    for op in graph.ops:
        if op in float_tail:
            continue
        r = op.result
        if op.opname in LAYERS:
            for i, key in layer_activation_operands(op):
                bits = op.attrs[key] or OUTPUT_BITS
                if fmt[op.operands[i]].bits != bits:
                    requant[(op, i)] = bits
            fmt[r] = ActFormat(want(r), nonneg[r])
        elif op.opname in PASS_THROUGH:
            fmt[r] = pass_through_format(op, fmt[op.operands[0]])
        elif op.opname in COMBINE:
            fmt[r] = ActFormat(max(fmt[v].bits for v in op.operands if not v.is_const), nonneg[r])
        elif op.opname in LUT_OPS:
            fmt[r] = ActFormat(want(r), nonneg[r])
    return fmt, requant, float_tail


def plan_quantization(graph: Graph) -> QuantPlan:
    """The full plan: formats plus scales from the calibrated ranges."""
    _check_supported(graph, need_bits=True)
    fmt, requant, float_tail = plan_formats(graph)

    def quant(v: Value, f: ActFormat) -> ActQuant:
        lo, hi = _range(v)
        scale, _ = activation_params(lo, hi, f.bits, f.unsigned)
        return ActQuant(f.bits, f.unsigned, float(scale))

    values: dict[Value, ActQuant] = {}
    for v in graph.inputs:
        values[v] = quant(v, fmt[v])
    for op in graph.ops:
        if op in float_tail:
            continue
        if op.opname in PASS_THROUGH:
            src, f = values[op.operands[0]], fmt[op.result]
            values[op.result] = ActQuant(f.bits, f.unsigned, src.scale)  # same scale: no rescaling
        else:
            values[op.result] = quant(op.result, fmt[op.result])
    layer_inputs = {
        (op, i): quant(op.operands[i], ActFormat(bits, values[op.operands[i]].unsigned))
        for (op, i), bits in requant.items()
    }
    return QuantPlan(values, layer_inputs, float_tail)


def pass_through_format(op: Op, src: ActFormat) -> ActFormat:
    """The format of a pass-through op's result, at its input's scale.

    Usually the input's; but relu (and clip at >= 0) make a signed input
    non-negative, which the unsigned type of the same bits holds exactly
    (a binary {-1,+1} input becomes {0,1}); averaging binary {-1,+1} codes
    can round to 0, which needs the 2-bit signed type.
    """
    if op.opname == "relu" or (op.opname == "clip" and op.attrs["min"] >= 0):
        return ActFormat(src.bits, True)
    if op.opname in ("avgpool", "global_avgpool") and src.bits == 1 and not src.unsigned:
        return ActFormat(2, False)
    return src


def const_quant(c: Value) -> ActQuant:
    """Constant operands of add/mul/concat: 8-bit, per tensor."""
    assert c.data is not None
    lo, hi = float(c.data.min(initial=0.0)), float(c.data.max(initial=0.0))
    unsigned = lo >= 0
    scale, _ = activation_params(lo, hi, CONST_BITS, unsigned)
    return ActQuant(CONST_BITS, unsigned, float(scale))


def _range(v: Value) -> tuple[float, float]:
    if v.range is None:
        where = v.producer.where() if v.producer else f"input '{v.name}'"
        raise UnsupportedError(f"no calibrated range for {where}: run the calibrate pass first")
    return v.range


def _check_supported(graph: Graph, need_bits: bool) -> None:
    known = PASS_THROUGH | COMBINE | LUT_OPS | FLOAT_TAIL | LAYERS
    problems = []
    for op in graph.ops:
        if op.opname not in known:
            problems.append(f"{op.where()}: '{op.opname}' has no integer form (run canonicalize first?)")
        elif need_bits and op.opname in LAYERS and not (op.attrs["wbits"] and op.attrs["abits"]):
            problems.append(f"{op.where()}: no bit widths assigned (run assign-bits first)")
        elif op.opname in LAYERS and op.opname != "matmul" and not op.operands[1].is_const:
            problems.append(f"{op.where()}: weights must be constants")
        elif op.opname == "mul" and all(v.is_const for v in op.operands):
            problems.append(f"{op.where()}: constant-only op (run canonicalize first)")
    if problems:
        raise UnsupportedError("cannot quantize:\n  " + "\n  ".join(problems))


def _float_tail(graph: Graph) -> set[Op]:
    """Ops that run in float after the output dequantize: softmax, and shape-only ops,
    when everything downstream of them is such an op or a graph output."""
    users = graph.users()
    tail: set[Op] = set()
    for op in reversed(graph.ops):
        if op.opname in FLOAT_TAIL | SHAPE_ONLY and all(u in tail for u in users.get(op.result, [])):
            tail.add(op)
        elif op.opname in FLOAT_TAIL:
            raise UnsupportedError(
                f"{op.where()}: {op.opname} is only supported at the end of the network (it runs in float)"
            )
    return tail


def _demand(graph: Graph, float_tail: set[Op]) -> dict[Value, int]:
    """The widest bit width any consumer asks of each value (backward)."""
    demand: dict[Value, int] = {}

    def ask(v: Value, bits: int) -> None:
        if not v.is_const:
            demand[v] = max(demand.get(v, 0), bits)

    for v in graph.outputs:
        ask(v, OUTPUT_BITS)
    for op in reversed(graph.ops):
        if op in float_tail:
            for v in op.operands:
                ask(v, OUTPUT_BITS)
        elif op.opname in LAYERS:
            for i, key in layer_activation_operands(op):
                ask(op.operands[i], op.attrs[key] or OUTPUT_BITS)
        else:
            for v in op.operands:
                ask(v, demand.get(op.result, OUTPUT_BITS))
    return demand


def _nonneg(graph: Graph) -> dict[Value, bool]:
    """Which values are provably >= 0 (forward)."""
    nn: dict[Value, bool] = {}
    for v in graph.inputs:
        nn[v] = v.range is not None and v.range[0] >= 0
    for c in graph.consts.values():
        nn[c] = bool((c.data >= 0).all())  # type: ignore[operator]
    for op in graph.ops:
        a = op.attrs
        ins = [nn.get(v, False) for v in op.operands]
        if op.opname in ("conv2d", "linear"):
            val = a["act"] in ("relu", "relu6") or (a["act"] == "clip" and a["clip_min"] >= 0)
        elif op.opname == "relu" or op.opname == "sigmoid":
            val = True
        elif op.opname == "clip":
            val = a["min"] >= 0 or ins[0]
        elif op.opname in PASS_THROUGH:
            val = ins[0]
        elif op.opname in ("add", "mul", "concat"):
            val = all(ins)
        else:
            val = False
        nn[op.result] = val
    return nn
