"""Encode/decode orchestration: image <-> transforms (backend) <-> integer entropy model <-> container."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from . import container, tiling
from .bundle import Bundle, quality_steps
from .entropy.latents import Parse
from .errors import CorruptStreamError, InputError, ModelMismatchError
from .runtimes.base import Backend

Z_SUB, Y_SUB = 1, 2
DECODERS = ("full", "fast", "auto")
DECODER_ROLES = {"full": "synthesis", "fast": "fast_synthesis"}
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
    reconstruction: np.ndarray  # what the decoder will produce (same backend), HxWx(C) like the input
    width: int
    height: int
    quality: float  # a multiple of 1/16 (the base layer's quality for a residual stream)
    psnr: float
    parse: Parse
    timings: dict = field(default_factory=dict)
    metrics: container.Metrics | None = None  # as stored in the file (rounded), measured on ``reconstruction``
    trials: list = field(default_factory=list)  # a target search's encodes: dicts of quality, bytes and metric
    max_error: int | None = None  # the residual layer's bound, None: no residual layer

    @property
    def bpp(self) -> float:
        return 8.0 * len(self.data) / (self.width * self.height)


@dataclass
class DecodeResult:
    image: np.ndarray
    header: container.Header
    parse: Parse
    timings: dict = field(default_factory=dict)
    decoder: str = "full"  # the synthesis that made ``image`` ('full', 'fast' or 'integer')
    choice: dict = field(default_factory=dict)  # decoder='auto': the estimates it weighed

    @property
    def metrics(self) -> container.Metrics | None:
        """What the encoder measured of its own reconstruction (v2 files), else None."""
        return self.header.metrics


def psnr(a: np.ndarray, b: np.ndarray, peak: float = 255.0) -> float:
    """PSNR of two same-shaped arrays of any rank (``metrics.psnr``, the project's one implementation;
    PSNR does not depend on the layout, so NCHW transform outputs are viewed as rows)."""
    from . import metrics

    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
    if a.ndim > 3 or a.ndim < 2:
        a, b = a.reshape(-1, a.shape[-1] if a.ndim else 1), b.reshape(-1, b.shape[-1] if b.ndim else 1)
    return metrics.psnr(a, b, peak)


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


def coded_view(img: np.ndarray) -> np.ndarray:
    """An image as the codec sees it: 8 bits, HxW for gray (HxWx1 too), HxWx3 for colour (alpha
    dropped). Metrics and error bounds are defined on this view."""
    rgb, channels, _ = to_rgb8(img)
    return _from_rgb8(rgb, channels, 8)


def model_input(rgb: np.ndarray, multiple: int = 64) -> np.ndarray:
    """HxWx3 uint8 -> (1, 3, H', W') float32 in [0, 1], edge-padded to a multiple of the model's stride.

    The one definition of the transforms' input: the codec (through ``tiling``, window by window)
    and the exporters' calibration use it.
    """
    h, w, _ = rgb.shape
    return tiling.padded_crop(rgb, 0, -(-h // multiple) * multiple, 0, -(-w // multiple) * multiple)


def encode(
    image: np.ndarray,
    quality: float | None,
    backend: Backend,
    bundle: Bundle | None = None,
    *,
    max_memory: int | str | None = None,
    target_psnr: float | None = None,
    target_ms_ssim: float | None = None,
    max_bytes: int | None = None,
    max_error: int | None = None,
) -> EncodeResult:
    """Compress an image at ``quality`` (1..levels in steps of 1/16), or at the setting with the fewest
    bytes that meets one target (``target_psnr`` dB, ``target_ms_ssim``), or the best quality within
    ``max_bytes`` (``targets.search``), or with every pixel within ``max_error`` levels of the original
    (a residual layer over the integer-exact synthesis; 0 is lossless).

    The file stores what the encoder measured of its reconstruction (``EncodeResult.metrics``).
    ``max_memory`` bounds the transforms' working memory (``tiling.max_memory``)."""
    from . import targets

    bundle = bundle or backend.bundle
    given = (("target_psnr", target_psnr), ("target_ms_ssim", target_ms_ssim), ("max_bytes", max_bytes))
    wanted = {k: v for k, v in given if v is not None}
    if len(wanted) + (max_error is not None) > 1:
        raise InputError(f"give at most one of --target-psnr, --target-ms-ssim, --max-bytes and --max-error (got {', '.join(wanted)})")
    if quality is not None and (wanted or max_error is not None):
        raise InputError("a quality level and a target exclude each other: give one")
    if quality is None and not wanted and max_error is None:
        raise InputError("give a quality, a target or --max-error")
    if quality is not None:
        try:
            quality_steps(quality, bundle.levels)
        except ValueError as e:
            raise InputError(str(e)) from None
    budget = tiling.max_memory(max_memory)
    rgb, channels, depth = to_rgb8(image)
    h, w, _ = rgb.shape
    if h > container.MAX_SIDE or w > container.MAX_SIDE or h * w > container.MAX_PIXELS:
        raise InputError(
            f"image {w}x{h} is larger than the format allows ({container.MAX_SIDE} px per side, {container.MAX_PIXELS} pixels)"
        )
    if max_error is not None:
        return _encode_bounded(rgb, channels, depth, int(max_error), backend, bundle, budget)
    if wanted:
        kind, goal = next(iter(wanted.items()))
        return targets.search(rgb, channels, depth, kind, goal, backend, bundle, budget)
    t0 = time.perf_counter()
    parse, subs, t1 = code_latents(rgb, quality, backend, bundle, budget)
    t2 = time.perf_counter()
    rec = tiling.synthesis(backend, parse.y, bundle.gains(quality)[1], h, w, budget)
    t3 = time.perf_counter()
    res = finish(rgb, channels, depth, quality, parse, subs, rec, backend, bundle, "full")
    res.timings = {"analysis": t1 - t0, "entropy": t2 - t1, "synthesis": t3 - t2, "metrics": time.perf_counter() - t3}
    return res


