"""The C emitter: quantized IR -> a self-contained C project (model.c/h, weights.c, runtime).

`emit_c(graph, outdir)` writes, atomically (built in a temp dir beside
`outdir`, then renamed): model.h, model.c (straight-line kernel calls),
weights.c (one const uint32_t blob), the runtime sources, main.c (a harness
reading raw float32 samples through mico_io_read/write), a Makefile, the
final IR (model.mir + model.npz) and report.json.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
import numpy as np

from micoc.analysis.requant import (
    activation_bounds,
    clip_bounds,
    layer_multipliers,
    rescale_multiplier,
    scales,
)
from micoc.errors import UnsupportedError
from micoc.interp.kernels import get_kernel
from micoc.ir.graph import Graph, Op, Value
from micoc.numerics import container_bits, quantize_multipliers_common
from micoc.passes.plan_buffers import BufferPlan, plan_buffers
from micoc.targets.c.layout import (
    KIND_SIGNED,
    WF_PACKED,
    WF_PLANES,
    TensorLayout,
    chw,
    conv_scratch_words,
    kind_of,
    pack_conv_weights,
    tensor_layout,
)

RUNTIME_FILES = ("mico_rt.h", "mico_rt.c", "mico_io.h", "mico_io_stdio.c", "main.c")
INT_OPS = frozenset({
    "conv2d", "linear", "add", "sub", "concat", "maxpool", "avgpool", "global_avgpool",
    "relu", "clip", "requantize", "lut", "reshape", "transpose", "slice",
})
FLOAT_TAIL_OPS = frozenset({"reshape"})
# Blobs above this many bytes go to weights.bin + .incbin (a huge C initializer compiles slowly).
INCBIN_THRESHOLD = 1 << 20


# ---------------------------------------------------------------------------
# support check
# ---------------------------------------------------------------------------


def check_support(graph: Graph) -> None:
    """Raise UnsupportedError listing every op/type the C runtime cannot run (all at once)."""
    problems: list[str] = []
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        problems.append(f"the C backend runs graphs with one input and one output "
                        f"(got {len(graph.inputs)} and {len(graph.outputs)})")
    quantized = any(op.opname == "quantize" for op in graph.ops)
    if not quantized:
        problems.append("the graph is not quantized (run the quantize pass first)")
    seen_dequant = False
    for op in graph.ops:
        where = op.where()
        if op.opname == "quantize":
            if chw(op.result.type.shape) is None:
                problems.append(f"{where}: input shape {list(op.result.type.shape)} is not [1,C,H,W] or [1,K]")
            continue
        if op.opname == "dequantize":
            seen_dequant = True
            if chw(op.operands[0].type.shape) is None:
                problems.append(f"{where}: output shape {list(op.result.type.shape)} is not [1,C,H,W] or [1,K]")
            continue
        if seen_dequant or not op.result.type.is_quantized:
            if op.opname not in FLOAT_TAIL_OPS:
                problems.append(f"{where}: '{op.opname}' after the output dequantize is not supported "
                                "by the C backend (only reshape)")
            continue
        if op.opname not in INT_OPS:
            problems.append(f"{where}: '{op.opname}' has no C kernel")
            continue
        for v in [op.result, *op.operands]:
            if v.is_const:
                if op.opname in ("add", "sub", "concat"):
                    problems.append(f"{where}: constant operands of {op.opname} are not supported")
                continue
            if v.type.is_quantized and chw(v.type.shape) is None:
                problems.append(f"{where}: shape {list(v.type.shape)} is not [1,C,H,W] or [1,K]")
        if op.opname in ("add", "sub") and len({v.type.shape for v in op.operands}) != 1:
            problems.append(f"{where}: broadcasting {op.opname} is not supported")
        if op.opname == "concat" and op.attrs["axis"] % op.result.type.rank != 1:
            problems.append(f"{where}: concat along axis {op.attrs['axis']} (only channels, axis 1)")
    if problems:
        raise UnsupportedError("the C backend cannot compile this graph:\n  " + "\n  ".join(problems))


# ---------------------------------------------------------------------------
# the weight blob
# ---------------------------------------------------------------------------


@dataclass
class Blob:
    words: list[np.ndarray] = field(default_factory=list)
    size: int = 0
    entries: list[dict[str, Any]] = field(default_factory=list)

    def add(self, name: str, kind: str, data: np.ndarray) -> int:
        """Append 32-bit words; returns their word offset."""
        arr = np.ascontiguousarray(np.asarray(data).reshape(-1))
        if arr.dtype.kind == "i":  # two's complement words (int64 wraps to its low 32 bits)
            arr = arr.astype(np.int32, copy=False).view(np.uint32)
        arr = arr.astype(np.uint32, copy=False)
        off = self.size
        self.words.append(arr)
        self.size += arr.size
        self.entries.append({"name": name, "kind": kind, "offset": 4 * off, "bytes": 4 * int(arr.size)})
        return off

    def array(self) -> np.ndarray:
        return np.concatenate(self.words) if self.words else np.zeros(0, np.uint32)


# ---------------------------------------------------------------------------
# emission
# ---------------------------------------------------------------------------


def c_float(x: float) -> str:
    """An exact C99 hex float literal of a float32 value."""
    f = float(np.float32(x))
    if f == 0:
        return "0.0f"
    return f"{f.hex()}f"


@dataclass
class Emitted:
    report: dict[str, Any]
    files: dict[str, str]


class _Emitter:
    def __init__(self, graph: Graph) -> None:
        self.g = graph
        self.blob = Blob()
        self.decls: list[str] = []
        self.body: list[str] = []
        self.layers: list[dict[str, Any]] = []
        self.tname: dict[Value, str] = {}
        self.layout: dict[Value, TensorLayout] = {}
        self.scratch = 0
        self.n_layer = 0
        self.planner = ""
        self.weights_mode = "array"
        self.blob_bytes = b""

    # -- tensors ------------------------------------------------------------------
    def tensors(self) -> tuple[list[Value], Op, Op]:
        qop = next(op for op in self.g.ops if op.opname == "quantize")
        dop = next(op for op in self.g.ops if op.opname == "dequantize")
        vals = [op.result for op in self.g.ops if op.result.type.is_quantized]
        return vals, qop, dop

    def tref(self, v: Value) -> str:
        return f"&{self.tname[v]}"

    # -- ops ------------------------------------------------------------------
    def emit_op(self, op: Op) -> None:
        getattr(self, f"op_{op.opname}")(op)

    def call(self, op: Op, stmt: str) -> None:
        label = op.layer or op.loc or op.opname
        self.body.append(f"/* {op.opname} {label} */")
        self.body.append(stmt)

    def op_quantize(self, op: Op) -> None:
        pass  # done at the boundary (mico_model_run / run_q)

    def op_dequantize(self, op: Op) -> None:
        pass

    def conv_like(self, op: Op) -> None:
        x, w = op.operands[0], op.operands[1]
        name = op.layer or f"{op.opname}_{self.n_layer}"
        words, fmt, wpt = pack_conv_weights(op)
        woff = self.blob.add(f"{name}.weight", "packed weights", words)
        cout = w.type.shape[0]
        m, s = layer_multipliers(op)
        m = np.broadcast_to(np.asarray(m, np.int64).reshape(-1), (cout,))
        s = np.broadcast_to(np.asarray(s, np.int64).reshape(-1), (cout,))
        boff = None
        if len(op.operands) > 2:
            boff = self.blob.add(f"{name}.bias", "bias", np.asarray(op.operands[2].data, np.int64))
        moff = self.blob.add(f"{name}.multiplier", "requant", m)
        soff = self.blob.add(f"{name}.shift", "requant", s)
        lo, hi = activation_bounds(op)
        a = op.attrs
        if op.opname == "conv2d":
            kh, kw = w.type.shape[2], w.type.shape[3]
            sh, sw = a["stride"]
            dh, dw = a["dilation"]
            pt, pl = a["pad"][0], a["pad"][1]
            groups = a["groups"]
            cin_g = w.type.shape[1]
        else:
            kh = kw = sh = sw = dh = dw = groups = 1
            pt = pl = 0
            cin_g = w.type.shape[1]
        wt = w.type
        # PACKED rows are signed bytes whatever the weight bits (layout.short_taps)
        wcbits, wkind = (8, KIND_SIGNED) if fmt == WF_PACKED else (tensor_bits(wt.bits), kind_of(wt))
        pname = f"P{self.n_layer}"
        bias = f"(const int32_t *)&mico_weights[{boff}]" if boff is not None else "0"
        self.decls.append(
            f"static const mico_conv {pname} = {{{cout}, {cin_g}, {kh}, {kw}, {sh}, {sw}, {dh}, {dw}, "
            f"{pt}, {pl}, {groups}, {lo}, {hi}, {wpt}, {wt.bits}, {wcbits}, {wkind}, "
            f"{fmt}, {1 if a.get('acc') == 'i64' else 0}, {1 if op.result.type.elem == 'qi1' else 0}, "
            f"&mico_weights[{woff}], {bias}, (const int32_t *)&mico_weights[{moff}], "
            f"(const int32_t *)&mico_weights[{soff}]}};"
        )
        self.scratch = max(self.scratch, conv_scratch_words(op, wpt))
        idx = self.n_layer
        self.call(op, f"LAYER_BEGIN({idx}); mico_conv2d({self.tref(x)}, {self.tref(op.result)}, &{pname}, "
                      f"mico_scratch); LAYER_END({idx});")
        out = op.result.type.shape
        macs = int(np.prod(out)) * cin_g * kh * kw
        wbytes = sum(e["bytes"] for e in self.blob.entries if e["name"].startswith(f"{name}."))
        self.layers.append({
            "index": idx, "name": name, "op": op.opname, "shape": list(out),
            "wbits": int(wt.bits), "abits": int(x.type.bits), "macs": macs, "weight_bytes": wbytes,
            "kernel": "reference" if a.get("acc") == "i64" else "bit-serial" if fmt == WF_PLANES else "patch",
        })
        self.n_layer += 1

    op_conv2d = conv_like
    op_linear = conv_like

    def op_add(self, op: Op, sign: int = 1) -> None:
        t = op.result.type
        reals = [float(scales(v.type)[0] / scales(t)[0]) for v in op.operands]
        ms, shift = quantize_multipliers_common(reals)
        lo, hi = t.qrange
        a, b = op.operands
        self.call(op, f"mico_add({self.tref(a)}, {int(ms[0])}, {self.tref(b)}, {int(ms[1])}, {sign}, "
                      f"{int(shift)}, {self.tref(op.result)}, {lo}, {hi});")

    def op_sub(self, op: Op) -> None:
        self.op_add(op, -1)

    def op_concat(self, op: Op) -> None:
        t = op.result.type
        lo, hi = t.qrange
        stmts = [f"mico_clear({self.tref(op.result)});"]
        c0 = 0
        for v in op.operands:
            if v.type.quant == t.quant and v.type.elem == t.elem:
                m, s = 0, 0
            else:
                mm, ss = rescale_multiplier(v.type, t)
                m, s = int(np.asarray(mm).reshape(-1)[0]), int(np.asarray(ss).reshape(-1)[0])
            stmts.append(f"mico_concat_part({self.tref(v)}, {self.tref(op.result)}, {c0}, {m}, {s}, {lo}, {hi});")
            c0 += v.type.shape[1]
        self.call(op, " ".join(stmts))

    def pool(self, op: Op) -> str:
        a = op.attrs
        kh, kw = a["kernel"]
        sh, sw = a["stride"]
        pt, pl, pb, pr = a["pad"]
        inc = 1 if a.get("count_include_pad") else 0
        name = f"PL{len(self.decls)}"
        self.decls.append(f"static const mico_pool {name} = {{{kh}, {kw}, {sh}, {sw}, {pt}, {pl}, {pb}, {pr}, {inc}}};")
        return name

    def op_maxpool(self, op: Op) -> None:
        p = self.pool(op)
        dh, dw = op.attrs["dilation"]
        self.call(op, f"mico_maxpool({self.tref(op.operands[0])}, {self.tref(op.result)}, &{p}, {dh}, {dw});")

    def op_avgpool(self, op: Op) -> None:
        p = self.pool(op)
        self.call(op, f"mico_avgpool({self.tref(op.operands[0])}, {self.tref(op.result)}, &{p});")

    def op_global_avgpool(self, op: Op) -> None:
        self.call(op, f"mico_global_avgpool({self.tref(op.operands[0])}, {self.tref(op.result)});")

    def op_relu(self, op: Op) -> None:
        _, hi = op.result.type.qrange
        self.call(op, f"mico_clamp({self.tref(op.operands[0])}, {self.tref(op.result)}, 0, {hi});")

    def op_clip(self, op: Op) -> None:
        t = op.result.type
        lo, hi = clip_bounds(op.attrs["min"], op.attrs["max"], scales(t)[0], t.qrange)
        self.call(op, f"mico_clamp({self.tref(op.operands[0])}, {self.tref(op.result)}, {lo}, {hi});")

    def op_requantize(self, op: Op) -> None:
        t = op.result.type
        m, s = rescale_multiplier(op.operands[0].type, t)
        lo, hi = t.qrange
        m, s = int(np.asarray(m).reshape(-1)[0]), int(np.asarray(s).reshape(-1)[0])
        self.call(op, f"mico_requantize({self.tref(op.operands[0])}, {self.tref(op.result)}, {m}, {s}, {lo}, {hi});")

    def op_lut(self, op: Op) -> None:
        lo, _ = op.operands[0].type.qrange
        off = self.blob.add(f"{op.operands[1].name}", "lookup table", np.asarray(op.operands[1].data, np.int64))
        self.call(op, f"mico_lut({self.tref(op.operands[0])}, {self.tref(op.result)}, "
                      f"(const int32_t *)&mico_weights[{off}], {lo});")

    def repack(self, op: Op) -> None:
        x, y = op.operands[0], op.result
        table = gather_table(op)
        if table is None:
            self.call(op, f"mico_copy({self.tref(x)}, {self.tref(y)});")
            return
        off = self.blob.add(f"{op.opname}_{len(self.body)}.index", "index table", table.astype(np.uint32))
        self.call(op, f"mico_gather({self.tref(x)}, {self.tref(y)}, &mico_weights[{off}]);")

    op_reshape = repack
    op_transpose = repack
    op_slice = repack

    # -- whole model ------------------------------------------------------------
    def run(self) -> tuple[dict[str, str], dict[str, Any]]:
        check_support(self.g)
        vals, qop, dop = self.tensors()
        for i, v in enumerate(vals):
            self.tname[v] = f"T{i}"
            self.layout[v] = tensor_layout(v.type)
        out_t = dop.operands[0]
        plan = arena_plan(self.g)
        self.planner = f"plan-buffers ({plan.strategy})"
        for op in self.g.ops:
            if op.opname in ("quantize", "dequantize") or not op.result.type.is_quantized:
                continue
            self.emit_op(op)
        tdecls = []
        for v in vals:
            lt = self.layout[v]
            tdecls.append(
                f"static const mico_tensor {self.tname[v]} = {{&mico_arena[{plan.offsets[v] // 4}], {lt.c}, {lt.h}, "
                f"{lt.w}, {lt.wpp}, {lt.cbits}, {lt.lb}, {lt.bits}, {lt.kind}}}; /* {v.type} */"
            )
        xin = qop.result
        in_t = xin.type
        in_scale = float(scales(in_t)[0])
        inv = np.float32(1.0) / np.float32(in_scale)
        lo, hi = in_t.qrange
        out_scale = float(scales(out_t.type)[0])
        blob = self.blob.array()
        ctx = {
            "name": self.g.name,
            "tensor_decls": tdecls,
            "decls": self.decls,
            "body": self.body,
            "arena_words": max(plan.arena_bytes // 4, 1),
            "scratch_words": max(self.scratch, 1),
            "blob_words": max(int(blob.size), 1),
            "blob_lines": [],  # filled below for the C-array form only (formatting is slow)
            "input": self.tname[xin],
            "output": self.tname[out_t],
            "input_size": int(np.prod(in_t.shape)),
            "output_size": int(np.prod(out_t.type.shape)),
            "input_shape": list(in_t.shape),
            "output_shape": list(self.g.outputs[0].type.shape),
            "inv_scale": c_float(float(inv)),
            "out_scale": c_float(out_scale),
            "in_lo": lo, "in_hi": hi,
            "n_layers": self.n_layer,
        }
        env = jinja2.Environment(
            loader=jinja2.PackageLoader("micoc.targets.c", "templates"),
            keep_trailing_newline=True, undefined=jinja2.StrictUndefined, autoescape=False,
        )
        incbin = blob.size * 4 > INCBIN_THRESHOLD
        if not incbin:
            ctx["blob_lines"] = _blob_lines(blob)
        files = {
            name: env.get_template(f"{name}.j2").render(**ctx)
            for name in ("model.h", "model.c", "Makefile")
        }
        files["weights.c"] = env.get_template("weights_incbin.c.j2" if incbin else "weights.c.j2").render(**ctx)
        self.blob_bytes = blob.astype("<u4", copy=False).tobytes()
        self.weights_mode = "incbin" if incbin else "array"
        weights = [dict(e) for e in self.blob.entries]
        report = {
            "model": self.g.name,
            "input": {"name": self.g.inputs[0].name, "shape": list(in_t.shape), "type": str(in_t)},
            "output": {"shape": list(self.g.outputs[0].type.shape), "type": str(out_t.type)},
            "weight_bytes": 4 * int(blob.size),
            "weights": weights,
            "weight_bytes_by_kind": _by_kind(weights),
            "arena_bytes": plan.arena_bytes,
            "arena_planner": self.planner,
            "weights_mode": self.weights_mode,
            "arena_lower_bound_bytes": plan.lower_bound,
            "scratch_bytes": 4 * self.scratch,
            "layers": self.layers,
            "macs": sum(lay["macs"] for lay in self.layers),
        }
        return files, report


# ---------------------------------------------------------------------------
# the arena: plan-buffers with this layout's sizes and views
# ---------------------------------------------------------------------------


def gather_table(op: Op) -> np.ndarray | None:
    """The gather table of a quantized reshape/transpose/slice in the runtime's
    layout (output word-code k reads input code table[k], both numbered
    pixel * C + c), or None when the op moves nothing (same layout, identity)."""
    x, y = op.operands[0], op.result
    lx, ly = tensor_layout(x.type), tensor_layout(y.type)
    c, h, w = lx.c, lx.h, lx.w
    flat = (np.arange(c)[:, None, None] + c * (np.arange(h)[:, None] * w + np.arange(w))[None])
    idx = np.ascontiguousarray(flat.reshape(x.type.shape).astype(np.int64))
    out = np.asarray(get_kernel(op)(op, [idx])).reshape(ly.c, ly.h * ly.w)  # [C', pix']
    table = out.T.reshape(-1)  # numbered pix' * C' + c'
    if lx == ly and np.array_equal(table, np.arange(table.size)):
        return None
    return table


def is_view(op: Op) -> bool:
    """plan-buffers' `is_view` for this layout: a reshape/transpose/slice is a
    view (its result shares its operand's bytes, the emitted copy is a no-op)
    exactly when it moves no code; e.g. flattening a [1,C,H,W] tensor with
    H*W > 1 re-packs channel-packed pixels into one row, a real copy that gets
    its own buffer. Float ops (the tail after the output dequantize) hold no
    arena bytes."""
    if not (op.result.type.is_quantized and op.operands[0].type.is_quantized):
        return True
    return gather_table(op) is None


def arena_bytes_of(v: Value) -> int:
    """Arena bytes of an activation in the runtime's layout (float values: none,
    they never live in the arena)."""
    return 4 * tensor_layout(v.type).words if v.type.is_quantized else 0


def arena_plan(graph: Graph) -> BufferPlan:
    """The activation arena of a (supported) quantized graph: `plan_buffers` with
    the runtime's sizes and views (offsets in bytes, 4-aligned)."""
    return plan_buffers(graph, size_of=arena_bytes_of, is_view=is_view, alignment=4)


