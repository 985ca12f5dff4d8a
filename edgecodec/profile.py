"""Latency profiling on the target: every (runtime, device) candidate, one clean subprocess each.

A subprocess per candidate gives honest load times and peak memory and keeps a
crashing runtime from taking the profile down. Needs only the core and the
installed runtimes, no torch; images are read with opencv (the ``cli`` extra), or
given as ``.npy`` arrays on devices without it. Decode latency is measured from
the stream's bytes in memory to the RGB array, model loaded and warm, with the full synthesis and,
when the bundle has it, the fast one (same stream, same parse; its PSNR is measured too).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np

STAGES = ("analysis", "hyper", "entropy", "synthesis")


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values) * 1e3, q)) if values else float("nan")


def _artifact_bytes(bundle, be) -> int:
    target = getattr(be, "target", None)
    if target is None:
        return (bundle.path / "transforms.npz").stat().st_size
    entry = bundle.manifest.get("artifacts", {}).get(target, {})
    total = 0
    for rel in entry.get("files", {}).values():
        p = bundle.path / rel
        total += p.stat().st_size if p.is_file() else 0
        if p.suffix == ".xml" and p.with_suffix(".bin").is_file():
            total += p.with_suffix(".bin").stat().st_size
    return total


def _load_image(path: str) -> np.ndarray:
    if path.endswith(".npy"):
        return np.load(path)
    from .io import read_image

    return read_image(path)


def profile_one(bundle_path: str | None, name: str, device: str, images: list[str], quality: int, repeat: int, threads: int | None) -> dict:
    """Measure one candidate in this process (the worker side)."""
    import resource

    from . import codec, metrics
    from .bundle import Bundle
    from .errors import EdgecodecError
    from .runtimes.base import BackendSpec, open_backend
    from .runtimes.selection import check, reference

    row: dict = {"backend": name, "device": device, "threads": threads}
    bundle = Bundle(bundle_path)
    t0 = time.perf_counter()
    try:
        be = open_backend(BackendSpec(name, None if device in ("-", "") else device), bundle, threads=threads)
        ref = reference(bundle)
        for role in ("analysis", "synthesis"):
            why = check(be, role, ref)
            if why:
                row.update(status="mismatch", detail=f"{role}: {why}")
                return row
        fast = "fast" in bundle.decoders
        if fast:
            why = check(be, "fast_synthesis", ref)
            if why:  # the full decoder still works: profile it, say why fast is not
                fast = False
                row["detail"] = f"fast decoder: {why}"
    except EdgecodecError as e:
        row.update(status="unavailable" if "unavailable" in str(e) or "no " in str(e) else "load error", detail=str(e))
        return row
    except Exception as e:
        row.update(status="load error", detail=f"{type(e).__name__}: {e}")
        return row
    row["load_ms"] = round(1e3 * (time.perf_counter() - t0), 1)
    d = be.describe()
    row.update(precision=d.get("precision", "fp32"), version=d.get("version", ""), artifact_bytes=_artifact_bytes(bundle, be))
    times: dict[str, list[float]] = {s: [] for s in STAGES}
    bpps, psnrs = [], []
    for path in images:
        img = _load_image(path)
        enc = codec.encode(img, quality, be, bundle)  # also the warm-up at this size
        codec.decode(enc.data, be, bundle)
        bpps.append(enc.bpp)
        psnrs.append(enc.psnr)
        if fast:
            dec = codec.decode(enc.data, be, bundle, decoder="fast")
            times.setdefault("fast_psnr", []).append(metrics.psnr(codec.to_rgb8(dec.image)[0], codec.to_rgb8(img)[0]) / 1e3)
        for _ in range(repeat):
            t = time.perf_counter()
            dec = codec.decode(enc.data, be, bundle)
            times.setdefault("decode", []).append(time.perf_counter() - t)
            times["hyper"].append(dec.parse.stats["hyper_s"])
            times["entropy"].append(dec.parse.stats["entropy_s"])
            times["synthesis"].append(dec.timings["synthesis"])
            times["analysis"].append(codec.encode(img, quality, be, bundle).timings["analysis"])
            if fast:
                t = time.perf_counter()
                dec = codec.decode(enc.data, be, bundle, decoder="fast")
                times.setdefault("fast_decode", []).append(time.perf_counter() - t)
                times.setdefault("fast_synthesis", []).append(dec.timings["synthesis"])
    fast_psnr = times.pop("fast_psnr", None)
    if fast_psnr:
        row["fast_psnr"] = round(1e3 * float(np.mean(fast_psnr)), 3)
    for s, v in times.items():
        row[f"{s}_p50_ms"] = round(_pct(v, 50), 2)
        row[f"{s}_p90_ms"] = round(_pct(v, 90), 2)
    row.update(
        status="ok",
        bpp=round(float(np.mean(bpps)), 4),
        psnr=round(float(np.mean(psnrs)), 3),
        peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    )
    return row


def profile(bundle_path: str | None, names: list[str] | None, images: list[str], quality: int | None, repeat: int, threads: int | None,
            progress=lambda s: None) -> list[dict]:  # fmt: skip
    from .bundle import Bundle
    from .runtimes.selection import candidates

    bundle = Bundle(bundle_path)
    q = quality or (bundle.levels + 1) // 2
    rows = []
    for cand in candidates(bundle, names):
        if not cand.available:
            rows.append({"backend": cand.name, "device": cand.device, "status": "unavailable", "detail": cand.reason})
            continue
        progress(f"profiling {cand.label}")
        args = json.dumps([str(bundle.path), cand.name, cand.device, images, q, repeat, threads])
        env = dict(os.environ)
        if threads:
            env.setdefault("OMP_NUM_THREADS", str(threads))
        p = subprocess.run([sys.executable, "-m", "edgecodec.profile", args], capture_output=True, text=True, env=env)
        try:
            rows.append(json.loads(p.stdout.strip().splitlines()[-1]))
        except (ValueError, IndexError):
            last = (p.stderr.strip().splitlines() or ["no output"])[-1]
            rows.append(
                {"backend": cand.name, "device": cand.device, "status": "load error", "detail": f"worker exited {p.returncode}: {last}"}
            )
    return rows


def format_table(rows: list[dict]) -> str:
    cols = [
        ("backend", "backend", "{}"), ("device", "device", "{}"), ("precision", "prec", "{}"), ("artifact_bytes", "size MB", "{:.1f}"),
        ("load_ms", "load ms", "{:.0f}"), ("analysis_p50_ms", "analysis p50/p90", None), ("hyper_p50_ms", "hyper p50/p90", None),
        ("entropy_p50_ms", "entropy p50/p90", None), ("synthesis_p50_ms", "synthesis p50/p90", None),
        ("decode_p50_ms", "decode p50/p90", None), ("fast_synthesis_p50_ms", "fast synth p50/p90", None),
        ("fast_decode_p50_ms", "fast decode p50/p90", None), ("peak_rss_mb", "peak MB", "{:.0f}"), ("bpp", "bpp", "{:.3f}"),
        ("psnr", "PSNR", "{:.2f}"), ("fast_psnr", "fast PSNR", "{:.2f}"), ("status", "status", "{}"),
    ]  # fmt: skip
    table = [[c[1] for c in cols]]
    for r in rows:
        line = []
        for key, _, fmt in cols:
            if fmt is None:
                base = key[: -len("_p50_ms")]
                v = f"{r[key]:.1f}/{r[base + '_p90_ms']:.1f}" if key in r else "-"
            elif key not in r:
                v = "-"
            elif key == "artifact_bytes":
                v = fmt.format(r[key] / 1e6)
            else:
                v = fmt.format(r[key])
            line.append(v)
        table.append(line)
    widths = [max(len(row[i]) for row in table) for i in range(len(cols))]
    out = ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in table]
    notes = [f"  {r['backend']}:{r['device']}: {r['detail']}" for r in rows if r.get("detail")]
    return "\n".join(out + notes)


if __name__ == "__main__":
    bundle_path, name, device, images, quality, repeat, threads = json.loads(sys.argv[1])
    print(json.dumps(profile_one(bundle_path, name, device, images, quality, repeat, threads)))
