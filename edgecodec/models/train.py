"""Training loop: random crops with flips, one random quality level per sample.

Runs on CPU or GPU. ``--data`` is a folder of photos or a file packed by ``edgecodec.models.crops``
(what travels to the GPU machine: it goes to the device once and every batch is cut there).
``--init`` starts from other weights (the shipped ones: ``edgecodec/data/weights``), with their
optimizer state when the folder has one and a fresh Adam otherwise. Checkpoints hold the weights,
the optimizer state (``opt.pt``) and the counters; they are written atomically every
``--ckpt-every`` seconds and on exit, and ``--resume`` continues from the newest one. The learning
rate is a function of the run's elapsed training time over ``--time-budget`` (or of its steps over
``--steps``), so a resumed run keeps the same schedule. Weights are saved as several files of
< 16 MB each (the GPU machine returns files up to that size).

On CUDA: bf16 autocast (the last conv of each transform stays fp32: latents, hyper-latents, the
entropy parameters and the pixels are rounded or compared at a precision bf16 lacks), channels_last,
fused Adam, and ``--compile auto`` times eager against ``torch.compile`` on the run's first steps
and keeps the faster.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import random
import signal
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .hyperprior import HyperpriorCodec, ModelConfig, rd_loss

PARTS = ("g_a", "g_s", "h_a", "h_s")
OPT_FILE = "opt.pt"
SHIPPED = Path(__file__).resolve().parents[1] / "data" / "weights"


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


def _save(obj, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def param_names(model: torch.nn.Module, opt: torch.optim.Optimizer) -> list[str]:
    """The names of the optimizer's parameters, in its order (what its state is indexed by)."""
    name = {id(p): n for n, p in model.named_parameters()}
    return [name[id(p)] for g in opt.param_groups for p in g["params"]]


def save_checkpoint(model: HyperpriorCodec, opt: torch.optim.Optimizer | None, state: dict, folder: Path, half: bool = False) -> None:
    """``half`` stores conv weights as fp16 (the shipped weights: half the size; loading casts back to fp32).

    With ``opt`` the optimizer state goes to ``opt.pt``, tagged with the step and the parameter names
    it belongs to; without, a stale ``opt.pt`` is removed (weights and optimizer state always match).
    """
    folder.mkdir(parents=True, exist_ok=True)
    if opt is not None:
        tag = {"step": state.get("step"), "qat_step": state.get("qat_step", 0), "names": param_names(model, opt)}
        _save({**tag, "state": opt.state_dict()}, folder / OPT_FILE)
    elif (folder / OPT_FILE).exists():
        (folder / OPT_FILE).unlink()
    sd = model.state_dict()
    if half:
        sd = {k: (v.half() if v.ndim == 4 else v) for k, v in sd.items()}
    for part in PARTS + ("rest",):
        keys = [k for k in sd if (k.split(".")[0] == part) or (part == "rest" and k.split(".")[0] not in PARTS)]
        _save({k: sd[k].detach().cpu().contiguous() for k in keys}, folder / f"{part}.pt")
    tmp = folder / "state.json.tmp"  # last: a complete state.json means a complete checkpoint
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


def load_optimizer(folder: Path, opt: torch.optim.Optimizer, model: torch.nn.Module, step: int, qat_step: int = 0) -> str:
    """Restore ``opt`` from ``folder/opt.pt`` if it belongs to these weights; says what happened."""
    path = Path(folder) / OPT_FILE
    if not path.is_file():
        return f"fresh Adam (no optimizer state in {folder})"
    saved = torch.load(path, map_location="cpu")
    if (saved.get("step"), saved.get("qat_step", 0)) != (step, qat_step) or saved.get("names") != param_names(model, opt):
        return f"fresh Adam ({path} is for step {saved.get('step')} or other parameters, the weights are at step {step})"
    opt.load_state_dict(saved["state"])  # moves the moments to the parameters' device
    return f"optimizer state restored from {path}"


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


