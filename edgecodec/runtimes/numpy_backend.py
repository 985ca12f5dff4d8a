"""Pure-numpy reference backend: runs the bundle's ``transforms.npz`` with numpy alone.

For devices without any runtime wheel (Android/Chaquopy). Each layer is
``[fake-quantize input] -> conv (float32 im2col GEMM) -> [ReLU] -> [depth-to-space]``;
the fake quantization reproduces the int8 QDQ model's activation grid, so it
decodes close to the int8 runtimes.

Layer arrays, for net ``n`` in ``g_a``, ``h_a``, ``g_s`` (and ``f_s``, the fast synthesis, in the
bundle's ``fast.npz``) and layer ``i``:
``n.i.w`` (Cout, Cin, k, k) float32 or ``n.i.wq`` int8/uint8 with per-channel
``n.i.wscale`` and ``n.i.wzp``, ``n.i.b`` (Cout,), ``n.i.meta`` = [stride,
d2s, relu], optional ``n.i.inq`` = [scale, zero_point, qmin, qmax]; ``n.count``.
"""

from __future__ import annotations

import numpy as np

from ..errors import BundleError
from ..nn import conv2d, depth_to_space, weight_matrix
from .base import Backend


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
        self.k = w.shape[2]
        self.w2d = weight_matrix(w, np.float32)
        self.inq = a.get(key + "inq")

    def __call__(self, x: np.ndarray, inplace: bool = False) -> np.ndarray:
        """``inplace``: ``x`` is an intermediate the caller drops, so it may be overwritten (one
        activation-sized buffer fewer at any time)."""
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


def load_net(arrays: dict, name: str) -> list[_Layer]:
    if f"{name}.count" not in arrays:
        raise BundleError(f"transforms.npz lacks network {name!r}")
    return [_Layer(arrays, f"{name}.{i}.") for i in range(int(arrays[f"{name}.count"]))]


def run_net(layers: list[_Layer], x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float32, copy=False)
    for i, layer in enumerate(layers):
        x = layer(x, inplace=i > 0)
    return x


class NumpyBackend(Backend):
    name = "numpy"
    extra = ""
    memory_per_pixel = {"analysis": 370, "synthesis": 260}  # peak bytes per window pixel in a whole encode/decode (benchmarks/memory.py)

    def __init__(self, bundle, device: str | None = None, threads: int | None = None):
        super().__init__(bundle, device, threads)
        t = bundle.transforms
        self.g_a, self.h_a, self.g_s = (load_net(t, n) for n in ("g_a", "h_a", "g_s"))
        self._f_s: list[_Layer] | None = None

    def analysis(self, x: np.ndarray, gain: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        y = run_net(self.g_a, x[0]) * gain[0]
        z = run_net(self.h_a, y)
        return y[None], z[None]

    def synthesis(self, y_hat: np.ndarray, inv_gain: np.ndarray) -> np.ndarray:
        return run_net(self.g_s, y_hat[0].astype(np.float32) * inv_gain[0])[None]

    def fast_synthesis(self, y_hat: np.ndarray, inv_gain: np.ndarray) -> np.ndarray:
        if self._f_s is None:
            self._f_s = load_net(self.bundle.fast_transforms, "f_s")  # loaded on first use: most decodes are full
        return run_net(self._f_s, y_hat[0].astype(np.float32) * inv_gain[0])[None]

    def describe(self) -> dict:
        return {**super().describe(), "version": np.__version__, "precision": "int8 grid, fp32 math"}
