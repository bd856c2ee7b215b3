"""torch.fx frontend: an eval-mode ``nn.Module`` -> micoc IR.

The module is traced with ``torch.fx`` and the trace is also *run once* on
the example inputs (an fx Interpreter that records every node's result).
Shapes are static (batch = the example's), so every value that does not
depend on activation data -- ``x.size(0)``, ``x.shape[1] * 2``, a parameter
scaled by a Python float -- is taken from that run and folds to a constant;
only nodes that touch activations are mapped to IR ops, through dispatch
tables from module types / functions / method names to small mappers.

The mapping mirrors the ONNX frontend (micoc/frontends/onnx.py) so both
paths give the same ops, shapes and values for the same network; see
DESIGN.md section 4.
"""

from __future__ import annotations

import builtins
import operator
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from micoc.errors import InputError, UnsupportedError, UsageError
from micoc.ir.builder import GraphBuilder
from micoc.ir.graph import Graph, Value
from micoc.ir.types import TensorType

__all__ = ["import_module"]

INF = float("inf")


# --------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------


def import_module(
    module: nn.Module,
    example_inputs: tuple[torch.Tensor, ...] | torch.Tensor,
    *,
    name: str | None = None,
) -> Graph:
    """Trace `module` with torch.fx and translate it into a micoc Graph.

    The module is imported with inference semantics: it is switched to eval
    mode for tracing (BatchNorm uses running stats, Dropout is the identity)
    and its training flags are restored afterwards. Graph inputs are named
    after forward()'s parameters; tuple/list outputs give several outputs.

    Raises UnsupportedError listing every node that has no IR mapping (or
    torch's reason if the module cannot be traced at all).
    """
    if isinstance(example_inputs, torch.Tensor):
        example_inputs = (example_inputs,)
    example_inputs = tuple(example_inputs)
    gname = name or type(module).__name__
    for i, t in enumerate(example_inputs):
        if not isinstance(t, torch.Tensor):
            raise UsageError(f"example input #{i} is a {type(t).__name__}, expected a torch.Tensor")
        if t.dtype != torch.float32:
            raise UnsupportedError(f"example input #{i} has dtype {t.dtype}; only float32 inputs are supported")

    flags = {m: m.training for m in module.modules()}
    module.eval()
    try:
        with torch.no_grad():
            gm = _trace(module, gname)
            values = _record(gm, example_inputs, gname)
            return _Importer(gm, values, gname).run(example_inputs)
    finally:
        for m, training in flags.items():
            m.training = training


class _Tracer(fx.Tracer):
    """Keeps every module we map as a leaf (so conv/linear keep their qualified
    names), even user subclasses that do not override forward()."""

    def create_node(self, *args: Any, **kwargs: Any) -> fx.Node:
        node = super().create_node(*args, **kwargs)
        # The user's frame becomes part of each op's loc. (fx's own
        # record_stack_traces would do, but its first use imports torch._dynamo:
        # ~8 s.) Walking the live frames costs microseconds.
        node.meta["micoc_frame"] = _caller_frame()
        return node

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return _module_mapper(m) is not None or super().is_leaf_module(m, module_qualified_name)


def _trace(module: nn.Module, gname: str) -> fx.GraphModule:
    tracer = _Tracer()
    try:
        graph = tracer.trace(module)
    except Exception as e:  # torch raises TraceError, TypeError, RuntimeError, ...
        raise UnsupportedError(
            f"torch.fx cannot trace {gname} (data-dependent control flow or untraceable code): "
            f"{type(e).__name__}: {_one_line(e)}"
        ) from None
    gm = fx.GraphModule(tracer.root, graph)
    _drop_dead_nodes(gm)
    return gm


def _drop_dead_nodes(gm: fx.GraphModule) -> None:
    """Erase nodes whose results nobody uses, as both ONNX exporters do.

    In-place ops are kept even when unused: they may mutate a value read
    later, which the importer must see (and reject).
    """
    modules = dict(gm.named_modules())
    for node in reversed(list(gm.graph.nodes)):
        if node.op not in ("placeholder", "output") and not node.users and not _is_inplace(node, modules):
            gm.graph.erase_node(node)
    gm.recompile()


class _Recorder(fx.Interpreter):
    """Runs the traced graph once and snapshots every node's result.

    Snapshots are clones so that later in-place ops (ReLU(inplace=True),
    `out += identity`) cannot change what an earlier node produced.
    """

    def __init__(self, gm: fx.GraphModule) -> None:
        super().__init__(gm, garbage_collect_values=True)
        self.results: dict[fx.Node, Any] = {}

    def run_node(self, n: fx.Node) -> Any:
        out = super().run_node(n)
        self.results[n] = _tree_map(lambda t: t.detach().clone(), out)
        return out


def _record(gm: fx.GraphModule, inputs: tuple[torch.Tensor, ...], gname: str) -> dict[fx.Node, Any]:
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    if len(placeholders) != len(inputs):
        names = ", ".join(n.name for n in placeholders)
        raise UsageError(f"{gname}.forward takes {len(placeholders)} input(s) ({names}), got {len(inputs)} example input(s)")
    rec = _Recorder(gm)
    try:
        rec.run(*inputs)
    except Exception as e:
        raise InputError(
            f"running {gname} on the example inputs failed: {type(e).__name__}: {_one_line(e)}"
        ) from None
    return rec.results


def _one_line(e: BaseException) -> str:
    # fx appends "While executing <node> ... Original traceback: ..." to errors.
    reason = " ".join(str(e).split("While executing")[0].split()) or type(e).__name__
    return reason if len(reason) <= 300 else reason[:297] + "..."


