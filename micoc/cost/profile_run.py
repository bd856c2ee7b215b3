"""`micoc profile run`: profile micoc's own runtime kernels on a target and fit its proxy.

For every layer shape of a grid and every (weight, activation) bit pair in
{1, 2, 4, 8}^2, time one conv2d / linear layer of micoc's C runtime:

* ``host``: wall time (ns) of the layer call, built with the host target's
  flags and timed with ``clock_gettime(CLOCK_MONOTONIC)`` around the layer
  (the ``LAYER_BEGIN/END`` hooks of model.c); the median of ``repeats`` runs
  after a warm-up run.
* ``rv32``: exact retired RV32IM instructions of the layer under QEMU
  (``-icount``, the rv32 target's per-layer counters); deterministic.

One C program per shape holds the 16 bit pairs as 16 parallel layers on the
same input (x -> relu -> 16 layers -> concat), so a grid is one build per
shape, and on the host every repeat times all 16 pairs back to back (load
drift hits them alike). The rows are written as profile CSVs in the formats
of ../shared/profiles (linear ``N,M,K,QA,QW,Time``, conv2d
``H,W,C,K,KS,S,QA,QW,Time``; padding 0), then every proxy of the target
(`proxies.TARGET_PROXIES`) is fitted with `proxies.fit_proxy` and saved as a
parameter bundle per kind (``<target>_<kind>.json``) with its provenance:
machine, date, command, grid.

The host harness (`build_host_timer`, `time_host`) is also what
bench/host_rank.py uses to time whole networks.
"""

from __future__ import annotations

import csv
import datetime as _dt
import os
import platform
import shlex
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from micoc.errors import InputError, MicocError, UsageError
from micoc.ir.graph import Graph

__all__ = [
    "BITS",
    "GRIDS",
    "PROFILE_TARGETS",
    "ProfileRun",
    "build_host_timer",
    "default_params_dir",
    "layer_graph",
    "measure",
    "profile_run",
    "time_host",
]

PROFILE_TARGETS: tuple[str, ...] = ("host", "rv32")
KINDS: tuple[str, ...] = ("linear", "conv2d")
BITS: tuple[int, ...] = (1, 2, 4, 8)
UNITS = {"host": "ns", "rv32": "instructions"}

# Shapes: linear (K inputs, M outputs), N = 1; conv2d (H, W, C, K, KS, S), padding 0.
# The small grid spans the kernels' regimes (patch vs bit-serial, short and
# long reductions, 1x1 and 3x3, stride 2) in a few minutes; the full grid adds
# sizes around those of the example networks.
GRIDS: dict[str, dict[str, list[tuple[int, ...]]]] = {
    "tiny": {  # tests
        "linear": [(32, 8), (128, 16)],
        "conv2d": [(6, 6, 8, 8, 3, 1), (6, 6, 32, 8, 1, 1)],
    },
    "small": {
        "linear": [(64, 10), (128, 64), (256, 32), (512, 64), (1024, 16), (32, 128)],
        "conv2d": [
            (10, 10, 16, 16, 3, 1), (16, 16, 8, 16, 3, 1), (8, 8, 32, 32, 3, 1),
            (9, 9, 64, 32, 3, 2), (8, 8, 64, 64, 1, 1), (16, 16, 16, 32, 1, 2),
            (12, 12, 3, 16, 3, 1), (6, 6, 128, 32, 3, 1),
        ],
    },
    "full": {
        "linear": [
            (16, 10), (64, 10), (84, 10), (120, 84), (128, 64), (256, 32), (256, 256),
            (400, 120), (512, 64), (512, 512), (1024, 16), (32, 128), (2048, 10),
        ],
        "conv2d": [
            (10, 10, 16, 16, 3, 1), (16, 16, 8, 16, 3, 1), (8, 8, 32, 32, 3, 1), (9, 9, 64, 32, 3, 2),
            (8, 8, 64, 64, 1, 1), (16, 16, 16, 32, 1, 2), (12, 12, 3, 16, 3, 1), (6, 6, 128, 32, 3, 1),
            (30, 30, 1, 16, 3, 1), (30, 30, 16, 16, 3, 1), (29, 29, 16, 32, 3, 2), (16, 16, 32, 32, 3, 1),
            (15, 15, 32, 64, 3, 2), (9, 9, 64, 64, 3, 1), (28, 28, 16, 32, 1, 2), (14, 14, 32, 64, 1, 2),
            (32, 32, 3, 8, 5, 1), (14, 14, 6, 16, 5, 1), (5, 5, 256, 64, 3, 1), (8, 8, 128, 128, 1, 1),
        ],
    },
}

_HEADERS = {"linear": ("N", "M", "K", "QA", "QW", "Time"), "conv2d": ("H", "W", "C", "K", "KS", "S", "QA", "QW", "Time")}


