"""Bare-metal RV32IM toolchain: build an ELF with riscv64-unknown-elf-gcc, run it
under qemu-system-riscv32 with semihosting, and read back exact instruction counts.

The programs are freestanding C (no libc): ``support/`` brings the start-up
code (crt0.S), the linker script (RAM at 0x80000000, size set per build),
semihosting I/O (mico_sh), the input/output streams of the emitted harness
(mico_io) and the minstret instruction counter (mico_count). Float work (input
quantization, output dequantization) is soft-float from libgcc: IEEE binary32
with round-to-nearest-even, so it matches the host's float32 bit for bit.

QEMU runs with ``-icount shift=0,sleep=off``: minstret is then the exact
number of retired guest instructions, and nothing host-dependent (real time,
I/O waits) leaks into it, so the same ELF and input give the same counts on
every run and every machine.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from micoc.errors import ToolchainError

GCC = "riscv64-unknown-elf-gcc"
QEMU = "qemu-system-riscv32"
APT_HINT = "apt-get install --no-install-recommends gcc-riscv64-unknown-elf qemu-system-misc"

SUPPORT_DIR = Path(__file__).resolve().parent / "support"
LINKER_SCRIPT = SUPPORT_DIR / "link.ld"
#: Compiled into every ELF (crt0 first: it holds _start at the load address).
SUPPORT_SOURCES: tuple[str, ...] = ("crt0.S", "mico_sh.c", "mico_io.c", "mico_count.c", "mico_mem.c")

#: The ISA: RV32IM, no compressed/atomic/float extensions (QEMU's -cpu matches).
#: -misa-spec=2.2 keeps csr*/fence.i inside "rv32im" (no separate Zicsr).
ARCH_FLAGS: tuple[str, ...] = ("-march=rv32im", "-mabi=ilp32", "-misa-spec=2.2")
#: -ffp-contract=off: no fused multiply-add (none in rv32im anyway, but the
#: float semantics must not depend on that). -fno-common: one definition.
CFLAGS: tuple[str, ...] = (
    *ARCH_FLAGS,
    "-O2",
    "-ffreestanding",
    "-fno-common",
    "-ffp-contract=off",
    "-std=gnu11",
    "-Wall",
    "-Wextra",
)
LDFLAGS: tuple[str, ...] = (
    *ARCH_FLAGS,
    "-nostdlib",
    "-nostartfiles",
    "-static",
    "-Wl,--no-warn-rwx-segments",  # one RWX RAM region is the point of this layout
    "-Wl,--gc-sections",
)

RAM_BASE = 0x8000_0000
#: QEMU virt's default RAM; ResNet-18 at 8 bits (~11 MB of weights) fits.
DEFAULT_RAM_SIZE = 128 << 20
#: QEMU gets this much more RAM than the program is linked for: it writes its
#: device tree (1 MiB) just below the top of RAM at reset and refuses to
#: start if that overlaps a loaded ELF segment; above the stack it never does.
FDT_GAP = 4 << 20
#: Up to 1 GiB (+ FDT_GAP): on RV32 QEMU puts the device tree below 3 GiB at
#: most, i.e. inside larger RAMs.
MAX_RAM_SIZE = (1 << 30) - FDT_GAP
#: -icount shift=0: one virtual ns per instruction, minstret exact. sleep=off:
#: the virtual clock never jumps forward while QEMU waits (semihosting I/O).
ICOUNT = "shift=0,sleep=off"

_COUNTS_MAGIC = 0x544E434D  # "MCNT"
ID_BEGIN = 0xFFFFFFF0
ID_END = 0xFFFFFFF1
ID_EXIT = 0xFFFFFFF2


# ---------------------------------------------------------------------------
# finding the tools
# ---------------------------------------------------------------------------


def _find(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise ToolchainError(f"{tool} not found on PATH; install it with: {APT_HINT}")
    return path


def find_gcc() -> str:
    """Path of riscv64-unknown-elf-gcc (ToolchainError naming the package if absent)."""
    return _find(GCC)


def find_qemu() -> str:
    """Path of qemu-system-riscv32 (ToolchainError naming the package if absent)."""
    return _find(QEMU)


def available() -> bool:
    """True if both the cross compiler and QEMU are installed."""
    return shutil.which(GCC) is not None and shutil.which(QEMU) is not None


# ---------------------------------------------------------------------------
# building
# ---------------------------------------------------------------------------


def _first_lines(text: str, n: int = 25) -> str:
    lines = text.strip().splitlines()
    more = f"\n... ({len(lines) - n} more lines)" if len(lines) > n else ""
    return "\n".join(lines[:n]) + more


def _run_tool(cmd: list[str], what: str, timeout: float, cwd: Path | None = None) -> None:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd)
    except subprocess.TimeoutExpired as e:
        raise ToolchainError(f"{what}: timed out after {timeout:g} s") from e
    except OSError as e:
        raise ToolchainError(f"{what}: cannot run {cmd[0]}: {e}") from e
    if proc.returncode != 0:
        raise ToolchainError(f"{what} failed:\n{_first_lines(proc.stderr or proc.stdout)}")


def build_elf(
    sources: Sequence[Path | str],
    include_dirs: Iterable[Path | str] = (),
    out: Path | str = "prog.elf",
    defines: Mapping[str, str | int | None] | None = None,
    *,
    ram_size: int = DEFAULT_RAM_SIZE,
    stack_size: int = 64 << 10,
    opt: str = "-O2",
    extra_cflags: Sequence[str] = (),
    extra_ldflags: Sequence[str] = (),
    werror: bool = False,
    jobs: int | None = None,
    timeout: float = 600.0,
) -> Path:
    """Compile `sources` (C or assembly) with the support files and link a bare-metal ELF.

    Objects go to ``<out>.obj/`` next to the ELF; sources compile in parallel
    (generated weight files can be large). ``defines`` become ``-DK=V``
    (``-DK`` for None). ``ram_size`` is the RAM the program is linked for:
    the stack starts at its top, so ``run_elf`` gives QEMU at least that much
    (it reads it back from the ELF). Compiler or linker errors raise
    ToolchainError with the tool's first lines of output.
    """
    gcc = find_gcc()
    out = Path(out).resolve()
    if ram_size <= 0 or ram_size % 4096 or ram_size > MAX_RAM_SIZE:
        raise ValueError(
            f"ram_size must be a multiple of 4096 in (0, {MAX_RAM_SIZE:#x}], got {ram_size:#x}"
        )
    objdir = out.with_name(out.name + ".obj")
    objdir.mkdir(parents=True, exist_ok=True)
    inc_paths = [Path(d).resolve() for d in include_dirs] + [SUPPORT_DIR]
    # -Wa,-I: the assembler searches them too (.incbin "weights.bin" in the
    # emitted weights.c for large blobs).
    incs = [f for d in inc_paths for f in (f"-I{d}", f"-Wa,-I{d}")]
    defs = [f"-D{k}" if v is None else f"-D{k}={v}" for k, v in (defines or {}).items()]
    cflags = [*CFLAGS]
    if opt != "-O2":
        cflags[cflags.index("-O2")] = opt
    cflags += ["-ffunction-sections", "-fdata-sections", *extra_cflags]
    if werror:
        cflags.append("-Werror")
    srcs = [SUPPORT_DIR / s for s in SUPPORT_SOURCES] + [Path(s).resolve() for s in sources]
    objs: list[Path] = []
    cmds: list[tuple[list[str], str]] = []
    for i, src in enumerate(srcs):
        if not src.is_file():
            raise ToolchainError(f"rv32 build: no such source file: {src}")
        obj = objdir / f"{i:03d}_{src.stem}.o"
        objs.append(obj)
        cmds.append(([gcc, *cflags, *incs, *defs, "-c", str(src), "-o", str(obj)], f"{GCC} {src.name}"))
    workers = max(1, min(len(cmds), jobs or os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for fut in [pool.submit(_run_tool, c, w, timeout) for c, w in cmds]:
            fut.result()  # the first failure raises, in source order
    link = [
        gcc,
        *LDFLAGS,
        "-T",
        str(LINKER_SCRIPT),
        f"-Wl,--defsym=__mico_ram_size={ram_size:#x}",
        f"-Wl,--defsym=__mico_stack_size={stack_size:#x}",
        *extra_ldflags,
        *[str(o) for o in objs],
        "-lgcc",  # soft-float and 64-bit division helpers
        "-o",
        str(out),
    ]
    _run_tool(link, f"{GCC} (link {out.name})", timeout)
    return out


# ---------------------------------------------------------------------------
# running
# ---------------------------------------------------------------------------


def elf_symbol(elf: Path | str, name: str) -> int | None:
    """Value of a symbol in a 32-bit little-endian ELF (None if absent)."""
    data = Path(elf).read_bytes()
    if len(data) < 52 or data[:4] != b"\x7fELF" or data[4] != 1 or data[5] != 1:
        raise ToolchainError(f"{elf}: not a 32-bit little-endian ELF")
    if struct.unpack_from("<H", data, 0x12)[0] != 0xF3:  # e_machine EM_RISCV
        raise ToolchainError(f"{elf}: not a RISC-V ELF")
    shoff, = struct.unpack_from("<I", data, 0x20)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x2E)
    sections = [struct.unpack_from("<IIIIIIIIII", data, shoff + i * shentsize) for i in range(shnum)]
    want = name.encode()
    for sh in sections:
        if sh[1] != 2:  # SHT_SYMTAB
            continue
        strtab = sections[sh[6]]  # sh_link: the symbol names
        str_off = strtab[4]
        for off in range(sh[4], sh[4] + sh[5], 16):
            st_name, st_value = struct.unpack_from("<II", data, off)
            end = data.index(b"\0", str_off + st_name)
            if data[str_off + st_name : end] == want:
                return st_value
    return None


@dataclass(frozen=True)
class Marker:
    """One count record: `at` = program instructions since the first
    mico_count_begin (or, without one, since the first record), with the
    measurement overhead removed."""

    id: int
    at: int


@dataclass(frozen=True)
class LayerCount:
    name: str
    instructions: int


@dataclass(frozen=True)
class Region:
    """One mico_count_begin .. mico_count_end span (one inference)."""

    instructions: int
    layers: list[LayerCount]


@dataclass
class RunResult:
    #: The console: mico_sh_puts text, and the output stream unless output_file.
    stdout: bytes
    #: The output stream (mico_io_write) when run with output_file=True.
    output: bytes | None
    exit_code: int
    #: Sum of all begin..end regions; without regions, all instructions from
    #: reset to exit. None if the program wrote no counts (it trapped).
    instructions: int | None
    markers: list[Marker] = field(default_factory=list)
    regions: list[Region] = field(default_factory=list)
    #: Per layer, summed over regions, in first-seen order.
    layers: list[LayerCount] = field(default_factory=list)
    #: Instructions one count record costs (already subtracted everywhere).
    overhead: int = 0
    dropped: int = 0

    @property
    def stdout_bytes(self) -> bytes:
        return self.stdout


def _parse_counts(
    raw: bytes, layer_names: Sequence[str] | None
) -> tuple[list[Marker], list[Region], list[LayerCount], int | None, int, int]:
    if len(raw) < 20:
        raise ToolchainError("rv32 run: malformed instruction-count file")
    magic, version, n, dropped, overhead = struct.unpack_from("<5I", raw, 0)
    if magic != _COUNTS_MAGIC or version != 1 or len(raw) < 20 + 12 * n:
        raise ToolchainError("rv32 run: malformed instruction-count file")
    recs = [struct.unpack_from("<III", raw, 20 + 12 * i) for i in range(n)]
    abs_t = [(rid, lo | (hi << 32)) for rid, lo, hi in recs]
    exit_at = abs_t[-1][1] if abs_t and abs_t[-1][0] == ID_EXIT else None
    # Relative to the first begin (or the first record): record k after it
    # carries k record overheads; remove them, so differences are the
    # instructions of the program's own code.
    first = next((k for k, (rid, _) in enumerate(abs_t) if rid == ID_BEGIN), 0)
    t0 = abs_t[first][1] if abs_t else 0
    markers = [
        Marker(rid, t - t0 - overhead * (k - first))
        for k, (rid, t) in enumerate(abs_t)
        if k >= first and rid != ID_EXIT
    ]
    regions: list[Region] = []
    cur: list[Marker] | None = None
    for m in markers:
        if m.id == ID_BEGIN:
            cur = [m]
        elif cur is not None:
            cur.append(m)
            if m.id == ID_END:
                regions.append(Region(m.at - cur[0].at, _layers(cur, layer_names)))
                cur = None
    total: int | None
    if regions:
        total = sum(r.instructions for r in regions)
        layers = _sum_layers([r.layers for r in regions])
    else:
        # No begin/end: the whole program from reset (its exit record's
        # overhead is after the read), and any layer records anywhere.
        total = exit_at
        layers = _sum_layers([_layers(markers, layer_names)])
    return markers, regions, layers, total, overhead, dropped


def _layers(span: list[Marker], names: Sequence[str] | None) -> list[LayerCount]:
    """Layer i is the span between records 2i and 2i+1 (mico_count_layer_begin/end)."""
    open_at: dict[int, int] = {}
    out: list[LayerCount] = []
    for m in span:
        if m.id >= 0xFFFFFF00:
            continue
        layer, is_end = divmod(m.id, 2)
        if not is_end:
            open_at[layer] = m.at
        elif layer in open_at:
            name = names[layer] if names is not None and layer < len(names) else f"layer{layer}"
            out.append(LayerCount(name, m.at - open_at.pop(layer)))
    return out


def _sum_layers(per_region: list[list[LayerCount]]) -> list[LayerCount]:
    totals: dict[str, int] = {}
    for layers in per_region:
        for lc in layers:
            totals[lc.name] = totals.get(lc.name, 0) + lc.instructions
    return [LayerCount(k, v) for k, v in totals.items()]


def qemu_command(
    elf: Path | str, ram_size: int, args: Sequence[str] = (), *, icount: bool = True
) -> list[str]:
    """The qemu-system-riscv32 command line for a bare-metal ELF (semihosting on
    the console chardev = QEMU's stdin/stdout; `args` become the program's
    semihosting command-line words after "prog")."""
    for a in args:
        if " " in a or "," in a:
            raise ValueError(f"semihosting argument must not contain spaces or commas: {a!r}")
    ram_mb = -(-ram_size // (1 << 20))
    cmd = [
        find_qemu(),
        "-machine", "virt",
        "-cpu", "rv32,c=false,a=false,f=false,d=false",
        "-m", f"{ram_mb}M",
        "-bios", "none",
        "-display", "none",
        "-monitor", "none",
        "-serial", "none",
        "-nodefaults",
        "-chardev", "stdio,id=sh0",
        "-semihosting-config",
        ",".join(["enable=on", "target=native", "chardev=sh0", "arg=prog", *[f"arg={a}" for a in args]]),
    ]
    if icount:
        cmd += ["-icount", ICOUNT]
    cmd += ["-kernel", str(elf)]
    return cmd


def run_elf(
    elf: Path | str,
    stdin: bytes | None = None,
    *,
    input_file: Path | str | None = None,
    timeout: float = 120.0,
    layer_names: Sequence[str] | None = None,
    args: Sequence[str] = (),
    output_file: bool = False,
    icount: bool = True,
) -> RunResult:
    """Run a bare-metal ELF under QEMU; return its stdout, exit code and instruction counts.

    The program's input stream (mico_io_read) is `stdin` (bytes) or the file
    `input_file`; either way QEMU reads it as a host file through
    semihosting (its console input is not binary-safe and has no EOF). The
    output stream (mico_io_write) and any text go to stdout, unless
    ``output_file``: then the output stream is collected separately
    (RunResult.output) and stdout holds only the text. The exit code
    is main's return value (99 after a trap). `layer_names[i]` names layer i
    of the mico_count_layer_begin/end records. `args` are extra words of
    the program's command line (main's argv[1:]; no spaces or commas).
    ``icount=False`` runs faster,
    but then the counts are host timer ticks, neither exact nor repeatable.
    A timeout or a failure to start QEMU raises ToolchainError.
    """
    elf = Path(elf).resolve()
    if not elf.is_file():
        raise ToolchainError(f"rv32 run: no such ELF: {elf}")
    ram = elf_symbol(elf, "__mico_ram_size") or DEFAULT_RAM_SIZE
    with tempfile.TemporaryDirectory(prefix="micoc-rv32-") as tmp:
        work = Path(tmp)
        # Relative names in QEMU's cwd: no escaping of user paths needed.
        sh_args = [*args, "counts=counts.bin"]
        if stdin is not None and input_file is not None:
            raise ValueError("give stdin or input_file, not both")
        if stdin is not None:
            (work / "input.bin").write_bytes(stdin)
            sh_args.append("in=input.bin")
        elif input_file is not None:
            src = Path(input_file).resolve()
            if not src.is_file():
                raise ToolchainError(f"rv32 run: no such input file: {src}")
            (work / "input.bin").symlink_to(src)
            sh_args.append("in=input.bin")
        if output_file:
            sh_args.append("out=output.bin")
        cmd = qemu_command(elf, ram + FDT_GAP, sh_args, icount=icount)
        # stdout to a regular file, not a pipe: QEMU's stdio chardev drops
        # output when a pipe is full (seen: 64 KB of 200 KB arrived).
        out_path = work / "stdout.bin"
        try:
            with out_path.open("wb") as out_f:
                proc = subprocess.run(
                    cmd,
                    stdin=subprocess.DEVNULL,
                    stdout=out_f,
                    stderr=subprocess.PIPE,
                    timeout=timeout,
                    cwd=work,
                )
        except subprocess.TimeoutExpired as e:
            raise ToolchainError(f"rv32 run: {elf.name} timed out after {timeout:g} s under QEMU") from e
        except OSError as e:
            raise ToolchainError(f"rv32 run: cannot start {QEMU}: {e}") from e
        counts = work / "counts.bin"
        # The program writes its counts at every exit but a trap (code 99);
        # no counts plus QEMU messages means QEMU itself failed (bad option,
        # no such machine, ELF not loadable), not the program.
        if proc.returncode not in (0, 99) and not counts.exists() and proc.stderr.strip():
            raise ToolchainError(
                f"rv32 run: QEMU failed (exit {proc.returncode}):\n"
                f"{_first_lines(proc.stderr.decode(errors='replace'))}"
            )
        stdout = out_path.read_bytes()
        out_file = work / "output.bin"
        output = out_file.read_bytes() if output_file and out_file.exists() else None
        if counts.exists():
            markers, regions, layers, total, overhead, dropped = _parse_counts(
                counts.read_bytes(), layer_names
            )
        else:
            markers, regions, layers, total, overhead, dropped = [], [], [], None, 0, 0
    return RunResult(
        stdout=stdout,
        output=output,
        exit_code=proc.returncode,
        instructions=total,
        markers=markers,
        regions=regions,
        layers=layers,
        overhead=overhead,
        dropped=dropped,
    )
