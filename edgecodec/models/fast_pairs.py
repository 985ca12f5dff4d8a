"""Training pairs for the fast synthesis (issue 13): latents exactly as the decoder parses them.

For every training photo, a grid of 256x256 crops (multiples of 64 px, so the codec pads nothing),
each randomly flipped *before* encoding, and for every quality level of the bundle:

* ``latents``: ``codec.encode(crop, q, onnxruntime backend).parse.y`` as int8 (skip rule included:
  the integers the decoder's parse yields), shape (N, levels, 192, 16, 16);
* ``pixels``: the original crop, uint8 (N, 256, 256, 3);
* ``full``: the shipped int8 synthesis' decode of the same latents (the encoder's reconstruction,
  ``backend.synthesis(y, inv_gain)`` rounded to uint8), (N, levels, 256, 256, 3): the baseline,
  and an optional distillation target.

Flips happen before encoding because the latent code is not flip-equivariant: the shipped
synthesis decodes spatially flipped latents of a 256x256 crop at ~17 dB (against 26-34 dB for the
true ones), so flipping (latents, pixels) pairs at training time would teach the decoder wrong pairs.

About 5% of the photos (every 20th) are held out as ``val_*``. Written with numpy memmaps so two
worker processes (one ONNX Runtime thread each) fill them in place; ``done.npy`` makes a re-run
resume where an interrupted one stopped.

    python -m edgecodec.models.fast_pairs --src ../shared/data/train --out /work/cache/fast
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import time
from pathlib import Path

import numpy as np

CROP = 256
HOLDOUT_EVERY = 20  # photo i is held out when i % 20 == 10: ~5%

_worker: dict = {}


def plan_crops(sizes: list[tuple[int, int]], seed: int = 0) -> list[tuple[int, int, int, int]]:
    """(photo, top, left, flip code) of every crop: ceil(side/256) evenly spread positions per axis
    (overlapping where the side is not a multiple), flip code bit 0 = horizontal, bit 1 = vertical."""
    rng = np.random.default_rng(seed)
    out = []
    for i, (h, w) in enumerate(sizes):
        if min(h, w) < CROP:
            continue
        ys = np.linspace(0, h - CROP, math.ceil(h / CROP)).round().astype(int)
        xs = np.linspace(0, w - CROP, math.ceil(w / CROP)).round().astype(int)
        for y0 in ys:
            for x0 in xs:
                out.append((i, int(y0), int(x0), int(rng.integers(0, 4))))
    return out


def crop_of(img: np.ndarray, top: int, left: int, flip: int) -> np.ndarray:
    c = img[top : top + CROP, left : left + CROP]
    if flip & 1:
        c = c[:, ::-1]
    if flip & 2:
        c = c[::-1]
    return np.ascontiguousarray(c)


def _init(out: str, paths: list[str], threads: int) -> None:
    from ..bundle import Bundle
    from ..runtimes import open_backend

    bundle = Bundle()
    _worker.update(out=Path(out), paths=paths, bundle=bundle, backend=open_backend("onnxruntime", bundle, threads=threads), maps={})


def _maps(split: str) -> dict:
    m = _worker["maps"].get(split)
    if m is None:
        d = _worker["out"]
        m = _worker["maps"][split] = {k: np.load(d / f"{split}_{k}.npy", mmap_mode="r+") for k in ("pixels", "latents", "full", "done")}
    return m


def _encode_photo(job: tuple[str, int, list[tuple[int, int, int, int]]]) -> int:
    """Encode every crop of one photo at every level into the split's memmaps; returns crops done."""
    from .. import codec, tiling
    from ..io import read_rgb8

    split, first, crops = job
    m = _maps(split)
    be, levels = _worker["backend"], _worker["bundle"].levels
    img = read_rgb8(_worker["paths"][crops[0][0]])
    for j, (_, top, left, flip) in enumerate(crops):
        k = first + j
        if m["done"][k]:
            continue
        x = crop_of(img, top, left, flip)
        m["pixels"][k] = x
        for q in range(1, levels + 1):
            if split == "val":  # the full synthesis' decode: the held-out baseline
                r = codec.encode(x, q, be)
                y = r.parse.y
                m["full"][k, q - 1] = r.reconstruction
            else:  # training crops need only the latents (the teacher term measured no effect)
                y = codec.code_latents(x, q, be, _worker["bundle"], tiling.max_memory(None))[0].y
            if y.shape != (192, CROP // 16, CROP // 16) or np.abs(y).max() > 127:
                raise RuntimeError(f"unexpected latents {y.shape} max {np.abs(y).max()}")
            m["latents"][k, q - 1] = y.astype(np.int8)
        for a in ("pixels", "latents", "full"):
            m[a].flush()
        m["done"][k] = True
        m["done"].flush()
    return len(crops)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="latents/pixels pairs for the fast synthesis")
    ap.add_argument("--src", type=Path, required=True, help="training photos (never Kodak)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads per worker")
    ap.add_argument("--limit", type=int, default=0, help="only the first N photos (a smoke test)")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)

    from ..bundle import Bundle
    from ..io import IMAGE_SUFFIXES, read_rgb8

    bundle = Bundle()
    paths = sorted(str(p) for p in a.src.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if a.limit:
        paths = paths[: a.limit]
    sizes = [read_rgb8(p).shape[:2] for p in paths]
    crops = plan_crops(sizes, a.seed)
    split_of = {i: ("val" if i % HOLDOUT_EVERY == HOLDOUT_EVERY // 2 else "train") for i in range(len(paths))}
    a.out.mkdir(parents=True, exist_ok=True)
    levels, m = bundle.levels, bundle.latent.y_channels
    meta = {
        "bundle_digest": bundle.digest,
        "levels": levels,
        "crop": CROP,
        "src": str(a.src),
        "photos": [Path(p).name for p in paths],
        "holdout": f"photo index % {HOLDOUT_EVERY} == {HOLDOUT_EVERY // 2}",
        "latents": "codec.encode(crop, q, open_backend('onnxruntime', Bundle())).parse.y, int8",
        "full": "the shipped ONNX Runtime int8 synthesis of the same latents, uint8 (held-out crops only)",
    }
    jobs = []
    for split in ("val", "train"):  # held-out first: training can start on the crops done so far
        mine = [c for c in crops if split_of[c[0]] == split]
        n = len(mine)
        meta[split] = {"crops": n, "crop_list": mine}
        shapes = {"pixels": ((n, CROP, CROP, 3), np.uint8), "latents": ((n, levels, m, CROP // 16, CROP // 16), np.int8),
                  "full": ((n, levels, CROP, CROP, 3), np.uint8), "done": ((n,), np.bool_)}  # fmt: skip
        for k, (shape, dt) in shapes.items():
            f = a.out / f"{split}_{k}.npy"
            if f.exists():
                arr = np.load(f, mmap_mode="r")
                if arr.shape != shape or arr.dtype != dt:
                    raise SystemExit(f"{f} exists with shape {arr.shape}, expected {shape}: remove it")
            else:
                np.lib.format.open_memmap(f, mode="w+", dtype=dt, shape=shape).flush()
        done = np.load(a.out / f"{split}_done.npy")
        k = 0
        while k < n:  # one job per photo: its crops are consecutive
            e = k
            while e < n and mine[e][0] == mine[k][0]:
                e += 1
            if not done[k:e].all():
                jobs.append((split, k, mine[k:e]))
            k = e
    val_jobs = [j for j in jobs if j[0] == "val"]
    train_jobs = [j for j in jobs if j[0] == "train"]
    np.random.default_rng(a.seed).shuffle(train_jobs)  # any prefix of the photos is a random sample of them
    jobs = val_jobs + train_jobs
    np.save(a.out / "inv_gain.npy", np.stack([bundle.gains(q)[1].reshape(m) for q in range(1, levels + 1)]))
    (a.out / "meta.json").write_text(json.dumps(meta))
    total = sum(len(j[2]) for j in jobs)
    print(
        f"{len(paths)} photos, {meta['train']['crops']} train + {meta['val']['crops']} val crops, {total} to encode x {levels} levels",
        flush=True,
    )
    t0, done_n = time.time(), 0
    ctx = mp.get_context("spawn")
    with ctx.Pool(a.workers, initializer=_init, initargs=(str(a.out), paths, a.threads)) as pool:
        for n in pool.imap_unordered(_encode_photo, jobs):
            done_n += n
            el = time.time() - t0
            print(
                f"{done_n}/{total} crops, {el:.0f}s, {done_n * levels / el:.1f} encodes/s, eta {el / done_n * (total - done_n):.0f}s",
                flush=True,
            )
    print(f"done in {time.time() - t0:.0f}s", flush=True)


if __name__ == "__main__":
    main()
