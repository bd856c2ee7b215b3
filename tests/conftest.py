"""Shared pytest fixtures. Keep this file small; add fixtures here only when
several test files need them, with a line saying what they give.

Every test runs with torch pinned to one thread (when torch is loaded).

Fixtures (session-scoped, torch imported lazily so IR-only test files don't
pay for it):

- ``example_input(name) -> torch.Tensor``: a deterministic random input of
  the example model's shape (``examples.models.MODELS``).
- ``example_model(name) -> nn.Module``: ``examples.models.build(name, seed=0)``,
  cached; treat it as read-only.
- ``onnx_export(name, exporter="torchscript", optimize=True) -> Path``: the
  example model exported to ONNX (input ``x``, output ``y``, opset 18),
  cached per (name, exporter, optimize) in a session tmp dir, so e.g.
  ResNet-18 is exported at most once per exporter per run.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    import torch
    from torch import nn


@pytest.fixture(autouse=True)
def _torch_single_thread() -> None:
    # Two torch threads make small-model work 10-30x slower on these 2-core
    # machines (DESIGN.md §10). Pin to one for every test that has torch
    # loaded, without importing torch for the tests that don't need it.
    torch = sys.modules.get("torch")
    if torch is not None and torch.get_num_threads() != 1:
        torch.set_num_threads(1)


@pytest.fixture(scope="session")
def example_input() -> Callable[[str], torch.Tensor]:
    import torch

    from examples.models import MODELS

    def make(name: str) -> torch.Tensor:
        gen = torch.Generator().manual_seed(1234)
        return torch.randn(MODELS[name][1], generator=gen)

    return make


@pytest.fixture(scope="session")
def example_model() -> Callable[[str], nn.Module]:
    from examples.models import build

    cache: dict[str, Any] = {}

    def get(name: str) -> nn.Module:
        if name not in cache:
            cache[name] = build(name, seed=0)
        return cache[name]

    return get


@pytest.fixture(scope="session")
def onnx_export(
    tmp_path_factory: pytest.TempPathFactory,
    example_model: Callable[[str], nn.Module],
    example_input: Callable[[str], torch.Tensor],
) -> Callable[..., Path]:
    from examples.export import export_onnx

    out_dir = tmp_path_factory.mktemp("onnx_exports")
    cache: dict[tuple[str, str, bool], Path] = {}

    def get(name: str, exporter: str = "torchscript", optimize: bool = True) -> Path:
        key = (name, exporter, optimize)
        if key not in cache:
            suffix = "" if optimize else "_noopt"
            path = out_dir / f"{name}_{exporter}{suffix}.onnx"
            cache[key] = export_onnx(
                example_model(name), example_input(name), path, exporter, optimize=optimize
            )
        return cache[key]

    return get
