"""`edgecodec compare IMAGES... --out DIR`: a self-contained comparison report, every codec at the same
file size, checked on disk and in a real browser (Debian's chromium driven by playwright)."""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgecodec import codec, metrics

Image = pytest.importorskip("PIL.Image")
pytest.importorskip("pillow_jxl")
pytest.importorskip("scipy")
pytest.importorskip("cv2")

from edgecodec import classical  # noqa: E402
from edgecodec.report import Target, build  # noqa: E402
from edgecodec.report import builder as report_builder  # noqa: E402
from edgecodec.report.render import finite  # noqa: E402

PHOTO = Path(__file__).resolve().parents[1] / "edgecodec" / "data" / "kodim23.png"
CODECS = ["jpeg", "webp", "avif", "jxl"]
CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)


def crops(folder: Path) -> list[Path]:
    """Two crops of the shipped photo: a landscape and a portrait one (the panels keep each aspect)."""
    rgb = np.asarray(Image.open(PHOTO).convert("RGB"))
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, (r0, c0, h, w) in {"parrots": (120, 200, 128, 192), "tall": (40, 420, 160, 96)}.items():
        Image.fromarray(rgb[r0 : r0 + h, c0 : c0 + w]).save(folder / f"{name}.png")
        paths.append(folder / f"{name}.png")
    return paths


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """A report of two crops at edgecodec quality 5 (numpy backend, in-process): (folder, results, inputs)."""
    root = tmp_path_factory.mktemp("report")
    inputs = crops(root / "in")
    res = build(inputs, root / "out", Target("quality", 5), CODECS, backend="numpy", jobs=1)
    return root / "out", res, inputs


