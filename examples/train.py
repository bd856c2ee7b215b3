"""Small, deterministic CPU training for the example networks, and the demo assets.

``python -m examples.train`` trains LeNet-5 on the MNIST train split (3000
real images) and writes the shipped demo model:

- ``examples/lenet5.onnx``: torchscript exporter, opset 18, BN-free; graph
  input ``x`` (float32 [1,1,28,28], normalized as in :func:`examples.data.mnist`),
  output ``y`` (float32 [1,10] logits).
- ``examples/mnist_sample.npz``: the first 16 MNIST *test* images under ``x``
  (shape [16,1,28,28]) and their labels under ``y``.

``python -m examples.train resnet8-fashion`` instead trains ResNet-8 on a
Fashion-MNIST subset and prints time and accuracy (nothing is written).

Training is single-threaded on purpose: on these 2-core machines torch's
second thread makes small-model training 10-30x slower.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from examples import data, export, models

__all__ = ["train", "accuracy", "predict", "train_lenet5_mnist", "train_resnet8_fashion", "main"]

EXAMPLES_DIR = Path(__file__).resolve().parent


def train(
    model: nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    epochs: int = 3,
    lr: float = 1e-3,
    batch_size: int = 64,
    seed: int = 0,
    weight_decay: float = 0.0,
    verbose: bool = False,
) -> nn.Module:
    """Train ``model`` in place with Adam + cross-entropy; returns it in eval mode.

    Deterministic for a given ``seed``: the batch order comes from a private
    generator, torch runs single-threaded, and the caller's global RNG state
    is restored afterwards (dropout draws from it).
    """
    torch.set_num_threads(1)
    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    yt = torch.from_numpy(np.asarray(y, dtype=np.int64))
    if len(xt) != len(yt):
        raise ValueError(f"{len(xt)} samples but {len(yt)} labels")
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    loss_fn = nn.CrossEntropyLoss()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model.train()
        for epoch in range(epochs):
            perm = torch.randperm(len(xt), generator=gen)
            total = 0.0
            for i in range(0, len(xt), batch_size):
                idx = perm[i : i + batch_size]
                opt.zero_grad(set_to_none=True)
                loss = loss_fn(model(xt[idx]), yt[idx])
                loss.backward()
                opt.step()
                total += loss.item() * len(idx)
            if verbose:
                print(f"  epoch {epoch + 1}/{epochs}: loss {total / len(xt):.4f}")
    return model.eval()


@torch.no_grad()
def predict(model: nn.Module, x: np.ndarray, batch_size: int = 500) -> np.ndarray:
    """Logits of ``model`` (put in eval mode) for every sample of ``x``, float32 [N, C]."""
    model.eval()
    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    outs = [model(xt[i : i + batch_size]) for i in range(0, len(xt), batch_size)]
    return torch.cat(outs).numpy()


def accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    """Top-1 accuracy in [0, 1] of ``model`` on ``(x, y)``."""
    return float((predict(model, x).argmax(1) == np.asarray(y)).mean())


def train_lenet5_mnist(
    epochs: int = 10, seed: int = 0, verbose: bool = False
) -> tuple[nn.Module, float, float]:
    """LeNet-5 on the 3000-image MNIST train split; returns (model, test acc, seconds)."""
    x, y = data.mnist("train")
    model = models.build("lenet5", seed=seed)
    t0 = time.perf_counter()
    train(model, x, y, epochs=epochs, lr=2e-3, batch_size=32, seed=seed, verbose=verbose)
    seconds = time.perf_counter() - t0
    return model, accuracy(model, *data.mnist("test")), seconds


def train_resnet8_fashion(
    n_train: int = 6000, epochs: int = 3, seed: int = 0, verbose: bool = False
) -> tuple[nn.Module, float, float]:
    """ResNet-8 on the first ``n_train`` Fashion-MNIST train images.

    Returns (model, accuracy on the full 10k test set, training seconds).
    Needs the Debian package ``dataset-fashion-mnist``.
    """
    x, y = data.fashion_mnist("train", limit=n_train)
    model = models.build("resnet8", seed=seed)
    t0 = time.perf_counter()
    train(model, x, y, epochs=epochs, lr=2e-3, batch_size=64, seed=seed, verbose=verbose)
    seconds = time.perf_counter() - t0
    return model, accuracy(model, *data.fashion_mnist("test")), seconds


def write_demo_assets(model: nn.Module, out_dir: Path = EXAMPLES_DIR) -> tuple[Path, Path]:
    """Write ``lenet5.onnx`` and ``mnist_sample.npz`` (first 16 test images) to ``out_dir``."""
    onnx_path = export.export_onnx(
        model, torch.zeros(1, 1, 28, 28), out_dir / "lenet5.onnx", "torchscript", input_name="x"
    )
    x, y = data.mnist("test")
    npz_path = data.save_npz(out_dir / "mnist_sample.npz", x[:16], y[:16], input_name="x")
    return onnx_path, npz_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m examples.train", description=__doc__)
    parser.add_argument("what", nargs="?", default="lenet5", choices=["lenet5", "resnet8-fashion"])
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-dir", type=Path, default=EXAMPLES_DIR)
    parser.add_argument("--n-train", type=int, default=6000, help="resnet8-fashion subset size")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    if args.what == "lenet5":
        model, acc, secs = train_lenet5_mnist(
            epochs=args.epochs or 10, seed=args.seed, verbose=args.verbose
        )
        print(f"LeNet-5 / MNIST-5k: test accuracy {acc:.2%} after {secs:.1f} s of training")
        for p in write_demo_assets(model, args.out_dir):
            print(f"wrote {p} ({p.stat().st_size} bytes)")
    else:
        model, acc, secs = train_resnet8_fashion(
            n_train=args.n_train, epochs=args.epochs or 3, seed=args.seed, verbose=args.verbose
        )
        print(
            f"ResNet-8 / Fashion-MNIST ({args.n_train} train images): "
            f"test accuracy {acc:.2%} after {secs:.1f} s of training"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
