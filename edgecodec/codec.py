"""Encode/decode orchestration: image <-> transforms (backend) <-> integer entropy model <-> container."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import numpy as np

from . import container, tiling
from .bundle import Bundle
from .entropy.latents import Parse
from .errors import CorruptStreamError, InputError, ModelMismatchError
from .runtimes.base import Backend

Z_SUB, Y_SUB = 1, 2
DECODERS = ("full", "fast", "auto")
# 'auto' decodes with the full synthesis unless its estimated decode time on this host exceeds the
# budget, by default 500 ms per megapixel: a Kodak image in 0.2 s, a 12 MP photo in 6 s. This host
# (2 cores) decodes at ~200 ms/MP with the full synthesis, so it stays full; a Raspberry Pi 4 class
# device is 4-8x slower (~1-1.6 s/MP) and gets the fast one.
DEFAULT_BUDGET_MS_PER_MP = 500.0
DEFAULT_MAX_PIXELS = 64_000_000  # decode refuses larger header claims unless raised (48 MP photos pass)
PIXELS_ENV = "EDGECODEC_MAX_PIXELS"


def max_pixels(value: int | None = None) -> int:
    """The decoder's pixel limit: ``value``, else ``$EDGECODEC_MAX_PIXELS``, else the default."""
    if value is None:
        env = os.environ.get(PIXELS_ENV)
        try:
            value = int(env) if env else DEFAULT_MAX_PIXELS
        except ValueError:
            raise InputError(f"${PIXELS_ENV} must be a whole number of pixels, got {env!r}") from None
    if int(value) < 1:
        raise InputError(f"the pixel limit must be at least 1, got {value}")
    return int(value)


@dataclass
class EncodeResult:
    data: bytes
    reconstruction: np.ndarray  # what the decoder will produce (same backend), HxWxC like the input
    width: int
    height: int
    quality: int
    psnr: float
    parse: Parse
    timings: dict = field(default_factory=dict)

    @property
    def bpp(self) -> float:
        return 8.0 * len(self.data) / (self.width * self.height)


@dataclass
class DecodeResult:
    image: np.ndarray
    header: container.Header
    parse: Parse
    timings: dict = field(default_factory=dict)
    decoder: str = "full"  # the synthesis that made ``image`` ('full' or 'fast')
    choice: dict = field(default_factory=dict)  # decoder='auto': the estimates it weighed


