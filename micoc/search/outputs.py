"""What `micoc search -o DIR` writes: best_scheme.json (usable by `micoc quantize
--scheme` / `compile --scheme`), pareto.csv and pareto.png (score vs the
primary constraint), report.json; the journal is written during the search."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from micoc.scheme import save_scheme
from micoc.search.constraints import ConstraintSet
from micoc.search.engine import SearchResult

__all__ = ["report", "write_outputs"]


def report(result: SearchResult, cs: ConstraintSet, seconds: float | None = None) -> dict[str, Any]:
    best = result.best
    return {
        "stopped": result.stopped,
        "evaluations": len(result.records),
        "replayed": sum(r.replayed for r in result.records),
        "seconds": seconds,
        "best": None if best is None else {
            "index": best.index, "scheme": {n: {"w": w, "a": a} for n, (w, a) in result.best_scheme.items()},  # type: ignore[union-attr]
            "val_score": best.score, "test_score": result.test_score, "of_int8": best.of_int8,
            "budget_ratio": best.budget_ratio,
        },
        "constraints": cs.describe(),
        "pareto": [{"index": r.index, "score": r.score, **r.of_int8} for r in result.pareto()],
        "settings": result.settings,
    }


def write_outputs(result: SearchResult, cs: ConstraintSet, outdir: str | Path,
                  seconds: float | None = None) -> dict[str, Path]:
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    if result.best_scheme is not None:
        files["scheme"] = out / "best_scheme.json"
        save_scheme(result.best_scheme, files["scheme"])
    metric = cs.primary.metric
    files["pareto_csv"] = out / "pareto.csv"
    front = {r.index for r in result.pareto()}
    with files["pareto_csv"].open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["index", "score", f"{metric}_of_int8", "budget_ratio", "feasible", "pareto", "scheme"])
        for r in result.records:
            w.writerow([r.index, f"{r.score:.6f}", f"{r.of_int8[metric]:.6f}", f"{r.budget_ratio:.6f}",
                        int(r.feasible), int(r.index in front),
                        " ".join(f"w{a}a{b}" for a, b in r.scheme.tolist())])
    try:
        files["pareto_png"] = out / "pareto.png"
        _plot(result, cs, files["pareto_png"])
    except ImportError:  # matplotlib is optional (micoc[dist])
        files.pop("pareto_png")
    files["report"] = out / "report.json"
    files["report"].write_text(json.dumps(report(result, cs, seconds), indent=2, default=str) + "\n")
    return files


def _plot(result: SearchResult, cs: ConstraintSet, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric = cs.primary.metric
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    xs = [r.of_int8[metric] for r in result.records]
    ys = [r.score for r in result.records]
    colors = ["tab:blue" if r.feasible else "tab:gray" for r in result.records]
    ax.scatter(xs, ys, c=colors, s=14, label="evaluated")
    front = result.pareto()
    ax.step([r.of_int8[metric] for r in front], [r.score for r in front], where="post", color="tab:red",
            label="Pareto front")
    budget = cs.budget(cs.primary) / cs.reference(metric)
    ax.axvline(budget, color="k", ls="--", lw=1, label=f"budget {cs.primary.text}")
    if result.best is not None:
        ax.scatter([result.best.of_int8[metric]], [result.best.score], marker="*", s=160, color="tab:orange",
                   label="best", zorder=3)
    ax.set_xlabel(f"{metric} (fraction of INT8)")
    ax.set_ylabel("validation score")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
