"""The ``edgecodec`` command's typer app: parse flags, call one library function, map errors to exit codes.

Needs the 'cli' extra (typer); ``edgecodec.cli.main``, the console entry point, imports this module
only inside a check that names the extra when typer is missing.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Optional

import typer

from . import codec
from .errors import EdgecodecError, InputError

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True, help="Learned image codec for edge devices.")

BACKEND_HELP = "auto, onnxruntime, tflite, openvino or numpy, optionally :DEVICE (e.g. openvino:GPU)"
EXAMPLE = Path(__file__).resolve().parent / "data" / "kodim23.png"

# options shared by several commands (typer reads these as declarations; they hold no state)
BACKEND_OPTION = typer.Option("auto", "--backend", "-b", help=BACKEND_HELP)
MODEL_OPTION = typer.Option(None, "--model", help="model bundle folder (default: the shipped one)")
FORCE_OPTION = typer.Option(False, "--force", help="overwrite existing outputs")
THREADS_OPTION = typer.Option(None, "--threads", help="runtime threads")
MAX_MEMORY_OPTION = typer.Option(
    None,
    "--max-memory",
    metavar="SIZE",
    help="working memory of the transforms, e.g. 512M, 1.5G or bytes; larger images run in tiles "
    "(default: $EDGECODEC_MAX_MEMORY, else the library's default)",
)


def _fail(e: BaseException) -> None:
    if isinstance(e, EdgecodecError):
        code = e.exit_code
        msg = str(e)
    elif isinstance(e, KeyboardInterrupt):
        code, msg = 130, "interrupted"
    else:
        code, msg = 1, f"internal error: {type(e).__name__}: {e}"
    typer.echo(f"error: {msg}", err=True)
    raise typer.Exit(code)


def _memory(text: Optional[str]) -> dict:
    """``--max-memory`` as the library's keyword (none when not given: the library picks its default)."""
    if text is None:
        return {}
    from .tiling import parse_size

    return {"max_memory": parse_size(text)}


def _load(model: Optional[Path], backend: str, threads: Optional[int] = None):
    from .bundle import Bundle
    from .runtimes.base import BackendSpec, open_backend

    spec = BackendSpec.parse(backend)  # a typo in the backend name is reported before any loading
    bundle = Bundle(model)
    return bundle, open_backend(spec, bundle, threads=threads, announce=lambda line: typer.echo(line, err=True))


def _label(be) -> str:
    return be.chosen_label() if hasattr(be, "chosen_label") else f"{be.name}:{be.device}"


def _pairs(src: Path, out: Path, suffixes: set[str], new_suffix: str) -> list[tuple[Path, Path]]:
    if src.is_dir():
        files = sorted(p for p in src.iterdir() if p.suffix.lower() in suffixes)
        if not files:
            raise InputError(f"{src}: no input files ({', '.join(sorted(suffixes))})")
        if out.exists() and not out.is_dir():
            raise InputError(f"{out} is not a directory (the input is one)")
        return [(p, out / (p.stem + new_suffix)) for p in files]
    if not src.exists():
        raise InputError(f"{src}: no such file")
    return [(src, out)]


def _progress(items, label: str):
    if len(items) == 1:
        yield from items
        return
    try:
        from rich.progress import track
    except ImportError:  # rich comes with typer, but a bare typer-slim has none: no bar then
        yield from items
        return
    yield from track(items, description=label, transient=True)


