"""The command line: one-line errors with exit code 2 for bad input, atomic outputs, no overwrite without --force."""

import subprocess
import sys

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