def finish(
    rgb: np.ndarray,
    channels: int,
    depth: int,
    quality: float,
    parse: Parse,
    subs: list,
    rec: np.ndarray,
    backend: Backend,
    bundle: Bundle,
    decoder: str,
    max_error: int | None = None,
) -> EncodeResult:
    """Measure the reconstruction ``rec`` (HxWx3 uint8) against the original as the decoder will output
    it, and pack the stream with those metrics."""
    from . import metrics

    h, w, _ = rgb.shape
    seen, orig = _from_rgb8(rec, channels, 8), _from_rgb8(rgb, channels, 8)
    m = metrics.measure(orig, seen)
    # who made the reconstruction: the synthesis' backend (auto: the one it routed to); a residual
    # stream's comes from the integer path, numpy on the CPU, whatever backend ran the analysis
    made = backend.last_used(DECODER_ROLES[decoder]) if decoder in DECODER_ROLES else None
    name, device = (made.name, made.device) if made is not None else ("numpy", "CPU")
    stored = container.Metrics(m.psnr, m.ms_ssim, m.max_error, m.p999_error, name, device, decoder)
    header = container.Header(
        bundle.digest_bytes, w, h, channels, depth, float(quality), bundle.latent.precision, max_error, stored.stored()
    )
    data = container.pack(header, [container.Substream(i, lanes, p) for i, lanes, p in subs])
    return EncodeResult(data, _from_rgb8(rec, channels, depth), w, h, float(quality), m.psnr, parse, {}, header.metrics, [], max_error)


def code_latents(
    rgb: np.ndarray, quality: float, backend: Backend, bundle: Bundle, budget: int, y: np.ndarray | None = None
) -> tuple[Parse, list, float]:
    """The encoder without its reconstruction: RGB (HxWx3 uint8) -> (parse, substreams, the
    ``perf_counter`` time the analysis ended). Training-pair tools use it on its own.

    ``y``: the analysis output at unit gain, already computed (a search's trials reuse it; the
    hyper-analysis then runs in numpy, as in a tiled encode)."""
    gain, _ = bundle.gains(quality)
    if y is None:
        y, z = tiling.analysis(backend, rgb, gain, bundle, budget)
    else:
        y = y * gain
        z = tiling.hyper_analysis(bundle, y)
    t1 = time.perf_counter()
    parse, subs = bundle.entropy_model.encode(y[0], np.rint(z[0]).astype(np.int64), bundle.rd_weight(quality))
    return parse, subs, t1


def unit_gain_latents(rgb: np.ndarray, backend: Backend, bundle: Bundle, budget: int) -> np.ndarray:
    """The analysis at unit gain (1, M, rows, cols): the gains scale it afterwards, so one analysis
    serves every quality a search tries."""
    ones = np.ones((1, bundle.latent.y_channels, 1, 1), np.float32)
    return tiling.analysis(backend, rgb, ones, bundle, budget)[0]


