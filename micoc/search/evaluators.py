"""Scoring a scheme: the accuracy of exactly the numerics micoc deploys.

`ptq`: a clone of the canonicalized graph (BatchNorm already folded, as in
`micoc compile`), bits set by `assign-bits` from ``ctx.data["scheme"]``,
activation ranges as `calibrate` sets them, then the torch executor (which
simulates the integer IR's rounding exactly and is fast on batches) or,
with ``exact=True``, `quantize` + the integer reference interpreter.

Calibration is done once per evaluator, not per scheme: `calibrate` runs the
FLOAT graph, so its observers do not depend on the bits; only the final step
(each observer's range at the value's bit width and signedness, from the
quantization plan) does, and that step is repeated per scheme here exactly
as `Calibrate.run` does it.

`qat`: brief fine-tuning from the float weights (Adam, straight-through
estimator through `TorchExecutor`), `write_back`, recalibrate on the tuned
weights (what `micoc compile --calib` would do), then score as `ptq`.
`auto`: `qat` when any layer has fewer than 4 bits, else `ptq`.

Evaluators are picklable (worker processes and dask workers receive them);
in-process caches are dropped on pickling and rebuilt lazily.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from micoc.errors import InputError, UsageError
from micoc.ir.graph import Graph
from micoc.search.space import SearchSpace

__all__ = ["EVALUATORS", "EvalData", "EvalSettings", "Evaluator", "make_evaluator", "top1"]

EVALUATORS = ("ptq", "qat", "auto")

Metric = Callable[[np.ndarray, np.ndarray], float]


def top1(outputs: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy of logits [N, C] against integer labels [N]."""
    return float((np.asarray(outputs).reshape(len(labels), -1).argmax(1) == labels).mean())


