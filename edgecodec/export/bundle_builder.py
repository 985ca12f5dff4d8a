"""Build a bundle's core (manifest, entropy.npz, transforms.npz) from float weights.

Numpy only: the torch model hands over plain arrays (``edgecodec.models.to_float_nets``),
and the tiny test model of the test suite uses the same path.

A float layer is a dict with ``w`` (Cout, Cin, k, k), ``b`` (Cout,), ``stride``,
``d2s`` (depth-to-space after the conv) and ``relu``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..bundle import write_bundle
from ..entropy.intnet import IntNet, quantize_conv
from ..entropy.latents import Z_CLAMP, LatentConfig, build_y_tables, build_z_tables
from ..nn import conv2d, depth_to_space, weight_matrix


def run_float(layers: list[dict], x: np.ndarray, upto: int | None = None) -> list[np.ndarray]:
    """Float64 forward of one image; returns each layer's output (after ReLU and depth-to-space)."""
    outs = []
    x = x.astype(np.float64)
    for layer in layers[:upto]:
        w = np.asarray(layer["w"], dtype=np.float64)
        k = w.shape[2]
        x = conv2d(x, weight_matrix(w, np.float64), k, layer["stride"], k // 2) + np.asarray(layer["b"], np.float64)[:, None, None]
        if layer["relu"]:
            x = np.maximum(x, 0)
        if layer["d2s"] > 1:
            x = depth_to_space(x, layer["d2s"])
        outs.append(x)
    return outs


def quantize_hyper(layers: list[dict], cfg: LatentConfig, calib_z: list[np.ndarray], percentile: float = 99.99) -> IntNet:
    """Post-training quantization of the hyper-decoder to the integer path.

    Hidden activations are unsigned 8-bit with a per-layer scale from the
    calibration z; the last layer outputs means in 1/F units and scale indexes.
    """
    n = len(layers)
    acts = [[] for _ in range(n)]
    for z in calib_z:
        for i, o in enumerate(run_float(layers, np.clip(z, -Z_CLAMP, Z_CLAMP))):
            acts[i].append(o.ravel())
    int_layers = []
    s_in, in_max = 1.0, Z_CLAMP
    m, f = cfg.y_channels, cfg.mean_steps
    for i, layer in enumerate(layers):
        d2s = layer["d2s"]
        if i < n - 1:
            peak = float(np.percentile(np.concatenate(acts[i]), percentile)) if acts[i] else 1.0
            s_out = max(peak, 1e-6) / 255.0
            ql = quantize_conv(layer["w"], layer["b"], s_in, s_out, 0, 255, layer["stride"], d2s, in_max)
            s_in, in_max = s_out, 255
        else:
            s_out = np.concatenate([np.full(m, 1.0 / f), np.ones(m)])
            lo = np.concatenate([np.full(m, -f * 127), np.zeros(m)])
            hi = np.concatenate([np.full(m, f * 127), np.full(m, cfg.scale_levels - 1)])
            ql = quantize_conv(layer["w"], layer["b"], s_in, s_out, lo.astype(np.int64), hi.astype(np.int64), layer["stride"], d2s, in_max)
        int_layers.append(ql)
    return IntNet(int_layers)


def net_arrays(name: str, layers: list[dict]) -> dict[str, np.ndarray]:
    out = {f"{name}.count": np.asarray(len(layers), dtype=np.int64)}
    for i, layer in enumerate(layers):
        p = f"{name}.{i}."
        if "wq" in layer:  # int8 weights stay int8 on disk: a quarter of the size
            out[p + "wq"] = layer["wq"]
            out[p + "wscale"] = np.asarray(layer["wscale"], dtype=np.float32)
            out[p + "wzp"] = np.asarray(layer["wzp"])
        else:
            out[p + "w"] = np.asarray(layer["w"], dtype=np.float32)
        out[p + "b"] = np.asarray(layer["b"], dtype=np.float32)
        out[p + "meta"] = np.array([layer["stride"], layer["d2s"], int(layer["relu"])], dtype=np.int64)
        if layer.get("inq") is not None:
            out[p + "inq"] = np.asarray(layer["inq"], dtype=np.float32)
    return out


def build_core_bundle(
    out: Path,
    cfg: LatentConfig,
    nets: dict[str, list[dict]],
    gain: np.ndarray,
    inv_gain: np.ndarray,
    z_mean: np.ndarray,
    z_scale: np.ndarray,
    calib_z: list[np.ndarray],
    meta: dict,
) -> Path:
    hyper = quantize_hyper(nets["h_s"], cfg, calib_z)
    entropy = {}
    entropy.update(hyper.arrays("hyper."))
    entropy.update(build_y_tables(cfg).arrays("y."))
    entropy.update(build_z_tables(z_mean, z_scale, cfg.precision).arrays("z."))
    transforms = {"gain": np.asarray(gain, np.float32), "inv_gain": np.asarray(inv_gain, np.float32)}
    for name in ("g_a", "h_a", "g_s"):
        transforms.update(net_arrays(name, nets[name]))
    model = {
        "latent": cfg.__dict__.copy(),
        "levels": int(np.asarray(gain).shape[0]),
        "downsample": 64,
        **meta,
    }
    return write_bundle(Path(out), model, entropy, transforms)
