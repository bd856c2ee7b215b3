"""The `micoc` command line.

Exit codes: 0 ok, 1 internal error, 2 bad input or usage. Tracebacks only
with --debug.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from micoc.errors import MicocError


class Settings:
    def __init__(self, verbose: int, debug: bool) -> None:
        self.verbose = verbose
        self.debug = debug

    def log(self, msg: str, level: int = 1) -> None:
        if self.verbose >= level:
            click.echo(msg, err=True)


pass_settings = click.make_pass_decorator(Settings)


def _bump_verbose(ctx: click.Context, _param: click.Parameter, value: int) -> None:
    if value:
        ctx.find_object(Settings).verbose += value  # type: ignore[union-attr]


def _set_debug(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value:
        ctx.find_object(Settings).debug = True  # type: ignore[union-attr]


class MicocCommand(click.Command):
    """Every subcommand also accepts -v and --debug after its name (`micoc opt x.onnx -v`)."""

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.params.append(click.Option(["-v", "--verbose"], count=True, expose_value=False,
                                        callback=_bump_verbose, help="Say more."))
        self.params.append(click.Option(["--debug"], is_flag=True, expose_value=False,
                                        callback=_set_debug, help="Show Python tracebacks for errors."))


class MicocGroup(click.Group):
    command_class = MicocCommand
    group_class = type


@click.group(cls=MicocGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="Say more (pipeline, timings).")
@click.option("--debug", is_flag=True, help="Show Python tracebacks for errors.")
@click.version_option(package_name="micoc")
@click.pass_context
def cli(ctx: click.Context, verbose: int, debug: bool) -> None:
    """micoc: compile float networks to mixed-precision integer code for edge hardware."""
    ctx.obj = Settings(verbose, debug)


def pipeline_options(fn):  # type: ignore[no-untyped-def]
    """Options shared by every command that runs passes."""
    fn = click.option("--time-passes", is_flag=True, help="Print a per-pass timing report.")(fn)
    fn = click.option("--no-verify", is_flag=True, help="Do not run the IR verifier after each pass.")(fn)
    fn = click.option("--dump-ir-after-all", is_flag=True, help="Print the IR after every pass.")(fn)
    fn = click.option("--dump-ir-after", metavar="PASS[,PASS..]", default=None,
                      help="Print the IR after the named passes.")(fn)
    return fn


def make_context(dump_ir_after: str | None, dump_ir_after_all: bool, no_verify: bool, time_passes: bool):  # type: ignore[no-untyped-def]
    from micoc.passes import PassContext, available_passes

    dump = None
    if dump_ir_after:
        dump = frozenset(p.strip() for p in dump_ir_after.split(",") if p.strip())
        unknown = sorted(dump - set(available_passes()))
        if unknown:
            raise click.UsageError(f"--dump-ir-after: unknown pass(es) {', '.join(unknown)}")
    return PassContext(verify=not no_verify, dump_after=dump, dump_all=dump_ir_after_all, time_passes=time_passes)


@cli.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.option("-p", "--pipeline", default="", help='Pass pipeline, e.g. "canonicalize,shape-infer".')
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None,
              help="Output .mir (weights go to a sidecar .npz). Default: print to stdout.")
@pipeline_options
@pass_settings
def opt(settings: Settings, model: Path, pipeline: str, output: Path | None, **popts: object) -> None:
    """Run a pass pipeline on MODEL (.onnx or .mir) and write the IR."""
    from micoc.frontends.loader import load_model
    from micoc.ir.printer import print_graph, save_mir
    from micoc.passes import PassManager

    ctx = make_context(**popts)  # type: ignore[arg-type]
    pm = PassManager.from_string(pipeline, ctx) if pipeline.strip() else PassManager([], ctx)
    t0 = time.perf_counter()
    graph = load_model(model)
    settings.log(f"loaded {model} in {1e3 * (time.perf_counter() - t0):.1f} ms")
    settings.log(f"pipeline: {pm.pipeline_string() or '(empty)'}")
    pm.run(graph)
    if output is None or str(output) == "-":
        click.echo(print_graph(graph), nl=False)
    else:
        save_mir(graph, output)
        settings.log(f"wrote {output}")


@cli.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.option("-i", "--input", "input_path", required=True, type=click.Path(path_type=Path),
              help=".npy (one input) or .npz keyed by input name; dim 0 holds the samples.")
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path),
              help=".npy (one output) or .npz (output_<i>); float32.")
@click.option("--report", type=click.Path(path_type=Path), default=None, help="Write a JSON run report here.")
@pass_settings
def run(settings: Settings, model: Path, input_path: Path, output: Path, report: Path | None) -> None:
    """Run MODEL (.onnx or .mir) with the reference interpreter, or a compiled build directory."""
    if model.is_dir():
        return run_build(settings, model, input_path, output, report)
    from micoc.datafiles import load_inputs, save_outputs
    from micoc.frontends.loader import load_model
    from micoc.interp import run as interpret

    graph = load_model(model)
    inputs = load_inputs(input_path, graph)
    t0 = time.perf_counter()
    outputs = interpret(graph, inputs)
    n = next(iter(inputs.values())).shape[0] if inputs else 1
    settings.log(f"ran {n} sample(s) in {1e3 * (time.perf_counter() - t0):.1f} ms")
    save_outputs(output, graph, outputs)
    settings.log(f"wrote {output}")
    if report is not None:
        write_run_report(report, {"target": "interpreter", "model": str(model), "samples": int(n),
                                  "seconds": time.perf_counter() - t0, "outputs": [list(o.shape) for o in outputs]})


@cli.command("list-passes")
def list_passes() -> None:
    """List the registered passes and their options."""
    import dataclasses

    from micoc.passes import available_passes

    for name, cls in sorted(available_passes().items()):
        opts = ", ".join(f"{f.name}={f.default!r}" for f in dataclasses.fields(cls))
        click.echo(f"{name:<16} {cls.summary}" + (f"  [{opts}]" if opts else ""))


def scheme_passes(bits: str | None, scheme: Path | None):  # type: ignore[no-untyped-def]
    """The assign-bits pass for --bits / --scheme (exactly one of them)."""
    from micoc.passes.assign_bits import AssignBits

    if (bits is None) == (scheme is None):
        raise click.UsageError("give exactly one of --bits (e.g. w8a8) or --scheme FILE.json")
    return AssignBits(scheme=scheme, bits=bits or "")


def quantize_pipeline(bits: str | None, scheme: Path | None, calib: Path, method: str, samples: int):  # type: ignore[no-untyped-def]
    """canonicalize, assign-bits, calibrate, quantize: the float-to-integer pipeline."""
    from micoc.passes.calibrate import Calibrate
    from micoc.passes.canonicalize import Canonicalize
    from micoc.passes.quantize import Quantize

    return [Canonicalize(), scheme_passes(bits, scheme), Calibrate(data=calib, method=method, samples=samples),
            Quantize()]


@cli.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--calib", required=True, type=click.Path(path_type=Path),
              help="Calibration data (.npz keyed by input name, or .npy); dim 0 holds the samples.")
@click.option("--bits", default=None, metavar="wWaA", help="Uniform bits for every layer, e.g. w8a8.")
@click.option("--scheme", type=click.Path(path_type=Path), default=None,
              help='Per-layer bits: JSON {"layer": {"w": bits, "a": bits}} (see `micoc inspect`).')
@click.option("--calib-method", type=click.Choice(["minmax", "percentile", "mse"]), default="minmax",
              show_default=True)
@click.option("--calib-samples", type=int, default=0, help="Use only the first N calibration samples.")
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path), help="Output .mir (+ .npz weights).")
@pipeline_options
@pass_settings
def quantize(settings: Settings, model: Path, calib: Path, bits: str | None, scheme: Path | None,
             calib_method: str, calib_samples: int, output: Path, **popts: object) -> None:
    """Quantize MODEL to integer-only IR at the given bits."""
    from micoc.frontends.loader import load_model
    from micoc.ir.printer import save_mir
    from micoc.passes import PassManager

    pm = PassManager(quantize_pipeline(bits, scheme, calib, calib_method, calib_samples), make_context(**popts))  # type: ignore[arg-type]
    settings.log(f"pipeline: {pm.pipeline_string()}")
    graph = load_model(model)
    pm.run(graph)
    save_mir(graph, output)
    settings.log(f"wrote {output}")


@cli.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--bits", default=None, metavar="wWaA", help="Show costs at uniform bits (default: the model's, else w8a8).")
@click.option("--scheme", type=click.Path(path_type=Path), default=None, help="Show costs at a scheme file's bits.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def inspect(model: Path, bits: str | None, scheme: Path | None, as_json: bool) -> None:
    """Per-layer table (stable name, op, shape, MACs, params, bits, weight bytes) that scheme files refer to."""
    import json

    from micoc.analysis import layer_table
    from micoc.frontends.loader import load_model
    from micoc.passes import PassManager

    graph = load_model(model)
    PassManager.from_string("canonicalize").run(graph)
    table = layer_table(graph)
    if bits is not None or scheme is not None:
        pm = PassManager([scheme_passes(bits, scheme)])
        pm.run(graph)
    assigned = {op.layer: (op.attrs["wbits"] or 8, op.attrs["abits"] or 8) for op in graph.layers()}
    rows = []
    for info in table.layers:
        cost = info.cost(*assigned[info.name])
        rows.append({"name": info.name, "op": info.op, "shape": list(info.out_shape), "macs": info.macs,
                     "params": info.params, "wbits": cost.wbits, "abits": cost.abits,
                     "weight_bytes": cost.weight_bytes})
    if as_json:
        click.echo(json.dumps({"model": str(model), "layers": rows}, indent=2))
        return
    header = ["layer", "op", "shape", "MACs", "params", "wbits", "abits", "weight bytes"]
    cells = [[r["name"], r["op"], "x".join(map(str, r["shape"])), f"{r['macs']:,}", f"{r['params']:,}",
              str(r["wbits"]), str(r["abits"]), f"{r['weight_bytes']:,}"] for r in rows]
    cells.append(["total", "", "", f"{sum(r['macs'] for r in rows):,}", f"{sum(r['params'] for r in rows):,}",
                  "", "", f"{sum(r['weight_bytes'] for r in rows):,}"])
    echo_table(header, cells, right={3, 4, 5, 6, 7})


def echo_table(header: list[str], rows: list[list[str]], right: set[int]) -> None:
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(header)]

    def fmt(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()

    click.echo(fmt(header))
    click.echo("  ".join("-" * w for w in widths))
    for r in rows:
        click.echo(fmt(r))


# ---------------------------------------------------------------------------
# Cost estimation and latency profiles (estimate, profile fit, profile check)


def _cost_bits_and_scheme(bits: str | None, scheme_path: Path | None) -> tuple[tuple[int, int], dict[str, tuple[int, int]]]:
    from micoc.analysis import DEFAULT_BITS
    from micoc.scheme import load_scheme, parse_bits

    default = parse_bits(bits) if bits else DEFAULT_BITS
    scheme = load_scheme(scheme_path) if scheme_path is not None else {}
    return default, scheme


def _cost_echo_table(header: list[str], rows: list[list[str]], right: set[int]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]

    def fmt(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()

    click.echo(fmt(header))
    click.echo("  ".join("-" * w for w in widths))
    for r in rows:
        click.echo(fmt(r))


@cli.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--target", required=True, type=click.Choice(["vexii", "bitfusion", "bops", "host", "rv32"]),
              help="Cost model: vexii (fitted proxies), bitfusion (exact model), bops (baseline), "
                   "host / rv32 (micoc's runtime kernels, proxies from `micoc profile run`).")
@click.option("--config", default=None, help="vexii CPU configuration: small, high (default) or cacheless.")
@click.option("--bits", default=None, metavar="wWaA", help="Bits of every layer not in --scheme, e.g. w4a8 (default w8a8).")
@click.option("--scheme", "scheme_path", type=click.Path(path_type=Path), default=None,
              help='JSON scheme {layer: {"w": bits, "a": bits}}.')
@click.option("--batch", type=int, default=None, help="bitfusion: batch size (default: the model's, 1).")
@click.option("--params", "params_path", type=click.Path(path_type=Path), default=None,
              help="host/rv32: directory of bundles from `micoc profile run` (default: shipped for rv32, "
                   "$MICOC_PARAMS_DIR or ~/.config/micoc/params for host).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
def estimate(model: Path, target: str, config: str | None, bits: str | None, scheme_path: Path | None,
             batch: int | None, params_path: Path | None, as_json: bool) -> None:
    """Per-layer cost table of MODEL (.onnx or .mir) at a bit scheme on a target."""
    import json

    from micoc.cost.model import make_model
    from micoc.errors import InputError
    from micoc.frontends.loader import load_model

    if batch is not None and target != "bitfusion":
        raise click.UsageError("--batch applies to --target bitfusion only")
    if params_path is not None and target not in ("host", "rv32"):
        raise click.UsageError("--params applies to --target host or rv32 only")
    default, scheme = _cost_bits_and_scheme(bits, scheme_path)
    graph = load_model(model)
    cost = make_model(target, graph, config, batch=batch, params=params_path)
    try:
        est = cost.estimate(scheme, default)
    except InputError as e:
        if scheme_path is not None and e.where is None:
            raise InputError(e.message, where=str(scheme_path)) from None
        raise
    from micoc.analysis import layer_costs, totals

    counts = totals(layer_costs(graph, scheme, default))  # params and bytes at the scheme's bits
    if as_json:
        click.echo(json.dumps({"model": str(model), **est.to_dict(), "analysis": counts}, indent=2))
        return
    unit = est.unit
    header = ["layer", "op", "shape", "MACs", "BOPs", "wbits", "abits", "cycles" if unit == "cycles" else f"cost ({unit})"]
    rows = [
        [r.name, r.op, r.shape, f"{r.macs:,}", f"{r.bops:,}",
         "" if r.wbits is None else str(r.wbits), "" if r.abits is None else str(r.abits),
         f"{round(r.cycles):,}"]
        for r in est.rows
    ]
    rows.append(["total", "", "", f"{est.total_macs:,}", f"{est.total_bops:,}", "", "", f"{round(est.total_cycles):,}"])
    where = est.target + (f"/{est.config}" if est.config else "")
    click.echo(f"{graph.name}: {len(cost.layer_names)} layers, target {where}, {unit}")
    _cost_echo_table(header, rows, right={3, 4, 5, 6, 7})
    click.echo(f"params {counts['params']:,} ({counts['weight_bytes']:,} bytes with int32 bias), "
               f"input activations {counts['act_bytes']:,} bytes, at the scheme's bits")


@cli.group()
def profile() -> None:
    """Latency profiles: fit proxies to measured CSVs, check a cost model against them."""


@profile.command("fit")
@click.option("--target", required=True, type=click.Choice(["vexii", "host", "rv32"]),
              help="Target whose proxies to fit.")
@click.option("--config", default=None, help="vexii: configuration recorded in the bundle (default high).")
@click.option("--kind", required=True, type=click.Choice(["matmul", "linear", "conv2d", "pool"]),
              help="Kind of kernel the CSVs time.")
@click.option("--csv", "csv_paths", required=True, multiple=True, type=click.Path(path_type=Path),
              help="Profile CSV (repeat for several files of one kind).")
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None,
              help="Write the parameter bundle here (default: print it).")
def profile_fit(target: str, config: str | None, kind: str, csv_paths: tuple[Path, ...],
                output: Path | None) -> None:
    """Fit the target's latency proxies (vexii: cbops+shape, bops, cbops; host/rv32: micoc-rt too) to CSVs."""
    import tempfile

    from micoc.cost.profiles import read_profiles
    from micoc.cost.proxies import TARGET_PROXIES, fit_proxy, save_bundle

    if target == "vexii":
        config = config or "high"
    elif config is not None:
        raise click.UsageError(f"target {target} has no configurations")
    prof = read_profiles(list(csv_paths), kind)
    fitted = [fit_proxy(kind, name, list(csv_paths), profile=prof) for name in TARGET_PROXIES[target]]
    for fp in fitted:
        m = fp.provenance["fit_metrics"]
        click.echo(f"{fp.name:<12} {len(prof)} rows  in-sample R^2 {m['r2']:.4f}  MAPE {m['mape']:.2f}%  "
                   f"Spearman {m['spearman']:.4f}", err=True)
    if output is not None:
        save_bundle(output, fitted, default=fitted[0].name, target=target, config=config)
        click.echo(f"wrote {output}", err=True)
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "params.json"
        save_bundle(path, fitted, default=fitted[0].name, target=target, config=config)
        click.echo(path.read_text(encoding="utf-8"), nl=False)