def rgb_of(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def test_the_report_is_one_html_file_with_its_images_and_nothing_from_the_network(report):
    out, res, _ = report
    assert sorted(p.name for p in out.iterdir()) == ["images", "index.html", "results.json"]
    assert not [p for p in out.parent.iterdir() if ".partial-" in p.name or ".old-" in p.name]  # no half-written folder left
    html = (out / "index.html").read_text()
    assert "<style>" in html and "<script>" in html and "/*STYLE*/" not in html and "/*SCRIPT*/" not in html
    assert not re.search(r"<link[^>]+stylesheet|<script[^>]+src=", html)
    refs = re.findall(r'(?:src|href)="([^"]*)"', html)
    assert refs and not [r for r in refs if re.match(r"[a-z]+://|//", r)], "a reference leaves the folder"
    for ref in refs:
        if not ref.startswith(("#", "data:")):
            assert (out / ref).is_file(), ref
    on_disk = {str(p.relative_to(out)) for p in (out / "images").rglob("*") if p.is_file()}
    assert on_disk <= set(refs)  # every file written is used by the page
    for r in res["images"]:
        assert f'id="img-{r["name"]}"' in html
        for row in r["rows"]:
            assert f'src="{row["view"]}"' in html and f'src="{row["error_view"]}"' in html


def test_every_codec_is_at_the_largest_file_not_over_edgecodecs(report):
    out, res, inputs = report
    for r, path in zip(res["images"], inputs):
        rgb = rgb_of(path)
        rows = {row["codec"]: row for row in r["rows"]}
        assert list(rows) == ["edgecodec"] + CODECS
        assert r["budget"] == rows["edgecodec"]["bytes"] == (out / rows["edgecodec"]["file"]).stat().st_size
        for c in CODECS:
            row = rows[c]
            data = (out / row["file"]).read_bytes()
            assert len(data) == row["bytes"] and row["bpp"] == pytest.approx(8 * len(data) / rgb[..., 0].size)
            q = int(row["setting"].split()[-1])
            assert data == classical.encode(c, rgb, q, res["meta"]["threads"])  # the codec's file at the setting shown
            if row["fits"]:
                assert len(data) <= r["budget"]
                lo, hi = classical.QUALITY_RANGE[c]
                if c == "jpeg" and q < hi:  # cheap to check: one step up is over the budget
                    assert len(classical.encode(c, rgb, q + 1, res["meta"]["threads"])) > r["budget"]


def test_the_figures_are_the_metrics_of_the_decoded_files(report):
    from edgecodec.bundle import Bundle
    from edgecodec.runtimes.base import open_backend

    out, res, inputs = report
    backend = open_backend("numpy", Bundle(None))
    for r, path in zip(res["images"], inputs):
        rgb = rgb_of(path)
        for row in r["rows"]:
            data = (out / row["file"]).read_bytes()
            if row["codec"] == "edgecodec":
                decoded = codec.decode(data, backend).image
            else:
                decoded = classical.decode(row["codec"], data, rgb.shape)
            m = metrics.measure(rgb, decoded)
            assert (row["psnr"], row["ms_ssim"], row["max_error"], row["p999_error"]) == (m.psnr, m.ms_ssim, m.max_error, m.p999_error)
            assert row["encode_ms"] > 0 and row["decode_ms"] > 0
            if row["view"] != row["file"]:  # the panel of a format browsers cannot show: the decoded pixels, exactly
                assert np.array_equal(rgb_of(out / row["view"]), decoded)
            expected = report_builder.banded_error_map(rgb, decoded, r["scale"])
            assert np.array_equal(rgb_of(out / row["error_view"]), expected)
        assert np.array_equal(rgb_of(out / r["original"]), rgb)
        assert r["scale"] == max(1, max(row["p999_error"] for row in r["rows"]))


def test_error_maps_are_black_within_half_a_step_and_white_from_the_scale():
    a = np.zeros((1, 6, 3), np.uint8)
    b = np.array([[[0, 0, 0], [2, 0, 0], [0, 4, 0], [0, 0, 20], [40, 0, 0], [200, 9, 9]]], np.uint8)
    m = report_builder.banded_error_map(a, b, 40)  # 7 steps of 40/7 levels: black under ~2.9 levels
    colors = [tuple(c) for c in report_builder.band_colors()]
    assert len(colors) == report_builder.ERROR_BANDS + 1 and colors[0] == (0, 0, 0) and colors[-1] == (255, 255, 255)
    assert [tuple(p) for p in m[0]] == [colors[0], colors[0], colors[1], colors[4], colors[-1], colors[-1]]


def test_the_set_has_rd_curves_and_bd_rates(report):
    out, res, _ = report
    s = res["summary"]
    assert set(s["curves"]) == {"edgecodec", *CODECS}
    for pts in s["curves"].values():
        assert len(pts) >= 5 and all(p["n"] == 2 for p in pts)
        assert [p["bpp"] for p in pts] == sorted(p["bpp"] for p in pts)
    assert [e["anchor"] for e in s["bd"]] == CODECS
    assert any(e["psnr"] is not None and math.isfinite(e["psnr"]) for e in s["bd"])
    html = (out / "index.html").read_text()
    assert html.count('<svg class="rd"') == 2 and html.count('class="curve"') == 2 * 5
    saved = json.loads((out / "results.json").read_text())
    assert saved["summary"]["bd"] == finite(s["bd"])


def test_a_byte_budget_holds_for_every_codec_and_workers_change_nothing(tmp_path):
    inputs = crops(tmp_path / "in")
    one = build(inputs, tmp_path / "one", Target("bytes", 1500), CODECS, backend="numpy", jobs=1, threads=1)
    two = build(inputs, tmp_path / "two", Target("bytes", 1500), CODECS, backend="numpy", jobs=2, threads=1)
    for a, b in zip(one["images"], two["images"]):
        assert a["budget"] == 1500
        for ra, rb in zip(a["rows"], b["rows"]):
            assert ra["bytes"] <= 1500 or not ra["fits"]
            same = ("codec", "setting", "bytes", "psnr", "ms_ssim", "max_error")
            assert {k: ra[k] for k in same} == {k: rb[k] for k in same}
        assert a["points"] == b["points"]


def test_an_image_over_the_memory_budget_goes_through_the_tiled_path(tmp_path):
    from edgecodec import tiling
    from edgecodec.bundle import Bundle
    from edgecodec.runtimes.base import open_backend

    rgb = np.asarray(Image.open(PHOTO).convert("RGB"))[100:340, 150:550]  # 400x240: two windows at the smallest budget
    Image.fromarray(rgb).save(tmp_path / "big.png")
    budget = 16 << 20
    backend = open_backend("numpy", Bundle(None), threads=1)
    assert len(tiling.tiles_for(backend, "analysis", 240 // 16, 400 // 16, budget)) > 1
    options = {"backend": "numpy", "jobs": 1, "threads": 1, "max_memory": budget}
    res = build([tmp_path / "big.png"], tmp_path / "out", Target("quality", 5), ["jpeg"], **options)
    row = res["images"][0]["rows"][0]
    assert (tmp_path / "out" / row["file"]).read_bytes() == codec.encode(rgb, 5, backend, max_memory=budget).data


def test_auto_panels_go_light_over_the_size_budget(tmp_path, monkeypatch):
    monkeypatch.setattr(report_builder, "AUTO_BUDGET", 1000)
    res = build(crops(tmp_path / "in")[:1], tmp_path / "out", Target("bpp", 0.8), ["jpeg", "jxl"], backend="numpy", jobs=1)
    assert res["meta"]["panels"] == "light" and res["meta"]["exact_panels_bytes"] > 1000
    r = res["images"][0]
    views = [r["original"]] + [row["view"] for row in r["rows"]]
    assert [Path(v).suffix for v in views] == [".jpg", ".jpg", ".jpg", ".jpg"]  # jpeg's own file, the rest re-stored
    assert not list((tmp_path / "out").rglob("*-view.webp")) and not list((tmp_path / "out").rglob("original.webp"))
    html = (tmp_path / "out" / "index.html").read_text()
    assert all(f'src="{v}"' in html for v in views) and "not exact" in html


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "edgecodec.cli", *map(str, args)], capture_output=True, text=True)


def test_the_command_builds_a_report_and_fails_cleanly(tmp_path):
    inputs = crops(tmp_path / "in")
    out = tmp_path / "rep"
    r = run_cli("compare", *inputs, "--out", out, "--bpp", "0.5", "--codecs", "jpeg,webp", "-b", "numpy", "-j", "1")
    assert r.returncode == 0, r.stderr
    assert f"wrote {out / 'index.html'} (2 images" in r.stdout and "BD-rate edgecodec vs jpeg" in r.stdout
    assert "[2/2]" in r.stderr
    saved = json.loads((out / "results.json").read_text())
    assert [row["codec"] for row in saved["images"][0]["rows"]] == ["edgecodec", "jpeg", "webp"]
    assert saved["meta"]["command"].startswith("edgecodec compare ") and "--bpp 0.5" in saved["meta"]["command"]
    before = (out / "index.html").read_bytes()
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not an image")
    for args, text in [
        ((*inputs, "--out", out), "--force"),  # an existing report is kept
        ((*inputs, "--out", tmp_path / "x", "--codecs", "gif"), "unknown codec 'gif'"),
        ((*inputs, "--out", tmp_path / "x", "--bytes", "900", "--bpp", "1"), "at most one of"),
        ((inputs[0], tmp_path / "missing.png", "--out", tmp_path / "x"), "no such file"),
        ((inputs[0], junk, "--out", tmp_path / "x", "-j", "1"), "not a readable image"),
        ((inputs[0], inputs[1], "--bytes", "900"), "give --out DIR"),
    ]:
        r = run_cli("compare", *args, "-b", "numpy")
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
        assert text in r.stderr.strip().splitlines()[-1], r.stderr
    assert (out / "index.html").read_bytes() == before and not (tmp_path / "x").exists()


# --- in a real browser ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.skip("no chromium (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


def open_page(browser, out: Path, width: int, height: int, **kw):
    page = browser.new_page(viewport={"width": width, "height": height}, **kw)
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"failed request: {r.url}"))
    page.goto((out / "index.html").as_uri())
    page.wait_for_load_state("load")
    return page, problems


