"""Hardware budgets: `bops=0.3`, `latency=0.5`, `weights=20KB`, `latency=1.5e6cyc`.

A plain number is a fraction of the all-8-bit scheme's value; a number with a
unit is absolute. Every check is vectorized over candidate batches [n, L, 2]
(the genetic sampler prices ~1000 candidates per iteration, the repair step
many more), through `batch_features` and the targets' `predict_batch`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from micoc.analysis import batch_features, layer_table
from micoc.errors import UsageError
from micoc.ir.graph import Graph
from micoc.search.space import SearchSpace

__all__ = ["METRICS", "Constraint", "ConstraintSet", "parse_constraint", "repair"]

METRICS = ("bops", "latency", "weights", "arena")

_UNITS: dict[str, dict[str, float]] = {
    "weights": {"b": 1, "kb": 1e3, "kib": 1024, "mb": 1e6, "mib": 1024**2},
    "latency": {"cyc": 1, "cycles": 1, "kcyc": 1e3, "mcyc": 1e6, "gcyc": 1e9},
    "bops": {"bops": 1, "kbops": 1e3, "mbops": 1e6, "gbops": 1e9},
}
_SPEC = re.compile(r"^\s*([a-z_]+)\s*(<=|=)\s*([0-9.eE+-]+)\s*([a-zA-Z%]*)\s*$")


@dataclass(frozen=True)
class Constraint:
    """One budget as parsed: metric, and either a fraction of INT8 or an absolute limit."""

    metric: str
    value: float
    absolute: bool
    text: str


def parse_constraint(text: str) -> Constraint:
    m = _SPEC.match(text)
    if not m:
        raise UsageError(f"bad constraint '{text}': expected METRIC=VALUE, e.g. bops=0.3, latency=0.5, "
                         "weights=20KB, latency=1.5e6cyc")
    metric, _, num, unit = m.groups()
    if metric not in METRICS:
        raise UsageError(f"bad constraint '{text}': unknown metric '{metric}' (expected one of "
                         f"{', '.join(METRICS)})")
    if metric == "arena":
        raise UsageError("constraint 'arena' (peak activation RAM) is not yet supported: it needs the "
                         "C backend's buffer planner")
    try:
        value = float(num)
    except ValueError:
        raise UsageError(f"bad constraint '{text}': '{num}' is not a number") from None
    if not np.isfinite(value) or value <= 0:
        raise UsageError(f"bad constraint '{text}': the budget must be a positive number")
    if unit == "%":
        return Constraint(metric, value / 100.0, False, text)
    if not unit:
        return Constraint(metric, value, False, text)
    units = _UNITS[metric]
    if unit.lower() not in units:
        raise UsageError(f"bad constraint '{text}': unknown unit '{unit}' for {metric} "
                         f"(expected one of {', '.join(units)}, or no unit for a fraction of INT8)")
    return Constraint(metric, value * units[unit.lower()], True, text)


@dataclass(frozen=True)
class ConstraintSet:
    """Constraints bound to a graph and target. The first one is primary: the
    genetic sampler aims at a band just under its budget; all must hold."""

    graph: Graph
    target: str
    space: SearchSpace
    constraints: tuple[Constraint, ...]
    config: str | None = None
    _models: dict[str, object] = field(default_factory=dict, repr=False, compare=False)
    _ref: dict[str, float] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.constraints:
            raise UsageError("give at least one constraint, e.g. --constraint bops=0.3")
        for c in self.constraints:
            self.values(c.metric, self.space.uniform(8)[None])  # fail early (e.g. latency on host)

    @property
    def primary(self) -> Constraint:
        return self.constraints[0]

    def values(self, metric: str, schemes: np.ndarray) -> np.ndarray:
        """Absolute metric values [n] of schemes [n, L, 2]."""
        s = np.asarray(schemes)
        if metric == "bops":
            return batch_features(layer_table(self.graph), s)["BOPs"].sum(axis=1)
        if metric == "weights":
            return batch_features(layer_table(self.graph), s)["weight_bytes"].sum(axis=1)
        if metric == "latency":
            if self.target not in ("vexii", "bitfusion"):
                raise UsageError(f"a latency constraint needs a target with a cost model (vexii, "
                                 f"bitfusion), not '{self.target}'; use bops or weights")
            if "latency" not in self._models:
                from micoc.cost.model import make_model

                self._models["latency"] = make_model(self.target, self.graph, self.config)
            return self._models["latency"].predict_batch(s)  # type: ignore[attr-defined]
        raise UsageError(f"unknown metric '{metric}'")

    def reference(self, metric: str) -> float:
        """The metric at all-8-bit (every layer, pins ignored: the user's yardstick)."""
        if metric not in self._ref:
            ref = np.full((1, self.space.n_layers, 2), 8, dtype=np.int64)
            self._ref[metric] = float(self.values(metric, ref)[0])
        return self._ref[metric]

    def budget(self, c: Constraint) -> float:
        return c.value if c.absolute else c.value * self.reference(c.metric)

    def fractions(self, schemes: np.ndarray) -> np.ndarray:
        """[n, C]: each constraint's value as a fraction of its budget (<= 1 is feasible)."""
        s = np.asarray(schemes)
        if s.ndim == 2:
            s = s[None]
        cols = [self.values(c.metric, s) / self.budget(c) for c in self.constraints]
        return np.stack(cols, axis=1)

    def feasible(self, schemes: np.ndarray) -> np.ndarray:
        # A hair of tolerance so the float sum of an exactly-on-budget scheme counts.
        return (self.fractions(schemes) <= 1.0 + 1e-12).all(axis=1)

    def of_int8(self, schemes: np.ndarray) -> dict[str, np.ndarray]:
        """Each metric as a fraction of the all-8-bit value (reports, Pareto front)."""
        s = np.asarray(schemes)
        if s.ndim == 2:
            s = s[None]
        return {c.metric: self.values(c.metric, s) / self.reference(c.metric) for c in self.constraints}

    def check_achievable(self) -> None:
        """A clear error when not even the all-minimum scheme fits."""
        low = self.space.min_scheme()[None]
        frac = self.fractions(low)[0]
        bad = [(c, f) for c, f in zip(self.constraints, frac, strict=True) if f > 1.0 + 1e-12]
        if bad:
            parts = []
            for c, _ in bad:
                smallest = float(self.values(c.metric, low)[0]) / self.reference(c.metric)
                parts.append(f"'{c.text}': the smallest achievable {c.metric} is {smallest:.4g} of INT8 "
                             f"(all layers at {self.space.qtypes[0]} bits"
                             + (f", first/last pinned at {self.space.pin_first_last}" if self.space.pin_first_last
                                else "") + ")")
            raise UsageError("infeasible budget: " + "; ".join(parts))

    def describe(self) -> list[dict[str, object]]:
        return [{"text": c.text, "metric": c.metric, "budget": self.budget(c),
                 "reference_int8": self.reference(c.metric)} for c in self.constraints]


def repair(cs: ConstraintSet, schemes: np.ndarray, max_rounds: int = 256) -> np.ndarray:
    """Make infeasible schemes feasible by lowering, one qtype step at a time,
    the free gene whose lowering cuts the worst constraint ratio most (the
    most expensive layer). Feasible schemes are returned unchanged. Always
    terminates: each round lowers a gene or finds the scheme at the minimum."""
    space = cs.space
    out = space.normalize(schemes)
    genes = [tuple(g) for g in np.argwhere(space.free_mask)]
    for _ in range(max_rounds):
        frac = cs.fractions(out)
        bad = np.flatnonzero((frac > 1.0 + 1e-12).any(axis=1))
        if bad.size == 0 or not genes:
            break
        cur = out[bad]
        # Every one-step lowering of every bad scheme: [m, G, L, 2].
        nb = np.repeat(cur[:, None], len(genes), axis=1)
        for gi, (i, j) in enumerate(genes):
            nb[:, gi, i, j] = space.step(cur[:, i, j], -1)
            if space.tie_wa:
                nb[:, gi, i, 1] = nb[:, gi, i, 0]
        m, g = nb.shape[:2]
        nfrac = cs.fractions(nb.reshape(m * g, space.n_layers, 2)).reshape(m, g, -1)
        worst = np.maximum(nfrac, 0).max(axis=2)
        moved = (nb != cur[:, None]).any(axis=(2, 3))
        worst[~moved] = np.inf
        best = worst.argmin(axis=1)
        stuck = ~np.isfinite(worst[np.arange(m), best])
        out[bad[~stuck]] = nb[np.arange(m)[~stuck], best[~stuck]]
        if stuck.all():
            break
    return out


def constraints_from_text(graph: Graph, target: str, space: SearchSpace, texts: Sequence[str],
                          config: str | None = None) -> ConstraintSet:
    return ConstraintSet(graph, target, space, tuple(parse_constraint(t) for t in texts), config)
