"""Build the comparison report: every image through edgecodec and the classical codecs at the same file
size, measured with ``edgecodec.metrics``, written as one self-contained HTML page plus its images.

Same file size: each classical codec's setting is the one whose file is the largest not over the
budget (``classical.largest_within``); the budget is edgecodec's file (``quality``) or the target
(``bytes``, or ``bpp`` times the image's pixels / 8; edgecodec then encodes with ``max_bytes``).
The set's RD curves come from a fixed sweep of settings per codec on every image (means per setting,
as ``benchmarks/rd.py``), with Bjøntegaard delta rates of edgecodec against each codec.

Panels show exact pixels: JPEG, WebP and AVIF files are shown as they are (the browser decodes the
codec's own file); the original, edgecodec's and JPEG XL's decoded pixels (browsers do not read .edgc
or, mostly, .jxl) as lossless WebP; error maps as palette PNGs of ``metrics.error_map`` in a few steps.
``panels="light"`` stores those three as JPEG 4:4:4 quality 95 instead (a third of the bytes, not
exact: ~42 dB from the pixels, errors up to ~20 levels); ``"auto"`` (the default) makes them exact,
then light if the report would be over ``AUTO_BUDGET`` bytes (24 Kodak photos would be ~48 MB).
"""

from __future__ import annotations

import io
import json
import os
import re
import secrets
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .. import classical, metrics
from ..errors import InputError

EDGECODEC = "edgecodec"
COLORS = {EDGECODEC: "#d62728", "jpeg": "#1f77b4", "webp": "#2ca02c", "avif": "#ff7f0e", "jxl": "#9467bd"}
# the set's RD sweep: six settings per codec spanning about 0.1-2 bpp on Kodak (from ``classical.CLASSICAL``)
SWEEPS = {
    "jpeg": [5, 10, 20, 40, 70, 90],
    "webp": [0, 10, 30, 60, 80, 90],
    "avif": [10, 20, 40, 60, 75, 85],
    "jxl": [5, 20, 40, 60, 80, 90],
}
TARGETS = ("quality", "bytes", "bpp")
PANELS = ("auto", "exact", "light")
AUTO_BUDGET = 40_000_000  # bytes: panels="auto" goes light above this
ERROR_BANDS = 7  # error-map colours besides black: a noisy map of 8 colours is ~90 KB at 768x512, of 16 ~130 KB


@dataclass(frozen=True)
class Target:
    """What sets the file size: edgecodec's ``quality`` (None: the model's middle level), a byte
    budget per image (``bytes``) or bits per pixel (``bpp``)."""

    kind: str = "quality"
    value: float | None = None

    def budget(self, pixels: int) -> int | None:
        if self.kind == "bytes":
            return int(self.value)
        if self.kind == "bpp":
            return max(1, int(self.value * pixels / 8))
        return None

    def describe(self) -> str:
        if self.kind == "quality":
            return f"edgecodec quality {self.value:g}; every other codec at the largest file not over edgecodec's"
        if self.kind == "bytes":
            return f"every codec at the largest file not over {int(self.value)} bytes per image"
        return f"every codec at the largest file not over {self.value:g} bpp per image"


@dataclass(frozen=True)
class Settings:
    """Everything a worker needs (picklable)."""

    target: Target
    codecs: tuple[str, ...]
    backend: str = "auto"
    model: str | None = None
    threads: int = 1
    max_memory: int | None = None
    panels: str = "auto"
    sweep_levels: tuple[float, ...] = ()


@dataclass
class ImageResult:
    name: str
    source: str
    width: int
    height: int
    budget: int
    original: str  # the original's panel, relative to the report
    scale: int  # error maps: white at this many levels or more (the largest 99.9% error of the codecs)
    rows: list[dict]
    points: list[dict]
    seconds: float
    notes: list[str] = field(default_factory=list)


_WORKER: dict = {}


def _init(settings: Settings) -> None:
    """Open the model and the codecs once per process, and warm them up so no timing includes a
    session's creation."""
    from .. import codec
    from ..bundle import Bundle
    from ..runtimes.base import open_backend

    bundle = Bundle(settings.model)
    backend = open_backend(settings.backend, bundle, threads=settings.threads)
    classical.setup_pillow(list(settings.codecs), settings.threads)
    y, x = np.mgrid[0:64, 0:64]
    crop = np.stack([4 * x, 4 * y, 2 * (x + y)], axis=2).astype(np.uint8)
    codec.decode(codec.encode(crop, 1, backend, bundle).data, backend, bundle)
    _WORKER.update(bundle=bundle, backend=backend, settings=settings)


def _webp_lossless(img: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="WEBP", lossless=True, quality=10, method=1)  # 5% over method 6, 100x faster
    return buf.getvalue()


def _jpeg95(img: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=95, subsampling=0)
    return buf.getvalue()


