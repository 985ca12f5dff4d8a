"""Pure-numpy reference backend: runs the bundle's ``transforms.npz`` with numpy alone.

For devices without any runtime wheel (Android/Chaquopy). Each layer is
``[fake-quantize input] -> conv (float32 GEMM) -> [ReLU] -> [depth-to-space]``;
the fake quantization reproduces the int8 QDQ model's activation grid, so it
decodes close to the int8 runtimes.

Layer arrays, for net ``n`` in ``g_a``, ``h_a``, ``g_s`` (and ``f_s``, the fast synthesis, in the
bundle's ``fast.npz``) and layer ``i``:
``n.i.w`` (Cout, Cin, k, k) float32 or ``n.i.wq`` int8/uint8 with per-channel
``n.i.wscale`` and ``n.i.wzp``, ``n.i.b`` (Cout,), ``n.i.meta`` = [stride,
d2s, relu], optional ``n.i.inq`` = [scale, zero_point, qmin, qmax]; ``n.count``.

How ``run_net`` computes it (``run_net_reference`` is the layer-by-layer definition, kept for
tests and benchmarks/numpy_speed.py; with OpenBLAS the two agree bit for bit). Every activation
lives in a zero-bordered buffer that the previous layer's epilogue writes straight through a
depth-to-space view, the fake quantization included (``clip`` before ``rint`` is the same grid,
and a ReLU before a grid whose floor is >= 0 is that clip), so there is no padding, shuffle or
quantize pass over whole activations. A conv is ``W (Cout, C*k*k) @ patches (C*k*k, pixels)``
(the output comes out channel-major, no transpose copy) a band of output rows at a time: at
stride 1 row ``(c, ky, kx)`` of a band's patch matrix is one contiguous run of the flat padded
input (the GEMM computes ``k - 1`` extra columns per row, which the epilogue skips). Bands stay
under ``BAND_BYTES`` (cache-sized: the epilogue reads the GEMM output from cache) and at most
``nn.CHUNK_BYTES``, so memory stays bounded at any image size. ``exact=False`` also folds the
activation scales into the weights and the bias into the GEMM: two passes fewer, but it moves the
odd value on a grid bin edge by a bin and measured no faster (benchmarks/numpy_speed.py).
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided

from ..errors import BundleError
from ..nn import CHUNK_BYTES, conv2d, depth_to_space, weight_matrix
from .base import Backend

BAND_BYTES = 4 << 20  # patch matrix per GEMM in run_net: cache-sized bands measured fastest ...
MIN_COLUMNS = 2048  # ... unless that leaves a GEMM fewer output pixels than this (wide layers: many small
# GEMMs, each a BLAS thread barrier); never more than nn.CHUNK_BYTES, the reference path's bound


class _Layer:
    def __init__(self, a: dict, key: str):
        try:
            if key + "wq" in a:  # per-output-channel quantized weights
                shape = (-1, 1, 1, 1)
                zp = np.asarray(a[key + "wzp"], dtype=np.float32).reshape(shape)
                w = (np.asarray(a[key + "wq"], dtype=np.float32) - zp) * np.asarray(a[key + "wscale"], np.float32).reshape(shape)
            else:
                w = np.asarray(a[key + "w"], dtype=np.float32)
            self.b = np.asarray(a[key + "b"], dtype=np.float32)[:, None, None]
            self.stride, self.d2s, self.relu = (int(v) for v in a[key + "meta"])
        except KeyError as e:
            raise BundleError(f"transforms.npz lacks {e.args[0]!r}") from None
        self.w = w
        self.k = w.shape[2]
        self.w2d = weight_matrix(w, np.float32)
        self.inq = a.get(key + "inq")

    def __call__(self, x: np.ndarray, inplace: bool = False) -> np.ndarray:
        """The reference definition of the layer. ``inplace``: ``x`` is an intermediate the caller
        drops, so it may be overwritten (one activation-sized buffer fewer at any time)."""
        if self.inq is not None:
            s, zp, lo, hi = (float(v) for v in self.inq)
            if inplace:
                x /= np.float32(s)
            else:
                x = x / s
            np.rint(x, out=x)
            x += zp
            np.clip(x, lo, hi, out=x)
            x -= zp
            x *= np.float32(s)
        x = conv2d(x, self.w2d, self.k, self.stride, self.k // 2)
        x += self.b
        if self.relu:
            np.maximum(x, 0, out=x)
        return depth_to_space(x, self.d2s) if self.d2s > 1 else x


def _grid(inq) -> tuple[float, float, float]:
    """(scale, floor, ceiling) of the integer grid ``clip(rint(x / s) + zp, lo, hi) - zp``."""
    s, zp, lo, hi = (float(v) for v in inq)
    if not (s > 0 and zp == round(zp) and lo == round(lo) and hi == round(hi) and lo <= hi):
        raise BundleError(f"unsupported activation quantization {list(inq)}")
    return s, lo - zp, hi - zp


class _Step:
    """One layer of ``run_net``: its weights (Cout, C*k*k) and the epilogue that writes the next
    layer's input (or the net's output). ``exact``: the reference's own arithmetic (unfolded
    weights, separate bias, ``x / s`` rounded, ``q * s`` stored), which this BLAS computes bit for
    bit as ``run_net_reference`` does; else grid values with the scales folded into the weights
    and the bias as a row of ones in the patches (two passes fewer per activation, equal up to
    float32 rounding, which moves the odd value on a bin edge by one bin)."""

    def __init__(self, layer: _Layer, nxt: _Layer | None, exact: bool):
        self.k, self.stride, self.d2s, self.pad = layer.k, layer.stride, layer.d2s, layer.k // 2
        self.cin, self.cout = layer.w.shape[1], layer.w.shape[0]
        self.kk = self.cin * self.k * self.k
        self.exact = exact
        w = layer.w.reshape(self.cout, -1)
        b = layer.b.reshape(-1)
        self.relu = bool(layer.relu)
        self.grid = None  # (scale, floor, ceiling) of the next layer's input grid
        if nxt is not None and nxt.inq is not None:
            s, lo, hi = _grid(nxt.inq)
            self.grid = s, (max(lo, 0.0) if self.relu else lo), hi  # ReLU then clip = clip at >= 0
            self.relu = False
        if exact:
            self.w, self.b, self.ones = np.ascontiguousarray(w, np.float32), b.astype(np.float32)[:, None, None], 0
        else:
            w, b = w.astype(np.float64), b.astype(np.float64)
            if layer.inq is not None:
                w = w * _grid(layer.inq)[0]
            if self.grid is not None:
                w, b = w / self.grid[0], b / self.grid[0]
            self.w, self.b, self.ones = np.ascontiguousarray(np.concatenate([w, b[:, None]], axis=1), np.float32), None, 1

    def out_shape(self, h: int, w: int) -> tuple[int, int, int]:
        ho, wo = (h + 2 * self.pad - self.k) // self.stride + 1, (w + 2 * self.pad - self.k) // self.stride + 1
        r = self.d2s
        return self.cout // (r * r), ho * r, wo * r

    def run(self, src: np.ndarray, h: int, w: int, dst: np.ndarray, band_bytes: int) -> None:
        """``src``: the zero-bordered input (C, h + 2 pad + 1, w + 2 pad) (the extra row: slack for the
        flat stride-1 patches), ``dst``: the output (C', H', W') (a view into the next buffer)."""
        k, st, p, c, kk = self.k, self.stride, self.pad, self.cin, self.kk
        wp = w + 2 * p
        ho, wo = (h + 2 * p - k) // st + 1, (w + 2 * p - k) // st + 1
        wc = wp if st == 1 else wo  # GEMM columns per output row (stride 1: whole padded rows)
        sc, sr, se = src.strides
        kr = kk + self.ones
        row_bytes = kr * wc * 4
        rows = max(band_bytes // row_bytes, min(-(-MIN_COLUMNS // wc), CHUNK_BYTES // row_bytes))
        rows = max(1, min(ho, rows))
        cols_buf = np.empty(kr * rows * wc, np.float32)
        acc_buf = np.empty(self.cout * rows * wc, np.float32)
        r = self.d2s
        if r > 1:  # dst (co, r*ho, r*wo) seen as (co, r, r, ho, wo): channel c*r*r + i*r + j -> (c, y*r+i, x*r+j)
            dc, dy, dx = dst.strides
            co = self.cout // (r * r)
            dview = as_strided(dst, (co, r, r, ho, wo), (dc, dy, dx, dy * r, dx * r))
        for r0 in range(0, ho, rows):
            r1 = min(ho, r0 + rows)
            n = (r1 - r0) * wc
            cols = cols_buf[: kr * n].reshape(kr, n)
            base = src[:, r0 * st :]
            if st == 1:
                win = as_strided(base, (c, k, k, n), (sc, sr, se, se))
            else:
                win = as_strided(base, (c, k, k, r1 - r0, wo), (sc, sr, se, sr * st, se * st))
            cols[:kk].reshape(win.shape)[...] = win
            if self.ones:
                cols[kk] = 1.0
            acc = np.matmul(self.w, cols, out=acc_buf[: self.cout * n].reshape(self.cout, n))
            a = acc.reshape(self.cout, r1 - r0, wc)[:, :, :wo]
            if r > 1:
                a = a.reshape(co, r, r, r1 - r0, wo)
                d = dview[:, :, :, r0:r1]
                b = None if self.b is None else self.b.reshape(co, r, r, 1, 1)
            else:
                d = dst[:, r0:r1]
                b = self.b
            self._epilogue(a, b, d)

    def _epilogue(self, a: np.ndarray, b: np.ndarray | None, d: np.ndarray) -> None:
        if self.grid is not None:
            s, lo, hi = self.grid
            if b is not None:
                a += b
            if self.exact:
                a /= np.float32(s)
            np.clip(a, lo, hi, out=a)
            if self.exact:
                np.rint(a, out=a)
                np.multiply(a, np.float32(s), out=d)
            else:
                np.rint(a, out=d)
        elif b is not None:
            if self.relu:
                a += b
                np.maximum(a, 0, out=d)
            else:
                np.add(a, b, out=d)
        elif self.relu:
            np.maximum(a, 0, out=d)
        else:
            d[...] = a


def _padded(c: int, h: int, w: int, p: int) -> tuple[np.ndarray, np.ndarray]:
    """A (c, h + 2p + 1, w + 2p) buffer with zero borders (and a zero slack row), and its interior."""
    buf = np.empty((c, h + 2 * p + 1, w + 2 * p), np.float32)
    buf[:, :p] = 0
    buf[:, h + p :] = 0
    buf[:, p : h + p, :p] = 0
    buf[:, p : h + p, w + p :] = 0
    return buf, buf[:, p : h + p, p : w + p]


class _Net:
    def __init__(self, layers: list[_Layer], exact: bool = True):
        self.layers = layers
        self.exact = exact
        self.steps = [_Step(lay, layers[i + 1] if i + 1 < len(layers) else None, exact) for i, lay in enumerate(layers)]
        self.first = _grid(layers[0].inq) if layers[0].inq is not None else None

    def __call__(self, x: np.ndarray, scale: np.ndarray | None = None, band_bytes: int = BAND_BYTES) -> np.ndarray:
        """The net on ``x`` (C, H, W) (times ``scale``, broadcast, when given): ``run_net_reference``."""
        x = x.astype(np.float32, copy=False)
        c, h, w = x.shape
        buf, inner = _padded(c, h, w, self.steps[0].pad)
        if scale is not None:
            np.multiply(x, scale, out=inner)
        else:
            inner[...] = x
        if self.first is not None:
            s, lo, hi = self.first
            inner /= np.float32(s)
            np.clip(inner, lo, hi, out=inner)
            np.rint(inner, out=inner)
            if self.exact:
                inner *= np.float32(s)
        for i, st in enumerate(self.steps):
            co, ho, wo = st.out_shape(h, w)
            if i + 1 < len(self.steps):
                nbuf, dst = _padded(co, ho, wo, self.steps[i + 1].pad)
            else:
                nbuf = dst = np.empty((co, ho, wo), np.float32)
            st.run(buf, h, w, dst, band_bytes)
            buf, h, w = nbuf, ho, wo
        return buf


def load_net(arrays: dict, name: str) -> list[_Layer]:
    if f"{name}.count" not in arrays:
        raise BundleError(f"transforms.npz lacks network {name!r}")
    return [_Layer(arrays, f"{name}.{i}.") for i in range(int(arrays[f"{name}.count"]))]


def run_net_reference(layers: list[_Layer], x: np.ndarray) -> np.ndarray:
    """The nets' definition, layer by layer (im2col GEMMs, whole-activation passes)."""
    x = x.astype(np.float32, copy=False)
    for i, layer in enumerate(layers):
        x = layer(x, inplace=i > 0)
    return x


def run_net(layers: list[_Layer] | _Net, x: np.ndarray, scale: np.ndarray | None = None, exact: bool = True) -> np.ndarray:
    net = layers if isinstance(layers, _Net) else _Net(layers, exact)
    return net(x, scale)


class NumpyBackend(Backend):
    name = "numpy"
    extra = ""
    memory_per_pixel = {"analysis": 370, "synthesis": 260}  # peak bytes per window pixel in a whole encode/decode (benchmarks/memory.py)

    def __init__(self, bundle, device: str | None = None, threads: int | None = None):
        super().__init__(bundle, device, threads)
        t = bundle.transforms
        self.g_a, self.h_a, self.g_s = (_Net(load_net(t, n)) for n in ("g_a", "h_a", "g_s"))
        self._f_s: _Net | None = None

    @property
    def f_s(self) -> _Net:
        if self._f_s is None:
            self._f_s = _Net(load_net(self.bundle.fast_transforms, "f_s"))  # loaded on first use: most decodes are full
        return self._f_s

    def analysis(self, x: np.ndarray, gain: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        y = self.g_a(x[0].astype(np.float32, copy=False))
        y *= gain[0].astype(np.float32, copy=False)
        z = self.h_a(y)
        return y[None], z[None]

    def synthesis(self, y_hat: np.ndarray, inv_gain: np.ndarray) -> np.ndarray:
        return self.g_s(y_hat[0], inv_gain[0].astype(np.float32, copy=False))[None]

    def fast_synthesis(self, y_hat: np.ndarray, inv_gain: np.ndarray) -> np.ndarray:
        return self.f_s(y_hat[0], inv_gain[0].astype(np.float32, copy=False))[None]

    def describe(self) -> dict:
        return {**super().describe(), "version": np.__version__, "precision": "int8 grid, fp32 math"}
