"""ONNX export helpers for the example networks.

Both of torch's exporters are supported because micoc's ONNX frontend has to
accept what either produces:

- ``"torchscript"``: the legacy tracer (``torch.onnx.export(..., dynamo=False)``).
  With ``do_constant_folding=True`` it folds BatchNormalization into Conv in
  eval mode and emits static shapes (Flatten, no shape subgraphs).
- ``"dynamo"``: the torch.export + onnxscript exporter (``dynamo=True``). It
  keeps BatchNormalization nodes, lowers flatten to Reshape with a constant
  shape, and may write weights as external data; we always inline them so the
  result is one self-contained file.

Input and output names default to ``"x"`` and ``"y"`` (micoc's data-file
convention keys ``.npz`` arrays by graph input name; labels live under ``y``
in those files, which is unrelated to the *output* name).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import onnx
import torch
from torch import nn

__all__ = ["OPSET", "Exporter", "EXPORTERS", "export_onnx", "op_types", "run_onnxruntime"]

# Dynamo's exporter has no implementations below opset 18: asking for 17 runs
# the version converter, which fails on ReduceMean (axes input -> attribute)
# and silently leaves the model at 18. So both exporters use 18.
OPSET = 18
Exporter = Literal["torchscript", "dynamo"]
EXPORTERS: tuple[Exporter, ...] = ("torchscript", "dynamo")


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    # Both exporters print progress ("[torch.onnx] Obtain model graph ...")
    # and emit deprecation / tracer warnings; none of it helps a test log.
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "onnxscript", "torch.export")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with (
            warnings.catch_warnings(),
            contextlib.redirect_stdout(io.StringIO()),
            contextlib.redirect_stderr(io.StringIO()),
        ):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, lvl in zip(loggers, levels, strict=True):
            lg.setLevel(lvl)


def export_onnx(
    model: nn.Module,
    example_input: torch.Tensor,
    path: str | os.PathLike[str],
    exporter: Exporter = "torchscript",
    *,
    input_name: str = "x",
    output_name: str = "y",
    optimize: bool = True,
    opset: int = OPSET,
) -> Path:
    """Export ``model`` (put in eval mode) to a single self-contained ONNX file.

    ``optimize=True`` (the default) lets the exporter fold constants: both
    exporters then fold eval-mode BatchNormalization into the preceding Conv.
    ``optimize=False`` keeps BatchNormalization nodes (and, for dynamo, the
    Shape/Concat/Expand shape subgraphs around Reshape), which is what the
    frontend's own ``canonicalize`` must cope with.

    Static shapes only: the batch dimension is that of ``example_input``.
    Returns the path written. Raises ``ValueError`` for an unknown exporter.
    """
    if exporter not in EXPORTERS:
        raise ValueError(f"unknown exporter {exporter!r}; choose from {EXPORTERS}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    with _quiet(), torch.no_grad():
        if exporter == "torchscript":
            torch.onnx.export(
                model,
                (example_input,),
                str(path),
                dynamo=False,
                opset_version=opset,
                input_names=[input_name],
                output_names=[output_name],
                do_constant_folding=optimize,
            )
        else:
            program = torch.onnx.export(
                model,
                (example_input,),
                dynamo=True,
                opset_version=opset,
                input_names=[input_name],
                output_names=[output_name],
                optimize=optimize,
                verify=False,
                report=False,
            )
            assert program is not None
            # torch.onnx.export(f=...) defaults to external_data=True (a
            # ".data" sidecar); saving ourselves keeps weights inline. torch
            # still spills to external data above protobuf's 2 GB limit,
            # which none of the example networks come near.
            program.save(str(path), external_data=False)
    return path


def op_types(path: str | os.PathLike[str]) -> set[str]:
    """The set of ONNX op types in the main graph and any subgraphs of ``path``."""
    model = onnx.load(str(path))
    found: set[str] = set()

    def walk(graph: onnx.GraphProto) -> None:
        for node in graph.node:
            found.add(node.op_type)
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    walk(attr.g)
                for g in attr.graphs:
                    walk(g)

    walk(model.graph)
    return found


def run_onnxruntime(path: str | os.PathLike[str], x: torch.Tensor | object) -> object:
    """Run the single-input, single-output model at ``path`` on ``x`` with onnxruntime.

    Returns a numpy array. Uses one intra-op thread (these machines have 2 cores
    and tests run in parallel with other work).
    """
    import numpy as np
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    arr = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    (out,) = sess.run(None, {sess.get_inputs()[0].name: arr.astype(np.float32)})
    return out