def load_every_image(page) -> int:
    """Scroll each image into view (panels load lazily) and wait until it has decoded pixels."""
    imgs = page.locator("img")
    n = imgs.count()
    for i in range(n):
        img = imgs.nth(i)
        img.scroll_into_view_if_needed()
        img.evaluate("el => el.complete && el.naturalWidth > 0 ? null : new Promise((ok, no) => { el.onload = ok; el.onerror = no; })")
    bad = page.evaluate("[...document.images].filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src)")
    assert not bad, bad
    return n


REGIONS = """sec => [...sec.querySelectorAll('.viewport')].map(v => {
  const img = v.querySelector('img.zimg'), vr = v.getBoundingClientRect(), ir = img.getBoundingClientRect();
  const k = +sec.dataset.w / ir.width;  // image px per screen px
  return [(vr.left - ir.left) * k, (vr.top - ir.top) * k, vr.width * k, vr.height * k];
})"""


def same_region(regions, tol=0.05):  # image px: panels of any size show the same region
    first = regions[0]
    for r in regions[1:]:
        assert all(abs(a - b) <= tol for a, b in zip(r, first)), (first, r)
    return first


def test_in_chromium_images_load_the_slider_moves_and_the_zoom_syncs(report, browser, tmp_path_factory):
    out, res, _ = report
    shots = tmp_path_factory.mktemp("screenshots")
    page, problems = open_page(browser, out, 1280, 800)
    n = load_every_image(page)
    assert n == sum(2 + 1 + 2 * len(r["rows"]) for r in res["images"])  # slider's two + original + each codec and its map

    sec = page.locator("section.image").first
    sec.locator(".viewport.slider").scroll_into_view_if_needed()
    assert sec.locator(".viewport.slider").bounding_box()["height"] <= 0.8 * 800  # the whole comparison fits the window
    w, h = res["images"][0]["width"], res["images"][0]["height"]
    clip = sec.locator(".layer.b")

    def split() -> float:
        return float(re.search(r"inset\(0(?:px)? 0(?:px)? 0(?:px)? ([\d.]+)%\)", clip.evaluate("e => e.style.clipPath")).group(1))

    assert split() == 50
    sec.locator("input.split").focus()
    page.keyboard.press("ArrowLeft")  # the keyboard moves the divider
    assert split() < 50
    box = sec.locator(".viewport.slider").bounding_box()
    handle = sec.locator(".handle").bounding_box()
    page.mouse.move(handle["x"] + handle["width"] / 2, handle["y"] + handle["height"] / 2)
    page.mouse.down()
    page.mouse.move(box["x"] + 0.25 * box["width"], box["y"] + box["height"] / 2, steps=5)
    page.mouse.up()
    assert split() == pytest.approx(25, abs=1)  # and so does a drag
    sec.locator("select.pick[data-side=b]").select_option("error:jpeg")  # any two views, maps included
    assert sec.locator(".layer.b img").evaluate("e => e.getAttribute('src')").endswith("jpeg-error.png")

    x0, y0, rw, rh = same_region(sec.evaluate(REGIONS))
    assert (x0, y0, rw, rh) == pytest.approx((0, 0, w, h), abs=0.5)  # fit: the whole image everywhere
    sec.locator("button[data-zoom=in]").click()
    x0, y0, rw, rh = same_region(sec.evaluate(REGIONS))
    assert (rw, rh) == pytest.approx((w / 2, h / 2), abs=0.5) and (x0 + rw / 2, y0 + rh / 2) == pytest.approx((w / 2, h / 2), abs=0.5)

    panel = sec.locator(".panel .viewport").nth(3)  # a drag in one panel pans every panel
    panel.scroll_into_view_if_needed()
    pb = panel.bounding_box()
    page.mouse.move(pb["x"] + pb["width"] / 2, pb["y"] + pb["height"] / 2)
    page.mouse.down()
    page.mouse.move(pb["x"] + pb["width"] / 2 + 40, pb["y"] + pb["height"] / 2 + 20, steps=4)
    page.mouse.up()
    x1, y1, _, _ = same_region(sec.evaluate(REGIONS))
    assert x1 < x0 and y1 < y0
    panel.dblclick(position={"x": pb["width"] * 0.2, "y": pb["height"] * 0.3})  # zooms in there, everywhere
    x2, y2, rw2, _ = same_region(sec.evaluate(REGIONS))
    assert rw2 == pytest.approx(rw / 2, abs=0.5)
    panel.focus()
    page.keyboard.press("0")
    assert same_region(sec.evaluate(REGIONS)) == pytest.approx((0, 0, w, h), abs=0.5)
    other = page.locator("section.image").nth(1)  # each image has its own zoom
    ow, oh = res["images"][1]["width"], res["images"][1]["height"]
    assert same_region(other.evaluate(REGIONS)) == pytest.approx((0, 0, ow, oh), abs=0.5)

    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(shots / "report-1280x800.png"))
    assert (shots / "report-1280x800.png").stat().st_size > 10_000
    assert not problems, problems
    page.close()


