"""Checkerboard context model (He et al., CVPR 2021) on the frozen shipped model: measure what it gains.

Two passes over the latents: the *anchors* (``(row + col)`` even) are coded with the hyperprior's own
integer tables, exactly as today; the *non-anchors* get a new scale index and mean from a small
network over the hyperprior's integer parameters (scale index ``s``, mean ``mq`` in 1/F steps) of the
element itself plus a masked convolution over the decoded anchors. Elements the hyperprior skips
(``s < skip_below``) stay skipped, so the latents, the reconstruction and its PSNR do not change:
only the coded size of the non-anchors does.

The training objective is the file size as the coder measures it: the bits of the hard-rounded
symbols under the bundle's integer CDF tables. A prediction is continuous ``(s, mq)``; its cost is the
bilinear interpolation of the exact table cost over the four surrounding integer ``(s, mq)`` (exact at
integers, so the reported figure rounds the prediction and looks up the exact cost, see ``exact_bits``).

    python -m edgecodec.models.checkerboard cache [--train DIR] [--out runs/ctx]      # latents, once
    python -m edgecodec.models.checkerboard train --name w96k3 [--hidden 96 --kernel 3 ...]

Measured (``benchmarks/checkerboard.py``, 24 Kodak images, 10 levels): -0.38% to -0.56% BD-rate for
three variants (73k-230k MACs per non-anchor), with the two-pass parse at 1.31-1.56x today's; the
scale-only variant does as well as those that also predict the mean, and the saving falls from ~1% of
the file at level 1 to ~0.15% at levels 7-9. The issue's bar is -3% at <= 1.3x, so the context is not
in the bundle (nor in the bitstream).

``cache`` runs the shipped bundle's encoder (the backend ``auto`` picks; the encoder's own rounding)
at every level on each training image cropped to a multiple of 64, and stores per image the final
latents ``y`` (int8) and the integer hyper-decoder's raw outputs ``s`` (uint8) and ``mq`` (int16).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CACHE = ROOT / "runs" / "ctx"


# the two lattices of each kind, as (row, column) slices: anchors are (row + col) even
ANCHORS = ((slice(0, None, 2), slice(0, None, 2)), (slice(1, None, 2), slice(1, None, 2)))
NON_ANCHORS = ((slice(0, None, 2), slice(1, None, 2)), (slice(1, None, 2), slice(0, None, 2)))


def anchor_mask(h: int, w: int) -> np.ndarray:
    """True where ``(row + col)`` is even: the anchors, coded from the hyperprior alone."""
    return (np.add.outer(np.arange(h), np.arange(w)) % 2) == 0


def hyper_raw(em, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The integer hyper-decoder's raw outputs (mq in 1/F steps, scale index s), each (M, h, w) int64."""
    raw = em.hyper(np.asarray(z, np.int64)).astype(np.int64)
    m = em.cfg.y_channels
    return raw[:m], raw[m:]


# ---------------------------------------------------------------------------------------------- cache


def cache_latents(train: Path, out: Path, backend_name: str = "auto", limit: int | None = None) -> None:
    from .. import codec
    from ..bundle import Bundle
    from ..io import read_rgb8
    from ..runtimes.base import open_backend

    bundle = Bundle()
    backend = open_backend(backend_name, bundle, threads=1)
    em = bundle.entropy_model
    out.mkdir(parents=True, exist_ok=True)
    files = sorted(p for p in train.iterdir() if p.suffix.lower() == ".png")[:limit]
    t0 = time.perf_counter()
    for i, p in enumerate(files):
        dst = out / f"{p.stem}.npz"
        if dst.is_file():
            continue
        rgb = read_rgb8(p)
        h, w = rgb.shape[0] // 64 * 64, rgb.shape[1] // 64 * 64
        if h < 256 or w < 256:
            continue
        r0, c0 = (rgb.shape[0] - h) // 2, (rgb.shape[1] - w) // 2
        rgb = np.ascontiguousarray(rgb[r0 : r0 + h, c0 : c0 + w])
        ys, ss, ms = [], [], []
        for q in range(1, bundle.levels + 1):
            parse, _, _ = codec.code_latents(rgb, q, backend, bundle, 1 << 30)
            mq, s = hyper_raw(em, parse.z)
            ys.append(parse.y.astype(np.int8))
            ss.append(s.astype(np.uint8))
            ms.append(mq.astype(np.int16))
        tmp = dst.with_suffix(".tmp.npz")
        np.savez(tmp, y=np.stack(ys), s=np.stack(ss), mq=np.stack(ms))
        tmp.replace(dst)
        if i % 20 == 0:
            print(f"{i + 1}/{len(files)} {p.name} {w}x{h} {time.perf_counter() - t0:.0f}s backend {backend.name}", flush=True)
    meta = {"backend": backend.describe(), "digest": bundle.digest}
    (out / "cache.json").write_text(json.dumps(meta))
    print(f"done: {len(files)} images in {time.perf_counter() - t0:.0f}s", flush=True)


