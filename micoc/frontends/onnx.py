"""ONNX -> micoc IR.

`import_onnx` reads a model (file or ModelProto) and builds a float Graph
with micoc's own shape inference (ONNX value_info is never trusted).

How the import works:

- Every tensor is either *constant* (initializers, Constant nodes, anything
  computed only from constants, and shapes, which are static) or *dynamic*
  (a graph input or the result of an emitted op). Constants are held as numpy
  arrays and only become graph constants when an emitted op reads them, so
  shape arithmetic (Shape -> Gather -> Concat -> Reshape) leaves no trace.
- A node whose inputs are all constant is folded by evaluating that single
  node with onnx's ReferenceEvaluator; other nodes go through one mapping
  function per op type (`_MAPPERS`).
- Unsupported nodes do not stop the import: their outputs are marked
  poisoned, nodes reading them are skipped, and ONE UnsupportedError at the
  end lists every unsupported node.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnx.inliner
from onnx import TensorProto, helper, numpy_helper

from micoc.errors import InputError, MicocError, UnsupportedError, VerificationError
from micoc.ir.builder import GraphBuilder
from micoc.ir.graph import Graph, Value
from micoc.ir.ops import get_op
from micoc.ir.types import TensorType

__all__ = ["import_onnx", "SUPPORTED_OPS"]

# Generic graph names the torch exporters write; the file name says more.
_GENERIC_GRAPH_NAMES = {"", "main_graph", "torch_jit", "torch-jit-export", "graph", "model"}

# Never folded even when all inputs are constant: results differ run to run,
# or the node carries subgraphs that may read outer-scope values.
_NO_FOLD = {
    "RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike",
    "Bernoulli", "Multinomial", "If", "Loop", "Scan", "SequenceMap",
}


class _Unsupported(Exception):
    """A node micoc cannot import (raised by a mapper, collected by the importer)."""


# ---------------------------------------------------------------------------
# Public entry point
# ---------------------------------------------------------------------------


def import_onnx(path_or_model: str | os.PathLike[str] | onnx.ModelProto, *, name: str | None = None) -> Graph:
    """Import an ONNX model (a file path or an in-memory ModelProto) as a micoc Graph.

    Raises InputError for unreadable or malformed models (and shape errors,
    naming the node), UnsupportedError listing every node micoc cannot import.
    """
    if isinstance(path_or_model, onnx.ModelProto):
        model, where, base_dir, stem = path_or_model, None, os.getcwd(), None
    else:
        path = Path(path_or_model)
        where = str(path)
        model = _load(path)
        base_dir, stem = str(path.resolve().parent), path.stem
    _check_external_data(model, base_dir, where)
    graph_name = name or _graph_name(model, stem)
    if model.functions:
        # Model-local functions (e.g. unoptimized dynamo exports): inline them
        # so every node is a standard op.
        try:
            model = onnx.inliner.inline_local_functions(model)
        except Exception as e:  # noqa: BLE001 - a broken function body is bad input
            raise InputError(f"cannot inline the model's local functions: {e}", where) from None
    return _Importer(model, graph_name, base_dir, where).run()


def _load(path: Path) -> onnx.ModelProto:
    where = str(path)
    if not path.exists():
        raise InputError("no such file", where)
    if not path.is_file():
        raise InputError("not a file (expected an .onnx model)", where)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise InputError(f"cannot read the file: {e.strerror or e}", where) from None
    if not data:
        raise InputError("the file is empty, not an ONNX model", where)
    try:
        # External data is read per tensor later (numpy_helper.to_array with the
        # model's directory), which avoids copying big weights into the proto.
        model = onnx.load_model_from_string(data)
    except Exception as e:  # protobuf raises DecodeError or RuntimeError; both mean "not ONNX"
        raise InputError(
            f"not a valid ONNX model (protobuf decoding failed: {type(e).__name__}); "
            "the file may be truncated or in another format",
            where,
        ) from None
    # A random file sometimes decodes as a protobuf with garbage fields; a
    # real model has an IR version, a graph and at least one output.
    if model.ir_version <= 0 or not model.HasField("graph") or not model.graph.output:
        raise InputError(
            "not an ONNX model (no IR version or no graph with outputs); "
            "the file may be truncated or in another format",
            where,
        )
    return model


def _check_external_data(model: onnx.ModelProto, base_dir: str, where: str | None) -> None:
    """Fail early, naming the file, when an external data file is missing."""
    for t in _all_tensors(model):
        if t.data_location != TensorProto.EXTERNAL:
            continue
        info = {e.key: e.value for e in t.external_data}
        loc = info.get("location", "")
        full = os.path.join(base_dir, loc)
        if not loc or not os.path.isfile(full):
            raise InputError(
                f"external data file '{loc}' of tensor '{t.name}' not found (looked in {base_dir})",
                where,
            )


def _all_tensors(model: onnx.ModelProto) -> list[TensorProto]:
    out = list(model.graph.initializer)
    for node in model.graph.node:
        for a in node.attribute:
            if a.type == onnx.AttributeProto.TENSOR:
                out.append(a.t)
    return out


def _graph_name(model: onnx.ModelProto, stem: str | None) -> str:
    gname = model.graph.name
    if gname and gname not in _GENERIC_GRAPH_NAMES:
        return gname
    return stem or gname or "model"


# ---------------------------------------------------------------------------
# Per-node context handed to the mapping functions
# ---------------------------------------------------------------------------


class _Node:
    """One ONNX node being imported: typed access to its inputs, attributes and outputs."""

    def __init__(self, imp: _Importer, node: onnx.NodeProto, loc: str) -> None:
        self.imp = imp
        self.proto = node
        self.op_type = node.op_type
        self.loc = loc
        self.opset = imp.opset
        self.inputs = list(node.input)
        self.outputs = list(node.output)
        self.attrs: dict[str, Any] = {a.name: _attr_value(a) for a in node.attribute}

    # -- inputs ----------------------------------------------------------------
    def has(self, i: int) -> bool:
        return i < len(self.inputs) and self.inputs[i] != ""

    def is_const(self, i: int) -> bool:
        return self.has(i) and self.inputs[i] in self.imp.consts

    def const(self, i: int, what: str = "") -> np.ndarray:
        """Input i as a constant array (unsupported if it is computed at run time)."""
        if not self.is_const(i):
            raise _Unsupported(f"{what or f'input #{i}'} must be a constant")
        return self.imp.consts[self.inputs[i]]

    def value(self, i: int) -> Value:
        """Input i as an IR value: a dynamic tensor or a (materialized, f32) constant."""
        name = self.inputs[i]
        if name in self.imp.values:
            return self.imp.values[name]
        return self.imp.const_value(name)

    def dyn(self, i: int) -> Value:
        """Input i, which this mapping expects to be computed at run time."""
        name = self.inputs[i]
        if name not in self.imp.values:  # only reachable when another input is dynamic
            return self.imp.const_value(name)
        return self.imp.values[name]

    def attr(self, key: str, default: Any = None) -> Any:
        return self.attrs.get(key, default)

    # -- outputs ---------------------------------------------------------------
    def output_used(self, i: int) -> bool:
        return i < len(self.outputs) and self.outputs[i] != "" and self.outputs[i] in self.imp.used

    def set(self, i: int, v: Value) -> None:
        self.imp.values[self.outputs[i]] = v

    def set_const(self, i: int, arr: np.ndarray) -> None:
        self.imp.consts[self.outputs[i]] = arr

    def alias(self, i_in: int = 0, i_out: int = 0) -> None:
        """Output i_out is input i_in (Identity, Dropout, no-op casts): no op emitted."""
        src = self.inputs[i_in]
        dst = self.outputs[i_out]
        if src in self.imp.values:
            self.imp.values[dst] = self.imp.values[src]
        else:
            self.imp.consts[dst] = self.imp.consts[src]

    def only_first_output(self) -> None:
        for i in range(1, len(self.outputs)):
            if self.output_used(i):
                raise _Unsupported(f"output #{i} ('{self.outputs[i]}') is not supported")

    # -- emitting --------------------------------------------------------------
    def emit(self, opname: str, operands: Sequence[Value], attrs: dict[str, Any] | None = None) -> Value:
        layer = self.imp.layer_name(self, opname) if get_op(opname).is_layer else None
        return self.imp.builder.op(opname, list(operands), attrs or {}, loc=self.loc, layer=layer)

    def new_const(self, base: str, arr: np.ndarray) -> Value:
        """A graph constant for an array derived at import (transposed weight, scaled bias)."""
        return self.imp.builder.const(base or self.loc, _as_f32(arr))

    def reshape(self, v: Value, shape: Sequence[int]) -> Value:
        if tuple(shape) == v.type.shape:
            return v
        return self.emit("reshape", [v], {"shape": [int(d) for d in shape]})


def _attr_value(a: onnx.AttributeProto) -> Any:
    v = helper.get_attribute_value(a)
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    return v


def _as_f32(arr: np.ndarray) -> np.ndarray:
    return arr if arr.dtype == np.float32 else np.asarray(arr, dtype=np.float32)


# ---------------------------------------------------------------------------
# The importer
# ---------------------------------------------------------------------------


class _Importer:
    def __init__(self, model: onnx.ModelProto, graph_name: str, base_dir: str, where: str | None) -> None:
        self.model = model
        self.g = model.graph
        self.where = where
        self.base_dir = base_dir
        self.opset = _default_opset(model)
        self.opsets = {(d.domain or ""): d.version for d in model.opset_import}
        self.builder = GraphBuilder(graph_name)
        self.consts: dict[str, np.ndarray] = {}  # constant tensors by ONNX name
        self.values: dict[str, Value] = {}  # run-time tensors by ONNX name
        self.sequences: dict[str, list[Value]] = {}  # tensor sequences (SplitToSequence) by name
        self._const_values: dict[str, Value] = {}  # constants already in the graph
        self.poisoned: set[str] = set()
        self.unsupported: list[str] = []  # "<OpType> '<loc>': why", one per node
        self.unsupported_inputs: list[str] = []
        self.used: set[str] = {i for n in self.g.node for i in n.input} | {o.name for o in self.g.output}
        self._name_counts = Counter(n.name for n in self.g.node if n.name)
        self._layer_names: set[str] = set()

    # -- driver ------------------------------------------------------------------
    def run(self) -> Graph:
        self._read_initializers()
        self._read_inputs()
        for idx, node in enumerate(self.g.node):
            self._import_node(node, node.name or f"{node.op_type}_{idx}")
        if self.unsupported or self.unsupported_inputs:
            counts = []
            if self.unsupported_inputs:
                counts.append(f"{len(self.unsupported_inputs)} unsupported graph input(s)")
            if self.unsupported:
                counts.append(f"{len(self.unsupported)} unsupported node(s)")
            lines = "\n  ".join(self.unsupported_inputs + self.unsupported)
            raise UnsupportedError(f"{' and '.join(counts)}:\n  {lines}", self.where)
        outs = []
        for o in self.g.output:
            if o.name in self.values:
                outs.append(self.values[o.name])
            elif o.name in self.consts:
                outs.append(self._output_const(o.name))
            else:
                raise InputError(f"graph output '{o.name}' is not produced by any node", self.where)
        self.builder.output(*outs)
        return self.builder.graph

    def _read_initializers(self) -> None:
        for t in self.g.initializer:
            try:
                self.consts[t.name] = numpy_helper.to_array(t, self.base_dir)
            except Exception as e:  # bad dtype/size in the proto
                raise InputError(f"cannot read initializer '{t.name}': {e}", self.where) from None

    def _read_inputs(self) -> None:
        for vi in self.g.input:
            if vi.name in self.consts:  # old-style models list initializers as inputs
                continue
            try:
                shape = self._input_shape(vi)
            except _Unsupported as e:
                # Reported with the unsupported nodes, all in one error; nodes
                # reading this input are skipped.
                self.unsupported_inputs.append(f"graph input '{vi.name}' {e}")
                self.poisoned.add(vi.name)
                continue
            self.values[vi.name] = self.builder.input(vi.name, TensorType(shape, "f32"))

    def _input_shape(self, vi: onnx.ValueInfoProto) -> tuple[int, ...]:
        if not vi.type.HasField("tensor_type"):
            raise _Unsupported("is not a tensor")
        tt = vi.type.tensor_type
        if tt.elem_type != TensorProto.FLOAT:
            dt = TensorProto.DataType.Name(tt.elem_type)
            raise _Unsupported(f"has element type {dt}; micoc imports float32 models only")
        if not tt.HasField("shape"):
            raise InputError(f"graph input '{vi.name}' has no shape", self.where)
        shape = []
        for i, d in enumerate(tt.shape.dim):
            if d.HasField("dim_value"):
                shape.append(int(d.dim_value))
            elif i == 0:
                shape.append(1)  # dynamic batch: micoc graphs run one sample (DESIGN §1)
            else:
                raise _Unsupported(
                    f"has a symbolic dimension '{d.dim_param or '?'}' at axis {i}; "
                    "only the batch dimension (axis 0) may be dynamic"
                )
        return tuple(shape)

    def _import_node(self, node: onnx.NodeProto, loc: str) -> None:
        ins = [i for i in node.input if i]
        if any(i in self.poisoned for i in ins):
            # Downstream of an unsupported node: it cannot be built, but an
            # unknown op type here is still reported (every unsupported node at once).
            if node.domain not in ("", "ai.onnx") or node.op_type not in _MAPPERS:
                self.unsupported.append(f"{node.op_type} '{loc}': operator is not supported")
            self.poisoned.update(node.output)
            return
        for i in ins:
            if i not in self.values and i not in self.consts and i not in self.sequences:
                raise InputError(f"node '{loc}' ({node.op_type}) reads '{i}', which no node produces", self.where)
        try:
            if node.domain not in ("", "ai.onnx"):
                raise _Unsupported(f"operator domain '{node.domain}' is not supported")
            n = _Node(self, node, loc)
            if node.op_type in _ALIASES:
                _MAPPERS[node.op_type](n)
            elif all(i in self.consts for i in ins) and node.op_type not in _NO_FOLD:
                self._fold(n)
            elif node.op_type in _MAPPERS:
                _MAPPERS[node.op_type](n)
            else:
                raise _Unsupported("operator is not supported")
        except _Unsupported as e:
            self.unsupported.append(f"{node.op_type} '{loc}': {e}")
            self.poisoned.update(node.output)
        except (VerificationError, InputError) as e:  # shape inference or a mapper rejected the node
            raise InputError(f"node '{loc}' ({node.op_type}): {e.message}", self.where) from None
        except MicocError:
            raise
        except (ValueError, TypeError, IndexError, KeyError, ZeroDivisionError) as e:
            # Malformed attributes or inputs (numpy/onnx complain): name the node.
            raise InputError(f"node '{loc}' ({node.op_type}): {type(e).__name__}: {e}", self.where) from e

    # -- constants ---------------------------------------------------------------
    def _fold(self, n: _Node) -> None:
        """Evaluate a node whose inputs are all constant with the ONNX reference evaluator."""
        if n.op_type == "Constant" and "value" in n.attrs:
            # Fast path (no evaluator) for the common form; big constants stay uncopied.
            n.set_const(0, numpy_helper.to_array(_find_attr(n.proto, "value").t, self.base_dir))
            return
        from onnx.reference import ReferenceEvaluator

        feeds = {i: self.consts[i] for i in n.inputs if i}
        try:
            ref = ReferenceEvaluator(n.proto, opsets=self.opsets or {"": self.opset})
            results = ref.run(None, feeds)
        except Exception as e:  # the reference evaluator lacks the op or rejects the inputs
            raise _Unsupported(f"cannot evaluate this constant node ({type(e).__name__}: {e})") from None
        outs = [o for o in n.outputs if o]
        for name, r in zip(outs, results, strict=False):
            if not isinstance(r, np.ndarray):
                if np.isscalar(r):
                    r = np.asarray(r)
                else:
                    raise _Unsupported(f"constant output '{name}' is not a tensor")
            self.consts[name] = r

    def const_value(self, name: str) -> Value:
        """The graph constant (f32) for ONNX constant `name`, created on first use."""
        v = self._const_values.get(name)
        if v is None:
            v = self.builder.const(_const_name(name), _as_f32(self.consts[name]))
            self._const_values[name] = v
        return v

    def _output_const(self, name: str) -> Value:
        arr = self.consts[name]
        if arr.dtype.kind == "f":
            return self.const_value(name)
        if arr.dtype.kind not in "iub":
            raise UnsupportedError(f"graph output '{name}' has dtype {arr.dtype}", self.where)
        data = arr.astype(np.int64 if arr.dtype == np.int64 else np.int32)
        return self.builder.const(_const_name(name), data)

    # -- names -------------------------------------------------------------------
    def layer_name(self, n: _Node, opname: str) -> str:
        """DESIGN §4: the ONNX node name when present and unique, else `<op>_<n>`."""
        nm = n.proto.name
        if nm and self._name_counts[nm] == 1 and nm not in self._layer_names:
            self._layer_names.add(nm)
            return nm
        fresh = self.builder.fresh_layer_name(opname)
        while fresh in self._layer_names:  # a later node may be literally named "conv2d_0"
            fresh = self.builder.fresh_layer_name(opname)
        self._layer_names.add(fresh)
        return fresh


def _find_attr(node: onnx.NodeProto, key: str) -> onnx.AttributeProto:
    for a in node.attribute:
        if a.name == key:
            return a
    raise KeyError(key)


def _const_name(name: str) -> str:
    return name or "const"


def _default_opset(model: onnx.ModelProto) -> int:
    for d in model.opset_import:
        if d.domain in ("", "ai.onnx"):
            return int(d.version)
    return 1


# ---------------------------------------------------------------------------
# Helpers shared by mappings
# ---------------------------------------------------------------------------


def _norm_axis(axis: int, rank: int) -> int:
    if not -rank <= axis < rank:
        raise _Unsupported(f"axis {axis} is out of range for rank {rank}")
    return axis % rank


def _ints(arr: Any) -> list[int]:
    return [int(x) for x in np.asarray(arr).reshape(-1)]


def _window_pads(
    n: _Node, spatial: Sequence[int], kernel: Sequence[int], strides: Sequence[int], dilations: Sequence[int]
) -> list[int]:
    """ONNX pads (begin..., end...) for a window op, resolving auto_pad."""
    rank = len(spatial)
    auto = n.attr("auto_pad", "NOTSET")
    if auto in ("NOTSET", ""):
        pads = list(n.attr("pads", [0] * (2 * rank)))
        if len(pads) != 2 * rank:
            raise _Unsupported(f"pads {pads} do not match {rank} spatial dims")
        return [int(p) for p in pads]
    if auto == "VALID":
        return [0] * (2 * rank)
    if auto not in ("SAME_UPPER", "SAME_LOWER"):
        raise _Unsupported(f"auto_pad={auto!r}")
    begin, end = [], []
    for size, k, s, d in zip(spatial, kernel, strides, dilations, strict=True):
        out = -(-size // s)
        total = max(0, (out - 1) * s + (k - 1) * d + 1 - size)
        small, big = total // 2, total - total // 2
        # SAME_UPPER puts the extra padding at the end, SAME_LOWER at the beginning.
        b, e = (small, big) if auto == "SAME_UPPER" else (big, small)
        begin.append(b)
        end.append(e)
    return begin + end


def _lift_1d(n: _Node, x: Value) -> tuple[Value, bool]:
    """1-D window ops run as 2-D ones over [N, C, 1, W]."""
    if x.type.rank == 3:
        nb, c, w = x.type.shape
        return n.reshape(x, [nb, c, 1, w]), True
    if x.type.rank != 4:
        raise _Unsupported(f"{x.type.rank - 2}-D windows are not supported (only 1-D and 2-D)")
    return x, False


def _to_2d(vals: Sequence[int], fill: int) -> list[int]:
    return [fill] + list(vals) if len(vals) == 1 else list(vals)


def _pads_2d(pads: Sequence[int]) -> list[int]:
    """ONNX [begin..., end...] -> micoc [top, left, bottom, right] (1-D gets 0 on H)."""
    if len(pads) == 2:
        return [0, pads[0], 0, pads[1]]
    return [pads[0], pads[1], pads[2], pads[3]]


# ---------------------------------------------------------------------------
# One mapping function per ONNX op type
# ---------------------------------------------------------------------------


def _conv(n: _Node) -> None:
    x, lifted = _lift_1d(n, n.dyn(0))
    w = n.const(1, "the weight (input #1)")
    if w.ndim != len(n.value(0).type.shape):
        raise _Unsupported(f"weight rank {w.ndim} does not match input rank {n.value(0).type.rank}")
    kernel = list(w.shape[2:])
    if "kernel_shape" in n.attrs and list(n.attrs["kernel_shape"]) != kernel:
        raise _Unsupported(f"kernel_shape {n.attrs['kernel_shape']} differs from the weight's {kernel}")
    rank = len(kernel)
    strides = list(n.attr("strides", [1] * rank))
    dil = list(n.attr("dilations", [1] * rank))
    spatial = list(n.value(0).type.shape[2:])
    pads = _window_pads(n, spatial, kernel, strides, dil)
    wv = n.value(1) if not lifted else n.new_const(n.inputs[1], w.reshape(w.shape[0], w.shape[1], 1, w.shape[2]))
    operands = [x, wv]
    if n.has(2):
        n.const(2, "the bias (input #2)")
        operands.append(n.value(2))
    y = n.emit("conv2d", operands, {
        "stride": _to_2d(strides, 1), "pad": _pads_2d(pads), "dilation": _to_2d(dil, 1),
        "groups": int(n.attr("group", 1)), "act": "none",
    })
    if lifted:
        s = y.type.shape
        y = n.reshape(y, [s[0], s[1], s[3]])
    n.set(0, y)


def _pool(n: _Node, kind: str) -> None:
    n.only_first_output()  # MaxPool's Indices output
    x0 = n.dyn(0)
    x, lifted = _lift_1d(n, x0)
    kernel = list(n.attrs.get("kernel_shape", []))
    rank = x0.type.rank - 2
    if len(kernel) != rank:
        raise _Unsupported(f"kernel_shape {kernel} does not match {rank} spatial dims")
    strides = list(n.attr("strides", [1] * rank))
    dil = list(n.attr("dilations", [1] * rank))
    if n.attr("storage_order", 0) != 0:
        raise _Unsupported("storage_order=1")
    pads = _window_pads(n, list(x0.type.shape[2:]), kernel, strides, dil)
    attrs: dict[str, Any] = {
        "kernel": _to_2d(kernel, 1), "stride": _to_2d(strides, 1), "pad": _pads_2d(pads),
        # With auto_pad the spec fixes the output size (SAME: ceil(in / stride),
        # VALID: floor mode), and the pads computed for it already give it.
        "ceil_mode": bool(n.attr("ceil_mode", 0)) and n.attr("auto_pad", "NOTSET") in ("NOTSET", ""),
    }
    if kind == "maxpool":
        attrs["dilation"] = _to_2d(dil, 1)
    else:
        if any(d != 1 for d in dil):
            raise _Unsupported("AveragePool with dilations is not supported")
        attrs["count_include_pad"] = bool(n.attr("count_include_pad", 0))
    y = n.emit(kind, [x], attrs)
    if lifted:
        s = y.type.shape
        y = n.reshape(y, [s[0], s[1], s[3]])
    n.set(0, y)


def _global_avgpool(n: _Node) -> None:
    x = n.dyn(0)
    if x.type.rank == 4:
        n.set(0, n.emit("global_avgpool", [x]))
    elif x.type.rank >= 3:
        n.set(0, n.emit("mean", [x], {"axes": list(range(2, x.type.rank)), "keepdims": True}))
    else:
        raise _Unsupported(f"input rank {x.type.rank} < 3")


def _gemm(n: _Node) -> None:
    alpha = float(n.attr("alpha", 1.0))
    beta = float(n.attr("beta", 1.0))
    trans_a, trans_b = int(n.attr("transA", 0)), int(n.attr("transB", 0))
    a = n.value(0)
    if a.type.rank != 2:
        raise _Unsupported(f"input A must be 2-D, got {list(a.type.shape)}")
    if trans_a:
        a = n.emit("transpose", [a], {"perm": [1, 0]})
    bias_done = False
    if n.is_const(1) and not n.is_const(0):
        b = _as_f32(n.const(1))
        # linear wants [out, in]; Gemm's B is [in, out] unless transB.
        w = b if trans_b else b.T
        if alpha != 1.0:
            w = w * np.float32(alpha)
        wv = n.value(1) if (trans_b and alpha == 1.0) else n.new_const(n.inputs[1], np.ascontiguousarray(w))
        operands = [a, wv]
        out_features = w.shape[0]
        if n.is_const(2) and beta != 0.0:
            c = _as_f32(n.const(2)) * np.float32(beta) if beta != 1.0 else _as_f32(n.const(2))
            if c.size == 1 or c.shape in ((out_features,), (1, out_features)):
                # A bias broadcast over rows is linear's own bias operand.
                bias = np.ascontiguousarray(np.broadcast_to(c.reshape(-1), (out_features,)))
                same = beta == 1.0 and c.shape == (out_features,)
                operands.append(n.value(2) if same else n.new_const(n.inputs[2], bias))
                bias_done = True
        y = n.emit("linear", operands)
    else:
        bv = n.value(1)
        if bv.type.rank != 2:
            raise _Unsupported(f"input B must be 2-D, got {list(bv.type.shape)}")
        if trans_b:
            bv = n.emit("transpose", [bv], {"perm": [1, 0]})
        y = n.emit("matmul", [a, bv])
        if alpha != 1.0:
            y = n.emit("mul", [y, n.new_const(f"{n.loc}.alpha", np.array(alpha, dtype=np.float32))])
    if n.has(2) and not bias_done and beta != 0.0:
        if n.is_const(2):
            c = _as_f32(n.const(2))
            cv = n.value(2) if beta == 1.0 else n.new_const(n.inputs[2], c * np.float32(beta))
        else:
            cv = n.value(2)
            if beta != 1.0:
                cv = n.emit("mul", [cv, n.new_const(f"{n.loc}.beta", np.array(beta, dtype=np.float32))])
        y = n.emit("add", [y, cv])
    n.set(0, y)


def _matmul(n: _Node) -> None:
    if n.is_const(1) and not n.is_const(0) and n.const(1).ndim in (1, 2):
        b = _as_f32(n.const(1))
        x = n.value(0)
        if b.ndim == 2:
            n.set(0, n.emit("linear", [x, n.new_const(n.inputs[1], np.ascontiguousarray(b.T))]))
        else:  # x @ vector: a one-output linear, then drop that axis
            y = n.emit("linear", [x, n.new_const(n.inputs[1], b.reshape(1, -1))])
            n.set(0, n.reshape(y, y.type.shape[:-1]))
        return
    a, b = n.value(0), n.value(1)
    squeeze: list[int] = []
    if a.type.rank == 1:  # numpy rule: a vector operand gets a unit axis that is then dropped
        a = n.reshape(a, [1, a.type.shape[0]])
        squeeze.append(-2)
    if b.type.rank == 1:
        b = n.reshape(b, [b.type.shape[0], 1])
        squeeze.append(-1)
    y = n.emit("matmul", [a, b])
    if squeeze:
        shape = list(y.type.shape)
        for ax in sorted(squeeze):
            del shape[ax + len(shape) if ax < -1 else len(shape) - 1]
        n.set(0, n.reshape(y, shape))
    else:
        n.set(0, y)


def _binary(opname: str) -> Callable[[_Node], None]:
    def mapper(n: _Node) -> None:
        if "axis" in n.attrs or n.attr("broadcast", 0):
            raise _Unsupported("legacy (opset < 7) broadcasting attributes")
        n.set(0, n.emit(opname, [n.value(0), n.value(1)]))

    mapper.__name__ = f"_{opname}"
    return mapper


def _unary(opname: str) -> Callable[[_Node], None]:
    def mapper(n: _Node) -> None:
        n.set(0, n.emit(opname, [n.dyn(0)]))

    mapper.__name__ = f"_{opname}"
    return mapper


def _clip(n: _Node) -> None:
    if n.opset < 11:
        lo = float(n.attr("min", -math.inf))
        hi = float(n.attr("max", math.inf))
    else:
        lo = float(n.const(1, "min").reshape(-1)[0]) if n.has(1) else -math.inf
        hi = float(n.const(2, "max").reshape(-1)[0]) if n.has(2) else math.inf
    n.set(0, n.emit("clip", [n.dyn(0)], {"min": lo, "max": hi}))


def _reduce_mean(n: _Node) -> None:
    x = n.dyn(0)
    rank = x.type.rank
    if n.opset >= 18:
        axes = _ints(n.const(1, "axes")) if n.has(1) else []
    else:
        axes = list(n.attr("axes", []))
    keep = bool(n.attr("keepdims", 1))
    if not axes:
        if n.attr("noop_with_empty_axes", 0):
            n.alias()
            return
        axes = list(range(rank))
    axes = sorted({_norm_axis(a, rank) for a in axes})
    n.set(0, n.emit("mean", [x], {"axes": axes, "keepdims": keep}))


def _flatten(n: _Node) -> None:
    x = n.dyn(0)
    s = x.type.shape
    ax = int(n.attr("axis", 1))
    ax = ax + len(s) if ax < 0 else ax
    if not 0 <= ax <= len(s):
        raise _Unsupported(f"axis {n.attr('axis')} out of range for rank {len(s)}")
    n.set(0, n.reshape(x, [math.prod(s[:ax]), math.prod(s[ax:])]))


def _reshape(n: _Node) -> None:
    x = n.dyn(0)
    spec = _ints(n.const(1, "the target shape")) if n.opset >= 5 else list(n.attr("shape", []))
    allow_zero = bool(n.attr("allowzero", 0))
    n.set(0, n.reshape(x, _resolve_shape(x.type.shape, spec, allow_zero)))


def _resolve_shape(src: tuple[int, ...], spec: list[int], allow_zero: bool) -> list[int]:
    """ONNX Reshape rules: 0 copies the input dim (unless allowzero), one -1 is inferred."""
    out = []
    for i, d in enumerate(spec):
        if d == 0 and not allow_zero:
            if i >= len(src):
                raise _Unsupported(f"shape {spec}: 0 at axis {i} has no input dim to copy")
            out.append(src[i])
        else:
            out.append(d)
    if out.count(-1) > 1:
        raise _Unsupported(f"shape {spec} has more than one -1")
    if -1 in out:
        known = math.prod(d for d in out if d != -1)
        total = math.prod(src)
        if known == 0 or total % known:
            raise InputError(f"cannot reshape {list(src)} to {spec}")
        out[out.index(-1)] = total // known
    return out


def _transpose(n: _Node) -> None:
    x = n.dyn(0)
    perm = list(n.attr("perm", list(range(x.type.rank))[::-1]))
    n.set(0, n.emit("transpose", [x], {"perm": perm}))


def _slice(n: _Node) -> None:
    x = n.dyn(0)
    shape = x.type.shape
    if n.opset < 10:
        starts, ends = list(n.attr("starts", [])), list(n.attr("ends", []))
        axes = list(n.attr("axes", range(len(starts))))
        steps = [1] * len(starts)
    else:
        starts, ends = _ints(n.const(1, "starts")), _ints(n.const(2, "ends"))
        axes = _ints(n.const(3, "axes")) if n.has(3) else list(range(len(starts)))
        steps = _ints(n.const(4, "steps")) if n.has(4) else [1] * len(starts)
    if not len(starts) == len(ends) == len(axes) == len(steps):
        raise _Unsupported("starts, ends, axes and steps differ in length")
    out_s, out_e, out_a, out_st = [], [], [], []
    for s, e, a, st in zip(starts, ends, axes, steps, strict=True):
        a = _norm_axis(a, len(shape))
        if st == 0:
            raise _Unsupported("slice step 0")
        s, e = _onnx_slice_bounds(s, e, st, shape[a])
        out_s.append(s)
        out_e.append(e)
        out_a.append(a)
        out_st.append(st)
    if len(set(out_a)) != len(out_a):
        raise _Unsupported("an axis is sliced twice")
    n.set(0, n.emit("slice", [x], {"starts": out_s, "ends": out_e, "axes": out_a, "steps": out_st}))


def _onnx_slice_bounds(start: int, end: int, step: int, dim: int) -> tuple[int, int]:
    """Clamp ONNX slice bounds and express them so Python slicing means the same.

    ONNX clamps into range after adding dim to negatives; Python would wrap a
    resulting -1 end (to the last element), so 'before the first element' is
    written as -(dim + 1).
    """
    if start < 0:
        start += dim
    if end < 0:
        end += dim
    if step > 0:
        start = min(max(start, 0), dim)
        end = min(max(end, 0), dim)
        return start, end
    start = min(max(start, -1), dim - 1)
    end = min(max(end, -1), dim - 1)
    if start < 0:  # empty
        return 0, 0
    return start, (end if end >= 0 else -(dim + 1))


def _split(n: _Node) -> None:
    x = n.dyn(0)
    shape = x.type.shape
    ax = _norm_axis(int(n.attr("axis", 0)), len(shape))
    dim = shape[ax]
    nout = len(n.outputs)
    if n.opset < 13 and "split" in n.attrs:
        sizes = list(n.attrs["split"])
    elif n.opset >= 13 and n.has(1):
        sizes = _ints(n.const(1, "split"))
    elif "num_outputs" in n.attrs:
        k = int(n.attrs["num_outputs"])
        chunk = -(-dim // k)  # the last chunk is smaller when dim is not divisible
        sizes = [min(chunk, dim - i * chunk) for i in range(k)]
    else:
        if dim % nout:
            raise _Unsupported(f"cannot split {dim} into {nout} equal parts")
        sizes = [dim // nout] * nout
    if len(sizes) != nout or sum(sizes) != dim or min(sizes) < 0:
        raise _Unsupported(f"split sizes {sizes} do not cover dim {dim} with {nout} outputs")
    start = 0
    for i, size in enumerate(sizes):
        if n.outputs[i]:
            n.set(i, n.emit("slice", [x], {"starts": [start], "ends": [start + size], "axes": [ax], "steps": [1]}))
        start += size


def _split_to_sequence(n: _Node) -> None:
    """A sequence of slices; only SequenceAt with a constant position may read it."""
    x = n.dyn(0)
    shape = x.type.shape
    ax = _norm_axis(int(n.attr("axis", 0)), len(shape))
    dim = shape[ax]
    if n.has(1):
        split = np.asarray(n.const(1, "split"))
        step = int(split) if split.ndim == 0 else 0
        sizes = [min(step, dim - i) for i in range(0, dim, step)] if step > 0 else [int(v) for v in split]
    else:
        sizes = [1] * dim
    if sum(sizes) != dim or min(sizes, default=0) < 0:
        raise _Unsupported(f"split sizes {sizes} do not cover dim {dim}")
    squeeze = not n.has(1) and not n.attr("keepdims", 1)
    parts, start = [], 0
    for size in sizes:
        part = n.emit("slice", [x], {"starts": [start], "ends": [start + size], "axes": [ax], "steps": [1]})
        if squeeze:
            part = n.emit("reshape", [part], {"shape": shape[:ax] + shape[ax + 1 :]})
        parts.append(part)
        start += size
    n.imp.sequences[n.outputs[0]] = parts


def _sequence_at(n: _Node) -> None:
    parts = n.imp.sequences.get(n.inputs[0])
    if parts is None:
        raise _Unsupported("the sequence must come from SplitToSequence")
    pos = int(np.asarray(n.const(1, "position")))
    if not -len(parts) <= pos < len(parts):
        raise _Unsupported(f"position {pos} is outside a sequence of {len(parts)}")
    n.set(0, parts[pos])


def _concat(n: _Node) -> None:
    vals = [n.value(i) for i in range(len(n.inputs)) if n.has(i)]
    rank = vals[0].type.rank
    ax = _norm_axis(int(n.attr("axis", 0 if n.opset < 4 else 1)), rank)
    # ONNX allows empty inputs in Concat; micoc's concat does not need them.
    vals = [v for v in vals if v.type.shape[ax] != 0 or len(vals) == 1]
    n.set(0, vals[0] if len(vals) == 1 else n.emit("concat", vals, {"axis": ax}))


def _batch_norm(n: _Node) -> None:
    if n.attr("training_mode", 0):
        raise _Unsupported("training_mode=1 (only inference batch norm is supported)")
    if n.opset < 9 and n.attr("spatial", 1) != 1:
        raise _Unsupported("spatial=0")
    n.only_first_output()
    x = n.dyn(0)
    params = [n.value(i) for i in range(1, 5)]
    n.set(0, n.emit("batch_norm", [x, *params], {"epsilon": float(n.attr("epsilon", 1e-5))}))


def _softmax(n: _Node) -> None:
    x = n.dyn(0)
    s = x.type.shape
    ax = _norm_axis(int(n.attr("axis", 1 if n.opset < 13 else -1)), len(s))
    if n.opset >= 13 or ax == len(s) - 1 or math.prod(s[ax + 1 :]) == 1:
        n.set(0, n.emit("softmax", [x], {"axis": ax}))
        return
    # Before opset 13, Softmax normalizes over all axes from `axis` on (the
    # input coerced to 2-D): flatten them, softmax the last axis, restore.
    flat = n.reshape(x, [math.prod(s[:ax]), math.prod(s[ax:])])
    y = n.emit("softmax", [flat], {"axis": 1})
    n.set(0, n.reshape(y, s))


def _dropout(n: _Node) -> None:
    if n.has(2) and (not n.is_const(2) or bool(np.asarray(n.const(2)).reshape(-1)[0])):
        raise _Unsupported("training_mode must be a constant false")
    n.only_first_output()  # the mask
    n.alias()


def _identity(n: _Node) -> None:
    n.alias()


def _cast(n: _Node) -> None:
    if int(n.attr("to", 0)) != TensorProto.FLOAT:
        raise _Unsupported(f"cast of a run-time tensor to {TensorProto.DataType.Name(int(n.attr('to', 0)))}")
    n.alias()  # run-time tensors are f32 already


def _cast_like(n: _Node) -> None:
    # Run-time tensors are f32, so the target type is f32 when input 1 is one.
    target = n.const(1).dtype if n.is_const(1) else np.dtype(np.float32)
    if n.is_const(0):  # a constant cast to the type of a run-time tensor (dynamo exports)
        n.set_const(0, np.asarray(n.const(0)).astype(target))
    elif target == np.float32:
        n.alias()
    else:
        raise _Unsupported(f"cast of a run-time tensor to {target}")


def _expand(n: _Node) -> None:
    x = n.dyn(0)
    shape = _ints(n.const(1, "the target shape"))
    rank = max(len(shape), x.type.rank)
    src = (1,) * (rank - x.type.rank) + x.type.shape
    tgt = [1] * (rank - len(shape)) + shape
    out = tuple(s if t == 1 else t for s, t in zip(src, tgt, strict=True))
    if any(s not in (1, o) for s, o in zip(src, out, strict=True)):
        raise InputError(f"cannot expand {list(x.type.shape)} to {shape}")
    if out == x.type.shape:
        n.alias()
        return
    # micoc has no broadcast op: adding zeros of the target shape broadcasts exactly.
    zeros = n.new_const(f"{n.loc}.zeros", np.zeros(out, dtype=np.float32))
    n.set(0, n.emit("add", [x, zeros]))


def _squeeze_axes(n: _Node) -> list[int] | None:
    if n.opset >= 13:
        return _ints(n.const(1, "axes")) if n.has(1) else None
    return list(n.attrs["axes"]) if "axes" in n.attrs else None


def _unsqueeze(n: _Node) -> None:
    x = n.dyn(0)
    axes = _squeeze_axes(n)
    if not axes:
        raise _Unsupported("Unsqueeze needs axes")
    out_rank = x.type.rank + len(axes)
    norm = sorted(_norm_axis(a, out_rank) for a in axes)
    shape = list(x.type.shape)
    for a in norm:
        shape.insert(a, 1)
    n.set(0, n.reshape(x, shape))


def _squeeze(n: _Node) -> None:
    x = n.dyn(0)
    s = x.type.shape
    axes = _squeeze_axes(n)
    if axes is None:
        drop = {i for i, d in enumerate(s) if d == 1}
    else:
        drop = {_norm_axis(a, len(s)) for a in axes}
        if any(s[a] != 1 for a in drop):
            raise InputError(f"cannot squeeze axes {axes} of shape {list(s)}")
    n.set(0, n.reshape(x, [d for i, d in enumerate(s) if i not in drop]))


def _gather(n: _Node) -> None:
    """Gather of a run-time tensor with constant indices, as slices (micoc has no gather op)."""
    x = n.dyn(0)
    shape = x.type.shape
    ax = _norm_axis(int(n.attr("axis", 0)), len(shape))
    idx = np.asarray(n.const(1, "indices")).astype(np.int64)
    dim = shape[ax]
    if idx.size and (idx.min() < -dim or idx.max() >= dim):
        raise InputError(f"Gather indices {idx.tolist()} out of range for dim {dim}")
    flat = [int(i) % dim for i in idx.reshape(-1)]
    out_shape = list(shape[:ax]) + list(idx.shape) + list(shape[ax + 1 :])
    if not flat:
        raise _Unsupported("Gather with no indices")
    step = flat[1] - flat[0] if len(flat) > 1 else 1
    if step != 0 and flat == list(range(flat[0], flat[0] + step * len(flat), step)):
        # An arithmetic progression is one strided slice.
        end = flat[-1] + (1 if step > 0 else -1)
        start, end = _onnx_slice_bounds(flat[0], end if end >= 0 else -dim - 1, step, dim)
        parts = [n.emit("slice", [x], {"starts": [start], "ends": [end], "axes": [ax], "steps": [step]})]
    else:
        parts = [
            n.emit("slice", [x], {"starts": [i], "ends": [i + 1], "axes": [ax], "steps": [1]}) for i in flat
        ]
    y = parts[0] if len(parts) == 1 else n.emit("concat", parts, {"axis": ax})
    n.set(0, n.reshape(y, out_shape))


def _shape(n: _Node) -> None:
    # Shapes are static in micoc, so Shape of a run-time tensor is a constant.
    s = n.value(0).type.shape
    start = int(n.attr("start", 0))
    end = n.attr("end", None)
    n.set_const(0, np.array(s[slice(start, None if end is None else int(end))], dtype=np.int64))


def _size(n: _Node) -> None:
    n.set_const(0, np.array(n.value(0).type.numel, dtype=np.int64))


_MAPPERS: dict[str, Callable[[_Node], None]] = {
    "SplitToSequence": _split_to_sequence,
    "SequenceAt": _sequence_at,
    "Conv": _conv,
    "Gemm": _gemm,
    "MatMul": _matmul,
    "Add": _binary("add"),
    "Sub": _binary("sub"),
    "Mul": _binary("mul"),
    "Div": _binary("div"),
    "Relu": _unary("relu"),
    "Sigmoid": _unary("sigmoid"),
    "Clip": _clip,
    "MaxPool": lambda n: _pool(n, "maxpool"),
    "AveragePool": lambda n: _pool(n, "avgpool"),
    "GlobalAveragePool": _global_avgpool,
    "ReduceMean": _reduce_mean,
    "Flatten": _flatten,
    "Reshape": _reshape,
    "Transpose": _transpose,
    "Slice": _slice,
    "Split": _split,
    "Concat": _concat,
    "BatchNormalization": _batch_norm,
    "Softmax": _softmax,
    "Dropout": _dropout,
    "Identity": _identity,
    "Cast": _cast,
    "CastLike": _cast_like,
    "Expand": _expand,
    "Unsqueeze": _unsqueeze,
    "Squeeze": _squeeze,
    "Gather": _gather,
    "Shape": _shape,
    "Size": _size,
}

# Handled by their mapper even when the input is constant (no evaluation needed).
_ALIASES = {"Identity", "Dropout"}

# Ops with a mapping for run-time inputs; any other op is imported only when
# all its inputs are constant (folded at import).
SUPPORTED_OPS: tuple[str, ...] = tuple(sorted(_MAPPERS))