def sample_crops(data: torch.Tensor, batch: int, crop: int) -> torch.Tensor:
    """A batch cut on ``data``'s device from N×H×W×3 uint8 crops: random crop, position and flips,
    as float NCHW in [0, 1] laid out channels_last (one gather; the flips are reversed indexes)."""
    n, h, w, _ = data.shape
    dev = data.device
    ar = torch.arange(crop, device=dev)
    idx = torch.randint(n, (batch, 1, 1), device=dev)
    oy = torch.randint(h - crop + 1, (batch, 1), device=dev)
    ox = torch.randint(w - crop + 1, (batch, 1), device=dev)
    rows = oy + torch.where(torch.rand(batch, 1, device=dev) < 0.5, crop - 1 - ar, ar)
    cols = ox + torch.where(torch.rand(batch, 1, device=dev) < 0.5, crop - 1 - ar, ar)
    x = data[idx, rows[:, :, None], cols[:, None, :]]  # batch × crop × crop × 3
    return x.permute(0, 3, 1, 2).float().div_(255.0)


def log_record(log, rec: dict) -> None:
    """One JSON line to the run's log (flushed, so a killed run keeps it) and to stdout."""
    line = json.dumps(rec)
    log.write(line + "\n")
    log.flush()
    print(line, flush=True)


def lr_at(frac: float, base: float) -> float:
    """The first GPU run's schedule (step decays at 75% and 92%)."""
    if frac < 0.02:
        return base * max(frac / 0.02, 0.05)
    if frac < 0.75:
        return base
    if frac < 0.92:
        return base * 0.25
    return base * 0.05


def lr_cosine(frac: float, peak: float, final: float, warmup: float = 0.02, hold: float = 0.5) -> float:
    """Linear warm-up from ``final`` to ``peak``, ``peak`` until ``hold``, then cosine to exactly ``final`` at 1."""
    f = min(max(frac, 0.0), 1.0)
    if f < warmup:
        return final + (peak - final) * f / warmup
    if f < hold:
        return peak
    return final + (peak - final) * 0.5 * (1.0 + math.cos(math.pi * (f - hold) / (1.0 - hold)))


def learning_rate(elapsed: float, budget: float, schedule: str, peak: float, final: float) -> float:
    """The learning rate after ``elapsed`` seconds of a run of ``budget`` seconds (or steps of ``budget`` steps)."""
    frac = elapsed / budget
    return lr_at(frac, peak) if schedule == "step" else lr_cosine(frac, peak, final)


def _fp32_conv(conv: torch.nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    with torch.autocast(x.device.type, enabled=False):
        return F.conv2d(x.float(), conv.weight, conv.bias, conv.stride, conv.padding)


def keep_fp32_outputs(model: HyperpriorCodec) -> None:
    """Run the last conv of each transform outside autocast, so y, z, the entropy parameters and
    the pixels are fp32: bf16 has 8 bits of mantissa, so a latent near 100 would carry ±0.25 of
    error before rounding. Instance-level forwards: the state dict does not change."""
    for conv in (model.g_a.layers[-1], model.h_a.layers[-1], model.h_s.layers[-1], model.g_s.layers[-1].conv):
        conv.forward = functools.partial(_fp32_conv, conv)


def qat_lr(frac: float, base: float) -> float:
    """The QAT tail's rate: cosine from ``base`` to 5% of it (models/qat.py's schedule)."""
    return base * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(max(frac, 0.0), 1.0))))


def qat_params(model: HyperpriorCodec) -> list[torch.nn.Parameter]:
    """What QAT tunes (models/qat.py): the synthesis and its inverse gains; the rest is frozen."""
    model.requires_grad_(False)
    params = [*model.g_s.parameters(), model.log_inv_gain]
    for p in params:
        p.requires_grad_(True)
    return params


