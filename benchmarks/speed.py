"""Decode/encode speed on one Kodak image, every backend vs the same model in PyTorch fp32, in one run.

    python benchmarks/speed.py [--image PATH] [--bundle DIR] [--checkpoint DIR] [--repeat 10] [--threads 2]

Decode is measured from the stream's bytes in memory to the RGB array in memory,
model loaded and warm; medians of --repeat runs. Ratios are against the PyTorch
fp32 decode measured in the same run (machines here are noisy: compare ratios).
Classical decoders (Pillow) are timed the same way for scale.
"""

from __future__ import annotations

import argparse
import io
import statistics
import time
from pathlib import Path

import numpy as np

if __package__:
    from .kodak import default_kodak, timed_runs
else:  # run as a script: benchmarks/ is sys.path[0]
    from kodak import default_kodak, timed_runs

ROOT = Path(__file__).resolve().parents[1]


def median_time(fn, repeat: int) -> float:
    return statistics.median(timed_runs(fn, repeat))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--image", type=Path, default=default_kodak() / "kodim23.png")
    ap.add_argument("--bundle", type=Path, default=None)
    ap.add_argument("--checkpoint", type=Path, default=ROOT / "edgecodec" / "data" / "weights")
    ap.add_argument("--quality", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()

    from edgecodec import codec
    from edgecodec.bundle import Bundle
    from edgecodec.errors import EdgecodecError
    from edgecodec.io import read_image
    from edgecodec.runtimes.base import REGISTRY, open_backend

    img = read_image(a.image if a.image.is_file() else ROOT / "edgecodec" / "data" / "kodim23.png")
    bundle = Bundle(a.bundle)
    backends = {}
    for name in REGISTRY:
        try:
            backends[name] = open_backend(name, bundle, threads=a.threads)
        except EdgecodecError as e:
            print(f"{name}: unavailable ({e})")
    if a.checkpoint.joinpath("state.json").is_file():
        try:
            from edgecodec.models.torch_backend import TorchBackend

            backends["torch-fp32"] = TorchBackend(bundle, a.checkpoint, threads=a.threads)
        except ImportError:
            print("torch not installed: no fp32 reference")
    stream = codec.encode(img, a.quality, backends.get("onnxruntime") or next(iter(backends.values())), bundle).data
    h, w = img.shape[:2]
    print(f"image {w}x{h}, quality {a.quality}, {len(stream)} bytes ({8 * len(stream) / (w * h):.3f} bpp), {a.threads} threads")
    from edgecodec.runtimes.selection import AutoBackend

    auto = AutoBackend(bundle, threads=a.threads)
    codec.decode(stream, auto, bundle)  # selection (cached per host after the first run)
    backends["auto"] = auto
    rows, fast = {}, {}
    has_fast = "fast" in bundle.decoders
    for name, be in backends.items():
        dec = median_time(lambda be=be: codec.decode(stream, be, bundle), a.repeat)
        enc = median_time(lambda be=be: codec.encode(img, a.quality, be, bundle), max(1, a.repeat // 3))
        rows[name] = (dec, enc)
        if has_fast and name != "torch-fp32":
            fast[name] = median_time(lambda be=be: codec.decode(stream, be, bundle, decoder="fast"), a.repeat)
    parse = median_time(lambda: codec.parse_stream(stream, bundle), a.repeat)
    _, p = codec.parse_stream(stream, bundle)
    classical = {}
    try:
        from PIL import Image

        for fmt, kw in (("JPEG", {"quality": 75, "optimize": True}), ("WEBP", {"quality": 75, "method": 6}), ("AVIF", {"quality": 60})):
            buf = io.BytesIO()
            try:
                Image.fromarray(img[..., :3]).save(buf, fmt, **kw)
            except (KeyError, OSError, ValueError):
                continue
            data = buf.getvalue()
            t = median_time(lambda data=data: np.asarray(Image.open(io.BytesIO(data)).convert("RGB")), a.repeat)
            classical[fmt] = (t, 8 * len(data) / (w * h))
    except ImportError:
        pass
    ref = rows.get("torch-fp32", (None, None))[0]
    avif = classical.get("AVIF", (None,))[0]
    heads = ("decode ms", 10), ("encode ms", 10), ("dec vs torch fp32", 18), ("dec vs AVIF", 12), ("fast dec ms", 12), ("fast/full", 10)
    print(f"{'backend':14s} " + " ".join(f"{h:>{w}s}" for h, w in heads))
    for name, (dec, enc) in rows.items():
        r1 = f"{dec / ref:.2f}x" if ref else "n/a"
        r2 = f"{dec / avif:.1f}x" if avif else "n/a"
        label = auto.chosen_label() if name == "auto" else name
        f1, f2 = (f"{1e3 * fast[name]:.1f}", f"{fast[name] / dec:.2f}x") if name in fast else ("-", "-")
        print(f"{label:14s} {1e3 * dec:10.1f} {1e3 * enc:10.1f} {r1:>18s} {r2:>12s} {f1:>12s} {f2:>10s}")
    for fmt, (t, bpp) in classical.items():
        print(f"{fmt + ' (Pillow)':14s} {1e3 * t:10.1f} {'':>10s} {'':>18s} {(t / avif if avif else 0):>11.1f}x   ({bpp:.3f} bpp)")
    print(
        f"entropy decode + integer hyper-decoder: {1e3 * parse:.1f} ms "
        f"(hyper {1e3 * p.stats['hyper_s']:.1f} ms; {p.stats['coded']} coded symbols, {p.stats['y_lanes']} lanes, "
        f"{p.stats['coded'] / p.stats['entropy_s'] / 1e6:.1f} M symbols/s)"
    )
    if fast:
        runtimes = {n: t for n, t in fast.items() if n not in ("auto", "numpy")}
        best = min(runtimes, key=runtimes.get) if runtimes else min(fast, key=fast.get)
        best_full = min(v[0] for n, v in rows.items() if n not in ("auto", "torch-fp32", "numpy"))
        print(
            f"fast decoder: fastest backend {best} {1e3 * fast[best]:.1f} ms (target <= 45 ms), "
            f"{fast[best] / best_full:.2f}x the fastest full decode {1e3 * best_full:.1f} ms (target <= 0.4x); "
            + (f"numpy {1e3 * fast['numpy']:.1f} ms (target <= 150 ms)" if "numpy" in fast else "numpy not run")
        )
    import resource
    import subprocess
    import sys
    import tempfile

    print(f"peak RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "in.edgc"
        src.write_bytes(stream)
        cmd = [
            sys.executable,
            "-m",
            "edgecodec.cli",
            "decode",
            str(src),
            "-o",
            str(Path(tmp) / "out.png"),
            "--force",
            "--threads",
            str(a.threads),
        ]
        if a.bundle:
            cmd += ["--model", str(a.bundle)]
        ts = []
        for _ in range(3):
            t = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True)
            ts.append(time.perf_counter() - t)
        print(f"cold start (process start to PNG written, auto backend, selection cached): {1e3 * statistics.median(ts):.0f} ms")


if __name__ == "__main__":
    main()
