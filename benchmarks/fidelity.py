"""Fidelity targets on Kodak (issue 14), measured in one run.

* ``--target-psnr`` for 28, 32 and 36 dB: the achieved PSNR per image (within +-0.1 dB where the
  model reaches the target) and the encoder trials it took (target: <= 6).
* ``--max-error N`` for N = 1, 2, 4, 8: bpp against JPEG-LS near-lossless at NEAR = N (CharLS through
  imagecodecs), and for N = 0 against lossless PNG (opencv, level 9), WebP lossless (imagecodecs,
  method 6... its highest effort) and JPEG XL lossless (imagecodecs, effort 7); the bound is checked
  by decoding every stream on every installed backend.
* The bytes the stored metrics add to a file.

    python benchmarks/fidelity.py [--kodak DIR] [--images 24] [--backend auto] [--skip-targets] [--skip-bound]

Needs ``pip install imagecodecs`` for the baselines.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kodak import default_kodak  # noqa: E402

from edgecodec import codec, container, metrics  # noqa: E402
from edgecodec.bundle import Bundle  # noqa: E402
from edgecodec.io import read_image  # noqa: E402
from edgecodec.runtimes.base import open_backend  # noqa: E402
from edgecodec.runtimes.selection import candidates  # noqa: E402

TARGETS = (28.0, 32.0, 36.0)
BOUNDS = (0, 1, 2, 4, 8)


def bpp(n_bytes: int, img: np.ndarray) -> float:
    return 8.0 * n_bytes / (img.shape[0] * img.shape[1])


def baselines(img: np.ndarray, n: int) -> dict[str, int]:
    import cv2
    import imagecodecs as ic

    out = {}
    jls = ic.jpegls_encode(img, level=n)
    assert metrics.max_error(ic.jpegls_decode(jls), img) <= n
    out["JPEG-LS"] = len(jls)
    if n == 0:
        ok, png = cv2.imencode(".png", img[:, :, ::-1], [cv2.IMWRITE_PNG_COMPRESSION, 9])
        out["PNG"] = len(png)
        webp = ic.webp_encode(img, lossless=True, level=100, method=6)
        assert np.array_equal(ic.webp_decode(webp), img)
        out["WebP-LL"] = len(webp)
        jxl = ic.jpegxl_encode(img, lossless=True, effort=7)
        assert np.array_equal(ic.jpegxl_decode(jxl), img)
        out["JXL-LL"] = len(jxl)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kodak", type=Path, default=default_kodak())
    ap.add_argument("--images", type=int, default=24)
    ap.add_argument("--backend", default="auto", help="the encoding backend (default: the one auto picks)")
    ap.add_argument("--skip-targets", action="store_true")
    ap.add_argument("--skip-bound", action="store_true")
    args = ap.parse_args()
    files = sorted(args.kodak.glob("*.png"))[: args.images]
    if not files:
        raise SystemExit(f"fidelity.py: error: no Kodak images in {args.kodak}")
    bundle = Bundle()
    enc_be = open_backend(args.backend, bundle)
    decoders = {c.name: open_backend(c.name, bundle) for c in candidates(bundle) if c.available and c.device == "CPU"}
    print(f"{len(files)} Kodak images; encoding on {enc_be.name}; bound checked on {', '.join(decoders)}")
    imgs = [read_image(f) for f in files]

    head = container.header_size(2, metrics=True) - (container._V1.size + 2 * container._SUB.size + container._CRC.size)
    print(f"stored metrics + fractional quality + bound field: {head} bytes per file over a v1 header (target <= 24)")

    if not args.skip_targets:
        print("\n--target-psnr: achieved PSNR and encoder trials per image")
        print(f"{'target':>7} {'reached':>8} {'within 0.1':>10} {'worst |err|':>11} {'trials mean':>11} {'max':>4} {'s/image':>8}")
        for t in TARGETS:
            errs, trials, unreached, secs = [], [], 0, []
            for img in imgs:
                t0 = time.perf_counter()
                try:
                    r = codec.encode(img, None, enc_be, bundle, target_psnr=t)
                except Exception as e:  # out of reach: InputError names the best the model gives
                    if "cannot reach" not in str(e):
                        raise
                    unreached += 1
                    continue
                secs.append(time.perf_counter() - t0)
                errs.append(r.psnr - t)
                trials.append(len(r.trials))
            within = sum(abs(e) <= 0.1 for e in errs)
            worst = max((abs(e) for e in errs), default=float("nan"))
            print(
                f"{t:>7.1f} {len(errs):>8} {within:>10} {worst:>11.3f} {np.mean(trials) if trials else float('nan'):>11.2f} "
                f"{max(trials, default=0):>4} {np.mean(secs) if secs else float('nan'):>8.2f}"
                + (f"   ({unreached} images cannot reach it)" if unreached else "")
            )

    if not args.skip_bound:
        print("\n--max-error N: mean bpp over the images (edgecodec = base + residual, base level chosen per image)")
        cols = ("N", 3), ("edgecodec", 9), ("base q", 7), ("max err", 7), ("JPEG-LS", 8), ("PNG", 7), ("WebP-LL", 8), ("JXL-LL", 7)
        print(" ".join(f"{c:>{w}}" for c, w in cols) + f" {'enc s':>6} {'dec s':>6}")
        for n in BOUNDS:
            ours, base_q, worst, tenc, tdec, other = [], [], 0, [], [], {}
            for img in imgs:
                t0 = time.perf_counter()
                r = codec.encode(img, None, enc_be, bundle, max_error=n)
                tenc.append(time.perf_counter() - t0)
                ours.append(bpp(len(r.data), img))
                base_q.append(r.quality)
                for be in decoders.values():
                    t0 = time.perf_counter()
                    out = codec.decode(r.data, be, bundle).image
                    tdec.append(time.perf_counter() - t0)
                    worst = max(worst, metrics.max_error(out, img))
                for k, v in baselines(img, n).items():
                    other.setdefault(k, []).append(bpp(v, img))
            cols = {k: f"{np.mean(v):.3f}" for k, v in other.items()}
            print(
                f"{n:>3} {np.mean(ours):>9.3f} {np.mean(base_q):>7.2f} {worst:>7} {cols.get('JPEG-LS', '-'):>8} {cols.get('PNG', '-'):>7} "
                f"{cols.get('WebP-LL', '-'):>8} {cols.get('JXL-LL', '-'):>7} {np.mean(tenc):>6.2f} {np.mean(tdec):>6.2f}"
            )
            if worst > n:
                print(f"BOUND VIOLATED: N={n}, largest error {worst}")
                raise SystemExit(1)


if __name__ == "__main__":
    main()
