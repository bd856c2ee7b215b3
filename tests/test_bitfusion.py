"""BitFusion performance model: cycle-exact against the shared profiles.

The profile rows are outputs of the public BitFusion simulator; the model must
reproduce them to the cycle. Small hand-computed cases pin the formulas, and a
brute force over every tile and all 120 loop orders checks that the pruned
search finds the true minimum.
"""

from __future__ import annotations

import csv
import itertools
import os
from pathlib import Path

import pytest

from micoc.cost.bitfusion import (
    LOOPS,
    BitFusionConfig,
    BitFusionLayer,
    layer_cost,
    layer_cycles,
    layer_from_profile_row,
    precision_factor,
    schedule_cost,
)
from micoc.errors import InputError


def _profiles_dir() -> Path:
    env = os.environ.get("MICOC_PROFILES")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "shared" / "profiles"


def _rows(kind: str) -> list[dict[str, int]]:
    path = _profiles_dir() / f"bitfusion_{kind}_samples.csv"
    if not path.is_file():
        pytest.skip(
            f"BitFusion profile {path} not found (set MICOC_PROFILES to ../shared/profiles)"
        )
    with path.open(newline="") as f:
        return [{k: int(v) for k, v in row.items()} for row in csv.DictReader(f)]


@pytest.mark.parametrize("kind", ["conv2d", "matmul"])
def test_profiles_cycle_exact(kind: str) -> None:
    rows = _rows(kind)
    bad = []
    for row in rows:
        got = layer_cycles(layer_from_profile_row(row, kind), row["QA"], row["QW"])  # type: ignore[arg-type]
        if got != row["Time"]:
            bad.append((row, got))
    exact = 1 - len(bad) / len(rows)
    assert exact >= 0.99, (
        f"{kind}: exact on {exact:.2%} of {len(rows)} rows; first misses {bad[:5]}"
    )


def test_matmul_columns_are_input_then_output() -> None:
    # Row 16,64,2048,2,2 -> 24592 cycles: M=64 inputs, K=2048 outputs.
    assert layer_cycles(BitFusionLayer.fc(64, 2048), 2, 2) == 24592
    assert layer_cycles(BitFusionLayer.fc(2048, 64), 2, 2) != 24592


@pytest.mark.parametrize(
    ("a", "w", "pf"),
    [(8, 8, 1), (4, 8, 2), (8, 4, 2), (4, 4, 4), (2, 8, 4), (2, 4, 8), (2, 2, 16), (1, 1, 16),
     (1, 8, 4), (3, 3, 4), (3, 4, 4), (5, 5, 1), (6, 2, 4), (7, 1, 4)],
)  # fmt: skip
def test_precision_factor(a: int, w: int, pf: int) -> None:
    assert precision_factor(a, w) == pf


@pytest.mark.parametrize("bits", [0, 9, 16])
def test_precision_out_of_range(bits: int) -> None:
    with pytest.raises(InputError):
        precision_factor(bits, 8)
    with pytest.raises(InputError):
        layer_cycles(BitFusionLayer.fc(32, 32), 8, bits)


def test_hand_computed_fc_single_tile() -> None:
    # 16 x 32 -> 32 at a8/w8: the whole layer is one tile that fits.
    #   weights 32 (one 16-row fold, two folds) x 32 x 8 = 8192 bits,
    #   acts 32 x 16 x 8 = 4096, outputs 16 x 32 x 32 = 16384 bits;
    #   compute = 16 * ceil(32/32) * ceil(32/16) = 32;
    #   fill = ceil(28672/128) = 224, drain = 16384/128 = 128, no middle traffic.
    cost = layer_cost(BitFusionLayer.fc(32, 32), 8, 8)
    assert (cost.compute_cycles, cost.fill_drain_cycles, cost.stall_cycles) == (32, 352, 0)
    assert cost.cycles == 384
    assert cost.dram_read_bits == (8192, 4096, 16384)
    # a2/w4 (pf 8): weights padded to 128 rows: 128 x 32 x 4 = 16384 bits;
    # compute 16, fill ceil(33792/128) = 264, drain 128 -> 408 (a profile row).
    assert layer_cycles(BitFusionLayer.fc(32, 32), 2, 4) == 408


def test_oversized_tiles_are_rejected() -> None:
    layer = BitFusionLayer.fc(1024, 1024)
    order = ("B", "OW", "OH", "IC", "OC")
    # weights 1024 x 1024 x 8 bits >> 32 KB (half of the 64 KB weight SRAM)
    assert schedule_cost(layer, 8, 8, (1, 1, 1, 1024, 1024), order) is None
    # outputs: 16 x 256 x 32 bits = 16 KB > 8 KB (half of the output SRAM)
    assert schedule_cost(layer, 8, 8, (16, 1, 1, 16, 256), order) is None
    # exactly half of the output SRAM still fits (the test is strict >)
    assert schedule_cost(layer, 8, 8, (8, 1, 1, 16, 256), order) is not None
    # activations: im2col 7x7x256 window at 8 bits, 2x2 outputs x 4 images
    conv = BitFusionLayer.conv(16, 16, 256, 32, 7)
    assert schedule_cost(conv, 8, 8, (4, 2, 2, 256, 1), order) is None  # 401408 > 131072
    assert schedule_cost(conv, 8, 8, (1, 1, 1, 256, 1), order) is not None


