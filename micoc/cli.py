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


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
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
@pass_settings
def run(settings: Settings, model: Path, input_path: Path, output: Path) -> None:
    """Run MODEL (.onnx or .mir) with the reference interpreter."""
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


@cli.command("list-passes")
def list_passes() -> None:
    """List the registered passes and their options."""
    import dataclasses

    from micoc.passes import available_passes

    for name, cls in sorted(available_passes().items()):
        opts = ", ".join(f"{f.name}={f.default!r}" for f in dataclasses.fields(cls))
        click.echo(f"{name:<16} {cls.summary}" + (f"  [{opts}]" if opts else ""))


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