@profile.command("run")
@click.option("--target", required=True, type=click.Choice(["host", "rv32"]),
              help="host: wall time (ns, median of --repeats); rv32: exact instructions under QEMU.")
@click.option("--kind", default="all", show_default=True, type=click.Choice(["linear", "conv2d", "all"]),
              help="Which layers to profile.")
@click.option("--grid", default="small", show_default=True, type=click.Choice(["tiny", "small", "full"]),
              help="Layer shapes (x 16 bit pairs in {1,2,4,8}^2).")
@click.option("--repeats", type=int, default=31, show_default=True, help="host: runs per layer (the median is kept).")
@click.option("--clock", default="wall", show_default=True, type=click.Choice(["wall", "cpu"]),
              help="host: wall time, or the thread's CPU time (steadier on a loaded machine).")
@click.option("--sessions", type=int, default=3, show_default=True,
              help="host: timing processes; the fastest (least contended) one is kept.")
@click.option("--stat", default="median", show_default=True, type=click.Choice(["median", "min"]),
              help="host: statistic over the rounds (min: the least disturbed run, for a loaded machine).")
@click.option("--params-out", type=click.Path(path_type=Path), default=None,
              help="Directory for the fitted bundles <target>_<kind>.json (default: OUTPUT/params).")
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path), help="Directory for the CSVs.")
def profile_run(target: str, kind: str, grid: str, repeats: int, clock: str, sessions: int, stat: str,
                params_out: Path | None, output: Path) -> None:
    """Profile micoc's own runtime kernels on TARGET, write profile CSVs and fit the target's proxies."""
    import shlex
    import sys

    from micoc.cost.profile_run import check_kinds, default_params_dir
    from micoc.cost.profile_run import profile_run as run

    cmd = "micoc " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    res = run(target, output, kinds=check_kinds(kind), grid=grid, repeats=repeats, clock=clock, sessions=sessions,
              stat=stat, params_out=params_out, command=cmd, log=lambda m: click.echo(m, err=True))
    for k in res.csvs:
        m = res.fit_metrics[k]
        best = next(iter(m))
        click.echo(f"{k}: {res.rows[k]} rows -> {res.csvs[k]}; {best} in-sample R^2 {m[best]['r2']:.4f} "
                   f"MAPE {m[best]['mape']:.2f}% Spearman {m[best]['spearman']:.4f} -> {res.params[k]}")
    click.echo(f"{target} profile in {res.seconds:.0f} s")
    pdir = next(iter(res.params.values())).parent
    if target == "host":
        click.echo(f"use: micoc estimate MODEL --target host --params {pdir} "
                   f"(or copy the bundles to {default_params_dir()})")
    else:
        click.echo(f"use: micoc estimate MODEL --target rv32 --params {pdir} (default: the shipped rv32 bundles)")


