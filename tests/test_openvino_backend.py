"""The openvino target and backend: IR of the shipped bundle decodes what onnxruntime decodes."""

import json
import os
import platform
import shutil
import subprocess
import sys

import numpy as np
import pytest

ov = pytest.importorskip("openvino")
pytest.importorskip("onnxruntime")

from edgecodec import codec  # noqa: E402
from edgecodec.bundle import Bundle, default_bundle_path, sha256_file  # noqa: E402
from edgecodec.codec import model_input  # noqa: E402
from edgecodec.errors import BackendUnavailableError, ExportError  # noqa: E402
from edgecodec.export.onnx_target import ANALYSIS  # noqa: E402
from edgecodec.export.openvino_target import export_openvino, int8_weights  # noqa: E402
from edgecodec.export.registry import EXPORTERS  # noqa: E402
from edgecodec.io import read_image  # noqa: E402
from edgecodec.runtimes.base import open_backend  # noqa: E402
from edgecodec.runtimes.numpy_backend import NumpyBackend  # noqa: E402
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
    want = {
        "analysis": "analysis.int8.xml",
        "analysis_bin": "analysis.int8.bin",
        "synthesis": "synthesis.int8.xml",
        "synthesis_bin": "synthesis.int8.bin",
    }
    if "fast" in ov_bundle.decoders:  # the fast synthesis' ONNX is converted with the rest
        want.update(fast_synthesis="fast_synthesis.int8.xml", fast_synthesis_bin="fast_synthesis.int8.bin")
    assert art["files"] == want
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
    # by design fp32: the two analysis convs before the gain and the hyper-analysis conv after it, and the
    # first conv (it reads the image: int8 pair sums saturate there without VNNI, see openvino_target)
    assert len(convs) == 7 and convs[0] == "f32" and convs.count("f32") == 4, convs
    assert sum(p in ("u8", "i8") for p in convs) == 3, convs


def _dequantized_conv_weights(path):
    import onnx
    from onnx import numpy_helper

    g = onnx.load(str(path)).graph
    init = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    producer = {o: n for n in g.node for o in n.output}
    out = {}
    for conv in (n for n in g.node if n.op_type == "Conv"):
        dq = producer.get(conv.input[1])
        if dq is not None and dq.op_type == "DequantizeLinear" and dq.input[0] in init:
            q, s, zp = (init[dq.input[i]] for i in range(3))
            out[conv.name] = (q.dtype, (q.astype(np.float64) - zp.reshape(-1, 1, 1, 1)) * s.astype(np.float64).reshape(-1, 1, 1, 1))
    return out


def test_ir_weights_are_exactly_the_onnx_analysis_weights(tmp_path):
    """int8_weights: the analysis' uint8 weights (zero point 128) become int8 codes with the same scale,
    bit-exact; the conv reading the image keeps its uint8 weights (it runs in f32)."""
    src = default_bundle_path() / ANALYSIS
    modes = int8_weights(src, tmp_path / ANALYSIS)
    before, after = _dequantized_conv_weights(src), _dequantized_conv_weights(tmp_path / ANALYSIS)
    first = next(iter(before))
    assert modes == {name: "kept" if name == first else "exact" for name, (dtype, _) in before.items() if dtype == np.uint8}
    assert len(modes) == 4
    for name, (dtype, w) in after.items():
        assert dtype == (np.uint8 if name == first or name not in modes else np.int8), name
        assert np.array_equal(w, before[name][1]), name


# in a fresh process (oneDNN reads ONEDNN_MAX_CPU_ISA once): the share of latents that round as the numpy reference's
_LATENT_CHECK = """
import json, sys
import numpy as np
from edgecodec.bundle import Bundle
from edgecodec.codec import model_input
from edgecodec.io import read_image
from edgecodec.runtimes.numpy_backend import NumpyBackend
from edgecodec.runtimes.openvino_backend import OpenVinoBackend
bundle = Bundle(sys.argv[1])
x = model_input(read_image(sys.argv[2])[:128, :128])
ov_be, ref = OpenVinoBackend(bundle, threads=2), NumpyBackend(bundle)
out = {"kernels": [k for layer, k in ov_be.executed_kernels("analysis") if layer == "Convolution"]}
for q in (1, bundle.levels):
    gain, _ = bundle.gains(q)
    y, y_ref = ov_be.analysis(x, gain)[0], ref.analysis(x, gain)[0]
    out[q] = float(np.mean(np.rint(y) == np.rint(y_ref)))
print(json.dumps(out))
"""


def test_analysis_latents_round_to_the_reference_integers(ov_bundle, backends):
    ov_be, _ = backends
    ref = NumpyBackend(ov_bundle)
    x = model_input(read_image(KODIM)[:128, :128])
    for q in (1, ov_bundle.levels):
        gain, _ = ov_bundle.gains(q)
        y, y_ref = ov_be.analysis(x, gain)[0], ref.analysis(x, gain)[0]
        assert np.mean(np.rint(y) == np.rint(y_ref)) >= 0.995, q


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="oneDNN's x86 ISA cap")
def test_analysis_latents_without_vnni(ov_bundle):
    """The CPU plugin's oneDNN honours ONEDNN_MAX_CPU_ISA: capped at AVX2 it runs the non-VNNI int8 kernels
    (jit_avx2_I8, whose int16 pair sums saturate) on any x86 CPU; the latents must not change."""
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2"}
    run = subprocess.run([sys.executable, "-c", _LATENT_CHECK, str(ov_bundle.path), str(KODIM)], env=env,
                         capture_output=True, text=True, timeout=300, check=True)  # fmt: skip
    got = json.loads(run.stdout.strip().splitlines()[-1])
    assert got["kernels"][1] == "jit_avx2_I8", got["kernels"]
    assert not [k for k in got["kernels"] if "avx512" in k], got["kernels"]
    assert got["1"] >= 0.995 and got["10"] >= 0.995, got


def test_describe_and_errors(ov_bundle, tmp_path):
    be = open_backend("openvino:cpu", ov_bundle, threads=1)
    d = be.describe()
    assert d["backend"] == "openvino" and d["device"] == "CPU" and d["version"] == ov.__version__ and d["precision"] == "int8"
    with pytest.raises(BackendUnavailableError, match="no device 'NOSUCHDEVICE'.*available: .*CPU"):
        OpenVinoBackend(ov_bundle, device="NOSUCHDEVICE")
    with pytest.raises(ExportError, match="onnx artifact"):
        EXPORTERS["openvino"].run(None, tmp_path, [], lambda s: None)