# ---------------------------------------------------------------------------
# One program per shape: every bit pair as a parallel layer


def _pairs(bits: Sequence[int] = BITS) -> list[tuple[int, int]]:
    return [(w, a) for w in bits for a in bits]


def layer_graph(kind: str, shape: tuple[int, ...], pairs: Sequence[tuple[int, int]],
                seed: int = 0) -> tuple[Graph, dict[str, tuple[int, int]], np.ndarray]:
    """A float graph x -> relu -> one layer of `shape` per bit pair -> concat.

    Returns (graph, scheme {layer: (w, a)}, calibration samples). The relu
    makes the layers' inputs unsigned, as after any hidden layer of a network.
    """
    from micoc.ir.builder import GraphBuilder
    from micoc.ir.types import TensorType

    rng = np.random.default_rng(seed)
    if kind == "linear":
        k, m = shape
        in_shape: tuple[int, ...] = (1, k)
        w_shape: tuple[int, ...] = (m, k)
        attrs: dict[str, Any] = {"act": "relu"}
        fan_in = k
    elif kind == "conv2d":
        h, w, c, k, ks, s = shape
        in_shape, w_shape = (1, c, h, w), (k, c, ks, ks)
        attrs = {"act": "relu", "stride": (s, s)}
        fan_in = c * ks * ks
    else:
        raise UsageError(f"unknown profile kind {kind!r}; expected linear or conv2d")
    b = GraphBuilder(f"profile_{kind}")
    x = b.input("x", TensorType(in_shape, "f32"))
    xr = b.op("relu", [x])
    outs, scheme = [], {}
    for i, (wb, ab) in enumerate(pairs):
        name = f"l{i}_w{wb}a{ab}"
        wt = b.const(f"{name}.weight", (rng.standard_normal(w_shape) / np.sqrt(fan_in)).astype(np.float32))
        bias = b.const(f"{name}.bias", (0.1 * rng.standard_normal(w_shape[0])).astype(np.float32))
        outs.append(b.op(kind, [xr, wt, bias], attrs, layer=name))
        scheme[name] = (wb, ab)
    y = b.op("concat", outs, {"axis": 1}) if len(outs) > 1 else outs[0]
    b.output(y)
    calib = rng.standard_normal((4, *in_shape[1:])).astype(np.float32)
    return b.graph, scheme, calib


def _quantize(graph: Graph, scheme: dict[str, tuple[int, int]], calib: np.ndarray) -> Graph:
    from micoc.passes import PassContext, PassManager

    ctx = PassContext(data={"calibration": {graph.inputs[0].name: calib}, "scheme": scheme})
    PassManager.from_string("assign-bits,calibrate,quantize", ctx).run(graph)
    return graph


# ---------------------------------------------------------------------------
# Host: a timing harness around the emitted model

_HOST_COUNT_H = """/* micoc profile: host layer timing hooks (replaces the rv32 counters). */
#ifndef MICO_COUNT_H
#define MICO_COUNT_H
#include <stdint.h>
void mico_count_layer_begin(uint32_t layer);
void mico_count_layer_end(uint32_t layer);
#endif
"""

_HOST_TIMER_C = """/* micoc profile: run the model R times on a fixed input; per run print the
 * wall time of the whole inference and of every conv/linear layer (ns). */
#define _POSIX_C_SOURCE 199309L
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include "model.h"
#ifdef MICO_COUNT
#include "mico_count.h"
#endif

#define MAXL 1024
static struct timespec t_begin[MAXL];
static long long t_layer[MAXL];
static int n_layers;

static long long ns_between(const struct timespec *a, const struct timespec *b)
{
    return (long long)(b->tv_sec - a->tv_sec) * 1000000000LL + (long long)(b->tv_nsec - a->tv_nsec);
}

#ifdef MICO_COUNT
void mico_count_layer_begin(uint32_t i)
{
    if (i < MAXL) clock_gettime(CLOCK_MONOTONIC, &t_begin[i]);
}
void mico_count_layer_end(uint32_t i)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    if (i < MAXL) {
        t_layer[i] = ns_between(&t_begin[i], &t);
        if ((int)i + 1 > n_layers) n_layers = (int)i + 1;
    }
}
#endif

static float in_buf[MICO_MODEL_INPUT_SIZE];
static float out_buf[MICO_MODEL_OUTPUT_SIZE];

int main(int argc, char **argv)
{
    int reps = argc > 1 ? atoi(argv[1]) : 1, warm = argc > 2 ? atoi(argv[2]) : 1, r, i;
    unsigned int s = 12345u;
    float sink = 0.0f;
    for (i = 0; i < MICO_MODEL_INPUT_SIZE; i++) {
        s = s * 1103515245u + 12345u;
        in_buf[i] = (float)((s >> 8) & 0xFFFF) / 32768.0f - 1.0f;
    }
    for (r = 0; r < warm; r++) mico_model_run(in_buf, out_buf);
    for (r = 0; r < reps; r++) {
        struct timespec a, b;
        clock_gettime(CLOCK_MONOTONIC, &a);
        mico_model_run(in_buf, out_buf);
        clock_gettime(CLOCK_MONOTONIC, &b);
        sink += out_buf[0];
        printf("%lld", ns_between(&a, &b));
        for (i = 0; i < n_layers; i++) printf(" %lld", t_layer[i]);
        printf("\\n");
    }
    return sink != sink; /* keep the outputs live */
}
"""


