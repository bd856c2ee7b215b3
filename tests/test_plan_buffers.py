"""Liveness analysis and the plan-buffers pass: example networks (float, W8A8,
W2A2) against the lower bound, hand-made graphs with known optimal arenas,
and random DAGs. Validity is re-checked here by brute force, with liveness
and the sharing rules written out again independently of the pass."""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from micoc.analysis.liveness import live_across, live_at, live_intervals
from micoc.errors import UsageError
from micoc.ir import Graph, GraphBuilder, Op, QuantParams, TensorType, Value, f32
from micoc.passes import PassContext, PassManager
from micoc.passes.plan_buffers import (
    STRATEGIES,
    BufferPlan,
    BufferPlanError,
    check_plan,
    packed_activation_bytes,
    plan_buffers,
)

# -- an independent checker ---------------------------------------------------------

ELEMENTWISE_INPLACE = {"relu", "clip", "sigmoid", "requantize", "lut", "add", "sub", "mul", "div"}


def intervals_of(g: Graph) -> dict[Value, tuple[int, int]]:
    """[def, last use] per activation; inputs from -1, outputs past the last op."""
    iv: dict[Value, list[int]] = {v: [-1, -1] for v in g.inputs}
    for i, op in enumerate(g.ops):
        iv[op.result] = [i, i]
        for x in op.operands:
            if x in iv:
                iv[x][1] = i
    for v in g.outputs:
        iv[v][1] = len(g.ops)
    return {v: (a, b) for v, (a, b) in iv.items()}


def container(t: TensorType) -> int:
    if t.elem in ("f32", "i32"):
        return 32
    if t.elem == "i64":
        return 64
    bits = int(t.elem[2:])
    return next(c for c in (1, 2, 4, 8) if c >= bits)


def view_root(v: Value, is_view: Callable[[Op], bool]) -> Value:
    while v.producer is not None and is_view(v.producer) and not v.producer.operands[0].is_const:
        v = v.producer.operands[0]
    return v


def assert_valid(
    g: Graph,
    plan: BufferPlan,
    size_of: Callable[[Value], int] | None = None,
    is_view: Callable[[Op], bool] = lambda op: op.opname == "reshape",
) -> None:
    """Brute force: every pair of activations live at a common op index whose
    bytes intersect must be one tensor (views, by default reshapes) or an
    in-place hand-over at exactly one element-wise op."""
    size = size_of or (lambda v: packed_activation_bytes(v.type))
    iv = intervals_of(g)
    assert set(plan.offsets) == set(iv)
    for v, (s, e) in iv.items():
        assert plan.offsets[v] % plan.alignment == 0
        assert plan.offsets[v] + size(v) <= plan.arena_bytes
        assert plan.intervals[v].start == s and plan.intervals[v].end == e
    for a, b in itertools.combinations(iv, 2):
        (sa, ea), (sb, eb) = iv[a], iv[b]
        if max(sa, sb) > min(ea, eb):
            continue  # never live together
        oa, ob = plan.offsets[a], plan.offsets[b]
        if not (oa < ob + size(b) and ob < oa + size(a)):
            continue  # disjoint bytes
        if view_root(a, is_view) is view_root(b, is_view):
            assert oa == ob
            continue
        meet = max(sa, sb)
        assert meet == min(ea, eb), f"{a} and {b} share bytes over [{meet}, {min(ea, eb)}]"
        op = g.ops[meet]
        new, old = (a, b) if op.result is a else (b, a)
        assert op.result is new and old in op.operands, f"{a} and {b} share bytes at {op}"
        assert op.opname in ELEMENTWISE_INPLACE
        assert new.type.shape == old.type.shape and container(new.type) == container(old.type)
        assert oa == ob


def live_bytes_bound(g: Graph, plan: BufferPlan) -> int:
    """Most bytes live at once, each alias group counted once at its largest member."""
    iv = intervals_of(g)
    best = 0
    for t in range(-1, len(g.ops) + 1):
        groups: dict[int, int] = {}
        for v, (s, e) in iv.items():
            if s <= t <= e:
                k = plan.buffer_of[v]
                groups[k] = plan.buffers[k].size
        best = max(best, sum(groups.values()))
    return best


# -- example networks -----------------------------------------------------------------

_GRAPHS: dict[tuple[str, str], Graph] = {}


