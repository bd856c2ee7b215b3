"""C kernels on RV32IM: exact instructions per MAC for all 16 (weight, activation) bit pairs.

The issue's layers: a linear layer (256 -> 64) and a 3x3 conv (16 -> 16
channels on 16x16 pixels, padding 1, stride 1); plus a larger 3x3 conv
(64 -> 64 on 8x8, padding 1). Each is built at wWaA for w, a in {1, 2, 4, 8}
and run under QEMU with `-icount` by the rv32 target: the layer's retired
instructions (from its packed input to its requantized packed output,
bit-plane repack included) divided by its MACs; and LeNet-5 and ResNet-8
whole. Deterministic.

    python bench/c_rv32_kernels.py            # print the table
    python bench/c_rv32_kernels.py --write    # ... and record it in BENCHMARKS.md
    python bench/c_rv32_kernels.py --layers linear --pairs w2a2,w1a1   # a few cells
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from record import machine, write_section  # noqa: E402

SECTION = "## C kernels on RV32IM (instructions per MAC, all bit pairs)"
BITS = (1, 2, 4, 8)
LAYERS = ("linear", "conv3x3", "conv3x3_64")


def layer_net(kind: str):  # type: ignore[no-untyped-def]
    import torch
    from torch import nn

    from micoc.frontends.fx import import_module
    from micoc.passes import PassManager

    torch.manual_seed(0)
    if kind == "conv3x3":
        body, x = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1), nn.ReLU()), torch.randn(1, 16, 16, 16)
    elif kind == "conv3x3_64":
        body, x = nn.Sequential(nn.Conv2d(64, 64, 3, padding=1), nn.ReLU()), torch.randn(1, 64, 8, 8)
    else:
        body, x = nn.Sequential(nn.Linear(256, 64), nn.ReLU()), torch.randn(1, 256)
    g = import_module(body.eval(), x)
    PassManager.from_string("canonicalize").run(g)
    return g, np.random.default_rng(0).standard_normal((4, *x.shape[1:])).astype(np.float32)


def run_on_rv32(rv32, g0, bits: str, data: np.ndarray, out: Path, before: str = ""):  # type: ignore[no-untyped-def]
    """Quantize a copy of g0 at `bits` (calibrated on data), build it for rv32 and run
    the first sample under QEMU: (emit report, the run's exact counts)."""
    from micoc.passes import PassContext, PassManager

    g = g0.clone()
    ctx = PassContext(data={"calibration": {g.inputs[0].name: data}})
    PassManager.from_string(f"{before}assign-bits{{bits={bits}}},calibrate,quantize", ctx).run(g)
    rep = rv32.emit(g, out)
    rv32.build(out)
    rv32.run(out, [data[:1]])
    return rep, rv32.last_run


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", help="record the table in BENCHMARKS.md")
    ap.add_argument("--layers", default=",".join(LAYERS), help="comma-separated subset of " + ",".join(LAYERS))
    ap.add_argument("--pairs", default="", help="only these cells, e.g. w2a2,w1a1 (no networks, no --write)")
    ap.add_argument("--no-nets", action="store_true", help="skip the example networks")
    args = ap.parse_args(argv)
    pairs = {p.strip() for p in args.pairs.split(",") if p.strip()}
    if args.write and (pairs or args.no_nets or args.layers != ",".join(LAYERS)):
        ap.error("--write records the whole table")

    from micoc.targets import get_target

    rv32 = get_target("rv32")
    rows = []
    with tempfile.TemporaryDirectory() as tmpd:
        for kind in args.layers.split(","):
            g0, data = layer_net(kind)
            for w in BITS:
                cells = []
                for a in BITS:
                    if pairs and f"w{w}a{a}" not in pairs:
                        cells.append("-")
                        continue
                    rep, run = run_on_rv32(rv32, g0, f"w{w}a{a}", data, Path(tmpd) / f"{kind}_w{w}a{a}")
                    lay = rep["layers"][0]
                    instr = run.layers[0].instructions
                    cells.append(f"{instr / lay['macs']:.2f} ({lay['kernel'][0]})")
                rows.append(f"| {kind} | w{w} | " + " | ".join(cells) + " |")
                print(rows[-1], flush=True)
        # whole example networks: instructions per MAC in conv/linear layers, and per inference
        net_rows = []
        import torch

        from examples.models import MODELS, build
        from micoc.frontends.fx import import_module

        for name in () if pairs or args.no_nets else ("lenet5", "resnet8"):
            shape = MODELS[name][1]
            x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
            g0 = import_module(build(name, seed=0), x)
            data = np.random.default_rng(0).standard_normal((4, *shape[1:])).astype(np.float32)
            cells = []
            for bits in ("w8a8", "w4a4", "w2a2", "w1a1"):
                rep, run = run_on_rv32(rv32, g0, bits, data, Path(tmpd) / f"{name}_{bits}", "canonicalize,")
                layer_instr = sum(lc.instructions for lc in run.layers)
                cells.append(f"{layer_instr / rep['macs']:.2f} / {run.instructions / 1e6:.2f}M")
            net_rows.append(f"| {name} | " + " | ".join(cells) + " |")
            print(net_rows[-1], flush=True)
    section = "\n".join([
        SECTION,
        "",
        f"`python bench/c_rv32_kernels.py --write` on {machine()}.",
        "",
        "Retired RV32IM instructions per MAC of one layer (exact, QEMU `-icount`), from its",
        "packed input to its requantized packed output. Kernel: (b) bit-serial AND+popcount over",
        "bit-planes, (p) patch (unpack once per pixel; 8-bit weights as bytes, 4 outputs per",
        "activation load; 1-4-bit weights two output channels per multiply in 16-bit lanes).",
        "Layers: linear 256->64; conv3x3 16->16 on 16x16 (pad 1, stride 1); conv3x3_64 64->64",
        "on 8x8 (pad 1). Anchor (MiCo-Lib, bare matmul, packed inputs, no requant): A8W8 7.05,",
        "A4W4 20.0, A2W2 28.6, A1W1 19.5, other pairs 16-27.",
        "",
        "| layer | weights | a1 | a2 | a4 | a8 |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
        "Example networks (one inference; fx frontend, random weights): instructions per MAC in",
        "the conv/linear layers / total instructions (input quantization to output dequantization).",
        "",
        "| network | w8a8 | w4a4 | w2a2 | w1a1 |",
        "|---|---|---|---|---|",
        *net_rows,
    ])
    if args.write:
        write_section(section)
    print(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
