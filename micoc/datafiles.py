"""Data files: .npy for one input, .npz keyed by graph input name (labels under `y`).

Samples replace the model's batch dimension (DESIGN §1): an array [N, 1, 28, 28]
is N samples for a model input [1, 1, 28, 28].
"""

from __future__ import annotations

import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from micoc.errors import InputError
from micoc.ir.graph import Graph

LABEL_KEY = "y"


def load_inputs(path: str | Path, graph: Graph) -> dict[str, np.ndarray]:
    """Arrays for the graph inputs from .npy/.npz, checked against the input types."""
    p = Path(path)
    arrays = _load_arrays(p)
    names = [v.name for v in graph.inputs]
    features = {k: a for k, a in arrays.items() if k != LABEL_KEY}
    if len(names) == 1 and len(features) == 1:
        (array,) = features.values()
        bound = {str(names[0]): array}
    else:
        missing = [n for n in names if n not in features]
        if missing:
            raise InputError(
                f"no array for model input(s) {', '.join(map(str, missing))}; the file has "
                f"{', '.join(sorted(features)) or 'no arrays'}",
                str(p),
            )
        bound = {str(n): features[str(n)] for n in names}
    for v in graph.inputs:
        a = bound[str(v.name)]
        want = v.type.shape
        if a.dtype.kind not in "fiu":
            raise InputError(f"array '{v.name}' has dtype {a.dtype}; expected numbers", str(p))
        if a.shape != want and not (want[:1] == (1,) and a.ndim == len(want) and a.shape[1:] == want[1:]):
            raise InputError(
                f"array for input '{v.name}' has shape {list(a.shape)}; the model expects {list(want)} "
                f"(the first dimension may hold any number of samples: [N{''.join(f', {d}' for d in want[1:])}])",
                str(p),
            )
    return bound


def load_labels(path: str | Path) -> np.ndarray | None:
    arrays = _load_arrays(Path(path))
    return arrays.get(LABEL_KEY)


def _load_arrays(p: Path) -> dict[str, np.ndarray]:
    if not p.exists():
        raise InputError("no such file", str(p))
    try:
        if p.suffix == ".npy":
            return {"x": np.load(p, allow_pickle=False)}
        if p.suffix == ".npz":
            with np.load(p, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as e:
        raise InputError(f"cannot read data file: {e}", str(p)) from None
    raise InputError(f"unknown data file type '{p.suffix}': expected .npy or .npz", str(p))


def save_outputs(path: str | Path, graph: Graph, outputs: list[np.ndarray]) -> None:
    """Write outputs as float32: .npy for a single output, else .npz keyed output_<i>."""
    p = Path(path)
    outs = [np.asarray(o, dtype=np.float32) for o in outputs]
    if p.suffix == ".npy":
        if len(outs) != 1:
            raise InputError(f"the model has {len(outs)} outputs; write them to an .npz file", str(p))
        atomic_write(p, lambda f: np.save(f, outs[0]))
    elif p.suffix == ".npz":
        atomic_write(p, lambda f: np.savez(f, **{f"output_{i}": o for i, o in enumerate(outs)}))
    else:
        raise InputError(f"unknown output file type '{p.suffix}': expected .npy or .npz", str(p))


def atomic_write(path: Path, write) -> None:  # type: ignore[no-untyped-def]
    """Write through a temp file in the same directory, then rename: never a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
