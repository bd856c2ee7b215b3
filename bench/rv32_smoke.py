"""RV32IM baseline under QEMU (issue: rv32 target): instructions per MAC of a
plain int8 dot-product loop, and how fast QEMU executes with exact counting.

- a 256x64 int8 matrix-vector product (64 outputs, 256 MACs each), int32
  accumulator, no requantization, compiled with the target's flags (-O2,
  rv32im): exact executed instructions (minstret under -icount shift=0)
  per MAC, as the baseline for micoc's kernels;
- the same ELF run twice: the counts must be identical;
- QEMU speed (million guest instructions per host second) with -icount
  (exact counts) and without, on a long loop; build and start-up time;
- whole networks through the rv32 target (emit, build, run one sample,
  compare with the reference interpreter): LeNet-5 W8A8, and with
  --resnet18 the CIFAR-size ResNet-18 W8A8 (11 MB of weights; ~2 min).

    python bench/rv32_smoke.py [--resnet18]           # print the table
    python bench/rv32_smoke.py [--resnet18] --write   # ... and record it in BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import struct
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from record import machine, write_section  # noqa: E402

SECTION = "## RV32 baseline (QEMU, exact instruction counts)"

MATVEC = r"""
#include "mico_count.h"
#include "mico_io.h"

#define ROWS 64
#define COLS 256

static int8_t w[ROWS * COLS];
static int8_t x[COLS];
static int32_t y[ROWS];

/* The textbook loop: what a portable C kernel costs before any packing. */
__attribute__((noinline)) static void matvec(const int8_t *wp, const int8_t *xp, int32_t *yp)
{
    for (int o = 0; o < ROWS; o++) {
        int32_t acc = 0;
        for (int i = 0; i < COLS; i++) {
            acc += (int32_t)wp[o * COLS + i] * (int32_t)xp[i];
        }
        yp[o] = acc;
    }
}

/* Long-running loop for the QEMU speed measurement. */
__attribute__((noinline)) static uint32_t spin(uint32_t n)
{
    uint32_t h = 1;
    for (uint32_t i = 0; i < n; i++) {
        h = h * 1664525u + 1013904223u;
    }
    return h;
}

int main(void)
{
    uint32_t spins;
    if (mico_io_read(&spins, 4) != 4 || mico_io_read(w, sizeof w) != (int32_t)sizeof w ||
        mico_io_read(x, sizeof x) != (int32_t)sizeof x) {
        return 1;
    }
    mico_count_begin();
    mico_count_layer_begin(0);
    matvec(w, x, y);
    mico_count_layer_end(0);
    mico_count_layer_begin(1);
    uint32_t h = spin(spins);
    mico_count_layer_end(1);
    mico_count_end();
    mico_io_write(y, sizeof y);
    return (int)(h & 1u);
}
"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spins", type=int, default=50_000_000, help="loop iterations for the speed test")
    ap.add_argument("--resnet18", action="store_true", help="also run ResNet-18 W8A8 (needs torch)")
    ap.add_argument("--write", action="store_true", help="record the table in BENCHMARKS.md")
    args = ap.parse_args(argv)

    from micoc.targets import rv32

    rng = np.random.default_rng(0)
    w = rng.integers(-128, 128, (64, 256), dtype=np.int8)
    x = rng.integers(-128, 128, 256, dtype=np.int8)
    want = w.astype(np.int32) @ x.astype(np.int32)
    rows: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "matvec.c"
        src.write_text(MATVEC)
        t0 = time.perf_counter()
        elf = rv32.build_elf([src], out=Path(tmp) / "matvec.elf", ram_size=4 << 20, werror=True)
        t_build = time.perf_counter() - t0

        def run(spins: int, icount: bool = True) -> tuple[rv32.RunResult, float]:
            data = struct.pack("<I", spins) + w.tobytes() + x.tobytes()
            t = time.perf_counter()
            r = rv32.run_elf(elf, data, layer_names=["matvec", "spin"], icount=icount, timeout=600)
            dt = time.perf_counter() - t
            if r.exit_code not in (0, 1) or not np.array_equal(np.frombuffer(r.stdout, "<i4"), want):
                raise SystemExit(f"wrong result (exit {r.exit_code})")
            return r, dt

        r0, t_start = run(0)
        r1, _ = run(0)
        if r0.markers != r1.markers:
            raise SystemExit("instruction counts differ between two runs of the same ELF")
        mv = r0.layers[0].instructions
        macs = 64 * 256
        rows.append(("256x64 int8 matvec: instructions", f"{mv:,}"))
        rows.append(("... per MAC", f"{mv / macs:.3f}"))
        rows.append(("same ELF + input, two runs", "identical counts"))
        rows.append(("build (gcc -O2, 6 files)", f"{t_build:.2f} s"))
        rows.append(("QEMU start + run + exit, tiny program", f"{t_start * 1000:.0f} ms"))
        r_ic, t_ic = run(args.spins)
        n_ic = r_ic.instructions or 0
        rows.append((f"QEMU -icount shift=0 ({n_ic / 1e6:.0f} M instructions)", f"{n_ic / (t_ic - t_start) / 1e6:.0f} MIPS"))
        _, t_free = run(args.spins, icount=False)
        rows.append(("QEMU without -icount (counts not exact)", f"{n_ic / (t_free - t_start) / 1e6:.0f} MIPS"))

        rows += network_rows(Path(tmp), args.resnet18)

    width = max(len(a) for a, _ in rows)
    table = "\n".join(f"| {a:<{width}} | {b} |" for a, b in rows)
    section = f"""{SECTION}

`python bench/rv32_smoke.py` on {machine()}.
{QEMU_NOTE}
| {'what':<{width}} | value |
|{'-' * (width + 2)}|-------|
{table}
"""
    print(section)
    if args.write:
        write_section(section)
    return 0


