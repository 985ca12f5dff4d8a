"""`edgecodec compare ORIGINAL DECODED`: the metrics in one block, an error map, .edgc input, clean failures."""

from __future__ import annotations

import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgecodec import metrics

cv2 = pytest.importorskip("cv2")
PHOTO = Path(__file__).resolve().parents[1] / "edgecodec" / "data" / "kodim23.png"


def run(*args):
    return subprocess.run([sys.executable, "-m", "edgecodec.cli", *map(str, args)], capture_output=True, text=True)


def expect_clean_failure(r, text):
    assert r.returncode != 0, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert lines and text in lines[-1], r.stderr
    assert len([x for x in lines if x.startswith("error:")]) == 1, r.stderr


def write(path: Path, rgb: np.ndarray) -> Path:
    cv2.imwrite(str(path), rgb[:, :, ::-1] if rgb.ndim == 3 else rgb)
    return path


def value(out: str, label: str) -> str:
    m = re.search(rf"^  {re.escape(label)}\s+(.+)$", out, re.M)
    assert m, out
    return m.group(1)


@pytest.fixture()
def pair(tmp_path):
    """A 64x96 crop of the shipped photo and a distorted copy."""
    a = np.ascontiguousarray(cv2.imread(str(PHOTO))[200:264, 300:396, ::-1])
    rng = np.random.default_rng(0)
    b = np.clip(a.astype(np.int32) + rng.integers(-6, 7, a.shape), 0, 255).astype(np.uint8)
    b[10, 20] = 255 - a[10, 20]
    return a, b, write(tmp_path / "a.png", a), write(tmp_path / "b.png", b)


def test_prints_the_metrics(pair):
    a, b, pa, pb = pair
    r = run("compare", pa, pb)
    assert r.returncode == 0, r.stderr
    m = metrics.measure(a, b)
    assert value(r.stdout, "PSNR") == f"{m.psnr:.2f} dB (RGB)"
    assert value(r.stdout, "MS-SSIM").startswith(f"{m.ms_ssim:.5f}")
    assert value(r.stdout, "max error") == f"{m.max_error} levels"
    assert value(r.stdout, "99.9% error").startswith(f"{m.p999_error} levels")
    over = value(r.stdout, "over 8 levels")  # the default threshold, named in the label
    assert over.startswith(f"{100 * metrics.fraction_over(a, b, 8):.3f}% of pixels")
    r = run("compare", pa, pb, "--threshold", 3)
    assert value(r.stdout, "over 3 levels").startswith(f"{100 * metrics.fraction_over(a, b, 3):.3f}%")
    r = run("compare", pa, pa)
    assert r.returncode == 0 and value(r.stdout, "PSNR") == "inf dB (identical)" and value(r.stdout, "max error") == "0 levels"


def test_writes_an_error_map(pair, tmp_path):
    a, b, pa, pb = pair
    out = tmp_path / "maps" / "err.png"
    r = run("compare", pa, pb, "--map", out)
    assert r.returncode == 0, r.stderr and str(out) in r.stdout
    emap = cv2.imread(str(out))[:, :, ::-1]
    assert np.array_equal(emap, metrics.error_map(a, b))
    assert tuple(emap[10, 20]) == (255, 255, 255)  # the worst pixel
    expect_clean_failure(run("compare", pa, pb, "--map", out), "--force")  # no overwrite without --force
    r = run("compare", pa, pb, "--map", out, "--scale", 4, "--force")
    assert r.returncode == 0, r.stderr
    assert np.array_equal(cv2.imread(str(out))[:, :, ::-1], metrics.error_map(a, b, scale=4))


def test_an_edgc_file_is_decoded(pair, tmp_path):
    """A stream made with the shipped model: compare decodes it and measures what the encoder stored."""
    a, _, pa, _ = pair
    stream = tmp_path / "a.edgc"
    r = run("encode", pa, "-o", stream, "-q", 3, "--backend", "numpy")
    assert r.returncode == 0, r.stderr
    r = run("compare", pa, stream, "--backend", "numpy", "--decoder", "full", "--map", tmp_path / "e.png")
    assert r.returncode == 0, r.stderr
    assert "full decoder" in r.stdout.splitlines()[0]
    stored = value(r.stdout, "encoder stored")
    psnr = float(value(r.stdout, "PSNR").split()[0])
    assert math.isfinite(psnr) and f"PSNR {psnr:.2f} dB" in stored  # same decoder, same backend: the same pixels
    assert cv2.imread(str(tmp_path / "e.png")).shape == (64, 96, 3)


def test_bad_inputs_fail_in_one_line_without_a_map(pair, tmp_path):
    a, b, pa, pb = pair
    out = tmp_path / "err.png"
    small = write(tmp_path / "small.png", a[:30])
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not an image at all")
    stream = tmp_path / "s.edgc"
    run("encode", pa, "-o", stream, "-q", 2, "--backend", "numpy")
    data = stream.read_bytes()
    (tmp_path / "t.edgc").write_bytes(data[: len(data) // 2])
    bad = bytearray(data)
    bad[-3] ^= 0x10
    (tmp_path / "c.edgc").write_bytes(bytes(bad))
    (tmp_path / "n.edgc").write_bytes(b"hello")
    cases = [
        ((pa, tmp_path / "missing.png"), "no such file"),
        ((tmp_path / "missing.png", pb), "no such file"),
        ((pa, small), "differ in size"),
        ((pa, junk), "junk.png: not a readable image"),
        ((pa,), "two files"),
        ((pa, pb, pb), "two files"),
        ((pa, tmp_path / "t.edgc", "--backend", "numpy"), "truncated"),
        ((pa, tmp_path / "c.edgc", "--backend", "numpy"), "corrupt"),
        ((pa, tmp_path / "n.edgc", "--backend", "numpy"), "not an edgecodec file"),
        ((pa, pb, "--scale", 0), "--scale"),
        ((pa, pb, "--threshold", -1), "--threshold"),
    ]
    for args, text in cases:
        expect_clean_failure(run("compare", *args, "--map", out), text)
        assert not list(tmp_path.glob("*err.png*")), args
