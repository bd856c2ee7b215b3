"""The search space: one (wbits, abits) pair per quantizable layer.

Schemes are int arrays [L, 2] in layer-table order (``[:, 0]`` weight bits,
``[:, 1]`` input-activation bits, as in `micoc.analysis.layer_features`);
batches are [n, L, 2]. Every array the search produces goes through
`SearchSpace.normalize`, so ties (``tie_wa``) and pinned first/last layers
hold by construction instead of being checked everywhere.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from micoc.errors import UsageError
from micoc.ir.graph import Graph
from micoc.scheme import Scheme

__all__ = ["DEFAULT_QTYPES", "SearchSpace", "default_qtypes", "parse_qtypes"]

# C kernels run 1/2/4/8-bit containers (3,5,6,7 would be stored in the next
# container and cost the same), BitFusion's fusion units take 2..8 bits.
DEFAULT_QTYPES: dict[str, tuple[int, ...]] = {
    "vexii": (1, 2, 4, 8),
    "host": (1, 2, 4, 8),
    "bops": (1, 2, 4, 8),
    "bitfusion": (2, 3, 4, 5, 6, 7, 8),
}


def default_qtypes(target: str) -> tuple[int, ...]:
    return DEFAULT_QTYPES.get(target, (1, 2, 4, 8))


def parse_qtypes(text: str) -> tuple[int, ...]:
    """`2,3,4,8` or `2..8` -> sorted unique bit widths in 1..8."""
    text = text.strip()
    try:
        if ".." in text:
            lo, hi = (int(p) for p in text.split("..", 1))
            vals = list(range(lo, hi + 1))
        else:
            vals = [int(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise UsageError(f"bad --qtypes '{text}': expected bit widths like 2,4,8 or 2..8") from None
    if not vals or any(not 1 <= b <= 8 for b in vals):
        raise UsageError(f"bad --qtypes '{text}': bit widths must be in 1..8")
    return tuple(sorted(set(vals)))


@dataclass(frozen=True)
class SearchSpace:
    layers: tuple[str, ...]
    qtypes: tuple[int, ...] = (1, 2, 4, 8)
    tie_wa: bool = False  # a layer's activation bits follow its weight bits
    pin_first_last: int | None = None  # bits of both the first and the last layer, or free

    def __post_init__(self) -> None:
        if not self.layers:
            raise UsageError("the model has no quantizable layers: nothing to search")
        if not self.qtypes or list(self.qtypes) != sorted(set(self.qtypes)):
            raise UsageError(f"qtypes must be sorted and unique, got {self.qtypes}")
        if self.pin_first_last is not None and not 1 <= self.pin_first_last <= 8:
            raise UsageError(f"--pin-first-last must be in 1..8, got {self.pin_first_last}")

    @classmethod
    def for_graph(cls, graph: Graph, qtypes: Sequence[int], *, tie_wa: bool = False,
                  pin_first_last: int | None = None) -> SearchSpace:
        from micoc.analysis import layer_table

        return cls(layer_table(graph).names, tuple(sorted(set(qtypes))), tie_wa, pin_first_last)

    # -- shape of the space ---------------------------------------------------
    @property
    def n_layers(self) -> int:
        return len(self.layers)

    @property
    def pinned_layers(self) -> tuple[int, ...]:
        if self.pin_first_last is None:
            return ()
        return tuple(sorted({0, self.n_layers - 1}))

    @property
    def free_mask(self) -> np.ndarray:
        """[L, 2] bool: which genes the search chooses (not pinned, not tied to another)."""
        m = np.ones((self.n_layers, 2), dtype=bool)
        if self.tie_wa:
            m[:, 1] = False
        for i in self.pinned_layers:
            m[i] = False
        return m

    @property
    def groups(self) -> list[list[tuple[int, int]]]:
        """Free genes grouped by layer: the unit the initial samples perturb."""
        fm = self.free_mask
        return [[(i, j) for j in range(2) if fm[i, j]] for i in range(self.n_layers) if fm[i].any()]

    def size(self) -> int:
        """Number of distinct schemes (a Python int: it can be astronomically large)."""
        return len(self.qtypes) ** int(self.free_mask.sum())

    # -- making schemes ---------------------------------------------------------
    def normalize(self, s: np.ndarray) -> np.ndarray:
        """Apply the tie and the pins (in place on a copy); works on [L, 2] and [n, L, 2]."""
        s = np.array(s, dtype=np.int64, copy=True)
        if self.tie_wa:
            s[..., 1] = s[..., 0]
        for i in self.pinned_layers:
            s[..., i, :] = self.pin_first_last
        return s

    def uniform(self, bits: int | tuple[int, int]) -> np.ndarray:
        w, a = (bits, bits) if isinstance(bits, int) else bits
        s = np.empty((self.n_layers, 2), dtype=np.int64)
        s[:, 0], s[:, 1] = w, a
        return self.normalize(s)

    def max_scheme(self) -> np.ndarray:
        return self.uniform(self.qtypes[-1])

    def min_scheme(self) -> np.ndarray:
        return self.uniform(self.qtypes[0])

    def random(self, rng: np.random.Generator, n: int) -> np.ndarray:
        q = np.asarray(self.qtypes)
        return self.normalize(q[rng.integers(0, len(q), size=(n, self.n_layers, 2))])

    def step(self, bits: np.ndarray, delta: int) -> np.ndarray:
        """Move bit values `delta` positions along qtypes, clamped at the ends."""
        q = np.asarray(self.qtypes)
        idx = np.searchsorted(q, bits)
        return q[np.clip(idx + delta, 0, len(q) - 1)]

    def contains(self, s: np.ndarray) -> bool:
        s = np.asarray(s)
        if s.shape[-2:] != (self.n_layers, 2):
            return False
        ok = np.isin(s[..., self.free_mask], self.qtypes).all()
        return bool(ok and np.array_equal(self.normalize(s), s))

    # -- conversion ----------------------------------------------------------
    def to_scheme(self, s: np.ndarray) -> Scheme:
        s = np.asarray(s)
        return {name: (int(s[i, 0]), int(s[i, 1])) for i, name in enumerate(self.layers)}

    def from_scheme(self, scheme: Mapping[str, tuple[int, int]]) -> np.ndarray:
        missing = [n for n in self.layers if n not in scheme]
        unknown = [n for n in scheme if n not in self.layers]
        if missing or unknown:
            raise UsageError(f"scheme does not match the model (missing {missing}, unknown {unknown})")
        return np.array([scheme[n] for n in self.layers], dtype=np.int64)

    @staticmethod
    def key(s: np.ndarray) -> bytes:
        """A hashable identity of one scheme (for dedupe and 'seen' sets)."""
        return np.ascontiguousarray(s, dtype=np.int8).tobytes()

    def describe(self) -> dict[str, object]:
        return {"layers": list(self.layers), "qtypes": list(self.qtypes), "tie_wa": self.tie_wa,
                "pin_first_last": self.pin_first_last}
