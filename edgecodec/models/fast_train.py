"""Train the fast synthesis (issue 13) on the frozen latents of the shipped model.

Data: the pairs of ``python -m edgecodec.models.fast_pairs`` (int8 latents exactly as the decoder
parses them, every quality level, with the original uint8 crops and the full synthesis' decode).
Each sample is one crop at one random level; the input is ``y_hat * inv_gain[level]`` like the full
synthesis gets it; the loss is the MSE against the original pixels (``--loss psnr``: the mean over
the batch of log MSE, which weighs every level alike), plus optionally ``--teacher-weight`` times
the MSE against the full synthesis' decode.

No flips at training time: the latent code is not flip-equivariant (the shipped synthesis decodes
flipped latents at ~17 dB), so the pairs were flipped before encoding instead (``fast_pairs``).

Adam; the learning rate follows the elapsed fraction of ``--minutes`` (2% warm-up, cosine decay to
1%), so ``--resume`` keeps the schedule. Elapsed time is the process' CPU time divided by its
threads, not the wall clock: a run paused with SIGSTOP (while benchmarks run) or starved by other
work does not lose its schedule. Checkpoints (model, optimizer, step and time counters, the
sampler's random state) are written atomically every ``--ckpt-minutes`` and on exit; the JSONL log
gets the training loss every ``--log-every`` steps and the PSNR per level on the held-out crops every
``--val-minutes`` (with the full synthesis' PSNR on the same crops as the baseline, once).

    python -m edgecodec.models.fast_train --data /work/cache/fast --out /work/cache/fast/ckpt --minutes 100 [--resume]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .fast_synthesis import (
    MAC_BUDGET,
    FastConfig,
    FastSynthesis,
    calibrate,
    hook_macs_per_pixel,
    init_from_data,
    init_from_full,
    macs_per_pixel,
    quantized_forward,
    receptive_field_latents,
)

CKPT = "last.pt"


def ints(s: str) -> tuple[int, ...]:
    return tuple(int(v) for v in s.split(","))


def lr_at(frac: float, base: float) -> float:
    """2% linear warm-up from 5%, then cosine decay to 1% of ``base`` at the end of the budget."""
    if frac < 0.02:
        return base * max(frac / 0.02, 0.05)
    t = min((frac - 0.02) / 0.98, 1.0)
    return base * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * t)))


class Pairs:
    """One split of the cached pairs: latents (N, L, M, h, w) int8, pixels (N, H, W, 3) uint8, the full
    synthesis' decode (N, L, H, W, 3) uint8 (memory-mapped: read only for the teacher term / baseline)."""

    def __init__(self, folder: Path, split: str, partial: bool = False):
        """``partial``: use the crops ``fast_pairs`` has finished so far (it may still be running;
        ``refresh`` picks up the new ones). Memory-mapped, so the page cache holds what is read."""
        self.folder, self.split = folder, split
        self.latents = np.load(folder / f"{split}_latents.npy", mmap_mode="r")
        self.pixels = np.load(folder / f"{split}_pixels.npy", mmap_mode="r")
        self.full = np.load(folder / f"{split}_full.npy", mmap_mode="r")
        self.levels = self.latents.shape[1]
        self.refresh()
        if not self.n or (not partial and self.n < self.latents.shape[0]):
            raise SystemExit(f"{folder}: only {self.n}/{self.latents.shape[0]} {split} crops are encoded; finish fast_pairs first")

    def refresh(self) -> int:
        """Re-read which crops are done; returns how many."""
        self.ids = np.flatnonzero(np.load(self.folder / f"{self.split}_done.npy"))
        self.n = int(self.ids.size)
        return self.n

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return self.ids[rng.integers(0, self.n, n)]

    def batch(self, idx: np.ndarray, q: np.ndarray, inv_gain: torch.Tensor, teacher: bool = False):
        y = torch.from_numpy(np.asarray(self.latents[idx, q])).float() * inv_gain[q][:, :, None, None]
        x = torch.from_numpy(np.asarray(self.pixels[idx])).permute(0, 3, 1, 2).float().div_(255.0)
        t = torch.from_numpy(np.ascontiguousarray(self.full[idx, q])).permute(0, 3, 1, 2).float().div_(255.0) if teacher else None
        return y, x, t


