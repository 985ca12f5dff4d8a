"""A light synthesis for the same bitstream (issue 13): <= 5 kMAC per output pixel.

It decodes the latents of the shipped model (``y_hat``, integers from the parse, times the bundle's
per-level ``inv_gain``, exactly the input of the full synthesis) with the full synthesis' op family
only, so it runs as int8 kernels on ONNX Runtime, LiteRT and OpenVINO and in the numpy reference:

* 3x3 or 1x1 ``Conv2d`` with padding ``k // 2``;
* ReLU, placed before depth-to-space (``F.pixel_shuffle``) so runtimes fuse it into the conv;
* depth-to-space by 2 or 4.

The network is a chain of stages. A stage is one 3x3 conv to ``r*r*cout`` channels, ReLU (not on
the last stage) and depth-to-space by ``r``, followed by ``mix`` 1x1 conv + ReLU layers of width
``cout`` at the new resolution. There is exactly one 3x3 conv per stage, so the receptive field
is at most 1 + 1/2 + 1/4 + ... < 2 latents (32 px) in every direction: the halo the tiling code
relies on (``receptive_field_latents``).

MACs per output pixel of a conv at input resolution 1/s of the output (s = 16 for the latents):
``k*k*cin*cout / s**2``. The default (four depth-to-space-by-2 stages 192 -> 64 -> 32 -> 16 -> 3) is
1728 + 1152 + 1152 + 432 = 4464 MAC/px; the shipped synthesis (192 -> 128 -> 96 -> 48 -> 3) is
22 032.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

MAC_BUDGET = 5000.0  # per output pixel (issue 13)
HALO_LATENTS = 2.0  # the tiling code's halo


@dataclass(frozen=True)
class FastConfig:
    y_channels: int = 192
    channels: tuple[int, ...] = (64, 32, 16, 3)  # output channels of each stage (after depth-to-space)
    factors: tuple[int, ...] = (2, 2, 2, 2)  # depth-to-space factor of each stage; product = 16
    mix: tuple[int, ...] = (0, 0, 0, 0)  # 1x1 conv + ReLU layers after each stage (0 on the last)

    def __post_init__(self) -> None:
        n = len(self.channels)
        if not n or len(self.factors) != n or len(self.mix) != n:
            raise ValueError("channels, factors and mix need one entry per stage")
        if math.prod(self.factors) != 16 or any(f not in (1, 2, 4) for f in self.factors):
            raise ValueError(f"depth-to-space factors {self.factors} must be 1, 2 or 4 and multiply to 16")
        if self.channels[-1] != 3 or self.mix[-1] != 0:
            raise ValueError("the last stage must output the 3 pixel channels, with no 1x1 layers after it")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> FastConfig:
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items()})


class Stage(nn.Module):
    """3x3 conv to r*r*cout, ReLU (not on the last stage), depth-to-space by r, then ``mix`` 1x1 conv + ReLU."""

    def __init__(self, cin: int, cout: int, r: int, mix: int, relu: bool):
        super().__init__()
        self.conv = nn.Conv2d(cin, r * r * cout, 3, padding=1)
        self.r, self.relu = r, relu
        self.mix = nn.ModuleList([nn.Conv2d(cout, cout, 1) for _ in range(mix)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.relu:
            x = F.relu(x)
        if self.r > 1:
            x = F.pixel_shuffle(x, self.r)
        for m in self.mix:
            x = F.relu(m(x))
        return x


class FastSynthesis(nn.Module):
    """``y_hat * inv_gain`` (N, 192, h, w) -> pixels (N, 3, 16h, 16w), unclamped like ``Synthesis``."""

    def __init__(self, config: FastConfig | None = None):
        super().__init__()
        c = self.config = config or FastConfig()
        cins = (c.y_channels,) + c.channels[:-1]
        n = len(c.channels)
        self.stages = nn.ModuleList(
            [Stage(ci, co, r, k, i < n - 1) for i, (ci, co, r, k) in enumerate(zip(cins, c.channels, c.factors, c.mix))]
        )

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        for s in self.stages:
            h = s(h)
        return h

    def conv_sequence(self) -> list[tuple[nn.Conv2d, int, bool]]:
        """Every conv in order with its depth-to-space factor and ReLU: the exported layer list."""
        out = []
        for s in self.stages:
            out.append((s.conv, s.r, s.relu))
            out.extend((m, 1, True) for m in s.mix)
        return out


def macs_per_pixel(config: FastConfig) -> float:
    """Multiply-accumulates per output pixel, counted from the configuration (biases not counted)."""
    total, res = 0.0, 1.0 / 16  # resolution of the current tensor relative to the output
    cin = config.y_channels
    for cout, r, mix in zip(config.channels, config.factors, config.mix):
        total += 9 * cin * r * r * cout * res * res
        res *= r
        total += mix * cout * cout * res * res
        cin = cout
    return total


def hook_macs_per_pixel(model: nn.Module, h: int = 4, w: int = 4) -> float:
    """The same count measured: forward hooks on every Conv2d of ``model`` over an (h, w) latent grid."""
    total = [0]

    def hook(mod: nn.Conv2d, inp, out) -> None:
        kh, kw = mod.kernel_size
        total[0] += out.numel() * (mod.in_channels // mod.groups) * kh * kw

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    try:
        with torch.no_grad():
            out = model(torch.zeros(1, model.config.y_channels, h, w))
    finally:
        for hd in handles:
            hd.remove()
    return total[0] / (out.shape[-2] * out.shape[-1])


def receptive_field_latents(config: FastConfig) -> float:
    """How far (in latents) an output pixel sees in each direction: each 3x3 conv adds one pixel of its
    input resolution (1x1 convs add none)."""
    halo, res = 0.0, 1.0  # res: input resolution of the stage, in latents per pixel
    for r in config.factors:
        halo += res
        res /= r
    return halo


def traced_ops(model: nn.Module) -> set[str]:
    """Every operation the forward pass runs, from a torch.fx trace: module types (``Conv2d``) and
    function names (``relu``, ``pixel_shuffle``)."""
    gm = torch.fx.symbolic_trace(model)
    mods = dict(gm.named_modules())
    ops = set()
    for n in gm.graph.nodes:
        if n.op == "call_module":
            ops.add(type(mods[n.target]).__name__)
        elif n.op in ("call_function", "call_method"):
            ops.add(getattr(n.target, "__name__", str(n.target)))
    return ops


@torch.no_grad()
def init_from_data(model: FastSynthesis, h: torch.Tensor, out_std: float = 0.25, out_mean: float = 0.45) -> None:
    """Data-dependent initialisation (LSUV-like): scale every conv so its output has unit standard
    deviation on the batch ``h`` (zero bias), the last one to the pixels' typical spread and mean.

    The default PyTorch init shrinks activations by ~sqrt(3) per layer and the synthesis input
    ``y_hat * inv_gain`` is far from unit scale, so without this the first steps only learn scale.
    """
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    last = convs[-1]
    for conv in convs:
        got = {}
        hd = conv.register_forward_hook(lambda m, i, o, got=got: got.__setitem__("o", o))
        conv.bias.zero_()
        model(h)
        hd.remove()
        std = float(got["o"].std().clamp_min(1e-8))
        conv.weight.mul_((out_std if conv is last else 1.0) / std)
        if conv is last:
            conv.bias.fill_(out_mean)


@torch.no_grad()
def init_from_full(model: FastSynthesis, full: nn.Module, h: torch.Tensor) -> list[int]:
    """Start the first stage from the shipped synthesis' first conv (``full``: ``HyperpriorCodec.g_s``):
    it reads the same input, so its features are already meaningful. Keeps the ``cout`` of its
    output channels (after depth-to-space) that matter most on the batch ``h`` (RMS activation times
    the norm of the next layer's weights reading the channel), then initialises the rest from data.
    Returns the kept channels."""
    first, src = model.stages[0], full.layers[0].conv
    r, cout = first.r, model.config.channels[0]
    if r != 2 or src.kernel_size != (3, 3) or cout > src.out_channels // 4:
        raise ValueError("init from the full synthesis needs a first stage with depth-to-space by 2 and <= its channels")
    act = F.pixel_shuffle(F.relu(src(h)), 2)  # (N, C, 2h, 2w)
    rms = act.pow(2).mean(dim=(0, 2, 3)).sqrt()
    reads = full.layers[1].conv.weight.pow(2).sum(dim=(0, 2, 3)).sqrt()
    keep = torch.argsort(rms * reads, descending=True)[:cout].sort().values
    rows = (keep[:, None] * 4 + torch.arange(4)[None]).reshape(-1)  # pixel_shuffle: channel c*4 + (i*2 + j)
    first.conv.weight.copy_(src.weight[rows])
    first.conv.bias.copy_(src.bias[rows])
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    last = convs[-1]
    for conv in convs[1:]:
        got = {}
        hd = conv.register_forward_hook(lambda m, i, o, got=got: got.__setitem__("o", o))
        conv.bias.zero_()
        model(h)
        hd.remove()
        conv.weight.mul_((0.25 if conv is last else 1.0) / float(got["o"].std().clamp_min(1e-8)))
        if conv is last:
            conv.bias.fill_(0.45)
    return keep.tolist()


def float_layers(model: FastSynthesis) -> list[dict]:
    """The network as the exporters' float layer dicts (``export.bundle_builder``): each stage's 3x3
    conv with its ReLU and depth-to-space, then its 1x1 convs (ReLU, no depth-to-space)."""
    from .convert import layer_dict

    return [layer_dict(conv, r, relu) for conv, r, relu in model.conv_sequence()]


def quantized_forward(model: FastSynthesis, h: torch.Tensor, ranges: dict | None, record: dict | None = None) -> torch.Tensor:
    """The forward pass on the export's int8 grids (``export.fast_target``, the full synthesis' rules):
    the first conv float, every later conv's input on a uint8 per-tensor grid over its calibrated
    [min, max] and its weights int8 per output channel, the output clamped onto the 8-bit pixel grid;
    straight-through gradients (``models.qat``). ``ranges`` None: plain float. ``record`` collects
    each quantized input's min/max (calibration)."""
    from .qat import _fake_quant, _fake_quant_weight

    seq = model.conv_sequence()
    for i, (conv, r, relu) in enumerate(seq):
        w = conv.weight
        if i > 0:
            if record is not None:
                lo, hi = record.get(i, (0.0, 0.0))
                record[i] = (min(lo, float(h.min())), max(hi, float(h.max())))
            if ranges is not None:
                h = _fake_quant(h, *ranges[i])
                w = _fake_quant_weight(w)
        h = F.conv2d(h, w, conv.bias, padding=conv.padding)
        if relu:
            h = F.relu(h)
        if i == len(seq) - 1 and ranges is not None:
            h = _fake_quant(h + (h.clamp(0.0, 1.0) - h).detach(), 0.0, 1.0)
        if r > 1:
            h = F.pixel_shuffle(h, r)
    return h


