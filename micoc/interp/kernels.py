"""Reference kernels: one numpy function per IR op.

These define what each op means. They favour clarity, but use BLAS
(im2col + matmul) so that the interpreter is fast enough to evaluate
thousands of images during calibration and search.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from micoc.errors import UnsupportedError
from micoc.ir.graph import Op
from micoc.ir.ops import window_out

Kernel = Callable[[Op, list[np.ndarray]], np.ndarray]
KERNELS: dict[str, Kernel] = {}


def kernel(*names: str) -> Callable[[Kernel], Kernel]:
    def register(fn: Kernel) -> Kernel:
        for n in names:
            KERNELS[n] = fn
        return fn

    return register


def get_kernel(op: Op) -> Kernel:
    try:
        return KERNELS[op.opname]
    except KeyError:
        raise UnsupportedError(f"the interpreter has no kernel for '{op.opname}'", op.where()) from None


# -- helpers ------------------------------------------------------------------


def apply_act(op: Op, y: np.ndarray) -> np.ndarray:
    """The fused activation of conv2d / linear."""
    act = op.attrs["act"]
    if act == "relu":
        return np.maximum(y, 0, out=y)
    if act == "relu6":
        return np.clip(y, 0, 6, out=y)
    if act == "clip":
        return np.clip(y, op.attrs["clip_min"], op.attrs["clip_max"], out=y)
    return y


def pad_for_windows(
    x: np.ndarray,
    kernel_hw: tuple[int, int],
    stride: tuple[int, int],
    pad: tuple[int, int, int, int],
    dilation: tuple[int, int],
    ceil_mode: bool,
    fill: float,
) -> tuple[np.ndarray, int, int]:
    """Pad x so that every sliding window lies inside it; returns (padded, OH, OW).

    In ceil mode the last window may run past the explicitly padded input;
    that part is filled with `fill` too, which callers account for.
    """
    n, c, h, w = x.shape
    kh, kw = kernel_hw
    sh, sw = stride
    pt, pl, pb, pr = pad
    dh, dw = dilation
    oh = window_out(h, kh, sh, pt, pb, dh, ceil_mode)
    ow = window_out(w, kw, sw, pl, pr, dw, ceil_mode)
    extra_b = max(0, (oh - 1) * sh + dh * (kh - 1) + 1 - (h + pt + pb))
    extra_r = max(0, (ow - 1) * sw + dw * (kw - 1) + 1 - (w + pl + pr))
    if pt or pl or pb or pr or extra_b or extra_r:
        x = np.pad(x, ((0, 0), (0, 0), (pt, pb + extra_b), (pl, pr + extra_r)), constant_values=fill)
    return x, oh, ow


def window_taps(
    x: np.ndarray,
    kernel_hw: tuple[int, int],
    stride: tuple[int, int],
    pad: tuple[int, int, int, int],
    dilation: tuple[int, int],
    ceil_mode: bool,
    fill: float,
):  # type: ignore[no-untyped-def]
    """Yield, per kernel tap (i, j), the strided view [N, C, OH, OW] of the inputs it sees.

    Reducing tap by tap with whole-array ufuncs is far faster than reducing
    a window view over its two small trailing axes.
    """
    xp, oh, ow = pad_for_windows(x, kernel_hw, stride, pad, dilation, ceil_mode, fill)
    sh, sw = stride
    dh, dw = dilation
    for i in range(kernel_hw[0]):
        for j in range(kernel_hw[1]):
            yield xp[:, :, i * dh : i * dh + (oh - 1) * sh + 1 : sh, j * dw : j * dw + (ow - 1) * sw + 1 : sw]


def reduce_windows(x: np.ndarray, ufunc: np.ufunc, *args, dtype=None) -> np.ndarray:  # type: ignore[no-untyped-def]
    """ufunc-reduce (np.maximum, np.add) every window; args as for window_taps."""
    acc = None
    for tap in window_taps(x, *args):
        acc = np.array(tap, dtype=dtype or tap.dtype) if acc is None else ufunc(acc, tap, out=acc)
    assert acc is not None
    return acc


def windows(
    x: np.ndarray,
    kernel_hw: tuple[int, int],
    stride: tuple[int, int],
    pad: tuple[int, int, int, int],
    dilation: tuple[int, int],
    ceil_mode: bool,
    fill: float,
) -> np.ndarray:
    """View of all sliding windows: [N, C, OH, OW, kh, kw] (padding filled with `fill`)."""
    xp, oh, ow = pad_for_windows(x, kernel_hw, stride, pad, dilation, ceil_mode, fill)
    kh, kw = kernel_hw
    sh, sw = stride
    dh, dw = dilation
    win = sliding_window_view(xp, (dh * (kh - 1) + 1, dw * (kw - 1) + 1), axis=(2, 3))
    return win[:, :, : (oh - 1) * sh + 1 : sh, : (ow - 1) * sw + 1 : sw, ::dh, ::dw]


_IM2COL_BYTES = 8 << 20  # per chunk of samples: keeps im2col buffers cache- and allocator-friendly


def conv2d_nchw(
    x: np.ndarray,
    w: np.ndarray,
    stride: tuple[int, int],
    pad: tuple[int, int, int, int],
    dilation: tuple[int, int],
    groups: int,
) -> np.ndarray:
    """Grouped 2-D convolution by im2col + matmul, accumulating in x's dtype.

    Samples go through in chunks: one huge im2col matrix for a whole batch
    costs more in page faults and memory traffic than the matmul itself.
    """
    n = x.shape[0]
    o, cg, kh, kw = w.shape
    win = windows(x, (kh, kw), stride, pad, dilation, False, 0)  # [N, C, OH, OW, kh, kw]
    oh, ow = win.shape[2], win.shape[3]
    out = np.empty((n, o, oh, ow), dtype=np.result_type(x, w))
    per_sample = oh * ow * cg * groups * kh * kw * x.itemsize
    chunk = max(1, _IM2COL_BYTES // max(1, per_sample))
    og = o // groups
    w2 = w.reshape(o, -1).T
    wg = w.reshape(groups, og, cg, kh, kw)
    for i in range(0, n, chunk):
        part = win[i : i + chunk]
        m = part.shape[0]
        if groups == 1:
            cols = part.transpose(0, 2, 3, 1, 4, 5).reshape(m * oh * ow, cg * kh * kw)
            out[i : i + m] = (cols @ w2).reshape(m, oh, ow, o).transpose(0, 3, 1, 2)
        else:
            # [N, G, Cg, OH, OW, kh, kw] x [G, Og, Cg, kh, kw] -> [N, G, Og, OH, OW]
            wins = part.reshape(m, groups, cg, oh, ow, kh, kw)
            out[i : i + m] = np.einsum("ngcxykl,gockl->ngoxy", wins, wg, optimize=True).reshape(m, o, oh, ow)
    return out


# -- float kernels ------------------------------------------------------------


@kernel("conv2d")
def _conv2d(op: Op, args: list[np.ndarray]) -> np.ndarray:
    x, w = args[0], args[1]
    a = op.attrs
    if x.dtype == np.float32 and w.dtype == np.float32:
        y = _torch_conv2d(x, w, a["stride"], a["pad"], a["dilation"], a["groups"])
    else:
        y = conv2d_nchw(x, w, a["stride"], a["pad"], a["dilation"], a["groups"])
    if len(args) > 2:
        y = y + args[2].reshape(1, -1, 1, 1)
    return apply_act(op, np.ascontiguousarray(y, dtype=np.float32))


def _torch_conv2d(x: np.ndarray, w: np.ndarray, stride: tuple[int, int], pad: tuple[int, int, int, int],
                  dilation: tuple[int, int], groups: int) -> np.ndarray:
    """Float32 convolution through torch (a direct/oneDNN kernel: several times faster
    than im2col for calibration, which runs the float graph; same float contract)."""
    import torch
    import torch.nn.functional as F

    def tensor(a: np.ndarray) -> torch.Tensor:  # torch wants writable memory (constants are read-only)
        a = np.ascontiguousarray(a)
        return torch.from_numpy(a if a.flags.writeable else a.copy())

    pt, pl, pb, pr = pad
    xt = tensor(x)
    if pt == pb and pl == pr:
        padding: tuple[int, int] = (pt, pl)
    else:
        xt, padding = F.pad(xt, (pl, pr, pt, pb)), (0, 0)
    with torch.no_grad():
        y = F.conv2d(xt, tensor(w), None, stride, padding, dilation, groups)
    return y.numpy()


@kernel("linear")
def _linear(op: Op, args: list[np.ndarray]) -> np.ndarray:
    y = args[0] @ args[1].T
    if len(args) > 2:
        y = y + args[2]
    return apply_act(op, np.asarray(y, dtype=np.float32))


@kernel("matmul")
def _matmul(op: Op, args: list[np.ndarray]) -> np.ndarray:
    return np.matmul(args[0], args[1])


@kernel("add")
def _add(op: Op, args: list[np.ndarray]) -> np.ndarray:
    return args[0] + args[1]


@kernel("sub")
def _sub(op: Op, args: list[np.ndarray]) -> np.ndarray:
    return args[0] - args[1]


@kernel("mul")
def _mul(op: Op, args: list[np.ndarray]) -> np.ndarray:
    return args[0] * args[1]


@kernel("div")
def _div(op: Op, args: list[np.ndarray]) -> np.ndarray:
    return args[0] / args[1]


@kernel("concat")
def _concat(op: Op, args: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(args, axis=op.attrs["axis"])


@kernel("maxpool")
def _maxpool(op: Op, args: list[np.ndarray]) -> np.ndarray:
    a = op.attrs
    fill = -np.inf if args[0].dtype.kind == "f" else np.iinfo(args[0].dtype).min
    return reduce_windows(args[0], np.maximum, a["kernel"], a["stride"], a["pad"], a["dilation"], a["ceil_mode"], fill)


def avgpool_divisor(op: Op, h: int, w: int) -> np.ndarray:
    """Per output position: how many window cells count toward the average [OH, OW]."""
    a = op.attrs
    ones = np.ones((1, 1, h, w), dtype=np.int64)
    if a["count_include_pad"]:
        # Explicit padding counts; the ceil-mode overhang beyond it does not.
        pt, pl, pb, pr = a["pad"]
        ones = np.pad(ones, ((0, 0), (0, 0), (pt, pb), (pl, pr)), constant_values=1)
        pad = (0, 0, 0, 0)
        # Re-express the windows on the padded grid.
        win = windows(ones, a["kernel"], a["stride"], pad, (1, 1), a["ceil_mode"], 0)
        oh = window_out(h, a["kernel"][0], a["stride"][0], pt, pb, 1, a["ceil_mode"])
        ow = window_out(w, a["kernel"][1], a["stride"][1], pl, pr, 1, a["ceil_mode"])
        return win.sum(axis=(4, 5))[0, 0, :oh, :ow]
    win = windows(ones, a["kernel"], a["stride"], a["pad"], (1, 1), a["ceil_mode"], 0)
    return win.sum(axis=(4, 5))[0, 0]


@kernel("avgpool")
def _avgpool(op: Op, args: list[np.ndarray]) -> np.ndarray:
    a = op.attrs
    x = args[0]
    total = reduce_windows(x, np.add, a["kernel"], a["stride"], a["pad"], (1, 1), a["ceil_mode"], 0)
    return (total / avgpool_divisor(op, x.shape[2], x.shape[3])).astype(np.float32)


@kernel("global_avgpool")
def _gap(op: Op, args: list[np.ndarray]) -> np.ndarray:
    return args[0].mean(axis=(2, 3), keepdims=True, dtype=np.float32)


@kernel("mean")
def _mean(op: Op, args: list[np.ndarray]) -> np.ndarray:
    return args[0].mean(axis=tuple(op.attrs["axes"]), keepdims=op.attrs["keepdims"], dtype=np.float32)


@kernel("reshape")
def _reshape(op: Op, args: list[np.ndarray]) -> np.ndarray:
    shape = op.attrs["shape"]
    x = args[0]
    if x.shape[0] != op.operands[0].type.shape[0]:  # batched run: dim 0 carries the samples
        shape = (x.shape[0],) + tuple(shape[1:])
    return x.reshape(shape)


@kernel("transpose")
def _transpose(op: Op, args: list[np.ndarray]) -> np.ndarray:
    return np.ascontiguousarray(args[0].transpose(op.attrs["perm"]))


@kernel("slice")
def _slice(op: Op, args: list[np.ndarray]) -> np.ndarray:
    x = args[0]
    idx = [slice(None)] * x.ndim
    a = op.attrs
    for s, e, ax, st in zip(a["starts"], a["ends"], a["axes"], a["steps"], strict=True):
        idx[ax] = slice(s, e, st)
    return x[tuple(idx)]


@kernel("relu")
def _relu(op: Op, args: list[np.ndarray]) -> np.ndarray:
    return np.maximum(args[0], 0)


@kernel("clip")
def _clip(op: Op, args: list[np.ndarray]) -> np.ndarray:
    return np.clip(args[0], op.attrs["min"], op.attrs["max"]).astype(args[0].dtype)


@kernel("sigmoid")
def _sigmoid(op: Op, args: list[np.ndarray]) -> np.ndarray:
    x = args[0].astype(np.float64)
    return (0.5 * (1.0 + np.tanh(0.5 * x))).astype(np.float32)  # overflow-free logistic


@kernel("softmax")
def _softmax(op: Op, args: list[np.ndarray]) -> np.ndarray:
    x = args[0].astype(np.float64)
    ax = op.attrs["axis"]
    e = np.exp(x - x.max(axis=ax, keepdims=True))
    return (e / e.sum(axis=ax, keepdims=True)).astype(np.float32)


@kernel("batch_norm")
def _batch_norm(op: Op, args: list[np.ndarray]) -> np.ndarray:
    x, scale, bias, mean, var = args
    shape = (1, -1) + (1,) * (x.ndim - 2)
    k = scale / np.sqrt(var + np.float32(op.attrs["epsilon"]))
    return ((x - mean.reshape(shape)) * k.reshape(shape) + bias.reshape(shape)).astype(np.float32)
