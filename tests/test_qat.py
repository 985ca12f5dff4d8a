"""Quantization-aware fine-tuning trains on the grids the int8 export will use."""

import numpy as np
import pytest
from tiny_model import synthetic_image

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from small_torch_model import SMALL  # noqa: E402

from edgecodec.codec import model_input  # noqa: E402
from edgecodec.export.onnx_target import SYNTHESIS, export_onnx_bundle  # noqa: E402
from edgecodec.models import qat  # noqa: E402
from edgecodec.models.hyperprior import HyperpriorCodec  # noqa: E402
from edgecodec.models.train import save_checkpoint  # noqa: E402


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.manual_seed(0)
    model = HyperpriorCodec(SMALL).eval()
    d = tmp_path_factory.mktemp("qat")
    save_checkpoint(model, None, {"step": 0, "elapsed": 0.0}, d / "ckpt")
    calib = [synthetic_image(64, 64, s) for s in range(3)]
    bundle = export_onnx_bundle(d / "ckpt", d / "bundle", calib)
    return model, calib, bundle


def test_fake_quant_puts_values_on_the_uint8_grid_with_straight_through_gradients_inside_the_range():
    x = torch.linspace(-1.0, 3.0, 101, requires_grad=True)
    y = qat._fake_quant(x, -0.5, 2.0)
    step = 2.5 / 255
    codes = (y.detach() + 0.5) / step
    assert torch.allclose(codes, codes.round(), atol=1e-3)
    assert float(y.min()) >= -0.5 - 1e-6 and float(y.max()) <= 2.0 + 1e-6
    y.sum().backward()
    inside = (x.detach() > -0.5 + step) & (x.detach() < 2.0 - step)
    outside = (x.detach() < -0.5 - step) | (x.detach() > 2.0 + step)
    assert torch.equal(x.grad[inside], torch.ones(int(inside.sum()))) and not x.grad[outside].any()


def test_float_path_is_the_model_synthesis(exported):
    model, _, _ = exported
    y = torch.randint(-5, 6, (1, SMALL.m_latent, 3, 4)).float()
    with torch.no_grad():
        ig = model.gains(torch.tensor([1]))[1]
        assert torch.allclose(qat.synthesis(model, y, ig, None), model.g_s(y * ig), atol=1e-6)


def test_fake_quantized_synthesis_simulates_the_exported_int8_graph(exported):
    """QAT is only worth it if its simulation is the export: its output must sit far closer to
    onnxruntime's int8 synthesis than the float synthesis does."""
    import onnxruntime as ort

    model, calib, bundle = exported
    ranges = qat.calibrate(model, qat.calibration_latents(model, [torch.from_numpy(model_input(im)) for im in calib]))
    sess = ort.InferenceSession(str(bundle / SYNTHESIS), providers=["CPUExecutionProvider"])
    x = torch.from_numpy(model_input(synthetic_image(64, 64, 9)))
    q = SMALL.levels - 1
    with torch.no_grad():
        gain, inv_gain = model.gains(torch.tensor([q]))
        y_hat = qat.latents(model, x, gain)
        fq = qat.synthesis(model, y_hat, inv_gain, ranges).clamp(0, 1).numpy()
        fl = qat.synthesis(model, y_hat, inv_gain, None).clamp(0, 1).numpy()
    int8 = sess.run(None, {"y_hat": y_hat.numpy(), "inv_gain": inv_gain.numpy()})[0]
    assert int8.std() > 0.01  # a real picture, not a flat clamp
    err_sim, err_float = np.abs(fq - int8).mean(), np.abs(fl - int8).mean()
    assert err_sim < 0.3 * err_float, (err_sim, err_float)
