"""Regret of the mixed-precision searchers (issue 6, Setting A).

LeNet-5 / MNIST (3000 train / 1000 validation / 1000 test), qtypes 2..8,
PTQ (torch executor = the deployed integer numerics), BOPs <= 0.3 of INT8,
32 evaluations per search. Regret = validation accuracy of the best of 2000
random feasible schemes (the oracle, computed once) minus the searcher's
best validation accuracy. Run: `python bench/search_regret.py [--seeds N]`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from examples.data import mnist  # noqa: E402
from micoc.frontends.onnx import import_onnx  # noqa: E402
from micoc.passes import PassManager  # noqa: E402
from micoc.search.constraints import constraints_from_text  # noqa: E402
from micoc.search.evaluators import EvalData, Evaluator  # noqa: E402
from micoc.search.space import SearchSpace  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CACHE = Path("/tmp/micoc_search_bench")
N_ORACLE = 2000
EVALS = 32


def setup():  # type: ignore[no-untyped-def]
    torch.set_num_threads(1)
    g = import_onnx(ROOT / "examples" / "lenet5.onnx")
    PassManager.from_string("canonicalize").run(g)
    space = SearchSpace.for_graph(g, range(2, 9))
    cs = constraints_from_text(g, "bops", space, ["bops=0.3"])
    (xv, yv), (xt, yt), (xtr, ytr) = mnist("validation"), mnist("test"), mnist("train")
    data = EvalData.from_arrays(xv, yv, x_test=xt, y_test=yt, x_train=xtr, y_train=ytr)
    return g, space, cs, Evaluator(g, space, data)


def random_feasible(space: SearchSpace, cs, n: int, seed: int) -> np.ndarray:  # type: ignore[no-untyped-def]
    """n distinct feasible schemes, uniform over the feasible set (rejection sampling)."""
    rng = np.random.default_rng(seed)
    out: dict[bytes, np.ndarray] = {}
    while len(out) < n:
        cand = space.random(rng, 4096)
        for s in cand[cs.feasible(cand)]:
            out.setdefault(space.key(s), s)
            if len(out) == n:
                break
    return np.stack(list(out.values()))


def oracle(space: SearchSpace, cs, ev: Evaluator) -> dict:  # type: ignore[no-untyped-def]
    CACHE.mkdir(exist_ok=True)
    path = CACHE / "oracle.jsonl"
    schemes = random_feasible(space, cs, N_ORACLE, seed=12345)
    done = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    t0 = time.perf_counter()
    with path.open("a") as f:
        for i in range(len(done), N_ORACLE):
            acc = ev(schemes[i])
            rec = {"i": i, "scheme": schemes[i].tolist(), "val": acc}
            f.write(json.dumps(rec) + "\n")
            f.flush()
            done.append(rec)
            if i % 100 == 0:
                print(f"oracle {i}/{N_ORACLE} best {max(r['val'] for r in done):.4f} "
                      f"{time.perf_counter() - t0:.0f}s", file=sys.stderr)
    best = max(done, key=lambda r: r["val"])
    return {"best_val": best["val"], "best_scheme": best["scheme"], "n": len(done),
            "median_val": float(np.median([r["val"] for r in done]))}


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--oracle-only", action="store_true")
    ap.add_argument("--seeds", type=int, default=20)
    args = ap.parse_args()
    g, space, cs, ev = setup()
    print(oracle(space, cs, ev))
