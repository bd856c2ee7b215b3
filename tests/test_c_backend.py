"""The C backend on the host: bit-exact against the integer interpreter (float
outputs AND the integer codes behind them) on every example network and
random mixed schemes; every optimized kernel against its reference loop for
all 16 bit pairs; ASan/UBSan builds; weight-byte accounting; the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from functools import cache
from pathlib import Path

import numpy as np
import pytest

from micoc.errors import ToolchainError, UnsupportedError
from micoc.interp import run as interpret
from micoc.ir.graph import Graph
from micoc.passes import PassContext, PassManager
from micoc.passes.assign_bits import AssignBits
from micoc.passes.calibrate import Calibrate
from micoc.passes.canonicalize import Canonicalize
from micoc.passes.quantize import Quantize
from micoc.targets import get_target
from micoc.targets.c.emitter import arena_plan, gather_table
from micoc.targets.c.layout import WF_PACKED, WF_PLANES, conv_weight_rows, short_taps, weight_format
from micoc.targets.host import SANITIZE

ROOT = Path(__file__).resolve().parents[1]
BITS = (1, 2, 4, 8)
HOST = get_target("host")


@cache
def float_graph(name: str) -> tuple[Graph, np.ndarray]:
    """The example network through the fx frontend, canonicalized; and 6 random samples."""
    import torch

    from examples.models import MODELS, build
    from micoc.frontends.fx import import_module

    shape = MODELS[name][1]
    x = torch.randn(shape, generator=torch.Generator().manual_seed(1234))
    g = import_module(build(name, seed=0), x)
    PassManager([Canonicalize()]).run(g)
    data = np.random.default_rng(0).standard_normal((6, *shape[1:])).astype(np.float32)
    return g, data


def quantized(g: Graph, data: np.ndarray, bits: str | None = None, scheme: dict | None = None,
              tmp: Path | None = None) -> Graph:
    q = g.clone()
    ctx = PassContext(data={"calibration": {q.inputs[0].name: data}})
    if scheme is not None:
        assert tmp is not None
        path = tmp / "scheme.json"
        path.write_text(json.dumps(scheme))
        assign = AssignBits(scheme=path, bits="")
    else:
        assign = AssignBits(bits=bits or "")
    PassManager([assign, Calibrate(), Quantize()], ctx).run(q)
    return q


def interpreter_codes(g: Graph, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(float output, integer codes before the output dequantize) of the interpreter."""
    dq = next(op for op in g.ops if op.opname == "dequantize")
    seen: dict[str, np.ndarray] = {}

    def observe(op, value):  # type: ignore[no-untyped-def]
        if op.result is dq.operands[0]:
            seen["codes"] = value

    y = interpret(g, {g.inputs[0].name: x}, observe=observe)[0]
    return y, seen["codes"]


def assert_bit_exact(g: Graph, x: np.ndarray, out: Path, **build: object) -> dict:
    report = HOST.emit(g, out)
    exe = str(build.pop("exe", "model"))
    HOST.build(out, exe=exe, **build)  # type: ignore[arg-type]
    (y,), codes = HOST.run_with_codes(out, [x], exe=exe)
    y_ref, codes_ref = interpreter_codes(g, x)
    assert codes is not None
    np.testing.assert_array_equal(codes.reshape(codes_ref.shape), codes_ref)
    assert y.shape == y_ref.shape
    np.testing.assert_array_equal(y.view(np.uint32), np.asarray(y_ref, np.float32).view(np.uint32))
    return report


# -- every example network at W8A8, W4A4, W2A2, W1A1 ---------------------------------

SMALL = ["lenet5", "vgg_small", "resnet8", "mobilenetv2", "squeezenet"]


@pytest.mark.parametrize("bits", ["w8a8", "w4a4", "w2a2", "w1a1"])
@pytest.mark.parametrize("name", SMALL)
def test_example_bit_exact(name: str, bits: str, tmp_path: Path) -> None:
    g, data = float_graph(name)
    assert_bit_exact(quantized(g, data, bits), data, tmp_path / "build")


