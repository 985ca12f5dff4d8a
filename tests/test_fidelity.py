"""Honest fidelity: the measured quality travels with the file, targets are met, and --max-error N
bounds every pixel of every channel on every backend."""

from __future__ import annotations

import hashlib
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_conformance import backends_here

from edgecodec import codec, metrics, targets
from edgecodec.bundle import Bundle
from edgecodec.entropy import residual
from edgecodec.entropy.intsynth import IntegerSynthesis
from edgecodec.errors import BitstreamError, CorruptStreamError, InputError
from edgecodec.io import read_image
from edgecodec.runtimes.numpy_backend import NumpyBackend

HERE = Path(__file__).resolve().parent
V2 = HERE / "golden" / "v2"
CONFORMANCE = HERE / "conformance"
PHOTO = Path(codec.__file__).parent / "data" / "kodim23.png"


@pytest.fixture(scope="module")
def shipped():
    return Bundle()


@pytest.fixture(scope="module")
def numpy_be(shipped):
    return NumpyBackend(shipped)


@pytest.fixture(scope="module")
def crop():
    return np.ascontiguousarray(read_image(PHOTO)[160:256, 300:428])


@pytest.fixture(scope="module")
def everywhere(shipped):
    return backends_here(shipped, None)


def images() -> dict[str, np.ndarray]:
    """Conformance crops plus images made here: noise, saturated, a ramp, odd shapes."""
    rng = np.random.default_rng(7)
    out = {p.name.split(".")[0]: read_image(p) for p in sorted(CONFORMANCE.glob("*.source.png"))}
    out["noise"] = rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)
    out["black"] = np.zeros((32, 48, 3), np.uint8)
    out["white"] = np.full((33, 20, 3), 255, np.uint8)
    out["ramp"] = np.broadcast_to(np.arange(64, dtype=np.uint8)[None, :, None] * 4, (16, 64, 3)).copy()
    out["tiny"] = rng.integers(0, 256, (1, 1, 3), dtype=np.uint8)
    out["column"] = rng.integers(0, 256, (37, 1, 3), dtype=np.uint8)
    return out


# --- the measured quality in the file ---


@pytest.mark.parametrize("quality", [1, 4.5625, 10])
def test_stored_metrics_equal_a_recomputation_from_the_decoded_file(quality, crop, shipped, numpy_be):
    enc = codec.encode(crop, quality, numpy_be, shipped)
    dec = codec.decode(enc.data, numpy_be, shipped)
    stored, again = dec.metrics, metrics.measure(crop, dec.image)
    assert stored == enc.metrics and dec.header.quality == quality
    assert abs(stored.psnr - again.psnr) <= 1 / 512 and abs(stored.ms_ssim - again.ms_ssim) <= 1 / 131070
    assert (stored.max_error, stored.p999_error) == (again.max_error, again.p999_error)
    assert (stored.backend, stored.device, stored.decoder) == ("numpy", "CPU", "full")


def test_a_fractional_quality_lies_between_its_levels(crop, shipped, numpy_be):
    sizes = [len(codec.encode(crop, q, numpy_be, shipped).data) for q in (4, 4.5, 5)]
    assert sizes[0] < sizes[1] < sizes[2]


def test_fractional_gains_are_built_from_exactly_rounded_operations_only(shipped):
    """Four square roots and k products: Python's math (correctly rounded too) gives the same bits."""
    g, ig = shipped.gains(6 + 5 / 16)
    table = shipped.transforms
    for got, name in ((g, "gain"), (ig, "inv_gain")):
        lo, hi = table[name][5].astype(np.float64), table[name][6].astype(np.float64)
        want = []
        for a, b in zip(lo.tolist(), hi.tolist()):
            r = b / a
            for _ in range(4):
                r = math.sqrt(r)
            for _ in range(5):
                a *= r
            want.append(a)
        assert np.array_equal(got.ravel(), np.asarray(want, np.float32))


def test_version_1_files_still_decode(shipped, numpy_be):
    data = (CONFORMANCE / "face_q04.edgc").read_bytes()
    dec = codec.decode(data, numpy_be, shipped)
    assert dec.header.version == 1 and dec.metrics is None and dec.image.shape == (96, 160, 3)


# --- targets instead of levels ---


