"""The classical codecs edgecodec is compared with: JPEG 4:2:0 (optimized Huffman), WebP (method 6),
AVIF 4:4:4 (speed 6) and JPEG XL (effort 7), through Pillow and pillow-jxl-plugin. One copy, shared by
``benchmarks/rd.py`` and the comparison report (``edgecodec.report``).

Every figure comes from an actual file: ``encode`` returns its bytes, ``decode`` reads them back with
the same library. ``largest_within`` finds the setting whose file is the largest not over a byte
budget (the report's "same file size"). Pillow and the plugins are imported inside the functions:
the decoder core imports with numpy only.
"""

from __future__ import annotations

import io
import math
import time
from dataclasses import dataclass

import numpy as np

from .errors import InputError

# quality sweeps chosen to span about 0.1-2 bpp on Kodak (means over the 24 images)
CLASSICAL: dict[str, tuple[str, list[int]]] = {
    "jpeg": ("JPEG", [3, 5, 8, 10, 15, 20, 30, 40, 50, 60, 70, 80, 85, 90]),
    "webp": ("WEBP", [0, 5, 10, 20, 30, 40, 50, 60, 70, 75, 80, 85, 90]),
    "avif": ("AVIF", [5, 10, 15, 20, 30, 40, 50, 60, 70, 75, 80, 85]),
    "jxl": ("JXL", [1, 5, 10, 20, 30, 40, 50, 60, 70, 80, 85, 90]),
}
LABELS = {
    "jpeg": "JPEG 4:2:0 (optimized)",
    "webp": "WebP (method 6)",
    "avif": "AVIF 4:4:4 (speed 6)",
    "jxl": "JPEG XL (effort 7)",
}
SUFFIX = {"jpeg": ".jpg", "webp": ".webp", "avif": ".avif", "jxl": ".jxl"}
# the quality settings a search may use (Pillow's scales; JPEG XL at 100 would be lossless)
QUALITY_RANGE = {"jpeg": (1, 100), "webp": (0, 100), "avif": (0, 100), "jxl": (0, 99)}


def save_params(name: str, q: int, threads: int) -> dict:
    if name == "jpeg":
        return {"quality": q, "subsampling": 2, "optimize": True}
    if name == "webp":
        return {"quality": q, "method": 6}
    if name == "avif":
        return {"quality": q, "subsampling": "4:4:4", "speed": 6, "max_threads": threads}
    if name == "jxl":
        return {"quality": q, "effort": 7, "num_threads": threads}
    raise KeyError(name)


def check_names(codecs: list[str]) -> list[str]:
    """The codec names, lower-cased; InputError for an unknown one."""
    out = [c.strip().lower() for c in codecs if c.strip()]
    for c in out:
        if c not in CLASSICAL:
            raise InputError(f"unknown codec {c!r}; choose from {', '.join(CLASSICAL)}")
    return out


def setup_pillow(codecs: list[str], threads: int, extra: str = "report") -> dict[str, str]:
    """Import the plugins the chosen codecs need, pin decoder threads; returns codec versions.
    InputError (naming the extra to install) when Pillow or a plugin is missing."""
    try:
        from PIL import Image, features
    except ImportError:
        raise InputError(f"the classical codecs need Pillow (pip install 'edgecodec[{extra}]')") from None

    versions = {"pillow": Image.__version__}
    if "webp" in codecs:
        if not features.check("webp"):
            raise InputError("this Pillow has no WebP support")
        versions["libwebp"] = str(features.version("webp"))
    if "avif" in codecs:
        if not features.check("avif"):
            raise InputError("this Pillow has no AVIF support (Pillow >= 11.3 with libavif)")
        from PIL import AvifImagePlugin

        AvifImagePlugin.DEFAULT_MAX_THREADS = threads  # decoder threads
        versions["libavif"] = str(features.version("avif"))
    if "jxl" in codecs:
        try:
            import pillow_jxl  # noqa: F401  (registers the JXL plugin)
            from pillow_jxl import JpegXLImagePlugin
        except ImportError:
            raise InputError(f"JPEG XL needs pillow-jxl-plugin (pip install 'edgecodec[{extra}]')") from None
        JpegXLImagePlugin.DECODE_THREADS = threads
        try:
            from importlib.metadata import version

            versions["pillow-jxl-plugin"] = version("pillow-jxl-plugin")
        except Exception:
            pass
    if "jpeg" in codecs:
        versions["libjpeg"] = str(features.version("jpg"))
    return versions


