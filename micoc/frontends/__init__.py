"""Frontends: turn a model from another format into micoc IR.

Imports are lazy so that using one frontend does not pull in the other's
heavy dependency (onnx vs torch).
"""

from __future__ import annotations

from typing import Any

__all__ = ["import_onnx"]


def __getattr__(name: str) -> Any:
    if name == "import_onnx":
        from micoc.frontends.onnx import import_onnx

        return import_onnx
    raise AttributeError(f"module 'micoc.frontends' has no attribute {name!r}")