@pytest.mark.parametrize("bits", ["w4a4"])
def test_resnet18_bit_exact(bits: str, tmp_path: Path) -> None:
    # One scheme only: emitting and compiling 11 MB of weights per scheme is the cost.
    g, data = float_graph("resnet18")
    report = assert_bit_exact(quantized(g, data, bits), data[:2], tmp_path / "build")
    assert report["weights_mode"] == "incbin"


# -- random mixed schemes -------------------------------------------------------------


@pytest.mark.parametrize("name", ["lenet5", "resnet8"])
def test_random_mixed_schemes_bit_exact(name: str, tmp_path: Path) -> None:
    g, data = float_graph(name)
    rng = np.random.default_rng({"lenet5": 1, "resnet8": 2}[name])
    layers = [op.layer for op in g.layers()]
    for i in range(20):
        scheme = {n: {"w": int(rng.choice(BITS)), "a": int(rng.choice(BITS))} for n in layers}
        q = quantized(g, data, scheme=scheme, tmp=tmp_path)
        try:
            assert_bit_exact(q, data[:3], tmp_path / f"s{i}")
        except AssertionError as e:
            raise AssertionError(f"scheme {scheme}: {e}") from None


# -- every optimized kernel == its reference loop, all 16 bit pairs ---------------


def traced(net: type, sample: tuple[int, ...], torch_seed: int, data_seed: int) -> tuple[Graph, np.ndarray]:
    """A small test network (weights from `torch_seed`) through fx, canonicalized; 4 random samples."""
    import torch

    from micoc.frontends.fx import import_module

    torch.manual_seed(torch_seed)
    x = torch.randn(1, *sample)
    g = import_module(net().eval(), x)
    PassManager([Canonicalize()]).run(g)
    return g, np.random.default_rng(data_seed).standard_normal((4, *sample)).astype(np.float32)


@cache
def kernel_net() -> tuple[Graph, np.ndarray]:
    """Odd sizes, padding, dilation, strides, depthwise and grouped convs, multi-word
    tap rows (37 channels), signed and unsigned activations, and a linear layer."""
    import torch
    from torch import nn


    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.c1 = nn.Conv2d(5, 37, 3, padding=2, dilation=2)
            self.c2 = nn.Conv2d(37, 20, 3, stride=2, padding=1)
            self.c3 = nn.Conv2d(20, 20, 3, padding=1, groups=20)
            self.c4 = nn.Conv2d(20, 34, 1, groups=2)
            self.c5 = nn.Conv2d(34, 33, (3, 2), stride=(1, 2), padding=(1, 0))
            self.fc = nn.Linear(33 * 5 * 3, 7)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.c1(x)
            x = torch.relu(self.c2(x))
            x = torch.relu(self.c3(x))
            x = self.c4(x)
            x = torch.relu(self.c5(x))
            return self.fc(torch.flatten(x, 1))

    return traced(Net, (5, 9, 11), torch_seed=7, data_seed=3)


@pytest.mark.parametrize("abits", BITS)
@pytest.mark.parametrize("wbits", BITS)
def test_optimized_kernels_equal_reference(wbits: int, abits: int, tmp_path: Path) -> None:
    g, data = kernel_net()
    q = quantized(g, data, f"w{wbits}a{abits}")
    out = tmp_path / "build"
    assert_bit_exact(q, data, out)
    assert_bit_exact(q, data, out, exe="model_ref", reference=True)
    kinds = {lay["kernel"] for lay in json.loads((out / "report.json").read_text())["layers"]}
    assert "patch" in kinds


