"""Bare-metal RV32IM toolchain: build, run under QEMU, exit codes, I/O streams,
soft-float and int64 arithmetic against micoc.numerics, exact instruction counts."""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

from micoc import numerics
from micoc.errors import ToolchainError
from micoc.targets import rv32
from micoc.targets.rv32 import toolchain

needs_toolchain = pytest.mark.skipif(
    not rv32.available(),
    reason=f"riscv64-unknown-elf-gcc / qemu-system-riscv32 not installed ({rv32.APT_HINT})",
)


def _build(tmp: Path, name: str, code: str, **kw) -> Path:
    src = tmp / f"{name}.c"
    src.write_text(code)
    return rv32.build_elf([src], out=tmp / f"{name}.elf", werror=True, **kw)


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("rv32")


# ---------------------------------------------------------------------------
# start-up, exit codes, streams
# ---------------------------------------------------------------------------

HELLO = r"""
#include "mico_io.h"
#include "mico_sh.h"
int main(void)
{
    uint8_t code;
    mico_sh_puts("hello, rv32\n");
    if (mico_io_read(&code, 1) != 1) {
        return 3;
    }
    return code;
}
"""

ECHO = r"""
#include "mico_io.h"
static uint8_t buf[1000];
static uint32_t total;
int main(void)
{
    int32_t n;
    while ((n = mico_io_read(buf, sizeof buf)) > 0) {
        mico_io_write(buf, (uint32_t)n);
        total += (uint32_t)n;
    }
    return (int)(total % 251u);
}
"""


@pytest.fixture(scope="module")
def hello_elf(build_dir: Path) -> Path:
    return _build(build_dir, "hello", HELLO)


@needs_toolchain
@pytest.mark.parametrize("code", [0, 1, 42, 255])
def test_hello_exit_code_passes_through(hello_elf: Path, code: int) -> None:
    r = rv32.run_elf(hello_elf, bytes([code]))
    assert r.stdout == b"hello, rv32\n"
    assert r.exit_code == code


ARGV = r"""
#include "mico_sh.h"
int main(int argc, char **argv)
{
    for (int i = 0; i < argc; i++) {
        mico_sh_puts(argv[i]);
        mico_sh_puts("|");
    }
    return argc;
}
"""


@needs_toolchain
def test_argv_from_semihosting(build_dir: Path) -> None:
    elf = _build(build_dir, "argv", ARGV)
    r = rv32.run_elf(elf, b"x", args=["-c", "k=v"])
    # The runner's own in=/counts= words follow the caller's.
    assert r.stdout.startswith(b"prog|-c|k=v|") and r.exit_code == 5


@needs_toolchain
def test_no_input_is_eof(hello_elf: Path) -> None:
    assert rv32.run_elf(hello_elf).exit_code == 3  # no in=: console stdin is /dev/null


@needs_toolchain
def test_binary_round_trip_stdin_and_file(build_dir: Path, tmp_path: Path) -> None:
    elf = _build(build_dir, "echo", ECHO)
    data = np.random.default_rng(0).integers(0, 256, 200_003, dtype=np.uint8).tobytes()
    data += bytes(range(256))  # every byte value, incl. \0 \n \r ^D
    r = rv32.run_elf(elf, data)
    assert r.stdout == data and r.exit_code == len(data) % 251
    f = tmp_path / "in put.bin"  # a space in the name: passed by a relative link
    f.write_bytes(data)
    r = rv32.run_elf(elf, input_file=f)
    assert r.stdout == data and r.exit_code == len(data) % 251
    assert rv32.run_elf(elf, b"").stdout == b""


@needs_toolchain
def test_trap_is_reported_not_hung(build_dir: Path) -> None:
    elf = _build(build_dir, "trap", "int main(void) { __asm__ volatile(\".word 0\"); return 0; }\n")
    r = rv32.run_elf(elf, timeout=20)
    assert r.exit_code == 99
    assert b"trap mcause=2" in r.stdout  # illegal instruction