def _brute_force(layer: BitFusionLayer, a: int, w: int, cfg: BitFusionConfig) -> int:
    """Minimum over every power-of-two tile and all 120 loop orders."""

    def pow2(n: int) -> list[int]:
        return sorted({min(1 << j, n) for j in range(n.bit_length() + 1)})

    o = layer.out_h
    if layer.im2col:
        ocs = pow2(layer.out_c)
    else:
        ocs = sorted({min(t * cfg.cols, layer.out_c) for t in pow2(-(-layer.out_c // cfg.cols))})
    best = None
    for b, t, ic, oc in itertools.product(pow2(layer.batch), pow2(o), pow2(layer.in_c), ocs):
        for order in itertools.permutations(LOOPS):
            cost = schedule_cost(layer, a, w, (b, t, t, ic, oc), order, cfg)
            if cost is not None and (best is None or cost.cycles < best):
                best = cost.cycles
    assert best is not None
    return best


@pytest.mark.parametrize(
    ("layer", "a", "w", "cfg"),
    [
        (BitFusionLayer.conv(6, 6, 5, 40, 3, stride=1, batch=4), 4, 2, BitFusionConfig()),
        (BitFusionLayer.conv(9, 7, 20, 33, 3, stride=2, pad=1, batch=3), 8, 8, BitFusionConfig()),
        (BitFusionLayer.conv(8, 8, 12, 70, 3, batch=2, im2col=False), 2, 8, BitFusionConfig()),
        (BitFusionLayer.fc(300, 100, batch=8), 8, 4, BitFusionConfig()),
        (
            BitFusionLayer.conv(10, 10, 16, 48, 3, batch=2),
            8,
            8,
            BitFusionConfig(wgt_sram_bytes=2048, act_sram_bytes=1024, out_sram_bytes=1024),
        ),
    ],
)
def test_search_matches_brute_force(
    layer: BitFusionLayer, a: int, w: int, cfg: BitFusionConfig
) -> None:
    cost = layer_cost(layer, a, w, cfg)
    assert cost.cycles == _brute_force(layer, a, w, cfg)
    # the reported schedule reproduces the cycles on its own
    assert schedule_cost(layer, a, w, cost.tile, cost.order, cfg) == cost


def test_scalar_fallback_agrees(monkeypatch: pytest.MonkeyPatch) -> None:
    # Layers whose traffic could overflow int64 take an exhaustive Python-int
    # path; force it on a small layer and compare with the fast search.
    import micoc.cost.bitfusion as bf

    layer = BitFusionLayer.conv(6, 6, 5, 40, 3, batch=4)
    fast = layer_cost(layer, 4, 2)
    monkeypatch.setattr(bf, "_INT64_SAFE", 0)
    bf.clear_cache()
    slow = layer_cost(layer, 4, 2)
    bf.clear_cache()
    assert slow.cycles == fast.cycles


def test_breakdown_is_consistent() -> None:
    cost = layer_cost(BitFusionLayer.conv(32, 32, 64, 128, 3), 4, 4)
    assert cost.cycles == cost.compute_cycles + cost.stall_cycles + cost.fill_drain_cycles
    assert cost.stall_cycles == max(0, cost.dram_cycles - cost.compute_cycles)
    assert sorted(cost.order) == sorted(LOOPS)
    assert cost.precision_factor == 4
    assert cost.dram_bytes == -(-(sum(cost.dram_read_bits) + cost.dram_write_bits) // 8)
    # memoised: same arguments give the very same object
    assert layer_cost(BitFusionLayer.conv(32, 32, 64, 128, 3), 4, 4) is cost


def test_bad_layers() -> None:
    with pytest.raises(InputError):
        layer_cycles(BitFusionLayer(16, 2, 2, 8, 8, kind="fc"), 8, 8)
    with pytest.raises(InputError):
        layer_cycles(BitFusionLayer.conv(3, 3, 8, 8, 5), 8, 8)  # kernel larger than input
    with pytest.raises(InputError):
        layer_cycles(BitFusionLayer.conv(8, 8, 0, 8, 3), 8, 8)
    with pytest.raises(InputError, match="no tiling"):
        # a 200x200 window of 8-bit activations alone overflows the act buffer
        layer_cycles(BitFusionLayer.conv(200, 200, 1, 1, 200, batch=1), 8, 8)
