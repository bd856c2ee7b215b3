"""ONNX backend node conformance: import + micoc's float reference interpreter.

One test per ONNX node test case of the op types the ONNX frontend supports
(the harness lives in bench/onnx_conformance.py, which also prints the
per-op table recorded in BENCHMARKS.md). Cases outside micoc's scope are
skipped with the importer's reason; a wrong result or a crash fails.
"""

from __future__ import annotations

import pytest

from bench.onnx_conformance import OP_MODULES, load_cases, run_case


def _params() -> list:
    cases = load_cases()
    return [pytest.param(c, id=f"{op}-{c.name}") for op, cs in cases.items() for c in cs]


# Generating the cases runs ONNX's reference implementations (pooling is the
# slow part, ~10 s); do it once at collection.
CASES = _params()


def test_every_supported_op_has_cases() -> None:
    from micoc.frontends.onnx import SUPPORTED_OPS

    have = {p.id.split("-", 1)[0] for p in CASES}
    # Ops the frontend maps (or folds) whose conformance cases we run.
    assert set(OP_MODULES) <= have
    assert {"Conv", "Gemm", "MatMul", "Split", "Slice", "BatchNormalization"} <= set(SUPPORTED_OPS)


@pytest.mark.parametrize("case", CASES)
def test_node_conformance(case) -> None:
    res = run_case(case)
    if res.status == "skip":
        pytest.skip(res.reason)
    assert res.status == "pass", res.reason