@profile.command("check")
@click.option("--target", required=True, type=click.Choice(["vexii", "bitfusion", "host", "rv32"]),
              help="Cost model to check.")
@click.option("--config", default=None, help="vexii CPU configuration (default high).")
@click.option("--kind", required=True, type=click.Choice(["matmul", "linear", "conv2d", "pool"]),
              help="Kind of kernel the CSVs time (bitfusion: matmul or conv2d).")
@click.option("--csv", "csv_paths", required=True, multiple=True, type=click.Path(path_type=Path),
              help="Profile CSV (repeat for several files of one kind).")
@click.option("--proxy", default=None,
              help="Which proxy (bops, cbops, cbops+shape, micoc-rt; default cbops+shape, host/rv32 micoc-rt).")
@click.option("--params", "params_path", type=click.Path(path_type=Path), default=None,
              help="A bundle from `profile fit` (host/rv32: or a `profile run` params directory) "
                   "instead of the shipped or user parameters.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def profile_check(target: str, config: str | None, kind: str, csv_paths: tuple[Path, ...], proxy: str | None,
                  params_path: Path | None, as_json: bool) -> None:
    """Compare a cost model's predictions with measured profile rows."""
    import json

    from micoc.cost import metrics
    from micoc.cost.model import check_profile

    pred, prof, label = check_profile(target, kind, list(csv_paths), config=config, proxy=proxy,
                                      params=params_path)
    res = {
        "target": target,
        "config": config if target != "vexii" else (config or "high"),
        "kind": kind,
        "model": label,
        "files": [str(p) for p in csv_paths],
        "rows": len(prof),
        "r2": metrics.r2(pred, prof.time),
        "mape": metrics.mape(pred, prof.time) / 100.0,  # a fraction in JSON
        "spearman": metrics.spearman(pred, prof.time),
        "exact_fraction": metrics.exact_fraction(pred, prof.time),
    }
    if as_json:
        click.echo(json.dumps(res, indent=2))
        return
    click.echo(f"{label} on {', '.join(p.name for p in csv_paths)}: {res['rows']} rows")
    click.echo(f"  R^2       {res['r2']:.6f}")
    click.echo(f"  MAPE      {100 * res['mape']:.3f} %")
    click.echo(f"  Spearman  {res['spearman']:.6f}")
    click.echo(f"  exact     {res['exact_fraction']:.4f}")