class QatGrids:
    """The export's 8-bit grids for the synthesis, calibrated on the shipped calibration crops at
    every export level like models/qat.py, on the training device."""

    def __init__(self, model: HyperpriorCodec, dev: str):
        from ..export.registry import CALIB_DIR
        from . import qat
        from .convert import gains

        self.model, self.dev, self.qat, self.gains = model, dev, qat, gains
        gain = torch.from_numpy(gains(model, qat.EXTRAPOLATED_LEVELS)[0]).float().to(dev)[:, :, None, None]
        calib = [torch.from_numpy(im).permute(2, 0, 1)[None].float().div(255.0).to(dev) for im in load_images(CALIB_DIR, 64)]
        with torch.no_grad():  # the analysis and gains are frozen in QAT: these latents stay
            self.latents = [(q, qat.latents(model, x, gain[q : q + 1])) for x in calib for q in range(gain.shape[0])]
        self.calibrate()

    @torch.no_grad()
    def calibrate(self) -> None:
        inv = torch.from_numpy(self.gains(self.model, self.qat.EXTRAPOLATED_LEVELS)[1]).float().to(self.dev)[:, :, None, None]
        record: dict = {}
        for q, y_hat in self.latents:
            self.qat.synthesis(self.model, y_hat, inv[q : q + 1], None, record)
        self.ranges = record


