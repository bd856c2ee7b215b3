"""`micoc profile run`: profile micoc's own runtime kernels on a target and fit its proxy.

For every layer shape of a grid and every (weight, activation) bit pair in
{1, 2, 4, 8}^2, time one conv2d / linear layer of micoc's C runtime:

* ``host``: the time (ns) of the layer call, built with the host target's
  flags (targets.host.CFLAGS) and read with ``clock_gettime`` around the layer (the
  ``LAYER_BEGIN/END`` hooks of model.c): ``clock="wall"`` (CLOCK_MONOTONIC,
  the default) or ``"cpu"`` (the thread's CPU time, which leaves out the
  time other processes ran on a shared machine). The median of ``repeats``
  rounds, from the fastest of ``sessions`` processes.
* ``rv32``: exact retired RV32IM instructions of the layer under QEMU
  (``-icount``, the rv32 target's per-layer counters); deterministic.

One C program per shape holds the 16 bit pairs as 16 parallel layers on the
same input (x -> relu -> 16 layers -> concat). On the host all the shapes'
programs of a kind are linked into one process (`build_host_multi`) that
runs them in interleaved rounds, each round in a fresh order, so load and
frequency changes hit every row alike (separate processes on a loaded
machine differed by up to 2x in speed). The rows are written as profile
CSVs in the formats of ../shared/profiles (linear ``N,M,K,QA,QW,Time``,
conv2d ``H,W,C,K,KS,S,QA,QW,Time``; padding 0), then every proxy of the
target (`proxies.TARGET_PROXIES`) is fitted with `proxies.fit_proxy` and
saved as a parameter bundle per kind (``<target>_<kind>.json``) with its
provenance: machine, date, command, grid, runtime digest.

The host harness (`build_host_multi`, `time_host_multi`) is also what
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
    "build_host_multi",
    "default_params_dir",
    "layer_graph",
    "measure",
    "profile_run",
    "time_host_multi",
]

PROFILE_TARGETS: tuple[str, ...] = ("host", "rv32")
KINDS: tuple[str, ...] = ("linear", "conv2d")
BITS: tuple[int, ...] = (1, 2, 4, 8)
UNITS = {"host": "ns", "rv32": "instructions"}
CLOCKS: tuple[str, ...] = ("wall", "cpu")
#: Host statistic over the rounds: the median, or the minimum (the least disturbed
#: run: on a loaded machine the median also measures the other processes).
STATS: dict[str, Callable[..., np.ndarray]] = {"median": np.median, "min": np.min}

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
# Host: one timing process for many compiled models

_HOST_COUNT_H = """/* micoc profile: host layer timing hooks (replace the rv32 counters). */
#ifndef MICO_COUNT_H
#define MICO_COUNT_H
#include <stdint.h>
void mico_count_layer_begin(uint32_t layer);
void mico_count_layer_end(uint32_t layer);
#endif
"""

_MULTI_C = """/* micoc profile: N compiled models linked into one process (mico_m<i>_run),
 * timed in interleaved rounds: every round runs each model, in a fresh
 * pseudo-random order, 1 warm-up + REPEATS timed inferences on a fixed input.
 * Models that share one process and one short window share the machine's
 * state (load, frequency, a busy sibling thread) alike.
 * Usage: multi ROUNDS REPEATS wall|cpu (wall = CLOCK_MONOTONIC, cpu =
 * CLOCK_THREAD_CPUTIME_ID: leaves out the time the thread was descheduled).
 * Prints per timed inference "round model total [layer ...]" (ns); the
 * layers (conv/linear, LAYER_BEGIN/END) only when built with MICO_COUNT. */
#define _POSIX_C_SOURCE 199309L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define NMODELS %(n)d
#define IN_SIZE %(in_size)d
#define OUT_SIZE %(out_size)d
#define MAXL 1024
%(decls)s
typedef int (*run_fn)(const float *, float *);
static const run_fn runs[NMODELS] = {%(table)s};
static const int n_layers[NMODELS] = {%(layers)s};
static float in_buf[IN_SIZE];
static float out_buf[OUT_SIZE];
static clockid_t clk = CLOCK_MONOTONIC;
static struct timespec t_begin[MAXL];
static long long t_layer[MAXL];

