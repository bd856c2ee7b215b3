"""`micoc search` with Python datasets (`module:attr`) and a user metric."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
LENET = ROOT / "examples" / "lenet5.onnx"


@pytest.fixture(scope="module")
def val_arrays() -> tuple[np.ndarray, np.ndarray]:
    from examples.data import mnist

    x, y = mnist("validation")
    return x[:150], y[:150]


def _scores(out: Path) -> dict[str, float]:
    rows = [json.loads(line) for line in (out / "journal.jsonl").read_text().splitlines() if line.strip()]
    return {json.dumps(r["scheme"], sort_keys=True): r["score"] for r in rows if "scheme" in r}


def _search(main, data: str, out: Path, *extra: str) -> int:  # type: ignore[no-untyped-def]
    return main(["search", str(LENET), "--target", "bitfusion", "--data", data, "--constraint", "bops=0.3",
                 "--eval", "ptq", "--searcher", "uniform", "--evals", "3", "-o", str(out), *extra])


def test_python_dataset_and_metric(val_arrays, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    import torch

    from examples.data import save_npz
    from micoc.cli import main

    torch.set_num_threads(1)
    x, y = val_arrays
    np.savez(tmp_path / "arrays.npz", x=x, y=y)
    (tmp_path / "user_data_a.py").write_text(textwrap.dedent("""
        import numpy as np
        import torch
        from torch.utils.data import DataLoader, TensorDataset

        _z = np.load("arrays.npz")
        val = TensorDataset(torch.from_numpy(_z["x"]), torch.from_numpy(_z["y"]))

        def loader():
            return DataLoader(val, batch_size=64)

        def top2(outputs, labels):
            best2 = np.argsort(outputs.reshape(len(labels), -1), axis=1)[:, -2:]
            return float((best2 == labels[:, None]).any(axis=1).mean())
    """))
    monkeypatch.chdir(tmp_path)
    npz = save_npz(tmp_path / "val.npz", x, y)
    assert _search(main, str(npz), tmp_path / "npz") == 0
    assert _search(main, "user_data_a:val", tmp_path / "ds") == 0  # map-style dataset
    assert _search(main, "user_data_a:loader", tmp_path / "dl") == 0  # factory of a DataLoader
    assert _search(main, str(npz), tmp_path / "top2", "--metric", "user_data_a:top2") == 0
    top1 = _scores(tmp_path / "npz")
    assert len(top1) == 3
    assert _scores(tmp_path / "ds") == top1 == _scores(tmp_path / "dl")
    top2 = _scores(tmp_path / "top2")
    assert top2.keys() == top1.keys()
    assert all(top2[k] >= top1[k] for k in top1) and any(top2[k] > top1[k] for k in top1)


@pytest.mark.parametrize("data, metric, msg", [
    ("no_such_module_xyz:val", None, "cannot import module 'no_such_module_xyz'"),
    ("user_data_b:missing", None, "has no attribute 'missing'"),
    ("user_data_b:needs_args", None, "needs arguments"),
    ("user_data_b:empty", None, "dataset is empty"),
    ("user_data_b:pairs", "user_data_b:not_callable", "is not callable"),
])  # fmt: skip
def test_bad_python_references_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys,  # type: ignore[no-untyped-def]
                                      data: str, metric: str | None, msg: str) -> None:
    from micoc.cli import main

    (tmp_path / "user_data_b.py").write_text(textwrap.dedent("""
        import numpy as np
        pairs = (np.zeros((4, 1, 28, 28), np.float32), np.zeros(4, np.int64))
        empty = []
        not_callable = 3
        def needs_args(n):
            return pairs
    """))
    monkeypatch.chdir(tmp_path)
    extra = ["--metric", metric] if metric else []
    assert _search(main, data, tmp_path / "out", *extra) == 2
    err = capsys.readouterr().err
    assert msg in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()
