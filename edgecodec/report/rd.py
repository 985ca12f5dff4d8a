"""Rate-distortion of a set: mean curves per codec, Bjøntegaard delta rates, and the plot as inline SVG
(drawn here, so the report needs no plotting library and no network)."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from html import escape

import numpy as np

from ..metrics import msssim_db


def _curve(rates: Sequence[float], quality: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Finite, positive-rate points sorted by quality; ties in quality keep the lowest rate."""
    r = np.asarray(rates, np.float64)
    q = np.asarray(quality, np.float64)
    ok = np.isfinite(r) & np.isfinite(q) & (r > 0)
    r, q = r[ok], q[ok]
    order = np.lexsort((r, q))
    q, lr = q[order], np.log(r[order])
    keep = np.concatenate(([True], np.diff(q) > 0)) if len(q) else np.zeros(0, bool)
    return q[keep], lr[keep]


def bd_rate(
    rate_anchor: Sequence[float],
    quality_anchor: Sequence[float],
    rate_test: Sequence[float],
    quality_test: Sequence[float],
    min_points: int = 4,
) -> tuple[float | None, str]:
    """Bjøntegaard delta rate of a test codec against an anchor, in percent (negative: the test needs
    fewer bits for the same quality), or None and why not.

    Log-rate is interpolated as a function of quality with a monotone piecewise-cubic Hermite (PCHIP)
    interpolant per curve, both integrated over the quality interval both cover; the mean log-rate
    difference d gives ``100 * (exp(d) - 1)``. Non-finite or non-positive-rate points are dropped; of
    points with equal quality the lowest rate is kept. Each curve needs ``min_points`` points, the
    ranges must overlap, and together the curves need ``min_points`` points inside the overlap. Never
    extrapolates. (``benchmarks/metrics.py`` and ``benchmarks/rd.py`` use this one.)"""
    from scipy.interpolate import PchipInterpolator

    qa, la = _curve(rate_anchor, quality_anchor)
    qt, lt = _curve(rate_test, quality_test)
    if len(qa) < min_points or len(qt) < min_points:
        return None, f"fewer than {min_points} usable points (anchor {len(qa)}, test {len(qt)})"
    lo, hi = max(qa[0], qt[0]), min(qa[-1], qt[-1])
    if not hi > lo:
        return None, "quality ranges do not overlap"
    na = int(np.count_nonzero((qa >= lo) & (qa <= hi)))
    nt = int(np.count_nonzero((qt >= lo) & (qt <= hi)))
    info = f"overlap [{lo:.3f}, {hi:.3f}] with {na} anchor + {nt} test points"
    if na + nt < min_points:
        return None, f"fewer than {min_points} points in the {info}"
    ia = PchipInterpolator(qa, la).integrate(lo, hi)
    it = PchipInterpolator(qt, lt).integrate(lo, hi)
    return float(100.0 * math.expm1((it - ia) / (hi - lo))), info


def mean_curves(points: list[dict]) -> dict[str, list[dict]]:
    """Points {codec, setting, bpp, psnr, ms_ssim} of every image -> per codec, per setting the mean
    over the images that have it (as ``benchmarks/rd.py``), sorted by bpp."""
    groups: dict[tuple[str, float], list[dict]] = defaultdict(list)
    for p in points:
        groups[(p["codec"], p["setting"])].append(p)
    out: dict[str, list[dict]] = defaultdict(list)
    for (name, setting), ps in groups.items():
        a = {"codec": name, "setting": setting, "n": len(ps)}
        for k in ("bpp", "psnr", "ms_ssim"):
            a[k] = float(np.mean([p[k] for p in ps]))
        a["ms_ssim_db"] = msssim_db(a["ms_ssim"])
        out[name].append(a)
    for name in out:
        out[name].sort(key=lambda a: a["bpp"])
    return dict(out)


def bd_table(curves: dict[str, list[dict]], test: str, min_points: int = 4) -> list[dict]:
    """``test`` against every other codec in ``curves``, in PSNR and in MS-SSIM (dB)."""
    table = []
    for anchor in curves:
        if anchor == test or test not in curves:
            continue
        entry: dict = {"test": test, "anchor": anchor}
        for metric, key in (("psnr", "psnr"), ("ms_ssim", "ms_ssim_db")):
            ra, rt = curves[anchor], curves[test]
            v, info = bd_rate([p["bpp"] for p in ra], [p[key] for p in ra], [p["bpp"] for p in rt], [p[key] for p in rt], min_points)
            entry[metric], entry[f"{metric}_info"] = v, info
        table.append(entry)
    return table


