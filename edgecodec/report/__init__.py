"""The comparison report (``edgecodec compare IMAGES... --out DIR``): edgecodec and the classical codecs
at the same file size, as one self-contained HTML page plus its images (``builder``). Needs the
'report' extra (Pillow, pillow-jxl-plugin, scipy)."""

from __future__ import annotations

from .builder import Target, build

__all__ = ["Target", "build"]


def command(
    images: list,
    out,
    quality: float | None = None,
    size_bytes: int | None = None,
    bpp: float | None = None,
    codecs: str = "jpeg,webp,avif,jxl",
    **options,
) -> list[str]:
    """``edgecodec compare IMAGES... --out DIR``: build the report; returns the lines to print."""
    from pathlib import Path

    from ..errors import InputError
    from .builder import EDGECODEC

    given = [(k, v) for k, v in (("--quality", quality), ("--bytes", size_bytes), ("--bpp", bpp)) if v is not None]
    if len(given) > 1:
        raise InputError(f"give at most one of --quality, --bytes and --bpp (got {', '.join(k for k, _ in given)})")
    kind = {"--quality": "quality", "--bytes": "bytes", "--bpp": "bpp"}[given[0][0]] if given else "quality"
    try:
        import scipy.interpolate  # noqa: F401  (BD-rates)
    except ImportError:
        raise InputError("the report needs scipy (pip install 'edgecodec[report]')") from None
    names = [c for c in codecs.split(",") if c.strip()]
    res = build([Path(p) for p in images], Path(out), Target(kind, given[0][1] if given else None), names, **options)
    meta, summary = res["meta"], res["summary"]
    total = sum(f.stat().st_size for f in Path(out).rglob("*") if f.is_file())
    lines = [f"{meta['target']}."]
    for c, a in summary["at_size"].items():
        lines.append(
            f"  {c:<10} {a['bpp']:.3f} bpp  {a['psnr']:.2f} dB  MS-SSIM {a['ms_ssim']:.4f}  max error {a['max_error']:.1f}"
            + ("" if a["fits"] == a["n"] else f"  ({a['n'] - a['fits']} over the budget)")
        )
    for e in summary["bd"]:
        fmt = {k: "n/a" if e[k] is None else f"{e[k]:+.1f}%" for k in ("psnr", "ms_ssim")}
        lines.append(f"  BD-rate {EDGECODEC} vs {e['anchor']}: {fmt['psnr']} (PSNR), {fmt['ms_ssim']} (MS-SSIM)")
    lines.append(f"wrote {Path(out) / 'index.html'} ({len(res['images'])} images, {total / 1e6:.1f} MB, {meta['elapsed_s']:.1f} s)")
    return lines
