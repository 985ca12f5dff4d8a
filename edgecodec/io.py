"""Image and file I/O. opencv is imported only when an image is read or written."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from .errors import InputError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pnm"}


def _cv2():
    try:
        import cv2
    except ImportError:
        raise InputError("reading and writing images needs opencv (pip install 'edgecodec[cli]')") from None
    return cv2


def read_image(path: str | Path) -> np.ndarray:
    """RGB(A) or gray, 8 or 16 bit, as stored (opencv's BGR order is undone)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    cv2 = _cv2()
    img = cv2.imdecode(np.fromfile(str(path), dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise InputError(f"{path}: not a readable image")
    if img.dtype not in (np.uint8, np.uint16):
        raise InputError(f"{path}: unsupported pixel type {img.dtype} (8- or 16-bit images only)")
    if img.ndim == 3 and img.shape[2] == 3:
        img = img[:, :, ::-1]
    elif img.ndim == 3 and img.shape[2] == 4:
        img = img[:, :, [2, 1, 0, 3]]
    return np.ascontiguousarray(img)


def read_rgb8(path: str | Path) -> np.ndarray:
    """The image at ``path`` as HxWx3 uint8, converted as the codec codes it (gray repeated, 16-bit
    rounded to 8, alpha dropped)."""
    from .codec import to_rgb8

    return to_rgb8(read_image(path))[0]


def encode_image(img: np.ndarray, suffix: str) -> bytes:
    cv2 = _cv2()
    arr = img[:, :, ::-1] if img.ndim == 3 else img
    ok, buf = cv2.imencode(suffix, np.ascontiguousarray(arr))
    if not ok:
        raise InputError(f"cannot write images as {suffix}; use .png")
    return buf.tobytes()


def check_writable(path: Path, force: bool) -> None:
    if path.exists() and not force:
        raise InputError(f"{path} exists; pass --force to overwrite")
    if path.exists() and path.is_dir():
        raise InputError(f"{path} is a directory")


def atomic_write(path: str | Path, data: bytes, force: bool = False) -> None:
    """Write via a temporary file in the same folder and rename: never a partial file."""
    path = Path(path)
    check_writable(path, force)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
