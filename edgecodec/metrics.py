"""Image-quality metrics: the project's one implementation (encoder, ``info``, ``compare``, ``profile``,
the benchmarks). Numpy only: it is imported on the decode path of embedded devices.

Inputs are two HxWxC (usually HxWx3) or HxW arrays of the same shape, 8-bit levels (uint8; the
error measures take any integer type and count in its levels); anything else is a ValueError.
Every pass works on bands of rows, so a 12 MP photo needs no whole-image float64 copy.

* ``psnr``: RGB PSNR over the joint MSE of all channels, peak 255; inf when identical.
* ``ms_ssim``: multi-scale SSIM (Wang, Simoncelli & Bovik 2003) as in the learned-compression
  literature (``pytorch_msssim``) and the authors' MATLAB code: 5 scales with weights
  (0.0448, 0.2856, 0.3001, 0.2363, 0.1333), 11x11 Gaussian window (sigma 1.5) over the 'valid'
  region, K1 0.01, K2 0.03, L 255, 2x2 average downsampling (edge-replicated on an odd side);
  contrast-structure at the first four scales, the full SSIM at the coarsest, negative terms
  clamped to 0; computed per channel, then averaged over channels.

  Small images (defined for every size >= 1x1, 1.0 exactly when identical):

  - fewer scales when the shorter side is under 176 px: scale j (0-based) is used while
    ``side // 2**j >= 11``, and the weights of the scales used are rescaled to the five's total;
  - a side shorter than 11 px uses a shorter window on that axis: the same Gaussian (sigma 1.5)
    truncated to the largest odd length <= the side, renormalized (1 px: the pixel itself).

* ``max_error`` / ``error_percentile`` / ``fraction_over``: absolute errors |a - b| in levels.
* ``error_map``: an HxWx3 uint8 heat map (black -> red -> yellow -> white) of each pixel's
  largest channel error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
from numpy.lib.stride_tricks import as_strided

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
WINDOW, SIGMA = 11, 1.5
_C1, _C2 = (0.01 * 255.0) ** 2, (0.03 * 255.0) ** 2
_BAND = 1 << 20  # elements per band of rows in the pixel-wise passes (bounded memory for 12 MP photos)
_SSIM_ROWS = 16  # output rows per band of the SSIM filtering
_SSIM_COLS = 16  # output columns per product of the horizontal filter
_SSIM_SPAN = 384  # columns (moments x channels x pixels) per product of the vertical filter


@dataclass(frozen=True)
class Metrics:
    psnr: float  # RGB PSNR (joint MSE over all channels, peak 255), inf when identical
    ms_ssim: float  # MS-SSIM (module docstring), 1.0 when identical
    max_error: int  # largest |a - b| over every pixel and channel, in levels
    p999_error: int  # smallest v such that >= 99.9% of all pixel-channel values have |a - b| <= v


def _pair(a: np.ndarray, b: np.ndarray, integer: bool = False) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
    if a.ndim not in (2, 3):
        raise ValueError(f"images must be HxW or HxWxC arrays, got shape {a.shape}")
    if a.size == 0:
        raise ValueError("images are empty")
    for x in (a, b):
        if x.dtype.kind not in ("ui" if integer else "uif"):
            raise ValueError(f"images must be {'integer' if integer else 'numeric'} arrays (uint8), got {x.dtype}")
    return a, b


def _rows(a: np.ndarray, elements: int = _BAND) -> int:
    return max(1, elements // max(1, a[0].size))


def _abs_diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """|a - b| of one band of integer images, in a type that holds it (int16 for uint8)."""
    if a.dtype == np.uint8 and b.dtype == np.uint8:
        return np.abs(a.astype(np.int16) - b)
    return np.abs(a.astype(np.int64) - b)


def _histogram(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """counts[v] = how many pixel-channel values have |a - b| = v (integer images), band by band."""
    counts = np.zeros(1, np.int64)
    rows = _rows(a)
    for i in range(0, a.shape[0], rows):
        c = np.bincount(_abs_diff(a[i : i + rows], b[i : i + rows]).ravel())
        if len(c) > len(counts):
            counts = np.concatenate([counts, np.zeros(len(c) - len(counts), np.int64)])
        counts[: len(c)] += c
    return counts


def _psnr_of(square_sum: float, size: int, peak: float) -> float:
    mse = square_sum / size
    return math.inf if mse == 0 else 10.0 * math.log10(peak * peak / mse)


def psnr(a: np.ndarray, b: np.ndarray, peak: float = 255.0) -> float:
    """PSNR in dB of two same-shaped images, all channels pooled into one MSE; inf when identical.

    Summed a band of rows at a time (float64 copies of a 12 MP photo would be 0.9 GB); for integer
    images every partial sum is an exact integer, so the result is the direct float64 one."""
    a, b = _pair(a, b)
    rows = _rows(a)
    sq = 0.0
    for i in range(0, a.shape[0], rows):
        sq += float(np.sum(np.square(a[i : i + rows].astype(np.float64) - b[i : i + rows])))
    return _psnr_of(sq, a.size, peak)


def max_error(a: np.ndarray, b: np.ndarray) -> int:
    """Largest |a - b| over every pixel and channel, in levels."""
    a, b = _pair(a, b, integer=True)
    rows = _rows(a)
    return max(int(_abs_diff(a[i : i + rows], b[i : i + rows]).max()) for i in range(0, a.shape[0], rows))


def _percentile(counts: np.ndarray, q: float) -> int:
    """The smallest v with at least q% of the counted values <= v (q exactly as written: 99.9 is 999/1000)."""
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be in [0, 100], got {q}")
    total = int(counts.sum())
    need = max(1, math.ceil(Fraction(repr(float(q))) * total / 100))
    return int(np.searchsorted(np.cumsum(counts), need, side="left"))


def error_percentile(a: np.ndarray, b: np.ndarray, q: float = 99.9) -> int:
    """The smallest error v such that at least q% of all pixel-channel values have |a - b| <= v."""
    a, b = _pair(a, b, integer=True)
    return _percentile(_histogram(a, b), q)


def _pixel_error(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Each pixel's largest channel error (HxW) of one band."""
    d = _abs_diff(a, b)
    return d.max(axis=2) if d.ndim == 3 else d


