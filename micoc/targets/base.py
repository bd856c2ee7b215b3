"""The Target protocol: what a backend provides to `micoc compile` / `micoc run`."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from micoc.ir.graph import Graph


@runtime_checkable
class Target(Protocol):
    """A code generation target.

    * ``name``: the --target name; ``description``: one line for list-targets.
    * ``default_pipeline()``: the passes the target runs after the generic
      quantize pipeline (its own lowering), as Pass instances.
    * ``check_support(graph)``: raise UnsupportedError listing EVERY op and
      bit width the target cannot handle, all at once, before any work.
    * ``emit(graph, outdir)``: write the output directory (atomically);
      returns the report (also written as outdir/report.json).
    * ``build(outdir)``: compile it; returns the executable's path;
      a missing toolchain raises ToolchainError naming the package.
    * ``run(outdir, inputs)``: run samples (arrays whose dim 0 replaces the
      batch dim) and return the float32 outputs stacked the same way.
    """

    name: str
    description: str

    def default_pipeline(self) -> list[Any]: ...

    def check_support(self, graph: Graph) -> None: ...

    def emit(self, graph: Graph, outdir: str | os.PathLike[str]) -> dict[str, Any]: ...

    def build(self, outdir: str | os.PathLike[str]) -> Path: ...

    def run(self, outdir: str | os.PathLike[str], inputs: Sequence[np.ndarray]) -> list[np.ndarray]: ...


def input_samples(report: dict[str, Any], inputs: Sequence[np.ndarray]) -> np.ndarray:
    """The one input of a build as float32 [N, ...], checked against its report.json."""
    from micoc.errors import InputError

    if len(inputs) != 1:
        raise InputError(f"the model has 1 input, got {len(inputs)} arrays")
    x = np.asarray(inputs[0], dtype=np.float32)
    in_shape = tuple(report["input"]["shape"])
    if x.shape[1:] != in_shape[1:] or x.ndim != len(in_shape):
        raise InputError(f"input has shape {list(x.shape)}; the model expects {list(in_shape)} "
                         "(the first dimension may hold any number of samples)")
    return x
