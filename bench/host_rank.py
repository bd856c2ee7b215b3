"""Host and rv32 proxies vs measured end-to-end latency of random mixed schemes.

1. `micoc profile run --target host` on this machine (grid small by
   default) fits the host proxy (and, unless --rv32-params is given, the
   rv32 profile is taken from the shipped parameters).
2. ResNet-8 (examples.models, fx frontend, random weights) at 20 random
   mixed schemes, (wbits, abits) per layer drawn from {1,2,4,8}^2; each is
   compiled for the host (timing harness, no per-layer clocks) and for rv32.
3. Host: end-to-end time of one inference on the same input. All 20
   builds are linked into one process (profile_run.build_host_multi) that
   runs --rounds rounds, each round every scheme (fresh random order) for 1
   warm-up + --repeats timed inferences; the score is the median over the
   rounds of the per-round median (and the minimum: on a loaded machine
   the median also measures the other processes), measured with the wall clock and with
   the thread's CPU clock (which leaves out the time other processes ran on
   this shared machine). --sessions such processes per clock: a whole
   process can run up to 2x slower (a busy sibling hardware thread), not
   uniformly across kernels, so the fastest session is reported (the host
   profile keeps its fastest session the same way).
   rv32: exact retired instructions of one inference under QEMU.
4. Spearman(predicted, measured) of the host proxy, the rv32 proxy and BOPs.

    python bench/host_rank.py            # print
    python bench/host_rank.py --write    # ... and record it in BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from record import machine, write_section  # noqa: E402

SECTION = "## Host and rv32 latency proxies rank mixed schemes (ResNet-8)"
BITS = (1, 2, 4, 8)


def network(name: str):  # type: ignore[no-untyped-def]
    import torch

    from examples.models import MODELS, build
    from micoc.frontends.fx import import_module
    from micoc.passes import PassManager

    shape = MODELS[name][1]
    g = import_module(build(name, seed=0), torch.randn(shape, generator=torch.Generator().manual_seed(0)))
    PassManager.from_string("canonicalize").run(g)
    calib = np.random.default_rng(0).standard_normal((8, *shape[1:])).astype(np.float32)
    return g, calib


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--net", default="resnet8")
    ap.add_argument("--grid", default="small", choices=["tiny", "small", "full"])
    ap.add_argument("--profile-repeats", type=int, default=31)
    ap.add_argument("--clock", default="cpu", choices=["wall", "cpu"],
                    help="clock of the host profile (end-to-end latency is measured with both)")
    ap.add_argument("--stat", default="min", choices=["median", "min"],
                    help="statistic of the host profile (end-to-end latency is reported with both)")
    ap.add_argument("--host-params", type=Path, default=None, help="skip profiling: use these host bundles")
    ap.add_argument("--rv32-params", type=Path, default=None, help="rv32 bundles (default: shipped)")
    ap.add_argument("--rv32-grid", default=None, choices=["tiny", "small", "full"],
                    help="profile rv32 afresh on this grid (the runtime as it is now) instead")
    ap.add_argument("--schemes", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=21)
    ap.add_argument("--sessions", type=int, default=3, help="timing processes per clock (the fastest is reported)")
    ap.add_argument("--repeats", type=int, default=3, help="timed inferences per scheme and round (median kept)")
    ap.add_argument("--no-rv32", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--write", action="store_true", help="record the result in BENCHMARKS.md")
    args = ap.parse_args(argv)

    from micoc.analysis import layer_table
    from micoc.cost import metrics
    from micoc.cost.model import make_model
    from micoc.cost.profile_run import (
        build_host_multi,
        profile_run,
        runtime_digest,
        time_host_multi,
    )
    from micoc.passes import PassContext, PassManager
    from micoc.targets import get_target
    from micoc.targets import rv32 as rv32_pkg
    from micoc.targets.host import CFLAGS

    load0 = os.getloadavg()[0]
    tmp = Path(tempfile.mkdtemp(prefix="micoc-host-rank-"))
    prof_s = 0.0
    if args.host_params is None:
        t0 = time.perf_counter()
        res = profile_run("host", tmp / "profile", grid=args.grid, repeats=args.profile_repeats,
                          clock=args.clock, sessions=args.sessions, stat=args.stat, command=f"python bench/host_rank.py --grid {args.grid}",
                          log=lambda m: print(m, flush=True))
        prof_s = time.perf_counter() - t0
        host_params = tmp / "profile" / "params"
        grid_rows = sum(res.rows.values())
    else:
        host_params, grid_rows = args.host_params, 0

    rv32_params, rv32_label = args.rv32_params, (str(args.rv32_params) if args.rv32_params else
                                                 "shipped (micoc/cost/params/rv32_*.json)")
    if args.rv32_grid is not None and rv32_pkg.available():
        t0 = time.perf_counter()
        profile_run("rv32", tmp / "rv32", grid=args.rv32_grid, log=lambda m: print(m, flush=True))
        rv32_params = tmp / "rv32" / "params"
        rv32_label = f"profiled here on the `{args.rv32_grid}` grid in {time.perf_counter() - t0:.0f} s"

    g0, calib = network(args.net)
    names = layer_table(g0).names
    rng = np.random.default_rng(args.seed)
    schemes = [{n: (int(rng.choice(BITS)), int(rng.choice(BITS))) for n in names} for _ in range(args.schemes)]
    host_model = make_model("host", g0, params=host_params)
    rv32_model = make_model("rv32", g0, params=rv32_params)
    bops_model = make_model("bops", g0)
    pred_host = np.array([host_model.predict(s) for s in schemes])
    pred_rv32 = np.array([rv32_model.predict(s) for s in schemes])
    bops = np.array([bops_model.predict(s) for s in schemes])

    host = get_target("host")
    rv32 = get_target("rv32")
    do_rv32 = not args.no_rv32 and rv32_pkg.available()
    dirs, instr = [], []
    t0 = time.perf_counter()
    for i, s in enumerate(schemes):
        g = g0.clone()
        ctx = PassContext(data={"calibration": {g.inputs[0].name: calib}, "scheme": s})
        PassManager.from_string("assign-bits,calibrate,quantize", ctx).run(g)
        out = tmp / f"s{i}"
        host.emit(g, out)
        dirs.append(out)
        if do_rv32:
            rout = tmp / f"r{i}"
            rv32.emit(g, rout)
            rv32.build(rout)
            rv32.run(rout, [calib[:1]])
            instr.append(rv32.last_run.regions[0].instructions)  # type: ignore[attr-defined]
        print(f"scheme {i}: built{' + rv32 counted' if do_rv32 else ''}", flush=True)
    exe = build_host_multi(dirs, tmp / "multi")
    build_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    # sessions x clocks, alternating. Per session, clock and statistic, one value per scheme:
    # median = the median over the rounds of the per-round median, min = the fastest run.
    # For each (clock, statistic) the fastest session (smallest sum) is reported.
    stats = {"median": lambda t: np.median(np.median(t[:, :, 0], axis=1)), "min": lambda t: np.min(t[:, :, 0])}
    sess: dict[tuple[str, str], list[np.ndarray]] = {}
    halves: dict[tuple[str, str], list[float]] = {}
    half = args.rounds // 2
    for _ in range(args.sessions):
        for c in ("wall", "cpu"):
            t = time_host_multi(exe, len(schemes), args.rounds, args.repeats, clock=c)
            for st, fn in stats.items():
                sess.setdefault((c, st), []).append(np.array([fn(ti) for ti in t]))
                halves.setdefault((c, st), []).append(metrics.spearman(
                    np.array([fn(ti[:half]) for ti in t]), np.array([fn(ti[half:]) for ti in t])))
    time_s = time.perf_counter() - t0
    best = {k: int(np.argmin([v.sum() for v in vs])) for k, vs in sess.items()}
    med = {k: sess[k][best[k]] for k in sess}
    measured = med[(args.clock, args.stat)]
    load1 = os.getloadavg()[0]

    lines = []
    for c, what in (("cpu", "thread CPU time"), ("wall", "wall time")):
        for st in ("min", "median"):
            k = (c, st)
            per = [metrics.spearman(pred_host, v) for v in sess[k]]
            lines.append(
                f"host proxy vs measured {what}, {st} over the rounds: Spearman "
                f"**{metrics.spearman(pred_host, med[k]):.3f}** in the fastest session "
                f"(MAPE {metrics.mape(pred_host, med[k]):.1f} %; every session: " + ", ".join(f"{r:.3f}" for r in per)
                + "; session totals " + ", ".join(f"{v.sum() / 1e6:.0f}" for v in sess[k])
                + f" ms); BOPs: {metrics.spearman(bops, med[k]):.3f}; split-half stability in that session "
                f"{halves[k][best[k]]:.3f}")
    if do_rv32:
        ins = np.array(instr, dtype=np.float64)
        rho_rv32 = metrics.spearman(pred_rv32, ins)
        rho_bops_rv32 = metrics.spearman(bops, ins)
        lines += [
            f"rv32 proxy (micoc-rt) vs exact instructions: Spearman {rho_rv32:.3f}, "
            f"MAPE {metrics.mape(pred_rv32, ins):.1f} %",
            f"BOPs vs exact instructions: Spearman {rho_bops_rv32:.3f}",
        ]
    for ln in lines:
        print(ln)

    rows = []
    order = np.argsort(measured)
    for i in order:
        cells = [f"s{i}", f"{measured[i] / 1e6:.3f}", f"{pred_host[i] / 1e6:.3f}"]
        if do_rv32:
            cells += [f"{instr[i] / 1e6:.2f}", f"{pred_rv32[i] / 1e6:.2f}"]
        cells.append(f"{bops[i] / 1e6:.1f}")
        rows.append("| " + " | ".join(cells) + " |")
    head = f"| scheme | host ms ({args.clock}, {args.stat}, measured) | host ms (proxy) |" + (
        " rv32 M instr (exact) | rv32 M instr (proxy) |" if do_rv32 else "") + " MBOPs |"
    sep = "|" + "---|" * (head.count("|") - 1)
    prof_line = (f"Host profile: grid `{args.grid}` ({grid_rows} rows = shapes x 16 bit pairs; "
                 f"per layer the {args.stat} over {args.profile_repeats} interleaved rounds, fastest of "
                 f"{args.sessions} processes, {args.clock} clock) in {prof_s:.0f} s."
                 if args.host_params is None else f"Host parameters: {args.host_params}.")
    section = "\n".join([
        SECTION,
        "",
        f"`python bench/host_rank.py{' --grid ' + args.grid if args.grid != 'small' else ''}` on {machine()} "
        f"(load average {load0:.1f} at the start, {load1:.1f} at the end: other jobs shared the machine).",
        "",
        prof_line + f" rv32 parameters: {rv32_label}; runtime sha256 {runtime_digest()[:12]}.",
        f"{args.net}: {len(names)} conv/linear layers, {args.schemes} random schemes with (wbits, abits) per "
        f"layer from {{1,2,4,8}}^2 (seed {args.seed}); each compiled for the host (`cc {' '.join(CFLAGS)}`) "
        "and rv32.",
        f"Host latency: one inference on a fixed input; all builds linked into one process, "
        f"{args.rounds} rounds, each running every scheme (fresh random order) 1 + {args.repeats} times; "
        f"per scheme the median over the rounds of the per-round median, or the minimum; {args.sessions} such "
        f"processes per clock, the fastest (least contended) reported "
        f"(build {build_s:.0f} s, timing {time_s:.0f} s), with the wall clock and with the thread's CPU "
        f"clock. Split-half stability: Spearman between the first and second half of the rounds.",
        "",
        *[f"- {ln}" for ln in lines],
        "",
        head,
        sep,
        *rows,
    ])
    if args.write:
        write_section(section)
    print(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
