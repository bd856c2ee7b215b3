"""calibrate: activation ranges from data.

Runs the float graph on calibration samples through the reference
interpreter, watches every activation with an observer (minmax, percentile
or mse; micoc.numerics), and stores each value's clipping range in
`Value.range`, where the printer shows it and `quantize` reads it. Ranges of
percentile/mse (and of binary activations) depend on the bit width, so run
`assign-bits` first when you use them; unassigned layers count as 8 bits.

Data: the `data` option (.npy/.npz file, DESIGN §1 conventions) or arrays
in `ctx.data["calibration"]` ({input name: [N, ...] array}).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from micoc.analysis.quant_plan import plan_formats
from micoc.datafiles import load_inputs
from micoc.errors import InputError, UsageError
from micoc.interp.reference import bind_inputs, run
from micoc.ir.graph import Graph, Op, Value
from micoc.numerics import MinMaxObserver, make_observer
from micoc.passes.manager import Pass, PassContext, register_pass

METHODS = ("minmax", "percentile", "mse")


@register_pass
@dataclass(frozen=True)
class Calibrate(Pass):
    name: ClassVar[str] = "calibrate"
    summary: ClassVar[str] = "record activation ranges from calibration data (minmax, percentile, mse)"

    data: Path | None = None
    method: str = "minmax"
    percentile: float = 99.99
    samples: int = 0  # 0 = every sample in the data
    batch: int = 256

    def run(self, graph: Graph, ctx: PassContext) -> bool:
        if self.method not in METHODS:
            raise UsageError(f"calibrate: method must be one of {', '.join(METHODS)}, got '{self.method}'")
        arrays = self._arrays(graph, ctx)
        observers = observe_ranges(graph, arrays, self._observer, self.batch)
        # Provisional input ranges decide the inputs' signedness; then every
        # value's range is taken for the bits and signedness it will have.
        for v in graph.inputs:
            v.range = (observers[v].min, observers[v].max)
        formats, _, _ = plan_formats(graph)
        for v, obs in observers.items():
            f = formats.get(v)
            bits, unsigned = (f.bits, f.unsigned) if f else (8, obs.min >= 0)
            lo, hi = obs.range(bits, unsigned)
            v.range = (float(lo), float(hi))
        return True

    def _observer(self) -> MinMaxObserver:
        if self.method == "percentile":
            return make_observer("percentile", percentile=self.percentile)
        return make_observer(self.method)

    def _arrays(self, graph: Graph, ctx: PassContext) -> dict[str, np.ndarray]:
        if self.data is not None:
            arrays = load_inputs(self.data, graph)
            where = str(self.data)
        elif "calibration" in ctx.data:
            arrays, where = ctx.data["calibration"], "calibration data"
        else:
            raise UsageError("calibrate needs data: data=FILE.npz (or --calib FILE)")
        for name, a in arrays.items():
            if a.dtype.kind != "f":
                raise InputError(f"calibration array '{name}' has dtype {a.dtype}; expected floating point", where)
            if not np.all(np.isfinite(a)):
                raise InputError(f"calibration array '{name}' contains inf or nan", where)
        if self.samples > 0:
            arrays = {k: a[: self.samples] for k, a in arrays.items()}
        return arrays


def observe_ranges(graph: Graph, arrays: dict[str, np.ndarray], make, batch: int) -> dict[Value, MinMaxObserver]:  # type: ignore[no-untyped-def]
    """Run the graph over the samples in batches; one observer per float activation."""
    bound = bind_inputs(graph, arrays)
    n = next(iter(bound.values())).shape[0] if bound else 1
    observers: dict[Value, MinMaxObserver] = {v: make() for v in graph.inputs}
    for op in graph.ops:
        if op.result.type.is_float:
            observers[op.result] = make()

    def watch(op: Op, value: np.ndarray) -> None:
        obs = observers.get(op.result)
        if obs is not None:
            obs.update(value)

    for start in range(0, n, max(1, batch)):
        chunk = {v.name: a[start : start + batch] for v, a in bound.items()}
        for v in graph.inputs:
            observers[v].update(chunk[v.name])
        run(graph, chunk, observe=watch)
    return observers
