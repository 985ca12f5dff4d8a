"""Image-quality metrics and Bjøntegaard deltas for the rate-distortion benchmarks.

* ``psnr``, ``ms_ssim``: the project's one implementation, ``edgecodec.metrics`` (RGB PSNR over
  the joint MSE of all channels, peak 255; multi-scale SSIM (Wang, Simoncelli & Bovik 2003),
  5 scales, 11x11 Gaussian window with sigma 1.5, K1=0.01, K2=0.03, L=255, computed on each
  RGB channel separately and averaged over the three channels: the usual convention of the
  learned-compression literature, e.g. ``pytorch_msssim``).
* ``bd_rate``: Bjøntegaard delta rate with PCHIP interpolation of log-rate
  over the overlapping quality interval.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy.interpolate import PchipInterpolator

from edgecodec.metrics import MS_SSIM_WEIGHTS, ms_ssim, psnr

__all__ = ["MS_SSIM_WEIGHTS", "bd_rate", "ms_ssim", "msssim_db", "psnr"]


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
