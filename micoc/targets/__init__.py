"""Target registry: built-in targets plus those installed through the
`micoc.targets` entry-point group (an entry point names a Target class or
instance)."""

from __future__ import annotations

import importlib
import sys
from typing import Any

from micoc.errors import UsageError
from micoc.plugins import load_entry_points
from micoc.targets.base import Target

__all__ = ["Target", "register_target", "get_target", "available_targets"]

TARGETS: dict[str, Target] = {}
# Modules that register built-in targets when imported (a module not present yet is skipped).
_BUILTIN_MODULES = ("micoc.targets.host", "micoc.targets.rv32")
_loaded = False


def register_target(obj: Any) -> Any:
    """Register a Target class (instantiated without arguments) or instance; usable as a decorator."""
    target = obj() if isinstance(obj, type) else obj
    if not isinstance(target, Target):
        raise TypeError(f"{obj!r} does not implement the Target protocol")
    TARGETS[target.name] = target
    return obj


def available_targets() -> dict[str, Target]:
    global _loaded
    if not _loaded:
        _loaded = True
        for mod in _BUILTIN_MODULES:
            try:
                importlib.import_module(mod)
            except ImportError as e:
                if e.name != mod:
                    print(f"micoc: warning: target module {mod} failed to import: {e}", file=sys.stderr)
        load_entry_points("micoc.targets", "target", register_target)
    return TARGETS


def get_target(name: str) -> Target:
    targets = available_targets()
    if name not in targets:
        raise UsageError(f"unknown target '{name}'; available: {', '.join(sorted(targets)) or 'none'}")
    return targets[name]