def search_options(fn):  # type: ignore[no-untyped-def]
    """The options `micoc search` and `micoc compile --search` share."""
    opts = [
        click.option("--constraint", "constraint", multiple=True, metavar="METRIC=VALUE",
                     help="Budget as a fraction of all-8-bit (bops=0.3, latency=0.5) or absolute: weights=20KB, "
                          "arena=12KB, latency=1.5e6cyc (vexii, bitfusion) | 2minstr (rv32) | 2ms (host) "
                          "(repeatable; first is primary)."),
        click.option("--evals", type=int, default=32, show_default=True, help="Evaluation budget."),
        click.option("--searcher", default="mico", show_default=True, help="mico, random, uniform, greedy (or a plugin)."),
        click.option("--eval", "evaluator", type=click.Choice(["ptq", "qat", "auto"]), default="auto",
                     show_default=True, help="ptq; qat (brief fine-tune); auto = qat if any layer < 4 bits."),
        click.option("--qat-epochs", type=float, default=1.0, show_default=True),
        click.option("--exact", is_flag=True, help="Score with the integer interpreter instead of the torch executor."),
        click.option("--metric", default=None, metavar="MODULE:FUNCTION",
                     help="Score with metric(outputs, labels) -> float, higher is better (default: top-1)."),
        click.option("--qtypes", default=None, help="Bit widths to choose from, e.g. 2,4,8 or 2..8 (default per target)."),
        click.option("--tie-wa", is_flag=True, help="Activation bits = weight bits in every layer."),
        click.option("--pin-first-last", type=int, default=None, metavar="BITS", help="Fix the first and last layers."),
        click.option("--config", default=None,
                     help="vexii CPU configuration for the latency constraint: small, high (default), cacheless; "
                          "CFG:bare prices GEMMs with the bare-kernel proxy."),
        click.option("--test-data", type=click.Path(path_type=Path), default=None,
                     help="Labelled data to report the winner on."),
        click.option("--train-data", type=click.Path(path_type=Path), default=None, help="Labelled data for QAT."),
        click.option("--split", default=None, metavar="TR,VA,TE",
                     help="Cut --data into train/validation/test, e.g. 0.6,0.2,0.2."),
        click.option("--seed", type=int, default=0, show_default=True),
        click.option("--batch", type=int, default=1, show_default=True, help="Candidates evaluated per searcher step."),
        click.option("--workers", type=int, default=1, show_default=True, help="Local evaluation processes."),
        click.option("--scheduler", default=None, metavar="tcp://HOST:PORT",
                     help="Evaluate on a dask.distributed cluster."),
        click.option("--resume", is_flag=True, help="Continue the search journal in the output directory."),
    ]
    for opt in reversed(opts):
        fn = opt(fn)
    return fn


