"""Torch executor: the quantization plan simulated with fake quantization.

It runs a calibrated, bit-assigned float graph (the input of the `quantize`
pass) in torch, rounding every activation and weight exactly where the
integer IR will (same plan, same scales, same weight quantizer), with a
straight-through estimator so it can also fine-tune the weights
(quantization-aware training). It is fast on batches and differentiable; the
integer interpreter stays the bit-exact reference.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from micoc.analysis.quant_plan import (
    COMBINE,
    LAYERS,
    LUT_OPS,
    PASS_THROUGH,
    ActQuant,
    QuantPlan,
    const_quant,
    layer_activation_operands,
    plan_quantization,
)
from micoc.errors import UnsupportedError
from micoc.ir.graph import Graph, Op, Value
from micoc.ir.ops import window_out

_HALF = torch.tensor(0.5)


def round_half_away(x: torch.Tensor) -> torch.Tensor:
    """Round half away from zero (no gradient: every caller detaches it)."""
    with torch.no_grad():
        return _round_half_away_(x.detach().clone())


def _round_half_away_(t: torch.Tensor) -> torch.Tensor:
    """In place, no gradient: trunc(t + copysign(0.5, t)), the same float
    operations as sign(t) * floor(|t| + 0.5) (IEEE rounding is sign-symmetric)."""
    return t.add_(torch.copysign(_HALF.to(t.dtype), t)).trunc_()


def _straight_through(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """y forward; the gradient of x backward (when x needs one). y is detached."""
    if not (torch.is_grad_enabled() and x.requires_grad):
        return y
    with torch.no_grad():
        d = y.sub_(x)
    return x + d


def fake_quant(x: torch.Tensor, q: ActQuant) -> torch.Tensor:
    """Quantize-dequantize with a straight-through gradient inside the range.
    The rounding runs without autograd and in place (evaluation is most of the
    search's time)."""
    with torch.no_grad():
        if q.bits == 1 and not q.unsigned:
            y = torch.where(x >= 0, q.scale, -q.scale).to(x.dtype)
        else:
            t = x / q.scale
            if q.unsigned:  # floor(t + 0.5) == round-half-away for t >= 0; t < 0 clamps to 0 either way
                t.add_(0.5).floor_().clamp_(0, (1 << q.bits) - 1)
            else:
                _round_half_away_(t).clamp_(-(1 << (q.bits - 1)), (1 << (q.bits - 1)) - 1)
            y = t.mul_(q.scale)
    return _straight_through(x, y)


def fake_quant_weights(w: torch.Tensor, bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-output-channel symmetric weights as micoc.numerics.quantize_weights (maxabs);
    returns the fake-quantized weights and the per-channel scales."""
    flat = w.reshape(w.shape[0], -1)
    shape = (-1,) + (1,) * (w.dim() - 1)
    if bits == 1:
        s = flat.abs().mean(dim=1).clamp_min(1e-12).reshape(shape)
        y = torch.where(w >= 0, s, -s)
    else:
        qmax = (1 << (bits - 1)) - 1
        s = (flat.abs().amax(dim=1) / qmax).clamp_min(1e-12).reshape(shape)
        y = torch.clamp(round_half_away(w / s), -qmax, qmax) * s
    return w + (y - w).detach(), s.reshape(-1)


class TorchExecutor(nn.Module):
    """`TorchExecutor(graph)(x)` -> outputs as the quantized model computes them (approximately)."""

    def __init__(self, graph: Graph, *, quantize: bool = True) -> None:
        super().__init__()
        self.graph = graph
        self.quantize = quantize
        self.plan: QuantPlan | None = plan_quantization(graph) if quantize else None
        self.weights = nn.ParameterDict()
        self._param_of: dict[Value, str] = {}
        for op in graph.layers():
            for v in op.operands[1:]:
                if v.is_const:
                    key = f"p{len(self._param_of)}"
                    self.weights[key] = nn.Parameter(torch.from_numpy(np.array(v.data, dtype=np.float32)))
                    self._param_of[v] = key
        self._consts = {v: torch.from_numpy(np.array(v.data)) for v in graph.consts.values() if v not in self._param_of}

    def tensor(self, v: Value) -> torch.Tensor:
        if v in self._param_of:
            return self.weights[self._param_of[v]]
        return self._consts[v]

    def forward(self, *inputs: torch.Tensor) -> list[torch.Tensor]:
        env: dict[Value, torch.Tensor] = {}
        plan = self.plan
        for v, x in zip(self.graph.inputs, inputs, strict=True):
            env[v] = fake_quant(x, plan.values[v]) if plan else x
        for op in self.graph.ops:
            args = [env[v] if v in env else self.tensor(v) for v in op.operands]
            if plan and op not in plan.float_tail:
                args, step = self._quantize_operands(op, args)
            y = _TORCH_OPS[op.opname](op, args)
            if plan and step is not None:
                # Snap to whole accumulator units: the integer path computes the
                # accumulator exactly, and float error must not move a value across
                # a rounding tie or, for binary outputs, across zero.
                step = step.reshape((-1,) + (1,) * (y.dim() - 2)) if op.opname == "conv2d" else step
                with torch.no_grad():
                    # y / step is within float error of an integer: any rounding mode
                    # gives that integer, and round_ is one in-place pass.
                    snapped = (y / step).round_().mul_(step)
                y = _straight_through(y, snapped)
            if plan and op not in plan.float_tail and op.opname not in ("maxpool", "reshape", "transpose", "slice"):
                y = fake_quant(y, plan.values[op.result])  # relu/clip/pools keep their input's type
            env[op.result] = y
        return [env[v] for v in self.graph.outputs]

    def _quantize_operands(self, op: Op, args: list[torch.Tensor]) -> tuple[list[torch.Tensor], torch.Tensor | None]:
        """Fake-quantized operands, and for layers the accumulator unit (s_x * s_w per channel)."""
        assert self.plan is not None
        step = None
        if op.opname in LAYERS:
            for i, _ in layer_activation_operands(op):
                if (op, i) in self.plan.layer_inputs:
                    args[i] = fake_quant(args[i], self.plan.layer_inputs[(op, i)])
            if op.opname != "matmul":
                args[1], sw = fake_quant_weights(args[1], op.attrs["wbits"])
                step = (self.plan.operand(op, 0).scale * sw).detach()
                if len(args) > 2:  # the int32 bias lives at scale s_x * s_w: coarse at low bits
                    args[2] = args[2] + (round_half_away(args[2] / step) * step - args[2]).detach()
            else:
                step = torch.tensor(self.plan.operand(op, 0).scale * self.plan.operand(op, 1).scale)
        elif op.opname in COMBINE:
            args = [fake_quant(a, const_quant(v)) if v.is_const else a
                    for v, a in zip(op.operands, args, strict=True)]
        elif op.opname not in PASS_THROUGH | LUT_OPS:
            raise UnsupportedError(f"torch executor: no quantized form of {op.where()}")
        return args, step

    def write_back(self) -> None:
        """Store the (fine-tuned) float weights into the graph's constants."""
        for v, key in self._param_of.items():
            v.data = self.weights[key].detach().numpy().astype(np.float32).copy()
            v._digest = None


# -- torch implementations of the float ops ---------------------------------------------------


def _act(op: Op, y: torch.Tensor) -> torch.Tensor:
    act = op.attrs["act"]
    if act == "relu":
        return F.relu(y)
    if act == "relu6":
        return torch.clamp(y, 0, 6)
    if act == "clip":
        return torch.clamp(y, op.attrs["clip_min"], op.attrs["clip_max"])
    return y


def _conv2d(op: Op, a: list[torch.Tensor]) -> torch.Tensor:
    at = op.attrs
    pt, pl, pb, pr = at["pad"]
    if pt == pb and pl == pr:  # symmetric: conv2d pads itself (no padded copy)
        x, pad = a[0], (pt, pl)
    else:
        x, pad = F.pad(a[0], (pl, pr, pt, pb)), (0, 0)
    y = F.conv2d(x, a[1], a[2] if len(a) > 2 else None, at["stride"], pad, at["dilation"], at["groups"])
    return _act(op, y)


def _pool(op: Op, x: torch.Tensor, kind: str) -> torch.Tensor:
    at = op.attrs
    (kh, kw), (sh, sw), (pt, pl, pb, pr) = at["kernel"], at["stride"], at["pad"]
    h, w = x.shape[2], x.shape[3]
    dil = at.get("dilation", (1, 1))
    oh = window_out(h, kh, sh, pt, pb, dil[0], at["ceil_mode"])
    ow = window_out(w, kw, sw, pl, pr, dil[1], at["ceil_mode"])
    eb = max(0, (oh - 1) * sh + dil[0] * (kh - 1) + 1 - (h + pt + pb))
    er = max(0, (ow - 1) * sw + dil[1] * (kw - 1) + 1 - (w + pl + pr))
    if kind == "max":
        xp = F.pad(x, (pl, pr + er, pt, pb + eb), value=-float("inf"))
        return F.max_pool2d(xp, (kh, kw), (sh, sw), 0, dil)
    xp = F.pad(x, (pl, pr + er, pt, pb + eb))
    ones = torch.ones((1, 1, h, w), dtype=x.dtype)
    if at["count_include_pad"]:
        ones = F.pad(ones, (pl, pr, pt, pb), value=1.0)
        mask = F.pad(ones, (0, er, 0, eb))
    else:
        mask = F.pad(ones, (pl, pr + er, pt, pb + eb))
    total = F.avg_pool2d(xp, (kh, kw), (sh, sw), 0) * (kh * kw)
    count = F.avg_pool2d(mask, (kh, kw), (sh, sw), 0) * (kh * kw)
    return total / count


def _slice(op: Op, x: torch.Tensor) -> torch.Tensor:
    idx = [slice(None)] * x.dim()
    at = op.attrs
    for s, e, ax, st in zip(at["starts"], at["ends"], at["axes"], at["steps"], strict=True):
        if st < 0:
            raise UnsupportedError(f"torch executor: negative slice steps ({op.where()})")
        idx[ax] = slice(s, e, st)
    return x[tuple(idx)]


def _reshape(op: Op, x: torch.Tensor) -> torch.Tensor:
    shape = list(op.attrs["shape"])
    if x.shape[0] != op.operands[0].type.shape[0]:
        shape[0] = x.shape[0]
    return x.reshape(shape)


def _same_batch(ts: list[torch.Tensor]) -> list[torch.Tensor]:
    """Constant operands hold one sample; repeat them for a batch of N."""
    n = max(t.shape[0] for t in ts)
    return [t.expand(n, *t.shape[1:]) if t.shape[0] != n else t for t in ts]


def _batch_norm(op: Op, a: list[torch.Tensor]) -> torch.Tensor:
    return F.batch_norm(a[0], a[3], a[4], a[1], a[2], False, 0.0, op.attrs["epsilon"])


_TORCH_OPS: dict[str, Callable[[Op, list[torch.Tensor]], torch.Tensor]] = {
    "conv2d": _conv2d,
    "linear": lambda op, a: _act(op, F.linear(a[0], a[1], a[2] if len(a) > 2 else None)),
    "matmul": lambda op, a: torch.matmul(a[0], a[1]),
    "add": lambda op, a: a[0] + a[1],
    "sub": lambda op, a: a[0] - a[1],
    "mul": lambda op, a: a[0] * a[1],
    "div": lambda op, a: a[0] / a[1],
    "concat": lambda op, a: torch.cat(_same_batch(a), dim=op.attrs["axis"]),
    "maxpool": lambda op, a: _pool(op, a[0], "max"),
    "avgpool": lambda op, a: _pool(op, a[0], "avg"),
    "global_avgpool": lambda op, a: a[0].mean(dim=(2, 3), keepdim=True),
    "mean": lambda op, a: a[0].mean(dim=tuple(op.attrs["axes"]), keepdim=op.attrs["keepdims"]),
    "reshape": lambda op, a: _reshape(op, a[0]),
    "transpose": lambda op, a: a[0].permute(*op.attrs["perm"]),
    "slice": lambda op, a: _slice(op, a[0]),
    "relu": lambda op, a: F.relu(a[0]),
    "clip": lambda op, a: torch.clamp(a[0], op.attrs["min"], op.attrs["max"]),
    "sigmoid": lambda op, a: torch.sigmoid(a[0]),
    "softmax": lambda op, a: torch.softmax(a[0], dim=op.attrs["axis"]),
    "batch_norm": _batch_norm,
}


def run_torch(graph: Graph, x: np.ndarray, *, quantize: bool = True, batch: int = 500) -> np.ndarray:
    """Convenience: first output of the executor on a numpy batch (no gradients)."""
    ex = TorchExecutor(graph, quantize=quantize)
    outs = []
    with torch.no_grad():
        for i in range(0, len(x), batch):
            outs.append(ex(torch.from_numpy(np.ascontiguousarray(x[i : i + batch], dtype=np.float32)))[0].numpy())
    return np.concatenate(outs)
