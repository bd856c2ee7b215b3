"""Passes, the pass registry, pipeline strings and the pass manager.

A pass is a frozen dataclass: its fields are its options, `name` is how
pipelines refer to it, and `run(graph, ctx)` transforms the graph in place,
returning whether anything changed. Users add passes with the
`@register_pass` decorator or through the `micoc.passes` entry-point group.
"""

from __future__ import annotations

import dataclasses
import sys
import time
import types
import typing
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TextIO

from micoc.errors import MicocError, UsageError, VerificationError
from micoc.ir.graph import Graph
from micoc.ir.verifier import verify
from micoc.plugins import load_entry_points


@dataclass
class PassContext:
    """What a pipeline run shares: options for verification and dumps, timings,
    and named inputs that some passes need (calibration data, a scheme...)."""

    verify: bool = True
    dump_after: frozenset[str] | None = None  # pass names; None = no dumps
    dump_all: bool = False
    dump_stream: TextIO = field(default_factory=lambda: sys.stderr)
    time_passes: bool = False
    timings: list[tuple[str, float]] = field(default_factory=list)
    target: str | None = None
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Pass:
    """Base class of all passes. Subclasses are frozen dataclasses whose fields are options."""

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""

    def run(self, graph: Graph, ctx: PassContext) -> bool:
        raise NotImplementedError

    def spec(self) -> str:
        """This pass as a pipeline string element (only non-default options)."""
        opts = []
        for f in dataclasses.fields(self):
            val = getattr(self, f.name)
            if val != f.default:
                opts.append(f"{f.name}={_format_option(val)}")
        return self.name + ("{" + ",".join(opts) + "}" if opts else "")


PASSES: dict[str, type[Pass]] = {}
_entry_points_loaded = False


def register_pass(cls: type[Pass]) -> type[Pass]:
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no pass name")
    if cls.name in PASSES and PASSES[cls.name] is not cls:
        raise ValueError(f"pass '{cls.name}' is registered twice")
    PASSES[cls.name] = cls
    return cls


def available_passes() -> dict[str, type[Pass]]:
    """Built-in passes plus those installed through the `micoc.passes` entry points."""
    global _entry_points_loaded
    import micoc.passes  # noqa: F401  (registers the built-in passes)

    if not _entry_points_loaded:
        _entry_points_loaded = True
        load_entry_points("micoc.passes", "pass", _register_plugin)
    return PASSES


def _register_plugin(obj: object) -> None:
    if not (isinstance(obj, type) and issubclass(obj, Pass)):
        raise TypeError(f"{obj!r} is not a Pass subclass")
    register_pass(obj)


# -- pipeline strings -------------------------------------------------------------


def parse_pipeline(text: str) -> list[Pass]:
    """Parse `"canonicalize,assign-bits{scheme=s.json,w=4}"` into pass instances."""
    passes = available_passes()
    result: list[Pass] = []
    for name, opts in _split_pipeline(text):
        if name not in passes:
            raise UsageError(
                f"unknown pass '{name}' in pipeline '{text}'; available: {', '.join(sorted(passes))}"
            )
        result.append(make_pass(passes[name], opts))
    return result


def make_pass(cls: type[Pass], opts: dict[str, str]) -> Pass:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for key, raw in opts.items():
        if key not in fields:
            valid = ", ".join(sorted(fields)) or "none"
            raise UsageError(f"pass '{cls.name}' has no option '{key}' (options: {valid})")
        kwargs[key] = _convert_option(cls.name, key, raw, hints[key])
    return cls(**kwargs)


def _split_pipeline(text: str) -> list[tuple[str, dict[str, str]]]:
    items: list[tuple[str, dict[str, str]]] = []
    i, n = 0, len(text)
    while i < n:
        j = i
        while j < n and text[j] not in ",{":
            j += 1
        name = text[i:j].strip()
        opts: dict[str, str] = {}
        if j < n and text[j] == "{":
            close = text.find("}", j)
            if close < 0:
                raise UsageError(f"pipeline '{text}': missing '}}' after options of '{name}'")
            for part in filter(None, (p.strip() for p in text[j + 1 : close].split(","))):
                if "=" not in part:
                    raise UsageError(f"pipeline '{text}': option '{part}' of '{name}' needs the form key=value")
                k, v = part.split("=", 1)
                opts[k.strip()] = v.strip()
            j = close + 1
            while j < n and text[j] == " ":
                j += 1
            if j < n and text[j] != ",":
                raise UsageError(f"pipeline '{text}': expected ',' after '{name}{{...}}'")
        if not name:
            raise UsageError(f"pipeline '{text}': empty pass name")
        items.append((name, opts))
        i = j + 1
    return items


def _convert_option(pass_name: str, key: str, raw: str, hint: Any) -> Any:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):  # Optional[X] -> X
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    base = hint
    try:
        if base is bool:
            if raw.lower() not in ("1", "0", "true", "false", "yes", "no"):
                raise ValueError(raw)
            return raw.lower() in ("1", "true", "yes")
        if base in (int, float, str):
            return base(raw)
        if base is Path:
            return Path(raw)
    except ValueError:
        raise UsageError(f"pass '{pass_name}': option '{key}' expects {base.__name__}, got '{raw}'") from None
    return raw


def _format_option(val: Any) -> str:
    if isinstance(val, bool):
        return "true" if val else "false"
    return str(val)


# -- running ---------------------------------------------------------------------


class PassManager:
    def __init__(self, passes: Iterable[Pass], ctx: PassContext | None = None) -> None:
        self.passes = list(passes)
        self.ctx = ctx or PassContext()

    @classmethod
    def from_string(cls, pipeline: str, ctx: PassContext | None = None) -> PassManager:
        return cls(parse_pipeline(pipeline), ctx)

    def pipeline_string(self) -> str:
        return ",".join(p.spec() for p in self.passes)

    def run(self, graph: Graph) -> Graph:
        from micoc.ir.printer import print_graph

        ctx = self.ctx
        for p in self.passes:
            t0 = time.perf_counter()
            try:
                p.run(graph, ctx)
            except MicocError:
                raise
            if ctx.verify:
                try:
                    verify(graph)
                except VerificationError as e:
                    raise VerificationError(f"IR is invalid after pass '{p.name}': {e.message}", e.where) from None
            ctx.timings.append((p.name, time.perf_counter() - t0))
            if ctx.dump_all or (ctx.dump_after is not None and p.name in ctx.dump_after):
                ctx.dump_stream.write(f"// ----- IR dump after {p.spec()} ----- //\n")
                ctx.dump_stream.write(print_graph(graph))
                ctx.dump_stream.write("\n")
        if ctx.time_passes:
            ctx.dump_stream.write(format_timings(ctx.timings))
        return graph


def format_timings(timings: list[tuple[str, float]]) -> str:
    total = sum(t for _, t in timings) or 1e-12
    lines = ["// ----- pass execution timing report ----- //", f"{'time (ms)':>10}  {'%':>6}  pass"]
    for name, t in timings:
        lines.append(f"{t * 1e3:10.2f}  {100 * t / total:6.1f}  {name}")
    lines.append(f"{total * 1e3:10.2f}  {100.0:6.1f}  total")
    return "\n".join(lines) + "\n"