def example_graph(name: str, precision: str) -> Graph:
    if (name, precision) not in _GRAPHS:
        import torch

        from examples.models import MODELS, build
        from micoc.frontends.fx import import_module

        shape = MODELS[name][1]
        g = import_module(build(name), torch.randn(shape, generator=torch.Generator().manual_seed(0)))
        PassManager.from_string("canonicalize").run(g)
        if precision != "float":
            g = g.clone()
            calib = np.random.default_rng(0).standard_normal((4, *shape[1:])).astype(np.float32)
            ctx = PassContext(data={"calibration": {g.inputs[0].name: calib}})
            PassManager.from_string(f"assign-bits{{bits={precision}}},calibrate,quantize", ctx).run(g)
        _GRAPHS[name, precision] = g
    return _GRAPHS[name, precision]


def _model_names() -> list[str]:
    from examples.models import MODELS

    return list(MODELS)


@pytest.mark.parametrize("precision", ["float", "w8a8", "w2a2"])
@pytest.mark.parametrize("name", _model_names())
def test_example_networks(name: str, precision: str) -> None:
    g = example_graph(name, precision)
    plan = plan_buffers(g)
    assert_valid(g, plan)
    assert plan.lower_bound == live_bytes_bound(g, plan)
    assert plan.lower_bound <= plan.arena_bytes <= 1.10 * plan.lower_bound
    assert plan.arena_bytes < plan.total_bytes
    for strategy in STRATEGIES:
        other = plan_buffers(g, strategy=strategy)
        assert_valid(g, other)
        assert other.arena_bytes >= plan.arena_bytes
    iv = intervals_of(g)
    outputs = set(g.outputs)
    for i, op in enumerate(g.ops):
        if op.opname == "reshape":  # a pure alias: same bytes, nothing new allocated
            x = op.operands[0]
            assert plan.offsets[op.result] == plan.offsets[x]
            assert plan.buffer_of[op.result] == plan.buffer_of[x]
            assert plan.alias_of[op.result] is x and not plan.in_place(op.result)
        if op.opname == "relu" and iv[op.operands[0]][1] == i and op.operands[0] not in outputs:
            assert plan.in_place(op.result), f"relu {i} of {name} not in place"
        if op.opname == "add" and any(
            iv[x][1] == i and x.type.shape == op.result.type.shape and container(x.type) == container(op.result.type)
            and all(iv[y][1] <= i for y in plan.buffers[plan.buffer_of[x]].values)
            for x in op.operands
        ):
            assert plan.in_place(op.result), f"add {i} of {name} not in place"
    # Adds in residual networks do reuse a dying operand.
    if name in ("resnet8", "resnet18", "mobilenetv2"):
        assert any(plan.in_place(op.result) for op in g.ops if op.opname == "add")


def test_quantized_plan_is_smaller_than_float() -> None:
    f = plan_buffers(example_graph("resnet8", "float"))
    q8 = plan_buffers(example_graph("resnet8", "w8a8"))
    q2 = plan_buffers(example_graph("resnet8", "w2a2"))
    assert q2.arena_bytes < q8.arena_bytes < f.arena_bytes


# -- sizes ----------------------------------------------------------------------------


def qt(elem: str, *shape: int) -> TensorType:
    return TensorType(shape, elem, QuantParams.per_tensor(0.1))


@pytest.mark.parametrize(
    ("t", "nbytes"),
    [
        (qt("qu2", 1, 6, 28, 28), 28 * 28 * 4),  # 6 channels x 2 bits: one word per pixel
        (qt("qu8", 1, 6, 28, 28), 28 * 28 * 8),  # 48 bits: two words per pixel
        (qt("qi3", 1, 16, 5, 5), 25 * 8),  # 3 bits in 4-bit containers: 64 bits per pixel
        (qt("qi4", 1, 10), 8),
        (qt("qu8", 1, 400), 400),
        (qt("qi1", 1, 33), 8),
        (qt("qu4", 2, 3, 9), 6 * 8),  # rank 3: last dim is the row
        (qt("qu8", 7), 8),
        (f32(1, 10), 40),
        (TensorType((3,), "i64"), 24),
        (TensorType((1, 5), "i32"), 20),
    ],
)
def test_packed_activation_bytes(t: TensorType, nbytes: int) -> None:
    assert packed_activation_bytes(t) == nbytes


# -- hand-made graphs with known optimal arenas -----------------------------------------


