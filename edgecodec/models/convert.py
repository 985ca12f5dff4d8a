"""Hand the torch model over to the numpy world: float layer lists and ONNX graphs."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..entropy.latents import LatentConfig
from .hyperprior import HyperpriorCodec, Up


def layer_dict(conv: nn.Conv2d, d2s: int, relu: bool) -> dict:
    return {
        "w": conv.weight.detach().cpu().double().numpy(),
        "b": conv.bias.detach().cpu().double().numpy(),
        "stride": int(conv.stride[0]),
        "d2s": d2s,
        "relu": relu,
    }


def _seq(modules, relu_all_but_last: bool = True) -> list[dict]:
    out = []
    n = len(modules)
    for i, m in enumerate(modules):
        if isinstance(m, Up):
            out.append(layer_dict(m.conv, 2, m.relu))
        else:
            out.append(layer_dict(m, 1, relu_all_but_last and i < n - 1))
    return out


def float_nets(model: HyperpriorCodec) -> dict[str, list[dict]]:
    return {
        "g_a": _seq(model.g_a.layers),
        "h_a": _seq(model.h_a.layers),
        "h_s": _seq(model.h_s.layers),
        "g_s": _seq(model.g_s.layers),
    }


def latent_config(model: HyperpriorCodec, skip_below: int, precision: int) -> LatentConfig:
    c = model.config
    return LatentConfig(
        y_channels=c.m_latent,
        z_channels=c.z_channels,
        scale_min=c.scale_min,
        scale_max=c.scale_max,
        scale_levels=c.scale_levels,
        mean_steps=c.mean_steps,
        skip_below=skip_below,
        precision=precision,
    )


def extend_below(rows: np.ndarray, levels: int) -> np.ndarray:
    """``rows`` (one per trained level, lowest first) with ``levels`` more prepended, continuing the
    two lowest geometrically: how the bundle's extrapolated quality levels are made."""
    if levels <= 0:
        return rows
    step = rows[0] / rows[1]
    return np.concatenate([np.stack([rows[0] * step**k for k in range(levels, 0, -1)]), rows])


def gains(model: HyperpriorCodec, extrapolated_levels: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(gain, inv_gain) per quality level; ``extrapolated_levels`` more below the trained ones,
    continuing the two lowest gain vectors geometrically (gain units extrapolate smoothly)."""
    gain, inv_gain = model.log_gain.detach().exp().cpu().numpy(), model.log_inv_gain.detach().exp().cpu().numpy()
    return extend_below(gain, extrapolated_levels), extend_below(inv_gain, extrapolated_levels)


def z_prior(model: HyperpriorCodec) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel logistic (mean, scale) of the factorized z prior, as used in training."""
    return model.z_mean.detach().cpu().double().numpy(), (model.z_log_scale.detach().exp() * 0.6).cpu().double().numpy()


class AnalysisGraph(nn.Module):
    def __init__(self, model: HyperpriorCodec):
        super().__init__()
        self.g_a, self.h_a = model.g_a, model.h_a

    def forward(self, x: torch.Tensor, gain: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = self.g_a(x) * gain
        return y, self.h_a(y)


class SynthesisGraph(nn.Module):
    def __init__(self, model: HyperpriorCodec):
        super().__init__()
        self.g_s = model.g_s

    def forward(self, y_hat: torch.Tensor, inv_gain: torch.Tensor) -> torch.Tensor:
        y = y_hat * inv_gain
        *body, last = self.g_s.layers
        for layer in body:
            y = layer(y)
        # clamp to [0, 1] before the last depth-to-space (same values as clamping after): the last
        # conv's output range becomes [0, 1], whose 8-bit grid is the pixels' own (see onnx_target)
        return F.pixel_shuffle(last.conv(y).clamp(0.0, 1.0), 2)


def export_onnx_fp32(model: HyperpriorCodec, analysis_path, synthesis_path, opset: int = 17) -> None:
    """Both transforms as fp32 ONNX with dynamic height and width (TorchScript exporter: no onnxscript needed)."""
    model = model.eval().cpu()
    m = model.config.m_latent
    x = torch.rand(1, 3, 128, 192)
    g = torch.ones(1, m, 1, 1)
    with torch.no_grad():
        torch.onnx.export(
            AnalysisGraph(model), (x, g), str(analysis_path), input_names=["x", "gain"], output_names=["y", "z"],
            dynamic_axes={"x": {2: "H", 3: "W"}, "y": {2: "h", 3: "w"}, "z": {2: "hz", 3: "wz"}},
            opset_version=opset, dynamo=False,
        )  # fmt: skip
        yh = torch.round(torch.randn(1, m, 8, 12) * 3)
        torch.onnx.export(
            SynthesisGraph(model), (yh, g), str(synthesis_path), input_names=["y_hat", "inv_gain"], output_names=["x_hat"],
            dynamic_axes={"y_hat": {2: "h", 3: "w"}, "x_hat": {2: "H", 3: "W"}},
            opset_version=opset, dynamo=False,
        )  # fmt: skip


class LayerSynthesisGraph(nn.Module):
    """A synthesis given as float layer dicts (the fast synthesis): ``y_hat * inv_gain`` through the
    layers, the last conv clamped to [0, 1] before its depth-to-space, as ``SynthesisGraph`` does."""

    def __init__(self, layers: list[dict]):
        super().__init__()
        self.convs = nn.ModuleList()
        self.meta = []
        for layer in layers:
            w = torch.from_numpy(np.asarray(layer["w"], np.float32))
            conv = nn.Conv2d(w.shape[1], w.shape[0], w.shape[2], stride=int(layer["stride"]), padding=w.shape[2] // 2)
            conv.weight.data.copy_(w)
            conv.bias.data.copy_(torch.from_numpy(np.asarray(layer["b"], np.float32)))
            self.convs.append(conv)
            self.meta.append((int(layer["d2s"]), bool(layer["relu"])))

    def forward(self, y_hat: torch.Tensor, inv_gain: torch.Tensor) -> torch.Tensor:
        y = y_hat * inv_gain
        n = len(self.convs)
        for i, (conv, (d2s, relu)) in enumerate(zip(self.convs, self.meta)):
            y = conv(y)
            if relu:
                y = F.relu(y)
            if i == n - 1:
                y = y.clamp(0.0, 1.0)
            if d2s > 1:
                y = F.pixel_shuffle(y, d2s)
        return y


def export_synthesis_onnx(layers: list[dict], path, m: int, opset: int = 17) -> None:
    """fp32 ONNX of a layer-dict synthesis, inputs ``y_hat`` and ``inv_gain`` like the shipped one."""
    g = torch.ones(1, m, 1, 1)
    yh = torch.round(torch.randn(1, m, 8, 12) * 3)
    with torch.no_grad():
        torch.onnx.export(
            LayerSynthesisGraph(layers).eval(), (yh, g), str(path), input_names=["y_hat", "inv_gain"], output_names=["x_hat"],
            dynamic_axes={"y_hat": {2: "h", 3: "w"}, "x_hat": {2: "H", 3: "W"}}, opset_version=opset, dynamo=False,
        )  # fmt: skip
