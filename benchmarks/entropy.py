"""Entropy-coder benchmark: speed, overhead over the cross-entropy, lane flushes.

    python benchmarks/entropy.py [--repeat 5] [--bundle DIR] [--kodak DIR]

1. A synthetic stream shaped like a Kodak latent (192 x 32 x 48 = 294 912
   elements, most at the smallest scales, ~20-30 KB coded), through the real
   entropy model path (skip rule, per-element tables, lanes chosen by the encoder).
2. A 1 M-symbol stream of realistic Gaussian/Laplacian tables at several lane
   counts: the throughput ceiling.
3. With ``--bundle`` and Kodak present: the same statistics on real streams.

Timings are medians of ``--repeat`` runs; run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from pathlib import Path

import numpy as np

from edgecodec.entropy import rans
from edgecodec.entropy.cdf import CdfTables, logistic_pmf
from edgecodec.entropy.latents import LatentConfig, build_y_tables

if __package__:
    from .kodak import default_kodak
else:  # run as a script: benchmarks/ is sys.path[0]
    from kodak import default_kodak


def timed(fn, repeat: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def escape_bytes(values: np.ndarray, table: np.ndarray, tables: CdfTables) -> int:
    sym = values - tables.offset[table]
    esc = (sym < 0) | (sym >= tables.length[table])
    return len(rans._zigzag_leb128(values[esc]))


def report_stream(label: str, values, table, tables: CdfTables, repeat: int, lanes: int | None = None) -> dict:
    ideal_bits = tables.model_bits(values, table)
    lanes = lanes or rans.choose_lanes(values.size, ideal_bits)
    t_enc, data = timed(lambda: rans.encode(values, table, tables, lanes), repeat)
    dec = rans.Decoder(tables)
    t_dec, out = timed(lambda: dec.decode(data, table, lanes), repeat)
    assert np.array_equal(out, values)
    flush = 4 * (lanes + 1)
    esc = escape_bytes(values, table, tables)
    body = len(data) - flush - esc
    r = {
        "symbols": int(values.size),
        "lanes": lanes,
        "steps": -(-values.size // lanes),
        "bytes": len(data),
        "ideal_bytes": ideal_bits / 8,
        "coded_over_ideal": body / (ideal_bits / 8),
        "flush_fraction": flush / len(data),
        "escape_bytes": esc,
        "encode_ms": 1e3 * t_enc,
        "decode_ms": 1e3 * t_dec,
        "decode_msym_s": values.size / t_dec / 1e6,
        "encode_msym_s": values.size / t_enc / 1e6,
    }
    print(
        f"{label:28s} {r['symbols']:>9d} sym {lanes:>6d} lanes {r['steps']:>6d} steps {r['bytes']:>9d} B "
        f"coded/ideal {r['coded_over_ideal']:.4f}  flush {100 * r['flush_fraction']:.2f}%  esc {esc} B  "
        f"enc {r['encode_ms']:.1f} ms ({r['encode_msym_s']:.1f} M/s)  dec {r['decode_ms']:.1f} ms ({r['decode_msym_s']:.1f} M/s)"
    )
    return r


def kodak_like(cfg: LatentConfig, tables: CdfTables, rng) -> tuple[np.ndarray, np.ndarray, int]:
    """Per-element scale indexes: ~75% at the smallest scales, the rest spread upwards."""
    shape = (192, 32, 48)
    n = int(np.prod(shape))
    s = np.where(rng.random(n) < 0.75, rng.integers(0, 6, n), np.minimum(cfg.scale_levels - 1, (rng.exponential(10, n) + 6).astype(int)))
    frac = rng.integers(0, cfg.mean_steps, n)
    table = s * cfg.mean_steps + frac
    sigma = cfg.scales()[s]
    values = np.rint(rng.normal(frac / cfg.mean_steps, sigma)).astype(np.int64)
    coded = s >= cfg.skip_below
    return values[coded], table[coded], n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--bundle", type=Path, default=None)
    ap.add_argument("--kodak", type=Path, default=None)
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    cfg = LatentConfig(192, 64, 0.11, 64.0, 64, 4, 3, 12)
    tables = build_y_tables(cfg)

    print("== Kodak-shaped synthetic stream (skip rule applied, encoder-chosen lanes) ==")
    values, table, n_all = kodak_like(cfg, tables, rng)
    print(f"{n_all} latent elements, {values.size} coded after skipping scale index < {cfg.skip_below}")
    report_stream("kodak-like", values, table, tables, a.repeat)

    print("== 1M-symbol streams: throughput ceiling ==")
    n = 1_000_000
    g_idx = rng.integers(cfg.skip_below * 4, tables.count, n)
    g_vals = np.rint(rng.normal((g_idx % 4) / 4, cfg.scales()[g_idx // 4])).astype(np.int64)
    lap_scales = np.geomspace(0.2, 30, 32)
    pmfs, offs = zip(*(logistic_pmf(0.0, b, 2.0**-12) for b in lap_scales))
    lap_tables = CdfTables.from_pmfs(list(pmfs), list(offs), 12)
    l_idx = rng.integers(0, 32, n)
    l_vals = np.rint(rng.laplace(0, lap_scales[l_idx])).astype(np.int64)
    best = {}
    for lanes in (256, 1024, 4096, 16384, 65535):
        for name, v, t, tb in (("gaussian", g_vals, g_idx, tables), ("logistic", l_vals, l_idx, lap_tables)):
            r = report_stream(f"{name} @ {lanes}", v, t, tb, max(1, a.repeat // 2), lanes)
            if r["decode_msym_s"] > best.get(name, {}).get("decode_msym_s", 0):
                best[name] = r
    for name, r in best.items():
        print(
            f"peak {name}: decode {r['decode_msym_s']:.1f} M sym/s, encode {r['encode_msym_s']:.1f} M sym/s at {r['lanes']} lanes; "
            f"bytes / cross-entropy {r['coded_over_ideal']:.4f}"
        )

    if a.bundle:
        kodak = a.kodak or default_kodak()
        if not kodak.is_dir():
            print(f"no Kodak folder at {kodak}; skipping real streams")
            return
        from edgecodec import codec
        from edgecodec.bundle import Bundle
        from edgecodec.io import read_image
        from edgecodec.runtimes.base import open_backend

        bundle = Bundle(a.bundle)
        be = open_backend("auto", bundle)
        print(f"== real Kodak streams ({be.name}) ==")
        for q in (1, math.ceil(bundle.levels / 2), bundle.levels):
            rows = []
            for p in sorted(kodak.glob("*.png"))[:6]:
                enc = codec.encode(read_image(p), q, be, bundle)
                t, _ = timed(lambda data=enc.data: codec.parse_stream(data, bundle), a.repeat)
                st = enc.parse.stats
                rows.append((len(enc.data), st["model_bits"] / 8, st["y_lanes"], st["skipped"] / st["y_elements"], t))
            b, ideal, lanes, skipped, t = (statistics.mean(c) for c in zip(*rows))
            print(
                f"q{q}: {b:.0f} B/file, file/estimate {b / ideal:.4f}, y lanes {lanes:.0f}, skipped {100 * skipped:.1f}%, "
                f"entropy decode incl. integer hyper-decoder {1e3 * t:.1f} ms"
            )


if __name__ == "__main__":
    main()
