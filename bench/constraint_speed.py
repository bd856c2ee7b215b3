"""How fast the search can price candidate bit schemes (cost-model constraints).

    python bench/constraint_speed.py [--batch 1000] [--repeat 20] [--write]

Builds a 20-layer network with the IR builder (18 convs in three stages, two
linears; 1x3x32x32 input) and times, per cost target, `predict_batch` on
batches of random schemes [batch, 20, 2] with bits drawn from 1..8:

* cold: the first batch, which fills the per-layer (wbits, abits) table
  (vexii fills it when the model is built; bitfusion runs the exact
  per-layer search once for every pair the batch uses);
* warm: later batches (table lookups + a sum), the search's steady state.

Also times `micoc.analysis.batch_features` (BOPs and CBOPs features). The
goal is >= 10,000 candidates/s for a 20-layer network. With --write the
table replaces the `## Cost-model constraint speed` section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from micoc.analysis import batch_features, layer_table  # noqa: E402
from micoc.cost import bitfusion  # noqa: E402
from micoc.cost.model import make_model  # noqa: E402
from micoc.ir import Graph, GraphBuilder, f32  # noqa: E402

sys.path.insert(0, str(REPO / "bench"))
from record import BENCHMARKS, machine, write_section  # noqa: E402

SECTION = "## Cost-model constraint speed"
GOAL = 10_000


def net20() -> Graph:
    """18 3x3 convs (16/32/64 channels, two stride-2 stages) + global pool + 2 linears."""
    rng = np.random.default_rng(0)
    b = GraphBuilder("net20")
    x = b.input("x", f32(1, 3, 32, 32))
    cin = 3
    for stage, cout in enumerate((16, 32, 64)):
        for i in range(6):
            stride = 2 if (stage > 0 and i == 0) else 1
            w = b.const(f"s{stage}.c{i}.w", rng.standard_normal((cout, cin, 3, 3)).astype(np.float32))
            x = b.op("conv2d", [x, w], {"stride": [stride, stride], "pad": [1, 1, 1, 1], "act": "relu"},
                     layer=f"s{stage}.c{i}")
            cin = cout
    x = b.op("global_avgpool", [x])
    x = b.op("reshape", [x], {"shape": [1, 64]})
    x = b.op("linear", [x, b.const("fc1.w", rng.standard_normal((64, 64)).astype(np.float32))],
             {"act": "relu"}, layer="fc1")
    x = b.op("linear", [x, b.const("fc2.w", rng.standard_normal((10, 64)).astype(np.float32))], layer="fc2")
    b.output(x)
    return b.graph


def rate(fn: Callable[[np.ndarray], object], batches: list[np.ndarray]) -> float:
    """Candidates per second over the batches (best of the per-batch rates is not used: mean)."""
    t0 = time.perf_counter()
    for s in batches:
        fn(s)
    dt = time.perf_counter() - t0
    return sum(len(s) for s in batches) / dt


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=20, help="warm batches timed")
    ap.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    args = ap.parse_args(argv)

    g = net20()
    table = layer_table(g)
    n_layers = len(table)
    rng = np.random.default_rng(0)
    batches = [rng.integers(1, 9, size=(args.batch, n_layers, 2)) for _ in range(args.repeat + 1)]

    rows: list[tuple[str, str, str, str]] = []
    warm = rate(lambda s: batch_features(table, s)["BOPs"].sum(axis=1), batches[1:])
    rows.append(("analysis.batch_features (BOPs+CBOPs)", "-", "-", f"{warm:,.0f}"))

    for target in ("bops", "vexii", "bitfusion"):
        if target == "bitfusion":
            bitfusion.clear_cache()
        t0 = time.perf_counter()
        model = make_model(target, g)
        build = time.perf_counter() - t0
        t0 = time.perf_counter()
        model.predict_batch(batches[0])
        cold = time.perf_counter() - t0
        warm = rate(model.predict_batch, batches[1:])
        label = {"vexii": "vexii/high (cbops+shape proxies)", "bitfusion": "bitfusion (exact model)",
                 "bops": "bops"}[target]
        rows.append((label, f"{1e3 * build:.1f}", f"{1e3 * cold:.1f}", f"{warm:,.0f}"))

    lines = [
        SECTION,
        "",
        f"`python bench/constraint_speed.py` on {machine()} (machine shared with other jobs).",
        f"Network: {n_layers} layers (18 3x3 convs 16/32/64 channels, 2 linears, 1x3x32x32 input), "
        f"batches of {args.batch} random schemes (bits 1..8, all 64 (w, a) pairs occur), "
        f"{args.repeat} warm batches. Goal: >= {GOAL:,} candidates/s.",
        "Every target prices a layer from its shape and bits only, so a model keeps a "
        "cycles[layer, wbits, abits] table; build = model construction (vexii fills the whole "
        "table there), first batch = filling the entries it needs (bitfusion runs the exact "
        "per-layer schedule search once per pair), warm = table gather + sum.",
        "",
        "| cost | build ms | first batch ms | warm candidates/s |",
        "|---|---:|---:|---:|",
        *(f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows),
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if args.write:
        write_section(text)
        print(f"updated {BENCHMARKS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