def tensor_bits(bits: int) -> int:
    return container_bits(bits)


def _by_kind(entries: list[dict[str, Any]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for e in entries:
        out[e["kind"]] = out.get(e["kind"], 0) + e["bytes"]
    return out


def _blob_lines(blob: np.ndarray) -> list[str]:
    per = 8
    return [", ".join(f"0x{int(v):08x}u" for v in blob[i:i + per]) for i in range(0, blob.size, per)] or ["0u"]


def runtime_dir() -> Path:
    return Path(str(resources.files("micoc") / "runtime"))


def emit_c(graph: Graph, outdir: str | os.PathLike[str], extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Emit the C project for a quantized graph into `outdir` (atomically); returns the report."""
    from micoc.ir.printer import save_mir

    em = _Emitter(graph)
    files, report = em.run()
    if extra:
        report.update(extra)
    out = Path(outdir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    try:
        for name, text in files.items():
            (tmp / name).write_text(text)
        (tmp / "weights.bin").write_bytes(em.blob_bytes)
        rt = runtime_dir()
        for name in RUNTIME_FILES:
            shutil.copyfile(rt / name, tmp / name)
        save_mir(graph, tmp / "model.mir")
        (tmp / "report.json").write_text(json.dumps(report, indent=2) + "\n")
        if out.exists():
            old = out.with_name(f".{out.name}.old.{os.getpid()}")
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return report


