"""The command line: one-line errors with exit code 2 for bad input, atomic outputs, no overwrite without --force."""

import os
import stat
import subprocess
import sys
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from tiny_model import GOLDEN, synthetic_image

MODEL = ["--model", str(GOLDEN / "tiny_bundle"), "--backend", "numpy"]


def run(*args):
    return subprocess.run([sys.executable, "-m", "edgecodec.cli", *map(str, args)], capture_output=True, text=True)


@pytest.fixture()
def photo(tmp_path):
    p = tmp_path / "photo.png"
    cv2.imwrite(str(p), synthetic_image(37, 53, 4)[:, :, ::-1])
    return p


def test_encode_decode_info(photo, tmp_path):
    r = run("encode", photo, "-o", tmp_path / "a.edgc", "-q", 2, *MODEL)
    assert r.returncode == 0, r.stderr
    assert "bpp" in r.stdout and "PSNR" in r.stdout
    r = run("decode", tmp_path / "a.edgc", "-o", tmp_path / "a.png", *MODEL)
    assert r.returncode == 0, r.stderr
    assert cv2.imread(str(tmp_path / "a.png")).shape == (37, 53, 3)
    r = run("info", tmp_path / "a.edgc")
    assert r.returncode == 0 and "53x37" in r.stdout and "quality 2" in r.stdout


@pytest.mark.parametrize(
    "img",
    [
        np.zeros((1, 1), np.uint8),
        synthetic_image(17, 31)[:, :, 0],
        np.dstack([synthetic_image(17, 31), np.full((17, 31), 9, np.uint8)]),
        synthetic_image(17, 31).astype(np.uint16) * 257,
    ],
    ids=["1x1-gray", "gray", "rgba", "16bit"],
)
def test_odd_images(img, tmp_path):
    src = tmp_path / "in.png"
    cv2.imwrite(str(src), img)
    assert run("encode", src, "-o", tmp_path / "x.edgc", *MODEL).returncode == 0
    r = run("decode", tmp_path / "x.edgc", "-o", tmp_path / "x.png", *MODEL)
    assert r.returncode == 0, r.stderr
    out = cv2.imread(str(tmp_path / "x.png"), cv2.IMREAD_UNCHANGED)
    channels = 1 if img.ndim == 2 else 3
    assert out.shape[:2] == img.shape[:2] and (out.ndim == 2) == (channels == 1)
    assert out.dtype == img.dtype


def expect_clean_failure(r, code, text):
    assert r.returncode == code, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and text in lines[0], r.stderr


