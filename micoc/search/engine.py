"""The search loop: ask the searcher for a batch, evaluate it (here, in local
processes, or on a dask cluster), journal every result, tell the searcher.

Determinism: results are told to the searcher in proposal order, never in
completion order, and every evaluation is a pure function of the scheme; so
for a given seed and batch size the search is the same on 1 worker, N
processes or a cluster, and a resumed search (journaled results replayed
into a fresh searcher) is the same as an uninterrupted one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from micoc.errors import UsageError
from micoc.ir.graph import Graph
from micoc.search.constraints import ConstraintSet
from micoc.search.evaluators import Evaluator
from micoc.search.journal import Journal, JournalHeader, settings_hash
from micoc.search.searchers import make_searcher
from micoc.search.space import SearchSpace

__all__ = ["Record", "SearchResult", "model_hash", "run_search"]

Progress = Callable[[int, int, float | None], None]


@dataclass(frozen=True)
class Record:
    index: int
    scheme: np.ndarray
    score: float
    feasible: bool
    of_int8: dict[str, float]  # each constrained metric as a fraction of INT8
    budget_ratio: float  # primary metric / its budget (<= 1 fits)
    seconds: float
    replayed: bool = False

    def to_json(self, hashes: dict[str, str]) -> dict[str, Any]:
        return {"index": self.index, "scheme": self.scheme.tolist(), "score": self.score,
                "feasible": self.feasible, "of_int8": self.of_int8, "budget_ratio": self.budget_ratio,
                "seconds": round(self.seconds, 4), **hashes}


@dataclass(frozen=True)
class SearchResult:
    space: SearchSpace
    records: tuple[Record, ...]
    best: Record | None
    test_score: float | None
    stopped: str  # "budget" | "exhausted" | "interrupted"
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def best_scheme(self) -> dict[str, tuple[int, int]] | None:
        return None if self.best is None else self.space.to_scheme(self.best.scheme)

    def pareto(self) -> list[Record]:
        """Non-dominated evaluated schemes: lower primary cost, higher score."""
        feas = sorted((r for r in self.records if r.feasible),
                      key=lambda r: (r.budget_ratio, -r.score, r.index))
        front: list[Record] = []
        for r in feas:
            if not front or r.score > front[-1].score:
                front.append(r)
        return front


def model_hash(graph: Graph) -> str:
    from micoc.ir.printer import print_graph

    return settings_hash(print_graph(graph))  # the printed IR carries weight digests


# -- where evaluations run --------------------------------------------------------------


def _worker_eval(ev: Evaluator, scheme: np.ndarray) -> tuple[float, float]:
    import torch

    torch.set_num_threads(1)  # 2-core machines: more threads are 10-30x slower
    t0 = time.perf_counter()
    score = ev(scheme)
    return score, time.perf_counter() - t0


_PROCESS_EVALUATOR: list[Evaluator] = []


def _process_init(ev: Evaluator) -> None:
    _PROCESS_EVALUATOR[:] = [ev]


def _process_eval(scheme: np.ndarray) -> tuple[float, float]:
    return _worker_eval(_PROCESS_EVALUATOR[0], scheme)


class _Runner:
    """Evaluates a batch; yields (position in batch, score, seconds) as each finishes."""

    def __init__(self, ev: Evaluator, workers: int, scheduler: str | None, client: Any) -> None:
        self.ev = ev
        self.pool: Any = None
        self.client: Any = client
        self.own_client = False
        self.remote_ev: Any = None
        if scheduler is not None or client is not None:
            if client is None:
                try:
                    from distributed import Client
                except ImportError:
                    raise UsageError("--scheduler needs dask.distributed (pip install 'micoc[dist]')") from None
                try:
                    self.client = Client(scheduler, timeout="20s")
                except (OSError, TimeoutError) as e:
                    raise UsageError(f"cannot reach the dask scheduler at {scheduler}: {e}") from None
                self.own_client = True
            self.remote_ev = self.client.scatter(ev, broadcast=True)
        elif workers > 1:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor

            self.pool = ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"),
                                            initializer=_process_init, initargs=(ev,))

    def run(self, schemes: list[np.ndarray]) -> Iterator[tuple[int, float, float]]:
        if self.client is not None:
            from distributed import as_completed

            futs = {self.client.submit(_worker_eval, self.remote_ev, s, pure=False): i
                    for i, s in enumerate(schemes)}
            for fut in as_completed(list(futs)):
                score, secs = fut.result()
                yield futs[fut], score, secs
        elif self.pool is not None:
            from concurrent.futures import as_completed as cf_completed

            pfuts = {self.pool.submit(_process_eval, s): i for i, s in enumerate(schemes)}
            for fut in cf_completed(pfuts):
                score, secs = fut.result()
                yield pfuts[fut], score, secs
        else:
            for i, s in enumerate(schemes):
                t0 = time.perf_counter()
                score = self.ev(s)
                yield i, score, time.perf_counter() - t0

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)
        if self.own_client:
            self.client.close()


# -- the loop ----------------------------------------------------------------------------


def run_search(
    graph: Graph,
    space: SearchSpace,
    constraints: ConstraintSet,
    evaluator: Evaluator,
    *,
    searcher: str = "mico",
    evals: int = 32,
    batch: int = 1,
    seed: int = 0,
    searcher_options: dict[str, Any] | None = None,
    journal: str | Path | None = None,
    resume: bool = False,
    workers: int = 1,
    scheduler: str | None = None,
    client: Any = None,
    progress: Progress | None = None,
    stop_after: int | None = None,
    test: bool = True,
) -> SearchResult:
    """Search `space` for the best-scoring scheme that satisfies `constraints`.

    `stop_after` stops after that many NEW evaluations, as a crash would
    (the journal keeps them; `resume=True` continues). `test=False` skips the
    winner's test-split score.
    """
    if evals < 1:
        raise UsageError("--evals must be >= 1")
    if batch < 1 or workers < 1:
        raise UsageError("--batch and --workers must be >= 1")
    constraints.check_achievable()
    opts = dict(searcher_options or {})
    srch = make_searcher(searcher, space, constraints, seed=seed, evals=evals, batch=batch, **opts)
    detail = {"searcher": searcher, "searcher_options": opts, "seed": seed, "batch": batch, "evals": evals,
              "space": space.describe(), "constraints": [c.text for c in constraints.constraints],
              "target": constraints.target, "config": constraints.config, "evaluator": evaluator.describe()}
    header = JournalHeader(model_hash(graph), evaluator.data.digest(), settings_hash(detail), detail)
    hashes = {"model_hash": header.model, "data_hash": header.data, "settings_hash": header.settings}
    jr = Journal(journal, header, resume=resume) if journal is not None else None

    records: list[Record] = []
    stopped = "budget"
    new_evals = 0
    runner: _Runner | None = None
    best_score: float | None = None

    def make_record(i: int, s: np.ndarray, score: float, secs: float, replayed: bool) -> Record:
        of8 = {m: float(v[0]) for m, v in constraints.of_int8(s[None]).items()}
        ratio = float(constraints.fractions(s[None])[0, 0])
        return Record(i, s, float(score), bool(constraints.feasible(s[None], exact=True)[0]), of8, ratio, secs, replayed)

    try:
        while len(records) < evals:
            k = min(batch, evals - len(records))
            props = srch.ask(k)
            if len(props) == 0:
                stopped = "exhausted"
                break
            base = len(records)
            results: dict[int, tuple[float, float, bool]] = {}
            todo: list[int] = []
            for j, s in enumerate(props):
                rec = jr.records.get(base + j) if jr is not None else None
                if rec is not None:
                    if rec["scheme"] != s.tolist():
                        raise UsageError(f"cannot resume: evaluation {base + j} in the journal is a different "
                                         "scheme than this search proposes (was the journal edited, or the "
                                         "searcher's code changed?)", str(journal))
                    results[j] = (rec["score"], rec["seconds"], True)
                else:
                    todo.append(j)
            if stop_after is not None and new_evals + len(todo) > stop_after:
                todo = todo[: max(0, stop_after - new_evals)]
                stopped = "interrupted"
            if todo:
                if runner is None:
                    runner = _Runner(evaluator, workers, scheduler, client)
                for pos, score, secs in runner.run([props[j] for j in todo]):
                    j = todo[pos]
                    results[j] = (score, secs, False)
                    new_evals += 1
                    if jr is not None:
                        jr.append(make_record(base + j, props[j], score, secs, False).to_json(hashes))
            if stopped == "interrupted":
                break
            for j, s in enumerate(props):
                score, secs, replayed = results[j]
                r = make_record(base + j, s, score, secs, replayed)
                records.append(r)
                if r.feasible and (best_score is None or r.score > best_score):
                    best_score = r.score
            srch.tell(props, [results[j][0] for j in range(len(props))])
            if progress is not None:
                progress(len(records), evals, best_score)
    finally:
        if runner is not None:
            runner.close()
        if jr is not None:
            jr.close()

    feasible = [r for r in records if r.feasible]
    best = max(feasible, key=lambda r: (r.score, -r.index)) if feasible else None
    test_score = evaluator.test(best.scheme) if (best is not None and test and stopped != "interrupted") else None
    return SearchResult(space, tuple(records), best, test_score, stopped,
                        {**detail, "model_hash": header.model, "data_hash": header.data})