@app.command()
def encode(
    src: Path = typer.Argument(..., help="image file or directory of images"),
    output: Path = typer.Option(..., "-o", "--output", help="output .edgc file (or directory)"),
    quality: Optional[float] = typer.Option(
        None, "-q", "--quality", help="1 (smallest) .. N (best) in steps of 1/16, N = the model's level count; default N/2"
    ),
    target_psnr: Optional[float] = typer.Option(None, "--target-psnr", metavar="DB", help="fewest bytes with at least this RGB PSNR"),
    target_ms_ssim: Optional[float] = typer.Option(None, "--target-ms-ssim", metavar="V", help="fewest bytes with at least this MS-SSIM"),
    max_bytes: Optional[int] = typer.Option(None, "--max-bytes", metavar="N", help="best quality within N bytes per file"),
    max_error: Optional[int] = typer.Option(
        None, "--max-error", metavar="N", help="every pixel of every channel within N levels of the original (0: lossless)"
    ),
    error_map: Optional[Path] = typer.Option(
        None, "--error-map", metavar="PNG", help="also write a heat map of the per-pixel error (file; or a folder in directory mode)"
    ),
    backend: str = BACKEND_OPTION,
    model: Optional[Path] = MODEL_OPTION,
    force: bool = FORCE_OPTION,
    threads: Optional[int] = THREADS_OPTION,
    max_memory: Optional[str] = MAX_MEMORY_OPTION,
) -> None:
    """Compress images to .edgc files; prints size, bpp and what it measured of the reconstruction the
    decoder will show (also stored in the file: see `edgecodec info`)."""
    try:
        from . import metrics
        from .io import IMAGE_SUFFIXES, atomic_write, check_writable, encode_image, read_image

        memory = _memory(max_memory)
        pairs = _pairs(src, output, IMAGE_SUFFIXES, ".edgc")
        maps = {}
        map_dir = error_map is not None and (len(pairs) > 1 or src.is_dir() or error_map.is_dir())
        for _, dst in pairs:
            check_writable(dst, force)
            if error_map is not None:
                maps[dst] = error_map / dst.relative_to(output).with_suffix(".err.png") if map_dir else error_map
                check_writable(maps[dst], force)
        targets = {"target_psnr": target_psnr, "target_ms_ssim": target_ms_ssim, "max_bytes": max_bytes, "max_error": max_error}
        targets = {k: v for k, v in targets.items() if v is not None}
        if len(targets) > 1:
            raise InputError("give at most one of --target-psnr, --target-ms-ssim, --max-bytes and --max-error")
        if targets and quality is not None:
            raise InputError("--quality and a target exclude each other: give one")
        if map_dir:
            for p in maps.values():
                p.parent.mkdir(parents=True, exist_ok=True)
        bundle, be = _load(model, backend, threads)
        if not targets:
            quality = quality if quality is not None else (bundle.levels + 1) // 2
        for s, dst in _progress(pairs, "encoding"):
            t = time.perf_counter()
            img = read_image(s)
            res = codec.encode(img, quality, be, bundle, **memory, **targets)
            atomic_write(dst, res.data, force)
            m = res.metrics
            how = _how(res)
            typer.echo(
                f"{s.name} -> {dst}: {len(res.data)} bytes, {res.bpp:.3f} bpp, {how}PSNR {m.psnr:.2f} dB, MS-SSIM {m.ms_ssim:.4f}, "
                f"max error {m.max_error}, {time.perf_counter() - t:.2f} s on {_label(be)}"
            )
            if dst in maps:
                emap = metrics.error_map(codec.coded_view(img), codec.coded_view(res.reconstruction))
                atomic_write(maps[dst], encode_image(emap, ".png"), force)
    except (Exception, KeyboardInterrupt) as e:
        _fail(e)


def _how(res) -> str:
    """'quality 4.5625 (5 trials), ' etc.: the setting an encode used and how it was found."""
    if res.max_error is not None:
        bound = "lossless" if res.max_error == 0 else f"every pixel within {res.max_error}"
        return f"{bound} (base quality {res.quality:g} of {len(res.trials)} tried), "
    if res.trials:
        return f"quality {res.quality:g} ({len(res.trials)} trials), "
    return f"quality {res.quality:g}, "


def _stored(m) -> str:
    """A file's stored metrics in one line."""
    made = f"{m.backend}:{m.device}, {m.decoder} decoder"
    return f"PSNR {m.psnr:.2f} dB, MS-SSIM {m.ms_ssim:.4f}, max error {m.max_error}, 99.9% of values within {m.p999_error} ({made})"