@cli.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--target", required=True, type=click.Choice(["vexii", "bitfusion", "host", "rv32"]),
              help="Target whose bit widths and cost model the search uses.")
@click.option("--data", required=True, type=click.Path(path_type=Path),
              help="Labelled data (.npz: samples + 'y', or a Python dataset as module:attr); "
                   "scores every candidate (validation).")
@search_options
@click.option("--calib", type=click.Path(path_type=Path), default=None, help="Calibration samples (default: from train/--data).")
@click.option("--calib-method", type=click.Choice(["minmax", "percentile", "mse"]), default="minmax", show_default=True)
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path), help="Output directory.")
@pass_settings
def search(settings: Settings, model: Path, **opts: object) -> None:
    """Search per-layer bit widths of MODEL for the best accuracy under a budget."""
    from micoc.search.command import SearchOptions, search_command

    search_command(SearchOptions(model=model, **opts), log=lambda m: click.echo(m, err=True))  # type: ignore[arg-type]


@cli.command("compile")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--target", "target_name", required=True, help="Code generation target (see list-targets).")
@click.option("--calib", type=click.Path(path_type=Path), default=None,
              help="Calibration data (.npz keyed by input name, or .npy); dim 0 holds the samples. "
                   "Required unless --search (then default: from the training data / --data).")