def _encode_bounded(rgb: np.ndarray, channels: int, depth: int, n: int, backend: Backend, bundle: Bundle, budget: int) -> EncodeResult:
    """A base layer (the latents at the base quality with the cheapest total) plus a residual layer
    that brings every pixel within ``n`` levels: the residual is taken against the integer-exact
    synthesis, which every device computes bit for bit, so the bound holds on any decoder."""
    from .entropy import residual
    from .entropy.intsynth import IntegerSynthesis

    if not 0 <= n <= 255:
        raise InputError(f"--max-error must be 0..255 levels, got {n}")
    if depth != 8:
        raise InputError("--max-error is defined for 8-bit images (16-bit images are coded at 8 bits)")
    t0 = time.perf_counter()
    y_unit = unit_gain_latents(rgb, backend, bundle, budget)
    synth = IntegerSynthesis(bundle, "full")
    h, w, _ = rgb.shape
    orig = _from_rgb8(rgb, channels, 8).reshape(h, w, -1)
    tried: dict[int, tuple[float, tuple]] = {}

    def total(level: int) -> float:
        if level not in tried:
            parse, subs, _ = code_latents(rgb, level, backend, bundle, budget, y_unit)
            base = _from_rgb8(synth(parse.y, bundle.gains(level)[1], h, w), channels, 8).reshape(h, w, -1)
            est = sum(len(p) for _, _, p in subs) + residual.estimate_bytes(orig, base, n)
            tried[level] = (est, (parse, subs, base))
        return tried[level][0]

    level = _cheapest_level(total, bundle.levels)
    parse, subs, base = tried[level][1]
    t1 = time.perf_counter()
    res_subs = residual.encode(orig, base, n)
    rec = residual.reconstruct(base, residual.quantize(orig, base, n), n)
    rec_rgb = np.repeat(rec, 3, axis=2) if channels == 1 else rec
    out = finish(rgb, channels, depth, level, parse, subs + res_subs, rec_rgb, backend, bundle, "integer", n)
    out.trials = [{"quality": q, "estimated_bytes": round(v[0])} for q, v in sorted(tried.items())]
    out.timings = {"base_search": t1 - t0, "residual": time.perf_counter() - t1}
    return out


def _cheapest_level(cost, levels: int) -> int:
    """The level 1..levels minimizing ``cost`` (about unimodal in the level): a ternary search on the
    integers, then the neighbours of the best."""
    lo, hi = 1, levels
    while hi - lo > 2:
        a, b = lo + (hi - lo) // 3, hi - (hi - lo) // 3
        if cost(a) <= cost(b):
            hi = b
        else:
            lo = a
    best = min(range(lo, hi + 1), key=cost)
    for q in (best - 1, best + 1):
        if 1 <= q <= levels and cost(q) < cost(best):
            best = q
    return best


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
        raise CorruptStreamError(f"quality {header.quality:g} is not within this model's levels; the file is corrupt")
    return header, subs


def parse_stream(data: bytes, bundle: Bundle, pixel_limit: int | None = None) -> tuple[container.Header, Parse]:
    """Entropy-decode a stream: everything it means, with no transform run."""
    header, _, parse = _parse(data, bundle, pixel_limit)
    return header, parse


def _parse(data: bytes, bundle: Bundle, pixel_limit: int | None) -> tuple[container.Header, list[container.Substream], Parse]:
    header, subs = read_header(data, bundle, pixel_limit)
    d = bundle.downsample
    hp, wp = -(-header.height // d) * d, -(-header.width // d) * d
    m = {s.id: (s.lanes, s.payload) for s in subs}
    parse = bundle.entropy_model.decode(m, (bundle.latent.z_channels, hp // d, wp // d), (hp // 16, wp // 16))
    return header, subs, parse


@lru_cache(maxsize=2)
def integer_synthesis(bundle: Bundle):
    """The bundle's integer-exact full synthesis (the residual layer's base), built once."""
    from .entropy.intsynth import IntegerSynthesis

    return IntegerSynthesis(bundle, "full")


def _decode_bounded(header: container.Header, subs: list[container.Substream], parse: Parse, bundle: Bundle) -> np.ndarray:
    """Base (integer-exact synthesis) plus the residual layer: within ``header.max_error`` of the original."""
    from .entropy import residual

    h, w = header.height, header.width
    base = integer_synthesis(bundle)(parse.y, bundle.gains(header.quality)[1], h, w)
    base = _from_rgb8(base, header.channels, 8).reshape(h, w, -1)
    rec = residual.decode({s.id: (s.lanes, s.payload) for s in subs if s.id >= residual.FIRST_ID}, base, header.max_error)
    rec = rec.reshape(h, w) if header.channels == 1 else rec
    return rec.astype(np.uint16) * 257 if header.bit_depth == 16 else rec


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
    header, subs, parse = _parse(data, bundle, max_pixels)
    t1 = time.perf_counter()
    if header.max_error is not None:  # the residual layer decodes on the integer path, whatever was asked
        image = _decode_bounded(header, subs, parse, bundle)
        return DecodeResult(image, header, parse, {"entropy": t1 - t0, "residual": time.perf_counter() - t1}, "integer")
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
