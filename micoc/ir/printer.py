"""Deterministic text form of the IR (".mir"); `parser.py` reads it back."""
from __future__ import annotations


def format_type(t) -> str:  # placeholder replaced below
    return f"{t.elem}[{','.join(map(str, t.shape))}]"


def print_graph(g) -> str:
    return repr(g)