@click.option("--bits", default=None, metavar="wWaA", help="Uniform bits for every layer, e.g. w4a4.")
@click.option("--scheme", type=click.Path(path_type=Path), default=None, help="Per-layer bits (JSON scheme file).")
@click.option("--calib-method", type=click.Choice(["minmax", "percentile", "mse"]), default="minmax",
              show_default=True)
@click.option("--calib-samples", type=int, default=0, help="Use only the first N calibration samples.")
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path), help="Output directory.")
@click.option("--run", "run_after", is_flag=True, help="Build and run the result on --input.")
@click.option("--input", "input_path", type=click.Path(path_type=Path), default=None, help="Input for --run.")
@click.option("--run-output", type=click.Path(path_type=Path), default=None, help="Where --run writes outputs.")
@click.option("--search", "search_", is_flag=True,
              help="Search the bits first (the `micoc search` options below), then compile the winner "
                   "(with its QAT weights if QAT scored it); search outputs go to OUTPUT/search/.")
@click.option("--data", type=click.Path(path_type=Path), default=None,
              help="--search: labelled validation data (.npz: samples + 'y', or module:attr).")
@search_options
@pipeline_options
@pass_settings
def compile_(settings: Settings, model: Path, target_name: str, calib: Path | None, bits: str | None,
             scheme: Path | None, calib_method: str, calib_samples: int, output: Path, run_after: bool,
             input_path: Path | None, run_output: Path | None, search_: bool, data: Path | None,
             **opts: object) -> None:
    """Compile MODEL for a target into an output directory (C project, IR, report.json)."""
    from micoc.datafiles import load_inputs, save_outputs
    from micoc.frontends.loader import load_model
    from micoc.passes import PassManager
    from micoc.targets import get_target

    popts = {k: opts.pop(k) for k in ("dump_ir_after", "dump_ir_after_all", "no_verify", "time_passes")}
    target = get_target(target_name)
    if run_after and input_path is None:
        raise click.UsageError("--run needs --input")
    t0 = time.perf_counter()
    if search_:
        from micoc.search.command import SearchOptions, compile_search_command

        if bits is not None or scheme is not None or data is None or not opts["constraint"]:
            raise click.UsageError("--search needs --data and --constraint, and takes no --bits/--scheme")
        o = SearchOptions(model=model, target=target_name, data=data, output=output, calib=calib,
                          calib_method=calib_method, calib_samples=calib_samples or 256, **opts)  # type: ignore[arg-type]
        report = compile_search_command(o, target_name, make_context(**popts),  # type: ignore[arg-type]
                                        log=lambda m: click.echo(m, err=True))
        graph = load_model(output / "model.mir")
    else:
        if data is not None or opts["constraint"]:
            raise click.UsageError("--data and --constraint belong to --search")
        if calib is None:
            raise click.UsageError("--calib is required (unless --search)")
        passes = quantize_pipeline(bits, scheme, calib, calib_method, calib_samples) + target.default_pipeline()
        pm = PassManager(passes, make_context(**popts))  # type: ignore[arg-type]
        settings.log(f"pipeline: {pm.pipeline_string()}")
        graph = load_model(model)
        pm.run(graph)
        target.check_support(graph)
        report = target.emit(graph, output)
        t1 = time.perf_counter()
        target.build(output)
        settings.log(f"emitted {output} in {t1 - t0:.2f} s, built in {time.perf_counter() - t1:.2f} s; "
                     f"weights {report['weight_bytes']} B, arena {report['arena_bytes']} B")
    if run_after:
        assert input_path is not None
        inputs = load_inputs(input_path, graph)
        outputs = target.run(output, list(inputs.values()))
        if run_output is not None:
            save_outputs(run_output, graph, outputs)
            settings.log(f"wrote {run_output}")
        else:
            for i, row in enumerate(outputs[0].reshape(outputs[0].shape[0], -1)):
                click.echo(f"sample {i}: argmax {int(row.argmax())}")


