"""What a checkerboard context model (``edgecodec/models/checkerboard.py``) gains on Kodak, exactly.

    python benchmarks/checkerboard.py --model runs/ctx/models/NAME.pt [--model ...] [--kodak DIR] [--images N]
        [--backend auto] [--no-jpeg] [--parse-image kodim23.png --parse-quality 4 --repeat 15]

Every image is encoded at every level of the shipped bundle by the real encoder (``codec.encode``,
the backend ``auto`` picks). The latents, hence the reconstruction and its PSNR, stay as they are;
only the y substream is re-coded: anchors with the hyperprior's tables (unchanged), then the
non-anchors with the context's tables (hard-rounded scale index and mean), with the project's rANS
coder. Sizes are real bytes (the coded payload is decoded back and compared):

* ``one``: anchors and non-anchors in one y substream (a two-pass decoder resumes the lanes);
* ``two``: two substreams, each with its own lanes, plus an 11-byte directory entry.

BD-rate (``benchmarks/metrics.bd_rate``, PSNR) of the total file bytes with the context against
without, and both against JPEG 4:2:0 (``benchmarks/rd.py``'s settings) unless ``--no-jpeg``.

Parse time, in one run on one stream: today's ``codec.parse_stream``, and the two-pass parse
(z, integer hyper-decoder, anchors' rANS, the context network over the non-anchors in float32 GEMMs of
the integer path's shapes, the non-anchors' tables, their rANS), each the minimum of ``--repeat``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

if __package__:
    from .kodak import default_kodak, timed_runs
else:  # run as a script: benchmarks/ is sys.path[0]
    from kodak import default_kodak, timed_runs

ROOT = Path(__file__).resolve().parents[1]
DIRECTORY_ENTRY = 11


def lattice_symbols(values: np.ndarray, tables: np.ndarray, coded: np.ndarray, lattices) -> tuple[np.ndarray, np.ndarray]:
    """The coded elements of ``lattices`` in coding order: lattice by lattice, each in C order."""
    v = [values[:, rs, cs][coded[:, rs, cs]] for rs, cs in lattices]
    t = [tables[:, rs, cs][coded[:, rs, cs]] for rs, cs in lattices]
    return np.concatenate(v).astype(np.int64), np.concatenate(t).astype(np.int64)


def recode(em, parse, s2: np.ndarray, q2: np.ndarray, check: bool = True) -> dict:
    """Bytes of the y substream with the non-anchors' tables from (s2, q2): one substream and two."""
    from edgecodec.entropy import rans
    from edgecodec.models.checkerboard import ANCHORS, NON_ANCHORS

    f = em.cfg.mean_steps
    y = parse.y.astype(np.int64)
    _, base, _ = em.y_params(parse.z, y.shape[1:])  # the hyperprior's floor of the mean (y_params' arithmetic)
    m2 = np.floor_divide(q2, f)
    va, ta = lattice_symbols(y - base, parse.table, parse.coded, ANCHORS)
    vn, tn = lattice_symbols(y - m2, s2 * f + (q2 - f * m2), parse.coded, NON_ANCHORS)
    out = {}
    for key, parts in (("one", [(np.concatenate([va, vn]), np.concatenate([ta, tn]))]), ("two", [(va, ta), (vn, tn)])):
        total = 0
        for v, t in parts:
            lanes = rans.choose_lanes(v.size, em.y_tables.model_bits(v, t))
            payload = rans.encode(v, t, em.y_tables, lanes)
            if check and not np.array_equal(rans.decode(payload, t, em.y_tables, lanes), v):
                raise SystemExit("checkerboard.py: rANS round trip failed")
            total += len(payload)
        out[key] = total + (DIRECTORY_ENTRY if key == "two" else 0)
    out["parts"] = (va, ta, vn, tn)
    return out


