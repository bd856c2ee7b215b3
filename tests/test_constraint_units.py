"""Absolute latency budgets are in the target's own unit: cycles (vexii, bitfusion),
instructions (rv32), time (host)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from micoc.errors import UsageError
from micoc.frontends.onnx import import_onnx
from micoc.passes import PassManager
from micoc.search.constraints import constraints_from_text
from micoc.search.space import SearchSpace

LENET = Path(__file__).resolve().parents[1] / "examples" / "lenet5.onnx"


@pytest.fixture(scope="module")
def lenet():  # type: ignore[no-untyped-def]
    g = import_onnx(LENET)
    PassManager.from_string("canonicalize").run(g)
    return g, SearchSpace.for_graph(g, (1, 2, 4, 8))


def test_rv32_budget_in_instructions_equals_the_fraction(lenet) -> None:  # type: ignore[no-untyped-def]
    g, space = lenet
    frac = constraints_from_text(g, "rv32", space, ["latency=0.8"])
    int8 = frac.reference("latency")
    absolute = constraints_from_text(g, "rv32", space, [f"latency={0.8 * int8 / 1e6:.9f}minstr"])
    schemes = np.random.default_rng(0).choice((1, 2, 4, 8), size=(200, len(space.layers), 2))
    np.testing.assert_array_equal(frac.feasible(schemes), absolute.feasible(schemes))
    assert 0 < frac.feasible(schemes).sum() < len(schemes)  # the budget splits the sample


@pytest.mark.parametrize("target, text", [
    ("rv32", "latency=2ms"), ("rv32", "latency=3e6cyc"), ("vexii", "latency=2e6instr"),
    ("bitfusion", "latency=1us"), ("host", "latency=5kcyc"),
])  # fmt: skip
def test_wrong_latency_unit_is_a_usage_error(lenet, target: str, text: str) -> None:  # type: ignore[no-untyped-def]
    g, space = lenet
    with pytest.raises(UsageError, match=f"--target {target} prices latency in"):
        constraints_from_text(g, target, space, [text])
