"""Loading user plugins (passes, targets, searchers) from entry points."""

from __future__ import annotations

import sys
from collections.abc import Callable
from importlib.metadata import entry_points


def load_entry_points(group: str, kind: str, accept: Callable[[object], object]) -> None:
    """Hand every object registered under entry-point `group` to `accept`.

    A plugin that fails to load (or that `accept` rejects by raising) is a
    warning naming it, never a failure of micoc itself.
    """
    for ep in entry_points(group=group):
        try:
            accept(ep.load())
        except Exception as e:  # a broken plugin must not break micoc
            print(f"micoc: warning: could not load {kind} plugin '{ep.name}': {e}", file=sys.stderr)