@cli.command("list-targets")
def list_targets() -> None:
    """List the registered code generation targets."""
    from micoc.targets import available_targets

    for name, t in sorted(available_targets().items()):
        click.echo(f"{name:<10} {t.description}")


def run_build(settings: Settings, build: Path, input_path: Path, output: Path, report: Path | None) -> None:
    """`micoc run DIR`: run a compiled build with its target."""
    from micoc.datafiles import load_inputs, save_outputs
    from micoc.frontends.loader import load_model
    from micoc.targets import get_target
    from micoc.targets.host import read_report

    info = read_report(build)
    target = get_target(info.get("target", "host"))
    graph = load_model(build / "model.mir")
    inputs = load_inputs(input_path, graph)
    t0 = time.perf_counter()
    outputs = target.run(build, list(inputs.values()))
    dt = time.perf_counter() - t0
    save_outputs(output, graph, outputs)
    n = outputs[0].shape[0]
    settings.log(f"ran {n} sample(s) on {target.name} in {1e3 * dt:.1f} ms; wrote {output}")
    if report is not None:
        doc = {"target": target.name, "build": str(build), "samples": int(n), "seconds": dt,
               "outputs": [list(o.shape) for o in outputs]}
        counted = getattr(target, "last_run", None)  # targets that count instructions (rv32, vexii)
        if counted is not None and counted.regions:
            first = counted.regions[0]  # the first sample's inference
            doc["instructions"] = first.instructions
            doc["layers"] = [{"name": lc.name, "instructions": lc.instructions} for lc in first.layers]
            doc["instructions_per_sample"] = [reg.instructions for reg in counted.regions]
        write_run_report(report, doc)


def write_run_report(path: Path, doc: dict) -> None:
    import json

    from micoc.datafiles import atomic_write

    atomic_write(path, lambda f: f.write((json.dumps(doc, indent=2) + "\n").encode()))


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        cli.main(args=argv, prog_name="micoc", standalone_mode=False)
    except MicocError as e:
        if debug:
            raise
        click.echo(f"micoc: error: {e}", err=True)
        return 2
    except click.exceptions.Exit as e:
        return e.exit_code
    except click.ClickException as e:
        e.show()
        return 2
    except click.exceptions.Abort:
        click.echo("micoc: aborted", err=True)
        return 130
    except Exception as e:  # an internal error: a bug in micoc
        if debug:
            raise
        click.echo(f"micoc: internal error: {type(e).__name__}: {e} (run with --debug for a traceback)", err=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