@needs_toolchain
def test_ram_size_is_configurable(tmp_path: Path) -> None:
    # 64 MiB of .bss (cleared by crt0) + the stack at the top of 256 MiB.
    code = r"""
    static volatile unsigned char big[64u << 20];
    int main(void)
    {
        volatile unsigned char on_stack[256];
        on_stack[0] = 5;
        big[sizeof big - 1] = 7;
        return big[sizeof big - 1] + on_stack[0] + big[12345];
    }
    """
    elf = _build(tmp_path, "big", code, ram_size=256 << 20)
    assert toolchain.elf_symbol(elf, "__mico_ram_size") == 256 << 20
    assert rv32.run_elf(elf).exit_code == 12
    with pytest.raises(ToolchainError, match="do not fit in RAM"):
        _build(tmp_path, "big2", code, ram_size=32 << 20)
    with pytest.raises(ValueError, match="ram_size"):
        _build(tmp_path, "big3", code, ram_size=2 << 30)


@needs_toolchain
def test_timeout_is_toolchain_error(build_dir: Path) -> None:
    elf = _build(build_dir, "spin", "int main(void) { for (;;) { __asm__ volatile(\"\"); } }\n")
    with pytest.raises(ToolchainError, match="timed out"):
        rv32.run_elf(elf, timeout=1.5)


INCBIN = r"""
#include <stdint.h>
extern const uint8_t blob[];
__asm__(".section .rodata\n.globl blob\nblob:\n.incbin \"blob.bin\"\n.previous\n");
int main(void)
{
    uint32_t sum = 0;
    for (uint32_t i = 0; i < 1000u; i++) {
        sum += blob[i] * (i + 1u);
    }
    return (int)(sum % 251u);
}
"""


@needs_toolchain
def test_incbin_found_through_include_dirs(tmp_path: Path) -> None:
    # The emitter's weights.c .incbin's weights.bin for large blobs.
    data = np.random.default_rng(3).integers(0, 256, 1000, dtype=np.uint8)
    inc = tmp_path / "inc"
    inc.mkdir()
    (inc / "blob.bin").write_bytes(data.tobytes())
    src = tmp_path / "incbin.c"
    src.write_text(INCBIN)
    elf = rv32.build_elf([src], [inc], tmp_path / "incbin.elf", werror=True)
    want = int((data.astype(np.int64) * np.arange(1, 1001)).sum() % 251)
    assert rv32.run_elf(elf).exit_code == want


MEMFUNCS = r"""
#include <stddef.h>
void *memcpy(void *, const void *, size_t); void *memmove(void *, const void *, size_t);
void *memset(void *, int, size_t); int memcmp(const void *, const void *, size_t);
#include <stdint.h>
static uint8_t a[300], b[300];
int main(void) {
  for (int i = 0; i < 300; i++) a[i] = (uint8_t)(i * 7);
  memcpy(b, a, 300);
  if (memcmp(a, b, 300)) return 1;
  memcpy(b + 1, a + 3, 101);
  for (int i = 0; i < 101; i++) if (b[1 + i] != a[3 + i]) return 2;
  memmove(a + 5, a, 200);
  for (int i = 0; i < 200; i++) if (a[5 + i] != (uint8_t)(i * 7)) return 3;
  memmove(a, a + 5, 200);
  for (int i = 0; i < 200; i++) if (a[i] != (uint8_t)(i * 7)) return 4;
  memset(b, 0xAB, 77);
  for (int i = 0; i < 77; i++) if (b[i] != 0xAB) return 5;
  if (memcmp(a, b, 1) >= 0 && a[0] < b[0]) return 6;
  return 0;
}
"""


@needs_toolchain
def test_freestanding_mem_functions(tmp_path: Path) -> None:
    # gcc may emit memcpy/memset calls even with -ffreestanding: support/mico_mem.c.
    elf = _build(tmp_path, "mem", MEMFUNCS, extra_cflags=["-fno-builtin"])
    assert rv32.run_elf(elf).exit_code == 0