@cache
def short_net() -> tuple[Graph, np.ndarray]:
    """Short taps (layout.short_taps): one input channel (LeNet-5's conv1), then 2 and 3
    channels per tap, padded and strided."""
    import torch
    from torch import nn


    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.c1 = nn.Conv2d(1, 3, 5, padding=2)
            self.c2 = nn.Conv2d(3, 2, 3, stride=2, padding=1)
            self.c3 = nn.Conv2d(2, 5, 3, padding=1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = torch.relu(self.c1(x))
            x = self.c2(x)
            return self.c3(torch.relu(x))

    return traced(Net, (1, 9, 7), torch_seed=5, data_seed=4)


@pytest.mark.parametrize("abits", BITS)
@pytest.mark.parametrize("wbits", BITS)
def test_short_taps_equal_reference(wbits: int, abits: int, tmp_path: Path) -> None:
    """Convs with 1-3 input channels per tap (8-bit weight rows whatever the weight bits,
    layout.short_taps) == the reference loop == the interpreter, all 16 bit pairs."""
    g, data = short_net()
    q = quantized(g, data, f"w{wbits}a{abits}")
    out = tmp_path / "build"
    assert_bit_exact(q, data, out)
    assert_bit_exact(q, data, out, exe="model_ref", reference=True)
    convs = [op for op in q.ops if op.opname == "conv2d"]
    assert short_taps(convs[0]) == (abits > 1)
    if abits > 1:
        assert weight_format(convs[0]) == WF_PACKED


@cache
def misc_net() -> tuple[Graph, np.ndarray]:
    """The other ops: lookup table (sigmoid), avgpool (no pad counting), ceil-mode
    maxpool, concat with requantized operands, clip, sub, relu6, transpose, slice."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    from micoc.frontends.fx import import_module

    class Misc(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.c1 = nn.Conv2d(3, 8, 3, padding=1)
            self.c2 = nn.Conv2d(8, 8, 1)
            self.c3 = nn.Conv2d(16, 16, 3, padding=1)
            self.fc = nn.Linear(16 * 5 * 4, 5)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            a = torch.sigmoid(self.c1(x))
            b = F.avg_pool2d(a, 3, 2, 1, count_include_pad=False)
            c = F.max_pool2d(self.c2(a), 3, 2, 1, ceil_mode=True)
            e = torch.clamp(torch.cat([b, c], 1), -0.5, 0.7)
            f = e - F.relu6(self.c3(e))
            return self.fc(torch.flatten(f.permute(0, 1, 3, 2)[:, :, :, 1:], 1))

    torch.manual_seed(0)
    g = import_module(Misc().eval(), torch.randn(1, 3, 9, 9))
    PassManager([Canonicalize()]).run(g)
    return g, np.random.default_rng(0).standard_normal((4, 3, 9, 9)).astype(np.float32)


@pytest.mark.parametrize("bits", ["w8a8", "w4a2", "w1a1"])
def test_other_ops_bit_exact(bits: str, tmp_path: Path) -> None:
    g, data = misc_net()
    q = quantized(g, data, bits)
    assert {"lut", "avgpool", "maxpool", "concat", "clip", "sub", "transpose", "slice"} <= {op.opname for op in q.ops}
    assert_bit_exact(q, data, tmp_path / "b")
    assert_bit_exact(q, data, tmp_path / "b", exe="model_ref", reference=True)


# -- sanitizers --------------------------------------------------------------------------

SANITIZE_SCHEMES = {"lenet5": "w4a8", "vgg_small": "w1a1", "resnet8": "w2a4", "mobilenetv2": "w8a2",
                    "squeezenet": "w2a2", "resnet18": "w1a2"}


@pytest.mark.parametrize("name", sorted(SANITIZE_SCHEMES))
def test_asan_ubsan_clean(name: str, tmp_path: Path) -> None:
    g, data = float_graph(name)
    q = quantized(g, data, SANITIZE_SCHEMES[name])
    assert_bit_exact(q, data[:1], tmp_path / "build", exe="model_asan", extra_cflags=SANITIZE)


REQUANT_TEST = r"""
#include "mico_rt.c"
#include <stdio.h>
static uint64_t st = 88172645463325252ull;
static uint32_t rnd(void) { st ^= st << 13; st ^= st >> 7; st ^= st << 17; return (uint32_t)st; }
int main(void)
{
    long bad = 0, n;
    for (n = 0; n < 2000000; n++) {
        int32_t acc = (int32_t)rnd(), m = (int32_t)(rnd() >> 1), s = (int32_t)(rnd() % 63), lo = -128, hi = 127;
        uint32_t k = rnd() % 6;
        if (k == 1) acc >>= rnd() % 31;
        if (k == 2) acc = (int32_t)(rnd() % 5) - 2;
        if (k == 3) acc = INT32_MIN + (int32_t)(rnd() % 3);
        if (rnd() % 4 == 0) m >>= rnd() % 31;
        if (rnd() % 50 == 0) m = 0;
        if (rnd() % 3 == 0) { lo = INT32_MIN; hi = INT32_MAX; }
        if (rnd() % 3 == 0) { lo = 0; hi = 255; }
        bad += requant32(acc, m, s, lo, hi, 0) != mico_requant(acc, m, s, lo, hi, 0);
        bad += requant32(acc, m, s, lo, hi, 1) != mico_requant(acc, m, s, lo, hi, 1);
    }
    printf("%ld\n", bad);
    return 0;
}
"""


def test_requant32_equals_mico_requant(tmp_path: Path) -> None:
    """The kernels' 32-bit requantization (one rounding of acc * m / 2^s) is mico_requant
    exactly, over random and edge-case accumulators, multipliers, shifts and clamps; both its
    64-bit-host form and the 32-bit targets' form (MICO_REQUANT_HALVES, what rv32 runs)."""
    from micoc.targets.host import find_cc

    src = tmp_path / "t.c"
    src.write_text(REQUANT_TEST)
    rt = ROOT / "micoc" / "runtime"
    for i, defs in enumerate(([], ["-DMICO_REQUANT_HALVES"])):
        exe = tmp_path / f"t{i}"
        subprocess.run([find_cc(), "-std=c99", "-O2", "-Wno-unused-function", *SANITIZE, *defs, f"-I{rt}", str(src),
                        "-o", str(exe)], check=True)
        assert subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout.strip() == "0", defs


# -- report.json ----------------------------------------------------------------------


def test_weight_bytes_are_the_packed_sizes(tmp_path: Path) -> None:
    g, data = float_graph("resnet8")
    q = quantized(g, data, "w2a4")
    rep = HOST.emit(q, tmp_path / "b")
    blob = (tmp_path / "b" / "weights.bin").stat().st_size
    assert rep["weight_bytes"] == blob == sum(e["bytes"] for e in rep["weights"])
    assert sum(rep["weight_bytes_by_kind"].values()) == blob
    by_name = {e["name"]: e["bytes"] for e in rep["weights"]}
    for op in q.ops:
        if op.opname not in ("conv2d", "linear"):
            continue
        _, cout, taps, cin = conv_weight_rows(op)
        wb = op.operands[1].type.bits
        c = {1: 1, 2: 2, 3: 4, 4: 4}.get(wb, 8)
        fmt = weight_format(op)
        if fmt == WF_PLANES:  # per output channel, wb planes of the row's K bits
            words = cout * wb * -(-taps * cin // 32)
        elif fmt == WF_PACKED:  # packed rows (8-bit containers, any weight bits)
            words = cout * -(-taps * cin * 8 // 32)
        else:  # pairs of output channels, 16/c codes of each per word
            words = -(-cout // 2) * -(-taps * cin * c // 16)
        assert by_name[f"{op.layer}.weight"] == 4 * words
        assert by_name[f"{op.layer}.multiplier"] == by_name[f"{op.layer}.shift"] == 4 * cout
        lay = next(la for la in rep["layers"] if la["name"] == op.layer)
        assert lay["weight_bytes"] == sum(b for n, b in by_name.items() if n.startswith(f"{op.layer}."))
    assert rep["arena_lower_bound_bytes"] <= rep["arena_bytes"]
    assert {"name", "op", "shape", "wbits", "abits", "macs", "weight_bytes"} <= set(rep["layers"][0])
    assert (tmp_path / "b" / "model.mir").exists() and (tmp_path / "b" / "model.npz").exists()


# -- the arena: plan-buffers with the runtime's sizes and views ------------------------


@pytest.mark.parametrize("bits", ["w8a8", "w2a2"])
@pytest.mark.parametrize("name", [*SMALL, "resnet18"])
def test_arena_is_plan_buffers_near_the_bound(name: str, bits: str) -> None:
    g, data = float_graph(name)
    q = quantized(g, data[:2], bits)
    plan = arena_plan(q)
    assert plan.lower_bound <= plan.arena_bytes <= 1.10 * plan.lower_bound
    assert all(off % 4 == 0 for off in plan.offsets.values())
    for op in q.ops:  # a reshape shares its operand's bytes iff it moves no code in this layout
        if op.opname == "reshape" and op.result.type.is_quantized:
            assert (op.result in plan.views) == (gather_table(op) is None)
    if name == "lenet5":  # flatten of channel-packed 5x5 pixels: a copy into its own buffer
        flat = next(op for op in q.ops if op.opname == "reshape" and op.result.type.is_quantized)
        assert flat.result not in plan.alias_of and plan.offsets[flat.result] != plan.offsets[flat.operands[0]]


def test_report_arena_comes_from_plan_buffers(tmp_path: Path) -> None:
    g, data = float_graph("lenet5")
    q = quantized(g, data, "w4a4")
    rep = HOST.emit(q, tmp_path / "b")
    plan = arena_plan(q)
    assert rep["arena_planner"] == f"plan-buffers ({plan.strategy})"
    assert rep["arena_bytes"] == plan.arena_bytes and rep["arena_lower_bound_bytes"] == plan.lower_bound


# -- errors ---------------------------------------------------------------------------


def test_unquantized_graph_is_unsupported(tmp_path: Path) -> None:
    g, _ = float_graph("lenet5")
    with pytest.raises(UnsupportedError, match="not quantized"):
        HOST.emit(g, tmp_path / "b")
    assert not (tmp_path / "b").exists()
    assert list(tmp_path.iterdir()) == []  # no half-written output


def test_missing_compiler_names_the_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    g, data = float_graph("lenet5")
    HOST.emit(quantized(g, data, "w8a8"), tmp_path / "b")
    monkeypatch.setenv("CC", "no-such-cc-micoc")
    with pytest.raises(ToolchainError, match="apt-get install gcc"):
        HOST.build(tmp_path / "b")


# -- CLI --------------------------------------------------------------------------------


def micoc(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "micoc", *args], capture_output=True, text=True, cwd=ROOT)


def test_cli_compile_run_and_list_targets(tmp_path: Path) -> None:
    sample = ROOT / "examples" / "mnist_sample.npz"
    out = tmp_path / "build"
    r = micoc("compile", "examples/lenet5.onnx", "--target", "host", "--calib", str(sample), "--bits", "w4a4",
              "-o", str(out), "--run", "--input", str(sample), "--run-output", str(tmp_path / "a.npy"))
    assert r.returncode == 0, r.stderr
    r = micoc("run", str(out), "--input", str(sample), "-o", str(tmp_path / "b.npy"),
              "--report", str(tmp_path / "r.json"))
    assert r.returncode == 0, r.stderr
    a, b = np.load(tmp_path / "a.npy"), np.load(tmp_path / "b.npy")
    assert a.shape == (16, 10) and np.array_equal(a, b)
    # the compiled program equals the interpreter on the IR it was built from
    r = micoc("run", str(out / "model.mir"), "--input", str(sample), "-o", str(tmp_path / "c.npy"))
    assert r.returncode == 0, r.stderr
    assert np.array_equal(a.view(np.uint32), np.load(tmp_path / "c.npy").view(np.uint32))
    assert json.loads((tmp_path / "r.json").read_text())["samples"] == 16
    r = micoc("list-targets")
    assert r.returncode == 0 and "host" in r.stdout
    # bad input: wrong shape -> exit 2, one clear line
    np.save(tmp_path / "bad.npy", np.zeros((2, 3, 28, 28), np.float32))
    r = micoc("run", str(out), "--input", str(tmp_path / "bad.npy"), "-o", str(tmp_path / "d.npy"))
    assert r.returncode == 2 and "shape" in r.stderr
    r = micoc("compile", "examples/lenet5.onnx", "--target", "nope", "--calib", str(sample), "--bits", "w4a4",
              "-o", str(tmp_path / "x"))
    assert r.returncode == 2 and "unknown target" in r.stderr
