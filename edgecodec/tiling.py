"""Tiled transforms in bounded memory: the analysis and synthesis run window by window.

A whole-image run of a 12 MP photo needs gigabytes on every runtime. An image whose transform
fits the memory budget runs whole (no halo work); a larger one runs in windows of a few fixed
shapes, which bound the memory whatever the image size, let static-shape devices (OpenVINO NPU,
TFLite without resizing; ``Backend.fixed_windows``) compile once, and let backend selection
measure once per shape.

Each window is a core plus a halo of ``HALO`` latents (32 px) on every side that is not the
image's edge, and the halo covers each transform's receptive field, so a core's output is the
whole-image output:

* analysis: four 5x5 stride-2 convolutions, so latent ``i`` sees pixels ``16i-30 .. 16i+30``;
* synthesis: one 3x3 convolution per resolution (1/16 .. 1/2), under 2 latents in all.

Windows lie on the latent grid (16 px) inside the padded image (``codec.model_input``), so a
window's edges are either the image's own (padded the same way as a whole-image run) or at least
a halo away from any core element. The hyper-analysis (1/16 -> 1/64) and the parse stay
whole-image: the hyper-analysis of a tiled encode runs on the assembled latents with the numpy
layers of ``transforms.npz``.

Every backend goes through here (``codec.encode``/``codec.decode``); backends only ever see one
window at a time.
"""

from __future__ import annotations

import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .errors import InputError

HALO = 2  # latents on each inner side of a window (32 px >= the analysis' 30 px reach)
CORES = (64, 48, 32, 16)  # core side in latents (1024, 768, 512, 256 px), largest first; multiples of 4 (1/64 grid)
DEFAULT_MAX_MEMORY = 192 << 20  # transform working memory: a 12 MP decode then peaks under 400 MB (benchmarks/memory.py)
MEMORY_ENV = "EDGECODEC_MAX_MEMORY"
# working bytes per window pixel when a backend does not say (the largest measured here, numpy's)
DEFAULT_BYTES_PER_PIXEL = {"analysis": 700, "synthesis": 500}

_UNITS = {"": 1, "b": 1, "k": 1 << 10, "kb": 1 << 10, "m": 1 << 20, "mb": 1 << 20, "g": 1 << 30, "gb": 1 << 30}


def parse_size(text: str | int) -> int:
    """'512M', '1G', '1.5GB', '300000000' -> bytes (binary units)."""
    if isinstance(text, (int, np.integer)):
        value = int(text)
    else:
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(text))
        if not m or m.group(2).lower() not in _UNITS:
            raise InputError(f"invalid memory size {text!r}; write e.g. 512M or 1G")
        value = int(float(m.group(1)) * _UNITS[m.group(2).lower()])
    if value < 16 << 20:
        raise InputError(f"memory limit {text!r} is below the 16 MB the smallest tile needs")
    return value


def max_memory(value: str | int | None = None) -> int:
    """The transform memory budget: ``value``, else ``$EDGECODEC_MAX_MEMORY``, else the default."""
    if value is None:
        value = os.environ.get(MEMORY_ENV) or DEFAULT_MAX_MEMORY
    return parse_size(value)


@dataclass(frozen=True)
class Tile:
    """A window ``win`` and the core it is run for, both (row0, row1, col0, col1) in latents."""

    win: tuple[int, int, int, int]
    core: tuple[int, int, int, int]

    @property
    def shape(self) -> tuple[int, int]:
        return self.win[1] - self.win[0], self.win[3] - self.win[2]