def test_corrupt_and_truncated_streams_exit_2_without_output(photo, tmp_path):
    run("encode", photo, "-o", tmp_path / "a.edgc", *MODEL)
    data = (tmp_path / "a.edgc").read_bytes()
    (tmp_path / "t.edgc").write_bytes(data[: len(data) // 2])
    expect_clean_failure(run("decode", tmp_path / "t.edgc", "-o", tmp_path / "t.png", *MODEL), 2, "truncated")
    assert not (tmp_path / "t.png").exists()
    bad = bytearray(data)
    bad[-3] ^= 0x10
    (tmp_path / "b.edgc").write_bytes(bytes(bad))
    expect_clean_failure(run("decode", tmp_path / "b.edgc", "-o", tmp_path / "b.png", *MODEL), 2, "corrupt")
    assert not list(tmp_path.glob("b.png*")) and not list(tmp_path.glob(".b.png*"))
    expect_clean_failure(run("decode", photo, "-o", tmp_path / "c.png", *MODEL), 2, "not an edgecodec file")


def test_bad_inputs_exit_2(photo, tmp_path):
    (tmp_path / "notimage.png").write_bytes(b"hello")
    expect_clean_failure(run("encode", tmp_path / "notimage.png", "-o", tmp_path / "x.edgc", *MODEL), 2, "not a readable image")
    expect_clean_failure(run("encode", tmp_path / "missing.png", "-o", tmp_path / "x.edgc", *MODEL), 2, "no such file")
    expect_clean_failure(run("encode", photo, "-o", tmp_path / "x.edgc", "-q", 99, *MODEL), 2, "quality must be")
    expect_clean_failure(run("encode", photo, "-o", tmp_path / "x.edgc", "--model", tmp_path), 2, "no model bundle")
    expect_clean_failure(run("encode", photo, "-o", tmp_path / "x.edgc", "--backend", "cuda9"), 2, "unknown backend")


def test_wrong_model_is_a_clear_error(photo, tmp_path):
    from tiny_model import build_tiny_bundle

    other = build_tiny_bundle(tmp_path / "other", seed=3)
    run("encode", photo, "-o", tmp_path / "a.edgc", *MODEL)
    r = run("decode", tmp_path / "a.edgc", "-o", tmp_path / "a.png", "--model", other, "--backend", "numpy")
    expect_clean_failure(r, 2, "made by model")


def test_never_overwrites_without_force(photo, tmp_path):
    out = tmp_path / "a.edgc"
    out.write_bytes(b"keep")
    expect_clean_failure(run("encode", photo, "-o", out, *MODEL), 2, "--force")
    assert out.read_bytes() == b"keep"
    assert run("encode", photo, "-o", out, "--force", *MODEL).returncode == 0
    assert out.read_bytes()[:4] == b"EDGC"


def test_directories_in_and_out(tmp_path):
    src = tmp_path / "imgs"
    src.mkdir()
    for i in range(3):
        cv2.imwrite(str(src / f"{i}.png"), synthetic_image(20 + i, 30, i))
    assert run("encode", src, "-o", tmp_path / "enc", *MODEL).returncode == 0
    assert sorted(p.name for p in (tmp_path / "enc").iterdir()) == ["0.edgc", "1.edgc", "2.edgc"]
    assert run("decode", tmp_path / "enc", "-o", tmp_path / "dec", *MODEL).returncode == 0
    assert sorted(p.name for p in (tmp_path / "dec").iterdir()) == ["0.png", "1.png", "2.png"]


@pytest.mark.parametrize("kind", ["empty", "truncated-png", "truncated-jpg", "not-an-image"])
def test_unreadable_images_exit_2(tmp_path, kind):
    png = cv2.imencode(".png", synthetic_image(37, 53))[1].tobytes()
    jpg = cv2.imencode(".jpg", synthetic_image(37, 53))[1].tobytes()
    data = {"empty": b"", "truncated-png": png[:-20], "truncated-jpg": jpg[: len(jpg) // 2], "not-an-image": b"hello, not an image"}
    src = tmp_path / ("in.jpg" if kind.endswith("jpg") else "in.png")
    src.write_bytes(data[kind])
    expect_clean_failure(run("encode", src, "-o", tmp_path / "x.edgc", *MODEL), 2, str(src))
    assert not (tmp_path / "x.edgc").exists()


def test_unknown_output_extension_fails_before_decoding(photo, tmp_path):
    run("encode", photo, "-o", tmp_path / "a.edgc", *MODEL)
    data = (tmp_path / "a.edgc").read_bytes()
    (tmp_path / "t.edgc").write_bytes(data[: len(data) // 2])  # decoding it would fail ("truncated")
    r = run("decode", tmp_path / "t.edgc", "-o", tmp_path / "out.xyz", "--model", tmp_path / "no-model", "--backend", "numpy")
    expect_clean_failure(r, 2, "cannot write images as '.xyz'")  # neither the stream nor the model was looked at
    assert not list(tmp_path.glob("*out.xyz*"))
    r = run("decode", tmp_path / "a.edgc", "-o", tmp_path / "out.tif", *MODEL)
    assert r.returncode == 0 and cv2.imread(str(tmp_path / "out.tif")).shape == (37, 53, 3)


def test_outputs_follow_umask(photo, tmp_path):
    old = os.umask(0o027)
    try:
        assert run("encode", photo, "-o", tmp_path / "a.edgc", *MODEL).returncode == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.edgc").stat().st_mode) == 0o640


def _tiling():
    return pytest.importorskip("edgecodec.tiling", reason="the library's memory limits (edgecodec.tiling) are not there yet")


def test_limit_flags_reach_the_library(photo, tmp_path, monkeypatch):
    """--max-memory is parsed by the library's parse_size; no flag means no keyword (the library's default)."""
    from typer.testing import CliRunner

    from edgecodec import cli_app, codec

    calls = []
    header = SimpleNamespace(width=53, height=37)
    fake_image = synthetic_image(37, 53)

    def fake_encode(image, quality, backend, bundle, **kw):
        calls.append(("encode", kw))
        m = SimpleNamespace(psnr=30.0, ms_ssim=0.9, max_error=9)
        return SimpleNamespace(data=b"EDGC", bpp=1.0, psnr=30.0, metrics=m, quality=quality, trials=[], max_error=None)

    def fake_decode(data, backend, bundle, **kw):
        calls.append(("decode", kw))
        return SimpleNamespace(image=fake_image, header=header, decoder=kw["decoder"], choice={}, metrics=None)

    monkeypatch.setattr(codec, "encode", fake_encode)
    monkeypatch.setattr(codec, "decode", fake_decode)
    model = [str(a) for a in MODEL]

    def invoke(*args):
        r = CliRunner().invoke(cli_app.app, [*map(str, args), *model])
        assert r.exit_code == 0, r.output
        return calls.pop()

    assert invoke("encode", photo, "-o", tmp_path / "a.edgc") == ("encode", {})
    (tmp_path / "b.edgc").write_bytes(b"EDGC")
    assert invoke("decode", tmp_path / "b.edgc", "-o", tmp_path / "b.png") == ("decode", {"decoder": "full"})
    assert invoke("decode", tmp_path / "b.edgc", "-o", tmp_path / "c.png", "--max-pixels", 5) == (
        "decode",
        {"max_pixels": 5, "decoder": "full"},
    )
    tiling = _tiling()
    size = tiling.parse_size("1.5G")
    assert invoke("encode", photo, "-o", tmp_path / "d.edgc", "--max-memory", "1.5G") == ("encode", {"max_memory": size})
    got = invoke("decode", tmp_path / "b.edgc", "-o", tmp_path / "e.png", "--max-memory", "1.5G", "--max-pixels", 7)
    assert got == ("decode", {"max_memory": size, "max_pixels": 7, "decoder": "full"})


def test_limit_flags_end_to_end(photo, tmp_path):
    _tiling()
    assert run("encode", photo, "-o", tmp_path / "a.edgc", "--max-memory", "64M", *MODEL).returncode == 0
    expect_clean_failure(run("encode", photo, "-o", tmp_path / "b.edgc", "--max-memory", "lots", *MODEL), 2, "lots")
    assert not (tmp_path / "b.edgc").exists()
    expect_clean_failure(run("decode", tmp_path / "a.edgc", "-o", tmp_path / "a.png", "--max-pixels", 100, *MODEL), 2, "1961 pixels")
    assert not (tmp_path / "a.png").exists()
    r = run("decode", tmp_path / "a.edgc", "-o", tmp_path / "a.png", "--max-pixels", 1961, "--max-memory", "64M", *MODEL)
    assert r.returncode == 0, r.stderr
    r = subprocess.run(
        [sys.executable, "-m", "edgecodec.cli", "info", str(tmp_path / "a.edgc")],
        capture_output=True,
        text=True,
        env={**os.environ, "EDGECODEC_MAX_PIXELS": "1000"},
    )
    assert r.returncode == 0 and "over the decoder's limit of 1000" in r.stdout, r.stdout
