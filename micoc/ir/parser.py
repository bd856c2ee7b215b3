"""Read the .mir text form back into a Graph (the inverse of `printer.py`).

The grammar is LALR (fast, and lark's contextual lexer lets keywords such as
`axis` or `s` double as attribute or op names). Parsing happens in two steps:
lark builds a tree, then `_GraphReader` walks it in order, building every op
through `make_op` so attribute defaults fill in and shapes are inferred, and
turning every semantic problem into a ParseError at the offending token.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from micoc.errors import ParseError, VerificationError
from micoc.ir.builder import make_op
from micoc.ir.graph import Graph, Value
from micoc.ir.ops import get_op, normalize_attrs
from micoc.ir.printer import compute_digests
from micoc.ir.types import QuantParams, TensorType, numpy_dtype
from micoc.ir.verifier import verify

GRAMMAR = r"""
start: weights_line? graph

weights_line: "weights" STRING

graph: "graph" CONST "(" params ")" "->" results "{" stmt* return_stmt "}"
params: (param ("," param)*)?
param: VALUE ":" type range?
results: "(" (type ("," type)*)? ")"
       | type

?stmt: const_decl | op_stmt

const_decl: "const" CONST ":" type "=" (dense | inline)
dense: "dense" "<" STRING ">"
inline: "[" (number ("," number)*)? "]"

op_stmt: VALUE "=" NAME "(" operands ")" attrs? ":" type range? layer? loc?
operands: (operand ("," operand)*)?
?operand: VALUE | CONST
attrs: "{" (attr ("," attr)*)? "}"
attr: NAME "=" value
?value: INT | FLOAT | STRING | TRUE | FALSE | list
list: "[" (value ("," value)*)? "]"
range: "range" "(" number "," number ")"
layer: "layer" "(" STRING ")"
loc: "loc" "(" STRING ")"

return_stmt: "return" (operand ("," operand)*)?

type: NAME quant? shape
quant: "<" "s" "=" number "," "zp" "=" INT ">"                              -> per_tensor
     | "<" "axis" "=" INT "," "s" "=" numbers "," "zp" "=" ints ">"         -> per_channel
numbers: "[" (number ("," number)*)? "]"
ints: "[" (INT ("," INT)*)? "]"
shape: "[" (INT ("," INT)*)? "]"
?number: INT | FLOAT