def load_cache(folder: Path) -> list[dict[str, np.ndarray]]:
    out = []
    for p in sorted(folder.glob("*.npz")):
        if p.name.endswith(".tmp.npz"):
            continue
        with np.load(p) as a:
            out.append({"name": p.stem, **{k: a[k] for k in ("y", "s", "mq")}})
    return out


# ---------------------------------------------------------------------------------------------- exact cost

V_RADIUS = 254  # |y - m| <= 127 + 127


class ExactCost:
    """Bits of value ``v = y - floor(mq / F)`` under table ``s * F + (mq mod F)``: the integer tables' cost
    (``precision - log2 freq``), an escape costing its symbol plus its zigzag-LEB128 bypass bytes."""

    def __init__(self, bundle):
        cfg = bundle.latent
        tables = bundle.entropy_model.y_tables
        self.f = cfg.mean_steps
        self.levels = cfg.scale_levels
        self.skip_below = cfg.skip_below
        self.mq_max = 127 * self.f
        v = np.arange(-V_RADIUS, V_RADIUS + 1)
        t = np.arange(tables.count)
        vv, tt = np.broadcast_arrays(v[None, :], t[:, None])
        bits = tables.symbol_bits(vv.ravel(), tt.ravel()).reshape(vv.shape)
        sym = vv - tables.offset[tt]
        esc = (sym < 0) | (sym >= tables.length[tt])
        zz = np.where(vv >= 0, 2 * vv, -2 * vv - 1)
        leb = np.where(zz < 128, 1, np.where(zz < 1 << 14, 2, 3))
        self.table = (bits + np.where(esc, 8.0 * leb, 0.0)).astype(np.float32)  # (T, 2R+1)
        self.torch_table = torch.from_numpy(self.table)

    def np_bits(self, y: np.ndarray, s: np.ndarray, mq: np.ndarray) -> np.ndarray:
        """Exact bits of integer arrays (same shapes)."""
        s = np.clip(s, 0, self.levels - 1)
        mq = np.clip(mq, -self.mq_max, self.mq_max)
        m = np.floor_divide(mq, self.f)
        t = s * self.f + (mq - self.f * m)
        return self.table[t, np.asarray(y, np.int64) - m + V_RADIUS]

    def torch_bits(self, y: torch.Tensor, s: torch.Tensor, mq: torch.Tensor) -> torch.Tensor:
        """The same for integer-valued tensors (no gradient)."""
        f = self.f
        s = s.clamp(0, self.levels - 1).long()
        mq = mq.clamp(-self.mq_max, self.mq_max).long()
        m = torch.div(mq, f, rounding_mode="floor")
        t = s * f + (mq - f * m)
        tab = self.torch_table
        return tab[t, y.long() - m + V_RADIUS]

    def relaxed(self, y: torch.Tensor, s_hat: torch.Tensor, mq_hat: torch.Tensor, mean: bool) -> torch.Tensor:
        """Bilinear interpolation of the exact cost over the integer (s, mq) around a continuous prediction."""
        s_hat = s_hat.clamp(0.0, self.levels - 1.0)
        s0 = s_hat.detach().floor().clamp(max=self.levels - 2)
        a = s_hat - s0
        if not mean:
            mq0 = mq_hat.detach().round()
            return (1 - a) * self.torch_bits(y, s0, mq0) + a * self.torch_bits(y, s0 + 1, mq0)
        mq_hat = mq_hat.clamp(-float(self.mq_max), float(self.mq_max))
        q0 = mq_hat.detach().floor().clamp(max=self.mq_max - 1)
        b = mq_hat - q0
        b00, b10 = self.torch_bits(y, s0, q0), self.torch_bits(y, s0 + 1, q0)
        b01, b11 = self.torch_bits(y, s0, q0 + 1), self.torch_bits(y, s0 + 1, q0 + 1)
        return (1 - a) * ((1 - b) * b00 + b * b01) + a * ((1 - b) * b10 + b * b11)


