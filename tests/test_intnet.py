"""The integer path: exact, documented rounding, independent of BLAS threads and numpy version."""

import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgecodec.entropy.intnet import IntLayer, fixed_point, quantize_conv


def reference_layer(layer, x):
    """Plain int64 loops: the definition the float64-GEMM executor must match exactly."""
    w = layer.weight.astype(np.int64)
    cout, cin, k, _ = w.shape
    p = k // 2
    xp = np.pad(x, ((0, 0), (p, p), (p, p)))
    ho = (x.shape[1] + 2 * p - k) // layer.stride + 1
    wo = (x.shape[2] + 2 * p - k) // layer.stride + 1
    acc = np.zeros((cout, ho, wo), dtype=np.int64)
    for i in range(ho):
        for j in range(wo):
            patch = xp[:, i * layer.stride : i * layer.stride + k, j * layer.stride : j * layer.stride + k]
            acc[:, i, j] = np.tensordot(w, patch, axes=([1, 2, 3], [0, 1, 2]))
    acc += layer.bias[:, None, None]
    sh = layer.shift[:, None, None]
    out = (acc * layer.mult[:, None, None] + (1 << (sh - 1))) >> sh  # round half up
    return np.clip(out, layer.lo[:, None, None], layer.hi[:, None, None])


@settings(max_examples=40, deadline=None)
@given(
    cin=st.integers(1, 20),
    cout=st.integers(1, 20),
    k=st.sampled_from([1, 3, 5]),
    stride=st.sampled_from([1, 2]),
    h=st.integers(1, 9),
    w=st.integers(1, 9),
    seed=st.integers(0, 2**31),
)
def test_executor_matches_integer_reference(cin, cout, k, stride, h, w, seed):
    rng = np.random.default_rng(seed)
    layer = quantize_conv(
        rng.normal(0, 1, (cout, cin, k, k)), rng.normal(0, 1, cout), 0.02, rng.uniform(0.01, 1, cout), -128, 127, stride=stride
    )
    x = rng.integers(-255, 256, (cin, h, w))
    assert np.array_equal(layer(x), reference_layer(layer, x))


def test_rounding_is_half_up():
    # identity weights, multiplier exactly 1/2: 1 -> 0.5 -> 1, -1 -> -0.5 -> 0, 3 -> 1.5 -> 2
    one = np.ones(1, dtype=np.int64)
    layer = IntLayer(np.ones((1, 1, 1, 1), np.int8), 0 * one, 2**30 * one, 31 * one, -100 * one, 100 * one)
    assert layer(np.array([[[1, -1, 3, -3, 2]]])).ravel().tolist() == [1, 0, 2, -1, 1]


def test_fixed_point_multipliers_are_accurate():
    real = np.geomspace(1e-9, 1e3, 500)
    mult, shift = fixed_point(real)
    assert mult.max() < 2**31 and shift.min() >= 1
    assert np.allclose(mult / 2.0**shift, real, rtol=2e-9)


SCRIPT = """
import sys, hashlib, numpy as np
sys.path.insert(0, 'tests')
from edgecodec.bundle import Bundle
from tiny_model import GOLDEN
em = Bundle(GOLDEN / 'tiny_bundle').entropy_model
rng = np.random.default_rng(5)
z = rng.integers(-20, 21, (4, 6, 7))
print(hashlib.sha256(em.hyper(z).tobytes()).hexdigest())
"""


def test_thread_count_does_not_change_the_integer_path():
    hashes = set()
    for threads in ("1", "2"):
        env = {"OMP_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "PATH": ""}
        out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, check=True)
        hashes.add(out.stdout.strip())
    assert len(hashes) == 1


def test_requantization_blocks_and_bands_match_the_reference(monkeypatch):
    """Requantization runs a block of channels at a time and the GEMM band by band of rows: with
    tiny blocks and bands (many of each, ragged ends) every element is still the reference's."""
    from edgecodec.entropy import intnet

    rng = np.random.default_rng(3)
    layer = quantize_conv(rng.normal(0, 1, (13, 6, 3, 3)), rng.normal(0, 1, 13), 0.02, rng.uniform(0.01, 1, 13), -40, 90)
    x = rng.integers(-255, 256, (6, 11, 9))
    monkeypatch.setattr(intnet, "REQUANT_BLOCK", 20)  # 2 channels of 9 pixels a block
    monkeypatch.setattr(intnet, "CHUNK_BYTES", 1)  # one output row a band
    assert np.array_equal(layer(x), reference_layer(layer, x))


def reference_y_params(cfg, raw):
    """The entropy model's per-element arithmetic, written plainly (floor division, masked copy)."""
    m, f = cfg.y_channels, cfg.mean_steps
    mq, s = raw[:m].astype(np.int64), raw[m:].astype(np.int64)
    m_int = np.floor_divide(mq, f)
    coded = s >= cfg.skip_below
    base = np.where(coded, m_int, np.floor_divide(mq + f // 2, f))
    return s * f + (mq - f * m_int), base, coded


@pytest.mark.parametrize("mean_steps", [1, 3, 4, 8])
def test_y_params_arithmetic_matches_its_definition(mean_steps):
    """Shifts and masks for a power-of-two F, floor division otherwise: the same table/base/coded."""
    from edgecodec.entropy.intnet import IntNet
    from edgecodec.entropy.latents import EntropyModel, LatentConfig, build_y_tables, build_z_tables

    cfg = LatentConfig(3, 2, 0.11, 8.0, 6, mean_steps, 2, 12)
    rng = np.random.default_rng(mean_steps)
    lo = np.r_[np.full(3, -9 * mean_steps), np.zeros(3)]
    hi = np.r_[np.full(3, 9 * mean_steps), np.full(3, cfg.scale_levels - 1)]
    last = quantize_conv(rng.normal(0, 1, (6, 2, 3, 3)), rng.normal(0, 1, 6), 0.5, rng.uniform(0.01, 0.1, 6), lo, hi, in_max=127)
    em = EntropyModel(cfg, IntNet([last]), build_y_tables(cfg), build_z_tables(np.zeros(2), np.ones(2), 12))
    z = rng.integers(-127, 128, (2, 7, 5))
    table, base, coded = em.y_params(z, (7, 5))
    ref = reference_y_params(cfg, last(z))
    assert coded.any() and not coded.all()
    for got, want in zip((table, base, coded), ref):
        assert np.array_equal(got, want)
