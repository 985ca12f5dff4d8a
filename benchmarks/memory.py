"""Peak memory and time per pixel of whole photos, per backend, each in a fresh process.

    python benchmarks/memory.py [--backend onnxruntime,tflite,openvino,numpy] [--sizes 768x512,4000x3000,8000x6000]

Each (backend, size) runs in its own subprocess that imports only that runtime: it encodes the
photo at quality 5 and decodes the stream, with the default memory budget (``--max-memory`` to
change it). Photos up to 1 MP are timed on their second run (the first pays the shape's one-off
setup); larger ones once (their windows share one shape). The photo is a mosaic of Kodak images (``$EDGECODEC_DATA``/kodak, else the shipped
kodim23), mirrored tile to tile so its content stays photographic at any size. Peak RSS is the
process' high-water mark after each step (``ru_maxrss``), so the decode figure is measured in a
second process that only decodes. Time per pixel is printed against the 768x512 run of the same
backend in this run (the baseline), so a noisy machine shifts both.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def mosaic(h: int, w: int) -> np.ndarray:  # noqa: F821
    import numpy as np

    from edgecodec.io import read_rgb8

    try:
        from kodak import default_kodak

        files = sorted(Path(default_kodak()).glob("kodim*.png"))[:6]
    except Exception:
        files = []
    tiles = [read_rgb8(f) for f in files] or [read_rgb8(Path(__file__).resolve().parents[1] / "edgecodec" / "data" / "kodim23.png")]
    tiles = [t if t.shape[0] < t.shape[1] else t.transpose(1, 0, 2) for t in tiles]  # all landscape
    th, tw = 512, 768
    out = np.empty((h, w, 3), np.uint8)
    k = 0
    for r in range(0, h, th):
        for c in range(0, w, tw):
            t = tiles[k % len(tiles)][:th, :tw]
            if (r // th) % 2:
                t = t[::-1]
            if (c // tw) % 2:
                t = t[:, ::-1]
            out[r : r + th, c : c + tw] = t[: h - r, : w - c]
            k += 1
    return out


def worker(args: dict) -> dict:
    import resource
    import time

    import numpy as np

    from edgecodec import codec
    from edgecodec.bundle import Bundle
    from edgecodec.runtimes import open_backend

    def rss() -> float:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    h, w = args["h"], args["w"]
    bundle = Bundle()
    be = open_backend(args["backend"], bundle, threads=args["threads"])
    stream = Path(args["stream"])
    row = {"backend": args["backend"], "size": f"{w}x{h}", "mode": args["mode"]}
    if args["mode"] == "encode":
        img = mosaic(h, w)
        codec.encode(img[:64, :64], 5, be, max_memory=args["max_memory"])  # load the runtime before the baseline
        if h * w <= 1 << 20:  # small: time the second run (the first pays this shape's one-off setup)
            codec.encode(img, 5, be, max_memory=args["max_memory"])
        base = rss()
        t = time.perf_counter()
        enc = codec.encode(img, 5, be, max_memory=args["max_memory"])
        row.update(seconds=time.perf_counter() - t, loaded_mb=base, peak_mb=rss(), image_mb=img.nbytes / 2**20, bpp=enc.bpp, psnr=enc.psnr)
        stream.write_bytes(enc.data)
        np.save(stream.with_suffix(".rec.npy"), enc.reconstruction)
    else:
        data = stream.read_bytes()  # no warm-up encode: a decoder never loads the analysis
        if h * w <= 1 << 20:
            codec.decode(data, be, max_memory=args["max_memory"], max_pixels=10**9)
        base = rss()
        t = time.perf_counter()
        dec = codec.decode(data, be, max_memory=args["max_memory"], max_pixels=10**9)
        row.update(seconds=time.perf_counter() - t, loaded_mb=base, peak_mb=rss(), image_mb=dec.image.nbytes / 2**20)
        row["equal_to_encoder"] = bool(np.array_equal(dec.image, np.load(stream.with_suffix(".rec.npy"))))
    row["us_per_pixel"] = 1e6 * row["seconds"] / (h * w)
    return row


def run(backend: str, h: int, w: int, mode: str, stream: Path, threads: int | None, max_memory: str | None) -> dict:
    args = json.dumps(
        {"backend": backend, "h": h, "w": w, "mode": mode, "stream": str(stream), "threads": threads, "max_memory": max_memory}
    )
    p = subprocess.run([sys.executable, __file__, "--worker", args], capture_output=True, text=True)
    try:
        return json.loads(p.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"backend": backend, "size": f"{w}x{h}", "mode": mode, "error": (p.stderr.strip().splitlines() or ["?"])[-1]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backend", default="onnxruntime,tflite,openvino,numpy")
    ap.add_argument("--sizes", default="768x512,4000x3000,8000x6000")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--max-memory", default=None, help="transform memory budget (default: the library's)")
    ap.add_argument("--tmp", type=Path, default=Path("build/memory-bench"))
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        print(json.dumps(worker(json.loads(a.worker))))
        return
    a.tmp.mkdir(parents=True, exist_ok=True)
    sizes = [tuple(int(v) for v in s.split("x")) for s in a.sizes.split(",")]
    rows = []
    head = ("backend", "size", "mode", "peak MB", "loaded", "image MB", "s", "us/px", "vs first")
    print(" ".join(f"{h:{w}s}" for h, w in zip(head, (12, 10, 7, 8, 7, 8, 7, 7, 9))) + "  notes")
    for be in a.backend.split(","):
        base = {}
        for w, h in sizes:
            stream = a.tmp / f"{be}_{w}x{h}.edgc"
            for mode in ("encode", "decode"):
                r = run(be, h, w, mode, stream, a.threads, a.max_memory)
                rows.append(r)
                if "error" in r:
                    print(f"{be:12s} {w}x{h:<6d} {mode:7s} error: {r['error']}")
                    continue
                base.setdefault(mode, r["us_per_pixel"])
                notes = (
                    f"{r['bpp']:.3f} bpp, {r['psnr']:.2f} dB" if mode == "encode" else f"equal to the encoder's: {r['equal_to_encoder']}"
                )
                cells = (r["peak_mb"], r["loaded_mb"], r["image_mb"], r["seconds"], r["us_per_pixel"], r["us_per_pixel"] / base[mode])
                nums = " ".join(f"{v:{f}}" for v, f in zip(cells, ("8.0f", "7.0f", "8.0f", "7.2f", "7.3f", "8.2f")))
                print(f"{be:12s} {r['size']:10s} {mode:7s} {nums}x  {notes}", flush=True)
    if a.json:
        a.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
