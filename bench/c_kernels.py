"""C backend on the host: latency of the compiled networks vs onnxruntime fp32 and
int8, and compile time of ResNet-18 (ONNX -> emitted C -> host binary).

- latency: W8A8 (and lower bit widths) LeNet-5 (1x28x28) and the
  ResNet-18-style example network (3x32x32, CIFAR stem), one inference at a
  time on the same input, vs onnxruntime fp32 and onnxruntime int8
  (`quantize_static`, QDQ, uint8 activations, per-channel int8 weights,
  calibrated on the same 8 samples micoc calibrates on), all single thread.
  The candidates run side by side in one run: rounds of (C, onnxruntime
  fp32, onnxruntime int8), each round a few timed repeats; the table has the
  medians over all repeats, and the ratios C / onnxruntime;
- compile time: `micoc compile`'s stages for ResNet-18 (import, the
  quantize pipeline pass by pass with 8 calibration samples, emit, cc),
  medians of 3.

    python bench/c_kernels.py            # print the tables
    python bench/c_kernels.py --write    # ... and record them in BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Single-threaded BLAS (before numpy loads it): the calibration's float convolutions
# on a shared 2-core machine run slower with two contending BLAS threads.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from record import machine, write_section  # noqa: E402

SECTION = "## C backend on the host (latency, compile time)"
CALIB_SAMPLES = 8

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
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t); /* CPU time: robust on a shared machine */
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int main(int argc, char **argv)
{
    int reps = argc > 1 ? atoi(argv[1]) : 20, inner = argc > 2 ? atoi(argv[2]) : 1, r, i;
    FILE *f = argc > 3 ? fopen(argv[3], "rb") : NULL;
    if (!f || fread(in_buf, sizeof(float), MICO_MODEL_INPUT_SIZE, f) != MICO_MODEL_INPUT_SIZE) return 2;
    fclose(f);
    mico_model_run(in_buf, out_buf);
    for (r = 0; r < reps; r++) {
        double t0 = now();
        for (i = 0; i < inner; i++) mico_model_run(in_buf, out_buf);
        printf("%.9f\n", (now() - t0) / inner);
    }
    return 0;
}
"""


def quantize(onnx_path: Path, bits: str, calib: np.ndarray, times: dict[str, tuple[float, float]] | None = None):  # type: ignore[no-untyped-def]
    """Import and run the quantize pipeline; `times` gets each stage's seconds."""
    from micoc.frontends.onnx import import_onnx
    from micoc.passes import PassContext, PassManager

    with Stopwatch(times, "import ONNX"):
        g = import_onnx(onnx_path)
    ctx = PassContext(data={"calibration": {g.inputs[0].name: calib}})
    passes = PassManager.from_string(f"canonicalize,assign-bits{{bits={bits}}},calibrate,quantize", ctx).passes
    for p in passes:  # one manager per pass, to time each with the verifier after it
        with Stopwatch(times, f"pass {p.name} (+ verify)"):
            PassManager([p], ctx).run(g)
    return g


class Stopwatch:
    """Adds (wall, CPU) seconds of the block to times[key] (nothing if times is None)."""

    def __init__(self, times: dict[str, tuple[float, float]] | None, key: str) -> None:
        self.times, self.key = times, key

    @staticmethod
    def cpu() -> float:
        t = os.times()  # this process and its finished children (cc)
        return t.user + t.system + t.children_user + t.children_system

    def __enter__(self) -> None:
        self.t = (time.perf_counter(), self.cpu())

    def __exit__(self, *exc: object) -> None:
        if self.times is not None:
            w, c = self.times.get(self.key, (0.0, 0.0))
            self.times[self.key] = (w + time.perf_counter() - self.t[0], c + self.cpu() - self.t[1])


def build_c(graph, outdir: Path, cflags: list[str]) -> Path:  # type: ignore[no-untyped-def]
    """Emit `graph` and link it with the timing harness (the host target's flags)."""
    from micoc.targets import get_target

    get_target("host").emit(graph, outdir)
    (outdir / "bench_main.c").write_text(TIMING_MAIN)
    cmd = ["cc", *[f for f in cflags if f != "-pedantic"], f"-Wa,-I{outdir}", "-o", "bench",
           "model.c", "weights.c", "mico_rt.c", "bench_main.c"]
    subprocess.run(cmd, cwd=outdir, check=True)
    return outdir / "bench"