def encode(name: str, img: np.ndarray, q: int, threads: int) -> bytes:
    """The file codec ``name`` makes of ``img`` (HxWx3 uint8) at quality ``q``."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format=CLASSICAL[name][0], **save_params(name, q, threads))
    return buf.getvalue()


def decode(name: str, data: bytes, shape: tuple | None = None) -> np.ndarray:
    """The RGB pixels (HxWx3 uint8) of a file of codec ``name``; ValueError if not ``shape``."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        im.load()
        dec = np.asarray(im.convert("RGB"))
    if shape is not None and dec.shape != tuple(shape):
        raise ValueError(f"{name} decoded to {dec.shape}, expected {tuple(shape)}")
    return dec


def run_classical(name: str, img: np.ndarray, threads: int, qualities: list[int] | None = None) -> list[dict]:
    """One row per quality setting of the sweep (default ``CLASSICAL[name][1]``): bytes, bpp, PSNR,
    MS-SSIM and the decode time of the actual file."""
    from . import metrics

    h, w = img.shape[:2]
    rows = []
    for q in CLASSICAL[name][1] if qualities is None else qualities:
        data = encode(name, img, q, threads)
        t0 = time.perf_counter()
        try:
            dec = decode(name, data, img.shape)
        except ValueError as e:
            raise ValueError(f"{name} q={q}: {e}") from None
        dt = time.perf_counter() - t0
        quality = {"psnr": metrics.psnr(img, dec), "msssim": metrics.ms_ssim(img, dec)}
        rows.append({"codec": name, "quality": q, "bytes": len(data), "bpp": 8.0 * len(data) / (w * h), **quality, "decode_s": dt})
    return rows


@dataclass
class Encoded:
    """One file of a classical codec and how long its encode took."""

    codec: str
    quality: int
    data: bytes
    encode_s: float


class Encoder:
    """Encodes one image with one codec, remembering every file it made (a sweep and a search share them)."""

    def __init__(self, name: str, img: np.ndarray, threads: int):
        self.name, self.img, self.threads = name, img, threads
        self.files: dict[int, Encoded] = {}

    def __call__(self, q: int) -> Encoded:
        if q not in self.files:
            t0 = time.perf_counter()
            data = encode(self.name, self.img, q, self.threads)
            self.files[q] = Encoded(self.name, q, data, time.perf_counter() - t0)
        return self.files[q]


def largest_within(enc: Encoder, budget: int) -> tuple[Encoded, bool]:
    """The file of the highest quality setting not over ``budget`` bytes, and whether it fits: when even
    the lowest setting is over, that one (False).

    File size grows with the setting (about exponentially), so ``targets.find``'s bracketed secant on
    log-bytes finishes in a few encodes; the settings already encoded (a sweep's) narrow the bracket
    first."""
    from .targets import find

    lo, hi = QUALITY_RANGE[enc.name]
    goal = math.log(budget)
    fits = [q for q, f in enc.files.items() if len(f.data) <= budget]
    over = [q for q, f in enc.files.items() if len(f.data) > budget]
    left = max(fits, default=lo - 1)
    right = min((q for q in over if q > left), default=hi + 1)
    if right - left > 1:
        best, _ = find(lambda q: math.log(len(enc(q).data)), left + 1, right - 1, goal, 0.0, False, 0.03, max_trials=16)
        if best is not None:
            left = max(left, best)
    if left < lo:
        return enc(lo), False
    return enc(left), True
