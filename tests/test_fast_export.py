"""Exporting the fast synthesis: int8 artifacts beside the full ones, outside the model digest, on
the same int8 grids that the quantization-aware fine-tuning trains through."""

import json
import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from edgecodec.bundle import Bundle, default_bundle_path  # noqa: E402
from edgecodec.export.fast_target import FAST_ONNX, calibration_latents, export_fast_onnx  # noqa: E402
from edgecodec.export.registry import load_calibration  # noqa: E402
from edgecodec.models.fast_synthesis import FastConfig, FastSynthesis, calibrate, init_from_data, quantized_forward, save_weights  # noqa: E402
from edgecodec.runtimes.numpy_backend import NumpyBackend  # noqa: E402
from edgecodec.runtimes.onnxruntime_backend import OnnxRuntimeBackend  # noqa: E402


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    d = tmp_path_factory.mktemp("fast")
    bundle_dir = d / "bundle"
    shutil.copytree(default_bundle_path(), bundle_dir)
    for f in bundle_dir.glob("fast*"):
        f.unlink()
    m = json.loads((bundle_dir / "manifest.json").read_text())
    for entry in m["artifacts"].values():
        for k in [k for k in entry.get("files", {}) if k.startswith("fast")]:
            del entry["files"][k], entry["sha256"][k]
    m["artifacts"].pop("fast", None)
    (bundle_dir / "manifest.json").write_text(json.dumps(m))
    torch.manual_seed(0)
    model = FastSynthesis(FastConfig(channels=(8, 4, 4, 3)))
    images = load_calibration(None)[:1]
    lat = calibration_latents(bundle_dir, images)
    init_from_data(model, torch.from_numpy(np.concatenate([y * g for y, g in lat[:4]])))
    with torch.no_grad():  # distinct biases, as trained ones are (the ONNX exporter shares equal constants)
        for conv, _, _ in model.conv_sequence()[:-1]:
            conv.bias.uniform_(0.0, 0.1)
    save_weights(model, d / "fast.pt")
    digest = Bundle(bundle_dir).digest
    export_fast_onnx(bundle_dir, d / "fast.pt", images)
    return Bundle(bundle_dir), digest, lat


def test_export_adds_checksummed_fast_artifacts_without_touching_the_digest(exported):
    bundle, digest, _ = exported
    assert bundle.digest == digest and bundle.decoders == ("full", "fast")
    assert bundle.artifact("onnx", "fast_synthesis").name == FAST_ONNX
    assert bundle.fast_info["macs_per_pixel"] == pytest.approx(9 * (192 * 32 / 256 + 8 * 16 / 64 + 4 * 16 / 16 + 4 * 12 / 4))
    with np.load(bundle.path / "reference.npz") as ref:  # the selection reference checks the fast decoder too
        assert "q1.x_hat_fast" in ref.files


def test_int8_runtimes_and_numpy_run_the_grids_qat_trains_through(exported):
    bundle, _, lat = exported
    from edgecodec.models.fast_synthesis import load_weights

    model, _ = load_weights(bundle.path.parent / "fast.pt")
    ranges = calibrate(model, [torch.from_numpy(y * g) for y, g in lat])  # the export's calibration inputs
    y, g = lat[len(lat) // 2]
    with torch.no_grad():
        fq = quantized_forward(model, torch.from_numpy(y * g), ranges).clamp(0, 1).numpy()
        fl = model(torch.from_numpy(y * g)).clamp(0, 1).numpy()
    ort = OnnxRuntimeBackend(bundle).fast_synthesis(y, g)
    npy = NumpyBackend(bundle).fast_synthesis(y, g)  # unclamped and unrounded, like its full synthesis

    def levels(x):
        return np.rint(np.clip(x, 0, 1) * 255)

    off_grid = np.mean(np.abs(levels(ort) - levels(fl)))
    for got in (ort, npy):  # the same grids: a few rounding ties apart (the int32 bias grid, requantization)
        diff = np.abs(levels(got) - levels(fq))
        assert diff.max() <= 3.01 and diff.mean() < 0.1 * off_grid, (diff.max(), diff.mean(), off_grid)
