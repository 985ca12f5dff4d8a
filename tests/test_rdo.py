"""Rate-distortion rounding: the encoder may pick the neighbouring integer when it saves more bits
than the distortion it adds is worth; decoders are unaffected."""

import shutil

import numpy as np
import pytest
from tiny_model import synthetic_image

from edgecodec import codec
from edgecodec.bundle import Bundle, default_bundle_path, write_rd_weights
from edgecodec.runtimes.numpy_backend import NumpyBackend


def _latents(backend, q, seed=0):
    x = codec.model_input(synthetic_image(96, 160, seed), backend.bundle.downsample)
    y, z = backend.analysis(x, backend.bundle.gains(q)[0])
    return y[0].astype(np.float64), np.rint(z[0]).astype(np.int64)


def _cost(em, parse, y, weight):
    bits = em.y_tables.symbol_bits(parse.y[parse.coded] - em.y_params(parse.z, y.shape[1:])[1][parse.coded], parse.table[parse.coded])
    err = np.broadcast_to(weight[:, None, None], y.shape)[parse.coded] * (parse.y - y)[parse.coded] ** 2
    return bits.sum() + err.sum()


def test_each_coded_element_moves_at_most_to_a_neighbour_and_the_rd_cost_falls(tiny_backend):
    em = tiny_backend.bundle.entropy_model
    for q in (1, 3):
        y, z = _latents(tiny_backend, q)
        weight = np.full(y.shape[0], 2.0)
        plain, _ = em.encode(y, z)
        rd, _ = em.encode(y, z, weight)
        assert np.array_equal(plain.coded, rd.coded) and np.array_equal(plain.y[~plain.coded], rd.y[~rd.coded])
        assert np.all(np.abs(rd.y - y)[rd.coded] < 1.0)  # floor(y) or floor(y) + 1
        assert np.any(rd.y != plain.y)
        assert _cost(em, rd, y, weight) < _cost(em, plain, y, weight)
        assert rd.stats["model_bits"] < plain.stats["model_bits"]


def test_a_huge_weight_is_plain_rounding(tiny_backend):
    em = tiny_backend.bundle.entropy_model
    y, z = _latents(tiny_backend, 2, seed=1)
    plain, plain_subs = em.encode(y, z)
    rd, rd_subs = em.encode(y, z, np.full(y.shape[0], 1e9))
    assert rd.digest() == plain.digest() and rd_subs == plain_subs


def test_the_encoder_uses_the_bundles_weights_and_any_decoder_reads_the_result(tiny_bundle, tmp_path):
    d = tmp_path / "bundle"
    shutil.copytree(tiny_bundle.path, d)
    write_rd_weights(d, np.full((tiny_bundle.levels, tiny_bundle.latent.y_channels), 2.0), strength=1.0)
    weighted = Bundle(d)
    assert weighted.digest == tiny_bundle.digest  # encoder-only: old and new streams stay compatible
    img = synthetic_image(80, 120, 5)
    plain = codec.encode(img, 3, NumpyBackend(tiny_bundle))
    rd = codec.encode(img, 3, NumpyBackend(weighted))
    assert len(rd.data) < len(plain.data)
    for bundle in (tiny_bundle, weighted):
        dec = codec.decode(rd.data, NumpyBackend(bundle))
        assert dec.parse.digest() == rd.parse.digest() and np.array_equal(dec.image, rd.reconstruction)


def test_corrupt_encoder_weights_are_a_bundle_error(tiny_bundle, tmp_path):
    from edgecodec.errors import BundleError

    d = tmp_path / "bundle"
    shutil.copytree(tiny_bundle.path, d)
    write_rd_weights(d, np.full((tiny_bundle.levels + 1, tiny_bundle.latent.y_channels), 2.0), strength=1.0)
    with pytest.raises(BundleError, match="invalid encoder weights"):
        Bundle(d).rd_weight(1)


def test_the_shipped_bundle_weighs_every_level_and_channel():
    b = Bundle(default_bundle_path())
    w = np.stack([b.rd_weight(q) for q in range(1, b.levels + 1)])
    assert w.shape == (b.levels, b.latent.y_channels) and np.all(w > 0)
    assert np.all(np.diff(w.mean(axis=1)) > 0)  # higher quality: distortion worth more bits
