"""Image and file I/O. opencv is imported only when an image is read or written.

opencv 4.x and 5.x differ on bad input: 5.x raises ``cv2.error`` (an empty buffer, an unknown
extension) where 4.x returns None or False, and 4.x may return a partial image for a truncated
JPEG. Every such case is an ``InputError`` here, whichever version is installed; truncated PNG
and JPEG files are recognised from their structure before opencv sees them.
"""

from __future__ import annotations

import os
import secrets
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np

from .errors import InputError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pnm"}

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SOI = b"\xff\xd8"


def _cv2():
    try:
        import cv2
    except ImportError:
        raise InputError("reading and writing images needs opencv (pip install 'edgecodec[cli]')") from None
    return cv2


def _quiet_call(cv2, fn, *args):
    """``fn(*args)`` with file descriptor 2 captured: libpng, libjpeg and opencv's logger print there
    directly, which would break the command line's one-line errors.

    Returns (result, error, lines): ``error`` is the ``cv2.error`` raised (result None), ``lines``
    what was printed meanwhile. fd 2 belongs to the process, so only the main thread redirects it
    (another thread's call runs as is: two threads swapping fd 2 could leave it pointing elsewhere).
    """
    result = error = None
    if threading.current_thread() is not threading.main_thread():
        try:
            result = fn(*args)
        except cv2.error as e:
            error = e
        return result, error, []
    try:
        saved = os.dup(2)
    except OSError:  # no stderr at all: nothing to capture
        saved = None
    with tempfile.TemporaryFile() as tmp:
        if saved is not None:
            sys.stderr.flush()
            os.dup2(tmp.fileno(), 2)
        try:
            result = fn(*args)
        except cv2.error as e:
            error = e
        finally:
            if saved is not None:
                sys.stderr.flush()
                os.dup2(saved, 2)
                os.close(saved)
        tmp.seek(0)
        lines = tmp.read().decode("utf-8", "replace").splitlines()
    return result, error, lines


def _reason(error, lines: list[str]) -> str:
    """One short line saying why opencv failed, from its exception or what the libraries printed."""
    text = ""
    if error is not None:
        first = next((s for s in str(error).splitlines() if s.strip()), "")
        text = first.split(" error: ", 1)[-1].strip()
    else:
        printed = [s.strip() for s in lines if s.strip() and "\x1b" not in s]  # no progress-bar frames
        text = printed[-1] if printed else ""
    return f" ({text[:200]})" if text else ""


def _pass_on(lines: list[str]) -> None:
    """Warnings printed by a call that succeeded go to stderr as they would have."""
    if lines:
        sys.stderr.write("\n".join(lines) + "\n")
        sys.stderr.flush()


def _png_complete(data: bytes) -> bool:
    """Every chunk is whole, up to and including IEND (libpng may stop early on a cut file)."""
    pos, n = len(PNG_SIGNATURE), len(data)
    while pos + 8 <= n:
        length = int.from_bytes(data[pos : pos + 4], "big")
        kind = data[pos + 4 : pos + 8]
        pos += 12 + length  # length, type, data, CRC
        if pos > n:
            return False
        if kind == b"IEND":
            return True
    return False


def _jpeg_complete(data: bytes) -> bool:
    """The marker segments and entropy-coded scans run on to an EOI marker (data after it is
    ignored, so files with trailers, e.g. motion photos, pass). opencv 4.x decodes a cut JPEG to a
    partly gray image with only a warning on stderr."""
    pos, n = len(JPEG_SOI), len(data)
    while True:
        if pos + 2 > n:
            return False
        if data[pos] != 0xFF:
            return True  # not a marker where one belongs: corrupt, not cut; the decoder judges it
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0xD9:  # EOI
            return True
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # markers without a length
            pos += 2
            continue
        if pos + 4 > n:
            return False
        pos += 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
        if pos > n:
            return False
        if marker == 0xDA:  # start of scan: entropy-coded data up to the next marker other than RSTn
            while True:
                pos = data.find(b"\xff", pos)
                if pos < 0 or pos + 1 >= n:
                    return False
                nxt = data[pos + 1]
                if nxt == 0xFF:
                    pos += 1
                elif nxt == 0x00 or 0xD0 <= nxt <= 0xD7:
                    pos += 2
                else:
                    break


def check_image_data(data: bytes, name: str | Path) -> None:
    """InputError for an empty file or a truncated PNG or JPEG (opencv may not say)."""
    if not data:
        raise InputError(f"{name}: empty file, not an image")
    if data.startswith(PNG_SIGNATURE) and not _png_complete(data):
        raise InputError(f"{name}: truncated PNG (the file ends before its last chunk)")
    if data.startswith(JPEG_SOI + b"\xff") and not _jpeg_complete(data):
        raise InputError(f"{name}: truncated JPEG (the file ends before its end-of-image marker)")


def read_image(path: str | Path) -> np.ndarray:
    """RGB(A) or gray, 8 or 16 bit, as stored (opencv's BGR order is undone)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    data = path.read_bytes()
    check_image_data(data, path)
    cv2 = _cv2()
    img, error, lines = _quiet_call(cv2, cv2.imdecode, np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if error is not None or img is None:
        raise InputError(f"{path}: not a readable image{_reason(error, lines)}")
    _pass_on(lines)
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


def output_suffix(path: str | Path) -> str:
    """The image format an output name asks for (``.png`` when it has no suffix).

    InputError if opencv has no encoder for it, so a caller can refuse before any decoding.
    """
    path = Path(path)
    suffix = path.suffix.lower() or ".png"
    cv2 = _cv2()
    have_writer = getattr(cv2, "haveImageWriter", None)  # 4.x and 5.x; raises for a codec built but disabled (.exr)
    if have_writer is not None:
        ok, error, _ = _quiet_call(cv2, have_writer, "x" + suffix)
    else:
        res, error, _ = _quiet_call(cv2, cv2.imencode, suffix, np.zeros((1, 1, 3), np.uint8))
        ok = bool(res and res[0])
    if error is not None or not ok:
        raise InputError(f"{path}: cannot write images as {suffix!r}; use .png, .tif, .bmp, .ppm, .webp or .jpg")
    return suffix


def encode_image(img: np.ndarray, suffix: str) -> bytes:
    cv2 = _cv2()
    arr = img[:, :, ::-1] if img.ndim == 3 else img
    res, error, lines = _quiet_call(cv2, cv2.imencode, suffix, np.ascontiguousarray(arr))
    if error is not None or not res or not res[0]:
        raise InputError(f"cannot write this image as {suffix!r}{_reason(error, lines)}; use .png")
    _pass_on(lines)
    return res[1].tobytes()


def check_writable(path: Path, force: bool) -> None:
    if path.exists() and not force:
        raise InputError(f"{path} exists; pass --force to overwrite")
    if path.exists() and path.is_dir():
        raise InputError(f"{path} is a directory")


_TEMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)


def _create_temp(path: Path) -> tuple[int, Path]:
    """A new file next to ``path``, created with mode 0666 so the umask applies as to any output
    (``tempfile.mkstemp`` would make it 0600 whatever the umask)."""
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:
            return os.open(tmp, _TEMP_FLAGS, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name next to {path}")


def atomic_write(path: str | Path, data: bytes, force: bool = False) -> None:
    """Write via a temporary file in the same folder and rename: never a partial file."""
    path = Path(path)
    check_writable(path, force)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_temp(path)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if tmp.exists():
            tmp.unlink()
        raise
