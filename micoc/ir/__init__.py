"""micoc's typed IR: types, values, ops, graphs, builder, verifier, text form."""

from micoc.ir.builder import GraphBuilder, make_op
from micoc.ir.graph import Graph, Op, Value
from micoc.ir.ops import OPS, OpDef, get_op
from micoc.ir.types import QuantParams, TensorType, f32
from micoc.ir.verifier import verify

__all__ = [
    "OPS", "Graph", "GraphBuilder", "Op", "OpDef", "QuantParams", "TensorType", "Value",
    "f32", "get_op", "make_op", "verify",
]
