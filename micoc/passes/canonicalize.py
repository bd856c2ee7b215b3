"""canonicalize: simplify a float graph into the small normal form later passes expect.

Rewrites, applied to a fixpoint:
- fold ops whose operands are all constants (the interpreter evaluates them);
- sub/div by a constant become add/mul (one fewer op kind for quantization);
- batch_norm becomes a per-channel affine mul + add, and a per-channel
  mul/add by constants folds into the preceding conv2d/linear (so folding
  BatchNorm and folding any scale/shift are one mechanism);
- relu, relu6 and clip fuse into their conv2d/linear producer;
- mean over H, W becomes global_avgpool; chained reshapes merge; identity
  reshape/transpose/slice/clip disappear;
- dead ops and unused constants are removed.
Identity and Dropout never reach the IR: frontends alias them away.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from micoc.interp.kernels import get_kernel
from micoc.ir.builder import make_op
from micoc.ir.graph import Graph, Op, Value
from micoc.passes.manager import Pass, PassContext, register_pass

Rewrite = Callable[[Graph, Op, dict[Value, list[Op]]], bool]


@register_pass
@dataclass(frozen=True)
class Canonicalize(Pass):
    name: ClassVar[str] = "canonicalize"
    summary: ClassVar[str] = "fold constants and BatchNorm, fuse activations, remove no-ops"

    max_iterations: int = 20

    def run(self, graph: Graph, ctx: PassContext) -> bool:
        changed_any = False
        for _ in range(self.max_iterations):
            changed = False
            users = graph.users()
            for op in list(graph.ops):
                if op not in graph.ops:
                    continue
                for rewrite in REWRITES:
                    if rewrite(graph, op, users):
                        changed = True
                        users = graph.users()
                        break
            changed |= graph.remove_dead()
            changed_any |= changed
            if not changed:
                break
        return changed_any


# -- helpers ----------------------------------------------------------------------


def _replace_op(graph: Graph, old: Op, new: Op) -> None:
    """Put `new` where `old` was and route old's users to new's result."""
    graph.ops[graph.ops.index(old)] = new
    graph.replace_all_uses(old.result, new.result)


def _erase_forward(graph: Graph, op: Op, value: Value) -> None:
    """Drop `op`, whose result equals `value`."""
    graph.replace_all_uses(op.result, value)
    graph.ops.remove(op)


def _only_user(users: dict[Value, list[Op]], v: Value, graph: Graph) -> bool:
    return len(users.get(v, [])) == 1 and v not in graph.outputs


def _updated_const(graph: Graph, users: dict[Value, list[Op]], old: Value, data: np.ndarray) -> Value:
    """A constant holding `data` that replaces `old`; keeps old's name when nothing else reads it."""
    if len(users.get(old, [])) == 1 and old not in graph.outputs and old.name in graph.consts:
        del graph.consts[old.name]
    return graph.add_const(old.name or "const", data)


def _channel_vector(c: Value, producer: Op) -> np.ndarray | None:
    """If constant `c` broadcasts along the output channels of conv2d/linear `producer`
    only, return it as a vector [C_out] (or a scalar broadcast to it)."""
    assert c.data is not None
    out = producer.result.type.shape
    ch = out[1] if producer.opname == "conv2d" else out[-1]
    data = c.data
    if data.size == 1:
        return np.full(ch, data.reshape(()), dtype=np.float32)
    if data.size != ch or data.ndim > len(out):
        return None
    shape = (1,) * (len(out) - data.ndim) + data.shape
    axis = 1 if producer.opname == "conv2d" else len(out) - 1
    if shape[axis] != ch:
        return None
    return data.reshape(ch).astype(np.float32)


# -- rewrites ------------------------------------------------------------------------


def fold_constants(graph: Graph, op: Op, users: dict[Value, list[Op]]) -> bool:
    if not op.operands or not all(v.is_const for v in op.operands) or not op.result.type.is_float:
        return False
    value = get_kernel(op)(op, [v.data for v in op.operands])  # type: ignore[misc]
    const = graph.add_const(f"{op.opname}.folded", np.ascontiguousarray(value, dtype=np.float32))
    _erase_forward(graph, op, const)
    return True


def sub_div_by_constant(graph: Graph, op: Op, users: dict[Value, list[Op]]) -> bool:
    if op.opname not in ("sub", "div") or not op.operands[1].is_const or not op.result.type.is_float:
        return False
    c = op.operands[1]
    assert c.data is not None
    if op.opname == "sub":
        data, new_name = -c.data, "add"
    else:
        if np.any(c.data == 0):
            return False
        data, new_name = (np.float32(1) / c.data).astype(np.float32), "mul"
    const = graph.add_const(f"{c.name}.{'neg' if new_name == 'add' else 'recip'}", data)
    new = make_op(new_name, [op.operands[0], const], loc=op.loc)
    _replace_op(graph, op, new)
    return True


def batch_norm_to_affine(graph: Graph, op: Op, users: dict[Value, list[Op]]) -> bool:
    if op.opname != "batch_norm" or not all(v.is_const for v in op.operands[1:]):
        return False
    scale, bias, mean, var = (v.data for v in op.operands[1:])
    k = (scale / np.sqrt(var.astype(np.float64) + op.attrs["epsilon"])).astype(np.float32)  # type: ignore[union-attr]
    shift = (bias - mean * k).astype(np.float32)  # type: ignore[operator]
    bshape = (1, -1) + (1,) * (op.result.type.rank - 2)
    base = op.operands[1].name or "bn"
    k_c = graph.add_const(f"{base}.bn_scale", k.reshape(bshape))
    s_c = graph.add_const(f"{base}.bn_shift", shift.reshape(bshape))
    mul = make_op("mul", [op.operands[0], k_c], loc=op.loc)
    add = make_op("add", [mul.result, s_c], loc=op.loc)
    i = graph.ops.index(op)
    graph.ops[i : i + 1] = [mul, add]
    graph.replace_all_uses(op.result, add.result)
    return True