@pytest.mark.parametrize("goal", [22.5, 25.0, 27.3, 29.8])
def test_find_meets_a_quality_goal_within_its_tolerance_in_few_trials(goal):
    curve = lambda i: 20 + 0.07 * i + 0.3 * math.sin(i / 9)  # noqa: E731 - increasing, not linear
    best, seen = targets.find(curve, 16, 160, goal, 0.1, True, 1 / 16)
    assert curve(best) >= goal and (curve(best) - goal <= 0.1 or curve(best - 1) < goal)
    assert len(seen) <= 6


def test_find_reports_an_unreachable_goal_and_a_budget_below_the_smallest():
    assert targets.find(lambda i: 20 + 0.01 * i, 16, 160, 40.0, 0.1, True, 1 / 16)[0] is None
    assert targets.find(lambda i: 1000.0 + i, 16, 160, 500.0, 10.0, False, 1.0)[0] is None


@pytest.mark.parametrize("goal", [28.0, 32.0])
def test_target_psnr_is_met_with_the_setting_found(goal, crop, shipped, numpy_be):
    enc = codec.encode(crop, None, numpy_be, shipped, target_psnr=goal)
    got = metrics.psnr(crop, codec.decode(enc.data, numpy_be, shipped).image)
    below = [t for t in enc.trials if t["quality"] == enc.quality - 1 / 16]
    # within the tolerance, or the next step down was tried and misses (a small crop moves in big steps)
    assert goal <= enc.psnr and (enc.psnr <= goal + targets.PSNR_TOLERANCE_DB or (below and below[0]["psnr"] < goal))
    assert abs(got - enc.psnr) < 1e-9 and len(enc.trials) <= targets.MAX_TRIALS  # Kodak: <= 6 (benchmarks/fidelity.py)


def test_target_ms_ssim_and_max_bytes(crop, shipped, numpy_be):
    enc = codec.encode(crop, None, numpy_be, shipped, target_ms_ssim=0.97)
    assert enc.metrics.ms_ssim >= 0.97 - 1 / 65535
    budget = 400
    enc = codec.encode(crop, None, numpy_be, shipped, max_bytes=budget)
    assert len(enc.data) <= budget and len(enc.trials) <= targets.MAX_TRIALS
    above = codec.encode(crop, enc.quality + 1 / 16, numpy_be, shipped)
    assert len(above.data) > budget * (1 - targets.BYTES_TOLERANCE)  # not far below what fits


def test_unreachable_targets_are_one_line_input_errors(crop, shipped, numpy_be):
    with pytest.raises(InputError, match="cannot reach 80 dB"):
        codec.encode(crop, None, numpy_be, shipped, target_psnr=80)
    with pytest.raises(InputError, match="cannot fit 10 bytes"):
        codec.encode(crop, None, numpy_be, shipped, max_bytes=10)
    with pytest.raises(InputError, match="at most one"):
        codec.encode(crop, None, numpy_be, shipped, target_psnr=30, max_bytes=1000)


# --- the hard bound ---


@pytest.mark.parametrize("n", [0, 1, 4])
def test_every_pixel_is_within_the_bound_on_every_backend(n, shipped, numpy_be, everywhere):
    assert {"numpy", "onnxruntime"} <= set(everywhere)
    for name, img in images().items():
        enc = codec.encode(img, None, numpy_be, shipped, max_error=n)
        assert metrics.max_error(img, enc.reconstruction) <= n, name
        for be_name, be in everywhere.items():
            out = codec.decode(enc.data, be, shipped).image
            assert np.array_equal(out, enc.reconstruction), (name, be_name)
        assert enc.metrics.max_error == metrics.max_error(img, enc.reconstruction) <= n


def test_gray_images_are_bounded_on_their_one_channel(shipped, numpy_be):
    img = np.ascontiguousarray(read_image(PHOTO)[:40, :70].mean(axis=2).astype(np.uint8))
    enc = codec.encode(img, None, numpy_be, shipped, max_error=2)
    out = codec.decode(enc.data, numpy_be, shipped).image
    assert out.shape == img.shape and metrics.max_error(img, out) <= 2


def test_the_residual_layer_refuses_16_bit_images(shipped, numpy_be):
    with pytest.raises(InputError, match="8-bit"):
        codec.encode(np.zeros((8, 8, 3), np.uint16), None, numpy_be, shipped, max_error=1)