# ---------------------------------------------------------------------------------------------- model


@dataclass(frozen=True)
class ContextConfig:
    y_channels: int = 192
    hidden: int = 96
    kernel: int = 3  # masked conv over the anchors: 3 -> the 4 direct neighbours, 5 -> 12 anchors
    inputs: str = "both"  # what the masked conv sees of the anchors: 'y', 'res' (F*y - mq), or 'both'
    predict_mean: bool = True
    depth: int = 1  # hidden 1x1 layers after the first
    mean_steps: int = 4

    def __post_init__(self) -> None:
        if self.kernel not in (3, 5, 7) or self.inputs not in ("y", "res", "both") or self.hidden < 1 or self.depth < 0:
            raise ValueError("invalid context configuration")

    @property
    def anchor_channels(self) -> int:
        return self.y_channels * (2 if self.inputs == "both" else 1)


def kernel_mask(k: int) -> torch.Tensor:
    """Taps at odd ``(dr + dc)``: seen from a non-anchor, exactly the anchors of the window."""
    r = torch.arange(k) - k // 2
    return ((r[:, None] + r[None, :]) % 2 != 0).float()


# fixed input normalisations (part of the model: the integer path folds them into the first layer)
Y_SCALE, RES_SCALE, S_OFFSET, S_SCALE, MQ_SCALE = 1 / 8, 1 / 32, 32.0, 1 / 16, 1 / 32