def _ticks(lo: float, hi: float, n: int = 6) -> list[float]:
    """About ``n`` round tick values covering [lo, hi]."""
    span = hi - lo if hi > lo else 1.0
    raw = span / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    return [round(first + i * step, 10) for i in range(int((hi - first) / step + 1e-9) + 1)]


def svg_plot(
    curves: dict[str, list[dict]],
    key: str,
    ylabel: str,
    colors: dict[str, str],
    labels: dict[str, str],
    marks: dict[str, tuple[float, float]] | None = None,
    x_max: float | None = None,
) -> str:
    """One RD chart (``key`` against bpp) as an SVG element; ``marks``: a codec's mean operating point."""
    width, height, left, right, top, bottom = 560, 360, 58, 14, 14, 46
    pts = {c: [(p["bpp"], p[key]) for p in ps if math.isfinite(p[key])] for c, ps in curves.items()}
    xs = [x for ps in pts.values() for x, _ in ps]
    if not xs:
        return '<svg class="rd" viewBox="0 0 560 60"><text x="10" y="30">no points</text></svg>'
    x1 = x_max if x_max is not None else max(xs)
    ys = [y for ps in pts.values() for x, y in ps if x <= x1 * 1.0001]
    y0, y1 = min(ys), max(ys)
    pad = 0.04 * (y1 - y0 or 1.0)
    y0, y1 = y0 - pad, y1 + pad
    x0 = 0.0

    def sx(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * (width - left - right)

    def sy(y: float) -> float:
        return top + (y1 - y) / (y1 - y0) * (height - top - bottom)

    out = [
        f'<svg class="rd" viewBox="0 0 {width} {height}" role="img" aria-label="{escape(ylabel)} against bits per pixel">',
        f'<defs><clipPath id="clip-{key}"><rect x="{left}" y="{top}" width="{width - left - right}" height="{height - top - bottom}"/>'
        "</clipPath></defs>",
    ]
    for t in _ticks(x0, x1):
        out.append(f'<line class="grid" x1="{sx(t):.1f}" y1="{top}" x2="{sx(t):.1f}" y2="{height - bottom}"/>')
        out.append(f'<text class="tick" x="{sx(t):.1f}" y="{height - bottom + 16}" text-anchor="middle">{t:g}</text>')
    for t in _ticks(y0, y1):
        out.append(f'<line class="grid" x1="{left}" y1="{sy(t):.1f}" x2="{width - right}" y2="{sy(t):.1f}"/>')
        out.append(f'<text class="tick" x="{left - 6}" y="{sy(t) + 4:.1f}" text-anchor="end">{t:g}</text>')
    out.append(f'<rect class="frame" x="{left}" y="{top}" width="{width - left - right}" height="{height - top - bottom}"/>')
    out.append(
        f'<text class="axis" x="{(left + width - right) / 2}" y="{height - 8}" text-anchor="middle">bits per pixel (file size)</text>'
    )
    mid = (top + height - bottom) / 2
    out.append(f'<text class="axis" transform="translate(14 {mid}) rotate(-90)" text-anchor="middle">{escape(ylabel)}</text>')
    out.append(f'<g clip-path="url(#clip-{key})">')
    for c, ps in pts.items():
        col = colors.get(c, "#444")
        line = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in ps)
        out.append(f'<polyline class="curve" data-codec="{escape(c)}" points="{line}" stroke="{col}"/>')
        for x, y in ps:
            out.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2.6" fill="{col}"><title>{escape(labels.get(c, c))}: '
                       f"{x:.3f} bpp, {y:.3f}</title></circle>")  # fmt: skip
        if marks and c in marks and all(math.isfinite(v) for v in marks[c]):
            mx, my = marks[c]
            out.append(
                f'<rect class="mark" x="{sx(mx) - 4:.1f}" y="{sy(my) - 4:.1f}" width="8" height="8" stroke="{col}">'
                f"<title>{escape(labels.get(c, c))}, at the report's file size: {mx:.3f} bpp, {my:.3f}</title></rect>"
            )
    out.append("</g>")
    for i, c in enumerate(pts):  # legend, bottom right
        y = height - bottom - 12 - 16 * (len(pts) - 1 - i)
        x = width - right - 190
        out.append(f'<line x1="{x}" y1="{y - 4}" x2="{x + 18}" y2="{y - 4}" stroke="{colors.get(c, "#444")}" stroke-width="3"/>')
        out.append(f'<text class="legend" x="{x + 24}" y="{y}">{escape(labels.get(c, c))}</text>')
    out.append("</svg>")
    return "\n".join(out)
