"""Mixed-precision search (issue 6): constraints hold, tight budgets and tiny
spaces end cleanly, resume equals an uninterrupted run without repeating an
evaluation, and a dask cluster gives the same result as one process.

LeNet-5 with MNIST validation samples, one seed, small budgets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from micoc.errors import UsageError
from micoc.frontends.onnx import import_onnx
from micoc.passes import PassManager
from micoc.search import (
    EvalData,
    EvalSettings,
    Evaluator,
    SearchSpace,
    constraints_from_text,
    parse_constraint,
    run_search,
)
from micoc.search.constraints import repair

ROOT = Path(__file__).resolve().parents[1]
LENET = ROOT / "examples" / "lenet5.onnx"


@pytest.fixture(scope="module")
def setup():  # type: ignore[no-untyped-def]
    import torch

    from examples.data import mnist

    torch.set_num_threads(1)
    g = import_onnx(LENET)
    PassManager.from_string("canonicalize").run(g)
    xv, yv = mnist("validation")
    xt, yt = mnist("test")
    data = EvalData.from_arrays(xv[:300], yv[:300], x_test=xt[:300], y_test=yt[:300], calib_samples=128)
    return g, data


def space_cs(g, constraint: str = "bops=0.3", qtypes=range(2, 9), **kw):  # type: ignore[no-untyped-def]
    space = SearchSpace.for_graph(g, qtypes, **kw)
    return space, constraints_from_text(g, "bops", space, [constraint])


def records_of(result):  # type: ignore[no-untyped-def]
    return [(r.index, r.scheme.tolist(), r.score) for r in result.records]


# -- space and constraints ------------------------------------------------------------


def test_space_conversion_and_normalization(setup) -> None:  # type: ignore[no-untyped-def]
    g, _ = setup
    space = SearchSpace.for_graph(g, [2, 4, 8], tie_wa=True, pin_first_last=8)
    s = space.random(np.random.default_rng(0), 50)
    assert (s[:, :, 0] == s[:, :, 1]).all() and (s[:, 0] == 8).all() and (s[:, -1] == 8).all()
    assert space.size() == 3 ** 3 and space.contains(s[0])
    assert np.array_equal(space.from_scheme(space.to_scheme(s[0])), s[0])


@pytest.mark.parametrize("text, absolute, value", [
    ("bops=0.3", False, 0.3), ("weights=20KB", True, 20e3), ("latency=1.5e6cyc", True, 1.5e6),
    ("bops=30%", False, 0.3), ("weights<=2KiB", True, 2048),
])  # fmt: skip
def test_parse_constraint(text: str, absolute: bool, value: float) -> None:
    c = parse_constraint(text)
    assert c.absolute == absolute and c.value == pytest.approx(value)


@pytest.mark.parametrize("text, msg", [
    ("bops", "expected METRIC=VALUE"), ("flops=0.3", "unknown metric"), ("bops=-1", "positive"),
    ("weights=3furlongs", "unknown unit"), ("arena=3parsecs", "unknown unit"),
])  # fmt: skip
def test_bad_constraints(text: str, msg: str) -> None:
    with pytest.raises(UsageError, match=msg):
        parse_constraint(text)


def test_latency_needs_a_cost_model(setup) -> None:  # type: ignore[no-untyped-def]
    g, _ = setup
    space = SearchSpace.for_graph(g, [1, 2, 4, 8])
    with pytest.raises(UsageError, match="latency constraint needs a target"):
        constraints_from_text(g, "host", space, ["latency=0.5"])
    cs = constraints_from_text(g, "bitfusion", SearchSpace.for_graph(g, range(2, 9)), ["latency=0.5"])
    assert cs.fractions(cs.space.uniform(8))[0, 0] == pytest.approx(2.0)


def test_repair_makes_every_scheme_feasible(setup) -> None:  # type: ignore[no-untyped-def]
    g, _ = setup
    space, cs = space_cs(g, "bops=0.1")
    s = space.random(np.random.default_rng(1), 500)
    assert not cs.feasible(s).all()
    fixed = repair(cs, s)
    assert cs.feasible(fixed).all()
    ok = cs.feasible(s)
    assert np.array_equal(fixed[ok], s[ok])  # feasible ones untouched


def test_infeasible_budget_names_smallest_fraction(setup) -> None:  # type: ignore[no-untyped-def]
    g, data = setup
    space, cs = space_cs(g, "bops=0.01")
    with pytest.raises(UsageError, match=r"smallest achievable bops is 0.0625 of INT8"):
        run_search(g, space, cs, Evaluator(g, space, data), evals=4)


# -- arena -------------------------------------------------------------------------------


def _example_graph(name: str):  # type: ignore[no-untyped-def]
    import torch

    from examples.models import MODELS, build
    from micoc.frontends.fx import import_module

    x = torch.randn(MODELS[name][1], generator=torch.Generator().manual_seed(1234))
    g = import_module(build(name, seed=0), x)
    PassManager.from_string("canonicalize").run(g)
    return g


@pytest.mark.parametrize("name, n", [("lenet5", 6), ("resnet8", 10)])
def test_arena_constraint_equals_compiled_arena(name: str, n: int, tmp_path: Path) -> None:
    """The vectorized arena (live matrix x bytes, max over points) is the lower
    bound plan-buffers reports for the compiled build of each random scheme, and
    `exact=True` is the arena it places."""
    from micoc.passes import PassContext
    from micoc.passes.assign_bits import AssignBits
    from micoc.passes.calibrate import Calibrate
    from micoc.passes.quantize import Quantize
    from micoc.targets.c.emitter import emit_c

    g = _example_graph(name)
    space = SearchSpace.for_graph(g, (1, 2, 4, 8))
    cs = constraints_from_text(g, "host", space, ["arena=0.5"])
    rng = np.random.default_rng(7)
    schemes = np.concatenate([space.uniform(8)[None], space.uniform(1)[None], space.random(rng, n)])
    bound = cs.values("arena", schemes)
    placed = cs.values("arena", schemes, exact=True)
    x = rng.standard_normal((4, *g.inputs[0].type.shape[1:])).astype(np.float32)
    for k, s in enumerate(schemes):
        q = g.clone()
        (tmp_path / "s.json").write_text(json.dumps({k2: {"w": int(w), "a": int(a)}
                                                     for k2, (w, a) in space.to_scheme(s).items()}))
        ctx = PassContext(data={"calibration": {q.inputs[0].name: x}})
        PassManager([AssignBits(scheme=tmp_path / "s.json"), Calibrate(), Quantize()], ctx).run(q)
        rep = emit_c(q, tmp_path / f"b{k}")
        assert rep["arena_lower_bound_bytes"] == bound[k], s.tolist()
        assert rep["arena_bytes"] == placed[k], s.tolist()
    assert cs.reference("arena") == bound[0] and (placed >= bound).all()
    assert cs.fractions(schemes[:1])[0, 0] == pytest.approx(2.0)  # arena=0.5 of all-8-bit


def test_arena_search_winner_fits(setup) -> None:  # type: ignore[no-untyped-def]
    g, data = setup
    space = SearchSpace.for_graph(g, (1, 2, 4, 8))
    cs = constraints_from_text(g, "host", space, ["arena=7KB"])
    assert cs.budget(cs.primary) == 7000
    res = run_search(g, space, cs, Evaluator(g, space, data), searcher="random", evals=4, seed=0)
    assert res.best is not None and cs.values("arena", res.best.scheme[None], exact=True)[0] <= 7000
    with pytest.raises(UsageError, match="smallest achievable arena"):
        constraints_from_text(g, "host", space, ["arena=100B"]).check_achievable()


# -- searches ---------------------------------------------------------------------------


@pytest.mark.parametrize("searcher", ["mico", "random", "uniform", "greedy"])
def test_result_satisfies_tight_budget(setup, searcher: str) -> None:  # type: ignore[no-untyped-def]
    g, data = setup
    space, cs = space_cs(g, "bops=0.1")
    res = run_search(g, space, cs, Evaluator(g, space, data), searcher=searcher, evals=7, seed=0)
    assert res.best is not None and cs.feasible(res.best.scheme[None])[0]
    assert res.best.of_int8["bops"] <= 0.1 + 1e-9
    assert res.test_score is not None
    if searcher != "greedy":  # greedy's sensitivity probes are the one deliberate exception
        assert all(r.feasible for r in res.records)
    assert len({r.scheme.tobytes() for r in res.records}) == len(res.records)  # no repeats


def test_more_initial_samples_than_the_space_holds(setup) -> None:  # type: ignore[no-untyped-def]
    g, data = setup
    # 3 free layers x {4, 8} (tied, first/last pinned): 8 schemes, some over budget.
    space, cs = space_cs(g, "bops=0.5", qtypes=[4, 8], tie_wa=True, pin_first_last=4)
    assert space.size() == 8
    res = run_search(g, space, cs, Evaluator(g, space, data), searcher="mico", evals=20,
                     searcher_options={"n_init": 50})
    assert res.stopped == "exhausted"
    every = np.array([space.normalize(np.array([[4, 4], [a, a], [b, b], [c, c], [4, 4]]))
                      for a in (4, 8) for b in (4, 8) for c in (4, 8)])
    assert len(res.records) == int(cs.feasible(every).sum()) < 8
    assert res.best is not None and res.best.feasible


def test_resume_equals_uninterrupted_and_never_repeats(setup, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    g, data = setup
    space, cs = space_cs(g)
    full_ev = Evaluator(g, space, data)
    full = run_search(g, space, cs, full_ev, evals=9, seed=3, batch=2, journal=tmp_path / "a.jsonl")
    assert full_ev.calls == 9

    ev1 = Evaluator(g, space, data)
    part = run_search(g, space, cs, ev1, evals=9, seed=3, batch=2, journal=tmp_path / "b.jsonl", stop_after=5)
    assert part.stopped == "interrupted" and ev1.calls == 5
    # A kill -9 in the middle of a write leaves a torn last line: it is dropped.
    with (tmp_path / "b.jsonl").open("a") as f:
        f.write('{"index": 5, "sche')
    ev2 = Evaluator(g, space, data)
    resumed = run_search(g, space, cs, ev2, evals=9, seed=3, batch=2, journal=tmp_path / "b.jsonl", resume=True)
    assert ev2.calls == 4  # 5 + 4 = 9: nothing evaluated twice
    assert records_of(resumed) == records_of(full)
    assert resumed.best_scheme == full.best_scheme and resumed.test_score == full.test_score
    lines = (tmp_path / "b.jsonl").read_text().splitlines()
    assert len(lines) == 1 + 9 and all(json.loads(line) for line in lines)

    # Resuming once more evaluates nothing.
    ev3 = Evaluator(g, space, data)
    again = run_search(g, space, cs, ev3, evals=9, seed=3, batch=2, journal=tmp_path / "b.jsonl", resume=True)
    assert ev3.calls == 0 and records_of(again) == records_of(full)

    # A journal is reused only for the same model, data and settings.
    other = EvalData.from_arrays(data.x_val[:200], data.y_val[:200])
    with pytest.raises(UsageError, match="different data"):
        run_search(g, space, cs, Evaluator(g, space, other), evals=9, seed=3, batch=2,
                   journal=tmp_path / "b.jsonl", resume=True)
    with pytest.raises(UsageError, match=r"different settings \(changed: seed\)"):
        run_search(g, space, cs, Evaluator(g, space, data), evals=9, seed=4, batch=2,
                   journal=tmp_path / "b.jsonl", resume=True)


def test_dask_cluster_equals_one_worker(setup) -> None:  # type: ignore[no-untyped-def]
    distributed = pytest.importorskip("distributed")
    g, data = setup
    space, cs = space_cs(g)
    serial = run_search(g, space, cs, Evaluator(g, space, data), evals=6, seed=1, batch=3, test=False)
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1, host="127.0.0.1",
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        dist = run_search(g, space, cs, Evaluator(g, space, data), evals=6, seed=1, batch=3, client=client,
                          test=False)
    assert records_of(dist) == records_of(serial)
    assert dist.best_scheme == serial.best_scheme


@pytest.mark.slow
def test_local_worker_processes_equal_one_worker(setup) -> None:  # type: ignore[no-untyped-def]
    g, data = setup
    space, cs = space_cs(g)
    serial = run_search(g, space, cs, Evaluator(g, space, data), evals=6, seed=1, batch=3, test=False)
    local = run_search(g, space, cs, Evaluator(g, space, data), evals=6, seed=1, batch=3, workers=2, test=False)
    assert records_of(local) == records_of(serial)


# -- the command line ------------------------------------------------------------------------


def test_cli_search_writes_outputs(setup, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from examples.data import save_npz
    from micoc.cli import main
    from micoc.scheme import load_scheme

    _, data = setup
    val = save_npz(tmp_path / "val.npz", data.x_val[:200], data.y_val[:200])
    out = tmp_path / "out"
    args = ["search", str(LENET), "--target", "bitfusion", "--data", str(val), "--constraint", "bops=0.3",
            "--constraint", "weights=0.4", "--eval", "ptq", "--evals", "4", "-o", str(out)]
    assert main(args) == 0
    for name in ("best_scheme.json", "journal.jsonl", "pareto.csv", "pareto.png", "report.json"):
        assert (out / name).exists(), name
    scheme = load_scheme(out / "best_scheme.json")
    assert all(2 <= b <= 8 for pair in scheme.values() for b in pair)  # bitfusion: 2..8 bits
    rep = json.loads((out / "report.json").read_text())
    assert rep["evaluations"] == 4 and rep["best"]["of_int8"]["bops"] <= 0.3
    assert rep["best"]["of_int8"]["weights"] <= 0.4
    assert main(args + ["--resume"]) == 0
    assert json.loads((out / "report.json").read_text())["replayed"] == 4
    # The scheme drives `micoc quantize`.
    assert main(["quantize", str(LENET), "--calib", str(val), "--scheme", str(out / "best_scheme.json"),
                 "-o", str(tmp_path / "q.mir")]) == 0


@pytest.mark.parametrize("extra, msg", [
    (["--constraint", "bops=zero"], "bad constraint"),
    (["--constraint", "bops=0.001"], "smallest achievable"),
    (["--constraint", "latency=0.5", "--target", "host"], "latency constraint needs"),
])  # fmt: skip
def test_cli_errors_exit_2(setup, tmp_path: Path, capsys, extra: list[str], msg: str) -> None:  # type: ignore[no-untyped-def]
    from examples.data import save_npz
    from micoc.cli import main

    _, data = setup
    val = save_npz(tmp_path / "val.npz", data.x_val[:50], data.y_val[:50])
    args = ["search", str(LENET), "--target", "vexii", "--data", str(val), "--evals", "2", "-o",
            str(tmp_path / "o")]
    assert main(args + extra) == 2
    assert msg in capsys.readouterr().err


def test_auto_evaluator_fine_tunes_low_bit_schemes(setup) -> None:  # type: ignore[no-untyped-def]
    from examples.data import mnist

    g, data = setup
    xtr, ytr = mnist("train")
    d = EvalData.from_arrays(data.x_val, data.y_val, x_train=xtr[:640], y_train=ytr[:640], calib_samples=128)
    space = SearchSpace.for_graph(g, range(2, 9))
    ptq = Evaluator(g, space, d)
    auto = Evaluator(g, space, d, EvalSettings(kind="auto", qat_epochs=1, qat_lr=2e-3))
    assert auto.uses_qat(space.uniform(2)) and not auto.uses_qat(space.uniform(4))
    assert auto(space.uniform(2)) > ptq(space.uniform(2)) + 0.1  # QAT recovers a w2a2 LeNet
    assert auto(space.uniform(4)) == ptq(space.uniform(4))  # >= 4 bits: plain PTQ


def test_cli_resume_after_kill_9(setup, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import subprocess
    import sys
    import time

    from examples.data import save_npz
    from micoc.cli import main

    _, data = setup
    val = save_npz(tmp_path / "val.npz", data.x_val[:200], data.y_val[:200])
    args = ["search", str(LENET), "--target", "bitfusion", "--data", str(val), "--constraint", "bops=0.3",
            "--eval", "ptq", "--evals", "8", "--seed", "5"]
    assert main(args + ["-o", str(tmp_path / "full")]) == 0
    journal = tmp_path / "killed" / "journal.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "micoc", *args, "-o", str(tmp_path / "killed")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if journal.exists() and len(journal.read_text().splitlines()) >= 4:  # header + 3 evaluations
            break
        time.sleep(0.05)
    proc.kill()  # SIGKILL: no cleanup runs
    proc.wait()
    assert main(args + ["-o", str(tmp_path / "killed"), "--resume"]) == 0
    rep = json.loads((tmp_path / "killed" / "report.json").read_text())
    assert rep["evaluations"] == 8 and rep["replayed"] >= 3
    indices = [json.loads(line)["index"] for line in journal.read_text().splitlines()[1:]]
    assert sorted(indices) == list(range(8))  # each evaluation exactly once
    # Same schemes, scores and order as the uninterrupted run (pareto.csv lists every evaluation).
    assert (tmp_path / "full" / "pareto.csv").read_text() == (tmp_path / "killed" / "pareto.csv").read_text()
    assert (tmp_path / "full" / "best_scheme.json").read_text() == \
        (tmp_path / "killed" / "best_scheme.json").read_text()


# -- micoc compile --search ---------------------------------------------------------------------


def test_compile_search_builds_the_winner_with_its_qat_weights(setup, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The build's IR and report carry the winning scheme, its weights are the QAT ones
    (not what PTQ of the same scheme gives), and the compiled C program scores on the
    validation data exactly what the search scored."""
    from examples.data import mnist, save_npz
    from micoc.cli import main
    from micoc.frontends.loader import load_model
    from micoc.scheme import load_scheme
    from micoc.targets import get_target

    _, data = setup
    xtr, ytr = mnist("train")
    val = save_npz(tmp_path / "val.npz", data.x_val[:100], data.y_val[:100])
    train = save_npz(tmp_path / "train.npz", xtr[:256], ytr[:256])
    out = tmp_path / "build"
    args = ["compile", str(LENET), "--target", "host", "--search", "--data", str(val), "--train-data", str(train),
            "--constraint", "bops=0.2", "--evals", "2", "--eval", "qat", "--qat-epochs", "0.25", "-o", str(out)]
    assert main(args) == 0
    scheme = load_scheme(out / "search" / "best_scheme.json")
    rep = json.loads((out / "report.json").read_text())
    assert {lay["name"]: (lay["wbits"], lay["abits"]) for lay in rep["layers"]} == scheme
    q = load_model(out / "model.mir")
    assert {op.layer: (op.attrs["wbits"], op.attrs["abits"]) for op in q.layers()} == scheme
    srep = json.loads((out / "search" / "report.json").read_text())
    (pred,) = get_target("host").run(out, [data.x_val[:100]])
    assert float((pred.reshape(100, -1).argmax(1) == data.y_val[:100]).mean()) == srep["best"]["val_score"]
    # PTQ of the same scheme (same calibration samples) has other weights.
    ptq = tmp_path / "ptq"
    assert main(["compile", str(LENET), "--target", "host", "--scheme", str(out / "search" / "best_scheme.json"),
                 "--calib", str(train), "-o", str(ptq)]) == 0
    wq, wp = np.load(out / "model.npz"), np.load(ptq / "model.npz")
    assert sorted(wq.files) == sorted(wp.files)
    assert any(not np.array_equal(wq[k], wp[k]) for k in wq.files if k.endswith("weight.q"))


