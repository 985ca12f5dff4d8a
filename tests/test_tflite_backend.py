"""The tflite target and backend: int8 TFLite transforms added to (a copy of) the shipped bundle."""

import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow")
pytest.importorskip("ai_edge_litert")
pytest.importorskip("torch")

from edgecodec import codec  # noqa: E402
from edgecodec.bundle import Bundle  # noqa: E402
from edgecodec.io import read_image  # noqa: E402
from edgecodec.runtimes.tflite_backend import TfliteBackend  # noqa: E402

DATA = Path(__file__).resolve().parents[1] / "edgecodec" / "data"


def _export(tmp_path_factory, full_integer: bool) -> Bundle:
    from edgecodec.export.tflite_target import export_tflite

    out = tmp_path_factory.mktemp("tflite") / "bundle"
    shutil.copytree(DATA / "bundle", out)
    calib = [read_image(p) for p in sorted((DATA / "calib").glob("*.png"))[:2]]
    export_tflite(DATA / "weights", out, calib, full_integer=full_integer)
    return Bundle(out)


@pytest.fixture(scope="module")
def tflite_bundle(tmp_path_factory):
    return _export(tmp_path_factory, full_integer=False)


@pytest.fixture(scope="module")
def backends(tflite_bundle):
    pytest.importorskip("onnxruntime")
    from edgecodec.runtimes.onnxruntime_backend import OnnxRuntimeBackend

    return OnnxRuntimeBackend(tflite_bundle, threads=2), TfliteBackend(tflite_bundle, threads=2)


def _photo_crop() -> np.ndarray:
    return read_image(DATA / "kodim23.png")[192:320, 288:480]  # 128x192


def test_manifest_lists_the_tflite_artifacts(tflite_bundle):
    art = tflite_bundle.manifest["artifacts"]["tflite"]
    assert art["precision"] == "int8" and set(art["files"]) == {"analysis", "synthesis"} and art["full_integer"] is False
    assert tflite_bundle.artifact("tflite", "synthesis").name == "synthesis.int8.tflite"
    assert "onnx" in tflite_bundle.manifest["artifacts"]  # added to the bundle, not replacing it


def test_integer_latents_enter_the_synthesis_unquantized(tflite_bundle):
    from edgecodec.export.tflite_target import input_quantization

    assert input_quantization(tflite_bundle.artifact("tflite", "synthesis"), "y_hat") is None  # a float MUL takes it


def test_tflite_and_onnxruntime_decode_each_others_streams(backends):
    ort_be, tfl_be = backends
    img = _photo_crop()
    for q in (1, 8, tfl_be.bundle.levels):
        for enc_be in (ort_be, tfl_be):
            enc = codec.encode(img, q, enc_be)
            a, b = codec.decode(enc.data, ort_be), codec.decode(enc.data, tfl_be)
            assert a.parse.digest() == b.parse.digest() == enc.parse.digest()
            assert codec.psnr(a.image, b.image) >= 40.0, (q, enc_be.name)


def test_inputs_of_different_sizes_in_a_row(backends):
    _, tfl_be = backends
    lat = tfl_be.bundle.latent
    gain, inv_gain = tfl_be.bundle.gains(3)
    rng = np.random.default_rng(0)
    for h, w in ((64, 128), (128, 64), (64, 128)):
        y, z = tfl_be.analysis(rng.random((1, 3, h, w), dtype=np.float32), gain)
        assert y.shape == (1, lat.y_channels, h // 16, w // 16) and z.shape == (1, lat.z_channels, h // 64, w // 64)
        x_hat = tfl_be.synthesis(np.clip(np.rint(y), -127, 127), inv_gain)
        assert x_hat.shape == (1, 3, h, w) and np.isfinite(x_hat).all()


def test_convolutions_run_in_int8_except_those_next_to_the_gains(backends):
    _, tfl_be = backends
    syn = [dtype for name, dtype in tfl_be.executed_ops("synthesis") if name == "CONV_2D"]
    assert syn[0] == "float32" and set(syn[1:]) == {"int8"}  # the conv after the inverse-gain multiply is fp32
    ana = [dtype for name, dtype in tfl_be.executed_ops("analysis") if name == "CONV_2D"]
    # the two before the gain and the one after it (as in the ONNX graph), and the one making z
    assert ana.count("float32") == 4 and ana.count("int8") == len(ana) - 4


def test_synthesis_output_lies_on_the_8_bit_pixel_grid(backends):
    _, tfl_be = backends
    gain, inv_gain = tfl_be.bundle.gains(10)
    y, _ = tfl_be.analysis(codec.model_input(_photo_crop()), gain)
    x_hat = tfl_be.synthesis(np.clip(np.rint(y), -127, 127), inv_gain)
    assert x_hat.min() >= 0.0 and x_hat.max() <= 1.0
    np.testing.assert_allclose(x_hat * 255, np.rint(x_hat * 255), atol=1e-3)  # no second, coarser grid in between


def test_full_integer_export_quantizes_y_hat_exactly(tmp_path_factory):
    pytest.importorskip("onnxruntime")
    from edgecodec.export.tflite_target import input_quantization
    from edgecodec.runtimes.onnxruntime_backend import OnnxRuntimeBackend

    bundle = _export(tmp_path_factory, full_integer=True)
    assert bundle.manifest["artifacts"]["tflite"]["full_integer"] is True
    assert input_quantization(bundle.artifact("tflite", "synthesis"), "y_hat") == (1.0, 0)
    tfl_be = TfliteBackend(bundle, threads=2)
    for role in ("analysis", "synthesis"):
        convs = [dtype for name, dtype in tfl_be.executed_ops(role) if name == "CONV_2D"]
        assert convs and set(convs) == {"int8"}
    enc = codec.encode(_photo_crop(), 1, OnnxRuntimeBackend(bundle, threads=2))
    a, b = codec.decode(enc.data, OnnxRuntimeBackend(bundle, threads=2)), codec.decode(enc.data, tfl_be)
    assert a.parse.digest() == b.parse.digest()
    assert codec.psnr(a.image, b.image) >= 40.0  # at the low levels only (see edgecodec/export/tflite_target.py)
