"""quantize: turn a calibrated float graph with assigned bits into integer-only IR.

After this pass the graph quantizes its inputs once, computes with integers
only (integer weights, int32 biases at scale s_x*s_w, requantization derived
from the types), and dequantizes its outputs once; a final softmax runs in
float after the dequantize. Which type each activation gets is decided by
`micoc.analysis.quant_plan`, which the torch executor shares.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from micoc.analysis.quant_plan import (
    COMBINE,
    LAYERS,
    LUT_OPS,
    PASS_THROUGH,
    ActQuant,
    QuantPlan,
    const_quant,
    layer_activation_operands,
    plan_quantization,
)
from micoc.analysis.requant import scales
from micoc.errors import UsageError
from micoc.ir.builder import make_op
from micoc.ir.graph import Graph, Op, Value
from micoc.ir.types import QuantParams, TensorType
from micoc.ir.verifier import accumulator_bound
from micoc.numerics import build_lut, quantize_input, quantize_weights, round_half_away
from micoc.passes.manager import Pass, PassContext, register_pass

INT32_MAX = 2**31 - 1

# Element-wise nonlinearities that become lookup tables, in float64.
LUT_FUNCTIONS = {"sigmoid": lambda x: 0.5 * (1.0 + np.tanh(0.5 * x))}


@register_pass
@dataclass(frozen=True)
class Quantize(Pass):
    name: ClassVar[str] = "quantize"
    summary: ClassVar[str] = "materialize integer weights, biases and activation types"

    per_channel: bool = True
    weight_method: str = "maxabs"

    def run(self, graph: Graph, ctx: PassContext) -> bool:
        if self.weight_method not in ("maxabs", "mse"):
            raise UsageError(f"quantize: weight_method must be maxabs or mse, got '{self.weight_method}'")
        if any(v.type.is_quantized for v in graph.inputs) or any(op.opname == "quantize" for op in graph.ops):
            return False  # already quantized
        plan = plan_quantization(graph)
        _Materializer(graph, plan, self).run()
        return True


class _Materializer:
    def __init__(self, graph: Graph, plan: QuantPlan, opts: Quantize) -> None:
        self.g = graph
        self.plan = plan
        self.opts = opts
        self.map: dict[Value, Value] = {}
        self.requant_cache: dict[tuple[Value, ActQuant], Value] = {}
        self.dequant_cache: dict[Value, Value] = {}
        self.new_ops: list[Op] = []

    def emit(self, opname: str, operands: list[Value], attrs: dict | None = None, *, like: Op | None = None,
             result_type: TensorType | None = None, layer: str | None = None) -> Value:
        op = make_op(opname, operands, attrs, loc=like.loc if like else "", layer=layer, result_type=result_type)
        self.new_ops.append(op)
        return op.result

    def run(self) -> None:
        g, plan = self.g, self.plan
        for v in g.inputs:
            q = plan.values[v]
            self.map[v] = self.emit("quantize", [v], result_type=q.type(v.type.shape))
            self.map[v].range = v.range
        for op in g.ops:
            if op in plan.float_tail:
                self.float_op(op)
            elif op.opname in LAYERS:
                self.layer(op)
            elif op.opname in PASS_THROUGH:
                x = self.map[op.operands[0]]
                result_type = plan.values[op.result].type(op.result.type.shape)
                self.map[op.result] = self.emit(op.opname, [x], op.attrs, like=op, result_type=result_type)
            elif op.opname in COMBINE:
                self.combine(op)
            elif op.opname in LUT_OPS:
                self.lut(op)
            self.map[op.result].range = op.result.range
        g.outputs = [self.dequantized(self.map[v]) for v in g.outputs]
        g.ops = self.new_ops
        g.remove_dead()

    # -- helpers ----------------------------------------------------------------
    def requantized(self, v: Value, q: ActQuant) -> Value:
        """`v` (already mapped) as type q, through one shared requantize per (value, type)."""
        if v.type == q.type(v.type.shape):
            return v
        key = (v, q)
        if key not in self.requant_cache:
            self.requant_cache[key] = self.emit("requantize", [v], result_type=q.type(v.type.shape))
        return self.requant_cache[key]

    def dequantized(self, v: Value) -> Value:
        if not v.type.is_quantized:
            return v
        if v not in self.dequant_cache:
            self.dequant_cache[v] = self.emit("dequantize", [v], result_type=TensorType(v.type.shape, "f32"))
        return self.dequant_cache[v]

    def const(self, name: str, data: np.ndarray, t: TensorType) -> Value:
        return self.g.add_const(name, data, t)

    # -- op kinds ---------------------------------------------------------------------
    def layer(self, op: Op) -> None:
        plan = self.plan
        operands = list(op.operands)
        for i, _key in layer_activation_operands(op):
            operands[i] = self.requantized(self.map[op.operands[i]], plan.operand(op, i))
        x = operands[0]
        if op.opname != "matmul":
            w = op.operands[1]
            assert w.data is not None
            q, sw = quantize_weights(w.data, op.attrs["wbits"], per_channel=self.opts.per_channel, axis=0,
                                     method=self.opts.weight_method)
            sw = np.broadcast_to(np.asarray(sw, dtype=np.float32).reshape(-1), (w.type.shape[0],))
            wtype = TensorType(w.type.shape, f"qi{op.attrs['wbits']}",
                               QuantParams(tuple(float(s) for s in sw), (0,) * len(sw), 0))
            operands[1] = self.const(f"{w.name}.q", q.astype(np.int32), wtype)
            if len(op.operands) > 2:
                b = op.operands[2]
                assert b.data is not None
                sx = scales(x.type)[0]
                qb = round_half_away(b.data.astype(np.float64) / (sx * sw.astype(np.float64)))
                qb = np.clip(qb, -INT32_MAX, INT32_MAX).astype(np.int32)
                operands[2] = self.const(f"{b.name}.q", qb, TensorType(b.type.shape, "i32"))
        result_type = self.plan.values[op.result].type(op.result.type.shape)
        attrs = dict(op.attrs)
        probe = make_op(op.opname, operands, attrs, loc=op.loc, layer=op.layer, result_type=result_type)
        if accumulator_bound(probe, [v.type for v in operands]) >= 2**31:
            attrs["acc"] = "i64"
        self.map[op.result] = self.emit(op.opname, operands, attrs, like=op, result_type=result_type,
                                        layer=op.layer)

    def combine(self, op: Op) -> None:
        operands = []
        for v in op.operands:
            if v.is_const:
                cq = const_quant(v)
                assert v.data is not None
                data = quantize_input(v.data, cq.scale, 0, cq.type(v.type.shape).qrange)
                operands.append(self.const(f"{v.name}.q", data.astype(np.int32), cq.type(v.type.shape)))
            else:
                operands.append(self.map[v])
        result_type = self.plan.values[op.result].type(op.result.type.shape)
        self.map[op.result] = self.emit(op.opname, operands, op.attrs, like=op, result_type=result_type)

    def lut(self, op: Op) -> None:
        x = self.map[op.operands[0]]
        out = self.plan.values[op.result].type(op.result.type.shape)
        table = build_lut(LUT_FUNCTIONS[op.opname], scales(x.type)[0], 0, x.type.qrange,
                          scales(out)[0], 0, out.qrange)
        t = self.const(f"{op.opname}_{len(self.new_ops)}.lut", table, TensorType((len(table),), "i32"))
        self.map[op.result] = self.emit("lut", [x, t], like=op, result_type=out)

    def float_op(self, op: Op) -> None:
        operands = [v if v.is_const else self.dequantized(self.map[v]) for v in op.operands]
        self.map[op.result] = self.emit(op.opname, operands, op.attrs, like=op)
