"""``edgecodec compare``: how far a decoded image is from its original, in the project's metrics.

The decoded side is an image file or an ``.edgc`` stream (decoded here, with the model the caller
opens). Both are compared as the codec sees them (``codec.coded_view``: 8-bit levels, alpha
dropped; a gray image against a colour one is compared in RGB, the gray repeated), with
``edgecodec.metrics``: PSNR, MS-SSIM, the largest error, the 99.9th-percentile error and the
fraction of pixels whose largest channel error exceeds a threshold. Errors are in 8-bit levels.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import metrics
from .errors import InputError

DEFAULT_THRESHOLD = 8  # levels: a pixel "over" has some channel off by more than this


@dataclass(frozen=True)
class Side:
    """One compared file: its pixels as the codec sees them and where they came from."""

    path: Path
    image: np.ndarray  # coded view: HxW (gray) or HxWx3 uint8
    source: str  # 'image' or how the stream was decoded
    stored: object | None = None  # a stream's stored encoder metrics (container.Metrics), if any


@dataclass(frozen=True)
class Comparison:
    original: Side
    decoded: Side
    a: np.ndarray  # the two compared arrays (same shape)
    b: np.ndarray
    metrics: metrics.Metrics
    threshold: int
    over: float  # fraction of pixels whose largest channel error exceeds ``threshold``

    @property
    def width(self) -> int:
        return self.a.shape[1]

    @property
    def height(self) -> int:
        return self.a.shape[0]

    def error_map(self, scale: int | None = None) -> np.ndarray:
        return metrics.error_map(self.a, self.b, scale)


def is_stream(path: Path) -> bool:
    """An ``.edgc`` file by name, or any file that starts with the container's magic bytes."""
    from .container import MAGIC

    if path.suffix.lower() == ".edgc":
        return True
    try:
        with open(path, "rb") as f:
            return f.read(len(MAGIC)) == MAGIC
    except OSError:
        return False


def load(path: Path, open_model: Callable[[], tuple] | None = None, decoder: str = "auto") -> Side:
    """Read an image, or decode a stream with ``open_model()`` -> (bundle, backend), called only then."""
    from . import codec

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    if not is_stream(path):
        from .io import read_image

        return Side(path, codec.coded_view(read_image(path)), "image")
    if open_model is None:
        raise InputError(f"{path}: a stream, but no model to decode it with")
    bundle, backend = open_model()
    if decoder == "auto" and "fast" not in bundle.decoders:
        decoder = "full"
    res = codec.decode(path.read_bytes(), backend, bundle, decoder=decoder)
    label = backend.chosen_label() if hasattr(backend, "chosen_label") else f"{backend.name}:{backend.device}"
    return Side(path, codec.coded_view(res.image), f"decoded on {label}, {res.decoder} decoder", res.metrics)


def _size(img: np.ndarray) -> str:
    return f"{img.shape[1]}x{img.shape[0]} {'RGB' if img.ndim == 3 else 'gray'}"


def _aligned(original: Side, decoded: Side) -> tuple[np.ndarray, np.ndarray]:
    a, b = original.image, decoded.image
    if a.shape[:2] != b.shape[:2]:
        raise InputError(f"the images differ in size: {original.path} is {_size(a)}, {decoded.path} is {_size(b)}")
    if a.shape != b.shape:  # gray against colour: both in RGB
        from .codec import to_rgb8

        a, b = to_rgb8(a)[0], to_rgb8(b)[0]
    return a, b


def compare(original: Side, decoded: Side, threshold: int = DEFAULT_THRESHOLD) -> Comparison:
    """The metrics of ``decoded`` against ``original``."""
    if threshold < 0:
        raise InputError(f"--threshold must be >= 0 levels, got {threshold}")
    a, b = _aligned(original, decoded)
    return Comparison(original, decoded, a, b, metrics.measure(a, b), threshold, metrics.fraction_over(a, b, threshold))


def report(c: Comparison, map_path: Path | None = None, scale: int | None = None) -> str:
    """The comparison as one readable block of lines."""
    m = c.metrics
    source = "" if c.decoded.source == "image" else f" ({c.decoded.source})"
    rows = [
        ("PSNR", "inf dB (identical)" if m.psnr == float("inf") else f"{m.psnr:.2f} dB" + (" (RGB)" if c.a.ndim == 3 else "")),
        ("MS-SSIM", f"{m.ms_ssim:.5f}" + ("" if m.ms_ssim >= 1 else f" ({metrics.msssim_db(m.ms_ssim):.2f} dB)")),
        ("max error", f"{m.max_error} levels"),
        ("99.9% error", f"{m.p999_error} levels (99.9% of all pixel-channel values are within it)"),
        (f"over {c.threshold} levels", f"{100 * c.over:.3f}% of pixels (some channel off by more than {c.threshold})"),
    ]
    s = c.decoded.stored
    if s is not None:
        rows.append(
            (
                "encoder stored",
                f"PSNR {s.psnr:.2f} dB, MS-SSIM {s.ms_ssim:.4f}, max error {s.max_error}, 99.9% error {s.p999_error} "
                f"({s.backend}:{s.device}, {s.decoder} decoder)",
            )
        )
    if map_path is not None:
        top = scale if scale is not None else max(1, m.max_error)
        rows.append(("error map", f"{map_path} (black: 0, red, yellow, white: {top} levels or more)"))
    width = max(len(k) for k, _ in rows) + 2
    head = f"{c.original.path} vs {c.decoded.path}{source}: {_size(c.a)}, errors in 8-bit levels"
    return "\n".join([head] + [f"  {k:<{width}}{v}" for k, v in rows])
