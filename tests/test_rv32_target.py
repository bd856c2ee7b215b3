"""The rv32 / vexii targets: the emitted C built bare metal, run under QEMU,
bit-identical to the reference interpreter, with exact per-layer counts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from micoc.frontends.onnx import import_onnx
from micoc.interp import run
from micoc.ir import Graph
from micoc.passes import PassContext, PassManager
from micoc.targets import get_target
from micoc.targets import rv32 as rv32_pkg

ROOT = Path(__file__).resolve().parents[1]
LENET = ROOT / "examples" / "lenet5.onnx"

pytestmark = pytest.mark.skipif(
    not rv32_pkg.available(),
    reason=f"riscv64-unknown-elf-gcc / qemu-system-riscv32 not installed ({rv32_pkg.APT_HINT})",
)


def _lenet(bits: str) -> tuple[Graph, np.ndarray]:
    x = np.load(ROOT / "examples" / "mnist_sample.npz")["x"].astype(np.float32)
    g = import_onnx(LENET)
    ctx = PassContext(data={"calibration": {g.inputs[0].name: x}})
    PassManager.from_string(f"canonicalize,assign-bits{{bits={bits}}},calibrate,quantize", ctx).run(g)
    return g, x[:3]


@pytest.mark.parametrize("bits", ["w8a8", "w4a4", "w2a8", "w1a1"])
def test_rv32_matches_host_bit_for_bit(tmp_path: Path, bits: str) -> None:
    """The same C on RV32IM (soft-float boundary, 32-bit longs) as on the host:
    outputs and output codes identical; at w8a8 also the interpreter's."""
    g, x = _lenet(bits)
    host = get_target("host")
    host.emit(g, tmp_path / "host")
    want, want_codes = host.run_with_codes(tmp_path / "host", [x])
    want = want[0]
    if bits == "w8a8":
        assert want.tobytes() == run(g, [x])[0].astype(np.float32).tobytes()
    t = get_target("rv32")
    t.check_support(g)
    report = t.emit(g, tmp_path / "out")
    elf = t.build(tmp_path / "out")
    assert elf.name == "model.elf" and elf.exists()
    ys, codes = t.run_with_codes(tmp_path / "out", [x])
    assert ys[0].tobytes() == want.tobytes()
    assert codes is not None and want_codes is not None
    assert codes.tobytes() == want_codes.tobytes()
    r = t.last_run
    assert r is not None and len(r.regions) == 3  # one count region per sample
    names = [lay["name"] for lay in report["layers"]]
    assert [lc.name for lc in r.layers] == names
    for reg in r.regions:
        assert [lc.name for lc in reg.layers] == names
        assert 0 < sum(lc.instructions for lc in reg.layers) < reg.instructions
    doc = json.loads((tmp_path / "out" / "instructions.json").read_text())
    assert doc["instructions"] == r.instructions == sum(doc["samples"])
    # Deterministic: a second run gives the same counts.
    assert t.run(tmp_path / "out", [x])[0].tobytes() == want.tobytes()
    assert t.last_run is not None and t.last_run.regions == r.regions  # (-c adds I/O between)


def test_vexii_builds_the_same_portable_code(tmp_path: Path) -> None:
    g, x = _lenet("w8a8")
    outs = {}
    for name in ("rv32", "vexii"):
        t = get_target(name)
        t.emit(g, tmp_path / name)
        y = t.run(tmp_path / name, [x[:1]])[0]  # builds on first run
        assert t.last_run is not None
        outs[name] = (y.tobytes(), t.last_run.instructions)
    assert outs["rv32"] == outs["vexii"]


def test_cli_run_report_has_exact_first_sample_counts(tmp_path: Path) -> None:
    """`micoc run BUILD --report`: instructions of the first sample's inference and per layer, exact
    and repeatable; the outputs equal the integer interpreter's."""
    import json
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 1, 28, 28)).astype(np.float32)
    np.savez(tmp_path / "x.npz", x=x)

    def micoc(*args: str) -> None:
        res = subprocess.run([sys.executable, "-m", "micoc", *args], capture_output=True, text=True, cwd=root)
        assert res.returncode == 0, res.stderr

    micoc("compile", str(root / "examples" / "lenet5.onnx"), "--target", "rv32", "--calib", str(tmp_path / "x.npz"),
          "--bits", "w4a4", "-o", str(tmp_path / "build"))
    reports = []
    for i in range(2):
        micoc("run", str(tmp_path / "build"), "--input", str(tmp_path / "x.npz"), "-o", str(tmp_path / f"y{i}.npy"),
              "--report", str(tmp_path / f"r{i}.json"))
        reports.append(json.loads((tmp_path / f"r{i}.json").read_text()))
    r = reports[0]
    assert r["instructions"] == r["instructions_per_sample"][0] > 0
    assert [layer["name"] for layer in r["layers"]] == ["/conv1/Conv", "/conv2/Conv", "/fc1/Gemm", "/fc2/Gemm", "/fc3/Gemm"]
    assert 0 < sum(layer["instructions"] for layer in r["layers"]) < r["instructions"]
    assert reports[1]["instructions"] == r["instructions"] and reports[1]["layers"] == r["layers"]
    micoc("run", str(tmp_path / "build" / "model.mir"), "--input", str(tmp_path / "x.npz"), "-o", str(tmp_path / "ref.npy"))
    assert np.array_equal(np.load(tmp_path / "y0.npy"), np.load(tmp_path / "ref.npy"))


@pytest.mark.parametrize("bits", ["w8a8", "w8a4", "w4a1", "w2a1", "w1a1", "w1a8"])
def test_rv32_kernels_match_host(tmp_path: Path, bits: str) -> None:
    """Every kernel family on RV32IM gives the host's codes (int8 weight bytes, channel
    pairs, bit-serial with padding and row sums, XNOR): odd channel counts, padding, a
    stride-2 conv, a grouped conv and a linear layer."""
    import torch
    from torch import nn

    from micoc.frontends.fx import import_module

    torch.manual_seed(5)
    net = nn.Sequential(nn.Conv2d(3, 21, 3, padding=1), nn.ReLU(), nn.Conv2d(21, 34, 3, stride=2, padding=1),
                        nn.Conv2d(34, 34, 3, padding=1, groups=2), nn.ReLU(), nn.Flatten(), nn.Linear(34 * 16, 9))
    g = import_module(net.eval(), torch.randn(1, 3, 8, 8))
    x = np.random.default_rng(1).standard_normal((3, 3, 8, 8)).astype(np.float32)
    ctx = PassContext(data={"calibration": {g.inputs[0].name: x}})
    PassManager.from_string(f"canonicalize,assign-bits{{bits={bits}}},calibrate,quantize", ctx).run(g)
    host = get_target("host")
    host.emit(g, tmp_path / "host")
    want, want_codes = host.run_with_codes(tmp_path / "host", [x])
    t = get_target("rv32")
    t.emit(g, tmp_path / "rv32")
    ys, codes = t.run_with_codes(tmp_path / "rv32", [x])
    assert codes is not None and want_codes is not None
    assert codes.tobytes() == want_codes.tobytes() and ys[0].tobytes() == want[0].tobytes()
