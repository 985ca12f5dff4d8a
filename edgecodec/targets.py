"""Quality and size targets: the setting with the fewest bytes that meets a PSNR or MS-SSIM target,
or the best one within a byte budget, searched over fractional qualities (1/16 steps).

The analysis runs once, at unit gain (``codec.unit_gain_latents``); a trial scales it by the trial's
gain and runs only the cheap steps: the hyper-analysis (numpy), the entropy coder and, for quality
targets, the synthesis and the metric. Quality and log-size are close to linear in the quality index,
so a secant search kept inside the bracket of what has been tried meets a target in a few trials.
"""

from __future__ import annotations

import math
import time

import numpy as np

from . import codec, container, metrics, tiling
from .container import QUALITY_STEPS
from .errors import InputError

MAX_TRIALS = 8
PSNR_TOLERANCE_DB = 0.1  # a quality target is met within [target, target + this]: more costs bytes
BYTES_TOLERANCE = 0.02  # a size target is met within [(1 - this) * N, N] bytes
KINDS = ("target_psnr", "target_ms_ssim", "max_bytes")


def _db(v: float) -> float:
    """MS-SSIM in dB (``-10 log10(1 - v)``), close to linear in the quality like PSNR."""
    return math.inf if v >= 1 else -10.0 * math.log10(1.0 - v)


def find(value, lo: int, hi: int, goal: float, tolerance: float, upward: bool, slope: float, max_trials: int = MAX_TRIALS):
    """Search the integer grid lo..hi for the index that meets ``goal``.

    ``value(i)`` increases with ``i``. ``upward``: the smallest ``i`` with ``value >= goal`` (a quality
    target), done early once ``value`` is within ``tolerance`` above the goal; else the largest ``i``
    with ``value <= goal`` (a size budget), done once within ``tolerance`` below. ``slope``: the prior
    change of ``value`` per index, for the first step. Returns (index or None when nothing meets the
    goal, {index: value} of every trial)."""
    seen: dict[int, float] = {}
    ok = (lambda v: v >= goal) if upward else (lambda v: v <= goal)
    close = (lambda v: v - goal <= tolerance) if upward else (lambda v: goal - v <= tolerance)
    aim = goal + tolerance / 2 if upward else goal - tolerance / 2
    i = (lo + hi) // 2
    while len(seen) < max_trials:
        seen[i] = value(i)
        good = [j for j in seen if ok(seen[j])]
        bad = [j for j in seen if not ok(seen[j])]
        best = (min(good) if upward else max(good)) if good else None
        if best is not None and close(seen[best]):
            return best, seen
        # the open interval between the best index meeting the goal and the nearest one that fails
        left = max((j for j in bad), default=lo - 1) if upward else max((j for j in good), default=lo - 1)
        right = min((j for j in good), default=hi + 1) if upward else min((j for j in bad), default=hi + 1)
        if right - left <= 1:
            return best, seen
        order = list(seen)
        if left >= lo and right <= hi:  # bracketed: regula falsi, bisection after two trials on one side
            vl, vr = seen[left], seen[right]
            same_side = len(order) >= 2 and ok(seen[order[-1]]) == ok(seen[order[-2]])
            if same_side or not (math.isfinite(vl) and math.isfinite(vr)) or vr <= vl:
                nxt = (left + right) // 2
            else:
                nxt = int(round(left + (aim - vl) / (vr - vl) * (right - left)))
        else:  # one side known: a secant of the last two trials when its slope is plausible, else the prior
            a = order[-1]
            s = slope
            if len(order) >= 2:
                b = order[-2]
                est = (seen[a] - seen[b]) / (a - b)
                s = est if slope / 4 <= est <= slope * 4 else slope
            nxt = int(round(a + (aim - seen[a]) / s)) if math.isfinite(seen[a]) else a - 1
        nxt = min(max(nxt, left + 1), right - 1)
        if nxt in seen:  # interpolation stalled on a tried index: move one step into the bracket
            nxt = nxt + 1 if nxt + 1 < right and (nxt + 1) not in seen else nxt - 1
            if nxt in seen or not left < nxt < right:
                return best, seen
        i = nxt
    good = [j for j in seen if ok(seen[j])]
    return ((min(good) if upward else max(good)) if good else None), seen


