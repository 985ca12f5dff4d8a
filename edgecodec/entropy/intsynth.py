"""The integer-exact synthesis: the base of the residual layer (``--max-error``), bit-identical on
every device, CPU, BLAS, thread count and numpy version.

The float runtimes differ by up to 3 levels, so a per-pixel bound needs a base that encoder and
decoder compute identically. This runs the bundle's synthesis (``g_s``, or the fast ``f_s``) as
integer layers (``intnet.IntLayer``: exact accumulation, ``(acc * mult + 2**(shift-1)) >> shift``,
clamp, depth-to-space):

* layer 0 (float weights in the bundle, input ``y_hat * inv_gain``): the inverse gain is folded into
  the weights, ``W[o, c] * inv_gain[c]``, which are quantized per output channel to int16
  (``round(W' / s_o)``, ``s_o = max|W'[o]| / 32767``); the input is the integer ``y_hat``
  (|y| <= 127). The accumulator is a float64 product of integers whose partial sums stay below
  2**53 (at most 1728 terms of 127 * 32767), so exact in any summation order. The bias is
  ``round(b / s_o)``.
* layers 1..3: the bundle's int8 weight codes, inputs on the previous layer's uint8 activation grid,
  bias ``round(b / (s_in * s_w))``.
* requantization onto the next layer's input grid (ReLU: clamp at 0; the grids are 0..255), and the
  last layer straight onto pixels, ``s_out = 1/255``, clamped to 0..255.
* ``mult, shift`` come from ``np.frexp`` (exact), every other derived constant from one IEEE-754
  operation (multiply, divide, round): no ``exp``/``log``, so every device derives the same integers.

Large images run in windows of latents with a 2-latent halo (``tiling.axis_windows``): the synthesis
sees less than 2 latents around a pixel, and integer windows equal the whole run exactly.
"""

from __future__ import annotations

import numpy as np

from ..errors import BundleError
from ..nn import conv_bands, depth_to_space, weight_matrix
from .intnet import EXACT_LIMIT, IntLayer

W16 = 32767
WINDOW_CORE = 32  # latents per window side (512 px): the last activations stay ~10 MB