def fraction_over(a: np.ndarray, b: np.ndarray, threshold: int) -> float:
    """Fraction of pixels whose largest channel error exceeds ``threshold`` levels (0.0 .. 1.0)."""
    a, b = _pair(a, b, integer=True)
    rows = _rows(a)
    over = 0
    for i in range(0, a.shape[0], rows):
        over += int(np.count_nonzero(_pixel_error(a[i : i + rows], b[i : i + rows]) > threshold))
    return over / (a.shape[0] * a.shape[1])


# --- MS-SSIM -------------------------------------------------------------------------------------


def _gaussian(size: int = WINDOW, sigma: float = SIGMA) -> np.ndarray:
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-(x * x) / (2.0 * sigma * sigma))
    return g / g.sum()


def _window(side: int) -> np.ndarray:
    """The Gaussian window along an axis of ``side`` pixels: 11 taps, or the largest odd length <= side."""
    return _gaussian(min(WINDOW, side - 1 + side % 2))


def _toeplitz(g: np.ndarray, n_out: int) -> np.ndarray:
    """(n_out + len(g) - 1, n_out) matrix whose column o is ``g`` at rows o .. o + len(g) - 1:
    ``x @ T`` is the 'valid' correlation of x's rows with g, as one BLAS product."""
    t = np.zeros((n_out + len(g) - 1, n_out))
    for o in range(n_out):
        t[o : o + len(g), o] = g
    return t


def _blocks(x: np.ndarray, n: int, width: int, step: int) -> np.ndarray:
    """The 2-D array ``x`` as a stack of its column blocks j*step .. j*step + width, j < n (a view)."""
    s0, s1 = x.strides
    return as_strided(x, (n, x.shape[0], width), (step * s1, s0, s1), writeable=False)


