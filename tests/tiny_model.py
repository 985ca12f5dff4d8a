"""A tiny random model (numpy only) for format goldens and fast codec tests.

``python tests/tiny_model.py`` rewrites ``tests/golden/``: only do that when the
container format version changes; the goldens must otherwise decode
identically forever.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from edgecodec.entropy.latents import LatentConfig
from edgecodec.export.bundle_builder import build_core_bundle, run_float

GOLDEN = Path(__file__).resolve().parent / "golden"
M, ZC = 8, 4


def _conv(rng, cin, cout, k, stride=1, d2s=1, relu=True, gain=1.0, bias=0.0):
    w = rng.normal(0, gain / np.sqrt(cin * k * k), (cout, cin, k, k))
    return {"w": w, "b": rng.normal(bias, 0.05, cout), "stride": stride, "d2s": d2s, "relu": relu}


def tiny_nets(seed: int = 1) -> dict[str, list[dict]]:
    rng = np.random.default_rng(seed)
    g_a = [
        _conv(rng, 3, 8, 3, 2, gain=2),
        _conv(rng, 8, 8, 3, 2, gain=2),
        _conv(rng, 8, 8, 3, 2, gain=2),
        _conv(rng, 8, M, 3, 2, relu=False, gain=8),
    ]
    h_a = [_conv(rng, M, 8, 3), _conv(rng, 8, 8, 3, 2), _conv(rng, 8, ZC, 3, 2, relu=False, gain=3)]
    last = _conv(rng, 8, 2 * M, 3, relu=False, gain=2)
    last["b"][M:] += 5.0  # scale indexes spread over the table range, some below the skip threshold
    h_s = [_conv(rng, ZC, 4 * 8, 3, d2s=2), _conv(rng, 8, 4 * 8, 3, d2s=2), last]
    g_s = [
        _conv(rng, M, 32, 3, d2s=2),
        _conv(rng, 8, 32, 3, d2s=2),
        _conv(rng, 8, 32, 3, d2s=2),
        _conv(rng, 8, 12, 3, d2s=2, relu=False, gain=0.5, bias=0.5),
    ]
    return {"g_a": g_a, "h_a": h_a, "h_s": h_s, "g_s": g_s}


def tiny_config() -> LatentConfig:
    return LatentConfig(
        y_channels=M, z_channels=ZC, scale_min=0.11, scale_max=32.0, scale_levels=32, mean_steps=4, skip_below=4, precision=12
    )


def synthetic_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A smooth synthetic photo-like image with edges and noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.stack(
        [
            128 + 90 * np.sin(xx / 7.0 + yy / 11.0),
            128 + 80 * np.cos(yy / 5.0) * np.sin(xx / 13.0),
            96 + 60 * ((xx // 9 + yy // 9) % 2),
        ],
        axis=2,
    ) + rng.normal(0, 6, (h, w, 3))
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def build_tiny_bundle(out: Path, seed: int = 1) -> Path:
    nets = tiny_nets(seed)
    cfg = tiny_config()
    levels = 3
    gain = np.exp(np.linspace(-0.5, 1.0, levels))[:, None] * np.ones((1, M))
    calib = []
    for s in range(3):
        x = synthetic_image(128, 128, s).astype(np.float64).transpose(2, 0, 1) / 255.0
        y = run_float(nets["g_a"], x)[-1] * gain[1][:, None, None]
        calib.append(np.rint(run_float(nets["h_a"], y)[-1]))
    return build_core_bundle(out, cfg, nets, gain, 1.0 / gain, np.zeros(ZC), np.full(ZC, 1.5), calib, {"name": "tiny-test"})


def write_goldens() -> None:
    from edgecodec import codec
    from edgecodec.bundle import Bundle
    from edgecodec.runtimes.numpy_backend import NumpyBackend

    bundle = Bundle(build_tiny_bundle(GOLDEN / "tiny_bundle"))
    be = NumpyBackend(bundle)
    expected = {}
    for name, (h, w, q, seed) in {"a_64x64_q1": (64, 64, 1, 3), "b_17x31_q2": (17, 31, 2, 4), "c_100x150_q3": (100, 150, 3, 5)}.items():
        enc = codec.encode(synthetic_image(h, w, seed), q, be)
        (GOLDEN / f"{name}.edgc").write_bytes(enc.data)
        np.save(GOLDEN / f"{name}.decoded.npy", enc.reconstruction)
        expected[name] = {"parse_sha256": enc.parse.digest(), "bytes": len(enc.data)}
    (GOLDEN / "expected.json").write_text(json.dumps(expected, indent=1, sort_keys=True))


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    write_goldens()
