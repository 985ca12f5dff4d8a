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

ROOT = Path(__file__).resolve().parents[1]


def median_time(fn, repeat: int) -> float:
    fn()  # warm-up
    ts = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--image", type=Path, default=ROOT.parent / "shared" / "data" / "kodak" / "kodim23.png")
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
    rows = {}
    for name, be in backends.items():
        dec = median_time(lambda be=be: codec.decode(stream, be, bundle), a.repeat)
        enc = median_time(lambda be=be: codec.encode(img, a.quality, be, bundle), max(1, a.repeat // 3))
        rows[name] = (dec, enc)
    parse = median_time(lambda: codec.parse_stream(stream, bundle), a.repeat)
    ref = rows.get("torch-fp32", (None, None))[0]
    print(f"{'backend':14s} {'decode ms':>10s} {'encode ms':>10s} {'decode vs torch fp32':>22s}")
    for name, (dec, enc) in rows.items():
        ratio = f"{dec / ref:.2f}x" if ref else "n/a"
        print(f"{name:14s} {1e3 * dec:10.1f} {1e3 * enc:10.1f} {ratio:>22s}")
    print(f"entropy decode + integer hyper-decoder (no transforms): {1e3 * parse:.1f} ms")
    try:
        from PIL import Image
    except ImportError:
        return
    for fmt, kw in (("JPEG", {"quality": 75, "optimize": True}), ("WEBP", {"quality": 75, "method": 6}), ("AVIF", {"quality": 60})):
        buf = io.BytesIO()
        try:
            Image.fromarray(img[..., :3]).save(buf, fmt, **kw)
        except (KeyError, OSError, ValueError):
            continue
        data = buf.getvalue()
        t = median_time(lambda data=data: Image.open(io.BytesIO(data)).convert("RGB").load(), a.repeat)
        print(f"{fmt:14s} {1e3 * t:10.1f} ms decode (Pillow, {8 * len(data) / (w * h):.3f} bpp)")


if __name__ == "__main__":
    main()
