"""Accuracy metrics for latency proxies: predicted cycles against measured cycles.

Shared by the proxy fitting code, bench/proxy_cv.py and `micoc profile check`.
All functions take array-likes of equal length and return plain floats so the
results can go straight into JSON.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike
from scipy.stats import spearmanr

__all__ = ["r2", "mape", "spearman", "exact_fraction", "summary"]


def _pair(pred: ArrayLike, true: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(pred, dtype=np.float64).ravel()
    t = np.asarray(true, dtype=np.float64).ravel()
    if p.shape != t.shape:
        raise ValueError(f"prediction has {p.size} values, truth has {t.size}")
    if p.size == 0:
        raise ValueError("no values to compare")
    return p, t


def r2(pred: ArrayLike, true: ArrayLike) -> float:
    """Coefficient of determination (1 - SSE/SST); can be negative for bad fits."""
    p, t = _pair(pred, true)
    sst = float(np.sum((t - t.mean()) ** 2))
    sse = float(np.sum((t - p) ** 2))
    if sst == 0.0:
        # Constant truth: R^2 is undefined; report a perfect score only for a perfect fit.
        return 1.0 if sse == 0.0 else 0.0
    return 1.0 - sse / sst


def mape(pred: ArrayLike, true: ArrayLike) -> float:
    """Mean absolute percentage error, in percent (true values must be non-zero)."""
    p, t = _pair(pred, true)
    if np.any(t == 0):
        raise ValueError("MAPE is undefined when a true value is zero")
    return float(np.mean(np.abs(p - t) / np.abs(t)) * 100.0)


def spearman(pred: ArrayLike, true: ArrayLike) -> float:
    """Spearman rank correlation: what a search that only ranks candidates cares about."""
    p, t = _pair(pred, true)
    if p.size < 2 or np.all(p == p[0]) or np.all(t == t[0]):
        # Ranks of a constant vector carry no information; scipy would return nan.
        return 0.0
    rho = spearmanr(p, t).statistic
    return 0.0 if math.isnan(rho) else float(rho)


def exact_fraction(pred: ArrayLike, true: ArrayLike) -> float:
    """Fraction of rows whose prediction equals the truth after rounding to whole cycles.

    Meaningful for deterministic targets (instruction counts), where a correct
    analytical model should hit every row exactly.
    """
    p, t = _pair(pred, true)
    return float(np.mean(np.rint(p) == np.rint(t)))


def summary(pred: ArrayLike, true: ArrayLike) -> dict[str, float]:
    """All metrics at once, JSON-ready."""
    p, t = _pair(pred, true)
    return {
        "n": int(p.size),
        "r2": r2(p, t),
        "mape": mape(p, t),
        "spearman": spearman(p, t),
        "exact_fraction": exact_fraction(p, t),
    }