def _sync(dev: str) -> None:
    if dev.startswith("cuda"):
        torch.cuda.synchronize()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="train the edgecodec hyperprior")
    ap.add_argument("--data", type=Path, required=True, help="folder of photos, or a .npz/.npy packed by edgecodec.models.crops")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--init", type=Path, default=None, help=f"start from these weights (the shipped ones: {SHIPPED}); default: new")
    ap.add_argument("--steps", type=int, default=200_000)
    ap.add_argument("--time-budget", type=float, default=0.0, help="seconds of this run's training; schedule by time instead of steps")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--crop", type=int, default=256)
    ap.add_argument("--lr", type=float, default=2e-4, help="peak learning rate")
    ap.add_argument("--lr-final", type=float, default=1e-6, help="the cosine schedule's value at the end of the budget")
    ap.add_argument(
        "--schedule", choices=("step", "cosine"), default="step", help="step: the first GPU run's; cosine: warm-up, hold, cosine"
    )
    ap.add_argument("--freeze", default="", help="comma-separated parts kept fixed, e.g. g_a (then the gains too: the latents stay)")
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--ckpt-every", type=float, default=120.0)
    ap.add_argument("--log-every", type=int, default=200)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--amp", choices=("auto", "on", "off"), default="auto", help="bf16 autocast (auto: on CUDA only)")
    ap.add_argument("--compile", choices=("off", "on", "auto"), default="off", help="auto: time both on the first steps, keep the faster")
    ap.add_argument("--probe-steps", type=int, default=30, help="--compile auto: timed steps of each")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--qat-tail", type=float, default=0.0, help="fraction of the budget, at its end, for QAT of the synthesis")
    ap.add_argument("--qat-lr", type=float, default=2e-5)
    ap.add_argument("--recalibrate", type=int, default=400, help="QAT steps between range calibrations")
    ap.add_argument("--val-crops", type=int, default=0, help="packed crops held out of training; their loss is logged (rounded latents)")
    ap.add_argument("--val-every", type=float, default=60.0, help="seconds between held-out evaluations (also at the start and end)")
    ap.add_argument("--ship", type=Path, default=None, help="at the end, write the shipped form of the weights (fp16 convs) here")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    if not 0.0 <= a.qat_tail < 1.0:
        raise SystemExit(f"--qat-tail must be in [0, 1), got {a.qat_tail}")
    if a.crop % 64:  # the hyper-latents are at 1/64: other sizes do not round-trip through h_a and h_s
        raise SystemExit(f"--crop must be a multiple of 64, got {a.crop}")
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cudnn.benchmark = True
    random.seed(a.seed)
    torch.manual_seed(a.seed)
    dev = a.device
    cuda = dev.startswith("cuda")
    amp = a.amp == "on" or (a.amp == "auto" and cuda)
    ckdir = a.out / "ckpt"
    if a.resume and (ckdir / "state.json").exists():
        src = ckdir
        model, state = load_checkpoint(ckdir, dev)
        # checkpoints of the earlier trainer: their run was all of their training
        state.setdefault("run_step", state["step"])
        state.setdefault("run_elapsed", state["elapsed"])
        print(f"resumed at step {state['step']} (this run: step {state['run_step']}, {state['run_elapsed']:.0f}s)", flush=True)
    elif a.init is not None:
        src = a.init
        model, init = load_checkpoint(a.init, dev)
        init.pop("config")
        # step and elapsed count all the training these weights have had; qat_step restarts at 0 since
        # the synthesis leaves the grids QAT tuned it for
        state = {"step": init.get("step", 0), "elapsed": init.get("elapsed", 0.0), "qat_step": 0, "run_step": 0, "run_elapsed": 0.0}
        state["init"] = {"path": str(a.init), **init}
        print(f"starting from {a.init} at step {state['step']}", flush=True)
    else:
        src = None
        model, state = HyperpriorCodec().to(dev), {"step": 0, "elapsed": 0.0, "run_step": 0, "run_elapsed": 0.0}
    frozen = [p for p in a.freeze.split(",") if p]
    for part in frozen:
        if part not in PARTS:
            raise SystemExit(f"--freeze: unknown part {part!r} (choose from {', '.join(PARTS)})")
        getattr(model, part).requires_grad_(False)
    if "g_a" in frozen:
        model.log_gain.requires_grad_(False)
    in_qat = state.get("phase") == "qat"
    params = qat_params(model) if in_qat else [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=a.lr, fused=cuda)
    print(load_optimizer(src, opt, model, state["step"], state.get("qat_step", 0)) if src is not None else "fresh Adam", flush=True)
    lambdas = torch.tensor(model.config.lambdas, device=dev)

    val = None
    if a.data.is_dir():
        if a.val_crops:
            raise SystemExit("--val-crops needs packed crops (edgecodec.models.crops)")
        imgs = [torch.from_numpy(im).to(dev).permute(2, 0, 1).contiguous() for im in load_images(a.data, a.crop)]
        print(f"{len(imgs)} images on {dev}", flush=True)

        def batch() -> torch.Tensor:
            return random_crops(imgs, a.batch, a.crop)
    else:
        from .crops import load

        t0 = time.perf_counter()
        packed = torch.from_numpy(load(a.data)).to(dev)
        if min(packed.shape[1:3]) < a.crop:
            raise SystemExit(f"--crop {a.crop} is larger than the packed crops ({packed.shape[1]}x{packed.shape[2]})")
        print(f"{packed.shape[0]} crops of {packed.shape[1]}x{packed.shape[2]} on {dev} ({time.perf_counter() - t0:.1f}s)", flush=True)
        if a.val_crops:
            if not 0 < a.val_crops < packed.shape[0]:
                raise SystemExit(f"--val-crops must be between 1 and {packed.shape[0] - 1}")
            h, w = (packed.shape[1] // 64) * 64, (packed.shape[2] // 64) * 64
            val = packed[-a.val_crops :, :h, :w].permute(0, 3, 1, 2).float().div(255.0)
            packed = packed[: -a.val_crops]
            print(f"{a.val_crops} crops held out for validation, {packed.shape[0]} for training", flush=True)

        def batch() -> torch.Tensor:
            return sample_crops(packed, a.batch, a.crop)

    if cuda:
        model = model.to(memory_format=torch.channels_last)
    if amp:
        keep_fp32_outputs(model)
    model.train()
    grids = None
    if in_qat:
        model.eval()
        grids = QatGrids(model, dev)

    def loss_of(x: torch.Tensor, q: torch.Tensor) -> dict[str, torch.Tensor]:
        with torch.autocast(torch.device(dev).type, dtype=torch.bfloat16, enabled=amp):
            out = model(x, q)
        return rd_loss(out, x, lambdas[q])

    step_loss = torch.compile(loss_of) if a.compile == "on" else loss_of

    @torch.no_grad()
    def validate() -> dict:
        """The training loss of the held-out crops at every level, latents rounded as the coder does
        (eval mode) and pixels clamped: the rate is the model's estimate, not a file's."""
        was = model.training
        model.eval()
        levels = model.config.levels
        x_all = val.repeat_interleave(levels, 0)
        q_all = torch.arange(levels, device=dev).repeat(val.shape[0])
        bpp, mse = [], []
        for i in range(0, x_all.shape[0], 16):
            x, q = x_all[i : i + 16], q_all[i : i + 16]
            with torch.autocast(torch.device(dev).type, dtype=torch.bfloat16, enabled=amp):
                out = model(x, q)
            r = rd_loss(out, x, lambdas[q])
            bpp.append(r["bpp"].float())
            mse.append(r["mse"].float())
        model.train(was)
        bpp_l, mse_l = torch.cat(bpp).view(-1, levels), torch.cat(mse).view(-1, levels)  # crop × level
        loss = (lambdas * 255.0**2 * mse_l + bpp_l).mean()
        psnr_l = (-10 * torch.log10(mse_l.clamp_min(1e-10))).mean(0)
        return {
            "loss": round(float(loss), 4),
            "bpp": [round(float(v), 4) for v in bpp_l.mean(0)],
            "psnr": [round(float(v), 3) for v in psnr_l],
        }

    def log_val(log) -> None:
        if val is not None:
            rec = {"val": validate(), "step": state["step"], "qat_step": state.get("qat_step", 0)}
            log_record(log, {**rec, "elapsed": round(run_elapsed(), 1)})

    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    signal.signal(signal.SIGINT, lambda *_: stop.update(now=True))
    a.out.mkdir(parents=True, exist_ok=True)
    log = open(a.out / "log.jsonl", "a")
    budget = a.time_budget if a.time_budget > 0 else float(a.steps)
    float_budget = budget * (1.0 - a.qat_tail)  # the float schedule ends where the QAT tail starts
    t_run0 = time.time()
    el0, rel0 = state["elapsed"], state["run_elapsed"]

    def run_elapsed() -> float:
        return rel0 + time.time() - t_run0

    def sched_pos() -> float:
        return run_elapsed() if a.time_budget > 0 else float(state["run_step"])

    def qat_step() -> dict[str, torch.Tensor]:
        for g in opt.param_groups:
            g["lr"] = qat_lr((sched_pos() - float_budget) / (budget - float_budget), a.qat_lr)
        x = batch()
        q = torch.randint(0, model.config.levels, (a.batch,), device=dev)
        gain, inv_gain = model.gains(q)
        with torch.no_grad():
            y_hat = grids.qat.latents(model, x, gain)
        mse = (grids.qat.synthesis(model, y_hat, inv_gain, grids.ranges) - x).pow(2).flatten(1).mean(1)
        loss = (lambdas[q] * 255.0**2 * mse).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        state["qat_step"] = state.get("qat_step", 0) + 1
        state["run_step"] += 1
        if state["qat_step"] % a.recalibrate == 0:
            grids.calibrate()
        return {"qat_loss": loss.detach(), "psnr_int8": -10 * torch.log10(mse.detach().clamp_min(1e-10))}

    def train_step(fn) -> dict[str, torch.Tensor]:
        if in_qat:
            return qat_step()
        for g in opt.param_groups:
            g["lr"] = learning_rate(sched_pos(), float_budget, a.schedule, a.lr, a.lr_final)
        x = batch()
        q = torch.randint(0, model.config.levels, (a.batch,), device=dev)
        r = fn(x, q)
        opt.zero_grad(set_to_none=True)
        r["loss"].backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        state["step"] += 1
        state["run_step"] += 1
        return r

    def timed(fn, n: int) -> float:
        """Seconds per step of ``n`` steps after the first (warm-up, compilation)."""
        train_step(fn)
        _sync(dev)
        t = time.perf_counter()
        for _ in range(n):
            train_step(fn)
        _sync(dev)
        return (time.perf_counter() - t) / n

    log_val(log)  # the starting point (the shipped model's value, on a run from --init)
    last_val = time.time()
    if a.compile == "auto" and not in_qat:  # real training steps, on the schedule: only the compilation itself is overhead
        compiled = torch.compile(loss_of)
        t_eager = timed(loss_of, a.probe_steps)
        t0 = time.perf_counter()
        try:
            train_step(compiled)
            _sync(dev)
            t_compile = time.perf_counter() - t0
            t_compiled = timed(compiled, a.probe_steps)
        except Exception as e:  # a compiler that fails on this machine must not cost the run: train eager
            err = f"{type(e).__name__}: {e}"[:500]
            log_record(log, {"compile_probe": {"eager_steps_s": round(1 / t_eager, 3), "error": err, "kept": False}})
        else:
            keep = t_compiled < 0.97 * t_eager
            step_loss = compiled if keep else loss_of
            rec = {"compile_probe": {"eager_steps_s": round(1 / t_eager, 3), "compiled_steps_s": round(1 / t_compiled, 3)}}
            rec["compile_probe"].update(compile_s=round(t_compile, 1), kept=keep, steps=2 * a.probe_steps + 3)
            log_record(log, rec)

    last_ck = time.time()
    acc: dict[str, list[torch.Tensor]] = {}
    t_log, s_log = time.perf_counter(), state["run_step"]
    s_start, t_start = state["run_step"], time.perf_counter()
    while not stop["now"] and sched_pos() < budget:
        if not in_qat and a.qat_tail > 0 and sched_pos() >= float_budget:
            # the float phase is over: tune the synthesis through the export's int8 grids
            in_qat, state["phase"] = True, "qat"
            model.eval()
            params = qat_params(model)
            opt = torch.optim.Adam(params, lr=a.qat_lr, fused=cuda)
            t0 = time.perf_counter()
            grids = QatGrids(model, dev)
            rec = {"step": state["step"], "elapsed": round(run_elapsed(), 1), "calib_s": round(time.perf_counter() - t0, 2)}
            log_record(log, {"qat_start": rec})
            acc = {}
        r = train_step(step_loss)
        for k in ("loss", "bpp", "psnr", "qat_loss", "psnr_int8"):
            if k in r:
                acc.setdefault(k, []).append(r[k].detach().mean())
        if state["run_step"] % a.log_every == 0:
            now = time.perf_counter()
            sps = (state["run_step"] - s_log) / (now - t_log)
            rec = {
                "step": state["step"],
                "qat_step": state.get("qat_step", 0),
                "run_step": state["run_step"],
                "elapsed": round(run_elapsed(), 1),
                "lr": opt.param_groups[0]["lr"],
            }
            rec.update({k: round(float(torch.stack(v).mean()), 4) for k, v in acc.items()})
            rec.update(steps_s=round(sps, 3), images_s=round(sps * a.batch, 1))
            log_record(log, rec)
            acc = {k: [] for k in acc}
            t_log, s_log = time.perf_counter(), state["run_step"]
        if time.time() - last_val > a.val_every:
            log_val(log)
            last_val = time.time()
        if time.time() - last_ck > a.ckpt_every:
            state["run_elapsed"] = run_elapsed()
            state["elapsed"] = el0 + state["run_elapsed"] - rel0
            save_checkpoint(model, opt, state, ckdir)
            last_ck = time.time()
    _sync(dev)
    dt = time.perf_counter() - t_start
    log_val(log)
    state["run_elapsed"] = run_elapsed()
    state["elapsed"] = el0 + state["run_elapsed"] - rel0
    save_checkpoint(model, opt, state, ckdir)
    n = state["run_step"] - s_start
    summary = {"saved_step": state["step"], "run_step": state["run_step"], "run_elapsed": round(state["run_elapsed"], 1)}
    if n and dt > 0:  # the main loop's own rate (the compile probe's steps are not in it)
        summary.update(steps_s=round(n / dt, 3), images_s=round(n * a.batch / dt, 1), batch=a.batch, crop=a.crop)
    print(json.dumps(summary), flush=True)
    print(f"saved step {state['step']}", flush=True)
    if a.ship is not None:
        ship_weights(ckdir, a.ship)
        print(f"shipped weights written to {a.ship}", flush=True)


if __name__ == "__main__":
    main()