def network_rows(tmp: Path, resnet18: bool) -> list[tuple[str, str]]:
    """Emit/build/run LeNet-5 (and ResNet-18) W8A8 on the rv32 target, one sample."""
    from micoc.frontends.onnx import import_onnx
    from micoc.interp import run
    from micoc.passes import PassContext, PassManager
    from micoc.targets import get_target

    repo = Path(__file__).resolve().parents[1]
    nets: list[tuple[str, Path, np.ndarray]] = [
        ("LeNet-5", repo / "examples" / "lenet5.onnx",
         np.load(repo / "examples" / "mnist_sample.npz")["x"].astype(np.float32)),
    ]
    if resnet18:
        import torch

        from examples.export import export_onnx
        from examples.models import build

        torch.set_num_threads(1)
        x = torch.randn((8, 3, 32, 32), generator=torch.Generator().manual_seed(0))
        path = export_onnx(build("resnet18", seed=0), x[:1], tmp / "resnet18.onnx", "torchscript", optimize=True)
        nets.append(("ResNet-18 (32x32)", path, x.numpy()))
    rows: list[tuple[str, str]] = []
    target = get_target("rv32")
    for label, path, calib in nets:
        g = import_onnx(path)
        ctx = PassContext(data={"calibration": {g.inputs[0].name: calib}})
        PassManager.from_string("canonicalize,assign-bits{bits=w8a8},calibrate,quantize", ctx).run(g)
        out = tmp / label.split()[0]
        t0 = time.perf_counter()
        rep = target.emit(g, out)
        t1 = time.perf_counter()
        target.build(out)
        t2 = time.perf_counter()
        y = target.run(out, [calib[:1]])[0]
        t3 = time.perf_counter()
        same = y.tobytes() == run(g, [calib[:1]])[0].astype(np.float32).tobytes()
        r = target.last_run
        assert r is not None and r.instructions is not None
        conv = sum(lc.instructions for lc in r.layers)
        rows.append((f"{label} W8A8: instructions / inference", f"{r.instructions:,}"))
        rows.append((f"... in conv/linear layers, per MAC ({rep['macs']:,} MACs)", f"{conv / rep['macs']:.2f}"))
        rows.append(("... emit / build / QEMU run, s", f"{t1 - t0:.1f} / {t2 - t1:.1f} / {t3 - t2:.1f}"))
        rows.append(("... output == interpreter (bit for bit)", "yes" if same else "NO"))
    return rows


QEMU_NOTE = """qemu-system-riscv32 (virt, rv32im, `-bios none`, semihosting), riscv64-unknown-elf-gcc
`-march=rv32im -mabi=ilp32 -O2`. Counts are minstret read by the program under
`-icount shift=0,sleep=off`: exact retired instructions, record overhead removed.
The machine is shared (see the load average): MIPS and seconds vary 2-3x between
runs; the instruction counts do not change.
"""


if __name__ == "__main__":
    raise SystemExit(main())