def two_pass_parse(data: bytes, bundle, fwd, anchors_sub: tuple, non_sub: tuple) -> np.ndarray:
    """The decoder's two-pass parse (timing; the latents it returns are checked against the stream's):
    z, the integer hyper-decoder, the anchors' rANS, the context over the non-anchors, their tables and
    rANS. The y payload comes in two parts decoded with the same lane count, which costs the steps a
    decoder resuming one substream's lanes would run."""
    from edgecodec import codec
    from edgecodec.models.checkerboard import ANCHORS

    em = bundle.entropy_model
    cfg = em.cfg
    header, subs = codec.read_header(data, bundle)
    m = {s.id: (s.lanes, s.payload) for s in subs}
    d = bundle.downsample
    hp, wp = -(-header.height // d) * d, -(-header.width // d) * d
    z_shape = (cfg.z_channels, hp // d, wp // d)
    z = em._z_dec.decode(m[1][1], em._z_table(z_shape).ravel(), m[1][0]).reshape(z_shape)
    table, base, coded = em.y_params(z, (hp // 16, wp // 16))
    # the hyper-decoder's raw (s, mq), recovered exactly from table and base (a skipped element's base
    # is floor((mq + F/2) / F), one more than floor(mq / F) when its fraction is >= F/2)
    f = cfg.mean_steps
    s, frac = np.divmod(table, f)
    mq = (base - (~coded & (frac >= f // 2))) * f + frac
    y = base.copy()
    (la, pa), (ln, pn) = anchors_sub, non_sub
    vals = em._y_dec.decode(pa, np.concatenate([table[:, rs, cs][coded[:, rs, cs]] for rs, cs in ANCHORS]), la)
    i = 0
    for rs, cs in ANCHORS:
        view, c = y[:, rs, cs], coded[:, rs, cs]
        n = int(np.count_nonzero(c))
        view[c] += vals[i : i + n].astype(y.dtype)
        i += n
    parts, tabs = [], []
    for rs, cs, delta in fwd(y, s, mq):
        s2 = np.clip(np.floor(s[:, rs, cs] + delta[: cfg.y_channels] + 0.5), 0, cfg.scale_levels - 1).astype(np.int64)
        q2 = mq[:, rs, cs].astype(np.int64)
        if delta.shape[0] > cfg.y_channels:
            q2 = np.clip(np.floor(q2 + f * delta[cfg.y_channels :] + 0.5), -127 * f, 127 * f).astype(np.int64)
        m2 = np.floor_divide(q2, f)
        c = coded[:, rs, cs]
        parts.append((rs, cs, m2, c))
        tabs.append((s2 * f + (q2 - f * m2))[c])
    vals = em._y_dec.decode(pn, np.concatenate(tabs), ln)
    i = 0
    for rs, cs, m2, c in parts:
        view = y[:, rs, cs]
        n = int(np.count_nonzero(c))
        view[c] = (vals[i : i + n] + m2[c]).astype(y.dtype)
        i += n
    return y


def time_parse(data: bytes, bundle, models: dict, repeat: int) -> list[str]:
    """Today's parse and each context's two-pass parse of one stream, minimum of ``repeat`` each."""
    from edgecodec import codec
    from edgecodec.entropy import rans
    from edgecodec.models.checkerboard import GemmForward, hard_params, hyper_raw

    em = bundle.entropy_model
    _, parse = codec.parse_stream(data, bundle)
    mq, s = hyper_raw(em, parse.z)
    y = parse.y.astype(np.int64)
    base_ms = 1e3 * min(timed_runs(lambda: codec.parse_stream(data, bundle), repeat))
    lines = []
    for name, mod in models.items():
        s2, q2 = hard_params(mod, y, s, mq, em.cfg.scale_levels, 127 * em.cfg.mean_steps)
        va, ta, vn, tn = recode(em, parse, s2, q2)["parts"]
        k = rans.choose_lanes(va.size + vn.size, em.y_tables.model_bits(va, ta) + em.y_tables.model_bits(vn, tn))
        subs_a, subs_n = (k, rans.encode(va, ta, em.y_tables, k)), (k, rans.encode(vn, tn, em.y_tables, k))
        fwd = GemmForward(mod)
        same = np.array_equal(two_pass_parse(data, bundle, fwd, subs_a, subs_n), parse.y)
        ctx_ms = 1e3 * min(timed_runs(lambda fwd=fwd, sa=subs_a, sn=subs_n: two_pass_parse(data, bundle, fwd, sa, sn), repeat))
        net_ms = 1e3 * min(timed_runs(lambda fwd=fwd: fwd(y, s, mq), repeat))
        lines.append(
            f"without {base_ms:.2f} ms, with {name} {ctx_ms:.2f} ms ({ctx_ms / base_ms:.2f}x; context network {net_ms:.2f} ms)"
            f"{'' if same else ' WARNING: latents differ (float ties)'}, min of {repeat}"
        )
    return lines


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", type=Path, action="append", required=True, help="a trained context (runs/ctx/models/NAME.pt); repeatable")
    ap.add_argument("--kodak", type=Path, default=None)
    ap.add_argument("--images", type=int, default=None)
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-jpeg", action="store_true")
    ap.add_argument("--parse-image", default="kodim23.png")
    ap.add_argument("--parse-quality", type=int, nargs="+", default=[4])
    ap.add_argument("--repeat", type=int, default=15)
    a = ap.parse_args()
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, str(a.threads))

    import torch

    from edgecodec import codec, container
    from edgecodec.bundle import Bundle
    from edgecodec.io import read_rgb8
    from edgecodec.models.checkerboard import hard_params, hyper_raw, load_model
    from edgecodec.runtimes.base import open_backend

    if __package__:
        from .metrics import bd_rate, psnr
        from .parse import encode_stream
        from .rd import run_classical
    else:
        from metrics import bd_rate, psnr
        from parse import encode_stream
        from rd import run_classical

    torch.set_num_threads(a.threads)
    kodak = a.kodak or default_kodak()
    files = sorted(kodak.glob("*.png"))[: a.images]
    if not files:
        raise SystemExit(f"checkerboard.py: no Kodak images in {kodak}")
    bundle = Bundle()
    em = bundle.entropy_model
    backend = open_backend(a.backend, bundle, threads=a.threads)
    models = {p.stem: load_model(p) for p in a.model}
    levels = list(range(1, bundle.levels + 1))
    print(f"{len(files)} Kodak images, levels {levels}, bundle {bundle.digest[:12]}, backend {backend.name}")
    for name, mod in models.items():
        print(f"  {name}: {mod.cfg}, {mod.macs_per_non_anchor()} MACs per non-anchor")

    # bytes[level] -> list over images; ctx[name][key][level] likewise
    base_bytes = {q: [] for q in levels}
    psnrs = {q: [] for q in levels}
    pixels = []
    ctx = {n: {k: {q: [] for q in levels} for k in ("one", "two")} for n in models}
    jpeg: list[dict] = []
    t0 = time.perf_counter()
    for path in files:
        img = read_rgb8(path)
        pixels.append(img.shape[0] * img.shape[1])
        for q in levels:
            res = codec.encode(img, q, backend)
            _, subs = container.unpack(res.data)
            y_len = next(len(s.payload) for s in subs if s.id == 2)
            base_bytes[q].append(len(res.data))
            psnrs[q].append(psnr(img, res.reconstruction))
            mq, s = hyper_raw(em, res.parse.z)
            y = res.parse.y.astype(np.int64)
            for name, mod in models.items():
                s2, q2 = hard_params(mod, y, s, mq, em.cfg.scale_levels, 127 * em.cfg.mean_steps)
                r = recode(em, res.parse, s2, q2)
                for k in ("one", "two"):
                    ctx[name][k][q].append(len(res.data) - y_len + r[k])
        if not a.no_jpeg:
            jpeg += run_classical("jpeg", img, a.threads)
        print(f"  {path.name} done ({time.perf_counter() - t0:.0f}s)", flush=True)

    px = np.asarray(pixels, np.float64)

    def curve(by_level: dict) -> tuple[list[float], list[float]]:
        return [float(np.mean(8.0 * np.asarray(by_level[q]) / px)) for q in levels], [float(np.mean(psnrs[q])) for q in levels]

    rb, pb = curve(base_bytes)
    print()
    print(f"{'level':>5} {'PSNR':>7} {'bytes (sum)':>12} " + " ".join(f"{n + ' ' + k:>22}" for n in models for k in ("one", "two")))
    for j, q in enumerate(levels):
        b = sum(base_bytes[q])
        cells = [f"{sum(ctx[n][k][q]):>10} ({100 * (sum(ctx[n][k][q]) / b - 1):+5.2f}%)" for n in models for k in ("one", "two")]
        print(f"{q:>5} {pb[j]:7.3f} {b:>12} " + " ".join(f"{c:>22}" for c in cells))
    print()
    jp = None
    if jpeg:
        qs = sorted({r["quality"] for r in jpeg})
        jp = tuple([float(np.mean([r[k] for r in jpeg if r["quality"] == q])) for q in qs] for k in ("bpp", "psnr"))
        v, info = bd_rate(*jp, rb, pb)
        print(f"without context vs JPEG: BD-rate {v:+.2f}% ({info})")
    for n in models:
        for k in ("one", "two"):
            rc, _ = curve(ctx[n][k])
            v, info = bd_rate(rb, pb, rc, pb)
            line = f"{n} [{k} substream{'s' if k == 'two' else ''}]: BD-rate vs without context {v:+.2f}% ({info})"
            if jp:
                vj, _ = bd_rate(*jp, rc, pb)
                line += f"; vs JPEG {vj:+.2f}%"
            print(line)

    # parse time, one stream, same run
    for q in a.parse_quality:
        data = encode_stream(kodak / a.parse_image, q, None, a.backend, a.threads)
        for line in time_parse(data, bundle, models, a.repeat):
            print(f"parse {a.parse_image} q{q} ({len(data)} B): {line}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
