"""The `host` target: portable C99 + the micoc runtime, built with the system cc, run as a process."""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from micoc.errors import InputError, MicocError, ToolchainError
from micoc.ir.graph import Graph
from micoc.targets import register_target
from micoc.targets.base import input_samples
from micoc.targets.c.emitter import check_support, emit_c

# -O3 -march=native: the host binary runs where it is built; integer kernels are
# exact whatever the vector width, and -ffp-contract=off keeps the float input
# quantize / output dequantize free of FMA contraction (bit-exact to numpy).
# Measured (bench/c_kernels.py, CPU time): ResNet-18 W8A8 1.5x, W2A2 1.8x faster than -O2.
CFLAGS = ["-std=c99", "-O3", "-march=native", "-Wall", "-Wextra", "-Werror", "-pedantic", "-ffp-contract=off"]
SOURCES = ["model.c", "weights.c", "mico_rt.c", "main.c", "mico_io_stdio.c"]
SANITIZE = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-g", "-fno-omit-frame-pointer"]


def find_cc() -> str:
    cc = os.environ.get("CC") or "cc"
    path = shutil.which(shlex.split(cc)[0])
    if path is None:
        raise ToolchainError(f"no C compiler '{cc}' found: install one (Debian/Ubuntu: apt-get install gcc)")
    return cc


def read_report(outdir: str | os.PathLike[str]) -> dict[str, Any]:
    p = Path(outdir) / "report.json"
    if not p.is_file():
        raise InputError("not a micoc build directory (no report.json)", str(outdir))
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError) as e:
        raise InputError(f"cannot read report.json: {e}", str(p)) from None


def _check_call(cmd: list[str], cwd: Path) -> None:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise ToolchainError(f"C build failed ({' '.join(cmd)}):\n{proc.stderr.strip()}")


def cache_dir() -> Path:
    return Path(os.environ.get("MICOC_CACHE_DIR") or Path(tempfile.gettempdir()) / f"micoc-cache-{os.getuid()}")


def cpu_model() -> str:
    """The CPU model name (what -march=native resolves to; also the machine line of
    profiles and benchmarks), or the platform's processor/architecture without one."""
    try:
        with open("/proc/cpuinfo") as f:
            name = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        name = ""
    if name:
        return name
    import platform

    return platform.processor() or platform.machine()


def _runtime_object(cc: str, flags: list[str], src_dir: Path) -> Path:
    """mico_rt.o for these flags, compiled once and kept in the cache directory."""
    h = hashlib.sha256()
    for name in ("mico_rt.c", "mico_rt.h"):
        h.update((src_dir / name).read_bytes())
    h.update(" ".join([cc, *flags, cpu_model()]).encode())  # -march=native: per CPU model
    obj = cache_dir() / f"mico_rt-{h.hexdigest()[:20]}.o"
    if not obj.exists():
        obj.parent.mkdir(parents=True, exist_ok=True)
        tmp = obj.with_name(f".{obj.name}.{os.getpid()}.tmp.o")
        try:
            _check_call([*shlex.split(cc), *flags, "-c", "-o", str(tmp), "mico_rt.c"], src_dir)
            os.replace(tmp, obj)
        finally:
            tmp.unlink(missing_ok=True)
    return obj


@register_target
class HostTarget:
    name = "host"
    description = "portable C99 + micoc runtime, built with the system cc and run as a process"

    def default_pipeline(self) -> list[Any]:
        return []  # the C emitter works on the quantized IR directly

    def check_support(self, graph: Graph) -> None:
        check_support(graph)

    def emit(self, graph: Graph, outdir: str | os.PathLike[str]) -> dict[str, Any]:
        return emit_c(graph, outdir, extra={"target": self.name})

    def build(self, outdir: str | os.PathLike[str], *, exe: str = "model", extra_cflags: Sequence[str] = (),
              reference: bool = False) -> Path:
        """Compile the emitted project with the system cc (the runtime object is cached:
        it depends only on the runtime sources and the flags, not on the model)."""
        out = Path(outdir)
        cc = find_cc()
        flags = [*CFLAGS, *extra_cflags] + (["-DMICO_REFERENCE"] if reference else [])
        rt_obj = _runtime_object(cc, flags, out)
        sources = [s for s in SOURCES if s != "mico_rt.c"]
        cmd = [*shlex.split(cc), *flags, "-DMICO_IO_ARGS", f"-Wa,-I{out.resolve()}", "-o", exe, *sources,
               str(rt_obj)]
        _check_call(cmd, out)
        return out / exe

    def run(self, outdir: str | os.PathLike[str], inputs: Sequence[np.ndarray], *,
            exe: str = "model") -> list[np.ndarray]:
        return self.run_with_codes(outdir, inputs, exe=exe, want_codes=False)[0]

    def run_with_codes(self, outdir: str | os.PathLike[str], inputs: Sequence[np.ndarray], *, exe: str = "model",
                       want_codes: bool = True) -> tuple[list[np.ndarray], np.ndarray | None]:
        """Run N samples; returns ([float32 outputs [N, ...]], int32 output codes [N, ...] or None)."""
        out = Path(outdir)
        rep = read_report(out)
        binary = out / exe
        if not binary.exists():
            self.build(out, exe=exe)
        x = input_samples(rep, inputs)
        n = x.shape[0]
        out_shape = tuple(rep["output"]["shape"])
        per = int(np.prod(out_shape))
        cmd = [str(binary.resolve())] + (["-c"] if want_codes else [])
        proc = subprocess.run(cmd, input=np.ascontiguousarray(x).tobytes(), capture_output=True)
        if proc.returncode != 0:
            raise MicocError(f"{binary} failed with exit code {proc.returncode}: "
                             f"{proc.stderr.decode(errors='replace').strip()}")
        raw = np.frombuffer(proc.stdout, dtype=np.uint8)
        rec = per * (2 if want_codes else 1)
        if raw.size != 4 * rec * n:
            raise MicocError(f"{binary} wrote {raw.size} bytes, expected {4 * rec * n}")
        words = raw.view(np.uint32).reshape(n, rec)
        y = words[:, :per].view(np.float32).reshape((n, *out_shape[1:]))
        codes = words[:, per:].view(np.int32).reshape((n, *out_shape[1:])) if want_codes else None
        return [y.copy()], (codes.copy() if codes is not None else None)
