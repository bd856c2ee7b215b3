"""The CLI's contract for bad input: one clear message naming the file, exit 2,
no traceback (unless --debug), no half-written output."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

ROOT = Path(__file__).resolve().parents[1]
LENET = ROOT / "examples" / "lenet5.onnx"


def micoc(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "micoc", *args], capture_output=True, text=True, cwd=ROOT)


def assert_clean_error(res: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert res.returncode == 2, (res.returncode, res.stderr)
    assert "Traceback" not in res.stderr
    for f in fragments:
        assert f in res.stderr, res.stderr


@pytest.fixture()
def inputs(tmp_path: Path) -> Path:
    path = tmp_path / "x.npy"
    np.save(path, np.zeros((2, 1, 28, 28), np.float32))
    return path


def test_truncated_onnx(tmp_path: Path, inputs: Path) -> None:
    bad = tmp_path / "cut.onnx"
    bad.write_bytes(LENET.read_bytes()[:5000])
    assert_clean_error(micoc("run", str(bad), "-i", str(inputs), "-o", str(tmp_path / "y.npy")), "cut.onnx")
    assert not (tmp_path / "y.npy").exists()


def test_not_an_onnx_file(tmp_path: Path, inputs: Path) -> None:
    bad = tmp_path / "text.onnx"
    bad.write_text("this is not a model\n")
    assert_clean_error(micoc("opt", str(bad), "-p", "canonicalize"), "text.onnx")


def test_unsupported_ops_listed_together(tmp_path: Path) -> None:
    nodes = [
        helper.make_node("Relu", ["x"], ["a"], name="ok"),
        helper.make_node("Tanh", ["a"], ["b"], name="my_tanh"),
        helper.make_node("Erf", ["b"], ["y"], name="my_erf"),
    ]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    path = tmp_path / "unsup.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    assert_clean_error(micoc("opt", str(path)), "Tanh", "my_tanh", "Erf", "my_erf")


def test_missing_file_and_unknown_suffix(tmp_path: Path, inputs: Path) -> None:
    assert_clean_error(micoc("run", str(tmp_path / "nope.onnx"), "-i", str(inputs), "-o", "y.npy"),
                       "nope.onnx", "no such file")
    other = tmp_path / "model.pb"
    other.write_bytes(b"x")
    assert_clean_error(micoc("opt", str(other)), "model.pb", "expected .onnx or .mir")


def test_wrong_input_shape(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.zeros((2, 3, 28, 28), np.float32))
    assert_clean_error(micoc("run", str(LENET), "-i", str(tmp_path / "x.npy"), "-o", str(tmp_path / "y.npy")),
                       "x.npy", "shape [2, 3, 28, 28]", "[1, 1, 28, 28]")


def test_malformed_mir_names_line_and_column(tmp_path: Path) -> None:
    bad = tmp_path / "bad.mir"
    bad.write_text("graph @g(%x: f32[1,4]) -> (f32[1,4]) {\n  %0 = relu(%y) : f32[1,4]\n  return %0\n}\n")
    assert_clean_error(micoc("opt", str(bad)), "bad.mir:2:")


def test_bad_pipeline_and_debug_traceback(tmp_path: Path) -> None:
    assert_clean_error(micoc("opt", str(LENET), "-p", "canonicalize{nope=1}"), "has no option 'nope'")
    res = micoc("--debug", "opt", str(tmp_path / "missing.onnx"))
    assert res.returncode != 0 and "Traceback" in res.stderr


def test_run_onnx_and_mir_agree(tmp_path: Path, inputs: Path) -> None:
    assert micoc("run", str(LENET), "-i", str(inputs), "-o", str(tmp_path / "a.npy")).returncode == 0
    assert micoc("opt", str(LENET), "-p", "canonicalize", "-o", str(tmp_path / "m.mir")).returncode == 0
    res = micoc("run", str(tmp_path / "m.mir"), "-i", str(inputs), "-o", str(tmp_path / "b.npy"), "-v")
    assert res.returncode == 0, res.stderr
    a, b = np.load(tmp_path / "a.npy"), np.load(tmp_path / "b.npy")
    assert a.shape == (2, 10) and np.abs(a - b).max() <= 1e-5


def test_dump_and_time_passes_flags() -> None:
    res = micoc("opt", str(LENET), "-p", "canonicalize,shape-infer", "--dump-ir-after=canonicalize", "--time-passes")
    assert res.returncode == 0, res.stderr
    assert "IR dump after canonicalize" in res.stderr and "timing report" in res.stderr
    assert res.stdout.startswith("graph @lenet5")
    res = micoc("opt", str(LENET), "-p", "canonicalize", "--dump-ir-after=nope")
    assert_clean_error(res, "unknown pass")