def search(rgb: np.ndarray, channels: int, depth: int, kind: str, goal: float, backend, bundle, budget: int) -> codec.EncodeResult:
    """Encode at the setting ``find`` picks for one target (``kind`` in ``KINDS``)."""
    if kind not in KINDS:
        raise InputError(f"unknown target {kind!r}")
    goal = float(goal)
    if kind == "target_psnr" and not 0 < goal < 100:
        raise InputError(f"--target-psnr must be in (0, 100) dB, got {goal:g}")
    if kind == "target_ms_ssim" and not 0 < goal < 1:
        raise InputError(f"--target-ms-ssim must be in (0, 1), got {goal:g}")
    if kind == "max_bytes" and not (goal >= 1 and goal == int(goal)):
        raise InputError(f"--max-bytes must be a whole number of bytes >= 1, got {goal:g}")
    t0 = time.perf_counter()
    y_unit = codec.unit_gain_latents(rgb, backend, bundle, budget)
    h, w, _ = rgb.shape
    orig = codec._from_rgb8(rgb, channels, 8)
    runs: dict[int, tuple] = {}
    trials: list[dict] = []

    def value(i: int) -> float:
        q = i / QUALITY_STEPS
        parse, subs, _ = codec.code_latents(rgb, q, backend, bundle, budget, y_unit)
        size = container.header_size(len(subs)) + sum(len(p) for _, _, p in subs)  # the file's exact size
        rec = None
        if kind == "max_bytes":
            v = float(size)
            trials.append({"quality": q, "bytes": size})
        else:
            rec = tiling.synthesis(backend, parse.y, bundle.gains(q)[1], h, w, budget)
            seen = codec._from_rgb8(rec, channels, 8)
            if kind == "target_psnr":
                v = metrics.psnr(orig, seen)
                trials.append({"quality": q, "bytes": size, "psnr": round(v, 3)})
            else:
                m = metrics.ms_ssim(orig, seen)
                v = _db(m)
                trials.append({"quality": q, "bytes": size, "ms_ssim": round(m, 5)})
        runs[i] = (parse, subs, rec)
        return v

    lo, hi = QUALITY_STEPS, QUALITY_STEPS * bundle.levels
    if kind == "max_bytes":
        best, seen = find(lambda i: math.log(value(i)), lo, hi, math.log(goal), -math.log(1 - BYTES_TOLERANCE), False, 0.2 / QUALITY_STEPS)
    else:
        target = goal if kind == "target_psnr" else _db(goal)
        best, seen = find(value, lo, hi, target, PSNR_TOLERANCE_DB, True, 1.0 / QUALITY_STEPS)
    if best is None:
        raise InputError(_unreachable(kind, goal, seen))
    parse, subs, rec = runs[best]
    q = best / QUALITY_STEPS
    t1 = time.perf_counter()
    if rec is None:
        rec = tiling.synthesis(backend, parse.y, bundle.gains(q)[1], h, w, budget)
    res = codec.finish(rgb, channels, depth, q, parse, subs, rec, backend, bundle, "full")
    res.trials = trials
    res.timings = {"search": t1 - t0, "final": time.perf_counter() - t1}
    return res


def _unreachable(kind: str, goal: float, seen: dict[int, float]) -> str:
    lo, hi = min(seen), max(seen)
    if kind == "max_bytes":
        which = "the lowest quality" if lo == QUALITY_STEPS else f"quality {lo / QUALITY_STEPS:g}"
        return f"cannot fit {goal:.0f} bytes: {which} needs {math.exp(seen[lo]):.0f} bytes"
    got = seen[hi] if kind == "target_psnr" else 1 - 10 ** (-seen[hi] / 10)
    what = f"{goal:g} dB PSNR" if kind == "target_psnr" else f"MS-SSIM {goal:g}"
    unit = f"{got:.2f} dB" if kind == "target_psnr" else f"{got:.4f}"
    return f"cannot reach {what}: the best quality ({hi / QUALITY_STEPS:g}) gives {unit}; --max-error N bounds every pixel instead"