@needs_toolchain
def test_tiny_ram(tmp_path: Path) -> None:
    # QEMU writes its device tree near the top of RAM at reset and refuses to
    # start if it overlaps the ELF: run_elf gives QEMU room above the stack.
    elf = _build(tmp_path, "tiny", HELLO, ram_size=1 << 20)
    assert rv32.run_elf(elf, b"\x05").exit_code == 5


@needs_toolchain
def test_compiler_error_is_toolchain_error(tmp_path: Path) -> None:
    with pytest.raises(ToolchainError, match="undeclared|error"):
        _build(tmp_path, "bad", "int main(void) { return nope; }\n")
    with pytest.raises(ToolchainError, match="mico_missing"):  # a link error
        _build(tmp_path, "bad2", "void mico_missing(void);\nint main(void) { mico_missing(); return 0; }\n")


def test_missing_toolchain_names_the_package(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing on PATH
    assert not rv32.available()
    with pytest.raises(ToolchainError, match="gcc-riscv64-unknown-elf"):
        rv32.find_gcc()
    with pytest.raises(ToolchainError, match="qemu-system-misc"):
        rv32.find_qemu()
    src = tmp_path / "x.c"
    src.write_text("int main(void) { return 0; }\n")
    with pytest.raises(ToolchainError, match="riscv64-unknown-elf-gcc not found"):
        rv32.build_elf([src], out=tmp_path / "x.elf")


@needs_toolchain
def test_missing_qemu_at_run(hello_elf: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    gcc = shutil.which(rv32.toolchain.GCC)
    assert gcc is not None
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ToolchainError, match="qemu-system-riscv32 not found"):
        rv32.run_elf(hello_elf, b"\0")


# ---------------------------------------------------------------------------
# soft-float: docs/semantics.md §7 bit for bit
# ---------------------------------------------------------------------------

QUANT = r"""
#include "mico_io.h"

/* Round half away from zero from the exact fraction x - trunc(x) (no libm). */
static float round_half_away(float x)
{
    if (!(x < 8388608.0f && x > -8388608.0f)) {
        return x; /* |x| >= 2^23 is integral; NaN and inf pass through */
    }
    float t = (float)(int32_t)x;
    float f = x - t;
    if (f >= 0.5f) {
        t += 1.0f;
    } else if (f <= -0.5f) {
        t -= 1.0f;
    }
    return t;
}

/* Header: n, scale, zp, qmin, qmax; then n floats. Output: inv_s, then per
 * value: x * inv_s (bits), q, dequantize(q), (int32_t)x if |x| < 2^31. */
int main(void)
{
    struct { uint32_t n; float s; int32_t zp, qmin, qmax; } h;
    while (mico_io_read(&h, sizeof h) == (int32_t)sizeof h) {
        const float inv_s = 1.0f / h.s;
        mico_io_write(&inv_s, 4);
        for (uint32_t i = 0; i < h.n; i++) {
            float x;
            if (mico_io_read(&x, 4) != 4) {
                return 1;
            }
            float p = x * inv_s;
            float v = round_half_away(p);
            if (v != v) {
                v = 0.0f;
            }
            v = v < (float)(h.qmin - h.zp) ? (float)(h.qmin - h.zp) : v;
            v = v > (float)(h.qmax - h.zp) ? (float)(h.qmax - h.zp) : v;
            int32_t q = (int32_t)v + h.zp;
            float d = (float)(q - h.zp) * h.s;
            int32_t t = (x < 2147483648.0f && x > -2147483648.0f) ? (int32_t)x : 0;
            struct { float p; int32_t q; float d; int32_t t; } o = {p, q, d, t};
            mico_io_write(&o, sizeof o);
        }
    }
    return 0;
}
"""


def _quant_values(rng: np.random.Generator, s: np.float32, n: int) -> np.ndarray:
    inv = np.float32(1.0) / s
    k = rng.integers(-300, 300, n // 4).astype(np.float32)
    ties = (k + np.float32(0.5)) / inv  # near or exactly x * inv = k + 0.5
    ties_up = np.nextafter(ties, np.float32(np.inf))
    ties_dn = np.nextafter(ties, np.float32(-np.inf))
    wide = (rng.standard_normal(n // 4) * rng.choice([1e-6, 1e-2, 1.0, 1e2, 1e6], n // 4)).astype(np.float32)
    special = np.array(
        [0.0, -0.0, 0.49999997, -0.49999997, 0.5, -0.5, 1.5, -2.5, 8388607.5, 8388608.0,
         -8388609.0, 2.1e9, -2.2e9, 3e38, -3e38, np.inf, -np.inf, np.nan, 1e-45, -1e-45, 1.2e-38],
        dtype=np.float32,
    )
    with np.errstate(over="ignore"):
        scaled = special / inv  # 3e38 / inv may overflow to inf: fine, one more special
    return np.concatenate([ties, ties_up, ties_dn, wide, special, scaled]).astype(np.float32)


@needs_toolchain
def test_softfloat_quantize_dequantize_match_numpy(build_dir: Path) -> None:
    elf = _build(build_dir, "quant", QUANT)
    rng = np.random.default_rng(1)
    configs = [  # scale, zp, (qmin, qmax)
        (np.float32(0.25), 0, (-128, 127)),  # exact reciprocal: exact ties
        (np.float32(0.0123), 3, (-128, 127)),
        (np.float32(0.1), 128, (0, 255)),
        (np.float32(3.0e-5), 0, (-8, 7)),
        (np.float32(7.77), -2, (-(2**24), 2**24)),  # wide: clamps of huge values
    ]
    stream = b""
    inputs = []
    for s, zp, (qmin, qmax) in configs:
        x = _quant_values(rng, s, 2500)
        inputs.append(x)
        stream += struct.pack("<Ifiii", len(x), float(s), zp, qmin, qmax) + x.tobytes()
    r = rv32.run_elf(elf, stream)
    assert r.exit_code == 0
    out = memoryview(r.stdout)
    off = 0
    total = 0
    rec = np.dtype([("p", "<f4"), ("q", "<i4"), ("d", "<f4"), ("t", "<i4")])
    for (s, zp, rng_q), x in zip(configs, inputs, strict=True):
        inv = np.frombuffer(out[off : off + 4], np.float32)[0]
        off += 4
        got = np.frombuffer(out[off : off + rec.itemsize * len(x)], rec)
        off += rec.itemsize * len(x)
        assert inv.tobytes() == (np.float32(1.0) / s).tobytes()
        with np.errstate(invalid="ignore", over="ignore"):
            p = x * inv
            t = np.where(np.abs(x) < 2.0**31, x, 0).astype(np.int32)
        nan = np.isnan(p)
        assert np.array_equal(np.isnan(got["p"]), nan)
        assert got["p"][~nan].tobytes() == p[~nan].tobytes()  # the multiply, bit for bit
        q = numerics.quantize_input(x, float(s), zp, rng_q)
        assert np.array_equal(got["q"], q)
        d = numerics.dequantize(q, float(s), zp)
        assert got["d"].tobytes() == d.tobytes()  # dequantize, bit for bit
        assert np.array_equal(got["t"], t)  # float -> int truncation
        total += len(x)
    assert off == len(r.stdout) and total >= 10_000


# ---------------------------------------------------------------------------
# int64 arithmetic: docs/semantics.md §6 requantize bit for bit
# ---------------------------------------------------------------------------

REQUANT = r"""
#include "mico_io.h"

static int32_t clamp64(int64_t v, int32_t lo, int32_t hi)
{
    return v < lo ? lo : v > hi ? hi : (int32_t)v;
}

/* int32 accumulator: the exact 62-bit product, one rounding shift. */
static int32_t requant32(int32_t acc, int32_t m, int32_t shift, int32_t zp, int32_t lo, int32_t hi)
{
    int64_t p = (int64_t)acc * m;
    uint64_t u = p < 0 ? -(uint64_t)p : (uint64_t)p;
    u = (u + (((uint64_t)1 << shift) >> 1)) >> shift;
    int64_t r = p < 0 ? -(int64_t)u : (int64_t)u;
    return clamp64(r + zp, lo, hi);
}

/* int64 accumulator: the product in 32-bit limbs (up to 94 bits). */
static int32_t requant64(int64_t acc, int32_t m, int32_t shift, int32_t zp, int32_t lo, int32_t hi)
{
    uint64_t u = acc < 0 ? -(uint64_t)acc : (uint64_t)acc;
    uint64_t u1 = u >> 32, u0 = u & 0xffffffffu;
    uint64_t a = u1 * (uint64_t)m;
    uint64_t b = u0 * (uint64_t)m + (((uint64_t)1 << shift) >> 1);
    uint64_t c = a + (b >> 32);
    uint64_t mag;
    if (shift >= 32) {
        mag = c >> (shift - 32);
    } else {
        uint64_t cs = c < ((uint64_t)1 << 31) ? c : ((uint64_t)1 << 31);
        mag = (cs << (32 - shift)) | ((b & 0xffffffffu) >> shift);
    }
    if (mag > ((uint64_t)1 << 62)) {
        mag = (uint64_t)1 << 62; /* clamps anyway; keeps r + zp in range */
    }
    int64_t r = acc < 0 ? -(int64_t)mag : (int64_t)mag;
    return clamp64(r + zp, lo, hi);
}

int main(void)
{
    struct { int64_t acc; int32_t m, shift, zp, lo, hi, wide; } in;
    while (mico_io_read(&in, sizeof in) == (int32_t)sizeof in) {
        int32_t y = in.wide ? requant64(in.acc, in.m, in.shift, in.zp, in.lo, in.hi)
                            : requant32((int32_t)in.acc, in.m, in.shift, in.zp, in.lo, in.hi);
        mico_io_write(&y, 4);
    }
    return 0;
}
"""


@needs_toolchain
def test_requantize_int64_matches_numerics(build_dir: Path) -> None:
    elf = _build(build_dir, "requant", REQUANT)
    rng = np.random.default_rng(2)
    rec = np.dtype([("acc", "<i8"), ("m", "<i4"), ("shift", "<i4"), ("zp", "<i4"),
                    ("lo", "<i4"), ("hi", "<i4"), ("wide", "<i4")])
    groups = []
    for zp, lo, hi in [(0, -128, 127), (-3, -128, 127), (10, 0, 255), (0, -8, 7), (0, -2**31, 2**31 - 1)]:
        for wide in (0, 1):
            n = 1000
            g = np.zeros(n, rec)
            if wide:
                g["acc"] = rng.integers(-(2**62), 2**62, n) >> rng.integers(0, 62, n)
                g["acc"][:4] = [-(2**63), 2**63 - 1, 2**31 + 1, -(2**40)]
            else:
                g["acc"] = rng.integers(-(2**31), 2**31, n) >> rng.integers(0, 31, n)
                g["acc"][:4] = [-(2**31), 2**31 - 1, -3, 0]
            g["m"] = np.where(rng.random(n) < 0.8, rng.integers(2**30, 2**31, n), rng.integers(0, 2**30, n))
            g["shift"] = rng.integers(0, 63, n)
            g["m"][4], g["shift"][4], g["acc"][4] = 2**30, 31, -3  # the -1.5 -> -2 tie
            g["zp"], g["lo"], g["hi"], g["wide"] = zp, lo, hi, wide
            groups.append(g)
    data = np.concatenate(groups)
    r = rv32.run_elf(elf, data.tobytes())
    assert r.exit_code == 0
    got = np.frombuffer(r.stdout, "<i4")
    want = np.concatenate([
        numerics.requantize(g["acc"], g["m"], g["shift"], int(g["zp"][0]), int(g["lo"][0]), int(g["hi"][0]), axis=0)
        for g in groups
    ])
    assert np.array_equal(got, want)
    assert got[4] == -2


# ---------------------------------------------------------------------------
# instruction counts
# ---------------------------------------------------------------------------

LOOP = r"""
#include "mico_count.h"
#include "mico_io.h"

static int8_t a[4096], b[4096];

int main(void)
{
    uint32_t n;
    if (mico_io_read(&n, 4) != 4 || n > sizeof a) {
        return 1;
    }
    mico_io_read(a, n);
    mico_io_read(b, n);
    int32_t acc = 0;
    mico_count_begin();
    mico_count_layer_begin(0);
    mico_count_layer_end(0);
    mico_count_layer_begin(1);
    __asm__ volatile(".rept 100\n addi x0, x0, 0\n .endr");
    mico_count_layer_end(1);
    mico_count_layer_begin(2);
    for (uint32_t i = 0; i < n; i++) {
        acc += a[i] * b[i];
    }
    mico_count_layer_end(2);
    mico_count_end();
    mico_io_write(&acc, 4);
    return 0;
}
"""


@pytest.fixture(scope="module")
def loop_elf(build_dir: Path) -> Path:
    return _build(build_dir, "loop", LOOP)


def _loop_input(n: int, seed: int) -> tuple[bytes, int]:
    rng = np.random.default_rng(seed)
    a = rng.integers(-128, 128, n, dtype=np.int8)
    b = rng.integers(-128, 128, n, dtype=np.int8)
    return struct.pack("<I", n) + a.tobytes() + b.tobytes(), int(np.dot(a.astype(np.int32), b))


@needs_toolchain
def test_counts_exact_and_deterministic(loop_elf: Path) -> None:
    names = ["empty", "nops", "dot"]
    data, want = _loop_input(1000, 0)
    r1 = rv32.run_elf(loop_elf, data, layer_names=names)
    r2 = rv32.run_elf(loop_elf, data, layer_names=names)
    assert struct.unpack("<i", r1.stdout)[0] == want
    assert r1.markers == r2.markers and r1.instructions == r2.instructions  # same ELF + input
    assert r1.overhead > 0 and r1.dropped == 0
    layers = {lc.name: lc.instructions for lc in r1.layers}
    assert layers["empty"] == 0  # the measurement overhead is removed exactly
    assert layers["nops"] == 100  # straight-line code: exact
    assert [lc.name for lc in r1.layers] == names and len(r1.regions) == 1
    assert r1.instructions == r1.regions[0].instructions >= sum(layers.values())
    # Data-independent kernel: other data, same counts.
    r3 = rv32.run_elf(loop_elf, _loop_input(1000, 7)[0], layer_names=names)
    assert r3.layers == r1.layers


@needs_toolchain
def test_counts_linear_in_loop_length(loop_elf: Path) -> None:
    dot = []
    for n in (1000, 2000, 3000):
        r = rv32.run_elf(loop_elf, _loop_input(n, n)[0])
        dot.append(r.layers[2].instructions)
    per_1000 = dot[1] - dot[0]
    assert dot[2] - dot[1] == per_1000  # exactly k * N + c
    k = per_1000 / 1000
    assert k == int(k) and 3 <= k <= 10  # lb, lb, mul, add, addi, addi, bne ~ 7


LAYERS_ONLY = r"""
#include "mico_count.h"
int main(void)
{
    mico_count_layer_begin(0);
    __asm__ volatile(".rept 7\n addi x0, x0, 0\n .endr");
    mico_count_layer_end(0);
    mico_count_layer_begin(1);
    mico_count_layer_end(1);
    return 0;
}
"""


@needs_toolchain
def test_layer_records_without_begin_end(build_dir: Path) -> None:
    r = rv32.run_elf(_build(build_dir, "layers_only", LAYERS_ONLY), layer_names=["a"])
    assert r.regions == []
    assert [(lc.name, lc.instructions) for lc in r.layers] == [("a", 7), ("layer1", 0)]
    assert r.instructions is not None and r.instructions > 7  # whole program


@needs_toolchain
def test_whole_program_count_without_regions(hello_elf: Path) -> None:
    r1 = rv32.run_elf(hello_elf, b"\0")
    r2 = rv32.run_elf(hello_elf, b"\0")
    assert r1.regions == [] and r1.instructions is not None
    assert r1.instructions == r2.instructions > 100  # crt0 + main + the record table clear
