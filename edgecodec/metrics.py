"""Image-quality metrics: the project's one implementation (encoder, ``info``, ``compare``, ``profile``,
the benchmarks). Numpy only: it is imported on the decode path of embedded devices.

* ``psnr``: RGB PSNR over the joint MSE of all channels, peak 255 (inf when identical).
* ``ms_ssim``: multi-scale SSIM (Wang, Simoncelli & Bovik 2003): 5 scales, 11x11 Gaussian window
  (sigma 1.5), K1 0.01, K2 0.03, L 255, per channel then averaged over channels, 2x2 average
  downsampling; the coarsest scale uses the mean SSIM map, negative terms clamp to 0. An image too
  small for 5 scales uses the scales whose sides are >= 11 px with their weights renormalized; one
  smaller than the window on a side uses a single window over the whole image (global statistics).
* ``max_error`` / ``error_percentile`` / ``fraction_over``: absolute errors in levels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
WINDOW, SIGMA = 11, 1.5
_C1, _C2 = (0.01 * 255.0) ** 2, (0.03 * 255.0) ** 2
_BAND = 1 << 20  # elements per band of the pixel-wise passes (bounded memory for 12 MP photos)


@dataclass(frozen=True)
class Metrics:
    psnr: float
    ms_ssim: float
    max_error: int
    p999_error: int


def _pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
    if a.size == 0:
        raise ValueError("images are empty")
    return a, b


def _bands(a: np.ndarray):
    rows = max(1, _BAND // max(1, a[0].size))
    return range(0, a.shape[0], rows), rows


def psnr(a: np.ndarray, b: np.ndarray, peak: float = 255.0) -> float:
    """PSNR of two same-shaped images, summed a band of rows at a time (float64 copies of a 12 MP
    photo would be 0.9 GB)."""
    a, b = _pair(a, b)
    starts, rows = _bands(a)
    sq = sum(float(np.sum(np.square(a[i : i + rows].astype(np.float64) - b[i : i + rows]))) for i in starts)
    mse = sq / a.size
    return math.inf if mse == 0 else 10.0 * math.log10(peak * peak / mse)


def _histogram(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Counts of |a - b| = 0..peak (integer images), band by band."""
    starts, rows = _bands(a)
    top = int(max(a.max(), b.max())) + 1 if a.dtype.kind in "ui" else 256
    counts = np.zeros(max(256, top), np.int64)
    for i in starts:
        d = np.abs(a[i : i + rows].astype(np.int32) - b[i : i + rows])
        counts[: d.max() + 1] += np.bincount(d.ravel(), minlength=d.max() + 1)
    return counts


def max_error(a: np.ndarray, b: np.ndarray) -> int:
    a, b = _pair(a, b)
    return int(np.flatnonzero(_histogram(a, b))[-1])


def error_percentile(a: np.ndarray, b: np.ndarray, q: float = 99.9) -> int:
    """The smallest error v such that at least q% of all pixel-channel values are within v levels."""
    a, b = _pair(a, b)
    return _percentile(_histogram(a, b), q)


def _percentile(counts: np.ndarray, q: float) -> int:
    need = q / 100.0 * counts.sum()
    return int(np.searchsorted(np.cumsum(counts), need - 1e-9 * counts.sum(), side="left"))


def fraction_over(a: np.ndarray, b: np.ndarray, threshold: int) -> float:
    """Fraction of pixels whose largest channel error exceeds ``threshold`` levels."""
    a, b = _pair(a, b)
    starts, rows = _bands(a)
    over = 0
    for i in starts:
        d = np.abs(a[i : i + rows].astype(np.int32) - b[i : i + rows])
        over += int(np.count_nonzero((d.max(axis=2) if d.ndim == 3 else d) > threshold))
    return over / (a.shape[0] * a.shape[1])


def _gaussian(size: int = WINDOW, sigma: float = SIGMA) -> np.ndarray:
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-(x * x) / (2.0 * sigma * sigma))
    return g / g.sum()


def _valid(x: np.ndarray, g: np.ndarray, axis: int) -> np.ndarray:
    """Correlation with ``g`` along ``axis``, 'valid' region only: one shifted multiply-add per tap."""
    n = x.shape[axis] - len(g) + 1
    take = [slice(None)] * x.ndim
    take[axis] = slice(0, n)
    out = g[0] * x[tuple(take)]
    for k in range(1, len(g)):
        take[axis] = slice(k, k + n)
        out += g[k] * x[tuple(take)]
    return out


