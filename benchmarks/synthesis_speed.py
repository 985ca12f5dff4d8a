"""The synthesis transforms alone, full vs fast, on every installed backend, in one run.

    python benchmarks/synthesis_speed.py [--repeat 5] [--threads 2]

Laplacian integer latents of a 768x512 image at the middle quality (the parse is not part of it:
``benchmarks/parse.py`` times that); min of ``--repeat`` runs after a warm-up.
"""

from __future__ import annotations

import argparse

import numpy as np

if __package__:
    from .kodak import timed_runs
else:  # run as a script: benchmarks/ is sys.path[0]
    from kodak import timed_runs


def best_ms(fn, repeat: int) -> float:
    return 1e3 * min(timed_runs(fn, repeat))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()

    from edgecodec.bundle import Bundle
    from edgecodec.errors import EdgecodecError
    from edgecodec.runtimes.base import REGISTRY, open_backend

    bundle = Bundle()
    rng = np.random.default_rng(0)
    y = np.clip(np.rint(rng.laplace(0, 1, (1, bundle.latent.y_channels, 32, 48))), -127, 127).astype(np.float32)
    _, inv_gain = bundle.gains((bundle.levels + 1) // 2)
    print(f"768x512 synthesis, {a.threads} threads, min of {a.repeat}")
    for name in REGISTRY:
        try:
            be = open_backend(name, bundle, threads=a.threads)
        except EdgecodecError as e:
            print(f"{name:12s} unavailable ({e})")
            continue
        full = best_ms(lambda be=be: be.synthesis(y, inv_gain), a.repeat)
        fast = best_ms(lambda be=be: be.fast_synthesis(y, inv_gain), a.repeat) if "fast" in bundle.decoders else float("nan")
        print(f"{name:12s} full {full:7.1f} ms   fast {fast:7.1f} ms   fast/full {fast / full:.2f}", flush=True)


if __name__ == "__main__":
    main()
