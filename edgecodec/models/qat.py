"""Quantization-aware fine-tuning of the synthesis transform for the int8 export.

Post-training int8 costs the decoder 0.1-0.3 dB (weights and activations about
60/40, spread over every int8 layer: measured by excluding one conv at a time
from quantization). Only the synthesis is tuned, so the rate is untouched: the
loss is the distortion term of training, ``lambda * 255^2 * MSE``, with the
synthesis run through the same 8-bit grids the exporter will use:

* int8 weights, symmetric per output channel (ORT's QInt8 per-channel);
* uint8 activations per tensor at the input of every int8 conv, with min/max
  ranges calibrated like the exporter's MinMax calibrator (the shipped
  calibration crops at every quality level), refreshed every ``--recalibrate``
  steps as the weights move; the output on the fixed [0, 1] pixel grid;
* the first conv and the inverse-gain ``Mul`` stay float, as in the export.

Rounding uses straight-through gradients. The exporter then quantizes the tuned
weights post-training as usual; nothing in the bundle format changes.

    python -m edgecodec.models.qat --init edgecodec/data/weights --data ../shared/data/train \\
        --out runs/qat --time-budget 3600 --resume
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .convert import gains
from .hyperprior import HyperpriorCodec, ste_round
from .train import load_checkpoint, load_images, log_record, random_crops, save_checkpoint

EXTRAPOLATED_LEVELS = 2  # the exporter's default: calibrate over the same levels it does


def _fake_quant(x: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    """uint8 asymmetric per-tensor grid over [lo, hi] (which holds 0), straight-through."""
    scale = max(hi - lo, 1e-8) / 255.0
    zp = round(-lo / scale)
    q = torch.clamp(ste_round(x / scale) + zp, 0, 255)
    return (q - zp) * scale


def _fake_quant_weight(w: torch.Tensor) -> torch.Tensor:
    """int8 symmetric per output channel, straight-through."""
    scale = w.detach().abs().amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-12) / 127.0
    return ste_round(w / scale) * scale


def synthesis(
    model: HyperpriorCodec, y_hat: torch.Tensor, inv_gain: torch.Tensor, ranges: dict | None, record: dict | None = None
) -> torch.Tensor:
    """The synthesis on the export's int8 grids (``ranges`` None: plain float).

    ``record`` collects min/max of every quantized tensor, for calibration.
    """
    h = y_hat * inv_gain
    layers = model.g_s.layers
    for i, lay in enumerate(layers):
        w = lay.conv.weight
        if i > 0:
            if record is not None:
                lo, hi = record.get(i, (0.0, 0.0))
                record[i] = (min(lo, float(h.min())), max(hi, float(h.max())))
            if ranges is not None:
                h = _fake_quant(h, *ranges[i])
                w = _fake_quant_weight(w)
        h = F.conv2d(h, w, lay.conv.bias, padding=lay.conv.padding)
        if lay.relu:
            h = F.relu(h)
        if i == len(layers) - 1 and ranges is not None:
            # the export clamps the output to [0, 1] on the pixels' own grid (scale 1/255); the clamp
            # passes gradients straight through so out-of-range pixels are still pulled back
            h = _fake_quant(h + (h.clamp(0.0, 1.0) - h).detach(), 0.0, 1.0)
        h = F.pixel_shuffle(h, 2)
    return h


def latents(model: HyperpriorCodec, x: torch.Tensor, gain: torch.Tensor) -> torch.Tensor:
    """y_hat as the codec sends it (analysis in float; the int8 analysis moves y by far less than a step)."""
    return torch.round(model.g_a(x) * gain).clamp(-127, 127)


@torch.no_grad()
def calibration_latents(model: HyperpriorCodec, calib: list[torch.Tensor]) -> list[tuple[int, torch.Tensor]]:
    """(level, y_hat) of every calibration crop at every export level. The analysis and the gains
    stay frozen during QAT, so these are computed once and reused by every recalibration."""
    gain = torch.from_numpy(gains(model, EXTRAPOLATED_LEVELS)[0]).float()[:, :, None, None]
    return [(q, latents(model, x, gain[q : q + 1])) for x in calib for q in range(gain.shape[0])]


@torch.no_grad()
def calibrate(model: HyperpriorCodec, calib_latents: list[tuple[int, torch.Tensor]]) -> dict:
    """Min/max of every quantized tensor of the current synthesis (and inverse gains) over the
    calibration latents."""
    inv_gain = torch.from_numpy(gains(model, EXTRAPOLATED_LEVELS)[1]).float()[:, :, None, None]
    record: dict = {}
    for q, y_hat in calib_latents:
        synthesis(model, y_hat, inv_gain[q : q + 1], None, record)
    return record


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="quantization-aware fine-tuning of the synthesis")
    ap.add_argument("--init", type=Path, required=True, help="checkpoint to start from (e.g. the shipped weights)")
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--calib", type=Path, default=Path(__file__).resolve().parents[1] / "data" / "calib")
    ap.add_argument("--time-budget", type=float, default=3600.0, help="seconds of tuning in all (resumed runs included)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--crop", type=int, default=192)
    ap.add_argument("--lr", type=float, default=2e-5)
    ap.add_argument("--recalibrate", type=int, default=400, help="steps between range calibrations")
    ap.add_argument("--ckpt-every", type=float, default=300.0)
    ap.add_argument("--log-every", type=int, default=50)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    random.seed(a.seed)
    torch.manual_seed(a.seed)
    ckdir = a.out / "ckpt"
    resumed = a.resume and (ckdir / "state.json").exists()
    model, state = load_checkpoint(ckdir if resumed else a.init)
    # qat_step counts every QAT step these weights have had; the time budget (and its schedule) is per run
    state = {**state, "qat_step": state.get("qat_step", 0), "qat_elapsed": state.get("qat_elapsed", 0.0) if resumed else 0.0}
    print(f"{'resumed' if resumed else 'starting'} at QAT step {state['qat_step']}", flush=True)
    model.eval()  # no noise paths; only the synthesis and its inverse gains are trained
    params = list(model.g_s.parameters()) + [model.log_inv_gain]
    for p in model.parameters():
        p.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.Adam(params, lr=a.lr)
    imgs = [torch.from_numpy(im).permute(2, 0, 1).contiguous() for im in load_images(a.data, a.crop)]
    calib = [torch.from_numpy(im).permute(2, 0, 1)[None].float().div(255.0) for im in load_images(a.calib, 64)]
    lambdas = torch.tensor(model.config.lambdas)
    calib_latents = calibration_latents(model, calib)
    ranges = calibrate(model, calib_latents)
    shown = {str(k): [round(v, 3) for v in r] for k, r in ranges.items()}
    print(f"{len(imgs)} training images, {len(calib)} calibration crops; input ranges {json.dumps(shown)}", flush=True)

    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    signal.signal(signal.SIGINT, lambda *_: stop.update(now=True))
    a.out.mkdir(parents=True, exist_ok=True)
    log = open(a.out / "log.jsonl", "a")
    t0, el0, last_ck = time.time(), state["qat_elapsed"], time.time()
    acc: dict[str, list[float]] = {"loss": [], "psnr_int8": [], "psnr_fp32": []}
    while not stop["now"]:
        elapsed = el0 + time.time() - t0
        if elapsed >= a.time_budget:
            break
        for g in opt.param_groups:  # cosine decay to 5% over the budget
            g["lr"] = a.lr * (0.05 + 0.95 * 0.5 * (1 + np.cos(np.pi * elapsed / a.time_budget)))
        x = random_crops(imgs, a.batch, a.crop)
        q = torch.randint(0, model.config.levels, (a.batch,))
        gain, inv_gain = model.gains(q)
        with torch.no_grad():
            y_hat = latents(model, x, gain)
        x_hat = synthesis(model, y_hat, inv_gain, ranges)
        mse = (x_hat - x).pow(2).flatten(1).mean(1)
        loss = (lambdas[q] * 255.0**2 * mse).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        state["qat_step"] += 1
        acc["loss"].append(float(loss.detach()))
        acc["psnr_int8"].append(float((-10 * torch.log10(mse.detach().clamp_min(1e-10))).mean()))
        if state["qat_step"] % a.log_every == 0:
            with torch.no_grad():  # the same batch through the float synthesis: what QAT costs fp32
                mse32 = (synthesis(model, y_hat, inv_gain, None) - x).pow(2).flatten(1).mean(1)
            acc["psnr_fp32"].append(float((-10 * torch.log10(mse32.clamp_min(1e-10))).mean()))
            rec = {"qat_step": state["qat_step"], "elapsed": round(elapsed, 1), "lr": opt.param_groups[0]["lr"]}
            rec.update({k: round(float(np.mean(v)), 4) for k, v in acc.items() if v})
            rec["psnr_fp32_minus_int8_last"] = round(acc["psnr_fp32"][-1] - acc["psnr_int8"][-1], 4)
            log_record(log, rec)
            acc = {k: [] for k in acc}
        if state["qat_step"] % a.recalibrate == 0:
            ranges = calibrate(model, calib_latents)
        if time.time() - last_ck > a.ckpt_every:
            state["qat_elapsed"] = el0 + time.time() - t0
            save_checkpoint(model, opt, state, ckdir)
            last_ck = time.time()
    state["qat_elapsed"] = el0 + time.time() - t0
    save_checkpoint(model, opt, state, ckdir)
    print(f"saved QAT step {state['qat_step']}", flush=True)


if __name__ == "__main__":
    main()
