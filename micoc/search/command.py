"""`micoc search`: the work behind the click command in micoc/cli.py (kept here so
the shared cli.py only declares options)."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from micoc.errors import InputError, UsageError

__all__ = ["SearchOptions", "compile_search_command", "load_eval_data", "search_command"]


@dataclass(frozen=True)
class SearchOptions:
    model: Path
    target: str
    data: Path
    constraint: tuple[str, ...]
    output: Path
    evals: int = 32
    searcher: str = "mico"
    evaluator: str = "auto"
    seed: int = 0
    resume: bool = False
    workers: int = 1
    scheduler: str | None = None
    batch: int = 1
    qtypes: str | None = None
    tie_wa: bool = False
    pin_first_last: int | None = None
    config: str | None = None
    test_data: Path | None = None
    train_data: Path | None = None
    calib: Path | None = None
    split: str | None = None
    calib_samples: int = 256
    calib_method: str = "minmax"
    qat_epochs: float = 1.0
    exact: bool = False
    metric: str | None = None  # module:function; default top-1 accuracy
    progress: bool = True


def _xy(path: Path, graph) -> tuple[np.ndarray, np.ndarray]:  # type: ignore[no-untyped-def]
    """Samples and labels of a data file (.npz with 'y') or a Python dataset (`module:attr`)."""
    from micoc.datafiles import load_inputs, load_labels
    from micoc.search.datasets import dataset_arrays, is_reference

    if is_reference(path):
        return dataset_arrays(str(path))
    arrays = load_inputs(path, graph)
    y = load_labels(path)
    if y is None:
        raise InputError("no labels: the data file needs an array 'y' (one integer label per sample)", str(path))
    (x,) = arrays.values()
    if len(y) != len(x):
        raise InputError(f"{len(x)} samples but {len(y)} labels", str(path))
    if x.dtype.kind != "f":
        x = x.astype(np.float32)
    return x, np.asarray(y)


def load_eval_data(o: SearchOptions, graph):  # type: ignore[no-untyped-def]
    """--data is the validation set (scores every candidate) unless --split cuts
    it into train/validation/test (deterministic permutation, seed 0)."""
    from micoc.datafiles import load_inputs
    from micoc.search.evaluators import EvalData

    x, y = _xy(o.data, graph)
    xt = yt = xtr = ytr = None
    if o.split:
        try:
            fr = [float(p) for p in o.split.split(",")]
        except ValueError:
            raise UsageError(f"bad --split '{o.split}': expected TRAIN,VAL,TEST fractions, e.g. 0.6,0.2,0.2") from None
        if len(fr) != 3 or any(f < 0 for f in fr) or fr[1] <= 0 or abs(sum(fr) - 1) > 1e-6:
            raise UsageError(f"bad --split '{o.split}': three fractions (train,val,test) summing to 1, val > 0")
        perm = np.random.default_rng(0).permutation(len(x))
        a, b = int(round(fr[0] * len(x))), int(round((fr[0] + fr[1]) * len(x)))
        tr, va, te = perm[:a], perm[a:b], perm[b:]
        if len(va) == 0:
            raise UsageError("--split leaves no validation samples")
        if len(tr):
            xtr, ytr = x[tr], y[tr]
        if len(te):
            xt, yt = x[te], y[te]
        x, y = x[va], y[va]
    if o.test_data is not None:
        xt, yt = _xy(o.test_data, graph)
    if o.train_data is not None:
        xtr, ytr = _xy(o.train_data, graph)
    xc = None
    if o.calib is not None:
        from micoc.search.datasets import dataset_arrays, is_reference

        (xc,) = (dataset_arrays(str(o.calib))[:1] if is_reference(o.calib)
                 else load_inputs(o.calib, graph).values())
        xc = np.asarray(xc, dtype=np.float32)
    return EvalData.from_arrays(x, y, x_test=xt, y_test=yt, x_train=xtr, y_train=ytr,
                                calib_samples=o.calib_samples, x_calib=xc)


def search_command(o: SearchOptions, log=None) -> dict:  # type: ignore[no-untyped-def]
    """`micoc search`: search, write the outputs to o.output, return the report."""
    return _search(o, log)[1]


def _search(o: SearchOptions, log=None):  # type: ignore[no-untyped-def]
    """(the run's pieces: graph, space, constraints, evaluator, result; the report)."""
    from micoc.frontends.loader import load_model
    from micoc.passes import PassManager
    from micoc.search.constraints import constraints_from_text
    from micoc.search.engine import run_search
    from micoc.search.evaluators import EvalSettings, Evaluator
    from micoc.search.outputs import report, write_outputs
    from micoc.search.space import SearchSpace, default_qtypes, parse_qtypes

    if not o.constraint:
        raise UsageError("give a budget: --constraint bops=0.3 (or latency=, weights=)")
    if o.target not in ("vexii", "bitfusion", "host", "rv32"):
        raise UsageError(f"unknown target '{o.target}' (vexii, bitfusion, host, rv32)")
    if o.config is not None and o.target != "vexii":
        raise UsageError("--config applies to --target vexii only")
    graph = load_model(o.model)
    PassManager.from_string("canonicalize").run(graph)  # BN folded: search what is deployed
    qtypes = parse_qtypes(o.qtypes) if o.qtypes else default_qtypes(o.target)
    space = SearchSpace.for_graph(graph, qtypes, tie_wa=o.tie_wa, pin_first_last=o.pin_first_last)
    cs = constraints_from_text(graph, o.target, space, list(o.constraint), o.config)
    cs.check_achievable()
    data = load_eval_data(o, graph)
    metric = None
    if o.metric is not None:
        from micoc.search.datasets import load_metric

        metric = load_metric(o.metric)
    kind = o.evaluator
    if kind == "auto" and data.x_train is None:
        # QAT needs training data; without it `auto` can only mean PTQ (say so).
        if log is not None:
            log("note: no --train-data or --split: --eval auto scores every scheme with PTQ")
        kind = "ptq"
    ev = Evaluator(graph, space, data, EvalSettings(kind=kind, exact=o.exact, calib_method=o.calib_method,
                                                    qat_epochs=o.qat_epochs, seed=o.seed,
                                                    metric=o.metric or "top1"), metric)
    o.output.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with _progress_bar(o.evals, o.progress) as bar:
        result = run_search(graph, space, cs, ev, searcher=o.searcher, evals=o.evals, batch=o.batch,
                            seed=o.seed, journal=o.output / "journal.jsonl", resume=o.resume,
                            workers=o.workers, scheduler=o.scheduler, progress=bar)
    secs = time.perf_counter() - t0
    files = write_outputs(result, cs, o.output, secs)
    rep = report(result, cs, secs)
    if log is not None:
        b = result.best
        if b is None:
            log("no evaluated scheme satisfies the budget")
        else:
            test = "" if result.test_score is None else f", test {result.test_score:.4f}"
            log(f"best: validation {b.score:.4f}{test}, "
                + ", ".join(f"{m} {v:.3f} of INT8" for m, v in b.of_int8.items())
                + f" ({len(result.records)} evaluations, {rep['replayed']} from the journal, {secs:.1f} s)")
        for name, p in files.items():
            log(f"wrote {p}" + (" (" + name + ")" if name != "report" else ""))
    return (graph, space, cs, ev, result), rep


def compile_search_command(o: SearchOptions, target_name: str, pass_context=None, log=None,  # type: ignore[no-untyped-def]
                           build: bool = True) -> dict:
    """`micoc compile MODEL --search ...`: search (as `micoc search`), then compile the
    winner for `target_name` into o.output, exactly as the search scored it: the
    evaluator's bit-assigned, calibrated graph (QAT-fine-tuned weights when the
    winner was scored with QAT; the fine-tune is seeded per scheme, so it is the
    same model), then quantize and the target's pipeline.

    Layout: o.output is the build (as `micoc compile -o`), the search's outputs and
    journal are in o.output/search/ (so `--resume` continues an interrupted search).
    Every usage error (constraints, target, data) is raised before anything is
    written; the build replaces o.output atomically, carrying search/ along.
    """
    import dataclasses
    import os
    import shutil
    import tempfile

    from micoc.passes import PassManager
    from micoc.passes.quantize import Quantize
    from micoc.targets import get_target

    target = get_target(target_name)
    out = Path(o.output)
    (graph, space, cs, ev, result), rep = _search(dataclasses.replace(o, output=out / "search"), log)
    if result.best is None:
        raise UsageError("no evaluated scheme satisfies the budget: nothing to compile "
                         f"(search outputs in {out / 'search'})")
    g = ev.prepared(result.best.scheme)
    PassManager([Quantize(), *target.default_pipeline()], pass_context).run(g)
    target.check_support(g)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".build"))
    try:
        build_dir = tmp / "build"
        report = target.emit(g, build_dir)
        shutil.move(str(out / "search"), str(build_dir / "search"))
        old = out.with_name(f".{out.name}.old.{os.getpid()}")
        os.replace(out, old)
        os.replace(build_dir, out)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if build:
        target.build(out)
    if log is not None:
        b = result.best
        log(f"compiled the winner ({'QAT' if ev.uses_qat(b.scheme) else 'PTQ'} weights) into {out}: "
            f"weights {report['weight_bytes']} B, arena {report['arena_bytes']} B")
    return {**report, "search": rep}


class _progress_bar:
    """A rich progress bar on stderr with the best score so far (a no-op if disabled)."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total = total
        self.enabled = enabled and sys.stderr.isatty()
        self._p = None

    def __enter__(self):  # type: ignore[no-untyped-def]
        if self.enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )

            self._p = Progress(TextColumn("search"), BarColumn(), MofNCompleteColumn(),
                               TextColumn("best {task.fields[best]}"), TimeElapsedColumn(),
                               console=Console(stderr=True), transient=False)
            self._p.start()
            self._task = self._p.add_task("search", total=self.total, best="-")
        return self

    def __call__(self, done: int, total: int, best: float | None) -> None:
        if self._p is not None:
            self._p.update(self._task, completed=done, best="-" if best is None else f"{best:.4f}")

    def __exit__(self, *exc: object) -> None:
        if self._p is not None:
            self._p.stop()
