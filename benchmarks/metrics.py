"""Image-quality metrics and Bjøntegaard deltas for the rate-distortion benchmarks.

* ``psnr``: RGB PSNR over the joint MSE of all channels, peak 255.
* ``ms_ssim``: multi-scale SSIM (Wang, Simoncelli & Bovik 2003), 5 scales,
  11x11 Gaussian window with sigma 1.5, K1=0.01, K2=0.03, L=255, computed on
  each RGB channel separately and averaged over the three channels (the usual
  convention of the learned-compression literature, e.g. ``pytorch_msssim``).
* ``bd_rate``: Bjøntegaard delta rate with PCHIP interpolation of log-rate
  over the overlapping quality interval.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy.interpolate import PchipInterpolator
from scipy.ndimage import correlate1d

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
_K1, _K2, _PEAK = 0.01, 0.03, 255.0


def psnr(a: np.ndarray, b: np.ndarray, peak: float = 255.0) -> float:
    """PSNR in dB of two same-shaped images (all channels pooled into one MSE)."""
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(peak * peak / mse)


def _gaussian(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-(x * x) / (2.0 * sigma * sigma))
    return g / g.sum()


def _filter_valid(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Separable 2-D filtering of the leading two axes, keeping only the 'valid' region."""
    r = len(g) // 2
    y = correlate1d(correlate1d(x, g, axis=0, mode="constant"), g, axis=1, mode="constant")
    return y[r : x.shape[0] - r, r : x.shape[1] - r]


def _ssim_terms(x: np.ndarray, y: np.ndarray, g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel means of the SSIM map and of the contrast-structure map; x, y are HxWxC float64."""
    c1, c2 = (_K1 * _PEAK) ** 2, (_K2 * _PEAK) ** 2
    mx, my = _filter_valid(x, g), _filter_valid(y, g)
    sxx = _filter_valid(x * x, g) - mx * mx
    syy = _filter_valid(y * y, g) - my * my
    sxy = _filter_valid(x * y, g) - mx * my
    lum = (2.0 * mx * my + c1) / (mx * mx + my * my + c1)
    cs = (2.0 * sxy + c2) / (sxx + syy + c2)
    return (lum * cs).mean(axis=(0, 1)), cs.mean(axis=(0, 1))


def _downsample2(x: np.ndarray) -> np.ndarray:
    """2x2 average then decimate (edge-replicated when a side is odd), as in the reference implementation."""
    h, w = x.shape[:2]
    if h % 2 or w % 2:
        x = np.pad(x, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    return 0.25 * (x[0::2, 0::2] + x[1::2, 0::2] + x[0::2, 1::2] + x[1::2, 1::2])


def ms_ssim(a: np.ndarray, b: np.ndarray, weights: Sequence[float] = MS_SSIM_WEIGHTS) -> float:
    """MS-SSIM of two uint8-range images (HxW or HxWxC), averaged over channels.

    MS-SSIM = SSIM_M^w_M * prod_{j<M} cs_j^w_j per channel (as in the authors' MATLAB code:
    the coarsest scale uses the mean SSIM map; negative terms are clamped to 0),
    then the mean over channels. The smallest scale must be at least 11 px per side
    (an image of at least 176 px per side for 5 scales).
    """
    x = np.asarray(a, np.float64)
    y = np.asarray(b, np.float64)
    if x.shape != y.shape:
        raise ValueError(f"shape mismatch {x.shape} vs {y.shape}")
    if x.ndim == 2:
        x, y = x[:, :, None], y[:, :, None]
    g = _gaussian()
    n = len(weights)
    if min(x.shape[:2]) // 2 ** (n - 1) < len(g):
        raise ValueError(f"image {x.shape[1]}x{x.shape[0]} is too small for {n}-scale MS-SSIM")
    value = np.ones(x.shape[2])
    for j, w in enumerate(weights):
        ssim, cs = _ssim_terms(x, y, g)
        if j == n - 1:
            value *= np.maximum(ssim, 0.0) ** w
        else:
            value *= np.maximum(cs, 0.0) ** w
            x, y = _downsample2(x), _downsample2(y)
    return float(value.mean())


def msssim_db(v: float) -> float:
    """MS-SSIM on a dB scale: -10 log10(1 - v)."""
    return math.inf if v >= 1.0 else -10.0 * math.log10(1.0 - v)


def _curve(rates: Sequence[float], quality: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Finite, positive-rate points sorted by quality; ties in quality keep the lowest rate."""
    r = np.asarray(rates, np.float64)
    q = np.asarray(quality, np.float64)
    ok = np.isfinite(r) & np.isfinite(q) & (r > 0)
    r, q = r[ok], q[ok]
    order = np.lexsort((r, q))
    q, lr = q[order], np.log(r[order])
    keep = np.concatenate(([True], np.diff(q) > 0)) if len(q) else np.zeros(0, bool)
    return q[keep], lr[keep]


def bd_rate(
    rate_anchor: Sequence[float],
    quality_anchor: Sequence[float],
    rate_test: Sequence[float],
    quality_test: Sequence[float],
    min_points: int = 4,
) -> tuple[float | None, str]:
    """Bjøntegaard delta rate of a test codec against an anchor, in percent.

    Log-rate is interpolated as a function of quality (PSNR, MS-SSIM dB, ...) with a
    monotone piecewise-cubic Hermite (PCHIP) interpolant for each curve; the two are
    integrated over the quality interval both curves cover, and the mean log-rate
    difference d gives ``100 * (exp(d) - 1)``. Negative means the test codec needs
    fewer bits than the anchor for the same quality.

    Points with non-finite values or non-positive rate are dropped; the points are
    sorted by quality, and of points with equal quality the lowest rate is kept. Each
    curve needs at least ``min_points`` points (so the interpolant has a shape), the
    quality ranges must overlap, and together the two curves must have at least
    ``min_points`` points inside the overlap (so the integral is not a guess between
    two distant samples). Points outside the overlap still shape the interpolants
    near its ends; there is never any extrapolation.

    Returns ``(value, info)``: ``value`` is the percentage, or None when the comparison
    is not possible, and ``info`` says why not, or else which overlap was used.
    """
    qa, la = _curve(rate_anchor, quality_anchor)
    qt, lt = _curve(rate_test, quality_test)
    if len(qa) < min_points or len(qt) < min_points:
        return None, f"fewer than {min_points} usable points (anchor {len(qa)}, test {len(qt)})"
    lo, hi = max(qa[0], qt[0]), min(qa[-1], qt[-1])
    if not hi > lo:
        return None, "quality ranges do not overlap"
    na = int(np.count_nonzero((qa >= lo) & (qa <= hi)))
    nt = int(np.count_nonzero((qt >= lo) & (qt <= hi)))
    info = f"overlap [{lo:.3f}, {hi:.3f}] with {na} anchor + {nt} test points"
    if na + nt < min_points:
        return None, f"fewer than {min_points} points in the {info}"
    ia = PchipInterpolator(qa, la).integrate(lo, hi)
    it = PchipInterpolator(qt, lt).integrate(lo, hi)
    return float(100.0 * math.expm1((it - ia) / (hi - lo))), info
