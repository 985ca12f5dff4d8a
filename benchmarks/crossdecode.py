"""Every (encode backend, decode backend) pair on Kodak: the parse must be identical, pixels close.

    python benchmarks/crossdecode.py [--kodak DIR] [--qualities 3,8] [--backends onnxruntime,openvino,tflite,numpy]
                                     [--images N] [--threads 2] [--json FILE]

Each image is encoded once per backend at each quality; each stream is decoded by every backend.
Checks, per stream: every decoder's parse digest (symbols, latents, integer hyper-decoder output)
equals the encoder's; reports the largest pixel difference and the lowest PSNR between any two
decodes of the same stream, and between each decode and the encoder's own reconstruction.
Exit status 1 if any parse differs.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np

if __package__:
    from .kodak import default_kodak
else:  # run as a script: benchmarks/ is sys.path[0]
    from kodak import default_kodak

REPO = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kodak", type=Path, default=default_kodak())
    ap.add_argument("--qualities", default="3,8")
    ap.add_argument("--backends", default="onnxruntime,openvino,tflite,numpy")
    ap.add_argument("--images", type=int, default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, default=REPO / "benchmarks" / "out" / "crossdecode.json")
    a = ap.parse_args(argv)

    from PIL import Image

    from edgecodec import codec
    from edgecodec.bundle import Bundle
    from edgecodec.runtimes.base import open_backend

    files = sorted(a.kodak.glob("*.png"))[: a.images]
    if not files:
        print(f"crossdecode.py: error: no Kodak PNGs in {a.kodak}", file=sys.stderr)
        return 2
    bundle = Bundle()
    names = [n.strip() for n in a.backends.split(",") if n.strip()]
    backends = {n: open_backend(n, bundle, threads=a.threads) for n in names}
    qualities = [int(q) for q in a.qualities.split(",")]
    print(f"{len(files)} images x qualities {qualities}; backends {names}; bundle {bundle.digest[:12]}")

    streams = decodes = mismatches = 0
    worst_pair = {"max_abs": 0, "min_psnr": float("inf")}
    worst_vs_encoder = {"max_abs": 0, "min_psnr": float("inf")}
    per_pair: dict[str, dict] = {}
    t0 = time.perf_counter()
    for f in files:
        with Image.open(f) as im:
            img = np.asarray(im.convert("RGB"))
        for q in qualities:
            for enc_name, enc_be in backends.items():
                enc = codec.encode(img, q, enc_be)
                streams += 1
                outs = {}
                for dec_name, dec_be in backends.items():
                    dec = codec.decode(enc.data, dec_be)
                    decodes += 1
                    if dec.parse.digest() != enc.parse.digest():
                        mismatches += 1
                        print(f"PARSE MISMATCH: {f.name} q{q} encoded on {enc_name}, decoded on {dec_name}")
                    outs[dec_name] = dec.image
                    d = int(np.abs(dec.image.astype(int) - enc.reconstruction.astype(int)).max())
                    p = codec.psnr(dec.image, enc.reconstruction)
                    new = {"streams": 0, "max_abs_vs_encoder": 0, "min_psnr_vs_encoder": float("inf")}
                    pair = per_pair.setdefault(f"{enc_name}->{dec_name}", new)
                    pair["streams"] += 1
                    pair["max_abs_vs_encoder"] = max(pair["max_abs_vs_encoder"], d)
                    pair["min_psnr_vs_encoder"] = min(pair["min_psnr_vs_encoder"], p)
                    worst_vs_encoder["max_abs"] = max(worst_vs_encoder["max_abs"], d)
                    worst_vs_encoder["min_psnr"] = min(worst_vs_encoder["min_psnr"], p)
                for (_, x), (_, y) in itertools.combinations(outs.items(), 2):
                    worst_pair["max_abs"] = max(worst_pair["max_abs"], int(np.abs(x.astype(int) - y.astype(int)).max()))
                    worst_pair["min_psnr"] = min(worst_pair["min_psnr"], codec.psnr(x, y))
        elapsed = time.perf_counter() - t0
        print(f"{f.name}: {streams} streams, {decodes} decodes, {mismatches} parse mismatches ({elapsed:.0f} s)", flush=True)

    print(f"\n{'encode -> decode':<26} {'streams':>7} {'max |diff|':>10} {'min PSNR dB':>12}  (vs the encoder's reconstruction)")
    for k, v in per_pair.items():
        print(f"{k:<26} {v['streams']:>7} {v['max_abs_vs_encoder']:>10} {v['min_psnr_vs_encoder']:>12.2f}")
    print(
        f"\n{streams} streams, {decodes} decodes, {mismatches} parse mismatches; between any two backends' decodes of one stream: "
        f"largest pixel difference {worst_pair['max_abs']}, lowest PSNR {worst_pair['min_psnr']:.2f} dB; "
        f"vs the encoder's reconstruction: largest {worst_vs_encoder['max_abs']}, lowest {worst_vs_encoder['min_psnr']:.2f} dB"
    )
    a.json.parent.mkdir(parents=True, exist_ok=True)
    finite = lambda v: v if v != float("inf") else None  # noqa: E731  (JSON has no infinity)
    a.json.write_text(
        json.dumps(
            {
                "bundle": bundle.digest,
                "images": [f.stem for f in files],
                "qualities": qualities,
                "backends": names,
                "streams": streams,
                "decodes": decodes,
                "parse_mismatches": mismatches,
                "between_backends": {k: finite(v) for k, v in worst_pair.items()},
                "vs_encoder": {k: finite(v) for k, v in worst_vs_encoder.items()},
                "pairs": {k: {kk: finite(vv) for kk, vv in v.items()} for k, v in per_pair.items()},
            },
            indent=1,
        )
    )
    print(f"wrote {a.json}")
    return 1 if mismatches else 0


if __name__ == "__main__":
    raise SystemExit(main())
