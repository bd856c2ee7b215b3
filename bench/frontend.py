"""Frontend and interpreter speed, side by side with onnxruntime (issue: foundation).

- import + canonicalize of the ResNet-18-style network (11M parameters) vs
  onnxruntime session creation for the same file (medians of repeats);
- reference-interpreter throughput on LeNet-5 (1000 MNIST test images, float
  and integer W8A8) vs onnxruntime fp32 (one thread), as images per second.

    python bench/frontend.py            # print the table
    python bench/frontend.py --write    # ... and record it in BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from record import REPO, machine, write_section  # noqa: E402

SECTION = "## Frontend and interpreter speed"


def median_time(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--write", action="store_true", help="record the table in BENCHMARKS.md")
    args = ap.parse_args(argv)

    import onnx
    import onnxruntime as ort
    import torch

    torch.set_num_threads(1)
    from examples.data import mnist
    from examples.export import export_onnx
    from examples.models import build
    from micoc.frontends.onnx import import_onnx
    from micoc.interp import run
    from micoc.passes import PassContext, PassManager

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    rows: list[tuple[str, str, str, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        path = export_onnx(build("resnet18"), torch.zeros(1, 3, 32, 32), Path(tmp) / "resnet18.onnx", "torchscript")
        import_onnx(path)  # warm the page cache and imports
        t_import = median_time(lambda: import_onnx(path), args.repeat)
        t_canon = median_time(lambda: PassManager.from_string("canonicalize").run(import_onnx(path)), args.repeat)
        t_ort = median_time(lambda: ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"]),
                            args.repeat)
    rows.append(("ResNet-18 (11.2M params): import", f"{t_import * 1e3:.0f} ms", f"{t_ort * 1e3:.0f} ms",
                 f"{t_import / t_ort:.2f}x"))
    rows.append(("ResNet-18: import + canonicalize", f"{t_canon * 1e3:.0f} ms", f"{t_ort * 1e3:.0f} ms",
                 f"{t_canon / t_ort:.2f}x"))

    xt, yt = mnist("test")
    xv, _ = mnist("validation")
    lenet = REPO / "examples" / "lenet5.onnx"
    g = import_onnx(lenet)
    PassManager.from_string("canonicalize").run(g)
    q = g.clone()
    PassManager.from_string("assign-bits{bits=w8a8},calibrate,quantize",
                            PassContext(data={"calibration": {"x": xv[:500]}})).run(q)
    # The shipped model has batch 1; give onnxruntime a batch dimension so it sees all images in one call.
    model = onnx.load(lenet)
    for vi in (model.graph.input[0], model.graph.output[0]):
        vi.type.tensor_type.shape.dim[0].dim_param = "N"
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    n = len(xt)
    t_ort_run = median_time(lambda: sess.run(None, {"x": xt}), args.repeat)
    t_float = median_time(lambda: run(g, {"x": xt}), args.repeat)
    t_int = median_time(lambda: run(q, {"x": xt}), args.repeat)
    acc_f = float((run(g, {"x": xt})[0].argmax(1) == yt).mean())
    acc_q = float((run(q, {"x": xt})[0].argmax(1) == yt).mean())
    rows.append((f"LeNet-5, {n} images, float interpreter (acc {acc_f:.3f})", f"{n / t_float:,.0f} img/s",
                 f"{n / t_ort_run:,.0f} img/s", f"{t_float / t_ort_run:.1f}x"))
    rows.append((f"LeNet-5, {n} images, integer W8A8 interpreter (acc {acc_q:.3f})", f"{n / t_int:,.0f} img/s",
                 f"{n / t_ort_run:,.0f} img/s", f"{t_int / t_ort_run:.1f}x"))

    lines = [
        SECTION, "",
        f"`python bench/frontend.py --write`; {machine()}; medians of {args.repeat} runs, one thread each.", "",
        "| what | micoc | onnxruntime (session creation / fp32 run) | micoc time / onnxruntime time |",
        "|---|---|---|---|",
        *[f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows], "",
        "Goals: import + canonicalize of ResNet-18 under 0.5 s; 1000 MNIST images through the integer "
        "LeNet-5 under 2 s. The interpreter is the bit-exact semantic reference (integer GEMMs through "
        "exact float BLAS, int64 requantization), not the deployment engine.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write:
        write_section(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