def _filter_rows(v: np.ndarray, t: np.ndarray, out: np.ndarray) -> None:
    """out = 'valid' correlation of each row of ``v`` with the window of ``t`` (``_toeplitz(g, B)``):
    one small product per block of B output columns, in one batched matmul."""
    b = t.shape[1]
    k = t.shape[0] - b + 1
    wo = out.shape[1]
    n = wo // b
    if n:
        blocks = as_strided(out, (n, out.shape[0], b), (b * out.strides[1], out.strides[0], out.strides[1]))
        np.matmul(_blocks(v, n, b + k - 1, b), t, out=blocks)
    if wo > n * b:
        np.matmul(v[:, n * b :], t[: wo - n * b + k - 1, : wo - n * b], out=out[:, n * b :])


def _filter_columns(t: np.ndarray, m: np.ndarray, out: np.ndarray) -> None:
    """out = t @ m (the vertical filter of a band), one small product per block of columns."""
    n = m.shape[1] // _SSIM_SPAN
    if n:
        blocks = as_strided(out, (n, out.shape[0], _SSIM_SPAN), (_SSIM_SPAN * out.strides[1], out.strides[0], out.strides[1]))
        np.matmul(t, _blocks(m, n, _SSIM_SPAN, _SSIM_SPAN), out=blocks)
    if m.shape[1] > n * _SSIM_SPAN:
        np.matmul(t, m[:, n * _SSIM_SPAN :], out=out[:, n * _SSIM_SPAN :])


def _ssim_sums(x: np.ndarray, y: np.ndarray, full: bool) -> tuple[np.ndarray, np.ndarray, int]:
    """Per-channel sums over the 'valid' region of the contrast-structure map (and of the SSIM map
    when ``full``), and the region's size. x, y: HxWxC, any real type (cast per band to float64).

    The five local moments of a band of rows (x, y, x², y², xy of each channel) are filtered together
    by products with banded Toeplitz matrices: ~2.4x the multiply-adds of the 11 taps, but done by
    BLAS. Each product is kept small (below OpenBLAS's threading threshold, ~2**18 multiply-adds), so
    no thread hand-offs: on a busy 2-core device those cost more than the work."""
    h, w, c = x.shape
    gv, gh = _window(h), _window(w)
    kv, kh = len(gv), len(gh)
    ho, wo = h - kv + 1, w - kh + 1
    rows = _SSIM_ROWS
    tv = np.ascontiguousarray(_toeplitz(gv, rows).T)  # (rows, rows + kv - 1)
    th = _toeplitz(gh, _SSIM_COLS)  # (cols + kh - 1, cols)
    s_cs, s_ssim = np.zeros(c), np.zeros(c)
    for r0 in range(0, ho, rows):
        r = min(rows, ho - r0)
        n = r + kv - 1
        m = np.empty((n, 5, c, w))
        xb, yb = m[:, 0], m[:, 1]
        xb[...] = x[r0 : r0 + n].transpose(0, 2, 1)
        yb[...] = y[r0 : r0 + n].transpose(0, 2, 1)
        np.multiply(xb, xb, out=m[:, 2])
        np.multiply(yb, yb, out=m[:, 3])
        np.multiply(xb, yb, out=m[:, 4])
        v = np.empty((r, 5 * c * w))
        _filter_columns(tv[:r, :n], m.reshape(n, -1), v)
        f = np.empty((r * 5 * c, wo))
        _filter_rows(v.reshape(r * 5 * c, w), th, f)
        f = f.reshape(r, 5, c, wo)
        mx, my = f[:, 0], f[:, 1]
        mxy = mx * my
        mxx = mx * mx
        myy = my * my
        cs = (2.0 * (f[:, 4] - mxy) + _C2) / ((f[:, 2] - mxx) + (f[:, 3] - myy) + _C2)
        s_cs += cs.sum(axis=(0, 2))
        if full:
            cs *= (2.0 * mxy + _C1) / (mxx + myy + _C1)
            s_ssim += cs.sum(axis=(0, 2))
    return s_cs, s_ssim, ho * wo


