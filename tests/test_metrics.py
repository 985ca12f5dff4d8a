"""edgecodec.metrics, the project's one implementation of the quality metrics: known values, the
MS-SSIM definition (against an independent scipy implementation), every image size, error maps."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from edgecodec import metrics

PHOTO = Path(__file__).resolve().parents[1] / "edgecodec" / "data" / "kodim23.png"


def _photo() -> np.ndarray:
    cv2 = pytest.importorskip("cv2")
    return np.ascontiguousarray(cv2.imread(str(PHOTO))[:, :, ::-1])


def _noisy(img: np.ndarray, amplitude: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(img.astype(np.int32) + rng.integers(-amplitude, amplitude + 1, img.shape), 0, 255).astype(np.uint8)


def _rand(shape, seed=1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def reference_ms_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """MS-SSIM as benchmarks/metrics.py defined it on scipy (5 scales, images of >= 176 px a side)."""
    from scipy.ndimage import correlate1d

    x, y = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if x.ndim == 2:
        x, y = x[:, :, None], y[:, :, None]
    t = np.arange(11, dtype=np.float64) - 5.0
    g = np.exp(-(t * t) / (2.0 * 1.5 * 1.5))
    g /= g.sum()

    def filt(v):
        return correlate1d(correlate1d(v, g, axis=0, mode="constant"), g, axis=1, mode="constant")[5:-5, 5:-5]

    def down(v):
        h, w = v.shape[:2]
        v = np.pad(v, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
        return 0.25 * (v[0::2, 0::2] + v[1::2, 0::2] + v[0::2, 1::2] + v[1::2, 1::2])

    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    value = np.ones(x.shape[2])
    weights = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
    for j, w in enumerate(weights):
        mx, my = filt(x), filt(y)
        sxx, syy, sxy = filt(x * x) - mx * mx, filt(y * y) - my * my, filt(x * y) - mx * my
        cs = (2 * sxy + c2) / (sxx + syy + c2)
        if j == len(weights) - 1:
            value *= np.maximum((cs * (2 * mx * my + c1) / (mx * mx + my * my + c1)).mean(axis=(0, 1)), 0) ** w
        else:
            value *= np.maximum(cs.mean(axis=(0, 1)), 0) ** w
            x, y = down(x), down(y)
    return float(value.mean())


def test_identical_images():
    a = _rand((40, 30, 3))
    m = metrics.measure(a, a.copy())
    assert m == metrics.Metrics(math.inf, 1.0, 0, 0)
    assert metrics.psnr(a, a) == math.inf and metrics.ms_ssim(a, a) == 1.0
    assert metrics.max_error(a, a) == 0 and metrics.error_percentile(a, a) == 0 and metrics.fraction_over(a, a, 0) == 0.0


@pytest.mark.parametrize("k", [1, 3, 17])
def test_constant_offset(k):
    a = np.full((20, 24, 3), 100, np.uint8)
    b = a + np.uint8(k)
    m = metrics.measure(a, b)
    assert m.psnr == pytest.approx(20 * math.log10(255 / k), abs=1e-12)
    assert metrics.psnr(a, b) == m.psnr
    assert m.max_error == m.p999_error == k == metrics.max_error(b, a)


def test_percentile_semantics():
    # 1000 values: 990 zeros, 9 fives, one 40 -> 99.9% (999 values) are within 5; 99.0% within 0; 100% within 40
    d = np.zeros(1000, np.int64)
    d[990:999], d[999] = 5, 40
    a = np.zeros((10, 100), np.uint8)
    b = d.reshape(10, 100).astype(np.uint8)
    assert metrics.error_percentile(a, b, 99.9) == 5
    assert metrics.error_percentile(a, b, 99.0) == 0
    assert metrics.error_percentile(a, b, 99.1) == 5
    assert metrics.error_percentile(a, b, 100) == 40 == metrics.max_error(a, b)
    assert metrics.error_percentile(a, b, 0) == 0
    assert metrics.measure(a, b).p999_error == 5
    with pytest.raises(ValueError):
        metrics.error_percentile(a, b, 101)


def test_fraction_over_counts_pixels_by_their_largest_channel():
    a = np.zeros((2, 5, 3), np.uint8)
    b = a.copy()
    b[0, 0] = (9, 0, 0)  # over 8 in one channel only
    b[0, 1] = (8, 8, 8)  # not over 8
    b[1, 4, 2] = 200
    assert metrics.fraction_over(a, b, 8) == pytest.approx(2 / 10)
    assert metrics.fraction_over(a, b, 7) == pytest.approx(3 / 10)
    assert metrics.fraction_over(a, b, 200) == 0.0
    assert metrics.fraction_over(a[..., 0], b[..., 0], 0) == pytest.approx(2 / 10)  # gray: the value itself


def test_banded_psnr_equals_direct_float64(monkeypatch):
    a, b = _rand((61, 47, 3), 2), _rand((61, 47, 3), 3)
    direct = 10 * math.log10(255.0**2 / float(np.mean((a.astype(np.float64) - b) ** 2)))
    monkeypatch.setattr(metrics, "_BAND", 500)  # many bands of a few rows
    assert metrics.psnr(a, b) == pytest.approx(direct, abs=1e-12)
    assert metrics.measure(a, b).psnr == metrics.psnr(a, b)
    f = a.astype(np.float32) + 0.25
    assert metrics.psnr(f, b) == pytest.approx(10 * math.log10(255.0**2 / float(np.mean((f.astype(np.float64) - b) ** 2))), abs=1e-9)


def test_ms_ssim_matches_the_scipy_definition():
    pytest.importorskip("scipy")
    photo = _photo()
    for crop in (photo[:256, :320], photo[101:300, 37:250], photo):  # even, odd (199x213) and 768x512
        for amplitude in (3, 25):
            b = _noisy(crop, amplitude, seed=amplitude)
            assert metrics.ms_ssim(crop, b) == pytest.approx(reference_ms_ssim(crop, b), abs=1e-9)
    gray = photo[:200, :180, 1]
    assert metrics.ms_ssim(gray, _noisy(gray, 9)) == pytest.approx(reference_ms_ssim(gray, _noisy(gray, 9)), abs=1e-9)


def test_ms_ssim_falls_with_distortion():
    crop = _photo()[:192, :192]
    values = [metrics.ms_ssim(crop, _noisy(crop, amp)) for amp in (1, 4, 16, 64)]
    assert 1.0 > values[0] > values[1] > values[2] > values[3] > 0


@pytest.mark.parametrize("shape", [(1, 1, 3), (1, 1), (2, 3, 3), (7, 5, 3), (5, 7), (10, 40, 3), (17, 31, 3), (40, 90, 3), (100, 130)])
def test_ms_ssim_is_defined_for_every_size(shape):
    a = _rand(shape, 4)
    assert metrics.ms_ssim(a, a.copy()) == 1.0
    mild, strong = metrics.ms_ssim(a, _noisy(a, 4)), metrics.ms_ssim(a, _noisy(a, 80))
    assert math.isfinite(mild) and 0.0 <= strong < mild < 1.0
    m = metrics.measure(a, _noisy(a, 4))
    assert m.ms_ssim == mild and 1 <= m.max_error <= 4


def test_inputs_are_checked():
    a = _rand((8, 8, 3))
    with pytest.raises(ValueError, match="shape"):
        metrics.measure(a, a[:7])
    with pytest.raises(ValueError, match="shape"):
        metrics.ms_ssim(a, a[..., 0])
    with pytest.raises(ValueError):
        metrics.psnr(np.zeros((0, 3, 3), np.uint8), np.zeros((0, 3, 3), np.uint8))
    with pytest.raises(ValueError):
        metrics.max_error(a.astype(np.float32), a)
    with pytest.raises(ValueError):
        metrics.psnr(a[None], a[None])


def test_error_map():
    a = _rand((30, 20, 3), 5)
    b = _noisy(a, 6)
    a[17, 3, 1], b[17, 3, 1] = 0, 200  # the worst pixel, by far
    emap = metrics.error_map(a, b)
    assert emap.shape == (30, 20, 3) and emap.dtype == np.uint8
    brightness = emap.astype(np.int32).sum(axis=2)
    assert np.unravel_index(np.argmax(brightness), brightness.shape) == (17, 3)
    assert tuple(emap[17, 3]) == (255, 255, 255)
    assert (emap[np.abs(a.astype(int) - b).max(axis=2) == 0] == 0).all()  # no error: black
    # brightness rises with the error, and --scale saturates
    err = np.abs(a.astype(int) - b).max(axis=2)
    order = np.argsort(err, axis=None, kind="stable")
    assert (np.diff(brightness.ravel()[order]) >= 0).all()
    assert (metrics.error_map(a, b, scale=3)[err >= 3] == 255).all()
    assert metrics.error_map(a, a).max() == 0
    assert metrics.error_map(a[..., 0], b[..., 0]).shape == (30, 20, 3)
    with pytest.raises(ValueError):
        metrics.error_map(a, b, scale=0)


def test_bands_do_not_change_the_results(monkeypatch):
    """Bands of a few rows give the same result as large ones (so 12 MP photos need no whole-image copies)."""
    crop = _photo()[:200, :260]
    b = _noisy(crop, 10)
    ref, emap = metrics.ms_ssim(crop, b), metrics.error_map(crop, b)
    monkeypatch.setattr(metrics, "_BAND", 3000)
    monkeypatch.setattr(metrics, "_SSIM_ROWS", 5)
    assert metrics.ms_ssim(crop, b) == pytest.approx(ref, abs=1e-12)
    assert metrics.error_map(crop, b).tobytes() == emap.tobytes()


def test_no_scipy_or_opencv_at_import():
    import subprocess
    import sys

    code = "import sys, edgecodec.metrics; bad = {'scipy', 'cv2', 'torch'} & set(sys.modules); assert not bad, bad"
    subprocess.run([sys.executable, "-c", code], check=True)