@pytest.mark.parametrize("extra, msg", [
    (["--constraint", "bops=zero"], "bad constraint"),
    (["--constraint", "arena=0.1"], "smallest achievable arena"),
    (["--constraint", "arena=3parsecs"], "unknown unit"),
])  # fmt: skip
def test_compile_search_usage_errors_write_nothing(setup, tmp_path: Path, capsys, extra: list[str],  # type: ignore[no-untyped-def]
                                                   msg: str) -> None:
    from examples.data import save_npz
    from micoc.cli import main

    _, data = setup
    val = save_npz(tmp_path / "val.npz", data.x_val[:50], data.y_val[:50])
    out = tmp_path / "o"
    assert main(["compile", str(LENET), "--target", "host", "--search", "--data", str(val), "--evals", "2",
                 "-o", str(out), *extra]) == 2
    assert msg in capsys.readouterr().err
    assert not out.exists() and list(tmp_path.iterdir()) == [val]


def test_vexii_latency_gemm_kind_config(setup) -> None:  # type: ignore[no-untyped-def]
    """`--config CFG:bare` prices GEMMs with the bare-kernel proxy: much more bit-sensitive
    than the default whole-layer proxies (all-1-bit LeNet-5: 0.30 vs 0.49 of INT8)."""
    g, _ = setup
    space = SearchSpace.for_graph(g, (1, 2, 4, 8))
    low = space.uniform(1)[None]
    layer = constraints_from_text(g, "vexii", space, ["latency=0.5"])
    bare = constraints_from_text(g, "vexii", space, ["latency=0.5"], "high:bare")
    assert layer.of_int8(low)["latency"][0] == pytest.approx(0.485, abs=0.01)
    assert bare.of_int8(low)["latency"][0] == pytest.approx(0.297, abs=0.01)
    with pytest.raises(UsageError, match="smallest achievable latency is 0.485"):
        constraints_from_text(g, "vexii", space, ["latency=0.35"]).check_achievable()
    constraints_from_text(g, "vexii", space, ["latency=0.35"], "high:bare").check_achievable()