@torch.no_grad()
def calibrate(model: FastSynthesis, inputs: list[torch.Tensor]) -> dict:
    """Min/max of every quantized conv input over ``inputs`` (``y_hat * inv_gain``), as the export's
    MinMax calibrator sees them (the range always holds 0)."""
    record: dict = {}
    for h in inputs:
        quantized_forward(model, h, None, record)
    return record


def save_weights(model: FastSynthesis, path, meta: dict | None = None) -> None:
    """The shipped form: configuration, float weights rounded to float16 (what the export reads;
    half the bytes of a checkpoint, no optimizer) and where they came from."""
    sd = {k: v.detach().half() for k, v in model.state_dict().items()}
    torch.save({"config": model.config.to_dict(), "model": sd, "meta": dict(meta or {})}, path)


def load_weights(path) -> tuple[FastSynthesis, dict]:
    """A ``save_weights`` file, or a training checkpoint (``fast_train``'s ``last.pt``)."""
    ck = torch.load(path, map_location="cpu", weights_only=False)
    if "optimizer" in ck:
        from .fast_train import load_model

        return load_model(path), {"from_checkpoint": str(path), **{k: ck["state"][k] for k in ("step", "elapsed") if k in ck["state"]}}
    model = FastSynthesis(FastConfig.from_dict(ck["config"]))
    model.load_state_dict({k: v.float() for k, v in ck["model"].items()})
    return model.eval(), ck.get("meta", {})