def psnr(a: np.ndarray, b: np.ndarray, peak: float = 255.0) -> float:
    """PSNR of two same-shaped images, summed a band of rows at a time (float64 copies of a 12 MP
    photo would be 0.9 GB)."""
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
    rows = max(1, (1 << 20) // max(1, a[0].size))
    sq = sum(float(np.sum(np.square(a[i : i + rows].astype(np.float64) - b[i : i + rows]))) for i in range(0, a.shape[0], rows))
    mse = sq / max(1, a.size)
    return float("inf") if mse == 0 else 10.0 * np.log10(peak * peak / mse)


def to_rgb8(img: np.ndarray) -> tuple[np.ndarray, int, int]:
    """HxW, HxWx1, HxWx3 or HxWx4 uint8/uint16 -> (HxWx3 uint8, channels, bit depth). Alpha is dropped."""
    if not isinstance(img, np.ndarray) or img.ndim not in (2, 3) or img.size == 0:
        raise InputError("image must be a non-empty HxW or HxWxC array")
    if img.dtype == np.uint8:
        depth = 8
        x = img
    elif img.dtype == np.uint16:
        depth = 16
        x = ((img.astype(np.uint32) + 128) // 257).astype(np.uint8)
    else:
        raise InputError(f"unsupported pixel type {img.dtype}; expected 8- or 16-bit integers")
    if x.ndim == 2:
        x = x[:, :, None]
    c = x.shape[2]
    if c == 4:
        x = x[:, :, :3]
    elif c not in (1, 3):
        raise InputError(f"unsupported channel count {c}; expected 1, 3 or 4")
    channels = 1 if c == 1 else 3
    if channels == 1:
        x = np.repeat(x, 3, axis=2)
    return np.ascontiguousarray(x), channels, depth


def _from_rgb8(rgb: np.ndarray, channels: int, depth: int) -> np.ndarray:
    out = rgb
    if channels == 1:
        out = np.rint(rgb.astype(np.float32).mean(axis=2)).astype(np.uint8)
    if depth == 16:
        out = out.astype(np.uint16) * 257
    return out


def model_input(rgb: np.ndarray, multiple: int = 64) -> np.ndarray:
    """HxWx3 uint8 -> (1, 3, H', W') float32 in [0, 1], edge-padded to a multiple of the model's stride.

    The one definition of the transforms' input: the codec (through ``tiling``, window by window)
    and the exporters' calibration use it.
    """
    h, w, _ = rgb.shape
    return tiling.padded_crop(rgb, 0, -(-h // multiple) * multiple, 0, -(-w // multiple) * multiple)


def encode(
    image: np.ndarray, quality: int, backend: Backend, bundle: Bundle | None = None, *, max_memory: int | str | None = None
) -> EncodeResult:
    """Compress an image. ``max_memory`` bounds the transforms' working memory (``tiling.max_memory``)."""
    bundle = bundle or backend.bundle
    if not isinstance(quality, (int, np.integer)) or not 1 <= quality <= bundle.levels:
        raise InputError(f"quality must be an integer 1..{bundle.levels}, got {quality!r}")
    budget = tiling.max_memory(max_memory)
    rgb, channels, depth = to_rgb8(image)
    h, w, _ = rgb.shape
    if h > container.MAX_SIDE or w > container.MAX_SIDE or h * w > container.MAX_PIXELS:
        raise InputError(
            f"image {w}x{h} is larger than the format allows ({container.MAX_SIDE} px per side, {container.MAX_PIXELS} pixels)"
        )
    t0 = time.perf_counter()
    parse, subs, t1 = code_latents(rgb, int(quality), backend, bundle, budget)
    t2 = time.perf_counter()
    _, inv_gain = bundle.gains(int(quality))
    header = container.Header(bundle.digest_bytes, w, h, channels, depth, int(quality), bundle.latent.precision)
    data = container.pack(header, [container.Substream(i, lanes, p) for i, lanes, p in subs])
    rec = tiling.synthesis(backend, parse.y, inv_gain, h, w, budget)
    t3 = time.perf_counter()
    return EncodeResult(
        data,
        _from_rgb8(rec, channels, depth),
        w,
        h,
        int(quality),
        psnr(rec, rgb),
        parse,
        {"analysis": t1 - t0, "entropy": t2 - t1, "synthesis": t3 - t2},
    )


def code_latents(rgb: np.ndarray, quality: int, backend: Backend, bundle: Bundle, budget: int) -> tuple[Parse, list, float]:
    """The encoder without its reconstruction: RGB (HxWx3 uint8) -> (parse, substreams, the
    ``perf_counter`` time the analysis ended). Training-pair tools use it on its own."""
    gain, _ = bundle.gains(quality)
    y, z = tiling.analysis(backend, rgb, gain, bundle, budget)
    t1 = time.perf_counter()
    parse, subs = bundle.entropy_model.encode(y[0], np.rint(z[0]).astype(np.int64), bundle.rd_weight(quality))
    return parse, subs, t1


def read_header(data: bytes, bundle: Bundle, pixel_limit: int | None = None) -> tuple[container.Header, list[container.Substream]]:
    header, subs = container.unpack(data)
    limit = max_pixels(pixel_limit)
    if header.width * header.height > limit:
        raise InputError(
            f"stream claims a {header.width}x{header.height} image ({header.width * header.height} pixels), over the limit of "
            f"{limit}; raise it with --max-pixels (or ${PIXELS_ENV}) if the file is trusted"
        )
    if header.model_digest != bundle.digest_bytes:
        raise ModelMismatchError(
            f"stream was made by model {header.model_digest.hex()} but the loaded model is {bundle.digest[:32]}; "
            "decode with the bundle that encoded it (--model)"
        )
    if header.precision != bundle.latent.precision:
        raise CorruptStreamError("coder precision in header does not match the model; the file is corrupt")
    if not 1 <= header.quality <= bundle.levels:
        raise CorruptStreamError(f"quality {header.quality} is not a level of this model; the file is corrupt")
    return header, subs


def parse_stream(data: bytes, bundle: Bundle, pixel_limit: int | None = None) -> tuple[container.Header, Parse]:
    """Entropy-decode a stream: everything it means, with no transform run."""
    header, subs = read_header(data, bundle, pixel_limit)
    d = bundle.downsample
    hp, wp = -(-header.height // d) * d, -(-header.width // d) * d
    m = {s.id: (s.lanes, s.payload) for s in subs}
    parse = bundle.entropy_model.decode(m, (bundle.latent.z_channels, hp // d, wp // d), (hp // 16, wp // 16))
    return header, parse


def estimate_synthesis_ms(backend: Backend, decoder: str, rows: int, cols: int, budget: int) -> float:
    """This host's synthesis time for a (rows, cols) latent grid with ``decoder``, from the backend
    selection's measurements (``runtimes.selection.estimate_ms``), window by window as decode runs it."""
    from .runtimes.selection import estimate_ms

    role = "synthesis" if decoder == "full" else "fast_synthesis"
    tiles = tiling.tiles_for(backend, "synthesis", rows, cols, budget)
    return sum(estimate_ms(backend, role, (16 * (t.win[1] - t.win[0]), 16 * (t.win[3] - t.win[2]))) for t in tiles)


def choose_decoder(
    backend: Backend, bundle: Bundle, header: container.Header, rows: int, cols: int, parse_ms: float, budget_ms: float | None, budget: int
) -> tuple[str, dict]:
    """'full' unless the parse plus the full synthesis would exceed ``budget_ms`` on this host
    (default ``DEFAULT_BUDGET_MS_PER_MP`` per megapixel) and the bundle has the fast synthesis."""
    if budget_ms is None:
        budget_ms = DEFAULT_BUDGET_MS_PER_MP * header.width * header.height / 1e6
    if not budget_ms > 0:
        raise InputError(f"the latency budget must be a positive number of milliseconds, got {budget_ms}")
    full = parse_ms + estimate_synthesis_ms(backend, "full", rows, cols, budget)
    info = {"budget_ms": round(float(budget_ms), 1), "full_ms": round(full, 1)}
    if full <= budget_ms or "fast" not in bundle.decoders:
        return "full", info
    info["fast_ms"] = round(parse_ms + estimate_synthesis_ms(backend, "fast", rows, cols, budget), 1)
    return "fast", info


def decode(
    data: bytes,
    backend: Backend,
    bundle: Bundle | None = None,
    *,
    max_memory: int | str | None = None,
    max_pixels: int | None = None,
    decoder: str = "full",
    budget_ms: float | None = None,
) -> DecodeResult:
    """Decompress a stream. ``max_pixels`` refuses larger header claims before any work (``max_pixels()``).

    ``decoder``: 'full' (the model's synthesis), 'fast' (the bundle's light synthesis: the same
    parse, ~1/5 of the work, lower quality) or 'auto' (``choose_decoder``, with ``budget_ms``)."""
    if decoder not in DECODERS:
        raise InputError(f"unknown decoder {decoder!r}; choose one of: {', '.join(DECODERS)}")
    bundle = bundle or backend.bundle
    if decoder == "fast" and "fast" not in bundle.decoders:
        raise InputError(f"the model bundle at {bundle.path} has no fast decoder; use --decoder full")
    budget = tiling.max_memory(max_memory)
    t0 = time.perf_counter()
    header, parse = parse_stream(data, bundle, max_pixels)
    t1 = time.perf_counter()
    choice: dict = {}
    if decoder == "auto":
        decoder, choice = choose_decoder(backend, bundle, header, *parse.y.shape[-2:], 1e3 * (t1 - t0), budget_ms, budget)
    _, inv_gain = bundle.gains(header.quality)
    t1b = time.perf_counter()
    rgb = tiling.synthesis(backend, parse.y, inv_gain, header.height, header.width, budget, decoder)
    t2 = time.perf_counter()
    timings = {"entropy": t1 - t0, "synthesis": t2 - t1b}
    if choice:
        timings["choice"] = t1b - t1
    return DecodeResult(_from_rgb8(rgb, header.channels, header.bit_depth), header, parse, timings, decoder, choice)