def axis_windows(n: int, core: int, halo: int = HALO) -> list[tuple[int, int, int, int]]:
    """Windows along one axis of ``n`` latents: (window start, stop, core start, stop).

    One window when the axis fits in ``core + 2 * halo``; otherwise every window has exactly
    that length (fixed shapes), the cores partition ``0..n`` and each core keeps ``halo``
    latents of context on each side inside its window, or reaches the image's edge.
    """
    size = core + 2 * halo
    if n <= size:
        return [(0, n, 0, n)]
    count = -(-(n - 2 * halo) // core)
    cuts = [0] + [halo + (k * (n - 2 * halo)) // count for k in range(1, count)] + [n]
    out = []
    for a, b in zip(cuts[:-1], cuts[1:]):
        start = min(max(a - halo, 0), n - size)
        out.append((start, start + size, a, b))
    return out


def plan(rows: int, cols: int, core: int) -> list[Tile]:
    """Tiles covering a latent grid of ``rows`` x ``cols``, row-major."""
    across = axis_windows(cols, core)
    return [Tile((r0, r1, c0, c1), (a0, a1, b0, b1)) for r0, r1, a0, a1 in axis_windows(rows, core) for c0, c1, b0, b1 in across]


def bytes_per_pixel(backend, role: str) -> int:
    role = "synthesis" if role == "fast_synthesis" else role  # the full synthesis' figure bounds the fast one's
    table = getattr(backend, "memory_per_pixel", None) or DEFAULT_BYTES_PER_PIXEL
    return int(table.get(role, DEFAULT_BYTES_PER_PIXEL[role]))


def workers(backend) -> int:
    """Windows run at once: the cores, for backends whose runtime does not thread itself."""
    return max(1, min(os.cpu_count() or 1, int(getattr(backend, "tile_workers", 1))))


def choose_core(backend, role: str, budget: int) -> int:
    """The largest core whose windows, as many as run at once, fit in ``budget`` bytes."""
    per = bytes_per_pixel(backend, role) * workers(backend)
    for core in CORES:
        if ((core + 2 * HALO) * 16) ** 2 * per <= budget:
            return core
    return CORES[-1]


def tiles_for(backend, role: str, rows: int, cols: int, budget: int) -> list[Tile]:
    """One window when the whole latent grid fits the budget (no halo work), else fixed-shape windows.

    A backend with ``fixed_windows`` (static-shape devices) always gets the fixed shapes, so it
    compiles a few shapes once instead of one per image size.
    """
    if not getattr(backend, "fixed_windows", False) and (16 * rows) * (16 * cols) * bytes_per_pixel(backend, role) <= budget:
        return [Tile((0, rows, 0, cols), (0, rows, 0, cols))]
    return plan(rows, cols, choose_core(backend, role, budget))


def padded_crop(rgb: np.ndarray, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
    """Pixels [r0, r1) x [c0, c1) of the edge-padded image, as the (1, 3, h, w) float32 model input."""
    h, w, _ = rgb.shape
    rows = np.minimum(np.arange(r0, r1), h - 1)
    cols = np.minimum(np.arange(c0, c1), w - 1)
    crop = rgb[rows[:, None], cols[None, :]] if (r1 > h or c1 > w) else rgb[r0:r1, c0:c1]
    return crop.astype(np.float32).transpose(2, 0, 1)[None] / np.float32(255.0)


def _run(fn, tiles: list[Tile], n_workers: int) -> None:
    if n_workers <= 1 or len(tiles) <= 1:
        for t in tiles:
            fn(t)
        return
    with ThreadPoolExecutor(n_workers) as pool:
        for _ in pool.map(fn, tiles):
            pass


@lru_cache(maxsize=4)
def _hyper_analysis(bundle):
    from .runtimes.numpy_backend import load_net

    return load_net(bundle.transforms, "h_a")


def hyper_analysis(bundle, y: np.ndarray) -> np.ndarray:
    """z for the whole latent tensor (1, M, h, w): the numpy layers, band by band (``nn.conv_bands``)."""
    from .runtimes.numpy_backend import run_net

    return run_net(_hyper_analysis(bundle), y[0])[None]


def analysis(backend, rgb: np.ndarray, gain: np.ndarray, bundle, budget: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(y, z) of an HxWx3 uint8 image, window by window; equal to a whole-image run of the backend."""
    h, w, _ = rgb.shape
    d = bundle.downsample
    rows, cols = -(-h // d) * d // 16, -(-w // d) * d // 16
    tiles = tiles_for(backend, "analysis", rows, cols, max_memory(budget))
    if len(tiles) == 1:
        return backend.analysis(padded_crop(rgb, 0, 16 * rows, 0, 16 * cols), gain)
    y = np.empty((1, bundle.latent.y_channels, rows, cols), np.float32)

    def one(t: Tile) -> None:
        (r0, r1, c0, c1), (a0, a1, b0, b1) = t.win, t.core
        yt, _ = backend.analysis(padded_crop(rgb, 16 * r0, 16 * r1, 16 * c0, 16 * c1), gain)
        y[:, :, a0:a1, b0:b1] = yt[:, :, a0 - r0 : a1 - r0, b0 - c0 : b1 - c0]

    _run(one, tiles, workers(backend))
    return y, hyper_analysis(bundle, y)


def synthesis(
    backend, y_hat: np.ndarray, inv_gain: np.ndarray, h: int, w: int, budget: int | None = None, decoder: str = "full"
) -> np.ndarray:
    """Integer latents (M, rows, cols) -> the HxWx3 uint8 image, window by window, with the ``decoder``
    ('full' or 'fast') synthesis. Both see less than 2 latents around a pixel, inside the halo."""
    rows, cols = y_hat.shape[-2:]
    run = backend.decoder(decoder)
    tiles = tiles_for(backend, "synthesis", rows, cols, max_memory(budget))
    out = np.empty((h, w, 3), np.uint8)

    def one(t: Tile) -> None:
        (r0, r1, c0, c1), (a0, a1, b0, b1) = t.win, t.core
        py0, py1, px0, px1 = 16 * a0, min(h, 16 * a1), 16 * b0, min(w, 16 * b1)
        if py0 >= py1 or px0 >= px1:
            return  # a core wholly in the padding
        x_hat = run(np.ascontiguousarray(y_hat[None, :, r0:r1, c0:c1], dtype=np.float32), inv_gain)
        part = x_hat[0, :, py0 - 16 * r0 : py1 - 16 * r0, px0 - 16 * c0 : px1 - 16 * c0]
        out[py0:py1, px0:px1] = np.clip(np.rint(part.transpose(1, 2, 0) * 255.0), 0, 255).astype(np.uint8)

    _run(one, tiles, workers(backend))
    return out
