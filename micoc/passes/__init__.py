"""Passes: the manager and registry, and one module per built-in pass."""

from micoc.passes import (  # noqa: F401  (register built-in passes)
    assign_bits,
    calibrate,
    canonicalize,
    plan_buffers,
    quantize,
    shape_infer,
)
from micoc.passes.manager import (
    PASSES,
    Pass,
    PassContext,
    PassManager,
    available_passes,
    parse_pipeline,
    register_pass,
)

__all__ = [
    "PASSES", "Pass", "PassContext", "PassManager", "available_passes", "parse_pipeline", "register_pass",
]