def test_mico_initial_samples_fit_and_expose_every_layer(setup) -> None:  # type: ignore[no-untyped-def]
    """The best-fitting uniform scheme, then one sample per layer that moves only
    that layer's bits (a w/a trade near the budget, or both down): all feasible."""
    from micoc.search.searchers import make_searcher

    g, _ = setup
    space, cs = space_cs(g)
    srch = make_searcher("mico", space, cs, seed=0, evals=16)
    init = srch.ask(len(space.groups) + 1)
    assert len(init) == len(space.groups) + 1 and cs.feasible(init).all()
    base = srch.best_uniform()
    assert np.array_equal(init[0], base)
    moved = [np.flatnonzero((s != base).any(axis=1)).tolist() for s in init[1:]]
    assert moved == [[i] for i in range(space.n_layers)]
    # Later proposals: feasible, unseen, and (after the fill) most of the budget used.
    srch.tell(init, [float(i) for i in range(len(init))])
    more = srch.ask(3)
    assert cs.feasible(more).all() and len({space.key(s) for s in np.concatenate([init, more])}) == len(init) + 3
    assert (cs.fractions(more)[:, 0] > 0.9).all()


def test_mico_surrogate_learns_an_additive_sensitivity_from_few_samples(setup) -> None:  # type: ignore[no-untyped-def]
    """Scores that fall with each gene's quantization noise (c_g * 4^-b, some genes
    far more sensitive than others, plus the interaction the forest has to catch):
    32 random schemes are enough for the surrogate to rank unseen ones, and a
    budgeted mico search on that objective lands near the best feasible scheme."""
    from scipy.stats import spearmanr

    from micoc.search.searchers import make_searcher

    g, _ = setup
    space, cs = space_cs(g)
    rng = np.random.default_rng(0)
    sens = rng.uniform(0, 1, (space.n_layers, 2)) ** 3 * 40  # a few genes dominate

    def objective(s: np.ndarray) -> np.ndarray:
        s = np.asarray(s, dtype=np.float64).reshape(-1, space.n_layers, 2)
        return 1.0 - (sens * 4.0 ** -s).sum(axis=(1, 2)) - 0.02 * (s[:, 0, 1] <= 3) * (s[:, 1, 1] <= 3)

    srch = make_searcher("mico", space, cs, seed=0, evals=32)
    train = space.random(rng, 32)
    surrogate = srch._surrogate(train, objective(train))
    held_out = space.random(rng, 500)
    assert spearmanr(surrogate(held_out).mean(axis=0), objective(held_out))[0] > 0.9

    feasible = space.random(rng, 20000)
    feasible = feasible[cs.feasible(feasible)]
    best_random = objective(feasible).max()
    for _ in range(32):
        batch = srch.ask(1)
        if not len(batch):
            break
        srch.tell(batch, objective(batch).tolist())
    assert cs.feasible(np.stack(srch.X)).all()
    assert max(srch.y) >= best_random - 0.002
