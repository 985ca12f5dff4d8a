"""The openvino target and backend: IR of the shipped bundle decodes what onnxruntime decodes."""

import shutil

import pytest

ov = pytest.importorskip("openvino")
pytest.importorskip("onnxruntime")

from edgecodec import codec  # noqa: E402
from edgecodec.bundle import Bundle, default_bundle_path, sha256_file  # noqa: E402
from edgecodec.errors import BackendUnavailableError, ExportError  # noqa: E402
from edgecodec.export.openvino_target import export_openvino  # noqa: E402
from edgecodec.export.registry import EXPORTERS  # noqa: E402
from edgecodec.io import read_image  # noqa: E402
from edgecodec.runtimes.base import open_backend  # noqa: E402
from edgecodec.runtimes.onnxruntime_backend import OnnxRuntimeBackend  # noqa: E402
from edgecodec.runtimes.openvino_backend import OpenVinoBackend  # noqa: E402

KODIM = default_bundle_path().parent / "kodim23.png"


@pytest.fixture(scope="module")
def ov_bundle(tmp_path_factory):
    d = tmp_path_factory.mktemp("ov") / "bundle"
    shutil.copytree(default_bundle_path(), d)
    export_openvino(d)
    return Bundle(d)


@pytest.fixture(scope="module")
def backends(ov_bundle):
    return OpenVinoBackend(ov_bundle, threads=2), OnnxRuntimeBackend(ov_bundle, threads=2)


def test_manifest_lists_checksummed_ir(ov_bundle):
    art = ov_bundle.manifest["artifacts"]["openvino"]
    assert art["precision"] == "int8" and art["openvino"] == ov.__version__
    assert art["files"] == {
        "analysis": "analysis.int8.xml",
        "analysis_bin": "analysis.int8.bin",
        "synthesis": "synthesis.int8.xml",
        "synthesis_bin": "synthesis.int8.bin",
    }
    assert set(art["sha256"]) == set(art["files"])
    for key, name in art["files"].items():
        assert art["sha256"][key] == sha256_file(ov_bundle.path / name)
    assert "onnx" in ov_bundle.manifest["artifacts"]  # the onnx artifact is kept


def test_openvino_and_onnxruntime_decode_each_others_streams(backends):
    ov_be, ort_be = backends
    img = read_image(KODIM)[:128, :192]
    for q in (1, 8):
        for enc_be, dec_be in ((ort_be, ov_be), (ov_be, ort_be)):
            enc = codec.encode(img, q, enc_be)
            other = codec.decode(enc.data, dec_be)
            same = codec.decode(enc.data, enc_be)
            assert other.parse.digest() == same.parse.digest() == enc.parse.digest()
            assert codec.psnr(other.image, same.image) >= 40.0, (q, enc_be.name)


def test_synthesis_convolutions_run_in_int8(ov_bundle, backends):
    ov_be, _ = backends
    ops = [(layer, prec.lower()) for layer, prec in ov_be.executed_ops("synthesis")]
    ir = ov.Core().read_model(str(ov_bundle.path / "synthesis.int8.xml"))
    n_convs = sum(op.get_type_name() == "Convolution" for op in ir.get_ordered_ops())
    convs = [prec for layer, prec in ops if layer == "Convolution"]
    assert len(convs) == n_convs >= 2
    # the first conv (right after y_hat * inv_gain) is fp32 by design; every later one reads u8 activations
    assert convs[0] == "f32" and all(p in ("u8", "i8") for p in convs[1:]), convs
    # INFERENCE_PRECISION_HINT=f32: nothing silently drops to bf16/fp16
    assert not [op for op in ops if op[1] in ("bf16", "f16")], ops


def test_analysis_convolutions_run_in_int8(backends):
    ov_be, _ = backends
    img = read_image(KODIM)[:128, :192]
    codec.encode(img, 5, ov_be)
    convs = [prec.lower() for layer, prec in ov_be.executed_ops("analysis") if layer == "Convolution"]
    # by design fp32: the two analysis convs before the gain and the hyper-analysis conv after it
    # (uint8 weights with zero points, as in the ONNX graph, would make every one of them f32)
    assert len(convs) == 7 and convs.count("f32") <= 4 and sum(p in ("u8", "i8") for p in convs) >= 3, convs


def test_describe_and_errors(ov_bundle, tmp_path):
    be = open_backend("openvino:cpu", ov_bundle, threads=1)
    d = be.describe()
    assert d["backend"] == "openvino" and d["device"] == "CPU" and d["version"] == ov.__version__ and d["precision"] == "int8"
    with pytest.raises(BackendUnavailableError, match="no device 'NOSUCHDEVICE'.*available: .*CPU"):
        OpenVinoBackend(ov_bundle, device="NOSUCHDEVICE")
    with pytest.raises(ExportError, match="onnx artifact"):
        EXPORTERS["openvino"].run(None, tmp_path, [], lambda s: None)
