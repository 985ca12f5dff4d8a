"""Training crops packed as one file, for the lent GPU machine.

Only the repository travels to that machine (64 MiB in all, carried paths included) and the tracked
files take most of it, so the photos of ``../shared/data/train`` cannot go as they are. The packer
cuts one random ``crop``×``crop`` crop per photo (a second round of other positions if room is left),
in a seeded random order of photos, until the file would outgrow ``--max-bytes`` (default: what the
64 MiB leave beside the repository, less a margin).

Formats (``load`` returns N×H×W×3 uint8 for both):

* ``.npy``: the crops themselves, one N×H×W×3 uint8 array (``--codec raw``);
* ``.npz``: ``codec`` ("raw" or "jpeg"), ``shape`` (N, H, W, 3), and either ``crops`` (raw) or
  ``jpeg`` (every crop's JPEG bytes in one uint8 array) with ``offsets`` (N + 1 int64). JPEG at
  quality 95 without chroma subsampling is about 5 bpp on these photos (45 dB PSNR): ~5× the crops
  of raw storage in the same bytes, which matters more here than the last dB of the targets.

    python -m edgecodec.models.crops pack ../shared/data/train traindata/crops.npz
    python -m edgecodec.models.crops info traindata/crops.npz
"""

from __future__ import annotations

import argparse
import io
import random
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ..errors import EdgecodecError, InputError

TRAVEL_LIMIT = 64 * 2**20  # what the device tool sends: tracked + untracked-not-ignored files + carried paths
MARGIN = 2**20  # room for files other work adds to the repository before the run
REPO = Path(__file__).resolve().parents[2]


def repo_bytes(repo: Path = REPO, skip: Path | None = None) -> int:
    """Bytes of the files that travel without being carried (tracked, and untracked but not ignored)."""
    total = 0
    for args in (["ls-files", "-z"], ["ls-files", "-z", "--others", "--exclude-standard"]):
        try:
            names = subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True).stdout.split(b"\0")
        except (OSError, subprocess.CalledProcessError) as e:
            raise InputError(f"cannot list the repository's files in {repo} ({e}); pass --max-bytes") from None
        for n in names:
            p = repo / n.decode()
            if n and p.is_file() and (skip is None or p.resolve() != skip.resolve()):
                total += p.stat().st_size
    return total


def travel_headroom(repo: Path = REPO, margin: int = MARGIN) -> int:
    return TRAVEL_LIMIT - repo_bytes(repo) - margin


def _jpeg(crop: np.ndarray, quality: int) -> bytes:
    from PIL import Image

    b = io.BytesIO()
    Image.fromarray(crop).save(b, "JPEG", quality=quality, subsampling=0)
    return b.getvalue()


def _npz_bytes(**arrays: np.ndarray) -> bytes:
    b = io.BytesIO()
    np.savez(b, **arrays)
    return b.getvalue()


def pack(
    src: Path,
    out: Path,
    crop: int = 256,
    codec: str = "jpeg",
    quality: int = 95,
    max_bytes: int | None = None,
    rounds: int = 4,
    seed: int = 0,
) -> dict:
    """Write the crops to ``out`` (atomically) and return what was written."""
    from ..io import IMAGE_SUFFIXES, atomic_write, read_rgb8

    out = Path(out)
    if out.suffix not in (".npz", ".npy"):
        raise InputError(f"{out}: the packed file must end in .npz or .npy")
    if out.suffix == ".npy" and codec != "raw":
        raise InputError(f"{out}: .npy holds raw crops only (use .npz for --codec {codec})")
    if codec not in ("raw", "jpeg"):
        raise InputError(f"unknown codec {codec!r} (raw or jpeg)")
    files = sorted(p for p in Path(src).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if Path(src).is_dir() else []
    if not files:
        raise InputError(f"no images in {src}")
    if max_bytes is None:
        max_bytes = TRAVEL_LIMIT - repo_bytes(REPO, skip=out) - MARGIN
    if max_bytes <= 0:
        raise InputError(f"no room for training crops: the repository already fills the {TRAVEL_LIMIT >> 20} MiB that travel")
    rng = random.Random(seed)
    order = files[:]
    rng.shuffle(order)
    header = 4096  # the container's own bytes (npz/npy headers, offsets) are well under this
    crops: list[np.ndarray] = []
    blobs: list[bytes] = []
    used, full, photos = header, False, set()
    for _ in range(rounds):
        for p in order:
            a = read_rgb8(p)[..., :3]
            h, w = a.shape[:2]
            if min(h, w) < crop:
                continue
            y0, x0 = rng.randrange(h - crop + 1), rng.randrange(w - crop + 1)
            c = np.ascontiguousarray(a[y0 : y0 + crop, x0 : x0 + crop])
            blob = _jpeg(c, quality) if codec == "jpeg" else b""
            size = len(blob) if codec == "jpeg" else c.nbytes
            if used + size + 8 > max_bytes:
                full = True
                break
            used += size + 8
            crops.append(c)
            blobs.append(blob)
            photos.add(p)
        if full:
            break
    if not crops:
        raise InputError(f"not one {crop}x{crop} crop fits in {max_bytes} bytes")
    shape = np.array([len(crops), crop, crop, 3], np.int64)
    if out.suffix == ".npy":
        b = io.BytesIO()
        np.save(b, np.stack(crops))
        data = b.getvalue()
    elif codec == "raw":
        data = _npz_bytes(codec=np.array("raw"), shape=shape, crops=np.stack(crops))
    else:
        offsets = np.cumsum([0] + [len(b) for b in blobs]).astype(np.int64)
        data = _npz_bytes(codec=np.array("jpeg"), shape=shape, jpeg=np.frombuffer(b"".join(blobs), np.uint8), offsets=offsets)
    atomic_write(out, data, force=True)
    return {"crops": len(crops), "photos": len(photos), "crop": crop, "codec": codec, "bytes": len(data), "max_bytes": max_bytes}


def _decode_jpeg(b: bytes) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(b)) as im:
        return np.asarray(im.convert("RGB"))


