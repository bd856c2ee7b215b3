"""ONNX frontend: op mappings on small hand-built graphs, names, errors, example networks.

Numerics are checked against onnxruntime (one thread) through micoc's float
reference interpreter.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from micoc.errors import InputError, UnsupportedError
from micoc.frontends.onnx import import_onnx
from micoc.interp import run
from micoc.ir import Graph, verify

F = TensorProto.FLOAT


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


def make_model(
    nodes: list[onnx.NodeProto],
    inputs: dict[str, list[int | str | None]],
    outputs: list[str],
    inits: dict[str, np.ndarray] | None = None,
    opset: int = 17,
    name: str = "g",
) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info(n, F, s) for n, s in inputs.items()],
        [helper.make_tensor_value_info(n, F, None) for n in outputs],
        [numpy_helper.from_array(np.asarray(a), n) for n, a in (inits or {}).items()],
    )
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m


def rand(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def ort_run(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def check(model: onnx.ModelProto, feeds: dict[str, np.ndarray], **kw) -> Graph:
    """Import, verify, and compare the interpreter with onnxruntime."""
    g = import_onnx(model, **kw)
    verify(g)
    got = run(g, feeds)
    want = ort_run(model, feeds)
    assert len(got) == len(want)
    for a, b in zip(got, want, strict=True):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    return g


def opnames(g: Graph) -> list[str]:
    return [op.opname for op in g.ops]


# ---------------------------------------------------------------------------
# Gemm / MatMul
# ---------------------------------------------------------------------------


def test_gemm_transb_alpha_beta_fold_into_linear() -> None:
    w = rand(5, 8, seed=1)  # transB=1: B is [out, in] already
    c = rand(5, seed=2)
    node = helper.make_node("Gemm", ["x", "w", "c"], ["y"], name="fc", transB=1, alpha=0.5, beta=2.0)
    m = make_model([node], {"x": [1, 8]}, ["y"], {"w": w, "c": c})
    g = check(m, {"x": rand(1, 8)})
    assert opnames(g) == ["linear"]
    op = g.ops[0]
    np.testing.assert_allclose(op.operands[1].data, 0.5 * w)
    np.testing.assert_allclose(op.operands[2].data, 2.0 * c)
    assert op.layer == "fc" and op.loc == "fc"


def test_gemm_no_trans_transposes_weight_and_matrix_bias_becomes_add() -> None:
    b = rand(8, 5, seed=1)  # [in, out]
    c = rand(3, 5, seed=2)  # a per-row bias cannot be linear's bias vector
    node = helper.make_node("Gemm", ["x", "b", "c"], ["y"], transA=1)
    m = make_model([node], {"x": [8, 3]}, ["y"], {"b": b, "c": c})
    g = check(m, {"x": rand(8, 3)})
    assert opnames(g) == ["transpose", "linear", "add"]
    assert g.ops[1].operands[1].type.shape == (5, 8)
    assert g.ops[1].layer == "linear_0" and g.ops[1].loc == "Gemm_0"


def test_gemm_dynamic_b_is_matmul() -> None:
    node = helper.make_node("Gemm", ["a", "b", "c"], ["y"], transB=1, alpha=0.25, beta=0.5)
    m = make_model([node], {"a": [3, 4], "b": [6, 4], "c": [1, 6]}, ["y"])
    g = check(m, {"a": rand(3, 4), "b": rand(6, 4, seed=1), "c": rand(1, 6, seed=2)})
    assert "matmul" in opnames(g) and "linear" not in opnames(g)


def test_matmul_constant_rhs_is_linear_with_transposed_weight() -> None:
    b = rand(6, 4, seed=1)
    m = make_model([helper.make_node("MatMul", ["x", "b"], ["y"], name="mm")], {"x": [1, 2, 6]}, ["y"], {"b": b})
    g = check(m, {"x": rand(1, 2, 6)})
    assert opnames(g) == ["linear"]
    np.testing.assert_array_equal(g.ops[0].operands[1].data, b.T)
    assert g.ops[0].layer == "mm"


def test_matmul_both_dynamic_is_matmul_and_vectors_work() -> None:
    m = make_model([helper.make_node("MatMul", ["a", "b"], ["y"])], {"a": [2, 3, 4], "b": [2, 4, 5]}, ["y"])
    g = check(m, {"a": rand(2, 3, 4), "b": rand(2, 4, 5, seed=1)})
    assert opnames(g) == ["matmul"] and g.ops[0].layer == "matmul_0"
    m = make_model([helper.make_node("MatMul", ["a", "v"], ["y"])], {"a": [3, 4]}, ["y"], {"v": rand(4, seed=2)})
    check(m, {"a": rand(3, 4)})


# ---------------------------------------------------------------------------
# Split / Slice / Clip / Concat / shape ops
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("opset", [11, 13, 18])
def test_split_sizes_from_attribute_input_or_num_outputs(opset: int) -> None:
    inits: dict[str, np.ndarray] = {}
    if opset == 11:
        node = helper.make_node("Split", ["x"], ["a", "b", "c"], axis=1, split=[2, 3, 1])
    elif opset == 13:
        node = helper.make_node("Split", ["x", "s"], ["a", "b", "c"], axis=1)
        inits["s"] = np.array([2, 3, 1], dtype=np.int64)
    else:  # 6 into 3: even; the uneven case is below
        node = helper.make_node("Split", ["x"], ["a", "b", "c"], axis=1, num_outputs=3)
    m = make_model([node], {"x": [1, 6, 2]}, ["a", "b", "c"], inits, opset=opset)
    g = check(m, {"x": rand(1, 6, 2)})
    assert opnames(g) == ["slice"] * 3


def test_split_num_outputs_uneven() -> None:
    node = helper.make_node("Split", ["x"], ["a", "b", "c"], axis=-1, num_outputs=3)
    m = make_model([node], {"x": [2, 7]}, ["a", "b", "c"], opset=18)
    g = check(m, {"x": rand(2, 7)})
    assert [v.type.shape for v in g.outputs] == [(2, 3), (2, 3), (2, 1)]


def test_slice_constant_bounds_negative_steps_and_clamping() -> None:
    inits = {
        "st": np.array([-1, 1, 0], dtype=np.int64),
        "en": np.array([-100, 1000, -1], dtype=np.int64),
        "ax": np.array([2, -1, 1], dtype=np.int64),
        "sp": np.array([-2, 2, 1], dtype=np.int64),
    }
    node = helper.make_node("Slice", ["x", "st", "en", "ax", "sp"], ["y"])
    m = make_model([node], {"x": [1, 4, 5, 6]}, ["y"], inits)
    g = check(m, {"x": rand(1, 4, 5, 6)})
    assert opnames(g) == ["slice"] and g.outputs[0].type.shape == (1, 3, 3, 3)


def test_slice_opset9_attributes() -> None:
    node = helper.make_node("Slice", ["x"], ["y"], starts=[1], ends=[3], axes=[1])
    m = make_model([node], {"x": [2, 5]}, ["y"], opset=9)
    g = import_onnx(m)
    assert g.outputs[0].type.shape == (2, 2)
    np.testing.assert_array_equal(run(g, {"x": rand(2, 5)})[0], rand(2, 5)[:, 1:3])


def test_clip_opset6_attributes_and_relu6_convention() -> None:
    node = helper.make_node("Clip", ["x"], ["y"], min=0.0, max=6.0)
    m = make_model([node], {"x": [1, 8]}, ["y"], opset=6)
    g = import_onnx(m)
    assert opnames(g) == ["clip"] and g.ops[0].attrs["min"] == 0.0 and g.ops[0].attrs["max"] == 6.0
    x = 5 * rand(1, 8)
    np.testing.assert_array_equal(run(g, {"x": x})[0], np.clip(x, 0, 6))


def test_clip_opset11_constant_inputs_and_missing_min() -> None:
    inits = {"hi": np.array(0.5, dtype=np.float32)}
    node = helper.make_node("Clip", ["x", "", "hi"], ["y"])
    m = make_model([node], {"x": [3, 4]}, ["y"], inits, opset=13)
    g = check(m, {"x": rand(3, 4)})
    assert g.ops[0].attrs["min"] == -np.inf and g.ops[0].attrs["max"] == 0.5


def test_clip_dynamic_bounds_are_unsupported() -> None:
    node = helper.make_node("Clip", ["x", "lo"], ["y"], name="clipper")
    m = make_model([node], {"x": [3], "lo": []}, ["y"], opset=13)
    with pytest.raises(UnsupportedError, match="clipper"):
        import_onnx(m)


def test_shape_arithmetic_subgraph_folds_away() -> None:
    # The torch.onnx "flatten via shape" pattern: Reshape(x, Concat(Unsqueeze(Gather(Shape(x), 0)), [-1])).
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
        helper.make_node("Unsqueeze", ["n", "ax0"], ["n1"]),
        helper.make_node("Concat", ["n1", "minus1"], ["shape"], axis=0),
        helper.make_node("Cast", ["shape"], ["shape64"], to=TensorProto.INT64),
        helper.make_node("Reshape", ["x", "shape64"], ["y"], name="flat"),
        helper.make_node("Relu", ["y"], ["z"]),
    ]
    inits = {
        "zero": np.array(0, dtype=np.int64),
        "ax0": np.array([0], dtype=np.int64),
        "minus1": np.array([-1], dtype=np.int64),
    }
    m = make_model(nodes, {"x": ["batch", 2, 3, 3]}, ["z"], inits)
    g = import_onnx(m)
    verify(g)
    assert opnames(g) == ["reshape", "relu"]
    assert g.ops[0].attrs["shape"] == (1, 18) and g.ops[0].loc == "flat"
    assert g.consts == {}  # no shape constants survive
    x = rand(1, 2, 3, 3)
    np.testing.assert_allclose(run(g, {"x": x})[0], np.maximum(x.reshape(1, 18), 0))


def test_constant_nodes_and_reference_evaluator_folding() -> None:
    # ConstantOfShape and Range are folded by onnx's reference evaluator.
    nodes = [
        helper.make_node("Constant", [], ["shp"], value=numpy_helper.from_array(np.array([1, 4], dtype=np.int64))),
        helper.make_node("ConstantOfShape", ["shp"], ["half"], value=numpy_helper.from_array(np.array([0.5], np.float32))),
        helper.make_node("Range", ["r0", "r1", "r2"], ["ramp"]),
        helper.make_node("Mul", ["half", "ramp"], ["k"]),
        helper.make_node("Add", ["x", "k"], ["y"]),
    ]
    inits = {k: np.array(v, dtype=np.float32) for k, v in {"r0": 0.0, "r1": 4.0, "r2": 1.0}.items()}
    m = make_model(nodes, {"x": [1, 4]}, ["y"], inits)
    g = check(m, {"x": rand(1, 4)})
    assert opnames(g) == ["add"]
    np.testing.assert_array_equal(g.ops[0].operands[1].data, [[0.0, 0.5, 1.0, 1.5]])


def test_castlike_and_expand_from_dynamo_exports() -> None:
    # Unoptimized dynamo exports write a constant CastLike'd to the input's type, then Expand.
    nodes = [
        helper.make_node("CastLike", ["zero", "x"], ["z"]),
        helper.make_node("Expand", ["z", "shp"], ["zz"]),
        helper.make_node("Add", ["x", "zz"], ["a"]),
        helper.make_node("Expand", ["a", "shp2"], ["y"]),  # run-time Expand: add of zeros
    ]
    inits = {
        "zero": np.array(0.25, dtype=np.float64),
        "shp": np.array([3], dtype=np.int64),
        "shp2": np.array([2, 1, 3], dtype=np.int64),
    }
    g = check(make_model(nodes, {"x": [1, 3]}, ["y"], inits), {"x": rand(1, 3)})
    assert opnames(g) == ["add", "add"] and g.outputs[0].type.shape == (2, 1, 3)


def test_local_functions_are_inlined() -> None:
    body = [helper.make_node("Relu", ["a"], ["t"]), helper.make_node("Add", ["t", "t"], ["b"])]
    f = helper.make_function("local", "TwiceRelu", ["a"], ["b"], body, [helper.make_opsetid("", 17)])
    m = make_model([helper.make_node("TwiceRelu", ["x"], ["y"], domain="local")], {"x": [1, 3]}, ["y"])
    m.opset_import.append(helper.make_opsetid("local", 1))
    m.functions.append(f)
    g = check(m, {"x": rand(1, 3)})
    assert opnames(g) == ["relu", "add"]


@pytest.mark.parametrize(
    ("indices", "axis", "ops"),
    [
        (2, 1, ["slice", "reshape"]),  # scalar index drops the axis
        ([3, 2, 1, 0], 1, ["slice"]),  # a progression is one strided slice
        ([[0, 3], [1, 1]], -1, ["slice"] * 4 + ["concat", "reshape"]),
    ],
)
def test_gather_with_constant_indices_becomes_slices(indices, axis: int, ops: list[str]) -> None:
    node = helper.make_node("Gather", ["x", "i"], ["y"], axis=axis)
    m = make_model([node], {"x": [2, 4, 4]}, ["y"], {"i": np.array(indices, dtype=np.int64)})
    assert opnames(check(m, {"x": rand(2, 4, 4)})) == ops


def test_unsqueeze_squeeze_dynamic_become_reshape() -> None:
    nodes = [
        helper.make_node("Unsqueeze", ["x", "ax"], ["u"]),
        helper.make_node("Squeeze", ["u", "sq"], ["y"]),
    ]
    inits = {"ax": np.array([0, -1], dtype=np.int64), "sq": np.array([0, 3], dtype=np.int64)}
    m = make_model(nodes, {"x": [3, 4]}, ["y"], inits, opset=13)
    g = check(m, {"x": rand(3, 4)})
    assert opnames(g) == ["reshape", "reshape"] and g.outputs[0].type.shape == (3, 4)


def test_flatten_reshape_zero_and_minus_one() -> None:
    nodes = [
        helper.make_node("Reshape", ["x", "shape"], ["r"]),
        helper.make_node("Flatten", ["r"], ["y"], axis=2),
    ]
    m = make_model(nodes, {"x": [2, 3, 4]}, ["y"], {"shape": np.array([0, -1, 2], dtype=np.int64)})
    g = check(m, {"x": rand(2, 3, 4)})
    assert [op.attrs["shape"] for op in g.ops] == [(2, 6, 2), (12, 2)]


def test_reduce_mean_axes_attribute_and_input() -> None:
    n13 = helper.make_node("ReduceMean", ["x"], ["y"], axes=[2, 3], keepdims=1)
    check(make_model([n13], {"x": [1, 3, 4, 4]}, ["y"], opset=13), {"x": rand(1, 3, 4, 4)})
    n18 = helper.make_node("ReduceMean", ["x", "ax"], ["y"], keepdims=0)
    m = make_model([n18], {"x": [1, 3, 4, 4]}, ["y"], {"ax": np.array([-1], dtype=np.int64)}, opset=18)
    g = check(m, {"x": rand(1, 3, 4, 4)})
    assert g.ops[0].opname == "mean" and g.ops[0].attrs["axes"] == (3,)


def test_softmax_opset11_coerces_to_2d() -> None:
    m = make_model([helper.make_node("Softmax", ["x"], ["y"], axis=1)], {"x": [2, 3, 4]}, ["y"], opset=11)
    g = check(m, {"x": rand(2, 3, 4)})
    assert opnames(g) == ["reshape", "softmax", "reshape"]
    m = make_model([helper.make_node("Softmax", ["x"], ["y"], axis=1)], {"x": [2, 3, 4]}, ["y"], opset=13)
    assert opnames(check(m, {"x": rand(2, 3, 4)})) == ["softmax"]


def test_dropout_and_identity_emit_nothing() -> None:
    nodes = [
        helper.make_node("Identity", ["x"], ["a"]),
        helper.make_node("Dropout", ["a"], ["b"], name="drop"),
        helper.make_node("Sigmoid", ["b"], ["y"]),
    ]
    g = check(make_model(nodes, {"x": [2, 3]}, ["y"]), {"x": rand(2, 3)})
    assert opnames(g) == ["sigmoid"] and g.ops[0].operands[0] is g.inputs[0]


def test_binary_ops_with_constants_and_concat() -> None:
    nodes = [
        helper.make_node("Sub", ["k", "x"], ["a"]),
        helper.make_node("Div", ["a", "k"], ["b"]),
        helper.make_node("Mul", ["b", "x"], ["c"]),
        helper.make_node("Concat", ["c", "k2"], ["y"], axis=1),
    ]
    inits = {"k": np.array([[2.0, 3.0, 4.0]], np.float32), "k2": rand(1, 2, seed=5)}
    g = check(make_model(nodes, {"x": [1, 3]}, ["y"], inits), {"x": rand(1, 3)})
    assert opnames(g) == ["sub", "div", "mul", "concat"]
    assert set(g.consts) == {"k", "k2"}  # initializer names, used once each


def test_batch_norm_is_kept_for_canonicalize() -> None:
    c = 3
    inits = {
        "s": 1 + rand(c, seed=1) * 0.1, "b": rand(c, seed=2),
        "m": rand(c, seed=3), "v": np.abs(rand(c, seed=4)) + 0.5,
    }
    node = helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y"], epsilon=1e-3)
    g = check(make_model([node], {"x": [1, c, 4, 4]}, ["y"], inits), {"x": rand(1, c, 4, 4)})
    assert opnames(g) == ["batch_norm"] and g.ops[0].attrs["epsilon"] == pytest.approx(1e-3)


# ---------------------------------------------------------------------------
# Conv / pooling
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("auto_pad", ["SAME_UPPER", "SAME_LOWER", "VALID"])
def test_conv_auto_pad(auto_pad: str) -> None:
    w = rand(4, 3, 3, 3, seed=1)
    node = helper.make_node("Conv", ["x", "w"], ["y"], auto_pad=auto_pad, strides=[2, 2], name="c")
    g = check(make_model([node], {"x": [1, 3, 8, 7]}, ["y"], {"w": w}), {"x": rand(1, 3, 8, 7)})
    op = g.ops[0]
    assert op.opname == "conv2d" and op.attrs["act"] == "none" and len(op.operands) == 2
    if auto_pad == "SAME_UPPER":  # the odd extra padding goes to the end
        assert op.attrs["pad"] == (0, 1, 1, 1)


def test_conv_depthwise_dilated_with_bias_and_1d() -> None:
    w = rand(6, 1, 3, 3, seed=1)
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], group=6, dilations=[2, 2], pads=[2, 1, 2, 1])
    g = check(make_model([node], {"x": [1, 6, 9, 9]}, ["y"], {"w": w, "b": rand(6, seed=2)}), {"x": rand(1, 6, 9, 9)})
    assert g.ops[0].attrs["groups"] == 6 and len(g.ops[0].operands) == 3
    node = helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 0], strides=[2])
    check(make_model([node], {"x": [1, 2, 9]}, ["y"], {"w": rand(3, 2, 3, seed=3)}), {"x": rand(1, 2, 9)})


@pytest.mark.parametrize("op", ["MaxPool", "AveragePool"])
@pytest.mark.parametrize("count_include_pad", [0, 1])
def test_ceil_mode_pooling(op: str, count_include_pad: int) -> None:
    kw = {"count_include_pad": count_include_pad} if op == "AveragePool" else {}
    node = helper.make_node(op, ["x"], ["y"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 0, 0], ceil_mode=1, **kw)
    g = check(make_model([node], {"x": [1, 2, 8, 8]}, ["y"]), {"x": rand(1, 2, 8, 8)})
    assert g.ops[0].attrs["ceil_mode"] is True
    assert g.outputs[0].type.shape == (1, 2, 4, 4)


def test_global_average_pool_and_pool_auto_pad() -> None:
    nodes = [
        helper.make_node("MaxPool", ["x"], ["p"], kernel_shape=[2, 2], strides=[2, 2], auto_pad="SAME_UPPER"),
        helper.make_node("GlobalAveragePool", ["p"], ["y"]),
    ]
    g = check(make_model(nodes, {"x": [1, 3, 7, 7]}, ["y"]), {"x": rand(1, 3, 7, 7)})
    assert opnames(g) == ["maxpool", "global_avgpool"]


# ---------------------------------------------------------------------------
# Inputs, names
# ---------------------------------------------------------------------------


def test_dynamic_batch_becomes_one() -> None:
    m = make_model([helper.make_node("Relu", ["x"], ["y"])], {"x": ["N", 3]}, ["y"])
    g = import_onnx(m)
    assert g.inputs[0].type.shape == (1, 3)
    m = make_model([helper.make_node("Relu", ["x"], ["y"])], {"x": [None, 3]}, ["y"])
    assert import_onnx(m).inputs[0].type.shape == (1, 3)


def test_symbolic_non_batch_dim_is_an_error_naming_the_input() -> None:
    m = make_model([helper.make_node("Relu", ["image"], ["y"])], {"image": [1, "C", 4]}, ["y"])
    with pytest.raises(UnsupportedError, match="'image'.*'C'.*axis 1"):
        import_onnx(m)


def test_names_inputs_constants_locations_and_layers() -> None:
    w = rand(4, 2, 1, 1, seed=1)
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["a"], name="stem"),
        helper.make_node("Conv", ["a", "w2"], ["b"], name="dup"),
        helper.make_node("Conv", ["b", "w2"], ["c"], name="dup"),  # not unique -> conv2d_<n>
        helper.make_node("Relu", ["c"], ["d"]),  # unnamed -> Relu_3
        helper.make_node("Conv", ["d", "w2"], ["y"]),
    ]
    inits = {"w": w, "w2": rand(4, 4, 1, 1, seed=2)}
    m = make_model(nodes, {"x": [1, 2, 3, 3], "w": [4, 2, 1, 1]}, ["y"], inits, name="netty")
    g = import_onnx(m)
    verify(g)
    assert g.name == "netty"
    assert [v.name for v in g.inputs] == ["x"]  # an input that is also an initializer is a constant
    assert set(g.consts) == {"w", "w2"}  # shared weight materialized once
    assert [op.layer for op in g.layers()] == ["stem", "conv2d_0", "conv2d_1", "conv2d_2"]
    assert [op.loc for op in g.ops] == ["stem", "dup", "dup", "Relu_3", "Conv_4"]
    assert import_onnx(m, name="other").name == "other"


def test_graph_name_falls_back_to_file_stem(tmp_path: Path) -> None:
    m = make_model([helper.make_node("Relu", ["x"], ["y"])], {"x": [1]}, ["y"], name="main_graph")
    path = tmp_path / "tiny_net.onnx"
    onnx.save(m, path)
    assert import_onnx(path).name == "tiny_net"
    assert import_onnx(str(path)).name == "tiny_net"


def test_external_data_files(tmp_path: Path) -> None:
    w = rand(64, 32, seed=1)
    node = helper.make_node("Gemm", ["x", "w"], ["y"], transB=1)
    m = make_model([node], {"x": [1, 32]}, ["y"], {"w": w})
    path = tmp_path / "ext" / "model.onnx"
    path.parent.mkdir()
    onnx.save(m, path, save_as_external_data=True, all_tensors_to_one_file=True,
              location="weights.bin", size_threshold=0)
    assert (path.parent / "weights.bin").exists()
    g = import_onnx(path)
    np.testing.assert_array_equal(g.ops[0].operands[1].data, w)
    x = rand(1, 32)
    np.testing.assert_allclose(run(g, {"x": x})[0], x @ w.T, rtol=1e-5, atol=1e-5)
    (path.parent / "weights.bin").unlink()
    with pytest.raises(InputError, match="weights.bin") as ei:
        import_onnx(path)
    assert ei.value.where == str(path)


# ---------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------


def _small_model_bytes() -> bytes:
    w = rand(16, 16, seed=1)
    m = make_model([helper.make_node("MatMul", ["x", "w"], ["y"])], {"x": [1, 16]}, ["y"], {"w": w})
    return m.SerializeToString()


def test_truncated_file(tmp_path: Path) -> None:
    data = _small_model_bytes()
    path = tmp_path / "cut.onnx"
    for cut in (len(data) // 2, len(data) - 7, 10):
        path.write_bytes(data[:cut])
        with pytest.raises(InputError) as ei:
            import_onnx(path)
        assert ei.value.where == str(path)
        assert "ONNX" in ei.value.message


@pytest.mark.parametrize("content", [b"", b"hello, this is not a model\n", bytes(range(256)) * 4, b"\x08\x07"])
def test_non_onnx_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "junk.onnx"
    path.write_bytes(content)
    with pytest.raises(InputError) as ei:
        import_onnx(path)
    assert ei.value.where == str(path)
    assert str(path) in str(ei.value)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file") as ei:
        import_onnx(tmp_path / "nope.onnx")
    assert ei.value.where == str(tmp_path / "nope.onnx")
    with pytest.raises(InputError, match="not a file"):
        import_onnx(tmp_path)


def test_every_unsupported_node_in_one_error(tmp_path: Path) -> None:
    nodes = [
        helper.make_node("Relu", ["x"], ["a"]),
        helper.make_node("Erf", ["a"], ["b"], name="the_erf"),
        helper.make_node("Tanh", ["b"], ["c"]),  # downstream of Erf, and unsupported itself: reported
        helper.make_node("LeakyRelu", ["a"], ["d"], name="leaky"),
        helper.make_node("Add", ["c", "d"], ["y"]),
    ]
    path = tmp_path / "bad_ops.onnx"
    onnx.save(make_model(nodes, {"x": [1, 4]}, ["y"]), path)
    with pytest.raises(UnsupportedError) as ei:
        import_onnx(path)
    msg = str(ei.value)
    assert ei.value.where == str(path)
    assert "Erf 'the_erf'" in msg and "LeakyRelu 'leaky'" in msg and "Tanh 'Tanh_2'" in msg
    assert "Add" not in msg  # supported, merely downstream of unsupported nodes
    assert "3 unsupported node(s)" in msg


def test_unsupported_inputs_and_nodes_in_one_error() -> None:
    nodes = [helper.make_node("Relu", ["seq"], ["a"]), helper.make_node("Tanh", ["x"], ["y"], name="t")]
    m = make_model(nodes, {"x": [1, 2], "seq": [1, "T", 4]}, ["y", "a"])
    with pytest.raises(UnsupportedError) as ei:
        import_onnx(m)
    msg = str(ei.value)
    assert "1 unsupported graph input(s) and 1 unsupported node(s)" in msg
    assert "graph input 'seq' has a symbolic dimension 'T' at axis 1" in msg and "Tanh 't'" in msg


def test_shape_error_names_the_node() -> None:
    node = helper.make_node("Add", ["x", "k"], ["y"], name="bad_add")
    m = make_model([node], {"x": [2, 3]}, ["y"], {"k": rand(4, seed=1)})
    with pytest.raises(InputError, match="bad_add"):
        import_onnx(m)


def test_non_float_input_is_unsupported() -> None:
    graph = helper.make_graph(
        [helper.make_node("Relu", ["ids"], ["y"])], "g",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, [1, 3])],
        [helper.make_tensor_value_info("y", TensorProto.INT64, None)],
    )
    with pytest.raises(UnsupportedError, match="'ids'.*INT64"):
        import_onnx(helper.make_model(graph))


# ---------------------------------------------------------------------------
# Example networks from both torch exporters
# ---------------------------------------------------------------------------

def _have(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # the parent package itself is missing
        return False


HAVE_EXAMPLES = _have("examples.models") and _have("examples.export")
if HAVE_EXAMPLES:
    from examples.models import MODELS

    _NAMES = sorted(MODELS)
else:
    _NAMES = []

# The dynamo exporter takes 15-60 s per network here; by default only the
# smallest residual net goes through it, the rest are marked slow.
EXAMPLE_CASES = (
    [pytest.param(n, "torchscript", True) for n in _NAMES]
    # Un-optimized exports keep BatchNormalization: canonicalize must fold it.
    + [pytest.param(n, "torchscript", False) for n in _NAMES]
    + [pytest.param(n, "dynamo", True, marks=() if n == "resnet8" else pytest.mark.slow) for n in _NAMES]
)


@pytest.mark.skipif(not HAVE_EXAMPLES, reason="examples/models.py and examples/export.py not present")
@pytest.mark.parametrize(("name", "exporter", "optimize"), EXAMPLE_CASES)
def test_example_networks(name: str, exporter: str, optimize: bool, onnx_export, example_input, example_model) -> None:
    from torch import nn

    from micoc.ir.parser import parse_mir
    from micoc.ir.printer import dense_consts, print_graph
    from micoc.passes import PassManager

    path = onnx_export(name, exporter, optimize)
    g = import_onnx(path)
    verify(g)
    assert g.name == path.stem
    assert [v.name for v in g.inputs] == ["x"]
    x = example_input(name).numpy()
    (got,) = run(g, {"x": x})
    (want,) = ort_run(onnx.load(path), {"x": x})
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    net = example_model(name)
    n_layers = sum(isinstance(m, nn.Conv2d | nn.Linear) for m in net.modules())
    assert len(g.layers()) == n_layers
    assert all(op.loc for op in g.ops)
    assert len({op.layer for op in g.layers()}) == n_layers
    # Conventions shared with the fx frontend: no fused activations at import.
    assert all(op.attrs.get("act", "none") == "none" for op in g.ops)
    # Again after canonicalize, which must fold every BatchNorm.
    PassManager.from_string("canonicalize").run(g)
    (canon,) = run(g, {"x": x})
    assert np.abs(canon - want).max() <= 1e-4 * max(1.0, float(np.abs(want).max()))
    assert not any(op.opname == "batch_norm" for op in g.ops)
    assert len(g.layers()) == n_layers
    # The text form round-trips on every example network.
    text = print_graph(g)
    assert print_graph(parse_mir(text, weights=dense_consts(g))) == text
