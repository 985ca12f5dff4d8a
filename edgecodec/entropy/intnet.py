"""Integer network executor for everything that decides the parse.

Each layer is ``conv -> requantize -> clamp [-> depth-to-space]``:

* inputs and weights are integers (activations 8-bit, weights int8 in
  ``[-127, 127]``, or int16 in ``[-32767, 32767]``), bias int32 at scale ``s_in * s_w``;
* the accumulator is exact: float32 matrix products of integer operands over
  slices of the reduction short enough that every partial sum, in any order,
  stays below 2**24 (so float32 represents it exactly; ``exact_slices`` bounds it
  by each output's weight L1 norm times the input bound), summed in int64; int16
  weights use float64 products and the bound 2**53 instead;
* requantization is ``(acc * mult + 2**(shift - 1)) >> shift`` in int64 with
  per-channel ``mult < 2**31`` and ``shift`` in 1..62, i.e. rounding half up
  (towards +inf) — the one rounding rule of this path;
* the result is clamped per channel to ``[lo, hi]`` (``lo = 0`` is the ReLU).

Nothing here depends on BLAS summation order, thread count or numpy version.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import BundleError
from ..nn import CHUNK_BYTES, conv_bands, depth_to_space, weight_matrix

EXACT_LIMIT = 1 << 53
F32_EXACT = 1 << 24
REQUANT_BLOCK = 1 << 15  # int64 accumulator elements requantized at a time (256 KB: in L2)


def exact_slices(abs_w: np.ndarray, in_max: int, exact: int = F32_EXACT) -> list[tuple[int, int]]:
    """Split the reduction (rows of ``abs_w``, the (K, Cout) |weight| matrix) into slices in which
    every output's worst case ``sum |w| * in_max`` stays below ``exact`` (2**24: float32; 2**53: float64).

    Each partial sum of a slice's product, in any order a BLAS picks, is then an integer of at most
    that magnitude, which float32 holds exactly. The bound uses each output's own weights (their L1
    norm), not ``127 * K``: the shipped hyper-decoder's layers need one slice instead of two to four.
    """
    limit = (exact - 1) // max(1, int(in_max))
    if int(abs_w.max(initial=0)) > limit:
        raise BundleError("integer layer weight too large for exact float accumulation")
    out, a, k = [], 0, abs_w.shape[0]
    while a < k:
        cum = np.cumsum(abs_w[a:], axis=0).max(axis=1)  # worst output's running sum from row a
        b = a + int(np.searchsorted(cum, limit, side="right"))
        out.append((a, b))
        a = b
    return out


@dataclass(frozen=True)
class IntLayer:
    weight: np.ndarray  # (Cout, Cin, k, k) int8 (float32 products) or int16 (float64 products)
    bias: np.ndarray  # (Cout,) int64
    mult: np.ndarray  # (Cout,) int64, < 2**31
    shift: np.ndarray  # (Cout,) int64, 1..62
    lo: np.ndarray  # (Cout,) int64
    hi: np.ndarray  # (Cout,) int64
    stride: int = 1
    d2s: int = 1  # depth-to-space factor applied after the clamp
    in_max: int = 255  # largest |input| this layer accepts

    def __post_init__(self) -> None:
        w = self.weight
        if w.ndim != 4 or w.shape[2] != w.shape[3] or w.dtype not in (np.int8, np.int16):
            raise BundleError("integer layer weights must be int8 or int16 (Cout, Cin, k, k)")
        cout = w.shape[0]
        for name in ("bias", "mult", "shift", "lo", "hi"):
            if getattr(self, name).shape != (cout,):
                raise BundleError(f"integer layer {name} must have {cout} entries")
        if self.mult.min() < 0 or self.mult.max() >= 1 << 31 or self.shift.min() < 1 or self.shift.max() > 62:
            raise BundleError("integer layer requantization parameters out of range")
        k_terms = w.shape[1] * w.shape[2] * w.shape[3]
        wide = w.dtype == np.int16
        if wide:  # int16: each output's own bound, |acc + bias| * mult in int64
            acc = np.abs(w.astype(np.int64)).reshape(cout, -1).sum(1) * self.in_max + np.abs(self.bias)
            if any(int(a) >= EXACT_LIMIT or int(a) * int(m) >= 1 << 62 for a, m in zip(acc, self.mult)):
                raise BundleError("integer layer too large for exact accumulation")
        else:
            bound = k_terms * 127 * self.in_max
            if bound >= EXACT_LIMIT or (bound + int(np.abs(self.bias).max())) * (1 << 31) >= 1 << 63:
                raise BundleError("integer layer too large for exact accumulation")
        w2d = weight_matrix(w, np.float64 if wide else np.float32)
        slices = exact_slices(np.abs(w2d.astype(np.int64)), self.in_max, EXACT_LIMIT if wide else F32_EXACT)
        # (Cout, slice) float32 operands: the GEMM yields (Cout, pixels), channel rows, no transpose copy
        object.__setattr__(self, "_slices", [(a, b, np.ascontiguousarray(w2d[a:b].T)) for a, b in slices])
        # (acc + bias) * mult + 2**(shift - 1) == acc * mult + (bias * mult + 2**(shift - 1)) in int64
        # (wrapping arithmetic is modular, so the two orders agree bit for bit in any case)
        with np.errstate(over="ignore"):
            const = self.bias * self.mult + (np.int64(1) << (self.shift - 1))
        object.__setattr__(self, "_const", const[:, None])
        object.__setattr__(self, "_cols", (self.mult[:, None], self.shift[:, None], self.lo[:, None], self.hi[:, None]))

    def bands(self, x: np.ndarray):
        """The layer's output band by band of output rows (``nn.conv_bands``), before depth-to-space:
        yields (first row, end row, (Cout, rows, W') in ``out_dtype``). Every element is computed
        exactly as in a whole run; a 12 MP image's int64 accumulator whole would be ~0.5 GB."""
        x = np.asarray(x)
        if x.size and np.abs(x).max() > self.in_max:
            raise ValueError("integer layer input exceeds its declared range")
        cout, cin, k, _ = self.weight.shape
        mult, sh, lo, hi = self._cols
        const, slices, dt = self._const, self._slices, self.out_dtype
        kk = cin * k * k
        ft = slices[0][2].dtype if slices else np.dtype(np.float32)
        # bands sized by the float products too (one (Cout, pixels) per slice)
        chunk = CHUNK_BYTES * kk * 4 // max(kk * 4, len(slices) * cout * 4)
        for r0, r1, cols, wo in conv_bands(x.astype(ft), k, self.stride, k // 2, ft.itemsize, chunk, transposed=True):
            n = cols.shape[1]
            prods = [w_t @ cols[a:b] for a, b, w_t in slices]  # exact integers (see exact_slices)
            out = np.empty((cout, n), dt)
            # requantize a block of channels at a time: its int64 temporaries stay in cache
            step = max(1, REQUANT_BLOCK // max(1, n))
            acc = np.empty((min(step, cout), n), np.int64)
            for c0 in range(0, cout, step):
                c1 = min(cout, c0 + step)
                a = acc[: c1 - c0]
                np.copyto(a, prods[0][c0:c1], casting="unsafe")
                for p in prods[1:]:
                    a += p[c0:c1].astype(np.int64)
                a *= mult[c0:c1]
                a += const[c0:c1]
                a >>= sh[c0:c1]
                np.maximum(a, lo[c0:c1], out=a)
                np.minimum(a, hi[c0:c1], out=a)
                out[c0:c1] = a
            yield r0, r1, out.reshape(cout, r1 - r0, wo)

    def output_hw(self, h: int, w: int) -> tuple[int, int]:
        """Output rows and columns (before depth-to-space) for an (h, w) input."""
        k = self.weight.shape[2]
        return (h + 2 * (k // 2) - k) // self.stride + 1, (w + 2 * (k // 2) - k) // self.stride + 1

    def __call__(self, x: np.ndarray) -> np.ndarray:
        out = np.empty((self.weight.shape[0], *self.output_hw(*np.shape(x)[1:])), self.out_dtype)
        for r0, r1, band in self.bands(x):
            out[:, r0:r1] = band
        return depth_to_space(out, self.d2s) if self.d2s > 1 else out

    @property
    def out_dtype(self) -> np.dtype:
        """The narrowest of int16/int32 that holds ``[lo, hi]`` with room for the entropy model's
        arithmetic on it (a 12 MP image's hyper-decoder output is 145 MB in int64, 36 in int16)."""
        big = max(int(np.abs(self.lo).max(initial=0)), int(np.abs(self.hi).max(initial=0)))
        return np.dtype(np.int16 if big < 1 << 12 else np.int32 if big < 1 << 28 else np.int64)

    def arrays(self, prefix: str) -> dict[str, np.ndarray]:
        meta = np.array([self.stride, self.d2s, self.in_max], dtype=np.int64)
        return {
            f"{prefix}weight": self.weight,
            f"{prefix}bias": self.bias,
            f"{prefix}mult": self.mult,
            f"{prefix}shift": self.shift,
            f"{prefix}lo": self.lo,
            f"{prefix}hi": self.hi,
            f"{prefix}meta": meta,
        }

    @classmethod
    def from_arrays(cls, a, prefix: str) -> IntLayer:
        try:
            stride, d2s, in_max = (int(v) for v in a[f"{prefix}meta"])
            return cls(
                np.asarray(a[f"{prefix}weight"]).astype(np.int8),
                *(np.asarray(a[f"{prefix}{n}"]).astype(np.int64) for n in ("bias", "mult", "shift", "lo", "hi")),
                stride=stride,
                d2s=d2s,
                in_max=in_max,
            )
        except KeyError as e:
            raise BundleError(f"bundle lacks integer-network array {e.args[0]!r}") from None


class IntNet:
    def __init__(self, layers: list[IntLayer]):
        self.layers = layers

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.int64)
        for layer in self.layers:
            x = layer(x)
        return x

    def arrays(self, prefix: str) -> dict[str, np.ndarray]:
        out = {f"{prefix}count": np.asarray(len(self.layers), dtype=np.int64)}
        for i, layer in enumerate(self.layers):
            out.update(layer.arrays(f"{prefix}{i}."))
        return out

    @classmethod
    def from_arrays(cls, a, prefix: str) -> IntNet:
        if f"{prefix}count" not in a:
            raise BundleError(f"bundle lacks the integer network {prefix.rstrip('.')!r}")
        return cls([IntLayer.from_arrays(a, f"{prefix}{i}.") for i in range(int(a[f"{prefix}count"]))])


def fixed_point(real: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel (mult, shift) with mult in [2**30, 2**31) and mult / 2**shift ~= real."""
    real = np.asarray(real, dtype=np.float64)
    if np.any(real <= 0):
        raise ValueError("requantization scale must be positive")
    exp = np.floor(np.log2(real)).astype(np.int64)
    shift = np.clip(30 - exp, 1, 62)
    mult = np.rint(real * np.exp2(shift.astype(np.float64))).astype(np.int64)
    over = mult >= 1 << 31
    mult[over] >>= 1
    shift[over] -= 1
    return mult, shift


def quantize_conv(
    weight: np.ndarray,
    bias: np.ndarray,
    s_in: float,
    s_out: np.ndarray | float,
    lo: np.ndarray | int,
    hi: np.ndarray | int,
    stride: int = 1,
    d2s: int = 1,
    in_max: int = 255,
) -> IntLayer:
    """Quantize a float conv (per-output-channel symmetric int8 weights) to an ``IntLayer``.

    ``s_in`` is the real value of one input step; ``s_out`` that of one output
    step (per channel allowed). Export-time only.
    """
    weight = np.asarray(weight, dtype=np.float64)
    cout = weight.shape[0]
    w_scale = np.abs(weight).reshape(cout, -1).max(1) / 127.0
    w_scale = np.where(w_scale > 0, w_scale, 1.0)
    wq = np.clip(np.rint(weight / w_scale[:, None, None, None]), -127, 127).astype(np.int8)
    bq = np.rint(np.asarray(bias, dtype=np.float64) / (s_in * w_scale)).astype(np.int64)
    s_out = np.broadcast_to(np.asarray(s_out, dtype=np.float64), (cout,))
    mult, shift = fixed_point(s_in * w_scale / s_out)
    lo_a = np.broadcast_to(np.asarray(lo, dtype=np.int64), (cout,)).copy()
    hi_a = np.broadcast_to(np.asarray(hi, dtype=np.int64), (cout,)).copy()
    return IntLayer(wq, bq, mult, shift, lo_a, hi_a, stride=stride, d2s=d2s, in_max=in_max)