def fixed_point_exact(real: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel (mult, shift), mult in [2**30, 2**31), mult / 2**shift ~= real, from the exact
    ``frexp`` decomposition (``intnet.fixed_point`` floors a ``log2``, which a math library may round
    differently at a power of two)."""
    real = np.asarray(real, np.float64)
    if np.any(~(real > 0)):
        raise BundleError("requantization scale must be positive")
    m, e = np.frexp(real)  # real = m * 2**e, m in [0.5, 1): both exact
    mult = np.rint(np.ldexp(m, 31)).astype(np.int64)  # [2**30, 2**31]
    shift = 31 - e.astype(np.int64)
    over = mult >= 1 << 31
    mult[over] >>= 1
    shift[over] -= 1
    if shift.min() < 1 or shift.max() > 62:
        raise BundleError("requantization scale out of the integer path's range")
    return mult, shift


def _grid(a: dict, key: str) -> float:
    s, zp, lo, hi = (float(v) for v in a[key])
    if zp != 0 or lo != 0 or hi != 255:
        raise BundleError(f"integer synthesis needs uint8 activation grids, got {list(a[key])}")
    return s


class IntegerSynthesis:
    """``IntegerSynthesis(bundle, 'full' | 'fast')(y_hat, inv_gain, height, width)`` -> HxWx3 uint8."""

    def __init__(self, bundle, decoder: str = "full"):
        if decoder not in ("full", "fast"):
            raise ValueError(f"unknown decoder {decoder!r}")
        net = "g_s" if decoder == "full" else "f_s"
        a = bundle.transforms if decoder == "full" else bundle.fast_transforms
        try:
            count = int(a[f"{net}.count"])
            w0 = np.asarray(a[f"{net}.0.w"], np.float64)
            self.b0 = np.asarray(a[f"{net}.0.b"], np.float64)
            self.meta0 = [int(v) for v in a[f"{net}.0.meta"]]
            grids = [_grid(a, f"{net}.{i}.inq") for i in range(1, count)] + [1.0 / 255.0]
            layers = []
            for i in range(1, count):
                k = f"{net}.{i}."
                if np.any(np.asarray(a[k + "wzp"]) != 0):
                    raise BundleError("integer synthesis needs symmetric weights")
                stride, d2s, relu = (int(v) for v in a[k + "meta"])
                s_in, s_w = grids[i - 1], np.asarray(a[k + "wscale"], np.float64)
                bias = np.rint(np.asarray(a[k + "b"], np.float64) / (s_in * s_w)).astype(np.int64)
                mult, shift = fixed_point_exact(s_in * s_w / grids[i])
                cout = bias.size
                lo, hi = np.zeros(cout, np.int64), np.full(cout, 255, np.int64)  # ReLU or pixels: both 0..255
                layers.append(IntLayer(np.asarray(a[k + "wq"], np.int8), bias, mult, shift, lo, hi, stride, d2s, 255))
        except KeyError as e:
            raise BundleError(f"the bundle's {net} lacks {e.args[0]!r}") from None
        if self.meta0[0] != 1 or not self.meta0[2]:
            raise BundleError("integer synthesis expects a stride-1 first layer with ReLU")
        self.w0, self.s1, self.layers = w0, grids[0], layers
        self.up = self.meta0[1] * int(np.prod([lay.d2s for lay in layers]))

    def first_layer(self, inv_gain: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Layer 0 for this inverse gain: (int16-valued float64 weight matrix (Cout, K), bias, mult, shift)."""
        ig = np.asarray(inv_gain, np.float32).reshape(-1).astype(np.float64)
        w = self.w0 * ig[None, :, None, None]
        scale = np.abs(w).reshape(w.shape[0], -1).max(axis=1) / W16
        scale = np.where(scale > 0, scale, 1.0)
        wq = np.rint(w / scale[:, None, None, None])
        bias = np.rint(self.b0 / scale)
        mult, shift = fixed_point_exact(scale / self.s1)
        if wq.shape[1] * wq.shape[2] * wq.shape[3] * W16 * 127 + np.abs(bias).max() >= EXACT_LIMIT:
            raise BundleError("first synthesis layer too large for exact accumulation")
        return weight_matrix(wq, np.float64), bias.astype(np.int64), mult, shift

    def _layer0(self, y: np.ndarray, params) -> np.ndarray:
        w2d, bias, mult, shift = params
        k = self.w0.shape[2]
        out = np.empty((bias.size, y.shape[1], y.shape[2]), np.uint8)
        wt = np.ascontiguousarray(w2d.T)  # (Cout, K): the GEMM yields channel rows
        for r0, r1, cols, wo in conv_bands(y.astype(np.float64), k, 1, k // 2, itemsize=8, transposed=True):
            acc = (wt @ cols).astype(np.int64)  # exact integers (module docstring)
            acc += bias[:, None]
            acc *= mult[:, None]
            acc += (np.int64(1) << (shift - 1))[:, None]
            acc >>= shift[:, None]
            out[:, r0:r1] = np.clip(acc, 0, 255).reshape(bias.size, r1 - r0, wo)
        return depth_to_space(out, self.meta0[1]) if self.meta0[1] > 1 else out

    def _window(self, y: np.ndarray, params) -> np.ndarray:
        x = self._layer0(y, params)
        for layer in self.layers:
            x = layer(x)
        return x  # (3, 16 rows, 16 cols) 0..255

    def __call__(self, y_hat: np.ndarray, inv_gain: np.ndarray, height: int, width: int) -> np.ndarray:
        from ..tiling import axis_windows

        y = np.asarray(y_hat)
        if y.ndim == 4:
            y = y[0]
        if y.size and np.abs(y).max() > 127:
            raise ValueError("latents outside the int8 range")
        params = self.first_layer(inv_gain)
        rows, cols = y.shape[1:]
        u = self.up
        out = np.empty((height, width, 3), np.uint8)
        for r0, r1, a0, a1 in axis_windows(rows, WINDOW_CORE):
            for c0, c1, b0, b1 in axis_windows(cols, WINDOW_CORE):
                py0, py1, px0, px1 = u * a0, min(height, u * a1), u * b0, min(width, u * b1)
                if py0 >= py1 or px0 >= px1:
                    continue
                x = self._window(y[:, r0:r1, c0:c1], params)
                part = x[:, py0 - u * r0 : py1 - u * r0, px0 - u * c0 : px1 - u * c0]
                out[py0:py1, px0:px1] = part.transpose(1, 2, 0)
        return out