def palette_png(rgb: np.ndarray) -> bytes:
    """An RGB image of at most 256 colours as an exact palette PNG (error maps: a few dozen colours)."""
    from PIL import Image

    flat = (rgb[..., 0].astype(np.int32) << 16) | (rgb[..., 1].astype(np.int32) << 8) | rgb[..., 2]
    colors, index = np.unique(flat, return_inverse=True)
    if len(colors) > 256:
        return _webp_lossless(rgb)
    im = Image.fromarray(index.reshape(rgb.shape[:2]).astype(np.uint8), "P")
    im.putpalette(np.stack([colors >> 16, (colors >> 8) & 255, colors & 255], axis=1).astype(np.uint8).tobytes())
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def edgecodec_sweep(rgb: np.ndarray, levels: tuple[float, ...], backend, bundle, max_memory: int | None) -> list[dict]:
    """edgecodec's RD points at ``levels`` the way its size and quality targets try them
    (``targets.search``): one analysis at unit gain, then per level the gains, the entropy coder (the
    file's exact size) and the synthesis. Each point is the file ``encode --max-bytes`` writes when
    it lands on that level, at a third of the cost of a full encode per level."""
    from .. import codec, container, tiling

    budget = tiling.max_memory(max_memory)
    h, w = rgb.shape[:2]
    y_unit = codec.unit_gain_latents(rgb, backend, bundle, budget)
    points = []
    for level in levels:
        parse, subs, _ = codec.code_latents(rgb, level, backend, bundle, budget, y_unit)
        size = container.header_size(len(subs)) + sum(len(p) for _, _, p in subs)
        rec = tiling.synthesis(backend, parse.y, bundle.gains(level)[1], h, w, budget)
        points.append({"codec": EDGECODEC, "setting": level, "bpp": 8.0 * size / (h * w), "psnr": metrics.psnr(rgb, rec),
                       "ms_ssim": metrics.ms_ssim(rgb, rec)})  # fmt: skip
    return points


def band_colors() -> np.ndarray:
    """The error maps' colours, black first: ``metrics.error_map``'s ramp at 0, 1/ERROR_BANDS, ..., 1."""
    steps = np.arange(ERROR_BANDS + 1, dtype=np.uint8)
    return metrics.error_map(np.zeros((1, ERROR_BANDS + 1), np.uint8), steps[None, :], ERROR_BANDS)[0]