def w(b: GraphBuilder, *shape: int) -> Value:
    return b.const("w", np.ones(shape, np.float32))


def linear(b: GraphBuilder, x: Value, n: int) -> Value:
    return b.op("linear", [x, w(b, n, x.type.shape[-1])])


def conv(b: GraphBuilder, x: Value, c: int) -> Value:
    return b.op("conv2d", [x, w(b, c, x.type.shape[1], 1, 1)])


def test_chain() -> None:
    b = GraphBuilder("chain")
    x = b.input("x", f32(1, 4))  # 16 bytes
    y = linear(b, x, 8)  # 32
    z = linear(b, y, 2)  # 8
    b.output(linear(b, z, 6))  # 24
    plan = plan_buffers(b.graph)
    assert_valid(b.graph, plan)
    assert plan.arena_bytes == plan.lower_bound == 16 + 32
    assert plan.total_bytes == 16 + 32 + 8 + 24


def test_chain_relu_in_place() -> None:
    b = GraphBuilder("chain")
    x = b.input("x", f32(1, 4))  # 16 bytes
    y = b.op("relu", [linear(b, x, 8)])  # 32, in place
    b.output(linear(b, y, 2))  # 8
    plan = plan_buffers(b.graph)
    assert_valid(b.graph, plan)
    assert plan.in_place(y)
    assert plan.arena_bytes == plan.lower_bound == 48
    off = plan_buffers(b.graph, inplace=False)
    assert_valid(b.graph, off)
    assert off.arena_bytes == 64 and not off.alias_of


def test_residual() -> None:
    b = GraphBuilder("residual")
    x = b.input("x", f32(1, 16, 4, 4))  # every value 1024 bytes
    y = conv(b, x, 16)
    z = conv(b, y, 16)
    u = conv(b, z, 16)
    s = b.op("add", [u, y])  # both operands die here: reuses one of them
    b.output(conv(b, s, 16))
    plan = plan_buffers(b.graph)
    assert_valid(b.graph, plan)
    assert plan.in_place(s) and plan.alias_of[s] in (u, y)
    assert plan.arena_bytes == plan.lower_bound == 3 * 1024  # y, z, u at the third conv
    assert [len(vs) for vs in live_across(b.graph)] == [0, 0, 1, 0, 0]  # y skips the third conv


def test_diamond_output_is_not_overwritten() -> None:
    b = GraphBuilder("diamond")
    x = b.input("x", f32(1, 8))  # 32 bytes
    y = linear(b, x, 8)
    left = b.op("relu", [y])  # y is still read by `right`: not in place
    right = b.op("clip", [y], {"min": 0.0, "max": 6.0})  # y dies here: in place
    out = b.op("add", [left, right])  # graph output, reuses left or right
    b.output(out, left)  # left is an output too, so out must take right's bytes
    plan = plan_buffers(b.graph)
    assert_valid(b.graph, plan)
    assert not plan.in_place(left) and plan.in_place(right)
    assert plan.alias_of[out] is right
    assert plan.arena_bytes == plan.lower_bound == 2 * 32  # {y, right, out} and left


def test_concat_fan_in() -> None:
    b = GraphBuilder("fire")
    x = b.input("x", f32(1, 4, 4, 4))  # 256 bytes
    parts = [conv(b, x, c) for c in (8, 8, 16)]  # 512, 512, 1024
    b.output(b.op("concat", parts, {"axis": 1}))  # 2048
    plan = plan_buffers(b.graph)
    assert_valid(b.graph, plan)
    assert plan.arena_bytes == plan.lower_bound == 512 + 512 + 1024 + 2048


def test_reshape_costs_nothing() -> None:
    b = GraphBuilder("flatten")
    x = b.input("x", f32(1, 16, 2, 2))  # 256 bytes
    y = conv(b, x, 16)  # 256
    r = b.op("reshape", [y], {"shape": [1, 64]})  # alias of y
    b.output(linear(b, r, 10))  # 40
    plan = plan_buffers(b.graph)
    assert_valid(b.graph, plan)
    assert plan.offsets[r] == plan.offsets[y] and plan.alias_of[r] is y and plan.views == {r}
    assert len(plan.buffers) == 3
    assert plan.arena_bytes == plan.lower_bound == 512