@app.command()
def decode(
    src: Path = typer.Argument(..., help=".edgc file or directory of them"),
    output: Path = typer.Option(..., "-o", "--output", help="output image (.png) or directory"),
    backend: str = BACKEND_OPTION,
    model: Optional[Path] = MODEL_OPTION,
    force: bool = FORCE_OPTION,
    threads: Optional[int] = THREADS_OPTION,
    max_memory: Optional[str] = MAX_MEMORY_OPTION,
    max_pixels: Optional[int] = typer.Option(
        None,
        "--max-pixels",
        metavar="N",
        help="refuse streams whose header claims more pixels (default: $EDGECODEC_MAX_PIXELS, else the library's limit)",
    ),
    decoder: str = typer.Option(
        "auto", "--decoder", help="full (the model's synthesis), fast (light: ~1/5 of the work, lower quality) or auto"
    ),
    budget_ms: Optional[float] = typer.Option(
        None,
        "--budget-ms",
        metavar="MS",
        help="auto: decode with fast when full would take longer than this on this host "
        f"(default {codec.DEFAULT_BUDGET_MS_PER_MP:.0f} ms per megapixel)",
    ),
) -> None:
    """Decompress .edgc files to images (PNG unless the output name says otherwise)."""
    try:
        from .io import atomic_write, check_writable, encode_image, output_suffix

        if decoder not in codec.DECODERS:
            raise InputError(f"--decoder must be one of {', '.join(codec.DECODERS)}, got {decoder!r}")
        limits = _memory(max_memory)
        if max_pixels is not None:
            limits["max_pixels"] = max_pixels
        if budget_ms is not None:
            limits["budget_ms"] = budget_ms
        pairs = _pairs(src, output, {".edgc"}, ".png")
        suffixes = {}
        for _, dst in pairs:  # every output name is checked before any decoding
            check_writable(dst, force)
            suffixes[dst] = output_suffix(dst)
        bundle, be = _load(model, backend, threads)
        if decoder == "auto" and "fast" not in bundle.decoders:
            decoder = "full"  # nothing to choose between: no estimate needed
        for s, dst in _progress(pairs, "decoding"):
            t = time.perf_counter()
            res = codec.decode(s.read_bytes(), be, bundle, decoder=decoder, **limits)
            atomic_write(dst, encode_image(res.image, suffixes[dst]), force)
            h = res.header
            why = ""
            if res.choice:
                c = res.choice
                est = f"full est. {c['full_ms']:.0f} ms" + (" <=" if res.decoder == "full" else " >")
                why = f" ({est} budget {c['budget_ms']:.0f} ms)"
            typer.echo(
                f"{s.name} -> {dst}: {h.width}x{h.height}, {time.perf_counter() - t:.2f} s on {_label(be)}, {res.decoder} decoder{why}"
            )
            if res.metrics is not None:
                m = res.metrics
                note = ""
                ran = be.last_used(codec.DECODER_ROLES.get(res.decoder, "synthesis")).name
                if h.max_error is None and (m.decoder != res.decoder or m.backend != ran):
                    note = "; this decode may differ by a few levels" if m.decoder == res.decoder else "; this decoder's output differs"
                typer.echo(f"  encoder measured: {_stored(m)}{note}")
    except (Exception, KeyboardInterrupt) as e:
        _fail(e)


@app.command()
def info(file: Path = typer.Argument(..., help=".edgc file")) -> None:
    """Show a stream's header (no model needed)."""
    try:
        from . import container

        if not file.is_file():
            raise InputError(f"{file}: no such file")
        data = file.read_bytes()
        h, subs = container.unpack(data)
        typer.echo(f"{file}: edgecodec v{h.version}, {len(data)} bytes, {8 * len(data) / (h.width * h.height):.3f} bpp")
        typer.echo(f"  image {h.width}x{h.height}, {h.channels} channel(s), {h.bit_depth}-bit, quality {h.quality:g}")
        if h.max_error is not None:
            typer.echo("  residual layer: lossless" if h.max_error == 0 else f"  residual layer: every pixel within {h.max_error} levels")
        if h.metrics is not None:
            typer.echo(f"  measured by the encoder: {_stored(h.metrics)}")
        else:
            typer.echo("  no measured quality stored (a version 1 file)")
        typer.echo(f"  model {h.model_digest.hex()}, coder precision {h.precision} bits")
        limit = codec.max_pixels() if hasattr(codec, "max_pixels") else None  # the decoder's limit, once codec has one
        if limit is not None and h.width * h.height > limit:
            typer.echo(f"  {h.width * h.height} pixels: over the decoder's limit of {limit} (decode with --max-pixels if trusted)")
        for s in subs:
            typer.echo(f"  substream {s.id}: {len(s.payload)} bytes, {s.lanes} lanes")
    except (Exception, KeyboardInterrupt) as e:
        _fail(e)


