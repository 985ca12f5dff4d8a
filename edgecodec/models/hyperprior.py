"""Variable-rate mean-scale hyperprior built only from int8-friendly operations.

Why these operations: strided 5x5 convolutions downsample and 3x3 convolution +
depth-to-space upsample; with ReLU they run as int8 kernels on ONNX Runtime,
TFLite and OpenVINO (transposed convolutions and GDN do not, see README).

Parse-deciding quantities follow the determinism rule: ``y_hat = round(y)`` is an
integer tensor, so the synthesis input is exact on every backend; the hyper
decoder's outputs only choose tables (scale index, mean in 1/F steps) and are
re-computed on the integer path at export time.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class ModelConfig:
    n_analysis: tuple[int, int, int] = (128, 128, 128)
    m_latent: int = 192
    hyper: tuple[int, int] = (128, 96)  # h_a hidden, and h_s hidden at /32
    hyper_s2: int = 64  # h_s hidden at /16
    z_channels: int = 64
    synthesis: tuple[int, int, int] = (128, 96, 48)
    lambdas: tuple[float, ...] = (0.0016, 0.0032, 0.0064, 0.0128, 0.025, 0.05, 0.1, 0.2)
    scale_min: float = 0.11
    scale_max: float = 64.0
    scale_levels: int = 64
    mean_steps: int = 4  # mean quantized to 1/mean_steps on the integer path
    extra: dict = field(default_factory=dict)

    @property
    def levels(self) -> int:
        return len(self.lambdas)

    @property
    def scale_step(self) -> float:
        return math.log(self.scale_max / self.scale_min) / (self.scale_levels - 1)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        d = dict(d)
        for k in ("n_analysis", "hyper", "synthesis", "lambdas"):
            if k in d:
                d[k] = tuple(d[k])
        return cls(**d)


def conv(cin: int, cout: int, k: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2)


class Up(nn.Module):
    """3x3 conv to 4*cout channels, ReLU, then depth-to-space by 2.

    ReLU before depth-to-space (the same function) lets every runtime fuse it into the conv.
    """

    def __init__(self, cin: int, cout: int, relu: bool = True):
        super().__init__()
        self.conv = conv(cin, 4 * cout, 3)
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        return F.pixel_shuffle(F.relu(x) if self.relu else x, 2)


class Analysis(nn.Module):
    def __init__(self, c: ModelConfig):
        super().__init__()
        a, b, d = c.n_analysis
        self.layers = nn.ModuleList([conv(3, a, 5, 2), conv(a, b, 5, 2), conv(b, d, 5, 2), conv(d, c.m_latent, 5, 2)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x


class Synthesis(nn.Module):
    def __init__(self, c: ModelConfig):
        super().__init__()
        a, b, d = c.synthesis
        self.layers = nn.ModuleList([Up(c.m_latent, a), Up(a, b), Up(b, d), Up(d, 3, relu=False)])

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            y = layer(y)
        return y


class HyperAnalysis(nn.Module):
    def __init__(self, c: ModelConfig):
        super().__init__()
        h = c.hyper[0]
        self.layers = nn.ModuleList([conv(c.m_latent, h, 3), conv(h, h, 5, 2), conv(h, c.z_channels, 5, 2)])

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            y = layer(y)
            if i < len(self.layers) - 1:
                y = F.relu(y)
        return y


class HyperSynthesis(nn.Module):
    """Runs on the integer path after export: conv/ReLU/depth-to-space only."""

    def __init__(self, c: ModelConfig):
        super().__init__()
        self.layers = nn.ModuleList([Up(c.z_channels, c.hyper[1]), Up(c.hyper[1], c.hyper_s2), conv(c.hyper_s2, 2 * c.m_latent, 3)])

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            z = layer(z)
        return z


def ste_round(x: torch.Tensor) -> torch.Tensor:
    return x + (torch.round(x) - x).detach()


_SQRT1_2 = 1.0 / math.sqrt(2.0)


def gaussian_likelihood(v: torch.Tensor, mean: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """P(round(v)) under a discretized Gaussian; v may carry uniform noise during training."""
    d = (v - mean).abs()
    upper = torch.special.erfc(-(0.5 - d) / scale * _SQRT1_2) * 0.5
    lower = torch.special.erfc(-(-0.5 - d) / scale * _SQRT1_2) * 0.5
    return (upper - lower).clamp_min(1e-9)


def logistic_likelihood(v: torch.Tensor, mean: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    d = v - mean
    return (torch.sigmoid((d + 0.5) / scale) - torch.sigmoid((d - 0.5) / scale)).clamp_min(1e-9)


class HyperpriorCodec(nn.Module):
    """Mean-scale hyperprior with per-level gain vectors (Cui et al. 2021)."""

    def __init__(self, config: ModelConfig | None = None):
        super().__init__()
        c = self.config = config or ModelConfig()
        self.g_a = Analysis(c)
        self.g_s = Synthesis(c)
        self.h_a = HyperAnalysis(c)
        self.h_s = HyperSynthesis(c)
        # log-gains: a larger gain means finer quantization of y (higher rate)
        base = torch.linspace(-1.5, 1.0, c.levels)[:, None].repeat(1, c.m_latent)
        self.log_gain = nn.Parameter(base.clone())
        self.log_inv_gain = nn.Parameter(-base.clone())
        # factorized prior for z: one logistic per channel
        self.z_mean = nn.Parameter(torch.zeros(c.z_channels))
        self.z_log_scale = nn.Parameter(torch.zeros(c.z_channels))

    def gains(self, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.log_gain[q].exp()[:, :, None, None], self.log_inv_gain[q].exp()[:, :, None, None]

    def entropy_params(self, raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Split h_s output into (mean, scale); the scale channel is in table-index units."""
        c = self.config
        mean, idx = raw.chunk(2, dim=1)
        idx = idx.clamp(0.0, c.scale_levels - 1.0)
        return mean, c.scale_min * torch.exp(idx * c.scale_step)

    def forward(self, x: torch.Tensor, q: torch.Tensor) -> dict[str, torch.Tensor]:
        gain, inv_gain = self.gains(q)
        y = self.g_a(x) * gain
        z = self.h_a(y)
        if self.training:
            z_noisy = z + torch.empty_like(z).uniform_(-0.5, 0.5)
        else:
            z_noisy = torch.round(z)
        z_hat = ste_round(z)
        zm = self.z_mean[None, :, None, None]
        zs = self.z_log_scale.exp()[None, :, None, None] * 0.6
        z_lik = logistic_likelihood(z_noisy, zm, zs)
        mean, scale = self.entropy_params(self.h_s(z_hat))
        if self.training:
            y_noisy = y + torch.empty_like(y).uniform_(-0.5, 0.5)
        else:
            y_noisy = torch.round(y)
        y_lik = gaussian_likelihood(y_noisy, mean, scale)
        y_hat = ste_round(y).clamp(-127, 127)
        x_hat = self.g_s(y_hat * inv_gain)
        return {"x_hat": x_hat, "y_lik": y_lik, "z_lik": z_lik}


def rd_loss(out: dict[str, torch.Tensor], x: torch.Tensor, lam: torch.Tensor) -> dict[str, torch.Tensor]:
    n, _, h, w = x.shape
    pixels = h * w
    bits_y = -torch.log2(out["y_lik"]).flatten(1).sum(1)
    bits_z = -torch.log2(out["z_lik"]).flatten(1).sum(1)
    bpp = (bits_y + bits_z) / pixels
    mse = F.mse_loss(out["x_hat"].clamp(0, 1) if not torch.is_grad_enabled() else out["x_hat"], x, reduction="none").flatten(1).mean(1)
    loss = (lam * 255.0**2 * mse + bpp).mean()
    psnr = -10 * torch.log10(mse.clamp_min(1e-10))
    return {"loss": loss, "bpp": bpp, "mse": mse, "psnr": psnr}