_IDENT: /[A-Za-z_][A-Za-z0-9_.]*/
_QUOTED: /"(?:[^"\\\n]|\\.)*"/
NAME: _IDENT
VALUE: "%" (_IDENT | /[0-9]+/ | _QUOTED)
CONST: "@" (_IDENT | _QUOTED)
STRING: _QUOTED
INT: /[+-]?[0-9]+/
FLOAT: /[+-]?(([0-9]+\.[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?|[0-9]+[eE][+-]?[0-9]+|inf|nan)/
TRUE: "true"
FALSE: "false"

COMMENT: /\/\/[^\n]*/
%import common.WS
%ignore WS
%ignore COMMENT
"""

# How expected terminals are named in syntax errors.
_TERMINAL_DESCRIPTIONS = {
    "NAME": "identifier",
    "VALUE": "%value",
    "CONST": "@constant",
    "STRING": "string",
    "INT": "integer",
    "FLOAT": "float",
    "TRUE": "'true'",
    "FALSE": "'false'",
    "$END": "end of file",
}

_parser: Lark | None = None


def _get_parser() -> Lark:
    # Built once per process: constructing the LALR tables costs more than
    # parsing a whole ResNet.
    global _parser
    if _parser is None:
        _parser = Lark(GRAMMAR, parser="lalr", propagate_positions=True, maybe_placeholders=False)
    return _parser


# --------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------


def parse_mir(
    text: str,
    *,
    filename: str = "<string>",
    weights: Mapping[str, np.ndarray] | None = None,
    base_dir: Path | None = None,
) -> Graph:
    """Parse .mir text into a verified Graph.

    Dense constants take their data from `weights` (name -> array); if it is
    None and the text has a `weights "FILE"` line, FILE is loaded relative to
    `base_dir` (default: the directory of `filename`, else the working dir).
    Raises ParseError with `where="file:line:col"` on any problem.
    """
    tree = _parse_tree(text, filename)
    if base_dir is None:
        base_dir = Path(filename).parent if not filename.startswith("<") else Path.cwd()
    reader = _GraphReader(filename, weights, Path(base_dir))
    try:
        return reader.read(tree)
    finally:
        reader.close()


def load_mir(path: str | os.PathLike[str]) -> Graph:
    """Read a .mir file (and the .npz its `weights` line names, next to it)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ParseError(f"cannot read IR file: {e.strerror or e}", str(path)) from None
    return parse_mir(text, filename=str(path), base_dir=path.parent)


# --------------------------------------------------------------------------
# Syntax errors
# --------------------------------------------------------------------------


def _parse_tree(text: str, filename: str) -> Tree:
    parser = _get_parser()
    try:
        return parser.parse(text)
    except UnexpectedInput as e:
        raise _syntax_error(e, parser, text, filename) from None


def _describe_terminal(parser: Lark, name: str) -> str:
    if name in _TERMINAL_DESCRIPTIONS:
        return _TERMINAL_DESCRIPTIONS[name]
    try:
        pattern = parser.get_terminal(name).pattern
    except KeyError:
        return name
    # Anonymous terminals are the grammar's literal punctuation and keywords.
    return f"'{pattern.value}'" if pattern.type == "str" else name


def _expected(parser: Lark, names: set[str] | frozenset[str] | None) -> str:
    descs = sorted({_describe_terminal(parser, n) for n in names or ()})
    if not descs:
        return ""
    return f"expected {descs[0]}" if len(descs) == 1 else "expected one of: " + " ".join(descs)


def _syntax_error(e: UnexpectedInput, parser: Lark, text: str, filename: str) -> ParseError:
    if isinstance(e, UnexpectedToken):
        tok = e.token
        if tok.type == "$END":
            got = "end of file"
            line, col = _end_position(text)
        else:
            got = f"'{tok.value}'"
            line, col = tok.line, tok.column
        # `accepts` is the precise set (after the contextual lexer); fall back to `expected`.
        names = getattr(e, "accepts", None) or e.expected
        exp = _expected(parser, names)
    elif isinstance(e, UnexpectedCharacters):
        # No "expected" list here: the lexer's allowed set merges several
        # parser contexts and would list tokens that cannot actually follow.
        got = f"character {json.dumps(text[e.pos_in_stream])}" if e.pos_in_stream < len(text) else "end of file"
        line, col = e.line, e.column
        exp = ""
    elif isinstance(e, UnexpectedEOF):
        got = "end of file"
        line, col = _end_position(text)
        exp = _expected(parser, set(e.expected))
    else:  # pragma: no cover - lark has no other UnexpectedInput kinds today
        got, line, col, exp = "?", getattr(e, "line", 0), getattr(e, "column", 0), ""
    msg = f"{exp} — got {got}" if exp else f"unexpected {got}"
    return ParseError(f"syntax error: {msg}", f"{filename}:{line}:{col}")


def _end_position(text: str) -> tuple[int, int]:
    lines = text.split("\n")
    return len(lines), len(lines[-1]) + 1


# --------------------------------------------------------------------------
# Tree -> Graph
# --------------------------------------------------------------------------


class _GraphReader:
    """Walks the parse tree in order, keeping symbol tables and token positions."""

    def __init__(self, filename: str, weights: Mapping[str, np.ndarray] | None, base_dir: Path) -> None:
        self.filename = filename
        self.weights = weights
        self.weights_file: str | None = None  # as written in the text, for messages
        self.base_dir = base_dir
        self._npz: Any = None  # an open NpzFile we must close
        self.values: dict[tuple[str, str], Value] = {}  # ('num'|'name', key) -> value
        self.consts: dict[str, Value] = {}
        self.layers: set[str] = set()
        self.loaded: dict[str, Value] = {}  # dense constants, hashed by `prehash`

    # -- helpers ---------------------------------------------------------------
    def where(self, node: Token | Tree) -> str:
        if isinstance(node, Token):
            return f"{self.filename}:{node.line}:{node.column}"
        return f"{self.filename}:{node.meta.line}:{node.meta.column}"

    def error(self, node: Token | Tree, message: str) -> ParseError:
        return ParseError(message, self.where(node))

    def string(self, tok: Token) -> str:
        try:
            return json.loads(tok.value)
        except ValueError:
            raise self.error(tok, f"bad string literal {tok.value}") from None

    def close(self) -> None:
        if self._npz is not None:
            self._npz.close()
            self._npz = None

    # -- names -------------------------------------------------------------------
    def value_key(self, tok: Token) -> tuple[str, str]:
        body = tok.value[1:]
        if body.startswith('"'):
            return ("name", self.string(Token("STRING", body, line=tok.line, column=tok.column + 1)))
        # Bare digits are op results; an input named "0" prints as %"0" instead.
        return ("num" if body.isdigit() else "name", body)

    def const_name(self, tok: Token) -> str:
        body = tok.value[1:]
        if body.startswith('"'):
            return self.string(Token("STRING", body, line=tok.line, column=tok.column + 1))
        return body

    def lookup(self, tok: Token) -> Value:
        if tok.type == "CONST":
            name = self.const_name(tok)
            if name not in self.consts:
                raise self.error(tok, f"unknown constant {tok.value}")
            return self.consts[name]
        key = self.value_key(tok)
        if key not in self.values:
            raise self.error(tok, f"undefined value {tok.value}")
        return self.values[key]

    def define(self, tok: Token, v: Value) -> None:
        key = self.value_key(tok)
        if key in self.values:
            raise self.error(tok, f"value {tok.value} is defined twice")
        self.values[key] = v

    # -- scalars -----------------------------------------------------------------
    def number(self, tok: Token) -> int | float:
        return int(tok.value) if tok.type == "INT" else float(tok.value)

    def range(self, node: Tree) -> tuple[float, float]:
        """`range(lo, hi)`: a calibrated activation range."""
        lo, hi = (float(self.number(t)) for t in node.children)
        if not lo <= hi:
            raise self.error(node.children[0], f"range({lo}, {hi}) is empty: lo must be <= hi")
        return lo, hi

    def attr_value(self, node: Token | Tree) -> Any:
        if isinstance(node, Tree):  # list
            return [self.attr_value(c) for c in node.children]
        if node.type == "STRING":
            return self.string(node)
        if node.type == "TRUE":
            return True
        if node.type == "FALSE":
            return False
        return self.number(node)

    # -- types -------------------------------------------------------------------
    def type(self, node: Tree) -> TensorType:
        elem_tok = node.children[0]
        quant: QuantParams | None = None
        shape_node = node.children[-1]
        try:
            if len(node.children) == 3:
                quant = self.quant(node.children[1])
            shape = tuple(int(t.value) for t in shape_node.children)
            return TensorType(shape, str(elem_tok.value), quant)
        except VerificationError as e:
            raise self.error(elem_tok, e.message) from None

    def quant(self, node: Tree) -> QuantParams:
        if node.data == "per_tensor":
            s, zp = node.children
            return QuantParams((float(self.number(s)),), (int(zp.value),), None)
        axis, scales, zps = node.children
        return QuantParams(
            tuple(float(self.number(t)) for t in scales.children),
            tuple(int(t.value) for t in zps.children),
            int(axis.value),
        )

    # -- the graph ---------------------------------------------------------------
    def read(self, tree: Tree) -> Graph:
        graph_node = tree.children[-1]
        if len(tree.children) == 2:
            wtok = tree.children[0].children[0]
            self.weights_file = self.string(wtok)
            if self.weights is None:
                self.weights = self.load_weights(wtok, self.weights_file)
        name_tok, params, results, *stmts, ret = graph_node.children
        self.prehash(stmts)
        g = Graph(self.const_name(name_tok))
        for p in params.children:
            vtok, tnode, *rng = p.children
            v = Value(self.type(tnode), self.value_key(vtok)[1])
            v.range = self.range(rng[0]) if rng else None
            self.define(vtok, v)
            g.inputs.append(v)
        result_types = [(t, self.type(t)) for t in results.children]
        for st in stmts:
            if st.data == "const_decl":
                self.const_decl(st, g)
            else:
                self.op_stmt(st, g)
        outs = ret.children
        for tok in outs:
            g.outputs.append(self.lookup(tok))
        if len(outs) != len(result_types):
            raise self.error(
                ret, f"graph @{g.name} declares {len(result_types)} result(s) but returns {len(outs)}"
            )
        for i, (tok, (_tnode, t)) in enumerate(zip(outs, result_types, strict=True)):
            got = self.lookup(tok).type
            if got != t:
                raise self.error(tok, f"return value #{i} has type {got} but the graph declares {t}")
        try:
            verify(g)
        except VerificationError as e:
            # Per-op problems were reported at their op already; what is left
            # is graph-level (e.g. no outputs), reported at the graph header.
            raise self.error(name_tok, str(e)) from None
        return g

    def prehash(self, stmts: list[Tree]) -> None:
        """Load and hash every dense constant up front, in parallel.

        Only the expensive part happens here; all checks (and their errors, in
        source order) happen in `dense` during the ordered walk.
        """
        if self.weights is None:
            return
        todo: list[Value] = []
        for st in stmts:
            if st.data == "const_decl" and st.children[2].data == "dense":
                try:
                    name = self.const_name(st.children[0])
                except ParseError:
                    continue  # reported during the walk
                if name in self.weights and name not in self.loaded:
                    data = np.asarray(self.weights[name])
                    # Placeholder type: `dense` sets the declared one after its checks.
                    v = Value(TensorType(tuple(int(d) for d in data.shape)), name, None, data)
                    self.loaded[name] = v
                    todo.append(v)
        compute_digests(todo)

    def const_decl(self, node: Tree, g: Graph) -> None:
        name_tok, tnode, init = node.children
        name = self.const_name(name_tok)
        if name in self.consts:
            raise self.error(name_tok, f"constant {name_tok.value} is defined twice")
        t = self.type(tnode)
        if init.data == "dense":
            v = self.dense(name_tok, name, t, init.children[0])
        else:
            v = Value(t, name, None, self.inline(name_tok, t, init))
        self.consts[name] = v
        g.consts[name] = v

    def inline(self, name_tok: Token, t: TensorType, node: Tree) -> np.ndarray:
        toks = node.children
        if len(toks) != t.numel:
            raise self.error(
                node, f"constant {name_tok.value}: type {t} needs {t.numel} value(s), got {len(toks)}"
            )
        dtype = numpy_dtype(t)
        if dtype == np.float32:
            vals = [float(tok.value) for tok in toks]
            with np.errstate(over="ignore"):
                arr = np.array(vals, dtype=np.float32).reshape(t.shape)
            for tok, x, y in zip(toks, vals, arr.ravel().tolist(), strict=True):
                if math.isinf(y) and not math.isinf(x):
                    raise self.error(tok, f"constant {name_tok.value}: {tok.value} is out of f32 range")
            # `-nan` would keep its sign bit, which the printer cannot show
            # inline; every NaN literal means the canonical NaN.
            arr[np.isnan(arr)] = np.nan
            return arr
        for tok in toks:
            if tok.type != "INT":
                raise self.error(tok, f"constant {name_tok.value}: type {t.elem} needs integers, got {tok.value}")
        vals = [int(tok.value) for tok in toks]
        info = np.iinfo(dtype)
        for tok, x in zip(toks, vals, strict=True):
            if not info.min <= x <= info.max:
                raise self.error(tok, f"constant {name_tok.value}: {x} does not fit in {t.elem}")
        return np.array(vals, dtype=dtype).reshape(t.shape)

    def dense(self, name_tok: Token, name: str, t: TensorType, digest_tok: Token) -> Value:
        digest = self.string(digest_tok)
        if self.weights is None:
            raise self.error(
                digest_tok,
                f"constant {name_tok.value} is dense but no weights were given (no 'weights' line)",
            )
        if name not in self.weights:
            src = f"weights file '{self.weights_file}'" if self.weights_file else "the weights"
            raise self.error(name_tok, f"constant {name_tok.value} is missing from {src}")
        # The Value made by `prehash` keeps its cached digest, so printing the
        # parsed graph does not hash the weights a second time.
        v = self.loaded.get(name) or Value(t, name, None, np.asarray(self.weights[name]))
        v.type = t
        data = v.data
        assert data is not None
        if v.digest() != digest:
            src = f"weights file '{self.weights_file}'" if self.weights_file else "the given weights"
            raise self.error(
                digest_tok,
                f"constant {name_tok.value}: digest {digest} does not match {src} "
                f"(digest {v.digest()}): stale weights",
            )
        if tuple(data.shape) != t.shape:
            raise self.error(
                name_tok, f"constant {name_tok.value}: data shape {list(data.shape)} != type shape {list(t.shape)}"
            )
        return v

    def load_weights(self, tok: Token, file: str) -> Mapping[str, np.ndarray]:
        path = self.base_dir / file
        if not path.is_file():
            raise self.error(tok, f"weights file '{file}' not found")
        try:
            self._npz = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise self.error(tok, f"cannot read weights file '{file}': {e}") from None
        return _NpzMapping(self._npz)

    def op_stmt(self, node: Tree, g: Graph) -> None:
        res_tok, name_tok, operands_node, *rest = node.children
        attrs_node = rest[0] if rest and isinstance(rest[0], Tree) and rest[0].data == "attrs" else None
        if attrs_node is not None:
            rest = rest[1:]
        tnode, *tail = rest
        layer: str | None = None
        loc = ""
        value_range = None
        for t in tail:
            if t.data == "layer":
                layer = self.string(t.children[0])
            elif t.data == "range":
                value_range = self.range(t)
            else:
                loc = self.string(t.children[0])
        opname = str(name_tok.value)
        try:
            opdef = get_op(opname)
        except VerificationError as e:
            raise self.error(name_tok, e.message) from None
        operands = [self.lookup(tok) for tok in operands_node.children]
        attrs = self.attrs(opname, opdef, attrs_node)
        result_type = self.type(tnode)
        try:
            op = make_op(opname, operands, attrs, loc=loc, layer=layer)
        except VerificationError as e:
            raise self.error(name_tok, e.message) from None
        if op.result.type.shape != result_type.shape:
            raise self.error(
                tnode,
                f"{opname}: result shape {list(result_type.shape)} != inferred {list(op.result.type.shape)}",
            )
        op.result.type = result_type
        op.result.range = value_range
        # Checks only the verifier makes (element-type rules, layer names on
        # non-layer ops), run on this op alone so the error gets its line.
        try:
            verify(Graph("op", inputs=list(dict.fromkeys(operands)), ops=[op], outputs=[op.result]))
        except VerificationError as e:
            node_at = tnode if "result" in e.message else name_tok
            raise self.error(node_at, e.message) from None
        if layer is not None:
            if layer in self.layers:
                raise self.error(next(t for t in tail if t.data == "layer"), f"layer name '{layer}' is used twice")
            self.layers.add(layer)
        self.define(res_tok, op.result)
        g.ops.append(op)

    def attrs(self, opname: str, opdef: Any, node: Tree | None) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if node is None:
            return out
        for a in node.children:
            name_tok, value_node = a.children
            name = str(name_tok.value)
            if name in out:
                raise self.error(name_tok, f"{opname}: attribute '{name}' is given twice")
            if name not in opdef.attrs:
                raise self.error(name_tok, f"{opname}: unknown attribute(s) {name}")
            value = self.attr_value(value_node)
            # Check the kind now, on a one-attribute view of the op, so the
            # error points at this value (normalize_attrs' own message).
            one = dataclasses.replace(opdef, attrs={name: opdef.attrs[name]})
            try:
                normalize_attrs(one, {name: value})
            except VerificationError as e:
                raise self.error(value_node, e.message) from None
            out[name] = value
        return out


class _NpzMapping(Mapping[str, np.ndarray]):
    """Read-only name -> array view of an open .npz (arrays load on access)."""

    def __init__(self, npz: Any) -> None:
        self._npz = npz
        self._keys = set(npz.files)

    def __getitem__(self, key: str) -> np.ndarray:
        if key not in self._keys:
            raise KeyError(key)
        return self._npz[key]

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def __iter__(self) -> Iterator[str]:
        return iter(self._npz.files)

    def __len__(self) -> int:
        return len(self._keys)


__all__ = ["GRAMMAR", "load_mir", "parse_mir"]
