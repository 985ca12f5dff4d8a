#!/usr/bin/env python3
"""Cross-device stream check: decode stream sets with given backends and compare with a reference.

A stream set is a folder in the ``tests/conformance`` layout: ``manifest.json`` (``{"streams": {stem:
{"parse_sha256": ...}}}``), ``reference_pixels.npz`` (the reference decode per stem) and ``STEM.edgc``.
Needs only numpy and the edgecodec core, so it runs unchanged on x86, under qemu and on a real Pi.

  check_streams.py decode SET... --backend NAME [--backend numpy] [--json OUT] [--label TEXT]
                   [--save-pixels DIR | --same-backend-pixels DIR]
  check_streams.py encode --images IMAGES.npz --quality Q... --backend NAME --out SET [--reference-backend numpy]
  check_streams.py exact V2SET --backend NAME...   (tests/golden/v2: bounded streams decode to the recorded pixels)
  check_streams.py images --out IMAGES.npz     (crops of the shipped Kodak photo; needs opencv, so x86 side)
  check_streams.py summary RESULT.json...

The check: the parse digest (z, y, table index and coded mask, all integer; ``Parse.digest``) equals the
reference's bit for bit, and the pixels are within the README's cross-backend tolerance, both of the
reference and (with --same-backend-pixels, written on x86 by --save-pixels) of the same backend's decode
on x86. Exit 1 with a one-line reason on the first mismatch (all streams are still checked and counted).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

# README, "The determinism guarantee": the conformance test allows 8 levels and >= 40 dB across backends
MAX_DIFF = 8
MIN_PSNR = 40.0
HEAVY = ("torch", "cv2", "typer", "onnx", "tensorflow")  # the decoder core must never import these
RUNTIME_OF = {"onnxruntime": "onnxruntime", "ai-edge-litert": "tflite", "openvino": "openvino", "numpy": "numpy"}
# fresh test images: (row, col, height, width) crops of edgecodec/data/kodim23.png, away from the conformance crops;
# one odd-sized (padding) and one 16-bit gray (the channel and bit-depth conversions)
CROPS = {"fresh_rgb": (120, 420, 48, 80), "fresh_odd": (330, 90, 37, 53), "fresh_gray16": (250, 640, 40, 40)}


def cpu_info() -> dict:
    """CPU part and features as this process sees them (qemu-user answers /proc/cpuinfo for the emulated CPU)."""
    info = {"machine": platform.machine()}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key in ("CPU part", "Features", "flags", "model name") and key not in info:
                info[key] = value.strip()
    except OSError:
        pass
    return info


def load_set(folder: Path) -> tuple[dict, dict]:
    manifest = json.loads((folder / "manifest.json").read_text())
    with np.load(folder / "reference_pixels.npz") as px:
        pixels = {k: px[k] for k in px.files}
    return manifest["streams"], pixels


def compare(image: np.ndarray, ref: np.ndarray) -> tuple[int, float]:
    from edgecodec import codec

    if image.shape != ref.shape or image.dtype != ref.dtype:
        raise ValueError(f"decoded {image.shape} {image.dtype} != reference {ref.shape} {ref.dtype}")
    if image.dtype == np.uint16:  # 16-bit streams decode to v*257: compare in 8-bit levels like the rest
        image, ref = image // 257, ref // 257
    return int(np.abs(image.astype(np.int64) - ref.astype(np.int64)).max()), codec.psnr(image, ref)


def cmd_decode(args) -> int:
    from edgecodec import codec
    from edgecodec.bundle import Bundle
    from edgecodec.runtimes.base import open_backend

    cpu = cpu_info()
    if args.expect_cpu_part and cpu.get("CPU part") != args.expect_cpu_part:
        print(f"FAIL: CPU part is {cpu.get('CPU part')!r}, expected {args.expect_cpu_part} (QEMU_CPU not honoured?)", file=sys.stderr)
        return 1
    if args.expect_numpy and np.__version__ != args.expect_numpy:
        print(f"FAIL: numpy {np.__version__} from {np.__file__}, expected {args.expect_numpy}", file=sys.stderr)
        return 1
    bundle = Bundle()
    sets = [(Path(d), *load_set(Path(d))) for d in args.sets]
    results, failures = [], []
    for name in args.backend:
        t0 = time.perf_counter()
        be = open_backend(RUNTIME_OF.get(name, name), bundle, threads=args.threads)
        res = {"label": args.label, "backend": be.describe(), "numpy": f"{np.__version__} ({np.__file__})", "cpu": cpu}
        res.update(edgecodec=str(Path(codec.__file__).parent), model=bundle.digest)
        res.update(python=platform.python_version(), streams=0, hashes=0, equal=0, max_diff=0, min_psnr=float("inf"), failures=[])
        same, saved = {}, {}
        if args.same_backend_pixels:
            with np.load(Path(args.same_backend_pixels) / f"{be.name}.npz") as px:
                same = {k: px[k] for k in px.files}
            res.update(same_compared=0, same_identical=0, same_max_diff=0)
        for folder, streams, pixels in sets:
            for stem, info in sorted(streams.items()):
                where = f"{args.label} {be.name} {folder.name}/{stem}"
                try:
                    out = codec.decode((folder / f"{stem}.edgc").read_bytes(), be, bundle)
                    res["streams"] += 1
                    res["hashes"] += 1
                    if out.parse.digest() != info["parse_sha256"]:
                        res["failures"].append(f"{where}: parse digest {out.parse.digest()[:16]} != reference {info['parse_sha256'][:16]}")
                        continue
                    res["equal"] += 1
                    d, p = compare(out.image, pixels[stem])
                    saved[f"{folder.name}__{stem}"] = out.image
                    if same:  # the same runtime on x86: how far the architecture alone moves the pixels
                        ds, ps = compare(out.image, same[f"{folder.name}__{stem}"])
                        res["same_compared"] += 1
                        res["same_identical"] += ds == 0
                        res["same_max_diff"] = max(res["same_max_diff"], ds)
                        if ds > MAX_DIFF or ps < MIN_PSNR:
                            res["failures"].append(f"{where}: pixels differ from x86 {be.name} by up to {ds} ({ps:.1f} dB)")
                except Exception as e:  # a crash is a failed stream too, reported like a mismatch
                    res["failures"].append(f"{where}: {type(e).__name__}: {e}")
                    continue
                res["max_diff"], res["min_psnr"] = max(res["max_diff"], d), min(res["min_psnr"], p)
                if d > MAX_DIFF or p < MIN_PSNR:
                    res["failures"].append(f"{where}: pixels differ by up to {d} ({p:.1f} dB; allowed {MAX_DIFF}, {MIN_PSNR} dB)")
        res["seconds"] = round(time.perf_counter() - t0, 1)
        results.append(res)
        failures += res["failures"]
        if args.save_pixels:
            Path(args.save_pixels).mkdir(parents=True, exist_ok=True)
            np.savez_compressed(Path(args.save_pixels) / f"{be.name}.npz", **saved)
        vs = f", vs x86 {be.name}: {res['same_identical']}/{res['same_compared']} identical, up to {res['same_max_diff']}" if same else ""
        print(
            f"{args.label} {be.name}: {res['streams']} streams, {res['equal']}/{res['hashes']} parse hashes "
            f"equal, largest pixel difference {res['max_diff']} (min {res['min_psnr']:.1f} dB){vs}, {res['seconds']} s"
        )
    heavy = [m for m in HEAVY if m in sys.modules]
    if args.assert_light and heavy:
        failures.append(f"{args.label}: the decoder imported {', '.join(heavy)}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    if failures:
        more = f" (+{len(failures) - 1} more)" if len(failures) > 1 else ""
        print(f"FAIL: {failures[0]}{more}", file=sys.stderr)
        return 1
    return 0


def cmd_encode(args) -> int:
    from edgecodec import codec
    from edgecodec.bundle import Bundle
    from edgecodec.runtimes.base import open_backend

    bundle = Bundle()
    be = open_backend(RUNTIME_OF.get(args.backend, args.backend), bundle, threads=args.threads)
    ref = open_backend(args.reference_backend, bundle, threads=args.threads) if args.reference_backend else None
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    streams, pixels = {}, {}
    with np.load(args.images) as images:
        for name in images.files:
            for q in args.quality:
                enc = codec.encode(images[name], q, be, bundle)
                stem = f"{name}_q{q:02d}"
                (out / f"{stem}.edgc").write_bytes(enc.data)
                pixels[stem] = enc.reconstruction
                if ref is not None:  # the reference decode here, which must reproduce the encoder's parse
                    dec = codec.decode(enc.data, ref, bundle)
                    if dec.parse.digest() != enc.parse.digest():
                        print(f"FAIL: {stem}: {ref.name} decode parse differs from the {be.name} encoder's on this host", file=sys.stderr)
                        return 1
                    pixels[stem] = dec.image
                streams[stem] = {"parse_sha256": enc.parse.digest(), "bytes": len(enc.data), "quality": q, "source": name}
    np.savez_compressed(out / "reference_pixels.npz", **pixels)
    encoded_by = {"backend": be.describe(), "cpu": cpu_info(), "numpy": np.__version__}
    manifest = {"model_digest": bundle.digest, "encoded_by": encoded_by, "reference_backend": args.reference_backend or be.name}
    (out / "manifest.json").write_text(json.dumps({**manifest, "streams": streams}, indent=1, sort_keys=True))
    print(f"{args.label} {be.name}: encoded {len(streams)} streams into {out}")
    return 0


def cmd_images(args) -> int:
    from edgecodec.bundle import default_bundle_path
    from edgecodec.io import read_image

    photo = read_image(default_bundle_path().parent / "kodim23.png")
    crops = {name: photo[y : y + h, x : x + w] for name, (y, x, h, w) in CROPS.items()}
    gray = np.rint(crops["fresh_gray16"].astype(np.float64).mean(axis=2)).astype(np.uint16)
    crops["fresh_gray16"] = gray * 257
    np.savez_compressed(args.out, **crops)
    return 0


def cmd_summary(args) -> int:
    rows = [r for f in args.results for r in json.loads(Path(f).read_text())]
    # max diff / min dB: against the reference decode; vs x86: identical streams and max diff against the
    # same backend's decode on x86
    print(f"{'where':36} {'backend':11} {'version':14} {'streams':>7} {'hashes':>7} {'max diff':>8} {'min dB':>6} {'vs x86':>9} {'s':>6}")
    for r in rows:
        b = r["backend"]
        vs = f"{r['same_identical']}/{r['same_compared']}:{r['same_max_diff']}" if "same_compared" in r else "-"
        print(
            f"{r['label']:36} {b['backend']:11} {str(b.get('version', ''))[:14]:14} {r['streams']:7d} "
            f"{r['equal']:3d}/{r['hashes']:<3d} {r['max_diff']:8d} {r['min_psnr']:6.1f} {vs:>9} {r['seconds']:6.1f}"
        )
    fails = sum(len(r["failures"]) for r in rows)
    print(
        f"total: {sum(r['streams'] for r in rows)} stream decodes, {sum(r['equal'] for r in rows)} of "
        f"{sum(r['hashes'] for r in rows)} parse hashes equal, largest pixel difference {max((r['max_diff'] for r in rows), default=0)} "
        f"(allowed {MAX_DIFF}, {MIN_PSNR} dB)"
    )
    return 1 if fails else 0


def cmd_exact(args) -> int:
    """v2 goldens (``tests/golden/v2``): every parse digest equal, and residual (--max-error) streams
    decoding to the recorded pixels' sha256 exactly: their base is the integer-exact synthesis."""
    import hashlib

    from edgecodec import codec
    from edgecodec.bundle import Bundle
    from edgecodec.runtimes.base import open_backend

    folder = Path(args.set)
    expected = json.loads((folder / "expected.json").read_text())
    bundle = Bundle()
    bad, exact = [], 0
    for backend in args.backend:
        be = open_backend(RUNTIME_OF.get(backend, backend), bundle, threads=args.threads)
        for stem, want in sorted(expected.items()):
            data = (folder / f"{stem}.edgc").read_bytes()
            header, parse = codec.parse_stream(data, bundle)
            if parse.digest() != want["parse_sha256"]:
                bad.append(f"{stem} on {backend}: parse digest differs")
            if header.max_error is not None:
                got = hashlib.sha256(codec.decode(data, be, bundle).image.tobytes()).hexdigest()
                if got != want["pixels_sha256"]:
                    bad.append(f"{stem} on {backend}: bounded stream's pixels differ from the recorded ones")
                exact += 1
    if bad:
        print(f"FAIL: {args.label}: {bad[0]} ({len(bad)} mismatches)", file=sys.stderr)
        return 1
    print(f"OK {args.label}: {len(expected)} v2 streams parse identically, {exact} bounded decodes bit-exact")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("decode")
    d.add_argument("sets", nargs="+")
    d.add_argument("--backend", action="append", required=True, help="a backend or runtime package name; repeatable")
    d.add_argument("--json")
    d.add_argument("--expect-cpu-part", help="fail unless /proc/cpuinfo reports this CPU part (e.g. 0xd08)")
    d.add_argument("--expect-numpy", help="fail unless numpy is exactly this version")
    d.add_argument("--assert-light", action="store_true", help=f"fail if any of {', '.join(HEAVY)} was imported")
    d.add_argument("--save-pixels", help="write the decoded pixels to DIR/BACKEND.npz (on x86, for --same-backend-pixels)")
    d.add_argument("--same-backend-pixels", help="also compare with DIR/BACKEND.npz, the same backend's decode on x86")
    e = sub.add_parser("encode")
    e.add_argument("--images", required=True)
    e.add_argument("--quality", type=int, action="append", required=True)
    e.add_argument("--backend", required=True)
    e.add_argument("--reference-backend", help="reference pixels from this backend's decode (default: the encoder's)")
    e.add_argument("--out", required=True)
    for p in (d, e):
        p.add_argument("--threads", type=int, default=1)
        p.add_argument("--label", default=platform.machine())
    x = sub.add_parser("exact")
    x.add_argument("set")
    x.add_argument("--backend", action="append", required=True)
    x.add_argument("--threads", type=int, default=1)
    x.add_argument("--label", default=platform.machine())
    i = sub.add_parser("images")
    i.add_argument("--out", required=True)
    s = sub.add_parser("summary")
    s.add_argument("results", nargs="+")
    args = ap.parse_args()
    return {"decode": cmd_decode, "encode": cmd_encode, "exact": cmd_exact, "images": cmd_images, "summary": cmd_summary}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
