"""Tiled transforms: window by window in bounded memory, with the whole-image result."""

from pathlib import Path

import numpy as np
import pytest
from tiny_model import synthetic_image

from edgecodec import codec, tiling
from edgecodec.bundle import Bundle
from edgecodec.runtimes.numpy_backend import NumpyBackend

SMALLEST = 16 << 20  # the smallest budget: 320-px windows (16-latent cores + 2-latent halo)


@pytest.mark.parametrize("n", [1, 4, 19, 20, 21, 24, 37, 64, 68, 69, 133, 500])
@pytest.mark.parametrize("core", tiling.CORES)
def test_windows_have_one_shape_and_their_cores_partition_the_axis_with_a_halo(n, core):
    wins = tiling.axis_windows(n, core)
    size = core + 2 * tiling.HALO
    assert [w[2] for w in wins] == [0] + [w[3] for w in wins[:-1]] and wins[-1][3] == n  # cores partition 0..n
    for start, stop, a, b in wins:
        assert 0 <= start <= a < b <= stop <= n
        assert stop - start == (size if n > size else n)  # one fixed window length whenever the axis is tiled
        assert a - start >= tiling.HALO or start == 0 == a  # context before the core, or the image's edge
        assert stop - b >= tiling.HALO or stop == n == b


def test_the_memory_budget_picks_the_largest_window_that_fits():
    be = NumpyBackend(Bundle())
    assert tiling.choose_core(be, "synthesis", SMALLEST) == 16
    assert tiling.choose_core(be, "synthesis", 1 << 30) == 64
    assert tiling.max_memory("1.5G") == 3 << 29 and tiling.max_memory(None) == tiling.DEFAULT_MAX_MEMORY


def test_an_image_that_fits_the_budget_runs_whole_unless_the_device_needs_fixed_shapes():
    be = NumpyBackend(Bundle())
    assert len(tiling.tiles_for(be, "synthesis", 32, 48, tiling.DEFAULT_MAX_MEMORY)) == 1  # a Kodak photo: one window
    assert len(tiling.tiles_for(be, "synthesis", 188, 252, tiling.DEFAULT_MAX_MEMORY)) > 1  # 12 MP
    be.fixed_windows = True
    assert {t.shape for t in tiling.tiles_for(be, "synthesis", 32, 48, SMALLEST)} == {(20, 20)}


def test_memory_limits_are_read_from_the_environment_and_validated(monkeypatch):
    monkeypatch.setenv(tiling.MEMORY_ENV, "300M")
    assert tiling.max_memory() == 300 << 20
    for bad in ("lots", "1T", "1M"):
        with pytest.raises(codec.InputError):
            tiling.parse_size(bad)


class Spy(NumpyBackend):
    """Records the input shape of every call."""

    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.shapes = []

    def analysis(self, x, gain):
        self.shapes.append(("analysis", x.shape[2:]))
        return super().analysis(x, gain)

    def synthesis(self, y_hat, inv_gain):
        self.shapes.append(("synthesis", (16 * y_hat.shape[2], 16 * y_hat.shape[3])))
        return super().synthesis(y_hat, inv_gain)


def _open(runtime, bundle):
    from edgecodec.errors import BackendUnavailableError
    from edgecodec.runtimes import open_backend

    try:
        return open_backend(runtime, bundle)
    except BackendUnavailableError as e:
        pytest.skip(str(e))


@pytest.fixture(scope="module")
def shipped():
    return Spy(Bundle())


@pytest.fixture(scope="module")
def photo():
    """A 400x700 crop of the shipped Kodak photo: 28x44 latents, 2x3 windows at the smallest budget."""
    from edgecodec.io import read_rgb8

    return read_rgb8(Path(tiling.__file__).parent / "data" / "kodim23.png")[50:450, 40:740]