def c_times(exe: Path, x_path: Path, reps: int, inner: int) -> list[float]:
    out = subprocess.run([str(exe), str(reps), str(inner), str(x_path)], capture_output=True, text=True,
                         check=True).stdout
    return [float(v) for v in out.split()]


class OrtRunner:
    """One single-threaded onnxruntime session (CPU provider, all graph optimizations)."""

    def __init__(self, path: Path, x: np.ndarray) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        self.sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.feed = {self.sess.get_inputs()[0].name: x}
        self.sess.run(None, self.feed)

    def times(self, reps: int, inner: int) -> list[float]:
        out = []
        for _ in range(reps):
            t0 = time.thread_time()  # CPU time of this thread, where the single-threaded session runs
            for _ in range(inner):
                self.sess.run(None, self.feed)
            out.append((time.thread_time() - t0) / inner)
        return out


def ort_int8(path: Path, calib: np.ndarray, out: Path) -> Path:
    """onnxruntime's static int8 quantization of `path`, calibrated on `calib` (QDQ,
    uint8 activations, per-channel int8 weights: onnxruntime's recommended x86 setting)."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self, name: str) -> None:
            self.it = iter([{name: s[None]} for s in calib])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.it, None)

    pre = out.with_name(out.stem + "_pre.onnx")
    quant_pre_process(str(path), str(pre))
    quantize_static(str(pre), str(out), Reader("x"), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    return out


def build_net(name: str):  # type: ignore[no-untyped-def]
    """(module, input shape) of an example network, or "resnet18-tv": the same
    ResNet-18 with torchvision's ImageNet stem (7x7 stride-2 conv + 3x3 stride-2
    max pooling), the network behind the issue's reference numbers at 3x32x32."""
    import torch
    from torch import nn

    from examples.models import MODELS, build

    if name != "resnet18-tv":
        return build(name, seed=0), MODELS[name][1]

    class TorchvisionStem(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = build("resnet18", seed=0)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                self.net.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
            self.maxpool = nn.MaxPool2d(3, 2, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            n = self.net
            x = self.maxpool(n.relu(n.bn1(n.conv1(x))))
            x = n.layer4(n.layer3(n.layer2(n.layer1(x))))
            return n.fc(n.flatten(n.avgpool(x)))

    return TorchvisionStem().eval(), (1, 3, 32, 32)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds (C, ort fp32, ort int8)")
    ap.add_argument("--repeat", type=int, default=5, help="timed repeats per candidate and round")
    ap.add_argument("--write", action="store_true", help="record the tables in BENCHMARKS.md")
    args = ap.parse_args(argv)

    import logging

    import torch

    torch.set_num_threads(1)
    logging.getLogger().setLevel(logging.ERROR)  # onnxruntime.quantization's advice on stderr
    from examples.export import export_onnx
    from micoc.targets.host import CFLAGS

    lat_rows: list[str] = []
    comp_rows: list[str] = []
    with tempfile.TemporaryDirectory() as tmpd:
        tmp = Path(tmpd)
        for name, inner, schemes in (("lenet5", 200, ("w8a8", "w4a4", "w2a2", "w1a1")),
                                     ("resnet18", 1, ("w8a8", "w4a4", "w2a2", "w1a1")),
                                     ("resnet18-tv", 20, ("w8a8", "w2a2"))):
            net, shape = build_net(name)
            x = torch.randn(shape, generator=torch.Generator().manual_seed(0)).numpy()
            path = export_onnx(net, torch.from_numpy(x), tmp / f"{name}.onnx", "torchscript", optimize=True)
            calib = np.random.default_rng(0).standard_normal((CALIB_SAMPLES, *shape[1:])).astype(np.float32)
            x_path = tmp / f"{name}_x.bin"
            x.astype("<f4").tofile(x_path)
            fp32 = OrtRunner(path, x)
            int8 = OrtRunner(ort_int8(path, calib, tmp / f"{name}_int8.onnx"), x)
            exes = {bits: build_c(quantize(path, bits, calib), tmp / f"{name}_{bits}", CFLAGS) for bits in schemes}
            t: dict[str, list[float]] = {k: [] for k in ("fp32", "int8", *schemes)}
            for _ in range(args.rounds):
                for bits, exe in exes.items():
                    t[bits] += c_times(exe, x_path, args.repeat, inner)
                t["fp32"] += fp32.times(args.repeat, inner)
                t["int8"] += int8.times(args.repeat, inner)
            m = {k: statistics.median(v) for k, v in t.items()}
            for bits in schemes:
                lat_rows.append(f"| {name} | {bits} | {1e3 * m[bits]:.3f} | {1e3 * m['fp32']:.3f} "
                                f"| {1e3 * m['int8']:.3f} | {m[bits] / m['fp32']:.2f}x | {m[bits] / m['int8']:.2f}x |")
                print(lat_rows[-1], flush=True)

        # compile time of ResNet-18: ONNX -> quantized IR -> emitted C -> host binary
        from micoc.targets import get_target

        host = get_target("host")
        path = tmp / "resnet18.onnx"
        calib = np.random.default_rng(0).standard_normal((CALIB_SAMPLES, 3, 32, 32)).astype(np.float32)
        runs: list[dict[str, tuple[float, float]]] = []
        for i in range(3):
            times: dict[str, tuple[float, float]] = {}
            g = quantize(path, "w8a8", calib, times)
            with Stopwatch(times, "emit C"):
                host.emit(g, tmp / f"r18_{i}")
            with Stopwatch(times, "cc (host binary)"):
                host.build(tmp / f"r18_{i}")
            stages = list(times.values())
            times["ONNX -> C (total)"] = tuple(sum(v[j] for v in stages[:-1]) for j in (0, 1))  # type: ignore[assignment]
            times["ONNX -> binary (total)"] = tuple(sum(v[j] for v in stages) for j in (0, 1))  # type: ignore[assignment]
            runs.append(times)
        for k in runs[0]:
            wall = statistics.median(r[k][0] for r in runs)
            cpu = statistics.median(r[k][1] for r in runs)
            bold = "**" if "total" in k else ""
            comp_rows.append(f"| {bold}{k}{bold} | {wall:.2f} | {cpu:.2f} |")
        print("\n".join(comp_rows))

    section = "\n".join([
        SECTION,
        "",
        f"`python bench/c_kernels.py --write` on {machine()}.",
        "",
        "Latency of one inference on the same input, all single thread: the emitted C built with the host",
        f"target's flags (`cc {' '.join(f for f in CFLAGS if f != '-pedantic')}`) in a timing harness, vs",
        "onnxruntime fp32 and onnxruntime int8 (`quantize_static`: QDQ, uint8 activations, per-channel",
        f"int8 weights, calibrated on the same {CALIB_SAMPLES} samples as micoc; onnxruntime fuses QDQ into its",
        "int8 kernels). resnet18 is the example ResNet-18-style network at 3x32x32 with the CIFAR stem",
        "(3x3 stride-1 conv, no max pooling: 0.56 GMAC); resnet18-tv is the same network with",
        "torchvision's stem (7x7 stride-2 conv, 3x3 stride-2 max pooling: 37 MMAC at 3x32x32), the",
        "ResNet-18 behind the issue's reference (onnxruntime fp32 0.91 ms, untuned TVM 22.5 ms).",
        f"Medians over {args.rounds} interleaved rounds x {args.repeat} repeats (C, onnxruntime fp32, int8",
        "side by side, so load drift hits all alike) of CPU time per inference (C: CLOCK_PROCESS_CPUTIME_ID;",
        "onnxruntime: the calling thread's CPU time, where a one-thread session runs), which the shared",
        "machine's load inflates far less than wall time; ratio = C / onnxruntime (above 1: C slower).",
        "",
        "| network | scheme | C ms | onnxruntime fp32 ms | onnxruntime int8 ms | C / fp32 | C / int8 |",
        "|---|---|---:|---:|---:|---:|---:|",
        *lat_rows,
        "",
        f"Compile time of ResNet-18 (11M parameters, W8A8, {CALIB_SAMPLES} calibration samples; seconds,",
        "median of 3, in one process: Python start-up and imports excluded; single-threaded BLAS; the",
        "runtime object is cached after the first build, weights above 1 MiB go through `.incbin`).",
        "Wall time includes waiting for the shared CPUs; CPU time is the work done (user + system, cc",
        "included):",
        "",
        "| stage | wall s | CPU s |",
        "|---|---:|---:|",
        *comp_rows,
    ])
    if args.write:
        write_section(section)
    print(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
