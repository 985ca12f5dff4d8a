"""The numpy backend's fused nets (``run_net``) against their layer-by-layer definition
(``run_net_reference``): the reference decodes (reference.npz, the conformance PNGs) were made by
the latter, so the former must compute the same thing: bit for bit here (exact mode), and within
float32 rounding of a grid bin edge with the scales folded into the weights."""

import numpy as np
import pytest

from edgecodec.bundle import Bundle
from edgecodec.runtimes import numpy_backend as nb


@pytest.fixture(scope="module")
def backend():
    return nb.NumpyBackend(Bundle())


def _input(name, rng, h, w):
    if name == "g_a":
        return rng.random((3, h, w), dtype=np.float32)  # an image in [0, 1]
    return (rng.standard_normal((192, h, w)) * 3).astype(np.float32)


NETS = [("g_a", 37, 53), ("h_a", 5, 7), ("g_s", 5, 7), ("f_s", 5, 7), ("f_s", 1, 1), ("g_s", 12, 3)]


@pytest.mark.parametrize(("name", "h", "w"), NETS, ids=[f"{n}-{h}x{w}" for n, h, w in NETS])
@pytest.mark.parametrize("bands", ["one", "row"])
def test_fused_nets_compute_the_reference(backend, name, h, w, bands, monkeypatch):
    net = backend.f_s if name == "f_s" else getattr(backend, name)
    rng = np.random.default_rng([h, w, len(name)])
    x = _input(name, rng, h, w)
    scale = rng.random((192, 1, 1), dtype=np.float32) + 0.5 if name in ("g_s", "f_s") else None
    ref = nb.run_net_reference(net.layers, x * scale if scale is not None else x)
    band = 1 if bands == "row" else nb.BAND_BYTES
    if bands == "row":
        monkeypatch.setattr(nb, "MIN_COLUMNS", 1)  # one output row per GEMM: every band edge
    out = net(x, scale, band_bytes=band)
    assert out.shape == ref.shape and out.dtype == np.float32
    top = float(np.abs(ref).max())
    assert float(np.abs(out - ref).max()) <= 1e-5 * top  # bit-identical with OpenBLAS; other BLAS may round apart
    folded = nb._Net(net.layers, exact=False)(x, scale, band_bytes=band)
    diff = np.abs(folded - ref)
    assert float(np.median(diff)) <= 1e-4 * top and float(diff.max()) <= 0.05 * top  # the odd value a bin apart


def test_backend_roles_match_the_reference(backend):
    rng = np.random.default_rng(1)
    x = rng.random((1, 3, 64, 96), dtype=np.float32)
    gain, inv = (rng.random((1, 192, 1, 1), dtype=np.float32) + 0.5 for _ in range(2))
    y, z = backend.analysis(x, gain)
    y_ref = nb.run_net_reference(backend.g_a.layers, x[0]) * gain[0]
    np.testing.assert_allclose(y[0], y_ref, rtol=0, atol=1e-5 * float(np.abs(y_ref).max()))
    z_ref = nb.run_net_reference(backend.h_a.layers, y_ref)
    np.testing.assert_allclose(z[0], z_ref, rtol=0, atol=1e-5 * float(np.abs(z_ref).max()))
    y_hat = np.rint(y)
    for role, net in (("synthesis", backend.g_s), ("fast_synthesis", backend.f_s)):
        out = getattr(backend, role)(y_hat, inv)
        ref = nb.run_net_reference(net.layers, y_hat[0] * inv[0])
        assert out.shape == (1, *ref.shape)
        np.testing.assert_allclose(out[0], ref, rtol=0, atol=1e-5 * float(np.abs(ref).max()))
