"""The onnx target: a checkpoint becomes a bundle whose int8 ONNX and numpy backends agree."""

import numpy as np
import pytest
from tiny_model import synthetic_image

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from small_torch_model import SMALL  # noqa: E402

from edgecodec import codec  # noqa: E402
from edgecodec.bundle import Bundle  # noqa: E402
from edgecodec.export.onnx_target import ANALYSIS, SYNTHESIS, export_onnx_bundle  # noqa: E402
from edgecodec.models.hyperprior import HyperpriorCodec  # noqa: E402
from edgecodec.models.train import save_checkpoint  # noqa: E402
from edgecodec.runtimes.numpy_backend import NumpyBackend  # noqa: E402
from edgecodec.runtimes.onnxruntime_backend import OnnxRuntimeBackend  # noqa: E402


@pytest.fixture(scope="module")
def small_bundle(tmp_path_factory):
    torch.manual_seed(0)
    model = HyperpriorCodec(SMALL)
    with torch.no_grad():  # a plausible starting point: scale indexes spread over the table
        model.h_s.layers[-1].bias[SMALL.m_latent :] += 20
    d = tmp_path_factory.mktemp("export")
    save_checkpoint(model, None, {"step": 0, "elapsed": 0.0}, d / "ckpt", half=True)  # fp16-rounded, like the shipped weights
    calib = [synthetic_image(96, 128, s) for s in range(2)]
    return Bundle(export_onnx_bundle(d / "ckpt", d / "bundle", calib))


def test_bundle_lists_checksummed_int8_artifacts(small_bundle):
    art = small_bundle.manifest["artifacts"]["onnx"]
    assert art["precision"] == "int8" and set(art["files"]) == {"analysis", "synthesis"}
    assert small_bundle.artifact("onnx", "synthesis").name == SYNTHESIS
    # the encoder's rate-distortion weights, measured on the float synthesis (models/rdo.py)
    w = np.stack([small_bundle.rd_weight(q) for q in range(1, small_bundle.levels + 1)])
    assert w.shape == (small_bundle.levels, SMALL.m_latent) and np.isfinite(w).all() and (w >= 0).all()


def test_synthesis_input_is_exact_and_the_rest_is_int8(small_bundle):
    g = onnx.load(str(small_bundle.path / SYNTHESIS)).graph
    consumers = [n for n in g.node if "y_hat" in n.input]
    assert [n.op_type for n in consumers] == ["Mul"]  # y_hat never passes a QuantizeLinear
    convs = [n for n in g.node if n.op_type == "Conv"]
    producers = {o: n for n in g.node for o in n.output}
    quantized = [producers.get(c.input[1]) is not None and producers[c.input[1]].op_type == "DequantizeLinear" for c in convs]
    assert quantized == [False] + [True] * (len(convs) - 1)
    a = onnx.load(str(small_bundle.path / ANALYSIS)).graph
    assert sum(n.op_type == "QuantizeLinear" for n in a.node) >= 4
    producers = {o: n for n in a.node for o in n.output}
    convs = [n for n in a.node if n.op_type == "Conv"]
    int8 = [producers[c.input[1]].op_type == "DequantizeLinear" for c in convs]
    # analysis: the first two convs int8, the last two (before the gain) fp32; hyper-analysis: the first
    # (it reads the float y) fp32, the rest int8
    assert int8 == [True, True, False, False, False, True, True]


def test_float_layers_are_stored_as_float16_and_computed_in_float32(small_bundle):
    from onnx import TensorProto

    for name in (ANALYSIS, SYNTHESIS):
        g = onnx.load(str(small_bundle.path / name)).graph
        halves = {i.name for i in g.initializer if i.data_type == TensorProto.FLOAT16}
        casts = [n for n in g.node if n.op_type == "Cast" and n.input[0] in halves]
        assert halves and len(casts) == len(halves)
        assert all(c.attribute[0].i == TensorProto.FLOAT for c in casts)
        conv_weights = {n.input[1] for n in g.node if n.op_type == "Conv"}
        assert {c.output[0] for c in casts} <= conv_weights | {n.input[2] for n in g.node if n.op_type == "Conv"}


def test_synthesis_output_is_quantized_on_the_8_bit_pixel_grid(small_bundle):
    from onnx import numpy_helper

    g = onnx.load(str(small_bundle.path / SYNTHESIS)).graph
    init = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    producers = {o: n for n in g.node for o in n.output}
    node = producers["x_hat"]
    while node.op_type != "QuantizeLinear":  # back through DepthToSpace and the output DequantizeLinear
        node = producers[node.input[0]]
    assert float(init[node.input[1]]) == np.float32(1 / 255) and int(init[node.input[2]]) == 0


def test_onnxruntime_and_numpy_decode_each_others_streams(small_bundle):
    ort_be, np_be = OnnxRuntimeBackend(small_bundle, threads=1), NumpyBackend(small_bundle)
    img = synthetic_image(70, 90, 7)
    for q in (1, 3):
        for enc_be in (ort_be, np_be):
            enc = codec.encode(img, q, enc_be)
            a = codec.decode(enc.data, ort_be)
            b = codec.decode(enc.data, np_be)
            assert a.parse.digest() == b.parse.digest() == enc.parse.digest()
            assert codec.psnr(a.image, b.image) >= 40.0
