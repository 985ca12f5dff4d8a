"""The parse never depends on the transforms: a backend off by +-2 LSB parses identically."""

import numpy as np
from tiny_model import synthetic_image

from edgecodec import codec
from edgecodec.runtimes.base import Backend


class NoisyBackend(Backend):
    """Wraps a backend and adds up to +-2 LSB (of 8-bit output) noise to every transform output."""

    name = "noisy"

    def __init__(self, inner, seed):
        super().__init__(inner.bundle)
        self.inner = inner
        self.rng = np.random.default_rng(seed)

    def _noise(self, a):
        return a + self.rng.integers(-2, 3, a.shape).astype(np.float32) / 255.0

    def analysis(self, x, gain):
        y, z = self.inner.analysis(x, gain)
        return self._noise(y), self._noise(z)

    def synthesis(self, y_hat, inv_gain):
        return self._noise(self.inner.synthesis(y_hat, inv_gain))


def test_noisy_backends_parse_identically(tiny_backend):
    for q in (1, 2, 3):
        enc = codec.encode(synthetic_image(90, 130, q), q, tiny_backend)
        digests = {codec.decode(enc.data, NoisyBackend(tiny_backend, seed)).parse.digest() for seed in range(4)}
        assert digests == {enc.parse.digest()}
        clean = codec.decode(enc.data, tiny_backend).image.astype(int)
        noisy = codec.decode(enc.data, NoisyBackend(tiny_backend, 9)).image.astype(int)
        assert 0 < np.abs(clean - noisy).max() <= 2  # the noise reaches the pixels, never the parse