def test_in_chromium_the_page_fits_a_phone(report, browser, tmp_path_factory):
    out, res, _ = report
    shots = tmp_path_factory.mktemp("screenshots-phone")
    page, problems = open_page(browser, out, 390, 844, is_mobile=True, has_touch=True, device_scale_factor=2)
    load_every_image(page)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # wide tables scroll inside their box, not the page
    sec = page.locator("section.image").first
    for v in sec.locator(".viewport").all():
        assert v.bounding_box()["width"] <= 390
    sec.locator("input.split").focus()
    page.keyboard.press("ArrowRight")
    assert "50%" not in sec.locator(".layer.b").evaluate("e => e.style.clipPath")
    sec.scroll_into_view_if_needed()
    page.screenshot(path=str(shots / "report-390x844.png"))
    assert (shots / "report-390x844.png").stat().st_size > 10_000
    assert not problems, problems
    page.close()


def test_the_classical_search_finds_the_largest_file_within_a_budget():
    rgb = np.asarray(Image.open(PHOTO).convert("RGB"))[:96, :128]
    enc = classical.Encoder("jpeg", rgb, 1)
    sizes = {q: len(classical.encode("jpeg", rgb, q, 1)) for q in range(1, 101)}
    budget = sizes[37]
    best, ok = classical.largest_within(enc, budget)
    assert ok and best.quality == max(q for q, n in sizes.items() if n <= budget)
    assert len(enc.files) <= 12  # a bracketed secant, not a scan
    tiny, ok = classical.largest_within(classical.Encoder("jpeg", rgb, 1), 10)
    assert not ok and tiny.quality == 1