@app.command()
def compare(
    images: list[Path] = typer.Argument(
        ...,
        metavar="ORIGINAL DECODED | IMAGES...",
        help="the original image and a decoded image or .edgc file; with --out, the photos of a comparison report",
    ),
    out: Optional[Path] = typer.Option(
        None,
        "--out",
        metavar="DIR",
        help="write a report (index.html + images) of IMAGES: edgecodec, JPEG, WebP, AVIF, JPEG XL at one size",
    ),
    size_bytes: Optional[int] = typer.Option(None, "--bytes", metavar="N", help="report: every file at most N bytes per image"),
    bpp: Optional[float] = typer.Option(None, "--bpp", metavar="B", help="report: every file at most B bits per pixel"),
    quality: Optional[float] = typer.Option(
        None, "-q", "--quality", help="report: edgecodec at this quality, the others at most its size (default: N/2)"
    ),
    codecs: str = typer.Option("jpeg,webp,avif,jxl", "--codecs", help="report: the classical codecs to compare with"),
    jobs: Optional[int] = typer.Option(None, "--jobs", "-j", help="report: worker processes (default: one per core)"),
    panels: str = typer.Option("auto", "--panels", help="report: exact (lossless), light (JPEG q95) or auto (light over 40 MB)"),
    max_memory: Optional[str] = MAX_MEMORY_OPTION,
    error_map: Optional[Path] = typer.Option(
        None, "--map", metavar="PNG", help="also write a heat map of each pixel's largest channel error"
    ),
    threshold: int = typer.Option(8, "--threshold", metavar="T", help="count the pixels with some channel off by more than T levels"),
    scale: Optional[int] = typer.Option(None, "--scale", metavar="S", help="the error shown white in the map (default: the largest error)"),
    backend: str = BACKEND_OPTION,
    model: Optional[Path] = MODEL_OPTION,
    decoder: str = typer.Option("auto", "--decoder", help="for an .edgc DECODED: full, fast or auto (as `decode`)"),
    force: bool = FORCE_OPTION,
    threads: Optional[int] = THREADS_OPTION,
) -> None:
    """Measure a decoded image (or .edgc file) against its original: PSNR, MS-SSIM, max and 99.9% error,
    pixels over a threshold; optionally write an error heat map. With --out DIR: a browser report of
    IMAGES through edgecodec and the classical codecs at the same file size (the 'report' extra)."""
    try:
        if out is not None:
            from .report import command

            if error_map is not None or scale is not None:
                raise InputError("--map and --scale belong to the two-file form (without --out)")
            options = {"backend": backend, "model": model, "jobs": jobs, "threads": threads, "panels": panels, "force": force}
            lines = command(images, out, quality, size_bytes, bpp, codecs, progress=lambda line: typer.echo(line, err=True),
                            command="edgecodec compare " + " ".join(sys.argv[2:]), **_memory(max_memory), **options)  # fmt: skip
            for line in lines:
                typer.echo(line)
            return
        if size_bytes is not None or bpp is not None or quality is not None:
            raise InputError("--bytes, --bpp and --quality make a report: give --out DIR")
        from . import compare as cmp
        from .io import atomic_write, check_writable, encode_image, output_suffix

        if len(images) != 2:
            raise InputError(f"give two files, ORIGINAL and DECODED (got {len(images)})")
        if scale is not None and scale < 1:
            raise InputError(f"--scale must be >= 1 level, got {scale}")
        if decoder not in codec.DECODERS:
            raise InputError(f"--decoder must be one of {', '.join(codec.DECODERS)}, got {decoder!r}")
        suffix = None
        if error_map is not None:
            check_writable(error_map, force)
            suffix = output_suffix(error_map)
        original = cmp.load(images[0])
        decoded = cmp.load(images[1], lambda: _load(model, backend, threads), decoder)
        c = cmp.compare(original, decoded, threshold)
        if error_map is not None:
            atomic_write(error_map, encode_image(c.error_map(scale), suffix), force)
        typer.echo(cmp.report(c, error_map, scale))
    except (Exception, KeyboardInterrupt) as e:
        _fail(e)


