"""Image-quality metrics and Bjøntegaard deltas for the rate-distortion benchmarks.

* ``psnr``, ``ms_ssim``: the project's one implementation, ``edgecodec.metrics`` (RGB PSNR over
  the joint MSE of all channels, peak 255; multi-scale SSIM (Wang, Simoncelli & Bovik 2003),
  5 scales, 11x11 Gaussian window with sigma 1.5, K1=0.01, K2=0.03, L=255, computed on each
  RGB channel separately and averaged over the three channels: the usual convention of the
  learned-compression literature, e.g. ``pytorch_msssim``).
* ``bd_rate``: Bjøntegaard delta rate with PCHIP interpolation of log-rate
  over the overlapping quality interval (``edgecodec.report.rd``, which the browser report uses).
"""

from __future__ import annotations

from edgecodec.metrics import MS_SSIM_WEIGHTS, ms_ssim, msssim_db, psnr
from edgecodec.report.rd import bd_rate

__all__ = ["MS_SSIM_WEIGHTS", "bd_rate", "ms_ssim", "msssim_db", "psnr"]
