"""Conformance: every installed backend decodes the shipped model's golden streams.

The guarantee (README): the parse is bit-exact on every backend and thread count;
pixels stay within PIXEL_TOL levels and at least MIN_PSNR dB of the reference decode. The fast
decoder (when the bundle ships it) reads the same parse; its pixels have their own reference (the
numpy backend's fast decode) and tolerance.
"""

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from edgecodec import codec
from edgecodec.bundle import Bundle
from edgecodec.errors import EdgecodecError, ModelMismatchError
from edgecodec.io import read_image
from edgecodec.runtimes.base import open_backend
from edgecodec.runtimes.selection import candidates

HERE = Path(__file__).resolve().parent / "conformance"
MANIFEST = json.loads((HERE / "manifest.json").read_text())
PIXEL_TOL = 8  # largest per-pixel difference from the reference decode measured across runtimes, plus margin
MIN_PSNR = 40.0
FAST_PIXEL_TOL = 8  # the same rule for the fast decoder: measured spread across runtimes plus margin


@pytest.fixture(scope="module")
def shipped():
    return Bundle()


def backends_here(bundle, threads):
    """Every runtime installed here whose artifact the shipped bundle carries (CPU device)."""
    out = {}
    for cand in candidates(bundle):
        if cand.available and cand.device == "CPU":
            try:
                out[cand.name] = open_backend(cand.name, bundle, threads=threads)
            except EdgecodecError:
                continue
    return out


@pytest.fixture(scope="module", params=[1, 2], ids=["1thread", "2threads"])
def installed(request, shipped):
    return backends_here(shipped, request.param)


def test_goldens_belong_to_the_shipped_model(shipped):
    assert MANIFEST["model_digest"] == shipped.digest, "model changed: regenerate with scripts/make-conformance"


@pytest.mark.parametrize("stem", sorted(MANIFEST["streams"]))
def test_every_backend_decodes_every_stream(stem, installed, shipped):
    data = (HERE / f"{stem}.edgc").read_bytes()
    ref = read_image(HERE / f"{stem}.png").astype(int)
    for name, be in installed.items():
        out = codec.decode(data, be, shipped)
        assert out.parse.digest() == MANIFEST["streams"][stem]["parse_sha256"], name
        diff = np.abs(out.image.astype(int) - ref)
        assert diff.max() <= PIXEL_TOL and codec.psnr(out.image, ref) >= MIN_PSNR, (name, int(diff.max()))


def test_fast_references_belong_to_the_shipped_fast_decoder(shipped):
    if "fast" not in shipped.decoders:
        pytest.skip("the shipped bundle has no fast decoder")
    assert MANIFEST["fast"]["weights_sha256"] == shipped.fast_info["sha256"]["weights"], (
        "fast synthesis changed: regenerate with scripts/make-conformance --fast"
    )


@pytest.mark.parametrize("stem", sorted(MANIFEST["streams"]))
def test_every_backend_fast_decodes_every_stream_from_the_same_parse(stem, installed, shipped):
    if "fast" not in shipped.decoders:
        pytest.skip("the shipped bundle has no fast decoder")
    data = (HERE / f"{stem}.edgc").read_bytes()
    with np.load(HERE / MANIFEST["fast"]["pixels"]) as a:
        ref = a[stem].astype(int)
    for name, be in installed.items():
        out = codec.decode(data, be, shipped, decoder="fast")
        assert out.decoder == "fast"
        assert out.parse.digest() == MANIFEST["streams"][stem]["parse_sha256"], name
        diff = np.abs(out.image.astype(int) - ref)
        assert diff.max() <= FAST_PIXEL_TOL and codec.psnr(out.image, ref) >= MIN_PSNR, (name, int(diff.max()))


def test_encode_anywhere_decode_anywhere(installed, shipped):
    src = read_image(HERE / "face.source.png")
    for q in (1, (shipped.levels + 1) // 2, shipped.levels):
        encoded = {name: codec.encode(src, q, be, shipped) for name, be in installed.items()}
        for (a, enc), (b, dec_be) in itertools.product(encoded.items(), installed.items()):
            dec = codec.decode(enc.data, dec_be, shipped)
            assert dec.parse.digest() == enc.parse.digest(), (a, b)
            assert codec.psnr(dec.image, enc.reconstruction) >= MIN_PSNR, (a, b, q)


def test_streams_of_another_model_fail_with_model_mismatch(tiny_bundle):
    with pytest.raises(ModelMismatchError):
        codec.parse_stream((HERE / "face_q01.edgc").read_bytes(), tiny_bundle)
