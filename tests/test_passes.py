"""Pass manager, pipeline strings, canonicalize and shape-infer."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from micoc.errors import UsageError, VerificationError
from micoc.interp import run
from micoc.ir import Graph, GraphBuilder, f32, verify
from micoc.passes import Pass, PassContext, PassManager, parse_pipeline

ROOT = Path(__file__).resolve().parents[1]
rng = np.random.default_rng(0)


def rand(*shape: int) -> np.ndarray:
    return rng.standard_normal(shape).astype(np.float32)


def conv_bn_net() -> Graph:
    """conv -> BN -> relu6 -> (x - c) -> mean(HW) -> linear -> relu, plus a shared conv output."""
    b = GraphBuilder("net")
    x = b.input("x", f32(1, 3, 8, 8))
    y = b.op("conv2d", [x, b.const("conv.weight", rand(4, 3, 3, 3))], {"pad": [1, 1, 1, 1]}, layer="conv")
    bn = [b.const(n, d) for n, d in (("bn.weight", rand(4)), ("bn.bias", rand(4)), ("bn.mean", rand(4)),
                                      ("bn.var", np.abs(rand(4)) + 0.5))]
    y = b.op("batch_norm", [y, *bn])
    y = b.op("clip", [y], {"min": 0.0, "max": 6.0})
    y = b.op("sub", [y, b.const("c", rand(1, 4, 1, 1))])
    y = b.op("mean", [y], {"axes": [2, 3], "keepdims": False})
    y = b.op("reshape", [y], {"shape": [1, 2, 2]})
    y = b.op("reshape", [y], {"shape": [1, 4]})
    y = b.op("linear", [y, b.const("fc.weight", rand(5, 4))], layer="fc")
    y = b.op("relu", [y])
    b.output(y)
    verify(b.graph)
    return b.graph


def test_canonicalize_preserves_values_and_normalizes() -> None:
    g = conv_bn_net()
    xs = rand(3, 3, 8, 8)
    before = run(g, {"x": xs})[0]
    PassManager(parse_pipeline("canonicalize")).run(g)
    after = run(g, {"x": xs})[0]
    assert np.abs(after - before).max() <= 1e-5 * max(1.0, np.abs(before).max())
    assert [(op.opname, op.attrs.get("act")) for op in g.ops] == [
        ("conv2d", "relu6"), ("add", None), ("global_avgpool", None), ("reshape", None), ("linear", "relu"),
    ]
    assert [op.layer for op in g.layers()] == ["conv", "fc"]
    # BN folded into the conv's weight and a new bias; its parameters are gone.
    assert set(g.consts) == {"conv.weight", "conv.bias", "c.neg", "fc.weight"}


def test_activation_not_fused_into_shared_producer() -> None:
    b = GraphBuilder("shared")
    x = b.input("x", f32(1, 2, 4, 4))
    y = b.op("conv2d", [x, b.const("w", rand(2, 2, 1, 1))])
    r = b.op("relu", [y])
    b.output(b.op("add", [y, r]))
    g = b.graph
    PassManager(parse_pipeline("canonicalize")).run(g)
    assert [op.opname for op in g.ops] == ["conv2d", "relu", "add"]
    assert g.ops[0].attrs["act"] == "none"


def test_clip_fusion_kinds() -> None:
    for lo, hi, act in ((0.0, 6.0, "relu6"), (0.0, float("inf"), "relu"), (-1.0, 1.0, "clip")):
        b = GraphBuilder("c")
        x = b.input("x", f32(1, 3))
        y = b.op("linear", [x, b.const("w", rand(2, 3))])
        b.output(b.op("clip", [y], {"min": lo, "max": hi}))
        PassManager(parse_pipeline("canonicalize")).run(b.graph)
        (op,) = b.graph.ops
        assert op.attrs["act"] == act
        if act == "clip":
            assert (op.attrs["clip_min"], op.attrs["clip_max"]) == (lo, hi)


def test_constant_subgraphs_fold() -> None:
    b = GraphBuilder("fold")
    x = b.input("x", f32(1, 4))
    c = b.op("mul", [b.const("a", np.full((1, 4), 2, np.float32)), b.const("b", np.full((1, 4), 3, np.float32))])
    b.output(b.op("add", [x, c]))
    PassManager(parse_pipeline("canonicalize")).run(b.graph)
    (op,) = b.graph.ops
    assert op.opname == "add" and op.operands[1].is_const
    assert np.array_equal(op.operands[1].data, np.full((1, 4), 6, np.float32))


def test_pipeline_options_are_typed() -> None:
    (p,) = parse_pipeline("canonicalize{max_iterations=3}")
    assert p.max_iterations == 3  # type: ignore[attr-defined]
    assert p.spec() == "canonicalize{max_iterations=3}"
    assert [q.name for q in parse_pipeline(" canonicalize , shape-infer ")] == ["canonicalize", "shape-infer"]


@pytest.mark.parametrize(
    "pipeline, message",
    [
        ("nope", "unknown pass 'nope'"),
        ("canonicalize{bogus=1}", "pass 'canonicalize' has no option 'bogus' (options: max_iterations)"),
        ("canonicalize{max_iterations=x}", "option 'max_iterations' expects int, got 'x'"),
        ("canonicalize{max_iterations=3", "missing '}'"),
        ("canonicalize{max_iterations}", "needs the form key=value"),
        ("canonicalize,,shape-infer", "empty pass name"),
    ],
)
def test_bad_pipelines(pipeline: str, message: str) -> None:
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)").replace("{", r"\{")):
        parse_pipeline(pipeline)


@dataclass(frozen=True)
class BreakShapes(Pass):
    name: ClassVar[str] = "break-shapes"

    def run(self, graph: Graph, ctx: PassContext) -> bool:
        graph.ops[0].result.type = f32(7, 7)
        return True


def test_verifier_runs_after_each_pass() -> None:
    g = conv_bn_net()
    with pytest.raises(VerificationError, match="IR is invalid after pass 'break-shapes'"):
        PassManager([BreakShapes()]).run(g)
    PassManager([BreakShapes()], PassContext(verify=False)).run(conv_bn_net())  # opt-out works


def test_shape_infer_repairs_shapes() -> None:
    g = conv_bn_net()
    PassManager([BreakShapes(), *parse_pipeline("shape-infer")], PassContext(verify=False)).run(g)
    verify(g)


def test_dump_and_timing_reports() -> None:
    out = io.StringIO()
    ctx = PassContext(dump_after=frozenset({"canonicalize"}), time_passes=True, dump_stream=out)
    PassManager(parse_pipeline("canonicalize,shape-infer"), ctx).run(conv_bn_net())
    text = out.getvalue()
    assert text.count("IR dump after") == 1 and "IR dump after canonicalize" in text
    assert "graph @net" in text and "pass execution timing report" in text and "shape-infer" in text


def test_plugin_pass_through_entry_point(tmp_path: Path) -> None:
    """Install the example plugin package and use its pass from the micoc CLI."""
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
         "--target", str(target), str(ROOT / "examples" / "plugin")],
        check=True, capture_output=True,
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), str(ROOT)])}
    listed = subprocess.run([sys.executable, "-m", "micoc", "list-passes"], env=env,
                            capture_output=True, text=True, check=True)
    assert "strip-fused-relu" in listed.stdout
    from micoc.ir.printer import save_mir

    g = conv_bn_net()
    PassManager(parse_pipeline("canonicalize")).run(g)
    save_mir(g, tmp_path / "net.mir")
    res = subprocess.run(
        [sys.executable, "-m", "micoc", "opt", str(tmp_path / "net.mir"), "-p", "strip-fused-relu{layer=fc}"],
        env=env, capture_output=True, text=True,
    )
    assert res.returncode == 0, res.stderr
    assert 'relu(' in res.stdout and 'act = "relu6"' in res.stdout
