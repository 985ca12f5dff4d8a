"""Rate-distortion benchmark on Kodak: edgecodec (shipped int8 ONNX, and the same model in fp32)
against JPEG, WebP, AVIF and JPEG XL, in one run.

    python benchmarks/rd.py [--kodak DIR] [--bundle DIR] [--checkpoint DIR] [--images N] ...

Every point is an actual file: bpp = 8 * file bytes / pixels. Quality is RGB PSNR
(joint MSE of the three channels, peak 255) and MS-SSIM (5 scales, per RGB channel,
averaged; see ``benchmarks/metrics.py``), measured on the decoded image. Results are
averaged per codec and quality setting over the images (mean of per-image values),
and compared with Bjøntegaard delta rates (PCHIP, negative = fewer bits).

Outputs: a printed table, ``OUT/rd.csv`` (aggregated), ``OUT/rd_per_image.csv``,
``OUT/rd_summary.json`` and an RD plot (``--plot``).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import platform
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from edgecodec.classical import CLASSICAL, run_classical, save_params, setup_pillow
from edgecodec.classical import LABELS as CLASSICAL_LABELS
from edgecodec.errors import InputError
from edgecodec.report.render import finite  # the report writes its JSON the same way

if __package__:
    from .kodak import default_kodak
    from .metrics import bd_rate, ms_ssim, msssim_db, psnr
else:  # run as a script: benchmarks/ is sys.path[0]
    from kodak import default_kodak
    from metrics import bd_rate, ms_ssim, msssim_db, psnr

REPO = Path(__file__).resolve().parent.parent

INT8, FP32, PREV = "edgecodec-int8", "edgecodec-fp32", "edgecodec-int8-previous"
FAST = "edgecodec-fast"  # the same int8 streams decoded by the fast synthesis

LABELS = {
    INT8: "edgecodec int8 (ONNX)",
    FAST: "edgecodec int8, fast decoder",
    FP32: "edgecodec fp32 (torch)",
    PREV: "edgecodec int8, previous model",
    **CLASSICAL_LABELS,
}


def fail(msg: str) -> None:
    print(f"rd.py: error: {msg}", file=sys.stderr)
    raise SystemExit(2)


def quality_of(ref: np.ndarray, dec: np.ndarray) -> dict:
    return {"psnr": psnr(ref, dec), "msssim": ms_ssim(ref, dec)}


def run_edgecodec(name: str, img: np.ndarray, backend, levels: list[int], decode: bool, checks: dict, fast: bool = False) -> list[dict]:
    """One row per level; with ``fast``, also the same stream decoded by the fast synthesis (``FAST``)."""
    from edgecodec import codec, container

    h, w = img.shape[:2]
    rows = []
    for q in levels:
        res = codec.encode(img, q, backend)
        q_img = quality_of(img, res.reconstruction)
        if abs(res.psnr - q_img["psnr"]) > 1e-6 and math.isfinite(res.psnr):
            checks["psnr_mismatch"].append(f"{name} q={q}: EncodeResult.psnr {res.psnr:.4f} vs measured {q_img['psnr']:.4f}")
        _, subs = container.unpack(res.data)
        header_bytes = len(res.data) - sum(len(s.payload) for s in subs)
        model_bits = float(res.parse.stats["model_bits"])
        row = {
            "codec": name,
            "quality": q,
            "bytes": len(res.data),
            "bpp": 8.0 * len(res.data) / (w * h),
            **q_img,
            "decode_s": float("nan"),
            "model_bits": model_bits,
            "pixels": w * h,
            "header_bytes": header_bytes,
            "rate_ratio": 8.0 * len(res.data) / (model_bits + 8.0 * header_bytes),
            "skipped_frac": res.parse.stats["skipped"] / max(res.parse.stats["y_elements"], 1),
            "clamped": res.parse.stats["clamped"],
            "encode_s": sum(res.timings.values()),
        }
        if decode:
            t0 = time.perf_counter()
            dec = codec.decode(res.data, backend)
            row["decode_s"] = time.perf_counter() - t0
            same = dec.image.shape == res.reconstruction.shape and np.array_equal(dec.image, res.reconstruction)
            checks["decoded"] += 1
            if not same:
                diff = np.abs(dec.image.astype(np.int16) - res.reconstruction.astype(np.int16)).max()
                checks["decode_mismatch"].append(f"{name} q={q}: decode differs from EncodeResult.reconstruction (max |diff| {diff})")
        rows.append(row)
        if fast:
            t0 = time.perf_counter()
            dec = codec.decode(res.data, backend, decoder="fast")
            rows.append({**row, "codec": FAST, **quality_of(img, dec.image), "decode_s": time.perf_counter() - t0})
    return rows


def aggregate(per_image: list[dict]) -> dict[str, list[dict]]:
    groups: dict[tuple[str, int], list[dict]] = defaultdict(list)
    for r in per_image:
        groups[(r["codec"], r["quality"])].append(r)
    out: dict[str, list[dict]] = defaultdict(list)
    for (name, q), rs in groups.items():
        a = {"codec": name, "quality": q, "n": len(rs)}
        for k in ("bpp", "psnr", "msssim"):
            a[k] = float(np.mean([r[k] for r in rs]))
        a["msssim_db"] = msssim_db(a["msssim"])
        dts = [r["decode_s"] for r in rs if math.isfinite(r["decode_s"])]
        a["decode_ms_median"] = 1000.0 * statistics.median(dts) if dts else float("nan")
        if "rate_ratio" in rs[0]:
            a["rate_ratio"] = float(np.mean([r["rate_ratio"] for r in rs]))
            a["header_bytes"] = float(np.mean([r["header_bytes"] for r in rs]))
            a["model_bpp"] = float(np.mean([r["model_bits"] / r["pixels"] for r in rs]))
            a["skipped_frac"] = float(np.mean([r["skipped_frac"] for r in rs]))
            a["encode_ms_median"] = 1000.0 * statistics.median(r["encode_s"] for r in rs)
        out[name].append(a)
    for name in out:
        out[name].sort(key=lambda a: a["bpp"])
    return dict(out)


def bd_table(agg: dict[str, list[dict]], min_points: int) -> list[dict]:
    """Model vs each classical codec, fp32 vs JPEG, int8 vs fp32, and int8 vs the previous model's
    int8 (``--previous-bundle``: the replacement rule), for those present in ``agg``."""
    pairs = [(INT8, c) for c in CLASSICAL] + [(FP32, "jpeg"), (INT8, FP32), (INT8, PREV), (PREV, "jpeg"), (FAST, INT8), (FAST, "jpeg")]
    pairs = [(t, a) for t, a in pairs if t in agg and a in agg]
    table = []
    for test, anchor in pairs:
        ra, rt = [p["bpp"] for p in agg[anchor]], [p["bpp"] for p in agg[test]]
        entry = {"test": test, "anchor": anchor}
        for metric, key in (("psnr", "psnr"), ("msssim", "msssim_db")):
            v, info = bd_rate(ra, [p[key] for p in agg[anchor]], rt, [p[key] for p in agg[test]], min_points=min_points)
            entry[metric] = v
            entry[f"{metric}_info"] = info
        table.append(entry)
    return table


def fmt_bd(v: float | None) -> str:
    return "n/a" if v is None else f"{v:+.1f}%"


def print_report(agg: dict[str, list[dict]], bd: list[dict], checks: dict) -> None:
    print()
    print(f"{'codec':<16} {'q':>4} {'bpp':>7} {'PSNR':>7} {'MS-SSIM':>8} {'(dB)':>6} {'dec ms':>8}  extra")
    for name, pts in agg.items():
        for p in pts:
            extra = ""
            if "rate_ratio" in p:
                extra = f"file/(est+hdr) {p['rate_ratio']:.4f}  hdr {p['header_bytes']:.0f} B  skip {100 * p['skipped_frac']:.0f}%"
            print(
                f"{name:<16} {p['quality']:>4} {p['bpp']:>7.4f} {p['psnr']:>7.3f} {p['msssim']:>8.5f} {p['msssim_db']:>6.2f} "
                f"{p['decode_ms_median']:>8.1f}  {extra}"
            )
        print()
    print("Median decode time per image (ms, median over all images and quality settings):")
    for name, pts in agg.items():
        ms = [p["decode_ms_median"] for p in pts if math.isfinite(p["decode_ms_median"])]
        print(f"  {name:<16} {statistics.median(ms):8.1f}" if ms else f"  {name:<16}      n/a")
    print()
    print("BD-rate (negative = test needs fewer bits than anchor at equal quality; PCHIP over the overlap):")
    print(f"  {'test':<16} {'anchor':<16} {'PSNR':>8} {'MS-SSIM':>8}")
    for e in bd:
        print(f"  {e['test']:<16} {e['anchor']:<16} {fmt_bd(e['psnr']):>8} {fmt_bd(e['msssim']):>8}")
        for m in ("psnr", "msssim"):
            if e[m] is None:
                print(f"    ({m}: {e[f'{m}_info']})")
    print()
    n_bad = len(checks["decode_mismatch"])
    print(f"Decoder check: {checks['decoded']} edgecodec streams decoded, {n_bad} differed from the encoder's reconstruction")
    for line in checks["decode_mismatch"][:10] + checks["psnr_mismatch"][:10]:
        print(f"  ! {line}")


def write_csv(path: Path, rows: list[dict]) -> None:
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys, restval="")
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})


def plot(path: Path, agg: dict[str, list[dict]], bd: list[dict], subtitle: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    styles = {INT8: ("C3", "o", "-"), FP32: ("C3", "s", "--"), PREV: ("C7", "o", ":"), FAST: ("C5", "^", "-."), "jpeg": ("C0", ".", "-"),
              "webp": ("C2", ".", "-"),
              "avif": ("C1", ".", "-"), "jxl": ("C4", ".", "-")}  # fmt: skip
    fig, axes = plt.subplots(1, 2, figsize=(14, 6.2))
    for ax, key, ylabel in ((axes[0], "psnr", "RGB PSNR (dB)"), (axes[1], "msssim_db", "MS-SSIM (dB, -10 log10(1 - MS-SSIM))")):
        in_range = []
        for name, pts in agg.items():
            color, marker, ls = styles.get(name, ("k", ".", "-"))
            xs, ys = [p["bpp"] for p in pts], [p[key] for p in pts]
            ax.plot(xs, ys, color=color, marker=marker, linestyle=ls, label=LABELS.get(name, name), markersize=4)
            in_range += [y for x, y in zip(xs, ys) if x <= 2.0 and math.isfinite(y)]
        ax.set_xlim(0, 2.0)
        if in_range:
            ax.set_ylim(min(in_range) - 0.5, max(in_range) + 0.5)
        ax.set_xlabel("bits per pixel (file size)")
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
    axes[0].legend(loc="lower right", fontsize=9)
    parts = [f"{e['test'].replace('edgecodec-', '')} vs {e['anchor'].replace('edgecodec-', '')}: {fmt_bd(e['psnr'])}" for e in bd]
    title = "Kodak RD. BD-rate (PSNR): " + ", ".join(parts[:5])
    if len(parts) > 5:
        title += "\n" + ", ".join(parts[5:])
    fig.suptitle(title + "\n" + subtitle, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--kodak", type=Path, default=None, help="folder of Kodak PNGs (default: $EDGECODEC_DATA/kodak or ../shared/data/kodak)"
    )
    ap.add_argument("--bundle", type=Path, default=None, help="model bundle folder (default: the packaged bundle)")
    ap.add_argument("--checkpoint", type=Path, default=None, help="checkpoint folder for the fp32 model (default: edgecodec/data/weights)")
    ap.add_argument(
        "--previous-bundle", type=Path, default=None, help="also run this bundle's int8 model (same backend); BD-rate against it"
    )
    ap.add_argument("--no-fp32", action="store_true", help="skip the fp32 model even if a checkpoint exists")
    ap.add_argument("--no-fast", action="store_true", help="skip decoding with the bundle's fast synthesis")
    ap.add_argument("--backend", default="onnxruntime", help="edgecodec backend for the int8 model (default: onnxruntime)")
    ap.add_argument("--qualities", default=None, help="edgecodec quality levels, e.g. 1,2,3 (default: all levels of the bundle)")
    ap.add_argument("--codecs", default=",".join(CLASSICAL), help=f"classical codecs to run (default: {','.join(CLASSICAL)}; '' for none)")
    ap.add_argument("--images", type=int, default=None, help="use only the first N images")
    ap.add_argument("--threads", type=int, default=2, help="threads for every encoder/decoder (default: 2)")
    ap.add_argument(
        "--min-points", type=int, default=4, help="BD-rate: points each curve needs, and both together inside the overlap (default: 4)"
    )
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "out", help="output folder for CSV/JSON")
    ap.add_argument("--plot", type=Path, default=REPO / "docs" / "rd.png", help="RD plot PNG path ('' to skip)")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    kodak = args.kodak or default_kodak()
    files = sorted(kodak.glob("*.png")) if kodak.is_dir() else []
    if not files:
        fail(f"no Kodak PNGs in {kodak}; pass --kodak DIR or set EDGECODEC_DATA (expects DIR/kodak/kodim01.png ...)")
    if args.images is not None:
        if args.images < 1:
            fail("--images must be at least 1")
        files = files[: args.images]
    codecs = [c.strip().lower() for c in args.codecs.split(",") if c.strip()]
    for c in codecs:
        if c not in CLASSICAL:
            fail(f"unknown codec {c!r}; choose from {', '.join(CLASSICAL)}")

    from PIL import Image

    from edgecodec import codec
    from edgecodec.bundle import Bundle
    from edgecodec.errors import EdgecodecError
    from edgecodec.runtimes.base import open_backend

    try:
        bundle = Bundle(args.bundle)
        backend = open_backend(args.backend, bundle, threads=args.threads)
    except EdgecodecError as e:
        fail(f"{e} [rd.py: the bundle folder is --bundle DIR]")
    previous = None
    if args.previous_bundle is not None:
        try:
            prev_bundle = Bundle(args.previous_bundle)
            previous = open_backend(args.backend, prev_bundle, threads=args.threads)
        except EdgecodecError as e:
            fail(f"{e} [rd.py: --previous-bundle]")
    levels = list(range(1, bundle.levels + 1))
    if args.qualities:
        try:
            levels = [int(q) for q in args.qualities.split(",") if q.strip()]
        except ValueError:
            fail(f"--qualities must be comma-separated integers, got {args.qualities!r}")
        bad = [q for q in levels if not 1 <= q <= bundle.levels]
        if bad:
            fail(f"quality levels {bad} are outside 1..{bundle.levels} of this bundle")

    notes: list[str] = []
    fast = "fast" in bundle.decoders and not args.no_fast
    ckpt = args.checkpoint
    if ckpt is None and not args.no_fp32 and (REPO / "edgecodec" / "data" / "weights" / "state.json").is_file():
        ckpt = REPO / "edgecodec" / "data" / "weights"
    fp32 = None
    if args.no_fp32:
        ckpt = None
        notes.append("fp32 skipped (--no-fp32)")
    elif ckpt is None:
        notes.append("fp32 skipped: no --checkpoint and no shipped weights")
    else:
        if not (ckpt / "state.json").is_file():
            fail(f"no checkpoint at {ckpt} (missing state.json)")
        state = json.loads((ckpt / "state.json").read_text())
        b_step = (bundle.manifest["model"].get("train_step"), bundle.manifest["model"].get("qat_step", 0))
        c_step = (state.get("step"), state.get("qat_step", 0))
        if b_step[0] is not None and c_step != b_step:
            notes.append(
                f"WARNING: checkpoint {ckpt} is at (step, QAT step) {c_step} but the bundle was exported at {b_step}; "
                "fp32 and int8 are probably not the same model"
            )
        from edgecodec.models.torch_backend import TorchBackend

        fp32 = TorchBackend(bundle, ckpt, threads=args.threads)

    try:
        versions = setup_pillow(codecs, args.threads, extra="bench")
    except InputError as e:
        fail(str(e))
    versions.update({"python": platform.python_version(), "numpy": np.__version__})
    try:
        import onnxruntime

        versions["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass
    if fp32 is not None:
        import torch

        versions["torch"] = torch.__version__
    for n in notes:
        print(n)
    print(
        f"Kodak: {len(files)} images from {kodak}; bundle {bundle.path} (digest {bundle.digest[:12]}, {bundle.levels} levels, "
        f"levels run {levels}); backend {backend.name}; fp32 {'from ' + str(ckpt) if fp32 else 'off'}; "
        f"classical {codecs}; threads {args.threads}"
    )

    # warm up (ONNX Runtime sessions are created lazily; torch's first call is slow) so no timing includes it
    with Image.open(files[0]) as im:
        crop = np.asarray(im.convert("RGB"))[:128, :128]
    for be in [backend] + [b for b in (fp32, previous) if b is not None]:
        codec.decode(codec.encode(crop, levels[0], be).data, be)

    checks: dict = {"decoded": 0, "decode_mismatch": [], "psnr_mismatch": []}
    per_image: list[dict] = []
    t_all = time.perf_counter()
    for i, f in enumerate(files):
        t0 = time.perf_counter()
        with Image.open(f) as im:
            img = np.asarray(im.convert("RGB"))
        rows = run_edgecodec(INT8, img, backend, levels, decode=True, checks=checks, fast=fast)
        if previous is not None:
            rows += run_edgecodec(PREV, img, previous, list(range(1, previous.bundle.levels + 1)), decode=True, checks=checks)
        if fp32 is not None:  # fp32 decode is timed/verified on the first image only (it is slow and not a deployment path)
            rows += run_edgecodec(FP32, img, fp32, levels, decode=(i == 0), checks=checks)
        for c in codecs:
            try:
                rows += run_classical(c, img, args.threads)
            except ValueError as e:
                fail(str(e))
        for r in rows:
            r["image"] = f.stem
        per_image += rows
        mine = [r for r in rows if r["codec"] == INT8]
        summary = ", ".join(f"q{r['quality']} {r['bpp']:.3f}bpp {r['psnr']:.2f}dB" for r in mine[:: max(1, len(mine) // 3)])
        print(
            f"[{i + 1}/{len(files)}] {f.name} {img.shape[1]}x{img.shape[0]}  {time.perf_counter() - t0:.1f}s  int8: {summary}", flush=True
        )

    agg = aggregate(per_image)
    bd = bd_table(agg, args.min_points)
    print_report(agg, bd, checks)

    args.out.mkdir(parents=True, exist_ok=True)
    agg_rows = [p for pts in agg.values() for p in pts]
    write_csv(args.out / "rd.csv", agg_rows)
    order = ["image", "codec", "quality"]
    write_csv(
        args.out / "rd_per_image.csv", [{**{k: r[k] for k in order}, **{k: v for k, v in r.items() if k not in order}} for r in per_image]
    )
    summary = {
        "dataset": {"path": str(kodak), "images": [f.stem for f in files]},
        "bundle": {
            "path": str(bundle.path),
            "digest": bundle.digest,
            "levels": bundle.levels,
            "train_step": bundle.manifest["model"].get("train_step"),
        },
        "int8_backend": backend.describe(),
        "fp32_checkpoint": str(ckpt) if fp32 is not None else None,
        "classical": {
            c: {
                "format": CLASSICAL[c][0],
                "params": {k: v for k, v in save_params(c, 0, args.threads).items() if k != "quality"},
                "qualities": CLASSICAL[c][1],
            }
            for c in codecs
        },  # fmt: skip
        "metrics": {
            "psnr": "RGB, joint MSE over 3 channels, peak 255",
            "msssim": "5-scale MS-SSIM per RGB channel, averaged",
            "aggregation": "mean over images of per-image values, per codec and quality setting",
            "bd_rate": "PCHIP of log-rate vs quality over the overlap; percent, negative = fewer bits",
        },  # fmt: skip
        "threads": args.threads,
        "versions": versions,
        "notes": notes,
        "decoder_check": {
            "decoded": checks["decoded"],
            "mismatches": checks["decode_mismatch"],
            "psnr_mismatches": checks["psnr_mismatch"],
        },
        "bd_rate": bd,
        "decode_ms_median": {
            name: statistics.median(ms) if (ms := [p["decode_ms_median"] for p in pts if math.isfinite(p["decode_ms_median"])]) else None
            for name, pts in agg.items()
        },
        "curves": agg,
        "elapsed_s": time.perf_counter() - t_all,
    }
    (args.out / "rd_summary.json").write_text(json.dumps(finite(summary), indent=1, allow_nan=False))
    print(f"wrote {args.out / 'rd.csv'}, {args.out / 'rd_per_image.csv'}, {args.out / 'rd_summary.json'}")
    if str(args.plot) not in ("", "."):
        sub = f"{len(files)} Kodak images; int8 = {backend.name}, bundle {bundle.digest[:12]}"
        plot(args.plot, agg, bd, sub)
        print(f"wrote {args.plot}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
