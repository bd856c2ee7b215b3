"""Whole example networks on RV32IM under QEMU, bit-exact against the integer
interpreter (float outputs and the integer codes behind them): LeNet-5 and
ResNet-8 at W8A8, W4A4, W2A2, W1A1 and at 5 random mixed schemes each."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from micoc.targets import get_target
from micoc.targets import rv32 as rv32_pkg
from tests.test_c_backend import BITS, float_graph, interpreter_codes, quantized

pytestmark = pytest.mark.skipif(
    not rv32_pkg.available(),
    reason=f"riscv64-unknown-elf-gcc / qemu-system-riscv32 not installed ({rv32_pkg.APT_HINT})",
)


def _schemes(name: str, layers: list[str]) -> list[tuple[str, dict | None]]:
    """The four uniform schemes and 5 random mixed ones (bit pairs from {1,2,4,8}^2 per layer)."""
    rng = np.random.default_rng({"lenet5": 11, "resnet8": 12}[name])
    mixed = [
        (f"mixed{i}", {n: {"w": int(rng.choice(BITS)), "a": int(rng.choice(BITS))} for n in layers})
        for i in range(5)
    ]
    return [(bits, None) for bits in ("w8a8", "w4a4", "w2a2", "w1a1")] + mixed


@pytest.mark.parametrize("name", ["lenet5", "resnet8"])
def test_network_on_rv32_matches_interpreter(name: str, tmp_path: Path) -> None:
    g, data = float_graph(name)
    x = data[:2]
    target = get_target("rv32")
    layers = [op.layer for op in g.layers()]
    for label, scheme in _schemes(name, layers):
        q = quantized(g, data, bits=label if scheme is None else None, scheme=scheme, tmp=tmp_path)
        target.check_support(q)
        out = tmp_path / label
        target.emit(q, out)
        (y,), codes = target.run_with_codes(out, [x])
        y_ref, codes_ref = interpreter_codes(q, x)
        where = f"{name} {label} {scheme or ''}"
        assert codes is not None, where
        np.testing.assert_array_equal(codes.reshape(codes_ref.shape), codes_ref, err_msg=where)
        np.testing.assert_array_equal(
            y.view(np.uint32), np.asarray(y_ref, np.float32).reshape(y.shape).view(np.uint32), err_msg=where
        )
