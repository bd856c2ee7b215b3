"""The reference interpreter: runs a Graph on numpy arrays.

Samples replace the batch dimension (DESIGN §1): a model whose input is
[1, 3, 32, 32] runs an array of shape [N, 3, 32, 32] as N samples. Graphs
whose ops never mix samples (nothing reshapes, transposes, slices or reduces
across dim 0) run all samples in one batched pass; others run sample by sample.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from micoc.errors import InputError, MicocError
from micoc.interp.kernels import Kernel, get_kernel
from micoc.interp.qkernels import QKERNELS
from micoc.ir.graph import Graph, Op, Value
from micoc.ir.types import numpy_dtype

Observer = Callable[[Op, np.ndarray], None]


def run(
    graph: Graph,
    inputs: Mapping[str, np.ndarray] | Sequence[np.ndarray],
    *,
    observe: Observer | None = None,
) -> list[np.ndarray]:
    """Run `graph`; inputs by graph-input name (or positionally). Returns the outputs.

    `observe(op, value)` is called with every op's result (used by calibration).
    """
    arrays = bind_inputs(graph, inputs)
    n = samples_in(graph, arrays)
    if n == 1 or batch_safe(graph):
        return _execute(graph, arrays, observe)
    per_sample = [
        _execute(graph, {v: a[i : i + 1] for v, a in arrays.items()}, observe) for i in range(n)
    ]
    return [np.concatenate(outs, axis=0) for outs in zip(*per_sample, strict=True)]


def bind_inputs(graph: Graph, inputs: Mapping[str, np.ndarray] | Sequence[np.ndarray]) -> dict[Value, np.ndarray]:
    """Match arrays to graph inputs and check their shapes; a single-input graph accepts any one key."""
    if not isinstance(inputs, Mapping):
        inputs = list(inputs)
        if len(inputs) != len(graph.inputs):
            raise InputError(f"the model has {len(graph.inputs)} input(s), got {len(inputs)} array(s)")
        named = {v.name: a for v, a in zip(graph.inputs, inputs, strict=True)}
    elif len(graph.inputs) == 1 and len(inputs) == 1:
        named = {graph.inputs[0].name: next(iter(inputs.values()))}
    else:
        named = dict(inputs)
    missing = [v.name for v in graph.inputs if v.name not in named]
    if missing:
        raise InputError(
            f"missing input(s) {', '.join(map(str, missing))}; got {', '.join(map(str, named)) or 'none'}"
        )
    bound: dict[Value, np.ndarray] = {}
    for v in graph.inputs:
        a = np.asarray(named[v.name])
        want = v.type.shape
        ok_batch = len(want) > 0 and want[0] == 1 and a.ndim == len(want)
        if a.shape != want and not (ok_batch and a.shape[1:] == want[1:]):
            raise InputError(
                f"input '{v.name}' has shape {list(a.shape)}, the model expects {list(want)}"
                + (" (the first dimension may hold any number of samples)" if ok_batch or want[:1] == (1,) else "")
            )
        if a.dtype.kind not in "fiub":
            raise InputError(f"input '{v.name}' has dtype {a.dtype}; expected numbers")
        bound[v] = a.astype(numpy_dtype(v.type), copy=False)
    return bound


def samples_in(graph: Graph, arrays: Mapping[Value, np.ndarray]) -> int:
    counts = {a.shape[0] for v, a in arrays.items() if v.type.shape[:1] == (1,)}
    if len(counts) > 1:
        raise InputError(f"inputs disagree on the number of samples: {sorted(counts)}")
    return counts.pop() if counts else 1


_AXIS0_ATTRS = {"concat": "axis", "softmax": "axis"}
_ELEMENTWISE = frozenset({"add", "sub", "mul", "div", "concat"})


def batch_safe(graph: Graph) -> bool:
    """True when no op mixes data across dim 0, so samples can share one run."""
    for op in graph.ops:
        in_shapes = [v.type.shape for v in op.operands if not v.is_const]
        if op.result.type.shape[:1] != (1,) or any(s[:1] != (1,) for s in in_shapes):
            return False
        a = op.attrs
        rank = op.result.type.rank
        if op.opname in _AXIS0_ATTRS and a[_AXIS0_ATTRS[op.opname]] % rank == 0:
            return False
        if op.opname == "transpose" and a["perm"][0] != 0:
            return False
        if op.opname == "slice" and any(ax % op.operands[0].type.rank == 0 for ax in a["axes"]):
            return False
        if op.opname == "mean" and any(ax % op.operands[0].type.rank == 0 for ax in a["axes"]):
            return False
        if op.opname == "matmul" and min(len(s) for s in in_shapes) < 3:
            return False
        if op.opname == "concat" and any(v.is_const for v in op.operands):
            return False  # a constant part has one sample, not N
        if op.opname in _ELEMENTWISE and any(
            v.is_const and v.type.rank == op.result.type.rank and v.type.shape[0] != 1 for v in op.operands
        ):
            return False  # a constant that varies along dim 0 would mix into the samples
    return True


def _execute(graph: Graph, arrays: Mapping[Value, np.ndarray], observe: Observer | None) -> list[np.ndarray]:
    env: dict[Value, np.ndarray] = dict(arrays)
    for c in graph.consts.values():
        env[c] = c.data  # type: ignore[assignment]
    last_use = _last_uses(graph)
    for i, op in enumerate(graph.ops):
        args = [env[v] for v in op.operands]
        try:
            out = select_kernel(op)(op, args)
        except MicocError:
            raise
        except (ValueError, FloatingPointError, IndexError) as e:
            raise MicocError(f"{op.opname} failed at run time: {e}", op.where()) from e
        env[op.result] = out
        if observe is not None:
            observe(op, out)
        for v in last_use.get(i, ()):
            if not v.is_const:
                env.pop(v, None)  # free activations early: keeps peak memory low
    return [env[v] for v in graph.outputs]


def select_kernel(op: Op) -> Kernel:
    """Integer kernels for ops on quantized values, float kernels otherwise
    (shape-only ops such as reshape serve both)."""
    if op.result.type.is_quantized or (op.operands and op.operands[0].type.is_quantized):
        k = QKERNELS.get(op.opname)
        if k is not None:
            return k
    return get_kernel(op)


def _last_uses(graph: Graph) -> dict[int, list[Value]]:
    last: dict[Value, int] = {}
    for i, op in enumerate(graph.ops):
        for v in op.operands:
            last[v] = i
    outputs = set(graph.outputs)
    by_op: dict[int, list[Value]] = {}
    for v, i in last.items():
        if v not in outputs:
            by_op.setdefault(i, []).append(v)
    return by_op