class CheckerboardContext(nn.Module):
    def __init__(self, cfg: ContextConfig):
        super().__init__()
        self.cfg = cfg
        m, h = cfg.y_channels, cfg.hidden
        self.ctx = nn.Conv2d(cfg.anchor_channels, h, cfg.kernel, padding=cfg.kernel // 2, bias=False)
        self.register_buffer("mask", kernel_mask(cfg.kernel)[None, None])
        self.hyp = nn.Conv2d(2 * m, h, 1)
        self.mid = nn.ModuleList([nn.Conv2d(h, h, 1) for _ in range(cfg.depth)])
        self.out = nn.Conv2d(h, (2 if cfg.predict_mean else 1) * m, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def anchor_input(self, y: torch.Tensor, mq: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
        parts = []
        if self.cfg.inputs in ("y", "both"):
            parts.append(y * Y_SCALE)
        if self.cfg.inputs in ("res", "both"):
            parts.append((self.cfg.mean_steps * y - mq) * RES_SCALE)
        return torch.cat(parts, 1) * anchors

    def forward(self, y: torch.Tensor, s: torch.Tensor, mq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Continuous (s, mq) for every element: the hyperprior's at anchors, the context's elsewhere.

        y, s, mq: (N, M, H, W) float tensors of integers. Non-anchor outputs see only anchor latents
        (the masked taps) and the element's own hyperprior parameters; anchors see no latents at all."""
        hh, ww = y.shape[-2:]
        anchors = torch.from_numpy(anchor_mask(hh, ww)).to(y.dtype)[None, None]
        a = self.anchor_input(y, mq, anchors)
        x = F.conv2d(a, self.ctx.weight * self.mask, padding=self.cfg.kernel // 2)
        x = F.relu(x + self.hyp(torch.cat([(s - S_OFFSET) * S_SCALE, mq * MQ_SCALE], 1)))
        for layer in self.mid:
            x = F.relu(layer(x))
        d = self.out(x)
        m = self.cfg.y_channels
        non = 1.0 - anchors
        s_hat = s + d[:, :m] * non
        mq_hat = mq + (d[:, m:] * self.cfg.mean_steps * non if self.cfg.predict_mean else 0.0)
        return s_hat, mq_hat

    def macs_per_non_anchor(self) -> int:
        c = self.cfg
        taps = int(kernel_mask(c.kernel).sum())
        outs = (2 if c.predict_mean else 1) * c.y_channels
        return taps * c.anchor_channels * c.hidden + 2 * c.y_channels * c.hidden + c.depth * c.hidden**2 + c.hidden * outs


def hard_params(
    model: CheckerboardContext, y: np.ndarray, s: np.ndarray, mq: np.ndarray, levels: int, mq_max: int
) -> tuple[np.ndarray, np.ndarray]:
    """Integer (s, mq) of every element of one image's (M, H, W) latents: the prediction rounded half up."""
    with torch.no_grad():
        t = [torch.from_numpy(np.asarray(a, np.float32))[None] for a in (y, s, mq)]
        s_hat, mq_hat = model(*t)
    s2 = np.clip(np.floor(s_hat[0].numpy() + 0.5), 0, levels - 1).astype(np.int64)
    q2 = np.clip(np.floor(mq_hat[0].numpy() + 0.5), -mq_max, mq_max).astype(np.int64)
    return s2, q2


def exact_bits(model: CheckerboardContext, cost: ExactCost, y: np.ndarray, s: np.ndarray, mq: np.ndarray) -> dict[str, float]:
    """Exact bits (hard table selection) of one image's latents at one level, with and without context."""
    y, s, mq = (np.asarray(a, np.int64) for a in (y, s, mq))
    coded = s >= cost.skip_below
    non = ~anchor_mask(*y.shape[1:])[None] & coded
    base = cost.np_bits(y, s, mq)
    s2, q2 = hard_params(model, y, s, mq, cost.levels, cost.mq_max)
    ctx = cost.np_bits(y, s2, q2)
    return {
        "anchor": float(base[coded & ~non].sum()),
        "non_base": float(base[non].sum()),
        "non_ctx": float(ctx[non].sum()),
    }


class GemmForward:
    """The trained context as the decoder would run it: GEMMs over the non-anchor positions only
    (the masked taps gathered from the anchors, plus the element's own hyperprior parameters), in
    float32 numpy. The integer path would run the same products on int8 operands; this is its cost
    model and the reference the tests compare with the torch module."""

    def __init__(self, model: CheckerboardContext):
        c = model.cfg
        self.cfg = c
        mask = kernel_mask(c.kernel).numpy().astype(bool)
        self.taps = [(int(r) - c.kernel // 2, int(q) - c.kernel // 2) for r, q in zip(*np.nonzero(mask))]
        w = model.ctx.weight.detach().numpy()
        wc = np.concatenate([w[:, :, r + c.kernel // 2, q + c.kernel // 2] for r, q in self.taps], 1)
        wh = model.hyp.weight.detach().numpy()[:, :, 0, 0]
        self.w1 = np.ascontiguousarray(np.concatenate([wc, wh], 1), np.float32)
        self.b1 = model.hyp.bias.detach().numpy()[:, None].astype(np.float32)
        self.mid = [(m.weight.detach().numpy()[:, :, 0, 0], m.bias.detach().numpy()[:, None]) for m in model.mid]
        self.w2 = model.out.weight.detach().numpy()[:, :, 0, 0].astype(np.float32)
        self.b2 = model.out.bias.detach().numpy()[:, None].astype(np.float32)

    def __call__(self, y: np.ndarray, s: np.ndarray, mq: np.ndarray) -> list[tuple[slice, slice, np.ndarray]]:
        """Per non-anchor lattice (``NON_ANCHORS``): (rows, cols, d), ``d`` (outputs, rows, cols) float32
        the deltas of s and of mq / F. Strided views, no fancy indexing: the decoder's glue stays cheap."""
        c = self.cfg
        m, hh, ww = y.shape
        p = c.kernel // 2
        a = np.zeros(((2 if c.inputs == "both" else 1) * m, hh + 2 * p, ww + 2 * p), np.float32)
        inner = a[:, p : p + hh, p : p + ww]
        for rs, cs in ANCHORS:  # only the anchors are ever read
            ya = y[:, rs, cs].astype(np.float32)
            parts = []
            if c.inputs in ("y", "both"):
                parts.append(ya * Y_SCALE)
            if c.inputs in ("res", "both"):
                parts.append((c.mean_steps * ya - mq[:, rs, cs]) * RES_SCALE)
            inner[:, rs, cs] = np.concatenate(parts, 0) if len(parts) > 1 else parts[0]
        out = []
        for rs, cs in NON_ANCHORS:
            r0, c0 = rs.start, cs.start
            nr, nc = len(range(r0, hh, 2)), len(range(c0, ww, 2))
            if nr == 0 or nc == 0:
                continue
            taps = [a[:, p + r0 + dr : p + r0 + dr + 2 * nr - 1 : 2, p + c0 + dc : p + c0 + dc + 2 * nc - 1 : 2] for dr, dc in self.taps]
            sv, qv = s[:, rs, cs].astype(np.float32), mq[:, rs, cs].astype(np.float32)
            x = np.concatenate(taps + [(sv - S_OFFSET) * S_SCALE, qv * MQ_SCALE], 0).reshape(-1, nr * nc)
            h = np.maximum(self.w1 @ x + self.b1, 0)
            for w, b in self.mid:
                h = np.maximum(w @ h + b, 0)
            out.append((rs, cs, (self.w2 @ h + self.b2).reshape(-1, nr, nc)))
        return out


# ---------------------------------------------------------------------------------------------- training


def split(data: list[dict], val: int) -> tuple[list[dict], list[dict]]:
    rng = np.random.default_rng(0)
    order = rng.permutation(len(data))
    return [data[i] for i in order[val:]], [data[i] for i in order[:val]]


def batch(data: list[dict], n: int, crop: int, rng: np.random.Generator) -> tuple[torch.Tensor, ...]:
    ys, ss, ms = [], [], []
    for _ in range(n):
        d = data[rng.integers(len(data))]
        q = rng.integers(d["y"].shape[0])
        h, w = d["y"].shape[-2:]
        r, c = rng.integers(h - crop + 1), rng.integers(w - crop + 1)
        r, c = r - r % 2, c - c % 2  # keep the checkerboard phase of the whole image
        sl = (q, slice(None), slice(r, r + crop), slice(c, c + crop))
        y, s, mq = d["y"][sl], d["s"][sl], d["mq"][sl]
        if rng.random() < 0.5:  # a horizontal flip keeps the phase only on even widths: crop is even
            y, s, mq = y[..., ::-1], s[..., ::-1], mq[..., ::-1]
        ys.append(y.astype(np.float32))
        ss.append(s.astype(np.float32))
        ms.append(mq.astype(np.float32))
    return tuple(torch.from_numpy(np.ascontiguousarray(np.stack(a))) for a in (ys, ss, ms))


def evaluate(model: CheckerboardContext, cost: ExactCost, data: list[dict]) -> dict:
    """Per level: exact bits of all coded latents without and with the context, summed over ``data``."""
    levels = data[0]["y"].shape[0]
    tot = np.zeros((levels, 3))
    for d in data:
        for q in range(levels):
            r = exact_bits(model, cost, d["y"][q], d["s"][q], d["mq"][q])
            tot[q] += (r["anchor"], r["non_base"], r["non_ctx"])
    base = tot[:, 0] + tot[:, 1]
    ctx = tot[:, 0] + tot[:, 2]
    return {"saving_pct": [float(100 * (1 - c / b)) for b, c in zip(base, ctx)], "base_bits": base.tolist(), "ctx_bits": ctx.tolist()}


def train(args: argparse.Namespace) -> None:
    from ..bundle import Bundle

    torch.set_num_threads(args.threads)
    bundle = Bundle()
    cost = ExactCost(bundle)
    data = load_cache(args.cache)
    tr, va = split(data, args.val)
    cfg = ContextConfig(
        y_channels=bundle.latent.y_channels,
        hidden=args.hidden,
        kernel=args.kernel,
        inputs=args.inputs,
        predict_mean=not args.scale_only,
        depth=args.depth,
        mean_steps=bundle.latent.mean_steps,
    )
    model = CheckerboardContext(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    rng = np.random.default_rng(args.seed)
    torch.manual_seed(args.seed)
    out = args.cache / "models"
    out.mkdir(parents=True, exist_ok=True)
    print(f"{args.name}: {cfg}, {model.macs_per_non_anchor()} MACs per non-anchor; {len(tr)} train, {len(va)} val images", flush=True)
    t0 = time.perf_counter()
    step, ema = 0, None
    while (el := time.perf_counter() - t0) < args.minutes * 60:
        lr = args.lr * (0.5 * (1 + math.cos(math.pi * min(1.0, el / (args.minutes * 60)))))
        for g in opt.param_groups:
            g["lr"] = lr
        y, s, mq = batch(tr, args.batch, args.crop, rng)
        s_hat, mq_hat = model(y, s, mq)
        coded = (s >= cost.skip_below).float()
        non = coded * (1.0 - torch.from_numpy(anchor_mask(args.crop, args.crop)).float())[None, None]
        with torch.no_grad():
            base = cost.torch_bits(y, s, mq)
            norm = (base * coded).sum((1, 2, 3)) + 256.0  # each sample's whole coded size: relative savings
        bits = cost.relaxed(y, s_hat, mq_hat, cfg.predict_mean)
        loss = (((bits - base) * non).sum((1, 2, 3)) / norm).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        ema = loss.item() if ema is None else 0.98 * ema + 0.02 * loss.item()
        if step % 100 == 0:
            print(f"step {step} {el:.0f}s lr {lr:.2e} relaxed saving {-100 * ema:.2f}% of the coded size", flush=True)
    ev = evaluate(model, cost, va)
    print(f"{args.name}: val exact saving per level (% of y bits): {' '.join(f'{v:.2f}' for v in ev['saving_pct'])}", flush=True)
    torch.save({"config": asdict(cfg), "state": model.state_dict(), "steps": step, "val": ev}, out / f"{args.name}.pt")
    print(f"saved {out / (args.name + '.pt')} after {step} steps", flush=True)


def load_model(path: Path) -> CheckerboardContext:
    ck = torch.load(path, map_location="cpu", weights_only=False)
    model = CheckerboardContext(ContextConfig(**ck["config"]))
    model.load_state_dict(ck["state"])
    return model.eval()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m edgecodec.models.checkerboard")
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("cache")
    c.add_argument("--train", type=Path, default=ROOT.parent / "shared" / "data" / "train")
    c.add_argument("--out", type=Path, default=DEFAULT_CACHE)
    c.add_argument("--backend", default="auto")
    c.add_argument("--limit", type=int, default=None)
    t = sub.add_parser("train")
    t.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    t.add_argument("--name", required=True)
    t.add_argument("--hidden", type=int, default=96)
    t.add_argument("--kernel", type=int, default=3)
    t.add_argument("--inputs", default="both", choices=("y", "res", "both"))
    t.add_argument("--scale-only", action="store_true")
    t.add_argument("--depth", type=int, default=1)
    t.add_argument("--minutes", type=float, default=15.0)
    t.add_argument("--batch", type=int, default=16)
    t.add_argument("--crop", type=int, default=16)
    t.add_argument("--lr", type=float, default=2e-3)
    t.add_argument("--val", type=int, default=24)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    if a.cmd == "cache":
        cache_latents(a.train, a.out, a.backend, a.limit)
    else:
        train(a)


if __name__ == "__main__":
    main()