static long long ns_between(const struct timespec *a, const struct timespec *b)
{
    return (long long)(b->tv_sec - a->tv_sec) * 1000000000LL + (long long)(b->tv_nsec - a->tv_nsec);
}

void mico_count_layer_begin(uint32_t i);
void mico_count_layer_end(uint32_t i);
void mico_count_layer_begin(uint32_t i)
{
    if (i < MAXL) clock_gettime(clk, &t_begin[i]);
}
void mico_count_layer_end(uint32_t i)
{
    struct timespec t;
    clock_gettime(clk, &t);
    if (i < MAXL) t_layer[i] = ns_between(&t_begin[i], &t);
}

int main(int argc, char **argv)
{
    int rounds = argc > 1 ? atoi(argv[1]) : 1, reps = argc > 2 ? atoi(argv[2]) : 1, r, i, k, l;
    unsigned int s = 12345u;
    int order[NMODELS];
    float sink = 0.0f;
    if (argc > 3 && argv[3][0] == 'c') clk = CLOCK_THREAD_CPUTIME_ID;
    for (i = 0; i < IN_SIZE; i++) {
        s = s * 1103515245u + 12345u;
        in_buf[i] = (float)((s >> 8) & 0xFFFF) / 32768.0f - 1.0f;
    }
    for (r = 0; r < rounds; r++) {
        for (i = 0; i < NMODELS; i++) order[i] = i;
        for (i = NMODELS - 1; i > 0; i--) {
            int j, t;
            s = s * 1103515245u + 12345u;
            j = (int)((s >> 8) %% (unsigned)(i + 1));
            t = order[i]; order[i] = order[j]; order[j] = t;
        }
        for (i = 0; i < NMODELS; i++) {
            int m = order[i];
            runs[m](in_buf, out_buf);
            for (k = 0; k < reps; k++) {
                struct timespec a, b;
                clock_gettime(clk, &a);
                runs[m](in_buf, out_buf);
                clock_gettime(clk, &b);
                sink += out_buf[0];
                printf("%%d %%d %%lld", r, m, ns_between(&a, &b));
                for (l = 0; l < n_layers[m]; l++) printf(" %%lld", t_layer[l]);
                printf("\\n");
            }
        }
    }
    return sink != sink; /* keep the outputs live */
}
"""


def build_host_multi(outdirs: Sequence[str | os.PathLike[str]], workdir: str | os.PathLike[str], *,
                     per_layer: bool = False, exe: str = "multi") -> Path:
    """Link several emitted host projects into one timing process (see `time_host_multi`).

    Each project's model.c + weights.c (host target flags, -O2) become one
    relocatable object whose only global symbol is its ``mico_model_run``,
    renamed ``mico_m<i>_run``; all share one runtime object. per_layer: time
    every conv/linear layer too (a clock read around each; leave it off for
    end-to-end timing). Needs cc and binutils (ld, objcopy): ToolchainError
    naming the package otherwise.
    """
    import json
    import shutil

    from micoc.errors import ToolchainError
    from micoc.targets.host import CFLAGS, _check_call, _runtime_object, find_cc

    cc = find_cc()
    tools = {t: shutil.which(t) for t in ("ld", "objcopy")}
    if None in tools.values():
        raise ToolchainError("ld / objcopy not found: install binutils (Debian/Ubuntu: apt-get install binutils)")
    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    objs, layers, in_size, out_size = [], [], 1, 1
    rt_obj = None
    flags = list(CFLAGS)
    for i, d in enumerate(Path(p) for p in outdirs):
        rep = json.loads((d / "report.json").read_text())
        in_size = max(in_size, int(np.prod(rep["input"]["shape"][1:])))
        out_size = max(out_size, int(np.prod(rep["output"]["shape"][1:])))
        layers.append(len(rep.get("layers", [])) if per_layer else 0)
        if rt_obj is None:
            rt_obj = _runtime_object(cc, flags, d)
        defs = ["-DMICO_COUNT"] if per_layer else []
        if per_layer:
            (d / "mico_count.h").write_text(_HOST_COUNT_H)
        for src in ("model.c", "weights.c"):
            _check_call([*shlex.split(cc), *flags, *defs, f"-Wa,-I{d.resolve()}", "-c", "-o", src[:-2] + ".o", src], d)
        obj = work / f"m{i}.o"
        _check_call([str(tools["ld"]), "-r", "-o", str(obj), "model.o", "weights.o"], d)
        _check_call([str(tools["objcopy"]), "--redefine-sym", f"mico_model_run=mico_m{i}_run",
                     "-G", f"mico_m{i}_run", *(("-G", "mico_count_layer_begin", "-G", "mico_count_layer_end")
                                                 if per_layer else ()), str(obj)], work)
        objs.append(str(obj))
    n = len(objs)
    if n == 0:
        raise UsageError("no models to time")
    (work / "multi.c").write_text(_MULTI_C % {
        "n": n, "in_size": in_size, "out_size": out_size,
        "decls": "\n".join(f"int mico_m{i}_run(const float *input, float *output);" for i in range(n)),
        "table": ", ".join(f"mico_m{i}_run" for i in range(n)),
        "layers": ", ".join(str(v) for v in layers),
    })
    _check_call([*shlex.split(cc), *flags, "-o", exe, "multi.c", *objs, str(rt_obj)], work)
    return work / exe


def time_host_multi(exe: str | os.PathLike[str], n: int, rounds: int, repeats: int = 1,
                    clock: str = "wall") -> list[np.ndarray]:
    """Run a `build_host_multi` process. Per model, ns [rounds, repeats, 1 + layers]:
    column 0 the whole inference, then each conv/linear layer (when built per_layer)."""
    if clock not in CLOCKS:
        raise UsageError(f"unknown clock {clock!r}; expected one of {', '.join(CLOCKS)}")
    proc = subprocess.run([str(Path(exe).resolve()), str(int(rounds)), str(int(repeats)), clock],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise MicocError(f"{exe} failed with exit code {proc.returncode}: {proc.stderr.strip()}")
    rows: list[list[list[int]]] = [[] for _ in range(n)]
    for line in proc.stdout.splitlines():
        v = [int(x) for x in line.split()]
        rows[v[1]].append(v[2:])
    out = []
    for m, r in enumerate(rows):
        if len(r) != rounds * repeats:
            raise MicocError(f"{exe} printed {len(r)} timings of model {m}, expected {rounds * repeats}")
        out.append(np.array(r, dtype=np.int64).reshape(rounds, repeats, -1))
    return out


# ---------------------------------------------------------------------------
# Measuring a grid


def _emit_shape(target: str, kind: str, shape: tuple[int, ...], workdir: Path,
                pairs: Sequence[tuple[int, int]]) -> tuple[Path, list[tuple[int, int]], np.ndarray]:
    """Emit one shape's program; returns (its directory, the bit pair of each layer in order, calib)."""
    from micoc.targets import get_target

    graph, scheme, calib = layer_graph(kind, shape, pairs)
    _quantize(graph, scheme, calib)
    out = workdir / ("_".join(str(v) for v in (kind, *shape)))
    rep = get_target(target).emit(graph, out)
    names = [lay["name"] for lay in sorted(rep["layers"], key=lambda d: d["index"])]
    return out, [scheme[n] for n in names], calib


