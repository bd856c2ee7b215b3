"""load_model: one entry point for every model file micoc reads."""

from __future__ import annotations

from pathlib import Path

from micoc.errors import InputError
from micoc.ir.graph import Graph


def load_model(path: str | Path) -> Graph:
    """Read an .onnx model or a .mir file (with its weights sidecar) into the IR."""
    p = Path(path)
    if not p.exists():
        raise InputError("no such file", str(p))
    if p.is_dir():
        raise InputError("is a directory, expected an .onnx or .mir file", str(p))
    suffix = p.suffix.lower()
    if suffix == ".onnx":
        from micoc.frontends.onnx import import_onnx

        return import_onnx(p)
    if suffix == ".mir":
        from micoc.ir.parser import load_mir

        return load_mir(p)
    raise InputError(f"unknown model format '{suffix or '(no suffix)'}': expected .onnx or .mir", str(p))
