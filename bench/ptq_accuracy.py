"""PTQ accuracy of uniform schemes, with each calibration method (issue: quantization).

LeNet-5 on MNIST (the shipped examples/lenet5.onnx, trained on the 3000-image
train split; 1000 test images) and ResNet-8 on Fashion-MNIST (trained here on
6000 images for 3 epochs; full 10k test set). Calibration: 500 validation
images. Every accuracy is the integer reference interpreter's (the deployed
numerics), not fake quantization.

    python bench/ptq_accuracy.py [--write]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from record import REPO, machine, write_section  # noqa: E402

SECTION = "## PTQ accuracy"
SCHEMES = ["w8a8", "w4a8", "w4a4", "w2a8", "w2a2", "w1a8"]
METHODS = ["minmax", "percentile", "mse"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", help="record the table in BENCHMARKS.md")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    from examples import data
    from examples.export import export_onnx
    from examples.train import train_resnet8_fashion
    from micoc.frontends.onnx import import_onnx
    from micoc.interp import run
    from micoc.passes import PassContext, PassManager

    models = [("LeNet-5 / MNIST", REPO / "examples" / "lenet5.onnx", data.mnist("validation")[0][:500],
               data.mnist("test"))]
    tmp = tempfile.TemporaryDirectory()
    if data.fashion_mnist_available():
        net, _, secs = train_resnet8_fashion(n_train=6000, epochs=3)
        path = export_onnx(net, torch.zeros(1, 1, 28, 28), Path(tmp.name) / "resnet8.onnx", "torchscript")
        models.append(("ResNet-8 / Fashion-MNIST", path, data.fashion_mnist("validation", limit=500)[0],
                       data.fashion_mnist("test")))

    lines = [SECTION, "", f"`python bench/ptq_accuracy.py --write`; {machine()}.", "",
             "Top-1 accuracy (%) of the integer-only model; per-channel symmetric weights, per-tensor "
             "activations, calibration on 500 validation images.", ""]
    for title, path, calib, (xt, yt) in models:
        g = import_onnx(path)
        PassManager.from_string("canonicalize").run(g)
        float_acc = 100 * float((run(g, {"x": xt})[0].argmax(1) == yt).mean())
        lines += [f"### {title} (float {float_acc:.2f}%)", "",
                  "| calibration | " + " | ".join(s.upper() for s in SCHEMES) + " |",
                  "|---|" + "---|" * len(SCHEMES)]
        for method in METHODS:
            cells = []
            for bits in SCHEMES:
                q = g.clone()
                t0 = time.perf_counter()
                PassManager.from_string(f"assign-bits{{bits={bits}}},calibrate{{method={method}}},quantize",
                                        PassContext(data={"calibration": {"x": calib}})).run(q)
                acc = 100 * float((run(q, {"x": xt})[0].argmax(1) == yt).mean())
                cells.append(f"{acc:.2f}")
                print(f"{title} {method} {bits}: {acc:.2f}% ({time.perf_counter() - t0:.1f} s)", flush=True)
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
        lines.append("")
    lines.append("Below 4 bits PTQ alone loses accuracy, as expected; the search issue adds short QAT for those.")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write:
        write_section(text)
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