def _downsample2(x: np.ndarray) -> np.ndarray:
    """2x2 average then decimate (edge-replicated when a side is odd), band by band, as float32.

    Exact: the values are multiples of 1/4**scale of at most 255 (uint8 inputs), which float32 holds
    through the four downsamplings, so this equals the float64 computation of the reference."""
    h, w, c = x.shape
    out = np.empty(((h + 1) // 2, (w + 1) // 2, c), np.float32)
    step = 2 * _rows(x, _BAND // 2)
    for i in range(0, h, step):
        band = x[i : i + step].astype(np.float32)
        if band.shape[0] % 2 or w % 2:
            band = np.pad(band, ((0, band.shape[0] % 2), (0, w % 2), (0, 0)), mode="edge")
        o = out[i // 2 : i // 2 + band.shape[0] // 2]
        np.add(band[0::2, 0::2], band[1::2, 0::2], out=o)
        o += band[0::2, 1::2]
        o += band[1::2, 1::2]
        o *= 0.25
    return out


def ms_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """MS-SSIM of two 8-bit-level images (HxW or HxWxC), averaged over channels (module docstring)."""
    a, b = _pair(a, b)
    if np.array_equal(a, b):
        return 1.0
    x, y = (a[:, :, None], b[:, :, None]) if a.ndim == 2 else (a, b)
    side = min(x.shape[:2])
    scales = 1
    while scales < len(MS_SSIM_WEIGHTS) and side // 2**scales >= WINDOW:
        scales += 1
    weights = MS_SSIM_WEIGHTS[:scales]
    if scales < len(MS_SSIM_WEIGHTS):
        weights = tuple(wj * sum(MS_SSIM_WEIGHTS) / sum(weights) for wj in weights)
    value = np.ones(x.shape[2])
    for j, wj in enumerate(weights):
        last = j == scales - 1
        s_cs, s_ssim, n = _ssim_sums(x, y, full=last)
        value *= np.maximum((s_ssim if last else s_cs) / n, 0.0) ** wj
        if not last:
            x, y = _downsample2(x), _downsample2(y)
    return float(value.mean())


def msssim_db(v: float) -> float:
    """MS-SSIM on a dB scale: -10 log10(1 - v)."""
    return math.inf if v >= 1.0 else -10.0 * math.log10(1.0 - v)


def measure(original: np.ndarray, decoded: np.ndarray) -> Metrics:
    """All four metrics of ``decoded`` against ``original`` (integer images): one histogram of the
    errors gives PSNR (the same float as ``psnr``), the max and the percentile; then MS-SSIM."""
    a, b = _pair(original, decoded, integer=True)
    counts = _histogram(a, b)
    levels = np.arange(len(counts), dtype=np.int64)
    sq = float(np.dot(counts, levels * levels))  # exact: an integer far below 2**53
    return Metrics(_psnr_of(sq, a.size, 255.0), ms_ssim(a, b), len(counts) - 1, _percentile(counts, 99.9))


# --- error maps ----------------------------------------------------------------------------------


def _heat(t: np.ndarray) -> np.ndarray:
    """t in [0, 1] -> uint8 RGB, black -> red -> yellow -> white (each channel ramps in turn, so the
    brightness rises strictly with t)."""
    rgb = np.clip(3.0 * t[:, None] - np.arange(3.0), 0.0, 1.0)
    return np.rint(255.0 * rgb).astype(np.uint8)


def error_map(original: np.ndarray, decoded: np.ndarray, scale: int | None = None) -> np.ndarray:
    """HxWx3 uint8 heat map of each pixel's largest channel error: 0 black, ``scale`` levels or more
    white (default: the image's largest error, at least 1)."""
    a, b = _pair(original, decoded, integer=True)
    if scale is not None and scale < 1:
        raise ValueError(f"error map scale must be >= 1 level, got {scale}")
    top = int(scale) if scale is not None else max(1, max_error(a, b))
    lut = _heat(np.arange(top + 1) / top)
    out = np.empty((a.shape[0], a.shape[1], 3), np.uint8)
    rows = _rows(a)
    for i in range(0, a.shape[0], rows):
        out[i : i + rows] = lut[np.minimum(_pixel_error(a[i : i + rows], b[i : i + rows]), top)]
    return out
