"""Bit-width schemes: which (weight bits, activation bits) each quantizable layer gets.

A scheme file is JSON mapping each layer's stable name to {"w": bits, "a": bits};
`w4a8` is shorthand for the same pair on every layer. `a` is the bits of the
layer's INPUT activations (DESIGN §6).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

from micoc.errors import InputError

Scheme = dict[str, tuple[int, int]]  # layer name -> (wbits, abits)

_UNIFORM_RE = re.compile(r"^w(\d+)a(\d+)$")


def parse_bits(text: str) -> tuple[int, int]:
    """`w4a8` -> (4, 8)."""
    m = _UNIFORM_RE.match(text.strip().lower())
    if not m:
        raise InputError(f"bad --bits '{text}': expected the form w<bits>a<bits>, e.g. w4a8")
    w, a = int(m.group(1)), int(m.group(2))
    bad = [f"{k}={b}" for k, b in (("w", w), ("a", a)) if not 1 <= b <= 8]
    if bad:
        raise InputError(f"bad --bits '{text}': {', '.join(bad)} outside 1..8")
    return w, a


def uniform(layers: Iterable[str], wbits: int, abits: int) -> Scheme:
    return {name: (wbits, abits) for name in layers}


def load_scheme(path: str | Path) -> Scheme:
    """Read a scheme JSON file; every structural problem is reported at once."""
    p = Path(path)
    if not p.exists():
        raise InputError("no such scheme file", str(p))
    try:
        raw = json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        where = f"{p}:{e.lineno}:{e.colno}" if isinstance(e, json.JSONDecodeError) else str(p)
        raise InputError(f"not valid JSON: {e.msg if isinstance(e, json.JSONDecodeError) else e}", where) from None
    return scheme_from_json(raw, str(p))


def scheme_from_json(raw: object, where: str = "scheme") -> Scheme:
    if not isinstance(raw, dict):
        raise InputError('a scheme must be a JSON object {"layer": {"w": bits, "a": bits}, ...}', where)
    scheme: Scheme = {}
    problems: list[str] = []
    for name, entry in raw.items():
        if not isinstance(entry, dict) or set(entry) != {"w", "a"}:
            problems.append(f'layer "{name}": expected {{"w": bits, "a": bits}}, got {json.dumps(entry)}')
            continue
        w, a = entry["w"], entry["a"]
        bad = [f"{k}={json.dumps(b)}" for k, b in (("w", w), ("a", a))
               if not isinstance(b, int) or isinstance(b, bool) or not 1 <= b <= 8]
        if bad:
            problems.append(f'layer "{name}": {", ".join(bad)} (bits must be integers in 1..8)')
            continue
        scheme[name] = (w, a)
    if problems:
        raise InputError("bad scheme:\n  " + "\n  ".join(problems), where)
    return scheme


def check_scheme(scheme: Mapping[str, tuple[int, int]], layers: list[str], where: str = "scheme") -> None:
    """Every layer named exactly once: unknown and missing layers are listed together."""
    problems = [f'unknown layer "{n}"' for n in scheme if n not in layers]
    problems += [f'missing layer "{n}"' for n in layers if n not in scheme]
    for n, bits in scheme.items():
        if len(bits) != 2 or not all(isinstance(b, int) and 1 <= b <= 8 for b in bits):
            problems.append(f'layer "{n}": bits {bits} outside 1..8')
    if problems:
        known = ", ".join(layers)
        raise InputError("scheme does not match the model:\n  " + "\n  ".join(problems)
                         + f"\n  (the model's layers: {known})", where)


def scheme_to_json(scheme: Mapping[str, tuple[int, int]]) -> dict[str, dict[str, int]]:
    return {n: {"w": w, "a": a} for n, (w, a) in scheme.items()}


def save_scheme(scheme: Mapping[str, tuple[int, int]], path: str | Path) -> None:
    Path(path).write_text(json.dumps(scheme_to_json(scheme), indent=2) + "\n")
