"""Is the automatically chosen encoder ever worse than ONNX Runtime's? Per quality level, on Kodak.

    python benchmarks/encoder_choice.py [--images N] [--qualities 1,5,10]

Encodes every image at every level with ``auto`` (selection on this host, its cache in a fresh
temporary file so the check runs here and now) and with ONNX Runtime, decodes both streams with
the same decoder (ONNX Runtime) so only the encoders differ, and prints per level the mean RGB PSNR
difference and the total size difference, with the backend ``auto`` chose to encode. The target
(issue 12): no level loses more than 0.05 dB or gains more than 0.5% rate. Run it on the CPU it is
meant to protect: int8 kernels differ between CPUs.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=None, help="only the first N Kodak images")
    ap.add_argument("--qualities", default=None, help="levels, e.g. 1,5,10 (default: all)")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    from kodak import default_kodak

    from edgecodec import codec
    from edgecodec.bundle import Bundle
    from edgecodec.io import read_rgb8
    from edgecodec.runtimes import open_backend

    files = sorted(default_kodak().glob("kodim*.png"))[: a.images]
    if not files:
        print(f"no Kodak images in {default_kodak()} (set EDGECODEC_DATA)", file=sys.stderr)
        return 2
    bundle = Bundle()
    levels = [int(q) for q in a.qualities.split(",")] if a.qualities else list(range(1, bundle.levels + 1))
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["EDGECODEC_CACHE"] = str(Path(tmp) / "backends.json")
        auto = open_backend("auto", bundle, threads=a.threads)
        ort = open_backend("onnxruntime", bundle, threads=a.threads)
        stats = {q: {"auto": [0, []], "ort": [0, []]} for q in levels}
        for f in files:
            img = read_rgb8(f)
            for q in levels:
                for name, be in (("auto", auto), ("ort", ort)):
                    data = codec.encode(img, q, be, bundle).data
                    s = stats[q][name]
                    s[0] += len(data)
                    s[1].append(codec.psnr(codec.decode(data, ort, bundle).image, img))
        chosen = auto.chosen_label()
        print(f"{len(files)} Kodak images; auto chose {chosen} (analysis = encoder); both decoded with onnxruntime")
        for r in [r for rows in auto.reports.values() for r in rows]:
            print(f"  selection: {r['backend']}:{r['device']} {r['role']} {r['size']}: {r['status']}")
    print(f"{'level':>5s} {'ORT bytes':>10s} {'auto bytes':>10s} {'rate':>8s} {'ORT dB':>7s} {'auto dB':>7s} {'dB':>7s}  target")
    worst_db, worst_rate = 0.0, 0.0
    for q in levels:
        (bo, po), (ba, pa) = stats[q]["ort"], stats[q]["auto"]
        rate, ddb = 100 * (ba / bo - 1), float(np.mean(pa) - np.mean(po))
        worst_db, worst_rate = min(worst_db, ddb), max(worst_rate, rate)
        ok = ddb >= -0.05 and rate <= 0.5
        print(f"{q:5d} {bo:10d} {ba:10d} {rate:+7.2f}% {np.mean(po):7.2f} {np.mean(pa):7.2f} {ddb:+7.3f}  {'met' if ok else 'NOT met'}")
    print(f"worst level: {worst_db:+.3f} dB, {worst_rate:+.2f}% rate (target: >= -0.05 dB, <= +0.5%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