def banded_error_map(original: np.ndarray, decoded: np.ndarray, scale: int) -> np.ndarray:
    """``metrics.error_map`` rounded to ``ERROR_BANDS`` steps of its ramp: black within about
    scale / (2 ERROR_BANDS) levels, white from ``scale`` up. A few colours compress ~2x better than
    the full ramp of a noisy map, and the noise floor (a level or two everywhere) stays black, so
    the places a codec lost or invented something stand out.

    The ramp's channels rise in turn (black, red, yellow, white), so a colour's channel sum is 765 t."""
    t = metrics.error_map(original, decoded, scale).astype(np.int32).sum(axis=2)
    return band_colors()[(2 * ERROR_BANDS * t + 765) // (2 * 765)]


def _row(codec_id: str, setting: str, data: bytes, m: metrics.Metrics, pixels: int, encode_s: float, decode_s: float, fits: bool) -> dict:
    return {
        "codec": codec_id,
        "setting": setting,
        "bytes": len(data),
        "bpp": 8.0 * len(data) / pixels,
        "psnr": m.psnr,
        "ms_ssim": m.ms_ssim,
        "max_error": m.max_error,
        "p999_error": m.p999_error,
        "encode_ms": 1e3 * encode_s,
        "decode_ms": 1e3 * decode_s,
        "fits": fits,
    }


def process(path: Path, name: str, folder: Path) -> ImageResult:
    """One image: edgecodec and every classical codec at the same size, the sweep's points, and the
    panels written under ``folder`` (the report's ``images/NAME``)."""
    from .. import codec
    from ..io import read_rgb8

    bundle, backend, s = _WORKER["bundle"], _WORKER["backend"], _WORKER["settings"]
    t_start = time.perf_counter()
    rgb = read_rgb8(path)
    h, w = rgb.shape[:2]
    pixels = h * w
    memory = {"max_memory": s.max_memory} if s.max_memory else {}
    notes: list[str] = []
    folder.mkdir(parents=True, exist_ok=True)

    target = s.target.budget(pixels)
    t0 = time.perf_counter()
    fits = True
    if target is None:
        res = codec.encode(rgb, s.target.value, backend, bundle, **memory)
    else:
        try:
            res = codec.encode(rgb, None, backend, bundle, max_bytes=target, **memory)
        except InputError as e:  # the budget is under the model's smallest file: show its smallest
            notes.append(f"edgecodec: {e}")
            res = codec.encode(rgb, 1, backend, bundle, **memory)
            fits = False
    encode_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    dec = codec.decode(res.data, backend, bundle, **memory)
    decode_s = time.perf_counter() - t0
    if not np.array_equal(dec.image, res.reconstruction):
        notes.append("edgecodec: the decoded image differs from the encoder's reconstruction (the decode's backend differs)")
    budget = len(res.data) if target is None else target
    decoded = {EDGECODEC: dec.image}
    files = {EDGECODEC: (res.data, ".edgc")}
    rows = [_row(EDGECODEC, f"quality {res.quality:g}", res.data, metrics.measure(rgb, dec.image), pixels, encode_s, decode_s, fits)]

    points = edgecodec_sweep(rgb, s.sweep_levels, backend, bundle, s.max_memory)

    for c in s.codecs:
        enc = classical.Encoder(c, rgb, s.threads)
        for q in SWEEPS[c]:
            d = classical.decode(c, enc(q).data, rgb.shape)
            bpp = 8.0 * len(enc(q).data) / pixels
            points.append({"codec": c, "setting": q, "bpp": bpp, "psnr": metrics.psnr(rgb, d), "ms_ssim": metrics.ms_ssim(rgb, d)})
        chosen, ok = classical.largest_within(enc, budget)
        if not ok:
            notes.append(f"{c}: even quality {chosen.quality} is {len(chosen.data)} bytes, over the {budget}-byte budget")
        t0 = time.perf_counter()
        d = classical.decode(c, chosen.data, rgb.shape)
        dt = time.perf_counter() - t0
        decoded[c] = d
        files[c] = (chosen.data, classical.SUFFIX[c])
        rows.append(_row(c, f"quality {chosen.quality}", chosen.data, metrics.measure(rgb, d), pixels, chosen.encode_s, dt, ok))

    scale = max(1, max(r["p999_error"] for r in rows))
    exact = s.panels != "light"
    view_of = _webp_lossless if exact else _jpeg95
    view_ext = ".webp" if exact else ".jpg"
    rel = f"images/{name}/"
    (folder / f"original{view_ext}").write_bytes(view_of(rgb))
    for r in rows:
        c = r["codec"]
        data, suffix = files[c]
        (folder / f"{c}{suffix}").write_bytes(data)
        r["file"] = rel + f"{c}{suffix}"
        if c in ("jpeg", "webp", "avif"):  # the browser shows the codec's own file
            r["view"] = r["file"]
        else:
            (folder / f"{c}-view{view_ext}").write_bytes(view_of(decoded[c]))
            r["view"] = rel + f"{c}-view{view_ext}"
        (folder / f"{c}-error.png").write_bytes(palette_png(banded_error_map(rgb, decoded[c], scale)))
        r["error_view"] = rel + f"{c}-error.png"
    return ImageResult(
        name, str(path), w, h, budget, rel + f"original{view_ext}", scale, rows, points, time.perf_counter() - t_start, notes
    )


def _run_one(args: tuple) -> dict:
    return asdict(process(*args))


def _names(paths: list[Path]) -> list[str]:
    """A folder name per image: its stem in safe characters, made unique."""
    seen: set[str] = set()
    out = []
    for p in paths:
        base = re.sub(r"[^A-Za-z0-9._-]+", "_", p.stem).strip("._") or "image"
        name, i = base, 2
        while name.lower() in seen:
            name, i = f"{base}-{i}", i + 1
        seen.add(name.lower())
        out.append(name)
    return out


def sweep_levels(levels: int) -> tuple[float, ...]:
    """Five edgecodec levels from 2 (1 and 2 are extrapolated) to the highest."""
    return tuple(sorted({float(round(x)) for x in np.linspace(min(2, levels), levels, 5)}))


def check_output(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise InputError(f"{out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise InputError(f"{out} exists; pass --force to replace it")


def build(
    images: list[Path],
    out: Path,
    target: Target = Target(),
    codecs: list[str] | None = None,
    backend: str = "auto",
    model: Path | None = None,
    jobs: int | None = None,
    threads: int | None = None,
    max_memory: int | None = None,
    panels: str = "auto",
    force: bool = False,
    progress=None,
    command: str | None = None,
) -> dict:
    """Write the report for ``images`` into the folder ``out`` (``index.html``, ``images/``,
    ``results.json``); returns the summary. The folder appears whole or not at all."""
    from ..bundle import Bundle
    from ..runtimes.base import BackendSpec, cores
    from . import render

    images = [Path(p) for p in images]
    if not images:
        raise InputError("give at least one image")
    for p in images:
        if not p.is_file():
            raise InputError(f"{p}: no such file")
    codecs = classical.check_names(list(classical.CLASSICAL) if codecs is None else codecs)
    if target.kind not in TARGETS:
        raise InputError(f"unknown target {target.kind!r}")
    if panels not in PANELS:
        raise InputError(f"panels must be one of {', '.join(PANELS)}, got {panels!r}")
    BackendSpec.parse(backend)
    out = Path(out)
    check_output(out, force)
    bundle = Bundle(model)
    if target.kind == "quality":
        q = bundle.levels / 2 if target.value is None else float(target.value)
        if not 1 <= q <= bundle.levels:
            raise InputError(f"--quality must be within 1..{bundle.levels} for this model, got {q:g}")
        target = Target("quality", q)
    elif target.kind == "bytes" and not (target.value is not None and target.value >= 1 and target.value == int(target.value)):
        raise InputError(f"--bytes must be a whole number of bytes >= 1, got {target.value}")
    elif target.kind == "bpp" and not (target.value is not None and 0 < target.value < 64):
        raise InputError(f"--bpp must be a positive number of bits per pixel, got {target.value}")
    versions = classical.setup_pillow(codecs, 1)
    n_cores = cores()
    jobs = max(1, min(jobs or n_cores, len(images)))
    threads = threads or max(1, n_cores // jobs)
    settings = Settings(
        target, tuple(codecs), backend, str(model) if model else None, threads, max_memory, panels, sweep_levels(bundle.levels)
    )
    say = progress or (lambda line: None)

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.partial-{secrets.token_hex(4)}"
    staging.mkdir()
    try:
        names = _names(images)
        tasks = [(p, n, staging / "images" / n) for p, n in zip(images, names)]
        t0 = time.perf_counter()
        results: list[dict | None] = [None] * len(tasks)

        def done(i: int, r: dict) -> None:
            results[i] = r
            row = r["rows"][0]
            count = sum(x is not None for x in results)
            say(
                f"[{count}/{len(tasks)}] {r['name']} {r['width']}x{r['height']}: edgecodec {row['bytes']} B, {row['bpp']:.3f} bpp, "
                f"{row['psnr']:.2f} dB ({r['seconds']:.1f} s)"
            )

        if jobs == 1:
            _init(settings)
            for i, t in enumerate(tasks):
                done(i, _run_one(t))
        else:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor, as_completed

            ctx = multiprocessing.get_context("spawn")  # no runtime state copied from this process
            with ProcessPoolExecutor(jobs, mp_context=ctx, initializer=_init, initargs=(settings,)) as pool:
                futures = {pool.submit(_run_one, t): i for i, t in enumerate(tasks)}
                try:
                    for f in as_completed(futures):
                        done(futures[f], f.result())
                except BaseException:
                    pool.shutdown(wait=True, cancel_futures=True)
                    raise
        exact_bytes = sum(f.stat().st_size for f in staging.rglob("*") if f.is_file())
        if panels == "auto":
            panels = "exact"
            if exact_bytes > AUTO_BUDGET:
                panels = "light"
                lighten(staging, [r for r in results if r is not None])
        elapsed = time.perf_counter() - t0
        summary = render.summarize([r for r in results if r is not None], codecs)
        meta = {
            "target": target.describe(),
            "target_kind": target.kind,
            "target_value": target.value,
            "codecs": [EDGECODEC] + codecs,
            "backend": backend,
            "bundle": bundle.digest[:12],
            "levels": bundle.levels,
            "panels": panels,
            "exact_panels_bytes": exact_bytes,
            "jobs": jobs,
            "threads": threads,
            "versions": versions,
            "elapsed_s": elapsed,
            "command": command,
            "sweeps": {EDGECODEC: list(settings.sweep_levels), **{c: SWEEPS[c] for c in codecs}},
        }
        (staging / "index.html").write_text(render.page(results, summary, meta), encoding="utf-8")
        (staging / "results.json").write_text(json.dumps(render.finite({"meta": meta, "summary": summary, "images": results}), indent=1))
        _replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return {"meta": meta, "summary": summary, "images": results}


def lighten(root: Path, results: list[dict]) -> None:
    """Re-store the exact panels that are not a codec's own file (lossless WebP) as JPEG 4:4:4 q95."""
    from PIL import Image

    def one(rel: str) -> str:
        with Image.open(root / rel) as im:
            pixels = np.asarray(im.convert("RGB"))
        new = rel[: rel.rindex(".")] + ".jpg"
        (root / new).write_bytes(_jpeg95(pixels))
        (root / rel).unlink()
        return new

    for r in results:
        r["original"] = one(r["original"])
        for row in r["rows"]:
            if row["view"] != row["file"]:
                row["view"] = one(row["view"])


def _replace(staging: Path, out: Path) -> None:
    """Move the finished report into place (an existing one, with --force, goes only after)."""
    if out.exists():
        old = out.parent / f".{out.name}.old-{secrets.token_hex(4)}"
        os.replace(out, old)
        os.replace(staging, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staging, out)
