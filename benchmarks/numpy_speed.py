"""Speed of the pure-numpy backend (the Android/Chaquopy path) on one Kodak image, new vs reference.

    python benchmarks/numpy_speed.py [--image PATH] [--quality 4] [--repeat 7] [--band-bytes N,...]

Times, min of --repeat runs each (this machine is noisy: the minimum is the quiet-machine figure),
in one process so all paths see the same machine: the analysis (g_a + h_a), the full synthesis
(g_s), the fast synthesis (f_s) and a whole fast decode (``codec.decode(decoder="fast")``: parse +
fast synthesis), each with ``run_net`` (what the backend runs), with ``run_net_reference`` (the
layer-by-layer definition: im2col GEMMs, whole-activation passes) and with the folded variant
(``exact=False``: scales folded into the weights, bias in the GEMM), with the largest |difference|
of each output from the reference's, relative to the reference's largest magnitude (for the
decode: in 8-bit pixels); then a per-layer breakdown of both paths. BLAS threads are numpy's
(set OPENBLAS_NUM_THREADS before starting to change them).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

if __package__:
    from .kodak import default_kodak, timed_runs
else:  # run as a script: benchmarks/ is sys.path[0]
    from kodak import default_kodak, timed_runs

ROOT = Path(__file__).resolve().parents[1]


def best(fn, repeat: int) -> float:
    return min(timed_runs(fn, repeat))


def per_layer(net, x, scale, repeat: int) -> tuple[list[float], list[float]]:
    """Per-layer times of ``net`` (a numpy_backend._Net) and of its reference layers on the same input."""
    from edgecodec.runtimes import numpy_backend as nb

    new, ref = [], []
    # reference: each layer on the reference activation
    a = x.astype(np.float32) * scale if scale is not None else x.astype(np.float32)
    for i, layer in enumerate(net.layers):
        ref.append(best(lambda layer=layer, a=a, i=i: layer(a.copy() if i else a, inplace=i > 0), repeat))
        a = layer(a.copy(), inplace=i > 0)
    # new: each step on its zero-bordered input buffer
    x = x.astype(np.float32)
    c, h, w = x.shape
    buf, inner = nb._padded(c, h, w, net.steps[0].pad)
    inner[...] = x * scale if scale is not None else x
    if net.first is not None:
        s, lo, hi = net.first
        inner[...] = np.rint(np.clip(inner / np.float32(s), lo, hi))
    for i, st in enumerate(net.steps):
        co, ho, wo = st.out_shape(h, w)
        last = i + 1 == len(net.steps)
        nbuf, dst = (np.empty((co, ho, wo), np.float32),) * 2 if last else nb._padded(co, ho, wo, net.steps[i + 1].pad)
        new.append(best(lambda st=st, buf=buf, h=h, w=w, dst=dst: st.run(buf, h, w, dst, nb.BAND_BYTES), repeat))
        buf, h, w = nbuf, ho, wo
    return new, ref


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--image", type=Path, default=default_kodak() / "kodim23.png")
    ap.add_argument("--quality", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--band-bytes", default="", help="comma-separated BAND_BYTES values to time the fast synthesis with")
    ap.add_argument("--no-layers", action="store_true", help="skip the per-layer breakdown")
    a = ap.parse_args()

    from edgecodec import codec
    from edgecodec.bundle import Bundle
    from edgecodec.io import read_image
    from edgecodec.runtimes import numpy_backend as nb

    img = read_image(a.image if a.image.is_file() else ROOT / "edgecodec" / "data" / "kodim23.png")
    bundle = Bundle()
    be = nb.NumpyBackend(bundle, threads=2)
    h, w = img.shape[:2]
    enc = codec.encode(img, a.quality, be, bundle)
    header, parse = codec.parse_stream(enc.data, bundle)
    gain, inv_gain = bundle.gains(a.quality)
    d = bundle.downsample
    x = np.zeros((1, 3, -(-h // d) * d, -(-w // d) * d), np.float32)  # the analysis input, padded as tiling pads it
    x[0, :, :h, :w] = img.transpose(2, 0, 1).astype(np.float32) / 255
    y = parse.y.astype(np.float32)
    y = y if y.ndim == 4 else y[None]
    print(f"numpy {np.__version__}, image {w}x{h}, quality {a.quality}, latent {tuple(y.shape[-3:])}, min of {a.repeat}")

    fold = {n: nb._Net(getattr(be, n).layers, exact=False) for n in ("g_a", "h_a", "g_s", "f_s")}
    nets = {
        "analysis (g_a+h_a)": (
            lambda: be.analysis(x, gain),
            lambda: (lambda yy: (yy, fold["h_a"](yy)))(fold["g_a"](x[0]) * gain[0]),
            lambda: (lambda yy: (yy, nb.run_net_reference(be.h_a.layers, yy)))(nb.run_net_reference(be.g_a.layers, x[0]) * gain[0]),
        ),
        "full synthesis (g_s)": (
            lambda: be.synthesis(y, inv_gain),
            lambda: fold["g_s"](y[0], inv_gain[0]),
            lambda: nb.run_net_reference(be.g_s.layers, y[0] * inv_gain[0]),
        ),
        "fast synthesis (f_s)": (
            lambda: be.fast_synthesis(y, inv_gain),
            lambda: fold["f_s"](y[0], inv_gain[0]),
            lambda: nb.run_net_reference(be.f_s.layers, y[0] * inv_gain[0]),
        ),
    }

    def rel(out, ref):
        out, ref = (out, ref) if isinstance(ref, tuple) else ((out,), (ref,))
        return max(float(np.abs(np.squeeze(o) - r).max() / np.abs(r).max()) for o, r in zip(out, ref))

    print(f"{'':24}{'new ms':>9}{'ref ms':>9}{'speed-up':>10}{'max rel diff':>14}{'folded ms':>11}{'its rel diff':>14}")
    for name, (new, folded, ref) in nets.items():
        out_ref = ref()
        dn, df = rel(new(), out_ref), rel(folded(), out_ref)
        tn, tf, tr = best(new, a.repeat), best(folded, a.repeat), best(ref, a.repeat)
        print(f"{name:24}{1e3 * tn:9.1f}{1e3 * tr:9.1f}{tr / tn:9.2f}x{dn:14.2e}{1e3 * tf:11.1f}{df:14.2e}")

    class Ref(nb.NumpyBackend):  # the backend as it was: reference nets
        def fast_synthesis(self, y_hat, inv_gain):
            return nb.run_net_reference(self.f_s.layers, y_hat[0].astype(np.float32) * inv_gain[0])[None]

    ref_be = Ref(bundle, threads=2)
    dn = best(lambda: codec.decode(enc.data, be, bundle, decoder="fast"), a.repeat)
    dr = best(lambda: codec.decode(enc.data, ref_be, bundle, decoder="fast"), a.repeat)
    pn = best(lambda: codec.parse_stream(enc.data, bundle), a.repeat)
    img_new, img_ref = (codec.decode(enc.data, b, bundle, decoder="fast").image.astype(int) for b in (be, ref_be))
    pix = int(np.abs(img_new - img_ref).max())
    print(f"{'whole fast decode':24}{1e3 * dn:9.1f}{1e3 * dr:9.1f}{dr / dn:9.2f}x{pix:11d} px", end="")
    print(f"   (parse alone {1e3 * pn:.1f} ms; target <= 150 ms)")

    for bb in [int(v) for v in a.band_bytes.split(",") if v]:
        t = best(lambda bb=bb: be.f_s(y[0], inv_gain[0], band_bytes=bb), a.repeat)
        print(f"fast synthesis, band {bb >> 10} KiB: {1e3 * t:.1f} ms")

    if not a.no_layers:
        for name, net, scale in (("g_s", be.g_s, inv_gain[0]), ("f_s", be.f_s, inv_gain[0])):
            new, ref = per_layer(net, y[0], scale, a.repeat)
            print(
                f"{name} per layer, new/ref ms: " + "  ".join(f"{i}: {1e3 * n:.1f}/{1e3 * r:.1f}" for i, (n, r) in enumerate(zip(new, ref)))
            )


if __name__ == "__main__":
    main()