def measure(target: str, kind: str, shapes: Sequence[tuple[int, ...]], workdir: str | os.PathLike[str], *,
            repeats: int = 31, pairs: Sequence[tuple[int, int]] | None = None, clock: str = "wall",
            sessions: int = 3, stat: str = "median",
            log: Callable[[str], None] | None = None) -> list[dict[tuple[int, int], int]]:
    """Per shape, {(wbits, abits): cost} of one layer: host the median (or `stat` min) ns
    over `repeats` interleaved rounds (all shapes in one process), from the fastest of
    `sessions` such processes; rv32 the exact instructions.

    Sessions: on a shared machine a whole process can run up to 2x slower (a
    busy sibling hardware thread), and not uniformly so across kernels; the
    least contended session gives the most consistent rows."""
    if target not in PROFILE_TARGETS:
        raise UsageError(f"cannot profile target {target!r}; expected one of {', '.join(PROFILE_TARGETS)}")
    pairs = list(pairs) if pairs is not None else _pairs()
    work = Path(workdir)
    say = log or (lambda _m: None)
    results: list[dict[tuple[int, int], int]] = []
    if target == "host":
        built = [_emit_shape(target, kind, s, work, pairs) for s in shapes]
        exe = build_host_multi([d for d, _, _ in built], work / f"multi_{kind}", per_layer=True)
        best: list[np.ndarray] | None = None
        totals = []
        for _ in range(sessions):
            times = time_host_multi(exe, len(built), repeats, 1, clock)
            meds = [STATS[stat](t[:, 0, 1:], axis=0) for t in times]
            totals.append(float(sum(m.sum() for m in meds)))
            if best is None or totals[-1] <= min(totals):
                best = meds
        say(f"host {kind}: {len(shapes)} shapes, {sessions} session(s) of {repeats} rounds ({stat}), totals "
            + ", ".join(f"{t / 1e6:.2f}" for t in totals) + " ms; kept the fastest")
        assert best is not None
        for (_, order, _), med in zip(built, best, strict=True):
            results.append({p: max(1, int(round(float(v)))) for p, v in zip(order, med, strict=True)})
        return results
    from micoc.targets import get_target

    tgt = get_target(target)
    for i, s in enumerate(shapes):
        ts = time.perf_counter()
        out, order, calib = _emit_shape(target, kind, s, work, pairs)
        tgt.build(out)
        tgt.run(out, [calib[:1]])
        counts = [lc.instructions for lc in tgt.last_run.layers]  # type: ignore[attr-defined]
        if len(counts) != len(order):
            raise MicocError(f"counted {len(counts)} layers, the program has {len(order)}")
        results.append({p: max(1, int(c)) for p, c in zip(order, counts, strict=True)})
        say(f"rv32 {kind} {i + 1}/{len(shapes)} {'x'.join(map(str, s))}: {len(order)} bit pairs "
            f"in {time.perf_counter() - ts:.1f} s")
    return results


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
    from micoc.targets.host import cpu_model

    cpu = cpu_model()
    load = f", load average {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""
    return f"{cpu} ({platform.machine()}), {os.cpu_count()} CPUs, {platform.system()} {platform.release()}{load}"


