"""Training loop: random crops with flips, one random quality level per sample.

Runs on CPU or GPU. Checkpoints are written atomically every ``--ckpt-every``
seconds and on exit; ``--resume`` continues from the newest one. The learning
rate follows the fraction of the step budget done, so a resumed run keeps the
same schedule. Weights are saved as several files of < 16 MB each (the GPU
machine returns files up to that size).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import time
from pathlib import Path

import numpy as np
import torch

from .hyperprior import HyperpriorCodec, ModelConfig, rd_loss

PARTS = ("g_a", "g_s", "h_a", "h_s")


def load_images(folder: Path, min_side: int) -> list[np.ndarray]:
    from ..io import IMAGE_SUFFIXES, read_rgb8

    out = []
    for p in sorted(folder.iterdir()):
        if p.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        a = read_rgb8(p)
        if min(a.shape[:2]) >= min_side:
            out.append(a)
    if not out:
        raise SystemExit(f"no training images of at least {min_side}px in {folder}")
    return out


def save_checkpoint(model: HyperpriorCodec, opt: torch.optim.Optimizer | None, state: dict, folder: Path, half: bool = False) -> None:
    """``half`` stores conv weights as fp16 (the shipped weights: half the size; loading casts back to fp32)."""
    folder.mkdir(parents=True, exist_ok=True)
    sd = model.state_dict()
    if half:
        sd = {k: (v.half() if v.ndim == 4 else v) for k, v in sd.items()}
    for part in PARTS + ("rest",):
        keys = [k for k in sd if (k.split(".")[0] == part) or (part == "rest" and k.split(".")[0] not in PARTS)]
        tmp = folder / f"{part}.pt.tmp"
        torch.save({k: sd[k].detach().cpu() for k in keys}, tmp)
        os.replace(tmp, folder / f"{part}.pt")
    tmp = folder / "state.json.tmp"
    tmp.write_text(json.dumps({**state, "config": model.config.to_dict()}))
    os.replace(tmp, folder / "state.json")


def load_checkpoint(folder: Path, device: str = "cpu") -> tuple[HyperpriorCodec, dict]:
    state = json.loads((folder / "state.json").read_text())
    model = HyperpriorCodec(ModelConfig.from_dict(state["config"]))
    sd = {}
    for part in PARTS + ("rest",):
        sd.update(torch.load(folder / f"{part}.pt", map_location=device))
    model.load_state_dict(sd)
    return model.to(device), state


def ship_weights(checkpoint: Path, out: Path) -> None:
    """Write the weights the package ships: conv weights rounded to fp16, everything else fp32.

    The shipped bundle is exported from these (not from the fp32 checkpoint), so the
    fp32 reference and every int8 artifact come from the same numbers.
    """
    model, state = load_checkpoint(Path(checkpoint))
    save_checkpoint(model, None, {k: v for k, v in state.items() if k != "config"}, Path(out), half=True)


def random_crops(imgs: list[torch.Tensor], batch: int, crop: int) -> torch.Tensor:
    """A batch of random ``crop``-sized crops with random flips, as float in [0, 1]."""
    out = []
    for _ in range(batch):
        im = imgs[random.randrange(len(imgs))]
        _, h, w = im.shape
        y0, x0 = random.randrange(h - crop + 1), random.randrange(w - crop + 1)
        c = im[:, y0 : y0 + crop, x0 : x0 + crop]
        if random.random() < 0.5:
            c = c.flip(2)
        if random.random() < 0.5:
            c = c.flip(1)
        out.append(c)
    return torch.stack(out).float().div_(255.0)


def log_record(log, rec: dict) -> None:
    """One JSON line to the run's log (flushed, so a killed run keeps it) and to stdout."""
    line = json.dumps(rec)
    log.write(line + "\n")
    log.flush()
    print(line, flush=True)


def lr_at(frac: float, base: float) -> float:
    if frac < 0.02:
        return base * max(frac / 0.02, 0.05)
    if frac < 0.75:
        return base
    if frac < 0.92:
        return base * 0.25
    return base * 0.05


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="train the edgecodec hyperprior")
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--steps", type=int, default=200_000)
    ap.add_argument("--time-budget", type=float, default=0.0, help="seconds; schedule by time instead of steps")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--crop", type=int, default=256)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--ckpt-every", type=float, default=120.0)
    ap.add_argument("--log-every", type=int, default=200)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)

    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cudnn.benchmark = True
    random.seed(a.seed)
    torch.manual_seed(a.seed)
    dev = a.device
    ckdir = a.out / "ckpt"
    if a.resume and (ckdir / "state.json").exists():
        model, state = load_checkpoint(ckdir, dev)
        print(f"resumed at step {state['step']} ({state['elapsed']:.0f}s trained)", flush=True)
    else:
        model, state = HyperpriorCodec().to(dev), {"step": 0, "elapsed": 0.0}
    opt = torch.optim.Adam(model.parameters(), lr=a.lr)
    lambdas = torch.tensor(model.config.lambdas, device=dev)
    imgs = [torch.from_numpy(im).to(dev).permute(2, 0, 1).contiguous() for im in load_images(a.data, a.crop)]
    print(f"{len(imgs)} images on {dev}", flush=True)

    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    signal.signal(signal.SIGINT, lambda *_: stop.update(now=True))
    a.out.mkdir(parents=True, exist_ok=True)
    log = open(a.out / "log.jsonl", "a")
    t_run0 = time.time()
    el0 = state["elapsed"]
    last_ck = time.time()
    acc: dict[str, list[torch.Tensor]] = {"loss": [], "bpp": [], "psnr": []}
    model.train()
    while True:
        elapsed = el0 + time.time() - t_run0
        frac = elapsed / a.time_budget if a.time_budget > 0 else state["step"] / a.steps
        if frac >= 1.0 or stop["now"]:
            break
        for g in opt.param_groups:
            g["lr"] = lr_at(frac, a.lr)
        x = random_crops(imgs, a.batch, a.crop)
        q = torch.randint(0, model.config.levels, (a.batch,), device=dev)
        out = model(x, q)
        r = rd_loss(out, x, lambdas[q])
        opt.zero_grad(set_to_none=True)
        r["loss"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        state["step"] += 1
        for k in acc:
            acc[k].append(r[k].detach().mean())
        if state["step"] % a.log_every == 0:
            rec = {"step": state["step"], "elapsed": round(elapsed, 1), "lr": opt.param_groups[0]["lr"]}
            rec.update({k: round(float(torch.stack(v).mean()), 4) for k, v in acc.items()})
            log_record(log, rec)
            acc = {k: [] for k in acc}
        if time.time() - last_ck > a.ckpt_every:
            state["elapsed"] = el0 + time.time() - t_run0
            save_checkpoint(model, opt, state, ckdir)
            last_ck = time.time()
    state["elapsed"] = el0 + time.time() - t_run0
    save_checkpoint(model, opt, state, ckdir)
    print(f"saved step {state['step']}", flush=True)


if __name__ == "__main__":
    main()
