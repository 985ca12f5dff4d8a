"""Codec orchestration on odd inputs: any size, gray, alpha, 16-bit."""

import numpy as np
import pytest
from tiny_model import synthetic_image

from edgecodec import codec
from edgecodec.errors import InputError


@pytest.mark.parametrize("h,w", [(1, 1), (17, 31), (64, 64), (65, 129), (3, 200)])
def test_any_size_round_trips(h, w, tiny_backend):
    img = synthetic_image(h, w, 1)
    enc = codec.encode(img, 2, tiny_backend)
    dec = codec.decode(enc.data, tiny_backend)
    assert dec.image.shape == img.shape and dec.image.dtype == np.uint8
    assert np.array_equal(dec.image, enc.reconstruction)  # the encoder reports what the decoder shows
    assert dec.parse.digest() == enc.parse.digest()


def test_grayscale_stays_grayscale(tiny_backend):
    img = synthetic_image(20, 24)[:, :, 0]
    dec = codec.decode(codec.encode(img, 1, tiny_backend).data, tiny_backend)
    assert dec.image.shape == (20, 24) and dec.header.channels == 1


def test_alpha_is_dropped_and_16_bit_is_kept(tiny_backend):
    rgba = np.dstack([synthetic_image(20, 24), np.full((20, 24), 7, np.uint8)])
    assert codec.decode(codec.encode(rgba, 1, tiny_backend).data, tiny_backend).image.shape == (20, 24, 3)
    deep = synthetic_image(20, 24).astype(np.uint16) * 257
    dec = codec.decode(codec.encode(deep, 1, tiny_backend).data, tiny_backend)
    assert dec.image.dtype == np.uint16 and dec.header.bit_depth == 16


def test_psnr_reported_is_measured(tiny_backend):
    img = synthetic_image(32, 48, 2)
    enc = codec.encode(img, 3, tiny_backend)
    assert enc.psnr == pytest.approx(codec.psnr(enc.reconstruction, img))


@pytest.mark.parametrize("q", [0, 4, 2.03, "3", 0.9375])
def test_quality_outside_the_model_levels_is_an_input_error(q, tiny_backend):
    with pytest.raises(InputError):
        codec.encode(synthetic_image(8, 8), q, tiny_backend)


def test_non_image_input_is_an_input_error(tiny_backend):
    with pytest.raises(InputError):
        codec.encode(np.zeros((4, 4, 2), np.uint8), 1, tiny_backend)
    with pytest.raises(InputError):
        codec.encode(np.zeros((4, 4, 3), np.float32), 1, tiny_backend)