def load(path: Path, threads: int = 8) -> np.ndarray:
    """The packed crops as one N×H×W×3 uint8 array."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    try:
        if path.suffix == ".npy":
            a = np.load(path)
        else:
            with np.load(path) as z:
                codec = str(z["codec"])
                shape = tuple(int(v) for v in z["shape"])
                if codec == "raw":
                    a = z["crops"]
                elif codec == "jpeg":
                    blob, off = z["jpeg"].tobytes(), z["offsets"]
                    with ThreadPoolExecutor(threads) as ex:  # PIL decodes outside the GIL
                        a = np.stack(list(ex.map(_decode_jpeg, [blob[off[i] : off[i + 1]] for i in range(len(off) - 1)])))
                else:
                    raise InputError(f"{path}: unknown codec {codec!r}")
                if a.shape != shape:
                    raise InputError(f"{path}: crops decode to {a.shape}, the file says {shape}")
    except (OSError, ValueError, KeyError) as e:
        raise InputError(f"{path}: not a packed crops file ({e})") from None
    if a.dtype != np.uint8 or a.ndim != 4 or a.shape[3] != 3:
        raise InputError(f"{path}: expected N x H x W x 3 uint8 crops, got {a.dtype} {a.shape}")
    return a


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="pack training crops into one file for the GPU machine")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pack", help="cut and pack the crops")
    p.add_argument("src", type=Path, help="folder of training photos")
    p.add_argument("out", type=Path, help="output .npz (raw or jpeg) or .npy (raw)")
    p.add_argument("--crop", type=int, default=256)
    p.add_argument("--codec", default="jpeg", choices=("jpeg", "raw"))
    p.add_argument("--quality", type=int, default=95, help="JPEG quality (4:4:4)")
    p.add_argument("--max-bytes", type=int, default=None, help="file size limit (default: 64 MiB less the repository, less 1 MiB)")
    p.add_argument("--rounds", type=int, default=4, help="passes over the photos, one crop each per pass, while room is left")
    p.add_argument("--seed", type=int, default=0)
    i = sub.add_parser("info", help="what a packed file holds")
    i.add_argument("path", type=Path)
    a = ap.parse_args(argv)
    try:
        if a.cmd == "pack":
            t0 = time.perf_counter()
            r = pack(a.src, a.out, a.crop, a.codec, a.quality, a.max_bytes, a.rounds, a.seed)
            r["seconds"] = round(time.perf_counter() - t0, 1)
            print(
                f"{a.out}: {r['crops']} crops of {r['crop']}x{r['crop']} ({r['codec']}) from {r['photos']} photos, "
                f"{r['bytes']} bytes ({r['bytes'] / 2**20:.2f} MiB, limit {r['max_bytes'] / 2**20:.2f} MiB), {r['seconds']} s"
            )
        else:
            t0 = time.perf_counter()
            c = load(a.path)
            size, repo = a.path.stat().st_size, repo_bytes(REPO, skip=a.path)
            print(f"{a.path}: {c.shape[0]} crops of {c.shape[1]}x{c.shape[2]}, {size} bytes, loaded in {time.perf_counter() - t0:.2f} s")
            # what the device tool would send if this file is carried (other carried paths not counted)
            print(f"travel: repository {repo / 2**20:.2f} MiB + this file {size / 2**20:.2f} MiB = {(repo + size) / 2**20:.2f} of 64 MiB")
    except EdgecodecError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
