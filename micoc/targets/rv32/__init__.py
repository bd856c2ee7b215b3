"""Bare-metal RV32IM: cross-build with riscv64-unknown-elf-gcc, run under QEMU
with semihosting, exact instruction counts from minstret (see toolchain.py).
Importing this package registers the `rv32` and `vexii` targets (target.py)."""

from micoc.targets.rv32.target import Rv32Target, VexiiTarget
from micoc.targets.rv32.toolchain import (
    APT_HINT,
    DEFAULT_RAM_SIZE,
    SUPPORT_DIR,
    LayerCount,
    Marker,
    Region,
    RunResult,
    available,
    build_elf,
    find_gcc,
    find_qemu,
    qemu_command,
    run_elf,
)

__all__ = [
    "APT_HINT",
    "DEFAULT_RAM_SIZE",
    "SUPPORT_DIR",
    "LayerCount",
    "Marker",
    "Region",
    "RunResult",
    "Rv32Target",
    "VexiiTarget",
    "available",
    "build_elf",
    "find_gcc",
    "find_qemu",
    "qemu_command",
    "run_elf",
]
