"""Search data and metrics given as Python objects instead of .npz files.

A reference is ``module:attr`` (the working directory is importable, as with
uvicorn or gunicorn). The attribute is used as it is or, when it is callable and
takes no arguments, called once: a dataset factory. Accepted data objects:

* a pair ``(x, y)`` of arrays (numpy, torch, anything `numpy.asarray` takes);
* a map-style dataset (``len()`` and ``ds[i] -> (x_i, y_i)``, e.g. a
  ``torch.utils.data.Dataset``);
* an iterable of ``(x_batch, y_batch)`` pairs (e.g. a ``DataLoader``).

A metric reference names ``metric(outputs[N, ...], labels[N]) -> float``
(higher is better). It must be importable by module name so worker processes
and Dask workers can unpickle it.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from micoc.errors import InputError

__all__ = ["dataset_arrays", "is_reference", "load_metric", "load_reference"]


def is_reference(text: str | os.PathLike[str]) -> bool:
    """`module:attr` rather than a file path (an existing file always wins)."""
    s = str(text)
    if Path(s).exists() or ":" not in s:
        return False
    module, _, attr = s.partition(":")
    return bool(module) and bool(attr) and all(p.isidentifier() for p in module.split(".") + attr.split("."))


def load_reference(spec: str) -> Any:
    """The object `module:attr` names (dotted attrs allowed)."""
    module_name, _, attr = spec.partition(":")
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as e:
        raise InputError(f"cannot import module '{module_name}': {e}", spec) from None
    except Exception as e:  # the user's module failed while importing
        raise InputError(f"importing '{module_name}' failed: {type(e).__name__}: {e}", spec) from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise InputError(f"'{module_name}' has no attribute '{attr}'", spec)
        obj = getattr(obj, part)
    return obj


def _as_array(a: Any) -> np.ndarray:
    if hasattr(a, "detach"):  # torch tensors that require grad
        a = a.detach().cpu()
    return np.asarray(a)


def dataset_arrays(spec: str) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) of the dataset a `module:attr` reference names."""
    obj = load_reference(spec)
    if callable(obj) and not hasattr(obj, "__getitem__") and not hasattr(obj, "__iter__"):
        try:
            required = [p for p in inspect.signature(obj).parameters.values()
                        if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        except (TypeError, ValueError):
            required = []
        if required:
            raise InputError(f"'{spec}' is a callable that needs arguments; name a dataset or a "
                             "factory that takes none", spec)
        try:
            obj = obj()
        except Exception as e:
            raise InputError(f"calling '{spec}' failed: {type(e).__name__}: {e}", spec) from None
    if hasattr(obj, "__len__") and len(obj) == 0:
        raise InputError("the dataset is empty", spec)
    try:
        if isinstance(obj, tuple) and len(obj) == 2:
            x, y = _as_array(obj[0]), _as_array(obj[1])
        elif hasattr(obj, "__len__") and hasattr(obj, "__getitem__"):
            items = [obj[i] for i in range(len(obj))]
            x = np.stack([_as_array(it[0]) for it in items])
            y = np.asarray([_as_array(it[1]) for it in items])
        elif hasattr(obj, "__iter__"):
            batches = list(obj)
            if not batches:
                raise InputError("the dataset is empty", spec)
            x = np.concatenate([_as_array(b[0]) for b in batches])
            y = np.concatenate([_as_array(b[1]).reshape(-1) for b in batches])
        else:
            raise InputError(f"'{spec}' is a {type(obj).__name__}: expected (x, y) arrays, a map-style "
                             "dataset or an iterable of (x, y) batches", spec)
    except InputError:
        raise
    except Exception as e:  # shape mismatch, items that are not pairs, ...
        raise InputError(f"cannot read samples from '{spec}': {type(e).__name__}: {e}", spec) from None
    if len(x) == 0:
        raise InputError("the dataset is empty", spec)
    if len(y) != len(x):
        raise InputError(f"{len(x)} samples but {len(y)} labels", spec)
    return x.astype(np.float32, copy=False), y


def load_metric(spec: str) -> Callable[[np.ndarray, np.ndarray], float]:
    """The metric function a `module:attr` reference names."""
    if not is_reference(spec):
        raise InputError("a metric is named as module:function (importable from the working directory)", spec)
    fn = load_reference(spec)
    if not callable(fn):
        raise InputError(f"'{spec}' is not callable", spec)
    return fn  # type: ignore[no-any-return]
