"""The report's page: static HTML (tables, panels, the RD plots as SVG) with the package's CSS and JS
inlined, so ``index.html`` needs nothing but its ``images/`` folder: no network, no server."""

from __future__ import annotations

import math
from html import escape
from importlib import resources

import numpy as np

from .. import classical
from . import rd
from .builder import COLORS, EDGECODEC, ERROR_BANDS, band_colors

LABELS = {EDGECODEC: "edgecodec", **classical.LABELS}
SHORT = {EDGECODEC: "edgecodec", "jpeg": "JPEG", "webp": "WebP", "avif": "AVIF", "jxl": "JPEG XL"}


def finite(o):
    """JSON-safe copy: non-finite floats become null."""
    if isinstance(o, dict):
        return {k: finite(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [finite(v) for v in o]
    if isinstance(o, (float, np.floating)):
        return float(o) if math.isfinite(o) else None
    if isinstance(o, np.integer):
        return int(o)
    return o


def summarize(results: list[dict], codecs: list[str]) -> dict:
    """The set: mean curves of the sweep, BD-rates of edgecodec against each codec, and the means at
    the report's file size."""
    curves = rd.mean_curves([p for r in results for p in r["points"]])
    at_size = {}
    for c in [EDGECODEC] + codecs:
        rows = [row for r in results for row in r["rows"] if row["codec"] == c]
        if not rows:
            continue
        mean = {
            k: float(np.mean([row[k] for row in rows])) for k in ("bytes", "bpp", "psnr", "ms_ssim", "max_error", "encode_ms", "decode_ms")
        }
        mean["ms_ssim_db"] = rd.msssim_db(mean["ms_ssim"])
        mean["fits"] = sum(bool(row["fits"]) for row in rows)
        mean["n"] = len(rows)
        at_size[c] = mean
    return {"curves": curves, "bd": rd.bd_table(curves, EDGECODEC), "at_size": at_size}


def _num(v: float, digits: int) -> str:
    return "∞" if v == math.inf else f"{v:.{digits}f}"


def _bytes(n: float) -> str:
    return f"{round(n):,}".replace(",", "\u202f")  # thin spaces between thousands


def _swatch(c: str) -> str:
    return f'<span class="swatch" style="background:{COLORS.get(c, "#444")}"></span>'


def _bd(v: float | None, info: str) -> str:
    if v is None:
        return f'<td class="na" title="{escape(info)}">n/a</td>'
    cls = "good" if v < 0 else "bad"
    return f'<td class="{cls}" title="{escape(info)}">{v:+.1f}%</td>'


def _best(rows: list[dict], key: str, high: bool) -> float:
    vals = [r[key] for r in rows]
    return max(vals) if high else min(vals)


def _metrics_table(rows: list[dict], with_files: bool) -> str:
    head = ["codec", "setting", "bytes", "bpp", "PSNR dB", "MS-SSIM", "max error", "encode ms", "decode ms"] + (
        ["file"] if with_files else []
    )
    best = {k: _best(rows, k, high) for k, high in (("psnr", True), ("ms_ssim", True), ("max_error", False))}
    out = [
        '<div class="table-wrap"><table class="metrics">',
        "<thead><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr></thead><tbody>",
    ]
    for r in rows:
        c = r["codec"]

        def cell(key: str, text: str, r: dict = r) -> str:
            return f'<td class="best">{text}</td>' if key in best and r[key] == best[key] else f"<td>{text}</td>"

        over = "" if r["fits"] else ' <span class="over" title="over the budget: no setting is small enough">over</span>'
        cells = [
            f'<td class="name">{_swatch(c)}{escape(SHORT.get(c, c))}</td>',
            f"<td>{escape(str(r['setting']))}</td>",
            f"<td>{_bytes(r['bytes'])}{over}</td>",
            f"<td>{r['bpp']:.3f}</td>",
            cell("psnr", _num(r["psnr"], 2)),
            cell("ms_ssim", f"{r['ms_ssim']:.4f}"),
            cell("max_error", f"{r['max_error']:.1f}" if isinstance(r["max_error"], float) else str(r["max_error"])),
            f"<td>{r['encode_ms']:.0f}</td>",
            f"<td>{r['decode_ms']:.1f}</td>",
        ]
        if with_files:
            cells.append(f'<td><a href="{escape(r["file"])}" download>{escape(r["file"].rsplit("/", 1)[-1])}</a></td>')
        out.append(f'<tr data-codec="{escape(c)}">' + "".join(cells) + "</tr>")
    out.append("</tbody></table></div>")
    return "\n".join(out)


def _img(src: str, w: int, h: int, lazy: bool, alt: str) -> str:
    loading = ' loading="lazy"' if lazy else ""
    return (
        f'<img class="zimg" src="{escape(src)}" width="{w}" height="{h}" alt="{escape(alt)}" decoding="async"{loading} draggable="false">'
    )


def _image_section(r: dict, index: int) -> str:
    name, w, h = r["name"], r["width"], r["height"]
    lazy = index > 0
    views = {"original": (r["original"], "original")}
    for row in r["rows"]:
        c = row["codec"]
        views[c] = (row["view"], f"{SHORT.get(c, c)} ({_bytes(row['bytes'])} B)")
    for row in r["rows"]:
        c = row["codec"]
        views[f"error:{c}"] = (row["error_view"], f"error map: {SHORT.get(c, c)}")

    def options(selected: str) -> str:
        return "".join(
            f'<option value="{escape(k)}" data-src="{escape(src)}"{" selected" if k == selected else ""}>{escape(label)}</option>'
            for k, (src, label) in views.items()
        )

    aspect = f"aspect-ratio: {w} / {h}"
    edg = r["rows"][0]
    out = [
        f'<section class="image" id="img-{escape(name)}" data-w="{w}" data-h="{h}">',
        f'<h2><a href="#img-{escape(name)}">{escape(name)}</a> <span class="dim">{w}×{h} · budget {_bytes(r["budget"])} bytes '
        f"({8 * r['budget'] / (w * h):.3f} bpp) · built in {r['seconds']:.1f} s</span></h2>",
        _metrics_table(r["rows"], True),
        '<div class="compare">',
        '<div class="controls">',
        f'<label>left <select class="pick" data-side="a">{options("original")}</select></label>',
        f'<label>right <select class="pick" data-side="b">{options(EDGECODEC)}</select></label>',
        '<span class="zoom" role="group" aria-label="zoom">'
        '<button type="button" data-zoom="out" title="zoom out (-)">−</button>'
        '<button type="button" data-zoom="in" title="zoom in (+)">+</button>'
        '<button type="button" data-zoom="fit" title="whole image (0)">fit</button>'
        '<button type="button" data-zoom="1" title="one image pixel per screen pixel">1:1</button>'
        '<output class="zoom-level">fit</output></span>',
        "</div>",
        f'<div class="viewport slider" tabindex="0" style="{aspect}; max-width: calc(78vh * {w / h:.4f})" '
        'aria-label="before/after comparison; drag the divider">',
        f'<div class="layer a">{_img(views["original"][0], w, h, lazy, "left image")}</div>',
        f'<div class="layer b" style="clip-path: inset(0 0 0 50%)">{_img(edg["view"], w, h, lazy, "right image")}</div>',
        '<div class="divider" style="left: 50%"><span class="handle" aria-hidden="true"></span></div>',
        f'<span class="tag a">{escape(views["original"][1])}</span><span class="tag b">{escape(views[EDGECODEC][1])}</span>',
        "</div>",
        '<input class="split" type="range" min="0" max="100" step="0.5" value="50" aria-label="divider: left image | right image">',
        '<p class="hint">Drag the divider (or use the slider below it). Zoom: double-click (Shift: out), '
        "Ctrl+wheel, pinch, + / − keys or the buttons; drag to pan. Every panel follows.</p>",
        "</div>",
        '<h3 class="panels-head">The decoded files, on the same region</h3>',
        '<div class="panels">',
    ]

    def panel(k: str, src: str, label: str) -> str:
        return (
            f'<figure class="panel" data-view="{escape(k)}"><div class="viewport" tabindex="0" style="{aspect}">'
            f"{_img(src, w, h, True, label)}</div><figcaption>{escape(label)}</figcaption></figure>"
        )

    out += [panel(k, src, label) for k, (src, label) in views.items() if not k.startswith("error:")]
    out += [
        "</div>",
        '<h3 class="panels-head">Error maps</h3>',
        f'<p class="legend">Each pixel\'s largest channel error in {ERROR_BANDS} steps <span class="ramp" style="background: '
        f'{_ramp()}"></span> black within about {r["scale"] / (2 * ERROR_BANDS):.1f} levels, then red, yellow, white at '
        f"{r['scale']} levels or more (the largest 99.9% error of the codecs on this image).</p>",
        '<div class="panels">',
    ]
    out += [panel(k, src, label) for k, (src, label) in views.items() if k.startswith("error:")]
    out.append("</div>")
    if r["notes"]:
        out.append('<ul class="notes">' + "".join(f"<li>{escape(n)}</li>" for n in r["notes"]) + "</ul>")
    out.append("</section>")
    return "\n".join(out)


def _ramp() -> str:
    """The error maps' steps as a CSS gradient of hard stops."""
    cols = band_colors()
    n = len(cols)
    stops = [f"#{r:02x}{g:02x}{b:02x} {100 * i / n:.1f}% {100 * (i + 1) / n:.1f}%" for i, (r, g, b) in enumerate(cols.tolist())]
    return "linear-gradient(to right, " + ", ".join(stops) + ")"


def _summary_section(results: list[dict], summary: dict, meta: dict) -> str:
    curves, at = summary["curves"], summary["at_size"]
    labels = {c: LABELS.get(c, c) for c in curves}
    marks_psnr = {c: (a["bpp"], a["psnr"]) for c, a in at.items()}
    marks_ms = {c: (a["bpp"], a["ms_ssim_db"]) for c, a in at.items()}
    x_max = min(2.5, max(p["bpp"] for ps in curves.values() for p in ps)) if curves else None
    rows = [
        {**a, "codec": c, "setting": f"{a['fits']}/{a['n']} within budget", "file": "", "fits": a["fits"] == a["n"]} for c, a in at.items()
    ]
    out = [
        '<section id="summary">',
        f"<h2>The set: {len(results)} image{'s' if len(results) != 1 else ''}</h2>",
        f"<p>Means over the images at the report's file size ({escape(meta['target'])}).</p>",
        _metrics_table(rows, False),
        "<h3>Rate–distortion (a sweep of settings on every image, means per setting)</h3>",
        '<div class="rd-plots">',
        rd.svg_plot(curves, "psnr", "RGB PSNR (dB)", COLORS, labels, marks_psnr, x_max),
        rd.svg_plot(curves, "ms_ssim_db", "MS-SSIM (dB, −10 log10(1 − MS-SSIM))", COLORS, labels, marks_ms, x_max),
        "</div>",
        '<p class="dim">Squares: the means at the report\'s file size. Sweeps: '
        + "; ".join(f"{escape(SHORT.get(c, c))} {', '.join(f'{q:g}' for q in qs)}" for c, qs in meta["sweeps"].items())
        + ".</p>",
        "<h3>BD-rate of edgecodec (negative: fewer bits for the same quality)</h3>",
        '<div class="table-wrap"><table class="bd"><thead><tr><th>edgecodec vs</th><th>RGB PSNR</th><th>MS-SSIM</th></tr></thead><tbody>',
    ]
    for e in summary["bd"]:
        a = e["anchor"]
        cells = _bd(e["psnr"], e["psnr_info"]) + _bd(e["ms_ssim"], e["ms_ssim_info"])
        out.append(f"<tr><td>{_swatch(a)}{escape(LABELS.get(a, a))}</td>{cells}</tr>")
    out.append("</tbody></table></div>")
    out.append('<p class="dim">PCHIP of log-rate over the quality range both curves cover, as <code>benchmarks/rd.py</code>; '
               "a few settings per codec, so a coarser estimate than the README's.</p>")  # fmt: skip
    out.append("</section>")
    return "\n".join(out)


def page(results: list[dict], summary: dict, meta: dict) -> str:
    """The whole ``index.html``."""
    files = resources.files(__package__)
    template = (files / "template.html").read_text(encoding="utf-8")
    css = (files / "report.css").read_text(encoding="utf-8")
    js = (files / "report.js").read_text(encoding="utf-8")
    toc = " ".join(f'<a href="#img-{escape(r["name"])}">{escape(r["name"])}</a>' for r in results)
    versions = ", ".join(f"{k} {v}" for k, v in meta["versions"].items())
    body = "\n".join(
        [
            "<header>",
            f"<h1>edgecodec against {', '.join(SHORT.get(c, c) for c in meta['codecs'][1:]) or 'the original'}</h1>",
            f'<p class="lede">{escape(meta["target"])}. Every figure is measured on the decoded file, with edgecodec\'s metrics '
            "(RGB PSNR, MS-SSIM, the largest error in levels). A learned codec can invent plausible detail: compare the panels "
            "and the error maps, not only the numbers.</p>",
            f'<nav class="toc">{toc}</nav>',
            "</header>",
            _summary_section(results, summary, meta),
            *(_image_section(r, i) for i, r in enumerate(results)),
            '<footer><p class="dim">',
            f"Built in {meta['elapsed_s']:.1f} s ({meta['jobs']} worker{'s' if meta['jobs'] != 1 else ''} × {meta['threads']} "
            f"thread{'s' if meta['threads'] != 1 else ''}; encode and decode times were measured with them running). "
            f"Model {escape(meta['bundle'])}, backend {escape(meta['backend'])}; {escape(versions)}. "
            + (f"Command: <code>{escape(meta['command'])}</code>. " if meta.get("command") else "")
            + "Panels: "
            + (
                "exact pixels (JPEG, WebP and AVIF files as made; the rest as lossless WebP)."
                if meta["panels"] == "exact"
                else "JPEG, WebP and AVIF files as made; the original, edgecodec and JPEG XL re-encoded as JPEG 4:4:4 "
                "quality 95 for display (not exact)."
            )
            + ' Data: <a href="results.json">results.json</a>.</p></footer>',
        ]
    )
    title = f"edgecodec comparison: {len(results)} image{'s' if len(results) != 1 else ''}"
    return template.replace("<!--TITLE-->", escape(title)).replace("/*STYLE*/", css).replace("/*SCRIPT*/", js).replace("<!--BODY-->", body)
