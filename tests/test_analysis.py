"""micoc.analysis: MACs, BOPs, CBOPs features and bytes of hand-computed layers."""

from __future__ import annotations

import numpy as np
import pytest

from micoc.analysis import (
    batch_features,
    check_schemes,
    layer_costs,
    layer_table,
    scheme_array,
    totals,
)
from micoc.errors import InputError
from micoc.ir import Graph, GraphBuilder, f32


def _w(*shape: int) -> np.ndarray:
    return np.zeros(shape, np.float32)


def conv_graph() -> Graph:
    """Grouped, strided, padded conv; asymmetric padding; linear on rank 3; matmul."""
    b = GraphBuilder("g")
    x = b.input("x", f32(1, 4, 7, 7))
    # 7x7, pad 1, k3, s2 -> 4x4 outputs; groups 2: 2 input channels per output
    y = b.op("conv2d", [x, b.const("c1.w", _w(6, 2, 3, 3)), b.const("c1.b", _w(6))],
             {"stride": [2, 2], "pad": [1, 1, 1, 1], "groups": 2}, layer="c1")
    # 4x4, pad top 0 left 1 bottom 2 right 0, k3 s1 -> 4x3
    y = b.op("conv2d", [y, b.const("c2.w", _w(5, 6, 3, 3))], {"pad": [0, 1, 2, 0]}, layer="c2")
    y = b.op("reshape", [y], {"shape": [1, 5, 12]})
    y = b.op("linear", [y, b.const("fc.w", _w(3, 12)), b.const("fc.b", _w(3))], layer="fc")
    z = b.op("matmul", [y, b.op("transpose", [y], {"perm": [0, 2, 1]})], layer="mm")
    b.output(z)
    return b.graph


def test_conv_grouped_strided_padded() -> None:
    t = layer_table(conv_graph())
    c1 = t.layers[0]
    assert (c1.geometry.oh, c1.geometry.ow) == (4, 4)
    # every output does all 3x3 taps on its 2 channels, padding included
    assert c1.macs == 4 * 4 * 6 * 2 * 3 * 3 == 1728
    assert c1.params == 6 * 2 * 3 * 3 + 6
    c = c1.cost(4, 8)
    assert (c.bops, c.bmacs, c.wloads, c.aloads) == (1728 * 32, 1728 * 8, 1728 * 4, 1728 * 8)
    assert c.weight_bytes == 108 * 4 // 8 + 4 * 6  # packed 4-bit weights + int32 bias
    assert c.act_bytes == 4 * 7 * 7  # input at 8 bits


def test_conv_asymmetric_padding() -> None:
    c2 = layer_table(conv_graph()).layers[1]
    g = c2.geometry
    assert (g.oh, g.ow) == (4, 3) and (g.padded_h, g.padded_w) == (6, 5)
    assert c2.macs == 4 * 3 * 5 * 6 * 9
    assert c2.bias_elems == 0 and c2.params == 5 * 6 * 9
    assert c2.cost(1, 3).act_bytes == -(-6 * 4 * 4 * 3 // 8)  # 288 bits -> 36 bytes


def test_linear_and_matmul() -> None:
    t = layer_table(conv_graph())
    fc, mm = t.layers[2], t.layers[3]
    assert (fc.geometry.n, fc.geometry.m, fc.geometry.k) == (5, 3, 12)
    assert fc.macs == 5 * 3 * 12 and fc.params == 3 * 12 + 3
    # a matmul of two activations has no parameters; the second operand takes wbits
    assert mm.macs == 1 * 5 * 5 * 3 and mm.params == 0
    assert mm.cost(2, 8).wloads == mm.macs * 2
    assert t.names == ("c1", "c2", "fc", "mm")


def test_totals_and_default_bits() -> None:
    g = conv_graph()
    costs = layer_costs(g, {"fc": (2, 4)})
    tot = totals(costs)
    assert [(c.wbits, c.abits) for c in costs] == [(8, 8), (8, 8), (2, 4), (8, 8)]
    assert tot["macs"] == sum(c.macs for c in costs)
    assert tot["bops"] == sum(c.macs * c.wbits * c.abits for c in costs)
    assert layer_costs(g, default=(4, 4))[0].bops == 1728 * 16


def test_vectorized_equals_loop() -> None:
    g = conv_graph()
    t = layer_table(g)
    rng = np.random.default_rng(0)
    schemes = rng.integers(1, 9, size=(50, len(t), 2))
    feats = batch_features(t, schemes)
    for i, s in enumerate(schemes):
        costs = layer_costs(g, {n: (int(w), int(a)) for n, (w, a) in zip(t.names, s, strict=True)})
        for key, attr in (("BOPs", "bops"), ("BMACs", "bmacs"), ("WLoads", "wloads"),
                          ("ALoads", "aloads"), ("weight_bytes", "weight_bytes"),
                          ("act_bytes", "act_bytes")):
            assert feats[key][i].tolist() == [getattr(c, attr) for c in costs], key
    assert feats["BOPs"].shape == (50, 4)


def test_table_cached_per_graph_and_refreshed_on_change() -> None:
    g = conv_graph()
    t = layer_table(g)
    assert layer_table(g) is t
    assert layer_table(g.clone()) is not t  # another graph, its own entry
    g.ops[0].layer = "renamed"
    assert layer_table(g).names[0] == "renamed"


def test_scheme_errors() -> None:
    t = layer_table(conv_graph())
    with pytest.raises(InputError, match="unknown layer.*nope"):
        scheme_array(t, {"nope": (4, 4)})
    for bad in ((0, 8), (8, 9), (True, 8), (4.0, 8)):
        with pytest.raises(InputError, match="bits must be an integer in 1..8"):
            scheme_array(t, {"fc": bad})  # type: ignore[dict-item]
    with pytest.raises(InputError, match="shape"):
        check_schemes(t, np.ones((3, 2, 2), int))
    with pytest.raises(InputError, match="1..8"):
        check_schemes(t, np.zeros((3, 4, 2), int))
    assert check_schemes(t, np.full((4, 2), 8)).shape == (1, 4, 2)