def build_host_timer(outdir: str | os.PathLike[str], per_layer: bool = True, exe: str = "timer") -> Path:
    """Compile an emitted host project with the timing harness (instead of main.c).

    per_layer: time every conv/linear layer too (a clock read around each;
    off for end-to-end timing without that overhead). Same flags as the
    host target (-O2 ...); a missing compiler is a ToolchainError.
    """
    from micoc.targets.host import CFLAGS, _check_call, _runtime_object, find_cc

    out = Path(outdir)
    cc = find_cc()
    (out / "mico_count.h").write_text(_HOST_COUNT_H)
    (out / "mico_timer.c").write_text(_HOST_TIMER_C)
    flags = list(CFLAGS)
    rt_obj = _runtime_object(cc, flags, out)
    defs = ["-DMICO_COUNT"] if per_layer else []
    cmd = [*shlex.split(cc), *flags, *defs, "-o", exe, "model.c", "weights.c", "mico_timer.c", str(rt_obj)]
    _check_call(cmd, out)
    return out / exe


def time_host(exe: str | os.PathLike[str], repeats: int, warmup: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Run a timer built by `build_host_timer`: (total ns [repeats], per-layer ns [repeats, L])."""
    proc = subprocess.run([str(Path(exe).resolve()), str(int(repeats)), str(int(warmup))],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise MicocError(f"{exe} failed with exit code {proc.returncode}: {proc.stderr.strip()}")
    rows = np.array([[int(v) for v in line.split()] for line in proc.stdout.splitlines() if line.strip()],
                    dtype=np.int64)
    if rows.shape[0] != repeats:
        raise MicocError(f"{exe} printed {rows.shape[0]} runs, expected {repeats}")
    return rows[:, 0], rows[:, 1:]


# ---------------------------------------------------------------------------
# Measuring one shape


def measure(target: str, kind: str, shape: tuple[int, ...], workdir: str | os.PathLike[str], *,
            repeats: int = 31, pairs: Sequence[tuple[int, int]] | None = None) -> dict[tuple[int, int], int]:
    """Time (host: median ns) or count (rv32: instructions) one layer shape at every bit pair."""
    if target not in PROFILE_TARGETS:
        raise UsageError(f"cannot profile target {target!r}; expected one of {', '.join(PROFILE_TARGETS)}")
    pairs = list(pairs) if pairs is not None else _pairs()
    graph, scheme, calib = layer_graph(kind, shape, pairs)
    _quantize(graph, scheme, calib)
    out = Path(workdir) / ("_".join(str(v) for v in (kind, *shape)))
    from micoc.targets import get_target

    tgt = get_target(target)
    rep = tgt.emit(graph, out)
    names = [lay["name"] for lay in sorted(rep["layers"], key=lambda d: d["index"])]
    if target == "host":
        exe = build_host_timer(out)
        _, layers = time_host(exe, repeats)
        values = np.median(layers, axis=0)
    else:
        tgt.build(out)
        tgt.run(out, [calib[:1]])
        run = tgt.last_run  # type: ignore[attr-defined]
        by_name = {lc.name: lc.instructions for lc in run.layers}
        values = np.array([by_name[n] for n in names], dtype=np.float64)
    if len(values) != len(names):
        raise MicocError(f"measured {len(values)} layers, the program has {len(names)}")
    res = {scheme[n]: max(1, int(round(float(v)))) for n, v in zip(names, values, strict=True)}
    return res


# ---------------------------------------------------------------------------
# The whole run


def default_params_dir() -> Path:
    """Where `make_model` looks for host (machine-specific) parameters when none are given:
    $MICOC_PARAMS_DIR, else $XDG_CONFIG_HOME/micoc/params (~/.config/micoc/params)."""
    env = os.environ.get("MICOC_PARAMS_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "micoc" / "params"


def machine_line() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = f", load average {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""
    return f"{cpu} ({platform.machine()}), {os.cpu_count()} CPUs, {platform.system()} {platform.release()}{load}"


@dataclass
class ProfileRun:
    target: str
    grid: str
    csvs: dict[str, Path] = field(default_factory=dict)  # kind -> CSV
    params: dict[str, Path] = field(default_factory=dict)  # kind -> bundle
    rows: dict[str, int] = field(default_factory=dict)
    fit_metrics: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)  # kind -> proxy -> metrics
    seconds: float = 0.0


def _write_csv(path: Path, kind: str, rows: list[tuple[int, ...]]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", newline="") as fh:
        wr = csv.writer(fh)
        wr.writerow(_HEADERS[kind])
        wr.writerows(rows)
    os.replace(tmp, path)


def _row(kind: str, shape: tuple[int, ...], w: int, a: int, t: int) -> tuple[int, ...]:
    if kind == "linear":
        k, m = shape
        return (1, m, k, a, w, t)
    h, wd, c, k, ks, s = shape
    return (h, wd, c, k, ks, s, a, w, t)


def profile_run(
    target: str,
    outdir: str | os.PathLike[str],
    *,
    kinds: Sequence[str] = KINDS,
    grid: str = "small",
    repeats: int = 31,
    params_out: str | os.PathLike[str] | None = None,
    command: str | None = None,
    log: Callable[[str], None] | None = None,
) -> ProfileRun:
    """Profile `kinds` over `grid` on `target`, write ``<target>_<kind>.csv`` into `outdir`,
    fit the target's proxies and write ``<target>_<kind>.json`` bundles into `params_out`
    (default ``outdir/params``)."""
    from micoc.cost.proxies import TARGET_PROXIES, fit_proxy, save_bundle

    if target not in PROFILE_TARGETS:
        raise UsageError(f"cannot profile target {target!r}; expected one of {', '.join(PROFILE_TARGETS)}")
    if grid not in GRIDS:
        raise UsageError(f"unknown grid {grid!r}; expected one of {', '.join(GRIDS)}")
    if repeats < 1:
        raise UsageError(f"--repeats must be >= 1, got {repeats}")
    for k in kinds:
        if k not in KINDS:
            raise UsageError(f"cannot profile kind {k!r}; expected one of {', '.join(KINDS)}")
    if target == "rv32":
        from micoc.targets.rv32.toolchain import find_gcc, find_qemu

        find_gcc(), find_qemu()  # ToolchainError naming the package, before any work
    else:
        from micoc.targets.host import find_cc

        find_cc()
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    pdir = Path(params_out) if params_out is not None else out / "params"
    pdir.mkdir(parents=True, exist_ok=True)
    say = log or (lambda _m: None)
    res = ProfileRun(target, grid)
    t0 = time.perf_counter()
    import tempfile

    for kind in kinds:
        shapes = GRIDS[grid][kind]
        rows: list[tuple[int, ...]] = []
        with tempfile.TemporaryDirectory(prefix="micoc-profile-") as tmp:
            for i, shape in enumerate(shapes):
                ts = time.perf_counter()
                vals = measure(target, kind, shape, tmp, repeats=repeats)
                rows.extend(_row(kind, shape, w, a, t) for (w, a), t in vals.items())
                say(f"{target} {kind} {i + 1}/{len(shapes)} {'x'.join(map(str, shape))}: "
                    f"{len(vals)} bit pairs in {time.perf_counter() - ts:.1f} s")
        csv_path = out / f"{target}_{kind}.csv"
        _write_csv(csv_path, kind, rows)
        res.csvs[kind], res.rows[kind] = csv_path, len(rows)
        names = TARGET_PROXIES[target]
        fitted = [fit_proxy(kind, n, [csv_path]) for n in names]
        res.fit_metrics[kind] = {fp.name: dict(fp.provenance["fit_metrics"]) for fp in fitted}
        bundle = pdir / f"{target}_{kind}.json"
        save_bundle(
            bundle, fitted, default=names[0], target=target, config=None, unit=UNITS[target],
            provenance={
                "machine": machine_line(),
                "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "command": command or f"micoc profile run --target {target} --kind {kind} --grid {grid} "
                                      f"--repeats {repeats}",
                "grid": {"name": grid, "shapes": [list(s) for s in shapes], "bits": list(BITS),
                         "columns": ["K", "M"] if kind == "linear" else ["H", "W", "C", "K", "KS", "S"]},
                "measure": ("median wall time (ns) of the layer call over the repeats, host cc -O2"
                            if target == "host" else
                            "exact retired RV32IM instructions of the layer call (QEMU -icount)"),
                "repeats": repeats if target == "host" else 1,
            },
        )
        res.params[kind] = bundle
    res.seconds = time.perf_counter() - t0
    return res


def check_kinds(kind: str) -> tuple[str, ...]:
    """``all`` -> every kind, else the one kind."""
    if kind == "all":
        return KINDS
    if kind not in KINDS:
        raise InputError(f"unknown kind {kind!r}; expected linear, conv2d or all")
    return (kind,)
