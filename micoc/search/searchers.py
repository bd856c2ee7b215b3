"""Searchers: propose schemes (`ask`), learn from their scores (`tell`).

The ask/tell protocol is what makes resume and distribution exact: a
searcher's proposals depend only on its seed and on the (scheme, score)
pairs it was told, in order. The driver can therefore replay journaled
results into a fresh searcher and continue exactly where a killed run
stopped, and it can evaluate a proposed batch on any number of workers.

Every proposal is feasible (the driver asserts it), distinct from all
earlier proposals, and inside the space. `ask` returning an empty batch
means the searcher has nothing new to offer (e.g. the space is exhausted).

Built in: `mico` (the MiCo loop, improved; see MicoSearcher), `random`,
`uniform`, `greedy`. More come from the `micoc.searchers` entry points: a
class taking the same constructor arguments.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

import numpy as np

from micoc.errors import UsageError
from micoc.plugins import load_entry_points
from micoc.search.constraints import ConstraintSet, repair
from micoc.search.space import SearchSpace

__all__ = ["SEARCHERS", "Searcher", "available_searchers", "make_searcher", "register_searcher"]


class Searcher(ABC):
    name = ""

    def __init__(self, space: SearchSpace, constraints: ConstraintSet, *, seed: int = 0,
                 evals: int = 32, batch: int = 1, **options: object) -> None:
        if options:
            raise UsageError(f"searcher '{self.name}' has no option(s) {', '.join(sorted(options))}")
        self.space = space
        self.cs = constraints
        self.seed = seed
        self.evals = evals
        self.batch = max(1, batch)
        self.rng = np.random.default_rng(seed)
        self.X: list[np.ndarray] = []  # told schemes, in order
        self.y: list[float] = []
        self.seen: set[bytes] = set()  # everything proposed (told or pending)

    @abstractmethod
    def ask(self, k: int) -> np.ndarray:
        """Up to k new feasible schemes [m, L, 2], m <= k (0: nothing left)."""

    def tell(self, schemes: np.ndarray, scores: list[float]) -> None:
        for s, v in zip(schemes, scores, strict=True):
            self.X.append(np.asarray(s))
            self.y.append(float(v))
            self.seen.add(self.space.key(s))

    # -- helpers shared by the searchers ----------------------------------------------
    def _take(self, cands: np.ndarray, k: int) -> np.ndarray:
        """The first k feasible, unseen, distinct schemes of `cands`, marked as seen."""
        out = []
        if len(cands):
            ok = self.cs.feasible(cands)
            for s, f in zip(cands, ok, strict=True):
                key = self.space.key(s)
                if f and key not in self.seen:
                    self.seen.add(key)
                    out.append(s)
                    if len(out) == k:
                        break
        return np.stack(out) if out else np.empty((0, self.space.n_layers, 2), dtype=np.int64)

    def _random_feasible(self, k: int, tries: int = 64) -> np.ndarray:
        """Uniformly random feasible unseen schemes (rejection sampling; when the
        budget is so tight that rejection fails, random schemes repaired)."""
        got: list[np.ndarray] = []
        for t in range(tries):
            cand = self.space.random(self.rng, 2048)
            if t >= tries // 2:
                cand = repair(self.cs, cand)
            new = self._take(cand, k - len(got))
            got.extend(new)
            if len(got) >= k:
                break
        return np.stack(got) if got else np.empty((0, self.space.n_layers, 2), dtype=np.int64)

    def best_uniform(self) -> np.ndarray:
        """The most expensive uniform scheme that fits (w = a, else the best (w, a) pair)."""
        q = self.space.qtypes
        pairs = [(w, a) for w in q for a in q] if not self.space.tie_wa else [(b, b) for b in q]
        cands = np.stack([self.space.uniform(p) for p in pairs])
        ok = self.cs.feasible(cands)
        if not ok.any():
            return repair(self.cs, self.space.min_scheme()[None])[0]
        cost = self.cs.fractions(cands)[:, 0]
        # Prefer equal bits (w == a) at equal cost, then the higher minimum.
        order = sorted(np.flatnonzero(ok), key=lambda i: (-cost[i], pairs[i][0] != pairs[i][1],
                                                           -min(pairs[i])))
        return cands[order[0]]


SEARCHERS: dict[str, type[Searcher]] = {}
_eps_loaded = False


def register_searcher(cls: type[Searcher]) -> type[Searcher]:
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no searcher name")
    SEARCHERS[cls.name] = cls
    return cls


def available_searchers() -> dict[str, type[Searcher]]:
    global _eps_loaded
    if not _eps_loaded:
        _eps_loaded = True
        load_entry_points("micoc.searchers", "searcher", _register_plugin)
    return SEARCHERS


def _register_plugin(obj: object) -> None:
    if not (isinstance(obj, type) and issubclass(obj, Searcher)):
        raise TypeError(f"{obj!r} is not a Searcher subclass")
    register_searcher(obj)


def make_searcher(name: str, space: SearchSpace, constraints: ConstraintSet, **kwargs: object) -> Searcher:
    found = available_searchers()
    if name not in found:
        raise UsageError(f"unknown searcher '{name}' (available: {', '.join(sorted(found))})")
    return found[name](space, constraints, **kwargs)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------
# Baselines


@register_searcher
class RandomSearcher(Searcher):
    name = "random"

    def ask(self, k: int) -> np.ndarray:
        return self._random_feasible(k)


@register_searcher
class UniformSearcher(Searcher):
    """Every uniform (w, a) scheme that fits, most expensive first."""

    name = "uniform"

    def ask(self, k: int) -> np.ndarray:
        q = self.space.qtypes
        pairs = [(w, a) for w in q for a in q] if not self.space.tie_wa else [(b, b) for b in q]
        cands = np.stack([self.space.uniform(p) for p in pairs])
        cost = self.cs.fractions(cands)[:, 0]
        return self._take(cands[np.argsort(-cost, kind="stable")], k)


@register_searcher
class GreedySearcher(Searcher):
    """Probe each layer group one step below the all-max scheme (sensitivity),
    then lower groups greedily, least accuracy lost per cost saved first, until
    the budget holds; then evaluate that scheme and its one-step variants."""

    name = "greedy"

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._probes: np.ndarray | None = None
        self._final: np.ndarray | None = None

    def ask(self, k: int) -> np.ndarray:
        top = self.space.max_scheme()
        if self._probes is None:
            probes = [top]
            for grp in self.space.groups:
                s = top.copy()
                for i, j in grp:
                    s[i, j] = self.space.step(s[i, j], -1)
                probes.append(self.space.normalize(s))
            self._probes = np.stack(probes)
        # Probes are sensitivity measurements: they need not fit the budget, so
        # they are the one exception to "feasible only" (marked in `pending`).
        pending = [p for p in self._probes if self.space.key(p) not in self.seen]
        if pending:
            out = np.stack(pending[:k])
            for p in out:
                self.seen.add(self.space.key(p))
            return out
        if len(self.y) < len(self._probes):
            return np.empty((0, self.space.n_layers, 2), dtype=np.int64)
        if self._final is None:
            self._final = self._lower(top)
        out = self._take(self._final[None], k)
        if len(out) < k:  # after the final scheme: its one-step variants, then random
            s = self._final
            nb = []
            for grp in self.space.groups:
                for d in (1, -1):
                    v = s.copy()
                    for i, j in grp:
                        v[i, j] = self.space.step(v[i, j], d)
                    nb.append(self.space.normalize(v))
            more = self._take(np.stack(nb), k - len(out))
            out = np.concatenate([out, more])
            if len(out) < k:
                out = np.concatenate([out, self._random_feasible(k - len(out))])
        return out

    def _lower(self, top: np.ndarray) -> np.ndarray:
        base = self.y[0]
        drop = {gi: max(base - self.y[gi + 1], 0.0) for gi in range(len(self.space.groups))}
        s = top.copy()
        while not self.cs.feasible(s[None])[0]:
            best, best_val = None, np.inf
            cur = self.cs.fractions(s[None])[0, 0]
            for gi, grp in enumerate(self.space.groups):
                v = s.copy()
                for i, j in grp:
                    v[i, j] = self.space.step(v[i, j], -1)
                v = self.space.normalize(v)
                saved = cur - self.cs.fractions(v[None])[0, 0]
                if saved <= 0:
                    continue
                val = (drop[gi] + 1e-6) / saved
                if val < best_val:
                    best, best_val = v, val
            if best is None:
                return repair(self.cs, s[None])[0]
            s = best
        return s


# ---------------------------------------------------------------------------
# MiCo


@register_searcher
class MicoSearcher(Searcher):
    """MiCo's surrogate-guided genetic search, with its known faults fixed.

    Initial samples: the best-fitting uniform scheme, then that scheme with
    one layer group perturbed at a time: its weight bits one step up and its
    activation bits one step down (the trade that keeps a layer's cost about
    equal, so it stays near the budget where the optimum is, and shows which
    of the two the layer needs), else the opposite trade, else both one step
    down (always feasible); deduplicated, stopping when the list runs out
    (never waits for samples that do not exist). Then, per evaluation batch:
    fit the surrogate on all evaluated schemes (an additive noise-power
    prior plus a random forest on its residuals, see `_surrogate`); breed ~1000 children of
    the best ones (uniform crossover per layer, +-1-step mutation, first/last
    layer raised to the top with some probability) plus ~500 local moves
    around the three best (one gene up, another -- half the time the same
    layer's other gene -- down); REPAIR infeasible candidates by lowering
    their most expensive gene, then FILL them: raise random genes one step
    while the budget still holds (accuracy grows with bits, so the optimum
    sits at the budget); keep the candidates inside a band just under the
    budget (its width widens over the run), and evaluate the unseen ones
    with the highest mean + beta * tree spread (beta shrinks to 0 over the
    run); a batch is kept diverse by skipping candidates one gene away from
    a pick.
    """

    name = "mico"

    def __init__(self, *args: object, n_init: int | None = None, population: int = 1000,
                 parents: int = 8, p_mutate: float = 0.15, p_keep_ends: float = 0.3,
                 band: tuple[float, float] = (0.05, 0.3), beta: float = 0.3, trees: int = 32,
                 **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.n_init = n_init if n_init is not None else min(len(self.space.groups) + 1,
                                                            max(2, self.evals // 2))
        self.population = population
        self.parents = parents
        self.p_mutate = p_mutate
        self.p_keep_ends = p_keep_ends
        self.band = band
        self.beta = beta
        self.trees = trees
        self._init: list[np.ndarray] | None = None  # built at the first ask

    def _initial(self) -> list[np.ndarray]:
        base = self.best_uniform()
        out = [base]
        for grp in self.space.groups:
            opts = []
            for dw, da in ((1, -1), (-1, 1), (-1, -1)):
                s = base.copy()
                for i, j in grp:
                    s[i, j] = self.space.step(s[i, j], dw if j == 0 else da)
                opts.append(self.space.normalize(s))
            ok = self.cs.feasible(np.stack(opts))
            out.append(next((s for s, f in zip(opts, ok, strict=True) if f and not np.array_equal(s, base)),
                            opts[-1]))
        # Past n_init = groups + 1 (a larger n_init): the other one-group moves.
        for d in (-1, 1):
            for grp in self.space.groups:
                s = base.copy()
                for i, j in grp:
                    s[i, j] = self.space.step(s[i, j], d)
                out.append(self.space.normalize(s))
        return out

    def ask(self, k: int) -> np.ndarray:
        if self._init is None:
            self._init = self._initial()
        out = np.empty((0, self.space.n_layers, 2), dtype=np.int64)
        if len(self.seen) < self.n_init:
            out = self._take(np.stack(self._init), min(k, self.n_init - len(self.seen)))
        if len(out) < k:
            # The initial list is used up (or was shorter than asked: never wait
            # for samples that do not exist). A surrogate needs two scores.
            more = self._random_feasible(k - len(out)) if len(self.y) < 2 else self._surrogate_pick(k - len(out))
            out = np.concatenate([out, more])
        return out

    # -- the surrogate loop ------------------------------------------------------------
    def _features(self, s: np.ndarray) -> np.ndarray:
        s = np.asarray(s, dtype=np.float64)
        flat = np.log2(s.reshape(len(s), -1))
        return np.concatenate([flat, self.cs.fractions(s)[:, :1]], axis=1)

    def _progress(self) -> float:
        return min(1.0, max(0.0, (len(self.y) - self.n_init) / max(1, self.evals - self.n_init)))

    def _fill(self, s: np.ndarray, passes: int = 3) -> np.ndarray:
        """Raise random free genes one step while every budget still holds."""
        space = self.space
        genes = np.argwhere(space.free_mask)
        s = s.copy()
        for _ in range(passes):
            for gi in self.rng.permutation(len(genes)):
                i, j = genes[gi]
                up = s.copy()
                up[:, i, j] = space.step(s[:, i, j], 1)
                up = space.normalize(up)
                ok = self.cs.feasible(up)
                s[ok] = up[ok]
        return s

    def _local(self, n: int) -> np.ndarray:
        """One gene up and one down around the three best schemes (half the time
        the down gene is the same layer's other one: a weight/activation trade)."""
        space, rng = self.space, self.rng
        X, y = np.stack(self.X), np.asarray(self.y)
        top = X[np.argsort(-y, kind="stable")[:3]]
        genes = np.argwhere(space.free_mask)
        c = top[rng.integers(0, len(top), n)].copy()
        a = genes[rng.integers(0, len(genes), n)]
        b = genes[rng.integers(0, len(genes), n)]
        same = rng.random(n) < 0.5
        b[same] = np.stack([a[same, 0], 1 - a[same, 1]], axis=1)
        r = np.arange(n)
        c[r, a[:, 0], a[:, 1]] = space.step(c[r, a[:, 0], a[:, 1]], 1)
        c[r, b[:, 0], b[:, 1]] = space.step(c[r, b[:, 0], b[:, 1]], -1)
        return space.normalize(c)

    def _breed(self) -> np.ndarray:
        space, rng = self.space, self.rng
        X, y = np.stack(self.X), np.asarray(self.y)
        order = np.argsort(-y, kind="stable")[: self.parents]
        par = X[order]
        # Rank-weighted parent choice: better schemes breed more.
        w = 1.0 / (np.arange(len(par)) + 1.0)
        w /= w.sum()
        n = self.population
        a = par[rng.choice(len(par), n, p=w)]
        b = par[rng.choice(len(par), n, p=w)]
        take_a = rng.random((n, space.n_layers, 1)) < 0.5  # per layer: keeps (w, a) pairs together
        child = np.where(take_a, a, b)
        mut = (rng.random(child.shape) < self.p_mutate) & space.free_mask[None]
        delta = np.where(rng.random(child.shape) < 0.5, -1, 1)
        q = np.asarray(space.qtypes)
        idx = np.clip(np.searchsorted(q, child) + delta * mut, 0, len(q) - 1)
        child = q[idx]
        ends = rng.random(n) < self.p_keep_ends
        for i in {0, space.n_layers - 1}:
            child[ends, i, :] = np.where(space.free_mask[i], q[-1], child[ends, i, :])
        child = np.concatenate([space.normalize(child), self._local(n // 2)])
        child = self._fill(repair(self.cs, child))
        # Survival: distance of the primary constraint's ratio to [1 - width, 1];
        # everything inside the band survives, at least a quarter of the population.
        width = self.band[0] + (self.band[1] - self.band[0]) * self._progress()
        r = self.cs.fractions(child)[:, 0]
        dist = np.maximum(0.0, (1.0 - width) - r) + np.maximum(0.0, r - 1.0)
        keep = np.argsort(dist, kind="stable")[: max(n // 4, int((dist == 0).sum()), 1)]
        return child[keep]

    def _surrogate(self, X: np.ndarray, y: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
        """Per-tree predictions [trees, n] of the schemes' scores.

        A b-bit uniform quantizer adds noise of power ~4^-b, and more noise
        never helps, so the prior is additive: score ~ a - sum_g c_g 4^-b_g
        with c_g >= 0 (non-negative least squares; one coefficient per gene
        generalizes from a few dozen samples where trees alone cannot). The
        random forest fits what that misses (interactions, saturation); its
        trees' spread is the exploration bonus.
        """
        from scipy.optimize import nnls
        from sklearn.ensemble import RandomForestRegressor

        def noise(s: np.ndarray) -> np.ndarray:
            return 4.0 ** -np.asarray(s, dtype=np.float64).reshape(len(s), -1)

        N = noise(X)
        n_mean, y_mean = N.mean(axis=0), y.mean()
        # Centering leaves the intercept free while the gene coefficients stay >= 0.
        coef, _ = nnls(n_mean - N, y - y_mean)

        def prior(s: np.ndarray) -> np.ndarray:
            return y_mean + (n_mean - noise(s)) @ coef

        # Leaves of >= 2 schemes: a score is one noisy draw (1000 images: one image = 0.1 pp).
        rf = RandomForestRegressor(n_estimators=self.trees, min_samples_leaf=2, random_state=self.seed + len(y),
                                   n_jobs=1)
        rf.fit(self._features(X), y - prior(X))

        def predict(s: np.ndarray) -> np.ndarray:
            F = self._features(s)
            return np.stack([t.predict(F) for t in rf.estimators_]) + prior(s)[None]

        return predict

    def _surrogate_pick(self, k: int) -> np.ndarray:
        X, y = np.stack(self.X), np.asarray(self.y)
        cands = self._breed()
        cands = cands[self.cs.feasible(cands)]
        # Unseen and distinct.
        uniq: dict[bytes, np.ndarray] = {}
        for s in cands:
            key = self.space.key(s)
            if key not in self.seen:
                uniq.setdefault(key, s)
        if len(uniq) < k:
            for s in self._random_feasible(k - len(uniq)):
                self.seen.discard(self.space.key(s))  # marked as seen again if picked below
                uniq.setdefault(self.space.key(s), s)
        if not uniq:
            return np.empty((0, self.space.n_layers, 2), dtype=np.int64)
        pool = np.stack(list(uniq.values()))
        per_tree = self._surrogate(X, y)(pool)
        beta = self.beta * (1.0 - self._progress())
        score = per_tree.mean(axis=0) + beta * per_tree.std(axis=0)
        order = np.argsort(-score, kind="stable")
        picks: list[int] = []
        for i in order:  # diverse: no two picks one gene apart, if there is choice
            if all((pool[i] != pool[j]).sum() > 1 for j in picks):
                picks.append(int(i))
            if len(picks) == k:
                break
        for i in order:
            if len(picks) == k:
                break
            if int(i) not in picks:
                picks.append(int(i))
        out = pool[picks]
        for s in out:
            self.seen.add(self.space.key(s))
        return out