def fold_affine_into_layer(graph: Graph, op: Op, users: dict[Value, list[Op]]) -> bool:
    """mul/add by a per-output-channel constant right after conv2d/linear (no fused act)."""
    if op.opname not in ("mul", "add") or not op.result.type.is_float:
        return False
    x, c = op.operands
    if x.is_const and not c.is_const:
        x, c = c, x
    prod = x.producer
    if (
        not c.is_const
        or prod is None
        or prod.opname not in ("conv2d", "linear")
        or prod.attrs["act"] != "none"
        or not _only_user(users, x, graph)
        or op.result.type.shape != x.type.shape
    ):
        return False
    vec = _channel_vector(c, prod)
    if vec is None:
        return False
    w = prod.operands[1]
    assert w.data is not None
    has_bias = len(prod.operands) > 2
    bias = prod.operands[2].data if has_bias else np.zeros(w.type.shape[0], np.float32)
    assert bias is not None
    if op.opname == "mul":
        w_data = (w.data * vec.reshape((-1,) + (1,) * (w.type.rank - 1))).astype(np.float32)
        new_w = _updated_const(graph, users, w, w_data)
        b_data = (bias * vec).astype(np.float32)
    else:
        new_w = w
        b_data = (bias + vec).astype(np.float32)
    if has_bias:
        b_const = _updated_const(graph, users, prod.operands[2], b_data)
    else:
        stem = (w.name or "w").removesuffix(".weight")
        b_const = graph.add_const(f"{stem}.bias", b_data)
    new = make_op(prod.opname, [prod.operands[0], new_w, b_const], prod.attrs, loc=prod.loc, layer=prod.layer)
    _replace_op(graph, prod, new)
    _erase_forward(graph, op, new.result)
    return True


def fuse_activation(graph: Graph, op: Op, users: dict[Value, list[Op]]) -> bool:
    if op.opname not in ("relu", "clip"):
        return False
    x = op.operands[0]
    prod = x.producer
    if prod is None or prod.opname not in ("conv2d", "linear") or prod.attrs["act"] != "none":
        return False
    if not _only_user(users, x, graph):
        return False
    if op.opname == "relu":
        act = {"act": "relu"}
    else:
        lo, hi = op.attrs["min"], op.attrs["max"]
        if lo == 0 and hi == 6:
            act = {"act": "relu6"}
        elif lo == 0 and hi == math.inf:
            act = {"act": "relu"}
        else:
            act = {"act": "clip", "clip_min": lo, "clip_max": hi}
    attrs = {**prod.attrs, **act}
    new = make_op(prod.opname, prod.operands, attrs, loc=prod.loc, layer=prod.layer)
    _replace_op(graph, prod, new)
    _erase_forward(graph, op, new.result)
    return True


def mean_to_global_avgpool(graph: Graph, op: Op, users: dict[Value, list[Op]]) -> bool:
    if op.opname != "mean" or op.operands[0].type.rank != 4:
        return False
    if sorted(a % 4 for a in op.attrs["axes"]) != [2, 3]:
        return False
    gap = make_op("global_avgpool", [op.operands[0]], loc=op.loc)
    if op.attrs["keepdims"]:
        _replace_op(graph, op, gap)
    else:
        reshape = make_op("reshape", [gap.result], {"shape": op.result.type.shape}, loc=op.loc)
        i = graph.ops.index(op)
        graph.ops[i : i + 1] = [gap, reshape]
        graph.replace_all_uses(op.result, reshape.result)
    return True


def merge_reshapes(graph: Graph, op: Op, users: dict[Value, list[Op]]) -> bool:
    if op.opname != "reshape":
        return False
    x = op.operands[0]
    if x.type.shape == op.result.type.shape:
        _erase_forward(graph, op, x)
        return True
    prod = x.producer
    if prod is not None and prod.opname == "reshape":
        new = make_op("reshape", [prod.operands[0]], op.attrs, loc=op.loc)
        _replace_op(graph, op, new)
        return True
    return False


def drop_identity(graph: Graph, op: Op, users: dict[Value, list[Op]]) -> bool:
    a = op.attrs
    x = op.operands[0] if op.operands else None
    identity = (
        (op.opname == "transpose" and list(a["perm"]) == sorted(a["perm"]))
        or (op.opname == "slice" and x is not None and x.type.shape == op.result.type.shape
            and all(s == 1 for s in a["steps"]))
        or (op.opname == "clip" and a["min"] == -math.inf and a["max"] == math.inf)
        or (op.opname == "concat" and len(op.operands) == 1)
    )
    if identity and x is not None:
        _erase_forward(graph, op, x)
    return identity


REWRITES: list[Rewrite] = [
    fold_constants,
    drop_identity,
    sub_div_by_constant,
    batch_norm_to_affine,
    fold_affine_into_layer,
    fuse_activation,
    mean_to_global_avgpool,
    merge_reshapes,
]
