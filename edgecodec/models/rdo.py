"""Rate-distortion weights for the encoder's rounding (``EntropyModel.encode(..., rd_weight)``).

Training minimizes ``bpp + lambda * 255^2 * MSE``. Moving one latent element of channel ``c`` by
``e`` quantization steps changes the decoded image by about ``e * J_c`` (``J_c``: the synthesis'
response to one step of that channel), which costs ``lambda * 255^2 * |J_c|^2 * e^2 / 3`` in the
loss's bit units for the whole image. ``|J_c|^2`` is measured here on the float synthesis, per
quality level: +1 on each channel at a few spots of a real latent, averaged.

That linearization under-counts what an error costs (neighbouring errors add up, ReLUs switch),
so ``STRENGTH`` scales it. Measured on 6 training photos (not Kodak), BD-rate (PSNR) of the
int8 codec against plain rounding: strength 4: -1.39%, 8: -1.36%, 16: -1.02%; on 6 Kodak images
0.5: +9.7%, 1: +2.7%, 2: -0.6%, 4: -1.6% (too small a weight trades too much distortion for bits).
Those tuning runs probed 12x12 latent crops; the 8x8 crops used here give weights within -14% to
+8% of theirs per level, well inside the flat optimum. The shipped weights on all 24 Kodak images
(``benchmarks/rd.py``): -1.0% BD-rate (PSNR), -1.7% (MS-SSIM) against plain rounding.
"""

from __future__ import annotations

import numpy as np
import torch

from ..codec import model_input
from .convert import SynthesisGraph, extend_below
from .hyperprior import HyperpriorCodec

STRENGTH = 4.0
_HALF = 4  # latent crop of 8x8 around each spot: one step's response reaches ~2.5 latents away


def level_lambdas(model: HyperpriorCodec, extrapolated_levels: int) -> np.ndarray:
    """The training lambda of every bundle level; levels below the trained ones continue geometrically,
    as their gain vectors do."""
    return extend_below(np.asarray(model.config.lambdas, np.float64), extrapolated_levels)


@torch.no_grad()
def response_energy(model: HyperpriorCodec, image: np.ndarray, gain: np.ndarray, inv_gain: np.ndarray) -> np.ndarray:
    """(levels, M): mean squared response (x in [0, 1], per colour channel) of the float synthesis to one
    latent step of each channel, at three spots of ``image``'s latent, per level."""
    x = torch.from_numpy(model_input(image))
    feat = model.g_a(x)
    h, w = feat.shape[2:]
    half = max(1, min(_HALF, h // 2, w // 2))  # small probe images get smaller crops
    spots = [(h // 4, w // 4), (h // 2, w // 2), (3 * h // 4, 3 * w // 4)]
    spots = [(min(max(r, half), h - half), min(max(c, half), w - half)) for r, c in spots]
    synth = SynthesisGraph(model)
    m = feat.shape[1]
    out = np.zeros((gain.shape[0], m))
    for q in range(gain.shape[0]):
        y = torch.round(feat * torch.from_numpy(gain[q]).float().view(1, -1, 1, 1)).clamp(-127, 127)
        ig = torch.from_numpy(inv_gain[q]).float().view(1, -1, 1, 1)
        for r, c in spots:
            crop = y[:, :, r - half : r + half, c - half : c + half]
            base = synth(crop, ig)
            pert = crop.repeat(m, 1, 1, 1)
            pert[torch.arange(m), torch.arange(m), half, half] += 1.0
            out[q] += ((synth(pert, ig) - base) ** 2).flatten(1).sum(1).double().numpy() / 3.0
    return out / len(spots)


def rd_weights(
    model: HyperpriorCodec, image: np.ndarray, gain: np.ndarray, inv_gain: np.ndarray, extrapolated_levels: int, strength: float = STRENGTH
) -> np.ndarray:
    """(levels, M) float32: bits that one squared latent step of error is worth, per level and channel."""
    lam = level_lambdas(model, extrapolated_levels)
    if lam.size != gain.shape[0]:
        raise ValueError(f"{lam.size} lambdas for {gain.shape[0]} levels")
    energy = response_energy(model, image, gain, inv_gain)
    return (strength * lam[:, None] * 255.0**2 * energy).astype(np.float32)