def test_damaged_residual_streams_are_typed_errors(crop, shipped, numpy_be):
    data = codec.encode(crop[:48, :64], None, numpy_be, shipped, max_error=2).data
    rng = np.random.default_rng(3)
    for cut in rng.integers(0, len(data), 40):
        with pytest.raises(BitstreamError):
            codec.decode(data[: int(cut)], numpy_be, shipped)
    base = np.zeros((4, 4, 3), np.uint8)
    subs = {i: (lanes, p) for i, lanes, p in residual.encode(base + 9, base, 1)}
    subs[residual.FIRST_ID] = (1, subs[residual.FIRST_ID][1][:-3])
    with pytest.raises(CorruptStreamError):
        residual.decode(subs, base, 1)


def test_the_residual_tables_are_integer_built_and_estimates_are_close(crop):
    tab = residual.family()
    assert (np.diff(tab.cdf, axis=1) >= 0).all() and (tab.cdf[:, -1] == 1 << residual.PRECISION).all()
    base = np.clip(crop.astype(int) + np.random.default_rng(0).integers(-9, 10, crop.shape), 0, 255).astype(np.uint8)
    for n in (0, 3):
        real = sum(len(p) for _, _, p in residual.encode(crop, base, n))
        assert abs(residual.estimate_bytes(crop, base, n) - real) <= 0.05 * real + 16


# --- the integer-exact base (its arithmetic: tests/test_intsynth.py) ---


def test_integer_synthesis_is_independent_of_blas_threads(shipped):
    code = (
        "import hashlib, numpy as np; from edgecodec.bundle import Bundle; from edgecodec.entropy.intsynth import IntegerSynthesis; "
        "b = Bundle(); y = np.random.default_rng(5).integers(-30, 31, (b.latent.y_channels, 6, 8)); "
        "print(hashlib.sha256(IntegerSynthesis(b)(y, b.gains(9.5)[1], 96, 128).tobytes()).hexdigest())"
    )
    outs = set()
    for threads in ("1", "2"):
        env = {"OPENBLAS_NUM_THREADS": threads, "OMP_NUM_THREADS": threads, "PATH": "/usr/bin:/bin"}
        outs.add(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout)
    assert len(outs) == 1


def test_integer_synthesis_is_close_to_the_float_decoders(crop, shipped, numpy_be):
    enc = codec.encode(crop, 6, numpy_be, shipped)
    x = IntegerSynthesis(shipped)(enc.parse.y, shipped.gains(6)[1], *crop.shape[:2])
    assert metrics.psnr(x, enc.reconstruction) >= 45.0  # measured 57-59 dB on Kodak


# --- v2 goldens: the exact output of a residual stream is the same bytes on every device ---


def golden_streams() -> dict[str, tuple]:
    img = read_image(CONFORMANCE / "face.source.png")
    return {"face_q4.5": (img, {"quality": 4.5}), "face_e2": (img, {"max_error": 2}), "face_e0": (img, {"max_error": 0})}


def write_v2_goldens() -> None:
    bundle = Bundle()
    be = NumpyBackend(bundle)
    V2.mkdir(parents=True, exist_ok=True)
    expected = {}
    for name, (img, kw) in golden_streams().items():
        enc = codec.encode(img, kw.pop("quality", None), be, bundle, **kw)
        (V2 / f"{name}.edgc").write_bytes(enc.data)
        expected[name] = {"parse_sha256": enc.parse.digest(), "pixels_sha256": hashlib.sha256(enc.reconstruction.tobytes()).hexdigest()}
    (V2 / "expected.json").write_text(json.dumps(expected, indent=1, sort_keys=True))


@pytest.mark.parametrize("name", sorted(golden_streams()))
def test_v2_goldens_parse_and_residual_streams_decode_to_the_recorded_pixels(name, shipped, everywhere):
    expected = json.loads((V2 / "expected.json").read_text())[name]
    data = (V2 / f"{name}.edgc").read_bytes()
    header, parse = codec.parse_stream(data, shipped)
    assert header.version == 2 and header.metrics is not None and parse.digest() == expected["parse_sha256"]
    if header.max_error is not None:
        for be in everywhere.values():
            assert hashlib.sha256(codec.decode(data, be, shipped).image.tobytes()).hexdigest() == expected["pixels_sha256"]


if __name__ == "__main__":
    write_v2_goldens()