def _host_cflags() -> list[str]:
    from micoc.targets.host import CFLAGS

    return list(CFLAGS)


def runtime_digest() -> str:
    """sha256 of the C runtime sources the kernels were profiled with (mico_rt.c + mico_rt.h)."""
    import hashlib

    from micoc.targets.c.emitter import runtime_dir

    h = hashlib.sha256()
    for name in ("mico_rt.h", "mico_rt.c"):
        h.update((runtime_dir() / name).read_bytes())
    return h.hexdigest()


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
    clock: str = "wall",
    sessions: int = 3,
    stat: str = "median",
    params_out: str | os.PathLike[str] | None = None,
    command: str | None = None,
    log: Callable[[str], None] | None = None,
) -> ProfileRun:
    """Profile `kinds` over `grid` on `target`, write ``<target>_<kind>.csv`` into `outdir`,
    fit the target's proxies and write ``<target>_<kind>.json`` bundles into `params_out`
    (default ``outdir/params``)."""
    if target not in PROFILE_TARGETS:
        raise UsageError(f"cannot profile target {target!r}; expected one of {', '.join(PROFILE_TARGETS)}")
    if grid not in GRIDS:
        raise UsageError(f"unknown grid {grid!r}; expected one of {', '.join(GRIDS)}")
    if repeats < 1:
        raise UsageError(f"--repeats must be >= 1, got {repeats}")
    if clock not in CLOCKS:
        raise UsageError(f"unknown clock {clock!r}; expected one of {', '.join(CLOCKS)}")
    if sessions < 1:
        raise UsageError(f"--sessions must be >= 1, got {sessions}")
    if stat not in STATS:
        raise UsageError(f"unknown statistic {stat!r}; expected one of {', '.join(STATS)}")
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
    digest = runtime_digest()  # the runtime every program of this run is built from
    import tempfile

    for kind in kinds:
        shapes = GRIDS[grid][kind]
        rows: list[tuple[int, ...]] = []
        with tempfile.TemporaryDirectory(prefix="micoc-profile-") as tmp:
            per_shape = measure(target, kind, shapes, tmp, repeats=repeats, clock=clock, sessions=sessions,
                                stat=stat, log=say)
        for shape, vals in zip(shapes, per_shape, strict=True):
            rows.extend(_row(kind, shape, w, a, t) for (w, a), t in vals.items())
        if runtime_digest() != digest:
            raise MicocError("the C runtime sources changed during the profile run (the rows would mix two "
                             "runtimes); run it again")
        csv_path = out / f"{target}_{kind}.csv"
        _write_csv(csv_path, kind, rows)
        res.csvs[kind], res.rows[kind] = csv_path, len(rows)
        provenance = {
            "machine": machine_line(),
            "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "command": command or f"micoc profile run --target {target} --kind {kind} --grid {grid} "
                                  f"--repeats {repeats}",
            "grid": {"name": grid, "shapes": [list(s) for s in shapes], "bits": list(BITS),
                     "columns": ["K", "M"] if kind == "linear" else ["H", "W", "C", "K", "KS", "S"]},
            "measure": (f"{stat} {'wall' if clock == 'wall' else 'thread CPU'} time (ns) of the layer call "
                        f"over the rounds (all shapes in one process, interleaved), the fastest of {sessions} "
                        "such processes"
                        if target == "host" else
                        "exact retired RV32IM instructions of the layer call (QEMU -icount)"),
            "cflags": " ".join(_host_cflags()) if target == "host" else None,
            "repeats": repeats if target == "host" else 1,
            "runtime_sha256": digest,
        }
        bundle = pdir / f"{target}_{kind}.json"
        fitted = fit_bundle(target, kind, csv_path, bundle, provenance)
        res.fit_metrics[kind] = {fp.name: dict(fp.provenance["fit_metrics"]) for fp in fitted}
        res.params[kind] = bundle
    res.seconds = time.perf_counter() - t0
    return res