def psnr_u8(a: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Per-sample PSNR of ``a`` clamped and rounded to 8 bits (what a decoder outputs) against ``x`` in [0, 1]."""
    mse = ((a.clamp(0, 1) * 255).round() - x * 255).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(255.0**2 / mse.clamp_min(1e-10))


@torch.no_grad()
def validate(model: FastSynthesis, val: Pairs, inv_gain: torch.Tensor, batch: int = 16, calib: list | None = None) -> list[float]:
    """Mean PSNR (dB, over the held-out crops) of the 8-bit decode at every level; with ``calib``
    (QAT), on the int8 grids calibrated on those inputs, as the export will run it."""
    model.eval()
    ranges = calibrate(model, calib) if calib else None

    def run(y: torch.Tensor) -> torch.Tensor:
        return quantized_forward(model, y, ranges) if calib else model(y)

    out = []
    for q in range(val.levels):
        ps = []
        for s in range(0, val.n, batch):
            idx = val.ids[s : s + batch]
            y, x, _ = val.batch(idx, np.full(idx.size, q), inv_gain)
            ps.append(psnr_u8(run(y), x))
        out.append(round(float(torch.cat(ps).mean()), 3))
    model.train()
    return out


def baseline(val: Pairs) -> list[float]:
    """The same mean PSNR for the full (shipped int8 ONNX Runtime) synthesis' decode of the same latents."""
    x = np.asarray(val.pixels[val.ids]).reshape(val.n, -1).astype(np.float64)
    out = []
    for q in range(val.levels):
        mse = ((np.asarray(val.full[val.ids, q]).reshape(val.n, -1) - x) ** 2).mean(1)
        out.append(round(float(np.mean(10 * np.log10(255.0**2 / np.maximum(mse, 1e-10)))), 3))
    return out


def save(
    path: Path, model: FastSynthesis, opt: torch.optim.Optimizer, state: dict, rng: np.random.Generator, scale: torch.Tensor | None = None
) -> None:
    """Atomic: written to a temporary file, then renamed over the previous checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(
        {
            "config": model.config.to_dict(),
            "model": model.state_dict(),
            "optimizer": opt.state_dict(),
            "state": dict(state),
            "rng": rng.bit_generator.state,
            "torch_rng": torch.get_rng_state(),
            "input_scale": scale,
        },
        tmp,
    )
    os.replace(tmp, path)


def load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)


class InputScale(torch.nn.Module):
    """Training-only reparametrisation of the first conv: ``weight = V * scale`` per input channel.

    The synthesis input ``y_hat * inv_gain`` has per-channel spreads from ~0.01 to ~10; Adam moves
    every weight by about the learning rate, so without it the few wide channels get effective steps
    hundreds of times larger than the narrow ones. Folded into the weight for inference
    (``load_model``), so the exported network is the plain ``FastSynthesis``. Off by default
    (``--precondition``): it trained slower in a 200-step comparison (held-out 20.0 vs 21.0 dB).
    """

    def __init__(self, scale: torch.Tensor):
        super().__init__()
        self.register_buffer("scale", scale.reshape(1, -1, 1, 1).clone())

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        return v * self.scale

    def right_inverse(self, w: torch.Tensor) -> torch.Tensor:
        return w / self.scale


def precondition(model: FastSynthesis, scale: torch.Tensor) -> None:
    from torch.nn.utils import parametrize

    parametrize.register_parametrization(model.stages[0].conv, "weight", InputScale(scale))


def input_scale(train: Pairs, inv_gain: torch.Tensor, rng: np.random.Generator, n: int = 256, floor: float = 0.05) -> torch.Tensor:
    """1 / per-channel standard deviation of the synthesis input over ``n`` random (crop, level) samples."""
    idx, q = train.sample(rng, n), rng.integers(0, train.levels, n)
    h = train.batch(idx, q, inv_gain)[0]
    return 1.0 / h.std(dim=(0, 2, 3)).clamp_min(floor)


def qat_calibration(out: Path, inv_gain: torch.Tensor) -> list[torch.Tensor]:
    """The export's calibration inputs (``export.fast_target.calibration_latents``: the shipped
    calibration crops' latents at every level), so QAT's ranges are the ones the export will pick;
    computed once (numpy analysis, ~20 s) and cached in ``out``."""
    f = out / "calib_inputs.pt"
    if f.exists():
        return torch.load(f)
    from ..bundle import default_bundle_path
    from ..export.fast_target import calibration_latents
    from ..export.registry import load_calibration

    hs = [torch.from_numpy(y * g) for y, g in calibration_latents(default_bundle_path(), load_calibration(None))]
    out.mkdir(parents=True, exist_ok=True)
    torch.save(hs, f)
    return hs


def load_model(path: Path) -> FastSynthesis:
    """The trained network from a checkpoint, as a plain ``FastSynthesis`` (any training
    reparametrisation folded into the weights)."""
    from torch.nn.utils import parametrize

    ck = load(path)
    model = FastSynthesis(FastConfig.from_dict(ck["config"]))
    if ck.get("input_scale") is not None:
        precondition(model, ck["input_scale"])
    model.load_state_dict(ck["model"])
    if ck.get("input_scale") is not None:
        parametrize.remove_parametrizations(model.stages[0].conv, "weight", leave_parametrized=True)
    return model.eval()


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description="train the fast synthesis on the frozen latents")
    ap.add_argument("--data", type=Path, required=True, help="folder written by edgecodec.models.fast_pairs")
    ap.add_argument("--out", type=Path, required=True, help="checkpoint and log folder")
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--minutes", type=float, default=100.0, help="training budget (resumed runs included); the lr follows it")
    ap.add_argument("--channels", type=ints, default=FastConfig.channels)
    ap.add_argument("--factors", type=ints, default=FastConfig.factors)
    ap.add_argument("--mix", type=ints, default=None, help="1x1 layers per stage (default none)")
    ap.add_argument(
        "--init",
        choices=("data", "default", "full"),
        default="data",
        help="data-dependent (LSUV-like), PyTorch's default, or the first stage from the shipped synthesis",
    )
    ap.add_argument("--weights", type=Path, default=Path(__file__).resolve().parents[1] / "data" / "weights", help="for --init full")
    ap.add_argument("--precondition", action="store_true", help="per-channel input scaling (InputScale; measured worse)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--loss", choices=("mse", "psnr"), default="mse")
    ap.add_argument("--teacher-weight", type=float, default=0.0, help="weight of the MSE towards the full synthesis' decode")
    ap.add_argument("--partial", action="store_true", help="start on the training crops encoded so far (fast_pairs still running)")
    ap.add_argument("--qat-from", type=Path, default=None, help="fine-tune this float checkpoint through the export's int8 grids")
    ap.add_argument("--recalibrate", type=int, default=200, help="QAT: steps between range calibrations")
    ap.add_argument("--ckpt-minutes", type=float, default=3.0)
    ap.add_argument("--val-minutes", type=float, default=5.0)
    ap.add_argument("--log-every", type=int, default=100)
    ap.add_argument("--steps", type=int, default=0, help="schedule by steps instead of --minutes (short comparisons)")
    ap.add_argument("--max-steps", type=int, default=0, help="stop after this many steps in all (tests, smoke runs)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    if a.teacher_weight > 0 and not np.load(a.data / "train_full.npy", mmap_mode="r")[:1].any():
        raise SystemExit("--teacher-weight needs the full decodes of the training crops; fast_pairs writes them for held-out crops only")
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)

    train, val = Pairs(a.data, "train", partial=a.partial), Pairs(a.data, "val")
    inv_gain = torch.from_numpy(np.load(a.data / "inv_gain.npy")).float()
    ckpath = a.out / CKPT
    resumed = a.resume and ckpath.exists()
    if resumed:
        ck = load(ckpath)
        config = FastConfig.from_dict(ck["config"])
    elif a.qat_from:
        config = FastConfig.from_dict(load(a.qat_from)["config"])
    else:
        mix = a.mix if a.mix is not None else (0,) * len(a.channels)
        config = FastConfig(y_channels=train.latents.shape[2], channels=a.channels, factors=a.factors, mix=mix)
    model = FastSynthesis(config)
    macs, hooked = macs_per_pixel(config), hook_macs_per_pixel(model)
    print(
        f"config {config.to_dict()}: {macs:.0f} MAC/px (hook count {hooked:.0f}; budget {MAC_BUDGET:.0f}), "
        f"receptive field {receptive_field_latents(config)} latents, {sum(p.numel() for p in model.parameters())} parameters",
        flush=True,
    )
    if abs(macs - hooked) > 1e-6 * macs:
        raise SystemExit("analytic and hook MAC counts disagree")
    rng = np.random.default_rng(a.seed)
    if resumed:
        scale = ck.get("input_scale")
        if scale is not None:
            precondition(model, scale)
        model.load_state_dict(ck["model"])
        opt = torch.optim.Adam(model.parameters(), lr=a.lr)
        opt.load_state_dict(ck["optimizer"])
        state = ck["state"]
        rng.bit_generator.state = ck["rng"]
        torch.set_rng_state(ck["torch_rng"])
        print(f"resumed at step {state['step']} ({state['elapsed']:.0f} s trained)", flush=True)
    elif a.qat_from:  # quantization-aware fine-tuning from a float run (no preconditioning: it is folded)
        model.load_state_dict(load_model(a.qat_from).state_dict())
        state = {"step": 0, "elapsed": 0.0, "crops": 0, "qat": True, "qat_from": str(a.qat_from)}
        scale = None
        opt = torch.optim.Adam(model.parameters(), lr=a.lr)
    else:
        state = {"step": 0, "elapsed": 0.0, "crops": 0}
        if a.init != "default":
            idx = train.sample(rng, 16)
            h = train.batch(idx, rng.integers(0, train.levels, idx.size), inv_gain)[0]
            if a.init == "full":
                from .train import load_checkpoint

                keep = init_from_full(model, load_checkpoint(a.weights)[0].g_s, h)
                print(f"first stage from the shipped synthesis' channels {keep}", flush=True)
            else:
                init_from_data(model, h)
        scale = input_scale(train, inv_gain, rng) if a.precondition else None
        if scale is not None:
            precondition(model, scale)  # the function is unchanged: V = W / scale
        opt = torch.optim.Adam(model.parameters(), lr=a.lr)

    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    signal.signal(signal.SIGINT, lambda *_: stop.update(now=True))
    a.out.mkdir(parents=True, exist_ok=True)
    log = open(a.out / "log.jsonl", "a")

    def record(rec: dict) -> None:
        line = json.dumps(rec)
        log.write(line + "\n")
        log.flush()
        print(line, flush=True)

    info = {"event": "resume" if resumed else "start", "step": state["step"], "macs_per_pixel": macs, "config": config.to_dict()}
    info.update(
        train_crops=train.n, val_crops=val.n, batch=a.batch, lr=a.lr, loss=a.loss, teacher_weight=a.teacher_weight, minutes=a.minutes
    )
    record(info)
    qat = bool(state.get("qat"))
    calib_inputs, ranges = (qat_calibration(a.out, inv_gain), None) if qat else ([], None)
    if not resumed:
        record({"baseline_full_synthesis_psnr": baseline(val)})
        record({"step": 0, "elapsed": 0.0, "val_psnr": validate(model, val, inv_gain, calib=calib_inputs)})

    budget = a.minutes * 60.0

    def clock() -> float:  # training seconds: CPU time per thread (see the module docstring)
        return time.process_time() / max(1, a.threads)

    t0, el0 = clock(), state["elapsed"]
    last_ck = last_val = last_log = time.time()
    log_step, log_crops = state["step"], state["crops"]
    acc: dict[str, list[float]] = {"loss": [], "psnr": []}
    model.train()
    while not stop["now"]:
        elapsed = el0 + clock() - t0
        frac = state["step"] / a.steps if a.steps else elapsed / budget
        if frac >= 1.0 or (a.max_steps and state["step"] >= a.max_steps):
            break
        lr = lr_at(frac, a.lr)
        for g in opt.param_groups:
            g["lr"] = lr
        idx = train.sample(rng, a.batch)
        q = rng.integers(0, train.levels, a.batch)
        y, x, t = train.batch(idx, q, inv_gain, teacher=a.teacher_weight > 0)
        if qat and state["step"] % a.recalibrate == 0:
            ranges = calibrate(model, calib_inputs)
        x_hat = quantized_forward(model, y, ranges) if qat else model(y)
        mse = (x_hat - x).pow(2).flatten(1).mean(1)
        loss = mse.mean() if a.loss == "mse" else torch.log10(mse.clamp_min(1e-10)).mean()
        if t is not None:
            loss = loss + a.teacher_weight * F.mse_loss(x_hat, t)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        state["step"] += 1
        state["crops"] += a.batch
        acc["loss"].append(float(loss.detach()))
        acc["psnr"].append(float((10 * torch.log10(1.0 / mse.detach().clamp_min(1e-10))).mean()))
        now = time.time()
        if state["step"] % a.log_every == 0:
            dt = now - last_log
            rec = {"step": state["step"], "elapsed": round(el0 + clock() - t0, 1), "lr": lr}
            rec.update({k: round(float(np.mean(v)), 5) for k, v in acc.items()})
            rec.update(steps_per_s=round((state["step"] - log_step) / dt, 3), crops_per_s=round((state["crops"] - log_crops) / dt, 2))
            record(rec)
            acc = {k: [] for k in acc}
            last_log, log_step, log_crops = now, state["step"], state["crops"]
        if now - last_val > a.val_minutes * 60:
            tv = time.time()
            record(
                {
                    "step": state["step"],
                    "elapsed": round(el0 + clock() - t0, 1),
                    "val_psnr": validate(model, val, inv_gain, calib=calib_inputs),
                    "val_s": round(time.time() - tv, 1),
                }
            )
            last_val = last_log = time.time()  # validation time is not training throughput
            log_step, log_crops = state["step"], state["crops"]
        if now - last_ck > a.ckpt_minutes * 60:
            state["elapsed"] = el0 + clock() - t0
            save(ckpath, model, opt, state, rng, scale)
            last_ck = time.time()
            if a.partial and train.n < train.latents.shape[0]:
                record({"step": state["step"], "train_crops": train.refresh()})
    state["elapsed"] = el0 + clock() - t0
    save(ckpath, model, opt, state, rng, scale)
    record(
        {
            "step": state["step"],
            "elapsed": round(state["elapsed"], 1),
            "val_psnr": validate(model, val, inv_gain, calib=calib_inputs),
            "event": "saved",
        }
    )
    log.close()
    return state


if __name__ == "__main__":
    main()
