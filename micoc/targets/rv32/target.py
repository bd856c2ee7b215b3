"""The `rv32` and `vexii` targets: the portable C of the C emitter, built bare
metal for RV32IM and run under QEMU, with exact instruction counts.

`vexii` (the VexiiRiscv-MiCo core) builds the same portable RV32IM code for
now; its SIMD dot-product kernels are a later issue.

After each `run`, the counts are in `last_run` (a RunResult) and in
``outdir/instructions.json``: total instructions, per sample (one
mico_model_run each: input quantization, all layers, output dequantization),
and per conv/linear layer (summed over the samples, named as in report.json).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from micoc.errors import InputError, MicocError
from micoc.ir.graph import Graph
from micoc.targets import register_target
from micoc.targets.base import input_samples
from micoc.targets.c.emitter import check_support, emit_c
from micoc.targets.rv32.toolchain import SUPPORT_DIR, RunResult, build_elf, run_elf

#: The emitted sources for a bare-metal build (mico_io_stdio.c is the host's
#: I/O; support/mico_io.c replaces it).
SOURCES = ("model.c", "weights.c", "mico_rt.c", "main.c")
_MIB = 1 << 20


def _read_report(outdir: Path) -> dict[str, Any]:
    p = outdir / "report.json"
    if not p.is_file():
        raise InputError("not a micoc build directory (no report.json)", str(outdir))
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError) as e:
        raise InputError(f"cannot read report.json: {e}", str(p)) from None


def ram_size_for(report: dict[str, Any]) -> int:
    """RAM to link for: weights + arena + scratch + I/O buffers + 4 MiB for code,
    stack and the count table, rounded up to whole MiB (QEMU's -m unit)."""
    io = 4 * 3 * (int(np.prod(report["input"]["shape"][1:])) + int(np.prod(report["output"]["shape"][1:])))
    need = (
        int(report.get("weight_bytes", 0))
        + int(report.get("arena_bytes", 0))
        + int(report.get("scratch_bytes", 0))
        + io
        + 4 * _MIB
    )
    return -(-need // _MIB) * _MIB


class Rv32Target:
    name = "rv32"
    description = "bare-metal RV32IM (portable C + runtime), run under QEMU with exact instruction counts"
    exe = "model.elf"

    def __init__(self) -> None:
        self.last_run: RunResult | None = None

    def default_pipeline(self) -> list[Any]:
        return []  # the C emitter works on the quantized IR directly

    def check_support(self, graph: Graph) -> None:
        check_support(graph)

    def emit(self, graph: Graph, outdir: str | os.PathLike[str]) -> dict[str, Any]:
        return emit_c(graph, outdir, extra={"target": self.name})

    def build(self, outdir: str | os.PathLike[str], *, exe: str | None = None,
              extra_cflags: Sequence[str] = (), reference: bool = False) -> Path:
        out = Path(outdir)
        rep = _read_report(out)
        defines: dict[str, str | int | None] = {"MICO_COUNT": None}
        if reference:
            defines["MICO_REFERENCE"] = None
        return build_elf(
            [out / s for s in SOURCES] + [SUPPORT_DIR / "mico_wrap.c"],
            include_dirs=[out],
            out=out / (exe or self.exe),
            defines=defines,
            ram_size=ram_size_for(rep),
            extra_cflags=extra_cflags,
            extra_ldflags=["-Wl,--wrap=mico_model_run"],  # one count region per sample
            werror=True,  # as the host build: warnings are bugs
        )

    def run(self, outdir: str | os.PathLike[str], inputs: Sequence[np.ndarray], *,
            exe: str | None = None) -> list[np.ndarray]:
        return self.run_with_codes(outdir, inputs, exe=exe, want_codes=False)[0]

    def run_with_codes(self, outdir: str | os.PathLike[str], inputs: Sequence[np.ndarray], *,
                       exe: str | None = None, want_codes: bool = True,
                       timeout: float = 3600.0) -> tuple[list[np.ndarray], np.ndarray | None]:
        """Run N samples; returns ([float32 outputs [N, ...]], int32 output codes [N, ...] or None)."""
        out = Path(outdir)
        rep = _read_report(out)
        elf = out / (exe or self.exe)
        if not elf.exists():
            self.build(out, exe=exe)
        x = input_samples(rep, inputs)
        n = x.shape[0]
        out_shape = tuple(rep["output"]["shape"])
        per = int(np.prod(out_shape[1:]))
        names = [lay["name"] for lay in sorted(rep.get("layers", []), key=lambda d: d["index"])]
        r = run_elf(elf, np.ascontiguousarray(x).tobytes(), layer_names=names,
                    args=["-c"] if want_codes else [], output_file=True, timeout=timeout)
        self.last_run = r
        if r.exit_code != 0:
            raise MicocError(f"{elf} failed under QEMU with exit code {r.exit_code}: "
                             f"{r.stdout.decode(errors='replace').strip()}")
        raw = np.frombuffer(r.output or b"", dtype=np.uint8)
        rec = per * (2 if want_codes else 1)
        if raw.size != 4 * rec * n:
            raise MicocError(f"{elf} wrote {raw.size} bytes, expected {4 * rec * n}")
        _write_counts(out / "instructions.json", self.name, r)
        words = raw.view(np.uint32).reshape(n, rec)
        y = words[:, :per].view(np.float32).reshape((n, *out_shape[1:]))
        codes = words[:, per:].view(np.int32).reshape((n, *out_shape[1:])) if want_codes else None
        return [y.copy()], (codes.copy() if codes is not None else None)


def _write_counts(path: Path, target: str, r: RunResult) -> None:
    doc = {
        "target": target,
        "instructions": r.instructions,
        "samples": [reg.instructions for reg in r.regions],
        "layers": [{"name": lc.name, "instructions": lc.instructions} for lc in r.layers],
        "note": "exact retired RV32IM instructions (minstret under QEMU -icount); layers summed over samples",
    }
    path.write_text(json.dumps(doc, indent=2) + "\n")


class VexiiTarget(Rv32Target):
    name = "vexii"
    description = "VexiiRiscv-MiCo core: the portable RV32IM code for now (SIMD kernels later), run under QEMU"


register_target(Rv32Target)
register_target(VexiiTarget)