@app.command()
def batch(
    src: Path = typer.Argument(..., help="folder of images (or of .edgc files with --decode), walked recursively"),
    dst: Path = typer.Argument(..., help="output folder: the same tree, plus the journal and a CSV"),
    quality: Optional[float] = typer.Option(None, "-q", "--quality", help="as `encode` (default: N/2)"),
    target_psnr: Optional[float] = typer.Option(None, "--target-psnr", metavar="DB", help="fewest bytes with at least this RGB PSNR"),
    decode: bool = typer.Option(False, "--decode", help=".edgc files in, PNG out"),
    decode_check: bool = typer.Option(False, "--decode-check", help="decode each file after writing it and compare with the encoder's"),
    workers: Optional[int] = typer.Option(None, "--workers", "-j", help="worker processes (default: one per core; Ray: per cluster CPU)"),
    engine: str = typer.Option("local", "--engine", help="local (worker processes) or ray (pip install 'edgecodec[ray]')"),
    address: Optional[str] = typer.Option(None, "--address", help="the Ray cluster to join (default: a local Ray instance)"),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="also redo files that failed before"),
    backend: str = BACKEND_OPTION,
    model: Optional[Path] = MODEL_OPTION,
    threads: Optional[int] = typer.Option(None, "--threads", help="runtime threads per worker (default: cores / workers)"),
    max_memory: Optional[str] = MAX_MEMORY_OPTION,
) -> None:
    """Transcode a whole folder tree into DST, resumably: rerun the same command after a crash or
    Ctrl-C and it continues where it stopped. Exit code 1 if any file failed."""
    try:
        from . import batch as batch_mod
        from .runtimes.base import BackendSpec

        BackendSpec.parse(backend)
        settings, n = batch_mod.make_settings(
            batch_mod.DECODE if decode else batch_mod.ENCODE,
            quality=quality,
            target_psnr=target_psnr,
            decode_check=decode_check,
            backend=backend,
            model=model,
            workers=workers,
            threads=threads,
            **_memory(max_memory),
        )
        eng = batch_mod.engine(engine, settings, workers if engine == "ray" else n, address)
        typer.echo(f"batch: {eng.describe()}", err=True)
        summary = batch_mod.run(
            src, dst, settings, eng, retry_failed=retry_failed, warn=lambda line: typer.echo(f"warning: {line}", err=True)
        )
        for line in summary.lines():
            typer.echo(line)
        if summary.interrupted:
            raise typer.Exit(130)
        if summary.failed:
            raise typer.Exit(1)
    except typer.Exit:
        raise
    except (Exception, KeyboardInterrupt) as e:
        _fail(e)


@app.command()
def demo(
    image: Path = typer.Argument(EXAMPLE, help="a photo (default: a Kodak photo shipped with the package)"),
    quality: int = typer.Option(4, "-q", "--quality"),
    backend: str = BACKEND_OPTION,
    out: Path = typer.Option(Path("demo-out"), "--out", help="folder for the .edgc and decoded .png"),
    max_memory: Optional[str] = MAX_MEMORY_OPTION,
) -> None:
    """Compress and decompress one photo with the shipped model; print size, bpp, PSNR and time."""
    try:
        from .io import atomic_write, encode_image, read_image

        memory = _memory(max_memory)
        t0 = time.perf_counter()
        bundle, be = _load(None, backend)
        img = read_image(image)
        t1 = time.perf_counter()
        enc = codec.encode(img, quality, be, bundle, **memory)
        t2 = time.perf_counter()
        dec = codec.decode(enc.data, be, bundle, **memory)
        t3 = time.perf_counter()
        atomic_write(out / (image.stem + ".edgc"), enc.data, force=True)
        atomic_write(out / (image.stem + ".decoded.png"), encode_image(dec.image, ".png"), force=True)
        src_bytes = image.stat().st_size
        typer.echo(f"backend: {_label(be)}; model {bundle.digest[:12]}, quality {quality}/{bundle.levels}")
        typer.echo(f"{image.name}: {img.shape[1]}x{img.shape[0]}, {src_bytes} bytes as PNG")
        typer.echo(f"compressed: {len(enc.data)} bytes, {enc.bpp:.3f} bpp ({src_bytes / len(enc.data):.1f}x smaller than the PNG)")
        typer.echo(f"decoded PSNR: {codec.psnr(dec.image, img[..., :3] if img.ndim == 3 else img):.2f} dB (RGB, measured)")
        typer.echo(f"time: load {t1 - t0:.2f} s, encode {t2 - t1:.3f} s, decode {t3 - t2:.3f} s")
        typer.echo(f"wrote {out / (image.stem + '.edgc')} and {out / (image.stem + '.decoded.png')}")
    except (Exception, KeyboardInterrupt) as e:
        _fail(e)