def _filter(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    return _valid(_valid(x, g, 0), g, 1)


def _ssim_terms(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel means of the SSIM map and the contrast-structure map (HxWxC float64 inputs)."""
    if min(x.shape[:2]) < WINDOW:  # a single window over the whole image
        mx, my = x.mean(axis=(0, 1)), y.mean(axis=(0, 1))
        sxx, syy = x.var(axis=(0, 1)), y.var(axis=(0, 1))
        sxy = ((x - mx) * (y - my)).mean(axis=(0, 1))
    else:
        g = _gaussian()
        mx, my = _filter(x, g), _filter(y, g)
        sxx = _filter(x * x, g) - mx * mx
        syy = _filter(y * y, g) - my * my
        sxy = _filter(x * y, g) - mx * my
    lum = (2.0 * mx * my + _C1) / (mx * mx + my * my + _C1)
    cs = (2.0 * sxy + _C2) / (sxx + syy + _C2)
    return np.atleast_1d((lum * cs).mean(axis=(0, 1)) if np.ndim(lum) > 1 else lum * cs), np.atleast_1d(
        cs.mean(axis=(0, 1)) if np.ndim(cs) > 1 else cs
    )


def _downsample2(x: np.ndarray) -> np.ndarray:
    """2x2 average then decimate (edge-replicated when a side is odd)."""
    h, w = x.shape[:2]
    if h % 2 or w % 2:
        x = np.pad(x, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    return 0.25 * (x[0::2, 0::2] + x[1::2, 0::2] + x[0::2, 1::2] + x[1::2, 1::2])


def ms_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """MS-SSIM of two uint8-range images (HxW or HxWxC), averaged over channels (module docstring)."""
    a, b = _pair(a, b)
    if np.array_equal(a, b):
        return 1.0
    x, y = a.astype(np.float64), b.astype(np.float64)
    if x.ndim == 2:
        x, y = x[:, :, None], y[:, :, None]
    side = min(x.shape[:2])
    scales = 1
    while scales < len(MS_SSIM_WEIGHTS) and side // 2**scales >= WINDOW:
        scales += 1
    weights = np.asarray(MS_SSIM_WEIGHTS[:scales])
    weights = weights / weights.sum()
    value = np.ones(x.shape[2])
    for j, w in enumerate(weights):
        ssim, cs = _ssim_terms(x, y)
        if j == scales - 1:
            value *= np.maximum(ssim, 0.0) ** w
        else:
            value *= np.maximum(cs, 0.0) ** w
            x, y = _downsample2(x), _downsample2(y)
    return float(value.mean())


def msssim_db(v: float) -> float:
    """MS-SSIM on a dB scale: -10 log10(1 - v)."""
    return math.inf if v >= 1.0 else -10.0 * math.log10(1.0 - v)


def measure(original: np.ndarray, decoded: np.ndarray) -> Metrics:
    """All four metrics of ``decoded`` against ``original`` (integer images)."""
    a, b = _pair(original, decoded)
    counts = _histogram(a, b)
    return Metrics(psnr(a, b), ms_ssim(a, b), int(np.flatnonzero(counts)[-1]), _percentile(counts, 99.9))


# black -> red -> yellow -> white: error 0 black, the scale's error white
_STOPS = np.array([[0, 0, 0], [200, 0, 0], [255, 200, 0], [255, 255, 255]], np.float64)


def error_map(original: np.ndarray, decoded: np.ndarray, scale: int | None = None) -> np.ndarray:
    """HxWx3 uint8 heat map of each pixel's largest channel error; ``scale``: the error shown white
    (default: the image's largest error, at least 1)."""
    a, b = _pair(original, decoded)
    d = np.abs(a.astype(np.int32) - b)
    d = d.max(axis=2) if d.ndim == 3 else d
    top = max(1, int(scale if scale is not None else d.max()))
    t = np.clip(d / top, 0.0, 1.0) * (len(_STOPS) - 1)
    i = np.minimum(t.astype(np.int64), len(_STOPS) - 2)
    f = (t - i)[..., None]
    return np.rint(_STOPS[i] * (1 - f) + _STOPS[i + 1] * f).astype(np.uint8)