def fit_bundle(target: str, kind: str, csv_path: str | os.PathLike[str], bundle: str | os.PathLike[str],
               provenance: dict[str, Any]) -> list[Any]:
    """Fit the target's proxies (`proxies.TARGET_PROXIES`, first = default) to one profile CSV and
    save them as a bundle carrying `provenance` (how the CSV was measured). Returns the FittedProxy list."""
    from micoc.cost.proxies import TARGET_PROXIES, fit_proxy, save_bundle

    names = TARGET_PROXIES[target]
    fitted = [fit_proxy(kind, n, [csv_path]) for n in names]
    save_bundle(bundle, fitted, default=names[0], target=target, config=None, unit=UNITS[target],
                provenance=provenance)
    return fitted


def refit(bundle: str | os.PathLike[str], csv_path: str | os.PathLike[str],
          out: str | os.PathLike[str] | None = None) -> list[Any]:
    """Refit a bundle written by `profile_run` from its CSV (after a proxy change), keeping how
    the CSV was measured; writes `out` (default: over `bundle`)."""
    import json

    doc = json.loads(Path(bundle).read_text(encoding="utf-8"))
    return fit_bundle(doc["target"], doc["kind"], csv_path, out or bundle, dict(doc.get("provenance", {})))


def check_kinds(kind: str) -> tuple[str, ...]:
    """``all`` -> every kind, else the one kind."""
    if kind == "all":
        return KINDS
    if kind not in KINDS:
        raise InputError(f"unknown kind {kind!r}; expected linear, conv2d or all")
    return (kind,)
