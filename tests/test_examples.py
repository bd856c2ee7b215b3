"""Tests for examples/: model zoo, ONNX export, data loaders, training, demo assets."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from examples import data, export, models, train

ALL_MODELS = sorted(models.MODELS)
REPO = Path(__file__).resolve().parents[1]

needs_fashion = pytest.mark.skipif(
    not data.fashion_mnist_available(),
    reason="Fashion-MNIST absent: apt-get install dataset-fashion-mnist",
)


# ---------------------------------------------------------------- models


@pytest.mark.parametrize("name", ALL_MODELS)
def test_model_builds_and_runs(name: str, example_model, example_input) -> None:
    model = example_model(name)
    assert not model.training
    with torch.no_grad():
        y = model(example_input(name))
    assert y.shape == (1, 10)
    assert torch.isfinite(y).all()
    # A different seed gives different weights (seeding is actually used).
    other = models.build(name, seed=1)
    first = next(iter(model.state_dict().values()))
    assert not torch.equal(first, next(iter(other.state_dict().values())))


def test_build_is_deterministic_and_keeps_global_rng() -> None:
    torch.manual_seed(42)
    before = torch.rand(1)
    torch.manual_seed(42)
    a = models.build("resnet8", seed=3)
    after = torch.rand(1)
    assert torch.equal(before, after), "build() must not consume the caller's RNG"
    b = models.build("resnet8", seed=3)
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(va, vb), k


def test_batchnorm_is_not_identity() -> None:
    # BN folding must be exercised: no BN layer may keep its fresh-init stats.
    model = models.build("mobilenetv2")
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns
    for bn in bns:
        assert not torch.allclose(bn.running_var, torch.ones_like(bn.running_var))
        assert not torch.allclose(bn.running_mean, torch.zeros_like(bn.running_mean))
        assert not torch.allclose(bn.weight, torch.ones_like(bn.weight))


def test_param_counts() -> None:
    counts = {n: models.param_count(models.build(n)) for n in ALL_MODELS}
    assert counts["lenet5"] == 61706  # the classic LeNet-5 count with 10 classes
    assert 11.0e6 < counts["resnet18"] < 11.3e6  # torchvision's layout, CIFAR stem
    assert counts["mobilenetv2"] < 1e6  # width multiplier keeps it small


def test_unknown_model() -> None:
    with pytest.raises(KeyError, match="lenet5"):
        models.build("alexnet")


# ---------------------------------------------------------------- export


@pytest.mark.parametrize("exporter", export.EXPORTERS)
@pytest.mark.parametrize("name", ALL_MODELS)
def test_export_matches_torch(
    name: str, exporter: str, onnx_export, example_model, example_input
) -> None:
    path = onnx_export(name, exporter)
    # One self-contained file: no external-data sidecar, no tensor stored outside.
    # (stem + ".": other exports such as <stem>_noopt.onnx may share the directory)
    assert sorted(p.name for p in path.parent.glob(path.stem + ".*")) == [path.name]
    proto = onnx.load(str(path), load_external_data=False)
    assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in proto.graph.initializer)
    onnx.checker.check_model(proto, full_check=True)
    assert [i.name for i in proto.graph.input] == ["x"]
    assert [o.name for o in proto.graph.output] == ["y"]
    assert proto.opset_import[0].version == export.OPSET

    x = example_input(name)
    with torch.no_grad():
        ref = example_model(name)(x).numpy()
    got = export.run_onnxruntime(path, x)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-4 * max(1.0, np.abs(ref).max()))

    ops = export.op_types(path)
    assert "Conv" in ops
    # optimize=True folds eval-mode BN into Conv with both exporters.
    assert "BatchNormalization" not in ops


@pytest.mark.parametrize("exporter", export.EXPORTERS)
def test_squeezenet_keeps_ceil_mode(exporter: str, onnx_export) -> None:
    proto = onnx.load(str(onnx_export("squeezenet", exporter)))
    pools = [n for n in proto.graph.node if n.op_type == "MaxPool"]
    assert len(pools) == 3
    for node in pools:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        assert attrs["ceil_mode"] == 1
        assert list(attrs["kernel_shape"]) == [3, 3]


def test_export_without_optimization_keeps_batchnorm(
    onnx_export, example_model, example_input
) -> None:
    # Only torchscript here: an unoptimized dynamo export costs several seconds.
    path = onnx_export("resnet8", "torchscript", optimize=False)
    assert "BatchNormalization" in export.op_types(path)
    x = example_input("resnet8")
    with torch.no_grad():
        ref = example_model("resnet8")(x).numpy()
    np.testing.assert_allclose(export.run_onnxruntime(path, x), ref, atol=1e-4)


def test_export_rejects_unknown_exporter(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="exporter"):
        export.export_onnx(
            models.build("lenet5"), torch.zeros(1, 1, 28, 28), tmp_path / "m.onnx", "tf"
        )  # type: ignore[arg-type]


# ---------------------------------------------------------------- data


def test_mnist_splits() -> None:
    sizes = {"train": 3000, "validation": 1000, "test": 1000}
    seen: list[set[bytes]] = []
    for split, n in sizes.items():
        x, y = data.mnist(split)
        assert x.shape == (n, 1, 28, 28) and x.dtype == np.float32
        assert y.shape == (n,) and y.dtype == np.int64
        assert np.bincount(y, minlength=10).tolist() == [n // 10] * 10
        assert abs(float(x.mean())) < 0.1 and abs(float(x.std()) - 1) < 0.1
        assert len(set(y[:16].tolist())) > 3, "splits are shuffled, not sorted by class"
        seen.append({row.tobytes() for row in x})
    # Disjoint and deterministic.
    assert not (seen[0] & seen[1]) and not (seen[0] & seen[2]) and not (seen[1] & seen[2])
    assert np.array_equal(data.mnist("test")[1], data.mnist("test")[1])


def test_bad_split() -> None:
    with pytest.raises(ValueError, match="validation"):
        data.mnist("val")  # type: ignore[arg-type]


def test_digits() -> None:
    x, y = data.digits()
    assert x.shape == (1797, 1, 8, 8) and x.dtype == np.float32 and y.dtype == np.int64
    assert -1.0 <= x.min() and x.max() <= 1.0
    total = sum(len(data.digits(s)[1]) for s in data.SPLITS)
    assert total == 1797


def _write_idx(path: Path, arr: np.ndarray, code: int) -> None:
    header = bytes([0, 0, code, arr.ndim]) + np.array(arr.shape, ">u4").tobytes()
    with gzip.open(path, "wb") as f:
        f.write(header + arr.astype(arr.dtype.newbyteorder(">")).tobytes())


def test_read_idx_roundtrip(tmp_path: Path) -> None:
    imgs = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    _write_idx(tmp_path / "a.gz", imgs, 0x08)
    assert np.array_equal(data.read_idx(tmp_path / "a.gz"), imgs)
    ints = np.array([1, -2, 70000], dtype=np.int32)
    _write_idx(tmp_path / "b.gz", ints, 0x0C)
    assert np.array_equal(data.read_idx(tmp_path / "b.gz"), ints)
    (tmp_path / "bad").write_bytes(b"\x01\x02\x08\x01")
    with pytest.raises(ValueError, match="magic"):
        data.read_idx(tmp_path / "bad")


def test_fashion_missing_names_the_package(tmp_path: Path) -> None:
    assert not data.fashion_mnist_available(tmp_path)
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        data.fashion_mnist("test", root=tmp_path)


@needs_fashion
def test_fashion_mnist_splits() -> None:
    for split, n in {"train": 50000, "validation": 10000, "test": 10000}.items():
        x, y = data.fashion_mnist(split)
        assert x.shape == (n, 1, 28, 28) and x.dtype == np.float32
        assert y.shape == (n,) and y.dtype == np.int64 and set(np.unique(y)) == set(range(10))
    assert np.bincount(data.fashion_mnist("test")[1]).tolist() == [1000] * 10
    x, y = data.fashion_mnist("train", limit=100)
    assert x.shape == (100, 1, 28, 28) and np.array_equal(y, data.fashion_mnist("train")[1][:100])
    xv, _ = data.fashion_mnist("validation", limit=5)
    assert not np.array_equal(xv, x[:5])


def test_save_npz(tmp_path: Path) -> None:
    x = np.zeros((4, 1, 28, 28), np.float64)
    p = data.save_npz(tmp_path / "d.npz", x, np.arange(4), input_name="input")
    with np.load(p) as f:
        assert sorted(f.files) == ["input", "y"]
        assert f["input"].dtype == np.float32 and f["input"].shape == (4, 1, 28, 28)
        assert f["y"].dtype == np.int64
    p = data.save_npz(tmp_path / "noext", x)  # exactly this path, no ".npz" appended
    assert p.exists() and np.load(p).files == ["x"]
    with pytest.raises(ValueError, match="labels"):
        data.save_npz(tmp_path / "e.npz", x, np.arange(3))


# ---------------------------------------------------------------- training


def test_train_is_deterministic() -> None:
    x, y = data.mnist("train")
    x, y = x[:256], y[:256]

    def run() -> nn.Module:
        return train.train(models.build("lenet5"), x, y, epochs=1, lr=1e-3, batch_size=64, seed=7)

    a, b = run(), run()
    for va, vb in zip(a.state_dict().values(), b.state_dict().values(), strict=True):
        assert torch.equal(va, vb)
    assert not a.training
    assert 0.0 <= train.accuracy(a, x, y) <= 1.0


# ---------------------------------------------------------------- demo assets


def test_demo_assets() -> None:
    model_path = REPO / "examples" / "lenet5.onnx"
    sample_path = REPO / "examples" / "mnist_sample.npz"
    proto = onnx.load(str(model_path))
    onnx.checker.check_model(proto)
    assert [i.name for i in proto.graph.input] == ["x"]
    dims = [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 1, 28, 28]
    with np.load(sample_path) as f:
        x, y = f["x"], f["y"]
    assert x.shape == (16, 1, 28, 28) and x.dtype == np.float32 and y.dtype == np.int64
    x_test, y_test = data.mnist("test")
    assert np.array_equal(x, x_test[:16]) and np.array_equal(y, y_test[:16])
    preds = [int(export.run_onnxruntime(model_path, x[i : i + 1]).argmax()) for i in range(16)]
    assert sum(p == t for p, t in zip(preds, y.tolist(), strict=True)) >= 14
