"""Building blocks of other torchvision-style nets the ONNX frontend must accept
(EfficientNet's SiLU + squeeze-excitation, ShuffleNet's channel split and
shuffle, MnasNet's depthwise-separable blocks), through both exporters, the
interpreter, canonicalize, and W8A8 quantization."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from micoc.frontends.onnx import import_onnx
from micoc.interp import run
from micoc.interp.torch_exec import run_torch
from micoc.passes import PassContext, PassManager


class SqueezeExcite(nn.Module):
    def __init__(self, c: int, r: int = 4) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(c, c // r, 1)
        self.expand = nn.Conv2d(c // r, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)
        s = torch.sigmoid(self.expand(torch.relu(self.reduce(s))))
        return x * s


class EfficientNetBlock(nn.Module):
    """MBConv: expand 1x1, depthwise 3x3, SE, project 1x1, residual; SiLU activations."""

    def __init__(self, c: int = 8) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, c, 3, padding=1), nn.BatchNorm2d(c), nn.SiLU())
        self.expand = nn.Sequential(nn.Conv2d(c, 4 * c, 1), nn.BatchNorm2d(4 * c), nn.SiLU())
        self.dw = nn.Sequential(nn.Conv2d(4 * c, 4 * c, 3, padding=1, groups=4 * c), nn.BatchNorm2d(4 * c), nn.SiLU())
        self.se = SqueezeExcite(4 * c)
        self.project = nn.Sequential(nn.Conv2d(4 * c, c, 1), nn.BatchNorm2d(c))
        self.head = nn.Linear(c, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = x + self.project(self.se(self.dw(self.expand(x))))
        return self.head(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    b, c, h, w = x.size()
    x = x.view(b, groups, c // groups, h, w).transpose(1, 2).contiguous()
    return x.view(b, -1, h, w)


class ShuffleNetUnit(nn.Module):
    def __init__(self, c: int = 16) -> None:
        super().__init__()
        half = c // 2
        self.stem = nn.Sequential(nn.Conv2d(3, c, 3, stride=2, padding=1), nn.ReLU())
        self.pool = nn.MaxPool2d(3, 2, 1)
        self.branch = nn.Sequential(
            nn.Conv2d(half, half, 1), nn.BatchNorm2d(half), nn.ReLU(),
            nn.Conv2d(half, half, 3, padding=1, groups=half), nn.BatchNorm2d(half),
            nn.Conv2d(half, half, 1), nn.BatchNorm2d(half), nn.ReLU(),
        )
        self.fc = nn.Linear(c, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.stem(x))
        a, b = x.chunk(2, dim=1)
        x = channel_shuffle(torch.cat((a, self.branch(b)), 1), 2)
        return self.fc(x.mean((2, 3)))


class MnasNetBlock(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
            nn.Conv2d(16, 16, 3, padding=1, groups=16), nn.BatchNorm2d(16), nn.ReLU(),
            nn.Conv2d(16, 8, 1), nn.BatchNorm2d(8),
            nn.Conv2d(8, 24, 1), nn.BatchNorm2d(24), nn.ReLU(),
            nn.Conv2d(24, 24, 5, stride=2, padding=2, groups=24), nn.BatchNorm2d(24), nn.ReLU(),
            nn.Conv2d(24, 12, 1), nn.BatchNorm2d(12),
        )
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(12, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.layers(x).mean([2, 3]))


BLOCKS = {"efficientnet": EfficientNetBlock, "shufflenet": ShuffleNetUnit, "mnasnet": MnasNetBlock}


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
@pytest.mark.parametrize("name", sorted(BLOCKS))
def test_block_imports_runs_and_quantizes(name: str, exporter: str, tmp_path: Path) -> None:
    from examples.export import export_onnx, run_onnxruntime

    torch.manual_seed(0)
    model = BLOCKS[name]().eval()
    for m in model.modules():  # non-trivial BN statistics, so folding matters
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 1.5)
    x = torch.randn(1, 3, 16, 16)
    path = export_onnx(model, x, tmp_path / f"{name}.onnx", exporter, optimize=False)
    g = import_onnx(path)
    xs = torch.randn(24, 3, 16, 16).numpy()
    want = np.concatenate([run_onnxruntime(path, xs[i : i + 1]) for i in range(len(xs))])
    tol = 1e-4 * max(1.0, float(np.abs(want).max()))
    assert np.abs(run(g, {"x": xs})[0] - want).max() <= tol
    PassManager.from_string("canonicalize").run(g)
    assert not any(op.opname == "batch_norm" for op in g.ops)
    assert np.abs(run(g, {"x": xs})[0] - want).max() <= tol
    prep = g.clone()
    PassManager.from_string("assign-bits{bits=w8a8},calibrate",
                            PassContext(data={"calibration": {"x": xs}})).run(prep)
    q = prep.clone()
    PassManager.from_string("quantize").run(q)
    q_out = run(q, {"x": xs})[0]
    assert (q_out.argmax(1) == run_torch(prep, xs).argmax(1)).mean() >= 0.95
    assert (q_out.argmax(1) == want.argmax(1)).mean() >= 0.75
