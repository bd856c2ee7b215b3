"""Mixed-precision search, Setting B (issue 6): QAT under a vexii latency budget.

LeNet-5 / MNIST (3000 train / 1000 validation / 1000 test, `examples.data.mnist`,
as Setting A in bench/search_regret.py), qtypes {1,2,4,8} for the weights and
activations of every layer, `--eval qat` (QAT_EPOCHS epoch(s) of Adam through the
torch executor from the float weights, seeded per scheme, then recalibrated), vexii
latency <= BUDGET of INT8 under the cost model CONFIG, 32 evaluations per search,
seeds 0..4 for `mico`, `random` and `greedy`, plus `uniform` (every feasible
uniform (w, a) pair: the best uniform scheme). Objective: validation top-1; the
winner's test top-1 is reported, never used to choose. Every (scheme) evaluation
is deterministic (QAT seed = hash(scheme, 0)), so scores are cached on disk and
shared by all searches; one QAT run scores validation and test together.

    nice -n 5 python bench/search_setting_b.py [--seeds 0,1,2] [--searchers mico,random]
    python bench/search_setting_b.py --table-only --write      # table from the cached runs

Several processes may run disjoint seeds at once (they share the caches).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.record import machine, write_section  # noqa: E402
from micoc.cost.model import make_model  # noqa: E402
from micoc.frontends.onnx import import_onnx  # noqa: E402
from micoc.passes import PassManager  # noqa: E402
from micoc.search.constraints import constraints_from_text  # noqa: E402
from micoc.search.engine import model_hash, run_search  # noqa: E402
from micoc.search.evaluators import EvalData, EvalSettings, Evaluator  # noqa: E402
from micoc.search.space import SearchSpace  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("MICOC_BENCH_B_CACHE", "/tmp/micoc_search_bench_b"))
EVALS = int(os.environ.get("MICOC_BENCH_B_EVALS", "32"))  # smaller only to smoke-test the script
QTYPES = (1, 2, 4, 8)


class CachedQAT(Evaluator):
    """One fine-tune per scheme scores both splits; scores kept in `path` (JSON lines)."""

    def __init__(self, *args, path: Path, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.path = path
        self.cache: dict[bytes, dict[str, float]] = {}
        self.eval_seconds: list[float] = []
        self.reload()

    def reload(self) -> None:
        if self.path.exists():
            for line in self.path.read_text().splitlines():
                try:
                    r = json.loads(line)
                except json.JSONDecodeError:  # torn last line
                    continue
                self.cache[self.space.key(np.array(r["scheme"]))] = {"val": r["val"], "test": r["test"]}

    def __getstate__(self):  # type: ignore[no-untyped-def]
        raise TypeError("the bench evaluator runs in-process only")

    def score(self, scheme: np.ndarray, split: str) -> float:
        k = self.space.key(scheme)
        if k not in self.cache:
            t0 = time.perf_counter()
            prep = self.prepared(scheme)
            d = self.data
            val = float(self.metric(self.outputs(prep, d.x_val), d.y_val))  # type: ignore[arg-type]
            test = float(self.metric(self.outputs(prep, d.x_test), d.y_test))  # type: ignore[arg-type]
            self.cache[k] = {"val": val, "test": test}
            self.eval_seconds.append(time.perf_counter() - t0)
            with self.path.open("a") as f:
                f.write(json.dumps({"scheme": np.asarray(scheme).tolist(), "val": val, "test": test,
                                    "seconds": self.eval_seconds[-1]}) + "\n")
        return self.cache[k][split]


def setup(budget: float, config: str, epochs: float):  # type: ignore[no-untyped-def]
    from examples import data as D

    torch.set_num_threads(1)
    g = import_onnx(ROOT / "examples" / "lenet5.onnx")
    PassManager.from_string("canonicalize").run(g)
    (xv, yv), (xt, yt), (xtr, ytr) = D.mnist("validation"), D.mnist("test"), D.mnist("train")
    data = EvalData.from_arrays(xv, yv, x_test=xt, y_test=yt, x_train=xtr, y_train=ytr)
    space = SearchSpace.for_graph(g, QTYPES)
    cs = constraints_from_text(g, "vexii", space, [f"latency={budget}"], config)
    settings = EvalSettings(kind="qat", qat_epochs=epochs, seed=0)
    ident = hashlib.sha256(f"{model_hash(g)} {data.digest()} {settings}".encode()).hexdigest()[:16]
    CACHE.mkdir(parents=True, exist_ok=True)
    ev = CachedQAT(g, space, data, settings, path=CACHE / f"scores-{ident}.jsonl")
    return g, space, cs, ev


def code_version() -> str:
    return hashlib.sha256((ROOT / "micoc" / "search" / "searchers.py").read_bytes()).hexdigest()[:12]


def run_key(budget: float, config: str, epochs: float) -> str:
    return f"{code_version()} latency={budget} {config} qat{epochs}"


def load_runs(key: str) -> dict[tuple[str, int], dict]:
    path = CACHE / "runs.jsonl"
    out = {}
    for line in path.read_text().splitlines() if path.exists() else []:
        try:
            r = json.loads(line)
        except json.JSONDecodeError:
            continue
        if r.get("key") == key:
            out[(r["searcher"], r["seed"])] = r
    return out


def do_runs(g, space, cs, ev, key: str, searchers: list[str], seeds: list[int]) -> None:  # type: ignore[no-untyped-def]
    other = make_model("vexii", g, "high" if cs.config and cs.config.endswith(":bare") else "high:bare")
    ref_other = float(other.predict_batch(np.full((1, space.n_layers, 2), 8))[0])
    for seed in seeds:
        for name in searchers:
            if name == "uniform" and seed != seeds[0]:
                continue  # deterministic: one run
            ev.reload()  # scores other processes computed meanwhile
            if (name, seed) in load_runs(key):
                continue
            t0 = time.perf_counter()
            n0, e0 = len(ev.eval_seconds), sum(ev.eval_seconds)
            res = run_search(g, space, cs, ev, searcher=name, evals=EVALS, seed=seed, test=True)
            b = res.best
            rec = {"key": key, "searcher": name, "seed": seed,
                   "best_val": None if b is None else b.score, "test": res.test_score,
                   "latency": None if b is None else b.of_int8["latency"],
                   "cycles": None if b is None else float(cs.values("latency", b.scheme[None])[0]),
                   "latency_other_model": None if b is None else float(other.predict_batch(b.scheme[None])[0]) / ref_other,
                   "scheme": None if b is None else b.scheme.tolist(), "n": len(res.records),
                   "stopped": res.stopped, "new_evals": len(ev.eval_seconds) - n0,
                   "eval_seconds": sum(ev.eval_seconds) - e0, "seconds": time.perf_counter() - t0}
            with (CACHE / "runs.jsonl").open("a") as f:
                f.write(json.dumps(rec) + "\n")
            print(f"{name} seed {seed}: val {rec['best_val']} test {rec['test']} latency {rec['latency']} "
                  f"({rec['new_evals']} new evaluations, {rec['seconds']:.0f} s)", file=sys.stderr, flush=True)


def measured_rv32(schemes: list[list[list[int]]], space: SearchSpace) -> dict[str, float]:
    """Exact RV32IM instructions of one inference of each scheme's build (micoc's portable
    runtime, `micoc compile --target rv32` + `micoc run --report`), as a fraction of w8a8;
    cached in CACHE/rv32.json (instruction counts do not depend on the weights' values
    much, so PTQ builds stand in for the QAT ones)."""
    import subprocess
    import tempfile

    from examples import data as D

    path = CACHE / "rv32.json"
    done = json.loads(path.read_text()) if path.exists() else {}
    todo = [s for s in [[[8, 8]] * space.n_layers, *schemes] if fmt_scheme(s) not in done]
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        x, _ = D.mnist("train")
        np.savez(t / "calib.npz", x=x[:256])
        np.savez(t / "x.npz", x=x[:1])
        for s in todo:
            (t / "s.json").write_text(json.dumps({n: {"w": w, "a": a} for n, (w, a) in zip(space.layers, s, strict=True)}))
            cmd = [sys.executable, "-m", "micoc"]
            subprocess.run([*cmd, "compile", str(ROOT / "examples" / "lenet5.onnx"), "--target", "rv32", "--calib",
                            str(t / "calib.npz"), "--scheme", str(t / "s.json"), "-o", str(t / "b")], check=True,
                           capture_output=True)
            subprocess.run([*cmd, "run", str(t / "b"), "--input", str(t / "x.npz"), "-o", str(t / "y.npz"),
                            "--report", str(t / "r.json")], check=True, capture_output=True)
            done[fmt_scheme(s)] = json.loads((t / "r.json").read_text())["instructions"]
            path.write_text(json.dumps(done, indent=1))
    ref = done[fmt_scheme([[8, 8]] * space.n_layers)]
    return {k: v / ref for k, v in done.items()}


def fmt_scheme(s: list[list[int]]) -> str:
    return " ".join(f"w{w}a{a}" for w, a in s)


def table(runs: dict, cs, ev, budget: float, config: str, epochs: float, seeds: list[int],  # type: ignore[no-untyped-def]
          measure: bool = False) -> str:
    secs = [json.loads(line).get("seconds") for line in ev.path.read_text().splitlines()] if ev.path.exists() else []
    secs = [s for s in secs if s]
    lo = float(cs.values("latency", cs.space.uniform(1)[None])[0] / cs.reference("latency"))
    other = "high" if config.endswith(":bare") else "high:bare"
    lines = [
        "## Mixed-precision search, Setting B (QAT, vexii latency)",
        "",
        "`nice -n 5 python bench/search_setting_b.py` (issue 6, Setting B). LeNet-5 / MNIST (3000 train / 1000",
        "validation / 1000 test, as Setting A), qtypes {1,2,4,8} for the weights and activations of every layer,",
        f"`--eval qat` ({epochs:g} epoch of Adam, lr 1e-3, batch 64, through the torch executor from the float",
        "weights, seeded per scheme, then recalibrated), budget: vexii latency <= "
        f"{budget} of INT8 with `--config {config}`, 32 evaluations per search, seeds {seeds[0]}..{seeds[-1]}.",
        "Objective: validation top-1; the winner's test top-1 is reported, never used to choose. `uniform`",
        "evaluates every feasible uniform (w, a) pair (deterministic: one run) = the best uniform scheme.",
        "Predicted latency = the winner's latency under the constraint's model, as a fraction of INT8;",
        f"in brackets the same scheme under the other vexii GEMM proxy (`--config {other}`). `rv32` after a",
        "winner: exact RV32IM instructions of its build with micoc's portable runtime (what `--target vexii`",
        "runs today; `micoc compile --target rv32`, `micoc run --report`) as a fraction of w8a8's.",
        "",
    ]
    if config.endswith(":bare"):
        lines += [
            "**Budget and model, plainly:** under micoc's default vexii model (`layer`: whole-layer proxies) the",
            f"all-1-bit LeNet-5 costs 0.485 of INT8, so latency <= {budget} is infeasible there; this run uses the",
            f"bare-kernel proxy (`--config {config}`), under which all-1-bit costs {lo:.3f} of INT8, so the budget",
            "leaves a narrow band: conv1/conv2 must stay at 1-2 bits, the fc layers are nearly free. The bare",
            "proxy overstates micoc's low-bit speedups (see \"vexii latency model\" in docs/architecture.md), so",
            "these winners are faster on paper than they would be in micoc's deployed code.",
            "",
        ]
    else:
        lines += [f"All-1-bit costs {lo:.3f} of INT8 under this model.", ""]
    lines += [
        "| searcher | runs | median val top-1 | mean val top-1 | median test top-1 of winner | "
        f"median predicted latency/INT8 ({config}) [{other}] | winners |",
        "|---|---|---|---|---|---|---|",
    ]
    by = runs
    rv32 = measured_rv32([r["scheme"] for r in runs.values() if r["scheme"]], cs.space) if measure else {}
    for name in ("mico", "random", "greedy", "uniform"):
        rs = [by[(name, s)] for s in seeds if (name, s) in by]
        if not rs:
            continue
        ok = [r for r in rs if r["best_val"] is not None]
        if not ok:
            lines.append(f"| {name} | {len(rs)} | no feasible winner | | | | |")
            continue
        vals = [r["best_val"] for r in ok]
        winners = "; ".join(f"s{r['seed']}: {fmt_scheme(r['scheme'])} (val {r['best_val']:.3f}, test {r['test']:.3f}"
                            + (f", rv32 {rv32[fmt_scheme(r['scheme'])]:.2f}" if rv32 else "") + ")"
                            for r in ok)
        lines.append(f"| {name} | {len(rs)} | {np.median(vals):.4f} | {np.mean(vals):.4f} | "
                     f"{np.median([r['test'] for r in ok]):.4f} | {np.median([r['latency'] for r in ok]):.3f} "
                     f"[{np.median([r['latency_other_model'] for r in ok]):.3f}] | {winners} |")
    if all(("mico", s) in by for s in seeds):
        for other_name in ("random", "greedy"):
            pairs = [(by[("mico", s)]["best_val"], by[(other_name, s)]["best_val"]) for s in seeds
                     if (other_name, s) in by]
            if pairs:
                w = sum(a > b for a, b in pairs)
                t = sum(a == b for a, b in pairs)
                lines += ["", f"Paired by seed, mico vs {other_name}: better on {w}, tied on {t}, worse on "
                              f"{len(pairs) - w - t} of {len(pairs)} seeds (validation)."]
    same = [s for s in seeds if ("greedy", s) in by and ("random", s) in by
            and by[("greedy", s)]["scheme"] == by[("random", s)]["scheme"]]
    if same:
        lines += ["", f"greedy's winner is random's (same seed) in {len(same)} of {len(seeds)} seeds: its probes one "
                      "step below all-8 cannot see the cliff at a 1-bit input (conv1 at a1: top-1 0.10, chance), its "
                      "lowered scheme and that scheme's neighbours land there, and its remaining evaluations are the "
                      "first of the random feasible schemes `random` draws with that seed (so it finds random's "
                      "winner unless that one came late)."]
    if rv32:
        win = [rv32[fmt_scheme(r["scheme"])] for r in runs.values() if r["scheme"] and r["searcher"] != "uniform"]
        lines += ["", f"**In micoc's deployed code** (rv32 column) the searched winners run at {min(win):.2f}-"
                      f"{max(win):.2f} of INT8's instructions (the budget promised <= {budget}), and all-1-bit at "
                      f"{rv32[fmt_scheme([[1, 1]] * cs.space.n_layers)]:.2f}: the portable runtime's conv1 (cin = 1) "
                      "is slower at 2-bit than at 8-bit input (1.6x; docs/architecture.md, vexii latency model), which "
                      "neither vexii proxy sees. Under the default `layer` model no budget <= 0.6 is usable either: "
                      "every feasible scheme (exhaustive over all 4^10) has 1-bit inputs to conv1 and conv2, and the "
                      "two schemes with 1-bit conv1/conv2 inputs we QAT-scored (w2a1 w1a1 w4a4 w8a8 w8a8, w8a1 w8a1 w8a8 w8a8 w8a8) reached "
                      "0.10 (chance)."]
    lines += ["", f"One QAT evaluation (fine-tune + validation + test): median {np.median(secs):.1f} s over "
                  f"{len(secs)} distinct schemes (cached and shared by all searches).", "",
              f"Machine: {machine()}. Shared with other jobs (2 CPUs), so seconds are inflated."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--budget", type=float, default=0.35)
    ap.add_argument("--config", default="high:bare", help="vexii cost model, e.g. high (layer) or high:bare")
    ap.add_argument("--qat-epochs", type=float, default=1.0)
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--searchers", default="mico,random,greedy,uniform")
    ap.add_argument("--table-only", action="store_true")
    ap.add_argument("--measure", action="store_true", help="also measure each winner's rv32 instructions")
    ap.add_argument("--commit", default="", help="the micoc commit the runs used (recorded in the section)")
    ap.add_argument("--write", action="store_true", help="record the section in BENCHMARKS.md")
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    g, space, cs, ev = setup(args.budget, args.config, args.qat_epochs)
    cs.check_achievable()
    key = run_key(args.budget, args.config, args.qat_epochs)
    if not args.table_only:
        do_runs(g, space, cs, ev, key, args.searchers.split(","), seeds)
    text = table(load_runs(key), cs, ev, args.budget, args.config, args.qat_epochs, seeds, args.measure)
    if args.commit:
        text = text.replace("\nMachine: ", f"\nRuns and rv32 builds with micoc at {args.commit}. Machine: ", 1)
    print(text)
    if args.write:
        write_section(text)