def _digest(*arrays: np.ndarray | None) -> str:
    h = hashlib.sha256()
    for a in arrays:
        if a is None:
            h.update(b"none")
            continue
        a = np.ascontiguousarray(a)
        h.update(str((a.dtype.str, a.shape)).encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class EvalData:
    """Samples for one search. `val` scores candidates (selection); `test` only
    reports the winner (honest: never used to choose); `calib` sets activation
    ranges; `train` feeds QAT."""

    x_val: np.ndarray
    y_val: np.ndarray
    x_calib: np.ndarray
    x_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
    x_train: np.ndarray | None = None
    y_train: np.ndarray | None = None

    def __post_init__(self) -> None:
        for name in ("x_val", "x_calib", "x_test", "x_train"):
            a = getattr(self, name)
            if a is None:
                continue
            if not isinstance(a, np.ndarray) or a.dtype.kind != "f" or not np.all(np.isfinite(a)):
                raise InputError(f"{name}: expected a finite floating-point array")
            if len(a) == 0:
                raise InputError(f"{name}: no samples")
        for x, y, name in ((self.x_val, self.y_val, "val"), (self.x_test, self.y_test, "test"),
                           (self.x_train, self.y_train, "train")):
            if (x is None) != (y is None):
                raise InputError(f"{name}: samples and labels must come together")
            if y is not None and len(y) != len(x):  # type: ignore[arg-type]
                raise InputError(f"{name}: {len(x)} samples but {len(y)} labels")  # type: ignore[arg-type]

    @classmethod
    def from_arrays(cls, x: np.ndarray, y: np.ndarray, *, x_test: np.ndarray | None = None,
                    y_test: np.ndarray | None = None, x_train: np.ndarray | None = None,
                    y_train: np.ndarray | None = None, calib_samples: int = 256,
                    x_calib: np.ndarray | None = None) -> EvalData:
        """Validation arrays (+ optional test/train); calibration defaults to the
        first `calib_samples` of train if given, else of validation (no labels used)."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x_calib is None:
            src = x_train if x_train is not None else x
            x_calib = np.ascontiguousarray(src[:calib_samples], dtype=np.float32)
        def f32(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else np.ascontiguousarray(a, dtype=np.float32)

        def i64(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else np.asarray(a, dtype=np.int64)

        return cls(x, i64(y), x_calib, f32(x_test), i64(y_test), f32(x_train), i64(y_train))  # type: ignore[arg-type]

    def digest(self) -> str:
        return _digest(self.x_val, self.y_val, self.x_calib, self.x_test, self.y_test,
                       self.x_train, self.y_train)


@dataclass(frozen=True)
class EvalSettings:
    kind: str = "ptq"  # ptq | qat | auto
    exact: bool = False  # integer interpreter instead of the torch executor
    calib_method: str = "minmax"
    qat_epochs: float = 1.0
    qat_lr: float = 1e-3
    qat_batch: int = 64
    seed: int = 0  # QAT shuffling / init of the optimizer's randomness
    batch: int = 1000  # evaluation batch
    metric: str = "top1"  # name only (recorded in the journal hash)

    def __post_init__(self) -> None:
        if self.kind not in EVALUATORS:
            raise UsageError(f"unknown evaluator '{self.kind}' (expected one of {', '.join(EVALUATORS)})")
        if self.calib_method not in ("minmax", "percentile", "mse"):
            raise UsageError(f"unknown calibration method '{self.calib_method}'")
        if self.qat_epochs < 0:
            raise UsageError("--qat-epochs must be >= 0")


class Evaluator:
    """`ev(scheme[L, 2]) -> validation score`; `ev.test(scheme)` -> test score (or None)."""

    def __init__(self, graph: Graph, space: SearchSpace, data: EvalData,
                 settings: EvalSettings = EvalSettings(), metric: Metric | None = None) -> None:
        if settings.kind in ("qat", "auto") and data.x_train is None:
            raise UsageError(f"the '{settings.kind}' evaluator needs training data (train split / --train-data)")
        self.graph = graph
        self.space = space
        self.data = data
        self.settings = settings
        self.metric: Metric = metric or top1
        self.calls = 0  # evaluations in this process (tests count them)
        self._observers: list[Any] | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_observers"] = None  # rebuilt where the evaluator lands
        return state

    # -- identity (journal) ------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        from dataclasses import asdict

        return {**asdict(self.settings), "metric_fn": getattr(self.metric, "__qualname__", repr(self.metric))}

    # -- the work -------------------------------------------------------------------
    def __call__(self, scheme: np.ndarray) -> float:
        self.calls += 1
        return self.score(scheme, "val")

    def test(self, scheme: np.ndarray) -> float | None:
        if self.data.x_test is None:
            return None
        return self.score(scheme, "test")

    def uses_qat(self, scheme: np.ndarray) -> bool:
        k = self.settings.kind
        return k == "qat" or (k == "auto" and int(np.min(scheme)) < 4)

    def score(self, scheme: np.ndarray, split: str) -> float:
        prep = self.prepared(scheme)
        x, y = (self.data.x_val, self.data.y_val) if split == "val" else (self.data.x_test, self.data.y_test)
        return float(self.metric(self.outputs(prep, x), y))  # type: ignore[arg-type]

    def prepared(self, scheme: np.ndarray) -> Graph:
        """The bit-assigned, calibrated clone (the input of `quantize`), fine-tuned if QAT."""
        from micoc.passes import PassContext, PassManager

        g = self.graph.clone()
        ctx = PassContext(data={"scheme": self.space.to_scheme(scheme)})
        PassManager.from_string("assign-bits", ctx).run(g)
        self._set_ranges(g)
        if self.uses_qat(scheme) and self.settings.qat_epochs > 0:
            self._finetune(g, scheme)
            ctx = PassContext(data={"calibration": {g.inputs[0].name: self.data.x_calib}})
            PassManager.from_string(f"calibrate{{method={self.settings.calib_method}}}", ctx).run(g)
        return g

    def outputs(self, prep: Graph, x: np.ndarray) -> np.ndarray:
        if self.settings.exact:
            from micoc.interp import run
            from micoc.passes import PassManager

            q = prep.clone()
            PassManager.from_string("quantize").run(q)
            return run(q, {q.inputs[0].name: x})[0]
        from micoc.interp.torch_exec import run_torch

        return run_torch(prep, x, batch=self.settings.batch)

    # -- calibration, once ------------------------------------------------------------
    def _observer_list(self) -> list[Any]:
        """Observers of the float graph in a fixed order: graph inputs, then op results."""
        if self._observers is None:
            from micoc.numerics import make_observer
            from micoc.passes.calibrate import observe_ranges

            if len(self.graph.inputs) != 1:
                raise UsageError("the search handles single-input models only")
            method = self.settings.calib_method
            obs = observe_ranges(self.graph, {self.graph.inputs[0].name: self.data.x_calib},
                                 lambda: make_observer(method), 256)
            vals = list(self.graph.inputs) + [op.result for op in self.graph.ops]
            self._observers = [obs.get(v) for v in vals]
        return self._observers

    def _set_ranges(self, g: Graph) -> None:
        """What `Calibrate.run` does after observing, on a clone (same op order as the original)."""
        from micoc.analysis.quant_plan import plan_formats

        observers = self._observer_list()
        values = list(g.inputs) + [op.result for op in g.ops]
        for v, obs in zip(g.inputs, observers, strict=False):
            v.range = (obs.min, obs.max)
        formats, _, _ = plan_formats(g)
        for v, obs in zip(values, observers, strict=True):
            if obs is None:
                continue
            f = formats.get(v)
            bits, unsigned = (f.bits, f.unsigned) if f else (8, obs.min >= 0)
            lo, hi = obs.range(bits, unsigned)
            v.range = (float(lo), float(hi))

    # -- QAT ------------------------------------------------------------------------
    def _finetune(self, g: Graph, scheme: np.ndarray) -> None:
        import torch

        from micoc.interp.torch_exec import TorchExecutor

        torch.set_num_threads(1)
        s = self.settings
        x, y = self.data.x_train, self.data.y_train
        assert x is not None and y is not None
        # Seeded per scheme so a scheme's score never depends on what ran before
        # it in this process (workers, resume, batch order).
        seed = int.from_bytes(hashlib.sha256(SearchSpace.key(scheme) + str(s.seed).encode()).digest()[:4], "little")
        gen = torch.Generator().manual_seed(seed)
        ex = TorchExecutor(g)
        opt = torch.optim.Adam(ex.parameters(), lr=s.qat_lr)
        steps = max(1, int(round(s.qat_epochs * len(x) / s.qat_batch)))
        xt, yt = torch.from_numpy(x), torch.from_numpy(y)
        order = torch.randperm(len(x), generator=gen)
        pos = 0
        ex.train()
        for _ in range(steps):
            if pos + s.qat_batch > len(x):
                order, pos = torch.randperm(len(x), generator=gen), 0
            idx = order[pos : pos + s.qat_batch]
            pos += s.qat_batch
            loss = torch.nn.functional.cross_entropy(ex(xt[idx])[0].reshape(len(idx), -1), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        ex.write_back()


def make_evaluator(graph: Graph, space: SearchSpace, data: EvalData, kind: str = "ptq", *,
                   metric: Metric | None = None, **options: Any) -> Evaluator:
    return Evaluator(graph, space, data, EvalSettings(kind=kind, **options), metric)


@dataclass(frozen=True)
class Timed:
    score: float
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict)


def timed_call(ev: Evaluator, scheme: np.ndarray) -> Timed:
    t0 = time.perf_counter()
    score = ev(scheme)
    return Timed(score, time.perf_counter() - t0)