def _whole_synthesis(be, y_hat, inv_gain, h, w):
    x_hat = be.synthesis(y_hat[None].astype(np.float32), inv_gain)[0, :, :h, :w].transpose(1, 2, 0)
    return np.clip(np.rint(x_hat * 255.0), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("runtime", ["numpy", "onnxruntime", "tflite", "openvino"])
def test_tiled_synthesis_equals_the_whole_image_synthesis_on_the_same_backend(runtime, shipped, photo):
    """Measured here at qualities 1, 6, 10: 0 levels apart on ONNX Runtime, LiteRT and OpenVINO (their
    outputs are bit-identical); numpy's float32 GEMMs block differently per matrix size, 1 level on 10
    of 840 000 values at quality 6."""
    be = shipped if runtime == "numpy" else _open(runtime, shipped.bundle)
    gain, inv_gain = shipped.bundle.gains(6)
    y, _ = shipped.analysis(codec.model_input(photo), gain)
    y_hat = np.rint(y[0])
    whole = _whole_synthesis(be, y_hat, inv_gain, 400, 700)
    shipped.shapes.clear()
    tiled = tiling.synthesis(be, y_hat, inv_gain, 400, 700, SMALLEST)
    if be is shipped:
        assert len(shipped.shapes) == 6 and {s for _, s in shipped.shapes} == {(320, 320)}  # one window shape
    diff = np.abs(tiled.astype(int) - whole)
    assert diff.max() <= 1 and np.mean(diff > 0) <= 1e-4


@pytest.mark.parametrize("runtime", ["numpy", "onnxruntime", "tflite", "openvino"])
def test_tiled_analysis_latents_round_as_the_whole_image_ones(runtime, shipped, photo):
    be = shipped if runtime == "numpy" else _open(runtime, shipped.bundle)
    gain, _ = shipped.bundle.gains(10)
    y_whole, z_whole = be.analysis(codec.model_input(photo), gain)
    y, z = tiling.analysis(be, photo, gain, shipped.bundle, SMALLEST)
    assert y.shape == y_whole.shape and z.shape == z_whole.shape
    assert np.mean(np.rint(y) == np.rint(y_whole)) >= 0.9999  # measured: 1.0 on the runtimes, 0.999996 on numpy
    if be is shipped:  # the whole-image hyper-analysis of a tiled encode is these numpy layers
        assert np.mean(np.rint(z) == np.rint(z_whole)) >= 0.999


def test_a_tiled_encode_decodes_to_what_the_encoder_reported(shipped, photo):
    enc = codec.encode(photo, 3, shipped, max_memory=SMALLEST)
    dec = codec.decode(enc.data, shipped, max_memory=SMALLEST)
    assert np.array_equal(dec.image, enc.reconstruction) and enc.psnr > 25
    # the same stream decoded in one window: the tiling is invisible in the pixels
    whole = codec.decode(enc.data, shipped, max_memory=1 << 30).image
    assert np.abs(whole.astype(int) - dec.image).max() <= 1


@pytest.mark.parametrize("h,w", [(1, 1), (17, 31), (320, 320), (321, 336), (16, 8000), (8000, 16)])
def test_odd_and_extreme_sizes_round_trip_under_the_smallest_budget(h, w, tiny_backend):
    img = synthetic_image(h, w, 3)
    enc = codec.encode(img, 2, tiny_backend, max_memory=SMALLEST)
    dec = codec.decode(enc.data, tiny_backend, max_memory=SMALLEST)
    assert dec.image.shape == img.shape and np.array_equal(dec.image, enc.reconstruction)
    whole = codec.decode(enc.data, tiny_backend, max_memory=1 << 30).image  # one window
    diff = np.abs(whole.astype(int) - dec.image)
    assert diff.max() <= 1 and np.mean(diff > 0) <= 1e-4  # numpy float32 blocking: 1 level on 1-2 pixels here


def test_a_header_claiming_more_pixels_than_the_limit_is_refused_before_any_work(tiny_backend, monkeypatch):
    enc = codec.encode(synthetic_image(40, 50), 1, tiny_backend)
    with pytest.raises(codec.InputError, match="max-pixels"):
        codec.decode(enc.data, tiny_backend, max_pixels=1999)
    monkeypatch.setenv(codec.PIXELS_ENV, "1999")
    with pytest.raises(codec.InputError, match="over the limit"):
        codec.decode(enc.data, tiny_backend)
    assert codec.decode(enc.data, tiny_backend, max_pixels=2000).image.shape == (40, 50, 3)


def test_windows_run_in_parallel_for_a_backend_that_does_not_thread_itself(tiny_bundle):
    """Every shipped backend threads itself (runtime intra-op threads, numpy's BLAS), so they keep
    ``tile_workers = 1``; one that does not gets a window per core, with the same result."""
    serial, parallel = NumpyBackend(tiny_bundle), NumpyBackend(tiny_bundle)
    parallel.tile_workers = 2
    img = synthetic_image(700, 500, 4)
    a = codec.encode(img, 2, serial, max_memory=SMALLEST)
    b = codec.encode(img, 2, parallel, max_memory=SMALLEST)
    assert a.data == b.data and np.array_equal(a.reconstruction, b.reconstruction)
