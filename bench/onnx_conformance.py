"""ONNX backend node conformance of micoc's ONNX frontend + reference interpreter.

For every ONNX node test case of the op types the frontend supports: import
the case's model with `micoc.frontends.import_onnx`, run it with the float
reference interpreter (`micoc.interp.run`) and compare with the expected
outputs. Cases outside micoc's scope (non-float32 tensors, dynamic data where
micoc needs constants, attributes it does not model) are skipped with the
reason the importer gives.

    python bench/onnx_conformance.py            # print the table
    python bench/onnx_conformance.py --write    # ... and record it in BENCHMARKS.md

tests/test_onnx_conformance.py runs the same cases through `run_case`.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import argparse
import importlib
import re
import sys
import time
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from record import write_section  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from micoc.errors import MicocError, UnsupportedError  # noqa: E402

# ONNX op type -> module of onnx.backend.test.case.node that generates its cases.
OP_MODULES: dict[str, str] = {
    "Conv": "conv",
    "Gemm": "gemm",
    "MatMul": "matmul",
    "Add": "add",
    "Sub": "sub",
    "Mul": "mul",
    "Div": "div",
    "Relu": "relu",
    "Clip": "clip",
    "Sigmoid": "sigmoid",
    "MaxPool": "maxpool",
    "AveragePool": "averagepool",
    "GlobalAveragePool": "globalaveragepool",
    "ReduceMean": "reducemean",
    "Flatten": "flatten",
    "Reshape": "reshape",
    "Transpose": "transpose",
    "Slice": "slice",
    "Split": "split",
    "Concat": "concat",
    "BatchNormalization": "batch_normalization",
    "Softmax": "softmax",
    "Dropout": "dropout",
    "Identity": "identity",
    "Constant": "constant",
    "Shape": "shape",
    "Size": "size",
    "Gather": "gather",
    "Unsqueeze": "unsqueeze",
    "Squeeze": "squeeze",
    "Cast": "cast",
    "Range": "rangeop",
    "ConstantOfShape": "constantofshape",
}

# micoc's float reference vs ONNX's expected outputs (float32 either way).
RTOL = 1e-4
ATOL = 1e-4

# Ops micoc supports only as shape arithmetic: folded at import when their
# inputs are constant. Their cases are also tried with every input bound as a
# constant, which exercises the folding path end to end.
FOLD_ONLY = {"Shape", "Size", "Gather", "Unsqueeze", "Squeeze", "Cast", "Range", "ConstantOfShape"}


@dataclass
class Result:
    case: str
    status: str  # "pass" | "skip" | "fail"
    reason: str = ""
    # How the inputs were bound when it passed: "dynamic" (all graph inputs),
    # "bound" (only the first input dynamic: weights/shapes/axes became
    # initializers, as in a deployed model) or "folded" (all inputs constant).
    mode: str = "dynamic"


@dataclass
class OpRow:
    op: str
    results: list[Result] = field(default_factory=list)

    def count(self, status: str, mode: str | None = None) -> int:
        return sum(r.status == status and (mode is None or r.mode == mode) for r in self.results)


def load_cases(ops: list[str] | None = None) -> dict[str, list]:
    """Node test cases per op type (function-expanded variants left out: they test other ops).

    Only the case modules of the requested ops are imported: generating all
    ~1900 cases with `load_model_tests(kind="node")` takes much longer.
    """
    import onnx.backend.test.case.node as node_cases

    ops = ops or list(OP_MODULES)
    out: dict[str, list] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for op in ops:
            modname = f"onnx.backend.test.case.node.{OP_MODULES[op]}"
            before = len(node_cases._NodeTestCases)
            if modname in sys.modules:  # generated earlier in this process: pick them by op type
                cases = [c for c in node_cases._NodeTestCases if _main_op(c) == op]
            else:
                importlib.import_module(modname)
                cases = node_cases._NodeTestCases[before:]
            out[op] = [c for c in cases if "_expanded" not in c.name]
    return out


def _main_op(case) -> str:
    nodes = case.model.graph.node
    return nodes[0].op_type if len(nodes) == 1 else ""


def _short_reason(msg: str) -> str:
    """A reason for the table: the first unsupported item, names elided."""
    lines = [ln.strip() for ln in msg.splitlines() if ln.strip()]
    text = lines[1] if len(lines) > 1 and "unsupported" in lines[0] else lines[0]
    text = re.sub(r"^.*?: ", "", text, count=1) if text.startswith(("/", "test")) else text
    text = re.sub(r"^[A-Za-z]+ '[^']*': ", "", text)  # "<OpType> '<loc>': why"
    text = re.sub(r"'[^']*'", "'…'", text)
    # One line per kind of out-of-scope type; the case names show which types.
    text = re.sub(r"graph input '…' has element type \w+;.*", "non-float32 graph input", text)
    text = re.sub(r"graph output '…' has dtype \w+", "result type has no micoc equivalent", text)
    return text


def run_case(case) -> Result:  # noqa: C901
    """Import and run one conformance case; never raises.

    micoc compiles models with fixed weights, while many conformance cases
    feed weights, shapes or axes as graph inputs. When the importer rejects
    the case as given, it is retried with every input but the first bound as
    an initializer (the data set's value), and for the shape-arithmetic ops
    with all inputs bound (folded at import).
    """
    modes = ["dynamic", "bound"] + (["folded"] if _main_op(case) in FOLD_ONLY else [])
    reason = "no data"
    for mode in modes:
        try:
            res = _run_mode(case, mode)
        except Exception as e:  # noqa: BLE001 - a harness problem must not hide the other cases
            return Result(case.name, "fail", f"harness: {type(e).__name__}: {e}")
        if res.status != "skip":
            return res
        if not res.reason.startswith("cannot bind"):  # the importer's own word is the reason
            reason = res.reason
    return Result(case.name, "skip", reason)


def _bind(model, names: list[str], values: list[np.ndarray]):
    """A copy of `model` whose inputs `names` are initializers holding `values`."""
    from onnx import TensorProto, numpy_helper

    m = type(model)()
    m.CopyFrom(model)
    keep = [vi for vi in m.graph.input if vi.name not in names]
    del m.graph.input[:]
    m.graph.input.extend(keep)
    for name, v in zip(names, values, strict=True):
        if isinstance(v, TensorProto):  # exotic element types come pre-encoded
            t = TensorProto()
            t.CopyFrom(v)
            t.name = name
        elif isinstance(v, np.ndarray | np.generic):
            t = numpy_helper.from_array(np.asarray(v), name)
        else:
            return None  # sequences, optionals: not tensors
        m.graph.initializer.append(t)
    return m


def _run_mode(case, mode: str) -> Result:
    from onnx import TensorProto, numpy_helper

    from micoc.frontends import import_onnx
    from micoc.interp import run
    from micoc.ir import verify

    init = {t.name for t in case.model.graph.initializer}
    in_names = [vi.name for vi in case.model.graph.input if vi.name not in init]
    nbound = {"dynamic": 0, "bound": max(0, len(in_names) - 1), "folded": len(in_names)}[mode]
    if mode != "dynamic" and nbound == 0:
        return Result(case.name, "skip", "cannot bind: no input to bind")
    first = len(in_names) - nbound
    graph = None
    for k, (inputs, expected) in enumerate(case.data_sets):
        inputs = list(inputs)
        if graph is None or nbound:  # bound values differ per data set: import each
            model = case.model
            if nbound:
                model = _bind(case.model, in_names[first:], inputs[first : len(in_names)])
                if model is None:
                    return Result(case.name, "skip", "cannot bind: an input is not a tensor")
            try:
                graph = import_onnx(model, name=case.name)
                verify(graph)
            except UnsupportedError as e:
                return Result(case.name, "skip", _short_reason(str(e)))
            except MicocError as e:
                return Result(case.name, "fail", f"import: {e}")
        feeds = dict(zip(in_names[:first], inputs[:first], strict=False))
        try:
            got = run(graph, feeds)
        except Exception as e:  # noqa: BLE001 - an interpreter failure is a test failure
            return Result(case.name, "fail", f"run: {type(e).__name__}: {e}")
        if len(got) != len(expected):
            return Result(case.name, "fail", f"{len(got)} outputs, expected {len(expected)}")
        for i, (g, e) in enumerate(zip(got, expected, strict=True)):
            e = numpy_helper.to_array(e) if isinstance(e, TensorProto) else np.asarray(e)
            g = np.asarray(g)
            if g.shape != e.shape:
                return Result(case.name, "fail", f"data set {k} output {i}: shape {list(g.shape)} != {list(e.shape)}")
            if e.dtype.kind in "iub":
                ok = np.array_equal(g.astype(e.dtype), e)
                err = "values differ"
            else:
                e = e.astype(np.float32)
                scale = max(1.0, float(np.max(np.abs(e)))) if e.size else 1.0
                ok = np.allclose(g, e, rtol=RTOL, atol=ATOL * scale, equal_nan=True)
                with np.errstate(invalid="ignore"):  # inf - inf in the message only
                    err = f"max abs err {float(np.max(np.abs(g - e))) if e.size else 0:.3g}"
            if not ok:
                return Result(case.name, "fail", f"data set {k} output {i}: {err}")
    return Result(case.name, "pass", mode=mode)


def run_all(ops: list[str] | None = None) -> list[OpRow]:
    rows = []
    for op, cases in load_cases(ops).items():
        row = OpRow(op)
        for c in cases:
            row.results.append(run_case(c))
        rows.append(row)
    return rows


def format_table(rows: list[OpRow]) -> str:
    lines = [
        "| ONNX op | cases | passed | (bound / folded) | skipped | failed |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    tot = Counter()
    for r in rows:
        n, p, s, f = len(r.results), r.count("pass"), r.count("skip"), r.count("fail")
        b, fo = r.count("pass", "bound"), r.count("pass", "folded")
        tot.update(cases=n, passed=p, skipped=s, failed=f, bound=b, folded=fo)
        lines.append(f"| {r.op} | {n} | {p} | {b} / {fo} | {s} | {f} |")
    lines.append(
        f"| **total** | {tot['cases']} | {tot['passed']} | {tot['bound']} / {tot['folded']} "
        f"| {tot['skipped']} | {tot['failed']} |"
    )
    return "\n".join(lines)


def format_reasons(rows: list[OpRow], status: str) -> str:
    out = []
    for r in rows:
        reasons = Counter(x.reason for x in r.results if x.status == status)
        for reason, k in sorted(reasons.items(), key=lambda kv: -kv[1]):
            names = [x.case for x in r.results if x.status == status and x.reason == reason]
            shown = ", ".join(names[:4]) + (", …" if len(names) > 4 else "")
            out.append(f"- {r.op} ({k}): {reason} [{shown}]")
    return "\n".join(out) or "- none"


def section(rows: list[OpRow], seconds: float) -> str:
    import onnx

    return (
        "## ONNX conformance\n\n"
        f"ONNX backend node test cases (onnx {onnx.__version__}) for the op types the ONNX frontend\n"
        "imports, run through `micoc.frontends.import_onnx` + `micoc.interp.run` and compared with\n"
        f"the expected outputs (rtol {RTOL:g}, atol {ATOL:g} x max(1, max|expected|)). Function-expanded\n"
        "variants (`*_expanded`) are left out: they exercise other ops. A case the importer rejects\n"
        "as given is retried with all inputs but the first bound as initializers (\"bound\": micoc\n"
        "compiles fixed weights/shapes/axes, which these cases feed as inputs), and for the\n"
        "shape-arithmetic ops with all inputs bound (\"folded\" at import). Produced by\n"
        f"`python bench/onnx_conformance.py --write` ({seconds:.0f} s).\n\n"
        f"{format_table(rows)}\n\n"
        "Skipped (out of micoc's scope), by reason:\n\n"
        f"{format_reasons(rows, 'skip')}\n\n"
        "Failed:\n\n"
        f"{format_reasons(rows, 'fail')}\n"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", help="record the table in BENCHMARKS.md")
    ap.add_argument("--op", action="append", help="only these ONNX op types")
    args = ap.parse_args(argv)
    t0 = time.time()
    rows = run_all(args.op)
    text = section(rows, time.time() - t0)
    print(text)
    if args.write:
        write_section(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
