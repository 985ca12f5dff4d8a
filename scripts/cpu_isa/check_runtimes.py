"""Every runtime's int8 transforms against the numpy reference, on this CPU (scripts/test-cpu-isa runs it
natively and on an emulated AVX2-only CPU).

On crops of kodim23.png at each quality (default 1 and 10):
* analysis: the latents y, rounded as the codec rounds them, equal the numpy reference's on at least
  ``--min-round-equal`` of the elements (runtimes whose artifact has quantization grids of its own,
  ``--own-grids``, default tflite, are only reported against numpy: see ``--compare``);
* synthesis: decoding the numpy reference's rounded latents gives an image (clamped to [0, 1]) at least
  ``--min-psnr`` dB from the numpy reference's; the same for the fast synthesis when the bundle has it.
``--save FILE`` stores every runtime's outputs; ``--compare FILE`` (a run on another CPU) additionally
requires every runtime's latents to round to that run's integers on ``--min-round-equal`` of the
elements and its synthesis to be ``--min-psnr`` dB from that run's, so a runtime whose kernels depend
on the CPU (int8 saturation without VNNI) fails even where its artifact has grids of its own.
Prints one line per (runtime, quality) and the OpenVINO kernels; exits 1 on any failure.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np


def cpu_features() -> dict[str, bool]:
    try:
        from numpy._core._multiarray_umath import __cpu_features__ as f
    except ImportError:  # numpy < 2
        from numpy.core._multiarray_umath import __cpu_features__ as f
    return {k: bool(f.get(k)) for k in ("AVX2", "AVX512F", "AVX512BW", "AVX512VNNI")}


def openvino_kernels(be) -> list[str]:
    """The oneDNN implementation of every convolution (e.g. brgconv_avx512_I8, jit_avx2_I8, brgconv_avx2_f32)."""
    out = []
    for role in ("analysis", "synthesis"):
        compiled = be._request(role, None)[0]
        for op in compiled.get_runtime_model().get_ordered_ops():
            info = op.get_rt_info()
            if "layerType" in info and info["layerType"].astype(str) == "Convolution":
                out.append(info["primitiveType"].astype(str))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", action="append", default=None, help="onnxruntime, openvino, tflite (default: every one installed)")
    ap.add_argument("--quality", type=int, action="append", default=None, help="default: 1 and 10")
    ap.add_argument("--crop", type=int, default=128, help="size of the two square crops of kodim23.png")
    ap.add_argument("--min-round-equal", type=float, default=0.995)
    ap.add_argument("--min-psnr", type=float, default=45.0)
    ap.add_argument("--own-grids", default="tflite", help="comma-separated runtimes not held to --min-round-equal against numpy")
    ap.add_argument("--save", default=None, help="store the outputs here (npz)")
    ap.add_argument("--compare", default=None, help="also compare with the outputs of an earlier --save run")
    ap.add_argument("--expect-avx2-only", action="store_true", help="fail unless numpy sees AVX2 and no AVX-512")
    ap.add_argument("--expect-kernel", default=None, help="fail unless every OpenVINO int8 conv kernel name contains this")
    ap.add_argument("--bundle", default=None)
    ap.add_argument("--label", default="")
    a = ap.parse_args(argv)

    from edgecodec.bundle import Bundle, default_bundle_path
    from edgecodec.codec import model_input, psnr
    from edgecodec.errors import EdgecodecError
    from edgecodec.io import read_image
    from edgecodec.runtimes.base import open_backend
    from edgecodec.runtimes.numpy_backend import NumpyBackend

    label = a.label or "check_runtimes"
    failures: list[str] = []
    feats = cpu_features()
    print(f"{label}: numpy sees {json.dumps(feats)}", flush=True)
    if a.expect_avx2_only and (not feats["AVX2"] or feats["AVX512F"]):
        failures.append("numpy does not see an AVX2-only CPU")
    bundle = Bundle(a.bundle) if a.bundle else Bundle()
    photo = read_image(default_bundle_path().parent / "kodim23.png")
    c = a.crop
    xs = [model_input(photo[:c, :c]), model_input(photo[256 : 256 + c, 384 : 384 + c])]
    ref = NumpyBackend(bundle)
    own = {s.strip() for s in a.own_grids.split(",") if s.strip()}
    backends = {}
    for name in a.backend or ["onnxruntime", "openvino", "tflite"]:
        try:
            backends[name] = open_backend(name, bundle, threads=2)
        except EdgecodecError as e:
            if a.backend:  # asked for by name: its absence is a failure
                failures.append(f"{name}: {e}")
            print(f"{label}: {name} not checked ({e})", flush=True)
    earlier = dict(np.load(a.compare)) if a.compare else None
    saved: dict[str, np.ndarray] = {}
    for q in a.quality or [1, 10]:
        gain, inv_gain = bundle.gains(q)
        refs = []
        for x in xs:
            y_ref, _ = ref.analysis(x, gain)
            y_hat = np.clip(np.rint(y_ref), -127, 127).astype(np.float32)
            fast_ref = np.clip(ref.fast_synthesis(y_hat, inv_gain), 0, 1) if "fast" in bundle.decoders else None
            refs.append((y_ref, y_hat, np.clip(ref.synthesis(y_hat, inv_gain), 0, 1), fast_ref))
        for name, be in backends.items():
            ys, x_hats, fast_hats = [], [], []
            for y_ref, y_hat, x_ref, fast_ref in refs:
                y, _ = be.analysis(xs[len(ys)], gain)
                ys.append((y, y_ref, y_hat))
                x_hats.append((np.clip(be.synthesis(y_hat, inv_gain), 0, 1), x_ref))
                if fast_ref is not None:
                    fast_hats.append((np.clip(be.fast_synthesis(y_hat, inv_gain), 0, 1), fast_ref))
            ints = np.concatenate([np.clip(np.rint(y), -127, 127).ravel() for y, _, _ in ys])
            equal = float(np.mean(ints == np.concatenate([h.ravel() for _, _, h in ys])))
            rms = float(np.sqrt(np.mean(np.concatenate([(y - r).ravel() ** 2 for y, r, _ in ys]))))
            db = min(psnr(got, want, peak=1.0) for got, want in x_hats)
            held = "" if name not in own else " (own grids: not held to it)"
            line = f"q{q} {name:11s} analysis y rms {rms:.4f}, rounds equal {100 * equal:6.2f}%{held}; synthesis {db:5.1f} dB (vs numpy)"
            bad = []
            if fast_hats:
                db_fast = min(psnr(got, want, peak=1.0) for got, want in fast_hats)
                line += f", fast synthesis {db_fast:5.1f} dB"
                if db_fast < a.min_psnr:
                    bad.append(f"fast synthesis {db_fast:.1f} dB from numpy's (min {a.min_psnr})")
            if equal < a.min_round_equal and name not in own:
                bad.append(f"latents round equal to numpy's on {100 * equal:.2f}% (min {100 * a.min_round_equal:.1f}%)")
            if db < a.min_psnr:
                bad.append(f"synthesis {db:.1f} dB from numpy's (min {a.min_psnr})")
            key = f"{name}.q{q}"
            saved[key + ".y"], saved[key + ".x_hat"] = ints, np.concatenate([g.ravel() for g, _ in x_hats])
            if earlier is not None and key + ".y" in earlier:
                eq_run = float(np.mean(ints == earlier[key + ".y"]))
                mse = float(np.mean((saved[key + ".x_hat"] - earlier[key + ".x_hat"]) ** 2))
                db_run = float("inf") if mse == 0 else 10 * np.log10(1 / mse)
                line += f"; vs the earlier run: rounds equal {100 * eq_run:6.2f}%, synthesis {db_run:5.1f} dB"
                if eq_run < a.min_round_equal:
                    bad.append(f"latents round equal to the earlier run's on {100 * eq_run:.2f}% (min {100 * a.min_round_equal:.1f}%)")
                if db_run < a.min_psnr:
                    bad.append(f"synthesis {db_run:.1f} dB from the earlier run's (min {a.min_psnr})")
            print(f"{label}: {line}  {'FAIL' if bad else 'ok'}", flush=True)
            failures += [f"q{q} {name}: {b}" for b in bad]
    if "openvino" in backends:
        kernels = openvino_kernels(backends["openvino"])
        print(f"{label}: openvino convolutions: {', '.join(kernels)}", flush=True)
        int8 = [k for k in kernels if k.endswith("_I8")]
        if a.expect_kernel and (not int8 or not all(a.expect_kernel in k for k in int8)):
            failures.append(f"openvino int8 kernels are {int8}, expected every one to contain {a.expect_kernel!r}")
    if a.save:
        np.savez_compressed(a.save, **saved)
    for f in failures:
        print(f"FAIL: {label}: {f}", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