@app.command()
def export(
    target: str = typer.Option(..., "--target", "-t", help="onnx, tflite, openvino or all (onnx creates the bundle)"),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", help="weights/checkpoint folder (default: the shipped weights)"),
    out: Path = typer.Option(Path("bundle"), "--out", help="bundle folder to write"),
    calib: Optional[Path] = typer.Option(None, "--calib", help="folder of calibration images (default: the shipped set)"),
    validate: bool = typer.Option(True, "--validate/--no-validate", help="check the artifacts against the fp32 model"),
    max_psnr_loss: float = typer.Option(0.15, "--max-psnr-loss", help="largest PSNR loss (dB) of int8 vs fp32 at any quality"),
) -> None:
    """Quantize a trained model to int8 and write a bundle (needs the 'export' extra)."""
    try:
        from .export.registry import run_export

        run_export(target, checkpoint, out, calib, progress=lambda s: typer.echo(f"  {s}"), validate=validate, max_psnr_loss=max_psnr_loss)
        typer.echo(f"bundle written to {out}")
    except (Exception, KeyboardInterrupt) as e:
        _fail(e)


@app.command()
def backends(model: Optional[Path] = MODEL_OPTION, threads: Optional[int] = THREADS_OPTION) -> None:
    """List every (runtime, device) candidate on this host: available, checked against the bundle's
    reference for encoding and for decoding with each decoder (a candidate that fails is never
    chosen by auto), and why not."""
    try:
        from .bundle import Bundle
        from .runtimes.selection import AutoBackend

        bundle = Bundle(model)
        what_of = {"analysis": "encode", "synthesis": "decode", "fast_synthesis": "fast decode"}
        for r in AutoBackend(bundle, threads=threads).survey():
            if not r["available"]:
                typer.echo(f"{r['backend']:12s} {r['device']:8s} unavailable: {r['reason']}")
                continue
            roles = []
            for role, what in ((k, v) for k, v in what_of.items() if k in r):
                status = r[role]
                times = ", ".join(f"{k} {v:.0f} ms" for k, v in sorted(r[role + "_ms"].items()))
                roles.append(f"{what} ok" + (f" ({times})" if times else "") if status == "ok" else f"{what} rejected: {status}")
            typer.echo(f"{r['backend']:12s} {r['device']:8s} " + "; ".join(roles))
    except (Exception, KeyboardInterrupt) as e:
        _fail(e)


@app.command()
def profile(
    images: Optional[list[Path]] = typer.Argument(None, help="images (default: the shipped Kodak photo)"),
    backend: str = typer.Option("all", "--backend", "-b", help="all, or a comma-separated list of runtimes"),
    repeat: int = typer.Option(10, "--repeat", help="timed runs per image"),
    threads: Optional[int] = THREADS_OPTION,
    quality: Optional[int] = typer.Option(None, "-q", "--quality"),
    model: Optional[Path] = MODEL_OPTION,
    json_out: Optional[Path] = typer.Option(None, "--json", help="also write the rows as JSON (to compare devices)"),
) -> None:
    """Latency per stage (p50/p90), load time, peak memory, bpp and PSNR for every backend on this host."""
    try:
        import json

        from . import profile as prof
        from .io import atomic_write

        paths = [str(p) for p in (images or [EXAMPLE])]
        for p in paths:
            if not Path(p).is_file():
                raise InputError(f"{p}: no such file")
        names = None if backend == "all" else [n.strip() for n in backend.split(",")]
        rows = prof.profile(
            str(model) if model else None, names, paths, quality, repeat, threads, progress=lambda s: typer.echo(s, err=True)
        )
        typer.echo(prof.format_table(rows))
        if json_out:
            atomic_write(json_out, json.dumps(rows, indent=1).encode(), force=True)
    except (Exception, KeyboardInterrupt) as e:
        _fail(e)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def train(ctx: typer.Context) -> None:
    """Train the model (arguments as in `python -m edgecodec.models.train --help`)."""
    try:
        from .models.train import main as train_main
    except ImportError as e:
        _fail(InputError(f"training needs torch ({e.name} missing); pip install torch==2.13.0"))
        return
    train_main(list(ctx.args))