def _tree_map(fn: Callable[[torch.Tensor], Any], obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return fn(obj)
    if isinstance(obj, tuple) and not isinstance(obj, torch.Size):
        return tuple(_tree_map(fn, o) for o in obj)
    if isinstance(obj, list):
        return [_tree_map(fn, o) for o in obj]
    if isinstance(obj, dict):
        return {k: _tree_map(fn, v) for k, v in obj.items()}
    return obj


# --------------------------------------------------------------------------
# The importer
# --------------------------------------------------------------------------


class _Unsupported(Exception):
    """Raised by a mapper: this node (with these arguments) has no IR mapping."""


@dataclass(eq=False)
class _Const:
    """A constant tensor (parameter, buffer or folded value) not yet in the graph.

    It becomes a graph constant only when an op uses it, so folded shape
    arithmetic and unused buffers leave no trace in the IR.
    """

    tensor: torch.Tensor
    name: str


@dataclass
class _Importer:
    gm: fx.GraphModule
    results: dict[fx.Node, Any]
    gname: str
    builder: GraphBuilder = field(init=False)
    env: dict[fx.Node, Any] = field(default_factory=dict)
    consts: dict[str, Value] = field(default_factory=dict)  # by const name (dedupes shared params)
    failures: list[str] = field(default_factory=list)
    node: fx.Node | None = None  # the node being mapped (for locs)

    def __post_init__(self) -> None:
        self.builder = GraphBuilder(self.gname)
        self.modules = dict(self.gm.named_modules())
        self.order = {n: i for i, n in enumerate(self.gm.graph.nodes)}

    # -- driver ---------------------------------------------------------------
    def run(self, inputs: tuple[torch.Tensor, ...]) -> Graph:
        example = iter(inputs)
        for node in self.gm.graph.nodes:
            self.node = node
            if node.op == "placeholder":
                t = next(example)
                self.env[node] = self.builder.input(node.name, TensorType(tuple(t.shape), "f32"))
            elif node.op == "get_attr":
                self.env[node] = _tree_map(lambda t, n=node: _Const(t, str(n.target)), self.results[node])
            elif node.op == "output":
                self._outputs(node)
            else:
                self.env[node] = self._map_call(node)
        if self.failures:
            err = UnsupportedError(
                f"cannot import {self.gname}: {len(self.failures)} unsupported node(s): "
                + "; ".join(self.failures)
            )
            err.nodes = list(self.failures)  # type: ignore[attr-defined]
            raise err
        return self.builder.graph

    def _map_call(self, node: fx.Node) -> Any:
        args = fx.node.map_arg(node.args, lambda n: self.env[n])
        kwargs = fx.node.map_arg(node.kwargs, lambda n: self.env[n])
        if not _has_act((args, kwargs)):
            # Static: shapes, shape arithmetic, parameters and values computed
            # from them only. Take the recorded result.
            return self._fold(node)
        try:
            if node.op == "call_module":
                mod = self.modules[str(node.target)]
                mapper = _module_mapper(mod)
                if mapper is None:
                    raise _Unsupported("")
                out = mapper(self, node, mod, args, kwargs)
            elif node.op == "call_function":
                fn = FUNCTIONS.get(node.target)  # type: ignore[arg-type]
                if fn is None:
                    raise _Unsupported("")
                out = fn(self, node, args, kwargs)
            else:  # call_method
                fn = METHODS.get(str(node.target))
                if fn is None:
                    raise _Unsupported("")
                out = fn(self, node, args, kwargs)
            if out is not args[0]:
                self._check_not_mutating(node)
        except _Unsupported as e:
            self.failures.append(self._describe(node, str(e)))
            return self._stand_in(node)
        self._check_shapes(node, out, self.results[node])
        return out

    def _check_not_mutating(self, node: fx.Node) -> None:
        """Reject an in-place op whose input is read again later.

        fx records `x.relu_()` as a new node but later reads of `x` still
        point at the old node, whereas torch would see the mutated tensor; the
        IR is SSA and cannot express that. (`out += y; use(out)` is fine:
        Python rebinds `out` to the result.)
        """
        if not _is_inplace(node, self.modules) or not node.args or not isinstance(node.args[0], fx.Node):
            return
        src = node.args[0]
        later = [u.name for u in src.users if self.order[u] > self.order[node]]
        if later:
            raise _Unsupported(
                f"in-place op mutates '{src.name}', which is read again afterwards by {', '.join(later)}"
            )

    def _fold(self, node: fx.Node) -> Any:
        return _tree_map(lambda t: _Const(t, node.name), self.results[node])

    def _stand_in(self, node: fx.Node) -> Any:
        # A value of the right shape that is not in the graph, so that mapping
        # continues and every unsupported node gets reported in one error.
        return _tree_map(lambda t: Value(TensorType(tuple(t.shape), "f32")), self.results[node])

    def _check_shapes(self, node: fx.Node, out: Any, ref: Any) -> None:
        # The IR's shape inference must agree with what torch computed; if not,
        # a mapper is wrong, and saying so here beats a wrong graph.
        if isinstance(out, Value):
            if not isinstance(ref, torch.Tensor) or out.type.shape != tuple(ref.shape):
                got = list(ref.shape) if isinstance(ref, torch.Tensor) else type(ref).__name__
                raise RuntimeError(
                    f"fx import of node '{node.name}': IR shape {list(out.type.shape)} != torch's {got}"
                )
        elif isinstance(out, (tuple, list)) and isinstance(ref, (tuple, list)) and len(out) == len(ref):
            for o, r in zip(out, ref, strict=True):
                self._check_shapes(node, o, r)

    def _outputs(self, node: fx.Node) -> None:
        outs = fx.node.map_arg(node.args[0], lambda n: self.env[n])
        for i, v in enumerate(_leaves(outs)):
            if isinstance(v, _Const):
                v = self.const(v)
            if not isinstance(v, Value):
                self.failures.append(f"output #{i} is a {type(v).__name__}, not a tensor")
                continue
            self.builder.output(v)

    def _describe(self, node: fx.Node, reason: str) -> str:
        if node.op == "call_module":
            mod = self.modules[str(node.target)]
            what = f"module {type(mod).__module__}.{type(mod).__qualname__} '{node.target}'"
        elif node.op == "call_method":
            what = f"method Tensor.{node.target}"
        else:
            what = f"function {_qualname(node.target)}"
        frame = _user_frame(node)
        s = f"{what} at node '{node.name}'" + (f" ({frame})" if frame else "")
        return s + (f": {reason}" if reason else "")

    # -- helpers for mappers --------------------------------------------------
    def loc(self, node: fx.Node) -> str:
        frame = _user_frame(node)
        return f"{node.name} ({frame})" if frame else node.name

    def op(self, opname: str, operands: list[Value], attrs: dict[str, Any] | None = None,
           *, layer: str | None = None) -> Value:
        assert self.node is not None
        return self.builder.op(opname, operands, attrs, loc=self.loc(self.node), layer=layer)

    def layer_name(self, qualname: str) -> str:
        """The module's qualified name; a module called twice gets `_1`, `_2`, ..."""
        taken = {op.layer for op in self.builder.graph.ops}
        if qualname not in taken:
            return qualname
        i = 1
        while f"{qualname}_{i}" in taken:
            i += 1
        return f"{qualname}_{i}"

    def const(self, c: _Const, transform: Callable[[np.ndarray], np.ndarray] | None = None,
              suffix: str = "") -> Value:
        """The graph constant for `c` (f32), created once per name."""
        key = c.name + suffix
        if key not in self.consts:
            arr = c.tensor.detach().cpu().to(torch.float32).numpy()
            if transform is not None:
                arr = transform(arr)
            # np.array, not ascontiguousarray: the latter turns 0-d scalars into [1].
            self.consts[key] = self.builder.const(key, np.array(arr, dtype=np.float32, order="C"))
        return self.consts[key]

    def param(self, qualname: str, t: torch.Tensor) -> Value:
        return self.const(_Const(t, qualname))

    def operand(self, v: Any, role: str) -> Value:
        """An op operand: an activation, a constant tensor, or a Python scalar (-> f32 const)."""
        if isinstance(v, Value):
            return v
        if isinstance(v, _Const):
            return self.const(v)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            assert self.node is not None
            return self.const(_Const(torch.tensor(float(v)), f"{self.node.name}.{role}"))
        raise _Unsupported(f"{role} is a {type(v).__name__}, expected a tensor or a number")

    def concrete(self, node: fx.Node) -> Any:
        return self.results[node]


# -- small utilities ---------------------------------------------------------------


def _is_act(v: Any) -> bool:
    """An activation: a Value computed from graph inputs (graph constants have data)."""
    return isinstance(v, Value) and not v.is_const


_INPLACE_FUNCTIONS = {operator.iadd, operator.isub, operator.imul, operator.itruediv, F.relu_, torch.relu_}


def _is_inplace(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    if node.kwargs.get("inplace") is True:
        return True
    if node.op == "call_method":
        t = str(node.target)
        return t.endswith("_") and not t.endswith("__")
    if node.op == "call_function":
        return node.target in _INPLACE_FUNCTIONS
    if node.op == "call_module":
        return getattr(modules[str(node.target)], "inplace", False) is True
    return False


def _has_act(obj: Any) -> bool:
    if _is_act(obj):
        return True
    if isinstance(obj, (tuple, list)):
        return any(_has_act(o) for o in obj)
    if isinstance(obj, dict):
        return any(_has_act(o) for o in obj.values())
    if isinstance(obj, slice):
        return _has_act((obj.start, obj.stop, obj.step))
    return False


def _leaves(obj: Any) -> Iterator[Any]:
    if isinstance(obj, (tuple, list)):
        for o in obj:
            yield from _leaves(o)
    elif isinstance(obj, dict):
        for o in obj.values():
            yield from _leaves(o)
    else:
        yield obj


def _caller_frame() -> str:
    """`file.py:LINE` of the innermost frame outside torch and this module."""
    f = sys._getframe(2)
    while f is not None:
        path = f.f_code.co_filename.replace("\\", "/")
        if "/torch/" not in path and path != _THIS_FILE:
            return f"{path.rsplit('/', 1)[-1]}:{f.f_lineno}"
        f = f.f_back
    return ""


_THIS_FILE = __file__.replace("\\", "/")


def _user_frame(node: fx.Node) -> str:
    return node.meta.get("micoc_frame", "")


def _qualname(target: Any) -> str:
    try:
        return fx.node._get_qualified_name(target)
    except Exception:
        return getattr(target, "__name__", repr(target))


REQ = object()


def _bind(args: Sequence[Any], kwargs: dict[str, Any], spec: Sequence[tuple[str, Any]]) -> dict[str, Any]:
    """Match positional/keyword arguments to a (name, default) signature."""
    names = [n for n, _ in spec]
    if len(args) > len(names):
        raise _Unsupported(f"{len(args)} positional arguments, expected at most {len(names)}")
    out = {n: d for n, d in spec}
    out.update(zip(names, args, strict=False))
    for k, v in kwargs.items():
        if k not in out:
            raise _Unsupported(f"unexpected argument '{k}'")
        out[k] = v
    missing = [n for n in names if out[n] is REQ]
    if missing:
        raise _Unsupported(f"missing argument(s) {', '.join(missing)}")
    return out


def _act(v: Any, what: str = "input") -> Value:
    if not _is_act(v):
        raise _Unsupported(f"{what} must be an activation tensor, got {type(v).__name__}")
    return v


def _static(v: Any, what: str) -> Any:
    """A Python value known at import time (ints, tuples, floats, None, strings)."""
    if _has_act(v) or isinstance(v, (Value, _Const)):
        raise _Unsupported(f"{what} must be a static value, not a tensor")
    return v


def _pair(v: Any, what: str) -> tuple[int, int]:
    v = _static(v, what)
    if isinstance(v, int) and not isinstance(v, bool):
        return (v, v)
    if isinstance(v, (tuple, list)) and len(v) == 1:
        return (int(v[0]), int(v[0]))
    if isinstance(v, (tuple, list)) and len(v) == 2:
        return (int(v[0]), int(v[1]))
    raise _Unsupported(f"{what} must be an int or a pair of ints, got {v!r}")


def _axis(dim: Any, rank: int) -> int:
    d = _static(dim, "dim")
    if not isinstance(d, int) or not -rank <= d < rank:
        raise _Unsupported(f"dim {d!r} out of range for rank {rank}")
    return d % rank


def _num(v: Any, what: str, default: float) -> float:
    v = _static(v, what)
    if v is None:
        return default
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    raise _Unsupported(f"{what} must be a number, got {v!r}")


# --------------------------------------------------------------------------
# Mappers. Function/method mappers take (ctx, node, args, kwargs) with the
# tensor as args[0] (methods get `self` there), so one mapper serves both
# `torch.relu(x)` and `x.relu()`. Module mappers also get the module.
# --------------------------------------------------------------------------

Mapper = Callable[[_Importer, fx.Node, tuple, dict], Any]
ModuleMapper = Callable[[_Importer, fx.Node, nn.Module, tuple, dict], Any]


# -- conv / linear / matmul ---------------------------------------------------


def _conv2d(ctx: _Importer, x: Value, w: Value, b: Value | None, stride: Any, padding: Any,
            dilation: Any, groups: Any, layer: str | None) -> Value:
    kh, kw = w.type.shape[2:] if w.type.rank == 4 else (0, 0)
    s, d = _pair(stride, "stride"), _pair(dilation, "dilation")
    padding = _static(padding, "padding")
    if padding == "valid":
        pad = (0, 0, 0, 0)
    elif padding == "same":
        # torch pads dilation*(k-1) in total, the odd one at the bottom/right.
        th, tw = d[0] * (kh - 1), d[1] * (kw - 1)
        pad = (th // 2, tw // 2, th - th // 2, tw - tw // 2)
    else:
        ph, pw = _pair(padding, "padding")
        pad = (ph, pw, ph, pw)
    operands = [x, w] + ([b] if b is not None else [])
    attrs = {"stride": s, "pad": pad, "dilation": d, "groups": int(_static(groups, "groups"))}
    return ctx.op("conv2d", operands, attrs, layer=layer)


def _m_conv2d(ctx: _Importer, node: fx.Node, mod: nn.Conv2d, args: tuple, kwargs: dict) -> Value:
    if mod.padding_mode != "zeros":
        raise _Unsupported(f"padding_mode '{mod.padding_mode}' (only zeros is supported)")
    (x,) = _bind(args, kwargs, [("input", REQ)]).values()
    q = str(node.target)
    w = ctx.param(f"{q}.weight", mod.weight)
    b = ctx.param(f"{q}.bias", mod.bias) if mod.bias is not None else None
    return _conv2d(ctx, _act(x), w, b, mod.stride, mod.padding, mod.dilation, mod.groups, ctx.layer_name(q))


def _f_conv2d(ctx: _Importer, node: fx.Node, args: tuple, kwargs: dict) -> Value:
    a = _bind(args, kwargs, [("input", REQ), ("weight", REQ), ("bias", None), ("stride", 1),
                             ("padding", 0), ("dilation", 1), ("groups", 1)])
    if _is_act(a["weight"]) or _is_act(a["bias"]):
        raise _Unsupported("weights computed from activations")
    w = ctx.operand(a["weight"], "weight")
    b = ctx.operand(a["bias"], "bias") if a["bias"] is not None else None
    return _conv2d(ctx, _act(a["input"]), w, b, a["stride"], a["padding"], a["dilation"], a["groups"], None)


def _m_linear(ctx: _Importer, node: fx.Node, mod: nn.Linear, args: tuple, kwargs: dict) -> Value:
    (x,) = _bind(args, kwargs, [("input", REQ)]).values()
    q = str(node.target)
    operands = [_act(x), ctx.param(f"{q}.weight", mod.weight)]
    if mod.bias is not None:
        operands.append(ctx.param(f"{q}.bias", mod.bias))
    return ctx.op("linear", operands, layer=ctx.layer_name(q))


def _f_linear(ctx: _Importer, node: fx.Node, args: tuple, kwargs: dict) -> Value:
    a = _bind(args, kwargs, [("input", REQ), ("weight", REQ), ("bias", None)])
    if _is_act(a["weight"]) or _is_act(a["bias"]):
        raise _Unsupported("weights computed from activations")
    operands = [_act(a["input"]), ctx.operand(a["weight"], "weight")]
    if a["bias"] is not None:
        operands.append(ctx.operand(a["bias"], "bias"))
    return ctx.op("linear", operands)


def _matmul(ctx: _Importer, node: fx.Node, args: tuple, kwargs: dict) -> Value:
    a = _bind(args, kwargs, [("input", REQ), ("other", REQ)])
    x, y = a["input"], a["other"]
    if _is_act(x) and _is_act(y):
        if x.type.rank < 2 or y.type.rank < 2:
            raise _Unsupported("matmul with a 1-D operand")
        return ctx.op("matmul", [x, y])
    if _is_act(x) and isinstance(y, _Const) and y.tensor.dim() == 2:
        # x @ W with a constant W [in, out] is a linear layer with weight W^T.
        w = ctx.const(y, transform=lambda arr: arr.T, suffix=".T")
        return ctx.op("linear", [x, w])
    raise _Unsupported("matmul needs two activations, or an activation times a 2-D constant")


# -- normalization --------------------------------------------------------------


def _m_batch_norm(ctx: _Importer, node: fx.Node, mod: nn.modules.batchnorm._BatchNorm,
                  args: tuple, kwargs: dict) -> Value:
    (x,) = _bind(args, kwargs, [("input", REQ)]).values()
    if mod.running_mean is None or mod.running_var is None:
        raise _Unsupported("track_running_stats=False uses batch statistics at inference")
    q = str(node.target)
    n = mod.num_features
    # affine=False: the exporters write explicit ones/zeros, so do we.
    w = mod.weight if mod.weight is not None else torch.ones(n)
    b = mod.bias if mod.bias is not None else torch.zeros(n)
    operands = [_act(x), ctx.param(f"{q}.weight", w), ctx.param(f"{q}.bias", b),
                ctx.param(f"{q}.running_mean", mod.running_mean),
                ctx.param(f"{q}.running_var", mod.running_var)]
    return ctx.op("batch_norm", operands, {"epsilon": float(mod.eps)})


def _f_batch_norm(ctx: _Importer, node: fx.Node, args: tuple, kwargs: dict) -> Value:
    a = _bind(args, kwargs, [("input", REQ), ("running_mean", REQ), ("running_var", REQ),
                             ("weight", None), ("bias", None), ("training", False),
                             ("momentum", 0.1), ("eps", 1e-5)])
    if _static(a["training"], "training"):
        raise _Unsupported("training=True uses batch statistics")
    x = _act(a["input"])
    n = x.type.shape[1]
    w = a["weight"] if a["weight"] is not None else _Const(torch.ones(n), f"{node.name}.weight")
    b = a["bias"] if a["bias"] is not None else _Const(torch.zeros(n), f"{node.name}.bias")
    operands = [x] + [ctx.operand(v, r) for v, r in ((w, "weight"), (b, "bias"),
                                                      (a["running_mean"], "mean"), (a["running_var"], "var"))]
    return ctx.op("batch_norm", operands, {"epsilon": _num(a["eps"], "eps", 1e-5)})


# -- activations ------------------------------------------------------------------


def _unary(opname: str) -> Mapper:
    def mapper(ctx: _Importer, node: fx.Node, args: tuple, kwargs: dict) -> Value:
        a = _bind(args, kwargs, [("input", REQ), ("inplace", False)])
        return ctx.op(opname, [_act(a["input"])])

    return mapper


def _clip(ctx: _Importer, x: Any, lo: Any, hi: Any) -> Value:
    return ctx.op("clip", [_act(x)], {"min": _num(lo, "min", -INF), "max": _num(hi, "max", INF)})


def _f_clamp(ctx: _Importer, node: fx.Node, args: tuple, kwargs: dict) -> Value:
    a = _bind(args, kwargs, [("input", REQ), ("min", None), ("max", None)])
    return _clip(ctx, a["input"], a["min"], a["max"])


def _f_clamp_min(ctx: _Importer, node: fx.Node, args: tuple, kwargs: dict) -> Value:
    a = _bind(args, kwargs, [("input", REQ), ("min", REQ)])
    return _clip(ctx, a["input"], a["min"], None)


def _f_clamp_max(ctx: _Importer, node: fx.Node, args: tuple, kwargs: dict) -> Value:
    a = _bind(args, kwargs, [("input", REQ), ("max", REQ)])
    return _clip(ctx, a["input"], None, a["max"])


def _f_relu6(ctx: _Importer, node: fx.Node, args: tuple, kwargs: dict) -> Value:
    a = _bind(args, kwargs, [("input", REQ), ("inplace", False)])
    return _clip(ctx, a["input"], 0.0, 6.0)


def _f_hardtanh(ctx: _Importer, node: fx.Node, args: tuple, kwargs: dict) -> Value:
    a = _bind(args, kwargs, [("input", REQ), ("min_val", -1.0), ("max_val", 1.0), ("inplace", False)])
    return _clip(ctx, a["input"], a["min_val"], a["max_val"])


def _softmax(ctx: _Importer, x: Any, dim: Any) -> Value:
    x = _act(x)
    if dim is None:
        # torch's legacy implicit dim (nn.Softmax() / F.softmax(x) without dim).
        dim = 0 if x.type.rank in (0, 1, 3) else 1
    return ctx.op("softmax", [x], {"axis": _axis(dim, x.type.rank)})


def _f_softmax(ctx: _Importer, node: fx.Node, args: tuple, kwargs: dict) -> Value:
    a = _bind(args, kwargs, [("input", REQ), ("dim", None), ("_stacklevel", 3), ("dtype", None)])
    if a["dtype"] not in (None, torch.float32):
        raise _Unsupported(f"dtype={a['dtype']}")
    return _softmax(ctx, a["input"], a["dim"])


def _alias(ctx: _Importer, node: fx.Node, args: tuple, kwargs: dict) -> Value:
    """Ops that are the identity at inference (contiguous, clone, detach, ...)."""
    return _act(args[0])


def _f_dropout(ctx: _Importer, node: fx.Node, args: tuple, kwargs: dict) -> Value:
    a = _bind(args, kwargs, [("input", REQ), ("p", 0.5), ("training", True), ("inplace", False)])
    if _static(a["training"], "training"):
        # F.dropout defaults to training=True: it would drop in eval too.
        raise _Unsupported("dropout with training=True is random at inference (pass training=self.training)")
    return _act(a["input"])


def _to(ctx: _Importer, node: fx.Node, args: tuple, kwargs: dict) -> Value:
    # .to(...)/.float()/.type(...) are no-ops when they keep float32 on CPU.
    ref = ctx.concrete(node)
    if not isinstance(ref, torch.Tensor) or ref.dtype != torch.float32:
        raise _Unsupported(f"conversion to {getattr(ref, 'dtype', type(ref).__name__)}")
    return _act(args[0])


# -- pooling ------------------------------------------------------------------------


def _pool_attrs(kernel: Any, stride: Any, padding: Any) -> dict[str, Any]:
    k = _pair(kernel, "kernel_size")
    stride = _static(stride, "stride")
    s = k if stride is None or stride == [] or stride == () else _pair(stride, "stride")
    ph, pw = _pair(padding, "padding")
    return {"kernel": k, "stride": s, "pad": (ph, pw, ph, pw)}


def _maxpool(ctx: _Importer, x: Any, kernel: Any, stride: Any, padding: Any, dilation: Any,
             ceil_mode: Any, return_indices: Any) -> Value:
    if _static(return_indices, "return_indices"):
        raise _Unsupported("return_indices=True")
    attrs = _pool_attrs(kernel, stride, padding)
    attrs["dilation"] = _pair(dilation, "dilation")
    attrs["ceil_mode"] = bool(_static(ceil_mode, "ceil_mode"))
    return ctx.op("maxpool", [_act(x)], attrs)


def _m_maxpool(ctx: _Importer, node: fx.Node, mod: nn.MaxPool2d, args: tuple, kwargs: dict) -> Value:
    (x,) = _bind(args, kwargs, [("input", REQ)]).values()
    return _maxpool(ctx, x, mod.kernel_size, mod.stride, mod.padding, mod.dilation, mod.ceil_mode,
                    mod.return_indices)


def _f_maxpool(ctx: _Importer, node: fx.Node, args: tuple, kwargs: dict) -> Value:
    a = _bind(args, kwargs, [("input", REQ), ("kernel_size", REQ), ("stride", None), ("padding", 0),
                             ("dilation", 1), ("ceil_mode", False), ("return_indices", False)])
    return _maxpool(ctx, a["input"], a["kernel_size"], a["stride"], a["padding"], a["dilation"],
                    a["ceil_mode"], a["return_indices"])


def _avgpool(ctx: _Importer, x: Any, kernel: Any, stride: Any, padding: Any, ceil_mode: Any,
             count_include_pad: Any, divisor_override: Any) -> Value:
    if _static(divisor_override, "divisor_override") is not None:
        raise _Unsupported("divisor_override")
    attrs = _pool_attrs(kernel, stride, padding)
    attrs["ceil_mode"] = bool(_static(ceil_mode, "ceil_mode"))
    # torch's default is count_include_pad=True (ONNX's is 0): pass it explicitly.
    attrs["count_include_pad"] = bool(_static(count_include_pad, "count_include_pad"))
    return ctx.op("avgpool", [_act(x)], attrs)


def _m_avgpool(ctx: _Importer, node: fx.Node, mod: nn.AvgPool2d, args: tuple, kwargs: dict) -> Value:
    (x,) = _bind(args, kwargs, [("input", REQ)]).values()
    return _avgpool(ctx, x, mod.kernel_size, mod.stride, mod.padding, mod.ceil_mode,
                    mod.count_include_pad, mod.divisor_override)


def _f_avgpool(ctx: _Importer, node: fx.Node, args: tuple, kwargs: dict) -> Value:
    a = _bind(args, kwargs, [("input", REQ), ("kernel_size", REQ), ("stride", None), ("padding", 0),
                             ("ceil_mode", False), ("count_include_pad", True), ("divisor_override", None)])
    return _avgpool(ctx, a["input"], a["kernel_size"], a["stride"], a["padding"], a["ceil_mode"],
                    a["count_include_pad"], a["divisor_override"])


def _adaptive_avgpool(ctx: _Importer, x: Any, output_size: Any) -> Value:
    x = _act(x)
    if x.type.rank != 4:
        raise _Unsupported(f"input of rank {x.type.rank}, expected NCHW")
    h, w = x.type.shape[2:]
    size = _static(output_size, "output_size")
    oh, ow = (size, size) if not isinstance(size, (tuple, list)) else tuple(size)
    oh, ow = h if oh is None else oh, w if ow is None else ow
    if (oh, ow) == (1, 1):
        return ctx.op("global_avgpool", [x])
    if h % oh or w % ow:
        # Windows of unequal size: no fixed-kernel equivalent.
        raise _Unsupported(f"output size {oh}x{ow} does not divide the input {h}x{w}")
    k = (h // oh, w // ow)
    return ctx.op("avgpool", [x], {"kernel": k, "stride": k})


def _m_adaptive_avgpool(ctx: _Importer, node: fx.Node, mod: nn.AdaptiveAvgPool2d, args: tuple,
                        kwargs: dict) -> Value:
    (x,) = _bind(args, kwargs, [("input", REQ)]).values()
    return _adaptive_avgpool(ctx, x, mod.output_size)


def _f_adaptive_avgpool(ctx: _Importer, node: fx.Node, args: tuple, kwargs: dict) -> Value:
    a = _bind(args, kwargs, [("input", REQ), ("output_size", REQ)])
    return _adaptive_avgpool(ctx, a["input"], a["output_size"])


def _mean(ctx: _Importer, node: fx.Node, args: tuple, kwargs: dict) -> Value:
    a = _bind(args, kwargs, [("input", REQ), ("dim", None), ("keepdim", False), ("dtype", None)])
    x = _act(a["input"])
    if a["dtype"] not in (None, torch.float32):
        raise _Unsupported(f"dtype={a['dtype']}")
    dim = _static(a["dim"], "dim")
    if dim is None:
        axes = list(range(x.type.rank))
    else:
        axes = sorted({_axis(d, x.type.rank) for d in (dim if isinstance(dim, (tuple, list)) else [dim])})
    return ctx.op("mean", [x], {"axes": axes, "keepdims": bool(_static(a["keepdim"], "keepdim"))})


# -- shape ops -------------------------------------------------------------------------


def _reshape(ctx: _Importer, node: fx.Node, args: tuple, kwargs: dict) -> Value:
    """flatten/view/reshape/squeeze/unsqueeze/view_as: all a reshape to a static shape.

    The target shape is the one torch computed on the example inputs, which
    resolves -1, start/end dims and `x.size(0)` arguments in one place.
    """
    x = _act(args[0])
    if any(isinstance(a, torch.dtype) for a in list(args[1:]) + list(kwargs.values())):
        raise _Unsupported("view as another dtype")
    ref = ctx.concrete(node)
    return ctx.op("reshape", [x], {"shape": tuple(int(d) for d in ref.shape)})


def _m_flatten(ctx: _Importer, node: fx.Node, mod: nn.Flatten, args: tuple, kwargs: dict) -> Value:
    return _reshape(ctx, node, args, kwargs)


def _permute(ctx: _Importer, node: fx.Node, args: tuple, kwargs: dict) -> Value:
    x = _act(args[0])
    dims = list(args[1:]) or [kwargs.get("dims")]
    if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
        dims = list(dims[0])
    perm = [_axis(d, x.type.rank) for d in dims]
    return ctx.op("transpose", [x], {"perm": perm})


def _transpose(ctx: _Importer, node: fx.Node, args: tuple, kwargs: dict) -> Value:
    a = _bind(args, kwargs, [("input", REQ), ("dim0", REQ), ("dim1", REQ)])
    x = _act(a["input"])
    perm = list(range(x.type.rank))
    d0, d1 = _axis(a["dim0"], x.type.rank), _axis(a["dim1"], x.type.rank)
    perm[d0], perm[d1] = perm[d1], perm[d0]
    return ctx.op("transpose", [x], {"perm": perm})


def _t(ctx: _Importer, node: fx.Node, args: tuple, kwargs: dict) -> Value:
    x = _act(args[0])
    if x.type.rank < 2:
        return x
    return ctx.op("transpose", [x], {"perm": list(range(x.type.rank))[::-1]})


def _cat(ctx: _Importer, node: fx.Node, args: tuple, kwargs: dict) -> Value:
    dim_name = "axis" if "axis" in kwargs else "dim"
    a = _bind(args, kwargs, [("tensors", REQ), (dim_name, 0)])
    xs = [ctx.operand(t, f"xs{i}") for i, t in enumerate(_static_list(a["tensors"]))]
    return ctx.op("concat", xs, {"axis": _axis(a[dim_name], xs[0].type.rank)})


def _static_list(v: Any) -> list[Any]:
    if not isinstance(v, (tuple, list)):
        raise _Unsupported("expected a list of tensors")
    return list(v)


def _slices(ctx: _Importer, x: Value, dim: int, bounds: list[tuple[int, int]]) -> tuple[Value, ...]:
    return tuple(ctx.op("slice", [x], {"starts": [s], "ends": [e], "axes": [dim], "steps": [1]})
                 for s, e in bounds)


def _chunk(ctx: _Importer, node: fx.Node, args: tuple, kwargs: dict) -> tuple[Value, ...]:
    a = _bind(args, kwargs, [("input", REQ), ("chunks", REQ), ("dim", 0)])
    x = _act(a["input"])
    dim = _axis(a["dim"], x.type.rank)
    n, chunks = x.type.shape[dim], int(_static(a["chunks"], "chunks"))
    size = -(-n // chunks)  # torch: ceil(n / chunks) per chunk, possibly fewer chunks
    return _slices(ctx, x, dim, [(s, min(s + size, n)) for s in range(0, n, size)])


def _split(ctx: _Importer, node: fx.Node, args: tuple, kwargs: dict) -> tuple[Value, ...]:
    name = "split_size" if "split_size" in kwargs else "split_size_or_sections"
    a = _bind(args, kwargs, [("input", REQ), (name, REQ), ("dim", 0)])
    x = _act(a["input"])
    dim = _axis(a["dim"], x.type.rank)
    n, sizes = x.type.shape[dim], _static(a[name], "split sizes")
    if isinstance(sizes, int):
        sizes = [min(sizes, n - s) for s in range(0, n, sizes)]
    bounds, s = [], 0
    for k in sizes:
        bounds.append((s, s + int(k)))
        s += int(k)
    return _slices(ctx, x, dim, bounds)


def _getitem(ctx: _Importer, node: fx.Node, args: tuple, kwargs: dict) -> Any:
    obj, idx = args
    if not isinstance(obj, Value):
        # Indexing a Python container (e.g. the tuple from chunk/split).
        return operator.getitem(obj, _static(idx, "index"))
    x = _act(obj)
    idx = idx if isinstance(idx, tuple) else (idx,)
    _static(idx, "index")
    if sum(i is Ellipsis for i in idx) > 1:
        raise _Unsupported("more than one Ellipsis")
    n_axes = sum(1 for i in idx if i is not None and i is not Ellipsis)
    if n_axes > x.type.rank:
        raise _Unsupported("too many indices")
    if Ellipsis in idx:
        k = idx.index(Ellipsis)
        idx = idx[:k] + (slice(None),) * (x.type.rank - n_axes) + idx[k + 1:]
    # Left to right, one op per index item, as torch (and so both exporters)
    # apply them: None -> unsqueeze, int -> select, slice -> one Slice per axis.
    out, axis = x, 0
    for i in idx:
        shape = list(out.type.shape)
        if i is None:
            shape.insert(axis, 1)
            out = ctx.op("reshape", [out], {"shape": shape})
            axis += 1
        elif isinstance(i, int) and not isinstance(i, bool):
            dim = shape[axis]
            if not -dim <= i < dim:
                raise _Unsupported(f"index {i} out of range for dim {axis} of size {dim}")
            out = ctx.op("slice", [out], {"starts": [i % dim], "ends": [i % dim + 1], "axes": [axis], "steps": [1]})
            del shape[axis]
            out = ctx.op("reshape", [out], {"shape": shape})
        elif isinstance(i, slice):
            start, stop, step = i.indices(shape[axis])
            if step <= 0:
                raise _Unsupported("non-positive slice step")
            if (start, stop, step) != (0, shape[axis], 1):
                out = ctx.op("slice", [out], {"starts": [start], "ends": [stop], "axes": [axis], "steps": [step]})
            axis += 1
        else:
            raise _Unsupported(f"index of type {type(i).__name__}")
    return out


def _getattr(ctx: _Importer, node: fx.Node, args: tuple, kwargs: dict) -> Any:
    obj, attr = args
    if attr in ("shape", "ndim", "dtype", "device", "is_cuda", "requires_grad", "is_quantized"):
        return ctx.concrete(node)
    if attr == "T" and _is_act(obj):
        return _t(ctx, node, (obj,), {})  # reverses all axes
    if attr == "mT" and _is_act(obj) and obj.type.rank >= 2:
        return _transpose(ctx, node, (obj, -2, -1), {})
    raise _Unsupported(f"attribute '{attr}'")


def _shape_query(ctx: _Importer, node: fx.Node, args: tuple, kwargs: dict) -> Any:
    """size(), dim(), numel(), len(x): static, so the recorded value."""
    return ctx.concrete(node)


# -- element-wise arithmetic -------------------------------------------------------------


def _binary(opname: str) -> Mapper:
    def mapper(ctx: _Importer, node: fx.Node, args: tuple, kwargs: dict) -> Value:
        a = _bind(args, kwargs, [("input", REQ), ("other", REQ), ("alpha", 1), ("rounding_mode", None)])
        if _static(a["alpha"], "alpha") != 1:
            raise _Unsupported("alpha != 1")
        if _static(a["rounding_mode"], "rounding_mode") is not None:
            raise _Unsupported(f"rounding_mode={a['rounding_mode']!r}")
        return ctx.op(opname, [ctx.operand(a["input"], "x"), ctx.operand(a["other"], "y")])

    return mapper


def _neg(ctx: _Importer, node: fx.Node, args: tuple, kwargs: dict) -> Value:
    # No neg op in the IR: -x = x * -1.
    return ctx.op("mul", [_act(args[0]), ctx.operand(-1.0, "y")])


# --------------------------------------------------------------------------
# Dispatch tables
# --------------------------------------------------------------------------


def _m_unary(opname: str) -> ModuleMapper:
    def mapper(ctx: _Importer, node: fx.Node, mod: nn.Module, args: tuple, kwargs: dict) -> Value:
        (x,) = _bind(args, kwargs, [("input", REQ)]).values()
        return ctx.op(opname, [_act(x)])

    return mapper


def _m_alias(ctx: _Importer, node: fx.Node, mod: nn.Module, args: tuple, kwargs: dict) -> Value:
    (x,) = _bind(args, kwargs, [("input", REQ)]).values()
    return _act(x)


def _m_clip(ctx: _Importer, node: fx.Node, mod: nn.Hardtanh, args: tuple, kwargs: dict) -> Value:
    (x,) = _bind(args, kwargs, [("input", REQ)]).values()
    return _clip(ctx, x, mod.min_val, mod.max_val)  # ReLU6 is Hardtanh(0, 6)


def _m_softmax(ctx: _Importer, node: fx.Node, mod: nn.Softmax, args: tuple, kwargs: dict) -> Value:
    (x,) = _bind(args, kwargs, [("input", REQ)]).values()
    return _softmax(ctx, x, mod.dim)


MODULES: dict[type[nn.Module], ModuleMapper] = {
    nn.Conv2d: _m_conv2d,
    nn.Linear: _m_linear,
    nn.BatchNorm1d: _m_batch_norm,
    nn.BatchNorm2d: _m_batch_norm,
    nn.ReLU: _m_unary("relu"),
    nn.Hardtanh: _m_clip,  # nn.ReLU6 subclasses it without overriding forward
    nn.Sigmoid: _m_unary("sigmoid"),
    nn.Softmax: _m_softmax,
    nn.Dropout: _m_alias,
    nn.Dropout1d: _m_alias,
    nn.Dropout2d: _m_alias,
    nn.AlphaDropout: _m_alias,
    nn.Identity: _m_alias,
    nn.MaxPool2d: _m_maxpool,
    nn.AvgPool2d: _m_avgpool,
    nn.AdaptiveAvgPool2d: _m_adaptive_avgpool,
    nn.Flatten: _m_flatten,
}

_add, _sub, _mul, _div = (_binary(n) for n in ("add", "sub", "mul", "div"))
_relu, _sigmoid = _unary("relu"), _unary("sigmoid")

FUNCTIONS: dict[Callable[..., Any], Mapper] = {
    # conv / linear / matmul
    F.conv2d: _f_conv2d, torch.conv2d: _f_conv2d,
    F.linear: _f_linear,
    torch.matmul: _matmul, operator.matmul: _matmul, torch.mm: _matmul, torch.bmm: _matmul,
    # normalization
    F.batch_norm: _f_batch_norm,
    # activations
    F.relu: _relu, torch.relu: _relu, F.relu_: _relu, torch.relu_: _relu,
    F.relu6: _f_relu6, F.hardtanh: _f_hardtanh,
    torch.clamp: _f_clamp, torch.clip: _f_clamp, torch.clamp_min: _f_clamp_min, torch.clamp_max: _f_clamp_max,
    torch.sigmoid: _sigmoid, F.sigmoid: _sigmoid,
    F.softmax: _f_softmax, torch.softmax: _f_softmax,
    F.dropout: _f_dropout, torch.clone: _alias, torch.detach: _alias,
    # pooling
    F.max_pool2d: _f_maxpool, torch.max_pool2d: _f_maxpool,
    F.avg_pool2d: _f_avgpool,
    F.adaptive_avg_pool2d: _f_adaptive_avgpool,
    torch.mean: _mean,
    # shapes
    torch.flatten: _reshape, torch.reshape: _reshape, torch.squeeze: _reshape, torch.unsqueeze: _reshape,
    torch.permute: _permute, torch.transpose: _transpose, torch.swapaxes: _transpose, torch.t: _t,
    torch.cat: _cat, torch.concat: _cat, torch.concatenate: _cat,
    torch.chunk: _chunk, torch.split: _split,
    operator.getitem: _getitem, builtins.getattr: _getattr, builtins.len: _shape_query,
    torch.numel: _shape_query,
    # arithmetic
    operator.add: _add, operator.iadd: _add, torch.add: _add,
    operator.sub: _sub, operator.isub: _sub, torch.sub: _sub, torch.subtract: _sub,
    operator.mul: _mul, operator.imul: _mul, torch.mul: _mul, torch.multiply: _mul,
    operator.truediv: _div, operator.itruediv: _div, torch.div: _div, torch.divide: _div, torch.true_divide: _div,
    operator.neg: _neg, torch.neg: _neg,
}

METHODS: dict[str, Mapper] = {
    "matmul": _matmul, "mm": _matmul, "bmm": _matmul,
    "relu": _relu, "relu_": _relu, "sigmoid": _sigmoid, "sigmoid_": _sigmoid,
    "clamp": _f_clamp, "clamp_": _f_clamp, "clip": _f_clamp, "clip_": _f_clamp,
    "clamp_min": _f_clamp_min, "clamp_min_": _f_clamp_min, "clamp_max": _f_clamp_max, "clamp_max_": _f_clamp_max,
    "softmax": _f_softmax,
    "contiguous": _alias, "clone": _alias, "detach": _alias,
    "float": _to, "to": _to, "type": _to,
    "mean": _mean,
    "flatten": _reshape, "view": _reshape, "reshape": _reshape, "view_as": _reshape, "reshape_as": _reshape,
    "squeeze": _reshape, "unsqueeze": _reshape, "squeeze_": _reshape, "unsqueeze_": _reshape,
    "permute": _permute, "transpose": _transpose, "swapaxes": _transpose, "t": _t,
    "chunk": _chunk, "split": _split,
    "size": _shape_query, "dim": _shape_query, "ndimension": _shape_query, "numel": _shape_query,
    "nelement": _shape_query,
    "add": _add, "add_": _add, "sub": _sub, "sub_": _sub, "mul": _mul, "mul_": _mul,
    "div": _div, "div_": _div, "neg": _neg,
}


def _module_mapper(m: nn.Module) -> ModuleMapper | None:
    """The mapper for `m`'s class, or for a base class whose forward it inherits."""
    for base in type(m).__mro__:
        fn = MODULES.get(base)
        if fn is not None:
            return fn if type(m).forward is base.forward else None
    return None

