"""Parse time (rANS entropy decode + integer hyper-decoder) of one Kodak stream, stage by stage.

    python benchmarks/parse.py [--image PATH] [--quality 4 ...] [--threads 2] [--repeat 15] [--backend onnxruntime]

The stream is encoded once per quality with ``--backend`` (numpy when it is unavailable), in a child
process, so no runtime's threads run while the parse is timed. Every figure is the minimum of ``--repeat`` runs (machines here
are noisy: the minimum is the least disturbed run). Stages:

* z rANS / y rANS: ``rans.Decoder.decode`` of each substream (lanes and sequential steps shown);
* hyper layer i: one ``IntLayer`` (the last one band by band, as ``y_params`` runs it);
* table arithmetic: ``y_params`` minus its layers (table index, base, coded mask from the last layer);
* total: ``codec.parse_stream`` from the bytes.

Symbols/s counts every decoded symbol (z plus coded y) over the two rANS stages.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

if __package__:
    from .kodak import default_kodak, timed_runs
else:  # run as a script: benchmarks/ is sys.path[0]
    from kodak import default_kodak, timed_runs

ROOT = Path(__file__).resolve().parents[1]


def best_ms(fn, repeat: int) -> float:
    return 1e3 * min(timed_runs(fn, repeat))


ENCODE = """
import sys
from edgecodec import codec
from edgecodec.bundle import Bundle
from edgecodec.errors import EdgecodecError
from edgecodec.io import read_image
from edgecodec.runtimes.base import open_backend
path, quality, bundle_dir, name, threads = sys.argv[1:]
bundle = Bundle(bundle_dir or None)
try:
    backend = open_backend(name, bundle, threads=int(threads))
except EdgecodecError:
    backend = open_backend("numpy", bundle, threads=int(threads))
sys.stdout.buffer.write(codec.encode(read_image(path), int(quality), backend).data)
"""


def encode_stream(path: Path, quality: int, bundle_dir: Path | None, backend: str, threads: int) -> bytes:
    """The stream, encoded in a child process: no runtime thread pool (ONNX Runtime's spin) is alive
    here while the parse is timed."""
    args = [sys.executable, "-c", ENCODE, str(path), str(quality), str(bundle_dir or ""), backend, str(threads)]
    return subprocess.run(args, check=True, stdout=subprocess.PIPE).stdout


def parse_report(data: bytes, bundle, repeat: int) -> dict:
    import numpy as np

    from edgecodec import codec

    em = bundle.entropy_model
    header, subs = codec.read_header(data, bundle)
    m = {s.id: (s.lanes, s.payload) for s in subs}
    d = bundle.downsample
    hp, wp = -(-header.height // d) * d, -(-header.width // d) * d
    z_shape = (bundle.latent.z_channels, hp // d, wp // d)
    y_hw = (hp // 16, wp // 16)
    r: dict = {"bytes": len(data), "total": best_ms(lambda: codec.parse_stream(data, bundle), repeat)}

    zt = em._z_table(z_shape).ravel()
    z_lanes, z_payload = m[1]
    z = em._z_dec.decode(z_payload, zt, z_lanes).reshape(z_shape)
    r["z"] = (best_ms(lambda: em._z_dec.decode(z_payload, zt, z_lanes), repeat), zt.size, z_lanes)

    *front, last = em.hyper.layers
    h = np.asarray(z, np.int64)
    layers = []
    for layer in front:
        layers.append((f"{tuple(layer.weight.shape)} at {h.shape[1]}x{h.shape[2]}", best_ms(lambda layer=layer, h=h: layer(h), repeat)))
        h = layer(h)
    layers.append((f"{tuple(last.weight.shape)} at {h.shape[1]}x{h.shape[2]}", best_ms(lambda: list(last.bands(h)), repeat)))
    r["layers"] = layers
    y_params = best_ms(lambda: em.y_params(z, y_hw), repeat)
    r["y_params"] = y_params
    r["arith"] = y_params - sum(t for _, t in layers)

    table, _, coded = em.y_params(z, y_hw)
    yt = table[coded]
    y_lanes, y_payload = m[2]
    r["y"] = (best_ms(lambda: em._y_dec.decode(y_payload, yt, y_lanes), repeat), yt.size, y_lanes)
    return r


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--image", type=Path, default=default_kodak() / "kodim23.png")
    ap.add_argument("--bundle", type=Path, default=None)
    ap.add_argument("--quality", type=int, nargs="+", default=[4])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--backend", default="onnxruntime", help="encoder backend (numpy when unavailable)")
    a = ap.parse_args()
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):  # numpy's BLAS, before numpy loads
        os.environ.setdefault(var, str(a.threads))

    from edgecodec.bundle import Bundle

    path = a.image if a.image.is_file() else ROOT / "edgecodec" / "data" / "kodim23.png"
    bundle = Bundle(a.bundle)
    print(f"{path.name}, {a.threads} threads, min of {a.repeat}")
    for q in a.quality:
        r = parse_report(encode_stream(path, q, a.bundle, a.backend, a.threads), bundle, a.repeat)
        (zt, zn, zk), (yt, yn, yk) = r["z"], r["y"]
        print(f"q{q}: {r['bytes']} bytes, parse {r['total']:.2f} ms")
        print(f"  z rANS            {zt:7.2f} ms  {zn} symbols, {zk} lanes, {-(-zn // zk)} steps")
        for i, (name, t) in enumerate(r["layers"]):
            print(f"  hyper layer {i}     {t:7.2f} ms  {name}")
        print(f"  table arithmetic  {r['arith']:7.2f} ms  (y_params {r['y_params']:.2f} ms minus its layers)")
        print(f"  y rANS            {yt:7.2f} ms  {yn} symbols, {yk} lanes, {-(-yn // yk)} steps")
        print(f"  symbols/s         {(zn + yn) / (zt + yt) * 1e3 / 1e6:7.2f} M  (z + y over the two rANS stages)")


if __name__ == "__main__":
    main()
