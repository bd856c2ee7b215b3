"""C backend on the host: latency of the compiled networks vs onnxruntime fp32, and
compile time of ResNet-18 (ONNX -> emitted C -> host binary).

- latency: W8A8 (and lower bit widths) LeNet-5 and ResNet-18-style, one
  inference at a time in a timing harness linked with the emitted model
  (median over repeats), vs onnxruntime fp32 with one thread;
- compile time: `micoc compile`'s stages for ResNet-18 (import +
  quantize pipeline, emit, cc), medians.

    python bench/c_kernels.py            # print the tables
    python bench/c_kernels.py --write    # ... and record them in BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from record import machine, write_section  # noqa: E402

SECTION = "## C backend on the host (latency, compile time)"

TIMING_MAIN = r"""
#define _POSIX_C_SOURCE 199309L
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include "model.h"

static float in_buf[MICO_MODEL_INPUT_SIZE];
static float out_buf[MICO_MODEL_OUTPUT_SIZE];

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int main(int argc, char **argv)
{
    int reps = argc > 1 ? atoi(argv[1]) : 20, inner = argc > 2 ? atoi(argv[2]) : 1, r, i;
    unsigned s = 1;
    for (i = 0; i < MICO_MODEL_INPUT_SIZE; i++) {
        s = s * 1103515245u + 12345u;
        in_buf[i] = (float)((s >> 8) & 0xFFFF) / 32768.0f - 1.0f;
    }
    mico_model_run(in_buf, out_buf);
    for (r = 0; r < reps; r++) {
        double t0 = now();
        for (i = 0; i < inner; i++) mico_model_run(in_buf, out_buf);
        printf("%.9f\n", (now() - t0) / inner);
    }
    return 0;
}
"""


def quantize(onnx_path: Path, bits: str, calib: np.ndarray):  # type: ignore[no-untyped-def]
    from micoc.frontends.onnx import import_onnx
    from micoc.passes import PassContext, PassManager

    g = import_onnx(onnx_path)
    ctx = PassContext(data={"calibration": {g.inputs[0].name: calib}})
    PassManager.from_string(f"canonicalize,assign-bits{{bits={bits}}},calibrate,quantize", ctx).run(g)
    return g


def c_latency(graph, outdir: Path, reps: int, inner: int) -> float:  # type: ignore[no-untyped-def]
    from micoc.targets import get_target
    from micoc.targets.host import CFLAGS

    host = get_target("host")
    host.emit(graph, outdir)
    (outdir / "bench_main.c").write_text(TIMING_MAIN)
    cmd = ["cc", *[f for f in CFLAGS if f != "-pedantic"], f"-Wa,-I{outdir}", "-o", "bench",
           "model.c", "weights.c", "mico_rt.c", "bench_main.c"]
    subprocess.run(cmd, cwd=outdir, check=True)
    out = subprocess.run([str(outdir / "bench"), str(reps), str(inner)], capture_output=True, text=True,
                         check=True).stdout
    return statistics.median(float(v) for v in out.split())


def ort_latency(path: Path, x: np.ndarray, reps: int, inner: int) -> float:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    sess.run(None, {name: x})
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        for _ in range(inner):
            sess.run(None, {name: x})
        times.append((time.perf_counter() - t0) / inner)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--write", action="store_true", help="record the tables in BENCHMARKS.md")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    from examples.export import export_onnx
    from examples.models import MODELS, build

    lat_rows: list[str] = []
    comp_rows: list[str] = []
    with tempfile.TemporaryDirectory() as tmpd:
        tmp = Path(tmpd)
        for name, inner, schemes in (("lenet5", 200, ("w8a8", "w4a4", "w2a2", "w1a1")),
                                     ("resnet18", 1, ("w8a8", "w4a4", "w2a2", "w1a1"))):
            shape = MODELS[name][1]
            x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
            path = export_onnx(build(name, seed=0), x, tmp / f"{name}.onnx", "torchscript", optimize=True)
            calib = np.random.default_rng(0).standard_normal((8, *shape[1:])).astype(np.float32)
            t_ort = ort_latency(path, x.numpy(), args.repeat, inner)
            for bits in schemes:
                g = quantize(path, bits, calib)
                t_c = c_latency(g, tmp / f"{name}_{bits}", args.repeat, inner)
                lat_rows.append(f"| {name} | {bits} | {1e3 * t_c:.3f} | {1e3 * t_ort:.3f} | {t_c / t_ort:.2f}x |")
                print(lat_rows[-1], flush=True)

        # compile time of ResNet-18: ONNX -> quantized IR -> emitted C -> host binary
        from micoc.targets import get_target

        host = get_target("host")
        path = tmp / "resnet18.onnx"
        calib = np.random.default_rng(0).standard_normal((8, 3, 32, 32)).astype(np.float32)
        stages: dict[str, list[float]] = {"import + quantize (w8a8)": [], "emit C": [], "cc (host binary)": []}
        for i in range(3):
            t0 = time.perf_counter()
            g = quantize(path, "w8a8", calib)
            t1 = time.perf_counter()
            host.emit(g, tmp / f"r18_{i}")
            t2 = time.perf_counter()
            host.build(tmp / f"r18_{i}")
            t3 = time.perf_counter()
            stages["import + quantize (w8a8)"].append(t1 - t0)
            stages["emit C"].append(t2 - t1)
            stages["cc (host binary)"].append(t3 - t2)
        total = 0.0
        for k, v in stages.items():
            m = statistics.median(v)
            total += m
            comp_rows.append(f"| {k} | {m:.2f} |")
        comp_rows.append(f"| total (ONNX -> binary) | {total:.2f} |")
        print("\n".join(comp_rows))

    section = "\n".join([
        SECTION,
        "",
        f"`python bench/c_kernels.py --write` on {machine()}.",
        "",
        "Latency of one inference (median of repeats): the emitted C built with",
        "`cc -O2 -ffp-contract=off` (the portable C the rv32im build runs; gcc may auto-vectorize with SSE2) vs",
        "onnxruntime fp32 with one thread (which uses AVX2/FMA GEMMs). Ratio = C / onnxruntime.",
        "The machine is shared: latencies vary ~2x between runs (see the load average).",
        "",
        "| network | scheme | C ms | onnxruntime fp32 ms | ratio |",
        "|---|---|---|---|---|",
        *lat_rows,
        "",
        "Compile time of ResNet-18 (11M parameters; seconds, median of 3; the runtime object",
        "is cached after the first build, weights above 1 MiB go through `.incbin`):",
        "",
        "| stage | s |",
        "|---|---|",
        *comp_rows,
    ])
    if args.write:
        write_section(section)
    print(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
