"""The fast decoder: a light synthesis shipped beside the full one, decoding the same streams.

It is outside the model digest (streams do not name it), reads the same parse, stays under the MAC
budget, sees less than the tiling halo, and is chosen per host by ``decoder='auto'``.
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from tiny_model import synthetic_image

from edgecodec import codec, tiling
from edgecodec.bundle import Bundle
from edgecodec.errors import InputError
from edgecodec.io import read_image
from edgecodec.runtimes.numpy_backend import NumpyBackend

MAC_BUDGET = 5000  # per output pixel (issue 13)
SMALLEST = 16 << 20  # the smallest memory budget: 320-px windows


@pytest.fixture(scope="module")
def shipped():
    b = Bundle()
    if "fast" not in b.decoders:
        pytest.skip("the shipped bundle has no fast decoder")
    return b


@pytest.fixture(scope="module")
def stream(shipped):
    img = read_image(tiling.__file__.rsplit("/", 1)[0] + "/data/kodim23.png")[128:320, 256:512]
    return img, codec.encode(img, 5, NumpyBackend(shipped), shipped)


def layer_macs(arrays: dict, net: str) -> float:
    """MACs per output pixel counted from the shipped numpy layers themselves (no torch)."""
    n = int(arrays[f"{net}.count"])
    res, total = 1.0, []  # resolution of the current tensor, in units of the input grid
    for i in range(n):
        w = arrays[f"{net}.{i}.wq"] if f"{net}.{i}.wq" in arrays else arrays[f"{net}.{i}.w"]
        stride, d2s, _ = (int(v) for v in arrays[f"{net}.{i}.meta"])
        res /= stride
        total.append((int(np.prod(w.shape)), res * res))  # MACs per position x positions per input latent
        res *= d2s
    return sum(m * pos for m, pos in total) / (res * res)


def test_fast_synthesis_is_under_the_mac_budget_and_a_fifth_of_the_full_one(shipped):
    fast = layer_macs(shipped.fast_transforms, "f_s")
    full = layer_macs(shipped.transforms, "g_s")
    assert fast <= MAC_BUDGET and fast <= full / 4, (fast, full)
    assert fast == pytest.approx(shipped.fast_info["macs_per_pixel"])


def test_fast_decoder_is_outside_the_model_digest(shipped):
    conformance = json.loads((Path(__file__).parent / "conformance" / "manifest.json").read_text())
    assert "fast" not in json.dumps(shipped.manifest["model"]) and shipped.digest == conformance["model_digest"]
    for target in ("onnx", "tflite", "openvino"):
        assert "fast_synthesis" in shipped.manifest["artifacts"][target]["files"], target


def test_fast_decode_reads_the_same_parse_and_is_a_real_image(shipped, stream):
    img, enc = stream
    full = codec.decode(enc.data, NumpyBackend(shipped), shipped)
    fast = codec.decode(enc.data, NumpyBackend(shipped), shipped, decoder="fast")
    assert fast.decoder == "fast" and full.decoder == "full"
    assert fast.parse.digest() == full.parse.digest() == enc.parse.digest()
    assert fast.image.shape == img.shape and not np.array_equal(fast.image, full.image)
    # honest, not equal: it loses to the full synthesis but decodes the photo (measured figures: README)
    assert 20.0 <= codec.psnr(fast.image, img) <= codec.psnr(full.image, img) + 0.5


def test_tiled_fast_decode_equals_the_whole_one(shipped):
    img = synthetic_image(320, 336, 3)
    be = NumpyBackend(shipped)
    enc = codec.encode(img, 4, be, shipped)
    whole = codec.decode(enc.data, be, shipped, decoder="fast")
    tiled = codec.decode(enc.data, be, shipped, decoder="fast", max_memory=SMALLEST)
    assert len(tiling.tiles_for(be, "synthesis", 20, 21, SMALLEST)) > 1
    assert np.abs(whole.image.astype(int) - tiled.image).max() <= 1  # numpy: float32 GEMM blocking, as for the full one


def test_auto_keeps_full_within_the_budget_and_goes_fast_beyond_it(shipped, stream, tmp_path, monkeypatch):
    monkeypatch.setenv("EDGECODEC_CACHE", str(tmp_path / "cache.json"))
    _, enc = stream
    be = NumpyBackend(shipped)
    roomy = codec.decode(enc.data, be, shipped, decoder="auto", budget_ms=1e9)
    tight = codec.decode(enc.data, be, shipped, decoder="auto", budget_ms=1e-3)
    assert roomy.decoder == "full" and tight.decoder == "fast"
    assert tight.choice["full_ms"] > tight.choice["budget_ms"] and tight.choice["fast_ms"] > 0
    assert (tmp_path / "cache.json").is_file()  # the estimate is the selection's own, cached measurement


def test_decoder_argument_errors(shipped, stream, tiny_bundle, tiny_backend):
    _, enc = stream
    with pytest.raises(InputError, match="unknown decoder"):
        codec.decode(enc.data, NumpyBackend(shipped), shipped, decoder="quick")
    with pytest.raises(InputError, match="positive"):
        codec.decode(enc.data, NumpyBackend(shipped), shipped, decoder="auto", budget_ms=0)
    tiny = codec.encode(synthetic_image(32, 32, 1), 1, tiny_backend, tiny_bundle)
    with pytest.raises(InputError, match="no fast decoder"):
        codec.decode(tiny.data, tiny_backend, tiny_bundle, decoder="fast")
    assert codec.decode(tiny.data, tiny_backend, tiny_bundle, decoder="auto").decoder == "full"


def run(*args):
    return subprocess.run([sys.executable, "-m", "edgecodec.cli", *map(str, args)], capture_output=True, text=True)


def test_cli_decode_with_each_decoder(shipped, stream, tmp_path):
    _, enc = stream
    src = tmp_path / "a.edgc"
    src.write_bytes(enc.data)
    for decoder in ("fast", "full"):
        r = run("decode", src, "-o", tmp_path / f"{decoder}.png", "--backend", "numpy", "--decoder", decoder)
        assert r.returncode == 0, r.stderr
        assert f"{decoder} decoder" in r.stdout
    r = run("decode", src, "-o", tmp_path / "b.png", "--backend", "numpy", "--decoder", "quick")
    assert r.returncode != 0 and "--decoder" in r.stderr and "Traceback" not in r.stderr and not (tmp_path / "b.png").exists()