def test_target_decides_views() -> None:
    # A target whose flatten is a gather (channel-packed pixels -> one row)
    # gets a separate buffer for it; one whose slice moves nothing, an alias.
    b = GraphBuilder("flatten")
    x = b.input("x", f32(1, 1, 2, 2))  # 16 bytes
    y = conv(b, x, 16)  # 256
    s = b.op("slice", [y], {"starts": [0], "ends": [8], "axes": [1], "steps": [1]})  # 128
    r = b.op("reshape", [s], {"shape": [1, 32]})  # 128
    b.output(linear(b, r, 10))  # 40
    plan = plan_buffers(b.graph, is_view=lambda op: op.opname == "slice")
    assert_valid(b.graph, plan, is_view=lambda op: op.opname == "slice")
    assert plan.views == {s} and plan.alias_of == {s: y}
    assert plan.offsets[r] != plan.offsets[y]
    assert plan.arena_bytes == plan.lower_bound == 256 + 128  # y (and its view s) + r
    d = plan.to_dict(b.graph)["values"]
    assert d["%1"]["view"] and d["%1"]["alias_of"] == "%0" and not d["%2"]["view"]


def test_reshape_keeps_its_source_alive() -> None:
    # relu(y) may not overwrite y while y's reshape is still to be read.
    b = GraphBuilder("g")
    x = b.input("x", f32(1, 8))
    y = linear(b, x, 8)
    r = b.op("reshape", [y], {"shape": [8, 1]})
    z = b.op("relu", [y])
    b.output(b.op("relu", [b.op("reshape", [r], {"shape": [1, 8]})]), z)
    plan = plan_buffers(b.graph)
    assert_valid(b.graph, plan)
    assert not plan.in_place(z)


def test_quantized_sizes_and_width_change() -> None:
    b = GraphBuilder("q")
    x = b.input("x", qt("qu8", 1, 8, 2, 2))  # 4 pixels x 2 words = 32 bytes
    y = b.op("requantize", [x], result_type=qt("qu4", 1, 8, 2, 2))  # 16 bytes: other layout, not in place
    z = b.op("relu", [y], result_type=qt("qu4", 1, 8, 2, 2))  # same layout: in place
    b.output(z)
    plan = plan_buffers(b.graph)
    assert_valid(b.graph, plan)
    assert plan.sizes[x] == 32 and plan.sizes[y] == 16
    assert not plan.in_place(y) and plan.in_place(z)
    assert plan.arena_bytes == plan.lower_bound == 48


def test_liveness() -> None:
    b = GraphBuilder("g")
    x = b.input("x", f32(1, 8))
    y = linear(b, x, 8)  # op 0
    dead = b.op("relu", [x])  # op 1, never read
    z = b.op("add", [y, x])  # op 2
    b.output(z, y)
    ivs = live_intervals(b.graph)
    assert [(iv.start, iv.end) for iv in ivs.values()] == [(-1, 2), (0, 3), (1, 1), (2, 3)]
    assert live_at(b.graph) == [[x, y], [x, y, dead], [x, y, z]]
    assert live_across(b.graph) == [[], [y], []]
    assert list(ivs) == [x, y, dead, z]  # constants are not activations


def test_scratch_and_custom_sizes() -> None:
    b = GraphBuilder("chain")
    x = b.input("x", f32(1, 4))
    b.output(linear(b, linear(b, x, 8), 2))
    plan = plan_buffers(b.graph, size_of=lambda v: 10, scratch_of=lambda op: 7 * len(op.operands), alignment=8)
    assert plan.sizes == dict.fromkeys(plan.values, 10)
    assert all(buf.size == 16 for buf in plan.buffers)
    assert plan.scratch == (14, 14) and plan.scratch_bytes == 14
    assert plan.arena_bytes == 32


def test_check_plan_catches_overlap() -> None:
    b = GraphBuilder("chain")
    x = b.input("x", f32(1, 4))
    b.output(linear(b, linear(b, x, 8), 2))
    plan = plan_buffers(b.graph)
    bad = dataclasses.replace(plan, offsets=dict.fromkeys(plan.offsets, 0))
    with pytest.raises(BufferPlanError):
        check_plan(b.graph, bad)


def test_pass() -> None:
    g = example_graph("lenet5", "w2a2")
    text = str(g)
    ctx = PassContext()
    PassManager.from_string("plan-buffers{strategy=best-fit,alignment=16}", ctx).run(g)
    plan = ctx.data["buffer_plan"]
    assert isinstance(plan, BufferPlan) and plan.strategy == "best-fit" and plan.alignment == 16
    assert plan.is_current(g)
    assert str(g) == text  # the IR text does not carry the plan
    d = g.buffer_plan  # type: ignore[attr-defined]
    assert d["arena_bytes"] == plan.arena_bytes and d["lower_bound"] == plan.lower_bound
    assert d["values"]["%0"]["offset"] == plan.offsets[g.ops[0].result]
    assert set(d["values"]) == {"%x", *(f"%{i}" for i in range(len(g.ops)))}
    g2 = g.clone()
    assert not plan.is_current(g2)
    with pytest.raises(UsageError):
        PassManager.from_string("plan-buffers{strategy=tetris}").run(g)
    with pytest.raises(UsageError):
        PassManager.from_string("plan-buffers{alignment=3}").run(g)


def test_pass_uses_target_size_of() -> None:
    g = example_graph("lenet5", "w8a8")
    ctx = PassContext(data={"size_of": lambda v: 4 * v.type.numel})
    PassManager.from_string("plan-buffers", ctx).run(g)
    plan = ctx.data["buffer_plan"]
    assert plan.sizes[g.inputs[0]] == 4 * 28 * 28
    assert_valid(g, plan, ctx.data["size_of"])


# -- random DAGs ------------------------------------------------------------------------

ELEMS = ("f32", "qu2", "qi4", "qu8", "qi1")


@st.composite
def random_graph(draw: st.DrawFn) -> Graph:
    b = GraphBuilder("random")

    def ty(shape: tuple[int, ...]) -> TensorType:
        elem = draw(st.sampled_from(ELEMS))
        return TensorType(shape, elem, None if elem == "f32" else QuantParams.per_tensor(0.5))

    vals = [b.input("x", ty((1, draw(st.integers(1, 12)), 2, 2)))]
    if draw(st.booleans()):
        vals.append(b.input("y", ty((1, draw(st.integers(1, 12)), 2, 2))))
    for _ in range(draw(st.integers(1, 14))):
        x = draw(st.sampled_from(vals))
        kind = draw(st.sampled_from(["conv", "relu", "add", "concat", "reshape", "sub"]))
        same = [v for v in vals if v.type.shape == x.type.shape]
        c, h, wd = x.type.shape[1:]
        if kind == "conv":
            out = b.op("conv2d", [x, w(b, draw(st.integers(1, 12)), c, 1, 1)])
        elif kind == "relu":
            out = b.op("relu", [x])
        elif kind in ("add", "sub"):
            out = b.op(kind, [x, draw(st.sampled_from(same))])
        elif kind == "concat":
            others = [v for v in vals if v.type.shape[2:] == (h, wd)]
            out = b.op("concat", [x, *draw(st.lists(st.sampled_from(others), min_size=1, max_size=3))], {"axis": 1})
        else:
            out = b.op("reshape", [x], {"shape": [1, c, 4, 1] if (h, wd) == (2, 2) else [1, c, 2, 2]})
        out.type = ty(out.type.shape)
        vals.append(out)
    outs = draw(st.lists(st.sampled_from(vals[1:]), min_size=0, max_size=3))
    b.output(vals[-1], *outs)
    return b.graph


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_graph(), st.sampled_from(["auto", *STRATEGIES]), st.booleans(), st.sampled_from([1, 4, 16]),
       st.booleans())
def test_random_dags(g: Graph, strategy: str, inplace: bool, alignment: int, reshape_is_view: bool) -> None:
    def is_view(op: Op) -> bool:
        return reshape_is_view and op.opname == "reshape"

    plan = plan_buffers(g, strategy=strategy, inplace=inplace, alignment=alignment, is_view=is_view)
    assert_valid(g, plan, is_view=is_view)
    assert all(v.producer is not None and is_view(v.producer) for v in plan.views)
    assert plan.arena_bytes >= plan.lower_bound == live_bytes_bound(g, plan)
    assert plan.arena_bytes <= sum(buf.size for buf in plan.buffers)
    # An op that cannot run in place needs its operands and result at once.
    for op in g.ops:
        if op.opname in ("conv2d", "concat"):
            bufs = {plan.buffer_of[v] for v in (op.result, *op.operands) if v in plan.buffer_of}
            need = sum(plan.buffers[k].size for k in bufs)
            assert plan.lower_bound >= need >= math.ceil(plan.sizes[op.result] / alignment) * alignment
